"""Dataset snapshots: labelled reviews chosen from the store, split, fingerprinted, written as Parquet.

Splits come from a stable hash of (source, source review id), so a review is in the same split in
every snapshot: a test review never moves into training as data grows. The evaluation set is
built the way NSMC is judged: test-split texts shorter than `eval_max_chars`, balanced 50/50.

Beside the labelled splits, `neutral` holds the training split's rated reviews that the label policy
leaves unlabelled (NSMC's 5–8): no label, but a rating a model can learn from (`BaselineModel`'s rating
head). They come from the training split's buckets only, so no test or validation review is used.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reviewops.errors import InputError
from reviewops.store.models import REVIEW, Feedback, Prediction, Review
from reviewops.store.objects import ObjectStore

SPLITS = ("train", "valid", "test", "eval")
NEUTRAL = "neutral"  # the training split's rated, unlabelled reviews
COLUMNS = ["review_id", "source", "source_review_id", "movie_id", "text", "label", "rating", "posted_at"]


def split_bucket(source: str, source_review_id: str) -> int:
    """A review's bucket in 0..9999, from a hash that never changes."""
    digest = hashlib.blake2b(f"{source}:{source_review_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000


def assign_split(buckets: np.ndarray, test_percent: int, valid_percent: int) -> np.ndarray:
    test_cut, valid_cut = test_percent * 100, (test_percent + valid_percent) * 100
    return np.where(buckets < test_cut, "test", np.where(buckets < valid_cut, "valid", "train"))


@dataclass(frozen=True)
class SnapshotSpec:
    sources: tuple[str, ...] = ()  # empty: every source
    date_from: date | None = None
    date_to: date | None = None
    balance: str = "none"  # none | downsample (training and validation splits)
    max_rows: int | None = None  # cap on training rows (sampled by hash order), for quick runs
    test_percent: int = 10
    valid_percent: int = 5
    eval_max_chars: int = 140
    feedback: bool = True  # users' corrections from POST /v1/feedback join the data (source "feedback")

    @classmethod
    def from_settings(cls, settings, **choices) -> SnapshotSpec:
        """A spec with the configured splits and evaluation rule, plus the given selection."""
        return cls(test_percent=settings.test_percent, valid_percent=settings.valid_percent,
                   eval_max_chars=settings.eval_max_chars, **choices)

    def __post_init__(self) -> None:
        if self.balance not in ("none", "downsample"):
            raise InputError(f"unknown class balance {self.balance!r} (use none or downsample)")


@dataclass
class Snapshot:
    id: str
    fingerprint: str
    spec: dict
    cleaning_versions: list[str]
    label_policy: str
    counts: dict[str, dict[str, int]]
    uris: dict[str, str] = field(default_factory=dict)
    created_at: str = ""

    def manifest(self) -> dict:
        return asdict(self)


def _balanced(df: pd.DataFrame) -> pd.DataFrame:
    """Equal numbers of each label, keeping the reviews with the lowest hash buckets."""
    if df.empty:
        return df
    n = int(df["label"].value_counts().min()) if df["label"].nunique() == 2 else 0
    return (
        df.sort_values(["bucket", "review_id"])
        .groupby("label", group_keys=False)
        .head(n)
        .sort_values(["bucket", "review_id"])
    )


def _reviews(spec: SnapshotSpec, *where):
    """The kept reviews the spec selects (sources, dates) that also match `where`."""
    q = select(
        Review.id.label("review_id"),
        Review.source,
        Review.source_review_id,
        Review.movie_id,
        Review.clean_text.label("text"),
        Review.label,
        Review.rating,
        Review.posted_at,
        Review.cleaning_version,
    ).where(Review.reject_reason.is_(None), *where)
    if spec.sources:
        q = q.where(Review.source.in_(spec.sources))
    if spec.date_from:
        q = q.where(Review.posted_at >= datetime.combine(spec.date_from, datetime.min.time()))
    if spec.date_to:
        q = q.where(Review.posted_at <= datetime.combine(spec.date_to, datetime.max.time()))
    return q


def load_labelled(session: Session, spec: SnapshotSpec, cleaner=None) -> pd.DataFrame:
    rows = session.execute(_reviews(spec, Review.label.is_not(None))).all()
    df = pd.DataFrame(rows, columns=[*COLUMNS, "cleaning_version"])
    if spec.feedback and cleaner is not None:
        df = _with_feedback(session, spec, df, cleaner)
    df["label"] = df["label"].astype("int8")
    return df


def load_neutral(session: Session, spec: SnapshotSpec) -> pd.DataFrame:
    """The rated reviews without a label (NSMC: ratings 5–8) of the training split, in bucket order (capped
    like the training split); the label column is empty. Film reviews only: a Megabox 기대평's score rates a
    trailer or a cast (`labels.gets_label`)."""
    rows = session.execute(_reviews(spec, Review.label.is_(None), Review.rating.is_not(None),
                                    Review.kind == REVIEW)).all()
    df = pd.DataFrame(rows, columns=[*COLUMNS, "cleaning_version"])
    df["bucket"] = [split_bucket(s, r) for s, r in zip(df["source"], df["source_review_id"], strict=True)]
    df = df[assign_split(df["bucket"].to_numpy(), spec.test_percent, spec.valid_percent) == "train"]
    df = df.sort_values(["bucket", "review_id"])
    df["rating"] = df["rating"].astype("int16")
    return df.head(spec.max_rows) if spec.max_rows else df


def _with_feedback(session: Session, spec: SnapshotSpec, df: pd.DataFrame, cleaner) -> pd.DataFrame:
    """Users' corrections: a feedback label replaces the rating-derived label of a collected review, and
    a text scored through the API becomes a labelled example of source "feedback" (latest feedback wins)."""
    latest = (select(Feedback.prediction_id, func.max(Feedback.id).label("fid"))
              .group_by(Feedback.prediction_id).subquery())
    found = session.execute(
        select(Prediction.review_id, Prediction.public_id, Prediction.text, Feedback.label, Feedback.created_at)
        .join(latest, latest.c.prediction_id == Prediction.id).join(Feedback, Feedback.id == latest.c.fid)
    ).all()
    if not found:
        return df
    corrections = {r.review_id: r.label for r in found if r.review_id is not None}
    if corrections and len(df):
        fixed = df["review_id"].map(corrections)
        df["label"] = fixed.fillna(df["label"]).astype(int)
    if spec.sources and "feedback" not in spec.sources:
        return df
    extra = []
    for r in found:
        if r.review_id is not None or not r.public_id:
            continue
        cleaned = cleaner.clean(r.text)
        if cleaned.rejected:
            continue
        extra.append({"review_id": -1, "source": "feedback", "source_review_id": r.public_id, "movie_id": None,
                      "text": cleaned.text, "label": int(r.label), "rating": None, "posted_at": r.created_at,
                      "cleaning_version": cleaner.version})
    if not extra:
        return df
    return pd.concat([df, pd.DataFrame(extra, columns=df.columns)], ignore_index=True)


def build_snapshot(
    session: Session, store: ObjectStore, spec: SnapshotSpec, label_policy: str, cleaner=None
) -> tuple[Snapshot, dict[str, pd.DataFrame]]:
    """Choose, split and write a snapshot. Writing is idempotent: the same data gives the same id."""
    df = load_labelled(session, spec, cleaner)
    if df.empty:
        raise InputError("no labelled reviews match the snapshot's sources and dates: ingest a corpus first")
    df["bucket"] = [split_bucket(s, r) for s, r in zip(df["source"], df["source_review_id"], strict=True)]
    df["split"] = assign_split(df["bucket"].to_numpy(), spec.test_percent, spec.valid_percent)
    parts = _parts(df, spec)
    _require_both_labels(parts)
    parts[NEUTRAL] = load_neutral(session, spec)

    versions = sorted(set(df["cleaning_version"]) | set(parts[NEUTRAL]["cleaning_version"]))
    fingerprint = _fingerprint(parts, spec, versions, label_policy)
    snap = Snapshot(
        id=fingerprint[:12],
        fingerprint=fingerprint,
        spec=json.loads(json.dumps(asdict(spec), default=str)),
        cleaning_versions=versions,
        label_policy=label_policy,
        counts={
            name: {"rows": len(p), "positive": int((p["label"] == 1).sum()), "negative": int((p["label"] == 0).sum())}
            for name, p in parts.items()
        },
        created_at=datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    _write(store, snap, parts)
    return snap, {name: p[COLUMNS].reset_index(drop=True) for name, p in parts.items()}


def _parts(df: pd.DataFrame, spec: SnapshotSpec) -> dict[str, pd.DataFrame]:
    """The train, valid and test splits of `df` (balanced, ordered and capped as `spec` says) and eval:
    the test split's short reviews, balanced."""
    parts: dict[str, pd.DataFrame] = {}
    for name in ("train", "valid", "test"):
        part = df[df["split"] == name]
        if spec.balance == "downsample" and name != "test":
            part = _balanced(part)
        part = part.sort_values(["bucket", "review_id"])
        if name == "train" and spec.max_rows:
            part = part.head(spec.max_rows)
        parts[name] = part
    test = parts["test"]
    parts["eval"] = _balanced(test[test["text"].str.len() < spec.eval_max_chars])
    return parts


def _require_both_labels(parts: dict[str, pd.DataFrame]) -> None:
    for name in ("train", "eval"):
        if parts[name]["label"].nunique() < 2:
            raise InputError(
                f"the {name} split has {len(parts[name])} reviews and not both labels: ingest more labelled reviews"
            )


def _fingerprint(parts: dict[str, pd.DataFrame], spec: SnapshotSpec, versions: list[str], label_policy: str) -> str:
    """A hash of the spec, the cleaning and label versions and every part's reviews, labels (the neutral
    part's ratings) and texts."""
    h = hashlib.sha256()
    h.update(json.dumps({"spec": asdict(spec), "cleaning": versions, "labels": label_policy}, default=str).encode())
    for name in (*SPLITS, NEUTRAL):
        p = parts[name]
        h.update(name.encode())
        h.update(p["source"].str.cat(p["source_review_id"], sep=":").str.cat(sep="\n").encode())
        h.update(p["rating" if name == NEUTRAL else "label"].to_numpy().astype("int16").tobytes())
        h.update(pd.util.hash_pandas_object(p["text"], index=False).to_numpy().tobytes())
    return h.hexdigest()


def _write(store: ObjectStore, snap: Snapshot, parts: dict[str, pd.DataFrame]) -> None:
    """Write the splits and the manifest that are not in the store yet, and record their URIs in `snap`."""
    prefix = f"snapshots/{snap.id}"
    for name, p in parts.items():
        key = f"{prefix}/{name}.parquet"
        if not store.exists(key):
            buf = io.BytesIO()
            p[COLUMNS].to_parquet(buf, index=False)
            store.put(key, buf.getvalue())
        snap.uris[name] = store.uri(key)
    manifest_key = f"{prefix}/manifest.json"
    if store.exists(manifest_key):  # the same data was snapshotted before: keep its record
        snap.created_at = json.loads(store.get(manifest_key)).get("created_at", snap.created_at)
    else:
        store.put(manifest_key, json.dumps(snap.manifest(), ensure_ascii=False, indent=2).encode())
    snap.uris["manifest"] = store.uri(manifest_key)


def read_split(store: ObjectStore, snapshot_id: str, split: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(store.get(f"snapshots/{snapshot_id}/{split}.parquet")))
