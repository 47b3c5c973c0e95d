#!/usr/bin/env python
"""Compression of multilingual-e5-small for en/ja/zh/de/fr/es/ru/ko/ar: what each step keeps and costs.

Rows (each model measured the same way: Tatoeba top-1 on the full 15 shared languages, both directions,
STS17; throughput on one mixed 2,000-sentence Tatoeba sample, peak RSS, load time, parameters, disk):
  parent         multilingual-e5-small fp32 (xlembed, torch)
  st-fp32        sentence-transformers fp32: the throughput reference, measured at the start and the end
  torch-runtime  no model: the peak RSS of importing what xlembed's torch path imports (torch, transformers,
                 sentence-transformers), the floor under every torch row's peak RSS
  int8-plain     the parent as plain ONNX Runtime dynamic int8 (per-channel weights, reduce_range)
  int8           the parent with xlembed's int8 (each MatMul's 8 largest input channels kept in fp32)
  trim-S         vocabulary trimmed to the 9 languages at S of the parent's parameters (no retraining)
  trim-S-recovered  trim-S + a short recovery of its layers towards the parent's own vectors (word embeddings
                 frozen, --trim-recover-steps): the same shape and size as trim-S
  small          trim + drop 6 of 12 layers (evenly spread, --drop-choose) + recovery + int8
  prune / share  trim + pruning of 50% of heads and FFN neurons / sharing 6 groups of 2 layers: the same
                 parameter count as `small`, the same recovery budget, + int8
Goals (issue 16) are checked in the results.

    python benchmarks/compress_e5.py                       # everything (~3-4 h on 2 cores)
    python benchmarks/compress_e5.py --rows parent,int8-plain,int8,st-fp32

Each row's figures go to OUT/rows/NAME.json as soon as they are measured; a rerun reuses them (delete one
to measure it again) and the compressed models stay in OUT/models (ignored by git).
Writes OUT/results.json, OUT/results.md and OUT/index.html (the bench report with the parent-vs-child tables).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from encode_speed import machine_info, mixed_sentences, versions  # noqa: E402

LANGS = "en,ja,zh,de,fr,es,ru,ko,ar"
KEPT_TATOEBA = ("ara", "cmn", "deu", "fra", "jpn", "kor", "rus", "spa")
ALL_TATOEBA = KEPT_TATOEBA + ("ita", "por", "nld", "pol", "tur", "vie", "hin")
PREFIX = "query: "
ROWS = ("st-fp32", "torch-runtime", "parent", "parent-onnx", "int8-plain", "int8", "trim-0.40", "trim-0.45", "trim-0.50",
        "trim-0.40-onnx", "trim-0.40-recovered", "small", "prune", "share")
SPEC_PRECISION = {"parent": "fp32", "parent-onnx": "fp32", "int8-plain": "int8", "int8": "int8", "trim-0.40-onnx": "fp32"}
GOALS = {"trim_share": 0.40, "trim_max_loss": 0.3, "trim_rss_ratio": 2.0, "int8_mean_loss": 0.5, "int8_max_loss": 1.0,
         "int8_speed_ratio": 4.0, "small_speed_ratio": 8.0, "small_mean_loss": 2.0, "small_disk_mb": 40.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", default=str(REPO / ".cache" / "models"))
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "compress"))
    p.add_argument("--rows", default=",".join(ROWS), help=f"rows to measure (default all: {','.join(ROWS)})")
    p.add_argument("--small-trim", default="0.40", help="trim size of the small/prune/share rows (share of parameters)")
    p.add_argument("--lang-weight", default="en=8",
                   help="weight of English in the trim ranking: Tatoeba pairs every sentence with an English one, so "
                        "English is half the text (8 = the 8 other languages together); '' for equal weights")
    p.add_argument("--pairs-per-lang", type=int, default=15000, help="parallel pairs per language for recovery")
    p.add_argument("--recover-steps", type=int, default=4000,
                   help="recovery steps of the small row (~2,100 steps a pass over the text; 4,000 fit in 60 min with the parent's vectors)")
    p.add_argument("--other-recover-steps", type=int, default=500,
                   help="recovery steps of the prune/share rows (their dev curves are compared with small's at this step)")
    p.add_argument("--trim-recover-steps", type=int, default=600,
                   help="recovery steps of the trim-S-recovered rows (own targets, layers only; ~12 min on 2 cores)")
    p.add_argument("--trim-recover-lr", type=float, default=5e-5,
                   help="learning rate of the trim-S-recovered rows (the layers start at the parent's: small steps)")
    p.add_argument("--drop-choose", default="spread", choices=("importance", "spread"),
                   help="how the small row chooses the 6 layers to drop: evenly spread (the better start for recovery: "
                        "-6.7 vs -9.9 Tatoeba after 500 steps) or by measured importance (closest to the parent untrained)")
    p.add_argument("--recover-lr", type=float, default=1e-3)
    p.add_argument("--recover-balance", type=int, default=4,
                   help="the pairs of a language with fewer pairs than the largest are repeated up to this many times "
                        "per pass (Arabic has ~4,000 pairs here against 15,000 for the others); 1 = off")
    p.add_argument("--recover-targets", default="english", choices=("own", "english"),
                   help="recovery targets of the translations in the parallel pairs: the parent's vector of the "
                        "English side (english) or of the translation itself (own)")
    p.add_argument("--recover-max-chars", type=int, default=120,
                   help="recovery trains on texts of at most this many characters (Tatoeba-like sentences)")
    p.add_argument("--recover-max-length", type=int, default=48, help="tokens per text in recovery")
    p.add_argument("--teacher-precision", default="bf16", help="the parent's precision for recovery targets")
    p.add_argument("--speed-texts", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------ one measured model

def worker(spec: dict) -> dict:
    """In its own process: load (timed), throughput on the mix (median of repeats), peak RSS, then quality
    (spec["quality"] False: load and one encode of the mix only, for the peak RSS)."""
    import warnings

    os.environ["HF_HUB_OFFLINE"] = "1"
    warnings.simplefilter("ignore")
    from xlembed.eval.speed import peak_rss_mb

    texts = spec["texts"]
    started = time.perf_counter()
    if spec["kind"] == "runtime":
        import sentence_transformers  # noqa: F401
        import transformers  # noqa: F401

        import xlembed  # noqa: F401

        return {"peak_rss_mb": round(peak_rss_mb(), 1), "rss": "VmHWM"}  # its own process: nothing to measure again
    if spec["kind"] == "st":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(spec["path"], device="cpu")
        encode = lambda xs: model.encode([PREFIX + t for t in xs], batch_size=32)  # noqa: E731
    else:
        import xlembed

        encoder = xlembed.load(spec["path"], precision=spec.get("precision"))
        encode = lambda xs: encoder.encode(xs, batch_size=32)  # noqa: E731
    load_s = time.perf_counter() - started
    if spec.get("quality") is False:
        encode(texts)
        return {"peak_rss_mb": round(peak_rss_mb(), 1)}
    encode(texts[:64])
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        encode(texts)
        times.append(time.perf_counter() - t0)
    out = {"load_s": round(load_s, 2), "sent_per_s": round(len(texts) / statistics.median(times), 1),
           "times": [round(t, 2) for t in times],
           "peak_rss_mb": round(peak_rss_mb(), 1)}
    if spec["kind"] == "st":
        return out
    from xlembed.eval.speed import disk_mb, parameter_count
    from xlembed.eval.tasks import sts, tatoeba

    out["params_m"] = round((parameter_count(encoder) or 0) / 1e6, 2)
    out["disk_mb"] = round(disk_mb(encoder), 2)
    data = Path(spec["data_root"])
    out["tatoeba"] = {r.language: round(r.scores["accuracy"], 2) for r in tatoeba(encoder, data / "tatoeba", ALL_TATOEBA)}
    out["sts17"] = {r.language: round(r.scores["spearman"], 2) for r in sts(encoder, data / "sts17")}
    return out


def measure(name: str, spec: dict, args, texts) -> dict:
    job = {**spec, "texts": texts, "repeats": args.repeats, "data_root": args.data_root}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{name}: worker failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


# ------------------------------------------------------------------------------------ building the models

def parallel_files(data: Path) -> list[str]:
    """Every English-X TSV in shared/data/parallel but kyoto_wiki_enja (Wikipedia titles, not sentences); the
    pipeline keeps the pairs of the 9 languages."""
    return sorted(str(f) for f in (data / "parallel").glob("*/*.en-*.tsv") if f.parent.name != "kyoto_wiki_enja")


def recovery_inputs(args):
    """Training, dev texts and pairs of the 9 languages from the shared parallel data (pipeline.gather_inputs)."""
    from xlembed.compress.languages import parse_langs
    from xlembed.compress.pipeline import gather_inputs

    return gather_inputs(parse_langs(LANGS), None, parallel_files(Path(args.data_root)), dev_size=500,
                         max_pairs_per_lang=args.pairs_per_lang)


def run_recovery(source: Path, out: Path, parent: Path, args, inputs, *, steps: int, lr: float, eval_every: int, **how) -> None:
    """recover.recover with the benchmark's settings: batch 64, texts of at most --recover-max-chars characters,
    500 dev texts and pairs; ``how``: targets, pairs, repeat."""
    from xlembed.compress import recover

    config = recover.recovery_config(max_steps=steps, epochs=None, batch_size=64, max_length=args.recover_max_length,
                                     lr=lr, eval_every=eval_every)
    recover.recover(source, out, parent, texts=[t for t in inputs.train_texts if len(t) <= args.recover_max_chars],
                    dev_texts=inputs.dev_texts[:500], dev_pairs=inputs.dev_pairs[:500], config=config,
                    teacher_precision=args.teacher_precision, progress=sys.stderr.isatty(), **how)


def build(name: str, args, parent: Path, models: Path) -> tuple[Path, dict]:
    """The model folder of a row and what building it did (cached in OUT/models)."""
    from xlembed.compress import layers, recover, vocab
    from xlembed.compress.onnx_export import export_onnx_folder
    from xlembed.compress.languages import parse_weights
    import xlembed

    weights = parse_weights(args.lang_weight) or None
    if name.startswith("trim-"):
        size = name.split("-")[1]
        folder = models / f"trim-{size}"
        if not (folder / "compress.json").is_file():
            vocab.trim_vocabulary(parent, folder, LANGS, size=float(size), weights=weights)
        if not name.endswith("-recovered"):
            return folder, steps_record(folder)
        recovered = models / name
        if not (recovered / "compress.json").is_file():
            run_recovery(folder, recovered, parent, args, recovery_inputs(args), steps=args.trim_recover_steps,
                         lr=args.trim_recover_lr, eval_every=200, targets="own")
        return recovered, steps_record(recovered)
    if name in ("small", "prune", "share"):
        trimmed = models / f"trim-{args.small_trim}"
        if not (trimmed / "compress.json").is_file():
            vocab.trim_vocabulary(parent, trimmed, LANGS, size=float(args.small_trim), weights=weights)
        inputs = recovery_inputs(args)
        reduced = models / f"{name}-reduced"
        if not (reduced / "compress.json").is_file():
            t0 = time.perf_counter()
            if name == "small":
                layers.drop_layers(trimmed, reduced, 6, texts=inputs.dev_texts[:256], choose=args.drop_choose)
            elif name == "prune":
                layers.prune(trimmed, reduced, heads=0.5, ffn=0.5, texts=inputs.dev_texts[:256])
            else:
                layers.share_layers(trimmed, reduced, groups=6, texts=inputs.dev_texts[:256])
            print(f"{name}: reduced in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        recovered = models / f"{name}-recovered"
        if not (recovered / "compress.json").is_file():
            run_recovery(reduced, recovered, parent, args, inputs,
                         steps=args.recover_steps if name == "small" else args.other_recover_steps, lr=args.recover_lr,
                         eval_every=500 if name == "small" else 100, pairs=inputs.pairs, targets=args.recover_targets,
                         repeat=recover.balance_repeats(inputs.pairs, inputs.pair_langs, args.recover_balance))
        int8 = models / f"{name}-int8"
        if not (int8 / "xlembed.json").is_file():
            export_onnx_folder(xlembed.load(str(recovered)), int8, precision="int8")
        return int8, steps_record(recovered)
    raise SystemExit(f"unknown row {name}")


def steps_record(folder: Path) -> list[dict]:
    """What each step did, as the folder's compress.json records it (the long per-candidate lists left out)."""
    steps = json.loads((folder / "compress.json").read_text(encoding="utf-8"))["steps"]
    return [{k: v for k, v in step.items() if k not in ("selection", "order", "structure", "groups_detail")} for step in steps]


