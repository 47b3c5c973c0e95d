#!/usr/bin/env python
"""Which vocabulary ranking loses least at 40% of multilingual-e5-small's parameters (en/ja/zh/de/fr/es/ru/ko/ar)?

A trimmed model's vector equals the parent's wherever the tokenization is unchanged (the kept embedding rows
are the parent's), so each ranking is scored without building a model: the parent encodes every Tatoeba
sentence once, and for a ranking only the sentences the trimmed tokenizer segments differently are encoded
again (by the parent, fed the trimmed segmentation). Same top-1 accuracy as the benchmark's (both directions).

Rankings at the same piece budget (40% of the parameters):
  score-sum       xlembed's ranking (compress.vocab.select_pieces): the sum over languages of each piece's
                  share of the language's text, English weighted 8 (what benchmarks/compress_e5.py uses)
  equal-coverage  pieces added for whichever language has the most uncovered text (max-min coverage)
  + corpus        score-sum with the parallel corpora's sentences of the 9 languages as --corpus
  Han ranked      score-sum, but the single Han characters (7,754 of the 13,368 pieces the trim always keeps)
                  ranked like every other piece: their slots go to words, rare characters become <unk>

    python benchmarks/trim_rankings.py [--out benchmarks/results/compress]
Writes OUT/trim_rankings.json and OUT/trim_rankings.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from encode_speed import machine_info  # noqa: E402

LANGS = "en,ja,zh,de,fr,es,ru,ko,ar"
KEPT = ("ara", "cmn", "deu", "fra", "jpn", "kor", "rus", "spa")
PREFIX = "query: "


def equal_coverage(view, langs, size: int, weights: dict, always=()) -> list[int]:
    """Max-min coverage: repeatedly add the next most used piece of the language whose text is least covered."""
    from xlembed.compress.samples import common_evidence, language_evidence
    from xlembed.compress.vocab import base_pieces

    evidence = [language_evidence(view, lang) for lang in langs] + [common_evidence(view)]
    kept = set(base_pieces(view, langs)) | set(view.count(list(always)))
    owners, ranked, covered, weight = defaultdict(list), {}, {}, {}
    for ev in evidence:
        weight[ev.lang] = float(weights.get(ev.lang, 1.0))
        ranked[ev.lang] = [i for i, _ in sorted(ev.dist.items(), key=lambda kv: -kv[1]) if i not in view.special_ids]
        for i, v in ev.dist.items():
            owners[i].append((ev.lang, v))
        covered[ev.lang] = sum(ev.dist.get(i, 0.0) for i in kept)
    pos = dict.fromkeys(ranked, 0)
    while len(kept) < size:
        live = [k for k in ranked if pos[k] < len(ranked[k])]
        if not live:
            break
        lang = max(live, key=lambda k: weight[k] * (1.0 - covered[k]))
        while pos[lang] < len(ranked[lang]) and ranked[lang][pos[lang]] in kept:
            pos[lang] += 1
        if pos[lang] < len(ranked[lang]):
            piece = ranked[lang][pos[lang]]
            kept.add(piece)
            for other, v in owners[piece]:
                covered[other] += v
    return sorted(kept)


def han_ranked(view, langs, size: int, weights: dict, always=()) -> list[int]:
    """score-sum with the single Han characters left to the ranking instead of always kept."""
    from xlembed.compress import vocab
    from xlembed.compress.languages import fits, piece_text

    base = {i for i in vocab.base_pieces(view, langs)
            if i in view.special_ids or not fits(piece_text(view.pieces[i]), {"Han"})}
    return vocab.select_pieces(view, langs, size=size, weights=weights, always=always, base=base)[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", default=str(REPO / ".cache" / "models"))
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "compress"))
    p.add_argument("--size", type=float, default=0.40, help="share of the parent's parameters")
    args = p.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from xlembed.compress import vocab
    from xlembed.compress.folder import count_parameters
    from xlembed.compress.languages import parse_langs
    from xlembed.compress.pipeline import gather_inputs
    from xlembed.compress.samples import heldout_texts
    from xlembed.eval.tasks import read_tatoeba, top1_accuracies

    parent_dir = Path(args.models_dir) / "multilingual-e5-small"
    if not (parent_dir / "model.safetensors").is_file():
        print(f"model missing: run ../shared/tools/fetch-models {args.models_dir}", file=sys.stderr)
        return 2
    data = Path(args.data_root)
    st = SentenceTransformer(str(parent_dir), device="cpu")
    view = vocab.parent_view(st)
    langs = parse_langs(LANGS)
    texts, spans = [], {}
    for lang in KEPT:
        xx, en = read_tatoeba(data / "tatoeba", lang, None)
        spans[lang] = (len(texts), len(xx))
        texts += [PREFIX + t for t in xx] + [PREFIX + t for t in en]
    started = time.perf_counter()
    base = st.encode(texts, batch_size=64, normalize_embeddings=True)
    print(f"parent: {len(texts)} sentences in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    parent_ids = [e.ids for e in view.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def accuracies(vecs):
        out = {}
        for lang, (s, n) in spans.items():
            sim = vecs[s:s + n] @ vecs[s + n:s + 2 * n].T
            out[lang] = round(top1_accuracies(sim.argmax(1), sim.argmax(0))["accuracy"], 2)
        return out

    parent_acc = accuracies(base)
    tok = st.tokenizer

    def score(kept) -> dict:
        text, new_of = vocab.trimmed_tokenizer_json(view, kept)
        child = Tokenizer.from_str(text)
        old_of = {n: o for o, n in new_of.items()}
        mapped = [[old_of[j] for j in e.ids] for e in child.encode_batch(texts, add_special_tokens=False)]
        changed = sorted((i for i in range(len(texts)) if mapped[i] != parent_ids[i]), key=lambda i: len(mapped[i]))
        vecs = base.copy()
        with torch.inference_mode():
            for s in range(0, len(changed), 64):
                idx = changed[s:s + 64]
                seqs = [[tok.cls_token_id] + mapped[i][:510] + [tok.sep_token_id] for i in idx]
                width = max(map(len, seqs))
                ids = torch.tensor([q + [tok.pad_token_id] * (width - len(q)) for q in seqs])
                mask = torch.tensor([[1] * len(q) + [0] * (width - len(q)) for q in seqs])
                out = st({"input_ids": ids, "attention_mask": mask})["sentence_embedding"]
                vecs[idx] = torch.nn.functional.normalize(out, dim=-1).numpy()
        acc = accuracies(vecs)
        loss = {k: round(parent_acc[k] - v, 2) for k, v in acc.items()}
        heldout = {lang.code: vocab.tokenization_fidelity(view.tokenizer, child, heldout_texts(view, lang)[0])["exact_pct"]
                   for lang in langs}
        return {"pieces": len(kept), "changed_sentences": len(changed), "tatoeba_loss": loss,
                "mean_loss": round(float(np.mean(list(loss.values()))), 3), "worst_loss": max(loss.values()),
                "heldout_exact_pct": heldout}

    auto = st[0].auto_model
    emb = auto.get_input_embeddings().weight
    budget = vocab.parse_size(args.size, count_parameters(st), emb.numel(), emb.shape[1])
    prompts = [p for p in (st.prompts or {}).values() if p] or [PREFIX]
    files = sorted(str(f) for f in (data / "parallel").glob("*/*.en-*.tsv") if f.parent.name != "kyoto_wiki_enja")
    corpus = list(gather_inputs(langs, None, files, dev_size=500, max_pairs_per_lang=15000).train_texts)
    rows = {}
    rows["score-sum, en=8"] = score(vocab.select_pieces(view, langs, size=budget, weights={"en": 8}, always=prompts)[0])
    rows["equal-coverage"] = score(equal_coverage(view, langs, budget, {}, always=prompts))
    rows["equal-coverage, en=2"] = score(equal_coverage(view, langs, budget, {"en": 2}, always=prompts))
    rows[f"score-sum, en=8, + corpus ({len(corpus)} sentences)"] = score(
        vocab.select_pieces(view, langs, corpus=corpus, size=budget, weights={"en": 8}, always=prompts)[0])
    rows["score-sum, en=8, single Han characters ranked"] = score(han_ranked(view, langs, budget, {"en": 8}, always=prompts))
    for name, row in rows.items():
        print(name, row, file=sys.stderr)
    command = shlex.join(["python", "benchmarks/trim_rankings.py", *sys.argv[1:]])
    report = {"command": command, "machine": machine_info(), "size": args.size, "budget_pieces": budget,
              "parent_tatoeba": parent_acc, "rows": rows, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trim_rankings.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = [f"# Vocabulary rankings at {args.size:.0%} of multilingual-e5-small's parameters ({budget:,} pieces)", "",
             f"Command: `{command}`", "", "Tatoeba loss (points, both directions, full sets) against the parent; "
             "held-out exact: % of word-list sentences (another seed) tokenized exactly as by the parent.", "",
             "| ranking | changed sentences | mean loss | worst | " + " | ".join(KEPT) + " | held-out exact (en/ja/zh/de/fr/es/ru/ko/ar) |",
             "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in KEPT) + " | --- |"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['changed_sentences']} | {row['mean_loss']} | {row['worst_loss']} | "
                     + " | ".join(str(row["tatoeba_loss"][k]) for k in KEPT) + " | "
                     + "/".join(str(round(v)) for v in row["heldout_exact_pct"].values()) + " |")
    (out / "trim_rankings.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
