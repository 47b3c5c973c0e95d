"""Errors for people: each message names what was wrong (a path, a value) and what to do.

The CLI turns an ``XlembedError`` into one line on stderr and its ``exit_code``.
"""

from __future__ import annotations


class XlembedError(Exception):
    """Base class of every error xlembed raises on purpose."""

    exit_code = 1


class BadInputError(XlembedError, ValueError):
    """A value given by the user is not usable (bad argument, bad option)."""

    exit_code = 2


class DataFormatError(BadInputError):
    """An input file is malformed; the message names the file and line."""


class ModelNotFoundError(BadInputError):
    """A model name, hub id, package or folder could not be resolved to files on disk."""


class ModelFilesError(BadInputError):
    """A model folder lacks files or has a damaged file; the message names each one and the fix."""


class UnsupportedError(BadInputError):
    """The model or backend cannot do what was asked (e.g. token output on a sentence-only model)."""


class NumericalError(XlembedError):
    """A computation produced NaN/inf and could not be recomputed safely."""


class BrokenModelError(ModelFilesError, NumericalError):
    """A model gives NaN/inf vectors even in fp32 (e.g. a NaN weight): its files are damaged (exit code 2)."""


class ExportError(XlembedError):
    """Converting a model (ONNX export, quantization, saving) failed."""


class XlembedWarning(UserWarning):
    """Something the user should know about a result (truncation, fp32 recompute, a guessed pooling)."""
