"""Transformer fine-tuning on CPU, side by side in one run (for machines without a GPU):

1. pretrain a small Korean review encoder on the corpus (`reviewops.models.pretrain`);
2. fine-tune it with our loop and with a plain Hugging Face `Trainer` (default settings, same data,
   same model, one epoch): samples/s and time per epoch, as a ratio;
3. held-out accuracy of both on the NSMC-style evaluation set of the same split as the CPU model.

Usage: python bench/transformer_cpu.py [--corpus PATH] [--train-rows N] [--pretrain-steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "data" / "sample" / "reviews.sample.jsonl.gz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=SAMPLE)
    ap.add_argument("--train-rows", type=int, default=8000)
    ap.add_argument("--pretrain-steps", type=int, default=400)
    ap.add_argument("--pretrain-lr", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=3e-4, help="our loop's learning rate (the Trainer keeps its default)")
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from rich.console import Console
    from rich.table import Table

    from reviewops.config import Settings, reset_settings
    from reviewops.jobs.train import run_ingest, run_snapshot
    from reviewops.models.pretrain import PretrainConfig, pretrain
    from reviewops.models.transformer import TransformerModel, TransformerParams, fine_tune

    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="reviewops-tbench-"))
    os.environ["REVIEWOPS_HOME"] = str(work / "home")
    reset_settings()
    settings = Settings()
    run_ingest(settings, args.corpus)
    _, parts = run_snapshot(settings)
    train = parts["train"].sample(n=min(args.train_rows, len(parts["train"])), random_state=0)
    valid, ev = parts["valid"].head(1000), parts["eval"]

    t = time.perf_counter()
    cfg = PretrainConfig(vocab_size=8000, hidden_size=128, layers=2, heads=2, intermediate=512, max_length=64,
                         batch_size=64, max_steps=args.pretrain_steps, lr=args.pretrain_lr)
    stats = pretrain(args.corpus, work / "encoder", cfg)
    pretrain_seconds = time.perf_counter() - t

    params = TransformerParams(checkpoint=str(work / "encoder"), max_length=64, batch_size=32, lr=args.lr,
                               epochs=args.epochs, patience=args.epochs, num_workers=0)  # no early stop: same epochs
    t = time.perf_counter()
    ours = fine_tune(params, train["text"].tolist(), train["label"].to_numpy(), valid["text"].tolist(),
                     valid["label"].to_numpy(), work / "ours")
    ours_seconds = time.perf_counter() - t
    ours_acc = float(((ours.predict_proba(ev["text"].tolist()) >= 0.5) == ev["label"].to_numpy()).mean())

    # the plain Trainer: default settings, the same model and data, one epoch
    from transformers import Trainer, TrainingArguments

    base = TransformerModel.from_checkpoint(params)
    enc = base.encode(train["text"].tolist())
    data = [{"input_ids": ids, "labels": int(y)} for ids, y in zip(enc, train["label"], strict=True)]
    from transformers import DataCollatorWithPadding

    trainer = Trainer(model=base.model,
                      args=TrainingArguments(output_dir=str(work / "hf"), num_train_epochs=args.epochs, report_to=[],
                                             save_strategy="no", use_cpu=not torch.cuda.is_available()),
                      train_dataset=data, data_collator=DataCollatorWithPadding(base.tokenizer))
    t = time.perf_counter()
    trainer.train()
    hf_seconds = time.perf_counter() - t
    hf_acc = float(((base.predict_proba(ev["text"].tolist()) >= 0.5) == ev["label"].to_numpy()).mean())

    res = {
        "device": "cuda" if torch.cuda.is_available() else "cpu", "threads": torch.get_num_threads(),
        "corpus": str(args.corpus), "train_rows": len(train), "eval_n": len(ev),
        "pretrain": {**stats, "wall_seconds": pretrain_seconds},
        "ours": {"epoch_seconds": ours_seconds / args.epochs,
                 "samples_per_second": len(train) * args.epochs / ours_seconds, "eval_accuracy": ours_acc,
                 "history": ours.history, "note": "wall time includes validation and a checkpoint each epoch"},
        "hf_trainer_default": {"epoch_seconds": hf_seconds / args.epochs,
                               "samples_per_second": len(train) * args.epochs / hf_seconds, "eval_accuracy": hf_acc},
    }
    res["speedup_vs_trainer"] = res["ours"]["samples_per_second"] / res["hf_trainer_default"]["samples_per_second"]
    out = ROOT / "bench" / "results" / f"transformer-cpu-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    table = Table(title=f"transformer fine-tuning on {res['device']} ({len(train):,} reviews, {args.epochs} epochs)",
                  title_justify="left")
    for col in ("loop", "epoch s", "samples/s", "held-out accuracy"):
        table.add_column(col, justify="right")
    for name, key in (("reviewops fine_tune", "ours"), ("HF Trainer (defaults)", "hf_trainer_default")):
        r = res[key]
        table.add_row(name, f"{r['epoch_seconds']:.1f}", f"{r['samples_per_second']:.1f}", f"{r['eval_accuracy']:.4f}")
    Console().print(table)
    Console().print(f"ours / Trainer throughput: {res['speedup_vs_trainer']:.2f}×; pretraining {stats.get('steps')} "
                    f"steps in {pretrain_seconds:.0f}s; written to {out}")


if __name__ == "__main__":
    main()
