"""Metrics of a sentiment model on an evaluation set, overall and per slice."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, roc_auc_score

# Slices by text length (characters of the cleaned text).
LENGTH_SLICES = ((0, 20, "len_lt20"), (20, 60, "len_20_60"), (60, 10_000, "len_ge60"))


def core_metrics(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    y = np.asarray(y).astype(int)
    score = np.clip(np.asarray(score, dtype=float), 1e-7, 1 - 1e-7)
    pred = (score >= threshold).astype(int)
    out = {
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "n": float(len(y)),
    }
    if len(np.unique(y)) == 2:
        out["roc_auc"] = float(roc_auc_score(y, score))
        out["log_loss"] = float(log_loss(y, score, labels=[0, 1]))
    return out


def accuracy_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of an accuracy of `correct` out of `n` (95% for z = 1.96): unlike the
    normal approximation it stays inside [0, 1] and is right near 100%."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def evaluate(df: pd.DataFrame, score: np.ndarray) -> dict[str, float]:
    """Overall metrics plus `slice.<name>.<metric>` for text lengths and sources."""
    y = df["label"].to_numpy()
    out = core_metrics(y, score)
    lengths = df["text"].str.len().to_numpy()
    for lo, hi, name in LENGTH_SLICES:
        mask = (lengths >= lo) & (lengths < hi)
        if mask.sum():
            for k, v in core_metrics(y[mask], score[mask]).items():
                out[f"slice.{name}.{k}"] = v
    if "source" in df and df["source"].nunique() > 1:
        for source in sorted(df["source"].unique()):
            mask = (df["source"] == source).to_numpy()
            for k, v in core_metrics(y[mask], score[mask]).items():
                out[f"slice.source_{source}.{k}"] = v
    return out


def confusion_png(y: np.ndarray, score: np.ndarray, title: str = "Confusion matrix") -> bytes:
    """A confusion-matrix image (PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion_matrix(np.asarray(y).astype(int), (np.asarray(score) >= 0.5).astype(int), labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=110)
    ax.imshow(cm, cmap="Blues")
    names = ["negative", "positive"]
    ax.set_xticks([0, 1], names)
    ax.set_yticks([0, 1], names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{cm[i, j]:,}", ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
