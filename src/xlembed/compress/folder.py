"""Reading a model folder for a compression step and writing the step's output folder.

Every step is Folder -> Folder: it opens a transformer model folder (sentence-transformers or plain
transformers) in fp32 on the CPU, changes a copy, and writes a sentence-transformers folder that
``xlembed.load()`` and ``SentenceTransformer()`` read, with ``compress.json`` recording every step
applied since the original model (the parent's record plus this one).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import BadInputError
from ..manifest import Manifest
from ..paths import atomic_folder, check_output_folder, write_text_atomic

RECORD_NAME = "compress.json"
SLOW_TOKENIZER_FILES = ("sentencepiece.bpe.model", "spiece.model", "vocab.txt", "vocab.json", "merges.txt")


def open_model(folder: Path | str, pooling: str | None = None):
    """The model folder as an fp32 TorchEncoder on the CPU; a non-transformer model is an error."""
    from .. import load

    encoder = load(str(folder), precision="fp32", device="cpu", pooling=pooling)
    if encoder.backend != "torch" or type(encoder.model[0]).__name__ != "Transformer":
        raise BadInputError(
            f"{folder} is a {encoder.backend} model; compression steps need a transformer model folder "
            "(sentence-transformers or transformers; compress the original, then export with the int8 step)"
        )
    return encoder


def working_copy(encoder):
    """A copy of the encoder's SentenceTransformer to change, without the transformer's pooler: sentence
    embeddings never use it (XLM-R's is not even in multilingual-e5-small's weights: transformers
    initialises it at random on load), so it is not counted, trimmed or saved."""
    import copy

    st = copy.deepcopy(encoder.model)
    auto = st[0].auto_model
    if getattr(auto, "pooler", None) is not None:
        auto.pooler = None
    return st


def read_record(folder: Path | str) -> dict:
    """The folder's compression record: {'parent': ..., 'steps': [...]} (empty steps for an original model)."""
    path = Path(folder) / RECORD_NAME
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"parent": str(Path(folder)), "steps": []}


def save_child(model, info, out: Path | str, record: dict, overwrite: bool = False,
               tokenizer_json: str | None = None) -> Path:
    """Write the SentenceTransformer ``model`` (the child) to ``out`` atomically, with its manifest and
    ``record`` as compress.json; ``tokenizer_json`` replaces the Transformer module's tokenizer.json
    (and the slow-tokenizer files, which would still hold the old vocabulary, are left out)."""
    from ..backends.torch_backend import _quiet_libraries

    out = check_output_folder(Path(out), overwrite)
    with atomic_folder(out, overwrite) as tmp:
        with _quiet_libraries():
            model.save(str(tmp), create_model_card=False, safe_serialization=True)
        if tokenizer_json is not None:
            home = transformer_dir(tmp)
            write_text_atomic(home / "tokenizer.json", tokenizer_json)
            for name in SLOW_TOKENIZER_FILES:
                (home / name).unlink(missing_ok=True)
            _drop_added_token_ids(home / "tokenizer_config.json")
        Manifest.from_info(_trimmed_languages(info, record), "sentence-transformers", "fp32").write(tmp)
        write_text_atomic(tmp / RECORD_NAME, json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return out


def trimmed_languages(record: dict) -> list[str] | None:
    """The languages the trim step of a compress.json record kept; None when no trim ran."""
    return next((s.get("languages") for s in record.get("steps") or [] if s.get("step") == "trim"), None) or None


def _trimmed_languages(info, record: dict):
    """After a vocabulary trim the model covers the languages it kept (of those it was trained on, when known)."""
    import dataclasses

    from ..langs.codes import canonical_set

    kept = trimmed_languages(record)
    if not kept:
        return info
    codes = canonical_set(kept)
    if info.languages is not None:
        codes = codes & set(info.languages)
    return dataclasses.replace(info, languages=tuple(sorted(codes)),
                               languages_source="the languages its vocabulary was trimmed to (xlembed compress)")


def transformer_dir(folder: Path) -> Path:
    """Where the Transformer module of a sentence-transformers folder keeps its files."""
    modules = json.loads((Path(folder) / "modules.json").read_text(encoding="utf-8"))
    for module in modules:
        if str(module.get("type", "")).endswith("Transformer"):
            return Path(folder) / module.get("path", "")
    return Path(folder)


def _drop_added_token_ids(config_path: Path) -> None:
    """tokenizer_config.json may list special tokens by their old ids; the tokenizer.json carries them now."""
    if not config_path.is_file():
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.pop("added_tokens_decoder", None) is not None:
        write_text_atomic(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def child_record(parent_folder: Path | str, step: dict) -> dict:
    """The parent's record with one more step."""
    record = read_record(parent_folder)
    record.setdefault("parent", str(parent_folder))
    record["steps"] = [*record.get("steps", []), step]
    return record


def count_parameters(model) -> int:
    """Unique parameters of a torch module (a tensor shared by several layers counts once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
