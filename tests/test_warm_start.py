"""Warm start for distillation: the closed-form student -> teacher linear map and cross-model Tatoeba."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xlembed.distill.cross_eval import cross_model_tatoeba
from xlembed.distill.warm_start import LinearMap, as_torch_dense, fit_linear_map
from xlembed.errors import BadInputError
from xlembed.eval.tasks import tatoeba

PARALLEL = Path(__file__).resolve().parents[2] / "shared" / "data" / "parallel"
# Tatoeba-disjoint English sentences (see the parallel README): the first English column of a few files
FIT_SOURCES = [
    ("stsb_multi_mt_train/stsb_mt_train.en-de.tsv", 800),
    ("multi30k/multi30k.en-fr.tsv", 600),
    ("wmt_news/wmt_news.en-de.tsv", 600),
]


def _synthetic(n=500, d_in=24, d_out=16, noise=1e-3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in)) + rng.normal(size=d_in)  # off-centre inputs: the bias matters
    w = rng.normal(size=(d_in, d_out))
    b = rng.normal(size=d_out)
    y = x @ w + b + noise * rng.normal(size=(n, d_out))
    return x.astype(np.float32), y.astype(np.float32), w, b


def test_fit_recovers_weight_and_bias():
    x, y, w, b = _synthetic()
    m = fit_linear_map(x, y, alpha=1e-6)
    assert m.weight.shape == (24, 16) and m.bias.shape == (16,)
    assert m.weight.dtype == np.float32 and m.bias.dtype == np.float32
    np.testing.assert_allclose(m.weight, w, atol=2e-3)
    np.testing.assert_allclose(m.bias, b, atol=5e-3)
    np.testing.assert_allclose(m.apply(x), y, atol=1e-2)
    np.testing.assert_allclose(m(x[0]), m.apply(x[:1])[0], atol=1e-6)


def test_alpha_shrinks_weights_not_bias_centre():
    x, y, _, _ = _synthetic(n=200)
    norms = [np.linalg.norm(fit_linear_map(x, y, alpha=a).weight) for a in (0.0, 10.0, 1e3, 1e5)]
    assert all(a > b for a, b in zip(norms, norms[1:])), norms
    # the bias is never penalised: with a huge alpha W -> 0 and the map predicts mean(Y)
    m = fit_linear_map(x, y, alpha=1e12)
    assert np.abs(m.weight).max() < 1e-6
    np.testing.assert_allclose(m.bias, y.mean(axis=0), atol=1e-4)


def test_fit_rejects_bad_input():
    x, y, _, _ = _synthetic(n=20)
    with pytest.raises(BadInputError, match="same rows"):
        fit_linear_map(x, y[:10])
    with pytest.raises(BadInputError, match="alpha"):
        fit_linear_map(x, y, alpha=-1)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(BadInputError, match="NaN"):
        fit_linear_map(bad, y)
    with pytest.raises(BadInputError, match="bias"):
        LinearMap(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(BadInputError, match="dimension 3"):
        LinearMap(np.zeros((3, 2)), np.zeros(2)).apply(np.zeros((1, 4)))


def test_save_load_round_trip(tmp_path):
    x, y, _, _ = _synthetic()
    m = fit_linear_map(x, y)
    path = m.save(tmp_path / "sub" / "map.safetensors")
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    back = LinearMap.load(path)
    np.testing.assert_array_equal(back.weight, m.weight)
    np.testing.assert_array_equal(back.bias, m.bias)
    with pytest.raises(BadInputError, match="not found"):
        LinearMap.load(tmp_path / "missing.safetensors")


def test_dense_module_equals_the_map():
    torch = pytest.importorskip("torch")
    x, y, _, _ = _synthetic(d_in=24, d_out=16)
    m = fit_linear_map(x, y)
    dense = as_torch_dense(m)
    assert dense.in_features == 24 and dense.out_features == 16
    assert tuple(dense.linear.weight.shape) == (16, 24)  # torch stores (out, in)
    assert dense.linear.weight.requires_grad and dense.linear.bias.requires_grad  # trainable projection
    with torch.no_grad():
        out = dense({"sentence_embedding": torch.from_numpy(x)})["sentence_embedding"].numpy()
    np.testing.assert_allclose(out, m.apply(x), rtol=1e-5, atol=1e-5)
    # the module owns its weights: training it does not change the map
    with torch.no_grad():
        dense.linear.weight.add_(1.0)
    assert not np.allclose(dense.linear.weight.detach().numpy().T, m.weight)


def test_dense_appended_to_a_sentence_transformer(tmp_path):
    """The map's Dense appended to a (tiny) SentenceTransformer gives student_output @ W + b."""
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    except ImportError:
        pytest.skip("this sentence-transformers has no StaticEmbedding")
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[PAD]": 1, **{w: i + 2 for i, w in enumerate("a b c d e f g h".split())}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    torch.manual_seed(0)
    static = StaticEmbedding(tok, embedding_weights=torch.randn(len(vocab), 12).numpy())
    student = st.SentenceTransformer(modules=[static], device="cpu")
    texts = ["a b c", "d e", "f g h a", "b", "c c d e f"] * 8
    base = student.encode(texts, convert_to_numpy=True)
    rng = np.random.default_rng(1)
    m = LinearMap(rng.normal(size=(12, 7)), rng.normal(size=7))
    student.append(as_torch_dense(m))
    mapped = student.encode(texts, convert_to_numpy=True)
    assert mapped.shape == (len(texts), 7)
    np.testing.assert_allclose(mapped, base @ m.weight + m.bias, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- real models


def _fit_sentences(n: int = 2000) -> list[str]:
    texts = []
    for rel, count in FIT_SOURCES:
        path = PARALLEL / rel
        if not path.is_file():
            pytest.skip(f"parallel data absent: {path} not found (needs ../shared/data/parallel beside the repo)")
        for line in path.read_text(encoding="utf-8").splitlines()[:count]:
            english = line.split("\t")[0].strip()
            if english:
                texts.append(english)
    return list(dict.fromkeys(texts))[:n]


def test_warm_start_lands_student_in_teacher_space(e5, minilm_dir, tatoeba_dir, tmp_path):
    import xlembed
    from xlembed.eval.cache import EmbeddingCache

    teacher = xlembed.load(minilm_dir)
    texts = _fit_sentences()
    assert len(texts) > 1500
    alpha = 0.1  # at 2,000 sentences: deu 73.2/75.0/76.2, jpn 64.8/66.8/71.7 for alpha 1e-3/1e-2/0.1
    m = fit_linear_map(e5.encode(texts), teacher.encode(texts), alpha=alpha)
    assert m.weight.shape == (e5.dim, teacher.dim)

    cache = EmbeddingCache(tmp_path / "emb")  # the second call reuses the first one's embeddings
    base = cross_model_tatoeba(e5, teacher, tatoeba_dir, ["deu", "jpn"], limit=300, cache=cache)
    misses = cache.misses
    mapped = cross_model_tatoeba(e5, teacher, tatoeba_dir, ["deu", "jpn"], limit=300, mapping=m, cache=cache)
    assert cache.misses == misses
    own = {r.language: r.main for r in tatoeba(e5, tatoeba_dir, ["deu", "jpn"], limit=300, cache=cache)}
    assert cache.misses == misses  # the same vectors, from the cache
    assert {b.language: b.scores["own_accuracy"] for b in base} == own  # one pass gives the own score too
    for b, r in zip(base, mapped):
        print(
            f"cross Tatoeba {r.language} (n={r.details['n']}, fit on {len(texts)} English sentences, alpha={alpha}): "
            f"unmapped {b.main:.1f}, mapped {r.main:.1f} (xx->eng {r.scores['accuracy_xx_eng']:.1f}, "
            f"eng->xx {r.scores['accuracy_eng_xx']:.1f}); cosine to teacher(eng): translation "
            f"{r.scores['translation_cosine']:.3f}, English {r.scores['english_cosine']:.3f} "
            f"(unmapped {b.scores['english_cosine']:.3f})"
        )
        assert r.task == "cross_tatoeba" and r.main_score == "accuracy" and r.prompt == "query: "
        assert r.details["n"] == 300
        assert b.main < 10, b.scores  # unrelated spaces: near chance
        assert r.main > b.main + 30, (b.scores, r.scores)
    deu, jpn = mapped
    assert deu.main > 50, deu.scores
    assert jpn.main > 25, jpn.scores


def test_cross_tatoeba_dimension_mismatch(e5, tatoeba_dir):
    m = LinearMap(np.zeros((e5.dim, 8)), np.zeros(8))
    with pytest.raises(BadInputError, match="8-dim"):
        cross_model_tatoeba(e5, e5, tatoeba_dir, "deu", limit=5, mapping=m)
    m = LinearMap(np.zeros((5, e5.dim)), np.zeros(e5.dim))
    with pytest.raises(BadInputError, match="takes 5-dim"):
        cross_model_tatoeba(e5, e5, tatoeba_dir, "deu", limit=5, mapping=m)
