"""Transformer student training for multilingual knowledge distillation (Reimers & Gurevych 2020).

The teacher embeds each English sentence once (``TeacherCache``); the student learns to put both
the English sentence and its translation on that vector (MSE). The student is the model's own
sentence-transformers pipeline with its trailing Normalize removed, then a trainable projection
(``Dense``, warm-started by a ridge map into the teacher's space), then Normalize when the teacher's
vectors are unit length: the student's output is normalised the same way as the teacher's.

Training is a plain, explicit loop: length-bucketed batches of sentences (a seeded shuffle per
epoch), AdamW with linear warmup and decay, gradient clipping, dev evaluation every N steps with
the best weights kept, early stopping, periodic and signal-triggered checkpoints that make a resumed
run reach the weights of an uninterrupted one (same steps, CPU). The weights handed back are the
kept ones interpolated with the warm start (``TrainConfig.interpolate``, WiSE-FT): measured, this
keeps the cross-lingual gain and gives back part of what training costs the student's own space.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..encoder import Encoder, l2_normalize
from ..parallel import distributed
from ..errors import BadInputError
from ..train.checkpoint import CHECKPOINT_DIR, START_WEIGHTS, load_weights, save_weights
from ..train.freeze import freeze_lower_layers, lower_layers
from ..train.loop import (TrainingInterrupted, check_loop_settings, encode_while_training, fit, length_batches,
                          parameter_groups, token_lengths)

__all__ = ["TrainConfig", "TrainResult", "train_student", "TrainingInterrupted", "length_batches", "build_student",
           "interpolate_weights", "warm_start_rows", "dev_figures", "TeacherRegression"]
from .data import ParallelPair
from .teacher_cache import TeacherCache
from .warm_start import LinearMap, as_torch_dense, fit_linear_map


@dataclass
class TrainConfig:
    """Hyper-parameters of one distillation run (all recorded in the checkpoint and the model card)."""

    epochs: int | None = 1  # passes over the data (None: max_steps decide, with as many passes as they need)
    max_steps: int | None = None  # stop after this many optimizer steps (None: epochs decide)
    batch_size: int = 64  # sentences per step (a pair gives two: English and translation)
    lr: float = 2e-4  # transformer weights (5e-5 measured ~1 point lower, benchmarks/results/distill-sweep)
    head_lr: float = 1e-3  # the projection into the teacher's space
    warmup: float = 0.1  # fraction of the steps with a linear ramp
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_length: int = 128  # student tokens per sentence (longer ones are truncated)
    # keep the word-embedding table fixed (most of a multilingual model): training it took 2.2x longer
    # for the same steps of e5-small and measured no gain (benchmarks/results/distill-sweep, row -emb)
    freeze_embeddings: bool = True
    # the student's own dropout during training; off (the model in eval mode during the steps): dev MSE
    # 3-4% lower at every evaluation, cross-model Tatoeba +0.15 to +0.6 and STS17 +0.4 in the 8,000 x 2
    # benchmark (benchmarks/results/distill vs distill-dropout)
    dropout: bool = False
    # keep the embedding module and the student's lowest N transformer layers fixed: no backward pass
    # through them, so each step is cheaper (0: all layers train)
    freeze_layers: int = 0
    eval_every: int = 200  # steps between dev evaluations (0: only at the start and the end)
    patience: int | None = 4  # evaluations without a better dev MSE before stopping (None: never)
    checkpoint_every: int = 100  # steps between periodic checkpoints (0: only on signals)
    warm_start_sentences: int = 4000  # English training sentences the ridge map is fitted on
    warm_start_alpha: float = 0.1
    warm_start: str = "auto"  # auto: when the student is not the teacher; "on" / "off"
    contrastive_weight: float = 0.0  # weight of an in-batch InfoNCE term against the teacher's vectors (0: MSE only)
    contrastive_temperature: float = 0.05
    warm_start_fit: str = "both"  # both: student(en) and student(xx) -> teacher(en); english: student(en) only
    bucket_size: int = 50  # batches per length bucket (sorted inside, shuffled across)
    # the weights handed back: (1 - a) x the warm start + a x the kept weights (WiSE-FT, Wortsman et al. 2022);
    # 1.0: the kept weights. 0.7 measured: cross-model Tatoeba unchanged, the student's own Tatoeba +0.7 to
    # +1.6 and English STS +0.6 (benchmarks/results/distill-sweep)
    interpolate: float = 0.7
    fp16: bool = False  # CUDA autocast only; bf16 training on CPU measured 5x slower: not offered
    seed: int = 0
    device: str = "cpu"

    def check(self) -> None:
        check_loop_settings(self)
        if not self.contrastive_weight >= 0 or not self.contrastive_temperature > 0:
            raise BadInputError(
                f"contrastive_weight must be >= 0 and contrastive_temperature > 0, got "
                f"{self.contrastive_weight} and {self.contrastive_temperature}"
            )
        if self.warm_start_fit not in ("english", "both"):
            raise BadInputError(f"warm_start_fit must be english or both, got {self.warm_start_fit!r}")
        if self.warm_start not in ("auto", "on", "off"):
            raise BadInputError(f"warm_start must be auto, on or off, got {self.warm_start!r}")
        if not 0 < self.interpolate <= 1:
            raise BadInputError(f"interpolate is the weight of the trained weights, in (0, 1], got {self.interpolate}")
        if self.freeze_layers < 0:
            raise BadInputError(f"freeze_layers must be >= 0, got {self.freeze_layers}")


@dataclass
class TrainResult:
    steps: int
    epochs_done: float
    stopped: str  # "completed", "max_steps", "early_stopping"
    evals: list[dict]
    warm_start: dict | None  # dev figures before any training step
    best: dict | None  # dev figures of the kept weights
    final: dict | None  # dev figures of the weights handed back (the kept ones interpolated with the warm start)
    seconds: float
    sentences_per_second: float
    epoch_seconds: list[float]
    teacher_encoded: int
    resumed_from_step: int | None
    # what the warm-start map was fitted on: pairs (fit 'both') or English sentences (fit 'english'); None: no map.
    # It is min(warm_start_sentences, what the training data holds), so it can be below the configured size.
    warm_start_used: int | None = None


# ---------------------------------------------------------------- the student model

def strip_normalize(model):
    """The student's modules without a trailing Normalize (the map must see raw pooled vectors)."""
    modules = list(model)
    while modules and type(modules[-1]).__name__ == "Normalize":
        modules.pop()
    return modules


