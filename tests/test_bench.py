"""The embedding cache, speed/size measurements, and `xlembed eval` / `xlembed bench` end to end on small data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import xlembed
from xlembed.cli import app
from xlembed.eval.cache import EmbeddingCache
from xlembed.eval.speed import size, speed
from tiny_models import make_tiny_st_folder

PAIRS = [("今日は雨が降っています。", "It is raining today."), ("鍵をなくしました。", "I lost my keys."),
         ("電車が遅れています。", "The train is late."), ("コーヒーが好きです。", "I like coffee."),
         ("猫がソファで寝ています。", "The cat is sleeping on the sofa."), ("駅はどこですか。", "Where is the station?")]


@pytest.fixture()
def data_root(tmp_path) -> Path:
    root = tmp_path / "data"
    (root / "tatoeba").mkdir(parents=True)
    (root / "tatoeba" / "tatoeba.jpn-eng.jpn").write_text("\n".join(j for j, _ in PAIRS) + "\n", encoding="utf-8")
    (root / "tatoeba" / "tatoeba.jpn-eng.eng").write_text("\n".join(e for _, e in PAIRS) + "\n", encoding="utf-8")
    (root / "sts17").mkdir()
    rows = ["sentence1\tsentence2\tscore", "A man plays guitar.\tA man is playing a guitar.\t4.8",
            "A dog runs.\tThe stock market fell.\t0.2", "It is raining.\tRain is falling.\t4.5",
            "A woman cooks.\tA cat sleeps.\t0.5", "The train is late.\tThe train is delayed.\t4.6"]
    (root / "sts17" / "STS17.en-en.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


class Counting:
    """Wraps an encoder's encode to count the texts it really embeds."""

    def __init__(self, encoder):
        self.encoder, self.texts = encoder, 0
        self._encode = encoder.encode

    def __enter__(self):
        def counted(texts, *args, **kwargs):
            self.texts += len(texts)
            return self._encode(texts, *args, **kwargs)

        self.encoder.encode = counted
        return self

    def __exit__(self, *exc):
        del self.encoder.encode


def test_cache_returns_the_same_vectors_without_encoding_again(tmp_path):
    encoder = xlembed.load()
    cache = EmbeddingCache(tmp_path / "cache")
    texts = [e for _, e in PAIRS] + ["It is raining today."]  # a duplicate text is embedded once
    with Counting(encoder) as count:
        first = cache.encode(encoder, texts)
        assert count.texts == 6
        second = cache.encode(encoder, texts[::-1])
        assert count.texts == 6  # nothing new
        cache.encode(encoder, texts + ["A new sentence."])
        assert count.texts == 7
    assert np.allclose(second[::-1], first) and np.allclose(first, encoder.encode(texts), atol=1e-6)


def test_cache_keys_include_prompt_and_precision(tmp_path, e5):
    cache = EmbeddingCache(tmp_path / "cache")
    a = cache.encode(e5, ["hello"], prompt="")
    b = cache.encode(e5, ["hello"], prompt="query: ")
    assert not np.allclose(a, b)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_cache_encodes_in_memory_weights_every_time(tmp_path):
    # a student being trained keeps its name while its weights change: a name-based key served the
    # vectors of earlier weights (a benchmark reported a stale own Tatoeba figure this way)
    import torch

    from xlembed.distill.run import trained_encoder

    tiny = xlembed.load(make_tiny_st_folder(tmp_path / "tiny"))
    cache = EmbeddingCache(tmp_path / "cache")
    texts = ["one sentence", "another sentence"]
    before = cache.encode(trained_encoder(tiny.model, tiny, tiny, "student"), texts)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in tiny.model.parameters():
            param.add_(0.5 * torch.randn_like(param))
    after = cache.encode(trained_encoder(tiny.model, tiny, tiny, "student"), texts)
    assert not np.allclose(before, after, atol=1e-3)
    assert np.allclose(after, tiny.encode(texts), atol=1e-6)
    assert cache.misses == 4 and not (tmp_path / "cache").exists()  # nothing written under the name


def test_cache_ignores_entries_whose_shard_is_missing(tmp_path):
    encoder = xlembed.load()
    cache = EmbeddingCache(tmp_path / "cache")
    cache.encode(encoder, ["one", "two"])
    folder = next((tmp_path / "cache").iterdir())
    for shard in folder.glob("*.npy"):
        shard.unlink()  # as if a run died between writing the index and the shard
    out = cache.encode(encoder, ["one", "two"])
    assert np.isfinite(out).all() and cache.misses == 4


def test_speed_and_size_report_their_figures(tmp_path):
    encoder = xlembed.load(make_tiny_st_folder(tmp_path))
    result = speed(encoder, ["hello world"] * 40, batch_sizes=(1, 32), latency_runs=3)
    assert set(result.scores) == {"latency_ms_2", "sent_per_s_b1", "sent_per_s_b32"}
    assert all(v > 0 for v in result.scores.values())
    figures = size(encoder).scores
    assert figures["params_m"] > 0 and figures["disk_mb"] > 0 and figures["peak_rss_mb"] > 50


