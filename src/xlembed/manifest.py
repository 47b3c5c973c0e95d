"""``xlembed.json``: what xlembed writes beside a saved model so ``load()`` can read it back.

A folder written by ``save()`` is also a folder other tools read (sentence-transformers, ONNX);
the manifest adds what they do not record: the precision it was saved in, prompts, pooling.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .errors import ModelFilesError
from .paths import write_text_atomic

MANIFEST_NAME = "xlembed.json"
FORMATS = ("sentence-transformers", "onnx", "static")


@dataclass
class Manifest:
    format: str  # one of FORMATS
    precision: str  # fp32 | fp16 | bf16 | int8: how the weights are stored
    name: str
    source: str  # what it was converted from
    dim: int
    max_length: int | None
    pooling: str | None
    normalized_output: bool
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # e.g. {"int8": "model_int8.onnx", "fp32": "model.onnx"}
    languages: list[str] | None = None  # the languages it was trained on (None: unknown)
    languages_source: str | None = None
    xlembed_version: str = ""
    created: str = ""

    @classmethod
    def from_info(cls, info, format: str, precision: str, files: dict[str, str] | None = None) -> "Manifest":
        """A manifest for a model saved from an encoder with ``info`` (a ModelInfo)."""
        return cls(
            format=format,
            precision=precision,
            name=info.name,
            source=info.source,
            dim=info.dim,
            max_length=info.max_length,
            pooling=info.pooling,
            normalized_output=info.normalized_output,
            prompts=dict(info.prompts),
            default_prompt_name=info.default_prompt_name,
            files=dict(files or {}),
            languages=list(info.languages) if info.languages is not None else None,
            languages_source=info.languages_source or None,
        )

    def write(self, folder: Path) -> Path:
        from . import __version__

        self.xlembed_version = self.xlembed_version or __version__
        self.created = self.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
        path = Path(folder) / MANIFEST_NAME
        write_text_atomic(path, json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n")
        return path


def read_manifest(folder: Path) -> Manifest | None:
    """The folder's manifest, None when it has none; a damaged manifest is an error naming the file."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest(**data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise ModelFilesError(f"{path} is damaged ({exc}); save the model again with xlembed") from exc
    if manifest.format not in FORMATS:
        raise ModelFilesError(f"{path}: unknown format {manifest.format!r} (known: {', '.join(FORMATS)})")
    return manifest
