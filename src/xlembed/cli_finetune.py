"""CLI commands of fine-tuning: ``finetune``, ``transfer``, ``distill-classifier``, ``predict``.

A thin layer over ``xlembed.finetune``; option defaults come from ``FinetuneConfig``.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from .cli import app, format_table, handle_errors
from .finetune.run import FinetuneConfig

D = FinetuneConfig()
DATA_HELP = "Data file, optionally with ::options (lang=en|ja, split=train|trial|test, text=COL, text_b=COL, label=COL, limit=N)."


def _config(**given) -> FinetuneConfig:
    from .backends.torch_backend import resolve_device

    given = {k: v for k, v in given.items() if v is not None}
    given["device"] = resolve_device(given.get("device"))
    return FinetuneConfig(**given)


EpochsOpt = typer.Option(None, "--epochs", help=f"Passes over the training data (default {D.epochs}).")
MaxStepsOpt = typer.Option(None, "--max-steps", help="Stop after N optimizer steps.")
BatchOpt = typer.Option(None, "--batch-size", help=f"Examples per step (default {D.batch_size}).")
LrOpt = typer.Option(None, "--lr", help=f"Learning rate of the encoder (default {D.lr}; lower it if the classifier collapses to one class).")
HeadLrOpt = typer.Option(None, "--head-lr", help=f"Learning rate of the classifier head (default {D.head_lr}).")
WarmupOpt = typer.Option(None, "--warmup", help=f"Share of the steps with a linear warmup, then linear decay (default {D.warmup}).")
DecayOpt = typer.Option(None, "--weight-decay", help=f"AdamW weight decay (default {D.weight_decay}).")
MaxLenOpt = typer.Option(None, "--max-length", help=f"Tokens per text (default {D.max_length}).")
FreezeOpt = typer.Option(None, "--freeze", help="Keep fixed: none, embeddings (default: the word-embedding table), layers:N (embeddings + lowest N layers), encoder (train the head only).")
DropoutOpt = typer.Option(True, "--dropout/--no-dropout", help="Train with the encoder's dropout on (default) or off.")
EvalEveryOpt = typer.Option(None, "--eval-every", help=f"Steps between dev evaluations (default {D.eval_every}).")
PatienceOpt = typer.Option(None, "--patience", help=f"Dev evaluations without improvement before stopping (default {D.patience}).")
PromptOpt = typer.Option(None, "--prompt", help="The encoder's prompt name or literal prefix (default: the model's own, e5: 'query: ').")
SeedOpt = typer.Option(0, "--seed", help="Seed of shuffles and of the head's initialisation.")
DeviceOpt = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available).")
ResumeOpt = typer.Option(False, "--resume", help="Continue an interrupted run from its checkpoint (same command otherwise).")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace a non-empty output folder.")


@app.command()
@handle_errors
def finetune(
    model: str = typer.Option(..., "--model", "-m", help="The encoder to fine-tune (catalogue name, folder, hub id)."),
    task: str = typer.Option(..., "--task", help="sts (CoSENT on the encoder), classify (single texts) or pair-classify (NLI, paraphrase)."),
    train: list[str] = typer.Option(..., "--train", help="Training data (repeatable: several files, e.g. languages, are one training set). " + DATA_HELP),
    dev: Optional[str] = typer.Option(None, "--dev", help="Dev data: the best dev weights are kept, early stopping watches it."),
    out: Path = typer.Option(..., "--out", help="Folder to write the model into (xlembed.load opens the encoder)."),
    test: Optional[str] = typer.Option(None, "--test", help="NAME=FILE test files (as for transfer): the trained model's table goes into the model card."),
    epochs: Optional[int] = EpochsOpt, max_steps: Optional[int] = MaxStepsOpt, batch_size: Optional[int] = BatchOpt,
    lr: Optional[float] = LrOpt, head_lr: Optional[float] = HeadLrOpt, warmup: Optional[float] = WarmupOpt,
    weight_decay: Optional[float] = DecayOpt, max_length: Optional[int] = MaxLenOpt, freeze: Optional[str] = FreezeOpt,
    dropout: bool = DropoutOpt, eval_every: Optional[int] = EvalEveryOpt, patience: Optional[int] = PatienceOpt,
    prompt: Optional[str] = PromptOpt, seed: int = SeedOpt, device: Optional[str] = DeviceOpt,
    resume: bool = ResumeOpt, overwrite: bool = OverwriteOpt,
    nproc: int = typer.Option(1, "--nproc", help="Train on N processes of this machine (torch.distributed: gloo on CPU, NCCL on GPU; --batch-size is per process; loopback only). Several machines: torchrun ... -m xlembed finetune ..."),
) -> None:
    """Fine-tune an encoder on labelled data (STS or classification), keeping the best dev weights."""
    from .finetune.run import finetune as run
    from .parallel import distributed

    if nproc > 1 and not distributed.launched_as_rank():
        raise typer.Exit(distributed.run_local_ranks(nproc, distributed.without_option(sys.argv[1:], "--nproc")))
    config = _config(epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, head_lr=head_lr, warmup=warmup,
                     weight_decay=weight_decay, max_length=max_length, freeze=freeze, dropout=dropout,
                     eval_every=eval_every, patience=patience, prompt=prompt, seed=seed, device=device)
    summary = run(model=model, task=task, train=train, dev=dev, out=out, config=config, resume=resume,
                  overwrite=overwrite, progress=sys.stderr.isatty(), command=shlex.join(["xlembed", *sys.argv[1:]]),
                  tests=test)
    distributed.shutdown()
    if "rank" not in summary:  # rank 0 wrote the folder and reports
        _report(summary, out)


@app.command()
@handle_errors
def transfer(
    model: Path = typer.Option(..., "--model", "-m", help="A folder written by xlembed finetune (classifier or STS encoder)."),
    test: str = typer.Option(..., "--test", help="NAME=FILE pairs, comma-separated, e.g. 'en=jsick.tsv::lang=en,split=test,ja=jsick.tsv::lang=ja,split=test'."),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts per encoder batch."),
    output: Optional[Path] = typer.Option(None, "--output", help="Also write the table as JSON to this file."),
) -> None:
    """Evaluate a fine-tuned model on test files of several languages: in-language vs zero-shot transfer."""
    from .finetune.run import transfer as run
    from .paths import check_output_file, write_text_atomic

    if output is not None:
        check_output_file(output)
    result = run(model, test, batch_size)
    rows = [{k: (json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v) for k, v in row.items() if k != "file"}
            for row in result["rows"]]
    typer.echo(format_table(rows))
    if output is not None:
        write_text_atomic(output, json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        typer.echo(f"wrote {output}")


@app.command("distill-classifier")
@handle_errors
def distill_classifier(
    teacher: Path = typer.Option(..., "--teacher", help="A classifier folder written by xlembed finetune."),
    student: str = typer.Option(..., "--student", help="The student's encoder (catalogue name, folder, hub id; may be a compressed model)."),
    train: str = typer.Option(..., "--train", help="Labelled training data. " + DATA_HELP),
    out: Path = typer.Option(..., "--out", help="Folder to write the student classifier into."),
    test: Optional[str] = typer.Option(None, "--test", help="NAME=FILE test files: student and teacher tables go into the model card."),
    unlabeled: Optional[list[str]] = typer.Option(None, "--unlabeled", help="Texts (or pairs) without labels that the teacher labels (repeatable)."),
    dev: Optional[str] = typer.Option(None, "--dev", help="Dev data with labels (best weights kept)."),
    drop_layers: int = typer.Option(0, "--drop-layers", help="Remove N of the student's layers first, chosen by measured importance."),
    temperature: float = typer.Option(2.0, "--temperature", help="Softmax temperature T of the soft labels."),
    alpha: float = typer.Option(0.5, "--alpha", help="Weight of the soft-label loss (T^2 x KL, batchmean); 1 - alpha weighs the hard labels; 0: hard labels only."),
    augment: Optional[int] = typer.Option(None, "--augment", help="Pair tasks: the teacher also labels pairs made from the training pairs: each reversed, and each sentence with its N most word-overlapping training sentences (0: reversed only); dev and --test pairs are never made."),
    epochs: Optional[int] = EpochsOpt, max_steps: Optional[int] = MaxStepsOpt, batch_size: Optional[int] = BatchOpt,
    lr: Optional[float] = LrOpt, head_lr: Optional[float] = HeadLrOpt, warmup: Optional[float] = WarmupOpt,
    weight_decay: Optional[float] = DecayOpt, max_length: Optional[int] = MaxLenOpt, freeze: Optional[str] = FreezeOpt,
    dropout: bool = DropoutOpt, eval_every: Optional[int] = EvalEveryOpt, patience: Optional[int] = PatienceOpt,
    seed: int = SeedOpt, device: Optional[str] = DeviceOpt, resume: bool = ResumeOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Distil a classifier into a smaller student on its soft labels (plus the hard labels)."""
    from .finetune.run import distill_classifier as run

    config = _config(epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, head_lr=head_lr, warmup=warmup,
                     weight_decay=weight_decay, max_length=max_length, freeze=freeze, dropout=dropout,
                     eval_every=eval_every, patience=patience, seed=seed, device=device)
    summary = run(teacher=str(teacher), student=student, train=train, out=out, unlabeled=unlabeled or (), dev=dev,
                  drop_layers=drop_layers, temperature=temperature, alpha=alpha, config=config, resume=resume,
                  overwrite=overwrite, progress=sys.stderr.isatty(), command=shlex.join(["xlembed", *sys.argv[1:]]),
                  tests=test, augment=augment)
    _report(summary, out)


