"""Fine-tuning and transfer: STS (CoSENT) and classification heads on a multilingual encoder, zero-shot
cross-lingual evaluation, soft-label distillation of a classifier into a smaller student, prediction."""

from .classifier import Classifier, load_classifier
from .data import Examples, read_examples, read_inputs
from .objectives import kd_loss
from .run import FinetuneConfig, distill_classifier, evaluate, finetune, predict, transfer

__all__ = ["FinetuneConfig", "finetune", "transfer", "evaluate", "distill_classifier", "predict", "Classifier",
           "load_classifier", "Examples", "read_examples", "read_inputs", "kd_loss"]
