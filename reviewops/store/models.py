"""The review store's tables (SQLAlchemy 2). Alembic migrations in `migrations/` create them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

REVIEW, EXPECTATION = "review", "expectation"  # Review.kind
ASPECTS = ("연출", "스토리", "영상미", "배우", "OST")  # Review.aspects: Megabox's points, in the site's order


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def storable(text: str) -> str:
    """`text` as the store keeps it: NUL characters removed (PostgreSQL's text cannot hold them: one NUL
    failed the whole insert it was in) and lone surrogates, which no database can encode, replaced by
    U+FFFD. The same rule for every writer (ingest, crawl, API), on SQLite as on PostgreSQL."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # through UTF-16: a surrogate pair becomes its character, a lone surrogate U+FFFD
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


class _Storable:
    def process_bind_param(self, value, dialect):
        return storable(value) if isinstance(value, str) else value


class StoredText(_Storable, TypeDecorator):
    impl = Text
    cache_ok = True


class StoredString(_Storable, TypeDecorator):
    impl = String
    cache_ok = True


class Base(DeclarativeBase):
    pass


class Movie(Base):
    __tablename__ = "movies"
    __table_args__ = (UniqueConstraint("source", "source_movie_id", name="uq_movies_source_movie"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(StoredString(32))
    source_movie_id: Mapped[str] = mapped_column(StoredString(64))
    title: Mapped[str | None] = mapped_column(StoredString(512))
    plot: Mapped[str | None] = mapped_column(StoredText)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # crawl progress: a crawl reached the end of the movie's reviews with everything above it stored, or
    # (False) the page the unfinished back-fill goes on from (None: from where the newest stored reviews are)
    reviews_complete: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    backfill_page: Mapped[int | None] = mapped_column(Integer)


class CollectionBatch(Base):
    __tablename__ = "collection_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(StoredString(16))  # ingest | crawl
    source: Mapped[str] = mapped_column(StoredString(32))
    location: Mapped[str | None] = mapped_column(StoredText)  # file or URL the batch read
    status: Mapped[str] = mapped_column(StoredString(16), default="running")  # running|succeeded|partial|failed
    cleaning_version: Mapped[str] = mapped_column(StoredString(32))
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(StoredText)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    # to close a batch whose run died (reviewops.store.batches): the owning process of a one-process run
    # (host:pid:start), and the last sign of life (a movie committed)
    owner: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("source", "source_review_id", name="uq_reviews_source_review"),
        Index("ix_reviews_key_movie", "text_key", "movie_id"),
        Index("ix_reviews_label", "label"),
        Index("ix_reviews_posted_at", "posted_at"),
        Index("ix_reviews_batch", "batch_id"),
        Index("ix_reviews_movie", "movie_id"),  # movie summaries
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(StoredString(32))
    source_review_id: Mapped[str] = mapped_column(StoredString(64))
    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.id"))
    text: Mapped[str] = mapped_column(StoredText)  # as written
    clean_text: Mapped[str] = mapped_column(StoredText)
    text_key: Mapped[str] = mapped_column(StoredString(40))  # dedup key of clean_text
    rating: Mapped[int | None] = mapped_column(SmallInteger)  # 1–10
    egg: Mapped[int | None] = mapped_column(SmallInteger)  # CGV golden egg: 2 up, 1 down
    label: Mapped[int | None] = mapped_column(SmallInteger)  # 1 positive, 0 negative, None unlabelled
    reject_reason: Mapped[str | None] = mapped_column(StoredString(32))  # cleaning rule that left it out
    cleaning_version: Mapped[str] = mapped_column(StoredString(32))
    author: Mapped[str | None] = mapped_column(StoredString(128))
    raw_ref: Mapped[str | None] = mapped_column(StoredText)  # archived raw response it came from
    posted_at: Mapped[datetime | None] = mapped_column(DateTime)
    collected_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    batch_id: Mapped[int] = mapped_column(ForeignKey("collection_batches.id"))
    # "review", or "expectation": a Megabox 기대평 (onelnEvalDivCd EXPE), written before seeing the film
    kind: Mapped[str] = mapped_column(StoredString(16), default=REVIEW, server_default=REVIEW)
    aspects: Mapped[list[str] | None] = mapped_column(JSON)  # points the reviewer ticked, e.g. ["연출", "OST"]


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_created_at", "created_at"),
        # a collected review is scored once per model version (the scoring job is idempotent)
        Index("uq_predictions_review_model", "review_id", "model_name", "model_version", unique=True),
        Index("uq_predictions_public_id", "public_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str | None] = mapped_column(StoredString(32))  # the id the API hands out (for feedback)
    review_id: Mapped[int | None] = mapped_column(ForeignKey("reviews.id"))
    text: Mapped[str] = mapped_column(StoredText)
    label: Mapped[int] = mapped_column(SmallInteger)
    score: Mapped[float] = mapped_column(Float)  # P(positive)
    model_name: Mapped[str] = mapped_column(StoredString(128))
    model_version: Mapped[str] = mapped_column(StoredString(32))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Feedback(Base):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prediction_id: Mapped[int] = mapped_column(ForeignKey("predictions.id"))
    label: Mapped[int] = mapped_column(SmallInteger)  # the correct label, per the user
    comment: Mapped[str | None] = mapped_column(StoredText)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ApiRequest(Base):
    """A request the API answered on a watched route (/v1/predict), with its latency: the monitoring page's
    traffic and latency over time, the same whichever worker answered and across restarts."""

    __tablename__ = "api_requests"
    __table_args__ = (Index("ix_api_requests_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    route: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(SmallInteger)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)  # when the answer was sent
