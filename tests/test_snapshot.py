"""Snapshots: stable splits as data grows, NSMC-style evaluation set, fingerprints, Parquet."""

import json
from datetime import date

import pandas as pd
import pytest

from reviewops.data.snapshot import NEUTRAL, SnapshotSpec, assign_split, read_split, split_bucket
from reviewops.errors import InputError
from reviewops.jobs.train import load_snapshot, run_ingest, run_snapshot
from reviewops.store.objects import open_store
from tests.conftest import sample_records, write_jsonl


def _ids(df):
    return set(df["source"] + ":" + df["source_review_id"])


def test_split_is_a_stable_hash():
    assert split_bucket("naver", "123") == split_bucket("naver", "123")
    assert split_bucket("naver", "123") != split_bucket("cgv", "123")
    import numpy as np

    buckets = np.array([split_bucket("naver", str(i)) for i in range(20000)])
    splits = assign_split(buckets, 10, 5)
    assert abs((splits == "test").mean() - 0.10) < 0.01 and abs((splits == "valid").mean() - 0.05) < 0.01


def test_test_reviews_never_move_into_training_as_data_grows(db_url, settings, tmp_path):
    recs = sample_records(8000)
    run_ingest(settings, write_jsonl(tmp_path / "a.jsonl.gz", recs[:4000]))
    snap1, parts1 = run_snapshot(settings)
    run_ingest(settings, write_jsonl(tmp_path / "b.jsonl.gz", recs[4000:]))
    snap2, parts2 = run_snapshot(settings)
    assert snap1.fingerprint != snap2.fingerprint
    assert _ids(parts1["test"]) <= _ids(parts2["test"])
    assert not _ids(parts1["test"]) & _ids(parts2["train"])
    assert not _ids(parts2["test"]) & (_ids(parts2["train"]) | _ids(parts2["valid"]))
    assert len(parts2["train"]) > len(parts1["train"])


def test_eval_set_is_nsmc_style_and_snapshot_is_written(db_url, settings, small_corpus):
    run_ingest(settings, small_corpus)
    snap, parts = run_snapshot(settings)
    ev = parts["eval"]
    assert (ev["label"] == 1).sum() == (ev["label"] == 0).sum() > 0
    assert ev["text"].str.len().max() < settings.eval_max_chars
    assert _ids(ev) <= _ids(parts["test"])
    store = open_store(settings.artifacts)
    manifest = json.loads(store.get(f"snapshots/{snap.id}/manifest.json"))
    assert manifest["fingerprint"] == snap.fingerprint and manifest["cleaning_versions"]
    for name in ("train", "valid", "test", "eval"):
        df = read_split(store, snap.id, name)
        assert len(df) == manifest["counts"][name]["rows"] == len(parts[name])
        pd.testing.assert_frame_equal(df.reset_index(drop=True), parts[name].reset_index(drop=True), check_dtype=False)


def test_same_data_same_fingerprint_and_spec_matters(db_url, settings, small_corpus):
    run_ingest(settings, small_corpus)
    a, _ = run_snapshot(settings)
    b, _ = run_snapshot(settings)
    assert a.fingerprint == b.fingerprint and a.created_at == b.created_at
    c, parts = run_snapshot(settings, SnapshotSpec(balance="downsample"))
    assert c.fingerprint != a.fingerprint
    assert (parts["train"]["label"] == 1).sum() == (parts["train"]["label"] == 0).sum()


def test_cleaning_version_is_in_the_fingerprint(db_url, settings, small_corpus, monkeypatch):
    from reviewops.config import Settings

    run_ingest(settings, small_corpus)
    a, _ = run_snapshot(settings)
    monkeypatch.setenv("REVIEWOPS_LABEL_NEGATIVE_MAX", "3")
    b, _ = run_snapshot(Settings())
    assert a.fingerprint != b.fingerprint  # the label policy changed


def test_filters_by_source_and_date(db_url, settings, tmp_path):
    recs = sample_records(5000)
    run_ingest(settings, write_jsonl(tmp_path / "a.jsonl.gz", recs))
    cut = sorted(r["date"] for r in recs)[2500]
    _, parts = run_snapshot(settings, SnapshotSpec(sources=("naver",), date_from=date.fromisoformat(cut)))
    every = pd.concat([parts[k] for k in ("train", "valid", "test")])
    assert (every["posted_at"] >= pd.Timestamp(cut)).all()
    assert 1000 < len(every) < 2500
    with pytest.raises(InputError, match="no labelled reviews"):
        run_snapshot(settings, SnapshotSpec(sources=("cgv",)))


def test_empty_store(db_url, settings):
    with pytest.raises(InputError, match="ingest a corpus first"):
        run_snapshot(settings)


