"""Load test: ``xlembed serve`` against infinity-emb, same model, same machine, one run.

Every server runs in its own process on 127.0.0.1; this process is the load generator (aiohttp, loopback only,
a fixed number of requests and a time limit per load). Loads, each after 20 warm-up requests:
  (a) single: one sentence per request, 16 concurrent clients;
  (b) batch:  32 sentences per request, 4 concurrent clients;
  (c) overload (xlembed only, once): 32 sentences per request at 10x the clients of (b) against a server
      started with a small queue (--max-queue 512): it must answer 429 with Retry-After, never crash, and
      /health must still be 200 afterwards.
Requests use encoding_format=base64, as the OpenAI Python SDK sends by default. Sentences: Tatoeba, 11 languages,
shuffled with a fixed seed, the same bodies for every server. xlembed applies e5's 'query: ' prompt itself;
infinity gets 'query: ' written into the texts, so both embed the same tokens (checked: the cosine of their
vectors is reported). Peak RSS: the server process's VmHWM.

infinity-emb (0.0.78) runs from its own virtual environment (it pins older transformers and
sentence-transformers than xlembed):
    python3.11 -m venv .cache/infinity-venv
    .cache/infinity-venv/bin/pip install torch==2.13.0 'infinity-emb[server,optimum,torch]==0.0.78'
(pip resolves optimum 2.1 + optimum-onnx; with it infinity's own ONNX graph optimization fails, "OptimizationConfig
.__init__() got an unexpected keyword argument 'optimize_with_onnxruntime_only'", and it serves the graph as given.
optimum 1.x does not import under torch 2.13.) Its ONNX engine needs an ONNX file in the model folder, so this
script makes one, once, under .cache/serve-bench: torch.onnx export (output last_hidden_state, as infinity reads it),
then ONNX Runtime's transformer optimizer (attention/LayerNorm/GELU fusion: what infinity's failed step would do),
and a copy quantized with ONNX Runtime's dynamic int8 (per-channel) as model_quantized.onnx (infinity prefers a
'*quantize*' file on CPU). Without the infinity environment the infinity rows
are skipped, saying so.

    python benchmarks/serve_load.py                      # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from encode_speed import machine_info, versions  # noqa: E402

LANGS = ("ara", "cmn", "deu", "fra", "jpn", "kor", "rus", "spa", "hin", "tur")
MODEL_NAME = "multilingual-e5-small"
PREFIX = "query: "


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / ".cache" / "models" / MODEL_NAME), help="the model folder")
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve"), help="folder for results")
    p.add_argument("--work", default=str(REPO / ".cache" / "serve-bench"), help="folder for logs and ONNX files")
    p.add_argument("--infinity-python", default=str(REPO / ".cache" / "infinity-venv" / "bin" / "python"))
    p.add_argument("--xlembed", default="int8,int8:workers1,fp32,int8:quiet",
                   help="xlembed precisions to serve, comma-separated; PRECISION:workersN / PRECISION:threadsN serve "
                        "it with --workers N / --threads N; PRECISION:quiet serves it with --quiet (no "
                        "per-request language check), to measure what the check costs")
    p.add_argument("--infinity", default="optimum-int8,optimum-fp32",
                   help="infinity engines: optimum-fp32, optimum-int8, torch (comma-separated; '' for none)")
    p.add_argument("--single-requests", type=int, default=1000, help="requests of load (a)")
    p.add_argument("--single-concurrency", type=int, default=16)
    p.add_argument("--batch-requests", type=int, default=100, help="requests of load (b)")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per request of load (b)")
    p.add_argument("--batch-concurrency", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3, help="rounds over all servers (each reports its best round)")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds at most per load")
    p.add_argument("--port", type=int, default=0, help="port for the servers (0: a free one)")
    return p.parse_args()


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server process: started, waited for, measured, stopped."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path, env: dict | None = None,
                 texts_with_prefix: bool = False, path: str = "/v1/embeddings", cwd: Path | None = None):
        self.name, self.argv, self.port, self.log, self.cwd = name, argv, port, log, cwd
        self.env = {**os.environ, **(env or {})}
        self.texts_with_prefix = texts_with_prefix
        self.url = f"http://127.0.0.1:{port}{path}"
        self.proc: subprocess.Popen | None = None

    @property
    def command(self) -> str:
        line = shlex.join(self.argv)
        return f"cd {shlex.quote(str(self.cwd))} && {line}" if self.cwd else line

    def start(self, timeout: float = 300.0) -> float:
        import urllib.request

        self.log.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True, cwd=self.cwd)
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} while starting; see {self.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.name} was not healthy after {timeout:.0f} s; see {self.log}")

    def health(self) -> int:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def peak_rss_mib(self) -> float:
        """VmHWM of the server process and its children."""
        total = 0
        pids = [self.proc.pid]
        try:
            children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
            pids += [int(p) for p in children.split()]
        except OSError:
            pass
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return round(total / 1024, 1)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)


def server_flags(flag: str) -> list[str]:
    """'' -> [], 'quiet' -> ['--quiet'], 'threads1' -> ['--threads', '1'], 'workers1' -> ['--workers', '1']."""
    if flag == "quiet":
        return ["--quiet"]
    for option in ("threads", "workers"):
        if flag.startswith(option) and flag[len(option):].isdigit():
            return [f"--{option}", flag[len(option):]]
    if flag:
        sys.exit(f"unknown server flag {flag!r} in --xlembed: use PRECISION, PRECISION:quiet, PRECISION:threadsN or "
                 "PRECISION:workersN")
    return []


def xlembed_server(args, precision: str, port: int, work: Path, extra: list[str] = ()) -> Server:
    exe = str(Path(sys.executable).with_name("xlembed"))
    argv = [exe, "serve", "--model", args.model, "--precision", precision, "--port", str(port),
            "--log-level", "warning", *extra]
    name = " ".join(["xlembed", precision, *extra])
    return Server(name, argv, port, work / "logs" / f"{name.replace(' ', '-')}.log", env={"HF_HUB_OFFLINE": "1"})


def infinity_server(args, engine: str, port: int, folder: Path, work: Path) -> Server:
    exe = str(Path(args.infinity_python).with_name("infinity_emb"))
    # --model-id . from inside the folder: with an absolute path infinity 0.0.78 hands optimum an absolute ONNX
    # file name, which optimum rejects ("Could not find any ONNX files with target file name ...")
    argv = [exe, "v2", "--model-id", ".", "--served-model-name", MODEL_NAME, "--pooling-method", "mean",
            "--engine", "optimum" if engine.startswith("optimum") else "torch", "--device", "cpu",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-model-warmup"]
    env = {"HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
    return Server(f"infinity {engine}", argv, port, work / "logs" / f"infinity-{engine}.log", env=env,
                  texts_with_prefix=True, path="/embeddings", cwd=folder)


# Run with infinity's Python: the fp32 ONNX graph infinity's optimum engine reads (output last_hidden_state), made
# with torch.onnx and fused by ONNX Runtime's transformer optimizer (see the docstring)
EXPORT = """
import sys, torch
from pathlib import Path
from transformers import AutoModel, AutoTokenizer
src, dst = sys.argv[1], Path(sys.argv[2])
dst.mkdir(parents=True)
model, tok = AutoModel.from_pretrained(src).eval(), AutoTokenizer.from_pretrained(src)
enc = tok(["query: hello world", "query: a second, longer sentence"], padding=True, return_tensors="pt")
names = ["input_ids", "attention_mask"]
axes = {n: {0: "batch", 1: "seq"} for n in names + ["last_hidden_state"]}
torch.onnx.export(model, (enc["input_ids"], enc["attention_mask"]), str(dst / "model.onnx"), input_names=names,
                  output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)
