"""Tiny randomly initialised models built inside the tests (no downloads, a few KB each)."""

from __future__ import annotations

from pathlib import Path

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
