"""Teacher embeddings stored once on disk and memory-mapped, for distillation across epochs and runs.

Layout: ``root/<teacher key>/`` holds ``meta.json`` (the teacher identity, for people) and shards.
A shard is ``NAME.f32`` (raw float32 rows, C order) plus ``NAME.keys.json`` (its texts' sha256,
its row count and dim). Both are written to temporary names and renamed, the keys file last, so a
shard becomes visible only when complete; a keys file whose ``.f32`` is missing or of the wrong
size is ignored (and removed), and its texts are encoded again. Several processes may share a
root: each writes its own shards and picks up the others' on the next miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from ..encoder import Encoder, as_texts
from ..paths import write_bytes_atomic

CACHE_FORMAT = 1
SHARD_ROWS = 8192  # texts per shard when many are missing: an interruption loses at most one shard's work


class TeacherCache:
    """``get(texts)`` returns the teacher's embeddings (float32, not normalized), encoding only new texts.

    ``n_encoded`` counts texts sent to the teacher, ``n_hits`` rows served without encoding, and
    ``n_teacher_calls`` calls of ``teacher.encode`` (all cumulative over this instance).
    """

    def __init__(self, root: Path | str, teacher: Encoder, prompt: str | None = None, shard_rows: int = SHARD_ROWS):
        self.teacher = teacher
        self.prompt = prompt
        self.prefix = teacher.resolve_prompt(prompt)
        self.identity = teacher_identity(teacher, self.prefix)
        digest = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:20]
        safe = re.sub(r"[^A-Za-z0-9_.-]", "-", teacher.name)[:40]
        self.folder = Path(root) / f"{safe}-{teacher.precision}-{digest}"
        self.shard_rows = int(shard_rows)
        self.dim = int(teacher.dim)
        self.n_encoded = 0
        self.n_hits = 0
        self.n_teacher_calls = 0
        self._index: dict[str, tuple[str, int]] = {}  # text key -> (shard name, row)
        self._loaded: set[str] = set()  # shard names whose keys were read (valid or not)
        self._maps: dict[str, np.ndarray] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "meta.json"
        if not meta.is_file():
            write_bytes_atomic(meta, json.dumps({"format": CACHE_FORMAT, **self.identity}, indent=1).encode(), fsync=True)
        self.refresh()

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, text: str) -> bool:
        return text_key(text) in self._index

    def refresh(self) -> None:
        """Pick up shards written since the last look (by this or another process)."""
        for keys_path in sorted(self.folder.glob("*.keys.json")):
            name = keys_path.name[: -len(".keys.json")]
            if name in self._loaded:
                continue
            self._loaded.add(name)
            keys = self._read_keys(keys_path, name)
            if keys is None:
                continue
            for row, key in enumerate(keys):
                self._index[key] = (name, row)

    def _read_keys(self, keys_path: Path, name: str) -> list[str] | None:
        try:
            entry = json.loads(keys_path.read_text(encoding="utf-8"))
            keys, rows, dim = entry["keys"], int(entry["rows"]), int(entry["dim"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable entry: its texts are encoded again
        shard = self.folder / f"{name}.f32"
        try:
            size = shard.stat().st_size
        except OSError:
            size = -1
        if dim != self.dim or len(keys) != rows or size != rows * dim * 4:
            for path in (keys_path, shard):  # a damaged entry: remove it so it is not checked on every run
                try:
                    path.unlink()
                except OSError:
                    pass
            return None
        return keys

    def _shard(self, name: str) -> np.ndarray:
        mm = self._maps.get(name)
        if mm is None:
            rows = os.path.getsize(self.folder / f"{name}.f32") // (4 * self.dim)
            mm = np.memmap(self.folder / f"{name}.f32", dtype=np.float32, mode="r", shape=(rows, self.dim))
            self._maps[name] = mm
        return mm

    def get(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """An (n, dim) float32 array: the teacher's embedding of each text, in order (a str is one text)."""
        texts = as_texts(texts)
        keys = [text_key(t) for t in texts]
        missing = self._missing(keys, texts)
        if missing:
            self.refresh()  # another process (or an earlier call) may have written them meanwhile
            missing = self._missing(keys, texts)
        for start in range(0, len(missing), self.shard_rows):
            chunk = missing[start : start + self.shard_rows]
            vectors = self.teacher.encode([t for _, t in chunk], batch_size=batch_size, prompt=self.prefix)
            self.n_teacher_calls += 1
            self._write_shard([k for k, _ in chunk], np.ascontiguousarray(vectors, dtype=np.float32))
        self.n_encoded += len(missing)
        self.n_hits += len(texts) - len(missing)

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        by_shard: dict[str, tuple[list[int], list[int]]] = {}
        for i, key in enumerate(keys):
            name, row = self._index[key]
            dest, rows = by_shard.setdefault(name, ([], []))
            dest.append(i)
            rows.append(row)
        for name, (dest, rows) in by_shard.items():
            out[dest] = self._shard(name)[rows]
        return out

    def _missing(self, keys: list[str], texts: list[str]) -> list[tuple[str, str]]:
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts):
            if key not in self._index and key not in todo:
                todo[key] = text
        return list(todo.items())

    def _write_shard(self, keys: list[str], vectors: np.ndarray) -> None:
        if vectors.shape != (len(keys), self.dim):
            raise ValueError(f"teacher returned shape {vectors.shape}, expected {(len(keys), self.dim)}")
        name = f"shard-{uuid.uuid4().hex[:16]}"
        write_bytes_atomic(self.folder / f"{name}.f32", vectors.tobytes(order="C"), fsync=True)
        entry = {"rows": len(keys), "dim": self.dim, "keys": keys}
        write_bytes_atomic(self.folder / f"{name}.keys.json", json.dumps(entry).encode(), fsync=True)  # last: makes it visible
        self._loaded.add(name)
        for row, key in enumerate(keys):
            self._index[key] = (name, row)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def teacher_identity(teacher: Encoder, prefix: str = "") -> dict:
    """What makes two teachers give the same vectors: name, source, backend, precision, prompt, files."""
    info = teacher.info
    return {
        "name": teacher.name,
        "source": info.source,
        "backend": teacher.backend,
        "precision": teacher.precision,
        "dim": int(teacher.dim),
        "prefix": prefix,
        "pooling": info.pooling,
        "files": _source_files_stamp(info.source),
    }


def _source_files_stamp(source: str) -> list[str]:
    """size:mtime of the model's files, from the source folder or file (also 'pkg:x (/path)' sources)."""
    candidates = [source] + re.findall(r"\(([^()]+)\)", source)
    for candidate in candidates:
        path = Path(candidate.strip()).expanduser()
        try:
            if path.is_file():
                st = path.stat()
                return [f"{path.name}:{st.st_size}:{st.st_mtime_ns}"]
            if path.is_dir():
                stamps = []
                for p in sorted(path.rglob("*")):
                    rel = p.relative_to(path)
                    if any(part.startswith(".") or part == "__pycache__" for part in rel.parts) or not p.is_file():
                        continue
                    st = p.stat()
                    stamps.append(f"{rel.as_posix()}:{st.st_size}:{st.st_mtime_ns}")
                return stamps
        except OSError:
            continue
    return []
