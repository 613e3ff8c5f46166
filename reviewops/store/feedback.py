"""Users' feedback on the API's predictions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from reviewops.store.models import Feedback, Prediction


def add_feedback(session: Session, prediction_public_id: str, label: int, comment: str | None) -> int | None:
    """Store feedback (the correct `label`, 1 positive) on the prediction with this public id; the
    feedback's id, or None when no such prediction is stored (yet)."""
    prediction_id = session.scalar(select(Prediction.id).where(Prediction.public_id == prediction_public_id))
    if prediction_id is None:
        return None
    feedback = Feedback(prediction_id=prediction_id, label=label, comment=comment)
    session.add(feedback)
    session.flush()
    return feedback.id
