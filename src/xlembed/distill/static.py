"""The static student: one trained vector per token of any tokenizer, distilled from any teacher.

Recipe (Model2Vec-style init, then training on parallel pairs):

1. vocabulary: the tokens of the tokenizer that occur in the training pairs (both sides, no special
   tokens), plus every single-character piece whose character occurs in the corpus (this recovers
   much of zh, see ../shared/FINDINGS.md);
2. init: each kept token's surface string (the decoded piece) embedded by the teacher through the
   ``TeacherCache``, L2-normalised; with ``dim`` below the teacher's, projected on the top ``dim``
   principal axes (eigenvectors of the rows' covariance); with ``dim`` = the teacher's (the default) no
   projection at all, so the student's vectors live in the teacher's space and can be compared with
   the teacher's own vectors;
3. frequency weighting: each row is scaled by the SIF weight a / (a + p(token)), p from the corpus
   counts, before training; training then adjusts the rows freely, so the saved rows carry the weight;
4. training (torch, training only): a sentence vector is the mean of its tokens' rows (an
   ``EmbeddingBag`` summing rows with weights 1/len, i.e. exactly what inference computes); the loss
   is the cosine distance between the student's vector of either side of a pair and the teacher's
   vector of the English side (projected on the same axes when dim < teacher dim); lazy Adam (only
   the rows a batch uses move); the table with the best dev loss is kept.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..backends.static_backend import STORAGES, TOKENIZER_FILE, StaticEncoder, load_tokenizer, special_token_ids
from ..encoder import Encoder, l2_normalize
from ..errors import BadInputError
from .data import ParallelPair
from .teacher_cache import TeacherCache

SIF_A = 1e-3
TOKENIZE_CHUNK = 20_000


# ---------------------------------------------------------------- tokenizer and vocabulary


def resolve_tokenizer(tokenizer: str | os.PathLike) -> Path:
    """The tokenizer.json for a tokenizer.json file, a folder holding one, or a model name ``load()`` resolves."""
    spec = os.fspath(tokenizer)
    path = Path(spec).expanduser()
    if path.is_file():
        if path.name.endswith(".json"):
            return path
        raise BadInputError(f"tokenizer {spec!r} is a file but not a tokenizer.json; pass a tokenizer.json or its folder")
    if not path.is_dir():
        from ..loading import resolve

        where = resolve(spec)  # raises ModelNotFoundError with what to do
        if where.path is None:
            raise BadInputError(
                f"tokenizer {spec!r} resolves to {where.how}, which has no tokenizer.json; "
                "pass a folder or model name with a tokenizer.json (e.g. multilingual-e5-small)"
            )
        path = where.path
    found = path / TOKENIZER_FILE
    if not found.is_file():
        raise BadInputError(
            f"tokenizer {spec!r}: {found} does not exist; the static student needs a fast tokenizer file "
            "(tokenizer.json): pass a model folder that has one"
        )
    return found


def _tokenize(tokenizer, texts: Sequence[str]):
    """Each text's token ids (no special tokens), encoded in chunks by the Rust tokenizer."""
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        for enc in tokenizer.encode_batch(list(texts[start : start + TOKENIZE_CHUNK]), add_special_tokens=False):
            yield enc.ids


def _piece_char(piece: str) -> str | None:
    """The one character of a single-character piece ('▁x', 'x', '##x'), else None."""
    core = piece.replace("\u2581", "")
    if core.startswith("##"):
        core = core[2:]
    return core if len(core) == 1 else None


