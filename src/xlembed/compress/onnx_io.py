"""Small helpers for ONNX files: quiet exporter/quantizer chatter, external-data file names."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path


@contextlib.contextmanager
def quiet_export():
    """Silence the exporter's and quantizer's progress prints, warnings and advice while they run.

    Errors still propagate as exceptions; only chatter is dropped (the torchvision notices of the
    exporter's op registry, 'consider pre-processing' from the quantizer, FutureWarnings).
    """

    class _DropWarnings(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.levelno >= logging.ERROR

    drop = _DropWarnings()
    root = logging.getLogger()  # onnxruntime.quantization logs its advice on the root logger
    quieted = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in quieted]
    root.addFilter(drop)
    for logger in quieted:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(drop)
        for logger, level in zip(quieted, levels):
            logger.setLevel(level)


def data_file(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name + ".data")


def remove_onnx(path: Path) -> None:
    """Delete an ONNX file and its external-data file, if any."""
    path.unlink(missing_ok=True)
    data_file(path).unlink(missing_ok=True)
