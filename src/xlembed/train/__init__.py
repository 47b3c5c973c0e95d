"""The training loop shared by distillation, recovery after compression and fine-tuning: recipes give it an
``Objective`` (rows, a loss, dev figures); it gives back the best weights."""

from .checkpoint import Checkpoint, load_weights, save_weights
from .loop import LoopResult, Objective, TrainingInterrupted, fit, length_batches, parameter_groups

__all__ = ["fit", "Objective", "LoopResult", "TrainingInterrupted", "length_batches", "parameter_groups",
           "Checkpoint", "save_weights", "load_weights"]