def build_vocab(
    tokenizer_path: str | os.PathLike,
    texts: Sequence[str],
    min_count: int = 1,
    keep_single_chars: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(token_ids, counts): tokens seen at least ``min_count`` times in ``texts`` (no special tokens).

    With ``keep_single_chars``, every single-character piece whose character occurs anywhere in
    ``texts`` is kept too, whatever its count. Ids ascending; counts are the corpus counts (may be 0).
    """
    if min_count < 1:
        raise BadInputError(f"min_count must be >= 1, got {min_count}")
    tokenizer = load_tokenizer(resolve_tokenizer(tokenizer_path))
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    flat = np.fromiter((i for ids in _tokenize(tokenizer, texts) for i in ids), dtype=np.int64)
    counts = np.bincount(flat, minlength=size).astype(np.int64)
    keep = counts >= min_count
    if keep_single_chars:
        chars = set()
        for start in range(0, len(texts), TOKENIZE_CHUNK):
            chars.update("".join(texts[start : start + TOKENIZE_CHUNK]))
        for piece, token_id in tokenizer.get_vocab(with_added_tokens=False).items():
            char = _piece_char(piece)
            if char is not None and char in chars:
                keep[token_id] = True
    keep[special_token_ids(tokenizer)] = False
    token_ids = np.flatnonzero(keep).astype(np.int64)
    return token_ids, counts[token_ids]


def token_surfaces(tokenizer, token_ids: np.ndarray) -> list[str]:
    """The text each token stands for (decoded alone, spaces stripped); '' where it is only a marker."""
    decoded = tokenizer.decode_batch([[int(i)] for i in token_ids], skip_special_tokens=False)
    return [s.strip().strip("\ufffd") for s in decoded]


def principal_axes(vectors: np.ndarray, dim: int) -> np.ndarray:
    """(d, dim): the top ``dim`` principal axes of the rows (eigenvectors of their covariance, largest first).

    The covariance route (d x d) instead of an SVD of the rows: here 10 s instead of minutes for 113k rows.
    """
    x = np.asarray(vectors, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, eigenvectors = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    axes = eigenvectors[:, ::-1][:, :dim]
    axes *= np.where(axes.sum(axis=0) < 0, -1.0, 1.0)  # a fixed sign per axis, for reproducible tables
    return np.ascontiguousarray(axes, dtype=np.float32)


def sif_weights(counts: np.ndarray, a: float = SIF_A) -> np.ndarray:
    """a / (a + p(token)), p = count / total: frequent tokens weigh less, unseen ones 1."""
    total = max(int(np.asarray(counts).sum()), 1)
    return (a / (a + np.asarray(counts, dtype=np.float64) / total)).astype(np.float32)


# ---------------------------------------------------------------- packed token rows


@dataclass
class Packed:
    """Texts as rows of the student table: ``rows[starts[i]:starts[i]+lengths[i]]`` for text i."""

    rows: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, idx: np.ndarray) -> "Packed":
        lengths = self.lengths[idx]
        offsets = np.cumsum(lengths) - lengths
        flat = np.repeat(self.starts[idx] - offsets, lengths) + np.arange(int(lengths.sum()))
        return Packed(self.rows[flat], offsets, lengths)


def pack(tokenizer, lookup: np.ndarray, texts: Sequence[str]) -> Packed:
    """Tokenize ``texts`` and map ids to table rows, dropping tokens without a row."""
    row_lists = []
    for ids in _tokenize(tokenizer, texts):
        rows = lookup[np.asarray(ids, dtype=np.int64)]
        row_lists.append(rows[rows >= 0])
    lengths = np.fromiter((len(r) for r in row_lists), dtype=np.int64, count=len(row_lists))
    rows = np.concatenate(row_lists) if row_lists else np.zeros(0, dtype=np.int64)
    return Packed(rows.astype(np.int64), np.cumsum(lengths) - lengths, lengths)


def mean_rows(table: np.ndarray, packed: Packed) -> np.ndarray:
    """Mean of each text's rows (zero vector for a text without rows), as inference computes it."""
    out = np.zeros((len(packed), table.shape[1]), dtype=np.float32)
    nonempty = packed.lengths > 0
    if nonempty.any():
        flat = packed.take(np.flatnonzero(nonempty))
        sums = np.add.reduceat(table[flat.rows], flat.starts, axis=0)
        out[nonempty] = sums / flat.lengths[:, None].astype(np.float32)
    return out


# ---------------------------------------------------------------- evaluation on the dev split


@dataclass
class DevSet:
    """Dev pairs packed once: both sides, the English side's index, and the targets."""

    en: Packed
    other: Packed
    gold: np.ndarray  # index of each pair's English text in ``en``
    targets: np.ndarray  # (n_en, dim) unit teacher vectors of ``en``

    def figures(self, table: np.ndarray) -> dict:
        """Dev loss (cosine distance to the teacher, both sides), and other->English top-1 in percent."""
        s_en = l2_normalize(mean_rows(table, self.en))
        s_other = l2_normalize(mean_rows(table, self.other))
        cos_en = (s_en * self.targets).sum(1)
        cos_other = (s_other * self.targets[self.gold]).sum(1)
        loss = float(np.concatenate([1 - cos_en[self.gold], 1 - cos_other]).mean())
        top1 = float((np.argmax(s_other @ s_en.T, axis=1) == self.gold).mean() * 100)
        top1_teacher = float((np.argmax(s_other @ self.targets.T, axis=1) == self.gold).mean() * 100)
        return {
            "dev_loss": round(loss, 5),
            "dev_cos_en": round(float(cos_en.mean()), 4),
            "dev_cos_other": round(float(cos_other.mean()), 4),
            "dev_top1": round(top1, 2),
            "dev_top1_vs_teacher": round(top1_teacher, 2),
        }


# ---------------------------------------------------------------- the top-level function


def distill_static(
    teacher: Encoder,
    train_pairs: Sequence[ParallelPair],
    dev_pairs: Sequence[ParallelPair],
    tokenizer: str | os.PathLike,
    out: str | os.PathLike,
    *,
    dim: int | None = None,
    epochs: int = 3,
    batch_size: int = 512,
    lr: float = 0.005,
    seed: int = 0,
    storage: str = "fp16",
    cache_root: str | os.PathLike,
    log_path: str | os.PathLike | None = None,
    progress: bool = True,
    min_count: int = 1,
    keep_single_chars: bool = True,
    sif_a: float | None = SIF_A,
    overwrite: bool = False,
    name: str | None = None,
    command: str | None = None,
) -> dict:
    """Distill a static student from ``teacher`` on parallel pairs and write it to ``out``.

    Returns a summary: vocabulary size, steps, seconds, per-epoch dev figures, init-only dev figures.
    ``sif_a=None`` switches frequency weighting off; ``epochs=0`` writes the init-only model.
    """
    started = time.perf_counter()
    train_pairs, dev_pairs = list(train_pairs), list(dev_pairs)
    if not train_pairs:
        raise BadInputError("no training pairs: pass a non-empty list of ParallelPair (distill.data.read_parallel)")
    if storage not in STORAGES:
        raise BadInputError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    for label, value, low in (("epochs", epochs, 0), ("batch_size", batch_size, 1)):
        if not isinstance(value, int) or value < low:
            raise BadInputError(f"{label} must be an integer >= {low}, got {value!r}")
    if not lr > 0:
        raise BadInputError(f"lr must be positive, got {lr!r}")
    if dim is not None and not (isinstance(dim, int) and 1 <= dim <= teacher.dim):
        raise BadInputError(f"dim must be between 1 and the teacher's dim {teacher.dim}, got {dim!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise BadInputError(f"{out} exists and is not empty; choose another folder or pass overwrite=True (CLI: --overwrite)")
    tokenizer_path = resolve_tokenizer(tokenizer)
    tok = load_tokenizer(tokenizer_path)
    say = _printer(progress)
    dim = dim or teacher.dim
    cache = TeacherCache(cache_root, teacher)

    # 1. vocabulary
    corpus = [p.en for p in train_pairs] + [p.other for p in train_pairs]
    token_ids, counts = build_vocab(tokenizer_path, corpus, min_count, keep_single_chars)
    say(f"vocabulary: {len(token_ids)} of {tok.get_vocab_size()} tokens kept")

    # 2. init from the teacher's vectors of each token's text
    surfaces = token_surfaces(tok, token_ids)
    has_text = np.array([bool(s) for s in surfaces])
    token_vectors = np.zeros((len(token_ids), teacher.dim), dtype=np.float32)
    if has_text.any():
        say(f"teacher vectors of {int(has_text.sum())} token strings")
        token_vectors[has_text] = l2_normalize(cache.get([s for s, k in zip(surfaces, has_text) if k]))
    projection = None  # (teacher dim, dim) when dim < teacher dim
    if dim < teacher.dim:
        projection = principal_axes(token_vectors[has_text], dim)
        token_vectors = token_vectors @ projection
    table = token_vectors
    if sif_a:
        table = table * sif_weights(counts, sif_a)[:, None]
    table = np.ascontiguousarray(table, dtype=np.float32)

    # 3. training data: each unique English text and each other side, aimed at teacher(English)
    lookup = np.full(tok.get_vocab_size(with_added_tokens=True), -1, dtype=np.int64)
    lookup[token_ids] = np.arange(len(token_ids))
    en_texts = list(dict.fromkeys(p.en for p in train_pairs))
    en_index = {t: i for i, t in enumerate(en_texts)}
    say(f"teacher vectors of {len(en_texts)} English sentences")
    targets = _targets(cache, en_texts, projection)
    samples = pack(tok, lookup, en_texts + [p.other for p in train_pairs])
    sample_target = np.concatenate([np.arange(len(en_texts)), [en_index[p.en] for p in train_pairs]]).astype(np.int64)
    dev = _dev_set(cache, tok, lookup, dev_pairs, projection) if dev_pairs else None

    init_figures = dev.figures(table) if dev else {}
    say(f"init: {init_figures}")
    history: list[dict] = []
    steps = 0
    best_table, best_epoch = table, 0
    if epochs:
        best_table, best_epoch, history, steps = _train(
            table, samples, sample_target, targets, dev, epochs, batch_size, lr, seed, log_path, say, init_figures
        )

    # 4. write the folder with its card
    per_lang = Counter(p.lang for p in train_pairs)
    model_name = name or out.name
    student = StaticEncoder(tokenizer_path, best_table, token_ids, name=model_name, source=str(out))
    student.info.cacheable = False  # the table is not on disk yet (and an older one may be, at ``out``)
    seconds = time.perf_counter() - started
    summary = {
        "out": str(out),
        "teacher": teacher.name,
        "tokenizer": str(tokenizer_path),
        "vocab_rows": int(len(token_ids)),
        "tokenizer_vocab": int(tok.get_vocab_size()),
        "dim": int(dim),
        "teacher_dim": int(teacher.dim),
        "projection": "pca" if projection is not None else "none (teacher space)",
        "sif_a": sif_a,
        "storage": storage,
        "train_pairs": len(train_pairs),
        "train_samples": int(len(samples)),
        "dev_pairs": len(dev_pairs),
        "languages": dict(sorted(per_lang.items())),
        "epochs": epochs,
        "best_epoch": best_epoch,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "min_count": min_count,
        "keep_single_chars": keep_single_chars,
        "init": init_figures,
        "history": history,
        "seconds": round(seconds, 1),
    }
    from ..paths import atomic_folder
    from .card import write_model_card

    with atomic_folder(out, overwrite) as tmp:
        student.write_files(tmp, storage)
        write_model_card(tmp, f"{model_name}: static student of {teacher.name}", _card_facts(summary),
                         tables={"Dev figures per epoch": [{"epoch": "init", **init_figures}] + history},
                         usage=f'import xlembed\nmodel = xlembed.load("{out}")\nvectors = model.encode(["Hello world", "Hallo Welt"])',
                         command=command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]))
        (tmp / "distill_summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    say(f"wrote {out} ({len(token_ids)} rows x {dim}, {storage}) in {seconds:.0f} s")
    return summary


def _targets(cache: TeacherCache, texts: list[str], projection: np.ndarray | None) -> np.ndarray:
    vectors = l2_normalize(cache.get(texts))
    if projection is not None:
        vectors = l2_normalize(vectors @ projection)
    return vectors


def _dev_set(cache, tok, lookup, dev_pairs, projection) -> DevSet:
    en_texts = list(dict.fromkeys(p.en for p in dev_pairs))
    index = {t: i for i, t in enumerate(en_texts)}
    return DevSet(
        en=pack(tok, lookup, en_texts),
        other=pack(tok, lookup, [p.other for p in dev_pairs]),
        gold=np.array([index[p.en] for p in dev_pairs], dtype=np.int64),
        targets=_targets(cache, en_texts, projection),
    )


def _train(table, samples: Packed, sample_target, targets, dev, epochs, batch_size, lr, seed, log_path, say, init_figures):
    """Lazy Adam on the table; returns (best table, best epoch, history, steps).

    Each step gathers only the rows its batch uses, sums them with weights 1/len (``embedding_bag``,
    the mean inference computes), and updates those rows and their Adam moments (as torch's
    SparseAdam does; written out because SparseAdam was about 4x slower per step here).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a step is many small ops: one thread was 20x faster than two on a busy 2-core machine
    try:
        return _train_loop(torch, table, samples, sample_target, targets, dev, epochs, batch_size, lr, seed,
                           log_path, say, init_figures)
    finally:
        torch.set_num_threads(threads)


def _train_loop(torch, table, samples, sample_target, targets, dev, epochs, batch_size, lr, seed, log_path, say,
                init_figures):
    import torch.nn.functional as F

    torch.manual_seed(seed)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    usable = np.flatnonzero(samples.lengths > 0)  # a text without kept tokens has no vector to train
    weight = torch.from_numpy(table.copy())
    moment1, moment2 = torch.zeros_like(weight), torch.zeros_like(weight)
    target_t = torch.from_numpy(targets)
    rng = np.random.default_rng(seed)
    best_loss = init_figures.get("dev_loss", float("inf"))
    best_table, best_epoch, history, steps = table, 0, [], 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = usable[rng.permutation(len(usable))]
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = samples.take(idx)
            rows, inverse = torch.unique(torch.from_numpy(batch.rows), return_inverse=True)
            sub = weight[rows].requires_grad_(True)
            per_token = torch.from_numpy(np.repeat(1.0 / batch.lengths, batch.lengths).astype(np.float32))
            vectors = F.embedding_bag(inverse, sub, torch.from_numpy(batch.starts), mode="sum",
                                      per_sample_weights=per_token)
            goal = target_t[torch.from_numpy(sample_target[idx])]
            loss = 1 - F.cosine_similarity(vectors, goal, dim=1, eps=1e-8).mean()
            loss.backward()
            steps += 1
            grad = sub.grad
            m1 = moment1[rows].mul_(beta1).add_(grad, alpha=1 - beta1)
            m2 = moment2[rows].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            moment1[rows], moment2[rows] = m1, m2
            step = (m1 / (1 - beta1**steps)) / (m2 / (1 - beta2**steps)).sqrt_().add_(eps)
            weight.index_add_(0, rows, step, alpha=-lr)
            total += loss.item() * len(idx)
        current = weight.numpy().copy()
        row = {"epoch": epoch, "train_loss": round(total / max(len(order), 1), 5),
               "seconds": round(time.perf_counter() - t0, 1)}
        if dev is not None:
            row.update(dev.figures(current))
        history.append(row)
        say(f"epoch {epoch}: {row}")
        if log_path:
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        if dev is None or row["dev_loss"] < best_loss:
            best_loss, best_table, best_epoch = row.get("dev_loss", best_loss), current, epoch
    return best_table, best_epoch, history, steps


def _card_facts(summary: dict) -> list[tuple[str, object]]:
    langs = ", ".join(f"{k} ({v})" for k, v in summary["languages"].items())
    best = next((h for h in summary["history"] if h["epoch"] == summary["best_epoch"]), summary["init"])
    return [
        ("Teacher", summary["teacher"]),
        ("Tokenizer", summary["tokenizer"]),
        ("Vocabulary rows", f"{summary['vocab_rows']} of {summary['tokenizer_vocab']}"),
        ("Dimension", f"{summary['dim']} ({summary['projection']})"),
        ("Storage", summary["storage"]),
        ("Frequency weighting", f"SIF a={summary['sif_a']}" if summary["sif_a"] else "none"),
        ("Languages (training pairs)", langs),
        ("Training", f"{summary['epochs']} epochs, {summary['steps']} steps, batch {summary['batch_size']}, "
                     f"lr {summary['lr']}, seed {summary['seed']}; kept epoch {summary['best_epoch']}"),
        ("Dev (init only)", summary["init"]),
        ("Dev (kept table)", best),
    ]


def _printer(progress: bool):
    def say(message: str) -> None:
        if progress:
            print(f"[distill-static] {message}", file=sys.stderr, flush=True)

    return say
