"""One batching loop per served model: requests wait in a bounded queue, worker threads pack them by token
budget, run the encoder and hand each request its rows back.

Token counting, decoding of token-id inputs and encoding all happen in the workers. With several workers each
takes its own batch from the queue and runs it while the others run theirs: on a 2-core CPU two one-thread
passes side by side do more than one two-thread pass (the many small kernels of a short pass leave threads
waiting on each other; figures in ServeConfig.workers). Several workers only for encoders that may be called from
several threads at once (``Encoder.concurrent_encode``); the others get one. A batch that raises fails only
the requests in it; the loop goes on with the next one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..encoder import Encoder
from ..errors import BadInputError, XlembedError


# The cost of one forward pass, in padded tokens: PASS_OVERHEAD_TOKENS + inputs x the longest input. Measured on
# int8 multilingual-e5-small, 2 threads: 2.0 ms for one 5-token text, 24 ms for 16 x 14 tokens, 55 ms for 16 x 34
# (~0.1 ms per padded token + ~2 ms per pass, the pass overhead ~20 tokens' worth; 32 leans to fewer passes).
PASS_OVERHEAD_TOKENS = 32


def plan_passes(lengths: list[int], max_tokens: int, max_size: int,
                overhead: int = PASS_OVERHEAD_TOKENS) -> list[tuple[int, int]]:
    """Cut inputs sorted longest first into passes [start, end) of at most ``max_size`` inputs and ``max_tokens``
    padded tokens (inputs x the first, longest) so that the summed cost, overhead + padded tokens per pass, is
    least (dynamic programming over the cut points). Every input of a pass is padded to its longest: 16 random
    Tatoeba sentences (5-44 tokens, mean 15) in one pass cost about twice what they cost in passes of similar
    lengths. An input longer than ``max_tokens`` gets a pass of its own."""
    n = len(lengths)
    if n == 0:
        return []
    longest = np.asarray(lengths, dtype=np.float64)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    start_of = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        first = max(0, end - max_size)
        starts = np.arange(first, end)
        size = end - starts
        cost = best[first:end] + overhead + size * longest[first:end]
        cost[(size * longest[first:end] > max_tokens) & (size > 1)] = np.inf
        pick = int(np.argmin(cost))
        best[end], start_of[end] = cost[pick], starts[pick]
    bounds, end = [], n
    while end > 0:
        bounds.append((int(start_of[end]), end))
        end = int(start_of[end])
    return bounds[::-1]


class QueueFull(XlembedError):
    """The model's queue holds as many inputs as it may: the client should retry later (HTTP 429)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Closing(XlembedError):
    """The server is shutting down and takes no new work (HTTP 503)."""


@dataclass(eq=False)  # compared and hashed by identity
class Job:
    """One request: its inputs, where their vectors go, and how it ends."""

    inputs: list  # str, or list[int] (token ids of the model's tokenizer)
    prompt: str | None
    truncate: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    out: np.ndarray | None = None
    tokens: list[int] = field(init=False)  # per input, after truncation
    truncated: list[int] = field(default_factory=list)  # indices of inputs cut at max_length
    remaining: int = field(init=False)  # inputs without a vector yet
    failed: bool = False  # set once: later items of the job are skipped

    def __post_init__(self) -> None:
        self.tokens = [0] * len(self.inputs)
        self.remaining = len(self.inputs)

    def fail(self, exc: BaseException) -> None:
        if not self.failed:
            self.failed = True
            self.loop.call_soon_threadsafe(_settle, self.future, None, exc)


@dataclass
class _Item:
    job: Job
    index: int
    text: str = ""
    length: int = 0


