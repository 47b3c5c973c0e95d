"""How many CPU threads the encoders of this process compute with.

All cores by default. A process that shares the machine with other workers (a Ray actor, one of several
servers) sets its share before loading: ONNX Runtime sessions, the USE model and torch models read it when
they are created (torch's pool is process-wide: set at once when torch is already imported).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from ..errors import BadInputError

_threads: int | None = None


def set_cpu_threads(n: int | None) -> None:
    """Use ``n`` threads for encoders created from now on (None: all cores)."""
    global _threads
    if n is not None and (not isinstance(n, int) or n < 1):
        raise BadInputError(f"threads must be a positive integer, got {n!r}")
    _threads = n
    if "torch" in sys.modules:  # its pool is process-wide: set it now (importing torch here would cost ~170 MiB
        import torch  # to a process that only runs ONNX or USE models)

        torch.set_num_threads(cpu_threads())


@contextmanager
def cpu_threads_while(n: int | None):
    """Encoders created inside the block take ``n`` threads; the setting from before holds again after it (for
    torch, whose pool is process-wide, that setting is what its models run with)."""
    before = _threads
    set_cpu_threads(n)
    try:
        yield
    finally:
        set_cpu_threads(before)


def apply_torch_threads() -> None:
    """Give torch the share set by ``set_cpu_threads``, if one was set; a torch model calls it on loading."""
    if _threads is not None:
        import torch

        torch.set_num_threads(_threads)


def cpu_threads() -> int:
    return _threads or all_cores()


def all_cores() -> int:
    return os.cpu_count() or 1