def build_student(student: Encoder, head: LinearMap | None, normalize: bool, device: str = "cpu"):
    """A SentenceTransformer: the student's Transformer+Pooling(+Dense), ``head`` as a trainable Dense, Normalize."""
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.modules import Normalize
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize

    base = getattr(student, "model", None)
    if base is None:
        raise BadInputError(
            f"the student {student.name!r} ({student.backend} backend) cannot be trained: pass a transformer "
            "model (a folder, catalogue name or hub id loaded with the torch backend), or --student static"
        )
    modules = copy.deepcopy(strip_normalize(base))  # training must not change the loaded student
    if head is not None:
        modules.append(as_torch_dense(head))
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device=device)
    model.prompts = dict(base.prompts or {})
    model.default_prompt_name = student.info.default_prompt_name  # xlembed's resolved default (e5: query)
    return model


def raw_student(student: Encoder) -> Encoder:
    """The student without its trailing Normalize: the vectors the warm-start map takes.

    Its name differs from the student's, so embedding caches never mix raw and normalised vectors.
    """
    from ..backends.torch_backend import TorchEncoder

    info = dataclasses.replace(student.info, name=f"{student.info.name} (raw, before Normalize)", normalized_output=False)
    return TorchEncoder(_sequential(strip_normalize(student.model)), info)


def fit_head(student: Encoder, teacher_vectors: np.ndarray, texts: Sequence[str], prefix: str, alpha: float) -> LinearMap:
    """The ridge map from the student's raw (un-normalised) vectors of ``texts`` to ``teacher_vectors`` (same rows)."""
    vectors = raw_student(student).encode(list(texts), batch_size=64, prompt=prefix)
    return fit_linear_map(vectors, teacher_vectors, alpha=alpha)


