"""The numbers behind the app's monitoring page: traffic, latency and prediction mix of the API's own
predictions per hour, agreement of users' feedback with them, and the latest drift report.

Everything comes from the review store (the prediction log and `api_requests`), so every API worker
answers the same numbers and a restart loses none of them. Hours are UTC, as the store keeps times,
given as ISO 8601 with a `Z`; the app shows them in KST.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import BigInteger, Integer, String, case, cast, func, select
from sqlalchemy.orm import Session

from reviewops.config import Settings
from reviewops.serving.metrics import PREDICT_ROUTE
from reviewops.store.models import ApiRequest, Feedback, Prediction, utcnow

PERCENTILES = (50, 95, 99)
# Latencies per hour the percentiles are computed from: a pseudo-random sample (rows ranked by a hash of
# their id), so a busy fortnight is thousands of rows read, not millions; counts stay exact (SQL).
LATENCY_SAMPLE = 5_000
_KNUTH = 2_654_435_761  # multiplicative hash: consecutive ids land far apart


def _hour_key(column):
    """"YYYY-MM-DD HH" of a datetime column, the same text on SQLite and PostgreSQL."""
    return func.substr(func.cast(column, String), 1, 13)


def _iso(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%dT%H:00:00Z")


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {f"p{q}": None for q in PERCENTILES}
    found = np.percentile(np.asarray(values, dtype=float), PERCENTILES)
    return {f"p{q}": round(float(v), 2) for q, v in zip(PERCENTILES, found, strict=True)}


def _requests(session: Session, since: datetime) -> tuple[dict[str, tuple[int, int]], dict[str, list[float]]]:
    """Per hour key: (answered predict requests, error answers), and a sample of their latencies."""
    window = [ApiRequest.route == PREDICT_ROUTE, ApiRequest.created_at >= since]
    hour = _hour_key(ApiRequest.created_at)
    counts = {h: (n, e) for h, n, e in session.execute(
        select(hour, func.count(ApiRequest.id), func.sum(case((ApiRequest.status >= 400, 1), else_=0)))
        .where(*window).group_by(hour)).all()}
    shuffled = (cast(ApiRequest.id, BigInteger) * _KNUTH) % 4_294_967_296
    rank = func.row_number().over(partition_by=hour, order_by=shuffled).label("rank")
    ranked = select(hour.label("hour"), ApiRequest.latency_ms.label("ms"), rank).where(*window).subquery()
    latencies: dict[str, list[float]] = {}
    for h, ms in session.execute(select(ranked.c.hour, ranked.c.ms).where(ranked.c["rank"] <= LATENCY_SAMPLE)).all():
        latencies.setdefault(h, []).append(ms)
    return counts, latencies


def summary(settings: Settings, session: Session, hours: int = 24, now: datetime | None = None) -> dict:
    """The shape of GET /v1/monitoring (`serving.api.schemas.MonitoringSummary`): every hour of the
    window, empty ones included, so a chart's time axis has no false continuity."""
    end = (now or utcnow()).replace(minute=0, second=0, microsecond=0)
    since = end - timedelta(hours=hours - 1)
    slots = [since + timedelta(hours=i) for i in range(hours)]
    served = [Prediction.public_id.is_not(None), Prediction.created_at >= since]
    hour = _hour_key(Prediction.created_at)  # one expression: PostgreSQL matches GROUP BY by its parameters
    predicted = dict(session.execute(
        select(hour, func.count(Prediction.id)).where(*served).group_by(hour)).all())
    requests, latencies = _requests(session, since)
    traffic, latency = [], []
    for slot in slots:
        key = slot.strftime("%Y-%m-%d %H")
        count, errors = requests.get(key, (0, 0))
        traffic.append({"hour": _iso(slot), "requests": int(count), "predictions": int(predicted.get(key, 0)),
                        "errors": int(errors)})
        if key in latencies:
            latency.append({"hour": _iso(slot), **_percentiles(latencies[key])})
    n, positive, confidence = session.execute(
        select(func.count(Prediction.id), func.coalesce(func.sum(Prediction.label), 0),
               func.avg(func.abs(Prediction.score - 0.5) + 0.5)).where(*served)).one()
    fb_n, fb_agree = session.execute(
        select(func.count(Feedback.id),
               func.coalesce(func.sum((Feedback.label == Prediction.label).cast(Integer)), 0))
        .join(Prediction, Feedback.prediction_id == Prediction.id)
        # the API's answers only: a correction from the movie page's disagreement list is about a scored
        # review the model got wrong by construction, and would pull the users' agreement down
        .where(Prediction.public_id.is_not(None))).one()
    return {
        "window_hours": hours,
        "traffic": traffic,
        "latency": latency,
        "prediction_mix": {"positive": int(positive), "negative": int(n) - int(positive)},
        "mean_confidence": round(float(confidence), 4) if confidence is not None else None,
        "latency_ms": _percentiles([ms for values in latencies.values() for ms in values]),
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
