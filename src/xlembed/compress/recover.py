"""Recovery distillation: train a compressed model back towards its parent's vectors.

The child stays in the parent's vector space (an index built with the parent keeps working), so there
is no warm start and no projection: every text's target is the parent's own vector of it (MSE on the
unit-length sentence vectors), on monolingual text or both sides of parallel pairs of the kept
languages. With ``targets="english"`` the translation in a pair is trained towards the parent's vector
of its English side instead (as in multilingual distillation, Reimers & Gurevych 2020): still the
parent's space, and the languages are pulled to where the parent puts English (multilingual-e5-small
trimmed to 9 languages, 6 of 12 layers dropped greedily, lr 3e-4: kept-language Tatoeba loss 4.39 after
3,800 steps vs 7.58 with own targets after 2,030; with evenly spread layers, lr 1e-3 and Arabic's few
pairs repeated 4 times: 0.61 after 4,000 steps, benchmarks/results/compress-small). Built on the training loop of
``xlembed distill`` (``xlembed.train.fit``): the parent's vectors are computed once into the teacher
cache, dev evaluation keeps the best weights, checkpoints make a killed run resumable. Pruned units stay
pruned (they are cut out while training) and shared layers stay shared.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import BadInputError
from ..paths import cache_dir
from .folder import child_record, count_parameters, open_model, read_record, save_child
from .layers import apply_structure, structure_of, untied
from .structure import family, full_size

LOG_NAME = "recover_log.jsonl"


def recovery_config(**overrides):
    """Training settings of recovery (a distillation TrainConfig): the child starts close to its parent, so no
    warm start, the handed-back weights are the best ones (no interpolation), frozen word embeddings; lr 1e-3
    (on the 9-language e5 with 6 layers dropped, 500 steps of batch 64: Tatoeba loss 5.9 vs 6.7 at 3e-4).
    max_steps without epochs: that many steps, with as many passes over the texts as they need."""
    from ..distill.train import TrainConfig

    if overrides.get("max_steps") is not None and "epochs" not in overrides:
        overrides["epochs"] = None
    defaults = {"lr": 1e-3, "max_length": 128, "warm_start": "off", "interpolate": 1.0, "eval_every": 200,
                "patience": 4, "checkpoint_every": 200}
    return TrainConfig(**{**defaults, **overrides})


class ParentRegression:
    """Each row is a text and its parent vector (MSE); dev: MSE and mean cosine to the parent, and with dev
    pairs the child's (xx) top-1 retrieval of the parent's English vector."""

    metric = "dev_mse"

    def __init__(self, texts, targets, prefix, config, dev_texts=(), dev_targets=None, dev_pairs=(),
                 dev_pair_targets=None, fingerprint=""):
        self.texts, self.targets, self.prefix, self.config = list(texts), targets, prefix, config
        self.dev_texts, self.dev_targets = list(dev_texts), dev_targets
        self.dev_pairs, self.dev_pair_targets = list(dev_pairs), dev_pair_targets
        self._fingerprint = fingerprint

    def loss(self, model, rows):
        import torch

        features = model.preprocess([self.texts[i] for i in rows], prompt=self.prefix or None)
        features = {k: (v.to(self.config.device) if hasattr(v, "to") else v) for k, v in features.items()}
        out = model(features)["sentence_embedding"].float()
        return torch.nn.functional.mse_loss(out, torch.from_numpy(self.targets[rows]).to(self.config.device))

    def evaluate(self, model) -> dict | None:
        if not self.dev_texts:
            return None
        from ..encoder import l2_normalize

        vectors = _encode(model, self.dev_texts, self.prefix)
        figures = {"dev_mse": float(np.mean((vectors - self.dev_targets) ** 2)),
                   "dev_cosine_to_parent": float(np.mean(np.sum(l2_normalize(vectors) * l2_normalize(self.dev_targets), axis=1)))}
        if self.dev_pairs:
            xx = l2_normalize(_encode(model, [p[1] for p in self.dev_pairs], self.prefix))
            en = l2_normalize(self.dev_pair_targets)
            gold = np.arange(len(xx))
            figures["dev_xx_to_parent_en"] = float(100 * np.mean((xx @ en.T).argmax(axis=1) == gold))
        return figures

    def fingerprint(self) -> str:
        return self._fingerprint


def _encode(model, texts, prefix) -> np.ndarray:
    from ..train.loop import encode_while_training

    return encode_while_training(model, texts, prefix, name="child")


TARGETS = ("own", "english")


def balance_repeats(pairs: Sequence[tuple[str, str]], langs: Sequence[str], most: int) -> dict[str, int]:
    """How often to repeat the translation of each pair so that a language with few pairs weighs more: a
    language with n pairs, against the largest language's n_max, is repeated round(n_max / n) times, at most
    ``most`` (1: no repeats). Texts with one repeat are left out of the result."""
    if not isinstance(most, int) or most < 1:
        raise BadInputError(f"balance must be a whole number >= 1 (the most a language's pairs are repeated), got {most!r}")
    if len(pairs) != len(langs):
        raise ValueError(f"{len(pairs)} pairs but {len(langs)} languages")
    counts = Counter(langs)
    if not counts:
        return {}
    largest = max(counts.values())
    times = {lang: min(most, max(1, round(largest / n))) for lang, n in counts.items()}
    return {other: times[lang] for (_, other), lang in zip(pairs, langs) if times[lang] > 1}


def recover(folder: Path | str, out: Path | str, parent: Path | str, *, texts: Sequence[str],
            dev_texts: Sequence[str] = (), dev_pairs: Sequence[tuple[str, str]] = (), config=None,
            pairs: Sequence[tuple[str, str]] = (), targets: str = "own", repeat: Mapping[str, int] | None = None,
            teacher_precision: str = "fp32", cache_root: Path | str | None = None, resume: bool = False,
            overwrite: bool = False, progress: bool | None = None, on_step=None) -> dict:
    """Folder -> Folder: train the compressed model in ``folder`` towards ``parent``'s vectors of ``texts``.

    dev_texts: held-out texts for the dev MSE/cosine (best weights kept); dev_pairs: held-out (English, other)
    pairs for the retrieval figure. pairs: (English, other) training pairs whose texts are in ``texts``;
    targets: "own" (each text towards the parent's vector of itself) or "english" (the other side of each of
    ``pairs`` and ``dev_pairs`` towards the parent's vector of its English side). teacher_precision: the
    parent's precision for its targets (bf16 is ~3x faster on CPUs with bf16 instructions, cosine 0.99999 to
    fp32). Texts longer than the config's max_length tokens are skipped (counted in the record). Returns the
    step's record.
    """
    import torch

    from .. import load
    from ..distill.teacher_cache import TeacherCache
    from ..train.loop import fit, jsonl_log, parameter_groups

    config = config or recovery_config()
    config.check()
    if targets not in TARGETS:
        raise BadInputError(f"recovery targets must be one of {', '.join(TARGETS)}, got {targets!r}")
    if targets == "english" and not pairs:
        raise BadInputError("recovery towards English targets needs parallel pairs (--parallel)")
    english_of = {other: en for en, other in [*pairs, *dev_pairs] if other != en} if targets == "english" else {}
    texts = list(dict.fromkeys(t for t in texts if t.strip()))
    if not texts:
        raise BadInputError("recovery needs training text: pass a corpus (--corpus) or parallel data (--parallel)")
    repeat = dict(repeat or {})
    bad = {t: n for t, n in repeat.items() if not isinstance(n, int) or n < 1}
    if bad:
        text, n = next(iter(bad.items()))
        raise BadInputError(f"a text's repeat count must be a whole number >= 1, got {n!r} for {text[:60]!r}")
    out = Path(out)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    child = open_model(folder)
    record = read_record(folder)
    structure = structure_of(record)
    teacher = load(str(parent), precision=teacher_precision, device=config.device)
    prefix = child.resolve_prompt(None)
    max_length = min(config.max_length, child.max_length or config.max_length)
    texts, lengths, skipped = _fitting(child.model.tokenizer, texts, prefix, max_length)
    cache = TeacherCache(Path(cache_root) if cache_root else cache_dir() / "teacher", teacher, prompt=prefix)
    dev_texts = [t for t in dict.fromkeys(dev_texts) if t.strip()]
    dev_pairs = list(dev_pairs)
    needed = set(texts) | set(dev_texts) | {en for en, _ in dev_pairs}
    wanted = sorted(needed | {english_of[t] for t in needed if t in english_of})
    vectors_of = dict(zip(wanted, cache.get(wanted)))  # the parent's vectors, computed once
    target_of = {t: vectors_of[english_of.get(t, t)] for t in needed}
    model = child.model  # already materialized by load(): pruned units cut out, shared layers tied
    if getattr(model[0].auto_model, "pooler", None) is not None:
        model[0].auto_model.pooler = None  # unused by sentence vectors (see folder.working_copy)
    model.max_seq_length = max_length
    if config.freeze_embeddings:
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    if config.freeze_layers:
        from ..train.freeze import freeze_lower_layers

        freeze_lower_layers(model[0].auto_model, config.freeze_layers)
    unique_texts = texts
    rows = [(t, n) for t, n in zip(unique_texts, lengths) for _ in range(repeat.get(t, 1))]
    texts, lengths = [t for t, _ in rows], [n for _, n in rows]
    target_vectors = np.stack([target_of[t] for t in texts])
    objective = ParentRegression(
        texts, target_vectors, prefix, config, dev_texts, np.stack([target_of[t] for t in dev_texts]) if dev_texts else None,
        dev_pairs, np.stack([target_of[en] for en, _ in dev_pairs]) if dev_pairs else None,
        fingerprint=_fingerprint(config, texts, dev_texts, folder, parent, teacher_precision, prefix,
                                 sorted(english_of.items())),
    )
    work_dir = out.with_name(f"{out.name}.training")
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / LOG_NAME
    log = jsonl_log(log_path)

    log({"event": "start", "parent": str(parent), "child": str(folder), "texts": len(texts), "dev_texts": len(dev_texts),
         "teacher_encoded": cache.n_encoded, "config": dataclasses.asdict(config), "resume": resume})
    groups = parameter_groups(model, config.lr, config.weight_decay)
    loop = fit(model, objective, config, work_dir, groups, resume=resume, progress=progress, log=log, on_step=on_step,
               lengths=lengths, desc="recover")
    log({"event": "done", **{k: v for k, v in dataclasses.asdict(loop).items() if k != "evals"}})
    step = {"step": "recover", "parent": str(parent), "texts": len(unique_texts), "rows": len(texts),
            "skipped_longer_than_max_length": skipped, "targets": targets,
            "english_targets": sum(t in english_of for t in unique_texts), "dev_texts": len(dev_texts),
            "dev_pairs": len(dev_pairs), "teacher_precision": teacher_precision, "steps": loop.steps,
            "epochs": loop.epochs_done, "stopped": loop.stopped, "start": loop.first, "best": loop.best,
            "sentences_per_second": loop.sentences_per_second, "seconds": round(time.perf_counter() - started, 1),
            "config": {k: v for k, v in dataclasses.asdict(config).items()
                       if k in ("lr", "epochs", "max_steps", "batch_size", "max_length", "freeze_embeddings", "seed")},
            "parameters": {"child": count_parameters(model)}}
    saveable = _full_size(model, structure)
    if structure:
        step["structure"] = structure
    save_child(saveable, dataclasses.replace(child.info, name=out.name, source=str(out), notes=[]), out,
               child_record(folder, step), overwrite=overwrite)
    import shutil

    shutil.copy2(log_path, out / LOG_NAME)
    shutil.rmtree(work_dir, ignore_errors=True)
    return step


def _fitting(tokenizer, texts: list[str], prefix: str, max_length: int) -> tuple[list[str], list[int], int]:
    """The texts of at most ``max_length`` tokens, their lengths, and how many were longer: a longer text would
    be trained, cut, towards the parent's vector of all of it."""
    from ..backends.torch_backend import token_lengths

    counts = token_lengths(tokenizer, texts, prefix)
    kept = [(t, n) for t, n in zip(texts, counts) if n <= max_length]
    if not kept:
        raise BadInputError(f"every training text is longer than {max_length} tokens, the recovery's max_length: "
                            "raise max_length or pass shorter texts")
    return [t for t, _ in kept], [n for _, n in kept], len(texts) - len(kept)


def _full_size(model, structure: dict):
    """A copy with the config's shapes (pruned units as zeros, shared layers as copies), for saving."""
    saveable = untied(model)
    heads = {int(k): v for k, v in (structure.get("pruned_heads") or {}).items()}
    neurons = {int(k): v for k, v in (structure.get("pruned_neurons") or {}).items()}
    if heads or neurons:
        family(saveable[0].auto_model)  # a clear error for an unsupported model
        full_size(saveable[0].auto_model, heads, neurons)
    return saveable


def _fingerprint(config, texts, dev_texts, folder, parent, precision, prefix, english_of=()) -> str:
    h = hashlib.sha256()
    fixed = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("eval_every", "checkpoint_every", "patience")}
    h.update(json.dumps(fixed, sort_keys=True).encode())
    h.update(json.dumps([str(Path(folder).resolve()), str(parent), precision, prefix]).encode())
    for group in (texts, dev_texts, [f"{a}\t{b}" for a, b in english_of]):
        for t in group:
            h.update(t.encode())
            h.update(b"\n")
        h.update(b"--")
    return h.hexdigest()


__all__ = ["recover", "recovery_config", "ParentRegression", "apply_structure"]
