"""Users' feedback on predictions: the API's (by the public id it handed out) and the scoring job's."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from reviewops.store.models import Feedback, Prediction

# The scoring job stores its predictions of collected reviews without a public id (nothing handed one
# out); feedback reaches them as "scored-<Prediction.id>", which no API id (32 hex digits) can be.
SCORED_PREFIX = "scored-"


def feedback_id(prediction_id: int, public_id: str | None) -> str:
    """The id POST /v1/feedback takes for the prediction with this row id and public id."""
    return public_id or f"{SCORED_PREFIX}{prediction_id}"


def _prediction_id(session: Session, public_id: str) -> int | None:
    found = session.scalar(select(Prediction.id).where(Prediction.public_id == public_id))
    if found is not None or not public_id.startswith(SCORED_PREFIX):
        return found
    number = public_id.removeprefix(SCORED_PREFIX)
    if not number.isascii() or not number.isdigit() or len(number) > 18:
        return None
    # only a prediction that has no public id of its own answers to its row id
    return session.scalar(select(Prediction.id).where(Prediction.id == int(number), Prediction.public_id.is_(None),
                                                      Prediction.review_id.is_not(None)))


def add_feedback(session: Session, prediction_public_id: str, label: int, comment: str | None) -> int | None:
    """Store feedback (the correct `label`, 1 positive) on the prediction with this id (`feedback_id`); the
    feedback's id, or None when no such prediction is stored (yet). On a collected review's prediction the
    label also replaces the review's rating label in the next training snapshot (data/snapshot.py)."""
    prediction_id = _prediction_id(session, prediction_public_id)
    if prediction_id is None:
        return None
    feedback = Feedback(prediction_id=prediction_id, label=label, comment=comment)
    session.add(feedback)
    session.flush()
    return feedback.id
