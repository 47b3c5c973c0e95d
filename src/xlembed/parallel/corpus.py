"""Reading a corpus for embedding: files found by globs, read row by row with bounded memory.

Formats: ``.txt`` (one text per line; the id is ``FILE:LINE``), ``.jsonl``, ``.csv`` (header row) and
``.parquet``, each with a text field and an optional id field. A row whose text is missing or not a string
(or whose id is missing) is a *bad row*: an error naming the file and row, or, when the caller allows it,
counted and skipped. An empty text is embedded like ``encode`` embeds it.

Rows are addressed by (file, row number) so that a shard can be read again after a crash, by this process or by
a worker on another machine, and gives the same rows.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from ..errors import BadInputError, DataFormatError

FORMATS = {".txt": "txt", ".text": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
LINE_FORMATS = ("txt", "jsonl")  # rows are lines (errors say "line N"); csv/parquet rows say "row N"


@dataclass(frozen=True)
class Source:
    """One input file and what identifies its content (a resumed job refuses changed inputs)."""

    path: str
    format: str
    rows: int
    size: int
    mtime_ns: int

    def where(self, row: int) -> str:
        return f"{self.path} {'line' if self.format in LINE_FORMATS else 'row'} {row}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Fields:
    text: str = "text"
    id: str | None = None


@dataclass(frozen=True)
class Row:
    """A row of a source: ``text`` is None for a bad row, and ``problem`` then says why."""

    number: int  # 1-based line (txt, jsonl) or data row (csv, parquet)
    id: str | None
    text: str | None
    problem: str | None = None


def find_sources(patterns: list[str] | str) -> list[Source]:
    """The files matching ``patterns`` (globs; ``**`` recurses), sorted, each with its row count."""
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise BadInputError("no input given: pass --input with a file or a glob such as 'corpus/*.parquet'")
    paths: list[str] = []
    for pattern in patterns:
        matched = sorted(p for p in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(p))
        if not matched:
            raise BadInputError(f"--input {pattern!r} matches no file (globs like 'corpus/*.jsonl' must be quoted)")
        paths.extend(p for p in matched if p not in paths)
    sources = []
    for path in paths:
        fmt = FORMATS.get(Path(path).suffix.lower())
        if fmt is None:
            raise BadInputError(f"{path}: unknown input format {Path(path).suffix!r}; use one of {', '.join(FORMATS)}")
        stat = os.stat(path)
        sources.append(Source(path, fmt, count_rows(path, fmt), stat.st_size, stat.st_mtime_ns))
    return sources


def count_rows(path: str, fmt: str) -> int:
    """Rows of a file (bad rows included) without keeping them: lines, CSV records, or Parquet metadata."""
    if fmt == "parquet":
        return _parquet_file(path).metadata.num_rows
    if fmt == "csv":
        with _open_text(path) as f:
            return sum(1 for _ in _csv_rows(f, path))
    count = 0
    last = b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def read_rows(source: Source, fields: Fields, start: int = 0, stop: int | None = None) -> Iterator[Row]:
    """Rows ``start`` to ``stop`` (0-based, stop excluded) of ``source``, in order."""
    stop = source.rows if stop is None else stop
    if source.format == "parquet":
        yield from _parquet_rows(source, fields, start, stop)
        return
    with _open_text(source.path) as f:
        records = _csv_rows(f, source.path, fields) if source.format == "csv" else f
        for index, record in enumerate(records):
            if index < start:
                continue
            if index >= stop:
                break
            number = index + 1
            if source.format == "txt":
                line = record[:-1] if record.endswith("\n") else record
                yield Row(number, f"{source.path}:{number}", line[:-1] if line.endswith("\r") else line)
            elif source.format == "jsonl":
                yield _json_row(record, number, source, fields)
            else:
                yield _mapping_row(record, number, source, fields)


def _open_text(path: str):
    # newline="" keeps '\r' inside lines (read_texts' rule: only '\n' ends a line); a BOM is dropped
    return open(path, encoding="utf-8-sig", newline="", errors="strict")


def _csv_rows(f, path: str, fields: Fields | None = None) -> Iterator[dict]:
    reader = csv.DictReader(f)
    if fields is not None:
        header = reader.fieldnames or []
        for name in (fields.text, fields.id):
            if name is not None and name not in header:
                raise DataFormatError(f"{path}: no column {name!r} in the header ({', '.join(header) or 'empty'}); "
                                      "pass --text-field / --id-field with a column of this file")
    try:
        yield from reader
    except csv.Error as exc:
        raise DataFormatError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path} is not UTF-8 text ({exc}); convert it to UTF-8") from None


def _json_row(line: str, number: int, source: Source, fields: Fields) -> Row:
    if not line.strip():
        return Row(number, None, None, "empty line")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return Row(number, None, None, f"not valid JSON ({exc.msg})")
    if not isinstance(obj, dict):
        return Row(number, None, None, f"a JSON {type(obj).__name__}, not an object")
    return _mapping_row(obj, number, source, fields)


def _mapping_row(obj: dict, number: int, source: Source, fields: Fields) -> Row:
    text = obj.get(fields.text)
    if text is None:
        return Row(number, None, None, f"no {fields.text!r}" if fields.text not in obj else f"{fields.text!r} is null")
    if not isinstance(text, str):
        return Row(number, None, None, f"{fields.text!r} is {type(text).__name__}, not text")
    if fields.id is None:
        return Row(number, f"{source.path}:{number}", text)
    ident = _as_id(obj.get(fields.id))
    if ident is None:
        return Row(number, None, None, f"no usable id in {fields.id!r} ({obj.get(fields.id)!r:.40})")
    return Row(number, ident, text)


def _as_id(value) -> str | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, (str, int)):
        return str(value)
    return None


def _parquet_file(path: str):
    from .shards import require_pyarrow

    _, pq = require_pyarrow()

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise DataFormatError(f"{path} is not a readable Parquet file ({exc})") from None


def _parquet_rows(source: Source, fields: Fields, start: int, stop: int) -> Iterator[Row]:
    parquet = _parquet_file(source.path)
    names = parquet.schema_arrow.names
    for name in (fields.text, fields.id):
        if name is not None and name not in names:
            raise DataFormatError(f"{source.path}: no column {name!r} (columns: {', '.join(names)}); "
                                  "pass --text-field / --id-field with a column of this file")
    columns = [fields.text] + ([fields.id] if fields.id else [])
    offset = 0
    for group in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        if offset + size <= start:
            offset += size
            continue
        if offset >= stop:
            break
        table = parquet.read_row_group(group, columns=columns)
        texts = table.column(fields.text).to_pylist()
        ids = table.column(fields.id).to_pylist() if fields.id else None
        for i in range(max(0, start - offset), min(size, stop - offset)):
            number = offset + i + 1
            text = texts[i]
            record = {fields.text: text} if ids is None else {fields.text: text, fields.id: ids[i]}
            yield _mapping_row(record, number, source, fields)
        offset += size
