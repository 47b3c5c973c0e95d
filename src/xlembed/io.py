"""Reading texts and writing embeddings for the CLI and scripts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .errors import BadInputError, DataFormatError
from .manifest import write_text_atomic


def read_texts(source: str | Path, field: str | None = None) -> list[str]:
    """Texts from a file or '-' (stdin): one text per line, or JSON Lines taking ``field`` from each object.

    A .jsonl file without ``field`` reads the field 'text'. Every line is a text (an empty line is an empty text).
    """
    name = str(source)
    if name == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise BadInputError("no input: pass --input FILE, or pipe texts into stdin")
        content = sys.stdin.read()
        label = "<stdin>"
    else:
        path = Path(name)
        if not path.is_file():
            raise BadInputError(f"input file {path} does not exist")
        try:
            content = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"{path} is not UTF-8 text ({exc}); convert it to UTF-8") from None
        label = str(path)
        if field is None and path.suffix == ".jsonl":
            field = "text"
    lines = content.splitlines()
    if field is None:
        return lines
    return [_field(line, field, label, n) for n, line in enumerate(lines, 1) if line.strip()]


def _field(line: str, field: str, label: str, n: int) -> str:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{label} line {n}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict) or field not in obj:
        raise DataFormatError(f"{label} line {n}: no field {field!r} (pass --field NAME)")
    value = obj[field]
    if not isinstance(value, str):
        raise DataFormatError(f"{label} line {n}: field {field!r} is {type(value).__name__}, not a string")
    return value


def write_embeddings(path: Path, vectors: np.ndarray, texts: list[str] | None = None) -> Path:
    """Write vectors as .npy (float32 matrix) or .jsonl ({"index", "text", "embedding"} per line), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        tmp = path.with_name(f".{path.name}.tmp.npy")
        np.save(tmp, np.asarray(vectors, dtype=np.float32))
        tmp.replace(path)
    elif path.suffix == ".jsonl":
        rows = []
        for i, vec in enumerate(vectors):
            row = {"index": i, "embedding": [round(float(x), 7) for x in vec]}
            if texts is not None:
                row["text"] = texts[i]
            rows.append(json.dumps(row, ensure_ascii=False))
        write_text_atomic(path, "\n".join(rows) + ("\n" if rows else ""))
    else:
        raise BadInputError(f"output must end in .npy or .jsonl, got {path}")
    return path
