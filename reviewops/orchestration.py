"""What the Airflow DAGs call. Each task is one function here; tasks pass only ids, URIs and small
JSON-able dicts to each other (never data frames or models).

Importing this module is cheap (no pandas, MLflow, torch): DAG files import it at parse time, and
everything heavy is imported inside the function that needs it, in the task's own process.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from reviewops.config import Settings, get_settings, redact_text

log = logging.getLogger(__name__)

# Asset URIs: reviews_collect updates NEW_REVIEWS when it stored new reviews; sentiment_train updates
# CHAMPION when it promoted a model; reviews_score runs on either and updates SCORED_REVIEWS.
NEW_REVIEWS = "reviewops://reviews/new"
CHAMPION = "reviewops://models/champion"
SCORED_REVIEWS = "reviewops://reviews/scored"
TIMEZONE = "Asia/Seoul"


def settings() -> Settings:
    return get_settings()


def default_args() -> dict:
    """Retries with exponential backoff, then a Slack message (settings decide how many and how long)."""
    s = settings()
    return {
        "owner": "reviewops",
        "retries": s.task_retries,
        "retry_delay": timedelta(seconds=s.task_retry_delay),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(hours=1),
        "on_failure_callback": on_task_failure,
    }


def dag_kwargs(doc: str | None, *tags: str) -> dict:
    """What every DAG of the platform shares: no catch-up, one run at a time, retries and the Slack
    failure message, its tags and its documentation."""
    return {"catchup": False, "max_active_runs": 1, "default_args": default_args(), "tags": ["reviewops", *tags],
            "doc_md": doc}


def on_task_failure(context) -> None:
    """Airflow's failure callback: a Slack message naming DAG, task, error and log link. Secrets in the
    error (URL passwords, tokens) are masked; the callback itself never raises."""
    from reviewops.notify.slack import Notifier, failure

    try:
        s = settings()
        ti = context["ti"]
        exc = context.get("exception")
        error = redact_text(f"{type(exc).__name__}: {exc}" if exc else "unknown error", s)
        task = ti.task_id if getattr(ti, "map_index", -1) in (-1, None) else f"{ti.task_id}[{ti.map_index}]"
        log_url = getattr(ti, "log_url", None)
        Notifier(s).send(*failure(ti.dag_id, task, error, log_url))
    except Exception as exc:  # noqa: BLE001 - a broken report must not hide the task's own failure
        log.warning("failure report not sent: %s", type(exc).__name__)


# --- reviews_collect ----------------------------------------------------------------------------------


def open_collection(sources: tuple[str, ...] | None = None) -> list[dict]:
    """Open one batch per source and list its movies now playing:
    [{"source", "batch_id", "error", "movies": [{"code", "title"}, ...]}, ...]."""
    from reviewops.sources.crawl import SOURCES, open_batch

    s = settings()
    batches = []
    for name in sources or SOURCES:
        batch_id, movies, error = open_batch(s, name)
        batches.append({"source": name, "batch_id": batch_id, "error": error,
                        "movies": [{"code": m.code, "title": m.title} for m in movies]})
    return batches


def collection_targets(batches: list[dict]) -> list[dict]:
    """One mapped crawl task per source × movie: the keyword arguments of `collect_movie`."""
    return [{"source": b["source"], "batch_id": b["batch_id"], **m} for b in batches for m in b["movies"]]


def collect_movie(source: str, code: str, batch_id: int, title: str | None = None) -> dict:
    """Crawl one movie's new reviews into its source's batch."""
    from dataclasses import asdict

    from reviewops.sources.base import MovieRef
    from reviewops.sources.crawl import crawl_movie

    return asdict(crawl_movie(settings(), source, MovieRef(source, code, title), batch_id))


def close_collection(batches: list[dict], results: list[dict]) -> dict:
    """Close each batch with its movies' results, report to Slack, and say how many reviews are new.
    A movie whose task failed for good has no result: its batch is partial and says so."""
    from reviewops.notify.slack import Notifier, collection_summary
    from reviewops.sources.crawl import MovieResult, close_batch

    s = settings()
    if hasattr(results, "__len__") and not isinstance(results, list):  # Airflow's lazy XCom sequence
        results = [results[i] for i in range(len(results))]
    results = [r for r in results or [] if r]
    out = []
    for b in batches:
        mine = [MovieResult(**r) for r in results if r["source"] == b["source"]]
        errors = [b["error"]] if b.get("error") else []
        closed = close_batch(s, b["source"], b["batch_id"], mine, errors)
        out.append({"source": closed.source, "batch_id": closed.batch_id, "status": closed.status, "new": closed.new,
                    "fetched": closed.fetched, "movies": closed.movies, "movies_failed": closed.movies_failed,
                    "errors": closed.errors})
    Notifier(s).send(*collection_summary(out))
    return {"new": sum(r["new"] for r in out), "batches": out}


# --- reviews_score ------------------------------------------------------------------------------------


def score_reviews() -> dict:
    from reviewops.scoring import score_new_reviews

    return score_new_reviews(settings()).as_dict()


# --- sentiment_train ----------------------------------------------------------------------------------


def train_due(run_type: str) -> dict:
    """Whether this run trains: a scheduled or manual run always does; a run started by new reviews
    only when `retrain_min_new_labels` labelled reviews arrived since the newest registered version."""
    from sqlalchemy import func, select

    from reviewops.registry.mlflow_registry import Registry
    from reviewops.store.db import sessions
    from reviewops.store.models import Review

    if "asset" not in str(run_type).lower():
        return {"due": True, "reason": f"{run_type} run"}
    s = settings()
    registry = Registry(s)
    # a version whose registration crashed is no training: only decided versions count
    since = max((v.created_ms for v in registry.versions() if v.created_ms is not None), default=None)
    where = [Review.label.is_not(None), Review.reject_reason.is_(None)]
    if since is not None:
        where.append(Review.collected_at > datetime.fromtimestamp(since / 1000, UTC).replace(tzinfo=None))
    with sessions(s)() as session:
        new = session.scalar(select(func.count(Review.id)).where(*where))
    due = new >= s.retrain_min_new_labels
    reason = (f"{new:,} new labelled reviews since the last training "
              f"({'at least' if due else 'fewer than'} {s.retrain_min_new_labels:,})")
    return {"due": due, "reason": reason, "new_labels": new}


def take_snapshot() -> dict:
    from reviewops.pipeline import run_snapshot

    snap, _ = run_snapshot(settings())
    return {"snapshot_id": snap.id, "manifest": snap.uris["manifest"], "counts": snap.counts}


def train(snapshot_id: str, trainer: str = "baseline") -> str:
    """Train on a stored snapshot; returns the MLflow run id."""
    from reviewops.data.snapshot import Snapshot, read_split
    from reviewops.models.trainers import BaselineTrainer, TransformerTrainer
    from reviewops.pipeline import train_run
    from reviewops.store.objects import open_store

    s = settings()
    store = open_store(s.artifacts, s.s3_endpoint_url)
    snap = Snapshot(**json.loads(store.get(f"snapshots/{snapshot_id}/manifest.json")))
    parts = {name: read_split(store, snapshot_id, name) for name in ("train", "valid", "eval")}
    chosen = TransformerTrainer(s) if trainer == "transformer" else BaselineTrainer(s)
    return train_run(s, snap, parts, trainer=chosen)


def register_and_gate(run_id: str) -> dict:
    from reviewops.pipeline import register_and_gate as gate

    return gate(settings(), run_id).summary()


def report_training(summary: dict) -> None:
    from reviewops.notify.slack import Notifier, training_report

    s = settings()
    Notifier(s).send(*training_report(summary, s.mlflow_ui_url))


# --- model_monitor ------------------------------------------------------------------------------------


def monitor(until: datetime | str | None = None) -> dict:
    """Compare the reviews collected in the window before `until` with the champion's training snapshot;
    store the report and send a Slack alert when a threshold is crossed."""
    import pandas as pd
    from sqlalchemy import select

    from reviewops.data.snapshot import read_split
    from reviewops.models.pyfunc import load_predictor
    from reviewops.monitor import Thresholds, drift_report
    from reviewops.notify.slack import Notifier, drift_alert
    from reviewops.registry.mlflow_registry import CHAMPION, Registry
    from reviewops.store.db import sessions
    from reviewops.store.models import CollectionBatch, Review
    from reviewops.store.objects import open_store

    s = settings()
    end = _naive_utc(until)
    start = end - timedelta(hours=s.monitor_window_hours)
    champion = Registry(s).by_alias(CHAMPION)
    if champion is None:
        return {"status": "no_champion", "alerts": [], "report": None}
    store = open_store(s.artifacts, s.s3_endpoint_url)
    # the snapshot's held-out test split: the champion's scores on it are what unseen reviews of the
    # training distribution look like (its scores on the training split would be overconfident)
    reference = read_split(store, champion.tags["snapshot_id"], "test")
    if len(reference) > s.monitor_reference_rows:
        reference = reference.sample(s.monitor_reference_rows, random_state=0)
    with sessions(s)() as session:
        rows = session.execute(  # crawled reviews only: a bulk ingest of history is not "the last day"
            select(Review.clean_text, Review.label).join(CollectionBatch, Review.batch_id == CollectionBatch.id)
            .where(CollectionBatch.kind == "crawl", Review.reject_reason.is_(None), Review.collected_at >= start,
                   Review.collected_at < end)).all()
    current = pd.DataFrame(rows, columns=["text", "label"])
    predictor = load_predictor(champion.uri)
    reference = pd.DataFrame({"text": reference["text"], "score": predictor.predict_proba(reference["text"].tolist())})
    current["score"] = predictor.predict_proba(current["text"].tolist()) if len(current) else []
    report = drift_report(reference, current, Thresholds.from_settings(s))
    report.update({"model": {"name": s.model_name, "version": champion.version},
                   "window": {"start": start.isoformat(), "end": end.isoformat()}})
    key = f"reports/monitor/{end:%Y-%m-%d}.json"
    store.put(key, json.dumps(report, ensure_ascii=False, indent=2).encode(), overwrite=True)
    uri = store.uri(key)
    if report["alerts"]:
        Notifier(s).send(*drift_alert(report, uri))
    return {"status": report["status"], "alerts": report["alerts"], "report": uri, "n_current": report["n_current"]}


def _naive_utc(when: datetime | str | None) -> datetime:
    if when is None:
        return datetime.now(UTC).replace(tzinfo=None)
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when