from onnxruntime.transformers.optimizer import optimize_model
fused = optimize_model(str(dst / "model.onnx"), model_type="bert", num_heads=model.config.num_attention_heads,
                       hidden_size=model.config.hidden_size)
print(fused.get_fused_operator_statistics())
fused.save_model_to_file(str(dst / "model.onnx"))
tok.save_pretrained(dst)
model.config.save_pretrained(dst)
"""
# ONNX Runtime's dynamic int8 (per-channel) of that graph, as model_quantized.onnx: infinity prefers it on CPU
QUANTIZE = """
import shutil, sys
from pathlib import Path
from onnxruntime.quantization import QuantType, quantize_dynamic
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True)
for f in src.iterdir():
    if f.suffix != ".onnx":
        shutil.copy(f, dst / f.name)
import onnx
quantize_dynamic(str(src / "model.onnx"), str(dst / "model_quantized.onnx"), weight_type=QuantType.QInt8,
                 per_channel=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
"""


def infinity_folders(args, work: Path) -> dict[str, Path]:
    """Model folders for infinity: the original (torch), + model.onnx (optimum-fp32), + model_quantized.onnx."""
    fp32, int8 = work / "infinity-onnx-fp32", work / "infinity-onnx-int8"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for script, src, dst in ((EXPORT, args.model, fp32), (QUANTIZE, fp32, int8)):
        if dst.is_dir():
            continue
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        done = subprocess.run([args.infinity_python, "-c", script, str(src), str(tmp)], env=env,
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"preparing {dst.name} for infinity failed:\n{done.stderr[-3000:]}")
        tmp.rename(dst)
    return {"optimum-fp32": fp32, "optimum-int8": int8, "torch": Path(args.model)}


# ---------------------------------------------------------------- load


def sentences(data_root: Path, n: int = 4000) -> list[str]:
    from xlembed.eval.data import read_tatoeba

    out = []
    for lang in LANGS:
        xx, en = read_tatoeba(data_root / "tatoeba", lang)
        out += xx[:200] + en[:200] if lang == "deu" else xx[:300]
    rng = random.Random(0)
    rng.shuffle(out)
    return out[:n]


def bodies(texts: list[str], per_request: int, count: int, with_prefix: bool) -> list[bytes]:
    out = []
    for i in range(count):
        chunk = [texts[(i * per_request + j) % len(texts)] for j in range(per_request)]
        if with_prefix:
            chunk = [PREFIX + t for t in chunk]
        out.append(json.dumps({"model": MODEL_NAME, "input": chunk if per_request > 1 else chunk[0],
                               "encoding_format": "base64"}).encode())
    return out


async def _load(url: str, payloads: list[bytes], concurrency: int, time_limit: float) -> dict:
    import aiohttp

    latencies, statuses = [], {}
    next_index = 0
    retry_after = set()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + time_limit

        async def client():
            nonlocal next_index
            while next_index < len(payloads) and time.perf_counter() < deadline:
                body = payloads[next_index]
                next_index += 1
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        status = str(r.status)
                        if r.status == 429 and "Retry-After" in r.headers:
                            retry_after.add(r.headers["Retry-After"])
                except Exception as exc:  # noqa: BLE001 - counted as an error of the server under load
                    status = type(exc).__name__
                if status == "200":
                    latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ok = statuses.get("200", 0)
    lat = np.asarray(latencies) * 1000
    return {"requests": sum(statuses.values()), "ok": ok, "errors": sum(statuses.values()) - ok,
            "statuses": statuses, "seconds": round(wall, 2), "requests_per_s": round(ok / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if ok else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 1) if ok else None,
            "retry_after_seen": sorted(retry_after)}


def run_load(server: Server, texts: list[str], per_request: int, count: int, concurrency: int,
             time_limit: float) -> dict:
    warm = bodies(texts[::-1], per_request, 20, server.texts_with_prefix)
    asyncio.run(_load(server.url, warm, min(concurrency, 4), 60))
    result = asyncio.run(_load(server.url, bodies(texts, per_request, count, server.texts_with_prefix),
                               concurrency, time_limit))
    result["sentences_per_s"] = round(result["requests_per_s"] * per_request, 1)
    result.update(per_request=per_request, concurrency=concurrency)
    return result


def vectors(server: Server, texts: list[str]) -> np.ndarray:
    import urllib.request

    chunk = [PREFIX + t for t in texts] if server.texts_with_prefix else texts
    req = urllib.request.Request(server.url, data=json.dumps({"model": MODEL_NAME, "input": chunk}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        data = json.loads(r.read())["data"]
    v = np.asarray([d["embedding"] for d in sorted(data, key=lambda d: d["index"])], dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def cosine_to(server: Server, texts: list[str], reference: np.ndarray) -> dict:
    try:
        cosine = (vectors(server, texts) * reference).sum(axis=1)
    except OSError as exc:  # a server that does not answer is reported, not fatal to the run
        return {"mean": None, "min": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"mean": round(float(cosine.mean()), 5), "min": round(float(cosine.min()), 5)}


# ---------------------------------------------------------------- main


def main() -> None:
    args = parse_args()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if not Path(args.model).is_dir():
        sys.exit(f"model folder {args.model} is missing: build it with ../shared/tools/fetch-models .cache/models")
    texts = sentences(Path(args.data_root))
    probe = texts[:64]
    import xlembed

    reference = xlembed.load(args.model, precision="fp32").encode(probe, normalize=True)
    servers = []
    for spec in filter(None, args.xlembed.split(",")):
        precision, _, flag = spec.partition(":")  # int8:quiet = without the per-request language check
        extra = server_flags(flag)
        servers.append(lambda p=precision, e=extra: xlembed_server(args, p, args.port or free_port(), work, e))
    skipped = None
    engines = [e for e in args.infinity.split(",") if e]
    if engines and not Path(args.infinity_python).is_file():
        skipped = (f"infinity rows skipped: no infinity environment at {args.infinity_python} (see this script's "
                   "docstring to create it)")
        print(skipped, file=sys.stderr)
    elif engines:
        folders = infinity_folders(args, work)
        for engine in engines:
            servers.append(lambda e=engine: infinity_server(args, e, args.port or free_port(), folders[e], work))
    rows: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for make in servers:
            server = make()
            print(f"round {round_ + 1}: {server.name}", file=sys.stderr, flush=True)
            startup = server.start()
            try:
                single = run_load(server, texts, 1, args.single_requests, args.single_concurrency, args.time_limit)
                batch = run_load(server, texts, args.batch_size, args.batch_requests, args.batch_concurrency,
                                 args.time_limit)
                cosine = cosine_to(server, probe, reference)
                rss = server.peak_rss_mib()
            finally:
                code = server.stop()
            row = rows.setdefault(server.name, {"server": server.name, "command": server.command,
                                                "rounds": []})
            row["rounds"].append({"single": single, "batch": batch, "startup_s": round(startup, 1),
                                  "peak_rss_mib": rss, "exit_code": code})
            row["cosine_to_fp32"] = cosine
            print(f"  single {single['requests_per_s']} req/s p99 {single['p99_ms']} ms, batch "
                  f"{batch['sentences_per_s']} sent/s p99 {batch['p99_ms']} ms, errors {single['errors']}+"
                  f"{batch['errors']}, rss {rss} MiB", file=sys.stderr, flush=True)
    for row in rows.values():
        row["single"] = max((r["single"] for r in row["rounds"]), key=lambda r: r["requests_per_s"])
        row["batch"] = max((r["batch"] for r in row["rounds"]), key=lambda r: r["sentences_per_s"])
        row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in row["rounds"])
        row["errors"] = sum(r["single"]["errors"] + r["batch"]["errors"] for r in row["rounds"])
    overload = run_overload(args, texts, work)
    results = {"command": shlex.join(["python", "benchmarks/serve_load.py", *sys.argv[1:]]),
               "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(), "versions": versions(), "model": args.model, "skipped": skipped,
               "loads": {"single": f"1 sentence per request, {args.single_concurrency} concurrent clients, "
                                   f"{args.single_requests} requests",
                         "batch": f"{args.batch_size} sentences per request, {args.batch_concurrency} concurrent "
                                  f"clients, {args.batch_requests} requests"},
               "rows": list(rows.values()), "overload": overload}
    results["goals"] = goals(results)
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))


def run_overload(args, texts: list[str], work: Path) -> dict:
    """10x the batch load's clients against a small queue: 429s with Retry-After, no crash, healthy after."""
    precision = args.xlembed.split(",")[0]
    server = xlembed_server(args, precision, args.port or free_port(), work, ["--max-queue", "512",
                                                                               "--max-inputs", "512"])
    server.start()
    try:
        clients = args.batch_concurrency * 10
        load = asyncio.run(_load(server.url, bodies(texts, args.batch_size, clients * 10, False), clients,
                                 args.time_limit))
        health = server.health()
        after = asyncio.run(_load(server.url, bodies(texts, 1, 20, False), 2, 30))
    finally:
        code = server.stop()
    return {"server": server.name, "command": server.command, "clients": clients,
            "per_request": args.batch_size, "load": load, "health_after": health, "normal_requests_after": after,
            "exit_code_after_sigterm": code}


def goals(results: dict) -> list[dict]:
    rows = {r["server"]: r for r in results["rows"]}
    ours = [r for n, r in rows.items() if n.startswith("xlembed") and "--quiet" not in n]  # as a user runs it
    theirs = [r for n, r in rows.items() if n.startswith("infinity")]
    out = []
    if ours and theirs:
        for load, key in (("single", "requests_per_s"), ("batch", "sentences_per_s")):
            best = max(ours, key=lambda r: r[load][key])
            rival = max(theirs, key=lambda r: r[load][key])
            ratio = best[load][key] / rival[load][key]
            out.append({"goal": f"{load}: >= 1.5x infinity's best engine ({key})",
                        "measured": f"{best['server']} {best[load][key]} vs {rival['server']} {rival[load][key]}: "
                                    f"{ratio:.2f}x", "met": ratio >= 1.5})
            out.append({"goal": f"{load}: p99 no higher than infinity's best engine",
                        "measured": f"{best[load]['p99_ms']} ms vs {rival[load]['p99_ms']} ms",
                        "met": best[load]["p99_ms"] <= rival[load]["p99_ms"]})
    errors = sum(r["errors"] for r in ours)
    out.append({"goal": "zero errors (xlembed, every load and round)", "measured": str(errors), "met": errors == 0})
    ov = results["overload"]
    bad = {k: v for k, v in ov["load"]["statuses"].items() if k not in ("200", "429")}
    out.append({"goal": "10x overload: 429s with Retry-After, nothing else fails, healthy after",
                "measured": f"statuses {ov['load']['statuses']}, Retry-After {ov['load']['retry_after_seen']}, "
                            f"/health {ov['health_after']}, after: {ov['normal_requests_after']['ok']}/"
                            f"{ov['normal_requests_after']['requests']} ok",
                "met": ov["load"]["statuses"].get("429", 0) > 0 and not bad and ov["health_after"] == 200
                and ov["normal_requests_after"]["errors"] == 0})
    return out


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [f"### Serving load test: {MODEL_NAME}, xlembed serve vs infinity-emb", "",
             f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('ram_gib', '?')} GiB RAM, no GPU. "
             f"{results['date']}.", "",
             f"Command: `{results['command']}`", "",
             f"Loads: (a) {results['loads']['single']}; (b) {results['loads']['batch']}. Best of the rounds per "
             "server; every server in its own process on 127.0.0.1, the load generator (aiohttp) in another.", ""]
    if results["skipped"]:
        lines += [f"**{results['skipped']}**", ""]
    lines += ["| server | (a) req/s | (a) p50 / p99 ms | (b) sent/s | (b) p50 / p99 ms | errors | peak RSS MiB | "
              "cosine to fp32 (mean / min) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results["rows"]:
        s, b = r["single"], r["batch"]
        lines.append(f"| {r['server']} | {s['requests_per_s']} | {s['p50_ms']} / {s['p99_ms']} | "
                     f"{b['sentences_per_s']} | {b['p50_ms']} / {b['p99_ms']} | {r['errors']} | {r['peak_rss_mib']} | "
                     f"{r['cosine_to_fp32']['mean']} / {r['cosine_to_fp32']['min']} |")
    ours = [r for r in results["rows"] if r["server"].startswith("xlembed") and "--quiet" not in r["server"]]
    theirs = [r for r in results["rows"] if r["server"].startswith("infinity")]
    for quiet in [r for r in results["rows"] if "--quiet" in r["server"]]:
        default = next((r for r in ours if r["server"] == quiet["server"].replace(" --quiet", "")), None)
        if default is not None:
            lines += ["", f"The per-request language check ({default['server']} vs {quiet['server']}): (a) "
                      f"{default['single']['requests_per_s'] / quiet['single']['requests_per_s']:.3f}x the req/s, p99 "
                      f"{default['single']['p99_ms']} vs {quiet['single']['p99_ms']} ms; (b) "
                      f"{default['batch']['sentences_per_s'] / quiet['batch']['sentences_per_s']:.3f}x the sent/s."]
    if ours and theirs:
        best_a = max(ours, key=lambda r: r["single"]["requests_per_s"])
        best_b = max(ours, key=lambda r: r["batch"]["sentences_per_s"])
        lines += ["", f"Ratios of xlembed's best ({best_a['server']} / {best_b['server']}) to each infinity engine:", ""]
        lines += [f"- {r['server']}: (a) {best_a['single']['requests_per_s'] / r['single']['requests_per_s']:.2f}x, "
                  f"(b) {best_b['batch']['sentences_per_s'] / r['batch']['sentences_per_s']:.2f}x" for r in theirs]
    ov = results["overload"]
    lines += ["", f"Overload: {ov['clients']} clients x {ov['per_request']} sentences against `{ov['command']}`: "
              f"statuses {ov['load']['statuses']}, Retry-After values {ov['load']['retry_after_seen']}, "
              f"/health after {ov['health_after']}, 20 normal requests after: {ov['normal_requests_after']['ok']} ok; "
              f"exit code after SIGTERM {ov['exit_code_after_sigterm']}.", "", "Goals:", ""]
    lines += [f"- {g['goal']}: {'met' if g['met'] else 'NOT met'} ({g['measured']})" for g in results["goals"]]
    lines += ["", "Commands of each server:", ""] + [f"- {r['server']}: `{r['command']}`" for r in results["rows"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
