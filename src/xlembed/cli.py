"""The ``xlembed`` command: a thin layer over the Python API (no logic lives only here).

Exit codes: 0 ok, 2 bad usage or input, 1 other failure; errors are one line on stderr
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import functools
import json
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from .errors import BadInputError, XlembedError, XlembedWarning

app = typer.Typer(
    help="Multilingual sentence embeddings: load, encode, compare, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
STATE = {"debug": False}

ModelOpt = typer.Option(None, "--model", "-m", help="Catalogue name, hub id, local folder or pkg:<package> (default: the default model).")
PrecisionOpt = typer.Option(None, "--precision", "-p", help="fp32, bf16 (CPU/GPU), fp16 (GPU) or int8 (ONNX Runtime).")
DeviceOpt = typer.Option(None, "--device", help="cpu, cuda or auto (default: auto).")
PoolingOpt = typer.Option(None, "--pooling", help="mean, cls or max, for a folder without modules.json.")
PickleOpt = typer.Option(False, "--allow-pickle", help="Permit pytorch_model.bin weights (pickles can run code).")
RemoteOpt = typer.Option(False, "--trust-remote-code", help="Permit model code shipped with the files.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Skip the language check (no warning when texts are in languages the model was not trained on).")


@app.callback()
def main_options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    STATE["debug"] = debug


def handle_errors(func):
    """Turn xlembed errors into one line on stderr and an exit code; show notes as one line each."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        previous = warnings.showwarning
        warnings.showwarning = _show_note
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except XlembedError as exc:
            _fail(str(exc), exc.exit_code)
        except (TypeError, ValueError) as exc:
            _fail(f"bad input: {exc}", 2)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except OSError as exc:  # a file could not be read or written: name it, no traceback
            where = f" {exc.filename}" if exc.filename else ""
            _fail(f"cannot use{where}: {exc.strerror or exc} (check the path, its permissions and free space)", 1)
        except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
            _fail(f"unexpected failure: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1)
        finally:
            warnings.showwarning = previous

    return wrapper


def _fail(message: str, code: int) -> None:
    if STATE["debug"]:
        raise
    first, *rest = message.splitlines() or [""]
    typer.echo(f"error: {first}", err=True)
    for line in rest:  # a folder check lists one problem per line
        typer.echo(f"       {line.strip()}", err=True)
    raise typer.Exit(code)


def _show_note(message, category, filename, lineno, file=None, line=None) -> None:
    from .langs.coverage import LanguageWarning

    if issubclass(category, LanguageWarning):
        typer.echo(f"warning: {message}", err=True)
    elif issubclass(category, XlembedWarning):
        typer.echo(f"note: {message}", err=True)
    elif not STATE["debug"]:
        return
    else:
        typer.echo(f"warning: {category.__name__}: {message}", err=True)


def _load(model, precision=None, device=None, pooling=None, allow_pickle=False, trust_remote_code=False):
    from .loading import load

    return load(model, precision=precision, device=device, pooling=pooling,
                allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)


@app.command()
@handle_errors
def models(as_json: bool = typer.Option(False, "--json", help="Print the catalogue as JSON.")) -> None:
    """List the model catalogue."""
    from . import catalogue

    rows = catalogue.as_rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    typer.echo(format_table(rows))
    typer.echo(f"\ndefault model: {catalogue.default_name()}")


@app.command()
@handle_errors
def similarity(
    texts: list[str] = typer.Argument(..., help="Two or more texts; prints their cosine similarity matrix."),
    model: Optional[str] = ModelOpt,
    precision: Optional[str] = PrecisionOpt,
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Prompt: a prompt name of the model (query, passage) or a literal prefix containing a space or punctuation ('query: '); '' for none (default: the model's)."),
) -> None:
    """Cosine similarity between texts, e.g. Japanese vs English."""
    from .similarity import similarity as sim

    if len(texts) < 2:
        raise BadInputError("give at least two texts to compare")
    encoder = _load(model, precision)
    matrix = sim(texts, model=encoder, prompt=prompt)
    labels = [f"[{i}]" for i in range(len(texts))]
    for label, text in zip(labels, texts):
        typer.echo(f"{label} {text}")
    typer.echo("     " + "".join(f"{label:>7}" for label in labels))
    for label, row in zip(labels, matrix):
        typer.echo(f"{label:<5}" + "".join(f"{v:7.3f}" for v in row))
    typer.echo(f"(model: {encoder.name}, {encoder.backend} {encoder.precision})", err=True)


@app.command()
@handle_errors
def encode(
    input: str = typer.Option("-", "--input", "-i", help="Text file (one text per line), .jsonl file, or - for stdin."),
    output: Path = typer.Option(..., "--output", "-o", help="Output file: .npy (float32 matrix) or .jsonl."),
    model: Optional[str] = ModelOpt,
    precision: Optional[str] = PrecisionOpt,
    device: Optional[str] = DeviceOpt,
    pooling: Optional[str] = PoolingOpt,
    field: Optional[str] = typer.Option(None, "--field", help="Read JSON Lines input and take the text from this field."),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts per batch."),
    normalize: bool = typer.Option(False, "--normalize/--no-normalize", help="L2-normalize the vectors."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Prompt: a prompt name of the model (query, passage) or a literal prefix containing a space or punctuation ('query: '); '' for none (default: the model's)."),
    allow_pickle: bool = PickleOpt,
    trust_remote_code: bool = RemoteOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Embed texts from a file or stdin and write .npy or JSONL (warns when many texts are in a language the model was not trained on)."""
    from .io import read_texts, write_embeddings
    from .paths import check_output_file

    if output.suffix not in (".npy", ".jsonl"):
        raise BadInputError(f"--output must end in .npy or .jsonl, got {output}")
    check_output_file(output, "--output")  # before any work: a bad path fails now, not after encoding
    texts = read_texts(input, field=field)
    encoder = _load(model, precision, device, pooling, allow_pickle, trust_remote_code)
    vectors = encoder.encode(texts, batch_size=batch_size, normalize=normalize, prompt=prompt, check_languages=not quiet)
    write_embeddings(output, vectors, texts)
    stats = encoder.last_stats
    typer.echo(
        f"encoded {len(texts)} texts with {encoder.name} ({encoder.backend} {encoder.precision}, "
        f"prompt {stats.prompt!r}) in {stats.seconds:.1f} s -> {output} {tuple(vectors.shape)}; "
        f"truncated: {stats.n_truncated}",
        err=True,
    )


@app.command()
@handle_errors
def export(
    model: str = typer.Option(..., "--model", "-m", help="The model to convert (name, hub id, folder, pkg:<package>)."),
    precision: str = typer.Option(..., "--precision", "-p", help="fp32, fp16, bf16 (safetensors folder) or int8 (ONNX)."),
    out: Path = typer.Option(..., "--out", help="Folder to write; load it back with `--model OUT`."),
    format: Optional[str] = typer.Option(None, "--format", help="sentence-transformers or onnx (default: onnx for int8)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    pooling: Optional[str] = PoolingOpt,
    allow_pickle: bool = PickleOpt,
    trust_remote_code: bool = RemoteOpt,
) -> None:
    """Convert a model to FP16/BF16 safetensors or an ONNX folder (FP32 or INT8)."""
    from .paths import check_output_folder
    from .saving import save

    check_output_folder(out, overwrite, "--out")
    encoder = _load(model, None, "cpu", pooling, allow_pickle, trust_remote_code)
    folder = save(encoder, out, precision=precision, format=format, overwrite=overwrite)
    typer.echo(f"wrote {precision} model to {folder}")


@app.command()
@handle_errors
def doctor(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Also check this model's folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    no_probe: bool = typer.Option(False, "--no-probe", help="Do not test whether the model hub is reachable."),
    clean_partials: bool = typer.Option(False, "--clean-partials", help="Remove the .partial folders that killed exports or runs left behind (never one still being written)."),
) -> None:
    """Versions, devices, precision support, offline state, memory, leftover .partial folders, and a model folder check."""
    from .doctor import clean_partials as clean, diagnose, format_report, partial_roots

    if clean_partials:
        for item in clean(partial_roots(model)):
            typer.echo(f"removed {item['path']} ({item['mb']} MB)", err=True)
    report = diagnose(model, probe_hub=not no_probe)
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False) if as_json else format_report(report))
    if model is not None and not report["model"]["ok"]:
        problems = report["model"].get("problems") or ["it cannot be loaded"]
        _fail(f"model {model} is not loadable:\n" + "\n".join(problems), 2)


@app.command()
@handle_errors
def demo(model: Optional[str] = ModelOpt) -> None:
    """Embed a small multilingual sample with the default model and check translation retrieval."""
    from .demo import format_demo, run_demo

    result = run_demo(model)
    typer.echo(format_demo(result))
    if not result.all_correct:
        raise typer.Exit(1)


@app.command("eval")
@handle_errors
def eval_(
    task: str = typer.Option(..., "--task", "-t", help="tatoeba, sts (any STS file or folder), sts17, jsts, stsb, korsts, classify, gap or speed."),
    model: Optional[str] = ModelOpt,
    precision: Optional[str] = PrecisionOpt,
    data: Optional[str] = typer.Option(None, "--data", help="The task's file or folder (default: its folder under --data-root)."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Folder with tatoeba/, sts17/, jsts/ ... (default: $XLEMBED_DATA or ../shared/data)."),
    langs: Optional[str] = typer.Option(None, "--langs", help="Comma-separated Tatoeba languages (default: all in the folder)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N pairs of each file."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Prompt on both sides: a prompt name of the model (query, passage) or a literal prefix containing a space or punctuation ('query: '); '' for none (default: the model's)."),
    margin: bool = typer.Option(False, "--margin", help="Tatoeba: ratio-margin scoring (LASER) instead of cosine."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the results as JSON."),
    quiet: bool = QuietOpt,
) -> None:
    """Evaluate one model on one task and print its scores (warns about data in languages the model was not trained on)."""
    from .eval.bench import run_task, task_data
    from .eval.results import record

    if task == "drift":
        raise BadInputError("drift compares precisions: use `xlembed bench --precisions fp32,int8 --tasks drift`")
    if output is not None:
        from .paths import check_output_file

        check_output_file(output, "--output")
    path = task_data(task, data, data_root)
    encoder = _load(model, precision)
    encoder.check_languages = not quiet
    lang_list = [x.strip() for x in langs.split(",") if x.strip()] if langs else None
    results = run_task(encoder, task, path, lang_list, limit, prompt, margin=margin)
    rows = [{"task": r.task, "dataset": r.dataset, "language": r.language, "prompt": r.prompt,
             **{k: round(v, 2) for k, v in r.scores.items()}} for r in results]
    typer.echo(format_table(rows))
    typer.echo(f"(model: {encoder.name}, {encoder.backend} {encoder.precision})", err=True)
    if output is not None:
        from .paths import write_text_atomic

        records = [record(encoder, r).as_dict() for r in results]
        write_text_atomic(output, json.dumps({"records": records}, indent=2, ensure_ascii=False) + "\n")


@app.command()
@handle_errors
def bench(
    models: str = typer.Option(..., "--models", help="Comma-separated models (names, folders, hub ids)."),
    precisions: str = typer.Option("fp32", "--precisions", help="Comma-separated precisions, e.g. fp32,bf16,int8."),
    tasks: str = typer.Option("tatoeba,sts17,speed", "--tasks", help="Comma-separated tasks: tatoeba, sts17, jsts, stsb, korsts, classify, gap, drift, speed."),
    out: Path = typer.Option(..., "--out", help="Folder for index.html, results.json and results.md."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Folder with tatoeba/, sts17/, jsts/ ... (default: $XLEMBED_DATA or ../shared/data)."),
    langs: Optional[str] = typer.Option(None, "--langs", help="Comma-separated Tatoeba languages (default: all)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N pairs of each file."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Prompt on both sides: a prompt name of the model (query, passage) or a literal prefix containing a space or punctuation ('query: '); '' for none (default: each model's)."),
    rubric: Optional[str] = typer.Option(None, "--rubric", help="Your own grading rubric JSON (default: the bundled one, docs/grading.md)."),
    threshold: Optional[list[str]] = typer.Option(None, "--threshold", help="Change one grading threshold, e.g. S.tatoeba_accuracy=92 (repeatable)."),
) -> None:
    """Run models x precisions x tasks, grade them, and write an HTML/Markdown/JSON report."""
    import shlex

    from .eval.bench import BenchPlan, run_bench
    from .paths import check_output_folder

    check_output_folder(out, overwrite=True, what="--out")  # its report files are replaced
    split = lambda text: [x.strip() for x in text.split(",") if x.strip()]  # noqa: E731
    plan = BenchPlan(models=split(models), precisions=split(precisions), tasks=split(tasks), out=str(out),
                     data_root=data_root, langs=split(langs) if langs else None, limit=limit, prompt=prompt,
                     command=shlex.join(["xlembed", *sys.argv[1:]]), rubric=rubric,
                     overrides=_parse_thresholds(threshold or []))
    records, grades, files = run_bench(plan, progress=sys.stderr.isatty())
    typer.echo(files["markdown"].read_text(encoding="utf-8"))
    for failure in plan.failures:
        typer.echo(f"note: {failure}", err=True)
    typer.echo(f"report: {files.get('html')}", err=True)
    if not records:
        raise typer.Exit(1)


@app.command()
@handle_errors
def distill(
    teacher: Optional[str] = typer.Option(None, "--teacher", help="The teacher model (default: the default model)."),
    student: str = typer.Option(..., "--student", help="A transformer model (name, folder, hub id), or 'static'."),
    train: list[str] = typer.Option(..., "--train", help="Parallel TSV files or globs (English TAB other; {a,b} lists allowed; repeatable)."),
    out: Path = typer.Option(..., "--out", help="Folder to write the student into (loads with xlembed.load)."),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="Leave out matched files whose file name or a folder name on their path matches (a name or glob; comma-separated or repeatable), e.g. kyoto_wiki_enja,multi30k.en-fr.tsv."),
    lang: Optional[str] = typer.Option(None, "--lang", help="Language of files whose name has no .en-XX. part."),
    max_pairs_per_lang: Optional[int] = typer.Option(None, "--max-pairs-per-lang", help="Keep at most N pairs per language (seeded)."),
    dev_size: float = typer.Option(1000, "--dev-size", help="Pairs held out for dev evaluation (a count, or a fraction < 1)."),
    min_chars: int = typer.Option(1, "--min-chars", help="Drop pairs with a side shorter than this."),
    max_chars: int = typer.Option(1000, "--max-chars", help="Drop pairs with a side longer than this."),
    skip_malformed: bool = typer.Option(False, "--skip-malformed", help="Skip malformed lines (counted) instead of stopping."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the training pairs (transformer default 1)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Sentences per step (transformer default 64)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (transformer default 2e-4)."),
    head_lr: Optional[float] = typer.Option(None, "--head-lr", help="Learning rate of the projection into the teacher's space (default 1e-3)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Student tokens per sentence (default 128)."),
    freeze_embeddings: bool = typer.Option(True, "--freeze-embeddings/--train-embeddings", help="Keep the word-embedding table fixed (default; training it measured 2.2x slower on e5-small, no better) or train it too."),
    freeze_layers: Optional[int] = typer.Option(None, "--freeze-layers", help="Also keep the embeddings and the student's lowest N transformer layers fixed (default 0; 6 of e5-small's 12: steps 1.4x faster, ~0.5 Tatoeba points lower)."),
    dropout: bool = typer.Option(False, "--dropout/--no-dropout", help="Train with the student's dropout on, or without it (default: off, measured better)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Steps between dev evaluations (default 200)."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Dev evaluations without improvement before stopping (default 4)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Steps between periodic checkpoints (default 100)."),
    warm_start: str = typer.Option("auto", "--warm-start", help="auto, on or off: fit a linear map into the teacher's space first."),
    warm_start_fit: Optional[str] = typer.Option(None, "--warm-start-fit", help="english: fit the map on English sentences only; both: also map translations onto the English teacher vector."),
    contrastive_weight: Optional[float] = typer.Option(None, "--contrastive-weight", help="Add this weight x in-batch InfoNCE to the teacher's vectors to the MSE (0: MSE only)."),
    interpolate: Optional[float] = typer.Option(None, "--interpolate", help="Output weights = (1-A) x warm start + A x trained (WiSE-FT; default 0.7; 1: the trained weights)."),
    fp16: bool = typer.Option(False, "--fp16", help="fp16 autocast (CUDA only)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    seed: int = typer.Option(0, "--seed", help="Seed of shuffles, the dev split and initialisation."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its checkpoint (same command otherwise)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    tatoeba: Optional[Path] = typer.Option(None, "--tatoeba", help="Tatoeba folder: measure the trained languages at the end (default: tatoeba/ under $XLEMBED_DATA or ../shared/data, when present)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Static student: the model whose tokenizer.json gives the vocabulary."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Static student: vector size (default: the teacher's)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Static student: fp32, fp16 or int8 vectors on disk."),
    nproc: int = typer.Option(1, "--nproc", help="Train on N processes of this machine (torch.distributed: gloo on CPU, NCCL on GPU; --batch-size is per process; loopback only). Several machines: torchrun ... -m xlembed distill ..."),
    quiet: bool = QuietOpt,
) -> None:
    """Distil a teacher into a multilingual student with parallel sentences (see README: Distillation)."""
    import shlex

    from .parallel import distributed

    if nproc > 1 and not distributed.launched_as_rank():
        raise typer.Exit(distributed.run_local_ranks(nproc, distributed.without_option(sys.argv[1:], "--nproc")))
    from .backends.torch_backend import resolve_device
    from .distill.run import distill as run_distill
    from .distill.train import TrainConfig

    given = {"epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr, "head_lr": head_lr,
             "max_length": max_length, "eval_every": eval_every, "patience": patience,
             "checkpoint_every": checkpoint_every, "warm_start_fit": warm_start_fit,
             "contrastive_weight": contrastive_weight, "interpolate": interpolate, "freeze_layers": freeze_layers}
    given = {k: v for k, v in given.items() if v is not None}
    if student == "static":
        static_options = {k: v for k, v in {"dim": dim, "storage": storage, "epochs": epochs,
                                             "batch_size": batch_size, "lr": lr}.items() if v is not None}
        config = TrainConfig(seed=seed)
    else:
        static_options = None
        config = TrainConfig(**given, freeze_embeddings=freeze_embeddings, dropout=dropout, warm_start=warm_start, fp16=fp16,
                             seed=seed, device=resolve_device(device))
    if tatoeba is None:
        from .eval.bench import default_data_root

        root = default_data_root()
        tatoeba = root / "tatoeba" if root is not None and (root / "tatoeba").is_dir() else None
    summary = run_distill(
        teacher=teacher, student=student, train=train, out=out, lang=lang, dev_size=dev_size,
        max_pairs_per_lang=max_pairs_per_lang, min_chars=min_chars, max_chars=max_chars,
        skip_malformed=skip_malformed, exclude=exclude, config=config, resume=resume, overwrite=overwrite, tatoeba_dir=tatoeba,
        tokenizer=tokenizer, static_options=static_options, progress=sys.stderr.isatty(),
        command=shlex.join(["xlembed", *sys.argv[1:]]), check_languages=not quiet,
    )
    distributed.shutdown()
    if "rank" in summary:  # not rank 0: it writes the folder and reports
        return
    rows = summary.get("tatoeba") or []
    if rows:
        typer.echo(format_table(rows))
    typer.echo(f"wrote {summary['kind']} student to {out} (model card: {out / 'README.md'})")


@app.command()
@handle_errors
def compress(
    model: str = typer.Option(..., "--model", "-m", help="The model to compress: a transformer model (name, folder, hub id)."),
    langs: str = typer.Option(..., "--langs", help="Languages to keep, comma-separated ISO codes, e.g. en,ja,zh."),
    steps: str = typer.Option(..., "--steps", help="Comma-separated steps: trim[:SIZE], drop:N[,choose=importance|spread], prune:heads=R,ffn=R, share:G, recover[:epochs=E,steps=S,lr=L,targets=own|english,balance=B], int8 | onnx (last)."),
    out: Path = typer.Option(..., "--out", help="Folder for the compressed model (loads with xlembed.load)."),
    corpus: Optional[list[str]] = typer.Option(None, "--corpus", help="Text files or globs in your languages, one text per line (repeatable): what the trim keeps and recovery trains on."),
    parallel: Optional[list[str]] = typer.Option(None, "--parallel", help="Parallel TSV files or globs (English TAB other) of the kept languages: both sides are training text, held-out pairs measure retrieval."),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="Leave out --parallel files whose file or folder name matches (names or globs)."),
    max_pairs_per_lang: Optional[int] = typer.Option(None, "--max-pairs-per-lang", help="Read at most N parallel pairs per language (seeded)."),
    trim_size: Optional[str] = typer.Option(None, "--trim-size", help="Vocabulary budget of trim: a share of the parent's parameters (0.45) or a piece count (default: every piece your languages use)."),
    lang_weights: Optional[list[str]] = typer.Option(None, "--lang-weight", help="Weight of a language when --trim-size cuts, e.g. en=8 when English is half your text (repeatable; default 1 each)."),
    recover_epochs: Optional[int] = typer.Option(None, "--recover-epochs", help="Passes over the training text in recover (default 1, or as many as --recover-steps need)."),
    recover_steps: Optional[int] = typer.Option(None, "--recover-steps", help="Train recover for N steps, with as many passes over the text as they need (with --recover-epochs: whichever ends first)."),
    recover_lr: Optional[float] = typer.Option(None, "--recover-lr", help="Learning rate of recover (default 1e-3)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Sentences per recover step (default 64)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Tokens per sentence in recover (default 128)."),
    teacher_precision: str = typer.Option("fp32", "--teacher-precision", help="Precision of the parent when it computes recovery targets: fp32, or bf16 (~3x faster on CPUs with bf16 instructions)."),
    tatoeba: Optional[Path] = typer.Option(None, "--tatoeba", help="Tatoeba folder for the check after each step (default: tatoeba/ under $XLEMBED_DATA or ../shared/data when present)."),
    dev_size: int = typer.Option(256, "--dev-size", help="Held-out texts for the check after each step."),
    min_cosine: float = typer.Option(0.3, "--min-cosine", help="Stop when a step leaves a mean cosine to the parent below this on the dev texts."),
    max_tatoeba_drop: float = typer.Option(30.0, "--max-tatoeba-drop", help="Stop when a step costs more Tatoeba points than this on the sample."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    resume: bool = typer.Option(False, "--resume", help="Reuse the steps an interrupted run finished (OUT.steps/)."),
    keep_steps: bool = typer.Option(False, "--keep-steps", help="Keep every step's folder in OUT.steps/."),
    quiet: bool = QuietOpt,
) -> None:
    """Compress a model for your languages: trim the vocabulary, drop/prune/share layers, recover, quantize."""
    import shlex

    from .compress.pipeline import compress as run_compress
    from .compress.recover import recovery_config
    from .compress.languages import parse_weights

    given = {"epochs": recover_epochs, "max_steps": recover_steps, "lr": recover_lr, "batch_size": batch_size,
             "max_length": max_length}
    config = recovery_config(**{k: v for k, v in given.items() if v is not None})
    if tatoeba is None:
        from .eval.bench import default_data_root

        root = default_data_root()
        tatoeba = root / "tatoeba" if root is not None and (root / "tatoeba").is_dir() else None
    summary = run_compress(
        model, out, langs, steps, corpus=corpus, parallel=parallel, exclude=exclude,
        max_pairs_per_lang=max_pairs_per_lang, trim_size=trim_size, lang_weights=parse_weights(lang_weights or []),
        recover_config=config, teacher_precision=teacher_precision, tatoeba_dir=tatoeba, dev_size=dev_size,
        min_cosine=min_cosine, max_tatoeba_drop=max_tatoeba_drop, overwrite=overwrite, resume=resume,
        keep_steps=keep_steps, progress=sys.stderr.isatty(), command=shlex.join(["xlembed", *sys.argv[1:]]),
        check_languages=not quiet,
    )
    rows = [{k: v for k, v in r.items() if k != "tatoeba_sample"} for r in summary["results"]]
    typer.echo(format_table(rows))
    typer.echo(f"wrote the compressed model to {out} (model card: {out / 'README.md'})")


def _parse_thresholds(items: list[str]) -> dict[str, float | None]:
    """'S.tatoeba_accuracy=92' -> {'S.tatoeba_accuracy': 92.0}; 'B.throughput=none' removes a criterion."""
    out: dict[str, float | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise BadInputError(f"--threshold must look like LEVEL.criterion=VALUE (e.g. S.tatoeba_accuracy=92), got {item!r}")
        if value.strip().lower() in ("none", ""):
            out[key.strip()] = None
            continue
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise BadInputError(f"--threshold {item!r}: {value!r} is not a number") from None
    return out


def format_table(rows: list[dict]) -> str:
    """Rows of dicts as an aligned text table (columns from the first row)."""
    if not rows:
        return "(empty)"
    cols = list(rows[0])
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v!r}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


from . import cli_finetune  # noqa: E402,F401 - registers finetune, transfer, distill-classifier, predict
from . import cli_serve  # noqa: E402,F401 - registers serve
from . import cli_corpus  # noqa: E402,F401 - registers embed-corpus
from . import cli_langs  # noqa: E402,F401 - registers langs, recommend


def main() -> None:
    app()


if __name__ == "__main__":
    main()
