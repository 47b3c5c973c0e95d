"""What text of each language looks like to a tokenizer: a distribution over its pieces.

Built-in evidence (no corpus needed), measured on multilingual-e5-small's 250k-piece vocabulary
(benchmarks/results/compress):
- ``wordfreq`` word lists (frequency of ~30k-700k words per language, from Wikipedia, subtitles,
  news, books, web and social media): each word is tokenized in the forms text has it (lower case,
  capitalised, short words in capitals; German 'ss' also as 'ß', which wordfreq folds away; in French,
  Italian and Catalan a vowel-initial word also after an elided "l'", since wordfreq splits "j'aime" into
  "j" and "aime" and the text's "aime" then has no word-start marker), weighted by its frequency.
  Languages written without spaces (Japanese, Chinese) get sentences sampled from the word list
  instead, since their pieces span word boundaries; Chinese also in Traditional characters (OpenCC), as
  the same language code covers both.
- the tokenizer's own scores (a unigram SentencePiece model's log-probabilities, estimated on its
  training corpus) for scripts a language has practically to itself (kana for Japanese, Han for
  Chinese, Hangul for Korean, Thai, Greek, ...): "▁私は" or "あなたは" come from here, the word list
  cannot see them.
- a user's corpus, when given, counts as much as all built-in evidence together.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import BadInputError
from .languages import Language, fits, piece_scripts

PSEUDO_SENTENCES = 50_000  # sampled sentences for a language written without spaces
WORDS_PER_SENTENCE = 8
CAPITALS_WEIGHT = 0.05  # short words in capitals (acronyms)
OPEN_WEIGHT = 0.05  # a word right after an opening bracket or quote: its pieces without the word-start marker
ELISION_WEIGHT = 0.5  # French/Italian/Catalan: a vowel-initial word after an elided l'/j'/d'/qu' (wordfreq splits them off)


ELIDING = set("aeiouhàâäéèêëîïôöûüœæ")


@dataclass
class TokenizerView:
    """A tokenizer as its model runs it (the JSON of the backend transformers builds, not always the file)."""

    data: dict
    tokenizer: object  # tokenizers.Tokenizer
    kind: str  # Unigram | WordPiece | BPE
    pieces: list[str]
    scores: np.ndarray | None
    special_ids: set[int] = field(default_factory=set)
    digest: str = ""  # identifies the tokenizer (its JSON) for caches

    @classmethod
    def from_json(cls, text: str) -> "TokenizerView":
        from tokenizers import Tokenizer

        data = json.loads(text)
        model = data["model"]
        kind = model.get("type")
        if kind == "Unigram":
            pieces = [p for p, _ in model["vocab"]]
            scores = np.array([s for _, s in model["vocab"]], dtype=np.float64)
        elif kind in ("WordPiece", "BPE"):
            vocab = model["vocab"]
            pieces = [""] * (max(vocab.values()) + 1)
            for piece, i in vocab.items():
                pieces[i] = piece
            scores = None
        else:
            raise BadInputError(f"vocabulary trimming supports Unigram, WordPiece and BPE tokenizers, not {kind!r}")
        special = {t["id"] for t in data.get("added_tokens", []) if t.get("special")}
        import hashlib

        return cls(data=data, tokenizer=Tokenizer.from_str(text), kind=kind, pieces=pieces, scores=scores,
                   special_ids=special, digest=hashlib.sha256(text.encode("utf-8")).hexdigest())

    def count(self, texts: Sequence[str], weights: Sequence[float] | None = None) -> Counter:
        """Occurrences of each piece id when the texts are tokenized (weighted per text)."""
        counts: Counter = Counter()
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        for n, enc in enumerate(encoded):
            w = 1.0 if weights is None else weights[n]
            for i in enc.ids:
                counts[i] += w
        return counts


@dataclass
class Evidence:
    """A language's distribution over piece ids (sums to 1) and what it was made from."""

    lang: str
    dist: dict[int, float]
    sources: list[str]


def normalize(counts: dict[int, float]) -> dict[int, float]:
    total = float(sum(counts.values()))
    return {i: v / total for i, v in counts.items() if v > 0} if total > 0 else {}


def mix(parts: Sequence[dict[int, float]]) -> dict[int, float]:
    out: Counter = Counter()
    parts = [p for p in parts if p]
    for part in parts:
        for i, v in part.items():
            out[i] += v / len(parts)
    return dict(out)


_EVIDENCE_CACHE: dict[tuple[str, str], Evidence] = {}


def language_evidence(view: TokenizerView, lang: Language) -> Evidence:
    """The built-in evidence for one language (see the module docstring); an error when there is none.
    Kept in memory per (tokenizer, language): tokenizing a word list takes seconds to a minute."""
    key = (view.digest, lang.code)
    if key not in _EVIDENCE_CACHE:
        _EVIDENCE_CACHE[key] = _language_evidence(view, lang)
        while len(_EVIDENCE_CACHE) > 32:
            _EVIDENCE_CACHE.pop(next(iter(_EVIDENCE_CACHE)))
    return _EVIDENCE_CACHE[key]


