"""The classify task: logistic regression on frozen embeddings, <LANG>_train.tsv -> <LANG>_test.tsv.

A fake encoder whose vectors carry a word's identity makes the label learnable (or not) on purpose;
one test runs multilingual-e5-small on the Amazon counterfactual set from ../shared/data.
"""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from xlembed.cli import app
from xlembed.encoder import Encoder, ModelInfo
from xlembed.errors import BadInputError, DataFormatError, XlembedWarning
from xlembed.eval.bench import TASKS, run_task, task_data
from xlembed.eval.cache import EmbeddingCache
from xlembed.eval.data import classification_languages, read_classification
from xlembed.eval.report import write_report
from xlembed.eval.results import record
from xlembed.eval.tasks import classification

from conftest import DATA, MODELS_DIR

DIM = 32
HEADER = "sentence\tis_counterfactual"


class WordHashEncoder(Encoder):
    """Deterministic vectors: the sum of a fixed random vector per word (the same word, the same vector)."""

    def __init__(self):
        super().__init__(ModelInfo(name="word-hash", source="tests:word-hash", dim=DIM, max_length=None,
                                   backend="fake", precision="fp32", token_level=False))

    def _encode_batch(self, texts, prefix, output):
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in (prefix + text).split():
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
                out[i] += np.random.default_rng(seed).standard_normal(DIM)
        return out


