"""Derived artifacts of a model folder kept in xlembed's cache: the ONNX export that ``load(precision='int8')``
runs, made once per (folder contents, precision, pooling, export and int8 recipe) and reused afterwards.

``load()`` asks for it in one call (``int8_folder``) and never exports by itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

from ..errors import BadInputError, ModelFilesError
from ..manifest import read_manifest
from ..paths import cache_dir
from .onnx_export import EXPORT_RECIPE, ONNX_PRECISIONS, export_onnx_folder
from .quantize import QUANT_OPTIONS


def int8_folder(source: Path, pooling_override: str | None, make_encoder: Callable[[], object]) -> Path:
    """The cached int8 ONNX folder of the model folder ``source``; on a miss ``make_encoder()`` (a fp32
    TorchEncoder of it) is exported and quantized into the cache first. The folder keeps model.onnx as
    the NaN guard's fp32 fallback. ``pooling_override``: the pooling chosen at load time for a folder
    without modules.json (part of the cache key)."""
    folder = onnx_cache_folder(source, "int8", pooling_override)
    if cache_has(folder, "int8"):
        return folder
    return cached_onnx_folder(make_encoder(), "int8", pooling_override)


def cached_onnx_folder(encoder, precision: str, pooling_override: str | None = None) -> Path:
    """The ONNX folder of this torch model at ``precision``, exported on first use into the cache.

    int8 folders keep model.onnx as the NaN guard's fp32 fallback. ``pooling_override`` is the
    pooling chosen at load time for a folder without modules.json (it is part of the cache key).
    """
    folder = onnx_cache_folder(Path(encoder.info.source), precision, pooling_override)
    if cache_has(folder, precision):
        return folder
    return export_onnx_folder(encoder, folder, precision=precision, keep_fp32=(precision == "int8"), overwrite=True)


def onnx_cache_folder(source: Path, precision: str, pooling_override: str | None = None) -> Path:
    """Where the ONNX export of the model folder ``source`` lives in the cache (it may not exist yet).

    The key covers xlembed's version, the precision, the resolved source folder, the size and mtime
    of every file in it (weights, configs, modules), and the pooling chosen at load time, so a changed
    model, pooling or xlembed exports again. It is computed from the folder alone, so a cached export
    is found without loading the torch model.
    """
    from .. import __version__

    if precision not in ONNX_PRECISIONS:
        raise BadInputError(f"ONNX folders hold precision 'fp32' or 'int8', not {precision!r}")
    source = Path(source).expanduser().resolve()
    parts = [f"xlembed={__version__}", f"export={EXPORT_RECIPE}", f"precision={precision}", f"source={source}", f"pooling={pooling_override}"]
    if precision == "int8":
        parts.append(f"quant={sorted(QUANT_OPTIONS.items())}")
    files = sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith("."))
    for path in files:
        stat = path.stat()
        parts.append(f"{path.relative_to(source).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in source.name)[:40]
    return cache_dir() / "onnx" / f"{stem}-{precision}-{digest}"


def cache_has(folder: Path, precision: str) -> bool:
    """True when ``folder`` is a complete ONNX folder holding ``precision``."""
    try:
        manifest = read_manifest(folder)
    except ModelFilesError:
        return False
    if manifest is None or manifest.format != "onnx":
        return False
    file = manifest.files.get(precision)
    return bool(file) and (folder / file).is_file()
