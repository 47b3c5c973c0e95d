"""``xlembed demo``: embed a small multilingual sample, show the cross-lingual similarity table and
check that every sentence finds its own translation."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from .encoder import Encoder
from .similarity import cosine_similarity


@dataclass
class DemoResult:
    model: str
    languages: list[str]
    load_seconds: float
    encode_seconds: float
    matrix_languages: list[str]
    matrix: np.ndarray  # the first sentence in every language, language x language cosine
    per_language: dict[str, dict] = field(default_factory=dict)  # lang -> correct, total, true_cos, other_cos
    failures: list[str] = field(default_factory=list)

    @property
    def all_correct(self) -> bool:
        return not self.failures


def load_sample() -> dict:
    """The bundled sample: {'languages': [...], 'sentences': [{lang: text}, ...]} (same meaning per row)."""
    text = resources.files("xlembed").joinpath("demo_sample.json").read_text(encoding="utf-8")
    return json.loads(text)


def run_demo(model: Encoder | str | None = None) -> DemoResult:
    """Embed the sample with ``model`` (default model when None) and check translation retrieval both ways."""
    from .loading import load

    started = time.perf_counter()
    encoder = model if isinstance(model, Encoder) else load(model)
    load_seconds = time.perf_counter() - started
    sample = load_sample()
    langs, rows = sample["languages"], sample["sentences"]
    texts = [row[lang] for lang in langs for row in rows]
    started = time.perf_counter()
    vectors = encoder.encode(texts, normalize=True)
    encode_seconds = time.perf_counter() - started
    by_lang = {lang: vectors[i * len(rows) : (i + 1) * len(rows)] for i, lang in enumerate(langs)}
    result = DemoResult(
        model=encoder.name,
        languages=langs,
        load_seconds=load_seconds,
        encode_seconds=encode_seconds,
        matrix_languages=langs,
        matrix=cosine_similarity(np.stack([by_lang[lang][0] for lang in langs])),
    )
    english = by_lang["en"]
    for lang in langs:
        if lang == "en":
            continue
        sims = cosine_similarity(by_lang[lang], english)
        correct = 0
        for i in range(len(rows)):
            forward_ok = int(np.argmax(sims[i])) == i
            backward_ok = int(np.argmax(sims[:, i])) == i
            correct += forward_ok and backward_ok
            if not (forward_ok and backward_ok):
                result.failures.append(f"{lang}: {rows[i][lang]!r} <-> {rows[i]['en']!r}")
        off = ~np.eye(len(rows), dtype=bool)
        result.per_language[lang] = {
            "correct": correct,
            "total": len(rows),
            "true_cos": float(np.diag(sims).mean()),
            "other_cos": float(sims[off].mean()),
        }
    return result


def format_demo(result: DemoResult, sample: dict | None = None) -> str:
    """The demo result as text for a terminal."""
    sample = sample or load_sample()
    first = sample["sentences"][0]
    langs = result.matrix_languages
    out = [f"model: {result.model} (loaded in {result.load_seconds:.1f} s; "
           f"{len(langs) * len(sample['sentences'])} sentences encoded in {result.encode_seconds:.2f} s)", ""]
    out.append("Cosine similarity of one sentence in every language:")
    out += [f"  {lang}: {first[lang]}" for lang in langs]
    out.append("      " + "".join(f"{lang:>6}" for lang in langs))
    for i, lang in enumerate(langs):
        out.append(f"  {lang:<4}" + "".join(f"{v:6.2f}" for v in result.matrix[i]))
    out.append("")
    out.append("Translation retrieval against the English sentences (both directions):")
    out.append(f"  {'lang':<6}{'found':>8}{'mean cos, translation':>24}{'mean cos, other':>18}")
    for lang, row in result.per_language.items():
        out.append(f"  {lang:<6}{row['correct']:>4}/{row['total']:<3}{row['true_cos']:>24.3f}{row['other_cos']:>18.3f}")
    total = sum(r["total"] for r in result.per_language.values())
    found = sum(r["correct"] for r in result.per_language.values())
    out.append("")
    out.append(f"{found}/{total} sentences found their translation" + ("" if result.all_correct else "; missed:"))
    out += [f"  {f}" for f in result.failures]
    return "\n".join(out)
