"""``distill()``: the whole job behind ``xlembed distill`` — read the data, train, evaluate, write the folder.

Transformer students are trained by ``train.train_student``; ``student='static'`` builds a static
student with ``static.distill_static``. Either way the output folder loads with ``xlembed.load()``
and carries a model card (README.md) with the teacher, data, steps and the figures measured at the end.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Sequence

from ..encoder import Encoder
from ..errors import BadInputError
from ..manifest import Manifest
from ..paths import write_text_atomic
from ..paths import atomic_folder, cache_dir, check_output_folder
from .card import write_model_card
from .data import exclude_list, read_parallel, split_dev
from ..train.loop import jsonl_log
from .train import TrainConfig, train_student

# ISO 639-1 codes of the parallel files -> the LASER Tatoeba file codes
TATOEBA_CODES = {
    "ar": "ara", "cs": "ces", "de": "deu", "es": "spa", "fr": "fra", "hi": "hin", "it": "ita", "ja": "jpn",
    "ko": "kor", "nl": "nld", "pl": "pol", "pt": "por", "ru": "rus", "tr": "tur", "vi": "vie", "zh": "cmn",
}
LOG_NAME = "train_log.jsonl"
SUMMARY_NAME = "distill_results.json"


def tatoeba_langs(trained: Sequence[str], folder: Path) -> list[str]:
    """The Tatoeba languages (3-letter) among the trained ones that ``folder`` holds."""
    from ..eval.data import tatoeba_languages

    have = set(tatoeba_languages(folder))
    codes = [TATOEBA_CODES.get(code, code) for code in trained]
    return sorted(c for c in set(codes) if c in have)


def final_figures(student: Encoder, teacher: Encoder, tatoeba_dir: Path | None, langs: Sequence[str],
                  limit: int | None = None) -> list[dict]:
    """Per Tatoeba language: the student's own accuracy and student(xx) -> teacher(eng) (cross-model)."""
    if tatoeba_dir is None or not langs:
        return []
    from ..eval.cache import EmbeddingCache
    from ..eval.tasks import tatoeba
    from .cross_eval import cross_model_tatoeba

    cache = EmbeddingCache()  # the teacher's vectors (a student being trained is encoded, never cached)
    rows = []
    cross = {}
    if student.dim == teacher.dim:  # one pass gives both: the student's own Tatoeba and cross-model
        results = cross_model_tatoeba(student, teacher, tatoeba_dir, langs, limit, cache=cache)
        own = {r.language: r.scores["own_accuracy"] for r in results}
        cross = {r.language: r.scores["accuracy"] for r in results}
    else:
        own = {r.language: r.scores["accuracy"] for r in tatoeba(student, tatoeba_dir, langs, limit=limit, cache=cache)}
    for lang in langs:
        row = {"language": lang, "tatoeba_own": round(own[lang], 2)}
        if lang in cross:
            row["tatoeba_cross_to_teacher"] = round(cross[lang], 2)
        rows.append(row)
    return rows


def trained_encoder(model, student: Encoder, teacher: Encoder, name: str, source: str | None = None) -> Encoder:
    """The trained SentenceTransformer ``model`` as an Encoder: the student's settings in the teacher's space."""
    from ..backends.torch_backend import TorchEncoder

    info = dataclasses.replace(
        student.info, name=name, source=source or name, dim=teacher.dim,
        normalized_output=bool(teacher.info.normalized_output), notes=[], cacheable=False,
        languages=None, languages_source="",  # its languages are those of the pairs (distill_results.json)
    )
    return TorchEncoder(model, info)


