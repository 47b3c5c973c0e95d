"""Run the app with uvicorn: bind (127.0.0.1 by default), load the models in the background, drain in-flight
requests on SIGTERM/SIGINT, exit non-zero when a model fails to load."""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from typing import Mapping

from ..errors import BadInputError, XlembedError, XlembedWarning
from ..loading import LoadSpec
from .app import create_app
from .config import ServeConfig

log = logging.getLogger("xlembed.serve")


def served_name(spec: LoadSpec) -> str:
    """The id clients send as 'model': the catalogue name, or the folder's name for a path."""
    from ..loading import resolve

    return resolve(spec.model).name


def model_table(specs: list[LoadSpec], names: list[str] | None = None) -> dict[str, LoadSpec]:
    """{name: spec}, names from ``served_name`` unless given; two models under one name are an error."""
    names = names or [served_name(s) for s in specs]
    table: dict[str, LoadSpec] = {}
    for name, spec in zip(names, specs):
        if name in table:
            raise BadInputError(f"two models would be served as {name!r} ({table[name].model} and {spec.model}); "
                                "serve each model once, or copy one folder under another name")
        table[name] = spec
    return table


def serve(models: Mapping[str, LoadSpec], config: ServeConfig | None = None, *, log_level: str = "info") -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (1 when a model failed to load)."""
    import uvicorn

    from ..backends.threads import set_cpu_threads

    config = config or ServeConfig()
    config.check()
    set_cpu_threads(config.threads)  # what torch's process-wide pool runs with (None: all cores)
    # the tokenizers library's own thread pool only competes with the forward passes for the cores (the
    # passes' batches are small): off unless the environment says otherwise
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the response headers report truncation; one warning per batch in the log would only be noise
    warnings.filterwarnings("ignore", message=r"\d+ of \d+ texts are longer than", category=XlembedWarning)
    app = create_app(models, config)
    state = app.state.xlembed
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, log_level=log_level, access_log=False,
        timeout_graceful_shutdown=int(config.graceful_seconds), lifespan="on"))

    def stop_on_failure():
        state.loaded.wait()
        if state.failed:
            server.should_exit = True

    threading.Thread(target=stop_on_failure, name="xlembed-load-watch", daemon=True).start()
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: reachable from other machines%s", config.host,
                    "" if config.api_keys else " and without an API key (--api-key-file)")
    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then raises the signal again for the handler it found:
    # a no-op one lets serve() return 0 after a clean shutdown instead of dying of the signal
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    except OSError as exc:
        raise XlembedError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}; pick another --port "
                           "or stop the program that uses it") from None
    if state.failed:
        for served in state.failed:
            log.error("model %r could not be loaded: %s", served.name, served.error)
        return 1
    return 0
