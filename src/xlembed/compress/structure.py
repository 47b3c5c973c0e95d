"""The transformer's layer stack, attention heads and FFN neurons, for BERT-family encoders (BERT, XLM-R,
RoBERTa, MiniLM, multilingual-e5) and T5/mT5 encoders.

Pruned heads and neurons are stored as zeros in full-size weights: a head whose query, key, value
and output weights are zero adds exactly nothing (its values are zero whatever it attends to), and so
does an FFN neuron whose input row, bias and output column are zero. The folder therefore keeps the
shapes every library expects (sentence-transformers and transformers load it unchanged, with the
same outputs), and ``materialize`` cuts the zeros out for speed: before ONNX export, and before
recovery training (which would otherwise bring them back to life).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BadInputError


@dataclass
class Family:
    """Where an encoder keeps its layers and the parts of each layer."""

    name: str  # "bert" | "t5"

    # ---- the layer stack ----
    def layers(self, auto):
        return auto.encoder.layer if self.name == "bert" else auto.encoder.block

    def set_layers(self, auto, modules) -> None:
        import torch

        stack = torch.nn.ModuleList(modules)
        if self.name == "bert":
            auto.encoder.layer = stack
            auto.config.num_hidden_layers = len(stack)
        else:
            auto.encoder.block = stack
            auto.config.num_layers = len(stack)
            for i, block in enumerate(stack):  # T5 gives the relative position bias to its first block only
                block.layer[0].SelfAttention.has_relative_attention_bias = i == 0 and bool(
                    getattr(block.layer[0].SelfAttention, "relative_attention_bias", None) is not None)
        for i, layer in enumerate(stack):
            attention = self.attention(layer)
            if hasattr(attention, "layer_idx"):
                attention.layer_idx = i

    # ---- attention ----
    def attention(self, layer):
        return layer.attention.self if self.name == "bert" else layer.layer[0].SelfAttention

    def head_linears(self, layer):
        """(query, key, value, output) linear layers of a layer's self-attention."""
        if self.name == "bert":
            att = layer.attention.self
            return att.query, att.key, att.value, layer.attention.output.dense
        att = layer.layer[0].SelfAttention
        return att.q, att.k, att.v, att.o

    def head_dim(self, auto) -> int:
        c = auto.config
        return c.hidden_size // c.num_attention_heads if self.name == "bert" else c.d_kv

    def n_heads(self, layer) -> int:
        att = self.attention(layer)
        return att.num_attention_heads if self.name == "bert" else att.n_heads

    # ---- the feed-forward block ----
    def ffn_linears(self, layer):
        """([linears whose output rows are the neurons], linear whose input columns are the neurons)."""
        if self.name == "bert":
            return [layer.intermediate.dense], layer.output.dense
        ff = layer.layer[1].DenseReluDense
        inputs = [ff.wi_0, ff.wi_1] if hasattr(ff, "wi_0") else [ff.wi]
        return inputs, ff.wo

    def ffn_activation_module(self, layer):
        """The module whose output is the neurons' activation (hooked to measure importance)."""
        if self.name == "bert":
            return layer.intermediate
        ff = layer.layer[1].DenseReluDense
        return ff.wi_0 if hasattr(ff, "wi_0") else ff.wi


def family(auto) -> Family:
    """The family of a transformers encoder; a clear error for one xlembed cannot restructure."""
    encoder = getattr(auto, "encoder", None)
    if encoder is not None and hasattr(encoder, "layer") and hasattr(encoder.layer[0], "attention") \
            and hasattr(encoder.layer[0].attention, "self") and hasattr(encoder.layer[0], "intermediate"):
        return Family("bert")
    if encoder is not None and hasattr(encoder, "block"):
        return Family("t5")
    raise BadInputError(
        f"layer dropping, pruning and sharing support BERT-family (BERT, XLM-R, MiniLM, e5) and T5/mT5 encoders, "
        f"not {type(auto).__name__}"
    )


def zero_heads(auto, heads: dict[int, list[int]]) -> None:
    """Zero the given heads (layer index -> head indices) in place."""
    import torch

    fam = family(auto)
    d = fam.head_dim(auto)
    layers = fam.layers(auto)
    with torch.no_grad():
        for li, hs in heads.items():
            q, k, v, o = fam.head_linears(layers[li])
            for h in hs:
                cut = slice(h * d, (h + 1) * d)
                for lin in (q, k, v):
                    lin.weight[cut] = 0
                    if lin.bias is not None:
                        lin.bias[cut] = 0
                o.weight[:, cut] = 0


def zero_neurons(auto, neurons: dict[int, list[int]]) -> None:
    """Zero the given FFN neurons (layer index -> neuron indices) in place."""
    import torch

    fam = family(auto)
    layers = fam.layers(auto)
    with torch.no_grad():
        for li, ns in neurons.items():
            idx = torch.as_tensor(sorted(ns), dtype=torch.long)
            inputs, out = fam.ffn_linears(layers[li])
            for lin in inputs:
                lin.weight[idx] = 0
                if lin.bias is not None:
                    lin.bias[idx] = 0
            out.weight[:, idx] = 0


