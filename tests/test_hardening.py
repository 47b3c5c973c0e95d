"""Issue 21: silent wrong results and rough edges, one test (or more) per item; each fails on the code before the fix."""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import xlembed
from xlembed.cli import app
from xlembed.errors import BadInputError, DataFormatError, ModelFilesError, ModelNotFoundError, NumericalError
from tiny_models import make_tiny_st_folder

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def run(*args, input=None, env=None):
    return runner.invoke(app, [str(a) for a in args], input=input, env=env)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny_st_folder(tmp_path_factory.mktemp("hardening"))


def _poison(folder: Path, key_part: str = "embeddings.LayerNorm.weight") -> str:
    """Put one NaN into one weight of the folder's model.safetensors; returns the tensor's name."""
    from safetensors.numpy import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    name = next(k for k in tensors if k.endswith(key_part))
    tensors[name] = tensors[name].copy()
    tensors[name].flat[3] = np.nan
    save_file(tensors, str(path))
    return name


@pytest.fixture(scope="module")
def nan_dir(tmp_path_factory) -> Path:
    folder = make_tiny_st_folder(tmp_path_factory.mktemp("nan"), name="nan-model")
    _poison(folder)
    return folder


# ---------------------------------------------------------------- 1. NaN weights never give data


def test_fp32_nan_weights_are_an_error_naming_the_model_and_the_weight(nan_dir):
    encoder = xlembed.load(nan_dir)
    with pytest.raises(ModelFilesError) as err:
        encoder.encode(["hello world"])
    message = str(err.value)
    assert "nan-model" in message and "embeddings.LayerNorm.weight" in message and "fp32" in message


def test_bf16_of_a_nan_model_fails_instead_of_recomputing_nan(nan_dir):
    with pytest.raises(ModelFilesError, match="and so did fp32"):
        xlembed.load(nan_dir, precision="bf16").encode(["hello world"])


