"""The HTTP layer: a Starlette app over one Batcher per model.

Routes: POST /v1/embeddings (OpenAI's API; X-Uncovered-Languages names the languages of the request the model was
not trained on), GET /v1/models, GET /health (200 when every model is loaded, 503
while loading or after a load failed), GET /metrics (Prometheus). /v1/* need an API key when keys are set
(``Authorization: Bearer <key>``); /health and /metrics do not.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Mapping

from ..encoder import Encoder
from ..errors import BadInputError, XlembedError
from ..langs.codes import covered
from ..langs.coverage import check_texts
from ..langs.detect import warm_up
from ..loading import LoadSpec
from .api import ApiError, check_dimensions, check_prompt, output_vectors, parse_request, response_body
from .batcher import Batcher, Closing, QueueFull
from .config import ServeConfig, require_serve_extra
from .metrics import Metrics

log = logging.getLogger("xlembed.serve")
MAX_TRUNCATED_SHOWN = 100  # indices listed in the X-Truncated-Inputs header


@dataclass
class Served:
    """One model of the server: how to load it, and once loaded its batcher."""

    name: str
    spec: LoadSpec | None = None
    encoder: Encoder | None = None
    batcher: Batcher | None = None
    error: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def ready(self) -> bool:
        return self.batcher is not None


class State:
    def __init__(self, models: Mapping[str, Encoder | LoadSpec], config: ServeConfig):
        config.check()
        if not models:
            raise BadInputError("serve at least one model (CLI: --model NAME)")
        self.config = config
        self.metrics = Metrics()
        self.models: dict[str, Served] = {}
        for name, what in models.items():
            if isinstance(what, Encoder):
                self.models[name] = Served(name, encoder=what)
            elif isinstance(what, LoadSpec):
                self.models[name] = Served(name, spec=what)
            else:
                raise BadInputError(f"model {name!r}: give an Encoder or a LoadSpec, got {type(what).__name__}")
        self.loaded = threading.Event()

    def load_all(self) -> None:
        """Load what is not loaded yet (in a thread: /health answers 503 meanwhile) and start the batchers."""
        from ..backends.threads import cpu_threads_while

        try:
            for served in self.models.values():
                try:
                    if served.encoder is None:
                        log.info("loading model %r (%s)", served.name, served.spec)
                        # its ONNX sessions keep the threads of one worker's pass; torch's process-wide pool
                        # goes back to the process's setting (torch models run one batch at a time)
                        with cpu_threads_while(self.config.pass_threads()):
                            served.encoder = served.spec.load()
                    if self.config.check_languages and served.encoder.info.languages is not None:
                        warm_up()  # the detectors load now, not inside the first request that needs them
                    served.batcher = self._batcher(served)
                    log.info("model %r ready: %r", served.name, served.encoder)
                except Exception as exc:  # noqa: BLE001 - reported by /health and by serve(), which exits
                    served.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, XlembedError) else str(exc)
                    log.error("model %r failed to load: %s", served.name, served.error)
                    return
        finally:
            self.loaded.set()

    def _batcher(self, served: Served) -> Batcher:
        c = self.config
        return Batcher(served.encoder, name=served.name, max_batch_tokens=c.max_batch_tokens,
                       max_batch_size=c.max_batch_size, max_wait_ms=c.max_wait_ms, max_queue=c.max_queue,
                       metrics=self.metrics, workers=c.workers)

    @property
    def failed(self) -> list[Served]:
        return [s for s in self.models.values() if s.error]

    def close(self) -> None:
        for served in self.models.values():
            if served.batcher is not None:
                served.batcher.close(self.config.graceful_seconds)


def create_app(models: Mapping[str, Encoder | LoadSpec], config: ServeConfig | None = None):
    """The ASGI app. ``models`` maps the name clients send as 'model' to a loaded Encoder or a LoadSpec (loaded
    in the background once the app starts, its ONNX sessions with ``config.pass_threads()`` threads each). An
    Encoder loaded by the caller keeps the threads it was made with: with several workers, load it inside
    ``xlembed.backends.threads.cpu_threads_while(config.pass_threads())`` so its passes do not oversubscribe the
    cores."""
    require_serve_extra()
    from starlette.applications import Starlette
    from starlette.routing import Route

    state = State(models, config or ServeConfig())

    @asynccontextmanager
    async def lifespan(app):
        loader = threading.Thread(target=state.load_all, name="xlembed-loader", daemon=True)
        loader.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, state.close)

    routes = [
        Route("/v1/embeddings", _guarded(state, _embeddings, counted=True), methods=["POST"]),
        Route("/embeddings", _guarded(state, _embeddings, counted=True), methods=["POST"]),
        Route("/v1/models", _guarded(state, _models), methods=["GET"]),
        Route("/health", lambda request: _health(state), methods=["GET"]),
        Route("/metrics", lambda request: _metrics(state), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.xlembed = state
    return app


def _json(body, status: int = 200, headers: dict | None = None):
    import orjson
    from starlette.responses import Response

    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, headers=headers,
                    media_type="application/json")


def _guarded(state: State, handler, counted: bool = False):
    """API-key check, then the handler; ApiError and anything unexpected become OpenAI-style JSON errors.
    ``counted``: the request's status and latency go into the metrics, labelled with its model when that model
    is served ('-' otherwise: names clients make up must not grow the metrics)."""
    async def endpoint(request):
        started = time.perf_counter()
        request.state.model = "-"
        try:
            _authorize(state, request)
            response = await handler(state, request)
        except ApiError as exc:
            response = _json(exc.body(), exc.status, exc.headers)
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 with its name; the server goes on
            log.exception("unexpected error on %s", request.url.path)
            response = _json(ApiError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error").body(),
                             500)
        if counted:
            state.metrics.requests.labels(request.state.model, str(response.status_code)).inc()
            state.metrics.latency.labels(request.state.model).observe(time.perf_counter() - started)
        return response
    return endpoint


def _authorize(state: State, request) -> None:
    keys = state.config.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", type="authentication_error",
                       code="missing_api_key", headers={"WWW-Authenticate": "Bearer"})
    token = token.strip().encode()
    if not any(hmac.compare_digest(token, key.encode()) for key in keys):
        raise ApiError(401, "the API key is not valid for this server", type="authentication_error",
                       code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


async def _read_body(request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    too_big = ApiError(413, f"the request body is larger than this server takes ({limit:,} bytes, --payload-limit); "
                       "send fewer or shorter inputs per request", code="payload_too_large")
    if length is not None:
        try:
            if int(length) > limit:
                raise too_big
        except ValueError:
            raise ApiError(400, f"Content-Length {length!r} is not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def _embeddings(state: State, request):
    import orjson

    body = await _read_body(request, state.config.payload_limit)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})") from None
    req = parse_request(data, state.config.max_inputs)
    served = state.models.get(req.model)
    if served is None:
        known = ", ".join(sorted(state.models))
        raise ApiError(404, f"model {req.model!r} is not served here; served: {known}", param="model",
                       code="model_not_found")
    request.state.model = req.model
    if not served.ready:
        why = f"failed to load: {served.error}" if served.error else "is still loading; retry shortly"
        raise ApiError(503, f"model {req.model!r} {why}", type="server_error", headers={"Retry-After": "5"})
    encoder = served.encoder
    check_prompt(encoder, req.prompt)
    check_dimensions(encoder.dim, req.dimensions, encoder.info.matryoshka_dims, req.model)  # before any work
    truncate = state.config.truncate if req.truncate is None else req.truncate
    try:
        job = await served.batcher.embed(req.inputs, prompt=req.prompt, truncate=truncate)
    except QueueFull as exc:
        raise ApiError(429, str(exc), type="rate_limit_error", code="queue_full",
                       headers={"Retry-After": str(exc.retry_after)}) from None
    except Closing as exc:
        raise ApiError(503, str(exc), type="server_error") from None
    except BadInputError as exc:
        raise ApiError(400, str(exc), param="input") from None
    except XlembedError as exc:  # BatchFailed, or the model's own error for this request
        raise ApiError(500, str(exc), type="server_error") from None
    vectors = output_vectors(job.out, req.dimensions)
    tokens = sum(job.tokens)
    state.metrics.inputs.labels(req.model).inc(len(req.inputs))
    state.metrics.tokens.labels(req.model).inc(tokens)
    headers = _language_check(state, served, req.inputs)
    if job.truncated:
        shown = sorted(job.truncated)[:MAX_TRUNCATED_SHOWN]
        headers["X-Truncated-Inputs"] = str(len(job.truncated))
        headers["X-Truncated-Indices"] = ",".join(map(str, shown)) + (",..." if len(job.truncated) > len(shown) else "")
    return _json(response_body(vectors, req.encoding_format, req.model, tokens), headers=headers)


def _language_check(state: State, served: Served, inputs: list) -> dict[str, str]:
    """Count the request's (sampled) texts by language in the metrics; name the languages the model was not trained
    on that hold 5% or more of them in an X-Uncovered-Languages header (code=share, largest first)."""
    languages = served.encoder.info.languages
    texts = [x for x in inputs if isinstance(x, str)]  # token-id inputs are not checked
    if not state.config.check_languages or languages is None or not texts:
        return {}
    try:
        result = check_texts(texts, served.name, languages)
    except Exception as exc:  # noqa: BLE001 - a broken detector must not fail the request
        log.warning("language check failed for model %r: %s: %s", served.name, type(exc).__name__, exc)
        return {}
    for code, n in result.mix.counts.items():
        state.metrics.languages.labels(served.name, code, "yes" if covered(code, languages) else "no").inc(n)
    if result.mix.undetermined:
        state.metrics.languages.labels(served.name, "-", "-").inc(result.mix.undetermined)
    if not result.uncovered:
        return {}
    return {"X-Uncovered-Languages": ",".join(f"{code}={share:.2f}" for code, share in result.uncovered)}


async def _models(state: State, request):
    data = [{"id": s.name, "object": "model", "created": s.created, "owned_by": "xlembed",
             "ready": s.ready, **({"dim": s.encoder.dim, "precision": s.encoder.precision,
                                   "backend": s.encoder.backend, "max_length": s.encoder.max_length,
                                   "prompts": s.encoder.prompts} if s.ready else {})}
            for s in state.models.values()]
    return _json({"object": "list", "data": data})


def _health(state: State):
    failed = state.failed
    if failed:
        return _json({"status": "failed", "errors": {s.name: s.error for s in failed}}, 503)
    loading = [s.name for s in state.models.values() if not s.ready]
    if loading:
        return _json({"status": "loading", "loading": loading}, 503, {"Retry-After": "5"})
    return _json({"status": "ok", "models": {s.name: s.batcher.queued for s in state.models.values()}})


def _metrics(state: State):
    from starlette.responses import Response

    content, media = state.metrics.render()
    return Response(content, media_type=media)
