"""xlembed: load, encode, compare, evaluate and compress multilingual sentence encoders.

    import xlembed
    encoder = xlembed.load()                      # the default model, offline
    vectors = encoder.encode(["今日は天気がいい", "The weather is nice today"])
    xlembed.similarity(["今日は天気がいい"], ["The weather is nice today", "I lost my keys"])
"""

__version__ = "0.1.0"

from .encoder import EncodeStats, Encoder, ModelInfo, l2_normalize
from .errors import (
    BadInputError,
    BrokenModelError,
    DataFormatError,
    ExportError,
    ModelFilesError,
    ModelNotFoundError,
    NumericalError,
    UnsupportedError,
    XlembedError,
    XlembedWarning,
)
from .langs.coverage import LanguageWarning
from .loading import LoadSpec, load, resolve
from .saving import save
from .similarity import SearchResult, cosine_similarity, search, similarity

__all__ = [
    "__version__",
    "load",
    "LoadSpec",
    "resolve",
    "save",
    "similarity",
    "cosine_similarity",
    "search",
    "SearchResult",
    "Encoder",
    "EncodeStats",
    "ModelInfo",
    "l2_normalize",
    "XlembedError",
    "BadInputError",
    "BrokenModelError",
    "DataFormatError",
    "ModelNotFoundError",
    "ModelFilesError",
    "UnsupportedError",
    "NumericalError",
    "ExportError",
    "XlembedWarning",
    "LanguageWarning",
]