def test_cli_encode_and_eval_of_a_nan_model_write_nothing(nan_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("hello world\nthe cat\n", encoding="utf-8")
    for name in ("e.npy", "e.jsonl"):
        result = run("encode", "--model", nan_dir, "--input", src, "--output", tmp_path / name)
        assert result.exit_code == 2, result.output
        assert "nan-model" in result.stderr and "NaN" in result.stderr
        assert not (tmp_path / name).exists()
    sts = tmp_path / "pairs.tsv"
    sts.write_text("hello world\tthe cat\t1.0\nthe dog\ta b c\t3.0\nhello\tworld\t2.0\n", encoding="utf-8")
    result = run("eval", "--model", nan_dir, "--task", "sts", "--data", sts)
    assert result.exit_code == 2 and "nan" not in result.stdout.lower()
    assert not list(tmp_path.glob(".*tmp*"))


def test_static_model_with_a_nan_row_is_an_error(tmp_path):
    from xlembed.backends.static_backend import StaticEncoder

    make_tiny_st_folder(tmp_path, name="tok")
    rows = np.ones((40, 8), dtype=np.float32)
    rows[:, 0] = np.nan
    encoder = StaticEncoder(tmp_path / "tok" / "tokenizer.json", rows, np.arange(40), name="static-nan", precision="int8")
    with pytest.raises(ModelFilesError, match="static-nan.*token rows"):
        encoder.encode(["hello world"])


def test_write_embeddings_refuses_nan(tmp_path):
    from xlembed.io import write_embeddings

    with pytest.raises(NumericalError, match="rows \\[1\\]"):
        write_embeddings(tmp_path / "x.jsonl", np.array([[1.0, 2.0], [np.nan, 0.0]]))
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- 2. no Tatoeba data is an error


def test_tatoeba_eval_of_an_empty_folder_is_exit_2_naming_the_expected_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("eval", "--task", "tatoeba", "--data", empty, "--output", tmp_path / "r.json")
    assert result.exit_code == 2, result.output
    assert "tatoeba.XXX-eng.XXX" in result.stderr and "tatoeba.XXX-eng.eng" in result.stderr
    assert not (tmp_path / "r.json").exists()


# ---------------------------------------------------------------- 3. a str is one text


def test_a_string_is_one_text_everywhere(tiny_dir):
    from xlembed.eval.cache import EmbeddingCache, encode_texts
    from xlembed.eval.tasks import drift

    encoder = xlembed.load(tiny_dir)
    matrix = xlembed.similarity("hello world", "the cat", model=encoder)
    assert matrix.shape == (1, 1)
    assert np.allclose(matrix, xlembed.similarity(["hello world"], ["the cat"], model=encoder))
    assert encode_texts(encoder, "hello world").shape == (1, encoder.dim)
    assert encode_texts(encoder, "hello world", cache=EmbeddingCache()).shape == (1, encoder.dim)
    assert drift(encoder, encoder, "hello world").details["n"] == 1


# ---------------------------------------------------------------- 4. rows match lines


def test_rows_match_lines_whatever_unicode_separators_a_line_holds(tmp_path):
    from xlembed.io import read_texts

    lines = ["page\x0cbreak", "line\u2028separator", "next\x85line", "crlf ending"]
    src = tmp_path / "four.txt"
    src.write_bytes(("\n".join(lines[:3]) + "\n" + lines[3] + "\r\n").encode("utf-8"))
    assert read_texts(src) == lines
    out = tmp_path / "e.npy"
    result = run("encode", "--input", src, "--output", out)
    assert result.exit_code == 0, result.output
    assert np.load(out).shape[0] == 4


# ---------------------------------------------------------------- 5/6. the hub: deadlines, endpoint port, proxies


PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """Hub lookups allowed (no offline mode), an empty hub cache, no proxies, short deadlines.

    huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE / the cache folder when it is imported: its constants
    are set here the way a fresh process would set them from the environment (``set_endpoint``)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import close_session

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *PROXY_VARS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("XLEMBED_HUB_TIMEOUT", "1")
    monkeypatch.set_endpoint = lambda url: monkeypatch.setattr(constants, "ENDPOINT", url)
    close_session()  # the hub client reads proxies when it is made
    yield monkeypatch
    close_session()


def _silent_listener():
    """A TCP server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server


def _http_server(handler_cls):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Answering(BaseHTTPRequestHandler):
    seen: list = []

    def do_HEAD(self):
        type(self).seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # an answer arrives only after the test's download deadline
        time.sleep(5)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_stalled_hub_fails_within_the_deadline(hub_env):
    listener = _silent_listener()
    hub_env.set_endpoint(f"http://127.0.0.1:{listener.getsockname()[1]}")
    started = time.monotonic()
    try:
        with pytest.raises(ModelNotFoundError, match="gave no answer within 1 s"):
            xlembed.load("some-org/some-model")
    finally:
        listener.close()
    assert time.monotonic() - started < 10


def test_a_download_that_does_not_finish_in_time_is_an_error(hub_env):
    server = _http_server(_Answering)
    hub_env.set_endpoint(f"http://127.0.0.1:{server.server_port}")
    hub_env.setenv("XLEMBED_DOWNLOAD_TIMEOUT", "1")
    started = time.monotonic()
    try:
        with pytest.raises(ModelNotFoundError, match="did not finish within 1 s"):
            xlembed.load("some-org/some-model")
    finally:
        server.shutdown()
    assert time.monotonic() - started < 10


def test_cli_with_a_stalled_hf_endpoint_fails_in_seconds(tmp_path):
    """The user's case: HF_ENDPOINT names a host that accepts TCP and never answers; a fresh process."""
    listener = _silent_listener()
    port = listener.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *PROXY_VARS)}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_CACHE=str(tmp_path / "hub"),
               XLEMBED_HUB_TIMEOUT="2")
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "xlembed.cli", "encode", "--model", "org/name", "--output",
                               str(tmp_path / "e.npy")], input="hello\n", capture_output=True, text=True, env=env,
                              timeout=120)
    finally:
        listener.close()
    assert proc.returncode == 2, proc.stderr
    assert f"http://127.0.0.1:{port}" in proc.stderr and "no answer within 2 s" in proc.stderr
    assert time.monotonic() - started < 60