def distill(
    *,
    teacher: str | None,
    student: str,
    train: Sequence[str] | str,
    out: Path | str,
    lang: str | None = None,
    dev_size: int | float = 1000,
    max_pairs_per_lang: int | None = None,
    min_chars: int = 1,
    max_chars: int = 1000,
    skip_malformed: bool = False,
    exclude: Sequence[str] | str | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
    tatoeba_dir: Path | str | None = None,
    tatoeba_limit: int | None = None,
    tokenizer: str | None = None,
    static_options: dict | None = None,
    cache_root: Path | str | None = None,
    progress: bool | None = None,
    command: str | None = None,
    check_languages: bool = True,
) -> dict:
    """Distil ``teacher`` into ``student`` (a transformer name/folder, or 'static'); returns the run summary.

    ``exclude``: file or folder names (or globs) of ``train`` matches to leave out (``kyoto_wiki_enja``).
    ``check_languages``: warn when a file's texts do not look like the language it is labelled with, or the student
    (a static student: its tokenizer's model) was not trained on a language of the pairs.
    Under torchrun (WORLD_SIZE > 1) every rank trains on its share of each batch and rank 0 alone writes the
    folder; the other ranks return ``{"rank": N}``.
    """
    from .. import load
    from ..parallel import distributed

    config = config or TrainConfig()
    config.check()
    distributed.init_from_env(config.device)
    if distributed.world_size() > 1 and student == "static":
        raise BadInputError("a static student trains in one process (its steps are tiny); run it without torchrun/--nproc")
    out = check_output_folder(Path(out), overwrite)
    if student == "static" and not tokenizer:
        raise BadInputError("a static student needs --tokenizer: a model name or folder whose tokenizer.json is used")
    cache_root = Path(cache_root) if cache_root else cache_dir() / "teacher"
    started = time.perf_counter()

    pairs = read_parallel(train, lang=lang, min_chars=min_chars, max_chars=max_chars, exclude=exclude,
                          max_pairs_per_lang=max_pairs_per_lang, seed=config.seed, skip_malformed=skip_malformed)
    if not pairs:
        raise BadInputError(f"no pairs were read from {train!r}: {pairs.stats.summary()}")
    train_pairs, dev_pairs = split_dev(pairs, dev_size, seed=config.seed)
    languages = dict(sorted(pairs.stats.per_lang.items()))
    teacher_enc = load(teacher)
    if check_languages and distributed.is_main():
        from ..langs.coverage import LanguageWarning, check_training_pairs, model_languages

        name, known, _ = model_languages(tokenizer if student == "static" else student)
        for problem in check_training_pairs(pairs, name, known):
            warnings.warn(problem, LanguageWarning, stacklevel=2)
    teacher_enc.check_languages = False  # it encodes the English side only
    data_facts = {
        "files": pairs.stats.files,
        "excluded": exclude_list(exclude),
        "pairs_per_language": languages,
        "train_pairs": len(train_pairs),
        "dev_pairs": len(dev_pairs),
        "read": pairs.stats.summary(),
    }
    if tatoeba_dir is not None and not Path(tatoeba_dir).is_dir():
        raise BadInputError(f"Tatoeba folder not found: {tatoeba_dir}; pass the folder with tatoeba.*-eng.* files")
    t_langs = tatoeba_langs(list(languages), Path(tatoeba_dir)) if tatoeba_dir else []

    if student == "static":
        return _distill_static(teacher_enc, train_pairs, dev_pairs, out, tokenizer, static_options or {},
                               cache_root, progress, overwrite, data_facts, tatoeba_dir, t_langs, tatoeba_limit,
                               command, started, config.seed)

    student_enc = load(student, precision="fp32", device=config.device)
    work_dir = out.with_name(f"{out.name}.training")
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / LOG_NAME
    log = jsonl_log(log_path) if distributed.is_main() else (lambda _event: None)

    log({"event": "start", "teacher": teacher_enc.name, "student": student_enc.name, "resume": resume,
         "ranks": distributed.world_size(),
         "config": dataclasses.asdict(config), **{k: v for k, v in data_facts.items() if k != "files"}})
    model, result = train_student(student_enc, teacher_enc, train_pairs, dev_pairs, work_dir, config,
                                  cache_root=cache_root, resume=resume, progress=progress, log=log)
    if not distributed.is_main():
        return {"rank": distributed.rank()}

    trained = trained_encoder(model, student_enc, teacher_enc, out.name, source=str(out))
    info = trained.info
    figures = final_figures(trained, teacher_enc, tatoeba_dir, t_langs, tatoeba_limit)
    summary = {
        "kind": "transformer",
        "teacher": teacher_enc.name,
        "teacher_source": teacher_enc.info.source,
        "student": student_enc.name,
        "student_source": student_enc.info.source,
        "student_prompt": student_enc.resolve_prompt(None),
        "data": data_facts,
        "config": dataclasses.asdict(config),
        "training": {k: v for k, v in dataclasses.asdict(result).items() if k != "evals"},
        "dev_evals": result.evals,
        "tatoeba": figures,
        "tatoeba_limit": tatoeba_limit,
        "seconds": round(time.perf_counter() - started, 1),
        "command": command,
    }
    from ..backends.torch_backend import _quiet_libraries

    with atomic_folder(out, overwrite) as tmp:
        with _quiet_libraries():
            model.save(str(tmp), create_model_card=False, safe_serialization=True)
        Manifest.from_info(info, "sentence-transformers", "fp32").write(tmp)
        shutil.copy2(log_path, tmp / LOG_NAME)
        write_text_atomic(tmp / SUMMARY_NAME, json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
        _card(tmp, out, summary)
    shutil.rmtree(work_dir, ignore_errors=True)  # checkpoints are large; the log went into the folder
    return summary


def _dev_row(label: str, figures: dict | None) -> dict:
    figures = figures or {}
    return {"weights": label, **{k: v for k, v in figures.items()}}


def _warm_start_fact(cfg: dict, training: dict) -> str:
    """What the warm-start map was fitted on: the pairs or sentences used, not only the configured size."""
    used = training.get("warm_start_used")
    if used is None:
        return f"none ({cfg['warm_start']}: the student is trained from its own outputs)"
    what = ("pairs, both sides onto the English teacher vector" if cfg.get("warm_start_fit") == "both"
            else "English sentences")
    short = (f"; all the training data held (configured: {cfg['warm_start_sentences']})"
             if used < cfg["warm_start_sentences"] else "")
    return f"ridge map (alpha {cfg['warm_start_alpha']}) fitted on {used} {what}{short} ({cfg['warm_start']})"


def _card(folder: Path, out: Path, summary: dict) -> None:
    training, cfg, data = summary["training"], summary["config"], summary["data"]
    facts = [
        ("Teacher", f"{summary['teacher']} ({summary['teacher_source']})"),
        ("Student initialised from", f"{summary['student']} ({summary['student_source']})"),
        ("Student prompt", repr(summary["student_prompt"]) + " (applied by default, also by sentence-transformers)"),
        ("Languages (pairs read)", ", ".join(f"{k}: {v}" for k, v in data["pairs_per_language"].items())),
        ("Training / dev pairs", f"{data['train_pairs']} / {data['dev_pairs']}"),
        ("Steps", f"{training['steps']} ({training['epochs_done']} epochs, stopped: {training['stopped']}, "
                  f"batch {cfg['batch_size']} sentences)"),
        ("Optimiser", f"AdamW lr {cfg['lr']} (projection {cfg['head_lr']}), warmup {cfg['warmup']}, "
                      f"weight decay {cfg['weight_decay']}, clip {cfg['max_grad_norm']}, max length {cfg['max_length']}, "
                      f"word embeddings {'frozen' if cfg['freeze_embeddings'] else 'trained'}, "
                      f"dropout {'on' if cfg.get('dropout', True) else 'off'}"
                      + (f", embeddings and lowest {cfg['freeze_layers']} layers frozen" if cfg.get("freeze_layers") else "")),
        ("Loss", "MSE to the teacher's vectors (English and translation)"
                 + (f" + {cfg['contrastive_weight']} x in-batch InfoNCE (temperature {cfg['contrastive_temperature']})"
                    if cfg.get("contrastive_weight") else "")),
        ("Warm start", _warm_start_fact(cfg, training)),
        ("Output weights", "the kept weights" if cfg.get("interpolate", 1) >= 1 else
                           f"{1 - cfg['interpolate']:.2g} x warm start + {cfg['interpolate']:.2g} x kept weights (WiSE-FT)"),
        ("Training time", f"{training['seconds']} s ({training['sentences_per_second']} sentences/s)"),
    ]
    tables = {
        "Dev split (MSE to the teacher, top-1 retrieval in %)": [
            _dev_row("warm start (before training)", training["warm_start"]),
            _dev_row("kept (best dev MSE)", training["best"]),
            *([_dev_row("output (interpolated with the warm start)", training["final"])]
              if training.get("final") and training["final"] != training["best"] else []),
        ],
        "Tatoeba top-1 (%), measured at the end": summary["tatoeba"],
    }
    usage = (f"import xlembed\nmodel = xlembed.load({str(out)!r})  # or sentence_transformers.SentenceTransformer(path)\n"
             "vectors = model.encode(['Wie spät ist es?'])  # in the teacher's space: search an index built with the teacher")
    write_model_card(folder, f"{summary['teacher']} distilled into {summary['student']}", facts, tables, usage,
                     summary.get("command"))


def _distill_static(teacher_enc, train_pairs, dev_pairs, out, tokenizer, options, cache_root, progress, overwrite,
                    data_facts, tatoeba_dir, t_langs, tatoeba_limit, command, started, seed) -> dict:
    from .static import distill_static

    log_path = out.with_name(f"{out.name}.{LOG_NAME}")
    training = distill_static(teacher_enc, train_pairs, dev_pairs, tokenizer, out, cache_root=cache_root,
                              log_path=log_path, progress=progress if progress is not None else True,
                              overwrite=overwrite, seed=seed, command=command, **options)
    from .. import load
    from .card import CARD_NAME, markdown_table

    figures = final_figures(load(str(out)), teacher_enc, tatoeba_dir, t_langs, tatoeba_limit)
    summary = {"kind": "static", "teacher": teacher_enc.name, "data": data_facts, "training": training,
               "tatoeba": figures, "tatoeba_limit": tatoeba_limit,
               "seconds": round(time.perf_counter() - started, 1), "command": command}
    if figures:  # the card was written with the folder; the end figures are added to it
        card = out / CARD_NAME
        text = card.read_text(encoding="utf-8").rstrip("\n")
        write_text_atomic(card, f"{text}\n\n## Tatoeba top-1 (%), measured at the end\n\n{markdown_table(figures)}\n")
    write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    if log_path.is_file():
        shutil.move(str(log_path), str(out / LOG_NAME))
    return summary
