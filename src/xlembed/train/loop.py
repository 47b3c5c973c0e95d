"""The training loop every recipe shares (distillation, recovery after compression, fine-tuning).

A plain, explicit loop: length-bucketed batches of rows (a seeded shuffle per epoch), AdamW with
linear warmup and decay, gradient clipping, optional fp16 autocast (CUDA), dev evaluation every N
steps with the best weights kept, early stopping, a progress bar and a JSONL event log, and periodic
and signal-triggered checkpoints that make a resumed run reach the weights of an uninterrupted one
(same steps, CPU). What is learned is the ``Objective``'s business: its rows, its loss over a batch
of rows, its dev figures, and the fingerprint that ties a checkpoint to one run.
"""

from __future__ import annotations

import dataclasses
import math
import random
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from ..errors import BadInputError, XlembedError
from .checkpoint import BEST_WEIGHTS, CHECKPOINT_DIR, Checkpoint, load_weights, save_weights


class Objective(Protocol):
    """What a run optimises.

    texts: the text of each row (batches are bucketed by its token count);
    metric: the dev figure whose best value is kept (the best checkpoint) and watched for early stopping:
        the lowest, or the highest when the objective has ``maximize = True`` (accuracy, Spearman);
    loss(model, rows): the training loss of a batch of row indices (a scalar tensor);
    evaluate(model): dev figures (a dict with ``metric``), or None without dev data;
    fingerprint(): a string that changes with the data, models and settings (a checkpoint of another run is refused).
    """

    texts: list[str]
    metric: str

    def loss(self, model, rows: list[int]): ...

    def evaluate(self, model) -> dict | None: ...

    def fingerprint(self) -> str: ...


