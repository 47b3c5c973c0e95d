"""The Hugging Face hub: the one offline probe, and downloads that always end within a deadline.

Every network step has a deadline and a clear error: the probe (``XLEMBED_HUB_TIMEOUT``, default 5 s)
asks ``HF_ENDPOINT`` (scheme, host and port as written; default https://huggingface.co) for any HTTP
answer through the same client and proxies (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) that
huggingface_hub uses, and a download (``XLEMBED_DOWNLOAD_TIMEOUT``, default 1800 s) is abandoned with
an error when it has not finished in time. A hub host that accepts connections and never answers
(huggingface_hub's own client has no timeout) therefore costs at most the deadline, never a hang.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, TypeVar

from .errors import BadInputError, ModelNotFoundError

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_SECONDS = 5.0
DOWNLOAD_SECONDS = 1800.0
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "1_Pooling/*", "2_Dense/*", "2_Normalize/*", "3_Dense/*"]
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """A network step did not finish within its deadline."""


def endpoint() -> str:
    """The hub's base URL as huggingface_hub uses it: $HF_ENDPOINT (scheme, host and port as given) when the
    process started, else https://huggingface.co."""
    from huggingface_hub import constants

    return (constants.ENDPOINT or DEFAULT_ENDPOINT).rstrip("/")


def offline_by_env() -> bool:
    """True when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE asks for offline mode (now, or when huggingface_hub
    was imported: its client then refuses every request)."""
    from huggingface_hub import constants

    set_now = any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARS)
    return set_now or bool(constants.is_offline_mode())


def seconds_from_env(var: str, default: float) -> float:
    """A positive number of seconds from the environment variable ``var`` (``default`` when unset)."""
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadInputError(f"{var}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise BadInputError(f"{var}={raw!r} must be a positive number of seconds")
    return value


def run_with_deadline(func: Callable[[], T], seconds: float) -> T:
    """``func()`` in a daemon thread; its result, its exception, or ``DeadlineExceeded`` after ``seconds``.

    A thread cannot be killed: on a deadline it is left to finish (or hang) in the background, which
    costs nothing to a command-line run that exits with the error.
    """
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = func()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="xlembed-hub")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise DeadlineExceeded(f"no result within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def reachable(seconds: float | None = None) -> bool:
    """True when the hub endpoint gives any HTTP answer within ``seconds`` (default $XLEMBED_HUB_TIMEOUT or 5).

    The request goes through huggingface_hub's own HTTP client, so its proxies and certificates apply;
    a refused connection, a DNS failure, a proxy error or silence all count as unreachable.
    """
    seconds = seconds if seconds is not None else seconds_from_env("XLEMBED_HUB_TIMEOUT", PROBE_SECONDS)

    def probe() -> bool:
        from huggingface_hub.utils import get_session

        get_session().head(endpoint(), timeout=seconds)
        return True

    try:
        return bool(run_with_deadline(probe, seconds + 0.5))
    except Exception:  # noqa: BLE001 - every failure means "not reachable"
        return False


def is_offline() -> bool:
    """True when offline mode is set, or the hub gives no answer within the probe's deadline."""
    return offline_by_env() or not reachable()


def resolve_hub_id(repo_id: str) -> Path:
    """The local folder of a hub model: the hub cache first, then a download when the hub answers.

    Offline (HF_HUB_OFFLINE=1, or no answer within the probe's deadline) this fails at once with what to do;
    a download that does not finish within $XLEMBED_DOWNLOAD_TIMEOUT (default 1800 s) fails with an error.
    """
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache (or a damaged cache entry): try the hub
        pass
    manual = (f"on a machine with network run `hf download {repo_id} --local-dir DIR`, copy DIR here and pass "
              f"its path")
    if offline_by_env():
        raise ModelNotFoundError(f"hub model {repo_id!r} is not on disk and offline mode is set (HF_HUB_OFFLINE); {manual}")
    probe = seconds_from_env("XLEMBED_HUB_TIMEOUT", PROBE_SECONDS)
    if not reachable(probe):
        raise ModelNotFoundError(
            f"hub model {repo_id!r} is not on disk and the hub ({endpoint()}) gave no answer within {probe:g} s "
            f"(no network, a proxy problem, or a stalled server; XLEMBED_HUB_TIMEOUT sets the wait); {manual}"
        )
    limit = seconds_from_env("XLEMBED_DOWNLOAD_TIMEOUT", DOWNLOAD_SECONDS)
    try:
        return Path(run_with_deadline(
            lambda: snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, etag_timeout=probe), limit))
    except DeadlineExceeded:
        raise ModelNotFoundError(
            f"downloading hub model {repo_id!r} from {endpoint()} did not finish within {limit:g} s "
            f"(set XLEMBED_DOWNLOAD_TIMEOUT to wait longer); {manual}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the hub client raises many types
        raise ModelNotFoundError(
            f"could not download hub model {repo_id!r} from {endpoint()} ({type(exc).__name__}: {str(exc)[:200]}); "
            f"check the id, or download the folder yourself and pass its path"
        ) from None