def warm_start_sentences(train_pairs: Sequence[ParallelPair], config: "TrainConfig") -> list[str]:
    """The English training sentences the warm-start map is fitted on (a seeded sample)."""
    english = sorted({p.en for p in train_pairs})
    return random.Random(config.seed).sample(english, min(config.warm_start_sentences, len(english)))


def warm_start_rows(train_pairs: Sequence[ParallelPair], config: "TrainConfig") -> tuple[list[str], list[str]]:
    """(student texts, English sentence whose teacher vector each must map to) for the warm-start fit.

    ``warm_start_fit='english'``: ``warm_start_sentences`` English sentences onto themselves.
    ``'both'``: as many pairs (a seeded sample), each side onto the English sentence's teacher vector,
    the closed-form version of the training objective.
    """
    if config.warm_start_fit == "english":
        english = warm_start_sentences(train_pairs, config)
        return english, english
    pairs = sorted(set((p.en, p.other) for p in train_pairs))
    pairs = random.Random(config.seed).sample(pairs, min(config.warm_start_sentences, len(pairs)))
    return [t for en, xx in pairs for t in (en, xx)], [en for en, _ in pairs for _ in (0, 1)]


def _sequential(modules):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(modules=list(modules), device="cpu")


# ---------------------------------------------------------------- evaluation

def dev_figures(model, dev: Sequence[ParallelPair], dev_targets: np.ndarray, prefix: str, batch_size: int = 64) -> dict:
    """Dev MSE to the teacher (both sides) and top-1 retrieval: student(xx) finds teacher(en) and student(en)."""
    s_en = encode_while_training(model, [p.en for p in dev], prefix, batch_size, name="student")
    s_xx = encode_while_training(model, [p.other for p in dev], prefix, batch_size, name="student")
    mse = float(np.mean(np.concatenate([(s_en - dev_targets) ** 2, (s_xx - dev_targets) ** 2])))
    t = l2_normalize(dev_targets)
    n_en, n_xx = l2_normalize(s_en), l2_normalize(s_xx)
    gold = np.arange(len(dev))
    return {
        "dev_mse": mse,
        "dev_xx_to_teacher_en": float(100 * np.mean((n_xx @ t.T).argmax(axis=1) == gold)),
        "dev_teacher_en_to_xx": float(100 * np.mean((t @ n_xx.T).argmax(axis=1) == gold)),
        "dev_xx_to_student_en": float(100 * np.mean((n_xx @ n_en.T).argmax(axis=1) == gold)),
        "dev_cosine_to_teacher": float(np.mean(np.sum(n_xx * t, axis=1))),
    }


# ---------------------------------------------------------------- the loop

class TeacherRegression:
    """The distillation objective: each row is a sentence and the teacher vector it must land on (MSE, plus
    ``contrastive_weight`` x in-batch InfoNCE); dev figures from ``dev_figures`` (kept: lowest dev MSE)."""

    metric = "dev_mse"

    def __init__(self, texts: list[str], targets: np.ndarray, prefix: str, config: TrainConfig,
                 dev_pairs: Sequence[ParallelPair] = (), dev_targets: np.ndarray | None = None, fingerprint: str = ""):
        self.texts, self.targets, self.prefix, self.config = texts, targets, prefix, config
        self.dev_pairs, self.dev_targets, self._fingerprint = list(dev_pairs), dev_targets, fingerprint

    def loss(self, model, rows: list[int]):
        import torch

        features = model.preprocess([self.texts[i] for i in rows], prompt=self.prefix or None)
        features = {k: (v.to(self.config.device) if hasattr(v, "to") else v) for k, v in features.items()}
        out = model(features)["sentence_embedding"]
        targets = torch.from_numpy(self.targets[rows]).to(self.config.device)
        return _loss(out.float(), targets, self.config)

    def evaluate(self, model) -> dict | None:
        if not self.dev_pairs:
            return None
        return dev_figures(model, self.dev_pairs, self.dev_targets, self.prefix)

    def fingerprint(self) -> str:
        return self._fingerprint


