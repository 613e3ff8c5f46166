"""Transformer sentiment models: fine-tune KoBERT (`skt/kobert-base-v1`, the default) or any Hugging
Face `AutoModelForSequenceClassification` checkpoint (a hub id or a local folder).

`fine_tune` reads top to bottom: tokenise once, batch by length (dynamic padding), AdamW (fused on
CUDA), linear warm-up and decay, bf16 autocast on CUDA, gradient accumulation, validation each
epoch with early stopping, a checkpoint each epoch that `resume=True` continues from. The pieces it
shares with pretraining live in `training.py`; tokenizers and weights load through `loading.py`.

Saved model folder: `hf/` (the fine-tuned checkpoint and its tokenizer) and `meta.json` (format,
parameters, SHA-256 of every file under `hf/`); loading verifies the checksums.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from reviewops.errors import ModelArtifactError
from reviewops.fsutil import atomic_folder
from reviewops.models.loading import HF_DIR, META_FILE, load_classifier, load_tokenizer, read_meta
from reviewops.models.training import (
    TORCH_CALL_COST,
    adamw,
    autocast,
    length_batches,
    length_groups,
    pick_device,
    warmup_then_linear_decay,
)
from reviewops.text.clean import Cleaner

log = logging.getLogger(__name__)

FORMAT = "reviewops-transformer/1"
DEFAULT_CHECKPOINT = "skt/kobert-base-v1"


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
    # weigh the loss so both labels count alike (most reviews are positive)
    class_weight: str | None = "balanced"
    bf16: bool = True  # on CUDA only
    compile: bool = False  # torch.compile the model (pays on long GPU runs)
    num_workers: int = 2
    eval_batch_size: int = 128
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> TransformerParams:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class TransformerModel:
    """A fine-tuned classifier: normalise → tokenise → logits → P(positive)."""

    def __init__(self, tokenizer, model, params: TransformerParams, cleaner: Cleaner | None = None,
                 device: str | None = None) -> None:
        self.tokenizer, self.model, self.params = tokenizer, model, params
        self.cleaner = cleaner or Cleaner()
        self.device = pick_device(device)
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
        out = np.empty(len(ids), dtype=float)
        rows = batch_size or self.params.eval_batch_size
        groups = length_groups([len(x) for x in ids], rows, TORCH_CALL_COST)  # the least padding
        self.model.eval()
        with torch.inference_mode(), autocast(self.device, self.params.bf16):
            for idx in groups:
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
        meta = read_meta(folder)
        if meta.get("format") != FORMAT:
            raise ModelArtifactError(f"model artifact {folder}: unknown format {meta.get('format')!r}")
        actual = _checksums(folder / HF_DIR)
        expected = meta.get("sha256", {})
        missing = sorted(set(expected) - set(actual))
        if missing:
            raise ModelArtifactError(f"model artifact {folder}: missing {', '.join(missing)}")
        changed = sorted(k for k in expected if actual[k] != expected[k])
        if changed:
            raise ModelArtifactError(f"model artifact {folder}: {', '.join(changed)} does not match its "
                                     "checksum (broken or tampered)")
        params = TransformerParams.from_dict(meta.get("params", {}))
        model = cls(load_tokenizer(folder / HF_DIR), load_classifier(folder / HF_DIR), params, device=device)
        model.history = meta.get("history", [])
        return model


def _checksums(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}



# --- fine-tuning ---------------------------------------------------------------------------------


@dataclass
class _RunState:
    """Where a fine-tuning run stands; saved with every epoch's checkpoint so `resume` continues it."""

    epoch: int = 0  # the next epoch to run
    step: int = 0  # optimiser steps taken
    best: float = -1.0  # the best validation balanced accuracy so far
    stale: int = 0  # epochs since it last improved


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
    """Fine-tune `params.checkpoint`; checkpoints go to `work_dir/epoch-N`. Returns the best model.

    `on_step(step, loss)` is called after every optimiser step, `on_epoch(epoch, record)` after every
    epoch's validation (1-based numbers)."""
    import torch

    work_dir = _prepare_work_dir(Path(work_dir), resume)
    torch.manual_seed(params.seed)
    resume_from = _resume_point(work_dir, params.checkpoint) if resume else None
    source = resume_from / HF_DIR if resume_from else params.checkpoint
    model = TransformerModel(load_tokenizer(source), load_classifier(source), params, device=device)
    dev = model.device
    net = torch.compile(model.model) if params.compile else model.model

    train_ids = model.encode(train_texts)
    labels = torch.tensor(np.asarray(train_labels), dtype=torch.long)
    loss_weight = _balanced_weights(labels).to(dev) if params.class_weight == "balanced" else None
    opt = adamw(net, params.lr, params.weight_decay, dev)
    sched = warmup_then_linear_decay(opt, params.warmup_ratio, _total_steps(len(train_ids), params))
    run = _restore(resume_from, opt, sched, model) if resume_from else _RunState()
    ctx = autocast(dev, params.bf16)

    best_dir = work_dir / "best"
    for epoch in range(run.epoch, params.epochs):
        if _done(params, run.step):
            break
        loader = _loader(model.tokenizer, train_ids, labels, params, epoch, dev)
        t0 = time.perf_counter()
        seen = _train_epoch(net, loader, opt, sched, ctx, loss_weight, params, run, on_step,
                            title=f"epoch {epoch + 1}/{params.epochs}")
        seconds = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "step": run.step,
                  "valid_balanced_accuracy": _evaluate(model, valid_texts, valid_labels),
                  "epoch_seconds": seconds, "samples_per_second": seen / seconds if seconds else 0.0}
        model.history.append(record)
        if on_epoch:
            on_epoch(epoch + 1, record)
        _keep_if_best(model, record["valid_balanced_accuracy"], run, best_dir)
        _save_epoch(work_dir, epoch, model, opt, sched, run)
        if run.stale >= params.patience:
            log.info("early stopping after epoch %d", epoch + 1)
            break
    return _best_model(best_dir, model, device)


