"""Transformer models through sentence-transformers (torch): fp32, bf16 autocast (CPU/CUDA), fp16 autocast (CUDA).

A sentence-transformers folder (modules.json) runs its own module pipeline (Transformer, Pooling,
Dense, Normalize). A plain transformers folder is built explicitly as Transformer + Pooling with
the pooling the caller chose. Weights are always held in fp32 (a folder saved in fp16/bf16 is
upcast on load); lower precisions run under autocast.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path


from ..encoder import Encoder, ModelInfo, Output
from ..errors import BadInputError, ModelFilesError, UnsupportedError, XlembedWarning

POOLING_MODES = ("mean", "cls", "max")


def resolve_device(device: str | None) -> str:
    """'auto'/None -> 'cuda' when a GPU is usable, else 'cpu'; other values are checked."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(f"device {device!r} asked for, but torch sees no CUDA GPU here; use device='cpu' (CLI: --device cpu)")
    if device != "cpu" and not device.startswith("cuda"):
        raise BadInputError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    return device


def check_torch_precision(precision: str, device: str) -> None:
    if precision == "fp16" and not device.startswith("cuda"):
        raise UnsupportedError(
            "fp16 runs on a CUDA GPU only (fp16 on CPU is slow or unsupported for many ops); "
            "use precision='bf16' on CPU, or 'int8' for the ONNX Runtime path"
        )
    if precision not in ("fp32", "bf16", "fp16"):
        raise BadInputError(f"the torch backend runs fp32, bf16 or fp16, not {precision!r}")


class TorchEncoder(Encoder):
    """A sentence-transformers model run by xlembed's batching, precision and NaN guard."""

    def __init__(self, model, info: ModelInfo):
        super().__init__(info)
        self.model = model
        self.model.eval()

    # ---- construction ----
    @classmethod
    def from_folder(
        cls,
        folder: Path,
        *,
        name: str,
        precision: str = "fp32",
        device: str | None = None,
        pooling: str | None = None,
        pooling_source: str = "argument",
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        has_modules_json: bool = True,
    ) -> "TorchEncoder":
        import torch
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import Pooling, Transformer

        from .threads import apply_torch_threads

        apply_torch_threads()
        device = resolve_device(device)
        check_torch_precision(precision, device)
        model_kwargs = {"dtype": torch.float32, "use_safetensors": not allow_pickle}
        notes: list[str] = []
        with _quiet_libraries(), _remote_code_error(folder):
            if has_modules_json:
                model = SentenceTransformer(
                    str(folder),
                    device=device,
                    local_files_only=True,
                    trust_remote_code=trust_remote_code,
                    model_kwargs=model_kwargs,
                )
            else:
                if pooling not in POOLING_MODES:
                    raise BadInputError(
                        f"{folder} has no modules.json, so its pooling is not known: pass pooling= one of "
                        f"{', '.join(POOLING_MODES)} (CLI: --pooling)"
                    )
                transformer = Transformer(str(folder), model_kwargs=model_kwargs,
                                          config_kwargs={"trust_remote_code": trust_remote_code})
                pool = Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)
                model = SentenceTransformer(modules=[transformer, pool], device=device)
                notice = f"{folder} has no modules.json: loaded as transformer + {pooling} pooling ({pooling_source})"
                notes.append(notice)
                warnings.warn(notice, XlembedWarning, stacklevel=4)
        if prompts is not None:
            model.prompts = dict(prompts)
        info = ModelInfo(
            name=name,
            source=str(folder),
            dim=int(model.get_embedding_dimension()),
            max_length=model.max_seq_length,
            backend="torch",
            precision=precision,
            device=device,
            prompts=dict(model.prompts or {}),
            default_prompt_name=default_prompt_name,
            pooling=pooling_of(model),
            normalized_output=any(type(m).__name__ == "Normalize" for m in model),
            notes=notes,
        )
        return cls(model, info)

    # ---- Encoder hooks ----
    def _token_lengths(self, texts: list[str], prefix: str) -> list[int]:
        return token_lengths(self.model.tokenizer, texts, prefix)

    def _tokenizer_for_decoding(self):
        return self.model.tokenizer

    def _encode_batch(self, texts: list[str], prefix: str, output: Output):
        return self._forward(texts, prefix, output, self.precision)

    def _recompute_fp32(self, texts: list[str], prefix: str, output: Output):
        return self._forward(texts, prefix, output, "fp32")

    def _nonfinite_weights(self) -> list[str]:
        import torch

        return [name for name, tensor in [*self.model.named_parameters(), *self.model.named_buffers()]
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]

    def _forward(self, texts: list[str], prefix: str, output: Output, precision: str):
        import torch

        features = self.model.preprocess(texts, prompt=prefix or None)
        features = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in features.items()}
        with torch.inference_mode(), _autocast(precision, self.device):
            out = self.model(features)
        if output == "sentence":
            return out["sentence_embedding"].float().cpu().numpy()
        tokens = out["token_embeddings"].float().cpu().numpy()
        mask = out["attention_mask"].cpu().numpy().astype(bool)
        return [tokens[i][mask[i]] for i in range(len(texts))]


def token_lengths(tokenizer, texts: list[str], prefix: str) -> list[int]:
    """Length in tokens of prefix + each text, with special tokens and before truncation."""
    with _quiet_libraries():
        ids = tokenizer(
            [prefix + t for t in texts],
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
    return [len(x) for x in ids]


def pooling_of(model) -> str | None:
    """The pooling mode name of a sentence-transformers pipeline ('mean', 'cls', ...), if it has one."""
    for module in model:
        mode = getattr(module, "pooling_mode", None)
        if mode is not None:
            return mode if isinstance(mode, str) else "+".join(mode)
    return None


def _autocast(precision: str, device: str):
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


@contextlib.contextmanager
def _remote_code_error(folder: Path):
    """transformers' 'pass trust_remote_code=True' refusal, said with the CLI flag and without a hub URL."""
    try:
        yield
    except ValueError as exc:
        if "trust_remote_code" not in str(exc):
            raise
        raise UnsupportedError(
            f"{folder} needs model code shipped with its files (its config.json has an auto_map), which xlembed "
            "does not run unless asked; read that code, and if you trust its origin pass trust_remote_code=True "
            "(CLI: --trust-remote-code)"
        ) from None


@contextlib.contextmanager
def _quiet_libraries():
    """Silence transformers' own length warnings and progress noise; xlembed reports those itself."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def read_json(path: Path) -> dict:
    """A JSON file as a dict, with an error that names the file when it is not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFilesError(f"{path} is not readable JSON ({exc}); restore it from the original model files") from exc


__all__ = ["TorchEncoder", "resolve_device", "check_torch_precision", "pooling_of"]
