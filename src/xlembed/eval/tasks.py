"""Evaluation tasks: each takes an Encoder and returns ``TaskResult`` (or a list of them).

Every task embeds through ``encode_texts`` so the embedding cache works. ``prompt=None`` applies the
model's default prompt to both sides (e5: 'query: ', as MTEB does for symmetric tasks); ``prompt=''``
applies none. ``TaskResult.prompt`` holds the prefix actually used.

Similarities are computed in blocks, so memory stays bounded whatever the number of sentences.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..encoder import Encoder, as_texts, l2_normalize
from ..errors import BadInputError, DataFormatError, NumericalError, XlembedWarning
from ..similarity import search
from .cache import EmbeddingCache, encode_texts
from .data import classification_languages, read_classification, read_sts, read_tatoeba, sts_files, tatoeba_languages
from .results import TaskResult

BLOCK = 2048  # rows per side of one similarity block: 2048 x 2048 float32 = 16 MB


# ---------------------------------------------------------------- helpers


def _embed(encoder: Encoder, texts: Sequence[str], prompt: str | None, cache: EmbeddingCache | None) -> np.ndarray:
    vectors = encode_texts(encoder, list(texts), prompt=prompt, cache=cache)
    return l2_normalize(np.asarray(vectors, dtype=np.float32))


def _langs(folder, langs) -> list[str]:
    if langs is None:
        return tatoeba_languages(folder)
    if isinstance(langs, str):
        return [langs]
    return list(langs)


def weighted_prf(gold: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 as sklearn computes them with ``average='weighted', zero_division=0``.

    Per label (every label in gold or pred): precision tp/pred_count, recall tp/gold_count,
    f1 = 2 tp / (gold_count + pred_count); each averaged with weights gold_count / n, so labels that
    occur only in the predictions weigh nothing. This is what MTEB's BitextMiningEvaluator reports.
    """
    gold = np.asarray(gold)
    pred = np.asarray(pred)
    if gold.shape != pred.shape or gold.ndim != 1 or len(gold) == 0:
        raise BadInputError(f"gold and pred must be 1-D of the same non-zero length, got {gold.shape} and {pred.shape}")
    labels, inverse = np.unique(np.concatenate([gold, pred]), return_inverse=True)
    g, p = inverse[: len(gold)], inverse[len(gold) :]
    n_labels = len(labels)
    gold_count = np.bincount(g, minlength=n_labels).astype(np.float64)
    pred_count = np.bincount(p, minlength=n_labels).astype(np.float64)
    tp = np.bincount(g[g == p], minlength=n_labels).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_count > 0, tp / pred_count, 0.0)
        recall = np.where(gold_count > 0, tp / gold_count, 0.0)
        f1 = np.where(gold_count + pred_count > 0, 2 * tp / (gold_count + pred_count), 0.0)
    weights = gold_count / gold_count.sum()
    return float(weights @ precision), float(weights @ recall), float(weights @ f1)


def knn_mean(queries: np.ndarray, corpus: np.ndarray, k: int = 4) -> np.ndarray:
    """Mean cosine of each query's k nearest corpus rows (blocked, via ``similarity.search``)."""
    return search(queries, corpus, top_k=k).scores.astype(np.float64).mean(axis=1)


