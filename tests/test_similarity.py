"""Cosine matrices and blocked top-k search against a brute-force numpy computation."""

from __future__ import annotations

import numpy as np
import pytest

import xlembed
from xlembed.similarity import cosine_similarity, search


def brute_top_k(q, c, k):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    cn = c / np.linalg.norm(c, axis=1, keepdims=True)
    sims = qn @ cn.T
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, idx, 1), idx


@pytest.mark.parametrize("query_block, corpus_block", [(1024, 16384), (7, 50), (1, 1)])
def test_blocked_search_equals_brute_force(query_block, corpus_block):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(120, 24)).astype(np.float32)
    c = rng.normal(size=(900, 24)).astype(np.float32)
    result = search(q, c, top_k=5, query_block=query_block, corpus_block=corpus_block)
    scores, idx = brute_top_k(q, c, 5)
    assert np.array_equal(result.indices, idx)
    assert np.allclose(result.scores, scores, atol=1e-5)


def test_search_ties_keep_lower_index_and_k_is_capped():
    c = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    result = search(np.array([[1, 0]], dtype=np.float32), c, top_k=10, corpus_block=1)
    assert result.indices.tolist() == [[0, 1, 2]]


def test_cosine_matrix_values():
    a = np.array([[1, 0], [0, 2]], dtype=np.float32)
    b = np.array([[3, 0], [1, 1]], dtype=np.float32)
    assert np.allclose(cosine_similarity(a, b), [[1, 2 ** -0.5], [0, 2 ** -0.5]], atol=1e-6)


def test_bad_vectors_are_rejected():
    with pytest.raises(xlembed.BadInputError, match="dimension"):
        cosine_similarity(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(xlembed.BadInputError, match="NaN"):
        search(np.array([[np.nan, 1.0]]), np.ones((3, 2)))
    with pytest.raises(xlembed.BadInputError, match="top_k"):
        search(np.ones((1, 2)), np.ones((3, 2)), top_k=0)


def test_similarity_japanese_vs_english_with_default_model():
    matrix = xlembed.similarity(["今日は天気がいい", "鍵をなくした"],
                                ["The weather is nice today", "I lost my keys", "The train is late"])
    assert matrix.shape == (2, 3)
    assert matrix[0].argmax() == 0 and matrix[1].argmax() == 1


def test_cross_lingual_search_on_real_model(e5, tatoeba_dir):
    from conftest import read_tatoeba

    jpn, eng = read_tatoeba(tatoeba_dir, "jpn", 200)
    q, c = e5.encode(jpn), e5.encode(eng)
    result = search(q, c, top_k=3, query_block=64, corpus_block=50)
    _, idx = brute_top_k(q, c, 3)
    assert np.array_equal(result.indices, idx)
    assert (result.indices[:, 0] == np.arange(200)).mean() > 0.8
