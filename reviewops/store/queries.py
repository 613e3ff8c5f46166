"""Read-only questions the jobs ask the review store, each one function of an open session.

Times are naive UTC, as the store keeps them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reviewops.store.models import ASPECTS, REVIEW, CollectionBatch, Prediction, Review


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


def aspect_summary(session: Session, movie_id: int) -> list[dict]:
    """Per point a film's reviewers ticked (`Review.aspects`, Megabox's 연출, 스토리, 영상미, 배우, OST), one dict:

    - `aspect`: the point's Korean name;
    - `reviews`: how many of the film's kept 관람평 name it;
    - `share`: that count over all the film's kept 관람평 (0.0–1.0);
    - `positive_share`: the share positive among those naming it that have a sentiment (0.0–1.0), the
      sentiment being the reviewer's own (the rating's label) where labelled, else the review's newest
      prediction (highest `Prediction.id`, any model); None when none of them has either.

    The five known points come first, in the site's order, even when none names them; any other name a
    source stored follows, most named first. A film none of whose reviews names a point (every CGV film,
    the NAVER history) gives []. A 기대평 (kind "expectation") is left out: its points and score are about
    the trailer and cast, not the film.
    """
    rows = session.execute(
        select(Review.id, Review.aspects, Review.label)
        .where(Review.movie_id == movie_id, Review.reject_reason.is_(None), Review.kind == REVIEW)).all()
    naming = [r for r in rows if r.aspects]
    if not naming:
        return []
    sentiment = {r.id: r.label for r in naming if r.label is not None}
    unlabelled = [r.id for r in naming if r.label is None]
    for start in range(0, len(unlabelled), 500):  # stay under the bound-parameter limits
        chunk = unlabelled[start:start + 500]
        newest = (select(func.max(Prediction.id)).where(Prediction.review_id.in_(chunk))
                  .group_by(Prediction.review_id))
        sentiment.update(session.execute(
            select(Prediction.review_id, Prediction.label).where(Prediction.id.in_(newest))).tuples().all())
    named: dict[str, list[int]] = {}
    for r in naming:
        for aspect in dict.fromkeys(r.aspects):  # a name listed twice counts once
            named.setdefault(str(aspect), []).append(r.id)
    others = sorted((a for a in named if a not in ASPECTS), key=lambda a: (-len(named[a]), a))
    out = []
    for aspect in (*ASPECTS, *others):
        ids = named.get(aspect, [])
        judged = [sentiment[i] for i in ids if i in sentiment]
        out.append({"aspect": aspect, "reviews": len(ids), "share": len(ids) / len(rows),
                    "positive_share": sum(1 for label in judged if label == 1) / len(judged) if judged else None})
    return out
