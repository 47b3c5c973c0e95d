"""The languages the compressor knows (``languages.json``, data), and which script a piece belongs to."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from ..errors import BadInputError

DATA = Path(__file__).with_name("languages.json")
SPACE = "\u2581"  # SentencePiece's word-start marker


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    scripts: tuple[str, ...]
    spaces: bool
    wordfreq: str | None
    score_scripts: tuple[str, ...]
    tatoeba: str | None
    opencc: str | None = None
    casefold_ss: bool = False
    elision: bool = False
    extra: dict = field(default_factory=dict, compare=False)


@lru_cache(maxsize=1)
def _table() -> dict[str, Language]:
    raw = json.loads(DATA.read_text(encoding="utf-8"))
    out = {}
    for code, row in raw.items():
        if code.startswith("_"):
            continue
        out[code] = Language(code=code, name=row["name"], scripts=tuple(row["scripts"]), spaces=bool(row["spaces"]),
                             wordfreq=row.get("wordfreq"), score_scripts=tuple(row.get("score_scripts") or ()),
                             tatoeba=row.get("tatoeba"), opencc=row.get("opencc"),
                             casefold_ss=bool(row.get("casefold_ss")), elision=bool(row.get("elision")))
    return out


def known() -> list[str]:
    return sorted(_table())


def language(code: str) -> Language:
    """The language for an ISO 639-1 code (or its Tatoeba code); an unknown code is an error listing the known ones."""
    table = _table()
    key = code.strip().lower()
    if key in table:
        return table[key]
    by_tatoeba = {lang.tatoeba: lang for lang in table.values() if lang.tatoeba}
    if key in by_tatoeba:
        return by_tatoeba[key]
    raise BadInputError(
        f"unknown language code {code!r}; known: {', '.join(known())} (ISO 639-1; Tatoeba codes such as 'jpn' work too)"
    )


def parse_langs(langs: Sequence[str] | str) -> list[Language]:
    """'en,ja,zh' or ['en', 'ja'] -> Languages, each once, in the given order."""
    items = [x.strip() for x in (langs.split(",") if isinstance(langs, str) else langs) if x and x.strip()]
    if not items:
        raise BadInputError("no languages given: pass the languages to keep, e.g. --langs en,ja,zh")
    out: list[Language] = []
    for item in items:
        lang = language(item)
        if lang not in out:
            out.append(lang)
    return out


def parse_weights(items: Sequence[str] | str) -> dict[str, float]:
    """'en=8,ja=2' or ['en=8', 'ja=2'] -> {'en': 8.0, 'ja': 2.0}: each language's weight in the trim ranking."""
    parts = items.split(",") if isinstance(items, str) else [x for item in items for x in item.split(",")]
    out: dict[str, float] = {}
    for item in (x.strip() for x in parts if x.strip()):
        key, sep, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or not key.strip() or not weight >= 0:
            raise BadInputError(f"a language weight must look like CODE=NUMBER with NUMBER >= 0 (e.g. en=8), got {item!r}")
        out[key.strip()] = weight
    return out


@lru_cache(maxsize=None)
def _script_pattern(script: str):
    import regex

    return regex.compile(r"\p{Script_Extensions=%s}" % script)


@lru_cache(maxsize=1)
def _common():
    import regex

    return regex.compile(r"[\p{Script=Common}\p{Script=Inherited}]")


SCRIPTS = ("Latin", "Cyrillic", "Greek", "Arabic", "Hebrew", "Han", "Hiragana", "Katakana", "Hangul", "Devanagari",
           "Bengali", "Tamil", "Telugu", "Malayalam", "Thai", "Georgian", "Armenian", "Ethiopic", "Khmer")


@lru_cache(maxsize=400_000)
def char_scripts(ch: str) -> frozenset[str]:
    """The scripts a character is written in (Unicode Script_Extensions); empty for Common/Inherited characters
    (digits, punctuation, symbols), {'Other'} for a script not in SCRIPTS."""
    found = frozenset(s for s in SCRIPTS if _script_pattern(s).match(ch))
    if found:
        return found
    return frozenset() if _common().match(ch) else frozenset({"Other"})


def piece_text(piece: str) -> str:
    """The characters of a tokenizer piece without its word markers (SentencePiece '▁', WordPiece '##', byte-level 'Ġ' is a letter and stays)."""
    return piece.replace(SPACE, "").removeprefix("##")


def piece_scripts(piece: str) -> list[frozenset[str]]:
    """One script set per non-Common character of the piece (empty list: digits/punctuation/space only)."""
    return [s for s in (char_scripts(c) for c in piece_text(piece)) if s]


def fits(piece: str, scripts: set[str] | frozenset[str], needs: set[str] | frozenset[str] | None = None) -> bool:
    """True when every non-Common character of the piece is in one of ``scripts`` (and, with ``needs``, at
    least one is in ``needs``); False for pieces of digits/punctuation only."""
    sets = piece_scripts(piece)
    if not sets or not all(s & scripts for s in sets):
        return False
    return needs is None or any(s & needs for s in sets)
