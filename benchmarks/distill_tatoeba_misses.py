#!/usr/bin/env python
"""Where does a distilled student miss on cross-model Tatoeba? For each language, the student(xx) ->
teacher(eng) top-1 misses, how many land on an English sentence the teacher finds nearly the same
(cosine > 0.9: a paraphrase, e.g. 'everyone' / 'everybody') and the first misses, to read.

    python benchmarks/distill_tatoeba_misses.py --model benchmarks/results/distill/model --langs fra,deu

Writes OUT/misses.json and OUT/misses.md (OUT defaults to the model folder: they quote Tatoeba sentences,
so they stay out of git like the model).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from encode_speed import machine_info  # noqa: E402

import xlembed  # noqa: E402
from xlembed.encoder import l2_normalize  # noqa: E402
from xlembed.eval.data import read_tatoeba  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the distilled student folder")
    p.add_argument("--teacher", default=str(REPO / ".cache" / "models" / "all-MiniLM-L6-v2"))
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "tatoeba"))
    p.add_argument("--langs", default="fra,deu")
    p.add_argument("--show", type=int, default=25, help="misses listed per language")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if not Path(args.data).is_dir() or not Path(args.model).is_dir():
        print(f"missing: {args.data} or {args.model} (run the distillation benchmark first)", file=sys.stderr)
        return 2
    student, teacher = xlembed.load(args.model), xlembed.load(args.teacher)
    report = {"command": shlex.join(["python", "benchmarks/distill_tatoeba_misses.py", *sys.argv[1:]]),
              "machine": machine_info().get("cpu") or "unknown CPU",
              "languages": {}}
    lines = [f"### Cross-model Tatoeba misses: {args.model}", ""]
    for lang in [c.strip() for c in args.langs.split(",") if c.strip()]:
        xx, en = read_tatoeba(args.data, lang)
        s = l2_normalize(np.asarray(student.encode(xx), dtype=np.float32))
        t = l2_normalize(np.asarray(teacher.encode(en), dtype=np.float32))
        pred = (s @ t.T).argmax(axis=1)
        found_cos = np.sum(t[pred] * t, axis=1)  # teacher cosine of the found English sentence to the gold one
        misses = [i for i in range(len(xx)) if pred[i] != i]
        near = [i for i in misses if found_cos[i] > 0.9]
        report["languages"][lang] = {
            "pairs": len(xx), "xx_to_eng_top1": round(100 * (1 - len(misses) / len(xx)), 2),
            "misses": len(misses), "misses_on_paraphrase": len(near),
            "examples": [{"xx": xx[i], "gold": en[i], "found": en[pred[i]],
                          "teacher_cosine": round(float(found_cos[i]), 3)} for i in misses[:args.show]],
        }
        r = report["languages"][lang]
        lines += [f"{lang}: student(xx) -> teacher(eng) top-1 {r['xx_to_eng_top1']}%, {r['misses']} misses, "
                  f"{r['misses_on_paraphrase']} on an English sentence with teacher cosine > 0.9 to the gold one.", "",
                  "| xx | gold | found | teacher cos |", "| --- | --- | --- | ---: |"]
        lines += [f"| {e['xx']} | {e['gold']} | {e['found']} | {e['teacher_cosine']} |".replace("\n", " ")
                  for e in r["examples"]]
        lines.append("")
    lines.append(f"Command: `{report['command']}`; machine: {report['machine']}.")
    out = Path(args.out) if args.out else Path(args.model)
    out.mkdir(parents=True, exist_ok=True)
    (out / "misses.json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (out / "misses.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join([lines[0]] + [ln for ln in lines if ln.startswith(tuple(report["languages"]))]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
