#!/usr/bin/env python
"""Cross-lingual fine-tuning of multilingual-e5-small: train in one language, measure every language.

Parts (each writes OUT/parts/NAME.json as soon as it is measured; a rerun reuses it, delete it to redo;
the trained models stay in OUT/models, ignored by git):
  sts     CoSENT on English STSb train only (dev: English STSb dev). Spearman x100 before/after on English STSb
          test, the 10 other STSb-multi test languages and JSTS (Japanese, JGLUE test): does English training
          carry over, and does Japanese not get worse (no forgetting)?
  nli     pair classification ([u, v, |u-v|, u*v] + linear head) on SICK English train (dev: SICK trial),
          tested on SICK English test and JSICK Japanese test (zero-shot); the same on JSICK Japanese train:
          the zero-shot gap = (trained on Japanese) - (trained on English), on the Japanese test.
  amazon  counterfactual detection trained on English (dev: English valid), tested on en, de, ja.
  kd      a 4-layer student (8 of the 12 layers of multilingual-e5-small dropped by measured importance;
          --kd-student teacher: of the teacher's fine-tuned encoder) distilled from the `nli` English model: soft
          labels (T=2, alpha=0.9) on SICK English train + the teacher's labels on unlabelled pairs (JSICK's
          Japanese training pairs, XNLI English dev, STSb English train, and --kd-augment: SICK train pairs
          reversed + 4 word-overlap neighbours per SICK train sentence, no dev/test pair), against the same student
          on the hard labels only; accuracy on SICK en / JSICK ja test and pairs/s of teacher and student (same run, torch fp32).

    python benchmarks/finetune_xling.py                 # everything (~1-1.5 h on 2 cores)
    python benchmarks/finetune_xling.py --parts nli,kd

Writes OUT/results.json and OUT/results.md (figures, goals of issue 17, the command, the machine).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from encode_speed import machine_info, versions  # noqa: E402

PARTS = ("nli", "kd", "sts", "amazon")
STSB_OTHER = ("de", "es", "fr", "it", "ja", "nl", "pl", "pt", "ru", "zh")
GOALS = {"jsts_max_drop": 1.0, "kd_share_of_teacher": 95.0, "kd_speedup": 2.5, "kd_over_hard": 1.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / ".cache" / "models" / "multilingual-e5-small"))
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "finetune"))
    p.add_argument("--parts", default=",".join(PARTS), help=f"parts to run (default all: {','.join(PARTS)})")
    p.add_argument("--epochs", type=int, default=2, help="epochs of every fine-tuning run")
    p.add_argument("--lr", type=float, default=3e-5, help="encoder learning rate of the fine-tuning runs")
    p.add_argument("--kd-epochs", type=int, default=3, help="epochs of the distilled students (the best dev "
                   "checkpoint is kept; no early stopping)")
    p.add_argument("--kd-alpha", type=float, default=0.9, help="weight of the soft-label loss of the KD student")
    p.add_argument("--kd-lr", type=float, default=1e-4, help="learning rate of the distilled students")
    p.add_argument("--kd-augment", type=int, default=4, help="the KD student's teacher-labelled pairs made from SICK "
                   "train (reversed + N word-overlap neighbours per sentence; -1: none)")
    p.add_argument("--drop-layers", type=int, default=8, help="layers the student drops (of 12)")
    p.add_argument("--kd-student", default="base", choices=("base", "teacher"),
                   help="the students' encoder before dropping layers: 'teacher' (the NLI model's fine-tuned encoder, "
                        "as DistilBERT starts from its teacher's layers) or 'base' (multilingual-e5-small)")
    p.add_argument("--speed-pairs", type=int, default=1000, help="test pairs timed for the teacher/student speed")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    data, out = Path(args.data_root), Path(args.out)
    model = Path(args.model)
    if not (model / "modules.json").is_file():
        sys.exit(f"model folder {model} not found: run ../shared/tools/fetch-models .cache/models first")
    if not data.is_dir():
        sys.exit(f"data folder {data} not found: the benchmark reads ../shared/data")
    (out / "parts").mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(parents=True, exist_ok=True)
    wanted = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in PARTS]
    if unknown:
        sys.exit(f"unknown parts {unknown}; parts: {', '.join(PARTS)}")
    runners = {"sts": part_sts, "nli": part_nli, "amazon": part_amazon, "kd": part_kd}
    for name in PARTS:
        path = out / "parts" / f"{name}.json"
        if name not in wanted or path.is_file():
            continue
        if name == "kd" and not (out / "models" / "nli-en" / "classifier.json").is_file():
            sys.exit("the kd part needs the nli part's English model: run --parts nli first")
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        figures = runners[name](args, data, out, model)
        figures["seconds"] = round(time.perf_counter() - started, 1)
        path.write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    write_results(args, out)


def _config(args, **overrides):
    from xlembed.finetune import FinetuneConfig

    values = {"epochs": args.epochs, "lr": args.lr, "eval_every": 50, "patience": 6, "checkpoint_every": 200}
    return FinetuneConfig(**{**values, **overrides})


def _train(out: Path, name: str, **kw) -> dict:
    from xlembed.finetune import finetune

    folder = out / "models" / name
    if (folder / "finetune_results.json").is_file():
        return json.loads((folder / "finetune_results.json").read_text(encoding="utf-8"))
    return finetune(out=folder, overwrite=True, progress=False, resume=_interrupted(folder), **kw)


def _interrupted(folder: Path) -> bool:
    """A killed run left a checkpoint beside its folder: continue it."""
    return (folder.with_name(f"{folder.name}.training") / "checkpoint" / "state.json").is_file()


def _sts_scores(model, data: Path) -> dict:
    """Spearman x100 on English STSb test, the 10 other STSb-multi test files, and JSTS test."""
    from xlembed.finetune import evaluate

    scores = {f"stsb-{lang}": evaluate(model, str(data / "stsb_multi_mt" / f"stsb-{lang}-test.csv"))["spearman"]
              for lang in ("en",) + STSB_OTHER}
    scores["jsts"] = evaluate(model, str(data / "jsts" / "test-v1.3.json"))["spearman"]
    return scores


def part_sts(args, data: Path, out: Path, model: Path) -> dict:
    stsb = data / "stsb_multi_mt"
    before = _sts_scores(model, data)
    summary = _train(out, "sts-en", model=str(model), task="sts", train=str(stsb / "stsb-en-train.csv"),
                     dev=str(stsb / "stsb-en-dev.csv"), config=_config(args))
    after = _sts_scores(out / "models" / "sts-en", data)
    rows = [{"test": k, "before": round(before[k], 2), "after": round(after[k], 2), "change": round(after[k] - before[k], 2)}
            for k in before]
    other_before = sum(before[f"stsb-{x}"] for x in STSB_OTHER) / len(STSB_OTHER)
    other_after = sum(after[f"stsb-{x}"] for x in STSB_OTHER) / len(STSB_OTHER)
    return {"rows": rows, "other_mean_before": round(other_before, 2), "other_mean_after": round(other_after, 2),
            "training": summary["training"]}


def _classify_rows(model_folder: Path, tests: dict) -> dict:
    from xlembed.finetune import transfer

    return {r["test"]: {k: r[k] for k in ("accuracy", "macro_f1", "n", "predicted", "collapsed")}
            for r in transfer(model_folder, tests)["rows"]}


def part_nli(args, data: Path, out: Path, model: Path) -> dict:
    jsick = data / "sick_jsick" / "jsick.tsv"
    tests = {"en": f"{jsick}::lang=en,split=test", "ja": f"{jsick}::lang=ja,split=test"}
    results = {}
    for lang in ("en", "ja"):
        summary = _train(out, f"nli-{lang}", model=str(model), task="pair-classify",
                         train=f"{jsick}::lang={lang},split=train", dev=f"{jsick}::lang={lang},split=trial",
                         config=_config(args))
        results[lang] = {"tests": _classify_rows(out / "models" / f"nli-{lang}", tests), "training": summary["training"]}
    gap = results["ja"]["tests"]["ja"]["accuracy"] - results["en"]["tests"]["ja"]["accuracy"]
    majority = {lang: _majority(f"{jsick}::lang={lang},split=test", "pair-classify") for lang in ("en", "ja")}
    return {"trained_on": results, "zero_shot_gap_ja": round(gap, 2), "majority_class": majority}


def _majority(spec: str, task: str) -> float:
    from xlembed.finetune import read_examples

    counts = read_examples(spec, task).label_counts()
    return round(100 * max(counts.values()) / sum(counts.values()), 2)


def part_amazon(args, data: Path, out: Path, model: Path) -> dict:
    folder = data / "amazon_counterfactual"
    summary = _train(out, "amazon-en", model=str(model), task="classify", train=str(folder / "EN_train.tsv"),
                     dev=str(folder / "EN_valid.tsv"), config=_config(args))
    tests = {"en": str(folder / "EN_test.tsv"), "de": str(folder / "DE_test.tsv"), "ja": str(folder / "JP_test.tsv")}
    return {"tests": _classify_rows(out / "models" / "amazon-en", tests), "training": summary["training"],
            "majority_class": {k: _majority(v, "classify") for k, v in tests.items()}}


def part_kd(args, data: Path, out: Path, model: Path) -> dict:
    from xlembed.finetune import distill_classifier, load_classifier, read_examples

    jsick = data / "sick_jsick" / "jsick.tsv"
    teacher = out / "models" / "nli-en"
    tests = {"en": f"{jsick}::lang=en,split=test", "ja": f"{jsick}::lang=ja,split=test"}
    student = str(teacher) if args.kd_student == "teacher" else str(model)
    common = dict(teacher=str(teacher), student=student, train=f"{jsick}::lang=en,split=train",
                  dev=f"{jsick}::lang=en,split=trial", drop_layers=args.drop_layers, temperature=2.0,
                  config=_config(args, epochs=args.kd_epochs, lr=args.kd_lr, patience=None), progress=False,
                  overwrite=True)
    # text pairs the teacher labels: JSICK's Japanese training pairs, XNLI English dev, STSb English train
    # (captions like SICK's); their labels are never read
    unlabeled = [f"{jsick}::lang=ja,split=train", str(data / "xnli_dev" / "dev-en.tsv"),
                 str(data / "stsb_multi_mt" / "stsb-en-train.csv")]
    runs = {}
    augment = args.kd_augment if args.kd_augment >= 0 else None
    for name, alpha, extra in (("kd", args.kd_alpha, unlabeled), ("hard", 0.0, [])):
        folder = out / "models" / f"nli-student-{name}"
        made = augment if alpha > 0 else None  # hard-label training has no use for pairs without labels
        if (folder / "finetune_results.json").is_file():
            summary = json.loads((folder / "finetune_results.json").read_text(encoding="utf-8"))
        else:  # the tests are given so that augmentation never makes a test pair
            summary = distill_classifier(out=folder, alpha=alpha, unlabeled=extra, resume=_interrupted(folder),
                                         augment=made, tests=tests if made is not None else None, **common)
        runs[name] = {"tests": _classify_rows(folder, tests), "training": summary["training"], "alpha": alpha,
                      "augment": made,
                      "unlabeled": summary["unlabeled"], "layers": summary["layers"], "student": args.kd_student}
    runs["teacher"] = {"tests": _classify_rows(teacher, tests)}
    pairs = read_examples(tests["en"], "pair-classify")
    a, b = pairs.texts_a[: args.speed_pairs], pairs.texts_b[: args.speed_pairs]
    speed = {}
    for name, folder in (("teacher", teacher), ("kd", out / "models" / "nli-student-kd")) * 2:
        clf = load_classifier(folder, precision="fp32", device="cpu")
        clf.logits(a[:64], b[:64])  # warm-up
        t0 = time.perf_counter()
        clf.logits(a, b)
        speed[name] = max(speed.get(name, 0.0), round(len(a) / (time.perf_counter() - t0), 1))
    runs["speed_pairs_per_s"] = speed
    return runs


# ---------------------------------------------------------------- results


def write_results(args, out: Path) -> None:
    parts = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((out / "parts").glob("*.json"))}
    command = shlex.join(["python", "benchmarks/finetune_xling.py", *sys.argv[1:]])
    results = {"command": command, "machine": machine_info(), "versions": versions(), "model": args.model,
               "parts": parts, "goals": goals(parts)}
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))


def goals(parts: dict) -> list[dict]:
    rows = []
    if "sts" in parts:
        p = parts["sts"]
        en = next(r for r in p["rows"] if r["test"] == "stsb-en")
        jsts = next(r for r in p["rows"] if r["test"] == "jsts")
        rows += [
            {"goal": "STS: English STSb test above the untrained model", "measured": f"{en['before']} -> {en['after']} ({en['change']:+.2f})", "met": en["change"] > 0},
            {"goal": "STS: mean of the 10 other STSb-multi languages above the untrained model",
             "measured": f"{p['other_mean_before']} -> {p['other_mean_after']} ({p['other_mean_after'] - p['other_mean_before']:+.2f})",
             "met": p["other_mean_after"] > p["other_mean_before"]},
            {"goal": f"STS: JSTS test not more than {GOALS['jsts_max_drop']} point below the untrained model",
             "measured": f"{jsts['before']} -> {jsts['after']} ({jsts['change']:+.2f})", "met": jsts["change"] >= -GOALS["jsts_max_drop"]},
        ]
    if "nli" in parts:
        p = parts["nli"]
        rows.append({"goal": "NLI: zero-shot gap on JSICK ja reported (ja-trained minus en-trained)",
                     "measured": f"{p['zero_shot_gap_ja']:+.2f} points", "met": True})
    if "kd" in parts:
        p = parts["kd"]
        for lang in ("en", "ja"):
            share = 100 * p["kd"]["tests"][lang]["accuracy"] / p["teacher"]["tests"][lang]["accuracy"]
            rows.append({"goal": f"KD: student >= {GOALS['kd_share_of_teacher']}% of the teacher's accuracy ({lang})",
                         "measured": f"{share:.1f}%", "met": share >= GOALS["kd_share_of_teacher"]})
            over = p["kd"]["tests"][lang]["accuracy"] - p["hard"]["tests"][lang]["accuracy"]
            rows.append({"goal": f"KD: >= {GOALS['kd_over_hard']} point above hard labels only ({lang})",
                         "measured": f"{over:+.2f}", "met": over >= GOALS["kd_over_hard"]})
        speed = p["speed_pairs_per_s"]
        ratio = speed["kd"] / speed["teacher"]
        rows.append({"goal": f"KD: student >= {GOALS['kd_speedup']}x faster", "measured": f"{ratio:.2f}x "
                     f"({speed['kd']} vs {speed['teacher']} pairs/s)", "met": ratio >= GOALS["kd_speedup"]})
    return rows


def _table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return lines


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = ["# Cross-lingual fine-tuning of multilingual-e5-small", "",
             f"Command: `{results['command']}`  ", f"Machine: {m.get('cpu')} ({m.get('cores', '?')} cores), "
             f"torch {results['versions'].get('torch')}", ""]
    parts = results["parts"]
    if "sts" in parts:
        t = parts["sts"]["training"]
        lines += ["## STS: trained on English STSb only (CoSENT), Spearman x100", "",
                  f"{t['steps']} steps, {t['seconds']} s, stopped: {t['stopped']}; dev Spearman "
                  f"{t['before']['dev_spearman']:.2f} -> {t['best']['dev_spearman']:.2f}", ""]
        lines += _table(parts["sts"]["rows"]) + ["", f"Mean of the 10 other STSb-multi languages: "
                                                      f"{parts['sts']['other_mean_before']} -> {parts['sts']['other_mean_after']}", ""]
    if "nli" in parts:
        p = parts["nli"]
        lines += ["## NLI: SICK (English) / JSICK (Japanese), accuracy and macro-F1 x100", ""]
        rows = []
        for trained, r in p["trained_on"].items():
            for test, f in r["tests"].items():
                rows.append({"trained on": trained, "test": test, "kind": "in-language" if test == trained else "zero-shot",
                             "accuracy": round(f["accuracy"], 2), "macro-F1": round(f["macro_f1"], 2),
                             "collapsed": f["collapsed"] or "-"})
        lines += _table(rows) + ["", f"Zero-shot gap on Japanese (trained on ja - trained on en): {p['zero_shot_gap_ja']:+.2f} "
                                     f"points. Majority class: {p['majority_class']}", ""]
    if "amazon" in parts:
        p = parts["amazon"]
        lines += ["## Amazon counterfactual: trained on English, accuracy and macro-F1 x100", ""]
        lines += _table([{"test": k, "accuracy": round(f["accuracy"], 2), "macro-F1": round(f["macro_f1"], 2),
                          "majority class": p["majority_class"][k], "collapsed": f["collapsed"] or "-"}
                         for k, f in p["tests"].items()]) + [""]
    if "kd" in parts:
        p = parts["kd"]
        lines += ["## Classifier distillation: 4-layer student of the English NLI model", ""]
        init = {"base": "multilingual-e5-small", "teacher": "the teacher's encoder"}.get(p["kd"].get("student"), "?")
        unl = ", ".join(f"{Path(u['path']).name} ({u['examples']})" for u in p["kd"]["unlabeled"])
        lines += [f"Students: {init} with {12 - p['kd']['layers']} of its 12 layers dropped (by measured importance), a "
                  f"new head; {p['kd']['training']['steps']} / {p['hard']['training']['steps']} steps (kd / hard), best "
                  f"SICK-trial dev checkpoint kept. Unlabelled pairs the teacher labels: {unl}.", ""]
        rows = []
        for name, label in (("teacher", "teacher (12 layers, fine-tuned on SICK en)"),
                            ("kd", f"student, soft labels (T=2, alpha {p['kd']['alpha']}) + teacher-labelled pairs"),
                            ("hard", "student, hard labels only (SICK en train)")):
            r = p[name]["tests"]
            rows.append({"model": label, "en accuracy": round(r["en"]["accuracy"], 2),
                         "ja accuracy": round(r["ja"]["accuracy"], 2), "en macro-F1": round(r["en"]["macro_f1"], 2),
                         "ja macro-F1": round(r["ja"]["macro_f1"], 2)})
        lines += _table(rows) + ["", f"Speed (pairs/s, torch fp32, {m.get('cores', '?')} cores): {p['speed_pairs_per_s']}", ""]
    lines += ["## Goals (issue 17)", ""] + _table(results["goals"]) + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
