"""Settings of ``xlembed serve`` (the CLI's defaults come from here) and how API keys are read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInputError

API_KEY_ENV = "XLEMBED_API_KEYS"  # comma-separated keys, read when no key file is given


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8080
    max_batch_tokens: int = 16384  # padded tokens per forward pass (longest input x inputs), like TEI
    max_batch_size: int = 256  # inputs per forward pass
    max_wait_ms: float = 2.0  # after an idle spell, how long a batch waits for more requests after its first one
    max_queue: int = 4096  # inputs waiting per model; more -> 429 with Retry-After
    max_inputs: int = 2048  # inputs per request (OpenAI's limit); the server splits them across batches
    payload_limit: int = 2_000_000  # bytes of request body (TEI's default); more -> 413
    truncate: bool = True  # default for inputs longer than the model takes: cut (and say so in a header) or 400
    api_keys: frozenset[str] = field(default=frozenset(), repr=False)  # empty: no authentication
    graceful_seconds: float = 30.0  # how long SIGTERM waits for in-flight requests
    # detect the languages of each request's texts (a sample of 256 at most): X-Uncovered-Languages header and
    # the xlembed_inputs_by_language metric
    check_languages: bool = True
    # batches each model runs at once (worker threads taking batches from its queue); models that cannot be called
    # from several threads at once (torch, USE, static) run one. 2 x one-thread passes on 2 cores against one
    # two-thread pass (benchmarks/serve_load.py, best rounds): 1.13x the requests/s with one sentence per
    # request, 1.04x the sentences/s with 32
    workers: int = 2
    # CPU threads of each forward pass (None: the cores shared out among the workers)
    threads: int | None = None

    def check(self) -> None:
        positive = {"max_batch_tokens": self.max_batch_tokens, "max_batch_size": self.max_batch_size,
                    "max_queue": self.max_queue, "max_inputs": self.max_inputs, "payload_limit": self.payload_limit}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise BadInputError(f"{name} must be a positive integer, got {value!r} (CLI: --{name.replace('_', '-')})")
        if self.max_wait_ms < 0:
            raise BadInputError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queue < self.max_inputs:
            raise BadInputError(f"max_queue ({self.max_queue}) must be at least max_inputs ({self.max_inputs}): a "
                                "request of max_inputs inputs would never fit the queue")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise BadInputError(f"workers must be a positive integer, got {self.workers!r} (CLI: --workers)")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise BadInputError(f"threads must be a positive integer, got {self.threads!r} (CLI: --threads)")
        if not 0 < self.port < 65536:
            raise BadInputError(f"port must be 1..65535, got {self.port}")

    def pass_threads(self) -> int:
        """Threads of each forward pass: ``threads``, else the cores shared out among the workers (at least 1)."""
        from ..backends.threads import all_cores

        return self.threads or max(1, all_cores() // self.workers)


def require_serve_extra() -> None:
    """A clear error when the serve extra (Starlette, uvicorn, prometheus-client, orjson) is missing."""
    import importlib.util

    from ..errors import UnsupportedError

    missing = [m for m in ("starlette", "uvicorn", "prometheus_client", "orjson") if importlib.util.find_spec(m) is None]
    if missing:
        raise UnsupportedError(f"serving needs {', '.join(missing)}: install the serve extra, "
                               "pip install 'xlembed[serve]' (make test installs it)")


def read_api_keys(path: str | Path | None = None) -> frozenset[str]:
    """Keys from a file (one per line, '#' comments) or, without a file, from $XLEMBED_API_KEYS (comma-separated).
    Keys are never printed; errors name the file, not its content."""
    if path is not None:
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadInputError(f"cannot read the API key file {path}: {exc.strerror}; give a file with one key "
                                "per line") from None
        keys = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if not keys:
            raise BadInputError(f"the API key file {path} holds no key; write one key per line")
    else:
        keys = [k.strip() for k in os.environ.get(API_KEY_ENV, "").split(",") if k.strip()]
    bad = [i for i, k in enumerate(keys) if any(c.isspace() for c in k)]
    if bad:
        raise BadInputError(f"API key {bad[0] + 1} ({path or '$' + API_KEY_ENV}) contains white space; keys are "
                            "sent as 'Authorization: Bearer <key>' and cannot hold spaces")
    return frozenset(keys)
