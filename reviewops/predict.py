"""Prediction as users get it, the one rule for the CLI, the API and the app; and batch prediction of a
TSV/CSV of reviews (`id`, `document`) → a TSV of `id`, `label`, `score`, `verdict`, `flags`.

The rule (`judge`): a blank text is not scored: its label and score are None, its flags ["empty"]. Any
other text gets P(positive) and its label, and flags for input outside what the model knows:
`no_hangul` (letters or digits, no Hangul), `emoji_only` (no letter or digit at all) and `mostly_unseen`
(more than half of its words unknown to the model: `models.explain.unseen_share`). The verdict is the
label's name, or 애매함 when the score lies in the uncertain band [low, high] or any flag is raised.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from reviewops.data.labels import LABEL_NAMES_KO, VERDICT_UNCERTAIN
from reviewops.errors import InputError
from reviewops.progress import progress

if TYPE_CHECKING:
    from reviewops.models.pyfunc import Predictor

REQUIRED = ("id", "document")
MOSTLY_UNSEEN = 0.5  # a text is mostly unseen when MORE than this share of its words is
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7a3\ud7b0-\ud7ff]")
_LETTER_OR_DIGIT = re.compile(r"[^\W_]")


# --- the rule ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """The uncertain band of scores, ends included; its defaults live once, in the settings
    (REVIEWOPS_SERVE_UNCERTAIN_LOW/HIGH)."""

    low: float
    high: float

    def contains(self, score: float) -> bool:
        """Whether `score` is 애매함 (the model does not know which side)."""
        return self.low <= score <= self.high

    @classmethod
    def from_settings(cls, settings=None) -> Band:
        """The band of `settings` (the configured ones when None)."""
        if settings is None:
            from reviewops.config import get_settings

            settings = get_settings()
        return cls(settings.serve.uncertain_low, settings.serve.uncertain_high)


@dataclass
class Judged:
    """Per text, in input order: what a user is answered. None where a text was blank."""

    scores: list[float | None]
    labels: list[int | None]
    verdicts: list[str]
    flags: list[list[str]]
    explanations: list[list[dict]] | None = None

    @property
    def scored(self) -> list[int]:
        """Positions of the texts that were scored (not blank)."""
        return [i for i, s in enumerate(self.scores) if s is not None]


def scorable(texts: list[str]) -> list[int]:
    """Positions of the texts a model scores: all but the blank ones."""
    return [i for i, t in enumerate(texts) if t and not t.isspace()]


def text_flags(text: str) -> list[str]:
    """The flags a text raises whatever the model: empty, no_hangul or emoji_only (at most one)."""
    if not text or text.isspace():
        return ["empty"]
    if _HANGUL.search(text):
        return []
    return ["no_hangul"] if _LETTER_OR_DIGIT.search(text) else ["emoji_only"]


def judge(model, texts: list[str], scores, band: Band, explain: bool = False) -> Judged:
    """The answer for `texts`, given the model's `scores` for the texts at `scorable(texts)`, in order.
    `model` is the model itself (what `Predictor.model` or the API's `LoadedModel.model` hold)."""
    from reviewops.models.explain import explain as explain_texts
    from reviewops.models.explain import unseen_share

    kept = scorable(texts)
    kept_texts = [texts[i] for i in kept]
    kept_scores = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0).tolist()
    n = len(texts)
    out = Judged([None] * n, [None] * n, [VERDICT_UNCERTAIN] * n, [text_flags(t) for t in texts])
    unseen = unseen_share(model, kept_texts) if kept_texts else None
    for j, i in enumerate(kept):
        score, flags = kept_scores[j], out.flags[i]
        if unseen is not None and unseen[j] > MOSTLY_UNSEEN:  # NaN (no words) compares False
            flags.append("mostly_unseen")
        label = int(score >= 0.5)
        out.scores[i], out.labels[i] = score, label
        if not flags and not band.contains(score):
            out.verdicts[i] = LABEL_NAMES_KO[label]
    if explain:
        explained = explain_texts(model, kept_texts) if kept_texts else []
        out.explanations = [[] for _ in texts]
        for j, i in enumerate(kept):
            out.explanations[i] = explained[j]
    return out


def predict_texts(model, texts: list[str], band: Band, explain: bool = False) -> Judged:
    """Score and judge `texts` with `model` (blank texts are not scored)."""
    kept = [texts[i] for i in scorable(texts)]
    scores = np.asarray(model.predict_proba(kept), dtype=float) if kept else np.empty(0)
    return judge(model, texts, scores, band, explain)


# --- files -------------------------------------------------------------------------------------------


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
    uncertain: int = 0  # rows answered 애매함 (blank ones included)

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


def predict_frame(predictor: Predictor, texts: list[str], batch_size: int, band: Band | None = None) -> Judged:
    band = band or Band.from_settings()
    out = Judged([], [], [], [])
    with progress("predict", total=len(texts), unit_count=True) as bar:
        for i in range(0, len(texts), batch_size):
            chunk = texts[i : i + batch_size]
            part = predict_texts(predictor.model, chunk, band)
            for field in ("scores", "labels", "verdicts", "flags"):
                getattr(out, field).extend(getattr(part, field))
            bar.advance(len(chunk))
    return out


def write_predictions(path: str | Path, ids, judged: Judged) -> None:
    """Write the output TSV atomically: a reader never sees half a file. A blank review has an empty
    label and score; flags are comma-separated codes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = pd.DataFrame({
        "id": ids,
        "label": pd.array(judged.labels, dtype="Int64"),
        "score": [None if s is None else round(s, 6) for s in judged.scores],
        "verdict": judged.verdicts,
        "flags": [",".join(f) for f in judged.flags],
    })
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
                 batch_size: int = 20_000, band: Band | None = None) -> PredictSummary:
    """Predict every review of a file (or of a frame already read with `read_reviews`)."""
    df = reviews if isinstance(reviews, pd.DataFrame) else read_reviews(reviews)
    start = time.perf_counter()
    judged = predict_frame(predictor, df["document"].tolist(), batch_size, band)
    seconds = time.perf_counter() - start
    write_predictions(output_path, df["id"], judged)
    return PredictSummary(len(df), sum(1 for label in judged.labels if label == 1), seconds, str(output_path),
                          uncertain=sum(v == VERDICT_UNCERTAIN for v in judged.verdicts))
