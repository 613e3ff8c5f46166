"""The baseline's n-gram hashing: `models.hashing` (NumPy) against scikit-learn's own transform, side by side.

A baseline model is fitted on the bundled sample, then in one process, alternating every round on the same
500 evaluation-style reviews: each feature block's hashing, and the whole `predict_proba`, with either
hasher. Both must give the same matrix (checked first); reported: median ms per 500 reviews and the ratio.

Usage: python bench/hashing.py [--rounds 7] [--repeats 20] [--out FILE]
Writes bench/results/hashing.json and prints a table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "reviews.sample.jsonl.gz"


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hashing.json")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from reviewops.models import hashing
    from reviewops.models.baseline import BaselineModel, BaselineParams

    with gzip.open(SAMPLE, "rt", encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh]
    labelled = [r for r in records if r["rating"] <= 4 or r["rating"] >= 9]
    train, held = labelled[:-500], [r["text"] for r in labelled[-500:]]
    model = BaselineModel(BaselineParams(n_jobs=1)).fit([r["text"] for r in train],
                                                        [int(r["rating"] >= 9) for r in train])
    norm = model._normalise(held)
    inputs = {kind: [t.replace(" ", "") for t in norm] if kind == "nospace" else norm
              for kind, _ in model.vectorizers}
    ours, theirs = hashing.transform, (lambda v, texts: v.transform(texts))
    for kind, v in model.vectorizers:
        a, b = ours(v, inputs[kind]), theirs(v, inputs[kind])
        assert (a != b).nnz == 0 and np.array_equal(a.indices, b.indices), f"{kind}: matrices differ"

    cases = {f"hash {kind} block": (lambda v=v, k=kind: hashing.transform(v, inputs[k]))
             for kind, v in model.vectorizers}
    cases["predict_proba (normalise, hash, TF-IDF, linear)"] = lambda: model.predict_proba(held)
    results: dict[str, dict[str, list[float]]] = {name: {"numpy": [], "scikit-learn": []} for name in cases}
    for _ in range(args.rounds):
        for hasher_name, hasher in (("numpy", ours), ("scikit-learn", theirs)):
            hashing.transform = hasher  # what the baseline calls: swapped for this round
            for name, fn in cases.items():
                results[name][hasher_name].append(_median_ms(fn, args.repeats))
    hashing.transform = ours

    table = Table(title="ms per 500 reviews (median of rounds), one process, alternating")
    for col in ("step", "models.hashing", "scikit-learn", "ratio"):
        table.add_column(col)
    summary = {}
    for name, by in results.items():
        fast, slow = statistics.median(by["numpy"]), statistics.median(by["scikit-learn"])
        summary[name] = {"numpy_ms": fast, "sklearn_ms": slow, "ratio": slow / fast, "rounds": by}
        table.add_row(name, f"{fast:.2f}", f"{slow:.2f}", f"{slow / fast:.2f}×")
    Console().print(table)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
