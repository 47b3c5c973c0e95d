"""Transformer student training: loss goes down, resume equals an uninterrupted run, the teacher cache is
reused, the best weights are kept, bad input is refused; on real models a short run writes a loadable folder."""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xlembed
from xlembed.train.checkpoint import START_WEIGHTS, load_weights
from xlembed.distill.data import ParallelPair
from xlembed.distill.train import (
    TeacherRegression,
    TrainConfig,
    TrainingInterrupted,
    _loss,
    build_student,
    interpolate_weights,
    length_batches,
    train_student,
    warm_start_rows,
)
from xlembed.errors import BadInputError, ModelFilesError
from tiny_models import WORDS, make_tiny_st_folder

PARALLEL = Path(__file__).resolve().parents[2] / "shared" / "data" / "parallel"


def _pairs(n: int, seed: int = 0) -> list[ParallelPair]:
    """Toy 'translations': the English words reversed, plus a marker word."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        en = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9)))
        out.append(ParallelPair(en=en, other=" ".join(reversed(en.split())) + " x", lang="xx", source=f"toy:{i}"))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-distill")
    teacher = xlembed.load(str(make_tiny_st_folder(root, name="teacher", seed=1)))
    student = xlembed.load(str(make_tiny_st_folder(root, name="student", seed=2)))
    return teacher, student


class CountingTeacher:
    """Wraps an encoder and counts the texts it is asked to encode."""

    def __init__(self, encoder):
        self.inner = encoder
        self.texts = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, texts, *args, **kwargs):
        self.texts += len(texts)
        return self.inner.encode(texts, *args, **kwargs)


def _weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_one_step_lowers_the_loss(tiny):
    import torch

    teacher, student = tiny
    from xlembed.train.loop import _step

    texts = [p.en for p in _pairs(16)]
    targets = teacher.encode(texts)
    model = build_student(student, None, normalize=True)
    model.train()
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model.eval()  # no dropout: the two losses differ only by the update
    config = TrainConfig(lr=1e-3)
    objective = TeacherRegression(texts, targets, "", config)
    params = list(model.parameters())
    rows = list(range(len(texts)))
    before = _step(model, objective, rows, len(rows), optimizer, scheduler, None, params, config)
    after = _step(model, objective, rows, len(rows), optimizer, scheduler, None, params, config)
    assert after < before * 0.95, (before, after)


def test_contrastive_term_is_infonce_over_the_distinct_teacher_vectors():
    import torch

    torch.manual_seed(0)
    targets = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    rows = targets[[0, 0, 1, 2]]  # a pair's two sides share the first target
    out = torch.randn(4, 8)
    mse = torch.nn.functional.mse_loss(out, rows)
    assert torch.allclose(_loss(out, rows, TrainConfig()), mse)
    # by hand: cosine of each output to the 3 distinct targets / 0.05, cross-entropy to its own
    cos = torch.nn.functional.normalize(out, dim=-1) @ targets.T
    own = torch.tensor([0, 0, 1, 2])
    ce = -(torch.log_softmax(cos / 0.05, dim=-1)[torch.arange(4), own]).mean()
    got = _loss(out, rows, TrainConfig(contrastive_weight=0.5))
    assert torch.allclose(got, mse + 0.5 * ce, atol=1e-5)
    # outputs equal to their targets score better than shuffled ones
    assert _loss(rows.clone(), rows, TrainConfig(contrastive_weight=0.5)) < _loss(rows[[2, 3, 0, 1]], rows, TrainConfig(contrastive_weight=0.5))


def test_warm_start_rows_map_both_sides_onto_the_english_sentence():
    pairs = _pairs(30)
    texts, english = warm_start_rows(pairs, TrainConfig(warm_start_sentences=10, warm_start_fit="english"))
    assert texts == english and len(texts) == 10 and set(texts) <= {p.en for p in pairs}
    texts, english = warm_start_rows(pairs, TrainConfig(warm_start_sentences=10, warm_start_fit="both"))
    assert len(texts) == len(english) == 20
    other_of = {p.en: p.other for p in pairs}
    for i in range(0, 20, 2):
        assert texts[i] == english[i] == english[i + 1] and texts[i + 1] == other_of[english[i]]
    assert warm_start_rows(pairs, TrainConfig(warm_start_sentences=10, warm_start_fit="both")) == (texts, english)


def test_length_batches_cover_every_sentence_once_and_bucket_by_length():
    lengths = [random.Random(i).randint(3, 60) for i in range(1000)]
    batches = length_batches(lengths, 32, seed=0, epoch=0, bucket_size=10)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    assert batches == length_batches(lengths, 32, seed=0, epoch=0, bucket_size=10)  # deterministic
    assert batches != length_batches(lengths, 32, seed=0, epoch=1, bucket_size=10)  # new order per epoch
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    shuffled = list(range(1000))
    random.Random(1).shuffle(shuffled)
    random_spread = np.mean([max(lengths[i] for i in shuffled[j:j + 32]) - min(lengths[i] for i in shuffled[j:j + 32])
                             for j in range(0, 1000, 32)])
    assert spread < random_spread / 4, (spread, random_spread)  # little padding inside a batch


def _run(tiny, tmp, name, *, on_step=None, resume=False, epochs=2, dev=False, teacher=None, cache=None, **cfg):
    teacher_enc, student = tiny
    pairs = _pairs(60)
    settings = {"batch_size": 16, "lr": 5e-4, "head_lr": 5e-3, "eval_every": 3, "checkpoint_every": 0, "patience": None,
                "freeze_embeddings": False, "dropout": True}  # dropout on: resume must also restore the RNG state
    config = TrainConfig(epochs=epochs, **{**settings, **cfg})
    return train_student(student, teacher or teacher_enc, pairs[:48], pairs[48:] if dev else [], tmp / name, config,
                         cache_root=cache or tmp / "cache", resume=resume, progress=False, on_step=on_step)


def test_resume_after_interruption_gives_the_same_weights(tiny, tmp_path):
    full, result = _run(tiny, tmp_path, "full")
    assert result.steps == 12 and result.stopped == "completed"  # 96 sentences / 16 x 2 epochs

    def interrupt(step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="--resume"):
        _run(tiny, tmp_path, "cut", on_step=interrupt)
    assert (tmp_path / "cut" / "checkpoint" / "state.json").is_file()
    resumed, result2 = _run(tiny, tmp_path, "cut", resume=True)
    assert result2.resumed_from_step == 5 and result2.steps == 12
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key].numpy(), b[key].numpy()), key
    # and training did change the weights (the comparison is not between two untouched copies)
    fresh = build_student(tiny[1], None, normalize=True)
    assert not np.allclose(fresh[0].auto_model.embeddings.word_embeddings.weight.detach().numpy(),
                           full[0].auto_model.embeddings.word_embeddings.weight.detach().numpy())


def test_a_periodic_checkpoint_survives_sigkill(tiny, tmp_path):
    """A run killed with SIGKILL resumes from its last periodic checkpoint and ends like an uninterrupted run."""
    script = tmp_path / "killme.py"
    script.write_text(
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import xlembed\n"
        "from test_distill_train import _pairs\n"
        "from xlembed.distill.train import TrainConfig, train_student\n"
        f"t = xlembed.load({tiny[0].info.source!r}); s = xlembed.load({tiny[1].info.source!r})\n"
        "p = _pairs(60)\n"
        "kill = lambda step: os.kill(os.getpid(), signal.SIGKILL) if step == 7 else None\n"
        "train_student(s, t, p[:48], [], sys.argv[1], TrainConfig(epochs=2, batch_size=16, lr=5e-4, head_lr=5e-3,"
        " eval_every=3, checkpoint_every=0 if len(sys.argv) < 3 else 3, patience=None, freeze_embeddings=False, dropout=True), cache_root=sys.argv[1] + '-cache',"
        " progress=False, on_step=kill)\n"
    )
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "killed"), "periodic"], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 6  # the last periodic checkpoint before the kill at step 7
    resumed, result = _run(tiny, tmp_path, "killed", resume=True, cache=tmp_path / "killed-cache")
    full, _ = _run(tiny, tmp_path, "uncut")
    assert result.resumed_from_step == 6
    for key, value in _weights(full).items():
        assert np.array_equal(value.numpy(), _weights(resumed)[key].numpy()), key


def test_teacher_cache_is_reused_across_epochs_and_runs(tiny, tmp_path):
    counting = CountingTeacher(tiny[0])
    _, first = _run(tiny, tmp_path, "a", teacher=counting, epochs=3)
    n_english = len({p.en for p in _pairs(60)[:48]})
    assert counting.texts == n_english  # each English sentence once, over 3 epochs
    assert first.teacher_encoded == n_english
    _, second = _run(tiny, tmp_path, "b", teacher=counting, epochs=1)
    assert counting.texts == n_english and second.teacher_encoded == 0  # the second run reads the cache only


def test_best_checkpoint_is_never_worse_than_the_warm_start(tiny, tmp_path):
    # a learning rate far too high makes training worse: the run must hand back its warm start
    model, result = _run(tiny, tmp_path, "hot", dev=True, epochs=2, lr=0.5, head_lr=0.5)
    assert result.warm_start is not None and result.best is not None
    assert max(e["dev_mse"] for e in result.evals[1:]) > result.warm_start["dev_mse"]
    assert result.best["dev_mse"] == min(e["dev_mse"] for e in result.evals)
    assert result.best["dev_mse"] <= result.warm_start["dev_mse"]


def test_interpolate_hands_back_the_mix_of_warm_start_and_kept_weights(tiny, tmp_path):
    kept, _ = _run(tiny, tmp_path, "kept", interpolate=1.0)  # no dev split: the kept weights are the last ones
    mixed, _ = _run(tiny, tmp_path, "mixed", interpolate=0.25)
    start = copy.deepcopy(kept)
    load_weights(start, tmp_path / "mixed" / START_WEIGHTS, "start")
    k, s, m = _weights(kept), _weights(start), _weights(mixed)
    moved = [key for key in k if not np.allclose(k[key].numpy(), s[key].numpy())]
    assert moved  # training changed weights, so the check below compares different tensors
    for key in k:
        np.testing.assert_allclose(m[key].numpy(), (0.75 * s[key] + 0.25 * k[key]).numpy(), rtol=1e-5, atol=1e-6)
    # with a dev split, the handed-back weights get their own dev figures
    _, plain = _run(tiny, tmp_path, "dev-kept", dev=True, interpolate=1.0)
    _, result = _run(tiny, tmp_path, "dev-mixed", dev=True, interpolate=0.25)
    assert plain.final == plain.best and result.best == plain.best  # same training, other weights handed back
    assert result.final["interpolate"] == 0.25 and result.final["step"] == result.steps


def test_without_dropout_training_draws_no_random_numbers(tiny, tmp_path):
    import torch

    def draw(step):  # another user of torch's random generator between the steps
        torch.rand(1000)

    def same(a, b):
        wa, wb = _weights(a), _weights(b)
        return all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa)

    off, _ = _run(tiny, tmp_path, "off", dropout=False)
    off_drawn, _ = _run(tiny, tmp_path, "off-drawn", dropout=False, on_step=draw)
    assert same(off, off_drawn)
    on, _ = _run(tiny, tmp_path, "on", dropout=True)
    on_drawn, _ = _run(tiny, tmp_path, "on-drawn", dropout=True, on_step=draw)
    assert not same(on, on_drawn)  # with dropout the draws change the masks: the check above can fail
    assert not same(off, on)


def test_interpolate_without_the_start_weights_says_which_file_is_missing(tiny, tmp_path):
    model, _ = _run(tiny, tmp_path, "kept", interpolate=1.0)
    before = _weights(model)
    with pytest.raises(ModelFilesError, match=r"start\.safetensors.*missing.*train again"):
        interpolate_weights(model, tmp_path / "gone" / START_WEIGHTS, 0.5)
    after = _weights(model)
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)  # nothing half-changed


def test_freeze_layers_keeps_the_embeddings_and_the_lowest_layers_fixed(tiny, tmp_path):
    start = _weights(build_student(tiny[1], None, normalize=True))
    model, _ = _run(tiny, tmp_path, "frozen1", freeze_layers=1)
    after = _weights(model)
    changed = {k for k in start if k in after and not np.array_equal(start[k].numpy(), after[k].numpy())}
    assert changed and all(".encoder.layer.1." in k or not k.startswith("0.") for k in changed), sorted(changed)
    assert any(".encoder.layer.1." in k for k in changed)  # the upper layer did train
    counting = CountingTeacher(tiny[0])
    with pytest.raises(BadInputError, match=r"lowest 3 layers.*has 2 layers"):
        _run(tiny, tmp_path, "frozen3", teacher=counting, cache=tmp_path / "frozen3-cache", freeze_layers=3)
    assert counting.texts == 0  # refused before any teacher work


def test_early_stopping_stops_after_patience_evaluations(tiny, tmp_path):
    _, result = _run(tiny, tmp_path, "patient", dev=True, epochs=4, lr=0.5, head_lr=0.5, patience=1)
    assert result.stopped == "early_stopping" and result.steps < 24


def test_refuses_to_overwrite_a_checkpoint_and_resume_without_one(tiny, tmp_path):
    with pytest.raises(BadInputError, match="nothing to resume"):
        _run(tiny, tmp_path, "none", resume=True)
    with pytest.raises(TrainingInterrupted):
        _run(tiny, tmp_path, "left", on_step=lambda s: os.kill(os.getpid(), signal.SIGTERM) if s == 2 else None)
    with pytest.raises(BadInputError, match="--resume"):
        _run(tiny, tmp_path, "left")
    with pytest.raises(BadInputError, match="other data, models or settings"):
        _run(tiny, tmp_path, "left", resume=True, lr=1e-4)


def test_bad_settings_are_refused(tiny, tmp_path):
    for bad in ({"epochs": 0}, {"batch_size": 1}, {"warmup": 1.5}, {"warm_start": "maybe"}, {"fp16": True},
                {"warm_start_fit": "french"}, {"contrastive_weight": -1.0}, {"contrastive_temperature": 0.0},
                {"interpolate": 0.0}, {"interpolate": 1.5}, {"freeze_layers": -1}):
        with pytest.raises(BadInputError):
            TrainConfig(**bad).check()
    with pytest.raises(BadInputError, match="no training pairs"):
        train_student(tiny[1], tiny[0], [], [], tmp_path / "w", cache_root=tmp_path / "c", progress=False)


# ---------------------------------------------------------------- the CLI on tiny models

def _write_tsv(path: Path, pairs) -> None:
    path.write_text("".join(f"{p.en}\t{p.other}\n" for p in pairs), encoding="utf-8")


def test_cli_distill_writes_a_loadable_folder_with_a_card(tiny, tmp_path):
    from typer.testing import CliRunner

    from xlembed.cli import app

    _write_tsv(tmp_path / "toy.en-de.tsv", _pairs(80))
    out = tmp_path / "out"
    args = ["distill", "--teacher", tiny[0].info.source, "--student", tiny[1].info.source, "--train",
            str(tmp_path / "toy.en-de.tsv"), "--dev-size", "16", "--out", str(out), "--batch-size", "16",
            "--eval-every", "2", "--device", "cpu"]
    env = {"XLEMBED_CACHE": str(tmp_path / "cache"), "XLEMBED_DATA": str(tmp_path / "no-data")}  # no Tatoeba at the end
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    model = xlembed.load(str(out))
    assert model.dim == tiny[0].dim
    assert np.allclose(np.linalg.norm(model.encode(["hello world"]), axis=1), 1, atol=1e-5)  # normalised like the teacher
    card = (out / "README.md").read_text()
    assert "teacher" in card and "de: 80" in card and "warm start" in card and "dropout off" in card
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[-1]["event"] == "done"
    assert not (tmp_path / "out.training").exists()  # checkpoints removed once the folder is written
    again = CliRunner().invoke(app, args, env=env)
    assert again.exit_code == 2 and "not empty" in again.output
    i = args.index("--out") + 1
    deep = CliRunner().invoke(app, [*args[:i], str(tmp_path / "deep"), *args[i + 1:], "--freeze-layers", "9"], env=env)
    assert deep.exit_code == 2 and "lowest 9 layers" in deep.output and "--freeze-layers" in deep.output, deep.output


def test_cli_distill_static_student(tiny, tmp_path):
    from typer.testing import CliRunner

    from xlembed.cli import app

    _write_tsv(tmp_path / "toy.en-de.tsv", _pairs(120))
    out = tmp_path / "static"
    env = {"XLEMBED_CACHE": str(tmp_path / "cache"), "XLEMBED_DATA": str(tmp_path / "no-data")}
    result = CliRunner().invoke(app, ["distill", "--teacher", tiny[0].info.source, "--student", "static",
                                      "--tokenizer", tiny[1].info.source, "--train", str(tmp_path / "toy.en-de.tsv"),
                                      "--dev-size", "20", "--epochs", "2", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    model = xlembed.load(str(out))
    assert model.backend == "static" and model.dim == tiny[0].dim
    assert np.isfinite(model.encode(["hello world", "zzz"])).all()
    summary = json.loads((out / "distill_results.json").read_text())
    assert summary["kind"] == "static" and summary["data"]["pairs_per_language"] == {"de": 120}
    missing = CliRunner().invoke(app, ["distill", "--teacher", tiny[0].info.source, "--student", "static",
                                       "--train", str(tmp_path / "toy.en-de.tsv"), "--out", str(tmp_path / "o2")], env=env)
    assert missing.exit_code == 2 and "--tokenizer" in missing.output


def test_cli_distill_names_the_malformed_line(tiny, tmp_path):
    from typer.testing import CliRunner

    from xlembed.cli import app

    bad = tmp_path / "bad.en-fr.tsv"
    bad.write_text("hello\tbonjour\nno tab on this line\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["distill", "--teacher", tiny[0].info.source, "--student", tiny[1].info.source,
                                      "--train", str(bad), "--out", str(tmp_path / "o"), "--dev-size", "0"])
    assert result.exit_code == 2
    assert f"{bad}:2" in result.output


def test_cli_distill_refuses_an_unknown_warm_start_fit(tiny, tmp_path):
    from typer.testing import CliRunner

    from xlembed.cli import app

    data = tmp_path / "toy.en-xx.tsv"
    _write_tsv(data, _pairs(20))
    result = CliRunner().invoke(app, ["distill", "--teacher", tiny[0].info.source, "--student", tiny[1].info.source,
                                      "--train", str(data), "--out", str(tmp_path / "o"), "--dev-size", "0",
                                      "--warm-start-fit", "french"])
    assert result.exit_code == 2
    assert "warm_start_fit must be english or both, got 'french'" in result.output
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- real models

def test_short_real_run_writes_a_model_that_loads_in_both_libraries(real_models, tmp_path):
    """MiniLM (English) teacher -> multilingual-e5-small student, 200 German pairs, a few steps."""
    files = sorted(PARALLEL.glob("multi30k/*.en-de.tsv"))
    if not files:
        pytest.skip(f"parallel data absent: {PARALLEL} (needs ../shared/data beside the repo)")
    from sentence_transformers import SentenceTransformer

    from xlembed.distill.run import distill

    out = tmp_path / "mini-de"
    summary = distill(teacher=str(real_models / "all-MiniLM-L6-v2"), student=str(real_models / "multilingual-e5-small"),
                      train=[str(files[0])], out=out, max_pairs_per_lang=260, dev_size=60,
                      config=TrainConfig(batch_size=32, max_steps=6, eval_every=3, freeze_embeddings=True),
                      cache_root=tmp_path / "cache", progress=False)
    training = summary["training"]
    assert training["steps"] == 6
    warm = training["warm_start"]
    # the warm start alone already puts German near the teacher's English vector
    assert warm["dev_xx_to_teacher_en"] > 50, warm
    assert training["best"]["dev_mse"] <= warm["dev_mse"]
    encoder = xlembed.load(str(out))
    st = SentenceTransformer(str(out), device="cpu")
    a = encoder.encode(["Ein Hund läuft im Park."])
    b = st.encode(["Ein Hund läuft im Park."], prompt="query: ")
    assert np.allclose(a, b, atol=1e-5)
    assert encoder.dim == 384 and "all-MiniLM-L6-v2" in (out / "README.md").read_text()
