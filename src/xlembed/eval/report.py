"""Write evaluation results as ``results.json``, a Markdown table and a self-contained HTML report.

The HTML page needs no network: its plots are inline SVG written here (no plotting dependency):
quality vs throughput, per-language Tatoeba accuracy, precision drift, and the grade table.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path

from xlembed.eval import compare
from xlembed.eval.grading import Grade, grade as grade_records
from xlembed.eval.results import SCHEMA_VERSION, RunRecord

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
TASK_ORDER = ("tatoeba", "mining", "sts", "classification", "alignment_gap", "drift")
MEAN_AFTER = {"tatoeba": "tatoeba mean", "classification": "classification mean"}  # a mean column after their languages
GRADE_COLOURS = {"S": "#2e7d32", "A": "#558b2f", "B": "#e08600", "C": "#c62828"}


# ----------------------------------------------------------------------------------------------- data
def _key(model: str, precision: str) -> str:
    return f"{model}::{precision}"


def _rows(records: list[RunRecord]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r.model, r.precision) for r in records))


def _columns(records: list[RunRecord]) -> list[tuple[str, str, str]]:
    """(task, dataset, language) columns of main scores, in task order then first appearance."""
    cols = dict.fromkeys(
        (r.result.task, r.result.dataset, r.result.language) for r in records if r.result.task in TASK_ORDER
    )
    return sorted(cols, key=lambda c: TASK_ORDER.index(c[0]))


def _header(col: tuple[str, str, str], records: list[RunRecord]) -> str:
    task, dataset, language = col
    if language == "all":
        main = next(r.result.main_score for r in records if (r.result.task, r.result.dataset, r.result.language) == col)
        return f"{task} {main}"
    return f"{dataset} {language}"


def _table(records: list[RunRecord]) -> dict[tuple[str, str], dict]:
    """(model, precision) -> {column: main score, 'speed': scores, 'size': scores}; the last record wins."""
    table: dict[tuple[str, str], dict] = {row: {} for row in _rows(records)}
    for r in records:
        cell = table[(r.model, r.precision)]
        if r.result.task in TASK_ORDER:
            cell[(r.result.task, r.result.dataset, r.result.language)] = r.result.main
        elif r.result.task in ("speed", "size"):
            cell.setdefault(r.result.task, {}).update(r.result.scores)
    return table


def _fmt(value, spec: str = ".1f") -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def _main_fmt(col: tuple[str, str, str]) -> str:
    return ".4f" if col[0] in ("drift", "alignment_gap") else ".1f"


def _summary(records: list[RunRecord], grades: dict) -> tuple[list[str], list[list[str]]]:
    """The results table as header + rows of plain strings (Markdown and HTML share it)."""
    cols = _columns(records)
    table = _table(records)
    for task in MEAN_AFTER:  # tatoeba: the mean the grade uses, right after the per-language accuracies
        task_cols = [c for c in cols if c[0] == task]
        if task_cols:
            cols.insert(cols.index(task_cols[-1]) + 1, (task, "mean", ""))
            for cell in table.values():
                accs = [cell[c] for c in task_cols if c in cell]
                if accs:
                    cell[(task, "mean", "")] = sum(accs) / len(accs)
    gap_cols = [c for c in cols if c[0] == "alignment_gap"]
    if gap_cols:  # one column: the mean gap over languages (per language in results.json)
        at = cols.index(gap_cols[0])
        cols = [c for c in cols if c[0] != "alignment_gap"]
        cols.insert(at, ("alignment_gap", "mean", ""))
        for cell in table.values():
            gaps = [cell[c] for c in gap_cols if c in cell]
            if gaps:
                cell[("alignment_gap", "mean", "")] = sum(gaps) / len(gaps)
    means = {**{(task, "mean", ""): label for task, label in MEAN_AFTER.items()},
             ("alignment_gap", "mean", ""): "gap mean (cos)"}
    header = ["model", "precision", *(means.get(c) or _header(c, records) for c in cols)]
    header += ["latency 2 sent (ms)", "sent/s b32", "peak RSS (MB)", "params (M)", "grade"]
    rows = []
    for (model, precision), cell in table.items():
        speed, size = cell.get("speed", {}), cell.get("size", {})
        g = grades.get((model, precision))
        rows.append(
            [model, precision]
            + [_fmt(cell.get(c), _main_fmt(c)) for c in cols]
            + [
                _fmt(speed.get("latency_ms_2"), ".1f"),
                _fmt(speed.get("sent_per_s_b32"), ".0f"),
                _fmt(size.get("peak_rss_mb", speed.get("peak_rss_mb")), ".0f"),
                _fmt(size.get("params_m"), ".1f"),
                g.grade if g else "",
            ]
        )
    return header, rows


def _coverage(records: list[RunRecord]) -> tuple[list[str], list[list[str]]]:
    """Tatoeba accuracy per language with whether the model was trained on it: '95.1 yes', '0.9 NO', '88.0 ?'
    (languages unknown); header + rows, empty when no Tatoeba was run."""
    from ..langs.codes import canonical_or_none
    from ..langs.recommend import candidates_of

    langs = list(dict.fromkeys(r.result.language for r in records
                               if r.result.task == "tatoeba" and r.result.dataset == "tatoeba"))
    if not langs:
        return [], []
    rows = []
    for cand in candidates_of(records, ""):
        cells, trained_count = [], 0
        for lang in langs:
            code = canonical_or_none(lang) or lang
            state, score = cand.status(code)
            trained = cand.trained_on(code)
            trained_count += bool(trained)
            mark = {True: "yes", False: "NO", None: "?"}[trained]
            cells.append(f"{score:.1f} {mark}" if state == "measured" else f"- {mark}")
        known = f"{trained_count} of {len(langs)}" if cand.languages is not None else "unknown"
        rows.append([cand.model, cand.precision, known, *cells])
    return ["model", "precision", "trained on", *langs], rows


def _provenance(records: list[RunRecord]) -> tuple[list[dict], list[str], list[str]]:
    machines, seen = [], set()
    for r in records:
        text = json.dumps(r.machine, sort_keys=True)
        if r.machine and text not in seen:
            seen.add(text)
            machines.append(r.machine)
    commands = [c for c in dict.fromkeys(r.command for r in records) if c]
    dates = sorted(d for d in {r.date for r in records} if d)
    return machines, commands, dates


def _grade_dict(grades: dict) -> dict:
    return {
        _key(model, precision): {"model": model, "precision": precision, **g.as_dict()}
        for (model, precision), g in grades.items()
    }


# ------------------------------------------------------------------------------------ JSON / Markdown
def read_results(path: str | Path) -> list[RunRecord]:
    """The records of a ``results.json`` (or of the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema_version", SCHEMA_VERSION) > SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {data['schema_version']} is newer than this xlembed reads")
    return [RunRecord.from_dict(d) for d in data["records"]]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def prompts_line(records: list[RunRecord]) -> str:
    """Which prefix each model+precision's tasks applied (on both sides), e.g. "multilingual-e5-small fp32: 'query: '"."""
    used: dict[tuple[str, str], set] = {}
    for r in records:
        if r.result.prompt is not None:
            used.setdefault((r.model, r.precision), set()).add(r.result.prompt)
    parts = [f"{m} {p}: " + ", ".join(repr(x) if x else "none" for x in sorted(v)) for (m, p), v in used.items()]
    return "Prompt applied on both sides: " + ("; ".join(parts) if parts else "none recorded") + "."