def _settle(future: asyncio.Future, result, exc) -> None:
    if future.done():  # the client went away and its handler was cancelled
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class Batcher:
    """Queue + worker thread for one encoder.

    max_batch_tokens: padded tokens (longest input x inputs) per forward pass, like TEI's --max-batch-tokens;
    max_batch_size: inputs per forward pass; max_wait_ms: how long an idle worker waits for more requests after
    the first one before it starts a batch; max_queue: inputs waiting at most (more: QueueFull -> 429);
    workers: batches run at once (each worker thread takes its own from the queue; 1 for encoders whose
    ``concurrent_encode`` is False).
    """

    def __init__(self, encoder: Encoder, *, max_batch_tokens: int = 16384, max_batch_size: int = 256,
                 max_wait_ms: float = 2.0, max_queue: int = 4096, metrics=None, name: str | None = None,
                 workers: int = 1):
        self.encoder = encoder
        self.name = name or encoder.name
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.metrics = metrics
        self._pending: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._busy = 0  # inputs taken by the workers and not yet answered
        self._computing = 0  # workers that took a batch and have not answered it yet
        self._seconds_per_input = 0.005  # running estimate (per worker), for Retry-After
        self.workers = workers if encoder.concurrent_encode else 1
        self._deliver = threading.Lock()
        self._threads = [threading.Thread(target=self._run, name=f"xlembed-batcher-{self.name}-{i}", daemon=True)
                         for i in range(self.workers)]
        for thread in self._threads:
            thread.start()

    # ---- the request side (event loop thread) ----
    async def embed(self, inputs: list, *, prompt: str | None = None, truncate: bool = True) -> Job:
        """Queue one request's inputs and wait for all of their vectors (normalized, model dim)."""
        loop = asyncio.get_running_loop()
        job = Job(inputs=inputs, prompt=prompt, truncate=truncate, loop=loop, future=loop.create_future())
        with self._cond:
            if self._closing:
                raise Closing(f"the server is shutting down; model {self.name!r} takes no new requests")
            waiting = len(self._pending)
            if waiting + len(inputs) > self.max_queue:
                retry = max(1, int(np.ceil((waiting + self._busy) * self._seconds_per_input / self.workers)))
                if self.metrics is not None:
                    self.metrics.rejected.labels(self.name).inc()
                raise QueueFull(f"model {self.name!r} has {waiting} inputs waiting (at most {self.max_queue}); "
                                f"retry in {retry} s", retry)
            self._pending.extend(_Item(job, i) for i in range(len(inputs)))
            self._depth_changed()
            self._cond.notify()
        try:
            await job.future
        except asyncio.CancelledError:
            job.failed = True  # the client is gone: the worker skips what is left of it
            raise
        return job

    @property
    def queued(self) -> int:
        return len(self._pending)

    def close(self, timeout: float = 30.0) -> None:
        """Take no new requests, finish the queued ones, stop the workers."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # ---- the worker thread ----
    def _run(self) -> None:
        while True:
            with self._cond:
                idle = not self._pending
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return  # closing and drained
                # after an idle spell, wait a moment for company; inputs that queued up during the last batch go now
                deadline = time.monotonic() + (self.max_wait_s if idle else 0.0)
                while len(self._pending) < self.max_batch_size and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                # the workers not computing share what waits equally (one worker taking it all would leave the
                # others idle while it computes with its share of the cores: 4 clients x 32 sentences got ~0.73x
                # the sentences/s of a single two-thread worker that way)
                share = -(-len(self._pending) // (self.workers - self._computing))
                take = [self._pending.popleft() for _ in range(min(self.max_batch_size, share))]
                if self._pending:
                    self._cond.notify()  # a free worker takes the rest
                self._computing += 1
                self._busy += len(take)
                self._depth_changed()
            started = time.perf_counter()
            try:
                self._process([item for item in take if not item.job.failed])
            except Exception as exc:  # noqa: BLE001 - a bug here must not stop the loop or leave requests waiting
                for item in take:
                    item.job.fail(_request_error(self.name, exc))
            elapsed = time.perf_counter() - started
            with self._cond:
                self._seconds_per_input = 0.8 * self._seconds_per_input + 0.2 * elapsed / max(1, len(take))
                self._busy -= len(take)
                self._computing -= 1

    def _process(self, items: list[_Item]) -> None:
        """Prepare the taken inputs (decode, count, check), then encode them in passes of similar length."""
        groups: dict[str | None, list[_Item]] = {}
        for item in items:
            groups.setdefault(item.job.prompt, []).append(item)
        for prompt, group in groups.items():
            ready = self._prepare(group, prompt)
            ready.sort(key=lambda it: it.length, reverse=True)
            for batch in self._passes(ready):
                self._encode(batch, prompt)

    def _prepare(self, items: list[_Item], prompt: str | None) -> list[_Item]:
        ready = []
        for item in items:  # token ids -> text, one job's error fails only that job
            value = item.job.inputs[item.index]
            try:
                item.text = value if isinstance(value, str) else self.encoder.decode(value)
            except XlembedError as exc:
                item.job.fail(BadInputError(f"input {item.index}: {exc}"))
            except Exception as exc:  # noqa: BLE001 - a tokenizer failure fails the request, not the server
                item.job.fail(_request_error(self.name, exc))
        items = [it for it in items if not it.job.failed]
        try:
            lengths = self.encoder.token_counts([it.text for it in items], prompt)
        except Exception as exc:  # noqa: BLE001
            for it in items:
                it.job.fail(_request_error(self.name, exc))
            return []
        limit = self.encoder.max_length
        for item, n in zip(items, lengths):
            if limit and n > limit:
                if not item.job.truncate:
                    item.job.fail(BadInputError(
                        f"input {item.index} has {n} tokens; model {self.name!r} takes at most {limit}. Shorten or "
                        f"split it, or send truncate=true to embed its first {limit} tokens"))
                    continue
                item.job.truncated.append(item.index)
                n = limit
            item.length = n
            item.job.tokens[item.index] = n
            ready.append(item)
        return [it for it in ready if not it.job.failed]

    def _passes(self, items: list[_Item]):
        """Length-sorted (longest first) items cut into forward passes by ``plan_passes``."""
        bounds = plan_passes([it.length for it in items], self.max_batch_tokens, self.max_batch_size)
        return [items[start:end] for start, end in bounds]

    def _encode(self, batch: list[_Item], prompt: str | None) -> None:
        batch = [it for it in batch if not it.job.failed]
        if not batch:
            return
        started = time.perf_counter()
        try:
            vectors = self.encoder.encode([it.text for it in batch], batch_size=len(batch), normalize=True,
                                          prompt=prompt, show_progress=False, check_languages=False)
        except Exception as exc:  # noqa: BLE001 - a failing batch fails its requests; the server goes on
            if self.metrics is not None:
                self.metrics.batch_failures.labels(self.name).inc()
            jobs = list(dict.fromkeys(it.job for it in batch))
            if len(jobs) > 1:  # find the request that breaks it: each job alone, the others still get answers
                for job in jobs:
                    self._encode([it for it in batch if it.job is job], prompt)
                return
            jobs[0].fail(_request_error(self.name, exc))
            return
        if self.metrics is not None:
            self.metrics.batch_size.labels(self.name).observe(len(batch))
            self.metrics.batch_seconds.labels(self.name).observe(time.perf_counter() - started)
        with self._deliver:  # a request split across batches gets rows from several workers
            for item, vector in zip(batch, vectors):
                job = item.job
                if job.out is None:
                    job.out = np.empty((len(job.inputs), vectors.shape[1]), dtype=np.float32)
                job.out[item.index] = vector
                job.remaining -= 1
                if job.remaining == 0:
                    job.loop.call_soon_threadsafe(_settle, job.future, job, None)

    def _depth_changed(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(self.name).set(len(self._pending))


class BatchFailed(XlembedError):
    """The model raised while encoding a batch (HTTP 500 for the requests in it)."""


def _request_error(name: str, exc: Exception) -> XlembedError:
    """What a request that ``exc`` broke is told: an xlembed error as it is, anything else as BatchFailed."""
    if isinstance(exc, XlembedError):
        return exc
    return BatchFailed(f"model {name!r} failed on the batch holding this request: {type(exc).__name__}: {exc}")
