"""Readers for the evaluation data: Tatoeba bitext and the STS formats in ../shared/data.

Every reader raises ``DataFormatError`` with the file path and line number for bad data.

Formats (detected from the file itself, its suffix and name):
- Tatoeba (LASER): ``tatoeba.XXX-eng.XXX`` and ``tatoeba.XXX-eng.eng``, one sentence a line, aligned.
- STS17 TSV: header ``sentence1<TAB>sentence2<TAB>score``, no quoting.
- KorSTS TSV: header ``genre filename year id score sentence1 sentence2``, no quoting.
- JSTS JSON Lines: one object a line with ``sentence1``, ``sentence2``, ``label``.
- STSb-multi CSV: excel dialect, no header, columns sentence1, sentence2, score.
- Plain TSV: text1, text2, score, no header or a header ``text1 text2 score``.
- Classification: a folder of ``<LANG>_train.tsv`` + ``<LANG>_test.tsv`` (the Amazon counterfactual
  layout), TAB-separated with CSV quoting, a header row, then one text and one label a row.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInputError, DataFormatError
from ..io import split_lines

_TATOEBA_FILE = re.compile(r"^tatoeba\.([A-Za-z_]+)-eng\.\1$")
_STS17_FILE = re.compile(r"^STS17\.([a-z]{2}-[a-z]{2})((?:\.[A-Za-z0-9_-]+)*)\.tsv$")
_STSB_FILE = re.compile(r"^stsb-([a-z]{2,3})-(train|dev|test)\.csv$")
_JSTS_FILE = re.compile(r"^(train|valid|test)-v[0-9.]+\.json$")
_CLASSIFY_TRAIN = re.compile(r"^(.+)_train\.tsv$")

# ---------------------------------------------------------------- helpers


def _check_limit(limit) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise BadInputError(f"limit must be a positive integer or None, got {limit!r}")


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found") from None
    except OSError as e:
        raise DataFormatError(f"{path}: cannot read ({e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataFormatError(f"{path}, line {line}: not valid UTF-8 (byte {e.start})") from None
    return text.removeprefix("\ufeff")


def _lines(path: Path) -> list[str]:
    """The file's lines, split on '\\n' only (never on other Unicode separators, which would shift lines)."""
    text = _read_text(path)
    if not text.strip():
        raise DataFormatError(f"{path}, line 1: empty file")
    return split_lines(text)


def _parse_score(value: str, path: Path, line: int) -> float:
    try:
        score = float(value.strip())
    except ValueError:
        raise DataFormatError(f"{path}, line {line}: score {value!r:.40} is not a number") from None
    if not math.isfinite(score):
        raise DataFormatError(f"{path}, line {line}: score {value!r:.40} is not a finite number")
    return score


# ---------------------------------------------------------------- Tatoeba


