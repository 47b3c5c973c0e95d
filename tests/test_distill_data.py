"""Parallel data reading (distill.data) and the teacher embedding cache (distill.teacher_cache)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from xlembed.distill.data import ParallelPair, expand_braces, lang_from_filename, read_parallel, split_dev
from xlembed.distill.teacher_cache import TeacherCache
from xlembed.errors import BadInputError, DataFormatError, XlembedWarning

PARALLEL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "parallel"


def write_tsv(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def numbered(lang: str, n: int, start: int = 0) -> list[str]:
    return [f"English sentence {i}\t{lang} Satz {i}\torigin{i}" for i in range(start, start + n)]


# ---------------------------------------------------------------- reading

def test_language_from_file_name_and_fields(tmp_path):
    write_tsv(tmp_path / "corp.en-de.tsv", ["Hello\tHallo\ttag1", "Good night\tGute Nacht"])
    pairs = read_parallel(str(tmp_path / "corp.en-de.tsv"))
    assert sorted(p.en for p in pairs) == ["Good night", "Hello"]
    assert all(isinstance(p, ParallelPair) and p.lang == "de" for p in pairs)
    hello = next(p for p in pairs if p.en == "Hello")
    assert hello.other == "Hallo" and hello.tag == "tag1" and hello.source.endswith("corp.en-de.tsv:1")
    assert lang_from_filename("a/b/kyotowiki.en-ja.tsv") == "ja"
    assert lang_from_filename("noname.tsv") is None


def test_lang_argument_and_missing_language(tmp_path):
    path = write_tsv(tmp_path / "plain.tsv", ["Hello\tBonjour"])
    assert [p.lang for p in read_parallel(str(path), lang="fr")] == ["fr"]
    with pytest.raises(BadInputError, match="plain.tsv.*language"):
        read_parallel(str(path))
    named = write_tsv(tmp_path / "x.en-de.tsv", ["Hello\tHallo"])
    with pytest.raises(BadInputError, match="x.en-de.tsv"):
        read_parallel(str(named), lang="fr")  # the name and the flag disagree


def test_brace_glob_expansion(tmp_path):
    for code in ("de", "ja", "fr"):
        write_tsv(tmp_path / "a" / f"c.en-{code}.tsv", numbered(code, 3))
    assert expand_braces("x.{de,ja}.tsv") == ["x.de.tsv", "x.ja.tsv"]
    assert expand_braces("{a,b{1,2}}c") == ["ac", "b1c", "b2c"]
    pairs = read_parallel(str(tmp_path / "*" / "*.en-{de,ja}.tsv"))
    assert sorted({p.lang for p in pairs}) == ["de", "ja"] and len(pairs) == 6
    assert len(pairs.stats.files) == 2


def test_no_match_is_an_error_naming_the_pattern(tmp_path):
    pattern = str(tmp_path / "*.en-xx.tsv")
    with pytest.raises(BadInputError, match=r"\*\.en-xx\.tsv"):
        read_parallel(pattern)
    write_tsv(tmp_path / "c.en-de.tsv", numbered("de", 2))
    with pytest.warns(XlembedWarning, match=r"c\.en-ja\.tsv"):  # one brace alternative matches nothing: skipped
        assert len(read_parallel(str(tmp_path / "c.en-{de,ja}.tsv"))) == 2
    with pytest.raises(BadInputError, match=r"c\.en-fr\.tsv"):  # no alternative matches: an error
        read_parallel(str(tmp_path / "c.en-{ja,fr}.tsv"))
    with pytest.raises(BadInputError, match="missing.en-de.tsv"):
        read_parallel([str(tmp_path / "c.en-de.tsv"), str(tmp_path / "missing.en-de.tsv")])


@pytest.mark.parametrize(
    "bad_line, why",
    [("only one field", "2 TAB-separated"), ("\tnur Deutsch", "English side is empty"), ("English only\t  ", "other-language")],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line, why):
    path = write_tsv(tmp_path / "bad.en-de.tsv", ["Hello\tHallo", "Yes\tJa", bad_line, "No\tNein"])
    with pytest.raises(DataFormatError, match=rf"bad\.en-de\.tsv:3: .*{why}"):
        read_parallel(str(path))


def test_skip_malformed_counts_and_warns(tmp_path):
    path = write_tsv(tmp_path / "bad.en-de.tsv", ["Hello\tHallo", "broken", "", "\tx", "No\tNein"])
    with pytest.warns(UserWarning, match="skipped 2 malformed lines"):
        pairs = read_parallel(str(path), skip_malformed=True)
    assert sorted(p.en for p in pairs) == ["Hello", "No"]
    assert pairs.stats.n_malformed == 2 and pairs.stats.n_blank == 1
    assert pairs.stats.malformed_at == [f"{path}:2", f"{path}:4"]


def test_invalid_utf8_is_a_format_error(tmp_path):
    path = tmp_path / "enc.en-de.tsv"
    path.write_bytes(b"Hello\tHallo\nBad\t\xff\xfe\n")
    with pytest.raises(DataFormatError, match=r"enc\.en-de\.tsv:2: .*UTF-8"):
        read_parallel(str(path))


def test_length_filter(tmp_path):
    path = write_tsv(tmp_path / "c.en-de.tsv", ["Hi\tHallo", "A medium sentence\tEin mittlerer Satz", "x" * 50 + "\tlong"])
    pairs = read_parallel(str(path), min_chars=3, max_chars=30)
    assert [p.en for p in pairs] == ["A medium sentence"]
    assert pairs.stats.n_too_short == 1 and pairs.stats.n_too_long == 1


def test_exact_duplicates_removed(tmp_path):
    write_tsv(tmp_path / "a.en-de.tsv", ["Hello\tHallo\tt1", "Hello\tHallo\tt2", "Hello\tServus"])
    write_tsv(tmp_path / "b.en-de.tsv", ["Hello\tHallo\tt3"])
    pairs = read_parallel(str(tmp_path / "*.tsv"))
    assert sorted((p.en, p.other) for p in pairs) == [("Hello", "Hallo"), ("Hello", "Servus")]
    assert pairs.stats.n_duplicates == 2


def test_caps_and_seed_determinism(tmp_path):
    write_tsv(tmp_path / "c.en-de.tsv", numbered("de", 50))
    write_tsv(tmp_path / "c.en-ja.tsv", numbered("ja", 8))
    pattern = str(tmp_path / "*.tsv")
    a = read_parallel(pattern, max_pairs_per_lang=20, seed=1)
    b = read_parallel(pattern, max_pairs_per_lang=20, seed=1)
    c = read_parallel(pattern, max_pairs_per_lang=20, seed=2)
    assert a == b
    assert a.stats.per_lang == {"de": 20, "ja": 8} and a.stats.n_capped == 30
    assert sum(p.lang == "de" for p in c) == 20
    assert [p.en for p in a] != [p.en for p in c]  # another seed, another order (and another subset)
    full1, full2 = read_parallel(pattern, seed=1), read_parallel(pattern, seed=2)
    assert sorted(full1, key=str) == sorted(full2, key=str) and list(full1) != list(full2)


def test_split_dev_sizes_stratified_disjoint(tmp_path):
    write_tsv(tmp_path / "c.en-de.tsv", numbered("de", 60))
    write_tsv(tmp_path / "c.en-fr.tsv", numbered("fr", 30, start=1000))
    write_tsv(tmp_path / "c.en-ja.tsv", numbered("ja", 10, start=2000))
    pairs = read_parallel(str(tmp_path / "*.tsv"))
    train, dev = split_dev(pairs, dev_size=20, seed=0)
    assert len(dev) == 20 and len(train) == 80
    assert {p.lang: sum(q.lang == p.lang for q in dev) for p in dev} == {"de": 12, "fr": 6, "ja": 2}
    assert not set(train) & set(dev)
    assert split_dev(pairs, 20, seed=0) == (train, dev)
    assert split_dev(pairs, 20, seed=1)[1] != dev
    train_f, dev_f = split_dev(pairs, 0.1, seed=0)
    assert len(dev_f) == 10 and len(train_f) == 90
    with pytest.raises(BadInputError, match="no training pairs"):
        split_dev(pairs, 100)


def test_split_dev_keeps_shared_english_out_of_train(tmp_path):
    # a multi-way corpus: the same English line in two languages
    write_tsv(tmp_path / "m.en-de.tsv", [f"Line {i}\tZeile {i}" for i in range(20)])
    write_tsv(tmp_path / "m.en-fr.tsv", [f"Line {i}\tLigne {i}" for i in range(20)])
    pairs = read_parallel(str(tmp_path / "*.tsv"))
    train, dev = split_dev(pairs, 4, seed=3)
    assert len(dev) == 4 and not {p.en for p in train} & {p.en for p in dev}
    train_all, dev_all = split_dev(pairs, 4, seed=3, drop_train_overlap=False)
    assert dev_all == dev and len(train_all) == 36


def test_reads_a_real_parallel_file():
    path = PARALLEL / "ntrex128" / "ntrex128.en-de.tsv"
    if not path.is_file():
        pytest.skip(f"shared parallel data absent: {path} not found (needs ../shared/data/parallel beside the repo)")
    pairs = read_parallel(str(PARALLEL / "ntrex128" / "ntrex128.en-{de,ja}.tsv"), max_pairs_per_lang=300, seed=0)
    assert pairs.stats.per_lang == {"de": 300, "ja": 300}
    assert all(p.en and p.other for p in pairs) and pairs[0].tag
    train, dev = split_dev(pairs, 50, seed=0)
    assert len(dev) == 50 and sum(p.lang == "ja" for p in dev) == 25


# ---------------------------------------------------------------- teacher cache

@pytest.fixture(scope="module")
def teacher():
    import xlembed

    return xlembed.load()  # the default USE model: small and fast


def count_calls(encoder, monkeypatch) -> list[int]:
    """Wrap encoder.encode so each call records how many texts it was given."""
    calls: list[int] = []
    original = encoder.encode

    def wrapped(texts, *args, **kwargs):
        calls.append(len(texts))
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(encoder, "encode", wrapped)
    return calls


TEXTS = ["Hello world.", "Guten Morgen!", "今日は良い天気です。", "A longer sentence about the weather today.", "Bonjour."]


def test_teacher_cache_encodes_once_and_matches(tmp_path, teacher, monkeypatch):
    calls = count_calls(teacher, monkeypatch)
    cache = TeacherCache(tmp_path, teacher)
    first = cache.get(TEXTS + [TEXTS[0]])
    assert calls == [len(TEXTS)] and cache.n_encoded == len(TEXTS)
    second = cache.get(list(reversed(TEXTS)))
    assert calls == [len(TEXTS)] and cache.n_hits == 1 + len(TEXTS)  # nothing new encoded
    direct = teacher.encode(TEXTS)
    assert first.dtype == np.float32 and first.shape == (len(TEXTS) + 1, teacher.dim)
    np.testing.assert_allclose(first[: len(TEXTS)], direct, atol=1e-5)
    np.testing.assert_allclose(first[-1], direct[0], atol=1e-5)
    np.testing.assert_allclose(second, direct[::-1], atol=1e-5)
    cache.get(TEXTS[:2] + ["A new text."])
    assert calls[-1] == 1 and cache.n_encoded == len(TEXTS) + 1


def test_teacher_cache_reused_by_a_new_instance(tmp_path, teacher, monkeypatch):
    expected = TeacherCache(tmp_path, teacher).get(TEXTS)
    calls = count_calls(teacher, monkeypatch)
    again = TeacherCache(tmp_path, teacher)
    assert len(again) == len(TEXTS) and TEXTS[1] in again
    np.testing.assert_array_equal(again.get(TEXTS), expected)
    assert calls == [] and again.n_encoded == 0 and again.n_hits == len(TEXTS)


def test_teacher_cache_keyed_by_teacher_identity(tmp_path, teacher, monkeypatch):
    TeacherCache(tmp_path, teacher).get(TEXTS)
    other = TeacherCache(tmp_path, teacher, prompt="query: ")  # another input to the teacher: another key
    assert other.folder != TeacherCache(tmp_path, teacher).folder and len(other) == 0


@pytest.mark.parametrize("damage", ["delete", "truncate", "delete_keys"])
def test_teacher_cache_recovers_from_interruption(tmp_path, teacher, monkeypatch, damage):
    cache = TeacherCache(tmp_path, teacher, shard_rows=2)  # 5 texts -> shards of 2, 2, 1
    expected = cache.get(TEXTS)
    shards = sorted(cache.folder.glob("*.f32"))
    assert len(shards) == 3
    victim = max(shards, key=lambda p: p.stat().st_size)  # a shard of 2 texts
    keys_file = victim.with_name(victim.name[: -len(".f32")] + ".keys.json")
    if damage == "delete":
        victim.unlink()
    elif damage == "truncate":
        with open(victim, "r+b") as f:
            f.truncate(os.path.getsize(victim) - 100)
    else:  # killed between the shard and its keys file: the shard is an orphan, never read
        keys_file.unlink()
    (cache.folder / ".shard-x.f32.123.tmp").write_bytes(b"half written")  # a leftover temp file is ignored
    calls = count_calls(teacher, monkeypatch)
    fresh = TeacherCache(tmp_path, teacher)
    assert len(fresh) == len(TEXTS) - 2
    got = fresh.get(TEXTS)
    assert calls == [2] and fresh.n_encoded == 2 and fresh.n_hits == len(TEXTS) - 2
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert len(TeacherCache(tmp_path, teacher)) == len(TEXTS)
