"""Which languages a model was trained on, and one summarised warning when texts are in others.

The languages come from data, never from a guess: a folder's ``xlembed.json`` (written by compress, finetune
and save), else its ``compress.json`` (the trimmed languages), else its ``distill_results.json`` (English and the
languages of the pairs), else the catalogue entry; a model none of these describes has unknown languages and is
never warned about.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import BadInputError, XlembedWarning
from .codes import canonical_or_none, canonical_set, covered, label
from .detect import DEFAULT_SAMPLE, LanguageMix, language_mix

MIN_SHARE = 0.05  # an uncovered language is reported when it holds at least this share of the sample


class LanguageWarning(XlembedWarning):
    """Texts are in a language the model was not trained on (one warning per call, summarising the sample)."""


def declared_languages(resolved) -> tuple[tuple[str, ...] | None, str]:
    """(canonical codes, where they come from) for a ``loading.Resolved``; (None, reason) when unknown."""
    from ..manifest import read_manifest

    folder = resolved.path
    if folder is not None and Path(folder).is_dir():
        try:
            manifest = read_manifest(Path(folder))
        except Exception:  # noqa: BLE001 - a damaged manifest is load()'s error to report, not this one's
            manifest = None
        if manifest is not None and manifest.languages is not None:
            try:
                return tuple(sorted(canonical_set(manifest.languages))), manifest.languages_source or "the folder's xlembed.json"
            except BadInputError as exc:  # a hand-edited list: say so, and do not fail the load over it
                return None, f"unknown ({Path(folder) / 'xlembed.json'} lists {exc})"
        for read in (_compress_record, _distill_record):
            found = read(Path(folder))
            if found is not None:
                return found
    entry = resolved.entry
    if entry is not None and entry.language_codes is not None:
        return tuple(sorted(canonical_set(entry.language_codes))), f"catalogue entry {entry.name!r}"
    if entry is not None:
        return None, f"unknown (catalogue entry {entry.name!r}: {entry.languages_note or 'no list'})"
    return None, "unknown (not in the catalogue, and its folder does not list them)"


def model_languages(model: str | None) -> tuple[str, tuple[str, ...] | None, str]:
    """(name, languages, source) of a model reference without loading it, nor fetching it: a catalogue name is
    answered from the catalogue, a folder from its files."""
    from .. import catalogue
    from ..loading import Resolved, resolve
    from ..paths import looks_like_path

    entry = catalogue.get(model) if model is not None else catalogue.get(catalogue.default_name())
    if entry is not None and not (model is not None and looks_like_path(model) and Path(model).is_dir()):
        where = Resolved("catalogue", None, entry.name, entry)
    else:
        where = resolve(model)
    languages, source = declared_languages(where)
    return where.name, languages, source


def _compress_record(folder: Path) -> tuple[tuple[str, ...] | None, str] | None:
    """Languages of a folder written by ``xlembed compress`` before its manifest listed them."""
    from ..compress.folder import RECORD_NAME, read_record, trimmed_languages

    if not (folder / RECORD_NAME).is_file():
        return None
    try:
        kept = trimmed_languages(read_record(folder))
    except (OSError, ValueError, BadInputError):
        return None
    return (tuple(sorted(canonical_set(kept))), f"the languages its vocabulary was trimmed to ({RECORD_NAME})") if kept else None


def _distill_record(folder: Path) -> tuple[tuple[str, ...], str] | None:
    """Languages of a student written by ``xlembed distill``: English and the languages of its pairs (what its
    vectors were taught to match the teacher on)."""
    from ..distill.run import SUMMARY_NAME
    path = folder / SUMMARY_NAME
    if not path.is_file():
        return None
    try:
        per_lang = json.loads(path.read_text(encoding="utf-8"))["data"]["pairs_per_language"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    codes = {c for c in (canonical_or_none(lang) for lang in per_lang) if c is not None} | {"en"}
    return tuple(sorted(codes)), f"English and the languages of its distillation pairs ({SUMMARY_NAME})"


@dataclass
class CoverageCheck:
    """A language mix against a model's languages: the uncovered languages with their share of the sample."""

    model: str
    languages: tuple[str, ...] | None
    mix: LanguageMix
    uncovered: list[tuple[str, float]]  # (code, share of the sampled texts), largest first

    @property
    def ok(self) -> bool:
        return not self.uncovered

    def as_dict(self) -> dict:
        return {"model": self.model, "known": self.languages is not None, "mix": self.mix.as_dict(),
                "uncovered": {c: round(s, 4) for c, s in self.uncovered}}


