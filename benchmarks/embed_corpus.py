"""Corpus embedding at scale: ``xlembed embed-corpus`` on 100k and 1M short sentences, local vs Ray engine.

The corpus: every distinct sentence of 1..200 characters from ../shared/data (both sides of the parallel TSVs,
Tatoeba), shuffled with a fixed seed and repeated where fewer than --rows exist, written once as Parquet parts of
100,000 rows (columns id, text) under --work. Each run is a fresh `xlembed embed-corpus` process; its peak RSS is
the largest sum of resident memory over the process and all its descendants (Ray's raylet, GCS and workers
included), sampled every 0.2 s; its speed is rows / wall time of the whole command (start-up and model loading
included) and, from the manifest, rows / summed shard seconds (steady state).

Runs (one invocation, the same machine):
  * for each model (use-multilingual; multilingual-e5-small int8): local engine on 100k rows and on --rows rows
    (the memory goal: <= 2 GB whatever the corpus size);
  * multilingual-e5-small int8 on --ray-rows rows: the Ray engine (one local node, 2 workers) vs the local engine
    (the 100k local run above when --ray-rows is 100k), ratio of wall-time throughputs (goal >= 0.9), and the
    largest difference between their vectors;
  * multilingual-e5-small int8 on --overhead-rows rows: embed-corpus against the plainest hand loop (read every
    text, one `encode` call, write nothing), both fresh processes timed with loading: what shards, the manifest
    and checksums cost.

    python benchmarks/embed_corpus.py                       # about 95 minutes on 2 cores
    python benchmarks/embed_corpus.py --part small          # 100k rows and the Ray comparison: about 15 minutes
    python benchmarks/embed_corpus.py --rows 200000         # a shorter run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from encode_speed import machine_info, versions  # noqa: E402

DATA = REPO.parent / "shared" / "data"
PART_ROWS = 100_000
SHARD_ROWS = 10_000


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="Rows of the large corpus.")
    p.add_argument("--small-rows", type=int, default=100_000, help="Rows of the small corpus (a multiple of 100,000).")
    p.add_argument("--ray-rows", type=int, default=100_000, help="Rows of the Ray vs local comparison (a multiple of 100,000).")
    p.add_argument("--workers", type=int, default=2, help="Ray workers.")
    p.add_argument("--models-dir", type=Path, default=REPO / ".cache" / "models", help="Folder holding multilingual-e5-small.")
    p.add_argument("--work", type=Path, default=REPO / ".cache" / "corpus-bench", help="Corpus and outputs (large).")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "embed_corpus", help="Results folder.")
    p.add_argument("--part", choices=("all", "small", "large", "overhead"), default="all",
                   help="small: the 100k runs and the Ray comparison; large: the --rows runs; overhead: embed-corpus "
                        "against a hand loop (read all, encode, no files) on --overhead-rows; all: the three. A part "
                        "run alone is merged into the results an earlier run wrote.")
    p.add_argument("--overhead-rows", type=int, default=20_000, help="Rows of the embed-corpus vs hand-loop comparison.")
    return p.parse_args()


def build_corpus(work: Path, rows: int) -> list[Path]:
    """Parquet parts of PART_ROWS rows (id, text); built once, reused while --rows is unchanged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = work / "corpus"
    stamp = folder / f"rows-{rows}.done"
    parts = [folder / f"part-{i:03d}.parquet" for i in range(-(-rows // PART_ROWS))]
    if stamp.is_file():
        return parts
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    seen: set[str] = set()
    for path in sorted(DATA.glob("parallel/*/*.tsv")) + sorted(DATA.glob("tatoeba/tatoeba.*")):
        for line in path.read_text(encoding="utf-8").splitlines():
            for text in line.split("\t")[:2]:
                text = text.strip()
                if 1 <= len(text) <= 200:
                    seen.add(text)
    unique = sorted(seen)
    random.Random(0).shuffle(unique)
    print(f"corpus: {len(unique)} distinct sentences of 1..200 characters; {rows} rows", file=sys.stderr)
    for i, part in enumerate(parts):
        start = i * PART_ROWS
        texts = [unique[(start + j) % len(unique)] for j in range(min(PART_ROWS, rows - start))]
        ids = [f"s{start + j}" for j in range(len(texts))]
        pq.write_table(pa.table({"id": ids, "text": texts}), part, row_group_size=SHARD_ROWS)
    stamp.write_text(json.dumps({"rows": rows, "distinct": len(unique)}))
    return parts


def run(name: str, command: list[str], out: Path) -> dict:
    """Run one embed-corpus command; wall time and peak RSS of its process tree."""
    import psutil

    shutil.rmtree(out, ignore_errors=True)
    print(f"[{name}] {shlex.join(command)}", file=sys.stderr, flush=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        try:
            for p in [root] + root.children(recursive=True):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.2)
    wall = time.perf_counter() - started
    _, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"[{name}] failed (exit {proc.returncode}): {stderr[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    rows = manifest["counts"]["vectors"]
    shard_seconds = sum(s["seconds"] for s in manifest["shards"])
    result = {"name": name, "command": shlex.join(command), "rows": rows, "wall_s": round(wall, 1),
              "sent_per_s": round(rows / wall, 1), "shard_sent_per_s": round(rows / shard_seconds, 1),
              "peak_rss_mb": round(peak / 2**20), "model_facts": manifest["model"], "last_line": stderr.strip().splitlines()[-1]}
    print(f"[{name}] {result['sent_per_s']} sent/s, peak RSS {result['peak_rss_mb']} MB", file=sys.stderr, flush=True)
    return result


def command(exe: str, parts: list[Path], out: Path, model: str, precision: str | None, extra: list[str] = ()) -> list[str]:
    cmd = [exe, "embed-corpus", "--model", model, "--text-field", "text", "--id-field", "id", "--out", str(out),
           "--shard-rows", str(SHARD_ROWS)]
    for part in parts:
        cmd += ["--input", str(part)]
    if precision:
        cmd += ["--precision", precision]
    return cmd + list(extra)


def max_difference(a: Path, b: Path) -> float:
    from xlembed.parallel import read_vectors

    ids_a, va = read_vectors(a)
    ids_b, vb = read_vectors(b)
    if ids_a != ids_b:
        return float("inf")
    return float(np.abs(va - vb).max())


def main() -> None:
    args = parse_args()
    e5 = args.models_dir / "multilingual-e5-small"
    if not e5.is_dir():
        raise SystemExit(f"{e5} not found: build it with ../shared/tools/fetch-models {args.models_dir}")
    exe = str(Path(sys.executable).with_name("xlembed"))
    largest = max(args.rows, args.small_rows, args.ray_rows)
    parts = build_corpus(args.work, largest)
    small = parts[: args.small_rows // PART_ROWS]
    large = parts[: -(-args.rows // PART_ROWS)]
    models = [("use-multilingual", "use-multilingual", None), ("e5-small-int8", str(e5), "int8")]
    runs: list[dict] = []
    comparison: dict = {}
    overhead: dict = {}
    if args.part != "all":  # add to what the other parts measured
        earlier = json.loads((args.out / "results.json").read_text())
        runs, comparison, overhead = earlier["runs"], earlier["ray_vs_local"], earlier.get("overhead", {})
        args.earlier_command = earlier["command"]
        if args.part != "overhead":
            runs = [r for r in runs if (r["rows"] == args.rows) != (args.part == "large")]
    for label, model, precision in models if args.part in ("all", "small") else ():
        out = args.work / f"out-{label}-small"
        runs.append({"model": label, "engine": "local", **run(f"{label} local {args.small_rows}",
                                                              command(exe, small, out, model, precision), out)})
    if args.part in ("all", "small"):
        comparison = ray_comparison(args, exe, parts, e5, runs)
    if args.part in ("all", "overhead"):
        overhead = hand_loop_comparison(args, exe, parts[0], e5)
    if args.part in ("all", "large"):
        for label, model, precision in models:
            out = args.work / f"out-{label}-large"
            runs.append({"model": label, "engine": "local", **run(f"{label} local {args.rows}",
                                                                  command(exe, large, out, model, precision), out)})
            shutil.rmtree(out, ignore_errors=True)  # 1M x 384-512 floats: GBs
    write_results(args, runs, comparison, overhead)


HAND_LOOP = """
import sys, time, pyarrow.parquet as pq, xlembed
started = time.perf_counter()
texts = pq.read_table(sys.argv[1], columns=["text"]).column("text").to_pylist()[: int(sys.argv[2])]
encoder = xlembed.load(sys.argv[3], precision="int8")
vectors = encoder.encode(texts, batch_size=32, normalize=True)
print(len(vectors), time.perf_counter() - started)
"""


def hand_loop_comparison(args, exe: str, part: Path, e5: Path) -> dict:
    """embed-corpus (shards, manifest, checksums) against the plainest loop: read every text, one encode call."""
    import pyarrow.parquet as pq

    rows = args.overhead_rows
    subset = args.work / f"overhead-{rows}.parquet"
    pq.write_table(pq.read_table(part).slice(0, rows), subset, row_group_size=SHARD_ROWS)
    out = args.work / "out-overhead"
    corpus = run(f"e5 embed-corpus {rows}", command(exe, [subset], out, str(e5), "int8"), out)
    print(f"[e5 hand loop {rows}] encode(all texts) in one process", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", HAND_LOOP, str(part), str(rows), str(e5)], capture_output=True,
                          text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"hand loop failed: {proc.stderr[-2000:]}")
    hand = round(rows / wall, 1)
    return {"rows": rows, "embed_corpus_sent_per_s": corpus["sent_per_s"], "hand_loop_sent_per_s": hand,
            "ratio": round(corpus["sent_per_s"] / hand, 3), "embed_corpus_peak_rss_mb": corpus["peak_rss_mb"]}


def ray_comparison(args, exe: str, parts: list[Path], e5: Path, runs: list[dict]) -> dict:
    ray_parts = parts[: args.ray_rows // PART_ROWS]
    local_out = args.work / "out-e5-small-int8-small"
    local = next(r for r in runs if r["model"] == "e5-small-int8")
    if args.ray_rows != args.small_rows:
        local_out = args.work / "out-e5-local-for-ray"
        local = {"model": "e5-small-int8", "engine": "local",
                 **run(f"e5 local {args.ray_rows}", command(exe, ray_parts, local_out, str(e5), "int8"), local_out)}
        runs.append(local)
    ray_out = args.work / "out-e5-ray"
    ray = {"model": "e5-small-int8", "engine": f"ray ({args.workers} workers)",
           **run(f"e5 ray {args.ray_rows}", command(exe, ray_parts, ray_out, str(e5), "int8",
                                                      ["--engine", "ray", "--workers", str(args.workers)]), ray_out)}
    runs.append(ray)
    comparison = {"rows": args.ray_rows, "local_sent_per_s": local["sent_per_s"], "ray_sent_per_s": ray["sent_per_s"],
                  "ratio": round(ray["sent_per_s"] / local["sent_per_s"], 3),
                  "ratio_steady_state": round(ray["shard_sent_per_s"] * args.workers / local["shard_sent_per_s"], 3),
                  "max_abs_vector_difference": max_difference(local_out, ray_out)}
    return comparison


def write_results(args, runs: list[dict], comparison: dict, overhead: dict) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    command_line = shlex.join(["python", "benchmarks/embed_corpus.py", *sys.argv[1:]])
    if getattr(args, "earlier_command", None):
        command_line = f"{args.earlier_command}; then {command_line}"
    body = {"command": command_line, "machine": machine_info(), "versions": versions(),
            "shard_rows": SHARD_ROWS, "runs": runs, "ray_vs_local": comparison, "overhead": overhead,
            "goals": {"peak_rss_mb_max": 2048, "ray_over_local_min": 0.9}}
    (args.out / "results.json").write_text(json.dumps(body, indent=1) + "\n")
    lines = ["# embed-corpus at scale", "", f"Command: `{body['command']}`", "",
             f"Machine: {body['machine']}", "", f"Shards of {SHARD_ROWS} rows; peak RSS = process tree (Ray included).", "",
             "| model | engine | rows | wall s | sent/s (wall) | sent/s (shards) | peak RSS MB |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        lines.append(f"| {r['model']} | {r['engine']} | {r['rows']:,} | {r['wall_s']} | {r['sent_per_s']} | "
                     f"{r['shard_sent_per_s']} | {r['peak_rss_mb']} |")
    c = comparison
    lines += ["", f"Ray vs local ({c['rows']:,} rows, e5-small int8): {c['ray_sent_per_s']} vs {c['local_sent_per_s']} "
              f"sent/s = **{c['ratio']}x** (goal >= 0.9x); steady state (per-shard throughput x workers / local) "
              f"{c['ratio_steady_state']}x; largest vector difference {c['max_abs_vector_difference']:.2e}."]
    if overhead:
        o = overhead
        lines += ["", f"embed-corpus vs a hand loop ({o['rows']:,} rows, e5-small int8, each a fresh process, wall time "
                  f"with loading): {o['embed_corpus_sent_per_s']} vs {o['hand_loop_sent_per_s']} sent/s = "
                  f"**{o['ratio']}x** (the hand loop reads every text and makes one encode call; it writes nothing)."]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