def memory_line(records: list[RunRecord]) -> str:
    """What the peak RSS column measured (the size records' own words), or '' when no record says."""
    how = sorted({r.result.details.get("peak_rss") for r in records
                  if r.result.task == "size" and r.result.details.get("peak_rss")})
    return ("Peak RSS: " + "; ".join(how) + ".") if how else ""


def _markdown(records, grades, title) -> str:
    header, rows = _summary(records, grades)
    out = [f"# {title}", "", "## Results", ""]
    out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
    out.append("|" + " --- |" * len(header))
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    out += ["", prompts_line(records)]
    memory = memory_line(records)
    if memory:
        out += ["", memory]
    cov_header, cov_rows = _coverage(records)
    if cov_rows:
        out += ["", "## Language coverage", "", "Tatoeba accuracy per language, and whether the model was trained on "
                "it (yes / NO / ? unknown: its languages are not listed).", ""]
        out.append("| " + " | ".join(_md_cell(h) for h in cov_header) + " |")
        out.append("|" + " --- |" * len(cov_header))
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in cov_rows]
    out += compare.markdown(records)
    out += ["", "## Grades", "", "| model | precision | grade | reasons |", "| --- | --- | --- | --- |"]
    for (model, precision), g in grades.items():
        out.append(f"| {_md_cell(model)} | {_md_cell(precision)} | {g.grade} | {_md_cell('; '.join(g.reasons))} |")
    out += ["", "Rubric and thresholds: docs/grading.md.", ""]
    machines, commands, dates = _provenance(records)
    out += ["## Machine and command", ""]
    for m in machines:
        out.append("- machine: " + ", ".join(f"{k}={v}" for k, v in m.items()))
    for c in commands:
        out.append(f"- command: `{c}`")
    if dates:
        out.append(f"- measured: {dates[0]}" + (f" to {dates[-1]}" if len(dates) > 1 else ""))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------- SVG
