"""Megabox as the site really answers (../shared/docs/sources.md, "Megabox, corrected"): the adapter's
fields, 기대평 kept without a training label, the ticked points stored as aspects and summed per film."""

from __future__ import annotations

import pytest

from reviewops.store import db
from reviewops.store.models import EXPECTATION, CollectionBatch, Movie, Prediction, Review
from reviewops.store.queries import aspect_summary


def _review(n: int, movie: int, batch: int, aspects: list[str] | None, label: int | None = None,
            kind: str = "review", reject: str | None = None) -> Review:
    return Review(source="megabox", source_review_id=str(n), movie_id=movie, text=f"리뷰 {n}",
                  clean_text=f"리뷰 {n}", text_key=f"k{n}", label=label, cleaning_version="t", batch_id=batch,
                  kind=kind, aspects=aspects, reject_reason=reject)


def test_aspect_summary_counts_points_and_their_sentiment(db_url):
    with db.session_scope(db_url) as s:
        film, other = Movie(source="megabox", source_movie_id="1"), Movie(source="cgv", source_movie_id="2")
        batch = CollectionBatch(kind="crawl", source="megabox", cleaning_version="t")
        s.add_all([film, other, batch])
        s.flush()
        m, b = film.id, batch.id
        reviews = [
            _review(1, m, b, ["연출", "스토리"], label=1),
            _review(2, m, b, ["연출"], label=0),
            _review(3, m, b, ["연출", "배우"]),  # no label: its newest prediction counts
            _review(4, m, b, ["배우", "배우"]),  # no label, no prediction: named, no sentiment
            _review(5, m, b, None, label=1),
            _review(6, m, b, ["사운드"], label=1),  # a name the site may add one day: kept
            _review(7, m, b, ["연출"], label=0, kind=EXPECTATION),  # a 기대평: not about the film
            _review(8, m, b, ["연출"], label=0, reject="duplicate"),
            _review(9, other.id, b, None, label=1),
        ]
        s.add_all(reviews)
        s.flush()
        three = reviews[2].id
        s.add(Prediction(review_id=three, text="x", label=0, score=0.1, model_name="m", model_version="1"))
        s.flush()
        s.add(Prediction(review_id=three, text="x", label=1, score=0.9, model_name="m", model_version="2"))
        other_id = other.id

    with db.session_scope(db_url) as s:
        got = {row["aspect"]: row for row in aspect_summary(s, m)}
        order = [row["aspect"] for row in aspect_summary(s, m)]
        assert aspect_summary(s, other_id) == []
        assert aspect_summary(s, 999_999) == []
    assert order == ["연출", "스토리", "영상미", "배우", "OST", "사운드"]
    # six kept 관람평: the rejected review and the 기대평 do not count
    assert got["연출"] == {"aspect": "연출", "reviews": 3, "share": pytest.approx(3 / 6),
                         "positive_share": pytest.approx(2 / 3)}
    assert got["스토리"] == {"aspect": "스토리", "reviews": 1, "share": pytest.approx(1 / 6), "positive_share": 1.0}
    assert got["영상미"] == {"aspect": "영상미", "reviews": 0, "share": 0.0, "positive_share": None}
    assert got["배우"]["reviews"] == 2 and got["배우"]["positive_share"] == 1.0  # review 4 has no sentiment
    assert got["사운드"]["reviews"] == 1
