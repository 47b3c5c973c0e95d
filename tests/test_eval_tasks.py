"""Evaluation tasks and data readers: on real models, against direct numpy/scipy computations.

Expected figures were measured independently on this machine (see ../shared/FINDINGS.md):
multilingual-e5-small fp32 Tatoeba jpn 83.7 with 'query: ' on both sides, 87.8 without a prefix;
the default USE model 91.0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

import xlembed
from xlembed.errors import DataFormatError
from xlembed.eval.cache import EmbeddingCache, encode_texts
from xlembed.eval.data import StsData, read_sts, read_tatoeba, sts_files, tatoeba_languages
from xlembed.eval.results import TaskResult
from xlembed.eval.tasks import alignment_gap, bitext_mining, drift, sts, tatoeba, weighted_prf

from conftest import DATA, read_tatoeba as conftest_read_tatoeba, row_cosine, top1_both_directions


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One embedding cache for this module, so the same sentences are embedded once."""
    return EmbeddingCache(tmp_path_factory.mktemp("embeddings"))


@pytest.fixture(scope="module")
def use():
    return xlembed.load()


def _sts_file(name: str):
    path = DATA / "sts17" / name
    if not path.is_file():
        pytest.skip(f"STS17 data absent: {path} not found")
    return path


# ---------------------------------------------------------------- Tatoeba on real models


@pytest.mark.parametrize("lang", ["jpn", "deu"])
def test_tatoeba_500_equals_direct_numpy(e5, tatoeba_dir, cache, lang):
    (result,) = tatoeba(e5, tatoeba_dir, langs=[lang], limit=500, cache=cache)
    xx, en = conftest_read_tatoeba(tatoeba_dir, lang, 500)
    a = e5.encode(xx, prompt="query: ")
    b = e5.encode(en, prompt="query: ")
    expected = top1_both_directions(a, b)
    assert isinstance(result, TaskResult)
    assert (result.task, result.dataset, result.language, result.main_score) == ("tatoeba", "tatoeba", lang, "accuracy")
    assert result.prompt == "query: "
    assert result.details["n"] == 500
    assert result.main == pytest.approx(expected, abs=0.21)  # at most one tie flipped by batch padding
    sims = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    fwd = 100 * (sims.argmax(1) == np.arange(500)).mean()
    assert result.scores["accuracy_xx_eng"] == pytest.approx(fwd, abs=0.21)
    assert 0 < result.scores["f1"] <= result.scores["accuracy_xx_eng"] + 1e-9  # weighted F1 <= recall here


def test_tatoeba_full_jpn_e5_with_and_without_prefix(e5, tatoeba_dir, cache):
    (with_prefix,) = tatoeba(e5, tatoeba_dir, langs="jpn", cache=cache)
    (no_prefix,) = tatoeba(e5, tatoeba_dir, langs="jpn", prompt="", cache=cache)
    print(f"e5 jpn: query: {with_prefix.main:.2f}, no prefix {no_prefix.main:.2f}")
    assert with_prefix.details["n"] == no_prefix.details["n"] == 1000
    assert with_prefix.prompt == "query: " and no_prefix.prompt == ""
    assert with_prefix.main == pytest.approx(83.7, abs=1.5)
    assert no_prefix.main == pytest.approx(87.8, abs=1.5)


def test_tatoeba_full_jpn_use(use, tatoeba_dir):
    (result,) = tatoeba(use, tatoeba_dir, langs=["jpn"])
    print(f"USE jpn: {result.main:.2f}")
    assert result.main == pytest.approx(91.0, abs=1.5)


def test_margin_scoring_not_worse_than_cosine(e5, tatoeba_dir, cache):
    (plain,) = tatoeba(e5, tatoeba_dir, langs=["jpn"], limit=500, cache=cache)
    (margin,) = tatoeba(e5, tatoeba_dir, langs=["jpn"], limit=500, cache=cache, margin=True)
    print(f"e5 jpn 500: cosine {plain.main:.2f}, margin {margin.main:.2f}")
    assert margin.details["scoring"].startswith("ratio margin")
    assert margin.main >= plain.main - 1


def test_tatoeba_second_call_is_served_by_the_cache(e5, tatoeba_dir, tmp_path, monkeypatch):
    first = tatoeba(e5, tatoeba_dir, langs=["jpn", "deu"], limit=20, cache=EmbeddingCache(tmp_path))
    calls = []
    real_encode = e5.encode

    def counting_encode(*args, **kwargs):
        calls.append(args)
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(e5, "encode", counting_encode)
    second = tatoeba(e5, tatoeba_dir, langs=["jpn", "deu"], limit=20, cache=EmbeddingCache(tmp_path))
    assert calls == []
    assert [r.scores for r in second] == [r.scores for r in first]
    tatoeba(e5, tatoeba_dir, langs=["jpn"], limit=20, prompt="", cache=EmbeddingCache(tmp_path))
    assert len(calls) == 2  # another prompt is another cache entry: both sides encoded once


