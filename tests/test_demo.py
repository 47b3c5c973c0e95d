"""The demo on the default model: every sentence finds its translation."""

from __future__ import annotations

import subprocess
import sys

import xlembed
from xlembed.demo import format_demo, load_sample, run_demo


def test_default_model_ranks_every_true_translation_first():
    result = run_demo()
    sample = load_sample()
    assert len(sample["languages"]) >= 8
    assert result.failures == []
    for lang, row in result.per_language.items():
        assert row["correct"] == row["total"] == len(sample["sentences"]), lang
        assert row["true_cos"] > row["other_cos"] + 0.3, lang
    text = format_demo(result, sample)
    assert "72/72 sentences found their translation" in text


def test_demo_command_runs_offline_and_exits_zero():
    proc = subprocess.run([sys.executable, "-m", "xlembed.cli", "demo"], capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "found their translation" in proc.stdout and "use-multilingual" in proc.stdout


def test_demo_sample_has_the_required_languages():
    langs = set(load_sample()["languages"])
    assert {"ja", "en", "zh", "de", "fr", "es", "ko", "ar"} <= langs
    assert xlembed.load().name == "use-multilingual"
