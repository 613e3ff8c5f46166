"""The numbers behind the app's monitoring page: traffic and prediction mix of the API's own
predictions, agreement of users' feedback with them, latency, and the latest drift report."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Integer, String, func, select
from sqlalchemy.orm import Session

from reviewops.config import Settings
from reviewops.store.models import Feedback, Prediction, utcnow


def summary(settings: Settings, session: Session, latency_ms: dict, hours: int = 24) -> dict:
    """The shape of GET /v1/monitoring (`serving.api.schemas.MonitoringSummary`)."""
    since = utcnow() - timedelta(hours=hours)
    served = [Prediction.public_id.is_not(None), Prediction.created_at >= since]
    hour = func.substr(func.cast(Prediction.created_at, String), 1, 13)
    request = func.substr(Prediction.public_id, 1, 16)  # see the API: an id starts with its request's
    traffic = [{"hour": h, "requests": r, "predictions": n} for h, r, n in session.execute(
        select(hour, func.count(func.distinct(request)), func.count(Prediction.id)).where(*served)
        .group_by(hour).order_by(hour)).all()]
    n, positive, confidence = session.execute(
        select(func.count(Prediction.id), func.coalesce(func.sum(Prediction.label), 0),
               func.avg(func.abs(Prediction.score - 0.5) + 0.5)).where(*served)).one()
    fb_n, fb_agree = session.execute(
        select(func.count(Feedback.id),
               func.coalesce(func.sum((Feedback.label == Prediction.label).cast(Integer)), 0))
        .join(Prediction, Feedback.prediction_id == Prediction.id)).one()
    return {
        "window_hours": hours,
        "traffic": traffic,
        "prediction_mix": {"positive": int(positive), "negative": int(n) - int(positive)},
        "mean_confidence": round(float(confidence), 4) if confidence is not None else None,
        "latency_ms": latency_ms,
        "feedback": {"n": int(fb_n), "agreement": round(int(fb_agree) / int(fb_n), 4) if fb_n else None},
        "drift": latest_drift_report(settings),
    }


def latest_drift_report(settings: Settings) -> dict | None:
    from reviewops.errors import StoreError
    from reviewops.monitor import latest_report
    from reviewops.store.objects import open_store

    try:
        store = open_store(settings.artifacts, settings.s3_endpoint_url)
        return latest_report(store)
    except (StoreError, ValueError):
        return None

