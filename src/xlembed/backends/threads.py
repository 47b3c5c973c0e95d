"""How many CPU threads the encoders of this process compute with.

All cores by default. A process that shares the machine with other workers (a Ray actor, one of several
servers) sets its share before loading: ONNX Runtime sessions and the USE model read it when they are
created, torch at once (its thread pool is process-wide).
"""

from __future__ import annotations

import os

from ..errors import BadInputError

_threads: int | None = None


def set_cpu_threads(n: int | None) -> None:
    """Use ``n`` threads for encoders created from now on (None: all cores)."""
    global _threads
    if n is not None and (not isinstance(n, int) or n < 1):
        raise BadInputError(f"threads must be a positive integer, got {n!r}")
    _threads = n
    import torch

    torch.set_num_threads(n or os.cpu_count() or 1)


def cpu_threads() -> int:
    return _threads or os.cpu_count() or 1
