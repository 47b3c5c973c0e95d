#!/usr/bin/env python
"""What to do with the pieces a vocabulary trim drops: re-segment them, or keep the parent's tokenization?

xlembed's trim (xlembed/compress/vocab.py) removes pieces from the tokenizer, so a word whose piece was dropped is
segmented again into kept pieces (the model sees more, smaller tokens). The other way keeps the parent's
tokenizer and every token sequence unchanged, and gives each dropped piece one of the kept embedding rows
(the same parameter count: an id map of ints instead of the dropped rows). This benchmark measures both on the
same kept pieces (the trim step's selection at --size of the parent's parameters):

  parent         the parent, fp32
  trim           xlembed's trim (re-segmentation), the folder vocab.trim_vocabulary writes
  alias-nearest  parent tokenization; a dropped piece's row is replaced by the kept row nearest to it (cosine)
  alias-mean     parent tokenization; a dropped piece's row is the mean of the kept rows the trim would split it into

Scores: Tatoeba top-1 (both directions) of the kept languages, loss against the parent in points.

    python benchmarks/trim_alias.py
    python benchmarks/trim_alias.py --data-root .cache/heldout-kept-root --out benchmarks/results/trim-alias/software

Each row goes to OUT/rows/NAME.json as it is measured (a rerun reuses it). Writes OUT/results.json and .md.
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

from compress_e5 import LANGS  # noqa: E402
from encode_speed import machine_info, versions  # noqa: E402
from int8_heldout import measured_rows, write_results  # noqa: E402

ROWS = ("parent", "trim", "alias-nearest", "alias-mean")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / ".cache" / "models" / "multilingual-e5-small"),
                   help="the parent model folder")
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"), help="folder with tatoeba/")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "trim-alias"))
    p.add_argument("--size", type=float, default=0.40, help="the trim's share of the parent's parameters")
    p.add_argument("--lang-weight", default="en=8", help="the trim's language weights (as compress_e5.py)")
    p.add_argument("--rows", default=",".join(ROWS), help=f"rows to measure (default all: {','.join(ROWS)})")
    return p.parse_args(argv)


def kept_languages(tatoeba: Path) -> list[str]:
    """The Tatoeba sets of the trim's languages (by canonical code: 'cmn' and 'zho' are both 'zh')."""
    from xlembed.eval.data import tatoeba_languages
    from xlembed.langs.codes import canonical_or_none

    kept = set(LANGS.split(",")) - {"en"}
    return [c for c in tatoeba_languages(tatoeba) if canonical_or_none(c) in kept]


def trimmed_folder(models: Path, size: float, parent: Path, weights) -> Path:
    """models/trim-SIZE: the trim step's model at SIZE of the parent's parameters, made when missing."""
    from xlembed.compress import vocab

    folder = models / f"trim-{size}"
    if not (folder / "compress.json").is_file():
        vocab.trim_vocabulary(parent, folder, LANGS, size=size, weights=weights)
    return folder


def checked_rows(parent: Path, tatoeba: Path, rows: str, known) -> list[str] | None:
    """The --rows asked for, or None (after saying why) when the model, the data or a row name is missing."""
    if not (parent / "model.safetensors").is_file():
        print(f"model missing: {parent}; run ../shared/tools/fetch-models {parent.parent}", file=sys.stderr)
        return None
    if not tatoeba.is_dir():
        print(f"no Tatoeba data in {tatoeba}: skipped (pass --data-root)", file=sys.stderr)
        return None
    wanted = [r.strip() for r in rows.split(",") if r.strip()]
    if [r for r in wanted if r not in known] or "parent" not in wanted:
        print(f"--rows {rows!r}: rows are {', '.join(known)}, and parent (the reference) must be one", file=sys.stderr)
        return None
    return wanted


def loss_summary(rows: dict) -> dict:
    """Per row but the parent: mean and worst Tatoeba loss against the parent, in points, and the worst language."""
    base = rows["parent"]["tatoeba"]
    summary = {}
    for name, row in rows.items():
        if name != "parent":
            loss = {k: round(base[k] - v, 2) for k, v in row["tatoeba"].items()}
            summary[name] = {"mean_loss": round(statistics.mean(loss.values()), 2), "max_loss": max(loss.values()),
                             "worst": max(loss, key=loss.get)}
    return summary


