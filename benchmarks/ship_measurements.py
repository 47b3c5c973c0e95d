#!/usr/bin/env python
"""Write the measurements ``xlembed recommend`` and the language warning use by default
(src/xlembed/langs/measured.json) from a results.json of ``xlembed bench`` (default: benchmarks/results/eval,
written by benchmarks/eval_bench.py on the shared Tatoeba sets).

    python benchmarks/ship_measurements.py [--results benchmarks/results/eval/results.json]

Keeps the Tatoeba, speed and size records (with their machine, command and date), drops the rest.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEEP = ("tatoeba", "speed", "size")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "eval" / "results.json"))
    parser.add_argument("--output", default=str(REPO / "src" / "xlembed" / "langs" / "measured.json"))
    args = parser.parse_args()
    data = json.loads(Path(args.results).read_text(encoding="utf-8"))
    records = [{k: v for k, v in r.items() if k != "details" or r["task"] == "size"}
               for r in data["records"] if r["task"] in KEEP]
    out = {"schema_version": data["schema_version"], "about": "xlembed bench results shipped with the package "
           "(benchmarks/ship_measurements.py from benchmarks/results/eval): Tatoeba on the shared sets, speed and size "
           "on the machine named in each record", "records": records}
    Path(args.output).write_text(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {len(records)} records to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