def _prepare_work_dir(work_dir: Path, resume: bool) -> Path:
    if not resume and work_dir.exists():
        shutil.rmtree(work_dir)  # a fresh run: no checkpoint of an older run may be resumed by mistake
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir


def _resume_point(work_dir: Path, checkpoint: str) -> Path | None:
    """The last complete epoch checkpoint in `work_dir` (None, with a warning, when there is none)."""
    done = [p for p in sorted(work_dir.glob("epoch-*"), key=_epoch_number) if (p / "state.pt").is_file()]
    if not done:
        log.warning("nothing to resume in %s: starting from %s", work_dir, checkpoint)
        return None
    return done[-1]


def _epoch_number(folder: Path) -> int:
    return int(folder.name.split("-")[1]) if folder.name[6:].isdigit() else -1


def _balanced_weights(labels):
    """Loss weights that make both labels count alike (most reviews are positive)."""
    import torch

    counts = torch.bincount(labels, minlength=2).clamp(min=1).float()
    return len(labels) / (2 * counts)


def _total_steps(rows: int, params: TransformerParams) -> int:
    return params.max_steps or math.ceil(rows / params.batch_size / params.grad_accum) * params.epochs


def _done(params: TransformerParams, step: int) -> bool:
    return bool(params.max_steps) and step >= params.max_steps


def _restore(checkpoint: Path, opt, sched, model: TransformerModel) -> _RunState:
    """Optimiser, scheduler, history and run state as they were after `checkpoint`'s epoch."""
    import torch

    state = torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=True)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    model.history = json.loads((checkpoint / "history.json").read_text())
    log.info("resuming after epoch %d at step %d", state["epoch"], state["step"])
    return _RunState(state["epoch"] + 1, state["step"], state["best"], state["stale"])


