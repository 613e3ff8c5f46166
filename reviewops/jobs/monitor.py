"""The monitoring job: the champion's view of the last window's crawled reviews against its training
snapshot (the drift and agreement checks are in `reviewops.monitor`); the report is stored, and Slack is
alerted when a threshold is crossed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from reviewops.config import Settings
from reviewops.data.snapshot import read_split
from reviewops.monitor import Thresholds, drift_report, store_report
from reviewops.registry.mlflow_registry import CHAMPION, Registry, VersionInfo
from reviewops.store import db, queries
from reviewops.store.objects import open_store


def monitor(settings: Settings, until: datetime | str | None = None) -> dict:
    """Compare the reviews collected in the window before `until` (default now) with the champion's
    training snapshot; store the report and send a Slack alert when a threshold is crossed."""
    from reviewops.models.pyfunc import load_predictor

    end = naive_utc(until)
    start = end - timedelta(hours=settings.monitor.window_hours)
    champion = Registry(settings).by_alias(CHAMPION)
    if champion is None:
        return {"status": "no_champion", "alerts": [], "report": None}
    store = open_store(settings.artifacts, settings.s3_endpoint_url)
    reference = _reference(settings, store, champion)
    with db.sessions(settings)() as session:
        current = queries.crawled_reviews(session, start, end)
    predictor = load_predictor(champion.uri)
    reference = pd.DataFrame({"text": reference["text"],
                              "score": predictor.predict_proba(reference["text"].tolist())})
    current["score"] = predictor.predict_proba(current["text"].tolist()) if len(current) else []
    report = drift_report(reference, current, Thresholds.from_settings(settings))
    report.update({"model": {"name": settings.model.name, "version": champion.version},
                   "window": {"start": start.isoformat(), "end": end.isoformat()}})
    uri = store_report(store, report, end.date())
    if report["alerts"]:
        _alert(settings, report, uri)
    return {"status": report["status"], "alerts": report["alerts"], "report": uri,
            "n_current": report["n_current"]}


def _reference(settings: Settings, store, champion: VersionInfo) -> pd.DataFrame:
    """The snapshot's held-out test split: the champion's scores on it are what unseen reviews of the
    training distribution look like (its scores on the training split would be overconfident)."""
    reference = read_split(store, champion.tags["snapshot_id"], "test")
    if len(reference) > settings.monitor.reference_rows:
        reference = reference.sample(settings.monitor.reference_rows, random_state=0)
    return reference


def _alert(settings: Settings, report: dict, uri: str) -> None:
    from reviewops.notify.slack import Notifier, drift_alert

    Notifier(settings).send(*drift_alert(report, uri))


def naive_utc(when: datetime | str | None) -> datetime:
    """`when` (an ISO string, aware or naive UTC) as naive UTC; now when None."""
    if when is None:
        return datetime.now(UTC).replace(tzinfo=None)
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when
