"""``eval`` (one model, one task) and ``bench`` (models x precisions x tasks, graded, with a report).

Each (model, precision) of a bench runs in its own process, so its peak memory is its own and a
model that fails to load or run is reported without stopping the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import BadInputError, XlembedError
from .results import RunRecord, TaskResult, record

TASKS = ("tatoeba", "sts17", "jsts", "stsb", "korsts", "sts", "classify", "gap", "drift", "speed")
DATA_FOLDERS = {"tatoeba": "tatoeba", "gap": "tatoeba", "drift": "tatoeba", "speed": "tatoeba",
                "sts17": "sts17", "jsts": "jsts", "stsb": "stsb_multi_mt", "korsts": "korsts",
                "classify": "amazon_counterfactual"}
SPEED_TEXTS = 512
DRIFT_TEXTS = 500


def default_data_root() -> Path | None:
    """$XLEMBED_DATA, else ../shared/data or ./data when they exist."""
    env = os.environ.get("XLEMBED_DATA")
    if env:
        return Path(env)
    for candidate in (Path("../shared/data"), Path("data")):
        if candidate.is_dir():
            return candidate
    return None


def task_data(task: str, data: str | Path | None, data_root: str | Path | None) -> Path:
    """The file or folder a task reads: ``data`` when given, else its folder under the data root."""
    if task not in TASKS:
        raise BadInputError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if data is not None:
        path = Path(data)
    else:
        root = Path(data_root) if data_root is not None else default_data_root()
        if root is None or task not in DATA_FOLDERS:
            raise BadInputError(
                f"task {task!r} needs data: pass --data PATH, or --data-root / XLEMBED_DATA pointing at a folder "
                f"that holds {DATA_FOLDERS.get(task, 'the files')}/"
            )
        path = root / DATA_FOLDERS[task]
    if not path.exists():
        raise BadInputError(f"data for task {task!r} not found: {path} does not exist")
    return path


def run_task(encoder, task: str, path: Path, langs: list[str] | None = None, limit: int | None = None,
             prompt: str | None = None, cache=None, margin: bool = False, reference=None) -> list[TaskResult]:
    """Run one task on one encoder; ``reference`` is the fp32 encoder the drift task compares with."""
    from . import tasks
    from .data import read_tatoeba, tatoeba_languages

    if task == "tatoeba":
        return tasks.tatoeba(encoder, path, langs=langs, limit=limit, prompt=prompt, cache=cache, margin=margin)
    if task in ("sts", "sts17", "jsts", "stsb", "korsts"):
        return tasks.sts(encoder, path, prompt=prompt, cache=cache, limit=limit)
    if task == "classify":
        return tasks.classification(encoder, path, langs=langs, limit=limit, prompt=prompt, cache=cache)
    if task == "gap":
        return tasks.alignment_gap(encoder, path, langs=langs, limit=limit or 1000, prompt=prompt, cache=cache)
    languages = langs or tatoeba_languages(path)
    per_lang = max(1, (DRIFT_TEXTS if task == "drift" else SPEED_TEXTS) // (2 * len(languages)))
    texts: list[str] = []
    for lang in languages:
        xx, en = read_tatoeba(path, lang, limit=per_lang)
        texts += xx + en
    if task == "speed":
        from .speed import speed

        return [speed(encoder, texts)]
    if reference is None:
        raise BadInputError("the drift task compares with an fp32 reference encoder; none was given")
    return [tasks.drift(reference, encoder, texts, prompt=prompt, cache=cache)]


@dataclass
class BenchPlan:
    models: list[str]
    precisions: list[str]
    tasks: list[str]
    out: str
    data_root: str | None = None
    langs: list[str] | None = None
    limit: int | None = None
    prompt: str | None = None
    cache_root: str | None = None
    command: str = ""
    rubric: str | None = None  # a user's rubric JSON (default: the bundled one)
    overrides: dict[str, float | None] = field(default_factory=dict)  # e.g. {"S.tatoeba_accuracy": 92}
    failures: list[str] = field(default_factory=list)


def run_bench(plan: BenchPlan, progress: bool = True) -> tuple[list[RunRecord], dict, dict]:
    """Every (model, precision) in its own process; then grades and the report. Returns records, grades, files."""
    from tqdm.auto import tqdm

    from .grading import grade, load_rubric
    from .report import write_report

    if plan.rubric and not Path(plan.rubric).is_file():
        raise BadInputError(f"rubric file {plan.rubric} does not exist (see docs/grading.md for its format)")
    for task in plan.tasks:
        if task not in ("drift", "speed"):
            task_data(task, None, plan.data_root)  # fail early on missing data, before any model loads
    records: list[RunRecord] = []
    combos = [(m, p) for m in plan.models for p in plan.precisions]
    bar = tqdm(combos, desc="bench", unit="run", disable=not progress, file=sys.stderr)
    for model, precision in bar:
        bar.set_postfix_str(f"{model} {precision}")
        got, error = _run_worker(plan, model, precision)
        records += got
        if error:
            plan.failures.append(f"{model} {precision}: {error}")
    rubric = load_rubric(Path(plan.rubric)) if plan.rubric else None
    grades = grade(records, rubric, plan.overrides or None)
    files = write_report(records, Path(plan.out), grades=grades)
    return records, grades, files


def _run_worker(plan: BenchPlan, model: str, precision: str) -> tuple[list[RunRecord], str | None]:
    if precision == "int8":  # export once in a process of its own, so the measured run's peak RSS excludes it
        subprocess.run([sys.executable, "-c", "import sys, xlembed; xlembed.load(sys.argv[1], precision='int8')", model],
                       capture_output=True, text=True)
    job = {"plan": asdict(plan), "model": model, "precision": precision}
    proc = subprocess.run([sys.executable, "-m", "xlembed.eval.bench"], input=json.dumps(job),
                          capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return [], f"worker failed (exit {proc.returncode}): {tail}"
    reply = json.loads(lines[-1])
    return [RunRecord.from_dict(r) for r in reply["records"]], reply.get("error")


def bench_one(plan: BenchPlan, model: str, precision: str) -> tuple[list[RunRecord], str | None]:
    """What one worker does: load, run every task, measure size; errors are returned, not raised."""
    from ..loading import load
    from .cache import EmbeddingCache
    from .speed import memory_probe, size

    cache = EmbeddingCache(Path(plan.cache_root) if plan.cache_root else None)
    started = time.perf_counter()
    try:
        encoder = load(model, precision=precision)
    except XlembedError as exc:
        return [], str(exc).splitlines()[0]
    load_seconds = time.perf_counter() - started
    encoder.check_languages = False  # the report's coverage table shows, per language, whether it was trained on it
    probe = memory_probe(encoder)  # before the tasks: their data and cache hits would decide the figure otherwise
    records, errors = [], []
    for task in [t for t in plan.tasks if t != "drift"]:
        try:
            path = task_data(task, None, plan.data_root)
            for result in run_task(encoder, task, path, plan.langs, plan.limit, plan.prompt, cache):
                records.append(record(encoder, result, plan.command))
        except XlembedError as exc:
            errors.append(f"{task}: {str(exc).splitlines()[0]}")
    records.append(record(encoder, size(encoder, load_seconds, probe), plan.command))
    if "drift" in plan.tasks and precision != "fp32":
        try:
            reference = load(model, precision="fp32")
            path = task_data("drift", None, plan.data_root)
            for result in run_task(encoder, "drift", path, plan.langs, None, plan.prompt, cache, reference=reference):
                records.append(record(encoder, result, plan.command))
        except XlembedError as exc:
            errors.append(f"drift: {str(exc).splitlines()[0]}")
    return records, "; ".join(errors) or None


def _worker_main() -> None:
    job = json.loads(sys.stdin.read())
    plan = BenchPlan(**job["plan"])
    records, error = bench_one(plan, job["model"], job["precision"])
    print(json.dumps({"records": [r.as_dict() for r in records], "error": error}, ensure_ascii=False))


if __name__ == "__main__":
    _worker_main()
