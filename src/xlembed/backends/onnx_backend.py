"""Transformer models through ONNX Runtime: fp32 and dynamic int8.

``export_onnx_folder`` turns a loaded ``TorchEncoder`` into a folder holding ONE ONNX graph for the
whole sentence-transformers pipeline (transformer + Pooling + optional Dense + optional Normalize:
the SentenceTransformer's own modules are traced, so a Dense layer is never lost), the tokenizer
files and an ``xlembed.json`` manifest. The graph has two outputs, ``sentence_embedding`` (B, dim)
and ``token_embeddings`` (B, T, hidden, the transformer's last hidden state).

The export uses the dynamo exporter (``torch.onnx.export(..., dynamo=True)``); the legacy
TorchScript exporter produced wrong graphs here (see FINDINGS.md). Every export is checked against
torch on batch shapes it was not traced on before anything is quantized.

``OnnxEncoder`` runs such a folder with onnxruntime; ``cached_onnx_folder`` exports a torch model
once into xlembed's cache and reuses the folder afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from ..encoder import Encoder, ModelInfo, Output
from ..errors import BadInputError, ExportError, ModelFilesError, UnsupportedError, XlembedWarning
from ..manifest import Manifest, read_manifest
from ..paths import atomic_folder, cache_dir

ONNX_PRECISIONS = ("fp32", "int8")
FILE_NAMES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
OUTPUT_NAMES = ("sentence_embedding", "token_embeddings")
OUTPUT_KEY = {"sentence": "sentence_embedding", "token": "token_embeddings"}
VERIFY_MIN_COSINE = 0.9999
VERIFY_MAX_NORM_ERROR = 1e-3  # relative difference of the vector lengths (cosine alone ignores scale)
EXTERNAL_DATA_BYTES = 1_800_000_000  # above this the weights go to model.onnx.data (protobuf limit is 2 GB)

# Dynamic int8 settings chosen by measurement on multilingual-e5-small ('query: ' prefix, 2-core AMD
# EPYC with avx512_vnni). Per-channel weight scales: cosine to torch fp32 mean 0.9969 (min 0.987) over
# 2,500 Tatoeba sentences vs 0.9903 (min 0.977) per-tensor; Tatoeba jpn+deu (500 pairs each) lost
# 0.5-0.65 points vs 0.9-2.3 per-tensor; same speed. Quantizing the Gather (embedding table) too costs
# no accuracy and makes the file 114 MB instead of 389 MB (MatMul only). onnxruntime's
# quant_pre_process changed neither speed nor accuracy. reduce_range (7-bit weights) changed nothing on
# that avx512_vnni host, but on an AVX2-only host (no VNNI: the u8s8 kernel saturates) Tatoeba jpn (500
# pairs) fell 87.6 -> 85.0 without it and 87.6 -> 86.9 with it (deu 97.7 -> 97.2): on by default.
QUANT_OPTIONS: dict = {
    "per_channel": True,
    "reduce_range": True,
    "op_types_to_quantize": None,  # None: every op type onnxruntime can quantize (MatMul, Gather, ...)
    "extra_options": {},
}

# onnxruntime graph rewrites switched off when a CPU session is made. On this CPU (AMD EPYC, avx512)
# onnxruntime 1.32's fused SkipLayerNormalization kernel took ~28% of int8 run time; the unfused
# Add + LayerNormalization it replaces are ~5x cheaper (int8 encode ~1.4x faster overall).
DISABLED_OPTIMIZERS: tuple[str, ...] = ("SkipLayerNormFusion",)

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


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------
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
        _verify_graph(st, fp32_path, input_names, info.name)

        files: dict[str, str] = {}
        if precision == "int8":
            int8_path = tmp / FILE_NAMES["int8"]
            _quantize(fp32_path, int8_path)
            files["int8"] = int8_path.name
            if keep_fp32:
                files["fp32"] = fp32_path.name
            else:
                _remove_onnx(fp32_path)
        else:
            files["fp32"] = fp32_path.name

        st.tokenizer.save_pretrained(str(tmp))
        Manifest.from_info(info, "onnx", precision, files).write(tmp)
    return out_dir


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
        with _quiet_export(), torch.no_grad():
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


def _verify_graph(st, path: Path, input_names: list[str], name: str) -> None:
    """Compare the ONNX graph with torch on padded batches of shapes it was not traced on."""
    import torch

    session = _make_session(path, "cpu")
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


@contextlib.contextmanager
def _quiet_export():
    """Silence the exporter's and quantizer's progress prints, warnings and advice while they run.

    Errors still propagate as exceptions; only chatter is dropped (the torchvision notices of the
    exporter's op registry, 'consider pre-processing' from the quantizer, FutureWarnings).
    """

    class _DropWarnings(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.levelno >= logging.ERROR

    drop = _DropWarnings()
    root = logging.getLogger()  # onnxruntime.quantization logs its advice on the root logger
    quieted = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in quieted]
    root.addFilter(drop)
    for logger in quieted:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(drop)
        for logger, level in zip(quieted, levels):
            logger.setLevel(level)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    denom = np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30)
    return (a * b).sum(-1) / denom


def _quantize(src: Path, dst: Path, options: dict | None = None) -> None:
    """Dynamic int8 weights (activations quantized at run time) with QUANT_OPTIONS."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    opts = dict(QUANT_OPTIONS if options is None else options)
    external = _data_file(src).exists()
    try:
        with _quiet_export():
            quantize_dynamic(
                str(src),
                str(dst),
                weight_type=QuantType.QInt8,
                per_channel=opts.get("per_channel", False),
                reduce_range=opts.get("reduce_range", False),
                op_types_to_quantize=opts.get("op_types_to_quantize"),
                use_external_data_format=external,
                extra_options=dict(opts.get("extra_options") or {}),
            )
    except Exception as exc:
        raise ExportError(f"int8 quantization of {src.name} failed: {type(exc).__name__}: {exc}") from exc


def _data_file(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name + ".data")


def _remove_onnx(path: Path) -> None:
    path.unlink(missing_ok=True)
    _data_file(path).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------------------------
def cached_onnx_folder(encoder, precision: str, pooling_override: str | None = None) -> Path:
    """The ONNX folder of this torch model at ``precision``, exported on first use into the cache.

    int8 folders keep model.onnx as the NaN guard's fp32 fallback. ``pooling_override`` is the
    pooling chosen at load time for a folder without modules.json (it is part of the cache key).
    """
    folder = onnx_cache_folder(Path(encoder.info.source), precision, pooling_override)
    if cache_has(folder, precision):
        return folder
    return export_onnx_folder(encoder, folder, precision=precision, keep_fp32=(precision == "int8"), overwrite=True)


def onnx_cache_folder(source: Path, precision: str, pooling_override: str | None = None) -> Path:
    """Where the ONNX export of the model folder ``source`` lives in the cache (it may not exist yet).

    The key covers xlembed's version, the precision, the resolved source folder, the size and mtime
    of every file in it (weights, configs, modules), and the pooling chosen at load time, so a changed
    model, pooling or xlembed exports again. It is computed from the folder alone, so a cached export
    is found without loading the torch model.
    """
    from .. import __version__

    if precision not in ONNX_PRECISIONS:
        raise BadInputError(f"ONNX folders hold precision 'fp32' or 'int8', not {precision!r}")
    source = Path(source).expanduser().resolve()
    parts = [f"xlembed={__version__}", f"precision={precision}", f"source={source}", f"pooling={pooling_override}"]
    if precision == "int8":
        parts.append(f"quant={sorted(QUANT_OPTIONS.items())}")
    files = sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith("."))
    for path in files:
        stat = path.stat()
        parts.append(f"{path.relative_to(source).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in source.name)[:40]
    return cache_dir() / "onnx" / f"{stem}-{precision}-{digest}"


def cache_has(folder: Path, precision: str) -> bool:
    """True when ``folder`` is a complete ONNX folder holding ``precision``."""
    try:
        manifest = read_manifest(folder)
    except ModelFilesError:
        return False
    if manifest is None or manifest.format != "onnx":
        return False
    file = manifest.files.get(precision)
    return bool(file) and (folder / file).is_file()


# ---------------------------------------------------------------------------------------------
# the encoder
# ---------------------------------------------------------------------------------------------
class OnnxEncoder(Encoder):
    """An exported folder run by onnxruntime, with xlembed's batching, prompts and NaN guard."""

    def __init__(self, folder: Path, session, tokenizer, info: ModelInfo, files: dict[str, str], provider: str):
        super().__init__(info)
        self.folder = Path(folder)
        self.session = session
        self.tokenizer = tokenizer
        self.files = dict(files)
        self.provider = provider
        self._input_names = [i.name for i in session.get_inputs()]
        self._fp32_session = session if info.precision == "fp32" else None

    @classmethod
    def from_folder(
        cls,
        folder: Path,
        *,
        name: str | None = None,
        precision: str | None = None,
        device: str = "cpu",
        prompts: dict | None = None,
        default_prompt_name: str | None = None,
    ) -> "OnnxEncoder":
        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest is None:
            raise ModelFilesError(
                f"{folder} has no xlembed.json, so it is not an ONNX folder written by xlembed; "
                "export it again with xlembed (xlembed export --format onnx)"
            )
        if manifest.format != "onnx":
            raise BadInputError(f"{folder} holds a {manifest.format} model, not an ONNX export")
        precision = precision or manifest.precision
        present = {p: f for p, f in manifest.files.items() if (folder / f).is_file()}
        if precision not in present:
            have = ", ".join(sorted(present)) or "none"
            raise BadInputError(
                f"{folder} has no {precision} ONNX model (precisions in that folder: {have}); "
                f"load it with one of those or export again with precision={precision!r}"
            )
        requested = device or "auto"
        device, provider = _pick_provider(device)
        session = _make_session(folder / present[precision], device)
        tokenizer = _load_tokenizer(folder)

        default = manifest.default_prompt_name if default_prompt_name is None else (default_prompt_name or None)
        notes = []
        if requested.startswith("cuda") and provider == "CPUExecutionProvider":
            notes.append(f"device {requested!r} asked for, but onnxruntime has no CUDAExecutionProvider: running on CPU")
        info = ModelInfo(
            name=name or manifest.name,
            source=str(folder),
            dim=int(manifest.dim),
            max_length=manifest.max_length,
            backend="onnx",
            precision=precision,
            device=device,
            prompts=dict(manifest.prompts if prompts is None else prompts),
            default_prompt_name=default,
            pooling=manifest.pooling,
            normalized_output=bool(manifest.normalized_output),
            notes=notes,
        )
        return cls(folder, session, tokenizer, info, present, provider)

    # ---- Encoder hooks ----
    def _token_lengths(self, texts: list[str], prefix: str) -> list[int]:
        from .torch_backend import token_lengths

        return token_lengths(self.tokenizer, texts, prefix)

    def _encode_batch(self, texts: list[str], prefix: str, output: Output):
        return self._run(self.session, texts, prefix, output)

    def _recompute_fp32(self, texts: list[str], prefix: str, output: Output):
        if self._fp32_session is None:
            if "fp32" not in self.files:
                return None
            self._fp32_session = _make_session(self.folder / self.files["fp32"], self.device)
        return self._run(self._fp32_session, texts, prefix, output)

    def _run(self, session, texts: list[str], prefix: str, output: Output):
        from .torch_backend import _quiet_libraries

        with _quiet_libraries():
            enc = self.tokenizer(
                [prefix + t for t in texts],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
        mask = enc["attention_mask"].astype(np.int64)
        feed = {}
        for name in self._input_names:
            if name == "attention_mask":
                feed[name] = mask
            elif name in enc:
                feed[name] = enc[name].astype(np.int64)
            elif name == "token_type_ids":
                feed[name] = np.zeros_like(mask)
            else:
                raise ModelFilesError(f"{self.folder}: the ONNX graph wants an input {name!r} the tokenizer does not make")
        (result,) = session.run([OUTPUT_KEY[output]], feed)
        if output == "sentence":
            return np.ascontiguousarray(result, dtype=np.float32)
        keep = mask.astype(bool)
        return [np.ascontiguousarray(result[i][keep[i]], dtype=np.float32) for i in range(len(texts))]


def _pick_provider(device: str | None) -> tuple[str, str]:
    import onnxruntime as ort

    if device in (None, "auto"):
        device = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    if device != "cpu" and not device.startswith("cuda"):
        raise BadInputError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return device, "CUDAExecutionProvider"
        warnings.warn(
            f"device {device!r} asked for, but onnxruntime has no CUDAExecutionProvider here "
            "(install onnxruntime-gpu); running on CPU",
            XlembedWarning,
            stacklevel=4,
        )
        return "cpu", "CPUExecutionProvider"
    return "cpu", "CPUExecutionProvider"


def _make_session(path: Path, device: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    providers: list = ["CPUExecutionProvider"]
    disabled = list(DISABLED_OPTIMIZERS)
    if device.startswith("cuda"):
        device_id = int(device.split(":", 1)[1]) if ":" in device else 0
        providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        disabled = []  # the CPU measurement says nothing about the CUDA kernels
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers, disabled_optimizers=disabled)
    except Exception as exc:
        raise ModelFilesError(
            f"{path} could not be loaded by onnxruntime ({type(exc).__name__}: {exc}); export the model again"
        ) from exc


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    from .torch_backend import _quiet_libraries

    try:
        with _quiet_libraries():
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise ModelFilesError(
            f"{folder}: the tokenizer files could not be loaded ({type(exc).__name__}: {exc}); export the model again"
        ) from exc


__all__ = ["export_onnx_folder", "OnnxEncoder", "cached_onnx_folder", "onnx_cache_folder", "cache_has", "ONNX_PRECISIONS"]
