"""The xlembed command: each command's output, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import xlembed
from xlembed.cli import app
from tiny_models import make_tiny_st_folder

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, list(args), input=input)


def test_help_for_every_command():
    for command in ("models", "similarity", "encode", "export", "doctor", "demo"):
        result = run(command, "--help")
        assert result.exit_code == 0, command
        assert "Usage" in result.stdout


def test_models_lists_the_catalogue():
    result = run("models")
    assert result.exit_code == 0
    for name in ("labse", "multilingual-e5-small", "use-multilingual", "mt5-base", "xlm-roberta-large"):
        assert name in result.stdout
    rows = json.loads(run("models", "--json").stdout)
    assert any(r["name"] == "multilingual-e5-small" for r in rows)


def test_similarity_prints_the_matrix():
    result = run("similarity", "今日は天気がいい", "The weather is nice today", "I lost my keys")
    assert result.exit_code == 0
    lines = [l for l in result.stdout.splitlines() if l.startswith("[0]   ") or l.startswith("[0]  ")]
    values = [float(v) for v in lines[-1].split()[1:]]
    assert values[0] == pytest.approx(1.0, abs=1e-3) and values[1] > values[2]


def test_similarity_needs_two_texts():
    result = run("similarity", "only one")
    assert result.exit_code == 2 and "at least two" in result.stderr


def test_encode_text_file_to_npy(tmp_path):
    src = tmp_path / "texts.txt"
    src.write_text("今日は天気がいい\nThe weather is nice today\n\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    result = run("encode", "--input", str(src), "--output", str(out))
    assert result.exit_code == 0, result.stderr
    vectors = np.load(out)
    expected = xlembed.load().encode(["今日は天気がいい", "The weather is nice today", ""])
    assert vectors.shape == (3, 512) and np.allclose(vectors, expected, atol=1e-5)
    assert "encoded 3 texts" in result.stderr


def test_encode_stdin_jsonl_to_jsonl(tmp_path):
    lines = "\n".join(json.dumps({"id": i, "body": t}) for i, t in enumerate(["hello", "こんにちは"]))
    out = tmp_path / "emb.jsonl"
    result = run("encode", "--field", "body", "--output", str(out), "--normalize", input=lines + "\n")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(l) for l in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == ["hello", "こんにちは"]
    assert np.linalg.norm(rows[0]["embedding"]) == pytest.approx(1.0, abs=1e-5)


def test_encode_bad_jsonl_names_file_and_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    result = run("encode", "--input", str(src), "--output", str(tmp_path / "o.npy"))
    assert result.exit_code == 2
    assert f"{src} line 2" in result.stderr and "Traceback" not in result.stderr


def test_encode_missing_input_and_bad_output(tmp_path):
    result = run("encode", "--input", str(tmp_path / "nope.txt"), "--output", str(tmp_path / "o.npy"))
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = run("encode", "--input", "-", "--output", str(tmp_path / "o.csv"), input="a\n")
    assert result.exit_code == 2 and ".npy or .jsonl" in result.stderr


def test_encode_tiny_model_with_int8_precision(tmp_path):
    folder = make_tiny_st_folder(tmp_path)
    out = tmp_path / "emb.npy"
    result = run("encode", "--model", str(folder), "--precision", "int8", "--output", str(out), input="a b\nc d\n")
    assert result.exit_code == 0, result.stderr
    assert np.load(out).shape == (2, 32) and "onnx int8" in result.stderr


def test_export_then_load_back(tmp_path):
    folder = make_tiny_st_folder(tmp_path)
    out = tmp_path / "tiny-fp16"
    result = run("export", "--model", str(folder), "--precision", "fp16", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    again = run("export", "--model", str(folder), "--precision", "fp16", "--out", str(out))
    assert again.exit_code == 2 and "not empty" in again.stderr
    assert xlembed.load(out).dim == 32


def test_doctor_reports_windows_path_problem():
    result = run("doctor", "--model", r"C:\models\LaBSE", "--no-probe")
    assert result.exit_code == 2
    assert "Windows path" in result.stdout and "torch" in result.stdout
    report = json.loads(run("doctor", "--json", "--no-probe").stdout)
    assert {"versions", "devices", "offline", "memory"} <= set(report)


def test_doctor_checks_a_model_folder(tmp_path):
    folder = make_tiny_st_folder(tmp_path)
    assert run("doctor", "--model", str(folder), "--no-probe").exit_code == 0
    (folder / "config.json").unlink()
    result = run("doctor", "--model", str(folder), "--no-probe")
    assert result.exit_code == 2 and "config.json is missing" in result.stdout


def test_errors_are_one_line_without_traceback_and_debug_shows_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "xlembed.cli", "encode", "--model", "./missing-model",
                           "--output", str(tmp_path / "o.npy")], input="a\n", capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "xlembed.cli", "--debug", "encode", "--model", "./missing-model",
                           "--output", str(tmp_path / "o.npy")], input="a\n", capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_unknown_option_is_a_usage_error():
    assert run("models", "--frobnicate").exit_code == 2
