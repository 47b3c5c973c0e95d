"""Distributed training (torch.distributed, gloo on CPU): two ranks with batch B follow the loss curve of one
process with batch 2B; rank 0 alone writes the folder; helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xlembed
from xlembed.parallel import distributed

from test_distill_train import _pairs, _write_tsv, tiny  # noqa: F401 - the tiny teacher/student fixture


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


EXE = str(Path(sys.executable).with_name("xlembed"))


@pytest.fixture(scope="module")
def job(tiny, tmp_path_factory):  # noqa: F811
    """The distill command line on a toy parallel file, its environment, and an uninterrupted 2-rank run."""
    teacher, student = tiny
    root = tmp_path_factory.mktemp("ddp")
    _write_tsv(root / "toy.en-de.tsv", _pairs(200))
    common = ["distill", "--teacher", teacher.info.source, "--student", student.info.source, "--train",
              str(root / "toy.en-de.tsv"), "--dev-size", "24", "--epochs", "2", "--eval-every", "10",
              "--device", "cpu", "--lr", "1e-3",
              "--warm-start", "off", "--patience", "20"]  # trained from its own outputs: a loss that falls
    env = dict(os.environ, XLEMBED_CACHE=str(root / "cache"), XLEMBED_DATA=str(root / "no-data"),
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    two = subprocess.run([EXE, *common, "--batch-size", "8", "--nproc", "2", "--out", str(root / "two")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    return root, common, env


def test_two_gloo_ranks_follow_one_process_with_the_doubled_batch(job):
    tmp_path, common, env = job
    one = subprocess.run([EXE, *common, "--batch-size", "16", "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]

    log_two, log_one = _log(tmp_path / "two"), _log(tmp_path / "one")
    assert log_two[0]["ranks"] == 2 and log_one[0]["ranks"] == 1
    train_two = [(e["step"], e["loss"]) for e in log_two if e["event"] == "train"]
    train_one = [(e["step"], e["loss"]) for e in log_one if e["event"] == "train"]
    assert [s for s, _ in train_two] == [s for s, _ in train_one] == [10, 20, 30, 40, 44]  # 352 texts / 16 x 2 epochs
    np.testing.assert_allclose([l for _, l in train_two], [l for _, l in train_one], rtol=2e-3)
    dev_two = [e["dev_mse"] for e in log_two if e["event"] == "eval"]
    dev_one = [e["dev_mse"] for e in log_one if e["event"] == "eval"]
    assert len(dev_two) == len(dev_one) >= 4
    np.testing.assert_allclose(dev_two, dev_one, rtol=2e-3)
    assert train_one[-1][1] < train_one[0][1]  # it learned something: the comparison is not of two flat lines
    # rank 0 alone wrote one loadable folder; the vectors of both runs agree
    texts = ["hello world", "good morning"]
    np.testing.assert_allclose(xlembed.load(str(tmp_path / "two")).encode(texts),
                               xlembed.load(str(tmp_path / "one")).encode(texts), atol=2e-3)
    assert not (tmp_path / "two.training").exists()


def test_helpers_in_one_process_are_identity():
    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    assert distributed.global_mean(2.5, 4, 4) == 2.5
    with distributed.main_first():
        pass


def test_option_removal_and_bad_nproc():
    argv = ["distill", "--nproc", "2", "--out", "x", "--nproc=3", "--batch-size", "8"]
    assert distributed.without_option(argv, "--nproc") == ["distill", "--out", "x", "--batch-size", "8"]
    with pytest.raises(xlembed.errors.BadInputError, match="--nproc"):
        distributed.run_local_ranks(0, [])


def test_sigterm_stops_both_ranks_with_a_checkpoint_and_resume_finishes_the_same_run(job):
    import signal
    import time

    import psutil

    root, common, env = job
    out = root / "stopped"
    args = [EXE, *common, "--batch-size", "8", "--nproc", "2", "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    log = out.with_name("stopped.training") / "train_log.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and '"event": "train"' in log.read_text():
            break
        time.sleep(0.01)
    listening = []
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            listening += [c.laddr.ip for c in child.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            pass
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert listening and set(listening) <= {"127.0.0.1", "::1", "::ffff:127.0.0.1"}, listening  # gloo on loopback only
    assert proc.returncode != 0, "the run ended before SIGTERM reached it"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    stopped = [e for e in events if e["event"] == "interrupted"]
    assert len(stopped) == 1 and 10 <= stopped[0]["step"] < 44, stderr.decode()[-2000:]
    again = subprocess.run(args + ["--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = [e for e in _log(out) if e["event"] == "eval"]
    whole = [e for e in _log(root / "two") if e["event"] == "eval"]
    assert [e["step"] for e in resumed] == [e["step"] for e in whole]
    np.testing.assert_allclose([e["dev_mse"] for e in resumed], [e["dev_mse"] for e in whole], rtol=1e-4)
