"""Compression (issue 16): every step on tiny models built in the test, one short pipeline on a real model,
the int8 recipe on multilingual-e5-small, and bad input."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import xlembed
from xlembed.cli import app
from xlembed.compress import layers, recover, vocab
from xlembed.compress.languages import parse_weights
from xlembed.compress.pipeline import check_plan, compress, parse_steps
from xlembed.errors import BadInputError
from tiny_models import make_tiny_mt5_folder, make_tiny_st_folder, make_tiny_unigram_st_folder, rowwise_cosine

pytest.importorskip("wordfreq", reason="the built-in language samples need the [compress] extra (wordfreq)")

ENGLISH = ["hello world", "the cat", "hello the dog", "world of cats", "the dog is a cat"] * 8
RUSSIAN = ["привет мир", "мир"]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"



@pytest.fixture(scope="module")
def unigram(tmp_path_factory) -> Path:
    return make_tiny_unigram_st_folder(tmp_path_factory.mktemp("unigram"))


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory) -> Path:
    return make_tiny_st_folder(tmp_path_factory.mktemp("wordpiece"))


# ---------------------------------------------------------------- the step list


def test_steps_parse_with_their_options():
    steps = parse_steps("trim,prune:heads=0.3,ffn=0.3,recover,int8")
    assert [s.name for s in steps] == ["trim", "prune", "recover", "int8"]
    assert steps[1].args == {"heads": "0.3", "ffn": "0.3"}
    assert parse_steps("trim:0.4,drop:6,share:3")[0].args == {"size": "0.4"}
    assert parse_steps("drop:6")[0].args == {"layers": "6"}
    assert parse_steps("drop:6,choose=spread,recover:balance=4")[0].args == {"layers": "6", "choose": "spread"}


@pytest.mark.parametrize("text, message", [
    ("trim,shrink,int8", "unknown step 'shrink'"),
    ("int8,trim", "must be the last step"),
    ("trim,prune,int8", "prune needs heads=SHARE"),
    ("drop", "drop needs the number of layers"),
    ("ffn=0.3,trim", "starts with an option"),
    ("trim:color=red", "has no option 'color'"),
    ("trim,trim", "appears 2 times"),
    ("", "no steps given"),
    ("drop:6,choose=middle", "choose must be importance or spread"),
    ("recover:targets=french", "targets must be own or english"),
])
def test_bad_step_lists_are_refused(text, message):
    with pytest.raises(BadInputError, match=message):
        parse_steps(text)


def test_a_plan_that_removes_every_layer_is_refused_before_any_work():
    with pytest.raises(BadInputError, match="would remove every layer"):
        check_plan(parse_steps("trim,drop:12,recover"), 12)
    with pytest.raises(BadInputError, match="use 1..3 groups"):
        check_plan(parse_steps("drop:8,share:4"), 12)  # 4 layers left: at most 3 groups
    check_plan(parse_steps("drop:11,recover"), 12)


# ---------------------------------------------------------------- vocabulary trimming


def test_unigram_trim_keeps_kept_language_text_identical(unigram, tmp_path):
    parent = xlembed.load(unigram)
    out = tmp_path / "trimmed"
    step = vocab.trim_vocabulary(unigram, out, "en", corpus=ENGLISH)
    child = xlembed.load(out)
    assert step["pieces"]["child"] < step["pieces"]["parent"]
    assert step["parameters"]["child"] < step["parameters"]["parent"]
    kept = child.model[0].tokenizer.get_vocab()
    assert "\u2581привет" not in kept and "你好" not in kept and "\u2581hello" in kept and "<mask>" in kept
    # English text: the same pieces, the same embedding rows, so the same vectors
    np.testing.assert_allclose(child.encode(ENGLISH[:5]), parent.encode(ENGLISH[:5]), atol=1e-6)
    assert child.model[0].tokenizer.tokenize("hello world") == parent.model[0].tokenizer.tokenize("hello world")
    # Russian was not kept: its pieces are gone (unknown characters now)
    assert child.model[0].tokenizer.tokenize(RUSSIAN[0]) != parent.model[0].tokenizer.tokenize(RUSSIAN[0])
    fidelity = {row["language"]: row for row in step["fidelity"]}
    assert fidelity["corpus"]["exact_pct"] == 100.0 and fidelity["corpus"]["unk_pct"] == 0.0
    # special tokens keep their meaning: ids remapped consistently in the tokenizer and the config
    tok = child.model[0].tokenizer
    ids = tok("hello")["input_ids"]
    assert tok.convert_ids_to_tokens([ids[0], ids[-1]]) == ["<s>", "</s>"]
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == len(tok) and config["pad_token_id"] == tok.pad_token_id
    record = json.loads((out / "compress.json").read_text())
    assert [s["step"] for s in record["steps"]] == ["trim"]
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(out), device="cpu")
    np.testing.assert_allclose(st.encode(ENGLISH[:3]), child.encode(ENGLISH[:3]), atol=1e-6)


def test_wordpiece_trim_keeps_vectors_of_kept_text(wordpiece, tmp_path):
    parent = xlembed.load(wordpiece)
    step = vocab.trim_vocabulary(wordpiece, tmp_path / "wp", "en", corpus=ENGLISH, size=62)
    child = xlembed.load(tmp_path / "wp")
    assert step["pieces"]["child"] == 62 and step["tokenizer"] == "WordPiece"  # 57 must stay (specials, letters)
    texts = sorted(set(ENGLISH)) + ["the cat sat on the mat"]  # 'sat', 'on', 'mat' are rarer: not kept
    same = [t for t in texts if child.model[0].tokenizer.tokenize(t) == parent.model[0].tokenizer.tokenize(t)]
    assert same == texts[:-1]  # the frequent words stay whole; the rest is spelled with single letters
    np.testing.assert_allclose(child.encode(same), parent.encode(same), atol=1e-6)
    assert not (tmp_path / "wp" / "vocab.txt").exists()  # a stale slow-tokenizer vocabulary is not written


def test_select_pieces_keeps_the_base_it_is_given(unigram):
    from xlembed.compress.languages import parse_langs

    view = vocab.parent_view(xlembed.load(unigram).model)
    langs = parse_langs("en")
    base, specials = vocab.base_pieces(view, langs), set(view.special_ids)
    assert base - specials  # single characters are in the default base
    default, _ = vocab.select_pieces(view, langs, corpus=ENGLISH, size=len(base) + 3)
    assert base <= set(default) and len(default) == len(base) + 3
    chosen, _ = vocab.select_pieces(view, langs, corpus=ENGLISH, size=len(specials) + 3, base=specials)
    assert specials <= set(chosen) and len(chosen) == len(specials) + 3
    assert not base <= set(chosen)  # single characters now compete with the ranked pieces


def test_piece_scores_are_the_trims_ranking(unigram):
    from xlembed.compress.languages import parse_langs

    view = vocab.parent_view(xlembed.load(unigram).model)
    langs = parse_langs("en")
    score, evidence = vocab.piece_scores(view, langs, corpus=ENGLISH)
    assert [ev.lang for ev in evidence][-1] == "corpus" and all(v > 0 for v in score.values())
    specials = set(view.special_ids)
    top = [i for i, _ in score.most_common() if i not in specials][:5]
    chosen, _ = vocab.select_pieces(view, langs, corpus=ENGLISH, size=len(specials) + 5, base=specials)
    assert set(chosen) == specials | set(top)  # the trim keeps exactly the best-scored pieces
    english = vocab.piece_scores(view, langs, corpus=ENGLISH, weights={"corpus": 0.0})[0]
    assert english != score  # the weights change the ranking's scores


def test_bpe_trim_keeps_merges_closed():
    from tokenizers import Tokenizer, models, pre_tokenizers

    from xlembed.compress.samples import TokenizerView

    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("w", "o"), ("wo", "r")]
    vocab_map = {t: i for i, t in enumerate(["<unk>", "h", "e", "l", "o", "w", "r", "d", "he", "ll", "hell", "hello", "wo", "wor"])}
    tok = Tokenizer(models.BPE(vocab_map, merges, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    view = TokenizerView.from_json(tok.to_str())
    kept = vocab._close_bpe(view, {vocab_map["<unk>"], vocab_map["hello"]} | {vocab_map[c] for c in "helowrd"})
    assert {view.pieces[i] for i in kept} >= {"hello", "hell", "he", "ll"}  # every part of a kept token
    text, _ = vocab.trimmed_tokenizer_json(view, sorted(kept))
    child = Tokenizer.from_str(text)
    assert child.encode("hello").tokens == tok.encode("hello").tokens == ["hello"]
    assert child.encode("word").tokens == ["w", "o", "r", "d"]  # 'wo'/'wor' were not kept


def test_trim_size_as_a_share_and_errors(unigram, tmp_path):
    with pytest.raises(BadInputError, match="unknown language code 'xx'"):
        vocab.trim_vocabulary(unigram, tmp_path / "a", "en,xx")
    with pytest.raises(BadInputError, match="cannot hold"):
        vocab.trim_vocabulary(unigram, tmp_path / "b", "en", size=10)
    with pytest.raises(BadInputError, match="cannot have 1% of the parent"):
        vocab.trim_vocabulary(unigram, tmp_path / "c", "en", size=0.01)
    assert parse_weights("en=8, ja=0.5") == parse_weights(["en=8", "ja=0.5"]) == {"en": 8.0, "ja": 0.5}
    with pytest.raises(BadInputError, match="language weights for languages not kept: ja"):
        vocab.trim_vocabulary(unigram, tmp_path / "d", "en", size=0.9, weights={"ja": 2.0})


# ---------------------------------------------------------------- layers


def test_drop_by_measured_importance(unigram, tmp_path):
    step = layers.drop_layers(unigram, tmp_path / "d", 2, texts=ENGLISH)
    child = xlembed.load(tmp_path / "d")
    assert len(step["removed"]) == 2 and len(step["kept"]) == 1 and len(step["order"]) == 2
    first = step["order"][0]
    assert first["cosine_after"] == max(first["candidates"].values())  # the least important layer went first
    assert child.model[0].auto_model.config.num_hidden_layers == 1
    assert np.isfinite(child.encode(ENGLISH[:3])).all()
    with pytest.raises(BadInputError, match="cannot drop 3"):
        layers.drop_layers(unigram, tmp_path / "e", 3, texts=ENGLISH)


def test_drop_spread_keeps_evenly_spaced_layers(unigram, tmp_path):
    auto = xlembed.load(unigram).model[0].auto_model
    last = auto.encoder.layer[2].output.dense.weight.detach().clone()
    step = layers.drop_layers(unigram, tmp_path / "d", 1, texts=ENGLISH, choose="spread")
    assert step["kept"] == [0, 2] and step["removed"] == [1] and step["chosen_by"].startswith("spread")
    child = xlembed.load(tmp_path / "d").model[0].auto_model
    assert child.config.num_hidden_layers == 2
    assert bool((child.encoder.layer[1].output.dense.weight == last).all())  # the parent's layer 2, unchanged
    with pytest.raises(BadInputError, match="importance or spread"):
        layers.drop_layers(unigram, tmp_path / "e", 1, texts=ENGLISH, choose="middle")
    with pytest.raises(BadInputError, match="cannot drop 3"):
        layers.drop_layers(unigram, tmp_path / "f", 3, texts=ENGLISH, choose="spread")


def test_pruned_folder_loads_everywhere_with_the_same_vectors(unigram, tmp_path):
    from sentence_transformers import SentenceTransformer

    step = layers.prune(unigram, tmp_path / "p", heads=0.5, ffn=0.5, texts=ENGLISH)
    assert step["heads_pruned"] == 6 and step["neurons_pruned"] == 96  # of 3 x 4 heads and 3 x 64 neurons
    assert step["parameters"]["child"] < step["parameters"]["parent"]
    ours = xlembed.load(tmp_path / "p")  # pruned units cut out of the matrices
    query = ours.model[0].auto_model.encoder.layer[0].attention.self.query
    pruned_here = len(step["structure"]["pruned_heads"].get("0", []))
    assert query.out_features == (4 - pruned_here) * 8
    theirs = SentenceTransformer(str(tmp_path / "p"), device="cpu")  # full-size weights with zeros
    assert rowwise_cosine(ours.encode(ENGLISH), theirs.encode(ENGLISH)).min() > 0.99999


def test_shared_layers_are_tied_on_load(unigram, tmp_path):
    step = layers.share_layers(unigram, tmp_path / "s", groups=1, texts=ENGLISH)
    assert step["groups"] == [[0, 1, 2]]
    model = xlembed.load(tmp_path / "s").model
    stack = model[0].auto_model.encoder.layer
    assert stack[0] is stack[1] is stack[2]
    assert step["parameters"]["child"] < step["parameters"]["parent"]


# ---------------------------------------------------------------- recovery


def _recover(folder, parent, out, **kwargs):
    config = recover.recovery_config(batch_size=8, max_steps=8, eval_every=2, lr=2e-3, dropout=False)
    words = ["hello", "world", "the", "cat", "dog", "a", "is", "of"]
    texts = [f"{a} {b}" for a in words for b in words]  # 64 distinct texts: 8 steps of 8
    return recover.recover(folder, out, parent, texts=texts, dev_texts=ENGLISH[:6],
                           config=config, cache_root=out.parent / "cache", progress=False, **kwargs)


def test_recovery_lowers_the_loss_and_resumes_to_the_same_weights(unigram, tmp_path):
    import torch
    from sentence_transformers import SentenceTransformer

    damaged = SentenceTransformer(str(unigram), device="cpu")  # a child far from its parent: noisy weights
    torch.manual_seed(1)
    with torch.no_grad():
        for p in damaged[0].auto_model.encoder.parameters():
            p.add_(0.2 * torch.randn_like(p))
    damaged.save(str(tmp_path / "d"))
    plain = _recover(tmp_path / "d", unigram, tmp_path / "r1")
    assert plain["best"]["dev_mse"] < 0.9 * plain["start"]["dev_mse"], (plain["start"], plain["best"])

    def interrupt(step):
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    from xlembed.train import TrainingInterrupted

    with pytest.raises(TrainingInterrupted, match="--resume"):
        _recover(tmp_path / "d", unigram, tmp_path / "r2", on_step=interrupt)
    resumed = _recover(tmp_path / "d", unigram, tmp_path / "r2", resume=True)
    assert resumed["steps"] == plain["steps"]
    a = xlembed.load(tmp_path / "r1").encode(ENGLISH)
    b = xlembed.load(tmp_path / "r2").encode(ENGLISH)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("epochs, steps, epochs_done", [(None, 20, 2.5), (1, 20, 1.0)])
def test_recovery_steps_alone_take_as_many_passes_as_they_need(unigram, tmp_path, epochs, steps, epochs_done):
    words = ["hello", "world", "the", "cat", "dog", "a", "is", "of"]
    texts = [f"{a} {b}" for a in words for b in words]  # 64 distinct texts: 8 steps of 8 a pass
    given = {} if epochs is None else {"epochs": epochs}
    config = recover.recovery_config(batch_size=8, max_steps=20, eval_every=10, dropout=False, **given)
    assert config.epochs == epochs
    step = recover.recover(unigram, tmp_path / "r", unigram, texts=texts, dev_texts=ENGLISH[:6], config=config,
                           cache_root=tmp_path / "cache", progress=False)
    assert (step["steps"], step["epochs"]) == (round(epochs_done * 8), epochs_done)


def test_training_without_epochs_needs_max_steps():
    from xlembed.distill.train import TrainConfig
    from xlembed.train.loop import check_loop_settings

    with pytest.raises(BadInputError, match="give max_steps"):
        check_loop_settings(TrainConfig(epochs=None))
    check_loop_settings(TrainConfig(epochs=None, max_steps=3))


def test_recovery_towards_english_targets_pulls_translations_to_the_parents_english(unigram, tmp_path):
    pairs = [("hello world", "привет мир"), ("the cat", "кот"), ("the dog", "собака"), ("of the world", "мира")]
    config = recover.recovery_config(batch_size=8, max_steps=12, eval_every=4, lr=2e-3, dropout=False, epochs=20)
    texts = [t for pair in pairs for t in pair]
    step = recover.recover(unigram, tmp_path / "r", unigram, texts=texts, pairs=pairs, targets="english",
                           dev_texts=texts, dev_pairs=pairs, config=config, cache_root=tmp_path / "cache",
                           progress=False)
    assert step["targets"] == "english" and step["english_targets"] == len(pairs)
    parent, child = xlembed.load(unigram), xlembed.load(tmp_path / "r")
    english = parent.encode([en for en, _ in pairs])
    before = rowwise_cosine(parent.encode([x for _, x in pairs]), english)
    after = rowwise_cosine(child.encode([x for _, x in pairs]), english)
    assert after.mean() > before.mean() + 0.05, (before, after)


@pytest.mark.parametrize("kwargs, message", [
    ({"targets": "english"}, "needs parallel pairs"),
    ({"targets": "french", "pairs": [("a", "b")]}, "must be one of own, english"),
])
def test_recovery_targets_refuse_bad_input(unigram, tmp_path, kwargs, message):
    with pytest.raises(BadInputError, match=message):
        recover.recover(unigram, tmp_path / "r", unigram, texts=["hello world"], progress=False, **kwargs)


def test_recovery_keeps_pruned_units_pruned(unigram, tmp_path):
    step = layers.prune(unigram, tmp_path / "p", heads=0.25, ffn=0.25, texts=ENGLISH)
    _recover(tmp_path / "p", unigram, tmp_path / "r")
    from sentence_transformers import SentenceTransformer

    auto = SentenceTransformer(str(tmp_path / "r"), device="cpu")[0].auto_model
    for layer, neurons in step["structure"]["pruned_neurons"].items():
        weight = auto.encoder.layer[int(layer)].intermediate.dense.weight
        assert float(weight.detach()[neurons].abs().max()) == 0.0  # still zero after training


def test_balance_repeats_weighs_up_languages_with_few_pairs():
    pairs = [(f"en {i}", f"xx {i}") for i in range(12)]
    langs = ["de"] * 8 + ["ar"] * 2 + ["ko"] * 2
    assert recover.balance_repeats(pairs, langs, 3) == {"xx 8": 3, "xx 9": 3, "xx 10": 3, "xx 11": 3}  # 8/2 = 4, at most 3
    assert recover.balance_repeats(pairs, langs, 1) == {}
    with pytest.raises(BadInputError, match="whole number >= 1"):
        recover.balance_repeats(pairs, langs, 0)


def test_recovery_repeats_and_skips_what_it_is_told(unigram, tmp_path):
    config = recover.recovery_config(batch_size=4, max_steps=2, eval_every=2, max_length=8, dropout=False)
    long_text = " ".join(["world"] * 20)  # more than max_length tokens: its parent vector saw all of it
    texts = ["hello world", "the cat", "a dog", long_text]
    step = recover.recover(unigram, tmp_path / "r", unigram, texts=texts, repeat={"the cat": 3}, config=config,
                           cache_root=tmp_path / "cache", progress=False)
    assert step["texts"] == 3 and step["rows"] == 5 and step["skipped_longer_than_max_length"] == 1
    with pytest.raises(BadInputError, match="whole number >= 1"):
        recover.recover(unigram, tmp_path / "r2", unigram, texts=texts, repeat={"a dog": 0}, progress=False)
    with pytest.raises(BadInputError, match="longer than"):
        recover.recover(unigram, tmp_path / "r3", unigram, texts=[long_text], config=config, progress=False)


def test_gather_inputs_keeps_the_language_of_each_pair(tmp_path):
    from xlembed.compress.languages import parse_langs
    from xlembed.compress.pipeline import gather_inputs

    (tmp_path / "p.en-de.tsv").write_text("".join(f"one {i}\teins {i}\n" for i in range(30)), encoding="utf-8")
    (tmp_path / "p.en-ar.tsv").write_text("".join(f"two {i}\tاثنان {i}\n" for i in range(10)), encoding="utf-8")
    inputs = gather_inputs(parse_langs("en,de,ar"), None, [str(tmp_path / "*.tsv")], dev_size=4)
    assert len(inputs.pair_langs) == len(inputs.pairs) == 36
    for (en, other), lang in zip(inputs.pairs, inputs.pair_langs):
        assert lang == ("ar" if en.startswith("two") else "de")
    assert recover.balance_repeats(inputs.pairs, inputs.pair_langs, 4).keys() == {o for e, o in inputs.pairs if e.startswith("two")}


# ---------------------------------------------------------------- int8


def test_outlier_split_is_exact_in_fp32_and_int8_stays_close(unigram, tmp_path):
    import onnx
    import onnxruntime as ort

    from xlembed.backends.fast_tokenizer import FastTokenizer
    from xlembed.compress.onnx_export import export_onnx_folder
    from xlembed.compress.quantize import activation_maxima, calibration_texts, split_outlier_channels

    encoder = xlembed.load(unigram)
    folder = export_onnx_folder(encoder, tmp_path / "fp32", precision="fp32")
    model = onnx.load(str(folder / "model.onnx"))
    texts = calibration_texts(folder / "tokenizer.json", n=20)
    assert len(texts) == 20 and all(isinstance(t, str) and t for t in texts)
    maxima = activation_maxima(model, folder / "tokenizer.json", texts)
    excluded = split_outlier_channels(model, maxima, k=2)
    # 3 layers x 6 weight MatMuls, each with a fp32 MatMul; one Gather per distinct input (Q, K, V share theirs)
    assert sum(n.endswith("_fp32") for n in excluded) == 18 and sum(n.endswith("_gather") for n in excluded) == 12
    bias_adds = [n for n in model.graph.node if n.name.endswith("_xlembed_outliers_bias")]
    assert len(bias_adds) == 18  # the bias comes right after the int8 MatMul, where onnxruntime fuses it
    feed = FastTokenizer(folder / "tokenizer.json").batch(ENGLISH[:4])
    inputs = {k: feed[k] for k in ("input_ids", "attention_mask")}
    before = ort.InferenceSession(str(folder / "model.onnx")).run(["sentence_embedding"], inputs)[0]
    after = ort.InferenceSession(model.SerializeToString()).run(["sentence_embedding"], inputs)[0]
    np.testing.assert_allclose(after, before, atol=1e-5)  # the split alone changes nothing
    int8 = export_onnx_folder(encoder, tmp_path / "int8", precision="int8")
    got = xlembed.load(int8).encode(ENGLISH[:4])
    assert rowwise_cosine(got, encoder.encode(ENGLISH[:4])).min() > 0.95
    # the tokenizer is written compactly (transformers indents it: ~1.8x the bytes) and tokenizes as before
    from tokenizers import Tokenizer

    saved = (int8 / "tokenizer.json").read_text(encoding="utf-8")
    assert "\n" not in saved
    texts = ENGLISH[:5] + RUSSIAN
    assert [e.ids for e in Tokenizer.from_str(saved).encode_batch(texts)] == \
        [e.ids for e in encoder.model.tokenizer.backend_tokenizer.encode_batch(texts)]


def test_outlier_split_only_where_the_ratio_says(unigram, tmp_path):
    import onnx

    from xlembed.compress.onnx_export import export_onnx_folder
    from xlembed.compress.quantize import (_outlier_ratio, activation_maxima, calibration_texts, split_outlier_channels,
                                           weight_matmuls)

    folder = export_onnx_folder(xlembed.load(unigram), tmp_path / "fp32", precision="fp32")
    model = onnx.load(str(folder / "model.onnx"))
    maxima = activation_maxima(model, folder / "tokenizer.json", calibration_texts(folder / "tokenizer.json", n=20))
    ratios = sorted(_outlier_ratio(m) for m in maxima.values())
    cut = ratios[len(ratios) // 2]
    excluded = split_outlier_channels(model, maxima, k=2, min_ratio=cut)
    wanted = sum(1 for r in ratios if r >= cut)
    assert 0 < sum(n.endswith("_gather") for n in excluded) == wanted < len(ratios)
    # scope "down": only the MatMuls with more input than output channels (the 3 FFN output projections)
    model = onnx.load(str(folder / "model.onnx"))
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    down = {n.name for n in weight_matmuls(model) if shapes[n.input[1]][0] > shapes[n.input[1]][1]}
    excluded = split_outlier_channels(model, maxima, k=2, scope="down")
    assert len(down) == 3 and sum(n.endswith("_gather") for n in excluded) == 3
    assert {n[: -len("_xlembed_outliers_fp32")] for n in excluded if n.endswith("_fp32")} == down
    with pytest.raises(BadInputError, match="outlier_scope must be 'down' or 'all'"):
        split_outlier_channels(onnx.load(str(folder / "model.onnx")), maxima, k=2, scope="up")


def test_export_fuses_attention_and_matches_torch(unigram, tmp_path):
    """Each attention block becomes one MultiHeadAttention node; the graph still matches torch."""
    import onnx

    from xlembed.compress.onnx_export import export_onnx_folder

    encoder = xlembed.load(unigram)
    folder = export_onnx_folder(encoder, tmp_path / "fp32", precision="fp32")
    ops = [n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node]
    assert ops.count("MultiHeadAttention") == 3 and "Softmax" not in ops and "Transpose" not in ops
    texts = ["a cat", "the dog and the cat and a much longer sentence than the first one", "hello"]
    got = xlembed.load(folder).encode(texts)
    assert rowwise_cosine(got, encoder.encode(texts)).min() > 0.9999


def test_export_fuses_attention_of_a_model_with_pruned_heads(unigram, tmp_path):
    """Each fused block takes its head count from its Q projection: pruned layers have fewer heads than the
    config says (the config's count made onnxruntime fail or compute wrong attention)."""
    import onnx

    from xlembed.compress.onnx_export import export_onnx_folder

    step = layers.prune(unigram, tmp_path / "p", heads=0.25, ffn=0.0, texts=ENGLISH)
    assert step["heads_pruned"] == 3  # of 3 x 4
    encoder = xlembed.load(tmp_path / "p")
    folder = export_onnx_folder(encoder, tmp_path / "fp32", precision="fp32")
    model = onnx.load(str(folder / "model.onnx"))
    heads = sorted(a.i for n in model.graph.node if n.op_type == "MultiHeadAttention" for a in n.attribute
                   if a.name == "num_heads")
    assert len(heads) == 3 and heads != [4, 4, 4], heads  # fused, with fewer heads where they were pruned
    texts = ["a cat", "the dog and the cat and a much longer sentence than the first one", "hello"]
    assert rowwise_cosine(xlembed.load(folder).encode(texts), encoder.encode(texts)).min() > 0.9999


def test_attention_fusion_leaves_mt5_unfused(tmp_path):
    """mT5 adds a relative position bias in attention, which MultiHeadAttention does not: the export keeps the
    unfused graph (the fused candidate fails the check against torch) and still matches torch."""
    import onnx

    from xlembed.compress.attention_fusion import fuse_attention
    from xlembed.compress.onnx_export import export_onnx_folder

    encoder = xlembed.load(make_tiny_mt5_folder(tmp_path))
    folder = export_onnx_folder(encoder, tmp_path / "fp32", precision="fp32")
    model = onnx.load(str(folder / "model.onnx"))
    assert "MultiHeadAttention" not in [n.op_type for n in model.graph.node]
    assert fuse_attention(model, 2, 32) > 0  # the pattern is there: it was the check that refused it
    texts = ["a cat", "hello world and more words"]
    assert rowwise_cosine(xlembed.load(folder).encode(texts), encoder.encode(texts)).min() > 0.9999


# ---------------------------------------------------------------- the pipeline and the CLI


def test_pipeline_writes_a_loadable_folder_with_a_card(unigram, tmp_path):
    corpus = tmp_path / "texts.txt"
    corpus.write_text("\n".join(ENGLISH + ["a cat and a dog", "hello again"]), encoding="utf-8")
    summary = compress(str(unigram), tmp_path / "out", "en", "trim,drop:1,prune:heads=0.25,ffn=0.25,recover:steps=4,int8",
                       corpus=[str(corpus)], dev_size=8)
    assert [r["step"] for r in summary["results"]] == ["trim", "drop:layers=1", "prune:heads=0.25,ffn=0.25",
                                                       "recover:steps=4", "int8"]
    model = xlembed.load(tmp_path / "out")
    assert model.backend == "onnx" and model.precision == "int8"
    assert np.isfinite(model.encode(["hello world"])).all()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Step trim" in card and "Step recover" in card and "dev cosine to parent" in card
    assert not (tmp_path / "out.steps").exists()
    record = json.loads((tmp_path / "out" / "compress.json").read_text(encoding="utf-8"))
    recovered = [step for step in record["steps"] if step["step"] == "recover"][0]
    assert recovered["steps"] == 4 and recovered["epochs"] >= 4  # steps=4 on 1 step's worth of text: 4 passes


def test_cli_compress_bad_input(unigram, tmp_path):
    runner = CliRunner()
    base = ["compress", "--model", str(unigram), "--out", str(tmp_path / "o")]
    cases = [
        (["--langs", "en,zz", "--steps", "trim"], "unknown language code 'zz'"),
        (["--langs", "en", "--steps", "trim", "--corpus", str(tmp_path / "nothing-*.txt")], "matches no file"),
        (["--langs", "en", "--steps", "trim,squash"], "unknown step 'squash'"),
        (["--langs", "en", "--steps", "drop:3,recover"], "would remove every layer"),
        (["--langs", "en", "--steps", "trim", "--lang-weight", "en"], "CODE=NUMBER"),
        (["--langs", "en", "--steps", "trim", "--lang-weight", "en=-1"], "CODE=NUMBER"),
    ]
    for args, message in cases:
        result = runner.invoke(app, base + args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, result.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = runner.invoke(app, ["compress", "--model", str(unigram), "--out", str(tmp_path / "full"), "--langs", "en",
                                 "--steps", "trim"])
    assert result.exit_code == 2 and "not empty" in result.stderr


def test_mt5_encoder_through_the_pipeline(tmp_path):
    folder = make_tiny_mt5_folder(tmp_path)
    corpus = tmp_path / "texts.txt"
    corpus.write_text("\n".join(ENGLISH), encoding="utf-8")
    summary = compress(str(folder), tmp_path / "out", "en", "trim,drop:1,prune:heads=0.5,ffn=0.25,recover:steps=3,int8",
                       corpus=[str(corpus)], dev_size=8, min_cosine=-1.0)
    assert summary["results"][-1]["step"] == "int8"
    model = xlembed.load(tmp_path / "out")
    assert model.encode(["hello world"]).shape == (1, 32)


# ---------------------------------------------------------------- real models


def test_real_int8_recipe_is_closer_to_fp32_than_plain_dynamic(e5_dir, tatoeba_dir, tmp_path):
    """multilingual-e5-small: the int8 folder load() makes (outlier channels in fp32) vs plain dynamic int8."""
    from xlembed.compress.quantize import quantize_int8
    from xlembed.eval.tasks import drift

    int8 = xlembed.load(e5_dir, precision="int8")
    folder = Path(int8.info.source)
    assert (folder / "model.onnx").is_file()  # the cache keeps fp32 for the NaN guard
    import onnx

    ops = [n.op_type for n in onnx.load(str(folder / "model.onnx"), load_external_data=False).graph.node]
    assert ops.count("MultiHeadAttention") == 12 and "Softmax" not in ops  # every attention block fused
    from xlembed.compress.quantize import OUTLIER_SUFFIX

    int8_file = folder / json.loads((folder / "xlembed.json").read_text())["files"]["int8"]
    names = [n.name for n in onnx.load(str(int8_file), load_external_data=False).graph.node]
    # every Linear of the 12 layers (Q, K, V, output, FFN in, FFN out) keeps its outlier channels in fp32
    assert sum(n.endswith(OUTLIER_SUFFIX + "_fp32") for n in names) == 72
    quantize_int8(folder / "model.onnx", tmp_path / "plain.onnx", folder / "tokenizer.json", options={"outlier_channels": 0})
    import shutil

    plain_dir = tmp_path / "plain"
    shutil.copytree(folder, plain_dir, ignore=shutil.ignore_patterns("*.onnx"))
    shutil.move(tmp_path / "plain.onnx", plain_dir / "model_int8.onnx")
    manifest = json.loads((plain_dir / "xlembed.json").read_text())
    manifest["files"] = {"int8": "model_int8.onnx"}
    (plain_dir / "xlembed.json").write_text(json.dumps(manifest))
    plain = xlembed.load(plain_dir)
    fp32 = xlembed.load(e5_dir)
    texts = []
    for lang in ("jpn", "kor", "ara", "rus", "hin", "tur"):
        texts += (tatoeba_dir / f"tatoeba.{lang}-eng.{lang}").read_text(encoding="utf-8").split("\n")[:40]
    ours = drift(fp32, int8, texts).scores
    theirs = drift(fp32, plain, texts).scores
    assert ours["mean"] > theirs["mean"] and ours["p1"] > theirs["p1"], (ours, theirs)
    assert ours["mean"] > 0.998


def test_real_short_pipeline(e5_dir, tmp_path):
    """multilingual-e5-small for en+ja: trim, drop 10 of 12 layers, a few recovery steps, int8."""
    corpus = tmp_path / "texts.txt"
    corpus.write_text("\n".join([
        "The weather is nice today.", "今日は天気がいい。", "I lost my keys at the station.", "駅で鍵をなくしました。",
        "Where is the library?", "図書館はどこですか。", "She reads a book every night.", "彼女は毎晩本を読みます。",
    ] * 6), encoding="utf-8")
    summary = compress(str(e5_dir), tmp_path / "e5-enja", "en,ja", "trim,drop:10,recover:steps=3",
                       corpus=[str(corpus)], dev_size=8, min_cosine=0.0, max_tatoeba_drop=100)
    trim = summary["results"][0]
    assert trim["parameters"] < 0.6 * 117_506_688  # the 250k-piece table shrinks to en+ja
    model = xlembed.load(tmp_path / "e5-enja")
    assert model.model[0].auto_model.config.num_hidden_layers == 2
    assert model.resolve_prompt(None) == "query: "  # the e5 prompt survives
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tmp_path / "e5-enja"), device="cpu")
    a = model.encode(["今日は天気がいい"])
    b = st.encode(["今日は天気がいい"], prompt="query: ")
    assert rowwise_cosine(a, b).min() > 0.9999


