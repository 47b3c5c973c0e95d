"""One result schema for every evaluation run, plus the machine and versions it ran on.

A ``TaskResult`` is one (model, precision, task, dataset, language) measurement; ``RunRecord``
adds where and how it was measured. Both serialise to plain JSON (see ``SCHEMA_VERSION``).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 1


@dataclass
class TaskResult:
    """What one task measured. ``scores`` are plain floats (accuracy in percent, Spearman x100, ...)."""

    task: str  # tatoeba | mining | sts | classification | alignment_gap | drift | speed | size
    dataset: str  # e.g. "tatoeba", "sts17", "jsts"
    language: str  # e.g. "jpn", "en-ar", "ja", or "all"
    scores: dict[str, float]
    main_score: str  # the key of ``scores`` the report and the grade use
    prompt: str | None = None  # the prefix applied ('' none), None where not applicable
    details: dict = field(default_factory=dict)

    @property
    def main(self) -> float:
        return float(self.scores[self.main_score])


@dataclass
class RunRecord:
    """A TaskResult with the model, precision, machine, versions, command and date it came from."""

    model: str
    precision: str
    backend: str
    result: TaskResult
    machine: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    command: str = ""
    date: str = ""
    schema_version: int = SCHEMA_VERSION

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(data.pop("result"))  # flat: task, dataset, language, scores, ... at the top level
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        data = dict(data)
        keys = ("task", "dataset", "language", "scores", "main_score", "prompt", "details")
        result = TaskResult(**{k: data.pop(k) for k in keys if k in data})
        return cls(result=result, **data)


def record(encoder, result: TaskResult, command: str | None = None) -> RunRecord:
    """Wrap a result with the encoder's identity and this machine's description."""
    return RunRecord(
        model=encoder.name,
        precision=encoder.precision,
        backend=encoder.backend,
        result=result,
        machine=machine_info(),
        versions=versions(),
        command=command if command is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]}
    try:
        import psutil

        info["ram_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def versions() -> dict:
    out = {}
    for name in ("xlembed", "torch", "transformers", "sentence-transformers", "onnxruntime", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