def test_bench_peak_rss_is_load_and_probe_not_the_tasks(tmp_path, data_root, monkeypatch):
    # the figure must not depend on what the tasks read or found cached: it is read after load + the bundled
    # sample, before any task (here a reading taken once a task has run reports 10x more)
    import xlembed.eval.bench as bench
    import xlembed.eval.speed as speed_module

    encoded: list[str] = []
    monkeypatch.setattr(speed_module, "peak_rss_mb", lambda: 3000.0 if encoded else 300.0)
    real_task = bench.run_task

    def task(encoder, name, *args, **kwargs):
        encoded.append(name)
        return real_task(encoder, name, *args, **kwargs)

    monkeypatch.setattr(bench, "run_task", task)
    plan = bench.BenchPlan(models=[make_tiny_st_folder(tmp_path)], precisions=["fp32"], tasks=["tatoeba"],
                           out=str(tmp_path / "out"), data_root=str(data_root), cache_root=str(tmp_path / "cache"))
    records, error = bench.bench_one(plan, plan.models[0], "fp32")
    sized = [r.result for r in records if r.result.task == "size"]
    assert error is None and encoded and len(sized) == 1
    assert sized[0].scores["peak_rss_mb"] == 300.0
    assert "before any task" in sized[0].details["peak_rss"] and "sample" in sized[0].details["peak_rss"]


def test_eval_command_tatoeba(data_root):
    result = CliRunner().invoke(app, ["eval", "--task", "tatoeba", "--data", str(data_root / "tatoeba")])
    assert result.exit_code == 0, result.stderr
    assert "jpn" in result.stdout and "100.0" in result.stdout  # USE finds all six translations


def test_eval_command_missing_data_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--task", "tatoeba", "--data", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_bench_runs_models_precisions_and_writes_the_report(tmp_path, data_root):
    tiny = make_tiny_st_folder(tmp_path)
    out = tmp_path / "report"
    args = ["bench", "--models", f"use-multilingual,{tiny}", "--precisions", "fp32,int8",
            "--tasks", "tatoeba,sts17,drift,speed", "--data-root", str(data_root), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "use-multilingual int8" in result.stderr  # USE has no int8: said, not hidden
    assert {"index.html", "results.json", "results.md"} <= {p.name for p in out.iterdir()}
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    seen = {(r["model"], r["precision"], r["task"]) for r in data["records"]}
    assert ("use-multilingual", "fp32", "tatoeba") in seen and ("use-multilingual", "fp32", "sts") in seen
    assert ("tiny-model", "int8", "drift") in seen and ("tiny-model", "fp32", "speed") in seen
    assert all(r["machine"] and r["versions"] and r["date"] and r["command"] for r in data["records"])
    assert "Peak RSS: load + encoding the bundled sample" in (out / "results.md").read_text(encoding="utf-8")


def test_bench_thresholds_are_adjustable_from_the_command_line(tmp_path, data_root):
    base = ["bench", "--models", "use-multilingual", "--tasks", "tatoeba", "--data-root", str(data_root)]
    normal = CliRunner().invoke(app, base + ["--out", str(tmp_path / "a")])
    strict = CliRunner().invoke(app, base + ["--out", str(tmp_path / "b"), "--threshold", "S.tatoeba_accuracy=101",
                                             "--threshold", "A.tatoeba_accuracy=101", "--threshold", "B.tatoeba_accuracy=101"])
    assert normal.exit_code == 0 and strict.exit_code == 0, strict.stderr
    grade = lambda out: next(iter(json.loads((out / "results.json").read_text())["grades"].values()))["grade"]  # noqa: E731
    assert grade(tmp_path / "a") == "S"  # 100% on the six sample pairs, nothing else measured
    assert grade(tmp_path / "b") == "C"
    bad = CliRunner().invoke(app, base + ["--out", str(tmp_path / "c"), "--threshold", "S.tatoeba_accuracy"])
    assert bad.exit_code == 2 and "LEVEL.criterion=VALUE" in bad.stderr


def test_report_says_which_prompt_was_applied(tmp_path, data_root, e5_dir):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["bench", "--models", str(e5_dir), "--tasks", "tatoeba",
                                      "--data-root", str(data_root), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "multilingual-e5-small fp32: 'query: '" in (out / "results.md").read_text(encoding="utf-8")
    assert "query: " in (out / "index.html").read_text(encoding="utf-8")
    bare = CliRunner().invoke(app, ["bench", "--models", str(e5_dir), "--tasks", "tatoeba", "--prompt", "",
                                    "--data-root", str(data_root), "--out", str(tmp_path / "bare")])
    assert bare.exit_code == 0
    assert "multilingual-e5-small fp32: none" in (tmp_path / "bare" / "results.md").read_text(encoding="utf-8")
