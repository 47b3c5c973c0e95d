"""Fewer or smaller layers: drop layers by measured importance, prune attention heads and FFN neurons by
importance, or share weights across layers (ALBERT-style). Each is Folder -> Folder.

Importance is measured on dev texts against the parent's own sentence vectors (no labels needed):
- dropping: greedily remove, one at a time, the layer whose removal keeps the sentence vectors
  closest (mean cosine) to the parent's; the order of removal is recorded;
- heads and neurons: the size of what each adds to the residual stream on the dev texts (the norm of
  a head's output projected by the attention output matrix; a neuron's mean |activation| times the
  norm of its output weights), ranked across all layers (every layer keeps at least one of each).
Pruned heads and neurons are zeros in full-size weights (see ``structure.py``); ``xlembed.load()`` and
the ONNX export cut them out.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BadInputError
from .folder import child_record, count_parameters, open_model, save_child, working_copy
from .structure import family, materialize, zero_heads, zero_neurons

DEV_BATCH = 32


def _encoder(st, like, name: str):
    """A TorchEncoder over the SentenceTransformer ``st`` with ``like``'s settings (never cached by name)."""
    from ..backends.torch_backend import TorchEncoder

    return TorchEncoder(st, dataclasses.replace(like.info, name=name, cacheable=False, notes=[]))


def sentence_vectors(st, like, texts: Sequence[str]) -> np.ndarray:
    """Unit-length sentence vectors of ``texts`` from ``st`` with ``like``'s default prompt."""
    import warnings

    from ..encoder import l2_normalize
    from ..errors import XlembedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XlembedWarning)
        return l2_normalize(_encoder(st, like, "dev").encode(list(texts), batch_size=DEV_BATCH))


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(a * b, axis=1)))


# ---------------------------------------------------------------- dropping

def layer_drop_order(st, like, texts: Sequence[str], reference: np.ndarray, n_drop: int) -> list[dict]:
    """Greedy: ``n_drop`` times, remove the layer whose removal keeps the vectors closest to ``reference``.

    Returns one row per removal: the layer (index in the original stack) and the mean cosine to the
    reference after removing it, with every candidate's cosine at that round.
    """
    auto = st[0].auto_model
    fam = family(auto)
    original = list(fam.layers(auto))
    if not 0 < n_drop < len(original):
        raise BadInputError(
            f"cannot drop {n_drop} of the model's {len(original)} layers: drop at least 1 and keep at least 1"
        )
    bias = _t5_bias(fam, original)
    kept = list(range(len(original)))
    order = []
    try:
        for _ in range(n_drop):
            trials = {}
            for candidate in kept:
                _set(fam, auto, [original[i] for i in kept if i != candidate], bias)
                trials[candidate] = mean_cosine(sentence_vectors(st, like, texts), reference)
            best = max(trials, key=lambda c: (trials[c], c))
            kept.remove(best)
            order.append({"layer": best, "cosine_after": round(trials[best], 5),
                          "candidates": {str(k): round(v, 5) for k, v in sorted(trials.items())}})
    finally:
        _set(fam, auto, original, bias)
    return order


def _t5_bias(fam, layers):
    """T5/mT5 keep the relative position bias in their first block only: it must follow the first kept block."""
    if fam.name != "t5":
        return None
    return getattr(layers[0].layer[0].SelfAttention, "relative_attention_bias", None)


def _set(fam, auto, layers, bias) -> None:
    if bias is not None:
        for i, block in enumerate(layers):
            att = block.layer[0].SelfAttention
            if i == 0:
                att.relative_attention_bias = bias
            elif hasattr(att, "relative_attention_bias") and att.relative_attention_bias is bias:
                del att.relative_attention_bias
    fam.set_layers(auto, layers)


DROP_CHOICES = ("importance", "spread")


