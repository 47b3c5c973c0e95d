"""CLI command ``serve``: a thin layer over ``xlembed.serve``; option defaults come from ``ServeConfig``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli import app, handle_errors
from .errors import BadInputError
from .serve.config import API_KEY_ENV, ServeConfig

D = ServeConfig()


def pair_precisions(models: list[str], precisions: list[str]) -> list[str | None]:
    """The i-th --precision belongs to the i-th --model; models after the last one get their default ('auto')."""
    if len(precisions) > len(models):
        raise BadInputError(f"{len(precisions)} --precision values for {len(models)} --model values; give at most one "
                            "per model, in the same order ('auto' keeps a model's default)")
    padded = list(precisions) + ["auto"] * (len(models) - len(precisions))
    return [None if p == "auto" else p for p in padded]


@app.command()
@handle_errors
def serve(
    model: list[str] = typer.Option(..., "--model", "-m", help="A model to serve (repeatable): catalogue name, folder (ONNX, static student, fine-tuned), hub id, pkg:<package>. Clients send its name (a folder's: the folder name) as 'model'."),
    precision: list[str] = typer.Option([], "--precision", "-p", help="fp32, bf16, fp16, int8 or auto (the model's default); the i-th --precision goes with the i-th --model."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    host: str = typer.Option(D.host, "--host", help="Address to listen on (default loopback only; 0.0.0.0 opens it to the network)."),
    port: int = typer.Option(D.port, "--port", help="TCP port."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help=f"File with the accepted API keys, one per line (else ${API_KEY_ENV}, comma-separated; neither: no keys needed)."),
    max_batch_tokens: int = typer.Option(D.max_batch_tokens, "--max-batch-tokens", help="Padded tokens per forward pass (longest input x inputs)."),
    max_batch_size: int = typer.Option(D.max_batch_size, "--max-batch-size", help="Inputs per forward pass."),
    max_wait_ms: float = typer.Option(D.max_wait_ms, "--max-wait-ms", help="After an idle spell, how long a batch waits for more requests after its first one."),
    max_queue: int = typer.Option(D.max_queue, "--max-queue", help="Inputs waiting per model; beyond it requests get 429 with Retry-After."),
    max_inputs: int = typer.Option(D.max_inputs, "--max-inputs", help="Inputs per request (larger requests are split across batches up to this)."),
    payload_limit: int = typer.Option(D.payload_limit, "--payload-limit", help="Bytes of request body; larger ones get 413."),
    truncate: bool = typer.Option(D.truncate, "--truncate/--no-truncate", help="Inputs longer than the model takes: cut them and list them in the X-Truncated-Inputs header (default), or answer 400. A request's 'truncate' field overrides it."),
    graceful_seconds: float = typer.Option(D.graceful_seconds, "--graceful-seconds", help="How long SIGTERM waits for in-flight requests."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Permit pytorch_model.bin weights (pickles can run code)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Permit model code shipped with the files."),
    workers: int = typer.Option(D.workers, "--workers", help="Batches each model runs at once; with several, each forward pass gets the cores shared out (see --threads)."),
    threads: Optional[int] = typer.Option(D.threads, "--threads", help="CPU threads of each forward pass (default: the cores / --workers)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Skip the language check of each request (no X-Uncovered-Languages header, no xlembed_inputs_by_language metric)."),
) -> None:
    """Serve models over HTTP with OpenAI's embeddings API (POST /v1/embeddings, GET /v1/models, /health, /metrics)."""
    from .loading import LoadSpec
    from .serve import model_table, read_api_keys
    from .serve import serve as run

    specs = [LoadSpec(m, precision=p, device=device, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
             for m, p in zip(model, pair_precisions(model, precision))]
    config = ServeConfig(host=host, port=port, max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size,
                         max_wait_ms=max_wait_ms, max_queue=max_queue, max_inputs=max_inputs,
                         payload_limit=payload_limit, truncate=truncate, api_keys=read_api_keys(api_key_file),
                         graceful_seconds=graceful_seconds, check_languages=not quiet, workers=workers,
                         threads=threads)
    config.check()
    code = run(model_table(specs), config, log_level=log_level)
    raise typer.Exit(code)