def train_student(
    student: Encoder,
    teacher: Encoder,
    train_pairs: Sequence[ParallelPair],
    dev_pairs: Sequence[ParallelPair],
    work_dir: Path | str,
    config: TrainConfig | None = None,
    *,
    cache_root: Path | str,
    resume: bool = False,
    progress: bool | None = None,
    log: Callable[[dict], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    student_prompt: str | None = None,
    teacher_prompt: str | None = None,
):
    """Train a student on parallel pairs; returns (model with the best weights, TrainResult).

    ``work_dir`` holds the checkpoint and the best weights. A run that finds a checkpoint there
    refuses to start unless ``resume`` (then it continues from it: same data and config required).
    ``log`` receives one dict per event (the JSONL log); ``on_step(step)`` is called after each step.
    The loop itself is ``xlembed.train.loop.fit``.
    """
    import torch

    config = config or TrainConfig()
    config.check()
    if not train_pairs:
        raise BadInputError("no training pairs: check the --train files and filters")
    work_dir = Path(work_dir)
    emit = log or (lambda _event: None)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    random.seed(config.seed)

    base = getattr(student, "model", None)
    if config.freeze_layers and base is not None:
        lower_layers(base[0].auto_model, config.freeze_layers)  # refuse a bad layer count before any teacher call
    s_prefix = student.resolve_prompt(student_prompt)
    cache = TeacherCache(cache_root, teacher, prompt=teacher_prompt)
    english = sorted({p.en for p in train_pairs} | {p.en for p in dev_pairs})
    with distributed.main_first():  # under torchrun rank 0 fills the cache, the other ranks read it
        target_of = dict(zip(english, cache.get(english)))  # the only teacher calls of the whole run
    teacher_encoded = cache.n_encoded
    emit({"event": "teacher", "sentences": len(english), "encoded": cache.n_encoded, "from_cache": cache.n_hits})

    texts = [t for p in train_pairs for t in (p.en, p.other)]
    targets = np.stack([target_of[p.en] for p in train_pairs for _ in (0, 1)])
    dev_targets = np.stack([target_of[p.en] for p in dev_pairs]) if dev_pairs else None
    fingerprint = _fingerprint(config, train_pairs, dev_pairs, student, teacher, s_prefix)
    checkpoint_folder = work_dir / CHECKPOINT_DIR
    if (checkpoint_folder / "state.json").is_file() and not resume:
        raise BadInputError(
            f"{checkpoint_folder} holds a checkpoint of an interrupted run: pass resume=True (CLI: --resume) "
            f"to continue it, or delete {work_dir} to start over"
        )
    if resume and not (checkpoint_folder / "state.json").is_file():
        raise BadInputError(f"nothing to resume: no checkpoint in {checkpoint_folder}; run without --resume")

    normalize = bool(teacher.info.normalized_output)
    use_head = config.warm_start == "on" or (
        config.warm_start == "auto" and (student.info.source != teacher.info.source or student.dim != teacher.dim)
    )
    if not use_head and student.dim != teacher.dim:
        raise BadInputError(
            f"the student gives {student.dim}-dim vectors and the teacher {teacher.dim}: a projection is needed, "
            "so warm_start cannot be 'off'"
        )
    head = None
    warm_start_used = None
    if use_head:  # deterministic, so a resumed run knows it too
        fit_texts, fit_en = warm_start_rows(train_pairs, config)
        warm_start_used = len(fit_texts) // 2 if config.warm_start_fit == "both" else len(fit_texts)
    if use_head and not resume:
        t0 = time.perf_counter()
        head = fit_head(student, np.stack([target_of[t] for t in fit_en]), fit_texts, s_prefix, config.warm_start_alpha)
        emit({"event": "warm_start", "sentences": len(fit_texts), "used": warm_start_used, "fit": config.warm_start_fit,
              "alpha": config.warm_start_alpha, "seconds": round(time.perf_counter() - t0, 2)})
    elif use_head:  # resuming: the checkpoint's weights replace this placeholder
        head = LinearMap(np.zeros((student.dim, teacher.dim), np.float32), np.zeros(teacher.dim, np.float32))
    model = build_student(student, head, normalize, config.device)
    model.max_seq_length = min(config.max_length, student.max_length or config.max_length)
    if config.freeze_embeddings:
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    if config.freeze_layers:
        freeze_lower_layers(model[0].auto_model, config.freeze_layers)

    head_params = [p for m in list(model)[2:] for p in m.parameters()] if use_head else []
    groups = parameter_groups(model, config.lr, config.weight_decay, head=head_params, head_lr=config.head_lr)
    objective = TeacherRegression(texts, targets, s_prefix, config, dev_pairs, dev_targets, fingerprint)
    loop = fit(model, objective, config, work_dir, groups, resume=resume, progress=progress, log=emit,
               on_step=on_step, lengths=token_lengths(model, texts, s_prefix),
               before_start=lambda: save_weights(model, work_dir / START_WEIGHTS),  # what interpolate mixes back in
               desc="distill", start_tag="warm_start")
    final = loop.best
    if config.interpolate < 1:
        interpolate_weights(model, work_dir / START_WEIGHTS, config.interpolate)
        if dev_pairs:
            final = {"step": loop.steps, "interpolate": config.interpolate,
                     **dev_figures(model, dev_pairs, dev_targets, s_prefix)}
            emit({"event": "eval", "tag": "interpolated", "improved": None, **final})
    model.eval()
    result = TrainResult(
        steps=loop.steps,
        epochs_done=loop.epochs_done,
        stopped=loop.stopped,
        evals=loop.evals,
        warm_start=loop.first,
        best=loop.best,
        final=final,
        seconds=round(time.perf_counter() - started, 2),
        sentences_per_second=loop.sentences_per_second,
        epoch_seconds=loop.epoch_seconds,
        teacher_encoded=teacher_encoded,
        resumed_from_step=loop.resumed_from_step,
        warm_start_used=warm_start_used,
    )
    emit({"event": "done", **{k: v for k, v in dataclasses.asdict(result).items() if k != "evals"}})
    return model, result


def interpolate_weights(model, start_path: Path, weight: float) -> None:
    """Set the model's weights to (1 - weight) x those saved in ``start_path`` + weight x its own (WiSE-FT)."""
    import torch

    own = {k: v.detach().clone() for k, v in model.state_dict().items()}
    load_weights(model, start_path, "the warm start that interpolate mixes back in")
    start = model.state_dict()
    with torch.no_grad():
        model.load_state_dict({k: torch.lerp(start[k], v, weight) if v.is_floating_point() else v
                               for k, v in own.items()})


def _loss(out, targets, config: TrainConfig):
    """MSE to the teacher's vectors, plus ``contrastive_weight`` x in-batch InfoNCE against them.

    The contrastive term asks each student vector to be nearer its own teacher vector than the other
    teacher vectors of the batch (cosine / ``contrastive_temperature``): what retrieval measures.
    Rows sharing a target (a pair's two sides) share one candidate.
    """
    import torch

    loss = torch.nn.functional.mse_loss(out, targets)
    if config.contrastive_weight:
        candidates, label = torch.unique(targets, dim=0, return_inverse=True)
        if len(candidates) > 1:
            logits = torch.nn.functional.normalize(out, dim=-1) @ torch.nn.functional.normalize(candidates, dim=-1).T
            loss = loss + config.contrastive_weight * torch.nn.functional.cross_entropy(
                logits / config.contrastive_temperature, label)
    return loss


def _fingerprint(config: TrainConfig, train_pairs, dev_pairs, student: Encoder, teacher: Encoder, prefix: str) -> str:
    import hashlib

    h = hashlib.sha256()
    fixed = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("eval_every", "checkpoint_every", "patience")}
    h.update(json.dumps(fixed, sort_keys=True).encode())
    h.update(json.dumps([student.info.source, teacher.info.source, teacher.precision, prefix]).encode())
    for pairs in (train_pairs, dev_pairs):
        for p in pairs:
            h.update(p.en.encode())
            h.update(b"\t")
            h.update(p.other.encode())
            h.update(b"\n")
        h.update(b"--")
    return h.hexdigest()