def drop_layers(folder: Path | str, out: Path | str, drop: int | Sequence[int], *, texts: Sequence[str],
                choose: str = "importance", overwrite: bool = False) -> dict:
    """Folder -> Folder: remove ``drop`` layers: a count, chosen by ``choose``, or the layer indices to remove.
    Returns the step's record (also in OUT/compress.json).

    choose="importance": greedily, the layer whose removal keeps the sentence vectors of ``texts`` closest to
    the parent's (the best choice with no training after it); "spread": keep evenly spaced layers, the first
    and the last among them (the better start for recovery: multilingual-e5-small, 6 of 12 layers dropped,
    500 recovery steps: kept-language Tatoeba loss 6.7 with [0,2,4,7,9,11] kept vs 9.9 with importance's
    [0,4,8,9,10,11], though importance starts closer, dev cosine 0.88 vs 0.85)."""
    if choose not in DROP_CHOICES:
        raise BadInputError(f"layers to drop are chosen by {' or '.join(DROP_CHOICES)}, got {choose!r}")
    encoder, st, parent_params = _open_for_edit(folder, "drop layers")
    auto = st[0].auto_model
    fam = family(auto)
    original = list(fam.layers(auto))
    reference = sentence_vectors(encoder.model, encoder, texts)
    if isinstance(drop, int) and choose == "spread":
        if not 0 < drop < len(original):
            raise BadInputError(f"cannot drop {drop} of the model's {len(original)} layers: drop at least 1 and keep at least 1")
        keep = {int(round(x)) for x in np.linspace(0, len(original) - 1, len(original) - drop)}
        removed = [i for i in range(len(original)) if i not in keep]
        order = []
        how = "spread (evenly spaced layers kept, the first and the last among them)"
    elif isinstance(drop, int):
        order = layer_drop_order(st, encoder, texts, reference, drop)
        removed = [row["layer"] for row in order]
        how = "importance (greedy, mean cosine to the parent on dev texts)"
    else:
        removed = sorted({int(i) for i in drop})
        bad = [i for i in removed if not 0 <= i < len(original)]
        if bad or len(removed) >= len(original):
            raise BadInputError(f"layers to drop must be indices 0..{len(original) - 1} leaving at least one, got {list(drop)}")
        order = []
        how = "given"
    kept = [i for i in range(len(original)) if i not in set(removed)]
    _set(fam, auto, [original[i] for i in kept], _t5_bias(fam, original))
    cosine = mean_cosine(sentence_vectors(st, encoder, texts), reference)
    step = {"step": "drop", "layers_before": len(original), "removed": removed, "kept": kept, "chosen_by": how,
            "order": order, "dev_cosine_to_parent": round(cosine, 5), "dev_texts": len(texts),
            "parameters": {"parent": parent_params, "child": count_parameters(st)}}
    save_child(st, _info(encoder, out), out, child_record(folder, step), overwrite=overwrite)
    return step


# ---------------------------------------------------------------- pruning

