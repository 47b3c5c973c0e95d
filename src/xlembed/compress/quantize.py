"""int8 that keeps every language: dynamic int8 MatMuls with their outlier input channels kept in fp32.

Measured on multilingual-e5-small (15 Tatoeba languages, ``query: `` prefix, this 2-core AMD EPYC):
plain ONNX Runtime dynamic int8 (per-channel weights, reduce_range) lost 0.83 points on average and up
to 1.45 on one language (kor). The loss is in the activations: ONNX Runtime quantizes each MatMul input
with ONE scale per tensor, and a few hidden channels carry values 10-40x the median (in layer 4's FFN
output projection one channel reaches 70 where the median channel is 1.9), so every other channel is
quantized coarsely. Keeping the 4 (``outlier_channels``) largest input channels of a MatMul in fp32
(the LLM.int8() decomposition: x W = (x * mask) W  +  x[:, idx] W[idx]) and quantizing the rest, in all
72 MatMuls (the first version of this recipe, before attention fusion): mean +0.06 (89.22 vs 89.16 fp32),
every language within 0.25.
The channels are found by running the fp32 graph on calibration text; the default calibration text
is sampled from the tokenizer's own unigram language model (any language the tokenizer was trained
on), which chose channels as well as real multilingual news text did (same figures within 0.1).

The split costs speed: per split input a Mul and a Gather, per MatMul a small fp32 MatMul and an Add.
MatMuls that share an input (Q, K, V) share its mask and Gather (ONNX Runtime then quantizes that input
once, as for plain int8) and the bias Add stays right after the int8 MatMul (ONNX Runtime fuses it).
Where to split was chosen on languages the recipe was NOT tuned on. Splitting only the FFN output
projections (largest channel >= 8x the median: 8 of 72 MatMuls, the recipe of 2026-12-07) kept the 15
shared Tatoeba languages (mean loss 0.08, worst 0.45) but not 49 held-out languages (software-message
bitext from the gettext catalogs, ``benchmarks/int8_heldout.py``): mean 0.42, worst 1.6 (Finnish), four
languages above 1.0; plain int8 there: 0.72 / 2.55 (Slovak), bf16 -0.02 / 0.30. Held-out mean / worst
loss of the alternatives (pilots on the same functions): FFN inputs split too (ratio >= 8, 20 MatMuls)
0.17 / 1.2 (Hungarian); every MatMul, 4 channels: 0.00 / 0.95 (Khmer); every MatMul, 8 channels (the
default): -0.10 / 0.75 (Marathi). On the 15 Tatoeba languages, every MatMul: -0.12 / 0.20 (4 channels).
Speed, 2 threads, 2,000 mixed Tatoeba sentences, batch 32 (the same run): plain int8 1,057-1,235
sentences/s, every MatMul with 8 channels 800-987, sentence-transformers fp32 179-180: 4.4-5.5x it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..backends.fast_tokenizer import FastTokenizer
from ..errors import BadInputError, ExportError
from .onnx_io import data_file, quiet_export

# Dynamic int8 settings. Per-channel weight scales: cosine to torch fp32 mean 0.9969 (min 0.987) over
# 2,500 Tatoeba sentences vs 0.9903 (min 0.977) per-tensor; same speed. Quantizing the Gather
# (embedding table) too costs no accuracy and makes the file 114 MB instead of 389 MB (MatMul only).
# reduce_range (7-bit weights) changed nothing on an avx512_vnni host, but on an AVX2-only host (no
# VNNI: the u8s8 kernel saturates) Tatoeba jpn (500 pairs) fell 87.6 -> 85.0 without it, 86.9 with it.
QUANT_OPTIONS: dict = {
    "per_channel": True,
    "reduce_range": True,
    "op_types_to_quantize": None,  # None: every op type onnxruntime can quantize (MatMul, Gather, ...)
    "outlier_channels": 8,  # input channels of each MatMul kept in fp32 (0: plain dynamic int8)
    "outlier_min_ratio": 0.0,  # split only MatMul inputs whose largest channel is >= this x the median (0: all)
    "outlier_scope": "all",  # which MatMuls may be split: "down" (input wider than output: FFN output) or "all"
    "calibration_texts": 400,
    "calibration_tokens": 24,
    "extra_options": {},
}
OUTLIER_SUFFIX = "_xlembed_outliers"


def quantize_int8(src: Path, dst: Path, tokenizer_file: Path, *, prefix: str = "",
                  texts: Sequence[str] | None = None, options: dict | None = None) -> dict:
    """Write ``dst``, the int8 version of the fp32 ONNX graph ``src``; returns what was done.

    ``tokenizer_file`` (tokenizer.json) tokenizes the calibration text; ``texts`` replaces the default
    calibration text (sampled from the tokenizer, see ``calibration_texts``); ``prefix`` is the model's
    prompt, put before each calibration text as ``encode`` would.
    """
    import onnx

    opts = {**QUANT_OPTIONS, **(options or {})}
    k = int(opts["outlier_channels"])
    facts = {"outlier_channels": k, "matmuls_split": 0, "calibration_texts": 0}
    model = onnx.load(str(src))
    excluded: list[str] = []
    if k > 0:
        if texts is None:
            texts = calibration_texts(tokenizer_file, opts["calibration_texts"], opts["calibration_tokens"])
        texts = [prefix + t for t in texts]
        maxima = activation_maxima(model, tokenizer_file, texts)
        excluded = split_outlier_channels(model, maxima, k, float(opts["outlier_min_ratio"]), opts["outlier_scope"])
        facts.update(matmuls_split=sum(name.endswith("_fp32") for name in excluded), calibration_texts=len(texts))
    external = data_file(src).exists() or model.ByteSize() > 1_800_000_000
    split = dst.with_name(dst.stem + ".split.onnx")
    try:
        onnx.save(model, str(split), save_as_external_data=external)
        del model
        _quantize_dynamic(split, dst, opts, excluded, external)
    finally:
        split.unlink(missing_ok=True)
        data_file(split).unlink(missing_ok=True)
    return facts


def _quantize_dynamic(src: Path, dst: Path, opts: dict, excluded: list[str], external: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with quiet_export():
            quantize_dynamic(
                str(src),
                str(dst),
                weight_type=QuantType.QInt8,
                per_channel=opts.get("per_channel", False),
                reduce_range=opts.get("reduce_range", False),
                op_types_to_quantize=opts.get("op_types_to_quantize"),
                nodes_to_exclude=excluded,
                use_external_data_format=external,
                extra_options=dict(opts.get("extra_options") or {}),
            )
    except Exception as exc:
        raise ExportError(f"int8 quantization of {src.name} failed: {type(exc).__name__}: {exc}") from exc


def calibration_texts(tokenizer_file: Path, n: int = 400, n_tokens: int = 24, seed: int = 0) -> list[str]:
    """``n`` texts of ``n_tokens`` pieces drawn from the tokenizer itself, decoded to strings.

    A unigram (SentencePiece) tokenizer is a language model: pieces are drawn with its own probabilities,
    so the text mixes the languages and scripts it was trained on in their proportions. Other
    tokenizers (WordPiece, BPE) have no scores: pieces are drawn uniformly from the vocabulary.
    """
    data = json.loads(Path(tokenizer_file).read_text(encoding="utf-8"))
    special = {t["id"] for t in data.get("added_tokens", []) if t.get("special")}
    tokenizer = FastTokenizer(tokenizer_file)
    model = data["model"]
    if model.get("type") == "Unigram":
        ids = [i for i in range(len(model["vocab"])) if i not in special]
        weights = np.exp(np.array([model["vocab"][i][1] for i in ids], dtype=np.float64))
    else:
        vocab = model.get("vocab") or {}
        ids = [i for i in sorted(set(vocab.values())) if i not in special]
        weights = np.ones(len(ids))
    if not ids:
        raise BadInputError(f"{tokenizer_file} has no ordinary tokens to make calibration text from")
    rng = np.random.default_rng(seed)
    draws = rng.choice(np.asarray(ids), size=(n, n_tokens), p=weights / weights.sum())
    return [tokenizer.decode([int(i) for i in row]).strip() or "." for row in draws]


def activation_maxima(model, tokenizer_file: Path, texts: Sequence[str], batch_size: int = 32) -> dict[str, np.ndarray]:
    """Largest |value| of each input channel of every MatMul with a constant weight, over the texts' real
    tokens (padding left out), from running the fp32 graph with those inputs exposed as outputs."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    matmuls = weight_matmuls(model)
    names = sorted({node.input[0] for node in matmuls})
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the named tensors
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    tokenizer = FastTokenizer(tokenizer_file)
    maxima: dict[str, np.ndarray] = {}
    for start in range(0, len(texts), batch_size):
        feed = tokenizer.batch(texts[start:start + batch_size], max_length=512)
        results = dict(zip(outputs, session.run(None, {k: feed[k] for k in inputs})))
        keep = feed["attention_mask"].astype(bool)
        for name in names:
            x = results[name]
            x = x[keep] if x.ndim == 3 and x.shape[:2] == keep.shape else x.reshape(-1, x.shape[-1])
            top = np.abs(x).max(axis=0)
            maxima[name] = np.maximum(maxima[name], top) if name in maxima else top
    return maxima


