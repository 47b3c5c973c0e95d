"""Parallel sentence pairs (English <-> another language) for multilingual distillation.

Files are UTF-8 TSV without a header: English, the other language, an optional origin tag.
The language comes from the file name (``corpus.en-de.tsv``) or from the ``lang`` argument.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import random
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import BadInputError, DataFormatError, XlembedWarning

log = logging.getLogger(__name__)

_LANG_IN_NAME = re.compile(r"(?:^|[._-])en-([A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})?)\.", re.IGNORECASE)
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class ParallelPair:
    """One translation pair; ``source`` is ``file:line`` and ``tag`` the file's third column ('' if none)."""

    en: str
    other: str
    lang: str
    source: str
    tag: str = ""


@dataclass
class ReadStats:
    """What ``read_parallel`` read, dropped and kept."""

    files: list[str] = field(default_factory=list)
    n_lines: int = 0
    n_blank: int = 0
    n_malformed: int = 0
    malformed_at: list[str] = field(default_factory=list)  # 'file:line' of the first few skipped lines
    n_too_short: int = 0
    n_too_long: int = 0
    n_duplicates: int = 0
    n_capped: int = 0
    per_lang: dict[str, int] = field(default_factory=dict)  # pairs kept per language

    def summary(self) -> str:
        langs = ", ".join(f"{k}={v}" for k, v in sorted(self.per_lang.items()))
        return (
            f"{sum(self.per_lang.values())} pairs kept from {len(self.files)} files ({langs}); dropped: "
            f"{self.n_malformed} malformed, {self.n_too_short} too short, {self.n_too_long} too long, "
            f"{self.n_duplicates} duplicates, {self.n_capped} over the per-language cap"
        )


class PairList(list):
    """A list of ``ParallelPair`` that also carries the ``ReadStats`` of the read that made it."""

    stats: ReadStats

    def __init__(self, items: Iterable[ParallelPair] = (), stats: ReadStats | None = None):
        super().__init__(items)
        self.stats = stats if stats is not None else ReadStats()


# ---------------------------------------------------------------- file patterns

def expand_braces(pattern: str) -> list[str]:
    """``a.{de,ja}.tsv`` -> ``['a.de.tsv', 'a.ja.tsv']`` (nested and repeated braces too; glob does not do this)."""
    depth = 0
    start = -1
    for i, c in enumerate(pattern):
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                inner = pattern[start + 1 : i]
                options = _split_top_level_commas(inner)
                if len(options) < 2:  # '{x}' is literal text, as in the shell
                    return [pattern[: i + 1] + rest for rest in expand_braces(pattern[i + 1 :])]
                head, tail = pattern[:start], pattern[i + 1 :]
                out: list[str] = []
                for option in options:
                    for expanded in expand_braces(head + option + tail):
                        if expanded not in out:
                            out.append(expanded)
                return out
    return [pattern]