def margin_best(
    a: np.ndarray, b: np.ndarray, knn_a: np.ndarray, knn_b: np.ndarray, block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a`` (unit vectors), the row of ``b`` with the best ratio margin, and that margin.

    margin(x, y) = cos(x, y) / ((knn_a[x] + knn_b[y]) / 2), i.e. LASER's ratio margin
    cos / (sum_kNN(x) cos / 2k + sum_kNN(y) cos / 2k). Computed in ``block`` x ``block`` tiles;
    ties keep the lower index of ``b``.
    """
    best_idx = np.zeros(len(a), dtype=np.int64)
    best_score = np.full(len(a), -np.inf, dtype=np.float64)
    for qs in range(0, len(a), block):
        qa = a[qs : qs + block]
        ka = knn_a[qs : qs + block, None]
        for cs in range(0, len(b), block):
            denom = np.maximum((ka + knn_b[None, cs : cs + block]) / 2, 1e-6)
            scores = (qa @ b[cs : cs + block].T) / denom
            idx = scores.argmax(axis=1)
            val = scores[np.arange(len(qa)), idx]
            better = val > best_score[qs : qs + block]
            best_score[qs : qs + block][better] = val[better]
            best_idx[qs : qs + block][better] = cs + idx[better]
    return best_idx, best_score


def _top1(a: np.ndarray, b: np.ndarray, margin: bool, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest row of b for each row of a, and of a for each row of b (cosine or ratio margin)."""
    if not margin:
        return search(a, b, top_k=1).indices[:, 0], search(b, a, top_k=1).indices[:, 0]
    knn_a, knn_b = knn_mean(a, b, k), knn_mean(b, a, k)
    return margin_best(a, b, knn_a, knn_b)[0], margin_best(b, a, knn_b, knn_a)[0]


# ---------------------------------------------------------------- Tatoeba


def top1_accuracies(fwd: np.ndarray, bwd: np.ndarray) -> dict[str, float]:
    """Percent of aligned pairs found at rank 1 each way (row i should find row i), and their mean."""
    gold = np.arange(len(fwd))
    acc_fwd = 100 * float((fwd == gold).mean())
    acc_bwd = 100 * float((bwd == gold).mean())
    return {"accuracy": (acc_fwd + acc_bwd) / 2, "accuracy_xx_eng": acc_fwd, "accuracy_eng_xx": acc_bwd}


def _embed_tatoeba(encoder: Encoder, folder, lang: str, limit, prompt, cache):
    """The aligned (xx, eng) sentences of one Tatoeba language and their embeddings."""
    xx, en = read_tatoeba(folder, lang, limit)
    return xx, en, _embed(encoder, xx, prompt, cache), _embed(encoder, en, prompt, cache)


def tatoeba(
    encoder: Encoder,
    folder,
    langs: Iterable[str] | str | None = None,
    limit: int | None = None,
    prompt: str | None = None,
    cache: EmbeddingCache | None = None,
    margin: bool = False,
    k: int = 4,
) -> list[TaskResult]:
    """Tatoeba top-1 retrieval per language (xx->eng, eng->xx, their mean) and MTEB's F1.

    Scores in percent: ``accuracy`` (mean of both directions, the main score), ``accuracy_xx_eng``,
    ``accuracy_eng_xx``, and ``f1``/``precision``/``recall``: sklearn's weighted averages over the
    xx->eng predictions, as MTEB's BitextMiningEvaluator reports them. ``margin=True`` ranks by
    LASER's ratio margin (k nearest neighbours) instead of raw cosine.
    """
    prefix = encoder.resolve_prompt(prompt)
    results = []
    for lang in _langs(folder, langs):
        xx, en, a, b = _embed_tatoeba(encoder, folder, lang, limit, prompt, cache)
        fwd, bwd = _top1(a, b, margin, k)
        gold = np.arange(len(xx))
        precision, recall, f1 = weighted_prf(gold, fwd)
        results.append(
            TaskResult(
                task="tatoeba",
                dataset="tatoeba",
                language=lang,
                scores={
                    **top1_accuracies(fwd, bwd),
                    "f1": 100 * f1,
                    "precision": 100 * precision,
                    "recall": 100 * recall,
                },
                main_score="accuracy",
                prompt=prefix,
                details={"n": len(xx), "limit": limit, "scoring": f"ratio margin, k={k}" if margin else "cosine"},
            )
        )
    return results


# ---------------------------------------------------------------- bitext mining


def mine_pairs(
    a: np.ndarray, b: np.ndarray, k: int = 4, strategy: str = "max", block: int = BLOCK
) -> list[tuple[int, int, float]]:
    """Candidate (src, tgt, margin) pairs from unit vectors, best first, each index used once.

    Forward (best tgt of every src) and backward (best src of every tgt) by ratio margin; 'max' keeps
    the union, greedily by score with each src and tgt used at most once (LASER's 'max');
    'intersect' keeps the mutual best pairs only.
    """
    if strategy not in ("max", "intersect"):
        raise BadInputError(f"strategy must be 'max' or 'intersect', got {strategy!r}")
    k_ab, k_ba = min(k, len(b)), min(k, len(a))
    knn_a, knn_b = knn_mean(a, b, k_ab), knn_mean(b, a, k_ba)
    fwd, fwd_s = margin_best(a, b, knn_a, knn_b, block)
    bwd, bwd_s = margin_best(b, a, knn_b, knn_a, block)
    if strategy == "intersect":
        src = np.flatnonzero(bwd[fwd] == np.arange(len(a)))
        pairs = [(int(i), int(fwd[i]), float(fwd_s[i])) for i in src]
        return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))
    cand = [(int(i), int(fwd[i]), float(fwd_s[i])) for i in range(len(a))]
    cand += [(int(bwd[j]), int(j), float(bwd_s[j])) for j in range(len(b))]
    cand.sort(key=lambda p: (-p[2], p[0], p[1]))
    used_src, used_tgt, out = set(), set(), []
    for i, j, s in cand:
        if i in used_src or j in used_tgt:
            continue
        used_src.add(i)
        used_tgt.add(j)
        out.append((i, j, s))
    return out


