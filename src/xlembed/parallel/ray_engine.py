"""The Ray engine of a corpus job: a Ray Data pipeline over the pending shards with an actor pool.

Each actor rebuilds the Encoder once from the serializable ``LoadSpec``, with its share of the node's cores,
then embeds whole shards with the same ``embed_shard`` as the local engine, writing them straight into the
output folder (on a multi-node cluster that folder and the inputs must be on storage every node sees: NFS, a
mounted bucket). Only the manifest entry of a finished shard travels back to this process, which alone writes
the manifest. Without ``address`` a local Ray is started bound to 127.0.0.1 (no dashboard), and stopped at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Callable

from .. import errors
from ..errors import BadInputError, XlembedError
from ..loading import LoadSpec
from .corpus import Fields, Source
from .shards import Segment, Settings, Shard, embed_shard, model_facts, settings_dict


def run_on_ray(spec: LoadSpec, settings: Settings, shards: list[Shard], out: Path,
               finished: Callable[[dict, dict], None], workers: int | None = None, address: str | None = None,
               check_languages: bool = True) -> None:
    """Embed ``shards`` on Ray; ``finished(entry, model_facts)`` is called here as each shard is written."""
    if not shards:
        return
    ray = require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        start_ray(address, workers)
    try:
        cpus = int(ray.available_resources().get("CPU", 1)) if address else (workers or os.cpu_count() or 1)
        workers = workers or max(1, cpus)
        threads = max(1, cpus // workers)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        items = [{"shard": shard_to_json(s)} for s in shards]
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        embedded = dataset.map_batches(
            ShardWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(workers, len(items))), num_cpus=threads,
            fn_constructor_kwargs={"spec": spec.to_dict(), "settings": json.dumps(settings_dict(settings)),
                                   "out": str(out), "threads": threads, "check_languages": check_languages},
        )
        for row in embedded.iter_rows():
            entry = json.loads(row["entry"])
            if "error" in entry:  # the worker's own error (a bad row, a bad model): the same error here
                raise getattr(errors, entry["error"], XlembedError)(entry["message"])
            finished(entry, json.loads(row["model"]))
    except XlembedError:
        raise
    except Exception as exc:  # Ray's own failure (a worker that died, the model failing to load in an actor)
        cause = _xlembed_cause(exc)
        if cause is not None:
            raise cause from None
        raise XlembedError(f"the Ray engine failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                           "the shards finished so far are kept: fix the cause and rerun with --resume") from exc
    finally:
        if started_here:
            ray.shutdown()


class ShardWorker:
    """A Ray actor: one Encoder for its lifetime (built from the load spec), one shard per call."""

    def __init__(self, spec: dict, settings: str, out: str, threads: int, check_languages: bool = True):
        from ..backends.threads import set_cpu_threads
        from ..loading import load

        set_cpu_threads(threads)
        self.settings = settings_from_json(settings)
        self.out = Path(out)
        self.encoder = load(LoadSpec.from_dict(spec))
        self.encoder.check_languages = check_languages
        self.model = json.dumps(model_facts(self.encoder, self.settings))

    def __call__(self, batch: dict) -> dict:
        entries = []
        for text in batch["shard"]:
            try:
                entry = embed_shard(self.encoder, shard_from_json(str(text)), self.out, self.settings)
            except XlembedError as exc:  # sent back as data: Ray would wrap it in its own exception types
                entry = {"error": type(exc).__name__, "message": str(exc)}
            entries.append(json.dumps(entry))
        return {"entry": entries, "model": [self.model] * len(entries)}


def shard_to_json(shard: Shard) -> str:
    return json.dumps({"index": shard.index, "segments": [
        {"source": s.source.to_dict(), "start": s.start, "stop": s.stop} for s in shard.segments]})


def shard_from_json(text: str) -> Shard:
    data = json.loads(text)
    return Shard(data["index"], tuple(Segment(Source(**s["source"]), s["start"], s["stop"]) for s in data["segments"]))


def settings_from_json(text: str) -> Settings:
    data = json.loads(text)
    return Settings(**{**data, "fields": Fields(**data["fields"])})


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise BadInputError("the ray engine needs Ray Data: pip install 'xlembed[ray]' (or use --engine local)") from None
    return ray


def start_ray(address: str | None, workers: int | None) -> None:
    """Join the cluster at ``address``, or start a local Ray on 127.0.0.1 only (no dashboard, a private temp dir)."""
    import logging

    import ray

    for name in ("ray", "ray.data"):  # its INFO lines would bury the progress and the result
        logging.getLogger(name).setLevel(logging.WARNING)
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return
    # Ray's "no cluster" mode (its default on macOS/Windows) is what keeps every server on the loopback address:
    # _node_ip_address alone left the GCS, raylet and workers listening on all interfaces (measured with psutil).
    # The spawned Ray processes read the variable; this process read the constant when ray was imported.
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))  # instead of writing ~/.ray/auth_token
    temp = tempfile.mkdtemp(prefix="xlembed-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)  # short: socket paths
    ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, _node_ip_address="127.0.0.1",
             _temp_dir=temp, log_to_driver=False, configure_logging=False)


def _xlembed_cause(exc: BaseException) -> XlembedError | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, XlembedError):
            return exc
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else (exc.__cause__ or exc.__context__)
    return None
