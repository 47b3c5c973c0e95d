"""Static embeddings: one vector per kept token, a sentence vector is the mean of its tokens' rows.

Numpy and the Rust ``tokenizers`` library only (no torch). Folder format "static":

- ``tokenizer.json``: the source model's tokenizer, unchanged;
- ``static.safetensors``: ``embeddings`` (rows, dim) in fp32, fp16 or int8 (int8 with a per-row
  symmetric scale ``scales`` (rows,) fp32: row = int8 * scale), and ``token_ids`` (rows,) int64,
  the tokenizer id of each row;
- ``xlembed.json``: the manifest, ``format: "static"``.

Tokens without a row (not kept when the vocabulary was trimmed) and special tokens are skipped; a
text with no kept token gets a zero vector. Frequency weights are already folded into the rows.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np

from ..encoder import Encoder, ModelInfo, Output
from ..errors import BadInputError, ModelFilesError, UnsupportedError

STATIC_FORMAT = "static"
WEIGHTS_FILE = "static.safetensors"
TOKENIZER_FILE = "tokenizer.json"
STORAGES = ("fp32", "fp16", "int8")
EMBEDDINGS_KEY = "embeddings"
SCALES_KEY = "scales"
TOKEN_IDS_KEY = "token_ids"


def load_tokenizer(path: Path):
    """A ``tokenizers.Tokenizer`` from a tokenizer.json, with truncation and padding switched off."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust library raises plain Exceptions
        raise ModelFilesError(f"{path} is not a tokenizer.json the tokenizers library can read ({exc})") from None
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def special_token_ids(tokenizer) -> list[int]:
    """Ids of the tokenizer's special tokens (<s>, </s>, <unk>, <pad>, <mask>, [CLS] ...)."""
    ids = []
    for token_id, token in tokenizer.get_added_tokens_decoder().items():
        if token.special:
            ids.append(int(token_id))
    return sorted(ids)


