#!/usr/bin/env python
"""Make an English model multilingual: distil all-MiniLM-L6-v2 (teacher) into multilingual-e5-small
(student) on de/ja/zh/fr parallel sentences, and measure before/after; then compare training
throughput with sentence-transformers' own MSELoss training on the same data.

    make bench-distill   # = python benchmarks/distill_minilm_multilingual.py
    python benchmarks/distill_minilm_multilingual.py --throughput-pairs 0   # quality only (12,000 pairs/lang, 2 epochs)
    python benchmarks/distill_minilm_multilingual.py --throughput-only --throughput-pairs 800   # quiet machine

Figures (Tatoeba top-1 both directions averaged, full 1000 pairs; STS17 Spearman x100):
- teacher and untrained student: their own Tatoeba and STS17 en-en;
- warm start alone (the ridge map the training starts from): cross-model Tatoeba, student(xx) -> teacher(eng);
- distilled student: cross-model Tatoeba, its own Tatoeba, STS17 en-en; the dev split figures;
- with --also-interpolate: the same figures for other mixes (1-a) x warm start + a x kept weights of the
  same run (the warm start is rebuilt from its deterministic map; a = 1 is the kept weights alone);
- throughput: sentences/s per epoch after the first, xlembed vs sentence-transformers' trainer with
  MSELoss (same student with the same warm-start head, same pairs, batch size, max length, frozen
  word embeddings, teacher labels computed once before training), and the ratio.
Results go to benchmarks/results/distill/ as JSON and Markdown with the command and machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from encode_speed import machine_info, versions  # noqa: E402

import xlembed  # noqa: E402
from xlembed.distill.cross_eval import cross_model_tatoeba  # noqa: E402
from xlembed.distill.data import read_parallel, resolve_files, split_dev  # noqa: E402
from xlembed.distill.run import TATOEBA_CODES, distill, trained_encoder  # noqa: E402
from xlembed.distill.teacher_cache import TeacherCache  # noqa: E402
from xlembed.distill.train import (  # noqa: E402
    TrainConfig, build_student, fit_head, raw_student, train_student, warm_start_rows,
)
from xlembed.eval.cache import EmbeddingCache  # noqa: E402
from xlembed.eval.tasks import sts, tatoeba  # noqa: E402

GOALS = {"deu": 85.0, "fra": 85.0, "cmn": 85.0, "jpn": 75.0}
STS_GOAL_SHARE = 0.97


def training_files(parallel: Path, codes, exclude: str) -> list[str]:
    """The ``*/*.en-XX.tsv`` files of the ``parallel`` folder for the language codes, less those whose corpus
    folder or file name is in the comma-separated ``exclude``: the files ``xlembed distill --train
    'PARALLEL/*/*.en-{de,ja,...}.tsv' --exclude EXCLUDE`` reads (the same function resolves them)."""
    return [str(f) for f in resolve_files([train_pattern(parallel, codes)], exclude)]


def train_pattern(parallel: Path, codes) -> str:
    """``PARALLEL/*/*.en-{de,ja}.tsv`` (no braces for one code: ``{de}`` would be literal text)."""
    codes = list(codes)
    alternatives = codes[0] if len(codes) == 1 else "{" + ",".join(codes) + "}"
    return f"{parallel}/*/*.en-{alternatives}.tsv"


