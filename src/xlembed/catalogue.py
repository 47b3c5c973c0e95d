"""The model catalogue: one entry per known encoder, read from ``catalogue.json``.

The catalogue is data, not code. This module only loads it, checks every entry, and answers
look-ups by catalogue name, hub id or hub-id basename.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from .errors import XlembedError

BACKENDS = ("torch", "use")
POOLINGS = ("mean", "cls", "max", None)
LEVELS = ("sentence", "token")

# Every key an entry must have, with the JSON types it may take (None allows null).
REQUIRED_KEYS: dict[str, tuple[type | None, ...]] = {
    "name": (str,),
    "hub_id": (str, None),
    "package": (str, None),
    "pip_package": (str, None),
    "backend": (str,),
    "languages": (int,),
    "language_codes": (list, None),  # every language it was trained on (BCP-47 tags); null: unknown
    "dim": (int,),
    "params_m": (int, float),
    "size_mb": (int, float),
    "max_length": (int, None),
    "pooling": (str, None),
    "normalized": (bool,),
    "dense": (str, None),
    "prompts": (dict,),
    "default_prompt": (str, None),
    "license": (str,),
    "level": (str,),
    "encoder_only": (bool,),
    "grade": (str, None),
    "notes": (str,),
}
# matryoshka_dims: the smaller output sizes the model was trained to give (its first k dimensions, renormalized)
OPTIONAL_KEYS: dict[str, tuple[type | None, ...]] = {"languages_note": (str, None), "matryoshka_dims": (list, None)}
GRADES = ("S", "A", "B", "C", None)


@dataclass(frozen=True)
class CatalogueEntry:
    """One model of the catalogue and what a user needs to choose it."""

    name: str
    hub_id: str | None
    package: str | None
    pip_package: str | None
    backend: str
    languages: int
    language_codes: tuple[str, ...] | None
    dim: int
    params_m: float
    size_mb: float
    max_length: int | None
    pooling: str | None
    normalized: bool
    dense: str | None
    prompts: dict[str, str] = field(hash=False)
    default_prompt: str | None
    license: str
    level: str
    encoder_only: bool
    grade: str | None
    notes: str
    languages_note: str | None = None
    matryoshka_dims: tuple[int, ...] = ()

    @property
    def token_level(self) -> bool:
        """True for raw encoders whose pooled output is not trained for sentence similarity."""
        return self.level == "token"

    @property
    def default_prompt_text(self) -> str:
        """The prefix put before every text when no prompt is asked for ("" if none)."""
        return self.prompts.get(self.default_prompt, "") if self.default_prompt else ""


def _is_type(value: Any, allowed: tuple[type | None, ...]) -> bool:
    """Whether a JSON value has one of the allowed types (bool is not an int here)."""
    if value is None:
        return None in allowed
    if isinstance(value, bool):
        return bool in allowed
    return any(t is not None and isinstance(value, t) for t in allowed)


def _type_names(allowed: tuple[type | None, ...]) -> str:
    return " or ".join("null" if t is None else t.__name__ for t in allowed)


def _validate_entry(raw: Any, where: str) -> CatalogueEntry:
    """Check one raw entry and turn it into a ``CatalogueEntry``; raise naming the entry and key."""
    if not isinstance(raw, dict):
        raise XlembedError(f"catalogue {where}: expected an object, got {type(raw).__name__}")
    label = f"entry {raw.get('name')!r}" if isinstance(raw.get("name"), str) else where
    for key, allowed in REQUIRED_KEYS.items():
        if key not in raw:
            raise XlembedError(f"catalogue {label}: missing key {key!r}")
    unknown = sorted(set(raw) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise XlembedError(f"catalogue {label}: unknown key {unknown[0]!r}")
    for key, allowed in {**REQUIRED_KEYS, **OPTIONAL_KEYS}.items():
        if key in raw and not _is_type(raw[key], allowed):
            raise XlembedError(
                f"catalogue {label}: key {key!r} must be {_type_names(allowed)}, got {raw[key]!r}"
            )
    checks = (
        ("backend", BACKENDS),
        ("pooling", POOLINGS),
        ("level", LEVELS),
        ("grade", GRADES),
    )
    for key, valid in checks:
        if raw[key] not in valid:
            names = ", ".join("null" if v is None else v for v in valid)
            raise XlembedError(f"catalogue {label}: key {key!r} is {raw[key]!r}; use one of {names}")
    if raw["backend"] == "torch" and raw["hub_id"] is None and raw["package"] is None:
        raise XlembedError(f"catalogue {label}: key 'hub_id' or 'package' must be set")
    codes = raw["language_codes"]
    if codes is not None:
        from .langs.codes import is_known

        unknown_codes = [c for c in codes if not is_known(c)]
        if not codes or unknown_codes:
            raise XlembedError(f"catalogue {label}: key 'language_codes' must list language codes (ISO 639 or BCP-47), "
                               f"or be null when unknown; got {unknown_codes or codes!r}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in raw["prompts"].items()):
        raise XlembedError(f"catalogue {label}: key 'prompts' must map names to strings")
    if raw["default_prompt"] is not None and raw["default_prompt"] not in raw["prompts"]:
        raise XlembedError(
            f"catalogue {label}: key 'default_prompt' is {raw['default_prompt']!r}, "
            f"not one of the prompts {sorted(raw['prompts'])}"
        )
    dims = raw.get("matryoshka_dims") or []
    if not all(isinstance(d, int) and 0 < d < raw["dim"] for d in dims):
        raise XlembedError(f"catalogue {label}: key 'matryoshka_dims' must list sizes between 1 and dim-1 "
                           f"({raw['dim'] - 1}), got {dims!r}")
    values = {k: raw.get(k) for k in (*REQUIRED_KEYS, *OPTIONAL_KEYS)}
    values["matryoshka_dims"] = tuple(sorted(dims))
    values["language_codes"] = tuple(codes) if codes is not None else None
    values["prompts"] = dict(raw["prompts"])
    values["params_m"] = float(raw["params_m"])
    return CatalogueEntry(**values)


def validate(data: Any) -> tuple[list[CatalogueEntry], str]:
    """Check a parsed catalogue; return its entries and default name, or raise ``XlembedError``."""
    if not isinstance(data, dict):
        raise XlembedError("catalogue: expected a JSON object at the top level")
    for key in ("schema_version", "default", "models"):
        if key not in data:
            raise XlembedError(f"catalogue: missing top-level key {key!r}")
    if data["schema_version"] != 1:
        raise XlembedError(f"catalogue: schema_version {data['schema_version']!r} is not supported (expected 1)")
    if not isinstance(data["models"], list) or not data["models"]:
        raise XlembedError("catalogue: key 'models' must be a non-empty list")
    found = [_validate_entry(raw, f"models[{i}]") for i, raw in enumerate(data["models"])]
    seen: set[str] = set()
    for entry in found:
        if entry.name.lower() in seen:
            raise XlembedError(f"catalogue entry {entry.name!r}: key 'name' is used twice")
        seen.add(entry.name.lower())
    if not isinstance(data["default"], str) or data["default"].lower() not in seen:
        raise XlembedError(f"catalogue: key 'default' is {data['default']!r}, which names no entry")
    return found, data["default"]


@lru_cache(maxsize=1)
def _load() -> tuple[tuple[CatalogueEntry, ...], str]:
    """Read and check the packaged catalogue.json (once per process)."""
    text = resources.files(__package__).joinpath("catalogue.json").read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise XlembedError(f"catalogue.json is not valid JSON: {exc}") from exc
    found, default = validate(data)
    return tuple(found), default


def entries() -> list[CatalogueEntry]:
    """All catalogue entries, in catalogue order."""
    return list(_load()[0])


def default_name() -> str:
    """The catalogue name of the default model."""
    return _load()[1]


def get(name: str) -> CatalogueEntry | None:
    """The entry for a catalogue name, hub id or hub-id basename (case-insensitive), else None."""
    key = name.strip().lower()
    if not key:
        return None
    found = entries()
    for match in (
        lambda e: e.name.lower() == key,
        lambda e: e.hub_id is not None and e.hub_id.lower() == key,
        lambda e: e.hub_id is not None and e.hub_id.rsplit("/", 1)[-1].lower() == key,
    ):
        for entry in found:
            if match(entry):
                return entry
    return None


def as_rows() -> list[dict[str, Any]]:
    """One flat dict per entry, for printing the catalogue as a table."""
    rows = []
    for e in entries():
        rows.append(
            {
                "name": e.name,
                "hub id": e.hub_id or (f"pip: {e.pip_package}" if e.pip_package else "-"),
                "languages": e.languages,
                "dim": e.dim,
                "params": f"{e.params_m:g}M",
                "size": f"{e.size_mb / 1000:.2f} GB" if e.size_mb >= 1000 else f"{e.size_mb:g} MB",
                "pooling": e.pooling or "-",
                "prompts": ", ".join(f"{k}={v!r}" for k, v in e.prompts.items()) or "-",
                "license": e.license,
                "level": e.level,
                "grade": e.grade or "-",
            }
        )
    return rows