def _keep_rows(lin, idx):
    import torch

    new = torch.nn.Linear(lin.in_features, len(idx), bias=lin.bias is not None)
    with torch.no_grad():
        new.weight.copy_(lin.weight[idx])
        if lin.bias is not None:
            new.bias.copy_(lin.bias[idx])
    return new


def _keep_cols(lin, idx):
    import torch

    new = torch.nn.Linear(len(idx), lin.out_features, bias=lin.bias is not None)
    with torch.no_grad():
        new.weight.copy_(lin.weight[:, idx])
        if lin.bias is not None:
            new.bias.copy_(lin.bias)
    return new


def materialize(auto, heads: dict[int, list[int]] | None, neurons: dict[int, list[int]] | None) -> None:
    """Cut the pruned (zeroed) heads and neurons out of the weights, in place: same outputs, smaller matrices.

    T5 heads stay zeroed (its position bias is shared across layers by head index); its neurons are cut.
    """
    import torch

    fam = family(auto)
    layers = fam.layers(auto)
    d = fam.head_dim(auto)
    for li, pruned in (heads or {}).items():
        if fam.name != "bert" or not pruned:
            continue
        layer = layers[li]
        n = fam.n_heads(layer)
        kept = [h for h in range(n) if h not in set(pruned)]
        if not kept:
            raise BadInputError(f"layer {li} would keep no attention head; prune fewer heads")
        idx = torch.as_tensor([h * d + j for h in kept for j in range(d)], dtype=torch.long)
        att = layer.attention.self
        att.query, att.key, att.value = (_keep_rows(x, idx) for x in (att.query, att.key, att.value))
        layer.attention.output.dense = _keep_cols(layer.attention.output.dense, idx)
        att.num_attention_heads = len(kept)
        att.all_head_size = len(kept) * d
    for li, pruned in (neurons or {}).items():
        if not pruned:
            continue
        layer = layers[li]
        inputs, out = fam.ffn_linears(layer)
        total = out.in_features
        idx = torch.as_tensor([j for j in range(total) if j not in set(pruned)], dtype=torch.long)
        if fam.name == "bert":
            layer.intermediate.dense = _keep_rows(layer.intermediate.dense, idx)
            layer.output.dense = _keep_cols(layer.output.dense, idx)
        else:
            ff = layer.layer[1].DenseReluDense
            for name in ("wi", "wi_0", "wi_1"):
                if hasattr(ff, name):
                    setattr(ff, name, _keep_rows(getattr(ff, name), idx))
            ff.wo = _keep_cols(ff.wo, idx)


def full_size(auto, heads: dict[int, list[int]] | None, neurons: dict[int, list[int]] | None) -> None:
    """The reverse of ``materialize``: put zero rows/columns back so the weights have the config's shapes."""
    import torch

    fam = family(auto)
    layers = fam.layers(auto)
    d = fam.head_dim(auto)
    n_full = auto.config.num_attention_heads if fam.name == "bert" else auto.config.num_heads
    ff_full = auto.config.intermediate_size if fam.name == "bert" else auto.config.d_ff

    def grow_rows(lin, idx, total):
        new = torch.nn.Linear(lin.in_features, total, bias=lin.bias is not None)
        with torch.no_grad():
            new.weight.zero_()
            new.weight[idx] = lin.weight
            if lin.bias is not None:
                new.bias.zero_()
                new.bias[idx] = lin.bias
        return new

    def grow_cols(lin, idx, total):
        new = torch.nn.Linear(total, lin.out_features, bias=lin.bias is not None)
        with torch.no_grad():
            new.weight.zero_()
            new.weight[:, idx] = lin.weight
            if lin.bias is not None:
                new.bias.copy_(lin.bias)
        return new

    for li, pruned in (heads or {}).items():
        layer = layers[li]
        if fam.name != "bert" or not pruned or fam.n_heads(layer) == n_full:
            continue
        kept = [h for h in range(n_full) if h not in set(pruned)]
        idx = torch.as_tensor([h * d + j for h in kept for j in range(d)], dtype=torch.long)
        att = layer.attention.self
        att.query, att.key, att.value = (grow_rows(x, idx, n_full * d) for x in (att.query, att.key, att.value))
        layer.attention.output.dense = grow_cols(layer.attention.output.dense, idx, n_full * d)
        att.num_attention_heads = n_full
        att.all_head_size = n_full * d
    for li, pruned in (neurons or {}).items():
        layer = layers[li]
        inputs, out = fam.ffn_linears(layer)
        if not pruned or out.in_features == ff_full:
            continue
        idx = torch.as_tensor([j for j in range(ff_full) if j not in set(pruned)], dtype=torch.long)
        if fam.name == "bert":
            layer.intermediate.dense = grow_rows(layer.intermediate.dense, idx, ff_full)
            layer.output.dense = grow_cols(layer.output.dense, idx, ff_full)
        else:
            ff = layer.layer[1].DenseReluDense
            for name in ("wi", "wi_0", "wi_1"):
                if hasattr(ff, name):
                    setattr(ff, name, grow_rows(getattr(ff, name), idx, ff_full))
            ff.wo = grow_cols(ff.wo, idx, ff_full)
