"""Keeping parts of a Hugging Face encoder fixed during training: the embedding module and the lowest N layers."""

from __future__ import annotations

from ..errors import BadInputError


def lower_layers(auto_model, n: int) -> list:
    """The embedding module(s) and the lowest n transformer layers of a Hugging Face encoder; a clear
    error when it has no layer stack or fewer than n layers."""
    layers = _layer_stack(auto_model)
    if layers is None or n > len(layers):
        found = "no layer stack found" if layers is None else f"it has {len(layers)} layers"
        raise BadInputError(
            f"cannot freeze the lowest {n} layers of the student ({type(auto_model).__name__}): {found}; "
            "use a smaller freeze_layers (--freeze-layers) or 0"
        )
    embeddings = [auto_model.get_input_embeddings(), getattr(auto_model, "embeddings", None)]
    return [m for m in embeddings if m is not None] + layers[:n]


def freeze_lower_layers(auto_model, n: int) -> None:
    """Keep the embedding module and the lowest n transformer layers of a Hugging Face encoder fixed."""
    for module in lower_layers(auto_model, n):
        module.requires_grad_(False)


def _layer_stack(auto_model):
    """The list of transformer layers of a BERT / XLM-R / MiniLM (encoder.layer) or DistilBERT (transformer.layer) model."""
    for outer, inner in (("encoder", "layer"), ("transformer", "layer")):
        layers = getattr(getattr(auto_model, outer, None), inner, None)
        if layers is not None:
            return list(layers)
    return None