def test_the_probe_uses_the_endpoint_port_and_the_proxy(hub_env):
    from huggingface_hub.utils import close_session

    from xlembed import hub

    server = _http_server(_Answering)
    try:
        hub_env.set_endpoint(f"http://127.0.0.1:{server.server_port}")  # not port 443
        assert hub.reachable() and not hub.is_offline()
        from xlembed.doctor import diagnose

        assert diagnose(probe_hub=True)["offline"]["hub_reachable"] == "yes"
        hub_env.set_endpoint("http://hub.invalid:8080")  # resolvable only through the proxy
        assert not hub.reachable()
        hub_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_port}")
        close_session()
        _Answering.seen.clear()
        assert hub.reachable()
        assert _Answering.seen == ["http://hub.invalid:8080/"]
    finally:
        server.shutdown()


# ---------------------------------------------------------------- 7. saved files follow the umask


def test_saved_weights_are_readable_by_others_under_the_usual_umask(tiny_dir, tmp_path):
    old = os.umask(0o022)
    try:
        out = xlembed.save(xlembed.load(tiny_dir), tmp_path / "fp16", precision="fp16")
    finally:
        os.umask(old)
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")}
    assert modes["model.safetensors"] == 0o644  # transformers writes it 0600
    assert all(m == (0o755 if (out / name).is_dir() else 0o644) for name, m in modes.items()), modes
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


# ---------------------------------------------------------------- 8. bad output paths fail before the work


def test_bad_output_paths_fail_before_loading_with_exit_2(tmp_path, monkeypatch):
    import xlembed.cli as cli

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(cli, "_load", no_load)
    src = tmp_path / "in.txt"
    src.write_text("hello\n", encoding="utf-8")
    folder = tmp_path / "a-folder.npy"
    folder.mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = [
        ("encode", "--input", src, "--output", folder),
        ("encode", "--input", src, "--output", blocker / "e.npy"),
        ("eval", "--task", "sts", "--data", src, "--output", folder),
        ("export", "--model", "x", "--precision", "fp16", "--out", blocker / "out"),
        ("export", "--model", "x", "--precision", "fp16", "--out", blocker),
        ("bench", "--models", "x", "--out", blocker / "r"),
        ("distill", "--student", "x", "--train", src, "--out", blocker / "o"),
    ]
    for args in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert str(args[-1]) in result.stderr and "unexpected" not in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a-folder.npy", "in.txt"]  # no temp files


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    from xlembed.io import write_embeddings

    def broken_save(file, *args, **kwargs):  # the disk fills up half-way through the file
        Path(file).write_bytes(b"\x93NUMPY partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError):
        write_embeddings(tmp_path / "e.npy", np.ones((2, 3)))
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- 9. pipes and other non-regular files


def test_input_from_a_pipe_and_a_fifo(tmp_path):
    from xlembed.io import read_texts

    read_end, write_end = os.pipe()
    os.write(write_end, "eins\nzwei\n".encode())
    os.close(write_end)
    try:
        assert read_texts(f"/dev/fd/{read_end}") == ["eins", "zwei"]
    finally:
        os.close(read_end)
    fifo = tmp_path / "texts.fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "w", encoding="utf-8") as f:
            f.write("hello world\nthe cat\n")

    threading.Thread(target=feed, daemon=True).start()
    out = tmp_path / "e.npy"
    result = run("encode", "--input", fifo, "--output", out)
    assert result.exit_code == 0, result.output
    assert np.load(out).shape[0] == 2


# ---------------------------------------------------------------- 10. stale .partial folders


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_partial_folders_are_cleaned_and_live_ones_kept(tmp_path):
    from xlembed.paths import _host_tag, atomic_folder

    host = _host_tag()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / f".out.{host}~{_dead_pid()}~abc123.partial"
        live = tmp_path / f".out.{host}~{sleeper.pid}~def456.partial"
        other = tmp_path / f".other.{host}~{_dead_pid()}~ghi789.partial"
        for folder in (dead, live, other):
            folder.mkdir()
            (folder / "model.onnx").write_bytes(b"x" * 1000)
        with atomic_folder(tmp_path / "out") as tmp:
            (tmp / "f").write_text("done")
        assert not dead.exists() and live.exists() and other.exists()  # only out's stale folder, only a dead writer's

        result = run("doctor", "--no-probe", "--json", "--model", tmp_path / "out")
        listed = {Path(p["path"]).name: p["stale"] for p in json.loads(result.stdout)["partials"]}
        assert listed == {live.name: False, other.name: True}
        result = run("doctor", "--no-probe", "--clean-partials", "--model", tmp_path / "out")
        assert f"removed {other}" in result.stderr
        assert live.exists() and not other.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


# ---------------------------------------------------------------- 11. options never silently changed


def test_empty_model_name_file_paths_and_missing_relative_folders(tmp_path, monkeypatch):
    result = run("encode", "--model", "", "--output", tmp_path / "e.npy", input="hello\n")
    assert result.exit_code == 2 and "empty" in result.stderr
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="is a file, not a model folder"):
        xlembed.load(str(weights))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelNotFoundError) as err:
        xlembed.load("models/my-model")
    assert "does not exist" in str(err.value) and "hf download" not in str(err.value)


