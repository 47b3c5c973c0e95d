"""Transformer models through ONNX Runtime: fp32 and int8 folders written by ``xlembed.compress``.

``OnnxEncoder`` runs an ONNX folder (one graph for the whole pipeline, see
``compress/onnx_export.py``) with onnxruntime; exporting and quantizing live in ``xlembed.compress``.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np

from ..encoder import Encoder, ModelInfo, Output
from ..errors import BadInputError, ModelFilesError, XlembedWarning
from ..manifest import read_manifest

ONNX_PRECISIONS = ("fp32", "int8")
OUTPUT_KEY = {"sentence": "sentence_embedding", "token": "token_embeddings"}

# onnxruntime graph rewrites switched off when a CPU session is made. On this CPU (AMD EPYC, avx512)
# onnxruntime 1.32's fused SkipLayerNormalization kernel took ~28% of int8 run time; the unfused
# Add + LayerNormalization it replaces are ~5x cheaper (int8 encode ~1.4x faster overall).
DISABLED_OPTIMIZERS: tuple[str, ...] = ("SkipLayerNormFusion",)


# ---------------------------------------------------------------------------------------------
# the encoder
# ---------------------------------------------------------------------------------------------
class OnnxEncoder(Encoder):
    """An exported folder run by onnxruntime, with xlembed's batching, prompts and NaN guard.

    encode() may be called from several threads at once: onnxruntime's Run is thread-safe and the tokenizer
    locks its own settings."""

    concurrent_encode = True

    def __init__(self, folder: Path, session, tokenizer, info: ModelInfo, files: dict[str, str], provider: str):
        super().__init__(info)
        self.folder = Path(folder)
        self.session = session
        self.tokenizer = tokenizer
        self.files = dict(files)
        self.provider = provider
        self._input_names = [i.name for i in session.get_inputs()]
        self._fp32_session = session if info.precision == "fp32" else None
        self._fp32_lock = threading.Lock()  # the fp32 fallback session is made once, by the first thread needing it

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
        session = make_session(folder / present[precision], device)
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
    def _tokenizer_for_decoding(self):
        return self.tokenizer  # its decode takes the tokenizer's lock: safe beside encode() in other threads

    def _token_lengths(self, texts: list[str], prefix: str) -> list[int]:
        return self.tokenizer.lengths([prefix + t for t in texts])

    def _encode_batch(self, texts: list[str], prefix: str, output: Output):
        return self._run(self.session, texts, prefix, output)

    def _recompute_fp32(self, texts: list[str], prefix: str, output: Output):
        if "fp32" not in self.files:
            return None
        with self._fp32_lock:
            if self._fp32_session is None:
                self._fp32_session = make_session(self.folder / self.files["fp32"], self.device)
        return self._run(self._fp32_session, texts, prefix, output)

    def _run(self, session, texts: list[str], prefix: str, output: Output):
        enc = self.tokenizer.batch([prefix + t for t in texts], self.max_length)
        mask = enc["attention_mask"]
        feed = {}
        for name in self._input_names:
            if name in enc:
                feed[name] = enc[name]
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


def make_session(path: Path, device: str):
    """An onnxruntime session for ``path`` on ``device`` (a damaged file is a ModelFilesError)."""
    import onnxruntime as ort

    from .threads import cpu_threads

    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_threads()
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
    from .fast_tokenizer import FastTokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise ModelFilesError(f"{path} is missing (an ONNX folder carries its tokenizer as tokenizer.json); export the model again")
    return FastTokenizer(path)


__all__ = ["OnnxEncoder", "make_session", "ONNX_PRECISIONS"]
