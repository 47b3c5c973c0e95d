"""The jobs behind ``xlembed finetune``, ``transfer``, ``distill-classifier`` and ``predict``.

``finetune`` trains an encoder on labelled data of one task (sts: CoSENT on the encoder itself;
classify / pair-classify: a linear head, see ``classifier``) on the shared loop (AdamW, warmup and
decay, clipping, dev evaluation with the best weights kept, early stopping, checkpoints and resume),
and writes a folder that ``xlembed.load()`` opens (plus the head for classifiers) with a model card.
``distill_classifier`` trains a smaller student classifier on a teacher classifier's softened outputs
(``objectives.kd_loss``); ``transfer`` evaluates a model on test files of several languages.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import BadInputError, XlembedWarning
from ..parallel import distributed
from ..paths import atomic_file, atomic_folder, cache_dir, check_output_file, check_output_folder, write_text_atomic
from .classifier import Classifier, is_classifier, load_classifier, trainable_classifier, write_head
from .data import TASKS, Examples, check_training_labels, label_ids, read_examples, read_inputs, read_many
from .objectives import ClassifierObjective, CosentObjective, classification_figures, spearman

LOG_NAME = "train_log.jsonl"
SUMMARY_NAME = "finetune_results.json"


@dataclass
class FinetuneConfig:
    """Hyper-parameters of one fine-tuning run (recorded in the checkpoint and the model card)."""

    epochs: int | None = 3  # passes over the data (None: max_steps decide, with as many passes as they need)
    max_steps: int | None = None  # stop after this many optimizer steps (None: epochs decide)
    batch_size: int = 32  # examples (texts or pairs) per step
    lr: float = 3e-5  # encoder weights
    head_lr: float = 1e-3  # the classifier head
    warmup: float = 0.1  # fraction of the steps with a linear ramp, then linear decay
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_length: int = 128  # tokens per text (longer ones are truncated)
    # what stays fixed: none, embeddings (the word-embedding table), layers:N (the embedding module and the lowest
    # N layers), encoder (all of it: the head alone is trained; classifiers only). The default keeps the word
    # embeddings: most of a multilingual encoder's weights (96M of e5-small's 118M), rows of languages absent from
    # the training data would only drift, and AdamW over them made each step several times slower
    freeze: str = "embeddings"
    dropout: bool = True  # the encoder's own dropout during training
    eval_every: int = 100  # steps between dev evaluations (0: only at the start and the end)
    patience: int | None = 5  # evaluations without a better dev figure before stopping (None: never)
    checkpoint_every: int = 100  # steps between periodic checkpoints (0: only on signals)
    bucket_size: int = 50
    prompt: str | None = None  # the encoder's prompt (None: its default, e5: 'query: ')
    fp16: bool = False  # CUDA autocast only
    seed: int = 0
    device: str = "cpu"

    def check(self) -> None:
        from ..train.loop import check_loop_settings

        check_loop_settings(self)
        freeze_spec(self.freeze)


def freeze_spec(text: str) -> tuple[str, int]:
    """'none' | 'embeddings' | 'layers:N' | 'encoder' -> (kind, N)."""
    kind, _, n = text.partition(":")
    if kind in ("none", "embeddings", "encoder") and not n:
        return kind, 0
    if kind == "layers" and n.isdigit() and int(n) >= 1:
        return kind, int(n)
    raise BadInputError(f"freeze must be none, embeddings, layers:N (N >= 1) or encoder, got {text!r} (CLI: --freeze)")


def apply_freeze(sentence_transformer, freeze: str) -> None:
    from ..train.freeze import freeze_lower_layers

    kind, n = freeze_spec(freeze)
    auto = sentence_transformer[0].auto_model
    if kind == "embeddings":
        auto.get_input_embeddings().weight.requires_grad_(False)
    elif kind == "layers":
        freeze_lower_layers(auto, n)
    elif kind == "encoder":
        sentence_transformer.requires_grad_(False)


# ---------------------------------------------------------------- fine-tuning


def finetune(*, model: str, task: str, train: str | Sequence[str], out: Path | str, dev: str | None = None,
             config: FinetuneConfig | None = None, resume: bool = False, overwrite: bool = False,
             progress: bool | None = None, command: str | None = None, on_step=None,
             tests: str | Mapping[str, str] | None = None) -> dict:
    """Fine-tune ``model`` on ``train`` (a data argument, see ``data``; several: one training set of them all,
    e.g. translate-train in several languages) for ``task``; returns the run summary. ``tests`` (NAME=FILE,
    see ``transfer``): the trained model's table on them goes into the summary and the model card.
    Under torchrun (WORLD_SIZE > 1) each rank trains on its share of every batch (sts: CoSENT then ranks the pairs
    within each rank's share) and rank 0 alone writes the folder; the other ranks return ``{"rank": N}``."""
    config = config or FinetuneConfig()
    config.check()
    distributed.init_from_env(config.device)
    tests = parse_tests(tests) if tests else None
    if task not in TASKS:
        raise BadInputError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if task == "sts" and freeze_spec(config.freeze)[0] == "encoder":
        raise BadInputError("--task sts trains the encoder itself: freeze encoder leaves nothing to train")
    out = check_output_folder(Path(out), overwrite)
    train_ex = read_many(train, task)
    dev_ex = read_examples(dev, task) if dev else None
    labels = check_training_labels(train_ex) if task != "sts" else None
    if task == "sts":
        _check_scores(train_ex)
    train_ids = label_ids(train_ex, labels) if labels else None
    dev_ids = label_ids(dev_ex, labels) if labels and dev_ex is not None else None
    encoder, st = _trainable_copy(model, config)
    prefix = encoder.resolve_prompt(config.prompt)
    _seed(config.seed)
    fingerprint = _fingerprint(config, task, [train_ex, dev_ex], encoder.info.source, prefix)
    if task == "sts":
        net = st
        objective = CosentObjective(train_ex.texts_a, train_ex.texts_b, train_ex.labels, prefix, config.device,
                                    dev_ex, fingerprint)
        head_params = []
    else:
        net = trainable_classifier(st, len(labels), train_ex.is_pair, encoder.dim).to(config.device)
        objective = ClassifierObjective(train_ex.texts_a, train_ex.texts_b, train_ids, labels, prefix,
                                        config.device, dev_ex, dev_ids, fingerprint=fingerprint)
        head_params = list(net.head.parameters())
    apply_freeze(st, config.freeze)
    facts = {"task": task, "model": encoder.name, "model_source": encoder.info.source, "prompt": prefix,
             "train": _data_facts(train_ex), "dev": _data_facts(dev_ex) if dev_ex is not None else None,
             "labels": labels}
    loop, seconds = _train(net, objective, config, out, head_params, resume, progress, facts, desc=f"finetune {task}",
                           lengths=_lengths(st, train_ex, prefix), on_step=on_step)
    if not distributed.is_main():
        return {"rank": distributed.rank()}
    summary = {**facts, "config": dataclasses.asdict(config), "training": _training(loop, seconds),
               "dev_evals": loop.evals, "command": command}
    _warn_collapse(loop.best, "the kept weights")
    _write(out, overwrite, encoder, st, net if labels else None, labels, train_ex.is_pair, prefix, task, summary)
    return _add_tests(out, summary, tests)


def _check_scores(examples: Examples) -> None:
    if len(set(examples.labels)) < 2:
        raise BadInputError(f"{examples.path}: every pair has the same score; STS training needs differing scores")


def _trainable_copy(model: str, config: FinetuneConfig):
    """The model as an fp32 Encoder and a copy of its SentenceTransformer to train."""
    from .. import load

    encoder = load(model, precision="fp32", device=config.device)
    base = getattr(encoder, "model", None)
    if encoder.backend != "torch" or base is None or type(base[0]).__name__ != "Transformer":
        raise BadInputError(
            f"{model!r} is a {encoder.backend} model; fine-tuning needs a transformer model (a catalogue name, a "
            "sentence-transformers or transformers folder)")
    st = copy.deepcopy(base)
    st.max_seq_length = min(config.max_length, encoder.max_length or config.max_length)
    st.prompts = dict(encoder.info.prompts)
    st.default_prompt_name = encoder.info.default_prompt_name
    return encoder, st


def _lengths(st, examples: Examples, prefix: str) -> list[int]:
    from ..train.loop import token_lengths

    a = token_lengths(st, examples.texts_a, prefix)
    if examples.texts_b is None:
        return a
    return [max(x, y) for x, y in zip(a, token_lengths(st, examples.texts_b, prefix))]


def _train(net, objective, config, out: Path, head_params, resume, progress, facts: dict, desc: str, lengths,
           on_step=None):
    from ..train.loop import fit, jsonl_log, parameter_groups

    work_dir = out.with_name(f"{out.name}.training")
    work_dir.mkdir(parents=True, exist_ok=True)
    log = jsonl_log(work_dir / LOG_NAME) if distributed.is_main() else (lambda _event: None)
    log({"event": "start", "resume": resume, "ranks": distributed.world_size(), "config": dataclasses.asdict(config),
         **facts})
    groups = parameter_groups(net, config.lr, config.weight_decay, head=head_params, head_lr=config.head_lr)
    if not any(p.requires_grad for g in groups for p in g["params"]):
        raise BadInputError(f"nothing to train: freeze={config.freeze!r} fixes every weight")
    started = time.perf_counter()
    loop = fit(net, objective, config, work_dir, groups, resume=resume, progress=progress, log=log,
               lengths=lengths, desc=desc, on_step=on_step)
    return loop, round(time.perf_counter() - started, 1)


def _training(loop, seconds: float) -> dict:
    return {"steps": loop.steps, "epochs_done": loop.epochs_done, "stopped": loop.stopped, "before": loop.first,
            "best": loop.best, "seconds": seconds, "sentences_per_second": loop.sentences_per_second,
            "resumed_from_step": loop.resumed_from_step}


def _warn_collapse(figures: dict | None, what: str) -> None:
    if figures and figures.get("dev_collapsed") is not None:
        warnings.warn(
            f"{what} predict {figures['dev_collapsed']!r} for every dev example: the classifier collapsed to one "
            "class; lower the learning rate (--lr), train longer, or check the label balance", XlembedWarning,
            stacklevel=3)


def _write(out: Path, overwrite: bool, encoder, st, net, labels, pair: bool, prefix: str, task: str,
           summary: dict) -> None:
    from ..backends.torch_backend import _quiet_libraries
    from ..manifest import Manifest

    info = dataclasses.replace(encoder.info, name=out.name, source=str(out), notes=[], cacheable=True)
    work_dir = out.with_name(f"{out.name}.training")
    with atomic_folder(out, overwrite) as tmp:
        with _quiet_libraries():
            st.to("cpu").save(str(tmp), create_model_card=False, safe_serialization=True)
        Manifest.from_info(info, "sentence-transformers", "fp32").write(tmp)
        if net is not None:
            write_head(tmp, net.head.weight.detach().cpu().numpy(), net.head.bias.detach().cpu().numpy(), labels,
                       pair, prefix, task)
        if (work_dir / LOG_NAME).is_file():
            shutil.copy2(work_dir / LOG_NAME, tmp / LOG_NAME)
        write_text_atomic(tmp / SUMMARY_NAME, json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
        _card(tmp, out, summary)
    shutil.rmtree(work_dir, ignore_errors=True)  # checkpoints are large; the log went into the folder


def _add_tests(out: Path, summary: dict, tests: dict | None, teacher: str | None = None) -> dict:
    """Measure the written model (and the teacher) on the named test files; into the summary and the card."""
    if not tests:
        return summary
    summary["tests"] = transfer(out, tests)["rows"]
    if teacher is not None:
        summary["teacher_tests"] = transfer(teacher, tests)["rows"]
    write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    _card(out, out, summary)
    return summary


def _data_facts(examples: Examples) -> dict:
    facts = {"path": examples.path, "examples": len(examples), "language": examples.language,
             "pairs": examples.is_pair}
    if examples.labels and isinstance(examples.labels[0], str):
        facts["labels"] = examples.label_counts()
    return facts


def _seed(seed: int) -> None:
    import random

    import torch

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _fingerprint(config, task: str, datasets: Sequence[Examples | None], source: str, prefix: str, extra=()) -> str:
    h = hashlib.sha256()
    fixed = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("eval_every", "checkpoint_every", "patience")}
    h.update(json.dumps([fixed, task, source, prefix, list(extra)], sort_keys=True, default=str).encode())
    for examples in datasets:
        if examples is None:
            h.update(b"--none--")
            continue
        for a, b, label in zip(examples.texts_a, examples.texts_b or [""] * len(examples), examples.labels):
            h.update(f"{a}\t{b}\t{label}\n".encode())
        h.update(b"--")
    return h.hexdigest()


# ---------------------------------------------------------------- evaluation and transfer


def evaluate(model: str | Path | Classifier, test: str, batch_size: int = 32) -> dict:
    """A classifier folder on a labelled file (accuracy, macro-F1, collapse), or an encoder on an STS file
    (Spearman x100 of cosine)."""
    if isinstance(model, Classifier) or is_classifier(model):
        classifier = model if isinstance(model, Classifier) else load_classifier(model)
        examples = read_examples(test, classifier.task)
        ids = label_ids(examples, classifier.labels)
        logits = classifier.logits(examples.texts_a, examples.texts_b, batch_size)
        return {"file": examples.path, "language": examples.language,
                **classification_figures(ids, logits.argmax(axis=1), classifier.labels)}
    from .. import load

    encoder = load(str(model))
    examples = read_examples(test, "sts")
    a = encoder.encode(examples.texts_a, batch_size=batch_size)
    b = encoder.encode(examples.texts_b, batch_size=batch_size)
    return {"file": examples.path, "language": examples.language, "n": len(examples),
            "spearman": spearman(a, b, examples.labels)}


def parse_tests(text: str | Mapping[str, str]) -> dict[str, str]:
    """'en=a.tsv,ja=b.tsv::lang=ja' -> {'en': 'a.tsv', 'ja': 'b.tsv::lang=ja'} (a comma inside ``::`` options
    continues the options)."""
    if isinstance(text, Mapping):
        return dict(text)
    tests: dict[str, str] = {}
    last = None
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, eq, spec = item.partition("=")
        if eq and "::" not in name and "/" not in name and "." not in name and name not in ("lang", "split", "text",
                                                                                          "text_b", "label", "limit"):
            last = name.strip()
            if last in tests:
                raise BadInputError(f"--test names {last!r} twice")
            tests[last] = spec.strip()
        elif last is not None and "::" in tests[last]:
            tests[last] += "," + item
        else:
            raise BadInputError(f"--test must be NAME=FILE[,NAME=FILE...], got {item!r} in {text!r}")
    if not tests:
        raise BadInputError("--test names no file: give NAME=FILE[,NAME=FILE...]")
    return tests


def transfer(model: str | Path, tests: str | Mapping[str, str], batch_size: int = 32) -> dict:
    """The model on each named test file: the cross-lingual table. The language the model was trained on (from
    its finetune_results.json) is marked in-language, the others zero-shot transfer."""
    tests = parse_tests(tests)
    folder = Path(model)
    trained_on = None
    summary_path = folder / SUMMARY_NAME
    if summary_path.is_file():
        trained_on = json.loads(summary_path.read_text(encoding="utf-8")).get("train", {}).get("language")
    target = load_classifier(folder) if is_classifier(folder) else folder
    rows = []
    for name, spec in tests.items():
        figures = evaluate(target, spec, batch_size)
        kind = "in-language" if trained_on and name in trained_on.split("+") else ("transfer" if trained_on else "")
        rows.append({"test": name, "kind": kind, **{k: v for k, v in figures.items() if k != "language"}})
    return {"model": str(model), "trained_on": trained_on, "rows": rows}


# ---------------------------------------------------------------- prediction


def predict(model: str | Path, input: str, output: Path | str, batch_size: int = 32) -> dict:
    """Label every text (or pair) of ``input``; writes JSONL (text, [text_b], label, probabilities) to ``output``."""
    output = check_output_file(Path(output))
    classifier = load_classifier(model)
    inputs = read_inputs(input, classifier.pair)
    predicted, probabilities = classifier.predict(inputs.texts_a, inputs.texts_b, batch_size)
    counts: dict = {}
    with atomic_file(output) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for i, label in enumerate(predicted):
            row = {"text": inputs.texts_a[i]}
            if inputs.texts_b is not None:
                row["text_b"] = inputs.texts_b[i]
            row["label"] = label
            row["probabilities"] = {c: round(float(p), 6) for c, p in zip(classifier.labels, probabilities[i])}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            counts[label] = counts.get(label, 0) + 1
    return {"input": inputs.path, "output": str(output), "n": len(predicted), "predicted": counts}


# ---------------------------------------------------------------- classifier distillation


def teacher_logits(teacher: Classifier, texts_a: Sequence[str], texts_b: Sequence[str] | None, teacher_path: str,
                   cache_root: Path | None = None) -> tuple[np.ndarray, bool]:
    """The teacher's logits of every row, computed once: cached as .npy under ``cache_root`` keyed by the
    teacher's files and the texts. Returns (logits, from_cache)."""
    h = hashlib.sha256()
    for name in ("model.safetensors", "classifier_head.safetensors", "classifier.json"):
        for f in sorted(Path(teacher_path).rglob(name)):
            stat = f.stat()
            h.update(f"{f.relative_to(teacher_path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    h.update(str(Path(teacher_path).resolve()).encode())
    for i, a in enumerate(texts_a):
        h.update(f"{a}\t{texts_b[i] if texts_b is not None else ''}\n".encode())
    path = Path(cache_root or cache_dir() / "teacher_logits") / f"{h.hexdigest()[:32]}.npy"
    if path.is_file():
        logits = np.load(path, allow_pickle=False)
        if logits.shape == (len(texts_a), len(teacher.labels)):
            return logits, True
    logits = teacher.logits(texts_a, texts_b).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, suffix=".npy") as tmp:
        np.save(tmp, logits)
    return logits, False


def distill_classifier(*, teacher: str, student: str, train: str, out: Path | str, unlabeled: Sequence[str] = (),
                       dev: str | None = None, drop_layers: int = 0, temperature: float = 2.0, alpha: float = 0.5,
                       config: FinetuneConfig | None = None, resume: bool = False, overwrite: bool = False,
                       progress: bool | None = None, cache_root: Path | None = None, command: str | None = None,
                       on_step=None, tests: str | Mapping[str, str] | None = None, augment: int | None = None) -> dict:
    """Train ``student`` (an encoder; ``drop_layers`` of its layers removed first, chosen by measured importance)
    with a new head on ``teacher``'s softened outputs: alpha x T^2 x KL + (1 - alpha) x CE on the labels of
    ``train``; ``unlabeled`` files add rows that only the teacher labels. alpha=0 is hard-label training.
    ``augment`` (pair tasks): also rows the teacher labels made from the training pairs, each reversed and each
    sentence with its ``augment`` most word-overlapping training sentences (``augment.augmented_pairs``; no pair
    of ``dev`` or ``tests``)."""
    config = config or FinetuneConfig()
    config.check()
    if distributed.launched_as_rank():
        raise BadInputError("distill-classifier trains in one process; run it without torchrun")
    if not temperature > 0:
        raise BadInputError(f"temperature must be > 0, got {temperature}")
    if not 0 <= alpha <= 1:
        raise BadInputError(f"alpha is the weight of the soft-label loss, in [0, 1], got {alpha}")
    if drop_layers < 0:
        raise BadInputError(f"drop_layers must be >= 0, got {drop_layers}")
    if augment is not None and augment < 0:
        raise BadInputError(f"augment is the number of neighbour pairs per training sentence, >= 0, got {augment}")
    tests = parse_tests(tests) if tests else None
    out = check_output_folder(Path(out), overwrite)
    teacher_clf = load_classifier(teacher, precision="fp32", device=config.device)
    task = teacher_clf.task
    train_ex = read_examples(train, task)
    dev_ex = read_examples(dev, task) if dev else None
    ids = label_ids(train_ex, teacher_clf.labels)
    dev_ids = label_ids(dev_ex, teacher_clf.labels) if dev_ex is not None else None
    extra_a, extra_b, extra_facts = [], [] if teacher_clf.pair else None, []
    if alpha > 0:  # hard-label training has no use for text without labels
        for spec in unlabeled:
            more = read_inputs(spec, teacher_clf.pair)
            extra_a += more.texts_a
            if extra_b is not None:
                extra_b += more.texts_b
            extra_facts.append({"path": more.path, "examples": len(more)})
        if augment is not None:
            more_a, more_b = _augmented(teacher_clf.pair, train_ex, dev_ex, tests, task, augment, config.seed)
            extra_a += more_a
            extra_b += more_b
            extra_facts.append({"path": f"augmented: {Path(train_ex.path).name} pairs reversed + {augment} "
                                        f"neighbours per sentence", "examples": len(more_a)})
    texts_a = train_ex.texts_a + extra_a
    texts_b = train_ex.texts_b + extra_b if teacher_clf.pair else None
    all_ids = ids + [-1] * len(extra_a)
    logits, cached = (teacher_logits(teacher_clf, texts_a, texts_b, teacher, cache_root) if alpha > 0
                      else (None, False))
    teacher_dev = None
    if dev_ex is not None:
        t_logits = teacher_clf.logits(dev_ex.texts_a, dev_ex.texts_b)
        teacher_dev = classification_figures(dev_ids, t_logits.argmax(axis=1), teacher_clf.labels)

    work_dir = out.with_name(f"{out.name}.training")
    student_source = student
    if drop_layers:
        student_source = str(work_dir / "student-start")
        if not (resume and (Path(student_source) / "modules.json").is_file()):
            from ..compress.layers import drop_layers as drop

            sample = sorted(set(train_ex.texts_a + (train_ex.texts_b or [])))
            sample = [sample[i] for i in np.random.default_rng(config.seed).permutation(len(sample))[:256]]
            drop(student, student_source, drop_layers, texts=sample, overwrite=True)
    encoder, st = _trainable_copy(student_source, config)
    prefix = encoder.resolve_prompt(config.prompt)
    _seed(config.seed)
    fingerprint = _fingerprint(config, task, [train_ex, dev_ex], str(student), prefix,
                               extra=[teacher, drop_layers, temperature, alpha, len(extra_a), augment])
    net = trainable_classifier(st, len(teacher_clf.labels), teacher_clf.pair, encoder.dim).to(config.device)
    objective = ClassifierObjective(texts_a, texts_b, all_ids, teacher_clf.labels, prefix, config.device, dev_ex,
                                    dev_ids, teacher_logits=logits, temperature=temperature, alpha=alpha,
                                    fingerprint=fingerprint)
    apply_freeze(st, config.freeze)
    all_rows = Examples(texts_a, texts_b, all_ids, train_ex.path)
    facts = {"task": task, "teacher": str(teacher), "student": str(student), "model_source": str(student),
             "prompt": prefix, "drop_layers": drop_layers, "layers": _layer_count(st),
             "temperature": temperature, "alpha": alpha, "train": _data_facts(train_ex), "unlabeled": extra_facts,
             "teacher_logits_from_cache": cached, "dev": _data_facts(dev_ex) if dev_ex is not None else None,
             "teacher_dev": teacher_dev, "labels": teacher_clf.labels}
    loop, seconds = _train(net, objective, config, out, list(net.head.parameters()), resume, progress, facts,
                           desc="distill-classifier", lengths=_lengths(st, all_rows, prefix), on_step=on_step)
    summary = {**facts, "config": dataclasses.asdict(config), "training": _training(loop, seconds),
               "dev_evals": loop.evals, "command": command}
    _warn_collapse(loop.best, "the kept weights")
    _write(out, overwrite, encoder, st, net, teacher_clf.labels, teacher_clf.pair, prefix, task, summary)
    return _add_tests(out, summary, tests, teacher=teacher)


def _augmented(pair: bool, train_ex: Examples, dev_ex: Examples | None, tests: dict | None, task: str, neighbours: int,
               seed: int) -> tuple[list[str], list[str]]:
    """``augment.augmented_pairs`` of the training pairs, leaving out every dev and test pair."""
    from .augment import augmented_pairs

    if not pair:
        raise BadInputError("augment makes new text pairs: it needs a pair classifier (the teacher classifies "
                            "single texts); leave it out, or give more texts with unlabeled")
    known = []
    for examples in [dev_ex] + [read_examples(spec, task) for spec in (tests or {}).values()]:
        if examples is not None and examples.texts_b is not None:
            known += zip(examples.texts_a, examples.texts_b)
    return augmented_pairs(train_ex.texts_a, train_ex.texts_b, neighbours, known, seed)


def _layer_count(st) -> int | None:
    from ..train.freeze import _layer_stack

    layers = _layer_stack(st[0].auto_model)
    return len(layers) if layers is not None else None


# ---------------------------------------------------------------- the model card


def _card(folder: Path, out: Path, summary: dict) -> None:
    from ..distill.card import write_model_card

    training, cfg = summary["training"], summary["config"]
    metric = "dev_spearman" if summary["task"] == "sts" else "dev_accuracy"
    facts = [("Task", summary["task"]),
             ("Initialised from", f"{summary.get('model')} ({summary['model_source']})" if summary.get("model")
              else summary["model_source"]),
             ("Prompt", repr(summary["prompt"])),
             ("Training data", f"{summary['train']['path']} ({summary['train']['examples']} examples, language "
                               f"{summary['train']['language'] or 'not given'})")]
    if summary.get("teacher"):
        facts += [("Teacher", summary["teacher"]),
                  ("Distillation", f"alpha {summary['alpha']} x T^2 x KL(teacher/T || student/T) (batchmean) + "
                                   f"{1 - summary['alpha']:.2g} x cross-entropy, T = {summary['temperature']}; "
                                   f"{summary['drop_layers']} layers dropped ({summary['layers']} kept); "
                                   f"unlabelled: {sum(u['examples'] for u in summary['unlabeled'])} rows")]
    if summary.get("labels"):
        facts.append(("Classes", ", ".join(summary["labels"])))
    facts += [("Steps", f"{training['steps']} ({training['epochs_done']} epochs, stopped: {training['stopped']}, "
                        f"batch {cfg['batch_size']})"),
              ("Optimiser", f"AdamW lr {cfg['lr']} (head {cfg['head_lr']}), warmup {cfg['warmup']} then linear "
                            f"decay, weight decay {cfg['weight_decay']}, clip {cfg['max_grad_norm']}, max length "
                            f"{cfg['max_length']}, freeze {cfg['freeze']}, dropout {'on' if cfg['dropout'] else 'off'}"),
              ("Training time", f"{training['seconds']} s")]
    rows = []
    for label, figures in (("before training", training["before"]), ("kept (best dev)", training["best"])):
        if figures:
            rows.append({"weights": label, "step": figures["step"], metric: round(figures[metric], 2),
                         **({"dev_macro_f1": round(figures["dev_macro_f1"], 2), "collapsed": figures["dev_collapsed"]}
                            if metric == "dev_accuracy" else {})})
    if summary.get("teacher_dev"):
        rows.append({"weights": "teacher", "step": "", metric: round(summary["teacher_dev"]["accuracy"], 2),
                     "dev_macro_f1": round(summary["teacher_dev"]["macro_f1"], 2),
                     "collapsed": summary["teacher_dev"]["collapsed"]})
    if summary["task"] == "sts":
        usage = (f"import xlembed\nmodel = xlembed.load({str(out)!r})  # or sentence_transformers.SentenceTransformer\n"
                 "vectors = model.encode(['Ein Mann spielt Gitarre.', 'A man plays a guitar.'])")
    else:
        usage = (f"from xlembed.finetune import load_classifier\nclassifier = load_classifier({str(out)!r})\n"
                 "labels, probabilities = classifier.predict(['A man is playing'], ['A person plays']"
                 f"{'' if summary['task'] == 'pair-classify' else ' and drop this second list'})\n"
                 f"# CLI: xlembed predict --model {out} --input texts.tsv --output labels.jsonl")
    title = f"{out.name}: {summary['task']} " + ("distilled from " + summary["teacher"] if summary.get("teacher")
                                                 else "fine-tuned from " + str(summary.get("model")))
    tables = {"Dev figures": rows}
    if summary.get("tests"):
        tables["Test files (in-language and zero-shot transfer)"] = _test_rows(summary["tests"], "this model")
        if summary.get("teacher_tests"):
            tables["Test files (in-language and zero-shot transfer)"] += _test_rows(summary["teacher_tests"], "teacher")
    write_model_card(folder, title, facts, tables, usage, summary.get("command"), intro="Fine-tuned with xlembed.")


def _test_rows(rows: list[dict], model: str) -> list[dict]:
    keep = ("test", "kind", "n", "accuracy", "macro_f1", "spearman", "collapsed")
    return [{"model": model, **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k in keep}}
            for r in rows]