def test_pooling_that_a_folder_does_not_have_is_refused(tiny_dir, e5_dir):
    with pytest.raises(xlembed.UnsupportedError, match="sets its own pooling \\(mean"):
        xlembed.load(tiny_dir, pooling="cls")
    assert xlembed.load(tiny_dir, pooling="mean").info.pooling == "mean"  # the folder's own: fine
    result = run("encode", "--model", e5_dir, "--pooling", "cls", "--output", "x.npy", input="hello\n")
    assert result.exit_code == 2 and "--pooling" in result.stderr
    with pytest.raises(xlembed.UnsupportedError, match="fixed pooling"):
        xlembed.load(pooling="cls")


def test_an_unknown_prompt_name_is_an_error_not_a_prefix(e5):
    with pytest.raises(BadInputError, match="'passages' is not a prompt name.*query"):
        e5.encode(["hello"], prompt="passages")
    assert np.allclose(e5.encode(["hello"], prompt="passage"), e5.encode(["hello"], prompt="passage: "))
    encoder = xlembed.load()  # no prompts at all
    with pytest.raises(BadInputError, match="its prompts: none"):
        encoder.encode(["hello"], prompt="query")


# ---------------------------------------------------------------- 12. the card records the warm start used


def test_distill_card_states_the_warm_start_pairs_used(tmp_path):
    from test_distill_train import _pairs, _write_tsv

    teacher = make_tiny_st_folder(tmp_path, name="teacher", seed=1)
    student = make_tiny_st_folder(tmp_path, name="student", seed=2)
    _write_tsv(tmp_path / "toy.en-de.tsv", _pairs(56))
    env = {"XLEMBED_CACHE": str(tmp_path / "cache"), "XLEMBED_DATA": str(tmp_path / "no-data")}
    result = run("distill", "--teacher", teacher, "--student", student, "--train", tmp_path / "toy.en-de.tsv",
                 "--dev-size", "16", "--out", tmp_path / "out", "--batch-size", "16", "--max-steps", "2", env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "distill_results.json").read_text())
    used = summary["training"]["warm_start_used"]
    assert 0 < used <= summary["data"]["train_pairs"] <= 40
    card = (tmp_path / "out" / "README.md").read_text()
    line = next(l for l in card.splitlines() if "Warm start" in l)
    assert f"fitted on {used} pairs" in line and "configured: 4000" in line, line


# ---------------------------------------------------------------- 13. messages for the CLI, doctor, Tatoeba, top_k


def test_cli_messages_name_cli_flags(tmp_path):
    bad = tmp_path / "bad.en-fr.tsv"
    bad.write_text("hello\tbonjour\nno tab\n", encoding="utf-8")
    result = run("distill", "--student", "x", "--train", bad, "--out", tmp_path / "o", "--dev-size", "0")
    assert result.exit_code == 2 and "--skip-malformed" in result.stderr
    custom = make_tiny_st_folder(tmp_path, with_modules=False, name="custom")
    config = json.loads((custom / "config.json").read_text())
    config.update(model_type="xcustom", auto_map={"AutoConfig": "conf.XConfig", "AutoModel": "modeling.XModel"})
    (custom / "config.json").write_text(json.dumps(config))
    result = run("encode", "--model", custom, "--pooling", "mean", "--output", tmp_path / "e.npy", input="hello\n")
    assert result.exit_code == 2 and "--trust-remote-code" in result.stderr and "hf.co" not in result.stderr


