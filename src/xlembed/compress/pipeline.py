"""``compress()``: chain compression steps, check each one, write a model card with every step's figures.

Steps (``--steps``, comma-separated; a step's options follow it, ``key=value`` items belong to the
step before them, so ``prune:heads=0.3,ffn=0.3`` is one step):
- ``trim[:SIZE]`` (``trim:size=0.4``): vocabulary trimming to ``langs`` (SIZE: share of the parent's
  parameters, or a piece count; default every piece with evidence);
- ``drop:N`` (``drop:N,choose=importance|spread``): drop N layers, chosen by measured importance (the
  closest to the parent without training) or evenly spread (the better start when recovery follows);
- ``prune:heads=R,ffn=R``: prune shares of all attention heads / FFN neurons by measured importance;
- ``share:G`` (``share:groups=G``): tie the layers in G groups (ALBERT-style);
- ``recover`` (``recover:epochs=E,steps=S,lr=L,targets=own|english,balance=B``): recovery distillation from
  the parent (steps=S alone: S steps, with as many passes as they need; with epochs=E too, whichever ends
  first; targets=english: the translations of --parallel pairs towards the parent's English vectors;
  balance=B: the pairs of a language with fewer pairs than the largest repeated up to B times per pass);
- ``int8`` / ``onnx``: export an int8 (outlier channels in fp32, see quantize.py) / fp32 ONNX folder; last.

Each step writes its own folder under ``OUT.steps/`` (a rerun with ``resume=True`` keeps the steps
already done); after each, the child is compared with the parent on dev texts (mean cosine of the
sentence vectors) and, when Tatoeba data is there, on a Tatoeba sample of the kept languages; a step
that breaks the model stops the run with an error naming the step and the figures.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import BadInputError
from ..paths import atomic_folder, check_output_folder, write_text_atomic
from .folder import RECORD_NAME, read_record
from .languages import Language, parse_langs
from .layers import DROP_CHOICES
from .recover import TARGETS

STEP_NAMES = ("trim", "drop", "prune", "share", "recover", "int8", "onnx")
EXPORTS = ("int8", "onnx")
DEV_SIZE = 256
TATOEBA_SAMPLE = 200


@dataclass
class Step:
    name: str
    args: dict = field(default_factory=dict)

    def label(self) -> str:
        if not self.args:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.args.items())


POSITIONAL = {"trim": "size", "drop": "layers", "share": "groups"}
ALLOWED = {"trim": {"size"}, "drop": {"layers", "choose"}, "prune": {"heads", "ffn"}, "share": {"groups"},
           "recover": {"epochs", "steps", "lr", "targets", "balance"}, "int8": set(), "onnx": set()}


def parse_steps(text: str | Sequence[str]) -> list[Step]:
    """'trim,drop:6,recover,int8' or 'trim,prune:heads=0.3,ffn=0.3,recover,int8' -> Steps; errors say what is wrong."""
    tokens = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t and t.strip()]
    if not tokens:
        raise BadInputError(f"no steps given; e.g. --steps trim,drop:6,recover,int8 (steps: {', '.join(STEP_NAMES)})")
    steps: list[Step] = []
    for token in tokens:
        name, colon, rest = token.partition(":")
        if not colon and "=" in token:  # 'ffn=0.3' continues the step before it
            if not steps:
                raise BadInputError(f"step list starts with an option {token!r}; write it after its step, e.g. prune:{token}")
            _add_arg(steps[-1], token)
            continue
        name = name.strip().lower()
        if name not in STEP_NAMES:
            raise BadInputError(f"unknown step {name!r} in {text!r}; steps: {', '.join(STEP_NAMES)}")
        step = Step(name)
        if rest:
            if "=" in rest:
                _add_arg(step, rest)
            elif name in POSITIONAL:
                step.args[POSITIONAL[name]] = rest.strip()
            else:
                raise BadInputError(f"step {token!r}: {name} takes key=value options ({', '.join(sorted(ALLOWED[name])) or 'none'})")
        steps.append(step)
    for i, step in enumerate(steps):
        if step.name in EXPORTS and i != len(steps) - 1:
            raise BadInputError(f"{step.name} exports the final model, so it must be the last step (got {_join(steps)})")
        if step.name == "prune" and not step.args:
            raise BadInputError("prune needs heads=SHARE and/or ffn=SHARE, e.g. prune:heads=0.3,ffn=0.3")
        if step.name == "drop" and "layers" not in step.args:
            raise BadInputError("drop needs the number of layers to remove, e.g. drop:6")
        if step.name == "drop" and step.args.get("choose", DROP_CHOICES[0]) not in DROP_CHOICES:
            raise BadInputError(f"step {step.label()}: choose must be {' or '.join(DROP_CHOICES)}")
        if step.name == "recover" and step.args.get("targets", TARGETS[0]) not in TARGETS:
            raise BadInputError(f"step {step.label()}: targets must be {' or '.join(TARGETS)}")
        if step.name == "share" and "groups" not in step.args:
            raise BadInputError("share needs the number of layer groups, e.g. share:6")
    names = [s.name for s in steps]
    for name in set(names):
        if names.count(name) > 1 and name != "recover":
            raise BadInputError(f"step {name} appears {names.count(name)} times in {_join(steps)}")
    return steps


def _add_arg(step: Step, item: str) -> None:
    key, _, value = item.partition("=")
    key, value = key.strip().lower(), value.strip()
    if key not in ALLOWED[step.name]:
        raise BadInputError(f"step {step.name} has no option {key!r} (options: {', '.join(sorted(ALLOWED[step.name])) or 'none'})")
    if not value:
        raise BadInputError(f"step {step.name}: option {key} has no value")
    step.args[key] = value


def _join(steps) -> str:
    return ",".join(s.label() for s in steps)


def _number(step: Step, key: str, kind=float):
    try:
        return kind(step.args[key])
    except (TypeError, ValueError):
        raise BadInputError(f"step {step.label()}: {key} must be a {'whole number' if kind is int else 'number'}, "
                            f"got {step.args[key]!r}") from None


def check_plan(steps: list[Step], n_layers: int | None) -> None:
    """Refuse a plan that cannot work before anything runs (e.g. dropping every layer)."""
    if n_layers is None:
        return
    layers = n_layers
    for step in steps:
        if step.name == "drop":
            n = _number(step, "layers", int)
            if n >= layers:
                raise BadInputError(f"drop:{n} would remove every layer: the model has {layers} at that point; drop at most {layers - 1}")
            if n < 1:
                raise BadInputError(f"drop:{n}: drop at least 1 layer")
            layers -= n
        if step.name == "share":
            g = _number(step, "groups", int)
            if not 1 <= g < layers:
                raise BadInputError(f"share:{g}: the model has {layers} layers at that point; use 1..{layers - 1} groups")
        if step.name == "prune":
            for key in ("heads", "ffn"):
                if key in step.args and not 0 <= _number(step, key) < 1:
                    raise BadInputError(f"prune {key}={step.args[key]}: a share in [0, 1)")


@dataclass
class Inputs:
    """The text a run works from: corpus lines, parallel pairs, and their held-out parts."""

    corpus: list[str]
    pairs: list[tuple[str, str]]
    train_texts: list[str]
    dev_texts: list[str]
    dev_pairs: list[tuple[str, str]]
    source: str
    pair_langs: list[str] = field(default_factory=list)  # the language of each of ``pairs``


def gather_inputs(langs: list[Language], corpus: Sequence[str] | None, parallel: Sequence[str] | None,
                  dev_size: int = DEV_SIZE, seed: int = 0, max_pairs_per_lang: int | None = None,
                  exclude: Sequence[str] | None = None) -> Inputs:
    """Read the corpus (text files/globs, one text per line) and parallel TSV files; hold out dev texts."""
    import random

    texts: list[str] = []
    if corpus:
        texts = read_corpus(corpus)
    pairs: list[tuple[str, str]] = []
    if parallel:
        from ..distill.data import read_parallel

        read = read_parallel(list(parallel), max_pairs_per_lang=max_pairs_per_lang, seed=seed, exclude=exclude,
                             max_chars=300)
        kept = {lang.code for lang in langs}
        pairs = [(p.en, p.other, p.lang.split("-")[0]) for p in read if p.lang in kept or p.lang.split("-")[0] in kept]
        if not pairs:
            raise BadInputError(f"no parallel pairs of {', '.join(sorted(kept))} in {', '.join(parallel)}")
    rng = random.Random(seed)
    rng.shuffle(pairs)
    dev_pairs = [(en, other) for en, other, _ in pairs[: min(dev_size, len(pairs) // 10)]]
    pair_langs = [lang for _, _, lang in pairs[len(dev_pairs):]]
    pairs = [(en, other) for en, other, _ in pairs[len(dev_pairs):]]
    rng.shuffle(texts)
    n_dev = min(dev_size, len(texts) // 10)
    dev_texts, texts = texts[:n_dev], texts[n_dev:]
    train = list(dict.fromkeys([*texts, *(t for p in pairs for t in p)]))
    dev = list(dict.fromkeys([*dev_texts, *(t for p in dev_pairs for t in p)]))
    source = "corpus and parallel pairs" if texts and pairs else "corpus" if texts else "parallel pairs" if pairs else "built-in samples"
    if not train:
        from .samples import pseudo_sentences

        per = max(1, 20_000 // len(langs))
        for lang in langs:
            if lang.wordfreq:
                try:
                    train += pseudo_sentences(lang, per, seed=seed)
                    dev += pseudo_sentences(lang, max(1, dev_size // len(langs)), seed=seed + 1)
                except Exception:  # noqa: BLE001 - no word list for this language: skipped
                    continue
    return Inputs(texts, pairs, train, dev[: max(dev_size, len(dev_pairs) * 2)], dev_pairs, source, pair_langs)


def read_corpus(patterns: Sequence[str]) -> list[str]:
    """Non-empty lines of the text files matched by ``patterns`` (globs; .jsonl files give their 'text' field)."""
    import glob

    from ..io import read_texts

    files: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
        matches = [m for m in matches if Path(m).is_file()]
        if not matches:
            raise BadInputError(f"--corpus {pattern!r} matches no file; check the path and the glob")
        files += matches
    lines = [t for f in files for t in read_texts(f) if t.strip()]
    if not lines:
        raise BadInputError(f"the corpus ({', '.join(patterns)}) holds no text")
    return lines


def tatoeba_sample(folder: Path | None, langs: list[Language], n: int = TATOEBA_SAMPLE) -> dict[str, int]:
    """Tatoeba codes of the kept languages that ``folder`` holds (the dev check uses their first ``n`` pairs)."""
    if folder is None or not Path(folder).is_dir():
        return {}
    from ..eval.data import tatoeba_languages

    try:
        have = set(tatoeba_languages(folder))
    except BadInputError:
        return {}
    return {lang.tatoeba: n for lang in langs if lang.tatoeba in have}


def dev_check(child_folder: Path, parent, dev_texts: Sequence[str], tatoeba_dir: Path | None,
              tatoeba_langs: dict[str, int]) -> dict:
    """Mean cosine of the child's dev vectors to the parent's, and Tatoeba accuracy on the sample."""
    import warnings

    import numpy as np

    from .. import load
    from ..encoder import l2_normalize
    from ..errors import XlembedWarning
    from ..eval.tasks import tatoeba

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XlembedWarning)
        child = load(str(child_folder))
        a = l2_normalize(child.encode(list(dev_texts), batch_size=32))
        b = l2_normalize(parent.encode(list(dev_texts), batch_size=32))
        figures = {"dev_cosine_to_parent": round(float(np.mean(np.sum(a * b, axis=1))), 5)}
        if tatoeba_langs:
            n = max(tatoeba_langs.values())
            rows = tatoeba(child, tatoeba_dir, list(tatoeba_langs), limit=n)
            figures["tatoeba_sample"] = {r.language: round(r.scores["accuracy"], 2) for r in rows}
            figures["tatoeba_sample_mean"] = round(float(np.mean([r.scores["accuracy"] for r in rows])), 2)
    return figures


def compress(model: str, out: Path | str, langs: Sequence[str] | str, steps: str | Sequence[str], *,
             corpus: Sequence[str] | None = None, parallel: Sequence[str] | None = None,
             exclude: Sequence[str] | None = None, max_pairs_per_lang: int | None = None,
             trim_size: float | str | None = None, lang_weights: dict[str, float] | None = None,
             recover_config=None, teacher_precision: str = "fp32", tatoeba_dir: Path | str | None = None,
             dev_size: int = DEV_SIZE, min_cosine: float = 0.3, max_tatoeba_drop: float = 30.0,
             overwrite: bool = False, resume: bool = False, keep_steps: bool = False,
             progress: bool | None = None, command: str | None = None, check_languages: bool = True) -> dict:
    """Run ``steps`` on ``model`` for ``langs``; the final folder goes to ``out`` (loads with ``xlembed.load``).
    Returns the run summary (also OUT/compress.json and the model card OUT/README.md). ``check_languages``: warn
    when ``langs`` names a language the model was not trained on, or the corpus is in languages ``langs`` lacks."""
    from .. import load

    plan = parse_steps(steps)
    languages = parse_langs(langs)
    out = check_output_folder(Path(out), overwrite)
    work = out.with_name(f"{out.name}.steps")
    if work.exists() and not resume and any(work.iterdir()):
        raise BadInputError(f"{work} holds the steps of an earlier run: pass resume=True (CLI: --resume) to reuse the "
                            f"steps it finished, or delete it")
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    parent = load(model, precision="fp32", device="cpu")
    if parent.backend != "torch":
        raise BadInputError(f"{model!r} is a {parent.backend} model; compress a transformer model folder (torch)")
    parent_folder = Path(parent.info.source)
    check_plan(plan, _layer_count(parent))
    inputs = gather_inputs(languages, corpus, parallel, dev_size=dev_size, max_pairs_per_lang=max_pairs_per_lang,
                           exclude=exclude)
    if not inputs.dev_texts:
        raise BadInputError("no dev texts: pass --corpus or --parallel text of the kept languages (or install the "
                            "built-in word lists: pip install 'xlembed[compress]')")
    if check_languages:
        _check_languages(parent, languages, inputs)
    parent.check_languages = False  # its dev and Tatoeba checks encode the kept languages by design
    tatoeba_dir = Path(tatoeba_dir) if tatoeba_dir else None
    t_langs = tatoeba_sample(tatoeba_dir, languages)
    baseline = dev_check(parent_folder, parent, inputs.dev_texts, tatoeba_dir, t_langs)
    summary = {"model": model, "parent": str(parent_folder), "languages": [l.code for l in languages],
               "steps": [s.label() for s in plan], "inputs": {"source": inputs.source, "train_texts": len(inputs.train_texts),
               "dev_texts": len(inputs.dev_texts), "dev_pairs": len(inputs.dev_pairs)}, "parent_check": baseline,
               "results": [], "command": command}
    current = parent_folder
    for n, step in enumerate(plan, 1):
        folder = work / f"{n:02d}-{step.name}"
        t0 = time.perf_counter()
        if resume and _done(folder, step):
            record = read_record(folder)["steps"][-1]
        else:
            if folder.exists():
                shutil.rmtree(folder)
            record = _run_step(step, current, folder, parent_folder, languages, inputs, trim_size, lang_weights,
                               recover_config, teacher_precision, progress)
            record["label"] = step.label()
            _stamp(folder, step)
        check = dev_check(folder, parent, inputs.dev_texts, tatoeba_dir, t_langs)
        row = {"step": step.label(), "seconds": round(time.perf_counter() - t0, 1), **check,
               **_headline(record)}
        summary["results"].append(row)
        _refuse_broken(step, check, baseline, min_cosine, max_tatoeba_drop)
        current = folder
    summary["seconds"] = round(time.perf_counter() - started, 1)
    _publish(current, out, summary, overwrite)
    if not keep_steps:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def _layer_count(encoder) -> int | None:
    config = encoder.model[0].auto_model.config
    return getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None)


def _check_languages(parent, languages: list[Language], inputs: Inputs) -> None:
    """Warn when --langs names a language the parent was not trained on, or the user's text is in languages
    --langs does not keep."""
    import warnings

    from ..langs.codes import canonical, covered, label
    from ..langs.coverage import LanguageWarning, check_corpus

    keep = [canonical(lang.code) for lang in languages]
    problems = []
    if parent.info.languages is not None:
        missing = [c for c in keep if not covered(c, parent.info.languages)]
        if missing:
            problems.append(f"{parent.name} was not trained on {', '.join(label(c) for c in missing)} (--langs): "
                            "trimming and recovery keep what little it has of them")
    if inputs.corpus or inputs.pairs:
        problems += check_corpus([*inputs.corpus, *(t for pair in inputs.pairs for t in pair)], keep,
                                 what="--corpus/--parallel texts")
    for problem in problems:
        warnings.warn(problem, LanguageWarning, stacklevel=3)


def _run_step(step: Step, current: Path, folder: Path, parent_folder: Path, languages, inputs: Inputs, trim_size,
              lang_weights, recover_config, teacher_precision, progress) -> dict:
    from . import layers, recover, vocab

    if step.name == "trim":
        size = step.args.get("size", trim_size)
        return vocab.trim_vocabulary(current, folder, [l.code for l in languages], corpus=inputs.train_texts if
                                     inputs.source != "built-in samples" else None, size=size, weights=lang_weights)
    if step.name == "drop":
        return layers.drop_layers(current, folder, _number(step, "layers", int), texts=inputs.dev_texts,
                                  choose=step.args.get("choose", DROP_CHOICES[0]))
    if step.name == "prune":
        return layers.prune(current, folder, heads=_number(step, "heads") if "heads" in step.args else 0.0,
                            ffn=_number(step, "ffn") if "ffn" in step.args else 0.0, texts=inputs.dev_texts)
    if step.name == "share":
        return layers.share_layers(current, folder, groups=_number(step, "groups", int), texts=inputs.dev_texts)
    if step.name == "recover":
        import dataclasses

        config = recover_config or recover.recovery_config()
        overrides = {}
        if "epochs" in step.args:
            overrides["epochs"] = _number(step, "epochs", int)
        if "steps" in step.args:
            overrides["max_steps"] = _number(step, "steps", int)
            if "epochs" not in step.args:  # steps=S alone: S steps, however many passes they take
                overrides["epochs"] = None
        if "lr" in step.args:
            overrides["lr"] = _number(step, "lr")
        config = dataclasses.replace(config, **overrides)
        balance = _number(step, "balance", int) if "balance" in step.args else 1
        repeat = recover.balance_repeats(inputs.pairs, inputs.pair_langs, balance)
        return recover.recover(current, folder, parent_folder, texts=inputs.train_texts, dev_texts=inputs.dev_texts,
                               dev_pairs=inputs.dev_pairs, config=config, teacher_precision=teacher_precision,
                               pairs=inputs.pairs, targets=step.args.get("targets", TARGETS[0]), repeat=repeat,
                               progress=progress)
    return _export(current, folder, step.name)


def _export(current: Path, folder: Path, kind: str) -> dict:
    from .. import load
    from .folder import child_record
    from .onnx_export import export_onnx_folder

    encoder = load(str(current), precision="fp32", device="cpu")
    precision = "int8" if kind == "int8" else "fp32"
    export_onnx_folder(encoder, folder, precision=precision)
    step = {"step": kind, "precision": precision, "format": "onnx",
            "disk_mb": round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 2)}
    write_text_atomic(folder / RECORD_NAME, json.dumps(child_record(current, step), indent=1, ensure_ascii=False) + "\n")
    return step


def _stamp(folder: Path, step: Step) -> None:
    write_text_atomic(folder / ".xlembed-step", step.label() + "\n")


def _done(folder: Path, step: Step) -> bool:
    stamp = folder / ".xlembed-step"
    return stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == step.label() and (folder / RECORD_NAME).is_file()


def _headline(record: dict) -> dict:
    out = {}
    params = record.get("parameters") or {}
    if "child" in params:
        out["parameters"] = params["child"]
    if record.get("step") == "trim":
        out["pieces"] = record["pieces"]["child"]
    if "disk_mb" in record:
        out["disk_mb"] = record["disk_mb"]
    if record.get("step") == "recover":
        out["recover_steps"] = record["steps"]
        out["recover_seconds"] = record["seconds"]
    return out


def _refuse_broken(step: Step, check: dict, baseline: dict, min_cosine: float, max_drop: float) -> None:
    cosine = check["dev_cosine_to_parent"]
    problems = []
    if not cosine >= min_cosine:
        problems.append(f"its sentence vectors have a mean cosine of {cosine:.3f} to the parent's on the dev texts "
                        f"(at least {min_cosine} expected)")
    if "tatoeba_sample_mean" in check and "tatoeba_sample_mean" in baseline:
        drop = baseline["tatoeba_sample_mean"] - check["tatoeba_sample_mean"]
        if drop > max_drop:
            problems.append(f"Tatoeba (sample) fell from {baseline['tatoeba_sample_mean']} to {check['tatoeba_sample_mean']}"
                            f" (more than {max_drop} points)")
    if problems:
        raise BadInputError(
            f"step {step.label()} broke the model: {'; '.join(problems)}. Make the step milder (fewer layers, a "
            "smaller share), add a recover step after it, or loosen the check (--min-cosine / --max-tatoeba-drop)"
        )


def _publish(final: Path, out: Path, summary: dict, overwrite: bool) -> None:
    """Copy the last step's folder to ``out`` atomically, with the run summary and the model card."""
    from .card import compress_card

    with atomic_folder(out, overwrite) as tmp:
        for item in final.iterdir():
            if item.name.startswith("."):
                continue
            target = tmp / item.name
            if item.is_dir():
                shutil.copytree(item, target)
            else:
                shutil.copy2(item, target)
        record = read_record(final)
        record["run"] = summary
        write_text_atomic(tmp / RECORD_NAME, json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        compress_card(tmp, out, record)
