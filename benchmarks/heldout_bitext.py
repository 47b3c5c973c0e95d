#!/usr/bin/env python
"""Held-out bitext for languages outside shared/data: English <-> X sentences from software translations.

Every Debian/Ubuntu machine carries the translations of its programs' messages (gettext catalogs under
/usr/share/locale/LANG/LC_MESSAGES/*.mo: GTK and GLib property descriptions, coreutils, git, dpkg, ...),
written by people, in 100+ languages. This script turns them into Tatoeba-format bitext
(``tatoeba.XXX-eng.XXX`` + ``tatoeba.XXX-eng.eng``, ISO 639-3 codes), so ``xlembed bench --tasks tatoeba``
and the benchmarks can check a model on languages no file in shared/data has: a held-out check for
recipes tuned on the 15 shared Tatoeba languages (int8's outlier channels, for one).

Kept: messages of 4-25 English words, with no markup, format placeholder, accelerator key or path
(``%s``, ``<b>``, ``_File``, ``&Open``, ``/usr``), translated (not a copy of the English); an English message
or a translation that occurs with two different partners is dropped (the retrieval would be ambiguous);
then ``--pairs`` pairs per language, drawn with a fixed seed. The text is technical (widget properties,
command-line help), not Tatoeba's conversation: compare a model with itself (fp32 vs int8) on it, not
with Tatoeba's figures.

    python benchmarks/heldout_bitext.py --out .cache/heldout-bitext            # every language with >= 1,000 pairs
    python benchmarks/heldout_bitext.py --out DIR --langs sv,uk,th --pairs 500
    python benchmarks/heldout_bitext.py --out ROOT/tatoeba --langs ja,zh,de --rest-out ROOT/rest   # + training text

The files are derived from the catalogs' translations (GPL/LGPL, per program): keep them out of git.
"""

from __future__ import annotations

import argparse
import gettext
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

# languages that shared/data/tatoeba already has (and English): not held out
SHARED = {"en", "ar", "zh", "de", "fr", "ja", "ko", "ru", "es", "it", "pt", "nl", "pl", "tr", "vi", "hi"}
REJECT = re.compile(r"[%<>{}\\/_&$=@#|`\[\]\t\n]|\.\.\.|--|\w\(\w|^-")


def clean(text: str) -> str | None:
    """The message as a sentence, or None when it carries markup, a placeholder, an accelerator or a path."""
    text = " ".join(text.split())
    if not text or REJECT.search(text):
        return None
    return text


