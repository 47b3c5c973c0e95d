"""Multilingual knowledge distillation: parallel data, teacher cache, student training."""