def test_bitext_mining_finds_translations_among_distractors(e5, tatoeba_dir, cache):
    jpn, eng = conftest_read_tatoeba(tatoeba_dir, "jpn", 200)
    _, other_eng = conftest_read_tatoeba(tatoeba_dir, "deu")
    distractors = [s for s in dict.fromkeys(other_eng) if s not in set(eng)][:200]
    assert len(distractors) == 200
    targets = eng + distractors
    order = np.random.default_rng(0).permutation(len(targets))
    shuffled = [targets[i] for i in order]
    position = {int(old): new for new, old in enumerate(order)}
    gold = [(i, position[i]) for i in range(200)]
    result = bitext_mining(e5, jpn, shuffled, gold, cache=cache)
    print(f"mining jpn 200 + 200 distractors: {result.scores}, threshold {result.details['threshold']:.3f}")
    assert result.task == "mining" and result.main_score == "f1"
    assert result.main > 80  # percent
    # a given threshold reproduces the chosen one's figures
    again = bitext_mining(e5, jpn, shuffled, gold, threshold=result.details["threshold"], cache=cache)
    assert again.scores == pytest.approx(result.scores)


def test_alignment_gap_and_drift(e5, use, tatoeba_dir, cache):
    (gap,) = alignment_gap(e5, tatoeba_dir, langs=["jpn"], limit=500, cache=cache)
    assert gap.scores["translation_cosine"] > gap.scores["random_cosine"]
    assert gap.main == pytest.approx(gap.scores["translation_cosine"] - gap.scores["random_cosine"])
    xx, en = conftest_read_tatoeba(tatoeba_dir, "jpn", 500)
    a = encode_texts(e5, xx, cache=cache)
    b = encode_texts(e5, en, cache=cache)
    assert gap.scores["translation_cosine"] == pytest.approx(row_cosine(a, b).mean(), abs=1e-5)
    same = drift(use, use, xx[:50])
    assert same.task == "drift" and same.language == "all"
    assert same.scores["min"] == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------- STS on real models


def test_sts_equals_scipy_on_the_same_vectors(e5, use, cache):
    path = _sts_file("STS17.en-en.tsv")
    (result,) = sts(e5, path, cache=cache)
    data = read_sts(path)
    vectors = encode_texts(e5, data.texts1 + data.texts2, prompt="query: ", cache=cache)
    cos = row_cosine(vectors[:250].astype(np.float64), vectors[250:].astype(np.float64))
    assert (result.dataset, result.language, result.main_score, result.prompt) == ("sts17", "en-en", "spearman", "query: ")
    assert result.scores["spearman"] == pytest.approx(100 * spearmanr(cos, data.scores).statistic, abs=1e-4)
    assert result.scores["pearson"] == pytest.approx(100 * pearsonr(cos, data.scores).statistic, abs=1e-4)
    assert result.main == pytest.approx(86.6, abs=1.5)  # FINDINGS: e5 with 'query: ', STS17 en-en
    (en_ar,) = sts(e5, _sts_file("STS17.en-ar.tsv"), cache=cache)
    use_results = {r.language: r.main for r in sts(use, DATA / "sts17") if r.dataset == "sts17"}
    print(f"STS17 Spearman: e5 en-en {result.main:.2f} en-ar {en_ar.main:.2f}; USE {use_results}")
    assert en_ar.main == pytest.approx(57.9, abs=1.5)
    assert set(use_results) == {"ar-ar", "en-ar", "en-en", "en-tr", "es-en", "es-es"}
    assert all(v > 60 for v in use_results.values())


def test_weighted_f1_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(10):
        gold = rng.integers(0, 30, 80)
        pred = np.where(rng.random(80) < 0.6, gold, rng.integers(0, 40, 80))
        ours = weighted_prf(gold, pred)
        ref = (
            metrics.precision_score(gold, pred, average="weighted", zero_division=0),
            metrics.recall_score(gold, pred, average="weighted", zero_division=0),
            metrics.f1_score(gold, pred, average="weighted", zero_division=0),
        )
        assert ours == pytest.approx(ref, abs=1e-12)


# ---------------------------------------------------------------- readers: real files


@pytest.mark.parametrize(
    "folder, n_files, n_pairs, name, language",
    [
        ("sts17", 6, 250, "sts17", "en-ar"),
        ("jsts", 1, 1589, "jsts", "ja"),
        ("stsb_multi_mt", 11, 1379, "stsb_multi_mt", "de"),
        ("korsts", 1, 1379, "korsts", "ko"),
    ],
)
def test_reads_each_real_sts_format(folder, n_files, n_pairs, name, language):
    path = DATA / folder
    if not path.is_dir():
        pytest.skip(f"{path} absent (needs ../shared/data beside the repo)")
    files = sts_files(path)
    assert len(files) == n_files
    datasets = [read_sts(f) for f in files]
    for d in datasets:
        assert isinstance(d, StsData)
        assert len(d.texts1) == len(d.texts2) == len(d.scores) == n_pairs
        assert d.scores.dtype == np.float64 and 0 <= d.scores.min() and d.scores.max() <= 5
        assert all(t.strip() for t in d.texts1 + d.texts2)
    assert any(d.name == name and d.language == language for d in datasets)
    if folder == "jsts":
        assert files[0].name == "test-v1.3.json"
    if folder == "korsts":  # TSV with quotes inside sentences: no quote handling
        assert any('"' in t for t in datasets[0].texts1 + datasets[0].texts2)
    assert len(read_sts(files[0], limit=10).texts1) == 10