def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], start
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10**e
            if lo <= v <= hi:
                ticks.append(v)
    return ticks


def _svg_open(width: int, height: int, label: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}" font-family="sans-serif" font-size="12">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]


def _text(x, y, s, anchor="middle", size=12, extra="") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}"{extra}>{escape(str(s))}</text>'


def _y_axis(lines, ticks, ymap, left, right, label, fmt="g"):
    for t in ticks:
        y = ymap(t)
        lines.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e0e0e0"/>')
        lines.append(_text(left - 6, y + 4, format(t, fmt), anchor="end"))
    mid = (ymap(ticks[0]) + ymap(ticks[-1])) / 2
    lines.append(_text(16, mid, label, extra=f' transform="rotate(-90 16 {mid:.1f})"'))


def _empty(width, height, label, message) -> str:
    lines = _svg_open(width, height, label)
    lines.append(_text(width / 2, height / 2, message, size=14, extra=' fill="#777"'))
    return "\n".join(lines + ["</svg>"])


def _colour(series: list[tuple[str, str]], key: tuple[str, str]) -> str:
    return PALETTE[series.index(key) % len(PALETTE)]


def _svg_quality_speed(grades: dict, series: list) -> str:
    W, H, L, R, T, B = 900, 440, 70, 200, 30, 60
    pts = [
        (k, g.figures["throughput"], g.figures["tatoeba_accuracy"])
        for k, g in grades.items()
        if "throughput" in g.figures and "tatoeba_accuracy" in g.figures
    ]
    label = "Quality (mean Tatoeba accuracy) vs throughput (sentences/s, batch 32)"
    if not pts:
        return _empty(W, H, label, "no model has both Tatoeba accuracy and throughput measured")
    xs = [p[1] for p in pts]
    ys = [p[2] for p in pts]
    use_log = min(xs) > 0 and max(xs) / min(xs) > 10
    if use_log:
        lo, hi = 10 ** math.floor(math.log10(min(xs))), 10 ** math.ceil(math.log10(max(xs)))
        xticks = _log_ticks(lo, hi)
        xmap = lambda v: L + (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (W - L - R)  # noqa: E731
    else:
        xticks = _nice_ticks(0, max(xs) * 1.1)
        lo, hi = 0, xticks[-1]
        xmap = lambda v: L + (v - lo) / (hi - lo) * (W - L - R)  # noqa: E731
    ylo = max(0.0, math.floor((min(ys) - 5) / 10) * 10)
    yticks = _nice_ticks(ylo, 100)
    ymap = lambda v: H - B - (v - yticks[0]) / (yticks[-1] - yticks[0]) * (H - T - B)  # noqa: E731
    lines = _svg_open(W, H, label)
    _y_axis(lines, yticks, ymap, L, W - R, "mean Tatoeba accuracy (%)")
    for t in xticks:
        x = xmap(t)
        lines.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#e0e0e0"/>')
        lines.append(_text(x, H - B + 16, f"{t:g}"))
    lines.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#444"/>')
    lines.append(_text((L + W - R) / 2, H - 16, "throughput, sentences/s at batch 32" + (" (log scale)" if use_log else "")))
    for i, (k, x, y) in enumerate(sorted(pts, key=lambda p: (p[1], p[2]))):
        px, py = xmap(x), ymap(y)
        name = f"{k[0]} [{k[1]}]"
        lines.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="6" fill="{_colour(series, k)}" stroke="#222">'
            f"<title>{escape(f'{name}: {y:.1f}% at {x:.0f} sent/s')}</title></circle>"
        )
        dy = -10 if i % 2 == 0 else 18
        anchor = "end" if px > (W - R) - 60 else "start"
        lines.append(_text(px + (-9 if anchor == "end" else 9), py + dy, name, anchor=anchor, size=11))
    # legend (grade per point)
    for i, k in enumerate(k for k in series if k in grades):
        y = T + 10 + i * 18
        lines.append(f'<circle cx="{W - R + 16}" cy="{y}" r="5" fill="{_colour(series, k)}"/>')
        lines.append(_text(W - R + 26, y + 4, f"{k[0]} [{k[1]}] {grades[k].grade}", anchor="start", size=11))
    return "\n".join(lines + ["</svg>"])