class _Collate:
    """Pads a batch of pre-tokenised reviews (in DataLoader workers on a GPU machine)."""

    def __init__(self, tokenizer, ids: list[list[int]], labels) -> None:
        self.tokenizer, self.ids, self.labels = tokenizer, ids, labels

    def __call__(self, batch: list[int]):
        enc = self.tokenizer.pad({"input_ids": [self.ids[j] for j in batch]}, return_tensors="pt")
        return enc, self.labels[batch]


def _loader(tokenizer, ids: list[list[int]], labels, params: TransformerParams, epoch: int, dev: str):
    """This epoch's batches of similar lengths, padded only as far as each batch needs."""
    import torch

    cuda = dev.startswith("cuda")
    batches = length_batches([len(x) for x in ids], params.batch_size, params.seed + epoch)
    return torch.utils.data.DataLoader(range(len(ids)), batch_sampler=batches,
                                       collate_fn=_Collate(tokenizer, ids, labels),
                                       num_workers=params.num_workers if cuda else 0, pin_memory=cuda)


def _train_epoch(net, loader, opt, sched, ctx, loss_weight, params: TransformerParams, run: _RunState,
                 on_step: Callable[[int, float], None] | None, title: str) -> int:
    """One pass over `loader` (gradient accumulation, clipping, a scheduler step per optimiser step);
    stops early at `params.max_steps`. Returns the number of reviews seen."""
    import torch
    import torch.nn.functional as F

    from reviewops.progress import progress

    dev = next(net.parameters()).device
    net.train()
    seen = 0
    with progress(title, total=len(loader), unit_count=True) as bar:
        for i, (enc, labels) in enumerate(loader):
            enc = enc.to(dev, non_blocking=True)
            with ctx:
                logits = net(**enc).logits.float()
                loss = F.cross_entropy(logits, labels.to(dev, non_blocking=True), weight=loss_weight)
            (loss / params.grad_accum).backward()
            seen += len(labels)
            if (i + 1) % params.grad_accum == 0 or i + 1 == len(loader):
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                run.step += 1
                if on_step:
                    on_step(run.step, float(loss.detach()))
                if _done(params, run.step):
                    break
            bar.advance()
    return seen


def _balanced_accuracy(score: np.ndarray, labels: np.ndarray) -> float:
    """Mean of the per-label accuracies: what the balanced (NSMC-style) evaluation set measures."""
    hits = (score >= 0.5) == labels
    return float(np.mean([hits[labels == c].mean() for c in (0, 1) if (labels == c).any()]))


def _evaluate(model: TransformerModel, texts: list[str], labels) -> float:
    """Balanced accuracy on the validation set (NaN without one)."""
    if not len(texts):
        return float("nan")
    return _balanced_accuracy(model.predict_proba(texts), np.asarray(labels))


def _keep_if_best(model: TransformerModel, acc: float, run: _RunState, best_dir: Path) -> None:
    """Save the model to `best_dir` when validation improved (or cannot be measured: no validation set)."""
    if acc > run.best or math.isnan(acc):
        run.best, run.stale = (acc if not math.isnan(acc) else run.best), 0
        model.save(best_dir)
    else:
        run.stale += 1


def _save_epoch(work_dir: Path, epoch: int, model: TransformerModel, opt, sched, run: _RunState) -> None:
    """A checkpoint that `resume` can continue from; written to a temporary folder, then renamed."""
    import torch

    with atomic_folder(work_dir / f"epoch-{epoch}") as tmp:
        inner = getattr(model.model, "_orig_mod", model.model)
        inner.save_pretrained(tmp / HF_DIR)
        model.tokenizer.save_pretrained(tmp / HF_DIR)
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch,
                    "step": run.step, "best": run.best, "stale": run.stale}, tmp / "state.pt")
        (tmp / "history.json").write_text(json.dumps(model.history))


def _best_model(best_dir: Path, last: TransformerModel, device: str | None) -> TransformerModel:
    """The best epoch's model, with the whole run's history (the last one when none was saved)."""
    if not best_dir.exists():
        return last
    best = TransformerModel.load(best_dir, device=device)
    best.history = last.history
    return best