def sentences(n: int, word: str, seed: int, fillers: int = 1) -> list[str]:
    """n sentences of ``fillers`` random filler words plus ``word`` (which carries the label, if any)."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"w{i}" for i in range(40)]
    return [" ".join([*rng.choice(vocabulary, size=fillers), word]) for _ in range(n)]


def write_tsv(path, rows, header=HEADER) -> None:
    path.write_text(header + "\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows), encoding="utf-8")


def labelled(n: int, seed: int) -> list[tuple[str, str]]:
    """n rows of each label, interleaved: label 1 sentences say 'would', label 0 sentences say 'did'."""
    ones, zeros = sentences(n, "would", seed), sentences(n, "did", seed + 1)
    return [row for pair in zip([(t, "1") for t in ones], [(t, "0") for t in zeros]) for row in pair]


@pytest.fixture()
def folder(tmp_path):
    """A tiny Amazon-layout folder: EN and JP with a learnable label, plus an EN-ext set."""
    root = tmp_path / "amazon_counterfactual"
    root.mkdir()
    for stem, seed in (("EN", 0), ("JP", 10), ("EN-ext", 20)):
        write_tsv(root / f"{stem}_train.tsv", labelled(20, seed))
        write_tsv(root / f"{stem}_test.tsv", labelled(10, seed + 100))
    return root


@pytest.fixture()
def encoder():
    return WordHashEncoder()


def test_a_learnable_label_scores_100(folder, encoder, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    results = classification(encoder, folder, cache=cache)
    assert [r.language for r in results] == ["en", "ja"]  # JP -> ja; EN-ext only when asked
    for r in results:
        assert (r.task, r.dataset, r.main_score) == ("classification", "amazon_counterfactual", "accuracy")
        assert r.scores == {"accuracy": 100.0, "f1_macro": 100.0}
        assert r.details["n_train"] == 40 and r.details["n_test"] == 20
        assert r.details["labels"] == ["0", "1"] and r.details["majority_accuracy"] == 50.0
        assert r.details["converged"] and r.prompt == ""
    misses, hits = cache.misses, cache.hits
    assert misses > 0
    again = classification(encoder, folder, cache=cache)  # every text from the cache: nothing encoded again
    assert (cache.misses, cache.hits) == (misses, hits + 2 * (40 + 20))
    assert [r.scores for r in again] == [r.scores for r in results]


def test_shuffled_labels_are_not_learned(folder, encoder):
    """Labels drawn at random, independent of the text: the test accuracy is far from 100."""
    rng = np.random.default_rng(7)
    texts = sentences(400, "same", 3, fillers=4)
    write_tsv(folder / "XX_train.tsv", [(t, str(rng.integers(2))) for t in texts[:300]])
    write_tsv(folder / "XX_test.tsv", [(t, str(rng.integers(2))) for t in texts[300:]])
    (result,) = classification(encoder, folder, langs="xx")
    assert result.language == "xx" and result.details["n_test"] == 100
    assert result.main < 75  # chance is 50; a leak of labels into the features would show as ~100
    assert 0 <= result.scores["f1_macro"] <= 100


def test_a_regression_that_does_not_converge_is_said(folder, encoder):
    with pytest.warns(XlembedWarning, match=r"EN_train\.tsv did not converge in 1 iterations"):
        (result,) = classification(encoder, folder, langs="en", max_iter=1)
    assert result.details["converged"] is False


def test_langs_take_codes_prefixes_and_tatoeba_codes(folder, encoder):
    assert classification_languages(folder, ["jpn", "EN", "en-ext"]) == [("ja", "JP"), ("en", "EN"), ("en-ext", "EN-ext")]
    assert [r.language for r in classification(encoder, folder, langs="ja")] == ["ja"]
    with pytest.raises(DataFormatError, match=r"'de' not found .*pair\): en \(EN\), en-ext \(EN-ext\), ja \(JP\)"):
        classification(encoder, folder, langs=["de"])


def test_a_train_file_with_one_label_is_an_error(folder, encoder):
    write_tsv(folder / "EN_train.tsv", [(t, "0") for t in sentences(10, "did", 0)])
    with pytest.raises(DataFormatError, match=r"EN_train\.tsv: all 10 rows have the label '0'; .*two labels"):
        classification(encoder, folder, langs="en")
    with pytest.raises(DataFormatError, match=r"JP_train\.tsv: the first 1 rows have the label '1'"):
        classification(encoder, folder, langs="ja", limit=1)


def test_bad_rows_name_the_file_and_line(tmp_path):
    path = tmp_path / "EN_train.tsv"
    path.write_text(f"{HEADER}\na good sentence\t1\na row with a stray\ttab\t0\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=rf"{path}, line 3: expected 2 tab-separated fields .*got 3"):
        read_classification(path)
    path.write_text(f"{HEADER}\nno label here\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=rf"{path}, line 2: expected 2 tab-separated fields .*got 1"):
        read_classification(path)
    path.write_text(f"{HEADER}\nfine\t1\n\n\t0\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=rf"{path}, line 4: empty text"):
        read_classification(path)
    path.write_text(f"{HEADER}\nfine\t \n", encoding="utf-8")
    with pytest.raises(BadInputError, match=rf"{path}, line 2: empty label"):
        read_classification(path)
    path.write_text(f"{HEADER}\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=rf"{path}, line 2: no rows after the header"):
        read_classification(path)
    path.write_bytes(f"{HEADER}\nok\t1\n".encode() + b"bad \xff byte\t0\n")
    with pytest.raises(BadInputError, match=rf"{path}, line 3: not valid UTF-8"):
        read_classification(path)


def test_quoted_fields_crlf_and_column_names(tmp_path):
    path = tmp_path / "EN_test.tsv"
    path.write_bytes(b'label\tid\ttext\r\n1\ta\t"He said ""wait""\tthen left"\r\n0\tb\tplain \x1a text\r\n')
    data = read_classification(path)
    assert data.texts == ['He said "wait"\tthen left', "plain  text"] and data.labels == ["1", "0"]  # \x1a dropped
    path.write_text("first\tsecond\nhello\tpos\nworld\tneg\n", encoding="utf-8")  # unknown names: the first two
    assert read_classification(path, limit=1).texts == ["hello"]


def test_folder_errors_say_what_is_expected(tmp_path, encoder):
    with pytest.raises(DataFormatError, match="classification folder not found"):
        classification(encoder, tmp_path / "nope")
    write_tsv(tmp_path / "DE_train.tsv", labelled(2, 0))
    with pytest.raises(DataFormatError, match=r"<LANG>_train\.tsv and <LANG>_test\.tsv .*DE_train\.tsv lack\(s\)"):
        classification(encoder, tmp_path)


def test_classify_is_a_bench_task_and_reports_a_mean(folder, encoder, tmp_path):
    assert "classify" in TASKS
    assert task_data("classify", None, folder.parent) == folder  # <data_root>/amazon_counterfactual
    results = run_task(encoder, "classify", folder)
    records = [record(encoder, r, "test") for r in results]
    md = write_report(records, tmp_path / "report")["markdown"].read_text(encoding="utf-8")
    assert "| amazon_counterfactual en | amazon_counterfactual ja | classification mean |" in md
    assert "| 100.0 | 100.0 | 100.0 |" in md


def test_eval_command_classify(folder):
    help_text = CliRunner().invoke(app, ["eval", "--help"]).stdout
    assert "classify" in help_text and "classify" in CliRunner().invoke(app, ["bench", "--help"]).stdout
    bad = CliRunner().invoke(app, ["eval", "--task", "classify", "--data", str(folder.parent / "nope")])
    assert bad.exit_code == 2 and "does not exist" in bad.stderr


E5 = MODELS_DIR / "multilingual-e5-small"
AMAZON = DATA / "amazon_counterfactual"


def test_e5_on_amazon_counterfactual(tmp_path):
    if not (AMAZON / "EN_train.tsv").is_file():
        pytest.skip(f"Amazon counterfactual data absent: {AMAZON} not found (needs ../shared/data beside the repo)")
    if not (E5 / "model.safetensors").is_file():
        pytest.skip(f"multilingual-e5-small absent: {E5} not found (build it with ../shared/tools/fetch-models)")
    started = time.perf_counter()
    out = tmp_path / "classify.json"
    result = CliRunner().invoke(app, ["eval", "--model", str(E5), "--task", "classify", "--data", str(AMAZON),
                                      "--limit", "100", "--output", str(out)])
    assert result.exit_code == 0, result.stderr
    records = json.loads(out.read_text(encoding="utf-8"))["records"]
    assert [r["language"] for r in records] == ["de", "en", "ja"]
    for r in records:
        print(f"e5 classify {r['language']}: accuracy {r['scores']['accuracy']:.1f}, macro F1 "
              f"{r['scores']['f1_macro']:.1f}, majority {r['details']['majority_accuracy']:.1f}")
        assert (r["task"], r["main_score"], r["prompt"]) == ("classification", "accuracy", "query: ")
        assert r["details"]["n_train"] == r["details"]["n_test"] == 100
        # not compared with the majority rate: 100 unbalanced train rows can leave the regression answering
        # the majority label everywhere (accuracy = majority rate); the full train files beat it
        assert r["scores"]["accuracy"] > 50
        assert 0 <= r["scores"]["f1_macro"] <= 100
    print(f"e5 classify, 3 x 200 texts: {time.perf_counter() - started:.1f} s")