def test_users_feedback_joins_the_training_data(db_url, settings, small_corpus):
    """POST /v1/feedback is used by later training: a corrected collected review takes the user's label,
    and a text scored through the API becomes a labelled example (the latest feedback wins)."""
    import sqlalchemy as sa

    from reviewops.store import db
    from reviewops.store.models import Feedback, Prediction, Review

    run_ingest(settings, small_corpus)
    before, _ = run_snapshot(settings)
    with db.session_scope(db_url) as s:
        review = s.scalars(sa.select(Review).where(Review.label == 1, Review.reject_reason.is_(None))
                           .order_by(Review.id)).first()
        scored = Prediction(review_id=review.id, text=review.text, label=1, score=0.9, model_name="m",
                            model_version="1")
        texts = ["이게 영화냐 돈이 아깝다 정말로", "반어법으로 최고라고 했지만 최악이었음", "ok"]
        served = [Prediction(public_id=f"{i:032x}", text=text, label=1, score=0.8, model_name="m", model_version="1")
                  for i, text in enumerate(texts)]
        s.add_all([scored, *served])
        s.flush()
        s.add_all([Feedback(prediction_id=scored.id, label=0),
                   Feedback(prediction_id=served[0].id, label=1), Feedback(prediction_id=served[0].id, label=0),
                   Feedback(prediction_id=served[1].id, label=0), Feedback(prediction_id=served[2].id, label=0)])
        review_key = (review.source, review.source_review_id)
    after, parts = run_snapshot(settings)
    assert after.id != before.id
    rows = pd.concat([parts[k] for k in ("train", "valid", "test")])
    fb = rows[rows["source"] == "feedback"].set_index("source_review_id")
    assert set(fb.index) == {f"{0:032x}", f"{1:032x}"}  # "ok" is too short for the cleaning rules
    assert (fb["label"] == 0).all()  # the latest feedback on the first text said 부정
    corrected = rows[(rows["source"] == review_key[0]) & (rows["source_review_id"] == review_key[1])]
    assert corrected["label"].tolist() == [0]
    _, plain = run_snapshot(settings, SnapshotSpec.from_settings(settings, feedback=False))
    plain_rows = pd.concat([plain[k] for k in ("train", "valid", "test")])
    assert "feedback" not in set(plain_rows["source"])
    assert len(plain_rows) == len(rows) - 2


def test_neutral_part_holds_the_training_splits_rated_unlabelled_reviews(db_url, settings, small_corpus):
    from sqlalchemy import update

    from reviewops.store import db
    from reviewops.store.models import EXPECTATION, Review

    run_ingest(settings, small_corpus)
    before = run_snapshot(settings)[1][NEUTRAL]
    two = before["source_review_id"].iloc[:2].tolist()
    with db.sessions(settings)() as s:  # two 기대평: their scores rate a trailer, not the film
        s.execute(update(Review).where(Review.source_review_id.in_(two)).values(kind=EXPECTATION))
    snap, parts = run_snapshot(settings)
    neutral = parts[NEUTRAL]
    assert not set(two) & set(neutral["source_review_id"]) and len(neutral) == len(before) - 2
    assert len(neutral) > 500 and neutral["rating"].between(5, 8).all() and neutral["label"].isna().all()
    buckets = [split_bucket(s, r) for s, r in zip(neutral["source"], neutral["source_review_id"], strict=True)]
    assert set(assign_split(pd.Series(buckets).to_numpy(), 10, 5)) == {"train"}
    assert not _ids(neutral) & (_ids(parts["valid"]) | _ids(parts["test"]) | _ids(parts["train"]))
    kept = {r["review_id"]: r for r in sample_records(6000)}
    assert all(5 <= kept[int(i)]["rating"] <= 8 for i in neutral["source_review_id"])
    assert snap.counts[NEUTRAL]["rows"] == len(neutral)
    stored = read_split(open_store(settings.artifacts), snap.id, NEUTRAL)
    pd.testing.assert_frame_equal(stored, neutral.reset_index(drop=True), check_dtype=False)


def test_a_snapshot_from_before_the_neutral_part_loads_with_an_empty_one(db_url, settings, small_corpus):
    run_ingest(settings, small_corpus)
    snap, _ = run_snapshot(settings)
    store = open_store(settings.artifacts)
    manifest = json.loads(store.get(f"snapshots/{snap.id}/manifest.json"))
    del manifest["uris"][NEUTRAL], manifest["counts"][NEUTRAL]
    store.put(f"snapshots/{snap.id}/manifest.json", json.dumps(manifest).encode(), overwrite=True)
    _, parts = load_snapshot(settings, snap.id)
    assert parts[NEUTRAL].empty and len(parts["train"]) == snap.counts["train"]["rows"]