class TrainingInterrupted(XlembedError):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint; rerun with resume=True (CLI: --resume)."""

    exit_code = 130


@dataclass
class LoopResult:
    steps: int
    epochs_done: float
    stopped: str  # "completed", "max_steps", "early_stopping"
    evals: list[dict]
    first: dict | None  # dev figures before any training step
    best: dict | None  # dev figures of the kept weights
    seconds: float
    sentences_per_second: float
    epoch_seconds: list[float]
    resumed_from_step: int | None


def fit(model, objective: Objective, config, work_dir: Path | str, groups: list[dict], *, resume: bool = False,
        progress: bool | None = None, log: Callable[[dict], None] | None = None,
        on_step: Callable[[int], None] | None = None, lengths: Sequence[int] | None = None,
        before_start: Callable[[], None] | None = None, desc: str = "train", start_tag: str = "start") -> LoopResult:
    """Train ``model`` on ``objective``; returns with the best dev weights loaded (the last ones without dev data).

    config: epochs (None: max_steps decide, with as many passes as they need), max_steps, batch_size, warmup, max_grad_norm, eval_every, patience, checkpoint_every,
        bucket_size, dropout, fp16, seed, device, lr (a ``TrainConfig``).
    groups: AdamW parameter groups (params, lr, weight_decay).
    lengths: token count of each row (default: the model's tokenizer on ``objective.texts``).
    before_start: called once on a fresh run, before the first dev evaluation (e.g. to save start weights).
    """
    import torch

    from ..parallel import distributed

    work_dir = Path(work_dir)
    world, main = distributed.world_size(), distributed.is_main()  # under torchrun: rank 0 writes, all train
    emit = (log if main else None) or (lambda _event: None)
    started = time.perf_counter()
    checkpoint = Checkpoint(work_dir / CHECKPOINT_DIR)
    fingerprint = objective.fingerprint() + (f"|ranks={world}" if world > 1 else "")  # ranks change the batches
    if checkpoint.exists() and not resume:
        raise BadInputError(
            f"{checkpoint.folder} holds a checkpoint of an interrupted run: pass resume=True (CLI: --resume) "
            f"to continue it, or delete {work_dir} to start over"
        )
    if resume and not checkpoint.exists():
        raise BadInputError(f"nothing to resume: no checkpoint in {checkpoint.folder}; run without --resume")
    distributed.sync_parameters(model)
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]])
    if lengths is None:
        lengths = token_lengths(model, objective.texts)
    global_batch = config.batch_size * world  # batch_size rows per rank and step
    steps_per_epoch = math.ceil(len(objective.texts) / global_batch)
    if config.epochs is None:  # max_steps decide, with as many passes as they need
        total_steps = config.max_steps
    else:
        total_steps = steps_per_epoch * config.epochs
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
    warmup_steps = int(config.warmup * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(warmup_steps, total_steps))
    scaler = torch.amp.GradScaler("cuda") if config.fp16 else None

    state = {"step": 0, "epoch": 0, "batch": 0, "best_value": None, "best": None, "first": None,
             "evals": [], "since_best": 0, "epoch_seconds": [], "sentences": 0, "train_seconds": 0.0}
    resumed_from = None
    if resume:
        state = checkpoint.load(model, optimizer, scheduler, fingerprint)
        resumed_from = state["step"]
        emit({"event": "resume", "step": state["step"], "epoch": state["epoch"], "batch": state["batch"]})

    def save_checkpoint() -> None:
        if main:
            checkpoint.save(model, optimizer, scheduler, state, fingerprint)
        distributed.barrier()

    def evaluate(tag: str) -> dict | None:
        figures = distributed.broadcast_object(objective.evaluate(model) if main else None)  # rank 0 decides
        if figures is None:
            return None
        figures = {"step": state["step"], **figures}
        value = figures[objective.metric]
        if getattr(objective, "maximize", False):
            value = -value  # the loop keeps the lowest
        improved = state["best_value"] is None or value < state["best_value"]
        if improved:
            if main:
                save_weights(model, work_dir / BEST_WEIGHTS)
            state["best_value"], state["best"], state["since_best"] = value, figures, 0
        else:
            state["since_best"] += 1
        state["evals"].append(figures)
        emit({"event": "eval", "tag": tag, "improved": improved, **figures})
        return figures

    if not resume:
        if before_start is not None and main:
            before_start()
        state["first"] = evaluate(start_tag)
        save_checkpoint()  # a SIGKILL now loses nothing

    params = [p for g in optimizer.param_groups for p in g["params"]]
    flag: dict = {}
    bar = progress_bar(total_steps, state["step"], progress, desc) if main else None
    stopped = "completed"
    model.train(config.dropout)  # only dropout differs between the modes of these models
    with stop_on_signals(flag):
        while state["step"] < total_steps and stopped == "completed":
            batches = length_batches(lengths, global_batch, config.seed, state["epoch"], config.bucket_size)
            epoch_started = time.perf_counter()
            while state["batch"] < len(batches):
                if state["step"] >= total_steps:
                    stopped = "max_steps"
                    break
                t0 = time.perf_counter()
                rows = batches[state["batch"]]
                loss = _step(model, objective, rows[distributed.rank()::world], len(rows), optimizer, scheduler,
                             scaler, params, config)
                state["step"] += 1
                state["batch"] += 1
                state["sentences"] += len(rows)
                state["train_seconds"] += time.perf_counter() - t0
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3e}", epoch=state["epoch"] + 1)
                if state["step"] % 10 == 0 or state["step"] == total_steps:
                    emit({"event": "train", "step": state["step"], "epoch": state["epoch"], "loss": loss,
                          "lr": scheduler.get_last_lr()[0],
                          "sentences_per_s": round(state["sentences"] / max(state["train_seconds"], 1e-9), 2),
                          "rss_mb": rss_mb()})
                if on_step is not None:
                    on_step(state["step"])
                if config.eval_every and state["step"] % config.eval_every == 0 and state["step"] < total_steps:
                    evaluate("periodic")
                    if config.patience is not None and state["since_best"] >= config.patience:
                        stopped = "early_stopping"
                if distributed.any_rank(bool(flag.get("signal"))):  # all ranks stop at the same step
                    flag.setdefault("signal", "a signal to another rank")
                    save_checkpoint()
                    emit({"event": "interrupted", "signal": flag["signal"], "step": state["step"]})
                    if bar is not None:
                        bar.close()
                    raise TrainingInterrupted(
                        f"training stopped by {flag['signal']} at step {state['step']}/{total_steps}; the checkpoint "
                        f"is in {checkpoint.folder}: rerun the same command with --resume to continue"
                    )
                if stopped != "completed":
                    break
                if config.checkpoint_every and state["step"] % config.checkpoint_every == 0:
                    save_checkpoint()
            else:
                state["epoch_seconds"].append(round(time.perf_counter() - epoch_started, 3))
                state["epoch"] += 1
                state["batch"] = 0
    if bar is not None:
        bar.close()
    if state["step"] >= total_steps and stopped == "completed" and config.max_steps is not None \
            and config.epochs is not None and total_steps < steps_per_epoch * config.epochs:
        stopped = "max_steps"
    if not state["evals"] or state["evals"][-1]["step"] != state["step"]:
        evaluate("final")
    distributed.barrier()  # rank 0 has written the best weights
    if state["best"] is not None:
        load_weights(model, work_dir / BEST_WEIGHTS, "the best weights of this run")
    model.eval()
    return LoopResult(
        steps=state["step"],
        epochs_done=round(state["step"] / steps_per_epoch, 3),
        stopped=stopped,
        evals=state["evals"],
        first=state["first"],
        best=state["best"],
        seconds=round(time.perf_counter() - started, 2),
        sentences_per_second=round(state["sentences"] / max(state["train_seconds"], 1e-9), 2),
        epoch_seconds=state["epoch_seconds"],
        resumed_from_step=resumed_from,
    )


def _step(model, objective: Objective, rows, global_rows: int, optimizer, scheduler, scaler, params, config) -> float:
    """One optimizer step on ``rows``: this rank's share of a global batch of ``global_rows`` (all of it in one process)."""
    import torch

    from ..parallel import distributed

    optimizer.zero_grad(set_to_none=True)
    autocast = torch.autocast("cuda", dtype=torch.float16) if scaler is not None else nullcontext()
    loss = None
    if rows:  # a last batch smaller than the number of ranks leaves some ranks without rows
        with autocast:
            loss = objective.loss(model, rows)
        (scaler.scale(loss) if scaler is not None else loss).backward()
    distributed.average_gradients(params, len(rows), global_rows)
    if scaler is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
    scheduler.step()
    value = distributed.global_mean(float(loss.detach()) if loss is not None else 0.0, len(rows), global_rows)
    if not math.isfinite(value):
        raise BadInputError(f"the training loss became {value}: lower the learning rate (lr={config.lr}; CLI: --lr)")
    return value


def length_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, bucket_size: int) -> list[list[int]]:
    """Seeded shuffle, then sort by length inside buckets of ``bucket_size`` batches; batch order shuffled.

    Rows of similar length share a batch (little padding) while every epoch sees a new order.
    The result depends only on (lengths, batch_size, seed, epoch, bucket_size): resume recomputes it.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * max(1, bucket_size)
    batches = []
    for start in range(0, len(order), span):
        bucket = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches.extend(bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size))
    rng.shuffle(batches)
    return batches


def linear_schedule(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def token_lengths(model, texts: Sequence[str], prefix: str = "") -> list[int]:
    """Token count of each text (prefix included) as the model's tokenizer makes it, capped at its max length."""
    from ..backends.torch_backend import token_lengths as count

    return [min(n, model.max_seq_length) for n in count(model.tokenizer, list(texts), prefix)]


