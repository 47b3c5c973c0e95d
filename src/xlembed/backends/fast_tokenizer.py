"""A model folder's tokenizer.json through the Rust ``tokenizers`` library alone.

The ONNX runtime path and calibration use it instead of transformers' AutoTokenizer, which imports
torch (about 250 MB of resident memory before any model is loaded). It gives the same ids: the
normalizer, pre-tokenizer, model and post-processor all come from tokenizer.json, as in a
transformers "fast" tokenizer.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelFilesError

PAD_CANDIDATES = ("<pad>", "[PAD]", "<|padding|>", "<|endoftext|>")


class FastTokenizer:
    """Padded, truncated int64 batches and untruncated lengths for a tokenizer.json.

    Safe to call from several threads: the Rust tokenizer's truncation and padding are settings of the one
    instance, so each call sets them and encodes under a lock."""

    def __init__(self, path: Path | str):
        from tokenizers import Tokenizer

        self.path = Path(path)
        try:  # one instance: a 250k-piece vocabulary costs ~280 MB of memory per Tokenizer
            self._tokenizer = Tokenizer.from_file(str(self.path))
        except Exception as exc:  # noqa: BLE001 - the Rust library raises its own exception type
            raise ModelFilesError(f"{self.path} is not a tokenizer.json the tokenizers library can read ({exc}); "
                                  "export the model again") from None
        self._lock = threading.Lock()
        self.pad_id = pad_token_id(self.path, self._tokenizer)
        self._pad_token = self._tokenizer.id_to_token(self.pad_id) or ""

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text with special tokens, before truncation."""
        with self._lock:
            self._tokenizer.no_truncation()
            self._tokenizer.no_padding()
            encoded = self._encode(texts)
        return [len(e.ids) for e in encoded]

    def batch(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, np.ndarray]:
        """input_ids, attention_mask and token_type_ids, padded to the longest text, cut at ``max_length``."""
        with self._lock:
            if max_length:
                self._tokenizer.enable_truncation(int(max_length))
            else:
                self._tokenizer.no_truncation()
            self._tokenizer.enable_padding(pad_id=self.pad_id, pad_token=self._pad_token)
            encoded = self._encode(texts)
        return {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }

    def _encode(self, texts: Sequence[str]) -> list:
        # encode_batch_fast (tokenizers >= 0.20) skips the character offsets nothing here reads: same ids
        encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        return encode(list(texts))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        with self._lock:
            return self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def get_vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()


def pad_token_id(path: Path, tokenizer) -> int:
    """The padding token's id: the pad_token of tokenizer_config.json / special_tokens_map.json, else a
    usual pad token name found in the vocabulary, else 0."""
    names = []
    for config in ("tokenizer_config.json", "special_tokens_map.json"):
        file = Path(path).with_name(config)
        if file.is_file():
            try:
                pad = json.loads(file.read_text(encoding="utf-8")).get("pad_token")
            except (OSError, json.JSONDecodeError):
                pad = None
            names.append(pad.get("content") if isinstance(pad, dict) else pad)
    for name in [*names, *PAD_CANDIDATES]:
        if name and tokenizer.token_to_id(name) is not None:
            return int(tokenizer.token_to_id(name))
    return 0
