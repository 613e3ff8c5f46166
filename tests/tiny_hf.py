"""Tiny Hugging Face checkpoints built inside the tests (nothing can be downloaded here).

`make_tiny_checkpoint(path)` writes a folder that `AutoTokenizer.from_pretrained` and
`AutoModelForSequenceClassification.from_pretrained` load like any hub checkpoint: a WordPiece
tokenizer trained on bundled Korean reviews and a 2-layer, 64-wide BERT with a 2-label head.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import sample_records


def korean_texts(n: int = 3000) -> list[str]:
    return [r["text"] for r in sample_records(n) if r["text"].strip()]


def make_tokenizer(path: Path, texts: list[str], vocab_size: int = 800):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=128)
    fast.save_pretrained(path)
    return fast


def make_tiny_checkpoint(path: str | Path, texts: list[str] | None = None, seed: int = 0) -> Path:
    """A tiny BERT sequence classifier with its tokenizer, saved as a Hugging Face folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(path, texts or korean_texts())
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=130, num_labels=2,
                        pad_token_id=tok.pad_token_id)
    BertForSequenceClassification(config).save_pretrained(path)
    return path


def make_tiny_kobert_checkpoint(path: str | Path, texts: list[str] | None = None, seed: int = 0) -> Path:
    """A KoBERT-style checkpoint: a SentencePiece (unigram) `spiece.model` declared as XLNetTokenizer,
    as skt/kobert-base-v1 ships it, and a tiny BERT classifier over its vocabulary."""
    import sentencepiece as spm
    import torch
    from transformers import BertConfig, BertForSequenceClassification, XLNetTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    corpus = path / "corpus.txt"
    corpus.write_text("\n".join(texts or korean_texts()), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(path / "spiece"), vocab_size=2000,
                                   character_coverage=0.9995, model_type="unigram")
    corpus.unlink()
    (path / "spiece.vocab").unlink()
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLNetTokenizer",
                                                            "do_lower_case": False, "keep_accents": True}))
    tok = XLNetTokenizer.from_pretrained(str(path))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=130, num_labels=2,
                        pad_token_id=tok.pad_token_id)
    BertForSequenceClassification(config).save_pretrained(path)
    return path
