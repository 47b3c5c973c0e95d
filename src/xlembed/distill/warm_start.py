"""Warm start for distillation: a closed-form linear map from the student's space to the teacher's.

When the student and the teacher are different models their vector spaces are unrelated (even at the
same dimension), so training the student with MSE to the teacher's vectors first collapses it (see the
distillation section of ../shared/FINDINGS.md). A ridge least-squares map with an unpenalised bias,
fitted once on student and teacher embeddings of the same English sentences, lands the student in the
teacher's space while keeping its own cross-lingual alignment. Installed as a trainable ``Dense``
projection after the student, it is where training starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..paths import atomic_file

WEIGHT_KEY = "weight"  # (d_student, d_teacher): apply as x @ weight + bias
BIAS_KEY = "bias"  # (d_teacher,)


@dataclass
class LinearMap:
    """``y = x @ weight + bias``: weight (d_student, d_teacher), bias (d_teacher,), float32."""

    weight: np.ndarray
    bias: np.ndarray

    def __post_init__(self):
        self.weight = np.asarray(self.weight, dtype=np.float32)
        self.bias = np.asarray(self.bias, dtype=np.float32)
        if self.weight.ndim != 2:
            raise BadInputError(f"weight must be 2-D (d_student, d_teacher), got shape {self.weight.shape}")
        if self.bias.shape != (self.weight.shape[1],):
            raise BadInputError(
                f"bias must have shape ({self.weight.shape[1]},) to match weight {self.weight.shape}, "
                f"got {self.bias.shape}"
            )
        if not (np.isfinite(self.weight).all() and np.isfinite(self.bias).all()):
            raise BadInputError("the linear map holds NaN or inf values")

    @property
    def in_dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.weight.shape[1])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Map student vectors (n, d_student) or one vector (d_student,) into the teacher's space."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != self.in_dim:
            raise BadInputError(f"the map expects vectors of dimension {self.in_dim}, got shape {x.shape}")
        return (x @ self.weight + self.bias).astype(np.float32, copy=False)

    __call__ = apply

    def save(self, path) -> Path:
        """Write the map as a safetensors file (keys ``weight`` and ``bias``)."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:  # never leave a half-written map under the real name
            save_file(
                {WEIGHT_KEY: np.ascontiguousarray(self.weight), BIAS_KEY: np.ascontiguousarray(self.bias)},
                str(tmp),
                metadata={"format": "xlembed.linear_map", "apply": "x @ weight + bias"},
            )
        return path

    @classmethod
    def load(cls, path) -> "LinearMap":
        from safetensors.numpy import load_file

        path = Path(path)
        if not path.is_file():
            raise BadInputError(f"linear map file not found: {path}")
        tensors = load_file(str(path))
        missing = [k for k in (WEIGHT_KEY, BIAS_KEY) if k not in tensors]
        if missing:
            raise BadInputError(f"{path} is not a linear map: missing tensor(s) {', '.join(missing)}")
        return cls(weight=tensors[WEIGHT_KEY], bias=tensors[BIAS_KEY])


def fit_linear_map(student_emb: np.ndarray, teacher_emb: np.ndarray, alpha: float = 1e-2) -> LinearMap:
    """Ridge least squares with an unpenalised bias, from student to teacher embeddings.

    Rows are the same sentences embedded by both models. Both sides are centred; W solves
    ``(XcᵀXc + alpha·I) W = XcᵀYc`` (in float64); the bias is ``mean(Y) - mean(X) @ W``.
    ``alpha`` is absolute (not scaled by the number of rows); 0 gives ordinary least squares.
    """
    x = np.asarray(student_emb, dtype=np.float64)
    y = np.asarray(teacher_emb, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2:
        raise BadInputError(f"embeddings must be 2-D, got shapes {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise BadInputError(f"student and teacher embeddings need the same rows, got {len(x)} and {len(y)}")
    if len(x) < 2:
        raise BadInputError(f"need at least 2 sentences to fit a linear map, got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise BadInputError("the embeddings hold NaN or inf values")
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise BadInputError(f"alpha must be a finite number >= 0, got {alpha!r}")
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc
    gram[np.diag_indices_from(gram)] += alpha
    rhs = xc.T @ yc
    try:
        from scipy.linalg import LinAlgError as _ScipyLinAlgError
        from scipy.linalg import solve

        try:
            weight = solve(gram, rhs, assume_a="pos")
        except (_ScipyLinAlgError, ValueError):
            weight = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    except ImportError:  # scipy is optional here: numpy alone does the same
        try:
            weight = np.linalg.solve(gram, rhs)
        except np.linalg.LinAlgError:
            weight = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    bias = y_mean - x_mean @ weight
    return LinearMap(weight=weight, bias=bias)


def as_torch_dense(linear_map: LinearMap):
    """A sentence-transformers ``Dense`` module computing ``x @ W + b`` (identity activation).

    Append it to a student ``SentenceTransformer`` as a trainable projection into the teacher's space.
    torch's Linear stores its weight as (out, in), so the map's (in, out) weight is transposed.
    """
    import torch

    try:
        from sentence_transformers.sentence_transformer.modules import Dense
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Dense

    weight = torch.from_numpy(np.ascontiguousarray(linear_map.weight.T, dtype=np.float32)).clone()
    bias = torch.from_numpy(np.ascontiguousarray(linear_map.bias, dtype=np.float32)).clone()
    dense = Dense(
        in_features=linear_map.in_dim,
        out_features=linear_map.out_dim,
        bias=True,
        activation_function=torch.nn.Identity(),
    )
    with torch.no_grad():
        dense.linear.weight.copy_(weight)
        dense.linear.bias.copy_(bias)
    return dense