def _svg_languages(records: list[RunRecord], series: list) -> str:
    label = "Tatoeba accuracy per language"
    acc: dict[tuple, dict[str, float]] = {}
    for r in records:
        if r.result.task == "tatoeba":
            acc.setdefault((r.model, r.precision), {})[r.result.language] = r.result.main
    langs = list(dict.fromkeys(lang for d in acc.values() for lang in d))
    keys = [k for k in series if k in acc]
    W, H, L, R, T, B = 900, 400, 70, 20, 30, 70
    if not langs:
        return _empty(W, H, label, "no Tatoeba results")
    W = max(W, L + R + len(langs) * (len(keys) * 14 + 24))
    legend, x, row = [], L, 0
    for k in keys:
        name = f"{k[0]} [{k[1]}]"
        width = 30 + 6.2 * len(name)
        if x + width > W - R and x > L:
            x, row = L, row + 1
        legend.append((k, name, x, row))
        x += width
    H += 18 * (row + 1)
    B += 18 * (row + 1)  # the legend rows sit under the axis label
    lines = _svg_open(W, H, label)
    yticks = _nice_ticks(0, 100)
    ymap = lambda v: H - B - v / 100 * (H - T - B)  # noqa: E731
    _y_axis(lines, yticks, ymap, L, W - R, "Tatoeba accuracy (%)")
    group = (W - L - R) / len(langs)
    bar = min(40.0, (group - 16) / max(1, len(keys)))
    for gi, lang in enumerate(langs):
        x0 = L + gi * group + (group - bar * len(keys)) / 2
        for si, k in enumerate(keys):
            v = acc[k].get(lang)
            if v is None:
                continue
            x, y = x0 + si * bar, ymap(v)
            lines.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{ymap(0) - y:.1f}" fill="{_colour(series, k)}">'
                f"<title>{escape(f'{k[0]} [{k[1]}] {lang}: {v:.1f}')}</title></rect>"
            )
        lines.append(_text(L + (gi + 0.5) * group, H - B + 16, lang))
    lines.append(f'<line x1="{L}" y1="{ymap(0):.1f}" x2="{W - R}" y2="{ymap(0):.1f}" stroke="#444"/>')
    lines.append(_text((L + W - R) / 2, H - B + 34, "language"))
    # legend along the bottom
    for k, name, x, row in legend:
        y = H - 18 * (len({r for *_, r in legend}) - row) - 4
        lines.append(f'<rect x="{x:.1f}" y="{y}" width="12" height="12" fill="{_colour(series, k)}"/>')
        lines.append(_text(x + 16, y + 10, name, anchor="start", size=11))
    return "\n".join(lines + ["</svg>"])


