"""Pretrain a small Korean review encoder (BERT, masked-LM) from the review corpus.

Nothing can be downloaded from a model hub, so the encoder the sentiment models fine-tune is
learnt here, from every review of the corpus (neutral ratings included: no labels are used):

1. the texts are read and normalised like everywhere else (`Cleaner.normalise`);
2. a WordPiece tokenizer is trained on them;
3. a `BertForMaskedLM` is trained with a plain torch loop: BERT's 80/10/10 masking, batches of
   similar lengths padded only as far as needed, AdamW with linear warmup and decay, gradient
   clipping, bf16 autocast on CUDA (the pieces shared with fine-tuning live in `training.py`).

The result is a Hugging Face folder: `AutoTokenizer.from_pretrained(folder)` and
`AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)` load it (the encoder
weights carry over; the pooler and classifier head start fresh), beside `pretrain.json` with the
config and the run's numbers. The folder is written atomically: an existing one is replaced only
when the whole run succeeded.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from reviewops.data.ingest import detect_format, json_object, open_lines, text_field
from reviewops.errors import ConfigError, InputError
from reviewops.fsutil import atomic_folder
from reviewops.models.training import adamw, autocast, length_batches, pick_device, warmup_then_linear_decay
from reviewops.text.clean import Cleaner

log = logging.getLogger(__name__)

FORMAT = "reviewops-bert-mlm/1"
META_FILE = "pretrain.json"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4, in this order


@dataclass
class PretrainConfig:
    vocab_size: int = 16000
    hidden_size: int = 256
    layers: int = 4
    heads: int = 4
    intermediate: int = 1024
    max_length: int = 128  # tokens per text, [CLS] and [SEP] included; also the position table's size
    batch_size: int = 128
    lr: float = 5e-4
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    epochs: float = 1.0
    max_steps: int | None = None  # when set, overrides epochs
    mask_prob: float = 0.15
    seed: int = 0
    max_texts: int | None = None  # read only the first N non-empty texts

    def validate(self) -> None:
        """ConfigError naming the first setting that cannot work."""
        problems = {
            "vocab_size": self.vocab_size >= 100,
            "hidden_size": self.hidden_size >= 1 and self.heads >= 1 and self.hidden_size % self.heads == 0,
            "layers": self.layers >= 1,
            "intermediate": self.intermediate >= 1,
            "max_length": self.max_length >= 3,  # [CLS], one token, [SEP]
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "weight_decay": self.weight_decay >= 0,
            "epochs": self.epochs > 0,
            "max_steps": self.max_steps is None or self.max_steps >= 1,
            "mask_prob": 0 < self.mask_prob < 1,
            "max_texts": self.max_texts is None or self.max_texts >= 1,
        }
        for name, ok in problems.items():
            if not ok:
                extra = (f" (heads={self.heads}: hidden_size must be a multiple)"
                         if name == "hidden_size" else "")
                raise ConfigError(f"pretrain: {name}={getattr(self, name)!r} is not usable{extra}")


# --- reading --------------------------------------------------------------------------------------


def _jsonl_texts(path: Path) -> Iterator[str]:
    for lineno, line in open_lines(path):
        if line.strip():
            where = f"{path}:{lineno}"
            yield text_field(json_object(line, where), where)


def _nsmc_texts(path: Path) -> Iterator[str]:
    lines = open_lines(path)
    first = next(lines, None)
    if first is None:
        raise InputError(f"{path}: file is empty")
    header = first[1].rstrip("\r\n").lstrip("\ufeff").split("\t")
    if "document" not in header:
        raise InputError(f"{path}:1: missing column 'document' (NSMC TSV needs id, document, label)")
    col = header.index("document")
    for lineno, line in lines:
        line = line.rstrip("\r\n")
        if not line:
            continue
        cells = next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE))
        if len(cells) <= col:
            raise InputError(f"{path}:{lineno}: expected {len(header)} tab-separated columns, "
                             f"got {len(cells)}")
        yield cells[col]


def read_texts(path: Path, max_texts: int | None = None) -> list[str]:
    """The normalised, non-empty review texts of a JSONL(.gz) corpus (`text`) or NSMC TSV (`document`)."""
    path = Path(path)
    raw = _jsonl_texts(path) if detect_format(path) == "jsonl" else _nsmc_texts(path)
    cleaner = Cleaner()
    texts: list[str] = []
    for text in raw:
        if max_texts is not None and len(texts) >= max_texts:
            break
        text = cleaner.normalise(text)[0]
        if text:
            texts.append(text)
    if not texts:
        raise InputError(f"{path}: no review texts to pretrain on")
    return texts


# --- tokenizer ------------------------------------------------------------------------------------


def _is_bert_punctuation(c: str) -> bool:
    """The characters BertPreTokenizer splits off as words of their own (never ##-continuations)."""
    o = ord(c)
    ascii_punctuation = 33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126
    return ascii_punctuation or unicodedata.category(c)[0] == "P"


def _alphabet(texts: list[str], limit: int) -> list[str]:
    """The `limit` most frequent non-space characters of `texts`, ties broken by code point."""
    counts = Counter()
    for s in range(0, len(texts), 50_000):  # one C-speed pass per chunk, not a Python loop per character
        counts.update("".join(texts[s:s + 50_000]))
    ranked = sorted((c for c in counts if not c.isspace()), key=lambda c: (-counts[c], c))
    return sorted(ranked[:limit])


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: Path, max_length: int = 128,
                    limit_alphabet: int | None = None):
    """Train a WordPiece tokenizer on `texts` (already normalised) and save it to `out_dir`; returns it.

    Alphabet: Korean has thousands of syllables, and WordPiece turns a word with one unknown
    character into [UNK] whole, so the alphabet is generous: the `limit_alphabet` most frequent
    characters (default vocab_size // 4 within 1,000..2,000; ~4,100 distinct characters occur in
    the 605k-review corpus and its 2,000 most frequent cover 99.97% of character occurrences),
    each also as a ##-continuation. A vocab_size smaller than the alphabet needs comes out larger.

    Determinism: tokenizers' trainer numbers the ##-continuations in hash-map order, and those
    numbers break ties between equally frequent merges, so the same texts can give different
    vocabularies (huggingface/tokenizers#1794). Registering every continuation up front, in a
    fixed order, makes the result depend on the texts alone.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    if limit_alphabet is None:
        limit_alphabet = min(2000, max(1000, vocab_size // 4))
    alphabet = _alphabet(texts, limit_alphabet)
    continuations = [f"##{c}" for c in alphabet if not _is_bert_punctuation(c)]

    def pipeline(model) -> Tokenizer:
        tok = Tokenizer(model)
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()  # decode() joins ##-pieces back into words
        return tok

    # the continuations pass as "special tokens" so the trainer numbers them first, in our order;
    # the tokenizer is then rebuilt from the learnt vocabulary with only the real special tokens
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS + continuations, show_progress=False,
        initial_alphabet=alphabet, limit_alphabet=len(alphabet))
    learnt = pipeline(models.WordPiece(unk_token="[UNK]"))
    learnt.train_from_iterator(texts, trainer, length=len(texts))
    tok = pipeline(models.WordPiece(vocab=learnt.get_vocab(with_added_tokens=False), unk_token="[UNK]"))
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=max_length)
    fast.save_pretrained(out_dir)
    return fast


def _encode(tok, texts: list[str], max_length: int, n_special: int,
            chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """All texts as token ids, [CLS]/[SEP] added, truncated: one flat int32 array and the offsets
    of each text in it (a list of lists would take ~10x the memory on the full corpus). Texts with
    nothing to predict (only [UNK]s: characters outside the alphabet) are left out."""
    ids, lengths = [], []
    for s in range(0, len(texts), chunk):
        enc = tok(texts[s:s + chunk], truncation=True, max_length=max_length,
                  return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        enc = [e for e in enc if max(e) >= n_special]
        lengths.extend(len(e) for e in enc)
        ids.append(np.fromiter((i for e in enc for i in e), dtype=np.int32))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.concatenate(ids), offsets


# --- batches --------------------------------------------------------------------------------------


def _mask_batch(ids, offsets, rows, pad_id: int, mask_id: int, n_special: int, vocab: int,
                mask_prob: float, gen) -> dict:
    """Pad one batch and mask it the BERT way: `mask_prob` of the real tokens are chosen, 80% of
    those become [MASK], 10% a random token, 10% stay; the loss is taken on the chosen ones.
    Returns CPU tensors, the chosen positions as flat indices and their original ids."""
    import torch

    rows = np.asarray(rows)
    lengths = offsets[rows + 1] - offsets[rows]
    batch = np.full((len(rows), int(lengths.max())), pad_id, dtype=np.int64)
    for r, (row, n) in enumerate(zip(rows, lengths, strict=True)):
        batch[r, :n] = ids[offsets[row]:offsets[row] + n]
    input_ids = torch.from_numpy(batch)
    attention_mask = input_ids.ne(pad_id)
    maskable = input_ids.ge(n_special)  # every special token ([CLS], [SEP], [PAD]...) has an id < n_special

    chosen = torch.bernoulli(torch.full(input_ids.shape, mask_prob), generator=gen).bool() & maskable
    if not chosen.any():  # a tiny batch drew nothing: choose its first real token, the loss needs one
        # (every text has one: _encode leaves out those without)
        chosen.view(-1)[maskable.view(-1).nonzero()[0]] = True
    positions = chosen.view(-1).nonzero().squeeze(1)
    targets = input_ids.view(-1)[positions].clone()

    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=gen).bool() & chosen
    to_random = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=gen).bool() & chosen & ~to_mask
    random_ids = torch.randint(n_special, vocab, input_ids.shape, generator=gen)
    input_ids = torch.where(to_mask, mask_id, torch.where(to_random, random_ids, input_ids))
    return {"input_ids": input_ids, "attention_mask": attention_mask, "positions": positions,
            "targets": targets}


# --- training -------------------------------------------------------------------------------------


def pretrain(corpus: Path, out_dir: Path, cfg: PretrainConfig, device: str | None = None, log_every: int = 50,
             on_step: Callable[[int, float], None] | None = None) -> dict:
    """Pretrain a BERT encoder on `corpus` with masked-LM and save it to `out_dir`.

    `on_step(step, loss)` is called after every optimiser step (1-based step, that step's loss).
    Returns {"steps", "first_loss", "final_loss" (mean of the last 10 steps' losses),
    "seconds" (the training loop), "samples_per_second", "device"} plus a few counts.
    """
    cfg.validate()
    log_every = max(1, log_every)
    corpus, out_dir = Path(corpus), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    device = pick_device(device)
    started = time.perf_counter()
    texts = read_texts(corpus, cfg.max_texts)
    log.info("pretrain: %d texts from %s", len(texts), corpus)

    with atomic_folder(out_dir) as tmp:  # replaces out_dir only when the whole run succeeded
        t0 = time.perf_counter()
        tok = train_tokenizer(texts, cfg.vocab_size, tmp, max_length=cfg.max_length)
        tokenizer_seconds = time.perf_counter() - t0
        tokens = _tokenise(tok, texts, cfg.max_length, corpus)
        del texts
        model = _new_model(tok, cfg, device)
        run = _train(model, tok, tokens, cfg, device, log_every, on_step)
        stats = run.stats(tokens, device, vocab_size=len(tok), tokenizer_seconds=tokenizer_seconds)
        _save_quietly(model, tmp)
        meta = {
            "format": FORMAT,
            "corpus": str(corpus),
            "config": asdict(cfg),
            "stats": stats,
            "cleaning_version": Cleaner().version,
            "loss_every": log_every,
            "loss_curve": run.curve(log_every),
            "total_seconds": round(time.perf_counter() - started, 3),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    return stats


@dataclass
class _Tokens:
    """Every text's token ids as one flat int32 array: text i is ids[offsets[i]:offsets[i + 1]] (a list
    of lists would take ~10x the memory on the full corpus)."""

    ids: np.ndarray
    offsets: np.ndarray
    left_out: int  # texts with nothing to predict (only [UNK]s: characters outside the alphabet)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _tokenise(tok, texts: list[str], max_length: int, corpus: Path) -> _Tokens:
    n_special = _special_count(tok)
    ids, offsets = _encode(tok, texts, max_length, n_special)
    if len(offsets) == 1:
        raise InputError(f"{corpus}: no text has a token to predict "
                         "(every character is outside the alphabet)")
    return _Tokens(ids, offsets, len(texts) - (len(offsets) - 1))


def _special_count(tok) -> int:
    """How many ids the special tokens take: they must be the first ones, so `id < n` tells them apart."""
    n_special = max(tok.all_special_ids) + 1
    assert sorted(tok.all_special_ids) == list(range(n_special)), "special tokens must take the first ids"
    return n_special


def _new_model(tok, cfg: PretrainConfig, device: str):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(cfg.seed)
    config = BertConfig(vocab_size=len(tok), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.layers,
                        num_attention_heads=cfg.heads, intermediate_size=cfg.intermediate,
                        max_position_embeddings=cfg.max_length, pad_token_id=tok.pad_token_id)
    return BertForMaskedLM(config).to(device)


def _batches_forever(lengths: list[int], batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    """Length-bucketed batches, epoch after epoch (each epoch shuffled anew from `rng`)."""
    while True:
        yield from length_batches(lengths, batch_size, rng)


@dataclass
class _Run:
    losses: list[float]
    samples: int
    seconds: float

    def stats(self, tokens: _Tokens, device: str, vocab_size: int, tokenizer_seconds: float) -> dict:
        texts = len(tokens.offsets) - 1
        return {
            "steps": len(self.losses),
            "first_loss": self.losses[0],
            "final_loss": float(np.mean(self.losses[-10:])),
            "seconds": round(self.seconds, 3),
            "samples_per_second": round(self.samples / self.seconds, 1),
            "device": device,
            "texts": texts,
            "texts_left_out": tokens.left_out,
            "tokens": int(tokens.lengths.sum()),
            "vocab_size": vocab_size,
            "epochs": round(self.samples / texts, 3),
            "tokenizer_seconds": round(tokenizer_seconds, 3),
        }

    def curve(self, every: int) -> list[float]:
        return [float(np.mean(self.losses[i:i + every])) for i in range(0, len(self.losses), every)]


def _train(model, tok, tokens: _Tokens, cfg: PretrainConfig, device: str, log_every: int,
           on_step: Callable[[int, float], None] | None) -> _Run:
    """The masked-LM loop: mask a batch, forward (the LM head only where the loss is taken), clip,
    step, and report the loss."""
    import torch
    import torch.nn.functional as F

    cuda = device.startswith("cuda")
    n_special, vocab, lengths = _special_count(tok), len(tok), tokens.lengths
    per_epoch = math.ceil(len(lengths) / cfg.batch_size)
    total = cfg.max_steps if cfg.max_steps is not None else max(1, math.ceil(cfg.epochs * per_epoch))
    opt = adamw(model, cfg.lr, cfg.weight_decay, device, betas=(0.9, 0.98), eps=1e-6)
    sched = warmup_then_linear_decay(opt, cfg.warmup_ratio, total)
    ctx = autocast(device)
    batches = _batches_forever(lengths.tolist(), cfg.batch_size, random.Random(cfg.seed))
    gen = torch.Generator().manual_seed(cfg.seed)  # masking
    log.info("pretrain: %d steps (%.2f epochs of %d batches), %d parameters, vocab %d, on %s",
             total, total / per_epoch, per_epoch, model.num_parameters(), vocab, device)

    model.train()
    losses: list[float] = []
    samples = 0
    t0 = time.perf_counter()
    with _progress(total) as bar:
        for step in range(1, total + 1):
            rows = next(batches)
            b = _mask_batch(tokens.ids, tokens.offsets, rows, tok.pad_token_id, tok.mask_token_id, n_special,
                            vocab, cfg.mask_prob, gen)
            b = {k: (v.pin_memory() if cuda else v).to(device, non_blocking=True) for k, v in b.items()}
            lr = sched.get_last_lr()[0]
            with ctx:
                logits = _masked_logits(model, b)
            loss = F.cross_entropy(logits.float(), b["targets"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()

            losses.append(loss.item())
            samples += len(rows)
            bar.update(1)
            if step % log_every == 0 or step == total:
                recent = float(np.mean(losses[-log_every:]))
                bar.set_postfix(loss=f"{recent:.3f}", lr=f"{lr:.2e}")
                log.info("pretrain: step %d/%d loss %.4f lr %.2e", step, total, recent, lr)
            if on_step is not None:
                on_step(step, losses[-1])
    return _Run(losses, samples, time.perf_counter() - t0)


def _masked_logits(model, batch: dict):
    """The LM head's logits at the masked positions only: ~7x less work than over every position."""
    hidden = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    hidden = hidden.reshape(-1, hidden.size(-1)).index_select(0, batch["positions"])
    return model.cls(hidden)


def _progress(total: int):
    from tqdm.auto import tqdm

    # disable=None: a bar on a terminal only, so logs and captured output stay clean
    return tqdm(total=total, desc="pretrain", unit="step", file=sys.stderr, disable=None, dynamic_ncols=True)


def _save_quietly(model, folder: Path) -> None:
    """save_pretrained without transformers' own progress bar (ours already said what happened)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
