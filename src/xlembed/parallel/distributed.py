"""Data-parallel training with torch.distributed: what the shared training loop needs, nothing more.

A run is distributed when it was started by ``torchrun`` (WORLD_SIZE > 1 in the environment; several
machines) or by ``xlembed distill --nproc N`` (N processes of this machine meeting through a file, loopback
only). Every rank holds the whole model; each step's global batch (``batch_size x world`` rows) is split
between the ranks, each computes the loss of its rows, and the gradients are averaged (weighted by rows)
across ranks before clipping and the optimizer step: the same update as one process taking the whole batch,
which DistributedDataParallel gives too; it is done here as one flat all-reduce after the backward pass
because the objectives call into the model in their own ways. Backend: gloo on CPU, NCCL on CUDA. Rank 0
alone evaluates on the dev set, writes checkpoints, logs and the output; the others follow its decisions.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from ..errors import BadInputError

STORE_ENV = "XLEMBED_DIST_STORE"  # a file the ranks of `--nproc` meet through (no TCP store)
KILL_GRACE_S = 20  # after one rank fails, the others (stuck in a collective) get this long before SIGKILL


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_as_rank() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str) -> None:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR/PORT); a no-op otherwise."""
    import torch
    import torch.distributed as dist

    if not launched_as_rank() or dist.is_initialized():
        return
    cuda = device.startswith("cuda")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise BadInputError(f"rank {os.environ.get('RANK')} wants GPU {local}, but this node has "
                                f"{torch.cuda.device_count()}: start at most one process per GPU")
        torch.cuda.set_device(local)
    store = os.environ.get(STORE_ENV)  # started by run_local_ranks (--nproc); else torchrun's env:// variables
    if store:
        dist.init_process_group(backend="nccl" if cuda else "gloo", init_method=f"file://{store}",
                                rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
    else:
        dist.init_process_group(backend="nccl" if cuda else "gloo")


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(value):
    """Rank 0's ``value`` on every rank."""
    if world_size() == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (a signal seen by one rank stops all at the same step)."""
    if world_size() == 1:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def sync_parameters(model) -> None:
    """Every rank starts from rank 0's weights (as DistributedDataParallel does when it wraps a model)."""
    if world_size() == 1:
        return
    import torch.distributed as dist

    for tensor in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(tensor.data, src=0)


def average_gradients(params, rows: int, global_rows: int) -> None:
    """Replace each rank's gradient (the mean over its ``rows``) by the mean over the whole global batch."""
    if world_size() == 1:
        return
    import torch
    import torch.distributed as dist

    trained = [p for p in params if p.requires_grad]  # the same list on every rank (a rank without rows has no grads)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in trained])
    flat *= rows / global_rows
    dist.all_reduce(flat)
    offset = 0
    for p in trained:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def global_mean(value: float, rows: int, global_rows: int) -> float:
    """The global batch's mean of a per-rank mean (the loss that one process with the whole batch would log)."""
    if world_size() == 1:
        return value
    import torch
    import torch.distributed as dist

    total = torch.tensor([value * rows / global_rows], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total.item())


@contextmanager
def main_first():
    """Rank 0 runs the block first (filling a cache, writing a file), then the others run it."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def run_local_ranks(nproc: int, argv: list[str]) -> int:
    """Run the xlembed command ``argv`` as ``nproc`` ranks on this machine; returns 0, or the first failing exit code.

    The ranks meet through a file store (torchrun's TCP store would listen on every interface) and gloo talks over
    the loopback device, so nothing listens beyond 127.0.0.1. Each rank gets cores / nproc threads. SIGINT/SIGTERM
    are passed to every rank (each saves the same checkpoint at the same step; rerun with --resume); when one
    rank fails, the others are stopped.
    """
    import platform
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    if nproc < 1:
        raise BadInputError(f"--nproc must be >= 1, got {nproc}")
    folder = tempfile.mkdtemp(prefix="xlembed-ranks-")
    base = dict(os.environ, WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc), **{STORE_ENV: os.path.join(folder, "store")})
    base.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    if platform.system() == "Linux":
        base.setdefault("GLOO_SOCKET_IFNAME", "lo")
    procs = [subprocess.Popen([sys.executable, "-m", "xlembed", *argv], env=dict(base, RANK=str(r), LOCAL_RANK=str(r)))
             for r in range(nproc)]

    def forward(signum, _frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed_at = None
    try:
        while any(p.poll() is None for p in procs):
            if failed_at is None and any(p.returncode not in (None, 0) for p in procs):
                failed_at = time.monotonic()
                forward(signal.SIGTERM, None)
            if failed_at is not None and time.monotonic() - failed_at > KILL_GRACE_S:
                for proc in procs:
                    if proc.poll() is None:
                        proc.kill()
            time.sleep(0.1)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        shutil.rmtree(folder, ignore_errors=True)
    codes = [p.returncode for p in procs]
    return next((c for c in codes if c != 0), 0)


def without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` with ``--name VALUE`` / ``--name=VALUE`` removed."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out
