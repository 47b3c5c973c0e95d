#!/usr/bin/env python
"""Quality, speed and grades of every fetched model and precision: Tatoeba (15 languages), STS17, JSTS,
alignment gap, precision drift and speed, through ``xlembed bench``; writes the HTML/Markdown/JSON report.

    make bench-eval      # = python benchmarks/eval_bench.py --models-dir .cache/models
    python benchmarks/eval_bench.py --models-dir DIR --out benchmarks/results/eval [--limit 200]

Models: the default USE model (fp32; it has no other precision), and all-MiniLM-L6-v2 and
multilingual-e5-small from ../shared/tools/fetch-models DIR (fp32, bf16, int8).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from xlembed.eval.bench import BenchPlan, run_bench

REPO = Path(__file__).resolve().parents[1]
TASKS = ["tatoeba", "sts17", "jsts", "gap", "drift", "speed"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=str(REPO / ".cache" / "models"),
                        help="folder written by ../shared/tools/fetch-models (default: .cache/models)")
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "eval"))
    parser.add_argument("--limit", type=int, default=None, help="first N pairs of each file (default: all)")
    args = parser.parse_args()

    models_dir = Path(args.models_dir)
    fetched = [models_dir / name for name in ("multilingual-e5-small", "all-MiniLM-L6-v2")]
    missing = [str(p) for p in fetched if not (p / "model.safetensors").is_file()]
    if missing or not Path(args.data_root, "tatoeba").is_dir():
        print(f"missing models {missing} or data {args.data_root}/tatoeba; run "
              f"../shared/tools/fetch-models {models_dir} and keep ../shared/data beside the repo", file=sys.stderr)
        return 2
    command = shlex.join(["python", "benchmarks/eval_bench.py", *sys.argv[1:]])
    records, failures = [], []
    runs = [(["use-multilingual"], ["fp32"]), ([str(p) for p in fetched], ["fp32", "bf16", "int8"])]
    for models, precisions in runs:
        plan = BenchPlan(models=models, precisions=precisions, tasks=TASKS, out=args.out,
                         data_root=args.data_root, limit=args.limit, command=command)
        got, _, _ = run_bench(plan, progress=True)
        records += got
        failures += plan.failures
    # one report over all runs
    from xlembed.eval.grading import grade
    from xlembed.eval.report import write_report

    files = write_report(records, Path(args.out), grades=grade(records))
    for failure in failures:
        print(f"note: {failure}", file=sys.stderr)
    print("\n".join(f"wrote {p}" for p in files.values()))
    return 0 if records and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
