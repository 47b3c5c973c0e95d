"""Reading texts and writing embeddings for the CLI and scripts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .errors import BadInputError, DataFormatError, NumericalError
from .paths import atomic_file, check_output_file, write_text_atomic


def read_texts(source: str | Path, field: str | None = None) -> list[str]:
    """Texts from a file, a pipe (``<(command)``, ``/dev/stdin``) or '-' (stdin): one text per line, or JSON
    Lines taking ``field`` from each object.

    Lines are split on '\\n' (a '\\r\\n' ending counts as one), never on the other characters Python's
    ``splitlines`` treats as breaks (form feed, U+2028, U+0085, ...), so row i of the output is line i+1
    of the file. A final newline does not start another text. A .jsonl file without ``field`` reads
    the field 'text'. Every line is a text (an empty line is an empty text).
    """
    name = str(source)
    if name == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise BadInputError("no input: pass --input FILE, or pipe texts into stdin")
        raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode("utf-8")
        label = "<stdin>"
    else:
        path = Path(name)
        if not path.exists():
            raise BadInputError(f"input file {path} does not exist")
        if path.is_dir():
            raise BadInputError(f"input {path} is a folder; pass a text or .jsonl file")
        try:
            with open(path, "rb") as f:  # any readable file: regular, pipe (/dev/fd/N), character device
                raw = f.read()
        except OSError as exc:
            raise BadInputError(f"cannot read input file {path}: {exc.strerror or exc}") from None
        label = str(path)
        if field is None and path.suffix == ".jsonl":
            field = "text"
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{label} is not UTF-8 text ({exc}); convert it to UTF-8") from None
    lines = split_lines(content)
    if field is None:
        return lines
    return [_field(line, field, label, n) for n, line in enumerate(lines, 1) if line.strip()]


def split_lines(content: str) -> list[str]:
    """``content`` split on '\\n' only ('\\r\\n' too); a trailing newline ends the last line, a BOM is dropped."""
    content = content.removeprefix("\ufeff")
    if not content:
        return []
    lines = content.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


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
    """Write vectors as .npy (float32 matrix) or .jsonl ({"index", "text", "embedding"} per line), atomically.

    Non-finite vectors are refused (never written as NaN); nothing is left behind when writing fails.
    """
    path = Path(path)
    if path.suffix not in (".npy", ".jsonl"):
        raise BadInputError(f"output must end in .npy or .jsonl, got {path}")
    vectors = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        bad = np.flatnonzero(~np.isfinite(vectors.reshape(len(vectors), -1)).all(axis=1))
        raise NumericalError(f"refusing to write {path}: rows {bad[:10].tolist()} hold NaN/inf values")
    check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        with atomic_file(path, suffix=".npy") as tmp:
            np.save(tmp, vectors)
    else:
        rows = []
        for i, vec in enumerate(vectors):
            row = {"index": i, "embedding": [round(float(x), 7) for x in vec]}
            if texts is not None:
                row["text"] = texts[i]
            rows.append(json.dumps(row, ensure_ascii=False, allow_nan=False))
        write_text_atomic(path, "\n".join(rows) + ("\n" if rows else ""))
    return path
