"""Cosine similarity matrices and top-k search, memory-bounded for large corpora."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .encoder import Encoder, as_texts, l2_normalize
from .errors import BadInputError

QUERY_BLOCK = 1024
CORPUS_BLOCK = 16384


def cosine_similarity(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity between the rows of ``a`` and of ``b`` (``a`` with itself when ``b`` is None)."""
    a = _as_matrix(a, "a")
    b = a if b is None else _as_matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise BadInputError(f"vectors differ in dimension: a has {a.shape[1]}, b has {b.shape[1]}")
    return np.clip(l2_normalize(a) @ l2_normalize(b).T, -1.0, 1.0)


def similarity(
    texts: Sequence[str],
    other: Sequence[str] | None = None,
    model: Encoder | str | None = None,
    prompt: str | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Cosine similarity matrix between texts (and ``other`` texts), embedded with ``model``.

    A single string is one text: ``similarity("Hund", "dog")`` is a 1x1 matrix.
    ``model`` is an Encoder or anything ``load()`` accepts; None uses the default model.
    """
    texts = as_texts(texts, "texts")
    other = None if other is None else as_texts(other, "other")
    encoder = model if isinstance(model, Encoder) else _load(model)
    a = encoder.encode(texts, batch_size=batch_size, prompt=prompt)
    b = None if other is None else encoder.encode(other, batch_size=batch_size, prompt=prompt)
    return cosine_similarity(a, b)


@dataclass
class SearchResult:
    """``indices[i, j]`` is the j-th nearest corpus row to query i; ``scores`` its cosine similarity."""

    scores: np.ndarray
    indices: np.ndarray


def search(
    queries: np.ndarray,
    corpus: np.ndarray,
    top_k: int = 10,
    query_block: int = QUERY_BLOCK,
    corpus_block: int = CORPUS_BLOCK,
) -> SearchResult:
    """Top-k cosine search of query vectors against corpus vectors.

    Works in blocks of ``query_block`` x ``corpus_block`` similarities, so memory stays bounded
    (about 64 MB at the defaults) whatever the sizes; ties keep the lower corpus index first.
    """
    q = _as_matrix(queries, "queries")
    c = _as_matrix(corpus, "corpus")
    if q.shape[1] != c.shape[1]:
        raise BadInputError(f"queries have dimension {q.shape[1]} but the corpus has {c.shape[1]}")
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise BadInputError(f"top_k must be a positive integer, got {top_k!r}")
    k = min(int(top_k), len(c))
    scores = np.empty((len(q), k), dtype=np.float32)
    indices = np.empty((len(q), k), dtype=np.int64)
    c = l2_normalize(c)
    for qs in range(0, len(q), query_block):
        qb = l2_normalize(q[qs : qs + query_block])
        best_s = np.full((len(qb), 0), -np.inf, dtype=np.float32)
        best_i = np.zeros((len(qb), 0), dtype=np.int64)
        for cs in range(0, len(c), corpus_block):
            sims = qb @ c[cs : cs + corpus_block].T
            ids = np.broadcast_to(np.arange(cs, cs + sims.shape[1]), sims.shape)
            best_s, best_i = _merge_top_k(np.hstack([best_s, sims]), np.hstack([best_i, ids]), k)
        scores[qs : qs + len(qb)] = best_s
        indices[qs : qs + len(qb)] = best_i
    return SearchResult(scores=np.clip(scores, -1.0, 1.0), indices=indices)


def _merge_top_k(s: np.ndarray, i: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if s.shape[1] > k:
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        s, i = np.take_along_axis(s, part, 1), np.take_along_axis(i, part, 1)
    order = np.lexsort((i, -s), axis=1)  # by score descending, then index ascending
    return np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)


def _as_matrix(x, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise BadInputError(f"{what} must be a 2-D array of vectors, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise BadInputError(f"{what} contains NaN or inf values")
    return arr


def _load(model):
    from .loading import load

    return load(model)
