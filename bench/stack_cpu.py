"""The stacked CPU model against the baseline, on one split of the shared corpus, measured in one run.

The platform's own data path (ingest, then a snapshot: 85/5/10 by a hash of the review id, the
evaluation set NSMC-style: test reviews under 140 characters, balanced) into a temporary home; then
one `StackModel` fit through the stack trainer, whose two parts are the baseline (with its rating head, from
the snapshot's ratings and neutral reviews) and the morpheme model, each calibrated on validation as if
trained alone (the baseline part is exactly what `--trainer baseline` trains).
Reported for each: held-out accuracy with its 95% Wilson interval, training time, and prediction
speed with the morpheme cache emptied before every timing (texts it has not seen): batches of 500 in
one process, the whole evaluation set in one call (worker processes for the analyser when it is large),
and single reviews one at a time (p50/p99). One stack per morpheme analyser (`--analysers`, default both:
MeCab, what new models use, then Kiwi), side by side in the same run.

Usage: nice -n 10 python bench/stack_cpu.py [--corpus PATH] [--max-rows N] [--analysers mecab,kiwi]
       [--kiwi-options JSON]
Writes bench/results/stack-cpu-<time>.json and prints a table.

Measured 2026-12-06 on the shared corpus (355,490 training, 20,863 validation, 20,178 evaluation
reviews), 2 cores shared with other work (load average 4 and 9.5 at the starts), full corpus:

| model (Kiwi dictionaries) | held out | 95% interval | train s | batch 500/s | p50 ms | p99 ms |
|---|---|---|---|---|---|---|
| baseline | 88.66% | 88.21–89.09 | 44–96 | 13,685–16,587 | 0.77–0.80 | 1.2–4.9 |
| morphemes (all) | 88.57% | 88.13–89.00 | 172 | 1,087 | 1.40 | 3.9 |
| stack (all) | 89.17% | 88.74–89.59 | 218 | 656 | 5.22 | 15.7 |
| morphemes (no typo, no multi-word) | 88.51% | 88.06–88.94 | 226 | 1,545 | 1.73 | 7.5 |
| stack (no typo, no multi-word: the default) | 89.14% | 88.70–89.56 | 325 | 1,540 | 2.65 | 9.6 |

Since the baseline part has its rating head (2026-12-06 15:56 UTC, quiet machine): baseline 89.01% (88.57–89.44),
98 s, 31,975/s; morphemes 88.51%; stack 89.29% (88.85–89.70), 196 s, 1,698/s, p99 5.75 ms.

Both analysers side by side (2026-12-06 18:50 UTC, quiet machine, `nice -n 5`): stack with MeCab 89.18%
(88.74–89.60), 144 s, 5,158/s, p99 2.90 ms; with Kiwi 89.29% (88.85–89.70), 224 s, 1,914/s, p99 5.73 ms; the
morpheme models alone 88.51% each, MeCab's at 6,258/s, Kiwi's at 2,235/s.

Training and speed moved with the other work on the machine (the second run had twice the load);
in one process, alternating on the same 4,000 reviews, Kiwi analysed 1,292 and 1,380 reviews/s with
all dictionaries and 1,903 and 2,086 without the typo and multi-word ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "naver-movie-reviews" / "reviews.jsonl.gz"
SAMPLE = ROOT / "data" / "sample" / "reviews.sample.jsonl.gz"


def _speed(model, texts: list[str], batch: int = 500, singles: int = 1000) -> dict:
    from reviewops.text.morphemes import clear_cache

    clear_cache()
    t = time.perf_counter()
    for i in range(0, len(texts), batch):
        model.predict_proba(texts[i : i + batch])
    batched = len(texts) / (time.perf_counter() - t)
    clear_cache()
    t = time.perf_counter()
    model.predict_proba(texts)
    whole = len(texts) / (time.perf_counter() - t)
    clear_cache()
    seconds = []
    for text in texts[-singles:]:
        t = time.perf_counter()
        model.predict_proba([text])
        seconds.append(time.perf_counter() - t)
    ms = np.asarray(seconds) * 1000
    return {"batch500_reviews_per_s": batched, "one_call_reviews_per_s": whole,
            "single_p50_ms": float(np.percentile(ms, 50)), "single_p99_ms": float(np.percentile(ms, 99))}


def _accuracy(model, eval_df) -> dict:
    from reviewops.evaluate.metrics import accuracy_interval

    correct = int(((model.predict_proba(eval_df["text"].tolist()) >= 0.5) == eval_df["label"].to_numpy()).sum())
    low, high = accuracy_interval(correct, len(eval_df))
    return {"accuracy": correct / len(eval_df), "ci95": [low, high], "correct": correct, "n": len(eval_df)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=SHARED if SHARED.exists() else SAMPLE)
    ap.add_argument("--max-rows", type=int, default=None, help="cap on training rows (hash order)")
    ap.add_argument("--analysers", type=lambda v: v.split(","), default=["mecab", "kiwi"],
                    help="morpheme analysers, one stack each (comma-separated)")
    ap.add_argument("--kiwi-options", type=json.loads, default=None,
                    help='Kiwi options instead of the library\'s, e.g. \'{"load_typo_dict": false}\'')
    args = ap.parse_args()
    if args.kiwi_options is not None:
        from reviewops.text import morphemes

        morphemes.KIWI_OPTIONS = args.kiwi_options

    home = tempfile.mkdtemp(prefix="reviewops-bench-")
    os.environ["REVIEWOPS_HOME"] = home
    try:
        run(args)
    finally:
        shutil.rmtree(home, ignore_errors=True)  # the full corpus's review store is about 300 MB


def run(args: argparse.Namespace) -> None:
    from reviewops.config import get_settings, reset_settings
    from reviewops.data.snapshot import SnapshotSpec
    from reviewops.jobs.train import run_ingest, run_snapshot
    from reviewops.models.trainers import trainer_for
    from reviewops.store import db

    reset_settings()
    settings = get_settings()
    from reviewops.models.stack import StackParams
    from reviewops.models.trainers import StackTrainer
    from reviewops.text.morphemes import describe

    res: dict = {"corpus": str(args.corpus), "max_rows": args.max_rows,
                 "analysers": {name: describe(name) for name in args.analysers},
                 "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "load_average": os.getloadavg()}}
    t = time.perf_counter()
    db.upgrade(settings.db_url)
    run_ingest(settings, args.corpus)
    snap, parts = run_snapshot(settings, SnapshotSpec.from_settings(settings, max_rows=args.max_rows))
    res["data"] = {"seconds": time.perf_counter() - t, "snapshot": snap.id,
                   "rows": {k: len(v) for k, v in parts.items()}}
    print(json.dumps(res["data"]), flush=True)

    valid, eval_df = parts["valid"], parts["eval"]
    texts = eval_df["text"].tolist()
    res["models"], res["stack_weights"] = {}, {}
    configured = trainer_for("stack", settings).params
    for analyser in args.analysers:
        trainer = StackTrainer(settings, StackParams(configured.baseline, configured.morphemes, analyser))
        stack = trainer.fit(parts, snap.id, lambda *_: None)
        models = {"baseline": stack.baseline, f"morphemes ({analyser})": stack.morphemes,
                  f"stack ({analyser})": stack}
        for name, model in models.items():
            if name in res["models"]:
                continue  # the baseline part is the same in every stack
            res["models"][name] = {"train_seconds": model.train_seconds, **_accuracy(model, eval_df),
                                   "valid_accuracy": _accuracy(model, valid)["accuracy"], **_speed(model, texts)}
            print(name, json.dumps(res["models"][name]), flush=True)
        res["stack_weights"][analyser] = {"baseline": stack.weights[0], "morphemes": stack.weights[1],
                                          "bias": stack.bias}

    out = ROOT / "bench" / "results" / f"stack-cpu-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"\n{'model':<18} {'accuracy':>8} {'95% CI':>17} {'train s':>8} {'batch/s':>8} {'call/s':>8} "
          f"{'p50 ms':>7} {'p99 ms':>7}")
    for name, m in res["models"].items():
        print(f"{name:<18} {m['accuracy']:8.2%} {m['ci95'][0]:8.2%}–{m['ci95'][1]:.2%} {m['train_seconds']:8.1f} "
              f"{m['batch500_reviews_per_s']:8.0f} {m['one_call_reviews_per_s']:8.0f} {m['single_p50_ms']:7.2f} "
              f"{m['single_p99_ms']:7.2f}")
    print(f"n = {len(eval_df):,} evaluation reviews; written to {out}")


if __name__ == "__main__":
    main()