def contributions(st, like, texts: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per layer: each head's mean output norm (layers x heads) and each FFN neuron's mean |activation| x
    output-weight norm (a list, one array per layer), over the real tokens of ``texts``."""
    import torch

    auto = st[0].auto_model
    fam = family(auto)
    layers = list(fam.layers(auto))
    d = fam.head_dim(auto)
    n_heads = fam.n_heads(layers[0])
    head_sum = np.zeros((len(layers), n_heads))
    neuron_sum = [None] * len(layers)
    state = {"mask": None, "tokens": 0}
    hooks = []

    def head_hook(li, o):
        def hook(_module, args):
            x = args[0].detach()
            mask = state["mask"].to(x.dtype)[..., None]
            w = o.weight.detach()
            for h in range(n_heads):
                part = x[..., h * d:(h + 1) * d] @ w[:, h * d:(h + 1) * d].T
                head_sum[li, h] += float((part.norm(dim=-1) * mask[..., 0]).sum())
        return hook

    def neuron_hook(li, out_linear):
        def hook(_module, args):
            x = args[0].detach().abs() * state["mask"].to(args[0].dtype)[..., None]
            total = x.sum(dim=(0, 1)).numpy()
            neuron_sum[li] = total if neuron_sum[li] is None else neuron_sum[li] + total
        return hook

    for li, layer in enumerate(layers):
        q, k, v, o = fam.head_linears(layer)
        _, out_linear = fam.ffn_linears(layer)
        hooks.append(o.register_forward_pre_hook(head_hook(li, o)))
        hooks.append(out_linear.register_forward_pre_hook(neuron_hook(li, out_linear)))
    prefix = like.resolve_prompt(None)
    try:
        st.eval()
        with torch.inference_mode():
            for start in range(0, len(texts), DEV_BATCH):
                features = st.preprocess(list(texts[start:start + DEV_BATCH]), prompt=prefix or None)
                state["mask"] = features["attention_mask"]
                state["tokens"] += int(features["attention_mask"].sum())
                st(features)
    finally:
        for h in hooks:
            h.remove()
    tokens = max(state["tokens"], 1)
    neurons = []
    for li, layer in enumerate(layers):
        _, out_linear = fam.ffn_linears(layer)
        norms = out_linear.weight.detach().norm(dim=0).numpy()
        neurons.append(neuron_sum[li] / tokens * norms)
    return head_sum / tokens, neurons


def lowest(scores: list[np.ndarray], share: float, already: dict[int, list[int]] | None = None) -> dict[int, list[int]]:
    """The ``share`` of all units (across layers) with the lowest scores, each layer keeping at least one;
    units already pruned (zero score) count towards the share."""
    units = [(float(s), li, j) for li, row in enumerate(scores) for j, s in enumerate(row)]
    target = int(round(share * len(units)))
    remaining = {li: len(row) for li, row in enumerate(scores)}
    chosen: dict[int, list[int]] = {}
    for s, li, j in sorted(units):
        if sum(len(v) for v in chosen.values()) >= target:
            break
        if remaining[li] <= 1:
            continue
        chosen.setdefault(li, []).append(j)
        remaining[li] -= 1
    return {li: sorted(js) for li, js in sorted(chosen.items())}


def prune(folder: Path | str, out: Path | str, *, heads: float = 0.0, ffn: float = 0.0, texts: Sequence[str],
          overwrite: bool = False) -> dict:
    """Folder -> Folder: prune a share of all attention heads and of all FFN neurons, lowest measured
    contribution first. Returns the step's record."""
    for name, value in (("heads", heads), ("ffn", ffn)):
        if not 0 <= value < 1:
            raise BadInputError(f"prune {name} is a share of the model's {name} in [0, 1), got {value}")
    if not heads and not ffn:
        raise BadInputError("prune needs heads=SHARE and/or ffn=SHARE, e.g. prune:heads=0.3,ffn=0.3")
    encoder, st, parent_params = _open_for_edit(folder, "prune again")
    reference = sentence_vectors(encoder.model, encoder, texts)
    head_scores, neuron_scores = contributions(st, encoder, texts)
    pruned_heads = lowest(list(head_scores), heads) if heads else {}
    pruned_neurons = lowest(neuron_scores, ffn) if ffn else {}
    auto = st[0].auto_model
    zero_heads(auto, pruned_heads)
    zero_neurons(auto, pruned_neurons)
    cosine = mean_cosine(sentence_vectors(st, encoder, texts), reference)
    structure = {"pruned_heads": {str(k): v for k, v in pruned_heads.items()},
                 "pruned_neurons": {str(k): v for k, v in pruned_neurons.items()}}
    step = {"step": "prune", "heads": heads, "ffn": ffn, "chosen_by": "contribution norm on dev texts",
            "heads_pruned": sum(map(len, pruned_heads.values())), "neurons_pruned": sum(map(len, pruned_neurons.values())),
            "dev_cosine_to_parent": round(cosine, 5), "dev_texts": len(texts), "structure": structure,
            "parameters": {"parent": parent_params, "child": effective_parameters(st, structure)}}
    save_child(st, _info(encoder, out), out, child_record(folder, step), overwrite=overwrite)
    return step


def effective_parameters(st, structure: dict | None) -> int:
    """Parameters once pruned heads/neurons are cut out and shared layers counted once."""
    import copy

    model = copy.deepcopy(st)
    apply_structure(model, structure)
    return count_parameters(model)


# ---------------------------------------------------------------- sharing

def share_layers(folder: Path | str, out: Path | str, *, groups: int, texts: Sequence[str],
                 overwrite: bool = False) -> dict:
    """Folder -> Folder: tie ``groups`` groups of consecutive layers, each initialised from the average of its
    layers (ALBERT-style sharing); the compute stays the same, the unique parameters shrink."""
    import copy

    import torch

    encoder, st, parent_params = _open_for_edit(folder, "share layers")
    auto = st[0].auto_model
    fam = family(auto)
    layers = list(fam.layers(auto))
    if not 1 <= groups < len(layers):
        raise BadInputError(f"share groups must be between 1 and {len(layers) - 1} for a {len(layers)}-layer model, got {groups}")
    bounds = np.array_split(np.arange(len(layers)), groups)
    reference = sentence_vectors(encoder.model, encoder, texts)
    new_layers = []
    for members in bounds:
        shared = copy.deepcopy(layers[int(members[0])])
        with torch.no_grad():
            states = [layers[int(i)].state_dict() for i in members]
            shared.load_state_dict({k: torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype)
                                    if states[0][k].is_floating_point() else states[0][k] for k in states[0]})
        new_layers += [shared] * len(members)
    _set(fam, auto, new_layers, _t5_bias(fam, layers))
    cosine = mean_cosine(sentence_vectors(st, encoder, texts), reference)
    shared_groups = [[int(i) for i in members] for members in bounds]
    step = {"step": "share", "groups": shared_groups, "dev_cosine_to_parent": round(cosine, 5), "dev_texts": len(texts),
            "structure": {"shared": shared_groups},
            "parameters": {"parent": parent_params, "child": count_parameters(st)}}
    save_child(untied(st), _info(encoder, out), out, child_record(folder, step), overwrite=overwrite)
    return step


