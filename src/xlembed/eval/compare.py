"""Compressed models next to their parents in a bench report: size, memory, speed, and quality per kept and
per dropped language (so the user sees what was given up)."""

from __future__ import annotations

from pathlib import Path

from ..langs.codes import canonical_or_none
from .results import RunRecord

SIZE_ROWS = (("params_m", "parameters (M)", ".1f"), ("disk_mb", "disk (MB)", ".1f"), ("peak_rss_mb", "peak RSS (MB)", ".0f"),
             ("load_s", "load (s)", ".2f"))
SPEED_ROWS = (("sent_per_s_b32", "sentences/s (batch 32)", ".0f"), ("latency_ms_2", "latency, 2 sentences (ms)", ".1f"))


def _same_folder(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return a == b


def comparisons(records: list[RunRecord]) -> list[dict]:
    """One comparison per compressed (model, precision) whose parent was benched in the same run:
    {'child': (model, precision), 'parent': (model, precision), 'kept': [...], 'steps': [...], 'rows': [...]}."""
    sizes = {(r.model, r.precision): r.result for r in records if r.result.task == "size"}
    out = []
    for child, result in sizes.items():
        info = (result.details or {}).get("compress")
        if not info:
            continue
        candidates = [key for key, res in sizes.items() if key != child and (
            _same_folder((res.details or {}).get("source"), info.get("parent")) or key[0] == info.get("parent_model"))]
        if not candidates:
            continue
        parent = next((k for k in candidates if k[1] == "fp32"), candidates[0])
        out.append({"child": child, "parent": parent, "kept": info.get("languages") or [], "steps": info.get("steps") or [],
                    "rows": _rows(records, parent, child, info.get("languages") or [])})
    return out


def _scores(records, key, task) -> dict:
    out: dict = {}
    for r in records:
        if (r.model, r.precision) == key and r.result.task == task:
            out.update(r.result.scores)
    return out


def _mains(records, key, task) -> dict[tuple[str, str], float]:
    return {(r.result.dataset, r.result.language): r.result.main for r in records
            if (r.model, r.precision) == key and r.result.task == task}


def _rows(records, parent, child, kept: list[str]) -> list[dict]:
    rows = []
    for task, table in (("size", SIZE_ROWS), ("speed", SPEED_ROWS)):
        p, c = _scores(records, parent, task), _scores(records, child, task)
        for key, label, fmt in table:
            if key in p and key in c:
                ratio = c[key] / p[key] if p[key] else None
                rows.append({"measure": label, "parent": format(p[key], fmt), "child": format(c[key], fmt),
                             "change": f"x{ratio:.2f}" if ratio is not None else "-", "language": ""})
    kept_tatoeba = _tatoeba_codes(kept)

    def is_kept(language: str) -> bool:  # 'cmn', 'zho' and 'zh' are all Chinese
        return language in kept_tatoeba or canonical_or_none(language) in kept_tatoeba

    for task, label in (("tatoeba", "Tatoeba"), ("sts", "STS"), ("classification", "Classification")):
        p, c = _mains(records, parent, task), _mains(records, child, task)
        for key in sorted(set(p) & set(c), key=lambda k: (not is_kept(k[1]), k)):
            dataset, language = key
            status = ""
            if task == "tatoeba" and kept:
                status = "kept" if is_kept(language) else "dropped"
            rows.append({"measure": f"{label} {language}" if task == "tatoeba" else f"{dataset} {language}",
                         "parent": f"{p[key]:.2f}", "child": f"{c[key]:.2f}", "change": f"{c[key] - p[key]:+.2f}",
                         "language": status})
    return rows


def _tatoeba_codes(kept: list[str]) -> set[str]:
    from ..compress.languages import language

    codes = set()
    for code in kept:
        try:
            lang = language(code)
        except Exception:  # noqa: BLE001 - an unknown code simply marks nothing
            continue
        codes.update({lang.tatoeba, lang.code, canonical_or_none(lang.code)})
    return codes


def markdown(records: list[RunRecord]) -> list[str]:
    """Markdown lines of every comparison ([] when the run has none)."""
    lines = []
    for comp in comparisons(records):
        child, parent = comp["child"], comp["parent"]
        lines += ["", f"## Compressed: {child[0]} {child[1]} vs its parent {parent[0]} {parent[1]}", "",
                  f"Steps: {' -> '.join(comp['steps'])}; kept languages: {', '.join(comp['kept']) or '-'}.", "",
                  "| measure | parent | child | change | language |", "| --- | ---: | ---: | ---: | --- |"]
        lines += [f"| {r['measure']} | {r['parent']} | {r['child']} | {r['change']} | {r['language']} |" for r in comp["rows"]]
    return lines
