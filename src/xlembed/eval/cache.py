"""Embeddings cached on disk per (model, precision, prompt, text), so a second bench run does not re-encode.

Each (model identity, precision, prompt) has a folder of .npy shards named by the hash of their texts'
keys; an index maps text hash -> (shard, row). Writes go to temporary names and are renamed, so an
interrupted run never leaves a half-written entry that a later run would read. Encoders whose
``info.cacheable`` is False (weights that live only in memory, e.g. a student being trained) are
encoded every time: nothing on disk identifies their weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..encoder import Encoder, as_texts
from ..paths import atomic_file, cache_dir, write_text_atomic


class EmbeddingCache:
    """A disk cache of sentence embeddings; ``encode`` returns cached rows and encodes only the rest."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else cache_dir() / "embeddings"
        self.hits = 0
        self.misses = 0

    def encode(self, encoder: Encoder, texts: list[str], prompt: str | None = None, batch_size: int = 32) -> np.ndarray:
        texts = as_texts(texts)
        prefix = encoder.resolve_prompt(prompt)
        if not encoder.info.cacheable:  # in-memory weights: a name-based key could serve another model's vectors
            self.misses += len(texts)
            return np.asarray(encoder.encode(list(texts), batch_size=batch_size, prompt=prefix), dtype=np.float32)
        folder = self.root / _model_key(encoder, prefix)
        index = _read_index(folder)
        keys = [_text_key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in index}.items())
        if missing:
            vectors = encoder.encode([t for _, t in missing], batch_size=batch_size, prompt=prefix)
            shard = hashlib.sha256("".join(k for k, _ in missing).encode()).hexdigest()[:16] + ".npy"
            folder.mkdir(parents=True, exist_ok=True)
            _save_npy_atomic(folder / shard, vectors)
            for row, (key, _) in enumerate(missing):
                index[key] = [shard, row]
            _write_index_atomic(folder, index)
        self.misses += len(missing)
        self.hits += len(texts) - len(missing)
        out = np.empty((len(texts), encoder.dim), dtype=np.float32)
        shards: dict[str, np.ndarray] = {}
        for i, key in enumerate(keys):
            shard, row = index[key]
            if shard not in shards:
                shards[shard] = np.load(folder / shard, mmap_mode="r")
            out[i] = shards[shard][row]
        return out


def encode_texts(encoder: Encoder, texts: list[str], prompt: str | None = None,
                 cache: EmbeddingCache | None = None, batch_size: int = 32) -> np.ndarray:
    """Sentence embeddings of ``texts`` (not normalized; a str is one text), through ``cache`` when one is given."""
    texts = as_texts(texts)
    if cache is None:
        return encoder.encode(texts, batch_size=batch_size, prompt=prompt)
    return cache.encode(encoder, texts, prompt=prompt, batch_size=batch_size)


def _model_key(encoder: Encoder, prefix: str) -> str:
    source = Path(encoder.info.source)
    stamp = ""
    if source.is_dir():
        stamp = ";".join(
            f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
            for p in sorted(source.iterdir()) if p.is_file() and p.suffix in (".safetensors", ".onnx", ".bin", ".npz")
        )
    from .. import __version__

    ident = f"{encoder.name}|{encoder.info.source}|{stamp}|{encoder.backend}|{encoder.precision}|{prefix}|{__version__}"
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in encoder.name)[:40]
    return f"{safe}-{encoder.precision}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _read_index(folder: Path) -> dict:
    path = folder / "index.json"
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}  # a damaged index only costs a re-encode
    return {k: v for k, v in index.items() if (folder / v[0]).is_file()}


def _write_index_atomic(folder: Path, index: dict) -> None:
    write_text_atomic(folder / "index.json", json.dumps(index))


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_file(path, suffix=".npy") as tmp:
        np.save(tmp, np.asarray(array, dtype=np.float32))