def check(mix: LanguageMix, model: str, languages: Sequence[str] | None, min_share: float = MIN_SHARE) -> CoverageCheck:
    """Which of the mix's main languages ``languages`` does not cover (none when the model's languages are unknown)."""
    uncovered = []
    if languages is not None:
        uncovered = [(c, mix.share(c)) for c in mix.main(min_share) if not covered(c, languages)]
    return CoverageCheck(model=model, languages=tuple(languages) if languages is not None else None, mix=mix,
                         uncovered=uncovered)


def check_texts(texts: Sequence[str], model: str, languages: Sequence[str] | None,
                sample: int = DEFAULT_SAMPLE) -> CoverageCheck:
    """Detect the language mix of a sample of ``texts`` and check it against the model's languages."""
    if languages is None:  # nothing to compare with: skip the detection's cost
        return CoverageCheck(model=model, languages=None, mix=LanguageMix(len(texts), 0), uncovered=[])
    return check(language_mix(texts, sample=sample), model, languages)


def message(result: CoverageCheck, what: str = "texts", off_switch: bool = True) -> str:
    """'97% of the texts look like Hebrew (he), which use-multilingual was not trained on; ... try ...'."""
    from .recommend import suggest

    (code, share), *rest = result.uncovered
    others = [f"{100 * s:.0f}% like {label(c)}" for c, s in rest]
    lead = ", ".join([f"{100 * share:.0f}% of the {what} look like {label(code)}", *others[:-1]])
    lead += f" and {others[-1]}" if others else ""
    codes = [c for c, _ in result.uncovered]
    known = result.languages or ()
    listed = ", ".join(known) if len(known) <= 20 else f"{len(known)} languages"
    text = (f"{lead}, which {result.model} was not trained on (it lists {listed}); "
            f"its vectors for {'them' if len(codes) > 1 else 'it'} are unreliable")
    hint = suggest(codes, exclude=result.model)
    if hint:
        text += f"; try {hint}"
    sampled = result.mix.n_sampled
    scope = f"all {sampled} texts" if sampled == result.mix.n_texts else f"a sample of {sampled} of {result.mix.n_texts} texts"
    return text + f" (detected on {scope}" + ("; --quiet or check_languages=False turns this check off)" if off_switch else ")")


def warn(result: CoverageCheck, what: str = "texts", stacklevel: int = 3) -> None:
    if not result.ok:
        warnings.warn(message(result, what), LanguageWarning, stacklevel=stacklevel)


def check_training_pairs(pairs, student_name: str, student_languages: Sequence[str] | None,
                         sample: int = DEFAULT_SAMPLE) -> list[str]:
    """Distillation data against what it claims: for each language the pairs are labelled with (file name or
    --lang), whether the non-English side looks like it, and whether the student was trained on it (the teacher
    only ever encodes the English side, so its languages do not matter). One message per problem."""
    by_lang: dict[str, list[str]] = {}
    for pair in pairs:
        by_lang.setdefault(pair.lang, []).append(pair.other)
    problems = []
    for lang, texts in sorted(by_lang.items()):
        code = canonical_or_none(lang)
        if code is None:  # a label that names no language: nothing to compare with
            continue
        mix = language_mix(texts, sample=sample)
        main = mix.main(0.5)
        if main and not covered(main[0], [code]):
            problems.append(f"the pairs labelled {lang} (file name or --lang) look like {label(main[0])} on "
                            f"{100 * mix.share(main[0]):.0f}% of {mix.n_sampled} sampled texts ({mix.summary()}): "
                            "check the file names or --lang")
        if student_languages is not None and not covered(code, student_languages):
            problems.append(f"the student {student_name} was not trained on {label(code)} ({len(texts)} pairs): its "
                            "vocabulary and weights know little of it, so it will align worse than its own languages; "
                            "a student trained on it does better")
    return problems


def check_corpus(texts: Sequence[str], keep: Sequence[str], what: str = "training texts",
                 sample: int = DEFAULT_SAMPLE) -> list[str]:
    """Compression data against --langs: languages of the texts that --langs does not keep (5% or more)."""
    result = check(language_mix(texts, sample=sample), "--langs", keep)
    if result.ok:
        return []
    extra = [c for c, _ in result.uncovered]
    listed = ", ".join(f"{label(c)} {100 * share:.0f}%" for c, share in result.uncovered)
    return [f"{listed} of the {what} ({result.mix.n_sampled} sampled) {'is' if len(extra) == 1 else 'are'} not in --langs "
            f"({', '.join(keep)}): the vocabulary trim drops what only {'it uses' if len(extra) == 1 else 'they use'}; "
            "add the language to --langs or leave its text out"]
