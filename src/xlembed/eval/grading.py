"""Grade (model, precision) pairs S/A/B/C from measured results, by a written rubric.

The rubric is data (``rubric.json`` next to this file; see docs/grading.md). A pair gets the highest
level whose every *measured* criterion holds; a criterion with no measurement is skipped and the
reasons say so. Each reason states the figure against the threshold, e.g. ``tatoeba 89.0 < 90 (S)``.

Users adjust thresholds with ``overrides`` (``{"S.tatoeba_accuracy": 92}``; ``None`` drops a
criterion from a level; a key without a dot sets a top-level setting such as
``coverage_min_accuracy``) or a whole rubric of their own with ``load_rubric(path)``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xlembed.eval.results import RunRecord

RUBRIC_PATH = Path(__file__).with_name("rubric.json")
QUALITY = ("tatoeba_accuracy", "sts_spearman")
NOT_GRADED = "n/a"


@dataclass
class Grade:
    grade: str  # S | A | B | C, or "n/a" when there is no quality measurement at all
    reasons: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def load_rubric(path: str | Path | None = None) -> dict:
    """Read a rubric JSON (the built-in one when ``path`` is None) and check its shape."""
    data = json.loads(Path(path or RUBRIC_PATH).read_text(encoding="utf-8"))
    _validate(data)
    return data


def apply_overrides(rubric: dict, overrides: dict | None) -> dict:
    """A copy of ``rubric`` with ``{"LEVEL.criterion": value}`` / ``{"setting": value}`` applied."""
    out = copy.deepcopy(rubric)
    for key, value in (overrides or {}).items():
        if "." in key:
            level, name = key.split(".", 1)
            if level not in out["levels"]:
                raise ValueError(f"override {key!r}: unknown level {level!r} (levels: {out['levels']})")
            if name not in out["criteria"]:
                raise ValueError(f"override {key!r}: unknown criterion {name!r} (criteria: {list(out['criteria'])})")
            level_thresholds = out["thresholds"].setdefault(level, {})
            if value is None:
                level_thresholds.pop(name, None)
            else:
                level_thresholds[name] = float(value)
        else:
            if key not in out or key in ("criteria", "thresholds", "levels"):
                raise ValueError(f"override {key!r}: not a rubric setting (use 'LEVEL.criterion' for thresholds)")
            out[key] = value
    _validate(out)
    return out


def _validate(rubric: dict) -> None:
    for key in ("levels", "fallback", "criteria", "thresholds", "coverage_min_accuracy"):
        if key not in rubric:
            raise ValueError(f"rubric lacks {key!r}")
    for level, thresholds in rubric["thresholds"].items():
        if level not in rubric["levels"]:
            raise ValueError(f"rubric thresholds for unknown level {level!r}")
        for name, value in thresholds.items():
            if name not in rubric["criteria"]:
                raise ValueError(f"rubric level {level}: unknown criterion {name!r}")
            if not isinstance(value, (int, float)):
                raise ValueError(f"rubric level {level}: {name} must be a number, got {value!r}")
    for name, crit in rubric["criteria"].items():
        if crit.get("direction") not in ("min", "max"):
            raise ValueError(f"rubric criterion {name}: direction must be 'min' or 'max'")


def _latest(records: list[RunRecord]) -> dict[tuple, RunRecord]:
    """One record per (task, dataset, language): the last one given wins."""
    out: dict[tuple, RunRecord] = {}
    for rec in records:
        out[(rec.result.task, rec.result.dataset, rec.result.language)] = rec
    return out


def figures_for(records: list[RunRecord], rubric: dict) -> dict:
    """The graded figures (and a few informative ones) for the records of one model+precision."""
    latest = _latest(records)
    figs: dict = {}
    tatoeba = {k[2]: r.result.main for k, r in latest.items() if k[0] == "tatoeba"}
    if tatoeba:
        figs["tatoeba_accuracy"] = sum(tatoeba.values()) / len(tatoeba)
        floor = float(rubric["coverage_min_accuracy"])
        figs["coverage"] = sum(v >= floor for v in tatoeba.values()) / len(tatoeba)
        figs["tatoeba_languages"] = dict(sorted(tatoeba.items()))
    sts = {f"{k[1]} {k[2]}": r.result.main for k, r in latest.items() if k[0] == "sts"}
    if sts:
        figs["sts_spearman"] = sum(sts.values()) / len(sts)
        figs["sts_files"] = dict(sorted(sts.items()))
    for name in ("throughput", "peak_rss_mb"):
        key = rubric["criteria"].get(name, {}).get("score")
        if not key:
            continue
        task_order = ("speed", "size") if name == "throughput" else ("size", "speed")
        for task in task_order:
            values = [r.result.scores[key] for k, r in latest.items() if k[0] == task and key in r.result.scores]
            if values:
                figs[name] = float(values[-1])
                break
    for k, r in latest.items():
        if k[0] == "drift":
            figs["drift_mean_cosine"] = float(r.result.scores.get("mean", r.result.main))
        elif k[0] == "speed" and "latency_ms_2" in r.result.scores:
            figs["latency_ms_2"] = float(r.result.scores["latency_ms_2"])
        elif k[0] == "alignment_gap":
            figs["alignment_gap"] = r.result.main
    return figs


def _fmt(value: float, spec: str = "g") -> str:
    return format(value, spec)


def _num(value: float) -> str:
    """A threshold as written in the rubric: 90, 0.9, 1536."""
    return f"{value:g}"


def grade_one(figures: dict, rubric: dict) -> Grade:
    criteria = rubric["criteria"]
    reasons: list[str] = []
    if not any(name in figures for name in QUALITY):
        return Grade(NOT_GRADED, ["no quality measurement (tatoeba or sts): not graded"], figures)
    skipped = [
        name for name in dict.fromkeys(n for lvl in rubric["levels"] for n in rubric["thresholds"].get(lvl, {}))
        if name not in figures
    ]
    for name in skipped:
        reasons.append(f"{criteria[name]['label']}: not measured, skipped")
    for level in rubric["levels"]:
        passed, failed = [], []
        for name, threshold in rubric["thresholds"].get(level, {}).items():
            if name not in figures:
                continue
            crit = criteria[name]
            value = float(figures[name])
            eps = 1e-9 * max(1.0, abs(threshold))  # a mean like (90.1 + 89.9) / 2 counts as 90
            ok = value >= threshold - eps if crit["direction"] == "min" else value <= threshold + eps
            op = (">=" if ok else "<") if crit["direction"] == "min" else ("<=" if ok else ">")
            text = f"{crit['label']} {_fmt(value, crit.get('format', 'g'))} {op} {_num(threshold)} ({level})"
            (passed if ok else failed).append(text)
        if not failed:
            return Grade(level, reasons + passed, figures)
        reasons.extend(failed)
    return Grade(rubric["fallback"], reasons, figures)


def grade(
    records: list[RunRecord], rubric: dict | None = None, overrides: dict | None = None
) -> dict[tuple[str, str], Grade]:
    """Grade every (model, precision) found in ``records``."""
    rubric = apply_overrides(rubric if rubric is not None else load_rubric(), overrides)
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for rec in records:
        groups.setdefault((rec.model, rec.precision), []).append(rec)
    return {key: grade_one(figures_for(recs, rubric), rubric) for key, recs in groups.items()}


def thresholds_table(rubric: dict | None = None) -> str:
    """The rubric's thresholds as a Markdown table (docs/grading.md embeds it; a test keeps them equal)."""
    rubric = rubric or load_rubric()
    levels = rubric["levels"]
    lines = ["| criterion | " + " | ".join(levels) + " |", "| --- |" + " --- |" * len(levels)]
    for name, crit in rubric["criteria"].items():
        op = ">=" if crit["direction"] == "min" else "<="
        cells = []
        for level in levels:
            value = rubric["thresholds"].get(level, {}).get(name)
            cells.append(f"{op} {_num(value)}" if value is not None else "-")
        lines.append(f"| {crit['label']} (`{name}`) | " + " | ".join(cells) + " |")
    return "\n".join(lines)
