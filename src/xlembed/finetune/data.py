"""Labelled examples for fine-tuning: one reader for the shared formats and plain files with named columns.

A data argument is a path, optionally followed by ``::`` and comma-separated options::

    ../shared/data/sick_jsick/jsick.tsv::lang=ja,split=test
    my_reviews.tsv::text=review,label=stars

Options: ``lang`` (en or ja: which columns of a SICK/JSICK file), ``split`` (train, trial or test: the
``data`` column of SICK/JSICK), ``text``, ``text_b``, ``label`` (column names of a plain TSV/JSONL file),
``limit`` (the first N examples).

Formats (found from the suffix and the first line):
- STS (task ``sts``): whatever ``xlembed eval`` reads (STSb-multi CSV, JSTS JSONL, KorSTS and STS17 TSV),
  and SICK/JSICK TSV (``relatedness_score_*``).
- classification: SICK/JSICK TSV (``entailment_label_*``), PAWS-X and XNLI TSV (``sentence1, sentence2,
  label`` with or without a header), JNLI JSONL, the Amazon counterfactual TSV (``sentence,
  is_counterfactual``, CSV-quoted), and TSV/JSONL with named columns: a text column (``text``,
  ``sentence``, ``sentence1``/``premise``) an optional second text (``sentence2``/``hypothesis``/``text_b``)
  and ``label``, or the columns named by the options.
Every error names the file (and line) and what to change.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInputError, DataFormatError

OPTION_KEYS = ("lang", "split", "text", "text_b", "label", "limit")
FIRST_TEXT = ("text", "sentence", "sentence1", "premise", "text_a", "sentence_a")
SECOND_TEXT = ("sentence2", "hypothesis", "text_b", "sentence_b")
LABEL = ("label", "is_counterfactual", "gold_label", "score")
SICK_LANGS = {"en": "En", "ja": "Ja"}


@dataclass
class Examples:
    """Texts (or text pairs) with a label each: a class name (classification) or a float (STS)."""

    texts_a: list[str]
    texts_b: list[str] | None
    labels: list  # str (classification) or float (sts)
    path: str
    lines: list[int] = field(default_factory=list)  # the file line of each example (for errors)
    language: str | None = None

    def __len__(self) -> int:
        return len(self.texts_a)

    @property
    def is_pair(self) -> bool:
        return self.texts_b is not None

    def label_counts(self) -> dict:
        counts: dict = {}
        for label in self.labels:
            counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))


def parse_spec(spec: str | Path) -> tuple[Path, dict]:
    """``PATH[::key=value,...]`` -> (path, options); unknown keys and a missing file are errors."""
    text = str(spec)
    path_part, _, option_part = text.partition("::")
    options: dict = {}
    for item in filter(None, (s.strip() for s in option_part.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in OPTION_KEYS:
            raise BadInputError(f"{text}: bad option {item!r}; options are key=value with keys {', '.join(OPTION_KEYS)}")
        options[key] = value.strip()
    if "limit" in options:
        try:
            options["limit"] = int(options["limit"])
        except ValueError:
            raise BadInputError(f"{text}: limit must be a whole number, got {options['limit']!r}") from None
        if options["limit"] < 1:
            raise BadInputError(f"{text}: limit must be >= 1, got {options['limit']}")
    path = Path(path_part)
    if not path.is_file():
        raise BadInputError(f"data file not found: {path} (from {text!r}); check the path")
    return path, options


def read_examples(spec: str | Path, task: str) -> Examples:
    """Read one data argument for ``task`` (sts, classify or pair-classify)."""
    if task not in TASKS:
        raise BadInputError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    path, options = parse_spec(spec)
    text, lines, first = _open(path)
    header = first.rstrip("\r").split("\t")
    if "sentence_A_En" in header:
        examples = _sick(path, text, options, task)
    elif task == "sts":
        examples = _sts(path, options)
    elif path.suffix.lower() in (".json", ".jsonl") or first.lstrip().startswith("{"):
        examples = _jsonl(path, lines, options)
    else:
        examples = _tsv(path, text, options)
    examples = _limited(examples, path, options, "examples")
    if task == "classify" and examples.is_pair:
        raise BadInputError(f"{path} holds text pairs: use --task pair-classify (or name one text column: ::text=COLUMN)")
    if task == "pair-classify" and not examples.is_pair:
        raise BadInputError(f"{path} holds single texts: use --task classify, or name the second text: ::text_b=COLUMN")
    examples.language = options.get("lang") or examples.language
    return examples


TASKS = ("sts", "classify", "pair-classify")


def _limited(examples: Examples, path: Path, options: dict, what: str) -> Examples:
    """The first ``limit`` examples (option ``limit``); none at all is an error naming the file and filters."""
    n = options.get("limit")
    if n:
        examples = Examples(examples.texts_a[:n], examples.texts_b[:n] if examples.texts_b is not None else None,
                            examples.labels[:n], examples.path, examples.lines[:n], examples.language)
    if not len(examples):
        raise DataFormatError(f"{path}: no {what} were read{_filter_note(options)}")
    return examples


def _filter_note(options: dict) -> str:
    picked = {k: v for k, v in options.items() if k in ("split", "lang")}
    return f" with {', '.join(f'{k}={v}' for k, v in picked.items())}" if picked else ""


def _open(path: Path) -> tuple[str, list[str], str]:
    """(text, lines, first non-empty line) of a data file; an empty file is an error."""
    text = _read_text(path)
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if not first:
        raise DataFormatError(f"{path}: the file is empty")
    return text, lines, first


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text (byte {exc.start}); convert it to UTF-8") from None
    return text.replace("\x1a", "")  # stray SUB characters (Amazon counterfactual de/ja test files)


def _sick(path: Path, text: str, options: dict, task: str) -> Examples:
    lang = options.get("lang", "en")
    if lang not in SICK_LANGS:
        raise BadInputError(f"{path}: a SICK/JSICK file has English (lang=en) and Japanese (lang=ja) columns, not {lang!r}")
    suffix = SICK_LANGS[lang]
    rows = list(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
    header = rows[0]
    label_column = f"relatedness_score_{suffix}" if task == "sts" else f"entailment_label_{suffix}"
    columns = {name: header.index(name) for name in (f"sentence_A_{suffix}", f"sentence_B_{suffix}", label_column)}
    split = options.get("split")
    if split is not None and split not in ("train", "trial", "test"):
        raise BadInputError(f"{path}: split must be train, trial or test (the SICK 'data' column), got {split!r}")
    where = header.index("data") if "data" in header else None
    a, b, labels, line_numbers = [], [], [], []
    for number, row in enumerate(rows[1:], start=2):
        if not any(row):
            continue
        if len(row) != len(header):
            raise DataFormatError(f"{path}, line {number}: {len(row)} fields, the header has {len(header)}")
        if split is not None and (where is None or row[where] != split):
            continue
        s1, s2, label = (row[columns[c]].strip() for c in columns)
        if not s1 or not s2 or not label:
            if split is None and not s1 and not s2:
                continue  # JSICK's train.tsv has no English columns: rows without this language are skipped
            raise DataFormatError(f"{path}, line {number}: empty sentence or label in the lang={lang} columns")
        a.append(s1)
        b.append(s2)
        labels.append(_score(label, path, number) if task == "sts" else label)
        line_numbers.append(number)
    return Examples(a, b, labels, str(path), line_numbers, lang)


def _sts(path: Path, options: dict) -> Examples:
    from ..eval.data import read_sts

    data = read_sts(path)
    return Examples(list(data.texts1), list(data.texts2), [float(s) for s in data.scores], str(path),
                    list(range(1, len(data) + 1)), None if data.language == "und" else data.language)


def _jsonl(path: Path, lines: list[str], options: dict) -> Examples:
    a, b, labels, line_numbers = [], [], [], []
    columns = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataFormatError(f"{path}, line {number}: not a JSON object ({exc.msg}); one JSON object per line") from None
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}, line {number}: not a JSON object; one JSON object per line")
        if columns is None:
            columns = _columns(path, list(record), options)
        text_a, text_b, label = columns
        missing = [c for c in columns if c is not None and c not in record]
        if missing:
            raise DataFormatError(f"{path}, line {number}: no {missing[0]!r} field")
        a.append(_text(record[text_a], path, number))
        if text_b is not None:
            b.append(_text(record[text_b], path, number))
        labels.append(_label(record[label], path, number))
        line_numbers.append(number)
    return Examples(a, b if columns and columns[1] else None, labels, str(path), line_numbers)


def _tsv(path: Path, text: str, options: dict) -> Examples:
    reader = csv.reader(io.StringIO(text), delimiter="\t")
    try:
        rows = [(n, row) for n, row in enumerate(reader, start=1) if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise DataFormatError(f"{path}, line {reader.line_num}: {exc}") from None
    first = [cell.strip().lower() for cell in rows[0][1]]
    named = any(c in first for c in FIRST_TEXT + SECOND_TEXT + LABEL) or any(k in options for k in ("text", "text_b", "label"))
    if named:
        header, body = rows[0][1], rows[1:]
        text_a, text_b, label = _columns(path, [c.strip() for c in header], options)
        index = {c.strip(): i for i, c in enumerate(header)}
        wanted = [index[text_a], index[text_b] if text_b else None, index[label]]
    else:  # no header: text, label or text, text, label (PAWS-X / XNLI)
        header, body = None, rows
        width = len(rows[0][1])
        if width not in (2, 3):
            raise DataFormatError(
                f"{path}, line 1: {width} fields and no header; give a header line with text and label columns "
                "(or name them: ::text=COLUMN,label=COLUMN)")
        wanted = [0, 1 if width == 3 else None, width - 1]
    width = len(header) if header is not None else len(rows[0][1])
    a, b, labels, line_numbers = [], [], [], []
    for number, row in body:
        if len(row) != width:
            raise DataFormatError(f"{path}, line {number}: {len(row)} fields, expected {width} (TAB-separated)")
        a.append(_text(row[wanted[0]], path, number))
        if wanted[1] is not None:
            b.append(_text(row[wanted[1]], path, number))
        labels.append(_label(row[wanted[2]], path, number))
        line_numbers.append(number)
    return Examples(a, b if wanted[1] is not None else None, labels, str(path), line_numbers)


def _columns(path: Path, names: list[str], options: dict) -> tuple[str, str | None, str]:
    """(first text, second text or None, label) column names, from the options or the usual names."""
    lower = {n.lower(): n for n in names}

    def pick(key: str, usual: tuple[str, ...], required: bool) -> str | None:
        if key in options:
            if options[key] not in names:
                raise DataFormatError(f"{path}: no column {options[key]!r} (option {key}); columns: {', '.join(names)}")
            return options[key]
        for name in usual:
            if name in lower:
                return lower[name]
        if required:
            raise DataFormatError(
                f"{path}: no {key.replace('_', ' ')} column among {', '.join(names)}; name it with ::{key}=COLUMN")
        return None

    text_a = pick("text", FIRST_TEXT, True)
    text_b = pick("text_b", SECOND_TEXT, False) if "text" not in options or "text_b" in options else None
    label = pick("label", LABEL, True)
    return text_a, text_b, label


def _text(value, path: Path, line: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataFormatError(f"{path}, line {line}: empty or non-text sentence {value!r}")
    return value.strip()


def _label(value, path: Path, line: int) -> str:
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise DataFormatError(f"{path}, line {line}: empty label")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _score(value: str, path: Path, line: int) -> float:
    try:
        return float(value)
    except ValueError:
        raise DataFormatError(f"{path}, line {line}: score {value!r} is not a number") from None


def check_training_labels(examples: Examples) -> list[str]:
    """The sorted class names of classification training data; one class is an error."""
    labels = sorted(set(examples.labels), key=_label_order)
    if len(labels) < 2:
        raise BadInputError(
            f"{examples.path}: every training example has the label {labels[0]!r}; a classifier needs at least two "
            "classes (check the label column and the filters)")
    return labels


def label_ids(examples: Examples, labels: list[str]) -> list[int]:
    """Class index of each example; a label the model does not know is an error naming the line."""
    index = {label: i for i, label in enumerate(labels)}
    ids = []
    for label, line in zip(examples.labels, examples.lines or [None] * len(examples)):
        if label not in index:
            where = f", line {line}" if line else ""
            raise BadInputError(
                f"{examples.path}{where}: unknown label {label!r}; the model knows {', '.join(map(repr, labels))}")
        ids.append(index[label])
    return ids


def _label_order(label: str):
    """Numbers in numeric order (0, 1, 2, 10), names alphabetically after them."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def read_inputs(spec: str | Path, pair: bool) -> Examples:
    """Texts (``pair``: text pairs) to label, without labels: plain text (one per line), TSV (one text, or two
    TAB-separated, each optionally followed by a label that is ignored; or a header naming the columns, labels
    ignored), JSONL, STSb-multi CSV (pairs, scores ignored), or any labelled format above."""
    path, options = parse_spec(spec)
    text, lines, first = _open(path)
    names = [c.strip().lower() for c in first.split("\t")]
    known_header = "sentence_a_en" in names or any(n in names for n in FIRST_TEXT + LABEL) or \
        any(k in options for k in ("text", "text_b", "label"))
    if path.suffix.lower() == ".csv" and pair:  # STSb-multi CSV: its pairs, the scores dropped
        sts = _sts(path, options)
        examples = Examples(sts.texts_a, sts.texts_b, [None] * len(sts), sts.path, sts.lines, sts.language)
    elif known_header or path.suffix.lower() in (".json", ".jsonl") or first.lstrip().startswith("{"):
        examples = _unlabelled(path, lines, text, options, pair)
    else:
        width = 2 if pair else 1
        a, b, numbers = [], [], []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r").split("\t")
            if len(fields) not in (width, width + 1):  # width + 1: a labelled file (PAWS-X, XNLI), label ignored
                raise DataFormatError(
                    f"{path}, line {number}: {len(fields)} TAB-separated fields; this classifier takes "
                    f"{'a pair of texts (2 fields, or 3 with a label that is ignored)' if pair else 'one text per line (1 field, or 2 with a label that is ignored)'}")
            a.append(_text(fields[0], path, number))
            if pair:
                b.append(_text(fields[1], path, number))
            numbers.append(number)
        examples = Examples(a, b if pair else None, [None] * len(a), str(path), numbers)
    examples = _limited(examples, path, options, "texts")
    if pair != examples.is_pair:
        raise BadInputError(f"{path}: this classifier takes {'text pairs' if pair else 'single texts'}, the file holds "
                            f"{'pairs' if examples.is_pair else 'single texts'}")
    return examples


