"""Encoder.encode on real and tiny models: parity with sentence-transformers, precisions, input handling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xlembed
from conftest import read_tatoeba, row_cosine
from tiny_models import make_tiny_st_folder

MIXED = ["今日は天気がいい", "The weather is nice today", "Das Wetter ist schön", "I lost my keys",
         "我的猫在沙发上睡觉", "", "Il pleut.", "오늘은 비가 와요.", "الطقس جميل اليوم", "Погода хорошая"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return xlembed.load(make_tiny_st_folder(tmp_path_factory.mktemp("tiny")))


# ---- parity with sentence-transformers on both fetched models ----
@pytest.mark.parametrize("model", ["all-MiniLM-L6-v2", "multilingual-e5-small"])
def test_fp32_equals_sentence_transformers(real_models, tatoeba_dir, model):
    from sentence_transformers import SentenceTransformer

    folder = real_models / model
    jpn, eng = read_tatoeba(tatoeba_dir, "jpn", 100)
    texts = MIXED + jpn + eng
    encoder = xlembed.load(folder)
    ours = encoder.encode(texts, batch_size=16)
    reference = SentenceTransformer(str(folder), device="cpu").encode(
        [encoder.default_prompt + t for t in texts], batch_size=16)
    assert row_cosine(ours, reference).min() > 0.9999


def test_bf16_drift_is_small(e5_dir, tatoeba_dir):
    jpn, eng = read_tatoeba(tatoeba_dir, "jpn", 200)
    fp32 = xlembed.load(e5_dir).encode(jpn + eng)
    bf16 = xlembed.load(e5_dir, precision="bf16")
    assert bf16.precision == "bf16"
    drift = row_cosine(fp32, bf16.encode(jpn + eng))
    assert drift.mean() > 0.99
    assert not np.array_equal(fp32, bf16.encode(jpn + eng))  # the precision really changed something


def test_fp16_on_cpu_is_refused_with_advice(tiny):
    with pytest.raises(xlembed.UnsupportedError, match="bf16"):
        xlembed.load(tiny.info.source, precision="fp16", device="cpu")


# ---- order, batching and prompts ----
def test_results_keep_input_order_whatever_the_batch_size(e5):
    one_by_one = np.stack([e5.encode([t])[0] for t in MIXED])
    for batch_size in (1, 3, 32):
        assert row_cosine(e5.encode(MIXED, batch_size=batch_size), one_by_one).min() > 0.9999


def test_default_prompt_is_applied_and_overridable(e5):
    with_default = e5.encode(["hello world"])
    explicit = e5.encode(["hello world"], prompt="query: ")
    by_name = e5.encode(["hello world"], prompt="query")
    none = e5.encode(["hello world"], prompt="")
    assert np.allclose(with_default, explicit, atol=1e-6) and np.allclose(by_name, explicit, atol=1e-6)
    assert row_cosine(none, explicit)[0] < 0.999
    assert e5.last_stats.prompt == ""


def test_normalize(e5):
    vectors = e5.encode(MIXED, normalize=True)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# ---- bad and edge input ----
def test_empty_list_gives_empty_matrix(e5):
    out = e5.encode([])
    assert out.shape == (0, e5.dim) and out.dtype == np.float32


def test_empty_string_gives_finite_vector():
    for encoder in (xlembed.load(),):
        vec = encoder.encode([""])
        assert vec.shape == (1, encoder.dim) and np.isfinite(vec).all()


def test_empty_string_on_transformer(e5):
    vec = e5.encode(["", "x"], prompt="")
    assert np.isfinite(vec).all() and np.abs(vec[0]).sum() > 0


@pytest.mark.parametrize("bad, index", [(["ok", 3], 1), ([None], 0), (["a", "b", b"bytes"], 2)])
def test_non_string_items_name_the_index(tiny, bad, index):
    with pytest.raises(TypeError, match=rf"texts\[{index}\]"):
        tiny.encode(bad)


def test_bad_arguments(tiny):
    with pytest.raises(xlembed.BadInputError, match="output"):
        tiny.encode(["a"], output="words")
    with pytest.raises(xlembed.BadInputError, match="batch_size"):
        tiny.encode(["a"], batch_size=0)


def test_single_string_is_a_list_of_one(tiny):
    assert tiny.encode("hello").shape == (1, tiny.dim)


# ---- token-level output ----
def test_token_output_has_one_row_per_token(e5):
    texts = ["hello", "今日は天気がいい", ""]
    tokens = e5.encode(texts, output="token", prompt="")
    lengths = [len(ids) for ids in e5.model.tokenizer(texts)["input_ids"]]
    assert [t.shape for t in tokens] == [(n, 384) for n in lengths]
    assert all(np.isfinite(t).all() for t in tokens)


def test_token_output_is_refused_for_sentence_only_models():
    with pytest.raises(xlembed.UnsupportedError, match="sentence vectors only"):
        xlembed.load().encode(["a"], output="token")


# ---- truncation is counted and reported ----
def test_truncation_is_counted_and_warned(tiny):
    long_text = " ".join(["hello world"] * 100)  # 200 tokens > max 64
    with pytest.warns(xlembed.XlembedWarning, match="1 of 3 texts are longer than 64 tokens"):
        out = tiny.encode(["a", long_text, "b"])
    assert tiny.last_stats.n_truncated == 1 and tiny.last_stats.truncated_indices == [1]
    assert np.isfinite(out).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny.encode(["short"])
    assert tiny.last_stats.n_truncated == 0


def test_last_stats_are_kept_per_thread(tiny):
    import threading

    long_text = " ".join(["hello world"] * 100)
    first_done, second_done = threading.Event(), threading.Event()
    seen = {}

    def first():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tiny.encode(["a", long_text])
        first_done.set()
        second_done.wait(30)
        seen["first"] = tiny.last_stats.n_truncated  # read after the other thread's encode

    def second():
        first_done.wait(30)
        tiny.encode(["short"])
        seen["second"] = tiny.last_stats.n_truncated
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen == {"first": 1, "second": 0}


# ---- the NaN guard ----
def test_nonfinite_batch_is_recomputed_in_fp32(tmp_path, monkeypatch):
    encoder = xlembed.load(make_tiny_st_folder(tmp_path), precision="bf16")
    texts = ["a b", "c d", "e f", "g h"]
    expected = xlembed.load(encoder.info.source).encode(texts)
    real_forward = type(encoder)._forward

    def poisoned(self, batch, prefix, output, precision):
        out = real_forward(self, batch, prefix, output, precision)
        if precision != "fp32":
            out[0, 0] = np.nan
        return out

    monkeypatch.setattr(type(encoder), "_forward", poisoned)
    with pytest.warns(xlembed.XlembedWarning, match="recomputed in fp32"):
        out = encoder.encode(texts, batch_size=2)
    assert np.isfinite(out).all()
    assert encoder.last_stats.n_recomputed_fp32 == 4
    assert row_cosine(out, expected).min() > 0.9999


def test_nonfinite_without_fallback_raises(tmp_path, monkeypatch):
    encoder = xlembed.load(make_tiny_st_folder(tmp_path), precision="bf16")
    monkeypatch.setattr(type(encoder), "_forward",
                        lambda self, b, p, o, precision: np.full((len(b), self.dim), np.inf, dtype=np.float32))
    with pytest.raises(xlembed.NumericalError, match="NaN/inf"):
        encoder.encode(["a"])


def test_progress_bar_on_request(tiny, capsys):
    tiny.encode(["a"] * 5, show_progress=True)
    assert "encode" in capsys.readouterr().err


def test_fp16_autocast_on_cuda(e5_dir):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine: the fp16 autocast path runs on CUDA only")
    texts = MIXED * 4
    fp32 = xlembed.load(e5_dir, device="cuda").encode(texts)
    fp16 = xlembed.load(e5_dir, precision="fp16", device="cuda")
    assert row_cosine(fp16.encode(texts), fp32).mean() > 0.99