def untied(st):
    """A copy in which every layer is its own module (shared tensors cannot be saved as safetensors)."""
    import copy

    model = copy.deepcopy(st)
    auto = model[0].auto_model
    fam = family(auto)
    layers = list(fam.layers(auto))
    seen = set()
    fresh = []
    for layer in layers:
        fresh.append(copy.deepcopy(layer) if id(layer) in seen else layer)
        seen.add(id(layer))
    _set(fam, auto, fresh, _t5_bias(fam, layers))
    return model


# ---------------------------------------------------------------- structure records

def structure_of(record: dict) -> dict:
    """The structure a folder's compression steps left (pruned units and shared layers, in its own layer indices)."""
    out: dict = {}
    for step in record.get("steps", []):
        for key, value in (step.get("structure") or {}).items():
            out[key] = value
    return out


def apply_structure(st, structure: dict | None) -> None:
    """Cut pruned units out and re-tie shared layers, in place (same outputs, less memory and compute)."""
    if not structure:
        return
    auto = st[0].auto_model
    fam = family(auto)
    heads = {int(k): v for k, v in (structure.get("pruned_heads") or {}).items()}
    neurons = {int(k): v for k, v in (structure.get("pruned_neurons") or {}).items()}
    if heads or neurons:
        materialize(auto, heads, neurons)
    groups = structure.get("shared") or []
    if groups:
        layers = list(fam.layers(auto))
        for members in groups:
            for i in members[1:]:
                layers[i] = layers[members[0]]
        _set(fam, auto, layers, _t5_bias(fam, list(fam.layers(auto))))


def _open_for_edit(folder, what: str):
    """(encoder, an editable copy of its sentence-transformer, the copy's parameter count before any edit);
    a folder that is already pruned or shared is refused (``what``: the step, for the message)."""
    encoder = open_model(folder)
    _refuse_structured(folder, what)
    st = working_copy(encoder)
    return encoder, st, count_parameters(st)


def _refuse_structured(folder, what: str) -> None:
    from .folder import read_record

    if structure_of(read_record(folder)):
        raise BadInputError(
            f"{folder} already has pruned or shared layers; {what} on the folder before pruning or sharing it "
            "(order the steps: trim, drop, prune or share, recover, int8)"
        )


def _info(encoder, out):
    return dataclasses.replace(encoder.info, name=Path(out).name, source=str(out), notes=[])
