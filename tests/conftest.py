"""Shared fixtures: real models built offline by ../shared/tools/fetch-models, and the shared data.

Tests that need ../shared skip with a message saying what is missing; in CI (CI=true) a failed
model build is an error instead, so a broken setup cannot pass as skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FETCH = SHARED / "tools" / "fetch-models"
DATA = SHARED / "data"
MODELS_DIR = Path(os.environ.get("XLEMBED_TEST_MODELS", REPO / ".cache" / "models"))

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Each test session exports its ONNX files into its own cache, never the user's."""
    old = os.environ.get("XLEMBED_CACHE")
    os.environ["XLEMBED_CACHE"] = str(tmp_path_factory.mktemp("xlembed-cache"))
    yield
    if old is None:
        os.environ.pop("XLEMBED_CACHE", None)
    else:
        os.environ["XLEMBED_CACHE"] = old


@pytest.fixture(scope="session")
def real_models() -> Path:
    """The folder holding all-MiniLM-L6-v2 and multilingual-e5-small (built once, then reused)."""
    wanted = [MODELS_DIR / "all-MiniLM-L6-v2" / "model.safetensors", MODELS_DIR / "multilingual-e5-small" / "model.safetensors"]
    if all(p.is_file() for p in wanted):
        return MODELS_DIR
    if not FETCH.is_file():
        pytest.skip(f"real models absent: {FETCH} not found (tests on real models need ../shared beside the repo)")
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run([str(FETCH), str(MODELS_DIR)], capture_output=True, text=True, env=env, timeout=1200)
    if proc.returncode != 0 or not all(p.is_file() for p in wanted):
        message = f"fetch-models failed (exit {proc.returncode}): {proc.stderr[-800:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return MODELS_DIR


@pytest.fixture(scope="session")
def e5_dir(real_models) -> Path:
    return real_models / "multilingual-e5-small"


@pytest.fixture(scope="session")
def minilm_dir(real_models) -> Path:
    return real_models / "all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def e5(e5_dir):
    import xlembed

    return xlembed.load(e5_dir)


@pytest.fixture(scope="session")
def tatoeba_dir() -> Path:
    path = DATA / "tatoeba"
    if not (path / "tatoeba.jpn-eng.jpn").is_file():
        pytest.skip(f"Tatoeba data absent: {path} not found (needs ../shared/data beside the repo)")
    return path


def read_tatoeba(folder: Path, lang: str, n: int | None = None) -> tuple[list[str], list[str]]:
    """The first n aligned (xx, eng) sentence pairs of a Tatoeba language."""
    xx = (folder / f"tatoeba.{lang}-eng.{lang}").read_text(encoding="utf-8").splitlines()
    en = (folder / f"tatoeba.{lang}-eng.eng").read_text(encoding="utf-8").splitlines()
    return xx[:n], en[:n]


def top1_both_directions(a: np.ndarray, b: np.ndarray) -> float:
    """Tatoeba accuracy in percent: row i of a should find row i of b and back, averaged."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    sims = a @ b.T
    gold = np.arange(len(a))
    return 100 * ((sims.argmax(1) == gold).mean() + (sims.argmax(0) == gold).mean()) / 2


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)