def aliased(parent: Path, trimmed: Path, how: str):
    """The parent's encoder with every row the trim dropped replaced in place (``how``: nearest or mean)."""
    import numpy as np
    import torch
    import xlembed
    from tokenizers import Tokenizer

    encoder = xlembed.load(str(parent), precision="fp32")
    st = encoder.model
    parent_vocab = st[0].tokenizer.backend_tokenizer.get_vocab()
    child = Tokenizer.from_file(str(trimmed / "tokenizer.json"))
    child_vocab = child.get_vocab()
    old_of = {new: parent_vocab[piece] for piece, new in child_vocab.items()}  # child id -> parent id
    weight = st[0].auto_model.get_input_embeddings().weight.data
    rows = weight.clone()
    kept = np.array(sorted(old_of.values()))
    dropped = np.setdiff1d(np.arange(len(parent_vocab)), kept)
    if how == "nearest":
        unit = torch.nn.functional.normalize(rows[kept], dim=1)
        for start in range(0, len(dropped), 4096):
            ids = dropped[start:start + 4096]
            best = (torch.nn.functional.normalize(rows[ids], dim=1) @ unit.T).argmax(1).numpy()
            weight[ids] = rows[kept[best]]
    else:
        piece_of = {i: piece for piece, i in parent_vocab.items()}
        for i in dropped:
            parts = [old_of[t.id] for t in child.model.tokenize(piece_of[int(i)])]
            if parts:
                weight[int(i)] = rows[parts].mean(0)
    return encoder, {"kept_pieces": int(len(kept)), "dropped_pieces": int(len(dropped))}


def measure(name: str, parent: Path, trimmed: Path, tatoeba: Path, langs: list[str]) -> dict:
    import xlembed
    from xlembed.eval.tasks import tatoeba as run_tatoeba

    started = time.perf_counter()
    facts: dict = {}
    if name == "parent":
        encoder = xlembed.load(str(parent), precision="fp32")
    elif name == "trim":
        encoder = xlembed.load(str(trimmed), precision="fp32")
    else:
        encoder, facts = aliased(parent, trimmed, name.split("-")[1])
    results = run_tatoeba(encoder, tatoeba, langs)
    return {"name": name, **facts, "seconds": round(time.perf_counter() - started, 1),
            "tatoeba": {r.language: round(r.scores["accuracy"], 2) for r in results}}


def markdown(rep: dict) -> str:
    rows = rep["rows"]
    langs = sorted(rows["parent"]["tatoeba"])
    lines = ["# Dropped pieces: re-segment (trim) or alias (parent tokenization)", "",
             f"Command: `{rep['command']}`", "",
             f"Machine: {rep['machine'].get('cpu')}, {rep['machine'].get('cores')} cores. Model: `{rep['model']}`, "
             f"trim at {rep['size']} of its parameters ({rep['kept_pieces']} pieces). Data: `{rep['tatoeba']}`. "
             "Top-1 both directions (%); losses against the parent in points.", "",
             "| row | mean loss | worst loss | " + " | ".join(langs) + " |",
             "| --- | ---: | ---: |" + " ---: |" * len(langs)]
    for name, row in rows.items():
        s = rep["summary"].get(name, {"mean_loss": 0, "max_loss": 0})
        cells = [str(row["tatoeba"][k]) if name == "parent" else f"{row['tatoeba'][k] - rows['parent']['tatoeba'][k]:+.2f}"
                 for k in langs]
        lines.append(f"| {name} | {s['mean_loss']} | {s['max_loss']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from xlembed.compress.languages import parse_weights

    parent = Path(args.model)
    tatoeba = Path(args.data_root) / "tatoeba"
    wanted = checked_rows(parent, tatoeba, args.rows, ROWS)
    if wanted is None:
        return 2
    langs = kept_languages(tatoeba)
    out = Path(args.out)
    trimmed = trimmed_folder(out / "models", args.size, parent, parse_weights(args.lang_weight) or None)
    command = shlex.join(["python", "benchmarks/trim_alias.py", *sys.argv[1:]])
    rows = measured_rows(out, wanted, lambda name: measure(name, parent, trimmed, tatoeba, langs), command)
    summary = loss_summary(rows)
    record = json.loads((trimmed / "compress.json").read_text(encoding="utf-8"))
    report = {"command": command, "machine": machine_info(), "versions": versions(), "model": parent.name,
              "size": args.size, "kept_pieces": record["steps"][0]["pieces"]["child"], "tatoeba": str(tatoeba),
              "rows": rows, "summary": summary}
    write_results(out, report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