def test_real_tatoeba_languages(tatoeba_dir):
    langs = tatoeba_languages(tatoeba_dir)
    assert {"jpn", "deu", "cmn", "fra", "rus", "ara"} <= set(langs)
    xx, en = read_tatoeba(tatoeba_dir, "jpn")
    assert (xx, en) == conftest_read_tatoeba(tatoeba_dir, "jpn")
    assert read_tatoeba(tatoeba_dir, "jpn", limit=5) == conftest_read_tatoeba(tatoeba_dir, "jpn", 5)


# ---------------------------------------------------------------- readers: bad data


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_ragged_tatoeba_names_both_files_and_counts(tmp_path):
    _write(tmp_path / "tatoeba.jpn-eng.jpn", "一\n二\n三\n")
    _write(tmp_path / "tatoeba.jpn-eng.eng", "one\ntwo\n")
    with pytest.raises(DataFormatError) as err:
        read_tatoeba(tmp_path, "jpn")
    message = str(err.value)
    assert "tatoeba.jpn-eng.jpn" in message and "tatoeba.jpn-eng.eng" in message
    assert "3" in message and "2" in message and "line 3" in message


def test_empty_tatoeba_file_and_missing_language(tmp_path):
    _write(tmp_path / "tatoeba.deu-eng.deu", "")
    _write(tmp_path / "tatoeba.deu-eng.eng", "one\n")
    with pytest.raises(DataFormatError, match=r"tatoeba\.deu-eng\.deu, line 1: empty file"):
        read_tatoeba(tmp_path, "deu")
    with pytest.raises(DataFormatError, match=r"'fra' not found.*available.*deu"):
        read_tatoeba(tmp_path, "fra")
    _write(tmp_path / "tatoeba.deu-eng.deu", "eins\n\n")
    _write(tmp_path / "tatoeba.deu-eng.eng", "one\ntwo\n")
    with pytest.raises(DataFormatError, match=r"tatoeba\.deu-eng\.deu, line 2: empty sentence"):
        read_tatoeba(tmp_path, "deu")


@pytest.mark.parametrize(
    "filename, text, line",
    [
        ("plain.tsv", "a\tb\t1.0\nc\td\thigh\n", 2),
        ("plain_header.tsv", "text1\ttext2\tscore\na\tb\t1\nc\td\t2\ne\tf\t?\n", 4),
        ("STS17.en-en.tsv", "sentence1\tsentence2\tscore\na\tb\tn/a\n", 2),
        ("stsb-de-test.csv", 'a,"b, c",1.5\nd,e,x\n', 2),
        ("test-v1.3.json", json.dumps({"sentence1": "a", "sentence2": "b", "label": "abc"}) + "\n", 1),
        ("kor.tsv", "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\ng\tf\t2012\t1\tfive\ta\tb\n", 2),
    ],
)
def test_non_numeric_score_names_file_and_line(tmp_path, filename, text, line):
    path = _write(tmp_path / filename, text)
    with pytest.raises(DataFormatError, match=rf"{path.name}, line {line}: .*not a number"):
        read_sts(path)


def test_empty_sts_file_and_good_plain_formats(tmp_path):
    empty = _write(tmp_path / "empty.tsv", "")
    with pytest.raises(DataFormatError, match=r"empty\.tsv, line 1: empty file"):
        read_sts(empty)
    header_only = _write(tmp_path / "header.tsv", "text1\ttext2\tscore\n")
    with pytest.raises(DataFormatError, match=r"header\.tsv.*no sentence pairs"):
        read_sts(header_only)
    ragged = _write(tmp_path / "ragged.tsv", "a\tb\t1\nc\td\n")
    with pytest.raises(DataFormatError, match=r"ragged\.tsv, line 2"):
        read_sts(ragged)
    plain = read_sts(_write(tmp_path / "plain.tsv", 'a "q\tb\t1\nc\td\t4.5\n'))
    assert plain.texts1 == ['a "q', "c"] and plain.scores.tolist() == [1.0, 4.5]
    csv_data = read_sts(_write(tmp_path / "stsb-fr-test.csv", 'a,"b, c",1.5\n"x ""y""",z,2\n'))
    assert csv_data.texts2 == ["b, c", "z"] and csv_data.texts1[1] == 'x "y"'
    assert (csv_data.name, csv_data.language) == ("stsb_multi_mt", "fr")
    assert sts_files(tmp_path / "plain.tsv") == [tmp_path / "plain.tsv"]
