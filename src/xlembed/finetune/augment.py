"""More text pairs for classifier distillation, made from the training pairs themselves.

A small labelled set (SICK: 4,500 pairs) shows a student few of the places where the teacher draws its
boundaries, and the teacher can label any pair. ``augmented_pairs`` makes new pairs out of the training
sentences: every pair reversed (b, a): entailment is not symmetric, so these are new questions; and each
training sentence paired with its ``neighbours`` most word-overlapping other training sentences (Jaccard of
lower-cased word sets; the same set of words is skipped): the near-paraphrases and one-word edits pair datasets are built from. Pairs that
already are a known pair (training, dev, tests; either order) are left out, so no test pair gets a teacher label.

Measured on SICK (``python benchmarks/finetune_xling.py --parts kd``): see the README's fine-tuning results.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

MAX_SENTENCES = 30_000  # above this many distinct sentences, neighbours come from a seeded sample of them
_WORD = re.compile(r"\w+")


def augmented_pairs(texts_a: Sequence[str], texts_b: Sequence[str], neighbours: int = 2,
                    known: Iterable[tuple[str, str]] = (), seed: int = 0) -> tuple[list[str], list[str]]:
    """Reversed training pairs plus word-overlap neighbour pairs (see the module docstring), none of them in
    ``known`` (pairs of the dev and test data) or the training pairs, each pair once."""
    from scipy import sparse

    training = set(zip(texts_a, texts_b))
    seen = {(a, b) for a, b in known} | {(b, a) for a, b in known} | training
    out_a, out_b = [], []

    def add(a: str, b: str) -> bool:
        if a == b or (a, b) in seen:
            return False
        seen.add((a, b))
        out_a.append(a)
        out_b.append(b)
        return True

    for a, b in zip(texts_a, texts_b):
        add(b, a)
    if neighbours <= 0:
        return out_a, out_b
    sentences = sorted(set(texts_a) | set(texts_b))
    if len(sentences) > MAX_SENTENCES:
        keep = np.random.default_rng(seed).permutation(len(sentences))[:MAX_SENTENCES]
        sentences = [sentences[i] for i in sorted(keep)]
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, text in enumerate(sentences):
        for word in set(_WORD.findall(text.lower())):
            rows.append(i)
            cols.append(vocab.setdefault(word, len(vocab)))
    words = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(sentences), len(vocab)))
    sizes = np.asarray(words.sum(axis=1)).ravel()
    top = neighbours + 32  # candidates looked at per sentence (known pairs and same-word variants are skipped)
    chunk = max(1, 2 ** 24 // max(len(sentences), 1))  # ~64 MB of similarities at a time
    for start in range(0, len(sentences), chunk):
        common = (words[start:start + chunk] @ words.T).toarray()
        jaccard = common / np.maximum(sizes[start:start + chunk, None] + sizes[None, :] - common, 1.0)
        for r, row in enumerate(jaccard):
            row[start + r] = -1.0
            found = 0
            best = np.argpartition(-row, top - 1)[:top] if top < len(row) else np.arange(len(row))
            for c in best[np.lexsort((best, -row[best]))]:  # most overlap first, ties by position
                if row[c] <= 0 or found == neighbours:
                    break
                if row[c] < 0.999:  # the same words (a case or punctuation variant) teach nothing
                    found += add(sentences[start + r], sentences[c])
    return out_a, out_b
