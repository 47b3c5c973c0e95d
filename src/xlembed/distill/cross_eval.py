"""Cross-model Tatoeba: does the student's vector for a sentence find the teacher's for its translation?

Distillation into an existing English model's space succeeds when the two models' vectors become
interchangeable: an English index built with the teacher can be searched in another language with the
student. This measures that directly: student(xx), optionally through a ``LinearMap``, retrieves
teacher(eng) top-1 among all the language's English sentences, and the reverse.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..encoder import Encoder, l2_normalize
from ..errors import BadInputError
from ..eval.cache import EmbeddingCache, encode_texts
from ..eval.data import read_tatoeba
from ..eval.results import TaskResult
from ..eval.tasks import _langs, top1_accuracies
from ..similarity import search
from .warm_start import LinearMap


def _student_vectors(student: Encoder, texts, prompt, cache, mapping: LinearMap | None) -> np.ndarray:
    vectors = np.asarray(encode_texts(student, list(texts), prompt=prompt, cache=cache), dtype=np.float32)
    if mapping is not None:
        vectors = mapping.apply(vectors)
    return l2_normalize(vectors)


def cross_model_tatoeba(
    student: Encoder,
    teacher: Encoder,
    folder,
    langs: Iterable[str] | str | None = None,
    limit: int | None = None,
    mapping: LinearMap | None = None,
    student_prompt: str | None = None,
    teacher_prompt: str | None = None,
    cache: EmbeddingCache | None = None,
) -> list[TaskResult]:
    """Per language: student(xx) -> teacher(eng) and teacher(eng) -> student(xx) top-1, in percent.

    ``mapping`` (student -> teacher space) is applied to the student's vectors as ``encode`` returns
    them (not normalised); cosine is taken after. Prompts as in the other tasks: None is each model's
    default prompt, '' none. Scores: ``accuracy`` (mean of both directions, main),
    ``accuracy_xx_eng``, ``accuracy_eng_xx``, the mean cosine of student(xx) to teacher(eng) of
    the same pair (``translation_cosine``) and of student(eng) to teacher(eng) (``english_cosine``),
    and the student's own Tatoeba from the same vectors (``own_accuracy``: student(xx) <-> student(eng),
    both directions averaged, as ``tatoeba`` scores it), so nothing is encoded twice for it.
    """
    student_dim = mapping.out_dim if mapping is not None else student.dim
    if mapping is not None and mapping.in_dim != student.dim:
        raise BadInputError(
            f"the map takes {mapping.in_dim}-dim vectors but the student {student.name} gives {student.dim}"
        )
    if student_dim != teacher.dim:
        raise BadInputError(
            f"the student gives {student_dim}-dim vectors{' after the map' if mapping is not None else ''} "
            f"but the teacher {teacher.name} gives {teacher.dim}: fit a LinearMap to compare them"
        )
    s_prefix = student.resolve_prompt(student_prompt)
    t_prefix = teacher.resolve_prompt(teacher_prompt)
    results = []
    for lang in _langs(folder, langs):
        xx, en = read_tatoeba(folder, lang, limit)
        s_xx = _student_vectors(student, xx, student_prompt, cache, mapping)
        s_en = _student_vectors(student, en, student_prompt, cache, mapping)
        t_en = l2_normalize(np.asarray(encode_texts(teacher, en, prompt=teacher_prompt, cache=cache), dtype=np.float32))
        fwd = search(s_xx, t_en, top_k=1).indices[:, 0]
        bwd = search(t_en, s_xx, top_k=1).indices[:, 0]
        own = top1_accuracies(search(s_xx, s_en, top_k=1).indices[:, 0], search(s_en, s_xx, top_k=1).indices[:, 0])
        results.append(
            TaskResult(
                task="cross_tatoeba",
                dataset="tatoeba",
                language=lang,
                scores={
                    **top1_accuracies(fwd, bwd),
                    "translation_cosine": float((s_xx * t_en).sum(axis=1, dtype=np.float64).mean()),
                    "english_cosine": float((s_en * t_en).sum(axis=1, dtype=np.float64).mean()),
                    "own_accuracy": own["accuracy"],
                },
                main_score="accuracy",
                prompt=s_prefix,
                details={
                    "n": len(xx),
                    "limit": limit,
                    "student": student.name,
                    "teacher": teacher.name,
                    "student_prompt": s_prefix,
                    "teacher_prompt": t_prefix,
                    "mapping": None if mapping is None else f"linear {mapping.in_dim}->{mapping.out_dim}",
                },
            )
        )
    return results