@app.command()
@handle_errors
def predict(
    model: Path = typer.Option(..., "--model", "-m", help="A classifier folder (xlembed finetune / distill-classifier)."),
    input: str = typer.Option(..., "--input", help="Texts: one per line, TEXT<TAB>TEXT pairs, a TSV with a header, or JSONL."),
    output: Path = typer.Option(..., "--output", help="JSONL file to write: text, [text_b], label, probabilities."),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts per encoder batch."),
) -> None:
    """Label texts (or pairs) with a fine-tuned classifier."""
    from .finetune.run import predict as run

    result = run(model, input, output, batch_size)
    counts = ", ".join(f"{k}: {v}" for k, v in result["predicted"].items())
    typer.echo(f"labelled {result['n']} inputs ({counts}); wrote {result['output']}")


def _report(summary: dict, out: Path) -> None:
    """Dev figures before/after, the test tables, the steps and where the model went."""
    training = summary["training"]
    rows = []
    for label, figures in (("before", training["before"]), ("kept", training["best"])):
        if figures:
            rows.append({"weights": label, **{k: (round(v, 2) if isinstance(v, float) else v)
                                              for k, v in figures.items() if k not in ("dev_predicted",)}})
    if rows:
        typer.echo(format_table(rows))
    for key, who in (("tests", "this model"), ("teacher_tests", "the teacher")):
        if summary.get(key):
            typer.echo(f"test files, {who}:")
            typer.echo(format_table([{k: v for k, v in r.items() if k not in ("file", "predicted")} for r in summary[key]]))
    typer.echo(f"{training['steps']} steps, stopped: {training['stopped']}, {training['seconds']} s")
    typer.echo(f"wrote {out} (model card: {out / 'README.md'})")
