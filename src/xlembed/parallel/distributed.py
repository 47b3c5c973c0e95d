"""Data-parallel training with torch.distributed: what the shared training loop needs, nothing more.

A run is distributed when it was started by ``torchrun`` (WORLD_SIZE > 1 in the environment) or by
``xlembed distill --nproc N`` (which starts torchrun). Every rank holds the whole model; each step's global batch
(``batch_size x world`` rows) is split between the ranks, each computes the loss of its rows, and the gradients
are averaged (weighted by rows) across ranks before clipping and the optimizer step: the same update as one process
taking the whole batch, which DistributedDataParallel gives too; it is done here as one flat all-reduce after the
backward pass because the objectives call into the model in their own ways. Backend: gloo on CPU, NCCL on CUDA.
Rank 0 alone evaluates on the dev set, writes checkpoints, logs and the output; the others follow its decisions.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from ..errors import BadInputError


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str) -> None:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR/PORT); a no-op otherwise."""
    import torch
    import torch.distributed as dist

    if not launched_by_torchrun() or dist.is_initialized():
        return
    cuda = device.startswith("cuda")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise BadInputError(f"rank {os.environ.get('RANK')} wants GPU {local}, but this node has "
                                f"{torch.cuda.device_count()}: start at most one process per GPU")
        torch.cuda.set_device(local)
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


def torchrun_command(nproc: int, argv: list[str], port: int) -> list[str]:
    """``python -m torch.distributed.run`` starting ``python -m xlembed ARGV`` on ``nproc`` ranks of this machine."""
    import sys

    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1",
            "--master-port", str(port), "-m", "xlembed", *argv]


def run_with_torchrun(nproc: int, argv: list[str]) -> int:
    """Run the xlembed command ``argv`` on ``nproc`` local ranks (loopback only); returns torchrun's exit code.

    SIGINT/SIGTERM are passed on to torchrun, which passes them to every rank (each saves its checkpoint state
    at the same step; rerun with --resume).
    """
    import platform
    import signal
    import socket
    import subprocess

    if nproc < 1:
        raise BadInputError(f"--nproc must be >= 1, got {nproc}")
    with socket.socket() as probe:  # a free port on the loopback address for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ)
    if platform.system() == "Linux":
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo's connections between ranks stay on the loopback device
    proc = subprocess.Popen(torchrun_command(nproc, argv, port), env=env)
    forward = {sig: signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
               for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for sig, old in forward.items():
            signal.signal(sig, old)


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