def test_doctor_says_why_a_windows_path_fails_on_stderr():
    result = run("doctor", "--no-probe", "--model", "C:\\models\\LaBSE")
    assert result.exit_code == 2
    assert "Windows path" in result.stderr


def test_tatoeba_message_when_only_the_english_file_is_missing(tmp_path):
    from xlembed.eval.data import read_tatoeba, tatoeba_languages

    (tmp_path / "tatoeba.deu-eng.deu").write_text("Hallo\n", encoding="utf-8")
    (tmp_path / "tatoeba.fra-eng.fra").write_text("Bonjour\n", encoding="utf-8")
    (tmp_path / "tatoeba.fra-eng.eng").write_text("Hello\n", encoding="utf-8")
    assert tatoeba_languages(tmp_path) == ["fra"]
    with pytest.raises(DataFormatError) as err:
        read_tatoeba(tmp_path, "deu")
    assert "incomplete" in str(err.value) and "tatoeba.deu-eng.eng is missing" in str(err.value)
    assert "available" not in str(err.value)


def test_numpy_integers_are_valid_top_k():
    vectors = np.eye(4, dtype=np.float32)
    result = xlembed.search(vectors, vectors, top_k=np.int64(2))
    assert result.indices.shape == (4, 2) and (result.indices[:, 0] == np.arange(4)).all()
    with pytest.raises(BadInputError):
        xlembed.search(vectors, vectors, top_k=True)


# ---------------------------------------------------------------- 14. the documented distill command is the measured recipe