def _unlabelled(path: Path, lines: list[str], text: str, options: dict, pair: bool) -> Examples:
    """A labelled format read without its labels (a missing label column is fine)."""
    first = next(line for line in lines if line.strip())
    if "sentence_A_En" in first:
        return _sick(path, text, options, "pair-classify")
    opts = dict(options)
    if first.lstrip().startswith("{"):
        record = json.loads(first)
        if not any(k in record for k in LABEL) and "label" not in opts:
            opts["label"] = next(iter(record))  # any field: labels are ignored
    else:
        header = [c.strip() for c in first.split("\t")]
        if not any(c.lower() in LABEL for c in header) and "label" not in opts:
            opts["label"] = header[0]
    examples = _jsonl(path, lines, opts) if first.lstrip().startswith("{") else _tsv(path, text, opts)
    examples.labels = [None] * len(examples)
    return examples


def read_many(specs: str | Path | list, task: str) -> Examples:
    """One or more data arguments read as one training set ("translate-train": several languages at once)."""
    specs = [specs] if isinstance(specs, (str, Path)) else list(specs)
    if not specs:
        raise BadInputError("no training data: give at least one --train file")
    parts = [read_examples(spec, task) for spec in specs]
    if len(parts) == 1:
        return parts[0]
    if len({p.is_pair for p in parts}) > 1:
        raise BadInputError(f"{', '.join(map(str, specs))}: some files hold text pairs and some single texts")
    languages = [p.language or "?" for p in parts]
    return Examples([t for p in parts for t in p.texts_a],
                    [t for p in parts for t in p.texts_b] if parts[0].is_pair else None,
                    [label for p in parts for label in p.labels], " + ".join(p.path for p in parts),
                    [n for p in parts for n in p.lines], "+".join(languages))