def catalog_pairs(folder: Path) -> list[tuple[str, str]]:
    """(English, translation) of every message in the .mo files of one locale folder."""
    pairs = []
    for mo in sorted(folder.glob("LC_MESSAGES/*.mo")):
        try:
            with open(mo, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except Exception as e:  # noqa: BLE001 - gettext's parser raises OSError, struct.error, IndexError, ... on a malformed catalog: skip it, say which
            print(f"skipped {mo}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        for key, value in catalog.items():
            if not isinstance(key, str) or not key or not value:
                continue  # the header (msgid ""), plural forms (tuple keys)
            en, xx = clean(key.split("\x04")[-1]), clean(value)  # msgctxt\x04msgid
            if en and xx and en != xx and 4 <= len(en.split()) <= 25:
                pairs.append((en, xx))
    return pairs


def unambiguous(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs whose English and whose translation each have one partner only, sorted."""
    partners_en, partners_xx = defaultdict(set), defaultdict(set)
    for en, xx in pairs:
        partners_en[en.lower()].add(xx.lower())
        partners_xx[xx.lower()].add(en.lower())
    keep = {(en, xx) for en, xx in pairs if len(partners_en[en.lower()]) == 1 and len(partners_xx[xx.lower()]) == 1}
    seen, out = set(), []
    for en, xx in sorted(keep):
        if en.lower() not in seen:
            seen.add(en.lower())
            out.append((en, xx))
    return out


def locale_languages(root: Path) -> dict[str, list[Path]]:
    """Canonical language code -> its locale folders: the plain folder ('sv'), or where a language has none,
    its regional ones together ('zh' = zh_CN + zh_HK + zh_TW); script variants ('sr@latin') are left out."""
    from xlembed.langs.codes import canonical_or_none

    plain, regional = {}, {}
    for folder in sorted(root.iterdir()):
        m = re.fullmatch(r"([a-z]{2,3})(_[A-Z]{2})?", folder.name)
        if m and (folder / "LC_MESSAGES").is_dir():
            code = canonical_or_none(m.group(1))
            if code:
                (regional.setdefault(code, []) if m.group(2) else plain.setdefault(code, [])).append(folder)

    def own(folders, code):  # 'ro' rather than its alias 'mo' where both exist
        return [f for f in folders if f.name == code] or folders

    return {code: own(plain[code], code) if code in plain else regional[code] for code in sorted({*plain, *regional})}


def build(root: Path, out: Path, langs: list[str] | None, pairs: int, min_pairs: int, seed: int,
          rest_out: Path | None = None) -> dict[str, int]:
    """Write the bitext of each language with at least ``min_pairs`` clean pairs; returns language -> pairs written.
    ``rest_out``: also write the clean pairs not drawn, as ``rest.en-XX.tsv`` (English TAB translation), text
    disjoint from the bitext for a trim's ``--parallel``/``--corpus``."""
    from xlembed.langs.codes import alpha3, canonical

    available = locale_languages(root)
    wanted = [canonical(c) for c in langs] if langs else sorted(set(available) - SHARED)
    missing = [c for c in wanted if c not in available]
    if missing:
        raise SystemExit(f"no locale folder under {root} for {', '.join(missing)}; available: {', '.join(available)}")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for code in wanted:
        found = unambiguous([pair for folder in available[code] for pair in catalog_pairs(folder)])
        if len(found) < min_pairs:
            if langs:
                print(f"{code}: only {len(found)} clean pairs (< --min-pairs {min_pairs}): skipped", file=sys.stderr)
            continue
        chosen = random.Random(f"{seed}-{code}").sample(found, min(pairs, len(found)))
        a3 = alpha3(code)
        (out / f"tatoeba.{a3}-eng.eng").write_text("".join(en + "\n" for en, _ in chosen), encoding="utf-8")
        (out / f"tatoeba.{a3}-eng.{a3}").write_text("".join(xx + "\n" for _, xx in chosen), encoding="utf-8")
        written[a3] = len(chosen)
        if rest_out is not None:
            rest_out.mkdir(parents=True, exist_ok=True)
            drawn = set(chosen)
            (rest_out / f"rest.en-{code}.tsv").write_text("".join(f"{en}\t{xx}\n" for en, xx in found if (en, xx) not in drawn),
                                                          encoding="utf-8")
    return written


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--locale-dir", default="/usr/share/locale", help="where the gettext catalogs are")
    p.add_argument("--out", required=True, help="folder for the Tatoeba-format files (outside git)")
    p.add_argument("--langs", default="",
                   help="languages to write (default: every one with --min-pairs clean pairs that shared/data's Tatoeba "
                        "lacks; name shared languages here for other text of them)")
    p.add_argument("--pairs", type=int, default=1000, help="pairs per language (Tatoeba's sets have 1,000)")
    p.add_argument("--min-pairs", type=int, default=1000, help="skip languages with fewer clean pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rest-out", default=None,
                   help="folder for the clean pairs not drawn (rest.en-XX.tsv): text of the same kind, disjoint from the bitext")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(args.locale_dir)
    if not root.is_dir():
        print(f"{root}: no gettext catalogs on this machine (Debian/Ubuntu keep them there); give --locale-dir",
              file=sys.stderr)
        return 2
    langs = [c.strip() for c in args.langs.split(",") if c.strip()] or None
    written = build(root, Path(args.out), langs, args.pairs, args.min_pairs, args.seed,
                    Path(args.rest_out) if args.rest_out else None)
    if not written:
        print(f"no language under {root} has {args.min_pairs} clean pairs", file=sys.stderr)
        return 1
    print(f"{len(written)} languages in {args.out}: " + ", ".join(f"{k} {v}" for k, v in written.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
