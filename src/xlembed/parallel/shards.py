"""Shards of a corpus job: which rows each holds, how one is embedded and written, and the manifest.

The corpus (its files in sorted order, rows in file order) is cut into shards of ``shard_rows`` rows. A shard
is written to a temporary name and renamed (``shard-00003.parquet``: columns ``id`` string and ``vector``
fixed-size list of float32 or float16); the manifest lists the finished shards with their row counts and
SHA-256, and is itself replaced atomically after each one. A resumed job redoes exactly the shards the
manifest does not list (or whose file no longer matches its checksum).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import BadInputError, DataFormatError, XlembedWarning
from ..langs.coverage import LanguageWarning
from ..paths import atomic_file, write_text_atomic
from .corpus import Fields, Row, Source, read_rows

MANIFEST = "manifest.json"
FORMAT = 1
DTYPES = ("float32", "float16")
SHOWN_PROBLEMS = 10  # bad rows listed by place in the manifest (all are counted)


@dataclass(frozen=True)
class Segment:
    source: Source
    start: int  # 0-based, within the file
    stop: int


@dataclass(frozen=True)
class Shard:
    index: int
    segments: tuple[Segment, ...]

    @property
    def rows(self) -> int:
        return sum(s.stop - s.start for s in self.segments)

    @property
    def file(self) -> str:
        return f"shard-{self.index:05d}.parquet"


@dataclass(frozen=True)
class Settings:
    """How every shard is embedded: the same for the local and the Ray engine (part of the job's identity)."""

    fields: Fields = Fields()
    prompt: str | None = None
    normalize: bool = True
    dtype: str = "float32"
    batch_size: int = 32
    chunk_rows: int = 4096  # texts length-sorted and encoded together (bounds memory inside a shard)
    skip_bad: bool = False


def plan_shards(sources: list[Source], shard_rows: int) -> list[Shard]:
    """Cut the concatenated rows of ``sources`` into shards of ``shard_rows`` rows (the last may be shorter)."""
    if shard_rows < 1:
        raise BadInputError(f"shard_rows must be >= 1, got {shard_rows}")
    shards: list[Shard] = []
    current: list[Segment] = []
    room = shard_rows
    for source in sources:
        start = 0
        while start < source.rows:
            take = min(room, source.rows - start)
            current.append(Segment(source, start, start + take))
            start += take
            room -= take
            if room == 0:
                shards.append(Shard(len(shards), tuple(current)))
                current, room = [], shard_rows
    if current:
        shards.append(Shard(len(shards), tuple(current)))
    return shards


def shard_rows_of(shard: Shard, fields: Fields) -> Iterator[tuple[Source, Row]]:
    for segment in shard.segments:
        for row in read_rows(segment.source, fields, segment.start, segment.stop):
            yield segment.source, row


def embed_shard(encoder, shard: Shard, out: Path, settings: Settings, on_chunk=None) -> dict:
    """Embed one shard with ``encoder`` and write it (temporary name, then rename); returns its manifest entry.

    Texts are read and encoded ``chunk_rows`` at a time, each chunk written as a Parquet row group, so memory
    does not grow with the shard. Bad rows raise a DataFormatError naming file and row, or are counted with
    ``skip_bad``. ``on_chunk(n)`` is called after each chunk of n rows (a progress bar).
    """
    pa, pq = require_pyarrow()
    started = time.perf_counter()
    path = Path(out) / shard.file
    value_type = pa.float16() if settings.dtype == "float16" else pa.float32()
    schema = pa.schema([("id", pa.string()), ("vector", pa.list_(value_type, encoder.dim))],
                       metadata={"xlembed": json.dumps({"model": encoder.name, "dim": encoder.dim, "dtype": settings.dtype})})
    skipped: dict[str, int] = {}
    problems: list[str] = []
    pending_ids: deque[str] = deque()

    def texts() -> Iterator[str]:
        for row_id, text in _good_rows(shard, settings, skipped, problems):
            pending_ids.append(row_id)
            yield text

    vectors = truncated = recomputed = 0
    with atomic_file(path, suffix=".parquet") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", XlembedWarning)  # counted per shard below instead of one warning per chunk
        warnings.simplefilter("always", LanguageWarning)  # except the language check's (once per language already)
        with pq.ParquetWriter(tmp, schema) as writer:
            for matrix in encoder.encode_stream(texts(), chunk_size=settings.chunk_rows, batch_size=settings.batch_size,
                                                normalize=settings.normalize, prompt=settings.prompt):
                ids = [pending_ids.popleft() for _ in range(len(matrix))]
                flat = pa.array(matrix.astype(settings.dtype, copy=False).reshape(-1), type=value_type)
                column = pa.FixedSizeListArray.from_arrays(flat, encoder.dim)
                writer.write_table(pa.table({"id": pa.array(ids, pa.string()), "vector": column}, schema=schema))
                vectors += len(ids)
                truncated += encoder.last_stats.n_truncated
                recomputed += encoder.last_stats.n_recomputed_fp32
                if on_chunk is not None:
                    on_chunk(len(ids))
    return {"index": shard.index, "file": shard.file, "rows": shard.rows, "vectors": vectors, "truncated": truncated,
            "recomputed_fp32": recomputed, "skipped": skipped,
            "problems": problems, "sha256": file_sha256(path), "seconds": round(time.perf_counter() - started, 3)}


def _good_rows(shard: Shard, settings: Settings, skipped: dict, problems: list) -> Iterator[tuple[str, str]]:
    """(id, text) of the shard's rows; a bad row raises, or with ``skip_bad`` is counted (the first few by place)."""
    for source, row in shard_rows_of(shard, settings.fields):
        if row.text is not None:
            yield row.id, row.text
            continue
        where = source.where(row.number)
        if not settings.skip_bad:
            raise DataFormatError(f"{where}: {row.problem}; fix the row, or pass --skip-bad to count and skip such rows")
        reason = row.problem.split(" (")[0]  # counted by kind: "not valid JSON", "'text' is int, not text", ...
        skipped[reason] = skipped.get(reason, 0) + 1
        if len(problems) < SHOWN_PROBLEMS:
            problems.append(f"{where}: {row.problem}")


def model_facts(encoder, settings: Settings) -> dict:
    """What the manifest records about the model that made the vectors."""
    return {"name": encoder.name, "source": encoder.info.source, "backend": encoder.backend,
            "precision": encoder.precision, "dim": encoder.dim, "prompt": encoder.resolve_prompt(settings.prompt),
            "normalized": settings.normalize or encoder.info.normalized_output}


def require_pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise BadInputError("corpus embedding writes Parquet: pip install 'xlembed[corpus]' (pyarrow)") from None
    return pyarrow, pyarrow.parquet


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Manifest:
    """What a job is (``job``: model, settings, inputs) and which shards are done (``shards``: by index)."""

    folder: Path
    job: dict
    total_shards: int
    shards: dict[int, dict] = field(default_factory=dict)
    model: dict | None = None  # the model that made the vectors (name, precision, dim, prompt)

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST

    def done(self, shard: Shard) -> bool:
        entry = self.shards.get(shard.index)
        if entry is None:
            return False
        file = self.folder / entry["file"]
        return file.is_file() and file_sha256(file) == entry["sha256"]

    def record(self, entry: dict) -> None:
        self.shards[entry["index"]] = entry
        self.save()

    def counts(self) -> dict:
        skipped: dict[str, int] = {}
        for entry in self.shards.values():
            for why, n in entry["skipped"].items():
                skipped[why] = skipped.get(why, 0) + n
        return {"rows": sum(e["rows"] for e in self.shards.values()),
                "vectors": sum(e["vectors"] for e in self.shards.values()),
                "truncated": sum(e["truncated"] for e in self.shards.values()),
                "recomputed_fp32": sum(e["recomputed_fp32"] for e in self.shards.values()),
                "skipped": sum(skipped.values()), "skipped_by_reason": skipped,
                "shards_done": len(self.shards), "shards": self.total_shards}

    @property
    def complete(self) -> bool:
        return len(self.shards) == self.total_shards

    def save(self) -> None:
        body = {"format": FORMAT, **self.job, "model": self.model, "complete": self.complete, "counts": self.counts(),
                "shards": [self.shards[i] for i in sorted(self.shards)]}
        write_text_atomic(self.path, json.dumps(body, indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def open(cls, folder: Path, job: dict, total_shards: int, resume: bool) -> "Manifest":
        """The manifest of ``folder``: a new one, or (``resume``) the saved one, which must describe the same job."""
        folder = Path(folder)
        path = folder / MANIFEST
        if not path.is_file():
            if folder.exists() and any(folder.iterdir()):
                raise BadInputError(f"--out {folder} is not empty and holds no {MANIFEST}; choose an empty or new folder")
            folder.mkdir(parents=True, exist_ok=True)
            return cls(folder, job, total_shards)
        if not resume:
            raise BadInputError(f"--out {folder} already holds a corpus job ({path}); pass --resume to finish it, "
                                "or choose another --out")
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{path} is unreadable ({exc}); delete {folder} to start over") from None
        if saved.get("format") != FORMAT:
            raise DataFormatError(f"{path} was written by another xlembed version; delete {folder} to start over")
        different = [k for k in job if _comparable(saved.get(k)) != _comparable(job[k])]
        if different:
            shown = "; ".join(f"{k}: was {saved.get(k)!r:.120}, now {job[k]!r:.120}" for k in different)
            raise BadInputError(f"--resume: {folder} holds another job ({shown}); resume with the same model, "
                                "settings and unchanged inputs, or choose another --out")
        return cls(folder, job, total_shards, {e["index"]: e for e in saved.get("shards", [])}, saved.get("model"))


def _comparable(value):
    return json.loads(json.dumps(value))  # tuples become lists, as in the saved file


def settings_dict(settings: Settings) -> dict:
    return asdict(settings)


def stale_temporaries(folder: Path) -> list[Path]:
    """Temporary shard files a killed run left (``.shard-00001.parquet.XXXX.tmp.parquet``)."""
    return sorted(Path(folder).glob(".shard-*.tmp.parquet"))