def parameter_groups(model, lr: float, weight_decay: float, head: Sequence = (), head_lr: float | None = None) -> list[dict]:
    """AdamW groups: trainable weights with decay, biases and LayerNorm weights without, and the ``head``
    parameters (e.g. a projection) at ``head_lr`` without decay."""
    head_ids = {id(p) for p in head}
    body = [(n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [
        {"params": [p for n, p in body if not no_decay(n)], "weight_decay": weight_decay, "lr": lr},
        {"params": [p for n, p in body if no_decay(n)], "weight_decay": 0.0, "lr": lr},
    ]
    trainable_head = [p for p in head if p.requires_grad]
    if trainable_head:
        groups.append({"params": trainable_head, "weight_decay": 0.0, "lr": head_lr if head_lr is not None else lr})
    return groups


def no_decay(name: str) -> bool:
    return name.endswith(".bias") or "LayerNorm" in name or "layer_norm" in name


@contextmanager
def stop_on_signals(flag: dict):
    """SIGINT/SIGTERM set ``flag['signal']``; the loop saves a checkpoint at the next step boundary."""
    installed = {}

    def handler(signum, _frame):
        if flag.get("signal"):  # a second Ctrl-C: the user insists
            raise KeyboardInterrupt
        flag["signal"] = signal.Signals(signum).name
        print(f"\n{flag['signal']} received: saving a checkpoint after this step (again to abort)", file=sys.stderr)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            installed[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: signals cannot be caught here
            pass
    try:
        yield
    finally:
        for sig, old in installed.items():
            signal.signal(sig, old)


def encode_while_training(model, texts: Sequence[str], prefix: str, batch_size: int = 64, name: str = "being trained"):
    """Vectors of ``texts`` from a SentenceTransformer under training: eval mode for the call, then the mode it
    had; never cached (its weights change); the truncation note silenced (max_length is the training setting)."""
    import warnings

    from ..backends.torch_backend import TorchEncoder
    from ..encoder import ModelInfo
    from ..errors import XlembedWarning

    was_training = model.training
    info = ModelInfo(name=name, source="training", dim=model.get_embedding_dimension(),
                     max_length=model.max_seq_length, backend="torch", precision="fp32", cacheable=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XlembedWarning)
            return TorchEncoder(model, info).encode(list(texts), batch_size=batch_size, prompt=prefix)
    finally:
        model.train(was_training)


def jsonl_log(path: Path) -> Callable[[dict], None]:
    """A log function that appends each event, time-stamped, as one JSON line to ``path``."""
    import json

    def log(event: dict) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"time": round(time.time(), 3), **event}, ensure_ascii=False) + "\n")

    return log