def _svg_drift(records: list[RunRecord], series: list) -> str:
    label = "Precision drift: mean cosine to FP32 embeddings"
    drift: dict[tuple, dict] = {}
    for r in records:
        if r.result.task == "drift":
            drift[(r.model, r.precision)] = r.result.scores
    keys = [k for k in series if k in drift]
    W, H, L, R, T, B = 900, 380, 80, 20, 30, 90
    if not keys:
        return _empty(W, H, label, "no drift results")
    means = [float(drift[k].get("mean", next(iter(drift[k].values())))) for k in keys]
    mins = [float(drift[k].get("min", drift[k].get("p1", m))) for k, m in zip(keys, means)]
    lo = min(mins + means)
    span = max(1.0 - lo, 1e-4)
    yticks = _nice_ticks(max(0.0, 1.0 - span * 1.15), 1.0)
    ymap = lambda v: H - B - (v - yticks[0]) / (yticks[-1] - yticks[0]) * (H - T - B)  # noqa: E731
    lines = _svg_open(W, H, label)
    decimals = max(2, min(6, 1 - math.floor(math.log10(yticks[1] - yticks[0]))))
    _y_axis(lines, yticks, ymap, L, W - R, "cosine to FP32", fmt=f".{decimals}f")
    slot = (W - L - R) / len(keys)
    bar = min(60.0, slot * 0.6)
    for i, (k, m, mn) in enumerate(zip(keys, means, mins)):
        cx = L + (i + 0.5) * slot
        y = ymap(m)
        lines.append(
            f'<rect x="{cx - bar / 2:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{ymap(yticks[0]) - y:.1f}" '
            f'fill="{_colour(series, k)}"><title>{escape(f"{k[0]} [{k[1]}]: mean {m:.5f}, min {mn:.5f}")}</title></rect>'
        )
        lines.append(f'<line x1="{cx - bar / 2:.1f}" y1="{ymap(mn):.1f}" x2="{cx + bar / 2:.1f}" y2="{ymap(mn):.1f}" stroke="#222" stroke-dasharray="4 2"/>')
        lines.append(_text(cx, y - 5, f"{m:.4f}", size=11))
        ly = H - B + 14
        lines.append(_text(cx, ly, k[1], size=12, extra=' font-weight="bold"'))
        lines.append(_text(cx, ly + 15, k[0] if len(k[0]) <= 28 else k[0][:27] + "…", size=10))
    lines.append(f'<line x1="{L}" y1="{ymap(yticks[0]):.1f}" x2="{W - R}" y2="{ymap(yticks[0]):.1f}" stroke="#444"/>')
    lines.append(_text((L + W - R) / 2, H - 24, "bars: mean cosine; dashed line: minimum (or 1st percentile) cosine", size=11))
    return "\n".join(lines + ["</svg>"])