def plain_int8(parent: Path, models: Path) -> Path:
    """The parent as plain dynamic int8: the xlembed export with the outlier split switched off."""
    return int8_variant(parent, models / "int8-plain", outlier_channels=0)


def int8_variant(parent: Path, folder: Path, **options) -> Path:
    """The parent as int8 with these QUANT_OPTIONS instead of the defaults (exported once into ``folder``)."""
    import xlembed
    from xlembed.compress.onnx_export import export_onnx_folder
    from xlembed.compress import quantize

    if (folder / "xlembed.json").is_file():
        return folder
    saved = dict(quantize.QUANT_OPTIONS)
    quantize.QUANT_OPTIONS.update(options)
    try:
        export_onnx_folder(xlembed.load(str(parent)), folder, precision="int8")
    finally:
        quantize.QUANT_OPTIONS.clear()
        quantize.QUANT_OPTIONS.update(saved)
    return folder


def onnx_fp32(source: Path, folder: Path) -> Path:
    import xlembed
    from xlembed.compress.onnx_export import export_onnx_folder

    if not (folder / "xlembed.json").is_file():
        export_onnx_folder(xlembed.load(str(source)), folder, precision="fp32")
    return folder


# ------------------------------------------------------------------------------------ the run

def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    os.environ["HF_HUB_OFFLINE"] = "1"
    parent = Path(args.models_dir) / "multilingual-e5-small"
    if not (parent / "model.safetensors").is_file():
        print(f"model missing: run ../shared/tools/fetch-models {args.models_dir}", file=sys.stderr)
        return 2
    out = Path(args.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    models = out / "models"
    models.mkdir(exist_ok=True)
    texts, _ = mixed_sentences(Path(args.data_root) / "tatoeba", args.speed_texts, languages=KEPT_TATOEBA)
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    command = shlex.join(["python", "benchmarks/compress_e5.py", *sys.argv[1:]])
    for name in wanted:
        path = out / "rows" / f"{name}.json"
        if path.is_file():
            continue
        print(f"row {name}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        facts: dict = {}
        if name == "st-fp32":
            spec = {"kind": "st", "path": str(parent)}
        elif name == "torch-runtime":
            spec = {"kind": "runtime"}
        elif name == "parent":
            spec = {"kind": "xl", "path": str(parent), "precision": SPEC_PRECISION[name]}
        elif name == "parent-onnx":
            spec = {"kind": "xl", "path": str(onnx_fp32(parent, models / "parent-onnx")), "precision": "fp32"}
        elif name == "int8-plain":
            spec = {"kind": "xl", "path": str(plain_int8(parent, models)), "precision": "int8"}
        elif name == "int8":
            spec = {"kind": "xl", "path": str(parent), "precision": "int8"}
        elif name.endswith("-onnx"):
            folder, facts = build(name[: -len("-onnx")], args, parent, models)
            spec = {"kind": "xl", "path": str(onnx_fp32(folder, models / name)), "precision": "fp32"}
        else:
            folder, facts = build(name, args, parent, models)
            spec = {"kind": "xl", "path": str(folder)}
        built = round(time.perf_counter() - started, 1)
        row = {"name": name, "path": spec.get("path"), "build_seconds": built, "facts": facts, **measure(name, spec, args, texts),
               "machine": machine_info(), "command": command, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        path.write_text(json.dumps(row, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for name in wanted:  # peak RSS of load + one encode of the mix, in a fresh process per model
        path = out / "rows" / f"{name}.json"
        row = json.loads(path.read_text(encoding="utf-8"))
        if row.get("rss") != "VmHWM":
            kind = "st" if name == "st-fp32" else "xl"
            spec = {"kind": kind, "path": row["path"] if kind == "xl" else str(parent), "quality": False,
                    "precision": SPEC_PRECISION.get(name)}
            row.update(measure(name, spec, args, texts), rss="VmHWM")
            path.write_text(json.dumps(row, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if "st-fp32" in wanted and (out / "rows" / "st-fp32.json").is_file():  # the reference again, at the end
        again = out / "rows" / "st-fp32-end.json"
        if not again.is_file():
            spec = {"kind": "st", "path": str(parent)}
            again.write_text(json.dumps({"name": "st-fp32-end", **measure("st-fp32-end", spec, args, texts)}) + "\n")
    report = summarize(out, command)
    (out / "results.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown(report), encoding="utf-8")
    html_report(report, parent, models, out / "report")
    print(markdown(report))
    return 0


def html_report(report: dict, parent: Path, models: Path, out: Path) -> None:
    """The rows as bench records, written by the bench report: OUT/report/index.html shows each compressed
    model next to the parent (size, memory, load, speed, Tatoeba/STS per kept and dropped language)."""
    from xlembed.eval.report import write_report
    from xlembed.eval.results import RunRecord, TaskResult
    from xlembed.eval.speed import compression_of

    records = []
    for name, row in report["rows"].items():
        if "tatoeba" not in row:
            continue
        record_folder = {"small": "small-recovered", "prune": "prune-recovered", "share": "share-recovered",
                         "trim-0.40-onnx": "trim-0.40"}.get(name, name)
        details = {"source": str(parent) if name == "parent" else row["path"]}
        compressed = compression_of(str(models / record_folder))
        if compressed:
            details["compress"] = compressed
        sizes = {k: row[k] for k in ("params_m", "disk_mb", "peak_rss_mb", "load_s") if row.get(k) is not None}
        results = [TaskResult("size", "-", "all", sizes, "peak_rss_mb", details=details),
                   TaskResult("speed", "mixed", "all", {"sent_per_s_b32": row["sent_per_s"]}, "sent_per_s_b32")]
        results += [TaskResult("tatoeba", "tatoeba", code, {"accuracy": v}, "accuracy") for code, v in row["tatoeba"].items()]
        results += [TaskResult("sts", "sts17", code, {"spearman": v}, "spearman") for code, v in row.get("sts17", {}).items()]
        precision = SPEC_PRECISION.get(name) or ("int8" if name in ("small", "prune", "share") else "fp32")
        records += [RunRecord(model=name, precision=precision, backend="", result=r, machine=report["machine"],
                              versions=report["versions"], command=report["command"], date=row.get("date", ""))
                    for r in results]
    write_report(records, out, title="multilingual-e5-small compressed for en/ja/zh/de/fr/es/ru/ko/ar")


def summarize(out: Path, command: str) -> dict:
    rows = {p.stem: json.loads(p.read_text()) for p in sorted((out / "rows").glob("*.json"))}
    st = [rows[k]["sent_per_s"] for k in ("st-fp32", "st-fp32-end") if k in rows]
    st_speed = statistics.mean(st) if st else None
    parent = rows.get("parent", {}).get("tatoeba", {})
    for row in rows.values():
        if st_speed and "sent_per_s" in row:
            row["x_st_fp32"] = round(row["sent_per_s"] / st_speed, 2)
        if parent and "tatoeba" in row:
            loss = {k: round(parent[k] - v, 2) for k, v in row["tatoeba"].items() if k in parent}
            row["tatoeba_loss"] = loss
            row["kept_mean_loss"] = round(statistics.mean(loss[k] for k in KEPT_TATOEBA if k in loss), 3)
            row["kept_max_loss"] = round(max(loss[k] for k in KEPT_TATOEBA if k in loss), 2)
            row["all_mean_loss"] = round(statistics.mean(loss.values()), 3)
            row["all_max_loss"] = round(max(loss.values()), 2)
            row["dropped_mean_loss"] = round(statistics.mean(loss[k] for k in loss if k not in KEPT_TATOEBA), 2)
    return {"command": command, "machine": machine_info(), "versions": versions(), "st_fp32_sent_per_s": st_speed,
            "rows": rows, "goals": goals(rows)}


def goals(rows: dict) -> list[dict]:
    out = []

    def add(what, value, target, ok):
        out.append({"goal": what, "measured": value, "target": target, "met": bool(ok)})

    for name in [k for k in rows if k.startswith("trim-") and not k.endswith("-onnx")]:
        row = rows[name]
        # the trim step's own count (the same modules of parent and child); params_m also counts the unused,
        # randomly initialised pooler (0.15M) transformers adds to XLMRobertaModel in both
        share = next((f["parameters"]["share"] for f in row.get("facts", []) if f.get("step") == "trim"), None)
        add(f"{name}: parameters <= 40% of the parent", round(share, 3) if share else None, GOALS["trim_share"],
            share is not None and share <= GOALS["trim_share"] + 1e-9)
        add(f"{name}: Tatoeba loss <= 0.3 on every kept language", row.get("kept_max_loss"), GOALS["trim_max_loss"],
            row.get("kept_max_loss", 99) <= GOALS["trim_max_loss"])
    for trim, base in (("trim-0.40-onnx", "parent-onnx"), ("trim-0.40", "parent")):
        if trim in rows and base in rows:
            ratio = rows[base]["peak_rss_mb"] / rows[trim]["peak_rss_mb"]
            add(f"peak RSS of an encode, {base} / {trim}", round(ratio, 2), GOALS["trim_rss_ratio"], ratio >= GOALS["trim_rss_ratio"])
    if all(k in rows for k in ("torch-runtime", "parent", "trim-0.40")):  # what torch could reach at best
        floor = rows["torch-runtime"]["peak_rss_mb"] + rows["trim-0.40"]["disk_mb"]
        ratio = rows["parent"]["peak_rss_mb"] / floor
        add("bound: parent / (torch runtime + trim-0.40's weights), no encode", round(ratio, 2), GOALS["trim_rss_ratio"],
            ratio >= GOALS["trim_rss_ratio"])
    if "int8" in rows:
        row = rows["int8"]
        add("int8: mean Tatoeba loss over the 15 languages", row.get("all_mean_loss"), GOALS["int8_mean_loss"],
            row.get("all_mean_loss", 99) <= GOALS["int8_mean_loss"])
        add("int8: worst Tatoeba loss of the 15 languages", row.get("all_max_loss"), GOALS["int8_max_loss"],
            row.get("all_max_loss", 99) <= GOALS["int8_max_loss"])
        add("int8: throughput x sentence-transformers fp32", row.get("x_st_fp32"), GOALS["int8_speed_ratio"],
            row.get("x_st_fp32", 0) >= GOALS["int8_speed_ratio"])
    if "small" in rows:
        row = rows["small"]
        add("small: throughput x sentence-transformers fp32", row.get("x_st_fp32"), GOALS["small_speed_ratio"],
            row.get("x_st_fp32", 0) >= GOALS["small_speed_ratio"])
        add("small: mean Tatoeba loss on the kept languages", row.get("kept_mean_loss"), GOALS["small_mean_loss"],
            row.get("kept_mean_loss", 99) <= GOALS["small_mean_loss"])
        add("small: MB on disk", row.get("disk_mb"), GOALS["small_disk_mb"], row.get("disk_mb", 999) <= GOALS["small_disk_mb"])
    return out


def markdown(rep: dict) -> str:
    rows = rep["rows"]
    lines = ["# Compressing multilingual-e5-small for en/ja/zh/de/fr/es/ru/ko/ar", "",
             f"Command: `{rep['command']}`", "",
             f"Machine: {rep['machine'].get('cpu')}, {rep['machine'].get('cores')} cores. "
             f"sentence-transformers fp32 reference: {rep['st_fp32_sent_per_s']:.0f} sentences/s (mean of the start and "
             f"end runs) on {2000} mixed Tatoeba sentences, batch 32." if rep.get("st_fp32_sent_per_s") else "", "",
             "| row | params (M) | disk (MB) | peak RSS (MB) | load (s) | sent/s | x ST fp32 | kept mean loss | kept worst | "
             "15-lang mean loss | dropped mean loss | STS17 mean |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in rows.items():
        if name.startswith("st-fp32") or name == "torch-runtime":
            lines.append(f"| {name} | | | {row.get('peak_rss_mb')} | {row.get('load_s', '')} | {row.get('sent_per_s', '')} | "
                         f"{row.get('x_st_fp32', '')} | | | | | |")
            continue
        sts = row.get("sts17") or {}
        lines.append(f"| {name} | {row.get('params_m')} | {row.get('disk_mb')} | {row.get('peak_rss_mb')} | {row.get('load_s')} | "
                     f"{row.get('sent_per_s')} | {row.get('x_st_fp32', '')} | {row.get('kept_mean_loss', '')} | "
                     f"{row.get('kept_max_loss', '')} | {row.get('all_mean_loss', '')} | {row.get('dropped_mean_loss', '')} | "
                     f"{round(statistics.mean(sts.values()), 2) if sts else ''} |")
    langs = list(ALL_TATOEBA)
    lines += ["", "Tatoeba top-1 (%), full 1,000 pairs, both directions (kept: " + ", ".join(KEPT_TATOEBA) + "):", "",
              "| row | " + " | ".join(langs) + " |", "| --- |" + " ---: |" * len(langs)]
    for name, row in rows.items():
        if "tatoeba" in row:
            lines.append(f"| {name} | " + " | ".join(str(row["tatoeba"].get(l, "")) for l in langs) + " |")
    lines += ["", "Goals (issue 16):", "", "| goal | measured | target | met |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {g['goal']} | {g['measured']} | {g['target']} | {'yes' if g['met'] else 'NO'} |" for g in rep["goals"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