def check_loop_settings(config) -> None:
    """The settings every recipe's config shares with the loop: a clear error for each bad value."""
    if config.epochs is None and config.max_steps is None:
        raise BadInputError("epochs=None trains for max_steps steps: give max_steps too (or epochs >= 1)")
    if config.epochs is not None and config.epochs < 1:
        raise BadInputError(f"epochs must be >= 1, got {config.epochs}")
    if config.batch_size < 2:
        raise BadInputError(f"batch_size must be >= 2, got {config.batch_size}")
    if not (config.lr > 0 and config.head_lr > 0):
        raise BadInputError(f"learning rates must be > 0, got lr={config.lr}, head_lr={config.head_lr} (CLI: --lr, --head-lr)")
    if not 0 <= config.warmup < 1:
        raise BadInputError(f"warmup is a fraction of the steps in [0, 1), got {config.warmup}")
    if config.max_length < 8:
        raise BadInputError(f"max_length must be >= 8 tokens, got {config.max_length}")
    if config.max_steps is not None and config.max_steps < 1:
        raise BadInputError(f"max_steps must be >= 1, got {config.max_steps}")
    if config.fp16 and not config.device.startswith("cuda"):
        raise BadInputError("fp16 training runs on a CUDA GPU only; on CPU train in fp32 (bf16 measured 5x slower)")


def rss_mb() -> float | None:
    """This process's resident memory in MB (Linux; None elsewhere), logged to catch growth in long runs."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    import os

    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def progress_bar(total: int, initial: int, progress: bool | None, desc: str, unit: str = "step",
                 unit_scale: bool = False):
    """A tqdm bar starting at ``initial`` (a resumed run), or None; ``progress=None`` shows it on a terminal."""
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=unit_scale, dynamic_ncols=True)


def as_dict(result: LoopResult) -> dict:
    return dataclasses.asdict(result)
