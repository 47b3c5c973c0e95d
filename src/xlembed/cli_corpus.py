"""CLI command ``embed-corpus``: a thin layer over ``xlembed.parallel.embed_corpus``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli import DeviceOpt, ModelOpt, PickleOpt, PoolingOpt, PrecisionOpt, QuietOpt, RemoteOpt, app, handle_errors
from .parallel.corpus import Fields
from .parallel.embed import DEFAULT_SHARD_ROWS, ENGINES
from .parallel.shards import DTYPES, Settings

D = Settings()


@app.command("embed-corpus")
@handle_errors
def embed_corpus(
    input: list[str] = typer.Option(..., "--input", "-i", help="Input files or quoted globs (repeatable): .txt (one text per line), .jsonl, .csv (with a header), .parquet."),
    out: Path = typer.Option(..., "--out", help="Folder for the Parquet shards (id, vector) and manifest.json."),
    model: Optional[str] = ModelOpt,
    precision: Optional[str] = PrecisionOpt,
    device: Optional[str] = DeviceOpt,
    pooling: Optional[str] = PoolingOpt,
    text_field: str = typer.Option(D.fields.text, "--text-field", help="The text's field or column (.jsonl, .csv, .parquet)."),
    id_field: Optional[str] = typer.Option(None, "--id-field", help="The id's field or column (default: FILE:LINE / FILE:ROW)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="A prompt name of the model (query, passage), a literal prefix, or '' for none (default: the model's)."),
    normalize: bool = typer.Option(D.normalize, "--normalize/--no-normalize", help="L2-normalize the vectors."),
    dtype: str = typer.Option(D.dtype, "--dtype", help=f"Stored vector type: {', '.join(DTYPES)}."),
    batch_size: int = typer.Option(D.batch_size, "--batch-size", help="Texts per forward pass."),
    chunk_rows: int = typer.Option(D.chunk_rows, "--chunk-rows", help="Texts read, length-sorted and encoded together (bounds memory)."),
    shard_rows: int = typer.Option(DEFAULT_SHARD_ROWS, "--shard-rows", help="Rows per output shard (the unit of resume and of Ray work)."),
    skip_bad: bool = typer.Option(D.skip_bad, "--skip-bad", help="Count and skip rows without a usable text or id instead of stopping at the first."),
    engine: str = typer.Option("local", "--engine", help=f"{' or '.join(ENGINES)}: this process, or a Ray Data actor pool."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Ray engine: actors, each loading the model once (default: one per CPU)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray engine: the cluster to join ('auto' or host:port); default: a local Ray on 127.0.0.1."),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted job in --out: only missing shards are embedded."),
    allow_pickle: bool = PickleOpt,
    trust_remote_code: bool = RemoteOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Embed a corpus into Parquet shards with bounded memory; resumable; locally or on Ray."""
    import sys

    from .loading import LoadSpec
    from .parallel.embed import embed_corpus as run

    spec = LoadSpec(model=model, precision=precision, device=device, pooling=pooling, allow_pickle=allow_pickle,
                    trust_remote_code=trust_remote_code)
    settings = Settings(fields=Fields(text_field, id_field), prompt=prompt, normalize=normalize, dtype=dtype,
                        batch_size=batch_size, chunk_rows=chunk_rows, skip_bad=skip_bad)
    result = run(input, out, spec, settings, shard_rows=shard_rows, engine=engine, resume=resume, workers=workers,
                 address=address, progress=sys.stderr.isatty(), check_languages=not quiet)
    model_name = result.model.get("name", "?")
    typer.echo(
        f"embedded {result.vectors} of {result.rows} rows with {model_name} ({result.model.get('precision', '?')}, "
        f"{engine}) into {result.shards} shards in {out} ({result.shards_done_before} done before); skipped "
        f"{result.skipped}, truncated {result.truncated}; {result.seconds:.1f} s, {result.sentences_per_second:.0f} sent/s",
        err=True,
    )
