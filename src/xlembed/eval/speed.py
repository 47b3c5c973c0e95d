"""Speed, memory and size of an Encoder on this machine (figures, not assertions)."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path

from ..encoder import Encoder
from .results import TaskResult

DEFAULT_BATCH_SIZES = (1, 8, 32)
LATENCY_PAIR = ["今日は天気がいい", "The weather is nice today"]


def speed(
    encoder: Encoder,
    texts: list[str],
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
    latency_runs: int = 20,
    max_texts_per_size: int = 512,
) -> TaskResult:
    """Latency of a 2-sentence request (median of ``latency_runs``) and throughput at each batch size.

    Each batch size encodes up to ``max_texts_per_size`` of ``texts`` once after a warm-up batch.
    """
    encoder.encode(LATENCY_PAIR)  # warm-up: lazy loads, first-call allocations
    latencies = []
    for _ in range(latency_runs):
        started = time.perf_counter()
        encoder.encode(LATENCY_PAIR)
        latencies.append((time.perf_counter() - started) * 1000)
    scores = {"latency_ms_2": statistics.median(latencies)}
    sample = list(texts[:max_texts_per_size])
    for size in batch_sizes:
        encoder.encode(sample[:size], batch_size=size)
        started = time.perf_counter()
        encoder.encode(sample, batch_size=size)
        scores[f"sent_per_s_b{size}"] = len(sample) / (time.perf_counter() - started)
    main = "sent_per_s_b32" if 32 in batch_sizes else f"sent_per_s_b{batch_sizes[-1]}"
    return TaskResult(task="speed", dataset="mixed", language="all", scores=scores, main_score=main,
                      details={"n_texts": len(sample), "latency_runs": latency_runs})


def memory_probe(encoder: Encoder) -> dict:
    """Encode the bundled 10-language sample (batch 32) and read this process's peak RSS: the memory of load +
    an encode, the same texts for every model. Call it before any other work in the process (a bench worker:
    before its tasks, whose data and cached embeddings would otherwise decide the figure)."""
    from ..demo import load_sample

    sample = load_sample()
    texts = [row[lang] for lang in sample["languages"] for row in sample["sentences"]]
    encoder.encode(texts, batch_size=32)
    return {"peak_rss_mb": peak_rss_mb(), "texts": len(texts), "batch_size": 32}


def size(encoder: Encoder, load_seconds: float | None = None, probe: dict | None = None) -> TaskResult:
    """Parameters (millions), bytes on disk of the model's files (MB), peak RSS (MB) and, when given, the
    seconds ``load()`` took; details name the folder, the languages the model was trained on (None: unknown)
    and, for a compressed model, its parent and steps. Peak RSS: ``probe``'s (``memory_probe``) when given,
    else this process's peak so far, whatever it did."""
    rss = probe["peak_rss_mb"] if probe else peak_rss_mb()
    scores = {"disk_mb": disk_mb(encoder), "peak_rss_mb": rss}
    params = parameter_count(encoder)
    if params is not None:
        scores["params_m"] = params / 1e6
    if load_seconds is not None:
        scores["load_s"] = load_seconds
    gpu = gpu_max_allocated_mb()
    if gpu is not None:
        scores["gpu_max_allocated_mb"] = gpu
    details = {"source": encoder.info.source,
               "languages": list(encoder.info.languages) if encoder.info.languages is not None else None,
               "languages_source": encoder.info.languages_source,
               "peak_rss": (f"load + encoding the bundled sample ({probe['texts']} texts, batch {probe['batch_size']}), "
                            "before any task" if probe else "this process's peak when measured")}
    compressed = compression_of(encoder.info.source)
    if compressed:
        details["compress"] = compressed
    return TaskResult(task="size", dataset="-", language="all", scores=scores, main_score="peak_rss_mb", details=details)


def compression_of(source: str) -> dict | None:
    """The parent, kept languages and steps of a folder written by ``xlembed compress`` (None for others)."""
    import json

    path = Path(source) / "compress.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    from ..compress.folder import trimmed_languages

    steps = record.get("steps") or []
    languages = trimmed_languages(record)
    run = record.get("run") or {}
    return {"parent": record.get("parent"), "parent_model": run.get("model"),
            "languages": languages or run.get("languages"), "steps": [s.get("label", s.get("step")) for s in steps]}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB: VmHWM on Linux (ru_maxrss there survives
    fork + exec, so a fresh process started by a big one would report its parent's peak)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def gpu_max_allocated_mb() -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def parameter_count(encoder: Encoder) -> int | None:
    model = getattr(encoder, "model", None)
    if model is not None and hasattr(model, "parameters"):
        return sum(p.numel() for p in model.parameters())
    if encoder.backend == "onnx":
        import onnx

        path = Path(encoder.info.source) / encoder.files[encoder.precision]
        graph = onnx.load(str(path), load_external_data=False).graph
        total = 0
        for init in graph.initializer:
            n = 1
            for d in init.dims:
                n *= d
            total += n if init.data_type != onnx.TensorProto.INT64 else 0
        return total
    return None


def disk_mb(encoder: Encoder) -> float:
    """Size of the files the model was loaded from (for a package: the package folder)."""
    source = encoder.info.source
    if encoder.backend == "use":
        from ..backends.use_backend import use_package_dir

        folder = use_package_dir()
    else:
        folder = Path(source)
    if encoder.backend == "onnx":  # only the graph actually used, plus the tokenizer and configs
        files = [p for p in folder.iterdir() if p.is_file() and (not p.suffix == ".onnx" or p.name == encoder.files[encoder.precision])]
    else:
        files = [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return sum(p.stat().st_size for p in files) / 1e6
