"""Transformer sentiment models: fine-tune KoBERT (`skt/kobert-base-v1`, the default) or any Hugging
Face `AutoModelForSequenceClassification` checkpoint (a hub id or a local folder).

The loop reads top to bottom: tokenise once, batch by length (dynamic padding), AdamW (fused on
CUDA), linear warm-up and decay, bf16 autocast on CUDA, gradient accumulation, validation each
epoch with early stopping, a checkpoint each epoch that `resume=True` continues from.

Saved model folder: `hf/` (the fine-tuned checkpoint and its tokenizer) and `meta.json` (format,
parameters, SHA-256 of every file under `hf/`); loading verifies the checksums.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from reviewops.errors import ModelArtifactError
from reviewops.fsutil import atomic_folder
from reviewops.text.clean import Cleaner

log = logging.getLogger(__name__)

FORMAT = "reviewops-transformer/1"
DEFAULT_CHECKPOINT = "skt/kobert-base-v1"
META_FILE, HF_DIR = "meta.json", "hf"
KOBERT_TOKENIZER_CLASSES = {"XLNetTokenizer", "KoBERTTokenizer", "KoBertTokenizer"}


@dataclass
class TransformerParams:
    checkpoint: str = DEFAULT_CHECKPOINT
    max_length: int = 128
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    epochs: int = 2
    max_steps: int | None = None  # stop after this many optimiser steps (quick runs, tests)
    patience: int = 1  # epochs without a better validation accuracy before stopping
    class_weight: str | None = "balanced"  # weigh the loss so both labels count alike (most reviews are positive)
    bf16: bool = True  # on CUDA only
    compile: bool = False  # torch.compile the model (pays on long GPU runs)
    num_workers: int = 2
    eval_batch_size: int = 128
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> TransformerParams:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _device(device: str | None = None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def load_tokenizer(checkpoint: str | Path):
    """The checkpoint's tokenizer. KoBERT's SentencePiece tokenizer is loaded with sampling off, so
    the same text always gives the same pieces (the old system sampled subwords at prediction)."""
    from transformers import AutoTokenizer

    try:
        cfg_path = Path(checkpoint) / "tokenizer_config.json"
        cls_name = json.loads(cfg_path.read_text()).get("tokenizer_class") if cfg_path.is_file() else None
        if cls_name in KOBERT_TOKENIZER_CLASSES or "kobert" in str(checkpoint).lower():
            from transformers import XLNetTokenizer

            return XLNetTokenizer.from_pretrained(str(checkpoint), sp_model_kwargs={"enable_sampling": False})
        return AutoTokenizer.from_pretrained(str(checkpoint))
    except Exception as exc:  # noqa: BLE001 - any failure here means a missing or broken checkpoint
        raise ModelArtifactError(_load_message(checkpoint, "tokenizer", exc)) from None


def _load_message(checkpoint: str | Path, what: str, exc: Exception) -> str:
    hint = "" if Path(checkpoint).exists() else " (no model hub is reachable here: give a local checkpoint folder)"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"cannot load the {what} of checkpoint {checkpoint}: {first}{hint}"


def load_classifier(checkpoint: str | Path, num_labels: int = 2):
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(str(checkpoint), num_labels=num_labels)
    except Exception as exc:  # noqa: BLE001 - safetensors, torch and hub errors all mean a broken checkpoint
        raise ModelArtifactError(_load_message(checkpoint, "weights", exc)) from None


class TransformerModel:
    """A fine-tuned classifier: normalise → tokenise → logits → P(positive)."""

    def __init__(self, tokenizer, model, params: TransformerParams, cleaner: Cleaner | None = None,
                 device: str | None = None) -> None:
        self.tokenizer, self.model, self.params = tokenizer, model, params
        self.cleaner = cleaner or Cleaner()
        self.device = _device(device)
        self.model.to(self.device)
        self.history: list[dict] = []

    @classmethod
    def from_checkpoint(cls, params: TransformerParams, device: str | None = None) -> TransformerModel:
        tok = load_tokenizer(params.checkpoint)
        return cls(tok, load_classifier(params.checkpoint), params, device=device)

    def encode(self, texts) -> list[list[int]]:
        norm = [self.cleaner.normalise(t if isinstance(t, str) else "")[0] for t in texts]
        return self.tokenizer(norm, truncation=True, max_length=self.params.max_length)["input_ids"]

    def _pad(self, batch: list[list[int]]):
        return self.tokenizer.pad({"input_ids": batch}, return_tensors="pt")

    def predict_proba(self, texts, batch_size: int | None = None) -> np.ndarray:
        import torch

        ids = self.encode(list(texts))
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.empty(len(ids), dtype=float)
        bs = batch_size or self.params.eval_batch_size
        self.model.eval()
        with torch.inference_mode(), _autocast(self.device, self.params.bf16):
            for i in range(0, len(order), bs):
                idx = order[i : i + bs]
                enc = self._pad([ids[j] for j in idx]).to(self.device)
                logits = self.model(**enc).logits.float()
                out[idx] = torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()
        return out

    # --- persistence -------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            model = getattr(self.model, "_orig_mod", self.model)
            model.save_pretrained(tmp / HF_DIR)
            self.tokenizer.save_pretrained(tmp / HF_DIR)
            meta = {"format": FORMAT, "params": asdict(self.params), "sha256": _checksums(tmp / HF_DIR),
                    "cleaner_version": self.cleaner.version, "history": self.history}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None) -> TransformerModel:
        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text())
        except FileNotFoundError:
            raise ModelArtifactError(f"model artifact {folder}: {META_FILE} is missing") from None
        except json.JSONDecodeError:
            raise ModelArtifactError(f"model artifact {folder}: {META_FILE} is not valid JSON") from None
        if meta.get("format") != FORMAT:
            raise ModelArtifactError(f"model artifact {folder}: unknown format {meta.get('format')!r}")
        actual = _checksums(folder / HF_DIR)
        expected = meta.get("sha256", {})
        missing = sorted(set(expected) - set(actual))
        if missing:
            raise ModelArtifactError(f"model artifact {folder}: missing {', '.join(missing)}")
        changed = sorted(k for k in expected if actual[k] != expected[k])
        if changed:
            raise ModelArtifactError(f"model artifact {folder}: {', '.join(changed)} does not match its checksum "
                                     "(broken or tampered)")
        params = TransformerParams.from_dict(meta.get("params", {}))
        model = cls(load_tokenizer(folder / HF_DIR), load_classifier(folder / HF_DIR), params, device=device)
        model.history = meta.get("history", [])
        return model


def _checksums(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


def _autocast(device: str, bf16: bool):
    import torch

    if device.startswith("cuda") and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return _NullContext()


def length_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of similar lengths (little padding), in a shuffled order that depends on `seed`."""
    rng = random.Random(seed)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    pool = batch_size * 50
    batches = []
    for i in range(0, len(idx), pool):
        chunk = sorted(idx[i : i + pool], key=lambda j: lengths[j])
        batches.extend(chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _balanced_accuracy(score: np.ndarray, labels: np.ndarray) -> float:
    """Mean of the per-label accuracies: what the balanced (NSMC-style) evaluation set measures."""
    hits = (score >= 0.5) == labels
    return float(np.mean([hits[labels == c].mean() for c in (0, 1) if (labels == c).any()]))


class _Collate:
    """Pads a batch of pre-tokenised reviews (in DataLoader workers on a GPU machine)."""

    def __init__(self, tokenizer, ids: list[list[int]], labels) -> None:
        self.tokenizer, self.ids, self.labels = tokenizer, ids, labels

    def __call__(self, batch: list[int]):
        enc = self.tokenizer.pad({"input_ids": [self.ids[j] for j in batch]}, return_tensors="pt")
        return enc, self.labels[batch]


def _latest_checkpoint(out_dir: Path) -> Path | None:
    found = sorted(out_dir.glob("epoch-*"), key=lambda p: int(p.name.split("-")[1]) if p.name[6:].isdigit() else -1)
    done = [p for p in found if (p / "state.pt").is_file()]
    return done[-1] if done else None


def fine_tune(
    params: TransformerParams,
    train_texts: list[str],
    train_labels,
    valid_texts: list[str],
    valid_labels,
    work_dir: str | Path,
    resume: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    device: str | None = None,
) -> TransformerModel:
    """Fine-tune `params.checkpoint`; checkpoints go to `work_dir/epoch-N`. Returns the best model."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from reviewops.progress import progress

    work_dir = Path(work_dir)
    if not resume and work_dir.exists():
        shutil.rmtree(work_dir)  # a fresh run: no checkpoint of an older run may be resumed by mistake
    work_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(params.seed)
    start_epoch, step, best, stale = 0, 0, -1.0, 0
    resume_from = _latest_checkpoint(work_dir) if resume else None
    if resume and resume_from is None:
        log.warning("nothing to resume in %s: starting from %s", work_dir, params.checkpoint)
    source = resume_from / HF_DIR if resume_from else params.checkpoint
    model = TransformerModel(load_tokenizer(source), load_classifier(source), params, device=device)
    dev = model.device
    net = torch.compile(model.model) if params.compile else model.model

    train_ids = model.encode(train_texts)
    y = torch.tensor(np.array(train_labels), dtype=torch.long)
    counts = torch.bincount(y, minlength=2).clamp(min=1).float()
    weight = (len(y) / (2 * counts)).to(dev) if params.class_weight == "balanced" else None
    per_epoch = math.ceil(len(train_ids) / params.batch_size / params.grad_accum)
    total = params.max_steps or per_epoch * params.epochs
    decay = [p for n, p in net.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in net.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": params.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=params.lr,
                            fused=dev.startswith("cuda"))
    sched = get_linear_schedule_with_warmup(opt, int(params.warmup_ratio * total), total)
    if resume_from:
        state = torch.load(resume_from / "state.pt", map_location="cpu", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, step, best, stale = state["epoch"] + 1, state["step"], state["best"], state["stale"]
        model.history = json.loads((resume_from / "history.json").read_text())
        log.info("resuming after epoch %d at step %d", state["epoch"], step)

    best_dir = work_dir / "best"
    for epoch in range(start_epoch, params.epochs):
        if params.max_steps and step >= params.max_steps:
            break
        net.train()
        batches = length_batches([len(x) for x in train_ids], params.batch_size, params.seed + epoch)
        loader = torch.utils.data.DataLoader(
            range(len(train_ids)), batch_sampler=batches, collate_fn=_Collate(model.tokenizer, train_ids, y),
            num_workers=params.num_workers if dev.startswith("cuda") else 0, pin_memory=dev.startswith("cuda"))
        t0, seen = time.perf_counter(), 0
        with progress(f"epoch {epoch + 1}/{params.epochs}", total=len(batches), unit_count=True) as bar:
            for i, (enc, labels) in enumerate(loader):
                enc = enc.to(dev, non_blocking=True)
                with _autocast(dev, params.bf16):
                    loss = torch.nn.functional.cross_entropy(net(**enc).logits.float(),
                                                             labels.to(dev, non_blocking=True), weight=weight)
                (loss / params.grad_accum).backward()
                seen += len(labels)
                if (i + 1) % params.grad_accum == 0 or i + 1 == len(batches):
                    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    step += 1
                    if on_step:
                        on_step(step, float(loss.detach()))
                    if params.max_steps and step >= params.max_steps:
                        break
                bar.advance()
        seconds = time.perf_counter() - t0
        score = model.predict_proba(valid_texts) if len(valid_texts) else np.array([])
        acc = _balanced_accuracy(score, np.asarray(valid_labels)) if len(score) else float("nan")
        record = {"epoch": epoch + 1, "step": step, "valid_balanced_accuracy": acc, "epoch_seconds": seconds,
                  "samples_per_second": seen / seconds if seconds else 0.0}
        model.history.append(record)
        if on_epoch:
            on_epoch(epoch + 1, record)
        improved = acc > best or math.isnan(acc)
        if improved:
            best, stale = (acc if not math.isnan(acc) else best), 0
            model.save(best_dir)
        else:
            stale += 1
        _save_epoch(work_dir, epoch, model, opt, sched, step, best, stale)
        if stale >= params.patience:
            log.info("early stopping after epoch %d", epoch + 1)
            break
    if best_dir.exists():
        final = TransformerModel.load(best_dir, device=device)
        final.history = model.history
        return final
    return model


def _save_epoch(work_dir: Path, epoch: int, model: TransformerModel, opt, sched, step: int,
                best: float, stale: int) -> None:
    """A checkpoint that `resume` can continue from; written to a temporary folder, then renamed."""
    import torch

    with atomic_folder(work_dir / f"epoch-{epoch}") as tmp:
        inner = getattr(model.model, "_orig_mod", model.model)
        inner.save_pretrained(tmp / HF_DIR)
        model.tokenizer.save_pretrained(tmp / HF_DIR)
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch, "step": step,
                    "best": best, "stale": stale}, tmp / "state.pt")
        (tmp / "history.json").write_text(json.dumps(model.history))
