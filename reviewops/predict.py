"""Batch prediction: a TSV/CSV of reviews (`id`, `document`) → a TSV of `id`, `label`, `score`."""

from __future__ import annotations

import csv
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reviewops.errors import InputError
from reviewops.models.pyfunc import Predictor
from reviewops.progress import progress

REQUIRED = ("id", "document")


def read_reviews(path: str | Path) -> pd.DataFrame:
    """Read `id` and `document` from a TSV (.tsv/.txt) or CSV (.csv) file; other columns are ignored."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            df = pd.read_csv(fh, sep=sep, dtype=str, keep_default_na=False, quoting=csv.QUOTE_MINIMAL
                             if sep == "," else csv.QUOTE_NONE, engine="c")
    except UnicodeDecodeError as exc:
        line = _line_of_byte(path, exc.start)
        raise InputError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: file is empty") from None
    except pd.errors.ParserError as exc:
        kind = "CSV" if sep == "," else "TSV"
        raise InputError(f"{path}: not a valid {kind} file ({str(exc).strip()})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(df.columns) or 'none'}); "
            f"expected a header with id and document"
        )
    return df[list(REQUIRED)]


def _line_of_byte(path: Path, offset: int) -> int:
    """1-based line number holding byte `offset` of the file (for decode errors)."""
    with open(path, "rb") as fh:
        return fh.read(offset).count(b"\n") + 1


@dataclass
class PredictSummary:
    rows: int
    positive: int
    seconds: float
    output: str

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


def predict_frame(predictor: Predictor, texts: list[str], batch_size: int) -> np.ndarray:
    scores = np.empty(len(texts), dtype=float)
    with progress("predict", total=len(texts), unit_count=True) as bar:
        for i in range(0, len(texts), batch_size):
            chunk = texts[i : i + batch_size]
            scores[i : i + len(chunk)] = predictor.predict_proba(chunk)
            bar.advance(len(chunk))
    return scores


def write_predictions(path: str | Path, ids, scores: np.ndarray) -> None:
    """Write the output TSV atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = pd.DataFrame({"id": ids, "label": (scores >= 0.5).astype(int), "score": np.round(scores, 6)})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            out.to_csv(fh, sep="\t", index=False, quoting=csv.QUOTE_NONE, escapechar="\\")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def predict_file(predictor: Predictor, reviews: str | Path | pd.DataFrame, output_path: str | Path,
                 batch_size: int = 20_000) -> PredictSummary:
    """Predict every review of a file (or of a frame already read with `read_reviews`)."""
    df = reviews if isinstance(reviews, pd.DataFrame) else read_reviews(reviews)
    start = time.perf_counter()
    scores = predict_frame(predictor, df["document"].tolist(), batch_size)
    seconds = time.perf_counter() - start
    write_predictions(output_path, df["id"], scores)
    return PredictSummary(len(df), int((scores >= 0.5).sum()), seconds, str(output_path))