# ------------------------------------------------------------------------------------------- HTML
CSS = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 24px; } h2 { font-size: 19px; margin-top: 32px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #bbb; padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #eef1f5; } td.t, th.t { text-align: left; } td.t { white-space: nowrap; } td .reasons { white-space: normal; }
tbody tr:nth-child(even) { background: #fafafa; }
.grade { font-weight: bold; color: #fff; text-align: center; }
.figure { overflow-x: auto; margin: 8px 0 16px; }
.reasons { margin: 0; padding-left: 18px; text-align: left; }
.meta { font-size: 13px; color: #444; } code { background: #f3f3f3; padding: 1px 4px; }
"""


def _html_table(header: list[str], rows: list[list[str]], text_cols: int = 2, table_id: str = "") -> str:
    ident = f' id="{table_id}"' if table_id else ""
    out = [f"<table{ident}><thead><tr>"]
    out += [f'<th class="{"t" if i < text_cols else ""}">{escape(h)}</th>' for i, h in enumerate(header)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f'<td class="{"t" if i < text_cols else ""}">{escape(c)}</td>' for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _html_coverage(records) -> str:
    header, rows = _coverage(records)
    if not rows:
        return ""
    return ('<h2>Language coverage</h2><p class="meta">Tatoeba accuracy per language, and whether the model was '
            "trained on it (yes / NO / ? unknown: its languages are not listed; from the catalogue or the model "
            f'folder).</p><div class="figure">{_html_table(header, rows, text_cols=3, table_id="coverage")}</div>')


def _html_comparisons(records) -> str:
    """Each compressed model next to its parent: size, memory, speed, quality per kept and dropped language."""
    parts = []
    for comp in compare.comparisons(records):
        child, parent = comp["child"], comp["parent"]
        rows = [[r["measure"], r["language"], r["parent"], r["child"], r["change"]] for r in comp["rows"]]
        parts.append(
            f"<h2>Compressed: {escape(child[0])} {escape(child[1])} vs its parent {escape(parent[0])} {escape(parent[1])}</h2>"
            f'<p class="meta">Steps: {escape(" -> ".join(comp["steps"]))}; kept languages: '
            f'{escape(", ".join(comp["kept"]) or "-")}. Dropped languages show what was given up.</p>'
            f'<div class="figure">{_html_table(["measure", "language", "parent", "child", "change"], rows, table_id="compression")}</div>'
        )
    return "".join(parts)


def _html(records, grades, title) -> str:
    series = _rows(records)
    header, rows = _summary(records, grades)
    machines, commands, dates = _provenance(records)
    grade_rows = []
    for (model, precision), g in grades.items():
        colour = GRADE_COLOURS.get(g.grade, "#777")
        reasons = "".join(f"<li>{escape(r)}</li>" for r in g.reasons)
        grade_rows.append(
            f'<tr><td class="t">{escape(model)}</td><td class="t">{escape(precision)}</td>'
            f'<td class="grade" style="background:{colour}">{escape(g.grade)}</td>'
            f'<td class="t"><ul class="reasons">{reasons}</ul></td></tr>'
        )
    meta = [f"<li>machine: {escape(', '.join(f'{k}={v}' for k, v in m.items()))}</li>" for m in machines]
    meta += [f"<li>command: <code>{escape(c)}</code></li>" for c in commands]
    if dates:
        meta.append(f"<li>measured: {escape(dates[0])}" + (f" to {escape(dates[-1])}" if len(dates) > 1 else "") + "</li>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<h2>Results</h2>
<p class="meta">Main score per task and language (Tatoeba accuracy %, STS Spearman x100, drift mean cosine to FP32), speed, memory and grade.</p>
<div class="figure">{_html_table(header, rows, table_id="results")}</div>
<p class="meta" id="prompts">{escape(prompts_line(records))}</p>
<p class="meta" id="memory">{escape(memory_line(records))}</p>
{_html_coverage(records)}
{_html_comparisons(records)}
<h2>Quality vs speed</h2>
<div class="figure" id="plot-quality-speed">{_svg_quality_speed(grades, series)}</div>
<h2>Tatoeba accuracy per language</h2>
<div class="figure" id="plot-languages">{_svg_languages(records, series)}</div>
<h2>Precision drift</h2>
<div class="figure" id="plot-drift">{_svg_drift(records, series)}</div>
<h2>Grades</h2>
<p class="meta">The highest level whose every measured criterion holds; unmeasured criteria are skipped (see docs/grading.md).</p>
<table id="grades"><thead><tr><th class="t">model</th><th class="t">precision</th><th>grade</th><th class="t">reasons</th></tr></thead>
<tbody>{"".join(grade_rows)}</tbody></table>
<h2>Machine and command</h2>
<ul class="meta">{"".join(meta)}</ul>
</body></html>
"""


def write_report(
    records: list[RunRecord],
    out_dir: str | Path,
    grades: dict[tuple[str, str], Grade] | None = None,
    title: str = "xlembed evaluation report",
) -> dict[str, Path]:
    """Write results.json, results.md and index.html into ``out_dir``; return their paths by kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if grades is None:
        grades = grade_records(records)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md", "html": out_dir / "index.html"}
    data = {"schema_version": SCHEMA_VERSION, "records": [r.as_dict() for r in records], "grades": _grade_dict(grades)}
    paths["json"].write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(_markdown(records, grades, title), encoding="utf-8")
    paths["html"].write_text(_html(records, grades, title), encoding="utf-8")
    return paths
