"""CPU serving throughput of a Hugging Face sentiment classifier: PyTorch fp32 vs ONNX fp32 vs ONNX int8.

Measured side by side in one run, on the same Korean reviews, same batching (sorted by token length,
`--batch-size` per batch), same thread count: reviews/s of each engine with the model loaded (best of
`--repeats` rounds, the engines taking turns in each round), at each thread count of `--threads`
(default: 1 and all cores; on a shared or small machine all-cores numbers swing with the load), plus
the export's parity report and how far each ONNX engine's P(positive) is from PyTorch's.

Usage: python bench/onnx_cpu.py [--hf-dir DIR] [--n 2000] [--shape tiny|base] [--threads 1,4]
Without --hf-dir a checkpoint is built in a temporary folder: `tiny` (2 layers, 64 wide, the test
checkpoint, random weights) or `base` (BERT-base shape, 12 layers, 768 wide, random weights:
realistic speed, meaningless predictions). Writes bench/results/onnx-cpu-<time>.json, prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENGINES = ("torch fp32", "onnx fp32", "onnx int8")
FILES = {"onnx fp32": "model.onnx", "onnx int8": "model.int8.onnx"}


def build_checkpoint(folder: Path, shape: str) -> Path:
    from tests.tiny_hf import korean_texts, make_tiny_checkpoint, make_tokenizer

    if shape == "tiny":
        return make_tiny_checkpoint(folder)
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(folder, korean_texts(), vocab_size=8000)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), num_labels=2, pad_token_id=tok.pad_token_id)  # BERT-base shape
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def bench_texts(n: int) -> list[str]:
    from tests.tiny_hf import korean_texts

    pool = korean_texts(n)
    return [pool[i % len(pool)] for i in range(n)]


def thread_counts(spec: str | None) -> list[int]:
    cpus = os.cpu_count() or 1
    counts = [int(x) for x in spec.split(",")] if spec else [1, cpus]
    if any(c < 1 for c in counts):
        raise SystemExit(f"--threads: counts must be at least 1, got {spec}")
    return list(dict.fromkeys(counts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf-dir", type=Path, default=None, help="fine-tuned checkpoint folder (default: build one)")
    ap.add_argument("--shape", choices=["tiny", "base"], default="tiny", help="checkpoint to build without --hf-dir")
    ap.add_argument("--n", type=int, default=2000, help="reviews per engine and round")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", default=None, help="comma-separated thread counts (default: 1 and all cores)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parity-n", type=int, default=200, help="texts for the export's parity check")
    args = ap.parse_args()
    args.threads = thread_counts(args.threads)

    from rich.console import Console

    work = Path(tempfile.mkdtemp(prefix="reviewops-onnx-bench-"))
    try:
        run(args, work, Console())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, console) -> None:
    import numpy as np
    import onnxruntime
    import torch
    from rich.table import Table

    from reviewops.models.onnx_export import OnnxClassifier, TorchClassifier, export_onnx

    texts = bench_texts(args.n)
    t = time.perf_counter()
    hf_dir = args.hf_dir or build_checkpoint(work / "hf", args.shape)
    build_s = time.perf_counter() - t if args.hf_dir is None else None

    t = time.perf_counter()
    # int8 agreement is reported here, not enforced (a random-weight checkpoint has near-tied logits)
    parity = export_onnx(hf_dir, work / "onnx", texts[: args.parity_n], max_length=args.max_length,
                         int8_min_agreement=0.0)
    export_s = time.perf_counter() - t

    t = time.perf_counter()
    torch_clf = TorchClassifier(hf_dir, max_length=args.max_length)
    load = {"torch fp32": time.perf_counter() - t}
    rows: list[dict] = []
    ref = None
    for threads in args.threads:
        engines = {"torch fp32": torch_clf}
        for name, file in FILES.items():
            t = time.perf_counter()
            engines[name] = OnnxClassifier(work / "onnx" / file, hf_dir, max_length=args.max_length,
                                           threads=threads)
            load.setdefault(name, time.perf_counter() - t)
        torch.set_num_threads(threads)
        for clf in engines.values():  # warm-up: first-run allocations, lazy kernels, thread pools
            clf.predict_proba(texts[: args.batch_size], args.batch_size)
        seconds: dict[str, list[float]] = {name: [] for name in ENGINES}
        probs: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            for name in ENGINES:
                t = time.perf_counter()
                probs[name] = engines[name].predict_proba(texts, args.batch_size)
                seconds[name].append(time.perf_counter() - t)
        ref = probs["torch fp32"] if ref is None else ref
        base = args.n / min(seconds["torch fp32"])
        for name in ENGINES:
            best = min(seconds[name])
            rows.append({
                "engine": name, "threads": threads, "reviews_per_second": args.n / best,
                "vs_torch_same_threads": args.n / best / base, "best_seconds": best, "all_seconds": seconds[name],
                "max_abs_proba_diff_vs_torch": float(np.abs(probs[name] - ref).max()),
                "label_agreement_vs_torch": float(((probs[name] >= 0.5) == (ref >= 0.5)).mean()),
            })

    best_rate = {name: max(r["reviews_per_second"] for r in rows if r["engine"] == name) for name in ENGINES}
    res: dict = {
        "checkpoint": str(args.hf_dir) if args.hf_dir else f"built ({args.shape})",
        "n": args.n, "batch_size": args.batch_size, "max_length": args.max_length, "threads": args.threads,
        "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "build_seconds": build_s, "export_seconds": export_s, "load_seconds": load, "parity": parity,
        "runs": rows, "best_reviews_per_second": best_rate,
        "ratio_int8_vs_torch": best_rate["onnx int8"] / best_rate["torch fp32"],
        "ratio_onnx_fp32_vs_torch": best_rate["onnx fp32"] / best_rate["torch fp32"],
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"onnx-cpu-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(res, indent=2, default=str))

    sizes = {name: parity["files"][file] for name, file in FILES.items()}
    table = Table(title=f"CPU inference: {res['checkpoint']}, n={args.n}, batch {args.batch_size}, "
                  f"{os.cpu_count()} cores", title_justify="left")
    for col in ("engine", "threads", "reviews/s", "×torch", "MB", "max|Δp|", "agree"):
        table.add_column(col, justify="left" if col == "engine" else "right", no_wrap=True)
    for r in rows:
        mb = f"{sizes[r['engine']] / 1e6:.1f}" if r["engine"] in sizes else "-"
        table.add_row(r["engine"], str(r["threads"]), f"{r['reviews_per_second']:,.0f}",
                      f"{r['vs_torch_same_threads']:.2f}", mb, f"{r['max_abs_proba_diff_vs_torch']:.1e}",
                      f"{r['label_agreement_vs_torch']:.4f}")
    console.print(table)
    console.print(f"export {export_s:.1f} s; parity on {parity['n']} texts: fp32 max |Δlogit| "
                  f"{parity['fp32']['max_abs_logit_diff']:.1e}, int8 max |Δlogit| "
                  f"{parity['int8']['max_abs_logit_diff']:.1e}, int8 label agreement "
                  f"{parity['int8']['label_agreement']:.4f}")
    console.print(f"[bold]int8 / torch throughput (best of each): {res['ratio_int8_vs_torch']:.2f}x[/bold] "
                  f"(onnx fp32 / torch: {res['ratio_onnx_fp32_vs_torch']:.2f}x)")
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
