#!/usr/bin/env python
"""int8 on held-out languages: does xlembed's int8 keep languages it was never measured on?

xlembed's int8 (dynamic int8 with the outlier input channels of MatMuls kept in fp32, see
xlembed/compress/quantize.py) was first tuned on the 15 Tatoeba languages of shared/data. This benchmark
measures its recipes, against plain ONNX Runtime dynamic int8 and the fp32 parent, on bitext retrieval in
languages shared/data does not have: software-message translations from the machine's gettext catalogs
(benchmarks/heldout_bitext.py; up to 1,000 pairs per language, both directions, top-1 as Tatoeba).

Rows: fp32 (the parent, torch), bf16 (torch bf16), int8-plain (plain dynamic int8, per-channel weights,
reduce_range), int8-down (xlembed's recipe of 2026-12-07: outlier channels only in the FFN output projections,
tuned on the 15 shared languages), int8 (xlembed's recipe now: 8 outlier channels in every MatMul).
Loss = fp32 top-1 minus the row's, in points; summarized over the languages the model card lists
(multilingual-e5-small: XLM-R's 93 codes) and over all.

    python benchmarks/int8_heldout.py                         # builds .cache/heldout-bitext when it is missing
    python benchmarks/int8_heldout.py --rows fp32,bf16,int8-plain,int8-down,int8

Each row goes to OUT/rows/NAME.json as it is measured (a rerun reuses it: delete one to measure it again).
Writes OUT/results.json and OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from compress_e5 import int8_variant, plain_int8  # noqa: E402
from encode_speed import machine_info, versions  # noqa: E402
from heldout_bitext import build as build_bitext  # noqa: E402

ROWS = ("fp32", "bf16", "int8-plain", "int8-down", "int8")
# xlembed's int8 recipe of 2026-12-07, tuned on the 15 shared Tatoeba languages: 4 outlier channels, only in the
# MatMuls that project down (the FFN outputs) whose largest channel is >= 8x the median (8 of 72)
DOWN_RECIPE = {"outlier_channels": 4, "outlier_min_ratio": 8.0, "outlier_scope": "down"}
MAX_LOSS = 1.0  # issue 16's per-language int8 goal: the summary lists the languages that lose more


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / ".cache" / "models" / "multilingual-e5-small"),
                   help="the parent model folder")
    p.add_argument("--catalogue-name", default="multilingual-e5-small",
                   help="the catalogue entry whose language list the summary keeps to")
    p.add_argument("--data", default=str(REPO / ".cache" / "heldout-bitext"),
                   help="Tatoeba-format held-out bitext (built by benchmarks/heldout_bitext.py when missing)")
    p.add_argument("--locale-dir", default="/usr/share/locale", help="gettext catalogs, to build --data")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "int8-heldout"))
    p.add_argument("--rows", default=",".join(ROWS), help=f"rows to measure (default all: {','.join(ROWS)})")
    p.add_argument("--langs", default="", help="Tatoeba-style codes to measure (default: every language in --data)")
    return p.parse_args(argv)


def model_languages(name: str) -> list[str]:
    from xlembed.catalogue import get

    entry = get(name)
    return list(entry.language_codes) if entry and entry.language_codes else []


def measure(name: str, parent: Path, models: Path, data: Path, langs: list[str]) -> dict:
    import xlembed
    from xlembed.eval.tasks import tatoeba

    if name == "int8-plain":
        path, precision = plain_int8(parent, models), "int8"
    elif name == "int8-down":
        path, precision = int8_variant(parent, models / name, **DOWN_RECIPE), "int8"
    else:
        path, precision = parent, name
    started = time.perf_counter()
    encoder = xlembed.load(str(path), precision=precision)
    results = tatoeba(encoder, data, langs)
    return {"name": name, "path": str(path), "precision": precision, "seconds": round(time.perf_counter() - started, 1),
            "tatoeba": {r.language: round(r.scores["accuracy"], 2) for r in results},
            "pairs": {r.language: r.details["n"] for r in results}}


def measured_rows(out: Path, wanted: list[str], measure_row, command: str) -> dict:
    """Each row's figures from OUT/rows/NAME.json, measuring (``measure_row(name)``) and writing the missing ones."""
    (out / "rows").mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in wanted:
        path = out / "rows" / f"{name}.json"
        if not path.is_file():
            print(f"row {name}", file=sys.stderr, flush=True)
            row = {**measure_row(name), "command": command, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            path.write_text(json.dumps(row, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        rows[name] = json.loads(path.read_text(encoding="utf-8"))
    return rows


def write_results(out: Path, report: dict, text: str) -> None:
    """OUT/results.json (the report) and OUT/results.md (``text``, also printed)."""
    (out / "results.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "results.md").write_text(text, encoding="utf-8")
    print(text)


def summarize(rows: dict, covered: set[str]) -> dict:
    base = rows["fp32"]["tatoeba"]
    out = {}
    for name, row in rows.items():
        if name == "fp32":
            continue
        loss = {k: round(base[k] - v, 2) for k, v in row["tatoeba"].items() if k in base}
        supported = {k: v for k, v in loss.items() if k in covered}
        out[name] = {
            "loss": loss,
            "model_langs": len(supported),
            "model_mean_loss": round(statistics.mean(supported.values()), 3) if supported else None,
            "model_max_loss": max(supported.values()) if supported else None,
            "model_worst": max(supported, key=supported.get) if supported else None,
            "model_over_1": sorted(k for k, v in supported.items() if v > MAX_LOSS),
            "all_mean_loss": round(statistics.mean(loss.values()), 3),
            "all_max_loss": max(loss.values()),
        }
    return out


def markdown(rep: dict) -> str:
    rows, summary = rep["rows"], rep["summary"]
    langs = sorted(rows["fp32"]["tatoeba"])
    lines = ["# int8 on held-out languages (gettext software-message bitext)", "",
             f"Command: `{rep['command']}`", "",
             f"Machine: {rep['machine'].get('cpu')}, {rep['machine'].get('cores')} cores. Model: `{rep['model']}`. "
             f"{len(langs)} languages outside shared/data ({rep['covered']} of them in the model card's list), "
             f"up to 1,000 pairs each, top-1 both directions, loss in points against fp32.", "",
             "| row | model's languages | mean loss | worst loss (language) | languages > 1.0 | mean loss, all | worst, all |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['model_langs']} | {s['model_mean_loss']} | {s['model_max_loss']} ({s['model_worst']}) | "
                     f"{', '.join(s['model_over_1']) or '-'} | {s['all_mean_loss']} | {s['all_max_loss']} |")
    names = list(rows)
    lines += ["", "Top-1 (%) per language (* = not in the model card's list):", "",
              "| language | pairs | " + " | ".join(names) + " |", "| --- | ---: |" + " ---: |" * len(names)]
    for lang in langs:
        mark = "" if lang in rep["covered_codes"] else " *"
        lines.append(f"| {lang}{mark} | {rows['fp32']['pairs'][lang]} | "
                     + " | ".join(str(rows[n]["tatoeba"].get(lang, "")) for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from xlembed.eval.data import tatoeba_languages
    from xlembed.langs.codes import canonical_or_none, covered

    parent = Path(args.model)
    if not (parent / "model.safetensors").is_file():
        print(f"model missing: {parent}; run ../shared/tools/fetch-models {parent.parent}", file=sys.stderr)
        return 2
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in ROWS]
    if unknown or "fp32" not in wanted:
        print(f"--rows {args.rows!r}: rows are {', '.join(ROWS)}, and fp32 (the reference) must be one", file=sys.stderr)
        return 2
    data = Path(args.data)
    if not data.is_dir() or not any(data.glob("tatoeba.*")):
        if not Path(args.locale_dir).is_dir():
            print(f"no held-out bitext in {data} and no gettext catalogs in {args.locale_dir}: skipped", file=sys.stderr)
            return 2
        build_bitext(Path(args.locale_dir), data, None, 1000, 1000, 0)
    langs = [c.strip() for c in args.langs.split(",") if c.strip()] or tatoeba_languages(data)
    card = model_languages(args.catalogue_name)
    covered_codes = sorted(c for c in langs if card and canonical_or_none(c) and covered(canonical_or_none(c), card))
    out = Path(args.out)
    models = out / "models"
    command = shlex.join(["python", "benchmarks/int8_heldout.py", *sys.argv[1:]])
    rows = measured_rows(out, wanted, lambda name: measure(name, parent, models, data, langs), command)
    report = {"command": command, "machine": machine_info(), "versions": versions(), "model": parent.name,
              "covered": len(covered_codes), "covered_codes": covered_codes, "rows": rows,
              "summary": summarize(rows, set(covered_codes))}
    write_results(out, report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