def _best_threshold(pairs: list[tuple[int, int, float]], gold: set) -> tuple[float, float, float, float]:
    """(threshold, precision, recall, f1) of the cut through the ranked pairs that maximises F1."""
    best = (float("inf"), 0.0, 0.0, 0.0)
    tp = 0
    for n, (i, j, s) in enumerate(pairs, 1):
        tp += (i, j) in gold
        if n < len(pairs) and pairs[n][2] == s:
            continue  # a threshold cannot separate equal scores
        p, r = tp / n, tp / len(gold)
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        if f1 > best[3]:
            best = (s, p, r, f1)
    return best


def bitext_mining(
    encoder: Encoder,
    src_texts: Sequence[str],
    tgt_texts: Sequence[str],
    gold_pairs: Iterable[tuple[int, int]],
    threshold: float | None = None,
    k: int = 4,
    prompt: str | None = None,
    cache: EmbeddingCache | None = None,
    strategy: str = "max",
    dataset: str = "bitext",
    language: str = "und",
) -> TaskResult:
    """Mine translation pairs among distractors (LASER ratio margin) and score them against gold pairs.

    gold_pairs: (src index, tgt index) pairs. A mined pair is kept when its margin >= ``threshold``;
    None chooses the threshold that maximises F1 against the gold pairs (an oracle threshold, as in
    BUCC's optimal-F1 reporting). Scores in percent: precision, recall, f1 (main).
    """
    gold = {(int(i), int(j)) for i, j in gold_pairs}
    if not gold:
        raise BadInputError("gold_pairs is empty: give the (src, tgt) index pairs that are translations")
    bad = [(i, j) for i, j in gold if not (0 <= i < len(src_texts) and 0 <= j < len(tgt_texts))]
    if bad:
        raise BadInputError(
            f"gold pair {bad[0]} is out of range for {len(src_texts)} source and {len(tgt_texts)} target texts"
        )
    prefix = encoder.resolve_prompt(prompt)
    a = _embed(encoder, src_texts, prompt, cache)
    b = _embed(encoder, tgt_texts, prompt, cache)
    pairs = mine_pairs(a, b, k=k, strategy=strategy)
    if threshold is None:
        threshold, precision, recall, f1 = _best_threshold(pairs, gold)
        chosen = "max-f1 on gold (oracle)"
    else:
        kept = [(i, j) for i, j, s in pairs if s >= threshold]
        tp = sum(p in gold for p in kept)
        precision = tp / len(kept) if kept else 0.0
        recall = tp / len(gold)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        chosen = "given"
    n_kept = sum(1 for *_, s in pairs if s >= threshold)
    return TaskResult(
        task="mining",
        dataset=dataset,
        language=language,
        scores={"precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1},
        main_score="f1",
        prompt=prefix,
        details={
            "threshold": float(threshold),
            "threshold_from": chosen,
            "k": k,
            "strategy": strategy,
            "n_src": len(src_texts),
            "n_tgt": len(tgt_texts),
            "n_gold": len(gold),
            "n_candidates": len(pairs),
            "n_kept": n_kept,
        },
    )


# ---------------------------------------------------------------- STS


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip((l2_normalize(a) * l2_normalize(b)).sum(axis=1, dtype=np.float64), -1.0, 1.0)


def sts(
    encoder: Encoder,
    path,
    prompt: str | None = None,
    cache: EmbeddingCache | None = None,
    limit: int | None = None,
) -> list[TaskResult]:
    """Spearman and Pearson (x100) of cosine similarity against gold scores, one result per file."""
    from scipy.stats import pearsonr, spearmanr

    prefix = encoder.resolve_prompt(prompt)
    results = []
    for f in sts_files(path):
        data = read_sts(f, limit)
        n = len(data.texts1)
        emb = _embed(encoder, data.texts1 + data.texts2, prompt, cache)
        cos = _row_cosine(emb[:n], emb[n:])
        if n < 2 or np.ptp(data.scores) == 0:
            raise BadInputError(f"{f}: need at least 2 pairs with differing gold scores to correlate, got {n}")
        if np.ptp(cos) == 0:
            raise NumericalError(
                f"model {encoder.name!r} gives the same cosine ({cos[0]:.4f}) to all {n} pairs of {f}, so no "
                "correlation can be computed: its vectors carry no information (check the model files)"
            )
        scores = {"spearman": 100 * float(spearmanr(cos, data.scores).statistic),
                  "pearson": 100 * float(pearsonr(cos, data.scores).statistic)}
        results.append(
            TaskResult(
                task="sts",
                dataset=data.name,
                language=data.language,
                scores=scores,
                main_score="spearman",
                prompt=prefix,
                details={"n": n, "file": str(f), "limit": limit},
            )
        )
    return results


# ---------------------------------------------------------------- classification


def classification(
    encoder: Encoder,
    folder,
    langs: Iterable[str] | str | None = None,
    limit: int | None = None,
    prompt: str | None = None,
    cache: EmbeddingCache | None = None,
    seed: int = 0,
    max_iter: int = 1000,
) -> list[TaskResult]:
    """Classification on frozen embeddings (as MTEB's classification tasks), one result per language.

    For each language of ``folder`` (``<LANG>_train.tsv`` + ``<LANG>_test.tsv``, see
    ``data.read_classification``) a logistic regression (scikit-learn, lbfgs, C=1, ``random_state=seed``)
    is fitted on the embeddings of the train file and scored on the test file; ``limit`` keeps the first N
    rows of each file. The embeddings are L2-normalised and scaled by sqrt(dim) (components of unit size,
    the input of ``xlembed finetune``'s heads): on unit vectors C=1 regularises so hard that
    multilingual-e5-small answered the majority label for every Japanese Amazon counterfactual test
    sentence (macro-F1 47.3); scaled, en/de/ja macro-F1 68.1/81.7/47.3 -> 84.0/84.1/66.6, accuracy up
    on all three. Unlike MTEB, which averages 10 runs on small per-label samples of the train set, this
    fits once on the whole train file: one deterministic figure.
    Scores in percent: ``accuracy`` (main) and ``f1_macro``; ``details['majority_accuracy']`` is the
    test accuracy of always answering the train set's most frequent label, to read accuracy against
    (``f1_macro`` shows a classifier that answers one label everywhere).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    prefix = encoder.resolve_prompt(prompt)
    folder = Path(folder)
    results = []
    for lang, stem in classification_languages(folder, langs):
        train = read_classification(folder / f"{stem}_train.tsv", limit)
        test = read_classification(folder / f"{stem}_test.tsv", limit)
        classes, counts = np.unique(train.labels, return_counts=True)
        if len(classes) < 2:
            rows = f"the first {limit} rows" if limit is not None else f"all {len(train)} rows"
            raise DataFormatError(
                f"{train.path}: {rows} have the label {str(classes[0])!r}; a classifier needs at least two labels "
                "to learn from (use a train file with several labels, or a larger --limit)"
            )
        scale = np.float32(np.sqrt(encoder.dim))
        x_train = l2_normalize(_embed(encoder, train.texts, prompt, cache)) * scale
        x_test = l2_normalize(_embed(encoder, test.texts, prompt, cache)) * scale
        model = LogisticRegression(max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # said below in our words
            model.fit(x_train, train.labels)
        converged = bool(np.max(model.n_iter_) < max_iter)
        if not converged:
            warnings.warn(
                f"the logistic regression on {train.path} did not converge in {max_iter} iterations; its accuracy "
                "may understate the embeddings (pass a larger max_iter)",
                XlembedWarning,
                stacklevel=2,
            )
        gold = np.asarray(test.labels)
        pred = model.predict(x_test)
        majority = classes[np.argmax(counts)]  # ties: the first label in sorted order
        results.append(
            TaskResult(
                task="classification",
                dataset=folder.resolve().name,
                language=lang,
                scores={
                    "accuracy": 100 * float((pred == gold).mean()),
                    "f1_macro": 100 * float(f1_score(gold, pred, average="macro", zero_division=0)),
                },
                main_score="accuracy",
                prompt=prefix,
                details={
                    "n_train": len(train),
                    "n_test": len(test),
                    "limit": limit,
                    "labels": [str(c) for c in classes],
                    "majority_accuracy": 100 * float((gold == majority).mean()),
                    "classifier": f"logistic regression (lbfgs, C=1, max_iter={max_iter}, seed={seed}) on "
                                  "sqrt(dim) x unit-length vectors",
                    "converged": converged,
                    "train_file": train.path,
                    "test_file": test.path,
                },
            )
        )
    return results


# ---------------------------------------------------------------- alignment gap


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point (one random n-cycle)."""
    if n < 2:
        raise BadInputError(f"a derangement needs at least 2 items, got {n}")
    order = rng.permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, -1)
    return out