def quantize_int8(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8: (int8 rows, fp32 scales) with row ~= int8 * scale."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    scales = np.abs(embeddings).max(axis=1) / 127.0
    scales = np.where(scales > 0, scales, 1.0).astype(np.float32)
    q = np.clip(np.rint(embeddings / scales[:, None]), -127, 127).astype(np.int8)
    return q, scales


def store_tensors(embeddings: np.ndarray, token_ids: np.ndarray, storage: str) -> dict[str, np.ndarray]:
    """The tensors of ``static.safetensors`` for ``storage`` (fp32, fp16 or int8)."""
    if storage not in STORAGES:
        raise BadInputError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    tensors = {TOKEN_IDS_KEY: np.ascontiguousarray(token_ids, dtype=np.int64)}
    if storage == "int8":
        q, scales = quantize_int8(embeddings)
        tensors[EMBEDDINGS_KEY] = q
        tensors[SCALES_KEY] = scales
    else:
        tensors[EMBEDDINGS_KEY] = np.ascontiguousarray(embeddings, dtype=np.float32 if storage == "fp32" else np.float16)
    return tensors


def read_tensors(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(float32 embeddings, int64 token ids, stored precision) from a ``static.safetensors`` file."""
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise ModelFilesError(f"{path} cannot be read ({exc}); distill or copy the static model again") from None
    missing = [k for k in (EMBEDDINGS_KEY, TOKEN_IDS_KEY) if k not in tensors]
    if missing:
        raise ModelFilesError(f"{path} lacks the tensor(s) {', '.join(missing)}; distill or copy the static model again")
    emb, ids = tensors[EMBEDDINGS_KEY], tensors[TOKEN_IDS_KEY].astype(np.int64)
    if emb.ndim != 2 or ids.shape != (emb.shape[0],):
        raise ModelFilesError(
            f"{path}: embeddings {emb.shape} and token_ids {ids.shape} do not match (need (rows, dim) and (rows,))"
        )
    if emb.dtype == np.int8:
        scales = tensors.get(SCALES_KEY)
        if scales is None or scales.shape != (emb.shape[0],):
            raise ModelFilesError(f"{path}: int8 embeddings need a 'scales' tensor of shape ({emb.shape[0]},)")
        return emb.astype(np.float32) * scales.astype(np.float32)[:, None], ids, "int8"
    if emb.dtype == np.float16:
        return emb.astype(np.float32), ids, "fp16"
    if emb.dtype == np.float32:
        return emb, ids, "fp32"
    raise ModelFilesError(f"{path}: embeddings are {emb.dtype}; expected float32, float16 or int8")


class StaticEncoder(Encoder):
    """Mean of token rows: no torch, no attention, thousands of sentences per core per second."""

    def __init__(
        self,
        tokenizer_path: Path,
        embeddings: np.ndarray,
        token_ids: np.ndarray,
        name: str = "static",
        source: str | None = None,
        precision: str = "fp32",
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        notes: list[str] | None = None,
    ):
        self.tokenizer_path = Path(tokenizer_path)
        self._tokenizer = load_tokenizer(self.tokenizer_path)
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.token_ids = np.asarray(token_ids, dtype=np.int64)
        if self.embeddings.ndim != 2 or self.token_ids.shape != (self.embeddings.shape[0],):
            raise BadInputError(
                f"embeddings {self.embeddings.shape} and token_ids {self.token_ids.shape} do not match"
            )
        vocab = self._tokenizer.get_vocab_size(with_added_tokens=True)
        if len(self.token_ids) and (self.token_ids.min() < 0 or self.token_ids.max() >= vocab):
            raise ModelFilesError(
                f"token ids {self.token_ids.min()}..{self.token_ids.max()} do not fit the tokenizer "
                f"{self.tokenizer_path} ({vocab} tokens); the weights belong to another tokenizer"
            )
        self._lookup = np.full(vocab, -1, dtype=np.int64)  # tokenizer id -> row, -1 = no row
        self._lookup[self.token_ids] = np.arange(len(self.token_ids))
        self._lookup[special_token_ids(self._tokenizer)] = -1
        info = ModelInfo(
            name=name,
            source=source or str(self.tokenizer_path.parent),
            dim=int(self.embeddings.shape[1]),
            max_length=None,
            backend="static",
            precision=precision,
            prompts=dict(prompts or {}),
            default_prompt_name=default_prompt_name,
            pooling="mean",
            normalized_output=False,
            token_level=False,
            notes=list(notes or []),
        )
        super().__init__(info)

    @classmethod
    def from_folder(
        cls,
        folder: Path | str,
        name: str | None = None,
        precision: str | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
    ) -> "StaticEncoder":
        """Load a static folder; ``precision`` may be None, 'fp32' or the stored precision."""
        from ..manifest import read_manifest

        folder = Path(folder)
        embeddings, token_ids, stored = read_tensors(folder / WEIGHTS_FILE)
        if precision not in (None, "fp32", stored):
            raise UnsupportedError(
                f"static model {folder} is stored in {stored}; it runs as stored (dequantized to float32 once), "
                f"so load it with precision=None, 'fp32' or '{stored}', not {precision!r}"
            )
        manifest = read_manifest(folder)
        merged = dict(manifest.prompts) if manifest else {}
        if prompts is not None:
            merged = dict(prompts)
        default = default_prompt_name if default_prompt_name is not None else (manifest.default_prompt_name if manifest else None)
        return cls(
            folder / TOKENIZER_FILE,
            embeddings,
            token_ids,
            name=name or (manifest.name if manifest else folder.name),
            source=str(folder),
            precision=stored,
            prompts=merged,
            default_prompt_name=default or None,
        )

    def _tokenizer_for_decoding(self):
        return self._tokenizer

    def _encode_batch(self, texts: list[str], prefix: str, output: Output) -> np.ndarray:
        if prefix:
            texts = [prefix + t for t in texts]
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        ids_lists = [enc.ids for enc in encodings]
        return self.pool(ids_lists)

    def _computes_in_fp32(self) -> bool:
        return True  # rows are dequantized to float32 once, at load

    def _nonfinite_weights(self) -> list[str]:
        bad = np.flatnonzero(~np.isfinite(self.embeddings).all(axis=1))
        return [f"{len(bad)} token rows of {WEIGHTS_FILE} (row {int(bad[0])}, ...)"] if len(bad) else []

    def pool(self, ids_lists: list[list[int]]) -> np.ndarray:
        """Mean of the rows of each list of tokenizer ids; zero vector where no id has a row."""
        n = len(ids_lists)
        lengths = np.fromiter(map(len, ids_lists), dtype=np.int64, count=n)
        flat = np.fromiter(itertools.chain.from_iterable(ids_lists), dtype=np.int64, count=int(lengths.sum()))
        rows = self._lookup[flat]
        segment = np.repeat(np.arange(n), lengths)
        keep = rows >= 0
        rows, segment = rows[keep], segment[keep]
        counts = np.bincount(segment, minlength=n)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if rows.size:
            nonempty = counts > 0
            starts = (np.cumsum(counts) - counts)[nonempty]
            sums = np.add.reduceat(self.embeddings[rows], starts, axis=0)
            out[nonempty] = sums / counts[nonempty, None].astype(np.float32)
        return out

    def write_files(self, folder: Path, storage: str | None = None) -> None:
        """Write tokenizer.json, static.safetensors and xlembed.json into an existing ``folder``."""
        from safetensors.numpy import save_file

        from ..manifest import Manifest

        storage = storage or self.precision
        tensors = store_tensors(self.embeddings, self.token_ids, storage)  # checks storage
        folder = Path(folder)
        shutil.copyfile(self.tokenizer_path, folder / TOKENIZER_FILE)
        save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": STATIC_FORMAT, "storage": storage})
        files = {"weights": WEIGHTS_FILE, "tokenizer": TOKENIZER_FILE}
        Manifest.from_info(self.info, STATIC_FORMAT, storage, files).write(folder)

    def save(self, out_dir: Path | str, storage: str | None = None, overwrite: bool = False) -> Path:
        """Write this model as a static folder (rows in ``storage``: fp32, fp16 or int8; default: as loaded)."""
        from ..paths import atomic_folder

        storage = storage or self.precision
        if storage not in STORAGES:
            raise BadInputError(f"a static model stores fp32, fp16 or int8 rows, not {storage!r}")
        out_dir = Path(out_dir)
        with atomic_folder(out_dir, overwrite) as tmp:
            self.write_files(tmp, storage)
        return out_dir
