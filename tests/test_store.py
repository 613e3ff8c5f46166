"""The review store: migrations and constraints, on SQLite and PostgreSQL."""

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from reviewops.errors import StoreError
from reviewops.store import db
from reviewops.store.models import CollectionBatch, Feedback, Movie, Prediction, Review


def test_migrations_create_every_table_and_go_back_down(db_url):
    assert db.upgrade(db_url) == "0007"
    tables = set(sa.inspect(db.get_engine(db_url)).get_table_names())
    assert {"movies", "reviews", "collection_batches", "predictions", "feedback", "alembic_version"} <= tables
    indexes = {i["name"] for i in sa.inspect(db.get_engine(db_url)).get_indexes("predictions")}
    assert "uq_predictions_review_model" in indexes
    assert db.upgrade(db_url) == "0007"  # idempotent
    db.downgrade(db_url, "0001")
    assert "uq_predictions_review_model" not in {
        i["name"] for i in sa.inspect(db.get_engine(db_url)).get_indexes("predictions")}
    assert db.upgrade(db_url) == "0007"
    db.downgrade(db_url, "base")
    assert "reviews" not in sa.inspect(db.get_engine(db_url)).get_table_names()


def _batch_and_movie(s):
    batch = CollectionBatch(kind="ingest", source="cgv", cleaning_version="v1", counts={"new": 1})
    movie = Movie(source="cgv", source_movie_id="88381", title="테스트 영화")
    s.add_all([batch, movie])
    s.flush()
    return batch, movie


def _review(batch, movie, rid="r1"):
    return Review(source="cgv", source_review_id=rid, movie_id=movie.id, text="재밌어요", clean_text="재밌어요",
                  text_key="k", egg=2, label=1, cleaning_version="v1", batch_id=batch.id)


def test_review_id_is_unique_per_source(db_url):
    with db.session_scope(db_url) as s:
        batch, movie = _batch_and_movie(s)
        s.add(_review(batch, movie))
    with pytest.raises(IntegrityError), db.session_scope(db_url) as s:
        batch = s.scalars(sa.select(CollectionBatch)).one()
        movie = s.scalars(sa.select(Movie)).one()
        s.add(_review(batch, movie))
    with db.session_scope(db_url) as s:  # the failed transaction left the first review alone
        assert s.scalar(sa.select(sa.func.count(Review.id))) == 1
        assert s.scalars(sa.select(CollectionBatch)).one().counts == {"new": 1}


def test_predictions_and_feedback(db_url):
    with db.session_scope(db_url) as s:
        batch, movie = _batch_and_movie(s)
        review = _review(batch, movie)
        s.add(review)
        s.flush()
        pred = Prediction(review_id=review.id, text="재밌어요", label=1, score=0.93, model_name="m", model_version="3")
        s.add(pred)
        s.flush()
        s.add(Feedback(prediction_id=pred.id, label=0, comment="사실 부정"))
    with db.session_scope(db_url) as s:
        fb = s.scalars(sa.select(Feedback)).one()
        assert fb.label == 0 and s.get(Prediction, fb.prediction_id).model_version == "3"


def test_unreachable_database_is_a_clear_error():
    url = "postgresql+psycopg://reviewops:hunter2@127.0.0.1:1/nope"
    with pytest.raises(StoreError) as exc:
        db.check_connection(url)
    msg = str(exc.value)
    assert "cannot reach the review database" in msg and "REVIEWOPS_DATABASE_URL" in msg
    assert "hunter2" not in msg and "\n" not in msg


def test_migrations_match_the_models(db_url):
    """Alembic's autogenerate finds nothing to do: the migrations create exactly the ORM's schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from reviewops.store.models import Base

    db.upgrade(db_url)
    with db.get_engine(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_a_review_is_scored_once_per_model_version(db_url):
    with db.session_scope(db_url) as s:
        batch, movie = _batch_and_movie(s)
        review = _review(batch, movie)
        s.add(review)
        s.flush()
        s.add_all([Prediction(review_id=review.id, text="재밌어요", label=1, score=0.9, model_name="m",
                              model_version="1"),
                   Prediction(review_id=review.id, text="재밌어요", label=1, score=0.8, model_name="m",
                              model_version="2"),
                   # the API's predictions have no review: they may repeat
                   Prediction(review_id=None, text="재밌어요", label=1, score=0.9, model_name="m", model_version="1"),
                   Prediction(review_id=None, text="재밌어요", label=1, score=0.9, model_name="m", model_version="1")])
    with pytest.raises(IntegrityError), db.session_scope(db_url) as s:
        s.add(Prediction(review_id=review.id, text="재밌어요", label=0, score=0.1, model_name="m", model_version="1"))
