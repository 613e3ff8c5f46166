"""Benchmarks of the foundation, measured side by side in one run on this machine.

1. The main job on the shared corpus (or the bundled sample): ingest, snapshot and training time,
   and held-out accuracy on the NSMC-style evaluation set (balanced, texts < 140 characters).
2. The same split through a plain reference (word TF-IDF + logistic regression), so the
   accuracy gain is a ratio from the same run.
3. `reviewops predict` throughput with the CPU model on 2 cores: reviews/s of prediction, and the
   whole command's wall time with model loading.

Usage: python bench/run.py [--corpus PATH] [--predict-rows N] [--out FILE]
Writes bench/results/foundation-<time>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "naver-movie-reviews" / "reviews.jsonl.gz"
SAMPLE = ROOT / "data" / "sample" / "reviews.sample.jsonl.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=SHARED if SHARED.exists() else SAMPLE)
    ap.add_argument("--predict-rows", type=int, default=100_000)
    ap.add_argument("--out", type=Path, help="results JSON (default: bench/results/foundation-<time>.json)")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="reviewops-bench-"))
    os.environ["REVIEWOPS_HOME"] = str(home)
    from rich.console import Console
    from rich.table import Table

    from reviewops.config import get_settings, reset_settings

    reset_settings()
    settings = get_settings()
    from reviewops.jobs.train import run_ingest, run_snapshot, train_and_register
    from reviewops.store import db

    db.upgrade(settings.db_url)  # the temporary home's empty review store, as `reviewops init` does

    console = Console()
    res: dict = {"corpus": str(args.corpus), "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                        "platform": platform.platform()}}

    t = time.perf_counter()
    ing = run_ingest(settings, args.corpus)
    res["ingest"] = {"seconds": time.perf_counter() - t, "reviews": ing.read, "kept": ing.cleaning["kept"]}
    t = time.perf_counter()
    snap, parts = run_snapshot(settings)
    res["snapshot"] = {"seconds": time.perf_counter() - t, "id": snap.id, "counts": snap.counts}
    t = time.perf_counter()
    result = train_and_register(settings, snap, parts)
    res["model"] = {
        "fit_seconds": result.train_seconds,
        "train_register_gate_seconds": time.perf_counter() - t,
        "eval_accuracy": result.metrics["accuracy"],
        "eval_f1": result.metrics["f1"],
        "eval_roc_auc": result.metrics["roc_auc"],
        "eval_log_loss": result.metrics["log_loss"],
        "eval_n": int(result.metrics["n"]),
        "train_rows": len(parts["train"]),
        "version": result.version,
    }

    # plain reference on the same split: word TF-IDF + logistic regression
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    t = time.perf_counter()
    vec = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b", ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    X = vec.fit_transform(parts["train"]["text"])
    ref = LogisticRegression(C=4, solver="liblinear", class_weight="balanced").fit(X, parts["train"]["label"])
    ref_pred = ref.predict(vec.transform(parts["eval"]["text"]))
    res["reference"] = {"fit_seconds": time.perf_counter() - t,
                        "eval_accuracy": float(np.mean(ref_pred == parts["eval"]["label"].to_numpy()))}
    res["accuracy_gain_vs_reference"] = res["model"]["eval_accuracy"] - res["reference"]["eval_accuracy"]

    # predict throughput through the CLI
    import pandas as pd

    texts = parts["test"]["text"]
    reps = -(-args.predict_rows // len(texts))
    big = pd.concat([texts] * reps, ignore_index=True).head(args.predict_rows)
    inp = home / "predict-in.tsv"
    pd.DataFrame({"id": range(len(big)), "document": big.str.replace("\t", " ")}).to_csv(inp, sep="\t", index=False)
    from reviewops.models.pyfunc import load_predictor
    from reviewops.predict import predict_file

    predictor = load_predictor(f"models:/{settings.model.name}@champion")
    in_process = predict_file(predictor, inp, home / "predict-lib.tsv", settings.predict_batch_size)
    t = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).with_name("reviewops")), "predict", "--input", str(inp),
                           "--output", str(home / "predict-out.tsv")], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    res["predict"] = {"rows": len(big), "reviews_per_second": in_process.per_second, "command_wall_seconds": wall,
                      "wall_reviews_per_second": len(big) / wall}

    path = args.out or ROOT / "bench" / "results" / f"foundation-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, default=str))

    table = Table(title=f"foundation bench ({Path(args.corpus).name}, {os.cpu_count()} cores)", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("ingest: reviews", f"{res['ingest']['reviews']:,}"),
        ("ingest: seconds", f"{res['ingest']['seconds']:.1f}"),
        ("snapshot: seconds", f"{res['snapshot']['seconds']:.1f}"),
        ("train rows", f"{res['model']['train_rows']:,}"),
        ("CPU model fit: seconds", f"{res['model']['fit_seconds']:.1f}"),
        ("train+log+register+gate: seconds", f"{res['model']['train_register_gate_seconds']:.1f}"),
        (f"held-out accuracy (NSMC-style, n={res['model']['eval_n']})", f"{res['model']['eval_accuracy']:.4f}"),
        ("  ROC-AUC / log-loss", f"{res['model']['eval_roc_auc']:.4f} / {res['model']['eval_log_loss']:.4f}"),
        ("reference word TF-IDF + LR accuracy", f"{res['reference']['eval_accuracy']:.4f}"),
        ("accuracy gain vs reference", f"{res['accuracy_gain_vs_reference']:+.4f}"),
        ("predict: reviews/s (model loaded)", f"{res['predict']['reviews_per_second']:,.0f}"),
        ("predict: whole command, reviews/s", f"{res['predict']['wall_reviews_per_second']:,.0f}"),
    ]
    for r in rows:
        table.add_row(*r)
    console.print(table)
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