def recipe_config(args) -> TrainConfig:
    """The training settings of this benchmark, i.e. of the README's documented ``xlembed distill`` command."""
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, head_lr=args.head_lr,
                       max_length=args.max_length, eval_every=args.eval_every,
                       freeze_embeddings=not args.train_embeddings, dropout=args.dropout, checkpoint_every=200,
                       warm_start_fit=args.warm_start_fit, contrastive_weight=args.contrastive_weight,
                       interpolate=args.interpolate)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", default=str(REPO / ".cache" / "models"))
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "distill"))
    p.add_argument("--langs", default="de,ja,zh,fr")
    p.add_argument("--pairs-per-lang", type=int, default=12000)
    p.add_argument("--dev-size", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--head-lr", type=float, default=TrainConfig.head_lr)
    p.add_argument("--warm-start-fit", default="both", choices=["english", "both"])
    p.add_argument("--contrastive-weight", type=float, default=0.0)
    p.add_argument("--interpolate", type=float, default=TrainConfig.interpolate,
                   help="output weights = (1-A) x warm start + A x trained (WiSE-FT)")
    p.add_argument("--also-interpolate", default="",
                   help="comma-separated trained-weight shares a to evaluate besides --interpolate (the saved model "
                        "keeps --interpolate): (1-a) x warm start + a x kept weights, one row each; 1 = the kept weights")
    p.add_argument("--max-chars", type=int, default=150,
                   help="drop pairs with a side longer than this (long pairs are truncated for the student, not the teacher)")
    p.add_argument("--exclude-corpora", default="kyoto_wiki_enja,multi30k.en-fr.tsv",
                   help="comma-separated corpus folders (or single file names) of data/parallel not to train on "
                        "(kyoto_wiki_enja: Wikipedia titles and long encyclopedic lines, 83%% of the ja data; "
                        "multi30k.en-fr.tsv: image captions, 58%% of the fr pairs: +1.6 cross-model fra without them)")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=200, help="dev evaluation every N steps (~25 s each)")
    p.add_argument("--train-embeddings", action="store_true", help="train the word-embedding table too (slower)")
    p.add_argument("--dropout", action=argparse.BooleanOptionalAction, default=False, help="train the student with its dropout on (default: off, measured better)")
    p.add_argument("--throughput-pairs", type=int, default=800, help="pairs of the speed comparison (0: skip it)")
    p.add_argument("--throughput-only", action="store_true",
                   help="run only the speed comparison (writes throughput.json/.md; run it on a quiet machine)")
    p.add_argument("--tatoeba-limit", type=int, default=None)
    return p.parse_args(argv)


def own_tatoeba(encoder, folder, langs, limit) -> dict:
    return {r.language: round(r.scores["accuracy"], 2) for r in tatoeba(encoder, folder, langs, limit=limit, cache=EmbeddingCache())}


def sts_en_en(encoder, folder) -> float:
    return round(sts(encoder, Path(folder) / "STS17.en-en.tsv")[0].scores["spearman"], 2)


