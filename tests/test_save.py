"""save() / load() round trips (fp16, bf16, int8 ONNX), atomic writes, and ONNX/int8 quality on a real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import xlembed
from conftest import read_tatoeba, row_cosine, top1_both_directions
from tiny_models import make_tiny_st_folder

TEXTS = ["今日は天気がいい", "The weather is nice today", "Das Wetter ist schön", "I lost my keys", ""]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_round_trip_tiny(tmp_path, precision):
    source = xlembed.load(make_tiny_st_folder(tmp_path, dense=True))
    out = xlembed.save(source, tmp_path / f"saved-{precision}", precision=precision)
    weights = (out / "model.safetensors").stat().st_size
    full = (tmp_path / "tiny-model" / "model.safetensors").stat().st_size
    assert weights < 0.6 * full  # really stored in 16 bits
    loaded = xlembed.load(out)
    assert loaded.dim == 16  # the Dense layer survived
    assert row_cosine(loaded.encode(TEXTS), source.encode(TEXTS)).min() > 0.999
    manifest = xlembed.manifest.read_manifest(out)
    assert manifest.precision == precision and manifest.format == "sentence-transformers"


def test_save_refuses_to_overwrite_and_leaves_no_partial_folder(tmp_path, monkeypatch):
    source = xlembed.load(make_tiny_st_folder(tmp_path))
    out = xlembed.save(source, tmp_path / "out", precision="fp16")
    with pytest.raises(xlembed.BadInputError, match="not empty"):
        xlembed.save(source, out, precision="fp16")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(source.model), "save", boom)
    with pytest.raises(RuntimeError):
        xlembed.save(source, tmp_path / "never", precision="fp16")
    assert not (tmp_path / "never").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    with pytest.raises(RuntimeError):
        xlembed.save(source, out, precision="fp16", overwrite=True)
    assert xlembed.load(out).dim == 32  # the old folder is intact after a failed overwrite


def test_bad_save_arguments(tmp_path):
    source = xlembed.load(make_tiny_st_folder(tmp_path))
    with pytest.raises(xlembed.BadInputError, match="ONNX folder holds"):
        xlembed.save(source, tmp_path / "x", precision="fp16", format="onnx")
    with pytest.raises(xlembed.UnsupportedError, match="package"):
        xlembed.save(xlembed.load(), tmp_path / "use")


# ---- real model: multilingual-e5-small ----
def test_fp16_round_trip_real_model(e5, tmp_path):
    out = xlembed.save(e5, tmp_path / "e5-fp16", precision="fp16")
    loaded = xlembed.load(out)
    assert loaded.default_prompt == "query: "
    assert row_cosine(loaded.encode(TEXTS), e5.encode(TEXTS)).min() > 0.999


@pytest.fixture(scope="module")
def tatoeba_500(tatoeba_dir):
    return {lang: read_tatoeba(tatoeba_dir, lang, 500) for lang in ("jpn", "deu")}


@pytest.fixture(scope="module")
def e5_int8(e5_dir):
    return xlembed.load(e5_dir, precision="int8")


def test_onnx_fp32_equals_torch(e5, e5_dir, tmp_path, tatoeba_500):
    onnx_dir = xlembed.save(e5, tmp_path / "e5-onnx", precision="fp32", format="onnx")
    onnx = xlembed.load(onnx_dir)
    assert onnx.backend == "onnx" and onnx.precision == "fp32"
    texts = TEXTS + tatoeba_500["jpn"][0][:100] + tatoeba_500["deu"][1][:100]
    assert row_cosine(onnx.encode(texts, batch_size=7), e5.encode(texts)).min() > 0.9999


def test_int8_drift_and_tatoeba_accuracy(e5, e5_int8, tatoeba_500):
    assert e5_int8.backend == "onnx" and e5_int8.precision == "int8"
    texts = tatoeba_500["jpn"][0][:250] + tatoeba_500["deu"][0][:250]
    assert row_cosine(e5_int8.encode(texts), e5.encode(texts)).mean() > 0.98
    for lang, (xx, en) in tatoeba_500.items():
        fp32 = top1_both_directions(e5.encode(xx), e5.encode(en))
        int8 = top1_both_directions(e5_int8.encode(xx), e5_int8.encode(en))
        assert int8 >= fp32 - 1.5, (lang, fp32, int8)


def test_int8_round_trip_real_model(e5_int8, tmp_path):
    out = xlembed.save(e5_int8, tmp_path / "e5-int8")
    assert (out / "model_int8.onnx").is_file() and not (out / "model.onnx").exists()
    loaded = xlembed.load(out)
    assert loaded.precision == "int8" and loaded.default_prompt == "query: "
    assert row_cosine(loaded.encode(TEXTS), e5_int8.encode(TEXTS)).min() > 0.999


def test_cached_int8_is_found_without_loading_torch(tmp_path, monkeypatch):
    from xlembed.backends.torch_backend import TorchEncoder

    folder = make_tiny_st_folder(tmp_path)
    first = xlembed.load(folder, precision="int8")

    def no_torch(*args, **kwargs):
        raise AssertionError("the torch model was loaded although the int8 export is cached")

    monkeypatch.setattr(TorchEncoder, "from_folder", no_torch)
    second = xlembed.load(folder, precision="int8")
    assert second.info.source == first.info.source
    assert np.allclose(second.encode(TEXTS), first.encode(TEXTS))
    assert (Path(second.info.source) / "xlembed.json").stat().st_mode & 0o044  # readable like any file, not 0600
