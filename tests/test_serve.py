"""xlembed serve: the real server on 127.0.0.1 (a free port), the official openai client, raw HTTP for errors."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install -e '.[serve]'")
pytest.importorskip("openai", reason="the openai client is not installed (test extra)")

from tiny_models import make_tiny_st_folder  # noqa: E402
from xlembed import LoadSpec  # noqa: E402
from xlembed.encoder import Encoder, ModelInfo  # noqa: E402
from xlembed.serve import ServeConfig, create_app, read_api_keys  # noqa: E402
from xlembed.errors import BadInputError  # noqa: E402

KEY = "sk-test-0123456789"


# ---------------------------------------------------------------- a model we control


def expected(text: str, dim: int = 16) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class ToyDecoder:
    def get_vocab_size(self):
        return 100

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(f"w{i}" for i in ids)


class FakeEncoder(Encoder):
    """Vectors from a hash of prompt + text; one word = one token (+2 specials); raises on 'EXPLODE';
    ``gate`` (an Event) holds every batch until set, so requests pile up in the queue."""

    def __init__(self, max_length: int = 12, matryoshka=(8,)):
        super().__init__(ModelInfo(name="fake", source="test", dim=16, max_length=max_length, backend="fake",
                                   precision="fp32", prompts={"query": "query: ", "passage": "passage: "},
                                   default_prompt_name="query", matryoshka_dims=tuple(matryoshka)))
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[int] = []

    def _token_lengths(self, texts, prefix):
        return [len((prefix + t).split()) + 2 for t in texts]

    def _encode_batch(self, texts, prefix, output):
        self.gate.wait(30)
        self.batches.append(len(texts))
        if any("EXPLODE" in t for t in texts):
            raise RuntimeError("the model fell over")
        return np.stack([expected(prefix + t) * 3.0 for t in texts])  # not unit length: the server normalizes

    def _tokenizer_for_decoding(self):
        return ToyDecoder()


# ---------------------------------------------------------------- a live server in this process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, models, config: ServeConfig | None = None, wait_healthy: bool = True):
        import uvicorn

        self.port = free_port()
        self.app = create_app(models, config)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.wait_healthy = wait_healthy

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        if self.wait_healthy:
            while self.request("GET", "/health")[0] != 200 and time.time() < deadline:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)

    def request(self, method, path, body=None, headers=None, raw: bytes | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        payload = r.read()
        conn.close()
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = payload.decode("utf-8", "replace")
        return r.status, dict(r.headers), parsed

    def embed(self, body, key: str | None = KEY, **kw):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return self.request("POST", "/v1/embeddings", body, headers=headers, **kw)

    def still_fine(self):
        """After any error: /health is 200 and a normal request still works."""
        assert self.request("GET", "/health")[0] == 200
        status, _, body = self.embed({"model": "fake", "input": "still here"})
        assert status == 200, body
        np.testing.assert_allclose(body["data"][0]["embedding"], expected("query: still here"), atol=1e-6)


@pytest.fixture
def fake():
    return FakeEncoder()


@pytest.fixture
def live(fake):
    config = ServeConfig(max_inputs=2048, payload_limit=2_000_000, api_keys=frozenset({KEY}))
    with LiveServer({"fake": fake}, config) as server:
        yield server


# ---------------------------------------------------------------- the OpenAI client, unchanged


def test_openai_client_float_and_base64_one_string_and_a_list(live):
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{live.port}/v1", api_key=KEY, max_retries=0)
    texts = ["今日は天気がいい", "Das Wetter ist schön", "hello"]
    default = client.embeddings.create(model="fake", input=texts)  # the SDK asks for base64 unless told otherwise
    as_float = client.embeddings.create(model="fake", input=texts, encoding_format="float")
    one = client.embeddings.create(model="fake", input="hello")
    for response in (default, as_float):
        got = np.array([d.embedding for d in sorted(response.data, key=lambda d: d.index)])
        np.testing.assert_allclose(got, [expected("query: " + t) for t in texts], atol=1e-6)
        assert response.usage.prompt_tokens == sum(len(("query: " + t).split()) + 2 for t in texts)
    np.testing.assert_allclose(one.data[0].embedding, expected("query: hello"), atol=1e-6)
    passage = client.embeddings.create(model="fake", input="hello", extra_body={"prompt": "passage"})
    np.testing.assert_allclose(passage.data[0].embedding, expected("passage: hello"), atol=1e-6)
    assert [m.id for m in client.models.list().data] == ["fake"]


def test_base64_is_raw_little_endian_float32(live):
    status, _, body = live.embed({"model": "fake", "input": ["a b", "c"], "encoding_format": "base64"})
    assert status == 200
    got = np.frombuffer(base64.b64decode(body["data"][1]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(got, expected("query: c"), atol=1e-7)


# ---------------------------------------------------------------- every error, and the server goes on


@pytest.mark.parametrize("raw, status, words", [
    (b'{"model": "fake", "input": ', 400, "not valid JSON"),
    (b'[1, 2]', 400, "JSON object"),
    (b'{"model": "fake", "input": []}', 400, "empty"),
    (b'{"model": "fake", "input": ""}', 400, "empty string"),
    (b'{"model": "fake"}', 400, "'input' is required"),
    (b'{"input": "x"}', 400, "'model' is required"),
    (b'{"model": "fake", "input": [1.5]}', 400, "input[0] is float"),
    (b'{"model": "fake", "input": "x", "encoding_format": "int4"}', 400, "float or base64"),
    (b'{"model": "fake", "input": "x", "dimensions": 5}', 400, "Drop 'dimensions'"),
    (b'{"model": "fake", "input": "x", "prompt": "nosuchprompt"}', 400, "not a prompt name"),
    (b'{"model": "nope", "input": "x"}', 404, "'nope' is not served here; served: fake"),
])
def test_bad_requests_get_clear_errors(live, raw, status, words):
    got, _, body = live.embed(None, raw=raw)
    assert got == status, body
    assert words in body["error"]["message"]
    live.still_fine()


def test_too_many_inputs_and_too_large_payloads(live):
    status, _, body = live.embed({"model": "fake", "input": ["x"] * 10_000})
    assert status == 400 and "10000 items" in body["error"]["message"] and "2048" in body["error"]["message"]
    live.still_fine()
    status, _, body = live.embed({"model": "fake", "input": "x" * 2_000_000})  # a 2 MB string
    assert status == 413 and "2,000,000 bytes" in body["error"]["message"]
    live.still_fine()
    # no Content-Length (chunked): the limit holds while the body streams in
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=60)
    chunks = iter([b'{"model": "fake", "input": "', b"y" * 1_500_000, b"y" * 1_500_000, b'"}'])
    conn.request("POST", "/v1/embeddings", body=chunks, headers={"Authorization": f"Bearer {KEY}",
                                                                  "Transfer-Encoding": "chunked"},
                 encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413
    conn.close()
    live.still_fine()


def test_api_keys(live):
    assert live.embed({"model": "fake", "input": "x"}, key=None)[0] == 401
    status, headers, body = live.embed({"model": "fake", "input": "x"}, key="sk-wrong")
    assert status == 401 and body["error"]["code"] == "invalid_api_key" and headers["www-authenticate"] == "Bearer"
    assert KEY not in json.dumps(body)
    assert live.request("GET", "/v1/models")[0] == 401
    assert live.request("GET", "/health")[0] == 200  # health and metrics stay open for probes
    live.still_fine()
    assert live.embed({"model": "made-up", "input": "x"})[0] == 404
    metrics = live.request("GET", "/metrics")[2]
    assert 'xlembed_requests_total{model="-",status="401"} 2.0' in metrics  # before the model is known
    assert 'xlembed_requests_total{model="-",status="404"} 1.0' in metrics  # unknown names are not labels
    assert 'xlembed_requests_total{model="fake",status="200"} 1.0' in metrics


def test_a_failing_batch_fails_only_its_request(live, fake):
    fake.gate.clear()  # hold the model: both requests land in one batch
    results = {}

    def send(name, text):
        results[name] = live.embed({"model": "fake", "input": [text, "fine"]})

    threads = [threading.Thread(target=send, args=(n, t)) for n, t in (("bad", "EXPLODE now"), ("good", "ok"))]
    for t in threads:
        t.start()
    time.sleep(0.3)
    fake.gate.set()
    for t in threads:
        t.join(30)
    status, _, body = results["bad"]
    assert status == 500 and "the model fell over" in body["error"]["message"]
    assert results["good"][0] == 200
    np.testing.assert_allclose(results["good"][2]["data"][0]["embedding"], expected("query: ok"), atol=1e-6)
    live.still_fine()
    metrics = live.request("GET", "/metrics")[2]
    assert 'xlembed_batch_failures_total{model="fake"}' in metrics
    assert 'xlembed_requests_total{model="fake",status="500"} 1.0' in metrics


def test_queue_full_answers_429_with_retry_after(fake):
    config = ServeConfig(max_queue=4, max_inputs=4, max_batch_size=2)
    with LiveServer({"fake": fake}, config) as live:
        fake.gate.clear()
        first = []
        t = threading.Thread(target=lambda: first.append(live.embed({"model": "fake", "input": ["a"] * 2}, key=None)))
        t.start()
        time.sleep(0.2)  # the worker holds these 2 in a batch; the queue is empty again
        queued = [threading.Thread(target=lambda: first.append(live.embed({"model": "fake", "input": ["b"] * 4},
                                                                           key=None)))]
        queued[0].start()
        time.sleep(0.2)  # 4 inputs wait: the queue is full
        status, headers, body = live.embed({"model": "fake", "input": "c"}, key=None)
        assert status == 429 and int(headers["retry-after"]) >= 1 and "at most 4" in body["error"]["message"]
        fake.gate.set()
        t.join(30)
        queued[0].join(30)
        assert [r[0] for r in first] == [200, 200]
        assert live.embed({"model": "fake", "input": "c"}, key=None)[0] == 200


def test_large_requests_are_split_and_reassembled(fake):
    config = ServeConfig(max_batch_size=7, max_batch_tokens=40)
    with LiveServer({"fake": fake}, config) as live:
        texts = [" ".join(["w"] * (i % 5 + 1)) + f" {i}" for i in range(50)]
        status, _, body = live.embed({"model": "fake", "input": texts}, key=None)
    assert status == 200
    got = np.array([d["embedding"] for d in body["data"]])
    np.testing.assert_allclose(got, [expected("query: " + t) for t in texts], atol=1e-6)
    assert [d["index"] for d in body["data"]] == list(range(50))
    assert len(fake.batches) >= 8 and max(fake.batches) <= 7  # 50 inputs over passes of at most 7


class SideBySideFake(FakeEncoder):
    """May be called from several threads; every batch waits at a barrier for a second one running beside it."""

    concurrent_encode = True

    def __init__(self):
        super().__init__()
        self.barrier = threading.Barrier(2, timeout=10)
        self.threads: set[str] = set()

    def _encode_batch(self, texts, prefix, output):
        self.threads.add(threading.current_thread().name)
        self.barrier.wait()  # BrokenBarrierError (a failed request) unless two batches run at once
        return super()._encode_batch(texts, prefix, output)


def test_workers_share_what_waits_and_run_side_by_side():
    fake = SideBySideFake()
    with LiveServer({"fake": fake}, ServeConfig(workers=2)) as live:
        texts = [f"text {i}" for i in range(8)]
        status, _, body = live.embed({"model": "fake", "input": texts}, key=None)
        assert status == 200, body
        got = np.array([d["embedding"] for d in body["data"]])
        np.testing.assert_allclose(got, [expected("query: " + t) for t in texts], atol=1e-6)
    assert sorted(fake.batches) == [4, 4] and len(fake.threads) == 2  # one request, half to each free worker


def test_encoders_that_cannot_run_side_by_side_get_one_worker():
    from xlembed.serve.batcher import Batcher

    batcher = Batcher(FakeEncoder(), workers=2)
    try:
        assert batcher.workers == 1 and len(batcher._threads) == 1
    finally:
        batcher.close(5)


def test_truncation_is_reported_or_refused(live):
    long = " ".join(["word"] * 30)  # 33 tokens with the prompt and specials; the model takes 12
    status, headers, body = live.embed({"model": "fake", "input": ["short", long]})
    assert status == 200 and headers["x-truncated-inputs"] == "1" and headers["x-truncated-indices"] == "1"
    assert body["usage"]["prompt_tokens"] == (1 + 1 + 2) + 12
    status, _, body = live.embed({"model": "fake", "input": ["short", long], "truncate": False})
    assert status == 400 and "input 1 has 33 tokens" in body["error"]["message"]
    live.still_fine()


def test_token_ids_and_matryoshka_dimensions(live):
    status, _, body = live.embed({"model": "fake", "input": [[3, 4], [5]]})
    assert status == 200
    np.testing.assert_allclose(body["data"][0]["embedding"], expected("query: w3 w4"), atol=1e-6)
    status, _, body = live.embed({"model": "fake", "input": [1, 2, 3]})  # one input as ids
    assert status == 200 and len(body["data"]) == 1
    status, _, body = live.embed({"model": "fake", "input": [[500]]})
    assert status == 400 and "not in the vocabulary" in body["error"]["message"]
    status, _, body = live.embed({"model": "fake", "input": "hello", "dimensions": 8})
    cut = expected("query: hello")[:8]
    np.testing.assert_allclose(body["data"][0]["embedding"], cut / np.linalg.norm(cut), atol=1e-6)
    live.still_fine()


def test_health_is_503_while_loading_and_after_a_failed_load(tmp_path):
    gate = threading.Event()

    class SlowSpec(LoadSpec):
        def load(self):
            gate.wait(30)
            return FakeEncoder()

    with LiveServer({"fake": SlowSpec("fake")}, wait_healthy=False) as live:
        status, headers, body = live.request("GET", "/health")
        assert status == 503 and body["status"] == "loading" and "retry-after" in headers
        status, _, body = live.embed({"model": "fake", "input": "x"}, key=None)
        assert status == 503 and "still loading" in body["error"]["message"]
        gate.set()
        deadline = time.time() + 10
        while live.request("GET", "/health")[0] != 200 and time.time() < deadline:
            time.sleep(0.05)
        assert live.embed({"model": "fake", "input": "x"}, key=None)[0] == 200
    missing = LoadSpec(str(tmp_path / "no-such-model"))
    with LiveServer({"gone": missing}, wait_healthy=False) as live:
        deadline = time.time() + 10
        while live.request("GET", "/health")[2].get("status") == "loading" and time.time() < deadline:
            time.sleep(0.05)
        status, _, body = live.request("GET", "/health")
        assert status == 503 and "does not exist" in body["errors"]["gone"]


def test_tiny_real_model_through_a_load_spec(tmp_path):
    """A sentence-transformers folder loaded by the server itself, vectors equal to load().encode()."""
    import xlembed

    folder = make_tiny_st_folder(tmp_path)
    with LiveServer({"tiny": LoadSpec(str(folder))}) as live:
        status, _, body = live.embed({"model": "tiny", "input": ["hello world", "the cat sat"]}, key=None)
    assert status == 200
    ref = xlembed.load(folder).encode(["hello world", "the cat sat"], normalize=True)
    np.testing.assert_allclose([d["embedding"] for d in body["data"]], ref, atol=1e-5)


def test_config_and_keys_errors(tmp_path, monkeypatch):
    with pytest.raises(BadInputError, match="max_queue .* must be at least max_inputs"):
        ServeConfig(max_queue=10, max_inputs=100).check()
    with pytest.raises(BadInputError, match="threads must be a positive integer, got 0 .CLI: --threads."):
        ServeConfig(threads=0).check()
    with pytest.raises(BadInputError, match="workers must be a positive integer, got 0 .CLI: --workers."):
        ServeConfig(workers=0).check()
    assert ServeConfig(workers=2).pass_threads() == max(1, (os.cpu_count() or 1) // 2)
    assert ServeConfig(workers=2, threads=3).pass_threads() == 3
    with pytest.raises(BadInputError, match="holds no key"):
        empty = tmp_path / "keys.txt"
        empty.write_text("# none\n\n")
        read_api_keys(empty)
    with pytest.raises(BadInputError, match="cannot read the API key file"):
        read_api_keys(tmp_path / "missing.txt")
    monkeypatch.setenv("XLEMBED_API_KEYS", "k1, k2")
    assert read_api_keys() == {"k1", "k2"}
    from xlembed.cli_serve import pair_precisions

    assert pair_precisions(["a", "b"], ["int8"]) == ["int8", None]
    with pytest.raises(BadInputError, match="at most one per model"):
        pair_precisions(["a"], ["int8", "fp32"])


def test_threads_setting_reaches_torch_models_without_importing_torch(tmp_path):
    """serve --threads: an ONNX/USE-only server must not pay for importing torch (~170 MiB); a torch model
    loaded afterwards still gets the share."""
    folder = make_tiny_st_folder(tmp_path / "tiny")
    script = ("import sys\nfrom xlembed.backends.threads import set_cpu_threads\nset_cpu_threads(1)\n"
              "assert 'torch' not in sys.modules, 'set_cpu_threads imported torch'\nimport xlembed\n"
              f"xlembed.load({str(folder)!r})\nimport torch\nprint(torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "1"


def test_cpu_threads_while_restores_the_setting():
    from xlembed.backends.threads import cpu_threads, cpu_threads_while, set_cpu_threads

    set_cpu_threads(None)
    with cpu_threads_while(1):
        assert cpu_threads() == 1
    assert cpu_threads() == (os.cpu_count() or 1)


def test_fast_tokenizer_is_safe_to_share_between_threads(e5_dir):
    """Each call sets truncation and padding on the one Rust tokenizer: from two threads at once, lengths()
    (untruncated) and batch(max_length=6) must each give what they give alone."""
    from xlembed.backends.fast_tokenizer import FastTokenizer

    tok = FastTokenizer(e5_dir / "tokenizer.json")
    texts = [" ".join(["word"] * (i % 9 + 1)) + " 今日は天気がいい" for i in range(16)]
    want_lengths, want_ids = tok.lengths(texts), tok.batch(texts, 6)["input_ids"]
    assert max(want_lengths) > 6 and want_ids.shape == (16, 6)
    bad = []

    def hammer(kind):
        for _ in range(300):
            try:
                if kind == "lengths" and tok.lengths(texts) != want_lengths:
                    bad.append(kind)
                if kind == "batch" and not np.array_equal(tok.batch(texts, 6)["input_ids"], want_ids):
                    bad.append(kind)
            except Exception as exc:  # noqa: BLE001 - a half-padded batch, "Already borrowed", ...
                bad.append(f"{kind}: {type(exc).__name__}")

    threads = [threading.Thread(target=hammer, args=(kind,)) for kind in ("lengths", "batch")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert bad == []


# ---------------------------------------------------------------- the real CLI, a real model, SIGTERM


def test_cli_serves_e5_int8_and_use_with_openai_and_drains_on_sigterm(tmp_path, e5_dir):
    from openai import OpenAI

    import xlembed

    keyfile = tmp_path / "key.txt"
    keyfile.write_text(KEY + "\n")
    port = free_port()
    exe = Path(sys.executable).with_name("xlembed")
    proc = subprocess.Popen([str(exe), "serve", "--model", str(e5_dir), "--precision", "int8", "--model",
                             "use-multilingual", "--port", str(port), "--api-key-file", str(keyfile), "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=60)
        deadline = time.time() + 240
        while time.time() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.5)
        texts = ["今日は天気がいい", "Das Wetter ist schön", "The weather is nice today"]
        got = client.embeddings.create(model="multilingual-e5-small", input=texts)
        ref = xlembed.load(e5_dir, precision="int8").encode(texts, normalize=True)
        vectors = np.array([d.embedding for d in got.data])
        # dynamic int8 quantizes activations with one scale per batch, and the server's two workers may split a
        # request across batches: the same model gives vectors this close, not bit-identical ones
        assert (vectors * ref).sum(axis=1).min() > 0.995
        use = client.embeddings.create(model="use-multilingual", input=texts, encoding_format="float")
        assert len(use.data[0].embedding) == 512
        assert {m.id for m in client.models.list().data} == {"multilingual-e5-small", "use-multilingual"}
        # SIGTERM while a large request is in flight: it is answered, then the server exits cleanly
        result = {}
        big = [f"sentence number {i} about the weather" for i in range(1500)]
        t = threading.Thread(target=lambda: result.setdefault(
            "r", client.embeddings.create(model="multilingual-e5-small", input=big)))
        t.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        t.join(120)
        assert len(result["r"].data) == 1500
        assert proc.wait(60) == 0
        log = proc.stdout.read()
        assert KEY not in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_several_models_in_one_server_static_student_and_onnx_folder(tmp_path):
    """A static student and an ONNX export served side by side, each giving what load().encode() gives."""
    import xlembed
    from tiny_models import make_tiny_tokenizer
    from xlembed.backends.static_backend import StaticEncoder

    make_tiny_tokenizer(tmp_path / "tok")
    ids = np.arange(5, 40, dtype=np.int64)
    table = np.random.default_rng(0).standard_normal((len(ids), 8)).astype(np.float32)
    static = xlembed.save(StaticEncoder(tmp_path / "tok" / "tokenizer.json", table, ids), tmp_path / "static-student")
    onnx = xlembed.save(xlembed.load(make_tiny_st_folder(tmp_path)), tmp_path / "tiny-onnx", format="onnx")
    specs = {"static-student": LoadSpec(str(static)), "tiny-onnx": LoadSpec(str(onnx))}
    texts = ["the cat sat", "hello world"]
    with LiveServer(specs) as live:
        for name, folder in (("static-student", static), ("tiny-onnx", onnx)):
            status, _, body = live.embed({"model": name, "input": texts}, key=None)
            assert status == 200, body
            ref = xlembed.load(folder).encode(texts, normalize=True)
            np.testing.assert_allclose([d["embedding"] for d in body["data"]], ref, atol=1e-5)
        models = live.request("GET", "/v1/models")[2]["data"]
    assert {m["id"]: m["backend"] for m in models} == {"static-student": "static", "tiny-onnx": "onnx"}


def test_plan_passes_keeps_similar_lengths_together():
    from xlembed.serve.batcher import plan_passes

    # one long input among short ones: padding all to 40 costs 8 x 40 = 320 (+32); apart 40 + 7 x 5 (+64)
    assert plan_passes([40, 5, 5, 5, 5, 5, 5, 5], 16384, 256) == [(0, 1), (1, 8)]
    assert plan_passes([10] * 8, 16384, 256) == [(0, 8)]  # equal lengths: one pass
    assert plan_passes([10] * 8, 16384, 3) == [(0, 2), (2, 5), (5, 8)]  # at most 3 inputs per pass
    assert plan_passes([10] * 8, 40, 256) == [(0, 4), (4, 8)]  # at most 40 padded tokens
    assert plan_passes([100, 10], 50, 256) == [(0, 1), (1, 2)]  # longer than the budget: alone
    assert plan_passes([], 100, 10) == []