def weight_matmuls(model) -> list:
    """MatMul nodes whose second input is a 2-D initializer (the Linear layers), in graph order."""
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and len(shapes.get(n.input[1], ())) == 2]


def split_outlier_channels(model, maxima: dict[str, np.ndarray], k: int, min_ratio: float = 0.0,
                           scope: str = "all") -> list[str]:
    """Rewrite weight MatMuls as (x * mask) W + x[..., idx] W[idx] where idx are the ``k`` input channels with
    the largest calibrated |x|; returns the names of the small fp32 MatMuls and Gathers (not to be quantized).

    Only inputs whose largest channel is at least ``min_ratio`` times their median channel are split (0: all),
    and with ``scope`` "down" only MatMuls that project down (more input than output channels: the FFN output).
    MatMuls that share an input (Q, K, V) share its mask and gather, so ONNX Runtime quantizes that input
    once; a bias Add right after the MatMul is moved before the outlier Add, so ONNX Runtime can fuse it
    into the int8 MatMul.
    """
    from onnx import helper, numpy_helper

    if scope not in ("down", "all"):
        raise BadInputError(f"outlier_scope must be 'down' or 'all', got {scope!r}")
    weights = {i.name: i for i in model.graph.initializer}
    targets = {n.output[0] for n in weight_matmuls(model)}  # outputs are unique names (protobuf wrappers are not)
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    split_inputs: dict[str, tuple[str, str, np.ndarray]] = {}  # x -> (masked x, outlier columns, idx)
    nodes, excluded, added = [], [], []
    moved_bias: set[str] = set()  # outputs of the bias Adds rebuilt next to the int8 MatMul
    for node in model.graph.node:
        if node.output[0] in moved_bias:
            continue  # a bias Add folded into the split below
        if node.output[0] not in targets:
            nodes.append(node)
            continue
        x, w_name = node.input
        w = numpy_helper.to_array(weights[w_name])
        if (k >= w.shape[0] or x not in maxima or _outlier_ratio(maxima[x]) < min_ratio
                or (scope == "down" and w.shape[0] <= w.shape[1])):
            nodes.append(node)
            continue
        if x not in split_inputs:
            idx = np.sort(np.argsort(-maxima[x], kind="stable")[:k]).astype(np.int64)
            mask = np.ones(w.shape[0], dtype=w.dtype)
            mask[idx] = 0
            px = x + OUTLIER_SUFFIX
            added += [numpy_helper.from_array(mask, px + "_mask"), numpy_helper.from_array(idx, px + "_idx")]
            nodes += [helper.make_node("Mul", [x, px + "_mask"], [px + "_xmain"], name=px + "_mask_mul"),
                      helper.make_node("Gather", [x, px + "_idx"], [px + "_xout"], name=px + "_gather", axis=-1)]
            excluded.append(px + "_gather")
            split_inputs[x] = (px + "_xmain", px + "_xout", idx)
        xmain, xout, idx = split_inputs[x]
        p = (node.name or node.output[0]) + OUTLIER_SUFFIX
        added.append(numpy_helper.from_array(np.ascontiguousarray(w[idx]), p + "_w"))
        ymain, out = p + "_ymain", node.output[0]
        nodes.append(helper.make_node("MatMul", [xmain, w_name], [ymain], name=node.name or p + "_main"))
        bias_add = _bias_add(consumers.get(out, []), out, weights)
        if bias_add is not None:
            bias = next(i for i in bias_add.input if i != out)
            nodes.append(helper.make_node("Add", [ymain, bias], [p + "_ybias"], name=p + "_bias"))
            ymain, out = p + "_ybias", bias_add.output[0]
            moved_bias.add(out)
        nodes += [helper.make_node("MatMul", [xout, p + "_w"], [p + "_yout"], name=p + "_fp32"),
                  helper.make_node("Add", [ymain, p + "_yout"], [out], name=p + "_add")]
        excluded.append(p + "_fp32")
    model.graph.initializer.extend(added)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return excluded


def _bias_add(users: list, name: str, weights: dict):
    """The Add of a 1-D constant that is the only user of ``name``, if that is what follows the MatMul."""
    if len(users) != 1 or users[0].op_type != "Add":
        return None
    others = [i for i in users[0].input if i != name]
    if len(others) == 1 and others[0] in weights and len(weights[others[0]].dims) == 1:
        return users[0]
    return None


def _outlier_ratio(channel_maxima: np.ndarray) -> float:
    """Largest channel's calibrated |x| over the median channel's."""
    return float(np.max(channel_maxima) / max(float(np.median(channel_maxima)), 1e-12))
