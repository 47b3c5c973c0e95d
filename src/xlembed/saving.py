"""``save()``: write an encoder to a folder that ``load()`` (and other tools) read back.

fp32 / fp16 / bf16: a sentence-transformers folder with safetensors weights in that dtype.
int8: an ONNX folder (dynamic INT8 quantization, run by ONNX Runtime).
Everything is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

from .encoder import PRECISIONS, Encoder
from .errors import BadInputError, UnsupportedError
from .manifest import Manifest, read_manifest
from .paths import atomic_folder

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def save(
    encoder: Encoder,
    out_dir: str | Path,
    precision: str | None = None,
    format: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Save ``encoder`` to ``out_dir`` in ``precision`` (default: the encoder's own); returns the folder.

    format: 'sentence-transformers' (fp32/fp16/bf16 safetensors) or 'onnx' (fp32/int8); by default
    int8 is written as ONNX and everything else as a sentence-transformers folder. A static model is
    written as a static folder (fp32, fp16 or int8 rows) whatever ``format`` says.
    """
    if encoder.backend == "static":
        if format not in (None, "static"):
            raise BadInputError(f"a static model is saved as a static folder; drop format={format!r} (CLI: --format)")
        format = "static"
    precision = precision or encoder.precision
    if precision not in PRECISIONS:
        raise BadInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    format = format or ("onnx" if precision == "int8" or encoder.backend == "onnx" else "sentence-transformers")
    if format not in WRITERS:
        raise BadInputError(f"format must be 'sentence-transformers' or 'onnx', got {format!r}")
    if format == "onnx" and precision not in ("fp32", "int8"):
        raise BadInputError(f"an ONNX folder holds fp32 or int8, not {precision}; use format='sentence-transformers' (CLI: --format sentence-transformers)")
    if format == "sentence-transformers" and precision == "int8":
        raise BadInputError("int8 is saved as an ONNX folder; use format='onnx' (the default for int8; CLI: --format onnx)")
    return WRITERS[format](encoder, Path(out_dir), precision, overwrite)


def _write_sentence_transformers(encoder, out_dir: Path, precision: str, overwrite: bool) -> Path:
    if encoder.backend != "torch":
        _cannot_write(encoder, "a sentence-transformers folder")
    return _save_torch(encoder, out_dir, precision, overwrite)


def _write_onnx(encoder, out_dir: Path, precision: str, overwrite: bool) -> Path:
    if encoder.backend == "torch":
        from .compress.onnx_export import export_onnx_folder

        return export_onnx_folder(encoder, out_dir, precision=precision, overwrite=overwrite)
    if encoder.backend == "onnx":
        return _copy_onnx(encoder, out_dir, precision, overwrite)
    _cannot_write(encoder, "an ONNX folder")


def _write_static(encoder, out_dir: Path, precision: str, overwrite: bool) -> Path:
    return encoder.save(out_dir, storage=precision, overwrite=overwrite)


def _cannot_write(encoder, what: str):
    raise UnsupportedError(
        f"{encoder.name!r} ({encoder.backend} backend) cannot be written as {what} by xlembed"
        + (": it is loaded from its package" if encoder.backend == "use" else "")
    )


# target folder format -> the function that writes an encoder in it
WRITERS = {
    "sentence-transformers": _write_sentence_transformers,
    "onnx": _write_onnx,
    "static": _write_static,
}


def _save_torch(encoder, out_dir: Path, precision: str, overwrite: bool) -> Path:
    import torch

    dtype = getattr(torch, TORCH_DTYPES[precision])
    model = copy.deepcopy(encoder.model).to("cpu").to(dtype)
    model.prompts = dict(encoder.info.prompts)
    model.default_prompt_name = encoder.info.default_prompt_name
    with atomic_folder(out_dir, overwrite) as tmp:
        model.save(str(tmp), create_model_card=False, safe_serialization=True)
        Manifest.from_info(encoder.info, "sentence-transformers", precision).write(tmp)
    return out_dir


def _copy_onnx(encoder, out_dir: Path, precision: str, overwrite: bool) -> Path:
    source = Path(encoder.info.source)
    manifest = read_manifest(source)
    if manifest is None or precision not in manifest.files:
        have = ", ".join(manifest.files) if manifest else "none"
        raise UnsupportedError(
            f"{source} holds ONNX precisions {have}, not {precision}; save from the original (torch) model instead"
        )
    with atomic_folder(out_dir, overwrite) as tmp:
        for item in source.iterdir():
            if item.name.endswith(".onnx") or item.name.endswith(".onnx.data") or item.name == "xlembed.json":
                continue
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
        name = manifest.files[precision]
        shutil.copy2(source / name, tmp / name)
        if (source / f"{name}.data").is_file():
            shutil.copy2(source / f"{name}.data", tmp / f"{name}.data")
        manifest.files = {precision: name}
        manifest.precision = precision
        manifest.write(tmp)
    return out_dir