def tatoeba_languages(folder) -> list[str]:
    """Languages with both ``tatoeba.XXX-eng.XXX`` and ``tatoeba.XXX-eng.eng`` in ``folder``, sorted.

    A folder with no complete language is an error that names the files expected.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(f"{folder}: Tatoeba folder not found")
    langs, halves = [], []
    for p in folder.iterdir():
        m = _TATOEBA_FILE.match(p.name)
        if m and p.is_file():
            (langs if (folder / f"tatoeba.{m.group(1)}-eng.eng").is_file() else halves).append(m.group(1))
    if not langs:
        incomplete = (f"; {', '.join(sorted(halves))} lack(s) the English file tatoeba.XXX-eng.eng" if halves else "")
        raise DataFormatError(
            f"no Tatoeba data in {folder}: expected pairs of files tatoeba.XXX-eng.XXX and tatoeba.XXX-eng.eng "
            f"(e.g. tatoeba.deu-eng.deu + tatoeba.deu-eng.eng, as in the LASER Tatoeba test sets){incomplete}"
        )
    return sorted(langs)


def read_tatoeba(folder, lang: str, limit: int | None = None) -> tuple[list[str], list[str]]:
    """The aligned (xx, eng) sentences of one Tatoeba language, the first ``limit`` when given."""
    _check_limit(limit)
    folder = Path(folder)
    xx_path = folder / f"tatoeba.{lang}-eng.{lang}"
    en_path = folder / f"tatoeba.{lang}-eng.eng"
    if xx_path.is_file() != en_path.is_file():
        have, missing = (xx_path, en_path) if xx_path.is_file() else (en_path, xx_path)
        raise DataFormatError(
            f"Tatoeba language {lang!r} is incomplete in {folder}: {missing.name} is missing (its partner "
            f"{have.name} is there); both files are needed"
        )
    if not xx_path.is_file():
        available = tatoeba_languages(folder)
        raise DataFormatError(
            f"Tatoeba language {lang!r} not found: {xx_path} does not exist; "
            f"available in {folder}: {', '.join(available)}"
        )
    xx = _lines(xx_path)
    en = _lines(en_path)
    if len(xx) != len(en):
        shorter = xx_path if len(xx) < len(en) else en_path
        raise DataFormatError(
            f"ragged Tatoeba files: {xx_path} has {len(xx)} lines but {en_path} has {len(en)}; "
            f"line {min(len(xx), len(en)) + 1} has no partner in {shorter}"
        )
    for path, lines in ((xx_path, xx), (en_path, en)):
        for i, line in enumerate(lines[:limit] if limit else lines, 1):
            if not line.strip():
                raise DataFormatError(f"{path}, line {i}: empty sentence")
    if limit is not None:
        xx, en = xx[:limit], en[:limit]
    return xx, en


# ---------------------------------------------------------------- STS


@dataclass
class StsData:
    """Sentence pairs with gold similarity scores, from one file."""

    texts1: list[str]
    texts2: list[str]
    scores: np.ndarray  # float64, one per pair
    name: str  # dataset: sts17, jsts, stsb_multi_mt, korsts, sts
    language: str  # en-ar, ja, de, ko, ... ('und' when the file name does not tell)
    path: str = ""

    def __len__(self) -> int:
        return len(self.texts1)


def _name_and_language(path: Path, kind: str) -> tuple[str, str]:
    name = path.name
    if kind == "tsv-sts17" or _STS17_FILE.match(name):
        m = _STS17_FILE.match(name)
        if m:
            extra = m.group(2).strip(".")
            return ("sts17-" + extra if extra else "sts17"), m.group(1)
        return "sts17", "und"
    if kind == "csv":
        m = _STSB_FILE.match(name)
        return ("stsb_multi_mt", m.group(1)) if m else ("sts", "und")
    if kind == "jsonl":
        if _JSTS_FILE.match(name) or "jsts" in path.parent.name.lower() or "jsts" in name.lower():
            return "jsts", "ja"
        return "sts", "und"
    if kind == "tsv-korsts":
        return "korsts", "ko"
    return "sts", "und"


def read_sts(path, limit: int | None = None) -> StsData:
    """Read one STS file of any supported format (see the module docstring)."""
    _check_limit(limit)
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: STS file not found")
    lines = _lines(path)
    first = next(line for line in lines if line.strip())
    if path.suffix.lower() in (".json", ".jsonl") or first.lstrip().startswith("{"):
        kind, rows = "jsonl", _jsonl_rows(path, lines)
    elif path.suffix.lower() == ".csv":
        kind, rows = "csv", _csv_rows(path)
    else:
        kind, rows = _tsv_rows(path, lines)
    if not rows:
        raise DataFormatError(f"{path}, line {len(lines) + 1}: no sentence pairs (header only)")
    if limit is not None:
        rows = rows[:limit]
    name, language = _name_and_language(path, kind)
    return StsData(
        texts1=[r[0] for r in rows],
        texts2=[r[1] for r in rows],
        scores=np.array([r[2] for r in rows], dtype=np.float64),
        name=name,
        language=language,
        path=str(path),
    )


def _check_texts(path: Path, line: int, t1, t2) -> None:
    for t in (t1, t2):
        if not isinstance(t, str) or not t.strip():
            raise DataFormatError(f"{path}, line {line}: empty or missing sentence")


def _jsonl_rows(path: Path, lines: list[str]) -> list[tuple[str, str, float]]:
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}, line {i}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise DataFormatError(f"{path}, line {i}: expected a JSON object")
        missing = [k for k in ("sentence1", "sentence2") if k not in obj]
        label_key = "label" if "label" in obj else "score" if "score" in obj else None
        if missing or label_key is None:
            missing += [] if label_key else ["label"]
            raise DataFormatError(f"{path}, line {i}: missing field(s) {', '.join(missing)}")
        _check_texts(path, i, obj["sentence1"], obj["sentence2"])
        label = obj[label_key]
        if isinstance(label, bool) or not isinstance(label, (int, float, str)):
            raise DataFormatError(f"{path}, line {i}: {label_key} {label!r:.40} is not a number")
        score = float(label) if not isinstance(label, str) else _parse_score(label, path, i)
        if not math.isfinite(score):
            raise DataFormatError(f"{path}, line {i}: {label_key} {label!r:.40} is not a finite number")
        rows.append((obj["sentence1"], obj["sentence2"], score))
    return rows


def _csv_rows(path: Path) -> list[tuple[str, str, float]]:
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            for fields in reader:
                line = reader.line_num
                if not fields or all(not x.strip() for x in fields):
                    continue
                if len(fields) != 3:
                    raise DataFormatError(
                        f"{path}, line {line}: expected 3 columns (sentence1, sentence2, score), got {len(fields)}"
                    )
                if not rows and fields[2].strip().lower() in ("score", "similarity_score", "label"):
                    continue  # a header row
                _check_texts(path, line, fields[0], fields[1])
                rows.append((fields[0], fields[1], _parse_score(fields[2], path, line)))
        except csv.Error as e:
            raise DataFormatError(f"{path}, line {reader.line_num}: bad CSV ({e})") from None
    return rows


def _tsv_rows(path: Path, lines: list[str]) -> tuple[str, list[tuple[str, str, float]]]:
    header = [h.strip().lower() for h in lines[0].split("\t")]
    kind = "tsv"
    cols = (0, 1, 2)
    start = 0
    if {"sentence1", "sentence2", "score"} <= set(header):
        cols = (header.index("sentence1"), header.index("sentence2"), header.index("score"))
        kind = "tsv-korsts" if "genre" in header else "tsv-sts17" if _STS17_FILE.match(path.name) else "tsv"
        start = 1
    elif {"text1", "text2", "score"} <= set(header):
        cols = (header.index("text1"), header.index("text2"), header.index("score"))
        start = 1
    width = len(header) if start else None
    rows = []
    for i, line in enumerate(lines[start:], start + 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if width is None:
            width = len(fields)
            if width < 3:
                raise DataFormatError(f"{path}, line {i}: expected 3 tab-separated columns (text1, text2, score), got {width}")
        if len(fields) != width:
            raise DataFormatError(f"{path}, line {i}: expected {width} tab-separated columns, got {len(fields)}")
        t1, t2, s = fields[cols[0]], fields[cols[1]], fields[cols[2]]
        _check_texts(path, i, t1, t2)
        rows.append((t1, t2, _parse_score(s, path, i)))
    return kind, rows


def sts_files(path) -> list[Path]:
    """The STS files to evaluate: a file is itself; a folder gives its test files.

    sts17: every STS17.*.tsv except the WMT track (STS17.en-es.wmt.tsv: scores only 2-5 on news, not in
    MTEB's STS17; pass the file itself to evaluate it); stsb_multi_mt: every stsb-*-test.csv; korsts: sts-test.tsv;
    jsts: test-v*.json when its first record has a label, else valid-v*.json.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataFormatError(f"{path}: STS file or folder not found")
    found = [p for p in sorted(path.glob("STS17.*.tsv")) if ".wmt." not in p.name] or sorted(path.glob("stsb-*-test.csv"))
    if found:
        return found
    if (path / "sts-test.tsv").is_file():
        return [path / "sts-test.tsv"]
    tests = sorted(path.glob("test-v*.json"))
    if tests and _first_record_has_label(tests[-1]):
        return [tests[-1]]
    valids = sorted(path.glob("valid-v*.json"))
    if valids:
        return [valids[-1]]
    raise DataFormatError(
        f"{path}: no STS test files found (expected STS17.*.tsv, stsb-*-test.csv, sts-test.tsv, "
        "test-v*.json or valid-v*.json)"
    )


def _first_record_has_label(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    return "label" in json.loads(line)
    except (OSError, ValueError):
        return False
    return False


# ---------------------------------------------------------------- classification

CLASSIFY_TEXT_COLUMNS = ("sentence", "text")
CLASSIFY_LABEL_COLUMNS = ("label", "is_counterfactual")
# file prefix -> language code where the prefix is not the code (Amazon counterfactual writes JP for Japanese)
CLASSIFY_LANGUAGE_OF_PREFIX = {"jp": "ja"}
# evaluated only when named: Amazon counterfactual's EN-ext overlaps EN across splits (see its SOURCE.md)
CLASSIFY_ONLY_WHEN_ASKED = ("en-ext",)


@dataclass
class ClassificationData:
    """Texts and their labels (as written in the file), from one file."""

    texts: list[str]
    labels: list[str]
    path: str

    def __len__(self) -> int:
        return len(self.texts)


def classification_sets(folder) -> dict[str, str]:
    """Language code -> file prefix for every ``<PREFIX>_train.tsv`` with a ``<PREFIX>_test.tsv`` in ``folder``.

    The code is the prefix in lower case (EN -> en), except those in ``CLASSIFY_LANGUAGE_OF_PREFIX`` (JP -> ja).
    A folder with no complete pair is an error that names the files expected.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(f"{folder}: classification folder not found")
    sets, halves = {}, []
    for p in sorted(folder.iterdir()):
        m = _CLASSIFY_TRAIN.match(p.name)
        if m and p.is_file():
            stem = m.group(1)
            if (folder / f"{stem}_test.tsv").is_file():
                sets[CLASSIFY_LANGUAGE_OF_PREFIX.get(stem.lower(), stem.lower())] = stem
            else:
                halves.append(p.name)
    if not sets:
        incomplete = f"; {', '.join(halves)} lack(s) the matching *_test.tsv" if halves else ""
        raise DataFormatError(
            f"no classification data in {folder}: expected pairs of files <LANG>_train.tsv and <LANG>_test.tsv "
            f"(e.g. EN_train.tsv + EN_test.tsv, as in the Amazon counterfactual set){incomplete}"
        )
    return sets


def classification_languages(folder, langs=None) -> list[tuple[str, str]]:
    """(language code, file prefix) pairs to evaluate, in the order asked (default: all, sorted).

    ``langs`` entries may be the code (``ja``), the file prefix (``JP``) or a Tatoeba code (``jpn``); one
    the folder lacks is an error listing those it has. By default ``CLASSIFY_ONLY_WHEN_ASKED`` are left out.
    """
    sets = classification_sets(folder)
    if langs is None:
        chosen = [code for code in sorted(sets) if code not in CLASSIFY_ONLY_WHEN_ASKED] or sorted(sets)
        return [(code, sets[code]) for code in chosen]
    by_prefix = {stem.lower(): code for code, stem in sets.items()}
    out = []
    for asked in [langs] if isinstance(langs, str) else list(langs):
        key = asked.strip().lower()
        code = key if key in sets else by_prefix.get(key) or _iso_code(key)
        if code not in sets:
            raise DataFormatError(
                f"classification language {asked!r} not found in {folder}; available (code and file prefix of "
                f"each <LANG>_train.tsv + <LANG>_test.tsv pair): {', '.join(f'{c} ({s})' for c, s in sorted(sets.items()))}"
            )
        out.append((code, sets[code]))
    return list(dict.fromkeys(out))


def _iso_code(code: str) -> str | None:
    """The ISO 639-1 code of a Tatoeba code (jpn -> ja), None for a code the language table lacks."""
    from ..compress.languages import language

    try:
        return language(code).code
    except BadInputError:
        return None


def read_classification(path, limit: int | None = None) -> ClassificationData:
    """Texts and labels of one classification TSV, the first ``limit`` rows when given.

    TAB-separated with CSV quoting (a field holding a tab or a double quote is quoted, quotes doubled).
    The first row is a header: columns named sentence/text and label/is_counterfactual are used, else the
    first two columns. Every row must have as many fields as the header; blank lines are skipped.
    Stray SUB (\\x1a) characters are removed.
    """
    _check_limit(limit)
    path = Path(path)
    text = _read_text(path).replace("\x1a", "")  # stray SUB characters (Amazon counterfactual de/ja), as finetune reads
    if not text.strip():
        raise DataFormatError(f"{path}, line 1: empty file")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
    header: list[str] | None = None
    texts: list[str] = []
    labels: list[str] = []
    while limit is None or len(texts) < limit:
        line = reader.line_num + 1  # where the next row starts (a quoted field may span lines)
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataFormatError(f"{path}, line {line}: bad TSV ({e})") from None
        if not any(f.strip() for f in fields):
            continue
        if header is None:
            header = [h.strip().lower() for h in fields]
            if len(header) < 2:
                raise DataFormatError(
                    f"{path}, line {line}: the header has {len(header)} field; expected a text column and a label "
                    "column separated by a tab (e.g. sentence<TAB>label)"
                )
            text_col = next((header.index(c) for c in CLASSIFY_TEXT_COLUMNS if c in header), 0)
            label_col = next((header.index(c) for c in CLASSIFY_LABEL_COLUMNS if c in header), 1)
            if text_col == label_col:
                raise DataFormatError(
                    f"{path}, line {line}: cannot tell the text column from the label column in the header "
                    f"{fields!r:.80}; name them {'/'.join(CLASSIFY_TEXT_COLUMNS)} and {'/'.join(CLASSIFY_LABEL_COLUMNS)}"
                )
            continue
        if len(fields) != len(header):
            raise DataFormatError(
                f"{path}, line {line}: expected {len(header)} tab-separated fields as in the header, got {len(fields)}; "
                'a field containing a tab or a double quote must be quoted ("...", with inner quotes doubled)'
            )
        sentence, label = fields[text_col], fields[label_col].strip()
        if not sentence.strip():
            raise DataFormatError(f"{path}, line {line}: empty text")
        if not label:
            raise DataFormatError(f"{path}, line {line}: empty label")
        texts.append(sentence)
        labels.append(label)
    if not texts:
        raise DataFormatError(f"{path}, line {reader.line_num + 1}: no rows after the header")
    return ClassificationData(texts=texts, labels=labels, path=str(path))