def test_report_puts_a_compressed_model_next_to_its_parent(tmp_path):
    from xlembed.eval.report import write_report
    from xlembed.eval.results import RunRecord, TaskResult

    def rec(model, task, scores, language="all", details=None, main="x"):
        return RunRecord(model=model, precision="fp32" if model == "parent" else "int8", backend="torch",
                         result=TaskResult(task=task, dataset="tatoeba" if task == "tatoeba" else "-", language=language,
                                           scores=scores, main_score=main, details=details or {}))

    records = [
        rec("parent", "size", {"params_m": 117.5, "disk_mb": 470, "peak_rss_mb": 950, "load_s": 5.0},
            details={"source": str(tmp_path / "p")}, main="peak_rss_mb"),
        rec("child", "size", {"params_m": 30.1, "disk_mb": 38, "peak_rss_mb": 400, "load_s": 1.0},
            details={"source": str(tmp_path / "c"), "compress": {"parent": str(tmp_path / "p"), "languages": ["en", "ja", "zh"],
                                                                  "steps": ["trim", "drop:layers=6", "recover", "int8"]}},
            main="peak_rss_mb"),
        rec("parent", "tatoeba", {"accuracy": 83.6}, "jpn", main="accuracy"),
        rec("child", "tatoeba", {"accuracy": 81.0}, "jpn", main="accuracy"),
        rec("parent", "tatoeba", {"accuracy": 79.1}, "ara", main="accuracy"),
        rec("child", "tatoeba", {"accuracy": 2.0}, "ara", main="accuracy"),
        rec("parent", "tatoeba", {"accuracy": 84.8}, "zho", main="accuracy"),  # Chinese under its macrolanguage code
        rec("child", "tatoeba", {"accuracy": 84.0}, "zho", main="accuracy"),
    ]
    files = write_report(records, tmp_path / "report")
    text = files["markdown"].read_text()
    assert "## Compressed: child int8 vs its parent parent fp32" in text
    assert "| Tatoeba jpn | 83.60 | 81.00 | -2.60 | kept |" in text
    assert "| Tatoeba ara | 79.10 | 2.00 | -77.10 | dropped |" in text
    assert "| Tatoeba zho | 84.80 | 84.00 | -0.80 | kept |" in text
    assert "| parameters (M) | 117.5 | 30.1 | x0.26 |" in text
    assert 'id="compression"' in files["html"].read_text()
