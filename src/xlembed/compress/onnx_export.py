"""ONNX export: one graph for a whole sentence-transformers pipeline, checked against torch.

``export_onnx_folder`` turns a loaded ``TorchEncoder`` into a folder holding ONE ONNX graph for the
whole pipeline (transformer + Pooling + optional Dense + optional Normalize: the SentenceTransformer's
own modules are traced, so a Dense layer is never lost), the tokenizer files and an ``xlembed.json``
manifest. The graph has two outputs, ``sentence_embedding`` (B, dim) and ``token_embeddings``
(B, T, hidden, the transformer's last hidden state). int8 folders are quantized by ``quantize.py``.

The export uses the dynamo exporter (``torch.onnx.export(..., dynamo=True)``); the legacy
TorchScript exporter produced wrong graphs here (see FINDINGS.md). Every export is checked against
torch on batch shapes it was not traced on before anything is quantized.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np

from ..errors import BadInputError, ExportError, UnsupportedError
from ..manifest import Manifest
from ..paths import atomic_folder
from .attention_fusion import fuse_attention
from .onnx_io import data_file, quiet_export, remove_onnx
from .quantize import quantize_int8

ONNX_PRECISIONS = ("fp32", "int8")
FILE_NAMES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
OUTPUT_NAMES = ("sentence_embedding", "token_embeddings")
VERIFY_MIN_COSINE = 0.9999
VERIFY_MAX_NORM_ERROR = 1e-3  # relative difference of the vector lengths (cosine alone ignores scale)
EXPORT_RECIPE = "attention-fused-2"  # part of the ONNX cache key: a change here exports cached models again
EXTERNAL_DATA_BYTES = 1_800_000_000  # above this the weights go to model.onnx.data (protobuf limit is 2 GB)

# Sentences the export is traced on and verified with. The verification batches differ from the
# traced one in batch size and length, and are padded, so a graph that baked in the traced shapes
# (or ignores the attention mask) fails the check.
_TRACE_TEXTS = [
    "A short sentence.",
    "Ein etwas längerer deutscher Satz mit mehreren Wörtern.",
    "短い日本語の文です。",
]
_VERIFY_BATCHES = [
    [
        "The weather was cold, so we stayed inside and read books all afternoon long.",
        "Hi",
        "Ich habe gestern einen sehr interessanten Film über die Geschichte Berlins gesehen, "
        "der mehr als drei Stunden dauerte.",
        "彼は毎朝六時に起きて、駅まで歩いて行きます。",
        "Où est la gare ? Je dois prendre le train de huit heures pour Lyon.",
    ],
    ["Only one sentence in this batch, and it is longer than every sentence the graph was traced on."],
]


def export_onnx_folder(
    encoder,
    out_dir: Path,
    precision: str = "int8",
    keep_fp32: bool = False,
    overwrite: bool = False,
) -> Path:
    """Export ``encoder`` (a TorchEncoder) to an ONNX folder at ``out_dir`` and return ``out_dir``.

    precision: 'fp32' writes model.onnx; 'int8' writes model_int8.onnx (dynamic int8 weights).
    keep_fp32: with 'int8', also keep model.onnx (the fp32 fallback of the NaN guard).
    Everything is written into a temporary sibling folder that is renamed into place at the end,
    so a failure leaves ``out_dir`` as it was. Raises ExportError when the exported graph differs
    from torch (cosine < 0.9999 on any verification sentence) or quantization fails.
    """
    if precision not in ONNX_PRECISIONS:
        raise BadInputError(f"ONNX export writes precision 'fp32' or 'int8', not {precision!r}")
    model = getattr(encoder, "model", None)
    if model is None or not hasattr(model, "tokenizer"):
        raise BadInputError(
            f"export_onnx_folder needs a TorchEncoder (a sentence-transformers model), got {type(encoder).__name__}"
        )
    _check_exportable(model, encoder.name)
    out_dir = Path(out_dir)
    info = encoder.info

    with atomic_folder(out_dir, overwrite) as tmp:
        st = _cpu_model(model)
        input_names = _input_names(st)
        fp32_path = tmp / FILE_NAMES["fp32"]
        _export_graph(st, fp32_path, input_names, info.name)
        if not _fuse_attention_verified(st, fp32_path, input_names, info.name):  # a fused graph is verified there
            _verify_graph(st, fp32_path, input_names, info.name)

        st.tokenizer.save_pretrained(str(tmp))
        compact_json(tmp / "tokenizer.json")
        files: dict[str, str] = {}
        if precision == "int8":
            int8_path = tmp / FILE_NAMES["int8"]
            quantize_int8(fp32_path, int8_path, tmp / "tokenizer.json", prefix=encoder.default_prompt)
            files["int8"] = int8_path.name
            if keep_fp32:
                files["fp32"] = fp32_path.name
            else:
                remove_onnx(fp32_path)
        else:
            files["fp32"] = fp32_path.name
        Manifest.from_info(info, "onnx", precision, files).write(tmp)
    return out_dir


def compact_json(path: Path) -> None:
    """Rewrite a JSON file without the indentation transformers saves tokenizer.json with (the same content;
    a 66k-piece unigram vocabulary: 2.4 MB instead of 4.6)."""
    import json

    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def _check_exportable(model, name: str) -> None:
    first = model[0]
    if type(first).__name__ != "Transformer" or not hasattr(first, "auto_model"):
        raise UnsupportedError(
            f"model {name!r} does not start with a sentence-transformers Transformer module "
            f"(found {type(first).__name__}); only transformer models can be exported to ONNX"
        )
    if getattr(first, "do_lower_case", False):
        raise UnsupportedError(
            f"model {name!r} lowercases its input in sentence-transformers (do_lower_case=True), which the "
            "ONNX folder cannot record; use the torch backend for this model"
        )
    for module in model:
        if getattr(module, "include_prompt", True) is False:
            raise UnsupportedError(
                f"model {name!r} excludes prompt tokens from pooling (include_prompt=False), which needs the "
                "prompt length at run time; use the torch backend for this model"
            )


def _cpu_model(model):
    """The pipeline on CPU in eval mode: the model itself, or a CPU copy when it lives on a GPU."""
    import torch

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type != "cpu":
        model = copy.deepcopy(model).to("cpu")
    model.eval()
    return model


def _input_names(st) -> list[str]:
    """input_ids, attention_mask, and token_type_ids when the tokenizer produces them."""
    produced = st.tokenizer(["a b", "c"], padding=True)
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in produced:
        names.append("token_type_ids")
    return names


def _pipeline_module(st, input_names: list[str]):
    import torch

    class Pipeline(torch.nn.Module):
        def __init__(self, st_model):
            super().__init__()
            self.st = st_model

        def run(self, features):
            out = self.st(features)
            return out["sentence_embedding"], out["token_embeddings"]

    class TwoInputs(Pipeline):
        def forward(self, input_ids, attention_mask):
            return self.run({"input_ids": input_ids, "attention_mask": attention_mask})

    class ThreeInputs(Pipeline):
        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.run(
                {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            )

    cls = ThreeInputs if "token_type_ids" in input_names else TwoInputs
    return cls(st).eval()


def _features(st, texts: list[str], input_names: list[str]) -> dict:
    """Token ids exactly as sentence-transformers makes them, as int64 tensors, for ``input_names``."""
    import torch

    feats = st.preprocess(texts)
    out = {}
    for name in input_names:
        value = feats.get(name)
        if value is None:  # token_type_ids the module did not produce: all zeros
            value = torch.zeros_like(feats["input_ids"])
        out[name] = value.to(torch.int64)
    return out


def _export_graph(st, path: Path, input_names: list[str], name: str) -> None:
    import torch

    wrapper = _pipeline_module(st, input_names)
    feats = _features(st, _TRACE_TEXTS, input_names)
    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("sequence")
    dynamic_shapes = {n: {0: batch, 1: seq} for n in input_names}
    try:
        with quiet_export(), torch.no_grad():
            program = torch.onnx.export(
                wrapper,
                tuple(feats[n] for n in input_names),
                input_names=input_names,
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=dynamic_shapes,
                dynamo=True,
                optimize=True,
                verbose=False,
            )
            n_bytes = sum(p.numel() * p.element_size() for p in st.parameters())
            program.save(str(path), external_data=n_bytes > EXTERNAL_DATA_BYTES)
    except Exception as exc:  # the exporter raises many types; all mean "this model did not export"
        raise ExportError(f"ONNX export of {name!r} failed: {type(exc).__name__}: {exc}") from exc


def _fuse_attention_verified(st, path: Path, input_names: list[str], name: str) -> int:
    """Replace the graph at ``path`` by its attention-fused version when that still matches torch.

    Returns the number of fused attention blocks (0: the graph is left as exported, e.g. mT5, whose relative
    position bias the fused kernel does not add; see ``attention_fusion.py``)."""
    import onnx

    config = st[0].auto_model.config
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "num_heads", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    if not heads or not hidden:
        return 0
    model = onnx.load(str(path))
    external = data_file(path).exists()
    fused = fuse_attention(model, int(heads), int(hidden))
    if not fused:
        return 0
    # the candidate is written under the same file names in a sibling folder, so that an external-data file
    # keeps the name the graph refers to when both are moved into place
    candidate = path.parent / ".attention-fused" / path.name
    candidate.parent.mkdir(exist_ok=True)
    try:
        onnx.save(model, str(candidate), save_as_external_data=external,
                  location=data_file(path).name if external else None)
        del model
        try:
            _verify_graph(st, candidate, input_names, name)
        except Exception:  # a mismatch (ExportError) or a shape onnxruntime's kernel refuses: keep the plain graph
            return 0
        if external:
            data_file(candidate).replace(data_file(path))
        candidate.replace(path)
    finally:
        shutil.rmtree(candidate.parent, ignore_errors=True)
    return fused


def _verify_graph(st, path: Path, input_names: list[str], name: str) -> None:
    """Compare the ONNX graph with torch on padded batches of shapes it was not traced on."""
    import torch

    from ..backends.onnx_backend import make_session

    session = make_session(path, "cpu")
    worst_sentence, worst_token, worst_norm = 1.0, 1.0, 0.0
    for texts in _VERIFY_BATCHES:
        feats = _features(st, texts, input_names)
        with torch.inference_mode():
            out = st(dict(feats))
        ref_sentence = out["sentence_embedding"].float().numpy()
        ref_tokens = out["token_embeddings"].float().numpy()
        got_sentence, got_tokens = session.run(list(OUTPUT_NAMES), {k: v.numpy() for k, v in feats.items()})
        if got_sentence.shape != ref_sentence.shape or got_tokens.shape != ref_tokens.shape:
            raise ExportError(
                f"ONNX export of {name!r} gives shapes {got_sentence.shape}/{got_tokens.shape} where torch gives "
                f"{ref_sentence.shape}/{ref_tokens.shape} on a batch of {len(texts)}; the graph is not usable"
            )
        mask = feats["attention_mask"].numpy().astype(bool)
        worst_sentence = min(worst_sentence, float(_cosines(got_sentence, ref_sentence).min()))
        worst_token = min(worst_token, float(_cosines(got_tokens[mask], ref_tokens[mask]).min()))
        norms_ref = np.linalg.norm(ref_sentence, axis=1)
        norms_got = np.linalg.norm(got_sentence, axis=1)
        worst_norm = max(worst_norm, float(np.max(np.abs(norms_got - norms_ref) / np.maximum(norms_ref, 1e-12))))
    if not (worst_sentence >= VERIFY_MIN_COSINE and worst_token >= VERIFY_MIN_COSINE):
        raise ExportError(
            f"ONNX export of {name!r} does not match torch on new batch shapes: lowest sentence cosine "
            f"{worst_sentence:.6f}, lowest token cosine {worst_token:.6f} (need >= {VERIFY_MIN_COSINE})"
        )
    if not worst_norm <= VERIFY_MAX_NORM_ERROR:
        raise ExportError(
            f"ONNX export of {name!r} does not match torch on new batch shapes: sentence vector lengths differ "
            f"by up to {worst_norm:.2e} relative (need <= {VERIFY_MAX_NORM_ERROR})"
        )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    denom = np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30)
    return (a * b).sum(-1) / denom
