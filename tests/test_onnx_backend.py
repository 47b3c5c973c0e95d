"""ONNX export and the ONNX Runtime encoder, on a tiny random BERT built in the test (no download)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from tiny_models import HIDDEN, make_tiny_st_folder, rowwise_cosine  # noqa: E402

from xlembed.backends.onnx_backend import OnnxEncoder  # noqa: E402
from xlembed.compress import artifacts, onnx_export  # noqa: E402
from xlembed.compress.artifacts import cached_onnx_folder  # noqa: E402
from xlembed.compress.onnx_export import export_onnx_folder  # noqa: E402
from xlembed.backends.torch_backend import TorchEncoder  # noqa: E402
from xlembed.errors import BadInputError, ExportError, NumericalError, XlembedWarning  # noqa: E402
from xlembed.manifest import read_manifest  # noqa: E402

DENSE_OUT = 16  # make_tiny_st_folder(dense=True) adds Dense 32 -> 16

# Batch sizes and lengths that differ from the 3 sentences the graph is traced on, with padding.
TEXTS = [
    "hello world",
    "the cat is on the tree and the dog is in the house with a long tail",
    "x",
    "blue moon",
    "a short text",
    "this model reads every sentence in the batch, one two three",
    "yes",
]



@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return make_tiny_st_folder(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def torch_encoder(tiny_folder) -> TorchEncoder:
    return TorchEncoder.from_folder(tiny_folder, name="tiny", prompts={"query": "query: "}, default_prompt_name="query")


@pytest.fixture(scope="module")
def fp32_folder(torch_encoder, tmp_path_factory) -> Path:
    return export_onnx_folder(torch_encoder, tmp_path_factory.mktemp("x") / "fp32", precision="fp32")


@pytest.fixture(scope="module")
def int8_folder(torch_encoder, tmp_path_factory) -> Path:
    return export_onnx_folder(torch_encoder, tmp_path_factory.mktemp("x") / "int8", precision="int8")


def test_fp32_matches_torch_on_untraced_shapes(torch_encoder, fp32_folder):
    onnx_enc = OnnxEncoder.from_folder(fp32_folder)
    assert onnx_enc.backend == "onnx" and onnx_enc.precision == "fp32"
    assert onnx_enc.dim == torch_encoder.dim == HIDDEN
    assert onnx_enc.default_prompt == "query: "  # prompts travel through the manifest
    assert "token_type_ids" in [i.name for i in onnx_enc.session.get_inputs()]  # BERT's tokenizer makes them
    for batch_size in (1, 3, 32):  # 3 texts per batch, a last batch of 1, all 7 at once
        ref = torch_encoder.encode(TEXTS, batch_size=batch_size)
        got = onnx_enc.encode(TEXTS, batch_size=batch_size)
        assert got.dtype == np.float32 and got.shape == (len(TEXTS), HIDDEN)
        assert rowwise_cosine(got, ref).min() > 0.9999
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # Normalize is in the graph

    ref_tok = torch_encoder.encode(TEXTS, batch_size=4, output="token")
    got_tok = onnx_enc.encode(TEXTS, batch_size=4, output="token")
    for r, g in zip(ref_tok, got_tok):
        assert g.shape == r.shape and g.shape[1] == HIDDEN  # padding removed, same token count
        assert rowwise_cosine(g, r).min() > 0.9999


def test_manifest_and_files(fp32_folder, int8_folder):
    m32 = read_manifest(fp32_folder)
    assert m32.format == "onnx" and m32.precision == "fp32" and m32.files == {"fp32": "model.onnx"}
    assert m32.dim == HIDDEN and m32.pooling == "mean" and m32.normalized_output is True
    assert m32.prompts == {"query": "query: "} and m32.default_prompt_name == "query"
    m8 = read_manifest(int8_folder)
    assert m8.precision == "int8" and m8.files == {"int8": "model_int8.onnx"}
    assert not (int8_folder / "model.onnx").exists()  # keep_fp32=False
    assert (int8_folder / "tokenizer.json").is_file()
    assert not list(int8_folder.parent.glob("*.partial"))


def test_dense_layer_is_kept(tmp_path):
    folder = make_tiny_st_folder(tmp_path, dense=True)
    torch_enc = TorchEncoder.from_folder(folder, name="tiny-dense")
    assert torch_enc.dim == DENSE_OUT
    out = export_onnx_folder(torch_enc, tmp_path / "onnx", precision="fp32")
    onnx_enc = OnnxEncoder.from_folder(out)
    assert onnx_enc.dim == DENSE_OUT
    got = onnx_enc.encode(TEXTS, batch_size=3)
    assert got.shape == (len(TEXTS), DENSE_OUT)
    assert rowwise_cosine(got, torch_enc.encode(TEXTS, batch_size=3)).min() > 0.9999
    tokens = onnx_enc.encode(TEXTS[:2], output="token")
    assert tokens[0].shape[1] == HIDDEN  # token vectors are the transformer's, before Dense


def test_int8_round_trip(torch_encoder, int8_folder):
    onnx_enc = OnnxEncoder.from_folder(int8_folder, name="tiny-int8")
    assert onnx_enc.precision == "int8" and onnx_enc.name == "tiny-int8"
    got = onnx_enc.encode(TEXTS, batch_size=3)
    assert got.shape == (len(TEXTS), HIDDEN) and np.isfinite(got).all()
    assert rowwise_cosine(got, torch_encoder.encode(TEXTS, batch_size=3)).min() > 0.95


def test_missing_precision_is_a_bad_input(int8_folder):
    with pytest.raises(BadInputError) as info:
        OnnxEncoder.from_folder(int8_folder, precision="fp32")
    message = str(info.value)
    assert str(int8_folder) in message and "int8" in message


def test_token_lengths_count_truncation(torch_encoder, fp32_folder):
    onnx_enc = OnnxEncoder.from_folder(fp32_folder)
    long_text = " ".join(["cat"] * 100)
    texts = ["hello", long_text]
    assert onnx_enc._token_lengths(texts, "query: ") == torch_encoder._token_lengths(texts, "query: ")
    with pytest.warns(XlembedWarning, match="truncated"):
        got = onnx_enc.encode(texts)
    assert onnx_enc.last_stats.truncated_indices == [1]
    with pytest.warns(XlembedWarning):
        ref = torch_encoder.encode(texts)
    assert rowwise_cosine(got, ref).min() > 0.9999


def test_nan_guard_uses_fp32_file(torch_encoder, tmp_path, monkeypatch):
    out = export_onnx_folder(torch_encoder, tmp_path / "both", precision="int8", keep_fp32=True)
    assert read_manifest(out).files == {"int8": "model_int8.onnx", "fp32": "model.onnx"}
    onnx_enc = OnnxEncoder.from_folder(out)
    assert onnx_enc.precision == "int8"

    def nan_batch(texts, prefix, output):
        return np.full((len(texts), onnx_enc.dim), np.nan, dtype=np.float32)

    monkeypatch.setattr(onnx_enc, "_encode_batch", nan_batch)
    with pytest.warns(XlembedWarning, match="recomputed in fp32"):
        got = onnx_enc.encode(TEXTS[:3])
    assert onnx_enc.last_stats.n_recomputed_fp32 == 3
    assert rowwise_cosine(got, torch_encoder.encode(TEXTS[:3])).min() > 0.9999


def test_nan_guard_without_fp32_file_raises(int8_folder, monkeypatch):
    onnx_enc = OnnxEncoder.from_folder(int8_folder)
    monkeypatch.setattr(
        onnx_enc, "_encode_batch", lambda texts, prefix, output: np.full((len(texts), onnx_enc.dim), np.inf, np.float32)
    )
    with pytest.raises(NumericalError):
        onnx_enc.encode(TEXTS[:2])


def test_cached_onnx_folder_exports_once(torch_encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("XLEMBED_CACHE", str(tmp_path / "cache"))
    calls = []
    real_export = artifacts.export_onnx_folder

    def counting_export(*args, **kwargs):
        calls.append(kwargs.get("precision"))
        return real_export(*args, **kwargs)

    monkeypatch.setattr(artifacts, "export_onnx_folder", counting_export)
    first = cached_onnx_folder(torch_encoder, "int8")
    second = cached_onnx_folder(torch_encoder, "int8")
    assert calls == ["int8"]
    assert first == second and first.parent == tmp_path / "cache" / "onnx"
    assert read_manifest(first).files == {"int8": "model_int8.onnx", "fp32": "model.onnx"}  # fp32 kept for the guard
    assert OnnxEncoder.from_folder(first).encode(["hello"]).shape == (1, HIDDEN)


def test_failed_quantization_leaves_nothing(torch_encoder, tmp_path, monkeypatch):
    import onnxruntime.quantization

    def broken(*args, **kwargs):
        raise RuntimeError("quantizer exploded")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", broken)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="quantizer exploded"):
        export_onnx_folder(torch_encoder, out, precision="int8")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no half-written temporary folder either


def test_failed_verification_names_the_figure(torch_encoder, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "VERIFY_MIN_COSINE", 1.5)  # no graph can pass this
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"lowest sentence cosine \d\.\d+"):
        export_onnx_folder(torch_encoder, out, precision="fp32")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_existing_folder_needs_overwrite(torch_encoder, fp32_folder):
    with pytest.raises(BadInputError, match="overwrite"):
        export_onnx_folder(torch_encoder, fp32_folder, precision="fp32")


def test_bad_precision_arguments(torch_encoder, tmp_path, fp32_folder):
    with pytest.raises(BadInputError):
        export_onnx_folder(torch_encoder, tmp_path / "x", precision="fp16")
    with pytest.raises(BadInputError):
        OnnxEncoder.from_folder(fp32_folder, precision="bf16")
    assert not (tmp_path / "x").exists()


def test_cuda_without_cuda_provider_falls_back_to_cpu(fp32_folder):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the fallback is not reachable here")
    with pytest.warns(XlembedWarning, match="CUDAExecutionProvider"):
        onnx_enc = OnnxEncoder.from_folder(fp32_folder, device="cuda")
    assert onnx_enc.device == "cpu" and onnx_enc.provider == "CPUExecutionProvider"
    assert any("CUDAExecutionProvider" in note for note in onnx_enc.info.notes)
    assert onnx_enc.encode(["hello"]).shape == (1, HIDDEN)