def _split_top_level_commas(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for c in text:
        if c == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        current.append(c)
    parts.append("".join(current))
    return parts


def resolve_files(
    patterns: Sequence[str | os.PathLike] | str | os.PathLike, exclude: Sequence[str] | str | None = None
) -> list[Path]:
    """Files matched by the patterns, in pattern order, each file once.

    A pattern that matches nothing is an error. A ``{a,b}`` alternative that matches nothing while
    others of the same pattern do is skipped with a warning (``{ntrex128,tico19}/*.en-{de,ja}.tsv``
    where tico19 has no German file). ``exclude``: names or globs; a file is left out when its file
    name or the name of any folder on its path matches one (``kyoto_wiki_enja``, ``multi30k.en-fr.tsv``); an error
    when nothing is left.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    patterns = list(patterns)
    if not patterns:
        raise BadInputError("no parallel data given: pass at least one TSV file or glob pattern")
    excludes = exclude_list(exclude)
    files: list[Path] = []
    seen: set[str] = set()
    for pattern in patterns:
        pattern = os.fspath(pattern)
        alternatives = expand_braces(pattern)
        matched, empty, excluded = 0, [], 0
        for alternative in alternatives:
            path = os.path.expanduser(alternative)
            if _GLOB_CHARS.search(path):
                matches = sorted(m for m in glob.glob(path, recursive=True) if os.path.isfile(m))
            else:
                matches = [path] if os.path.isfile(path) else []
            if not matches:
                empty.append(alternative)
                continue
            for m in matches:
                if _is_excluded(m, excludes):
                    excluded += 1
                    continue
                matched += 1
                key = os.path.realpath(m)
                if key not in seen:
                    seen.add(key)
                    files.append(Path(m))
        if not matched and not excluded:
            where = pattern if alternatives == [pattern] else f"{pattern} (alternatives: {', '.join(alternatives)})"
            raise BadInputError(f"no parallel data file matches {where}; check the path and the glob")
        if empty:
            warnings.warn(
                f"{len(empty)} of {len(alternatives)} alternatives of {pattern} match no file and are skipped: "
                f"{', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}",
                XlembedWarning, stacklevel=3,
            )
    if not files:
        raise BadInputError(f"every parallel data file matched by {', '.join(map(os.fspath, patterns))} is excluded "
                            f"by {', '.join(excludes)}; exclude less")
    return files


def exclude_list(items: Sequence[str] | str | None) -> list[str]:
    """Exclusions as one flat list: a comma-separated string or a list (of comma-separated strings) as one flat list, blanks dropped."""
    if items is None:
        return []
    if isinstance(items, str):
        items = [items]
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def _is_excluded(path: str, excludes: list[str]) -> bool:
    parts = Path(path).parts
    return any(fnmatch.fnmatchcase(part, pattern) for pattern in excludes for part in parts)


def lang_from_filename(path: str | os.PathLike) -> str | None:
    """The XX of ``*.en-XX.*`` in a file name (lower-cased), or None."""
    match = _LANG_IN_NAME.search(Path(path).name)
    return match.group(1).lower() if match else None


# ---------------------------------------------------------------- reading

def read_parallel(
    patterns: list[str] | str,
    lang: str | None = None,
    min_chars: int = 1,
    max_chars: int = 1000,
    max_pairs_per_lang: int | None = None,
    seed: int = 0,
    skip_malformed: bool = False,
    exclude: Sequence[str] | str | None = None,
) -> PairList:
    """Read parallel pairs from TSV files (paths or globs, ``{a,b}`` brace lists allowed; ``exclude``: file or
    folder names/globs to leave out, see ``resolve_files``).

    Both sides must have ``min_chars..max_chars`` characters (after stripping); exact duplicate
    (en, other) pairs are kept once. Pairs are shuffled deterministically with ``seed``; the
    per-language cap keeps the first ``max_pairs_per_lang`` pairs of that shuffle. A malformed line
    (fewer than 2 TAB-separated fields, an empty side, bad UTF-8) raises DataFormatError naming
    the file and line, unless ``skip_malformed``: then it is counted in ``result.stats`` and warned
    about once. Blank lines are ignored. Returns a list (``PairList``) with a ``stats`` attribute.
    """
    if min_chars < 0 or max_chars < 1 or min_chars > max_chars:
        raise BadInputError(f"need 0 <= min_chars <= max_chars and max_chars >= 1, got {min_chars}, {max_chars}")
    if max_pairs_per_lang is not None and max_pairs_per_lang < 1:
        raise BadInputError(f"max_pairs_per_lang must be a positive integer or None, got {max_pairs_per_lang!r}")
    if lang is not None and not re.fullmatch(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})?", lang):
        raise BadInputError(f"lang must be a language code such as 'de' or 'zh', got {lang!r}")

    stats = ReadStats()
    files = resolve_files(patterns, exclude)
    by_lang: dict[str, list[ParallelPair]] = defaultdict(list)
    seen_pairs: set[tuple[str, str]] = set()
    for path in files:
        file_lang = _file_language(path, lang)
        stats.files.append(str(path))
        for pair in _read_file(path, file_lang, min_chars, max_chars, skip_malformed, stats):
            key = (pair.en, pair.other)
            if key in seen_pairs:
                stats.n_duplicates += 1
                continue
            seen_pairs.add(key)
            by_lang[file_lang].append(pair)

    rng = random.Random(seed)
    kept: list[ParallelPair] = []
    for code in sorted(by_lang):
        pairs = by_lang[code]
        rng.shuffle(pairs)
        if max_pairs_per_lang is not None and len(pairs) > max_pairs_per_lang:
            stats.n_capped += len(pairs) - max_pairs_per_lang
            pairs = pairs[:max_pairs_per_lang]
        stats.per_lang[code] = len(pairs)
        kept.extend(pairs)
    rng.shuffle(kept)

    if stats.n_malformed:
        shown = ", ".join(stats.malformed_at)
        more = " ..." if stats.n_malformed > len(stats.malformed_at) else ""
        warnings.warn(f"skipped {stats.n_malformed} malformed lines ({shown}{more})", XlembedWarning, stacklevel=2)
    log.info("parallel data: %s", stats.summary())
    return PairList(kept, stats)


def _file_language(path: Path, lang: str | None) -> str:
    named = lang_from_filename(path)
    if named and lang and named != lang.lower():
        raise BadInputError(
            f"{path}: the file name says language {named!r} but lang={lang!r} was given; "
            "rename the file or read it separately"
        )
    code = named or (lang.lower() if lang else None)
    if not code:
        raise BadInputError(
            f"{path}: cannot tell the language: name the file like corpus.en-de.tsv or pass lang (--lang)"
        )
    return code


def _read_file(path: Path, lang: str, min_chars: int, max_chars: int, skip_malformed: bool, stats: ReadStats):
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            stats.n_lines += 1
            problem = None
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                line, problem = "", f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]
            line = line.rstrip("\r\n")
            if problem is None:
                if not line.strip():
                    stats.n_blank += 1
                    continue
                fields = line.split("\t")
                if len(fields) < 2:
                    problem = "expected at least 2 TAB-separated fields (English, other language), found 1"
                else:
                    en, other = fields[0].strip(), fields[1].strip()
                    if not en or not other:
                        problem = f"the {'English' if not en else 'other-language'} side is empty"
            if problem is not None:
                where = f"{path}:{lineno}"
                if not skip_malformed:
                    raise DataFormatError(f"{where}: malformed line: {problem}; fix the line, or pass skip_malformed=True (CLI: --skip-malformed) to skip such lines")
                stats.n_malformed += 1
                if len(stats.malformed_at) < 10:
                    stats.malformed_at.append(where)
                continue
            shortest, longest = min(len(en), len(other)), max(len(en), len(other))
            if shortest < min_chars:
                stats.n_too_short += 1
                continue
            if longest > max_chars:
                stats.n_too_long += 1
                continue
            tag = fields[2].strip() if len(fields) > 2 else ""
            yield ParallelPair(en=en, other=other, lang=lang, source=f"{path}:{lineno}", tag=tag)


# ---------------------------------------------------------------- dev split

def split_dev(
    pairs: Sequence[ParallelPair], dev_size: int | float, seed: int = 0, drop_train_overlap: bool = True
) -> tuple[list[ParallelPair], list[ParallelPair]]:
    """Hold out ``dev_size`` pairs (an int, or a fraction in (0, 1)) as a dev split, stratified by language.

    Each language gets a share of the dev split proportional to its share of ``pairs`` (largest
    remainder), chosen by a shuffle with ``seed``; the result is the same for the same input and seed.
    With ``drop_train_overlap`` (default), train pairs sharing a sentence with a dev pair (multi-way
    corpora repeat the English side across languages) are dropped from train so the dev figures do
    not measure memorisation. Returns (train, dev), both in input order.
    """
    n = len(pairs)
    if isinstance(dev_size, float) and not dev_size.is_integer():
        if not 0 < dev_size < 1:
            raise BadInputError(f"dev_size as a fraction must be in (0, 1), got {dev_size}")
        dev_size = round(dev_size * n)
    dev_size = int(dev_size)
    if dev_size < 0:
        raise BadInputError(f"dev_size must be >= 0, got {dev_size}")
    if dev_size >= n and dev_size > 0:
        raise BadInputError(f"dev_size {dev_size} leaves no training pairs: only {n} pairs were read")
    if dev_size == 0:
        return list(pairs), []

    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by_lang[p.lang].append(i)
    langs = sorted(by_lang)
    exact = {code: dev_size * len(by_lang[code]) / n for code in langs}
    share = {code: int(exact[code]) for code in langs}
    leftover = dev_size - sum(share.values())
    for code in sorted(langs, key=lambda c: (-(exact[c] - share[c]), c))[:leftover]:
        share[code] += 1

    rng = random.Random(seed)
    dev_idx: set[int] = set()
    for code in langs:
        idx = list(by_lang[code])
        rng.shuffle(idx)
        dev_idx.update(idx[: share[code]])

    dev = [pairs[i] for i in sorted(dev_idx)]
    dev_texts = {p.en for p in dev} | {p.other for p in dev}
    train = []
    for i, p in enumerate(pairs):
        if i in dev_idx:
            continue
        if drop_train_overlap and (p.en in dev_texts or p.other in dev_texts):
            continue
        train.append(p)
    return train, dev
