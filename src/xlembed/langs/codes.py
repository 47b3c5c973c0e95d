"""Language codes: ISO 639-1, ISO 639-3 and BCP-47 tags to one canonical code per language, and its name.

``canonical('heb') == canonical('iw') == canonical('he-IL') == 'he'``: the shortest ISO 639 code of the language,
without region or script (``zh-Hant-TW`` -> ``zh``), macrolanguage members folded in where the standard does
(``cmn`` -> ``zh``). Parsing and names come from ``langcodes`` (CLDR data); ``languages.json`` adds which
varieties belong to a larger language (``arz`` -> ``ar``) so that coverage is not denied on a label.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import BadInputError

DATA = Path(__file__).with_name("languages.json")


@lru_cache(maxsize=1)
def _part_of() -> dict[str, str]:
    return dict(json.loads(DATA.read_text(encoding="utf-8"))["part_of"])


@lru_cache(maxsize=4096)
def _canonical(code: str) -> str | None:
    import langcodes

    try:
        tag = langcodes.standardize_tag(code.replace("_", "-"), macro=True)
        lang = langcodes.Language.get(tag)
    except (ValueError, LookupError):  # LanguageTagError is a ValueError
        return None
    if not lang.language or lang.language in ("und", "mul", "zxx") or not lang.is_valid():
        return None
    return lang.language


def canonical(code: str) -> str:
    """The canonical code of a language code or BCP-47 tag; an unknown code is a ``BadInputError``."""
    if not isinstance(code, str) or not code.strip():
        raise BadInputError(f"a language code must be a non-empty string such as 'ja' or 'heb', got {code!r}")
    found = _canonical(code.strip())
    if found is None:
        raise BadInputError(
            f"unknown language code {code!r}: give an ISO 639-1 or 639-3 code or a BCP-47 tag "
            "(e.g. ja, heb, zh-TW); `xlembed langs --list` shows the codes xlembed can detect"
        )
    return found


def canonical_or_none(code: str) -> str | None:
    """``canonical(code)``, or None for a code that names no language (where unknown labels are expected)."""
    if not isinstance(code, str) or not code.strip():
        return None
    return _canonical(code.strip())


def is_known(code: str) -> bool:
    return canonical_or_none(code) is not None


def parse_codes(text: str | Sequence[str], what: str = "--langs") -> list[str]:
    """'ja,he,fi' or ['ja', 'heb'] -> canonical codes, each once, in the given order."""
    items = text.split(",") if isinstance(text, str) else [x for item in text for x in str(item).split(",")]
    items = [x.strip() for x in items if x.strip()]
    if not items:
        raise BadInputError(f"{what} is empty: give comma-separated language codes, e.g. ja,he,fi")
    return list(dict.fromkeys(canonical(x) for x in items))


@lru_cache(maxsize=4096)
def name(code: str) -> str:
    """The English name of a language ('he' -> 'Hebrew'); the code itself when langcodes has no name."""
    import langcodes

    found = _canonical(code) or code
    try:
        return langcodes.Language.get(found).display_name()
    except (ValueError, LookupError, ImportError):
        return code


def label(code: str) -> str:
    """'Hebrew (he)'."""
    return f"{name(code)} ({code})"


def alpha3(code: str) -> str:
    """The ISO 639-3 (terminology) code: 'he' -> 'heb'."""
    import langcodes

    return langcodes.Language.get(canonical(code)).to_alpha3()


def family(code: str) -> set[str]:
    """The code, the larger language it belongs to, and the varieties that belong to it."""
    part_of = _part_of()
    out = {code}
    if code in part_of:
        out.add(part_of[code])
    out.update(k for k, v in part_of.items() if v == code)
    return out


def covered(code: str, languages: Iterable[str]) -> bool:
    """Whether a model trained on ``languages`` (canonical codes) covers ``code`` (directly or as a variety)."""
    return bool(family(code) & set(languages))


def canonical_set(codes: Iterable[str]) -> frozenset[str]:
    """Canonical codes of a model's language list (catalogue BCP-47 tags such as zh-TW fold into zh)."""
    return frozenset(canonical(c) for c in codes)
