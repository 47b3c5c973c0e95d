"""``recommend``: rank models x precisions for a user's languages and limits, from bench results.

The measurements are ``results.json`` files of ``xlembed bench`` (the user's own, or ``measured.json`` shipped
with the package: the catalogue models measured on the shared Tatoeba sets, speed and memory on one machine).
Each requested language is, per candidate: measured (its Tatoeba accuracy), trained on but not measured, not
trained on, or unknown. The ranking, in this order:

1. fewer requested languages the model was not trained on (a measured score of 50 or more counts as covered);
2. higher mean Tatoeba accuracy over the requested languages it was measured on; candidates within 1 point of
   the best remaining one count as equal and go fastest first (latency of a 2-sentence request, then peak memory);
   candidates with none of the languages measured come after those with some, fastest first.

A candidate beyond a given limit (latency, memory, disk) is excluded with the reason; so is one that lacks the
measurement a limit needs, since an unmeasured figure cannot be shown to fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import BadInputError
from .codes import canonical_or_none, canonical_set, covered, parse_codes

MEASURED = Path(__file__).with_name("measured.json")
COVERED_SCORE = 50.0  # a measured Tatoeba accuracy at least this high counts as covering the language
TIE_POINTS = 1.0  # candidates this close to the best mean accuracy are ranked by speed


@dataclass
class Candidate:
    """One (model, precision) of a results file with what the ranking reads."""

    model: str
    precision: str
    languages: tuple[str, ...] | None  # trained on (canonical codes); None: unknown
    tatoeba: dict[str, float] = field(default_factory=dict)  # canonical code -> accuracy %
    latency_ms: float | None = None
    sent_per_s: float | None = None
    memory_mb: float | None = None
    disk_mb: float | None = None
    source: str = ""  # the results file
    machine: str = ""

    def status(self, code: str) -> tuple[str, float | None]:
        """('measured', accuracy) | ('trained', None) | ('not trained', None) | ('unknown', None)."""
        if code in self.tatoeba:
            return "measured", self.tatoeba[code]
        if self.languages is None:
            return "unknown", None
        return ("trained", None) if covered(code, self.languages) else ("not trained", None)

    def trained_on(self, code: str) -> bool | None:
        return None if self.languages is None else covered(code, self.languages)


@dataclass
class Ranked:
    candidate: Candidate
    mean_accuracy: float | None  # over the requested languages measured for it
    not_covered: list[str]
    reasons: list[str]


@dataclass
class Recommendation:
    langs: list[str]
    ranked: list[Ranked]
    excluded: list[tuple[Candidate, str]]
    unmeasured: list[str]  # requested languages no candidate was measured on
    sources: list[str]


def candidates_from(paths: Sequence[str | Path] | None = None) -> list[Candidate]:
    """Candidates of the given results files or folders (default: the measurements shipped with xlembed)."""
    from ..eval.report import read_results

    out: list[Candidate] = []
    for path in [Path(p) for p in (paths or [MEASURED])]:
        if not path.exists():
            raise BadInputError(f"results file {path} does not exist: give a results.json written by `xlembed bench` "
                                "(or the folder holding one)")
        try:
            records = read_results(path)
        except OSError as exc:
            raise BadInputError(f"cannot read results from {path}: {exc.strerror or exc} (give a results.json written "
                                "by `xlembed bench`, or the folder holding one)") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadInputError(f"{path} is not a results.json of `xlembed bench` ({type(exc).__name__}: {exc})") from exc
        out += candidates_of(records, str(path))
    if not out:
        raise BadInputError(f"no measured models in {', '.join(map(str, paths or [MEASURED]))}: run `xlembed bench "
                            "--tasks tatoeba,speed` on your models and pass its results.json with --from")
    return out


def candidates_of(records, source: str) -> list[Candidate]:
    from .. import catalogue

    table: dict[tuple[str, str], Candidate] = {}
    for r in records:
        key = (r.model, r.precision)
        if key not in table:
            machine = ", ".join(f"{k}={r.machine[k]}" for k in ("cpu", "cores", "gpu") if r.machine.get(k))
            table[key] = Candidate(model=r.model, precision=r.precision, languages=None, source=source, machine=machine)
            entry = catalogue.get(r.model)
            if entry is not None:
                table[key].languages = tuple(sorted(canonical_set(entry.language_codes)))
        cand, result = table[key], r.result
        if result.task == "tatoeba" and result.dataset == "tatoeba":
            code = canonical_or_none(result.language)
            if code is not None:
                cand.tatoeba[code] = result.main
        elif result.task == "speed":
            cand.latency_ms = result.scores.get("latency_ms_2", cand.latency_ms)
            cand.sent_per_s = result.scores.get("sent_per_s_b32", cand.sent_per_s)
        elif result.task == "size":
            cand.memory_mb = result.scores.get("peak_rss_mb", cand.memory_mb)
            cand.disk_mb = result.scores.get("disk_mb", cand.disk_mb)
            if "languages" in result.details:  # what the bench found when it loaded the model: wins over the catalogue
                langs = result.details["languages"]
                cand.languages = tuple(langs) if langs is not None else None
    return list(table.values())


def recommend(langs: Sequence[str] | str, max_latency_ms: float | None = None, max_memory_mb: float | None = None,
              max_disk_mb: float | None = None, results: Sequence[str | Path] | None = None) -> Recommendation:
    """Rank the measured models x precisions for ``langs`` under the limits (see the module docstring)."""
    codes = parse_codes(langs)
    for value, flag in ((max_latency_ms, "--max-latency-ms"), (max_memory_mb, "--max-memory-mb"), (max_disk_mb, "--max-disk-mb")):
        if value is not None and not value > 0:
            raise BadInputError(f"{flag} must be a positive number, got {value!r}")
    candidates = candidates_from(results)
    limits = (("latency", "latency_ms", max_latency_ms, "ms"), ("peak memory", "memory_mb", max_memory_mb, "MB"),
              ("disk size", "disk_mb", max_disk_mb, "MB"))
    ranked, excluded = [], []
    for cand in candidates:
        beyond = (_beyond(cand, what, attr, limit, unit) for what, attr, limit, unit in limits if limit is not None)
        reason = next((why for why in beyond if why), None)
        if reason:
            excluded.append((cand, reason))
            continue
        ranked.append(_rank(cand, codes, limits))
    ranked = _order(ranked)
    unmeasured = [c for c in codes if not any(c in cand.tatoeba for cand in candidates)]
    return Recommendation(langs=codes, ranked=ranked, excluded=excluded, unmeasured=unmeasured,
                          sources=list(dict.fromkeys(c.source for c in candidates)))


def _order(items: list[Ranked]) -> list[Ranked]:
    """Fewer uncovered languages first; then, among those, the best mean and every candidate within TIE_POINTS
    of it, fastest first (then least memory); then the next best remaining; unmeasured last."""
    def cost(r: Ranked) -> tuple[float, float]:
        c = r.candidate
        return (c.latency_ms if c.latency_ms is not None else float("inf"),
                c.memory_mb if c.memory_mb is not None else float("inf"))

    out: list[Ranked] = []
    for n in sorted({len(r.not_covered) for r in items}):
        group = [r for r in items if len(r.not_covered) == n]
        scored = sorted((r for r in group if r.mean_accuracy is not None), key=lambda r: -r.mean_accuracy)
        while scored:
            band = [r for r in scored if r.mean_accuracy >= scored[0].mean_accuracy - TIE_POINTS]
            out += sorted(band, key=cost)
            scored = [r for r in scored if r not in band]
        out += sorted((r for r in group if r.mean_accuracy is None), key=cost)
    return out


def _beyond(cand: Candidate, what: str, attr: str, limit: float, unit: str) -> str | None:
    value = getattr(cand, attr)
    if value is None:
        return f"no {what} measured (needed for the {limit:g} {unit} limit)"
    if value > limit:
        return f"{what} {value:.1f} {unit} > {limit:g} {unit}"
    return None


def _rank(cand: Candidate, codes: list[str], limits) -> Ranked:
    reasons, scores, not_covered = [], [], []
    for code in codes:
        state, score = cand.status(code)
        trained = cand.trained_on(code)
        if state == "measured":
            scores.append(score)
            trained_text = {True: ", trained on", False: ", not trained on", None: ""}[trained]
            reasons.append(f"{code}: Tatoeba {score:.1f} measured{trained_text}")
            if score < COVERED_SCORE and trained is not True:
                not_covered.append(code)
        elif state == "trained":
            reasons.append(f"{code}: trained on, not measured")
        elif state == "not trained":
            reasons.append(f"{code}: not trained on, not measured")
            not_covered.append(code)
        else:
            reasons.append(f"{code}: unknown (its languages are not listed), not measured")
    for what, attr, limit, unit in limits:
        value = getattr(cand, attr)
        if value is not None:
            reasons.append(f"{what} {value:.1f} {unit}" + (f" <= {limit:g}" if limit is not None else ""))
    mean = sum(scores) / len(scores) if scores else None
    return Ranked(candidate=cand, mean_accuracy=mean, not_covered=not_covered, reasons=reasons)


def suggest(codes: Sequence[str], exclude: str | None = None) -> str | None:
    """A short hint for a warning: the best shipped-measurement model for ``codes`` other than ``exclude``,
    with what is known about it for those languages; None when no model covers them."""
    try:
        found = recommend(list(codes))
    except BadInputError:
        return None
    for item in found.ranked:
        cand = item.candidate
        if cand.model == exclude or item.not_covered:
            continue
        facts = []
        for code in codes:
            state, score = cand.status(code)
            facts.append(f"Tatoeba {code} {score:.1f} measured" if state == "measured" else f"trained on {code}, not measured here")
        return f"{cand.model} ({cand.precision}: {'; '.join(facts)}; `xlembed recommend --langs {','.join(codes)}` ranks the options)"
    return None


def rows(found: Recommendation, top: int | None = None) -> list[dict]:
    """The ranking as table rows."""
    out = []
    for i, item in enumerate(found.ranked[:top] if top else found.ranked, 1):
        c = item.candidate
        out.append({"rank": i, "model": c.model, "precision": c.precision,
                    "mean Tatoeba": round(item.mean_accuracy, 1) if item.mean_accuracy is not None else None,
                    "not covered": ",".join(item.not_covered) or "-",
                    "latency ms": round(c.latency_ms, 1) if c.latency_ms is not None else None,
                    "memory MB": round(c.memory_mb) if c.memory_mb is not None else None,
                    "disk MB": round(c.disk_mb) if c.disk_mb is not None else None,
                    "why": "; ".join(item.reasons)})
    return out
