"""Uploaded review files: read them like `reviewops predict` does, predict them through the API, export.

`read_upload` accepts the CLI's input format (a CSV, or a TSV for .tsv/.txt, with `id` and `document`
columns; other columns are ignored) and also CP949/EUC-KR text, which is what Excel saves in Korea.
Every problem becomes an `UploadError` with a Korean message.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from reviewops.data.labels import flags_ko
from reviewops.errors import InputError
from reviewops.predict import REQUIRED, read_reviews
from reviewops.webapp.client import LABELS, ApiClient

MAX_UPLOAD_ROWS = 50_000
SUFFIXES = (".csv", ".tsv", ".txt")
RESULT_COLUMNS = ["id", "document", "verdict", "label", "score", "confidence", "flags", "words", "prediction_id",
                  "note"]
# up to this many rows an upload is answered with the words behind each label (a request explains at most
# `Limits.max_explain_texts` texts, and explaining costs more than predicting)
EXPLAIN_MAX_ROWS = 2_000
EMPTY_NOTE = "빈 리뷰"


class UploadError(ValueError):
    """An uploaded file the app cannot use; the message is Korean and names the problem."""


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf8_error = exc
    try:
        return data.decode("cp949")  # Excel's "CSV" in Korean Windows
    except UnicodeDecodeError:
        line = data[: utf8_error.start].count(b"\n") + 1
        raise UploadError(f"'{name}' 파일을 읽을 수 없습니다: {line}번째 줄이 UTF-8(또는 CP949) 텍스트가 아닙니다. "
                          "UTF-8로 저장해서 다시 올려 주세요.") from None


def read_upload(name: str, data: bytes) -> pd.DataFrame:
    """The `id` and `document` columns of an uploaded CSV/TSV (as strings), read with `read_reviews`."""
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise UploadError(f"'{name}': CSV(.csv) 또는 TSV(.tsv, .txt) 파일만 올릴 수 있습니다.")
    if not data or not data.strip():
        raise UploadError(f"'{name}' 파일이 비어 있습니다.")
    text = _decode(name, data)
    sep = "," if suffix == ".csv" else "\t"
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0]), delimiter=sep), [])
    found = [h.strip() for h in header if h.strip()]
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        kind = "CSV(쉼표로 구분)" if sep == "," else "TSV(탭으로 구분)"
        raise UploadError(f"'{name}'에 필요한 열이 없습니다: {', '.join(missing)}. 첫 줄에 id와 document 열 이름이 "
                          f"있는 {kind} 파일이어야 합니다 (찾은 열: {', '.join(found) or '없음'}).")
    with tempfile.TemporaryDirectory(prefix="reviewops-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            df = read_reviews(path)
        except InputError as exc:
            reason = str(exc).replace(str(path), name)
            raise UploadError(f"'{name}' 파일 형식이 올바르지 않습니다. ({reason})") from None
    if df.empty:
        raise UploadError(f"'{name}'에 리뷰가 한 줄도 없습니다 (머리글만 있습니다).")
    if len(df) > MAX_UPLOAD_ROWS:
        raise UploadError(f"'{name}'의 리뷰가 너무 많습니다 ({len(df):,}개). 한 번에 {MAX_UPLOAD_ROWS:,}개까지 "
                          "분석할 수 있습니다.")
    return df.reset_index(drop=True)


def predict_reviews(client: ApiClient, df: pd.DataFrame, on_progress: Callable[[int, int], None] | None = None,
                    explain: bool | None = None) -> tuple[pd.DataFrame, dict, list[list[dict] | None]]:
    """Predict every row of `df` (`id`, `document`) through the API, in requests it accepts.

    Returns (results, model, explanations): one row per input row with `verdict` (긍정/부정/애매함), `label`,
    `score` (P(긍정)), `confidence` (none for 애매함: the model does not know), `flags` (Korean), `words` (the
    strongest words each way), `prediction_id` and `note` (빈 리뷰, or why a row was left out: too long);
    and each row's explanation spans (None where there are none). A blank row is answered 애매함 by the
    API like any other text. `explain` defaults to uploads of at most `EXPLAIN_MAX_ROWS` rows."""
    out = df[["id", "document"]].copy()
    out["document"] = out["document"].fillna("").astype(str)
    notes = [client.check_text(t) or "" for t in out["document"]]
    usable = [i for i, note in enumerate(notes) if not note]
    explain = len(usable) <= EXPLAIN_MAX_ROWS if explain is None else explain
    out["note"] = notes
    for column in ("verdict", "label", "flags", "words", "prediction_id"):
        out[column] = None
    out["score"] = float("nan")
    spans: list[list[dict] | None] = [None] * len(out)
    model: dict = {}
    if usable:
        answer = client.predict(out["document"].iloc[usable].tolist(), on_progress, explain=explain)
        model = answer["model"]
        preds = answer["predictions"]
        idx = out.index[usable]
        out.loc[idx, "verdict"] = [p.get("verdict") for p in preds]
        out.loc[idx, "label"] = [LABELS.get(p.get("label_id"), p.get("label")) for p in preds]
        out.loc[idx, "score"] = [float("nan") if p.get("score") is None else float(p["score"]) for p in preds]
        out.loc[idx, "prediction_id"] = [None if p.get("id") is None else str(p["id"]) for p in preds]
        out.loc[idx, "flags"] = [flags_ko(p.get("flags")) for p in preds]
        out.loc[idx, "note"] = [EMPTY_NOTE if "empty" in (p.get("flags") or ()) else "" for p in preds]
        for i, p in zip(usable, preds, strict=True):
            spans[i] = p.get("explanation")
        out.loc[idx, "words"] = [top_words(spans[i]) for i in usable]
    decided = out["verdict"].isin(list(LABELS.values()))
    out["confidence"] = np.maximum(out["score"], 1.0 - out["score"]).where(decided)
    return out[RESULT_COLUMNS], model, spans


def top_words(spans: Iterable[Mapping] | None, n: int = 3) -> str:
    """The words that pushed most toward each side, for a table cell: "+좋았고 +최고 / -지루"."""
    spans = [s for s in spans or () if s.get("weight")]
    ups = sorted((s for s in spans if s["weight"] > 0), key=lambda s: -s["weight"])[:n]
    downs = sorted((s for s in spans if s["weight"] < 0), key=lambda s: s["weight"])[:n]
    parts = [" ".join(f"+{s['text']}" for s in ups), " ".join(f"-{s['text']}" for s in downs)]
    return " / ".join(p for p in parts if p)


def results_csv(results: pd.DataFrame) -> bytes:
    """The results as CSV in UTF-8 with a byte-order mark, so Excel shows the Korean text."""
    frame = results.copy()
    frame["score"] = frame["score"].round(6)
    frame["confidence"] = frame["confidence"].round(6)
    return frame.to_csv(index=False).encode("utf-8-sig")


# --- keywords of uploaded reviews (for word clouds) -------------------------------------------------

_TOKEN = re.compile(r"[가-힣]{2,}|[A-Za-z]{3,}")
# Endings and particles stripped from the end of a word, longest first.
_PARTICLES = sorted(("은", "는", "이", "가", "을", "를", "에", "의", "도", "로", "으로", "에서", "에게", "과", "와",
                     "들", "한테", "까지", "부터", "보다", "처럼", "만", "이다", "입니다", "이고", "이네요", "네요",
                     "예요", "이에요", "에요", "했다", "했어요", "해요", "하다", "합니다", "했습니다", "하고", "해서"),
                    key=len, reverse=True)
STOPWORDS = frozenset({
    "영화", "정말", "진짜", "너무", "그냥", "이런", "저런", "그런", "그리고", "하지만", "그래서", "근데", "이건",
    "이거", "그거", "저거", "나는", "내가", "우리", "있는", "없는", "하는", "있다", "없다", "같은", "같다", "보고",
    "봤는데", "봤다", "보는", "보면", "이렇게", "그렇게", "많이", "아주", "매우", "완전", "다시", "정도", "것이",
    "것은", "것도", "때문에", "하나", "하나도", "the", "and",
})


def keywords(texts: Iterable[str], top: int = 100) -> dict[str, int]:
    """Word counts of Korean texts for a word cloud: Hangul words of 2+ syllables, particles stripped,
    common words left out. (A plain heuristic: the app cannot rely on a Java-backed analyser.)"""
    counts: Counter[str] = Counter()
    for text in texts:
        for word in _TOKEN.findall(str(text)):
            for particle in _PARTICLES:
                if len(word) - len(particle) >= 2 and word.endswith(particle):
                    word = word[: -len(particle)]
                    break
            word = word.lower()
            if word not in STOPWORDS:
                counts[word] += 1
    return dict(counts.most_common(top))
