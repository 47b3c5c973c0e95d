"""Compression for your languages: ONNX export, int8 that keeps every language, vocabulary trimming,
layer dropping, structured pruning, layer sharing and recovery distillation, one step at a time
(Folder -> Folder) or chained by ``compress()``."""

from .onnx_export import export_onnx_folder
from .quantize import QUANT_OPTIONS, calibration_texts, quantize_int8

__all__ = ["export_onnx_folder", "quantize_int8", "calibration_texts", "QUANT_OPTIONS"]
