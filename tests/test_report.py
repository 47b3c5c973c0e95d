"""Grading by the written rubric, and the JSON / Markdown / HTML report (also rendered in headless Chromium)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from xlembed.eval.grading import RUBRIC_PATH, Grade, grade, load_rubric, thresholds_table
from xlembed.eval.report import read_results, write_report
from xlembed.eval.results import RunRecord, TaskResult

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
MACHINE = {"cpu": "Test CPU <2 cores>", "cores": 2, "platform": "Linux", "python": "3.11"}
COMMAND = "xlembed eval --tasks tatoeba,sts,drift,speed,size"


def rec(model, precision, task, dataset, language, scores, main, prompt=None) -> RunRecord:
    return RunRecord(
        model=model,
        precision=precision,
        backend="onnx" if precision == "int8" else "torch",
        result=TaskResult(task, dataset, language, scores, main, prompt=prompt),
        machine=MACHINE,
        versions={"xlembed": "0.1.0"},
        command=COMMAND,
        date="2025-01-01T00:00:00+00:00",
    )


def model_records(model, precision, accs, sts=None, sent_s=None, rss=None, drift=None, latency=5.0) -> list[RunRecord]:
    out = [rec(model, precision, "tatoeba", "tatoeba", lang, {"accuracy": a}, "accuracy", "") for lang, a in accs.items()]
    for lang, s in (sts or {}).items():
        out.append(rec(model, precision, "sts", "sts17" if "-" in lang else "jsts", lang, {"spearman": s}, "spearman"))
    if drift is not None:
        out.append(rec(model, precision, "drift", "tatoeba", "all", {"mean": drift, "p1": drift - 0.01, "min": drift - 0.02}, "mean"))
    if sent_s is not None:
        scores = {"latency_ms_2": latency, "sent_per_s_b1": sent_s / 4, "sent_per_s_b32": sent_s}
        out.append(rec(model, precision, "speed", "tatoeba", "all", scores, "sent_per_s_b32"))
    if rss is not None:
        out.append(rec(model, precision, "size", "-", "all", {"params_m": 117.5, "disk_mb": 450.0, "peak_rss_mb": rss}, "peak_rss_mb"))
    return out


LANGS = ("jpn", "cmn", "deu", "fra", "rus", "ara")


def at(value, n=len(LANGS)) -> dict[str, float]:
    return {lang: value for lang in LANGS[:n]}


@pytest.fixture
def records() -> list[RunRecord]:
    """Three models, two precisions each, shaped like FINDINGS.md."""
    out = []
    e5 = {"jpn": 83.7, "cmn": 90.5, "deu": 97.1, "fra": 92.5, "rus": 91.5, "ara": 79.0}
    e5_int8 = {"jpn": 82.5, "cmn": 89.1, "deu": 96.5, "fra": 92.0, "rus": 91.1, "ara": 78.2}
    use = {"jpn": 91.0, "cmn": 90.1, "deu": 97.8, "fra": 92.1, "rus": 92.1, "ara": 77.0}
    mini = {"jpn": 3.6, "cmn": 4.6, "deu": 12.7, "fra": 13.7, "rus": 0.4, "ara": 0.7}
    sts = {"en-en": 86.6, "en-ar": 57.9, "ja": 79.0}
    out += model_records("multilingual-e5-small", "fp32", e5, sts, 125, 1200, drift=1.0)
    out += model_records("multilingual-e5-small", "int8", e5_int8, sts, 450, 1500, drift=0.990)
    out += model_records("use-multilingual-v3", "fp32", use, None, 2600, 158, drift=1.0)
    out += model_records("use-multilingual-v3", "bf16", use, None, 3100, 150, drift=0.9999)
    out += model_records("all-MiniLM-L6-v2", "fp32", mini, {"en-en": 87.6}, 300, 400, drift=1.0)
    out += model_records("all-MiniLM-L6-v2", "int8", mini, {"en-en": 87.0}, 900, 300, drift=0.985)
    return out


# ---------------------------------------------------------------------------------------- grading
def test_rubric_file_is_valid_and_has_the_written_levels():
    rubric = load_rubric()
    assert rubric["levels"] == ["S", "A", "B"] and rubric["fallback"] == "C"
    assert rubric["thresholds"]["S"] == {"tatoeba_accuracy": 90, "sts_spearman": 80, "coverage": 0.9, "throughput": 500, "peak_rss_mb": 1536}


def test_exactly_at_s_thresholds_is_s():
    recs = model_records("m", "fp32", at(90.0), {"en-en": 80.0}, 500, 1536)
    g = grade(recs)[("m", "fp32")]
    assert isinstance(g, Grade) and g.grade == "S", g.reasons
    assert "tatoeba 90.0 >= 90 (S)" in g.reasons
    assert g.figures["coverage"] == 1.0 and g.figures["throughput"] == 500
    uneven = {"jpn": 90.1, "cmn": 89.9, "deu": 90.3, "fra": 89.7, "rus": 90.2, "ara": 89.8}  # mean 90 in floats
    assert grade(model_records("m", "fp32", uneven, {"en-en": 80.0}, 500, 1536))[("m", "fp32")].grade == "S"


def test_just_below_s_is_a_and_says_which_figure():
    recs = model_records("m", "fp32", at(89.0), {"en-en": 80.0}, 500, 1536)
    g = grade(recs)[("m", "fp32")]
    assert g.grade == "A"
    assert "tatoeba 89.0 < 90 (S)" in g.reasons
    assert "tatoeba 89.0 >= 85 (A)" in g.reasons
    # memory is a maximum: over the S limit, within A
    g = grade(model_records("m", "fp32", at(95.0), {"en-en": 85.0}, 900, 1600))[("m", "fp32")]
    assert g.grade == "A" and "peak RSS MB 1600 > 1536 (S)" in g.reasons


def test_coverage_speed_and_fallback_c():
    # mean 90 but two of six languages under 80: coverage 0.67 -> not S, not A; B
    accs = {"jpn": 78.0, "cmn": 79.0, "deu": 100.0, "fra": 100.0, "rus": 92.0, "ara": 91.0}
    g = grade(model_records("m", "fp32", accs, None, 2000, 100))[("m", "fp32")]
    assert g.grade == "B" and "coverage 0.67 < 0.9 (S)" in g.reasons and "coverage 0.67 < 0.8 (A)" in g.reasons
    g = grade(model_records("m", "fp32", at(95.0), None, 99, 100))[("m", "fp32")]
    assert g.grade == "B" and "throughput 99 < 100 (A)" in g.reasons
    g = grade(model_records("m", "fp32", at(5.9), {"en-en": 87.6}, 300, 400))[("m", "fp32")]
    assert g.grade == "C" and "tatoeba 5.9 < 70 (B)" in g.reasons


def test_overrides_change_the_grade():
    recs = model_records("m", "fp32", at(91.0), {"en-en": 85.0}, 600, 1000)
    assert grade(recs)[("m", "fp32")].grade == "S"
    g = grade(recs, overrides={"S.tatoeba_accuracy": 92})[("m", "fp32")]
    assert g.grade == "A" and "tatoeba 91.0 < 92 (S)" in g.reasons
    assert grade(recs, overrides={"S.throughput": 1000})[("m", "fp32")].grade == "A"
    # dropping a criterion, and a top-level setting
    slow = model_records("m", "fp32", at(91.0), {"en-en": 85.0}, 50, 1000)
    assert grade(slow)[("m", "fp32")].grade == "B"
    assert grade(slow, overrides={"S.throughput": None, "A.throughput": None})[("m", "fp32")].grade == "S"
    low = model_records("m", "fp32", {"jpn": 78.0, "deu": 99.0, "fra": 99.0}, None, 600, 1000)
    assert grade(low)[("m", "fp32")].grade == "B"
    assert grade(low, overrides={"coverage_min_accuracy": 75})[("m", "fp32")].grade == "S"
    with pytest.raises(ValueError, match="unknown criterion"):
        grade(recs, overrides={"S.tatoeba": 92})
    with pytest.raises(ValueError, match="unknown level"):
        grade(recs, overrides={"X.tatoeba_accuracy": 92})


def test_missing_measurements_are_skipped_with_a_reason():
    g = grade(model_records("m", "fp32", at(95.0)))[("m", "fp32")]  # no STS, speed or memory
    assert g.grade == "S"
    for label in ("sts", "throughput", "peak RSS MB"):
        assert f"{label}: not measured, skipped" in g.reasons
    g = grade([rec("m", "int8", "drift", "tatoeba", "all", {"mean": 0.99}, "mean")])[("m", "int8")]
    assert g.grade == "n/a" and "no quality measurement" in g.reasons[0]


def test_user_rubric_file(tmp_path):
    rubric = json.loads(RUBRIC_PATH.read_text())
    rubric["thresholds"]["S"]["tatoeba_accuracy"] = 99
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(rubric))
    recs = model_records("m", "fp32", at(95.0), {"en-en": 85.0}, 600, 1000)
    g = grade(recs, rubric=load_rubric(path))[("m", "fp32")]
    assert g.grade == "A" and "tatoeba 95.0 < 99 (S)" in g.reasons
    rubric["criteria"]["throughput"]["direction"] = "sideways"
    path.write_text(json.dumps(rubric))
    with pytest.raises(ValueError, match="direction"):
        load_rubric(path)


def test_docs_table_matches_rubric():
    doc = (REPO / "docs" / "grading.md").read_text(encoding="utf-8")
    assert thresholds_table() in doc, "docs/grading.md thresholds table is stale: regenerate with thresholds_table()"
    rubric = load_rubric()
    table = doc.split("<!-- thresholds table")[1].split("<!-- end thresholds table -->")[0]
    for level, thresholds in rubric["thresholds"].items():
        for name, value in thresholds.items():
            row = next(line for line in table.splitlines() if f"(`{name}`)" in line)
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert cells[1 + rubric["levels"].index(level)].endswith(f" {value:g}"), (level, name, row)
    assert str(rubric["coverage_min_accuracy"]) in doc


def test_grades_of_the_findings_shaped_records(records):
    grades = grade(records)
    use = grades[("use-multilingual-v3", "fp32")]
    assert use.grade == "A" and "coverage 0.83 < 0.9 (S)" in use.reasons  # Arabic 77.0: 5 of 6 languages >= 80
    assert "sts: not measured, skipped" in use.reasons
    e5 = grades[("multilingual-e5-small", "fp32")]
    assert e5.grade == "B" and "sts 74.5 < 75 (A)" in e5.reasons and "throughput 125 < 500 (S)" in e5.reasons
    assert grades[("all-MiniLM-L6-v2", "fp32")].grade == "C"


# ----------------------------------------------------------------------------------------- report
def test_write_report_files(records, tmp_path):
    grades = grade(records)
    paths = write_report(records, tmp_path / "report", grades, title="Test <report> & co")
    assert set(paths) == {"json", "markdown", "html"} and all(p.exists() for p in paths.values())

    data = json.loads(paths["json"].read_text())
    assert data["schema_version"] == 1 and len(data["records"]) == len(records)
    assert data["grades"]["multilingual-e5-small::int8"]["grade"] == grades[("multilingual-e5-small", "int8")].grade
    back = read_results(paths["json"])
    assert back == records
    assert read_results(tmp_path / "report") == records

    md = paths["markdown"].read_text()
    assert "| model | precision | tatoeba jpn |" in md
    assert "| multilingual-e5-small | int8 | 82.5 | 89.1 |" in md
    assert "| use-multilingual-v3 | bf16 |" in md and "sts17 en-ar" in md and "jsts ja" in md
    assert "## Grades" in md and "tatoeba 88.2 < 90 (S)" in md
    assert "Test CPU <2 cores>" in md and COMMAND in md

    page = paths["html"].read_text()
    for ident in ("plot-quality-speed", "plot-languages", "plot-drift", "grades"):
        assert f'id="{ident}"' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "Test &lt;report&gt; &amp; co" in page and "Test CPU &lt;2 cores&gt;" in page
    assert "<report>" not in page


def test_report_grades_default_and_empty_plots(tmp_path):
    recs = model_records("m", "fp32", at(95.0))  # no speed, no drift
    paths = write_report(recs, tmp_path)
    page = paths["html"].read_text()
    assert "no model has both Tatoeba accuracy and throughput measured" in page and "no drift results" in page
    assert json.loads(paths["json"].read_text())["grades"]["m::fp32"]["grade"] == "S"


# ---------------------------------------------------------------------------------------- browser
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium not installed and not root: cannot apt-get install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, timeout=600, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, capture_output=True, timeout=600, env=env)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"chromium missing and apt-get install chromium failed: {exc}")
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("apt-get install chromium ran but /usr/bin/chromium is absent")
    return "/usr/bin/chromium"


def _png_colours(path: Path) -> int:
    """Distinct pixel values in a sample of rows of an 8-bit RGB(A) PNG (a tiny decoder, no Pillow)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, ctype = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    prev, colours = bytearray(stride), set()
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        ftype, cur = line[0], bytearray(line[1:])
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                cur[i] = (cur[i] + a) & 255
            elif ftype == 2:
                cur[i] = (cur[i] + b) & 255
            elif ftype == 3:
                cur[i] = (cur[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 16 == 0:
            colours.update(bytes(cur[i : i + 3]) for i in range(0, stride, bpp))
        prev = cur
    return len(colours)


def test_report_renders_in_headless_chromium(records, tmp_path):
    chromium = _chromium()
    paths = write_report(records, tmp_path / "report", grade(records))
    url = paths["html"].resolve().as_uri()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]  # fmt: skip
    run = subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1280,2400", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.exists(), run.stderr[-2000:]
    assert shot.stat().st_size > 20_000, shot.stat().st_size
    assert _png_colours(shot) > 20  # not a blank page

    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    for ident in ("plot-quality-speed", "plot-languages", "plot-drift"):
        block = dom.split(f'id="{ident}"', 1)[1].split("</div>", 1)[0]
        assert "<svg" in block and ("<circle" in block or "<rect" in block), ident
    grades_table = dom.split('id="grades"', 1)[1].split("</table>", 1)[0]
    assert grades_table.count("<tr>") == 1 + 6  # header + six model/precision rows
    assert "multilingual-e5-small" in grades_table and "tatoeba 88.2 &lt; 90 (S)" in grades_table
