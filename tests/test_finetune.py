"""Fine-tuning, transfer, classifier distillation and prediction (xlembed.finetune) on tiny and real models."""

from __future__ import annotations

import json
import math
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import xlembed
from tiny_models import make_tiny_st_folder
from xlembed.cli import app
from xlembed.errors import BadInputError, DataFormatError, XlembedWarning
from xlembed.finetune import (FinetuneConfig, distill_classifier, finetune, kd_loss, load_classifier, predict,
                              read_examples, read_inputs, transfer)
from xlembed.finetune.augment import augmented_pairs
from xlembed.finetune.data import read_many
from xlembed.finetune.objectives import classification_figures
from xlembed.train import TrainingInterrupted

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
E5 = Path(__file__).resolve().parents[1] / ".cache" / "models" / "multilingual-e5-small"
COLOURS, ANIMALS = ["red", "blue", "green", "hello"], ["cat", "dog", "mat", "world"]


def _classify_file(path: Path, n: int, seed: int) -> Path:
    """Texts of colour words are 'colour', of animal words 'animal': learnable by a tiny model."""
    rng = random.Random(seed)
    rows = ["text\tlabel"]
    for _ in range(n):
        colour = rng.random() < 0.5
        words = COLOURS if colour else ANIMALS
        rows.append(" ".join(rng.choice(words) for _ in range(4)) + "\t" + ("colour" if colour else "animal"))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _pair_file(path: Path, n: int, seed: int) -> Path:
    """Pairs labelled 1 when the first text uses colour words, else 0 (a headerless PAWS-X-like TSV)."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        g1, g2 = rng.choice([COLOURS, ANIMALS]), rng.choice([COLOURS, ANIMALS])
        a = " ".join(rng.choice(g1) for _ in range(3))
        b = " ".join(rng.choice(g2) for _ in range(3))
        lines.append(f"{a}\t{b}\t{1 if g1 is COLOURS else 0}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_st_folder(tmp_path_factory.mktemp("tiny"))


def _config(**overrides) -> FinetuneConfig:
    values = {"epochs": 2, "batch_size": 16, "lr": 1e-3, "head_lr": 1e-2, "eval_every": 4, "patience": None,
              "checkpoint_every": 0, "freeze": "none"}
    return FinetuneConfig(**{**values, **overrides})


# ---------------------------------------------------------------- the soft-label loss


def test_kd_loss_equals_the_hand_computed_value():
    import torch

    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    teacher = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, -1])  # the second row is unlabelled: soft loss only
    t, alpha = 2.0, 0.3

    def softmax(x):
        e = np.exp(np.asarray(x) - np.max(x))
        return e / e.sum()

    kl = 0.0
    for s_row, t_row in zip(student.numpy(), teacher.numpy()):
        p, q = softmax(t_row / t), softmax(s_row / t)
        kl += float(np.sum(p * np.log(p / q)))
    kl = kl / 2 * t * t  # batchmean: the sum over classes, the mean over the 2 rows, scaled by T^2
    ce = -math.log(softmax(student.numpy()[0])[0])  # the labelled row only
    expected = alpha * kl + (1 - alpha) * ce
    got = float(kd_loss(student, teacher, labels, t, alpha))
    assert got == pytest.approx(expected, rel=1e-5)
    # the 'mean' reduction of KLDivLoss divides by rows x classes: 3x smaller here, the documented pitfall
    assert got != pytest.approx(alpha * kl / 3 + (1 - alpha) * ce, rel=1e-3)
    assert float(kd_loss(student, teacher, torch.tensor([-1, -1]), t, 0.0)) == 0.0  # no labels, no hard loss


def test_classification_figures_report_a_collapse():
    figures = classification_figures([0, 1, 2, 1], [1, 1, 1, 1], ["a", "b", "c"])
    assert figures["collapsed"] == "b" and figures["accuracy"] == 50.0 and figures["predicted"] == {"b": 4}
    assert figures["macro_f1"] == pytest.approx(100 * (2 / 3) / 3)
    assert classification_figures([0, 1], [0, 1], ["a", "b"])["collapsed"] is None


# ---------------------------------------------------------------- readers


def test_readers_of_the_shared_formats(tmp_path):
    sick = tmp_path / "jsick.tsv"
    header = ("pair_ID\tdata\tsentence_A_En\tsentence_B_En\tentailment_label_En\trelatedness_score_En\tc1\tc2\t"
              "sentence_A_Ja\tsentence_B_Ja\tentailment_label_Ja\trelatedness_score_Ja\ti\to\ts1\ts2")
    sick.write_text(header + "\n1\ttrain\tA man\tA person\tentailment\t4.5\t\t\t男性\t人\tneutral\t3.1\t\t\t\t\n"
                    "2\ttest\tA dog\tNo cat\tcontradiction\t2.0\t\t\t犬\t猫なし\tcontradiction\t1.5\t\t\t\t\n",
                    encoding="utf-8")
    en = read_examples(f"{sick}::lang=en,split=train", "pair-classify")
    assert (en.texts_a, en.texts_b, en.labels, en.language) == (["A man"], ["A person"], ["entailment"], "en")
    ja = read_examples(f"{sick}::lang=ja", "pair-classify")
    assert ja.labels == ["neutral", "contradiction"] and ja.texts_a == ["男性", "犬"]
    assert read_examples(f"{sick}::lang=ja,split=test", "sts").labels == [1.5]
    amazon = tmp_path / "EN_train.tsv"
    amazon.write_text('sentence\tis_counterfactual\n"He said ""wish"" it worked"\t1\nFine.\x1a\t0\n', encoding="utf-8")
    ex = read_examples(amazon, "classify")
    assert ex.texts_a == ['He said "wish" it worked', "Fine."] and ex.labels == ["1", "0"]
    jnli = tmp_path / "valid.json"
    jnli.write_text('{"sentence1": "a", "sentence2": "b", "label": "neutral"}\n', encoding="utf-8")
    assert read_examples(jnli, "pair-classify").labels == ["neutral"]
    paws = _pair_file(tmp_path / "paws.tsv", 5, 0)
    assert len(read_examples(paws, "pair-classify")) == 5
    named = tmp_path / "named.tsv"
    named.write_text("id\treview\tstars\n1\tgood\t5\n2\tbad\t1\n", encoding="utf-8")
    assert read_examples(f"{named}::text=review,label=stars", "classify").labels == ["5", "1"]
    assert read_inputs(f"{named}::text=review", pair=False).texts_a == ["good", "bad"]
    both = read_many([f"{sick}::lang=en", f"{sick}::lang=ja,split=test"], "pair-classify")  # translate-train
    assert both.texts_a == ["A man", "A dog", "犬"] and both.language == "en+ja"
    plain = tmp_path / "plain.txt"
    plain.write_text("one\ntwo\n", encoding="utf-8")
    assert read_inputs(plain, pair=False).texts_a == ["one", "two"]
    xnli = tmp_path / "xnli.tsv"  # a labelled headerless file used as unlabelled text: the label is ignored
    xnli.write_text("a b\tc d\tneutral\ne f\tg h\tentailment\n", encoding="utf-8")
    assert read_inputs(xnli, pair=True).texts_b == ["c d", "g h"]
    stsb = tmp_path / "stsb-en-train.csv"  # an STS file as unlabelled pairs: the scores are ignored
    stsb.write_text('A plane is taking off.,An air plane is taking off.,5.0\n"a, b",c,1.0\n', encoding="utf-8")
    assert read_inputs(stsb, pair=True).texts_a == ["A plane is taking off.", "a, b"]
    xnli.write_text("a\tb\tc\td\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="line 1: 4 TAB-separated fields"):
        read_inputs(xnli, pair=True)


def test_bad_data_gets_clear_errors(tmp_path):
    missing = tmp_path / "m.tsv"
    missing.write_text("text\tgold\nhello\tx\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"no label column among text, gold; name it with ::label=COLUMN"):
        read_examples(missing, "classify")
    with pytest.raises(BadInputError, match=r"no column 'stars' \(option label\)"):
        read_examples(f"{missing}::label=stars", "classify")
    short = tmp_path / "short.tsv"
    short.write_text("text\tlabel\nhello\tx\nbroken\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"short.tsv, line 3: 1 fields, expected 2"):
        read_examples(short, "classify")
    header_only = tmp_path / "empty.tsv"
    header_only.write_text("text\tlabel\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="no examples were read"):
        read_examples(header_only, "classify")
    with pytest.raises(BadInputError, match="bad option 'colour=red'"):
        read_examples(f"{missing}::colour=red", "classify")
    with pytest.raises(BadInputError, match="data file not found"):
        read_examples(tmp_path / "nope.tsv", "classify")
    with pytest.raises(BadInputError, match="use --task pair-classify"):
        read_examples(_pair_file(tmp_path / "p.tsv", 3, 0), "classify")


# ---------------------------------------------------------------- fine-tuning on a tiny model


def test_classifier_learns_keeps_the_best_dev_weights_and_predicts(tiny, tmp_path):
    train = _classify_file(tmp_path / "train.tsv", 160, 0)
    dev = _classify_file(tmp_path / "dev.tsv", 60, 1)
    out = tmp_path / "clf"
    summary = finetune(model=str(tiny), task="classify", train=str(train), dev=str(dev), out=out, config=_config(),
                       progress=False)
    before, best = summary["training"]["before"], summary["training"]["best"]
    assert best["dev_accuracy"] >= 95 > before["dev_accuracy"] and best["dev_collapsed"] is None
    losses = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()
              if json.loads(line)["event"] == "train"]
    assert losses[-1] < losses[0]
    # the folder holds the kept (best) weights: re-measured from disk, the same accuracy
    assert transfer(out, f"dev={dev}")["rows"][0]["accuracy"] == pytest.approx(best["dev_accuracy"])
    assert xlembed.load(str(out)).dim == 16 or xlembed.load(str(out)).dim > 0  # the encoder opens on its own
    clf = load_classifier(out)
    labels, probabilities = clf.predict(["red blue green red", "cat dog mat cat"])
    assert labels == ["colour", "animal"] and np.allclose(probabilities.sum(axis=1), 1)
    texts = tmp_path / "in.txt"
    texts.write_text("red blue\ncat dog\n", encoding="utf-8")
    result = predict(out, str(texts), tmp_path / "labels.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert result["n"] == 2 and [r["label"] for r in rows] == ["colour", "animal"]
    assert "fine-tuned from" in (out / "README.md").read_text()


def test_resume_after_interruption_gives_the_same_head(tiny, tmp_path):
    train = _classify_file(tmp_path / "train.tsv", 96, 0)
    cfg = dict(epochs=2, eval_every=0)
    finetune(model=str(tiny), task="classify", train=str(train), out=tmp_path / "full", config=_config(**cfg),
             progress=False)

    def interrupt(step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="--resume"):
        finetune(model=str(tiny), task="classify", train=str(train), out=tmp_path / "cut", config=_config(**cfg),
                 progress=False, on_step=interrupt)
    summary = finetune(model=str(tiny), task="classify", train=str(train), out=tmp_path / "cut", config=_config(**cfg),
                       progress=False, resume=True)
    assert summary["training"]["resumed_from_step"] == 5 and summary["training"]["steps"] == 12
    a, b = load_classifier(tmp_path / "full"), load_classifier(tmp_path / "cut")
    assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    texts = ["red cat", "green mat dog"]
    assert np.array_equal(a.encoder.encode(texts), b.encoder.encode(texts))


def test_sts_finetuning_raises_dev_spearman_and_stays_an_encoder(tiny, tmp_path):
    rng = random.Random(0)
    rows = []
    for _ in range(120):
        a = " ".join(rng.choice(COLOURS + ANIMALS) for _ in range(3))
        same = rng.random() < 0.5
        b = a if same else " ".join(rng.choice(COLOURS + ANIMALS) for _ in range(3))
        rows.append(f"{a},{b},{5.0 if same else 0.5 + rng.random()}")
    (tmp_path / "stsb-en-train.csv").write_text("\n".join(rows[:90]) + "\n", encoding="utf-8")
    (tmp_path / "stsb-en-dev.csv").write_text("\n".join(rows[90:]) + "\n", encoding="utf-8")
    summary = finetune(model=str(tiny), task="sts", train=str(tmp_path / "stsb-en-train.csv"),
                       dev=str(tmp_path / "stsb-en-dev.csv"), out=tmp_path / "sts", config=_config(epochs=3),
                       progress=False)
    assert summary["training"]["best"]["dev_spearman"] > summary["training"]["before"]["dev_spearman"]
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tmp_path / "sts"), device="cpu")
    ours = xlembed.load(str(tmp_path / "sts")).encode(["red cat"], prompt="")
    assert np.allclose(st.encode(["red cat"]), ours, atol=1e-5)
    assert not (tmp_path / "sts" / "classifier.json").exists()


def test_collapse_to_one_class_is_reported(tiny, tmp_path):
    train = _classify_file(tmp_path / "train.tsv", 64, 0)
    # a frozen encoder and a head that cannot move, on a dev set of one repeated text: every dev prediction is the
    # same class, which the run must report (figures and a warning)
    one_class_dev = tmp_path / "dev1.tsv"
    one_class_dev.write_text("text\tlabel\n" + "red blue\tcolour\n" * 20)
    with pytest.warns(XlembedWarning, match="collapsed to one class"):
        summary = finetune(model=str(tiny), task="classify", train=str(train), dev=str(one_class_dev),
                           out=tmp_path / "c", config=_config(freeze="encoder", head_lr=1e-9, epochs=1), progress=False)
    assert summary["training"]["best"]["dev_collapsed"] in ("colour", "animal")
    assert sum(summary["training"]["best"]["dev_predicted"].values()) == 20


def test_bad_training_input_is_refused(tiny, tmp_path):
    one = tmp_path / "one.tsv"
    one.write_text("text\tlabel\nred\tcolour\nblue\tcolour\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="every training example has the label 'colour'"):
        finetune(model=str(tiny), task="classify", train=str(one), out=tmp_path / "o1", progress=False)
    train = _classify_file(tmp_path / "train.tsv", 20, 0)
    odd = tmp_path / "odd.tsv"
    odd.write_text("text\tlabel\nred\tcolour\ncat\tbird\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"odd.tsv, line 3: unknown label 'bird'"):
        finetune(model=str(tiny), task="classify", train=str(train), dev=str(odd), out=tmp_path / "o2", progress=False)
    empty = tmp_path / "empty.tsv"
    empty.write_text("text\tlabel\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="no examples were read"):
        finetune(model=str(tiny), task="classify", train=str(train), dev=str(empty), out=tmp_path / "o3", progress=False)
    with pytest.raises(BadInputError, match="freeze must be"):
        finetune(model=str(tiny), task="classify", train=str(train), out=tmp_path / "o4", config=_config(freeze="some"))
    with pytest.raises(BadInputError, match="unknown task"):
        finetune(model=str(tiny), task="regress", train=str(train), out=tmp_path / "o5")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(BadInputError, match="not empty"):
        finetune(model=str(tiny), task="classify", train=str(train), out=tmp_path / "full")


# ---------------------------------------------------------------- classifier distillation


def test_distill_classifier_with_soft_labels_and_cached_teacher_logits(tiny, tmp_path):
    train = _pair_file(tmp_path / "train.tsv", 96, 0)
    dev = _pair_file(tmp_path / "dev.tsv", 40, 1)
    finetune(model=str(tiny), task="pair-classify", train=str(train), dev=str(dev), out=tmp_path / "teacher",
             config=_config(epochs=3), progress=False)
    unlabeled = tmp_path / "more.tsv"
    unlabeled.write_text("\n".join("\t".join(line.split("\t")[:2]) for line in _pair_file(
        tmp_path / "u.tsv", 32, 2).read_text().splitlines()) + "\n")
    kw = dict(teacher=str(tmp_path / "teacher"), student=str(tiny), train=str(train), dev=str(dev),
              unlabeled=[str(unlabeled)], drop_layers=1, temperature=2.0, alpha=0.5, config=_config(epochs=2),
              progress=False, cache_root=tmp_path / "logits")
    summary = distill_classifier(out=tmp_path / "student", **kw)
    assert summary["layers"] == 1 and summary["teacher_logits_from_cache"] is False
    assert summary["unlabeled"][0]["examples"] == 32
    assert summary["training"]["best"]["dev_accuracy"] > summary["training"]["before"]["dev_accuracy"]
    assert summary["training"]["best"]["dev_collapsed"] is None
    again = distill_classifier(out=tmp_path / "student2", **kw)
    assert again["teacher_logits_from_cache"] is True
    student = load_classifier(tmp_path / "student")
    assert student.pair and student.labels == ["0", "1"]
    assert "distilled from" in (tmp_path / "student" / "README.md").read_text()
    with pytest.raises(BadInputError, match="alpha"):
        distill_classifier(out=tmp_path / "s3", **{**kw, "alpha": 1.5})
    test = _pair_file(tmp_path / "test.tsv", 20, 3)
    augmented = distill_classifier(out=tmp_path / "s4", **{**kw, "augment": 1, "tests": {"t": str(test)}})
    made = augmented["unlabeled"][1]
    assert made["path"].startswith("augmented: train.tsv") and made["examples"] > 0
    with pytest.raises(BadInputError, match="augment"):
        distill_classifier(out=tmp_path / "s5", **{**kw, "augment": -1})
    result = CliRunner().invoke(app, ["distill-classifier", "--teacher", str(tmp_path / "teacher"), "--student", str(tiny),
                                      "--train", str(train), "--dev", str(dev), "--test", f"t={test}", "--augment", "1",
                                      "--epochs", "1", "--batch-size", "16", "--out", str(tmp_path / "s6")])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "s6" / "finetune_results.json").read_text())
    assert written["unlabeled"][-1]["examples"] == made["examples"]  # the same pairs made through the CLI


def test_augmented_pairs_reverse_and_pair_neighbours_but_never_a_known_pair():
    a = ["a man is playing a guitar", "a dog runs in the park", "the woman slices an onion"]
    b = ["a man is playing an instrument", "a dog is running in a park", "nobody is slicing an onion"]
    known = [("a man is playing a guitar", "a woman is playing a guitar")]
    extra_a, extra_b = augmented_pairs(a, b + [], neighbours=1, known=known + [(b[2], "the woman slices an onion")])
    made = list(zip(extra_a, extra_b))
    assert (b[0], a[0]) in made and (b[1], a[1]) in made  # reversed training pairs
    assert (b[2], a[2]) not in made  # that reversal is a known (test) pair
    assert len(made) == len(set(made)) and not set(made) & set(zip(a, b))
    # each sentence's nearest by word overlap: the guitar sentence's is the instrument one, already a pair, so the next
    assert ("a man is playing a guitar", "a man is playing an instrument") not in made
    assert all(x != y for x, y in made)
    neighbours = made[2:]  # after the 2 reversals: one neighbour for each of the 6 sentences, sharing words with it
    assert len(neighbours) == 6 and len({x for x, _ in neighbours}) == 6
    assert all(set(x.split()) & set(y.split()) for x, y in neighbours)
    # the known pair is left out in both orders even though its sentences overlap most
    pool = a + ["a woman is playing a guitar"]
    pa, pb = augmented_pairs(pool, pool[::-1], neighbours=3, known=known)
    assert not {("a man is playing a guitar", "a woman is playing a guitar"),
                ("a woman is playing a guitar", "a man is playing a guitar")} & set(zip(pa, pb))
    assert augmented_pairs(a, b, neighbours=0) == (b, a)


# ---------------------------------------------------------------- the CLI


def test_cli_finetune_transfer_predict(tiny, tmp_path):
    runner = CliRunner()
    train = _classify_file(tmp_path / "train.tsv", 64, 0)
    dev = _classify_file(tmp_path / "dev.tsv", 30, 1)
    out = tmp_path / "clf"
    result = runner.invoke(app, ["finetune", "-m", str(tiny), "--task", "classify", "--train", str(train), "--dev",
                                 str(dev), "--out", str(out), "--epochs", "1", "--batch-size", "16", "--lr", "1e-3",
                                 "--head-lr", "1e-2", "--freeze", "none", "--eval-every", "0", "--test", f"held={dev}"])
    assert result.exit_code == 0, result.output
    assert "dev_accuracy" in result.output and (out / "classifier.json").is_file()
    card = (out / "README.md").read_text()
    assert "## Test files (in-language and zero-shot transfer)" in card and "| this model | held |" in card
    result = runner.invoke(app, ["transfer", "-m", str(out), "--test", f"a={dev},b={train}::limit=10",
                                 "--output", str(tmp_path / "t.json")])
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "t.json").read_text())
    assert [r["test"] for r in table["rows"]] == ["a", "b"] and table["rows"][1]["n"] == 10
    texts = tmp_path / "in.tsv"
    texts.write_text("red\ncat dog\n")
    result = runner.invoke(app, ["predict", "-m", str(out), "--input", str(texts), "--output", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0 and "labelled 2 inputs" in result.output
    bad = runner.invoke(app, ["finetune", "-m", str(tiny), "--task", "classify", "--train", str(tmp_path / "nope.tsv"),
                              "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "data file not found" in bad.output


# ---------------------------------------------------------------- a real model


def test_real_e5_small_nli_short_run_and_zero_shot_japanese(tmp_path):
    jsick = SHARED / "sick_jsick" / "jsick.tsv"
    if not jsick.is_file() or not (E5 / "modules.json").is_file():
        pytest.skip(f"needs {jsick} and {E5} (../shared/tools/fetch-models .cache/models)")
    out = tmp_path / "nli"
    summary = finetune(model=str(E5), task="pair-classify", train=f"{jsick}::lang=en,split=train,limit=640",
                       dev=f"{jsick}::lang=en,split=trial,limit=150", out=out,
                       config=FinetuneConfig(epochs=1, batch_size=16, lr=5e-5, head_lr=5e-3, eval_every=0),
                       progress=False)
    before, best = summary["training"]["before"], summary["training"]["best"]
    assert best["dev_accuracy"] > before["dev_accuracy"] and best["dev_collapsed"] is None
    table = transfer(out, {"en": f"{jsick}::lang=en,split=test,limit=150", "ja": f"{jsick}::lang=ja,split=test,limit=150"})
    rows = {r["test"]: r for r in table["rows"]}
    assert rows["en"]["kind"] == "in-language" and rows["ja"]["kind"] == "transfer"
    # 40 steps on 640 English pairs already beat the majority class (neutral, ~57%) in English and Japanese
    assert rows["en"]["accuracy"] > 60 and rows["ja"]["accuracy"] > 50
