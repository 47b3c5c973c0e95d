#!/usr/bin/env python
"""One small distillation run per call, to compare recipes quickly (~6-11 min each on 2 cores).

Teacher all-MiniLM-L6-v2, student multilingual-e5-small, de/ja/zh/fr, ``--pairs-per-lang`` pairs per
language (default 1500), 500 dev pairs, batch 64 sentences, max length 64, frozen word embeddings.
Each call appends one row to benchmarks/results/distill-sweep/runs.jsonl and rewrites runs.md:
cross-model Tatoeba (student(xx) finds teacher(eng)), the student's own Tatoeba, STS17 en-en, the
mean cosine of student(eng) to teacher(eng) on Tatoeba, and the dev figures at the start and the end.

    python benchmarks/distill_recipe_sweep.py --tag base --warm-start-fit english
    python benchmarks/distill_recipe_sweep.py --tag short --warm-start-fit both --lr 2e-4 --head-lr 1e-3 \\
        --max-chars 150 --exclude-corpora kyoto_wiki_enja
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from distill_minilm_multilingual import training_files  # noqa: E402
from encode_speed import machine_info  # noqa: E402

import xlembed  # noqa: E402
from xlembed.train.checkpoint import START_WEIGHTS  # noqa: E402
from xlembed.distill.cross_eval import cross_model_tatoeba  # noqa: E402
from xlembed.distill.data import read_parallel, split_dev  # noqa: E402
from xlembed.distill.run import trained_encoder  # noqa: E402
from xlembed.distill.train import TrainConfig, interpolate_weights, train_student  # noqa: E402
from xlembed.eval.tasks import sts, tatoeba  # noqa: E402

LANGS = {"de": "deu", "fr": "fra", "zh": "cmn", "ja": "jpn"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tag", required=True, help="name of the row")
    p.add_argument("--models-dir", default=str(REPO / ".cache" / "models"))
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "distill-sweep"))
    p.add_argument("--pairs-per-lang", type=int, default=1500)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--head-lr", type=float, default=1e-4)
    p.add_argument("--warm-start-fit", default="english", choices=["english", "both"])
    p.add_argument("--contrastive-weight", type=float, default=0.0)
    p.add_argument("--max-chars", type=int, default=1000)
    p.add_argument("--exclude-corpora", default="", help="comma-separated corpus folders (or single file names, e.g. multi30k.en-fr.tsv) of data/parallel to leave out")
    p.add_argument("--train-embeddings", action="store_true")
    p.add_argument("--dropout", action=argparse.BooleanOptionalAction, default=False, help="train the student with its dropout on (default: off, measured better)")
    p.add_argument("--freeze-layers", type=int, default=0, help="keep the embeddings and the lowest N layers fixed")
    p.add_argument("--interpolate", default="",
                   help="comma-separated weights a: also evaluate (1-a) x warm start + a x trained weights (WiSE-FT), "
                        "one row each (the first row is always the trained weights, a=1)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    models, data = Path(args.models_dir), Path(args.data_root)
    if not (models / "multilingual-e5-small" / "model.safetensors").is_file() or not (data / "parallel").is_dir():
        print(f"models or data missing: run ../shared/tools/fetch-models {models}; keep ../shared beside the repo",
              file=sys.stderr)
        return 2
    teacher = xlembed.load(str(models / "all-MiniLM-L6-v2"))
    student = xlembed.load(str(models / "multilingual-e5-small"))
    files = training_files(data / "parallel", LANGS, args.exclude_corpora)
    pairs = read_parallel(files, max_pairs_per_lang=args.pairs_per_lang, max_chars=args.max_chars, seed=0)
    train, dev = split_dev(pairs, 500, seed=0)
    config = TrainConfig(batch_size=64, lr=args.lr, head_lr=args.head_lr, max_length=64,
                         freeze_embeddings=not args.train_embeddings, dropout=args.dropout, freeze_layers=args.freeze_layers, eval_every=100, checkpoint_every=0,
                         warm_start_fit=args.warm_start_fit, epochs=args.epochs, patience=None,
                         contrastive_weight=args.contrastive_weight, interpolate=1.0)
    command = shlex.join(["python", "benchmarks/distill_recipe_sweep.py", *(argv if argv is not None else sys.argv[1:])])
    with tempfile.TemporaryDirectory() as work:
        model, result = train_student(student, teacher, train, dev, Path(work) / "run", config,
                                      cache_root=REPO / ".cache" / "teacher", progress=False)
        rows = [evaluate_row(args.tag, model, student, teacher, data, command, len(train), result)]
        trained_state = {k: v.clone() for k, v in model.state_dict().items()}
        for a in [float(a) for a in args.interpolate.split(",") if a]:
            model.load_state_dict(trained_state)
            interpolate_weights(model, Path(work) / "run" / START_WEIGHTS, a)
            rows.append(evaluate_row(f"{args.tag}-wise{a:g}", model, student, teacher, data, command, len(train), result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "runs.jsonl", "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    every = [json.loads(line) for line in (out / "runs.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    (out / "runs.md").write_text(markdown(every), encoding="utf-8")
    print(markdown(rows))
    return 0


def evaluate_row(tag, model, student, teacher, data: Path, command: str, n_train: int, result) -> dict:
    trained = trained_encoder(model, student, teacher, f"sweep-{tag}")
    tato, langs = data / "tatoeba", list(LANGS.values())
    cross = cross_model_tatoeba(trained, teacher, tato, langs)
    own = tatoeba(trained, tato, langs)
    return {
        "tag": tag, "command": command,
        "train_pairs": n_train, "steps": result.steps, "train_seconds": result.seconds,
        "cross": {r.language: round(r.scores["accuracy"], 1) for r in cross},
        "own": {r.language: round(r.scores["accuracy"], 1) for r in own},
        "sts17_en_en": round(sts(trained, data / "sts17" / "STS17.en-en.tsv")[0].scores["spearman"], 2),
        "english_cosine": round(float(np.mean([r.scores["english_cosine"] for r in cross])), 3),
        "dev_start": result.warm_start, "dev_kept": result.best, "machine": machine_info().get("cpu"),
    }


def markdown(rows: list[dict]) -> str:
    langs = list(LANGS.values())
    lines = [
        "### Distillation recipe sweep: all-MiniLM-L6-v2 -> multilingual-e5-small (one row per run)", "",
        "Tatoeba top-1 (full 1,000 pairs, both directions); cross = student(xx) finds teacher(eng); "
        "english cos = mean cosine student(eng)·teacher(eng); dev = student(xx) finds teacher(en) on 500 dev pairs. "
        "Rows whose command has neither --dropout nor --no-dropout ran with the student's dropout on (the default "
        "until dropout off measured better): add --dropout to rerun them.", "",
        "| run | steps | " + " | ".join(f"cross {lang}" for lang in langs) + " | "
        + " | ".join(f"own {lang}" for lang in langs) + " | STS17 en-en | english cos | dev start -> kept |",
        "| --- | ---: | " + " | ".join(["---:"] * (2 * len(langs) + 3)) + " |",
    ]
    for r in rows:
        dev = f"{r['dev_start']['dev_xx_to_teacher_en']:.1f} -> {r['dev_kept']['dev_xx_to_teacher_en']:.1f}"
        lines.append(f"| {r['tag']} | {r['steps']} | " + " | ".join(str(r["cross"][lang]) for lang in langs) + " | "
                     + " | ".join(str(r["own"][lang]) for lang in langs)
                     + f" | {r['sts17_en_en']} | {r['english_cosine']} | {dev} |")
    lines += ["", "Commands:", ""] + [f"- {r['tag']}: `{r['command']}`" + (f" ({r['note']})" if r.get("note") else "")
                                      for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
