"""What fine-tuning optimises, as objectives of the shared loop (``xlembed.train.fit``).

- ``ClassifierObjective``: cross-entropy of a linear head on sentence vectors (or pair features); with
  teacher logits, the soft-label distillation loss ``kd_loss`` (Hinton et al. 2015). Dev: accuracy (kept
  when highest), macro-F1, and the classes predicted (one class for every dev input = collapse).
- ``CosentObjective``: CoSENT on the encoder's cosine similarity (sentence-transformers' ``CoSENTLoss``), so
  the output stays a sentence encoder. Dev: Spearman x100 of cosine against the gold scores (kept when highest).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..encoder import l2_normalize


def kd_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """alpha x T^2 x KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) x cross-entropy.

    KL is averaged over the batch ("batchmean": the sum over classes, then the mean over rows; the
    default "mean" of ``KLDivLoss`` also divides by the number of classes, a silently smaller loss), and
    scaled by T^2 so its gradients keep their size whatever T (Hinton et al. 2015). ``labels`` < 0 mark
    unlabelled rows (the teacher's labels only): they take no part in the cross-entropy.
    """
    import torch.nn.functional as F

    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),
                    F.softmax(teacher_logits / temperature, dim=-1), reduction="batchmean") * temperature ** 2
    labelled = labels >= 0
    hard = F.cross_entropy(student_logits[labelled], labels[labelled]) if bool(labelled.any()) \
        else student_logits.new_zeros(())
    return alpha * soft + (1 - alpha) * hard


def classification_figures(gold: Sequence[int], predicted: Sequence[int], labels: Sequence[str]) -> dict:
    """Accuracy and macro-F1 (x100), the predicted class counts, and ``collapsed``: the one class predicted for
    every input (None when more than one is predicted)."""
    from sklearn.metrics import f1_score

    gold, predicted = np.asarray(gold), np.asarray(predicted)
    counts = {labels[i]: int(n) for i, n in zip(*np.unique(predicted, return_counts=True))}
    return {
        "accuracy": float(100 * np.mean(gold == predicted)),
        "macro_f1": float(100 * f1_score(gold, predicted, labels=list(range(len(labels))), average="macro",
                                         zero_division=0)),
        "n": int(len(gold)),
        "predicted": counts,
        "collapsed": next(iter(counts)) if len(counts) == 1 and len(gold) > 1 else None,
    }


def spearman(a: np.ndarray, b: np.ndarray, gold: Sequence[float]) -> float:
    """Spearman x100 of the cosine of row pairs (a_i, b_i) against gold scores."""
    from scipy.stats import spearmanr

    cos = np.sum(l2_normalize(a) * l2_normalize(b), axis=1)
    return float(100 * spearmanr(cos, np.asarray(gold, dtype=np.float64)).statistic)


class ClassifierObjective:
    """Rows: texts (or pairs) with a class index (-1: unlabelled, for distillation) and optional teacher logits."""

    metric = "dev_accuracy"
    maximize = True

    def __init__(self, texts_a, texts_b, label_ids, labels, prefix: str, device: str, dev=None, dev_ids=None,
                 teacher_logits: np.ndarray | None = None, temperature: float = 1.0, alpha: float = 0.0,
                 fingerprint: str = ""):
        self.texts, self.texts_b = list(texts_a), (list(texts_b) if texts_b is not None else None)
        self.label_ids, self.labels = np.asarray(label_ids, dtype=np.int64), list(labels)
        self.prefix, self.device = prefix, device
        self.dev, self.dev_ids = dev, dev_ids
        self.teacher_logits, self.temperature, self.alpha = teacher_logits, temperature, alpha
        self._fingerprint = fingerprint

    def loss(self, model, rows: list[int]):
        import torch
        import torch.nn.functional as F

        b = [self.texts_b[i] for i in rows] if self.texts_b is not None else None
        logits = model.logits([self.texts[i] for i in rows], b, self.prefix, self.device)
        labels = torch.from_numpy(self.label_ids[rows]).to(self.device)
        if self.teacher_logits is None:
            return F.cross_entropy(logits, labels)
        teacher = torch.from_numpy(self.teacher_logits[rows]).to(self.device)
        return kd_loss(logits, teacher, labels, self.temperature, self.alpha)

    def evaluate(self, model) -> dict | None:
        if self.dev is None:
            return None
        logits = head_logits(model, self.dev.texts_a, self.dev.texts_b, self.prefix)
        figures = classification_figures(self.dev_ids, logits.argmax(axis=1), self.labels)
        return {"dev_accuracy": figures["accuracy"], "dev_macro_f1": figures["macro_f1"],
                "dev_predicted": figures["predicted"], "dev_collapsed": figures["collapsed"]}

    def fingerprint(self) -> str:
        return self._fingerprint


def head_logits(model, texts_a, texts_b, prefix: str) -> np.ndarray:
    """Logits of a trainable classifier (``classifier.trainable_classifier``) in eval mode, batched by the Encoder."""
    import torch

    from ..train.loop import encode_while_training
    from .classifier import head_input

    u = encode_while_training(model.encoder, texts_a, prefix)
    features = head_input(u, encode_while_training(model.encoder, texts_b, prefix) if texts_b is not None else None)
    with torch.no_grad():
        weight = model.head.weight.detach().cpu().numpy()
        bias = model.head.bias.detach().cpu().numpy()
    return features @ weight.T + bias


class CosentObjective:
    """Rows: text pairs with a gold similarity; CoSENT on the cosine of the two sentence vectors."""

    metric = "dev_spearman"
    maximize = True

    def __init__(self, texts_a, texts_b, scores, prefix: str, device: str, dev=None, fingerprint: str = ""):
        self.texts, self.texts_b = list(texts_a), list(texts_b)
        self.scores = np.asarray(scores, dtype=np.float32)
        self.prefix, self.device, self.dev, self._fingerprint = prefix, device, dev, fingerprint
        self._loss = None

    def loss(self, model, rows: list[int]):
        import torch

        if self._loss is None:
            from sentence_transformers.losses import CoSENTLoss

            self._loss = CoSENTLoss(model)
        embeddings = []
        for texts in (self.texts, self.texts_b):
            features = model.preprocess([texts[i] for i in rows], prompt=self.prefix or None)
            features = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in features.items()}
            embeddings.append(model(features)["sentence_embedding"].float())
        return self._loss.compute_loss_from_embeddings(embeddings, torch.from_numpy(self.scores[rows]).to(self.device))

    def evaluate(self, model) -> dict | None:
        if self.dev is None:
            return None
        from ..train.loop import encode_while_training

        a = encode_while_training(model, self.dev.texts_a, self.prefix)
        b = encode_while_training(model, self.dev.texts_b, self.prefix)
        return {"dev_spearman": spearman(a, b, self.dev.labels)}

    def fingerprint(self) -> str:
        return self._fingerprint
