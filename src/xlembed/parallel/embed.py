"""Embed a corpus into Parquet shards with bounded memory, resumable after a crash, in one process or on Ray.

    result = embed_corpus("corpus/*.jsonl", "vectors/", LoadSpec("multilingual-e5-small", precision="int8"),
                          Settings(fields=Fields("text", "id")))
    ids, vectors = read_vectors("vectors/")

Both engines embed the same shards with the same ``embed_shard`` and write the same files; the manifest is
written by this process only. ``resume=True`` skips the shards the manifest lists (their files checked against
its SHA-256) and redoes the rest, so an interrupted job finishes with every row exactly once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInputError, DataFormatError
from ..loading import LoadSpec, load, resolve
from ..train.loop import progress_bar
from .corpus import Fields, find_sources
from .shards import (DTYPES, MANIFEST, Manifest, Settings, embed_shard, model_facts, plan_shards, require_pyarrow,
                     settings_dict, stale_temporaries)

ENGINES = ("local", "ray")
DEFAULT_SHARD_ROWS = 10_000  # the unit of resume (~30 s of e5-small int8 on 2 cores) and of work on Ray


@dataclass
class CorpusResult:
    out: Path
    engine: str
    shards: int
    shards_done_before: int  # finished by an earlier run (resume)
    rows: int
    vectors: int
    skipped: int
    truncated: int
    seconds: float
    sentences_per_second: float  # rows embedded by this run / its wall time (model loading included)
    model: dict


def embed_corpus(inputs: list[str] | str, out: Path | str, spec: LoadSpec | None = None, settings: Settings = Settings(),
                 *, shard_rows: int = DEFAULT_SHARD_ROWS, engine: str = "local", resume: bool = False,
                 workers: int | None = None, address: str | None = None, progress: bool | None = None,
                 check_languages: bool = True) -> CorpusResult:
    """Embed every row of ``inputs`` (files or globs) into shards under ``out``.

    engine: "local" (this process) or "ray" (a Ray Data actor pool of ``workers``, each loading the model once from
        ``spec``; ``address`` joins a running cluster, None starts a local one bound to 127.0.0.1).
    check_languages: the encoder's language check (one warning per language the model was not trained on; on Ray
        from each worker, in its log).
    """
    started = time.perf_counter()
    spec = spec or LoadSpec()
    _check(settings, shard_rows, engine, workers)
    resolve(spec.model)  # a model that cannot be found fails here, before any Ray worker tries to load it
    sources = find_sources(inputs)
    if not any(s.rows for s in sources):
        raise BadInputError(f"the input files hold no rows: {', '.join(s.path for s in sources)}")
    shards = plan_shards(sources, shard_rows)
    job = {"spec": spec.to_dict(), "settings": settings_dict(settings), "shard_rows": shard_rows,
           "inputs": [s.to_dict() for s in sources]}
    manifest = Manifest.open(Path(out), job, len(shards), resume)
    for leftover in stale_temporaries(manifest.folder):
        leftover.unlink(missing_ok=True)
    pending = [s for s in shards if not manifest.done(s)]
    for shard in pending:
        manifest.shards.pop(shard.index, None)  # listed but its file is gone or changed: redone
    manifest.save()  # at once: a run killed before its first shard leaves a folder that --resume recognises
    done_before = len(shards) - len(pending)
    bar = progress_bar(sum(s.rows for s in shards), sum(s.rows for s in shards) - sum(s.rows for s in pending), progress,
                       "embed-corpus", unit="sent", unit_scale=True)
    try:
        if engine == "local" and pending:
            encoder = load(spec)
            encoder.check_languages = check_languages
            manifest.model = model_facts(encoder, settings)
            for shard in pending:
                manifest.record(embed_shard(encoder, shard, manifest.folder, settings,
                                            on_chunk=(bar.update if bar is not None else None)))
        elif pending:
            from .ray_engine import run_on_ray

            def finished(entry: dict, model: dict) -> None:
                manifest.model = model
                manifest.record(entry)
                if bar is not None:
                    bar.update(entry["rows"])

            run_on_ray(spec, settings, pending, manifest.folder, finished, workers=workers, address=address,
                       check_languages=check_languages)
    finally:
        if bar is not None:
            bar.close()
    counts = manifest.counts()
    seconds = time.perf_counter() - started
    rows_now = sum(s.rows for s in pending)
    return CorpusResult(out=manifest.folder, engine=engine, shards=len(shards), shards_done_before=done_before,
                        rows=counts["rows"], vectors=counts["vectors"], skipped=counts["skipped"],
                        truncated=counts["truncated"], seconds=round(seconds, 2),
                        sentences_per_second=round(rows_now / max(seconds, 1e-9), 1), model=manifest.model or {})


def read_vectors(out: Path | str, allow_incomplete: bool = False) -> tuple[list[str], np.ndarray]:
    """The ids and vectors (float32) of a finished job, in corpus order."""
    import json

    _, pq = require_pyarrow()

    folder = Path(out)
    path = folder / MANIFEST
    if not path.is_file():
        raise BadInputError(f"{folder} holds no {MANIFEST}: not the --out folder of `xlembed embed-corpus`")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if not manifest["complete"] and not allow_incomplete:
        counts = manifest["counts"]
        raise BadInputError(f"{folder}: the job is unfinished ({counts['shards_done']} of {counts['shards']} shards); "
                            "rerun it with --resume")
    ids: list[str] = []
    parts = []
    for entry in manifest["shards"]:
        table = pq.read_table(folder / entry["file"])
        ids.extend(table.column("id").to_pylist())
        flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        parts.append(flat.reshape(len(table), -1).astype(np.float32, copy=False))
    if not parts:
        raise DataFormatError(f"{folder}: no shard finished yet")
    return ids, np.concatenate(parts)


def _check(settings: Settings, shard_rows: int, engine: str, workers: int | None) -> None:
    if engine not in ENGINES:
        raise BadInputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if settings.dtype not in DTYPES:
        raise BadInputError(f"dtype must be one of {', '.join(DTYPES)}, got {settings.dtype!r}")
    if shard_rows < 1 or settings.chunk_rows < 1 or settings.batch_size < 1:
        raise BadInputError(f"shard rows, chunk rows and batch size must be >= 1 (got {shard_rows}, "
                            f"{settings.chunk_rows}, {settings.batch_size})")
    if workers is not None and (engine != "ray" or workers < 1):
        raise BadInputError(f"workers is a positive count for the ray engine (got {workers} with engine {engine!r})")