def main(argv=None) -> int:
    args = parse_args(argv)
    models, data = Path(args.models_dir), Path(args.data_root)
    teacher_dir, student_dir = models / "all-MiniLM-L6-v2", models / "multilingual-e5-small"
    if not (teacher_dir / "model.safetensors").is_file() or not (student_dir / "model.safetensors").is_file():
        print(f"models missing in {models}: run ../shared/tools/fetch-models {models}", file=sys.stderr)
        return 2
    if not (data / "parallel").is_dir():
        print(f"data missing: {data}/parallel (keep ../shared beside the repo)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    codes = [c.strip() for c in args.langs.split(",") if c.strip()]
    t_langs = [TATOEBA_CODES[c] for c in codes if c in TATOEBA_CODES]
    train_files = training_files(data / "parallel", codes, args.exclude_corpora)
    command = shlex.join(["python", "benchmarks/distill_minilm_multilingual.py", *sys.argv[1:]])
    cache_root = REPO / ".cache" / "teacher"
    config = recipe_config(args)
    report = {"command": command, "machine": machine_info(), "versions": versions(),
              "settings": {**vars(args), "train": train_files, "config": config.__dict__}}
    started = time.perf_counter()

    teacher = xlembed.load(str(teacher_dir))
    student = xlembed.load(str(student_dir))
    tato = data / "tatoeba"
    if args.throughput_only:
        pairs = read_parallel(train_files, max_pairs_per_lang=args.pairs_per_lang, max_chars=args.max_chars, seed=config.seed)
        train_pairs, _ = split_dev(pairs, args.dev_size, seed=config.seed)
        report["throughput"] = throughput(teacher, student, train_pairs[: args.throughput_pairs], config, cache_root)
        report["seconds"] = round(time.perf_counter() - started, 1)
        (out / "throughput.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        (out / "throughput.md").write_text(throughput_markdown(report), encoding="utf-8")
        print(throughput_markdown(report))
        return 0
    print("before: teacher and untrained student", file=sys.stderr)
    report["before"] = {
        "teacher_tatoeba": own_tatoeba(teacher, tato, t_langs, args.tatoeba_limit),
        "student_tatoeba": own_tatoeba(student, tato, t_langs, args.tatoeba_limit),
        "teacher_sts17_en_en": sts_en_en(teacher, data / "sts17"),
        "student_sts17_en_en": sts_en_en(student, data / "sts17"),
    }

    print("distilling", file=sys.stderr)
    model_dir = out / "model"
    summary = distill(teacher=str(teacher_dir), student=str(student_dir), train=train_files, out=model_dir,
                      dev_size=args.dev_size, max_chars=args.max_chars, max_pairs_per_lang=args.pairs_per_lang, config=config,
                      overwrite=True, tatoeba_dir=tato, tatoeba_limit=args.tatoeba_limit, cache_root=cache_root,
                      progress=sys.stderr.isatty(), command=command)
    report["distill"] = {k: summary[k] for k in ("data", "training", "dev_evals", "tatoeba", "seconds")}

    # the warm start alone: the map the training started from (same rows, same teacher cache), and the
    # other fit for comparison; the map takes the student's vectors before its Normalize, as in training
    pairs = read_parallel(train_files, max_pairs_per_lang=args.pairs_per_lang, max_chars=args.max_chars, seed=config.seed)
    train_pairs, _ = split_dev(pairs, args.dev_size, seed=config.seed)
    cache = TeacherCache(cache_root, teacher)
    raw, prefix = raw_student(student), student.resolve_prompt(None)
    report["warm_start_cross_tatoeba"], heads = {}, {}
    for fit in ("english", "both"):
        fit_texts, fit_en = warm_start_rows(train_pairs, dataclasses.replace(config, warm_start_fit=fit))
        heads[fit] = fit_head(student, cache.get(fit_en), fit_texts, prefix, config.warm_start_alpha)
        warm = cross_model_tatoeba(raw, teacher, tato, t_langs, args.tatoeba_limit, mapping=heads[fit], student_prompt=prefix)
        report["warm_start_cross_tatoeba"][fit] = {r.language: round(r.scores["accuracy"], 2) for r in warm}

    trained = xlembed.load(str(model_dir))
    report["after"] = {
        "cross_tatoeba": {r["language"]: r["tatoeba_cross_to_teacher"] for r in summary["tatoeba"]},
        "student_tatoeba": {r["language"]: r["tatoeba_own"] for r in summary["tatoeba"]},
        "student_sts17_en_en": sts_en_en(trained, data / "sts17"),
    }
    also = [float(a) for a in args.also_interpolate.split(",") if a.strip() and float(a) != args.interpolate]
    if also:
        print(f"other interpolations: {also}", file=sys.stderr)
        start = build_student(student, heads[config.warm_start_fit], normalize=True)
        report["other_interpolations"] = other_interpolations(trained, start, args.interpolate, also, student, teacher,
                                                              data, t_langs, args.tatoeba_limit)
    if args.throughput_pairs:
        print("throughput: xlembed vs sentence-transformers MSELoss", file=sys.stderr)
        report["throughput"] = throughput(teacher, student, train_pairs[: args.throughput_pairs], config, cache_root)
    report["goals"] = goals(report)
    report["seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


def other_interpolations(trained, start, saved_share: float, shares, student, teacher, data: Path, langs,
                         limit) -> list[dict]:
    """Figures of (1-a) x warm start + a x kept weights for each share a, from the saved output (saved_share) and
    the warm start rebuilt from its (deterministic) map: kept = start + (output - start) / saved_share."""
    import torch

    start_state = {k: v.detach().clone() for k, v in start.state_dict().items()}
    output_state = trained.model.state_dict()
    rows = []
    for a in shares:
        with torch.no_grad():
            start.load_state_dict({k: torch.lerp(v, output_state[k], a / saved_share) if v.is_floating_point() else v
                                   for k, v in start_state.items()})
        encoder = trained_encoder(start, student, teacher, f"distilled-interpolate-{a:g}")
        results = cross_model_tatoeba(encoder, teacher, data / "tatoeba", langs, limit)
        rows.append({
            "interpolate": a,
            "cross_tatoeba": {r.language: round(r.scores["accuracy"], 2) for r in results},
            "student_tatoeba": {r.language: round(r.scores["own_accuracy"], 2) for r in results},
            "student_sts17_en_en": sts_en_en(encoder, data / "sts17"),
        })
    return rows


def throughput(teacher, student, pairs, config: TrainConfig, cache_root: Path) -> dict:
    """Two epochs each on the same pairs; the second epoch's sentences/s is compared (the first pays set-up)."""
    import dataclasses
    import tempfile

    # sentence-transformers' trainer keeps the student's dropout on: compare like with like
    cfg = dataclasses.replace(config, epochs=2, eval_every=0, checkpoint_every=0, patience=None, max_steps=None, dropout=True)
    with tempfile.TemporaryDirectory() as work:
        _, result = train_student(student, teacher, pairs, [], Path(work) / "x", cfg, cache_root=cache_root, progress=False)
    n_sentences = 2 * len(pairs)
    ours = [round(n_sentences / s, 2) for s in result.epoch_seconds]
    theirs = st_mse_epochs(teacher, student, pairs, cfg, cache_root)
    return {
        "pairs": len(pairs), "sentences_per_epoch": n_sentences, "batch_size": cfg.batch_size,
        "max_length": cfg.max_length, "frozen_word_embeddings": cfg.freeze_embeddings,
        "xlembed_sentences_per_s": ours, "st_sentences_per_s": theirs,
        "ratio_epoch2": round(ours[-1] / theirs[-1], 2),
    }


def st_mse_epochs(teacher, student, pairs, cfg: TrainConfig, cache_root: Path) -> list[float]:
    """sentence-transformers' trainer + MSELoss, the documented multilingual distillation recipe."""
    import tempfile

    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments, losses
    from transformers import TrainerCallback

    from xlembed.distill.train import build_student

    prefix = student.resolve_prompt(None)
    cache = TeacherCache(cache_root, teacher)
    labels = cache.get([p.en for p in pairs])
    fit_en = sorted({p.en for p in pairs})[: cfg.warm_start_sentences]
    head = fit_head(student, cache.get(fit_en), fit_en, prefix, cfg.warm_start_alpha)
    model = build_student(student, head, normalize=True)
    model.max_seq_length = cfg.max_length
    if cfg.freeze_embeddings:
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    dataset = Dataset.from_dict({"english": [prefix + p.en for p in pairs], "non_english": [prefix + p.other for p in pairs],
                                 "label": [row.tolist() for row in labels]})
    times: list[float] = []

    class EpochTimer(TrainerCallback):
        def on_epoch_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

    with tempfile.TemporaryDirectory() as work:
        arguments = SentenceTransformerTrainingArguments(
            output_dir=work, num_train_epochs=2, per_device_train_batch_size=cfg.batch_size // 2,
            learning_rate=cfg.lr, warmup_steps=cfg.warmup, weight_decay=cfg.weight_decay,
            max_grad_norm=cfg.max_grad_norm, save_strategy="no", report_to="none", logging_steps=10_000,
            seed=cfg.seed, use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
        )
        trainer = SentenceTransformerTrainer(model=model, args=arguments, train_dataset=dataset,
                                             loss=losses.MSELoss(model), callbacks=[EpochTimer()])
        torch.manual_seed(cfg.seed)
        trainer.train()
    return [round(2 * len(pairs) / s, 2) for s in times]


def throughput_line(t: dict) -> str:
    return (f"Training throughput ({t['pairs']} pairs, 2 epochs, batch {t['batch_size']} sentences, max length "
            f"{t['max_length']}, word embeddings {'frozen' if t['frozen_word_embeddings'] else 'trained'}): xlembed "
            f"{t['xlembed_sentences_per_s']} sentences/s per epoch, sentence-transformers MSELoss {t['st_sentences_per_s']}; "
            f"epoch 2 ratio {t['ratio_epoch2']}x (goal >= 1.5x).")


def throughput_markdown(rep: dict) -> str:
    m = rep["machine"]
    return "\n".join([
        "### Distillation training throughput: xlembed vs sentence-transformers (MSELoss)", "",
        throughput_line(rep["throughput"]), "",
        f"Command: `{rep['command']}`; machine: {m.get('cpu', '')} ({m.get('cores', '')} cores); {rep['seconds']} s.", "",
    ])


def other_interpolations_markdown(rep: dict, langs) -> list[str]:
    """The output and the other shares of the same run, one row each (figures of the goals)."""
    a = rep["after"]
    rows = [{"interpolate": rep["settings"]["interpolate"], **a}, *rep["other_interpolations"]]
    lines = ["Other interpolations of the same run ((1-a) x warm start + a x kept weights; the output is "
             f"a = {rep['settings']['interpolate']}):", "",
             "| a | " + " | ".join(f"cross {lang}" for lang in langs) + " | "
             + " | ".join(f"own {lang}" for lang in langs) + " | STS17 en-en |",
             "| ---: | " + " | ".join(["---:"] * (2 * len(langs) + 1)) + " |"]
    for r in sorted(rows, key=lambda r: r["interpolate"]):
        lines.append(f"| {r['interpolate']:g} | " + " | ".join(str(r["cross_tatoeba"][lang]) for lang in langs) + " | "
                     + " | ".join(str(r["student_tatoeba"][lang]) for lang in langs) + f" | {r['student_sts17_en_en']} |")
    notes = [f"- a = {r['interpolate']:g}: {r['note']}" for r in rows if r.get("note")]
    return lines + [""] + (notes + [""] if notes else [])


def goals(report: dict) -> list[dict]:
    out = []
    cross = report["after"]["cross_tatoeba"]
    for lang, target in GOALS.items():
        if lang in cross:
            out.append({"goal": f"cross-model Tatoeba {lang} >= {target}", "value": cross[lang], "met": cross[lang] >= target})
    before, after = report["before"]["student_tatoeba"], report["after"]["student_tatoeba"]
    for lang in after:
        out.append({"goal": f"own Tatoeba {lang} within 2 points of the untrained student ({before[lang]})",
                    "value": after[lang], "met": after[lang] >= before[lang] - 2})
    target = round(STS_GOAL_SHARE * report["before"]["teacher_sts17_en_en"], 2)
    value = report["after"]["student_sts17_en_en"]
    out.append({"goal": f"STS17 en-en >= 97% of the teacher ({target})", "value": value, "met": value >= target})
    if "throughput" in report:
        ratio = report["throughput"]["ratio_epoch2"]
        out.append({"goal": "training throughput >= 1.5x sentence-transformers (epoch 2)", "value": ratio, "met": ratio >= 1.5})
    return out


def markdown(rep: dict) -> str:
    b, a, ws_all = rep["before"], rep["after"], rep["warm_start_cross_tatoeba"]
    fit = rep["settings"]["config"].get("warm_start_fit", "english")
    w, w_en = ws_all[fit], ws_all["english"]
    d = rep["distill"]
    tr = d["training"]
    langs = list(a["cross_tatoeba"])
    lines = [
        "### Distillation: all-MiniLM-L6-v2 (English teacher) -> multilingual-e5-small",
        "",
        f"Data: {d['data']['train_pairs']} training / {d['data']['dev_pairs']} dev pairs "
        f"({', '.join(f'{k}={v}' for k, v in d['data']['pairs_per_language'].items())}); "
        f"{tr['steps']} steps ({tr['epochs_done']} epochs, stopped: {tr['stopped']}), training {tr['seconds']} s "
        f"({tr['sentences_per_second']} sentences/s); whole benchmark {rep['seconds']} s.",
        "",
        f"Recipe: lr {rep['settings']['lr']} (projection {rep['settings']['head_lr']}), batch {rep['settings']['batch_size']} "
        f"sentences, max length {rep['settings']['max_length']}, word embeddings "
        f"{'trained' if rep['settings']['train_embeddings'] else 'frozen'}, dropout "
        f"{'on' if rep['settings'].get('dropout', not rep['settings'].get('no_dropout', False)) else 'off'}, warm-start map fitted on {fit}, contrastive "
        f"weight {rep['settings'].get('contrastive_weight', 0.0)}, output = "
        f"{rep['settings'].get('interpolate', 1.0)} x trained + the rest warm start; pairs with a side over {rep['settings'].get('max_chars')} "
        f"characters dropped; corpora left out: {rep['settings'].get('exclude_corpora') or 'none'}.",
        "",
        "Tatoeba top-1 (%, both directions averaged):",
        "",
        "| language | teacher own | student own, untrained | warm start cross, English-only map | "
        f"warm start cross, the start ({fit}) | distilled cross | distilled own |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for lang in langs:
        lines.append(f"| {lang} | {b['teacher_tatoeba'].get(lang)} | {b['student_tatoeba'].get(lang)} | {w_en.get(lang)} | {w.get(lang)} "
                     f"| {a['cross_tatoeba'][lang]} | {a['student_tatoeba'][lang]} |")
    lines += ["", f"STS17 en-en Spearman: teacher {b['teacher_sts17_en_en']}, untrained student {b['student_sts17_en_en']}, "
                  f"distilled {a['student_sts17_en_en']}.", ""]
    ws, best, final = tr.get("warm_start") or {}, tr.get("best") or {}, tr.get("final") or tr.get("best") or {}
    if ws:
        lines += [f"Dev split: MSE {ws['dev_mse']:.5f} -> {best['dev_mse']:.5f} -> {final['dev_mse']:.5f}; student(xx) finds "
                  f"teacher(en) {ws['dev_xx_to_teacher_en']:.1f} -> {best['dev_xx_to_teacher_en']:.1f} -> "
                  f"{final['dev_xx_to_teacher_en']:.1f} % (warm start -> kept weights, step {best['step']} -> output).", ""]
    if "throughput" in rep:
        lines += [throughput_line(rep["throughput"]), ""]
    if rep.get("other_interpolations"):
        lines += other_interpolations_markdown(rep, langs)
    lines += ["Goals:", ""] + [f"- {g['goal']}: {'met' if g['met'] else 'NOT met'} ({g['value']})" for g in rep["goals"]]
    m = rep["machine"]
    lines += ["", f"Command: `{rep['command']}`; machine: {m.get('cpu', '')} ({m.get('cores', '')} cores)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
