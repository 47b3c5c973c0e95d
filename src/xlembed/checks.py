"""Checking a model folder before loading it: every missing or damaged file is named, with the fix.

``check_folder`` returns a report; ``require_loadable`` raises ``ModelFilesError`` listing every
problem at once, so a user fixes the folder in one go instead of one traceback at a time.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelFilesError
from .manifest import MANIFEST_NAME, read_manifest

# Files that hold a tokenizer a transformers AutoTokenizer can read (any one is enough).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model", "vocab.json")
SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
STATIC_WEIGHTS = "static.safetensors"
FIX_STATIC = "copy the complete static model folder again, or distill it again (xlembed.distill.static.distill_static)"
FIX_DOWNLOAD = "copy the complete model folder again (e.g. `hf download ORG/NAME --local-dir DIR` on a machine with network)"


@dataclass
class FolderReport:
    """What ``check_folder`` found: ``kind`` is 'sentence-transformers', 'transformers', 'onnx', 'static' or 'unknown'."""

    path: Path
    kind: str = "unknown"
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    has_modules_json: bool = False
    pickle_only: bool = False  # weights exist only as a pickle (.bin)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"path": str(self.path), "kind": self.kind, "ok": self.ok, "problems": self.problems, "notes": self.notes}


def check_folder(folder: Path, allow_pickle: bool = False) -> FolderReport:
    """Inspect a model folder without loading it."""
    folder = Path(folder)
    report = FolderReport(path=folder)
    if not folder.exists():
        report.problems.append(f"{folder} does not exist; check the path (relative paths start from {Path.cwd()})")
        return report
    if not folder.is_dir():
        report.problems.append(f"{folder} is a file, not a model folder; pass the folder that contains config.json")
        return report
    if (folder / MANIFEST_NAME).is_file():
        try:
            manifest = read_manifest(folder)
        except ModelFilesError as exc:
            report.problems.append(str(exc))
            return report
        if manifest.format == "onnx":
            report.kind = "onnx"
            _check_onnx(folder, manifest.files, report)
            return report
        if manifest.format == "static":
            report.kind = "static"
            _check_static(folder, report)
            return report
    elif (folder / STATIC_WEIGHTS).is_file():
        report.kind = "static"
        report.problems.append(
            f"{folder / MANIFEST_NAME} is missing (a static model's manifest, written beside {STATIC_WEIGHTS}); "
            f"{FIX_STATIC}"
        )
        _check_static(folder, report)
        return report
    modules = folder / "modules.json"
    if modules.is_file():
        report.kind = "sentence-transformers"
        report.has_modules_json = True
        _check_modules(folder, modules, report, allow_pickle)
    else:
        report.kind = "transformers"
        report.notes.append("no modules.json: not a sentence-transformers folder; loaded as transformer + pooling")
        _check_transformer(folder, report, allow_pickle)
    return report


def require_loadable(folder: Path, allow_pickle: bool = False) -> FolderReport:
    """``check_folder``, raising one ``ModelFilesError`` that lists every problem."""
    report = check_folder(folder, allow_pickle)
    if not report.ok:
        lines = "\n".join(f"  - {p}" for p in report.problems)
        raise ModelFilesError(f"model folder {folder} cannot be loaded:\n{lines}")
    return report


def _check_modules(folder: Path, modules_path: Path, report: FolderReport, allow_pickle: bool) -> None:
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
        if not isinstance(modules, list):
            raise ValueError("expected a list of modules")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        report.problems.append(f"{modules_path} is not a valid modules.json ({exc}); {FIX_DOWNLOAD}")
        return
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        sub = folder / module.get("path", "")
        if kind == "Transformer":
            _check_transformer(sub, report, allow_pickle)
        elif kind in ("Pooling", "Dense"):
            if not (sub / "config.json").is_file():
                report.problems.append(
                    f"{sub / 'config.json'} is missing ({kind} module listed in modules.json); {FIX_DOWNLOAD}"
                )
            if kind == "Dense":
                _check_weights(sub, report, allow_pickle, what="Dense layer")
    if not any(str(m.get("type", "")).endswith("Pooling") for m in modules):
        report.notes.append("modules.json lists no Pooling module")


def _check_transformer(folder: Path, report: FolderReport, allow_pickle: bool) -> None:
    config = folder / "config.json"
    if not config.is_file():
        report.problems.append(f"{config} is missing (the transformer's configuration); {FIX_DOWNLOAD}")
    else:
        try:
            json.loads(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            report.problems.append(f"{config} is not valid JSON ({exc}); {FIX_DOWNLOAD}")
    _check_weights(folder, report, allow_pickle, what="model")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        report.problems.append(
            f"no tokenizer files in {folder} (expected tokenizer.json, or vocab.txt / sentencepiece.bpe.model / "
            f"spiece.model / vocab.json with tokenizer_config.json); {FIX_DOWNLOAD}"
        )


def _check_weights(folder: Path, report: FolderReport, allow_pickle: bool, what: str) -> None:
    safetensors = [folder / n for n in SAFETENSORS_WEIGHTS if (folder / n).is_file()]
    pickles = [folder / n for n in PICKLE_WEIGHTS if (folder / n).is_file()]
    if safetensors:
        for path in safetensors:
            if path.suffix == ".safetensors":
                problem = safetensors_problem(path)
                if problem:
                    report.problems.append(problem)
        return
    if pickles:
        report.pickle_only = True
        if not allow_pickle:
            report.problems.append(
                f"{pickles[0]} is a pickle file and there is no model.safetensors; pickles can run code when loaded. "
                "Convert it to safetensors, or if you trust its origin pass allow_pickle=True (CLI: --allow-pickle)"
            )
        return
    report.problems.append(
        f"no {what} weights in {folder} (expected model.safetensors, or pytorch_model.bin with allow_pickle=True, CLI: --allow-pickle); {FIX_DOWNLOAD}"
    )


def safetensors_problem(path: Path) -> str | None:
    """A message when a .safetensors file is truncated or damaged, None when its header and size agree."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                return f"{path} is truncated ({size} bytes, no header); {FIX_DOWNLOAD}"
            (header_len,) = struct.unpack("<Q", raw)
            if header_len > min(size - 8, 100_000_000):
                return f"{path} is damaged (header length {header_len} does not fit a {size}-byte file); {FIX_DOWNLOAD}"
            header = json.loads(f.read(header_len))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{path} is damaged (unreadable safetensors header: {exc}); {FIX_DOWNLOAD}"
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)]
    expected = 8 + header_len + (max(ends) if ends else 0)
    if size < expected:
        return f"{path} is truncated ({size} bytes, its header says {expected}); {FIX_DOWNLOAD}"
    return None


def _check_onnx(folder: Path, files: dict[str, str], report: FolderReport) -> None:
    if not files:
        report.problems.append(f"{folder / MANIFEST_NAME} lists no ONNX files; export the model again")
    for precision, name in files.items():
        if not (folder / name).is_file():
            report.problems.append(f"{folder / name} is missing (the {precision} ONNX graph); export the model again")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        report.problems.append(f"no tokenizer files in {folder} (expected tokenizer.json); export the model again")


def _check_static(folder: Path, report: FolderReport) -> None:
    """A static folder needs tokenizer.json and static.safetensors beside its manifest."""
    tokenizer = folder / "tokenizer.json"
    if not tokenizer.is_file():
        report.problems.append(f"{tokenizer} is missing (the static model's tokenizer); {FIX_STATIC}")
    weights = folder / STATIC_WEIGHTS
    if not weights.is_file():
        report.problems.append(f"{weights} is missing (the static model's token vectors); {FIX_STATIC}")
    else:
        problem = safetensors_problem(weights)
        if problem:
            report.problems.append(problem.replace(FIX_DOWNLOAD, FIX_STATIC))