def alignment_gap(
    encoder: Encoder,
    folder,
    langs: Iterable[str] | str | None = None,
    limit: int | None = 1000,
    prompt: str | None = None,
    cache: EmbeddingCache | None = None,
    seed: int = 0,
) -> list[TaskResult]:
    """Per language: mean cosine of translation pairs, of random (deranged) pairs, and the gap (main).

    Cosines are plain values in [-1, 1], not percent.
    """
    prefix = encoder.resolve_prompt(prompt)
    results = []
    for lang in _langs(folder, langs):
        xx, en, a, b = _embed_tatoeba(encoder, folder, lang, limit, prompt, cache)
        perm = derangement(len(xx), np.random.default_rng(seed))
        pos = float(_row_cosine(a, b).mean())
        neg = float(_row_cosine(a, b[perm]).mean())
        results.append(
            TaskResult(
                task="alignment_gap",
                dataset="tatoeba",
                language=lang,
                scores={"gap": pos - neg, "translation_cosine": pos, "random_cosine": neg},
                main_score="gap",
                prompt=prefix,
                details={"n": len(xx), "limit": limit, "seed": seed},
            )
        )
    return results


# ---------------------------------------------------------------- drift


def drift(
    reference: Encoder,
    other: Encoder,
    texts: Sequence[str],
    prompt: str | None = None,
    cache: EmbeddingCache | None = None,
) -> TaskResult:
    """Cosine of ``other``'s embeddings (e.g. int8) to ``reference``'s (fp32), text by text.

    Scores: mean (main), p1 (1st percentile) and min, plain cosines; a non-finite row counts as -1.
    """
    texts = as_texts(texts)
    if not texts:
        raise BadInputError("drift needs at least one text")
    ref = np.asarray(encode_texts(reference, texts, prompt=prompt, cache=cache), dtype=np.float64)
    oth = np.asarray(encode_texts(other, texts, prompt=prompt, cache=cache), dtype=np.float64)
    if ref.shape != oth.shape:
        raise BadInputError(f"the two encoders give different shapes: {ref.shape} and {oth.shape}")
    finite = np.isfinite(oth).all(axis=1)
    num = (ref * np.where(finite[:, None], oth, 0)).sum(axis=1)
    den = np.linalg.norm(ref, axis=1) * np.linalg.norm(np.where(finite[:, None], oth, 0), axis=1)
    cos = np.where(finite & (den > 0), num / np.maximum(den, 1e-30), -1.0)
    cos = np.clip(cos, -1.0, 1.0)
    return TaskResult(
        task="drift",
        dataset="texts",
        language="all",
        scores={"mean": float(cos.mean()), "p1": float(np.percentile(cos, 1)), "min": float(cos.min())},
        main_score="mean",
        prompt=reference.resolve_prompt(prompt),
        details={
            "n": len(texts),
            "reference": f"{reference.name} {reference.backend} {reference.precision}",
            "other": f"{other.name} {other.backend} {other.precision}",
            "other_prompt": other.resolve_prompt(prompt),
            "n_nonfinite": int((~finite).sum()),
        },
    )
