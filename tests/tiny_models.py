"""Tiny randomly initialised models built inside the tests (no downloads, a few KB each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = [w for w in "a b c d e f g h i j k l m n o p q r s t u v w x y z hello world the cat dog sat on mat".split()]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HIDDEN = 32


def make_tiny_tokenizer(folder: Path):
    """A WordPiece BERT tokenizer over a few dozen words, saved into ``folder``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)
    fast.save_pretrained(str(folder))
    return fast


def make_tiny_st_folder(tmp_path: Path, with_modules: bool = True, dense: bool = False,
                        name: str = "tiny-model", seed: int = 0, normalize: bool = True) -> Path:
    """A tiny BERT as a sentence-transformers folder (mean pooling, optional Dense 32->16, Normalize),
    or with ``with_modules=False`` a plain transformers folder with no modules.json."""
    import torch
    from transformers import BertConfig, BertModel

    folder = Path(tmp_path) / name
    raw = folder if not with_modules else Path(tmp_path) / f".{name}-raw"
    raw.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tiny_tokenizer(raw)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(str(raw), safe_serialization=True)
    if not with_modules:
        return folder
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    modules = [Transformer(str(raw), max_seq_length=64), Pooling(HIDDEN, "mean")]
    if dense:
        modules.append(Dense(HIDDEN, 16, activation_function=torch.nn.Tanh()))
    if normalize:
        modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(folder), create_model_card=False)
    return folder


def make_tiny_mt5_folder(tmp_path: Path, name: str = "tiny-mt5") -> Path:
    """A tiny full mT5 (encoder and decoder) with the tiny tokenizer, as a plain transformers folder."""
    import torch
    from transformers import MT5Config, MT5Model

    folder = Path(tmp_path) / name
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tiny_tokenizer(folder)
    torch.manual_seed(0)
    config = MT5Config(vocab_size=len(tokenizer), d_model=HIDDEN, d_kv=16, d_ff=64, num_layers=2,
                       num_decoder_layers=2, num_heads=2, pad_token_id=0, decoder_start_token_id=0)
    MT5Model(config).save_pretrained(str(folder), safe_serialization=True)
    return folder


UNIGRAM_PIECES = (
    ["\u2581", "\u2581hello", "\u2581world", "\u2581the", "\u2581cat", "\u2581dog", "hello", "world", "ing", "s"]
    + list("abcdefghijklmnopqrstuvwxyz") + [".", ",", "!", "?", "0", "1", "2"]
    + ["\u2581привет", "\u2581мир", "привет", "мир"] + list("приветмо")
    + ["你好", "世界", "你", "好", "世", "界"]
)


def make_tiny_unigram_st_folder(tmp_path: Path, name: str = "tiny-unigram", seed: int = 0) -> Path:
    """A tiny XLM-R-style model (Unigram SentencePiece tokenizer with Latin, Cyrillic and Han pieces) as a
    sentence-transformers folder (mean pooling, Normalize)."""
    import math

    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, decoders
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    pieces = list(dict.fromkeys(UNIGRAM_PIECES))
    vocab = [(s, 0.0) for s in specials] + [(p, -math.log(2 + i)) for i, p in enumerate(pieces)] + [("<mask>", 0.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", 0), ("</s>", 2)])
    raw = Path(tmp_path) / f".{name}-raw"
    raw.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>",
                                   model_max_length=64)
    fast.save_pretrained(str(raw))
    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=len(vocab), hidden_size=HIDDEN, num_hidden_layers=3, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=70, pad_token_id=1, bos_token_id=0,
                              eos_token_id=2)
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(str(raw), safe_serialization=True)
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    folder = Path(tmp_path) / name
    modules = [Transformer(str(raw), max_seq_length=64), Pooling(HIDDEN, "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder), create_model_card=False)
    return folder


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of a with the same row of b."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)
