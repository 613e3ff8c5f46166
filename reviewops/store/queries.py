"""Read-only questions the jobs ask the review store, each one function of an open session.

Times are naive UTC, as the store keeps them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reviewops.store.models import CollectionBatch, Review


def _naive_utc(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo is not None else when


def count_labelled_since(session: Session, since: datetime | None) -> int:
    """Kept reviews with a label collected after `since` (all of them when None)."""
    where = [Review.label.is_not(None), Review.reject_reason.is_(None)]
    if since is not None:
        where.append(Review.collected_at > _naive_utc(since))
    return session.scalar(select(func.count(Review.id)).where(*where))


def crawled_reviews(session: Session, start: datetime, end: datetime) -> pd.DataFrame:
    """The kept reviews crawled in [start, end): columns `text` (cleaned) and `label` (None when the
    reviewer gave no rating). A bulk ingest of history is no crawl and is left out."""
    rows = session.execute(
        select(Review.clean_text, Review.label).join(CollectionBatch, Review.batch_id == CollectionBatch.id)
        .where(CollectionBatch.kind == "crawl", Review.reject_reason.is_(None),
               Review.collected_at >= _naive_utc(start), Review.collected_at < _naive_utc(end))).all()
    return pd.DataFrame(rows, columns=["text", "label"])
