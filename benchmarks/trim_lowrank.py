#!/usr/bin/env python
"""More pieces at the same parameter count: the rarer embedding rows stored at low rank instead of dropped.

At 40% of multilingual-e5-small's parameters the trim keeps 66k of the 250k pieces and loses up to 1.55 Tatoeba
points (Chinese, Russian); at 50% it keeps 97k and loses at most 0.10. This pilot keeps the 50% trim's pieces
within the 40% budget: the --head pieces the trim's own ranking scores highest (vocab.piece_scores: their
share of the kept languages' text) keep their full rows; every other row is the tail's mean plus a rank-r
projection, fitted by SVD of the tail rows, r the largest the budget allows (tail rows x r coefficients +
r x dim basis + the mean, all counted as parameters). Only lowrank-trained trains anything. Rows:

  parent        the parent, fp32
  trim          xlembed's trim at --size (the pieces it drops are re-segmented)
  trim-vocab    xlembed's trim at --vocab-size (the pieces the low-rank rows keep)
  lowrank       trim-vocab with its tail rows at rank r, at --size of the parent's parameters
  lowrank-norm  the same, each tail row rescaled to its own norm (one more parameter a row; r one lower)
  lowrank-trained  lowrank, then its tail factors (coefficients, basis, mean; nothing else) trained for
                --train-steps steps of 64 texts towards the parent's vectors (MSE of the unit vectors, lr
                --train-lr) on --train-texts texts of the 9 languages from --train-data-root's parallel files;
                the trained rows are cached in the --models folder (safetensors), so a second --out reuses them

The low-rank rows are applied to the trim-vocab model in memory (dense, for measurement): this measures
quality, not a folder format; a model stored this way would need its own embedding module.
Scores: Tatoeba top-1 (both directions) of the kept languages, loss against the parent in points.

    python benchmarks/trim_lowrank.py
    python benchmarks/trim_lowrank.py --data-root .cache/heldout-kept-root --models benchmarks/results/trim-lowrank/models \
        --out benchmarks/results/trim-lowrank/software

Each row goes to OUT/rows/NAME.json as it is measured (a rerun reuses it). Writes OUT/results.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from compress_e5 import LANGS, parallel_files  # noqa: E402
from encode_speed import machine_info, versions  # noqa: E402
from int8_heldout import measured_rows, write_results  # noqa: E402
from trim_alias import checked_rows, kept_languages, loss_summary, trimmed_folder  # noqa: E402

ROWS = ("parent", "trim", "trim-vocab", "lowrank", "lowrank-norm", "lowrank-trained")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / ".cache" / "models" / "multilingual-e5-small"),
                   help="the parent model folder")
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"), help="folder with tatoeba/")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "trim-lowrank"))
    p.add_argument("--models", default=None,
                   help="folder for the trimmed models (default: the --out of the Tatoeba run, so that both runs "
                        "measure the same models)")
    p.add_argument("--size", type=float, default=0.40, help="the parameter budget, a share of the parent's")
    p.add_argument("--vocab-size", type=float, default=0.50,
                   help="the trim whose pieces the low-rank rows keep, a share of the parent's parameters")
    p.add_argument("--head", type=int, default=40000, help="pieces that keep their full row")
    p.add_argument("--train-steps", type=int, default=400, help="steps of the lowrank-trained row")
    p.add_argument("--train-lr", type=float, default=1e-3, help="learning rate of the lowrank-trained row")
    p.add_argument("--train-texts", type=int, default=20000, help="training texts of the lowrank-trained row")
    p.add_argument("--train-data-root", default=str(REPO.parent / "shared" / "data"),
                   help="folder with parallel/ (the lowrank-trained row's training text)")
    p.add_argument("--lang-weight", default="en=8", help="the trims' language weights (as compress_e5.py)")
    p.add_argument("--rows", default=",".join(ROWS), help=f"rows to measure (default all: {','.join(ROWS)})")
    return p.parse_args(argv)


def head_order(parent: Path, child_tokenizer: dict, weights) -> list[int]:
    """The child's piece ids, special tokens first, then by the trim's score (highest first)."""
    import xlembed
    from xlembed.compress import vocab
    from xlembed.compress.languages import parse_langs

    view = vocab.parent_view(xlembed.load(str(parent), precision="fp32").model)
    score, _ = vocab.piece_scores(view, parse_langs(LANGS), weights=weights)
    pieces = [piece for piece, _ in child_tokenizer["model"]["vocab"]]
    parent_id = {piece: i for i, piece in enumerate(view.pieces)}
    key = [(0 if parent_id[p] in view.special_ids else 1, -score.get(parent_id[p], 0.0)) for p in pieces]
    return sorted(range(len(pieces)), key=lambda i: key[i])


def low_rank(folder: Path, parent: Path, budget_share: float, head: int, keep_norm: bool, weights):
    """The trim-vocab encoder with its tail rows replaced in place by their rank-r SVD fit; facts about it."""
    import torch
    import xlembed

    record = json.loads((folder / "compress.json").read_text(encoding="utf-8"))["steps"][0]
    encoder = xlembed.load(str(folder), precision="fp32")
    weight = encoder.model[0].auto_model.get_input_embeddings().weight.data
    rows, dim = weight.shape
    if not 0 < head < rows:
        raise SystemExit(f"--head {head}: must be between 0 and the {rows} pieces of {folder}")
    parent_params = record["parameters"]["parent"]
    layers = record["parameters"]["child"] - rows * dim
    order = head_order(parent, json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")), weights)
    tail = torch.tensor(order[head:])
    per_row = 1 if keep_norm else 0
    rank = int((budget_share * parent_params - layers - head * dim - dim - per_row * len(tail)) // (len(tail) + dim))
    if rank < 1:
        raise SystemExit(f"--head {head} leaves no budget for the other {len(tail)} rows at {budget_share} of the parameters")
    params = layers + head * dim + len(tail) * (rank + per_row) + rank * dim + dim
    fit = weight[tail].double()
    mean = fit.mean(0)
    _, s, vh = torch.linalg.svd(fit - mean, full_matrices=False)
    basis = vh[:rank]
    coefficients = (fit - mean) @ basis.T
    approx = coefficients @ basis + mean
    if keep_norm:
        approx = approx * (fit.norm(dim=1) / approx.norm(dim=1))[:, None]
    weight[tail] = approx.float()
    factors = {"tail": tail, "coefficients": coefficients.float(), "basis": basis.float(), "mean": mean.float()}
    return encoder, factors, {"pieces": rows, "head": head, "tail": len(tail), "rank": rank, "parameters": params,
                              "share": round(params / parent_params, 4),
                              "energy_kept": round(float((s[:rank] ** 2).sum() / (s ** 2).sum()), 4),
                              "mean_relative_error": round(float(((approx - fit).norm(dim=1) / fit.norm(dim=1)).mean()), 3)}


def train_tail(encoder, factors: dict, parent: Path, args, cached: Path) -> dict:
    """Train the tail factors towards the parent's unit vectors (everything else frozen); the trained rows are
    written to / read from ``cached`` (safetensors)."""
    import random

    import numpy as np
    import torch
    import xlembed
    from safetensors.torch import load_file, save_file
    from torch.nn.utils import parametrize
    from xlembed.compress.languages import parse_langs
    from xlembed.compress.pipeline import gather_inputs
    from xlembed.eval.cache import encode_texts

    class TailRows(torch.nn.Module):
        """A parametrization of the word-embedding table: its tail rows are coefficients @ basis + mean."""

        def __init__(self):
            super().__init__()
            self.register_buffer("tail", factors["tail"])
            self.coefficients = torch.nn.Parameter(factors["coefficients"].clone())
            self.basis = torch.nn.Parameter(factors["basis"].clone())
            self.mean = torch.nn.Parameter(factors["mean"].clone())

        def forward(self, table):
            return table.index_copy(0, self.tail, self.coefficients @ self.basis + self.mean)

    weight = encoder.model[0].auto_model.get_input_embeddings().weight
    if cached.is_file():
        rows = load_file(str(cached))
        with torch.no_grad():
            weight[rows["tail"]] = rows["rows"]
        return json.loads(cached.with_suffix(".json").read_text(encoding="utf-8"))
    started = time.perf_counter()
    inputs = gather_inputs(parse_langs(LANGS), None, parallel_files(Path(args.train_data_root)), dev_size=500)
    texts = [t for t in inputs.train_texts if len(t) <= 200]
    random.Random(0).shuffle(texts)
    texts = texts[:args.train_texts]
    targets = np.asarray(encode_texts(xlembed.load(str(parent), precision="fp32"), texts, prompt=None), dtype=np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    prefix = encoder.resolve_prompt(None) or ""
    st = encoder.model
    for p in st.parameters():
        p.requires_grad_(False)
    embeddings = st[0].auto_model.get_input_embeddings()
    tail_rows = TailRows()
    parametrize.register_parametrization(embeddings, "weight", tail_rows)
    optimizer = torch.optim.AdamW([tail_rows.coefficients, tail_rows.basis, tail_rows.mean], lr=args.train_lr,
                                  weight_decay=0.0)
    st.eval()
    torch.manual_seed(0)
    losses = []
    for step in range(args.train_steps):
        batch = np.random.RandomState(step).choice(len(texts), 64, replace=False)
        features = st.tokenize([prefix + texts[i] for i in batch])
        vectors = torch.nn.functional.normalize(st(features)["sentence_embedding"], dim=1)
        loss = torch.nn.functional.mse_loss(vectors, torch.from_numpy(targets[batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            print(f"  step {step}: loss {np.mean(losses[-50:]):.3e}", file=sys.stderr, flush=True)
    parametrize.remove_parametrizations(embeddings, "weight", leave_parametrized=True)
    facts = {"train_steps": args.train_steps, "train_lr": args.train_lr, "train_texts": len(texts),
             "loss_first_50": float(np.mean(losses[:50])), "loss_last_50": float(np.mean(losses[-50:])),
             "train_seconds": round(time.perf_counter() - started, 1)}
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(cached.name + ".partial")
    save_file({"tail": factors["tail"], "rows": embeddings.weight.data[factors["tail"]].contiguous()}, str(partial))
    cached.with_suffix(".json").write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")
    partial.rename(cached)
    return facts


def measure(name: str, args, parent: Path, models: Path, tatoeba: Path, langs: list[str], weights) -> dict:
    import xlembed
    from xlembed.eval.tasks import tatoeba as run_tatoeba

    started = time.perf_counter()
    facts: dict = {}
    if name == "parent":
        encoder = xlembed.load(str(parent), precision="fp32")
    elif name in ("trim", "trim-vocab"):
        folder = trimmed_folder(models, args.size if name == "trim" else args.vocab_size, parent, weights)
        encoder = xlembed.load(str(folder), precision="fp32")
        step = json.loads((folder / "compress.json").read_text(encoding="utf-8"))["steps"][0]
        facts = {"pieces": step["pieces"]["child"], "parameters": step["parameters"]["child"],
                 "share": step["parameters"]["share"]}
    else:
        folder = trimmed_folder(models, args.vocab_size, parent, weights)
        encoder, factors, facts = low_rank(folder, parent, args.size, args.head, name == "lowrank-norm", weights)
        if name == "lowrank-trained":
            cached = models / f"lowrank-trained-{args.size}-{args.head}-{args.train_steps}-{args.train_lr}.safetensors"
            facts.update(train_tail(encoder, factors, parent, args, cached))
    results = run_tatoeba(encoder, tatoeba, langs)
    return {"name": name, **facts, "seconds": round(time.perf_counter() - started, 1),
            "tatoeba": {r.language: round(r.scores["accuracy"], 2) for r in results}}


def markdown(rep: dict) -> str:
    rows = rep["rows"]
    langs = sorted(rows["parent"]["tatoeba"])
    lines = ["# Rarer rows at low rank instead of dropped", "",
             f"Command: `{rep['command']}`", "",
             f"Machine: {rep['machine'].get('cpu')}, {rep['machine'].get('cores')} cores. Model: `{rep['model']}`. "
             f"Data: `{rep['tatoeba']}`. Top-1 both directions (%); losses against the parent in points.", "",
             "| row | pieces | full rows / rank of the rest | share of parameters | mean loss | worst loss | "
             + " | ".join(langs) + " |",
             "| --- | ---: | --- | ---: | ---: | ---: |" + " ---: |" * len(langs)]
    for name, row in rows.items():
        s = rep["summary"].get(name, {"mean_loss": 0, "max_loss": 0})
        shape = f"{row['head']:,} / {row['rank']}" if "rank" in row else "all"
        cells = [str(row["tatoeba"][k]) if name == "parent" else f"{row['tatoeba'][k] - rows['parent']['tatoeba'][k]:+.2f}"
                 for k in langs]
        lines.append(f"| {name} | {row.get('pieces', 250002):,} | {shape} | {row.get('share', 1.0)} | "
                     f"{s['mean_loss']} | {s['max_loss']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from xlembed.compress.languages import parse_weights

    parent = Path(args.model)
    tatoeba = Path(args.data_root) / "tatoeba"
    wanted = checked_rows(parent, tatoeba, args.rows, ROWS)
    if wanted is None:
        return 2
    weights = parse_weights(args.lang_weight) or None
    langs = kept_languages(tatoeba)
    out = Path(args.out)
    models = Path(args.models) if args.models else out / "models"
    command = shlex.join(["python", "benchmarks/trim_lowrank.py", *sys.argv[1:]])
    rows = measured_rows(out, wanted, lambda name: measure(name, args, parent, models, tatoeba, langs, weights), command)
    summary = loss_summary(rows)
    report = {"command": command, "machine": machine_info(), "versions": versions(), "model": parent.name,
              "size": args.size, "vocab_size": args.vocab_size, "head": args.head, "tatoeba": str(tatoeba),
              "rows": rows, "summary": summary}
    write_results(out, report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