def _readme_distill_command() -> list[str]:
    """The one `xlembed distill` command the README gives for the headline figures (between its markers)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- recipe-command -->", 2)[1]
    command = block.split("```", 2)[1].replace("\\\n", " ")
    words = shlex.split(command)
    return words[words.index("xlembed") + 1:]


def test_readme_distill_command_reproduces_the_benchmark_recipe(monkeypatch, tmp_path):
    import importlib

    import xlembed.distill.run as run_module
    from xlembed.distill.data import read_parallel

    captured = {}
    monkeypatch.setattr(run_module, "distill", lambda **kwargs: captured.update(kwargs) or {"kind": "x", "tatoeba": []})
    monkeypatch.chdir(REPO)
    result = run(*_readme_distill_command())
    assert result.exit_code == 0, result.output
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    bench = importlib.import_module("distill_minilm_multilingual")
    args = bench.parse_args(["--data-root", str(REPO.parent / "shared" / "data")])
    expected = bench.recipe_config(args)
    got = captured["config"]
    for field in ("epochs", "batch_size", "lr", "head_lr", "max_length", "eval_every", "freeze_embeddings", "dropout",
                  "warm_start_fit", "contrastive_weight", "interpolate", "warmup", "seed", "warm_start_sentences",
                  "freeze_layers", "patience"):
        assert getattr(got, field) == getattr(expected, field), field
    assert (captured["max_chars"], captured["max_pairs_per_lang"], captured["dev_size"]) == (
        args.max_chars, args.pairs_per_lang, args.dev_size)
    parallel = REPO.parent / "shared" / "data" / "parallel"
    if not parallel.is_dir():
        pytest.skip(f"parallel data absent: {parallel} (needs ../shared/data beside the repo)")
    codes = args.langs.split(",")
    ours = read_parallel(captured["train"], exclude=captured["exclude"], max_chars=captured["max_chars"],
                         max_pairs_per_lang=captured["max_pairs_per_lang"], seed=got.seed)
    theirs = read_parallel(bench.training_files(parallel, codes, args.exclude_corpora), max_chars=args.max_chars,
                           max_pairs_per_lang=args.pairs_per_lang, seed=expected.seed)
    assert [Path(f).resolve() for f in ours.stats.files] == [Path(f).resolve() for f in theirs.stats.files]
    assert [(p.en, p.other) for p in ours] == [(p.en, p.other) for p in theirs]


def test_a_brace_alternative_without_files_warns_and_the_others_are_read(tmp_path):
    from xlembed.distill.data import resolve_files

    for corpus, lang in (("ntrex128", "de"), ("ntrex128", "ja"), ("tico19", "ja")):
        (tmp_path / corpus).mkdir(exist_ok=True)
        (tmp_path / corpus / f"c.en-{lang}.tsv").write_text("a\tb\n", encoding="utf-8")
    pattern = str(tmp_path / "{ntrex128,tico19}" / "*.en-{de,ja}.tsv")
    with pytest.warns(xlembed.XlembedWarning, match="1 of 4 alternatives"):
        files = resolve_files([pattern])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "ntrex128/c.en-de.tsv", "ntrex128/c.en-ja.tsv", "tico19/c.en-ja.tsv"]
    with pytest.raises(BadInputError, match="is excluded by"):
        resolve_files([pattern], exclude=["ntrex128", "tico19"])
    with pytest.raises(BadInputError, match="no parallel data file matches"):
        resolve_files([str(tmp_path / "{x,y}" / "*.tsv")])


def _write_mo(path: Path, messages: dict[str, str]) -> None:
    """A GNU gettext catalog (.mo) holding ``messages`` (msgid -> msgstr) and a UTF-8 header."""
    import struct

    messages = {"": "Content-Type: text/plain; charset=UTF-8\n", **messages}
    keys = sorted(messages)
    ids = [k.encode("utf-8") for k in keys]
    strs = [messages[k].encode("utf-8") for k in keys]
    start = 7 * 4 + 16 * len(keys)
    table, blob = [], b""
    for items in (ids, strs):
        for item in items:
            table.append((len(item), start + len(blob)))
            blob += item + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, len(keys), 28, 28 + 8 * len(keys), 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + b"".join(struct.pack("<2I", n, o) for n, o in table) + blob)


def test_heldout_bitext_keeps_clean_unambiguous_sentences_of_held_out_languages(monkeypatch, tmp_path):
    import importlib

    from xlembed.eval.data import read_tatoeba, tatoeba_languages

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    bitext = importlib.import_module("heldout_bitext")
    good = {f"The window number {w} is open now": f"Ikkuna numero {w} on nyt auki" for w in ("one", "two", "three")}
    rejected = {"Open the file %s for reading": "Avaa tiedosto %s luettavaksi",  # placeholder
                "Show the _File menu here": "Näytä _Tiedosto-valikko tässä",  # accelerator
                "Use <b>bold</b> text here": "Käytä <b>lihavoitua</b> tekstiä",  # markup
                "Too short": "Liian lyhyt",  # fewer than 4 English words
                "This one is not translated": "This one is not translated",  # a copy of the English
                "Quit the program right now": "Lopeta",  # 'Lopeta' has two English partners: ambiguous
                "Leave the program right now": "Lopeta"}
    _write_mo(tmp_path / "locale" / "fi" / "LC_MESSAGES" / "app.mo", {**good, **rejected})
    _write_mo(tmp_path / "locale" / "de" / "LC_MESSAGES" / "app.mo", {"The window is open now": "Das Fenster ist offen"})
    out = tmp_path / "bitext"
    written = bitext.build(tmp_path / "locale", out, None, pairs=10, min_pairs=2, seed=0)
    assert written == {"fin": 3}  # German is one of shared/data's Tatoeba languages: not held out
    assert tatoeba_languages(out) == ["fin"]
    fi, en = read_tatoeba(out, "fin")
    assert sorted(zip(en, fi)) == sorted(good.items())
    assert bitext.build(tmp_path / "locale", tmp_path / "none", None, pairs=10, min_pairs=4, seed=0) == {}
    # named, a shared language gives other text of it (German from de_AT, its only folder here, for one)
    _write_mo(tmp_path / "locale" / "de_AT" / "LC_MESSAGES" / "app.mo", {"The window is open now": "Das Fenster ist offen"})
    (tmp_path / "locale" / "de" / "LC_MESSAGES" / "app.mo").unlink()
    (tmp_path / "locale" / "de" / "LC_MESSAGES").rmdir()
    assert bitext.build(tmp_path / "locale", tmp_path / "de", ["de"], pairs=10, min_pairs=1, seed=0) == {"deu": 1}
    assert read_tatoeba(tmp_path / "de", "deu") == (["Das Fenster ist offen"], ["The window is open now"])
    with pytest.raises(SystemExit, match="no locale folder .* for sv"):
        bitext.build(tmp_path / "locale", tmp_path / "none", ["sv"], pairs=10, min_pairs=1, seed=0)