def _language_evidence(view: TokenizerView, lang: Language) -> Evidence:
    parts, sources = [], []
    if lang.wordfreq and _wordfreq() is not None:
        parts.append(normalize(_wordfreq_counts(view, lang)))
        sources.append(f"wordfreq:{lang.wordfreq}")
    if view.scores is not None and lang.score_scripts:
        parts.append(_score_distribution(view, lang))
        sources.append("tokenizer scores:" + "+".join(lang.score_scripts))
    if not parts:
        why = ("install the word lists (pip install 'xlembed[compress]')" if lang.wordfreq
               else f"there is no built-in word list for {lang.name}")
        raise BadInputError(
            f"no built-in sample for {lang.code} ({lang.name}): {why}; or pass --corpus with text in that language"
        )
    return Evidence(lang.code, normalize(mix(parts)), sources)


def corpus_evidence(view: TokenizerView, texts: Sequence[str]) -> Evidence:
    return Evidence("corpus", normalize(view.count(texts)), [f"corpus:{len(texts)} texts"])


def _wordfreq():
    try:
        import wordfreq
    except ImportError:
        return None
    return wordfreq


def _words(lang: Language) -> dict[str, float]:
    return _wordfreq().get_frequency_dict(lang.wordfreq, wordlist="best")


def _wordfreq_counts(view: TokenizerView, lang: Language) -> Counter:
    words = _words(lang)
    if not lang.spaces:
        sentences = pseudo_sentences(lang, PSEUDO_SENTENCES, seed=0)
        return view.count(sentences)
    forms: list[str] = []
    weights: list[float] = []
    for word, freq in words.items():
        variants = {word: 1.0}
        if lang.casefold_ss and "ss" in word:
            variants[word.replace("ss", "\u00df")] = 1.0
        for form in list(variants):
            capital = form[:1].upper() + form[1:]
            if capital != form:
                variants[capital] = 1.0
            if len(form) <= 5 and form.upper() not in variants:
                variants[form.upper()] = CAPITALS_WEIGHT
        for form, share in variants.items():
            forms.append(form)
            weights.append(freq * share)
            forms.append("(" + form)  # after a bracket or quote the word has no word-start marker
            weights.append(freq * share * OPEN_WEIGHT)
            if lang.elision and form[:1].lower() in ELIDING:  # "l'école", "j'aime": again no word-start marker
                forms.append("l'" + form)
                weights.append(freq * share * ELISION_WEIGHT)
    return view.count(forms, weights)


def pseudo_sentences(lang: Language, n: int, seed: int, words_per_sentence: int = WORDS_PER_SENTENCE) -> list[str]:
    """Sentences of words drawn by their frequency (no grammar): the shape of the language's text that word
    counts cannot give for languages written without spaces, and a held-out test of word coverage."""
    freq = _words(lang)
    words = list(freq)
    p = np.array([freq[w] for w in words], dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(words), size=(n, words_per_sentence), p=p / p.sum())
    if lang.spaces:
        out = []
        for row in idx:
            text = " ".join(words[i] for i in row)
            out.append(text[:1].upper() + text[1:] + ".")
    else:
        out = ["".join(words[i] for i in row) + "。" for row in idx]
    if lang.opencc:
        converted = _opencc(lang.opencc, out[: n // 2])
        if converted is not None:
            out = converted + out[n // 2:]
    return out


def _opencc(config: str, texts: list[str]) -> list[str] | None:
    try:
        import opencc
    except ImportError:
        return None
    converter = opencc.OpenCC(config)
    return [converter.convert(t) for t in texts]


def _score_distribution(view: TokenizerView, lang: Language) -> dict[int, float]:
    scripts, needs = set(lang.scripts), set(lang.score_scripts)
    weights = {i: float(np.exp(view.scores[i])) for i, piece in enumerate(view.pieces)
               if i not in view.special_ids and fits(piece, scripts, needs)}
    return normalize(weights)


def common_evidence(view: TokenizerView) -> Evidence:
    """Pieces of digits, punctuation and symbols only (shared by every language): by the tokenizer's scores,
    or uniform when it has none."""
    weights = {}
    for i, piece in enumerate(view.pieces):
        if i in view.special_ids or not piece or piece_scripts(piece):
            continue
        weights[i] = float(np.exp(view.scores[i])) if view.scores is not None else 1.0
    return Evidence("common", normalize(weights), ["tokenizer scores" if view.scores is not None else "uniform"])


def heldout_texts(view: TokenizerView, lang: Language, n: int = 500) -> tuple[list[str], str]:
    """Texts of the language the selection was not made from, and what they are: pseudo-sentences from the
    word list (another seed), or sentences sampled from the tokenizer's scores for its scripts."""
    if lang.wordfreq and _wordfreq() is not None:
        return pseudo_sentences(lang, n, seed=12345, words_per_sentence=10), "word-list sentences (held-out seed)"
    dist = _score_distribution(view, lang) if view.scores is not None and lang.score_scripts else {}
    if not dist:
        return [], "none"
    ids = np.array(list(dist))
    p = np.array([dist[i] for i in ids])
    rng = np.random.default_rng(12345)
    rows = rng.choice(ids, size=(n, 12), p=p / p.sum())
    return [view.tokenizer.decode([int(i) for i in row]) for row in rows], "sampled from the tokenizer's scores"
