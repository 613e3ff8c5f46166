"""The Airflow adapter: what the DAG files share (Asset URIs, default arguments, the failure callback)
and one function per task that translates between Airflow and a job of `reviewops.jobs` (XCom ids in,
small JSON-able dicts out; never data frames or models). The work itself is in the jobs.

Importing this module is cheap (no pandas, MLflow, torch): DAG files import it at parse time, and
each job is imported inside the function that runs it, in the task's own process.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from reviewops.config import TIMEZONE, Settings, get_settings, redact_text

log = logging.getLogger(__name__)

# Asset URIs: reviews_collect updates NEW_REVIEWS when it stored new reviews; sentiment_train updates
# CHAMPION when it promoted a model; reviews_score runs on either and updates SCORED_REVIEWS.
NEW_REVIEWS = "reviewops://reviews/new"
CHAMPION = "reviewops://models/champion"
SCORED_REVIEWS = "reviewops://reviews/scored"


def settings() -> Settings:
    return get_settings()


def default_args() -> dict:
    """Retries with exponential backoff, then a Slack message (settings decide how many and how long)."""
    s = settings()
    return {
        "owner": "reviewops",
        "retries": s.task.retries,
        "retry_delay": timedelta(seconds=s.task.retry_delay),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(hours=1),
        "on_failure_callback": on_task_failure,
    }


def dag_kwargs(doc: str | None, *tags: str) -> dict:
    """What every DAG of the platform shares: no catch-up, one run at a time, retries and the Slack
    failure message, its tags and its documentation."""
    return {"catchup": False, "max_active_runs": 1, "default_args": default_args(), "tags": ["reviewops", *tags],
            "doc_md": doc}


def korean_cron(expression: str):
    """A cron schedule in Korean time whose first run is its next tick. Airflow would otherwise start a
    DAG that never ran at once when it is deployed within a tenth of a period after a tick: the weekly
    training on an empty store, or a crawl racing the one an operator just triggered. A DAG that has run
    before still makes up the last tick it missed (a host down at 01:00 crawls when it is back)."""
    from airflow.sdk.definitions.timetables.trigger import CronTriggerTimetable

    return CronTriggerTimetable(expression, timezone=TIMEZONE, run_immediately=timedelta(0))


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
    from reviewops.jobs import collect

    return collect.open_collection(settings(), sources)


def collection_targets(batches: list[dict]) -> list[dict]:
    from reviewops.jobs import collect

    return collect.collection_targets(batches)


def collect_movie(source: str, code: str, batch_id: int, title: str | None = None) -> dict:
    from reviewops.jobs import collect

    return collect.collect_movie(settings(), source, code, batch_id, title)


def close_collection(batches: list[dict], results) -> dict:
    from reviewops.jobs import collect

    if hasattr(results, "__len__") and not isinstance(results, list):  # Airflow's lazy XCom sequence
        results = [results[i] for i in range(len(results))]
    return collect.close_collection(settings(), batches, list(results or []))


# --- reviews_score ------------------------------------------------------------------------------------


def score_reviews() -> dict:
    from reviewops.jobs.score import score_new_reviews

    return score_new_reviews(settings()).as_dict()


# --- sentiment_train ----------------------------------------------------------------------------------


def train_due(run_type: str) -> dict:
    from reviewops.jobs import train as job

    return job.train_due(settings(), run_type)


def take_snapshot() -> dict:
    from reviewops.jobs import train as job

    snap, _ = job.run_snapshot(settings())
    return {"snapshot_id": snap.id, "manifest": snap.uris["manifest"], "counts": snap.counts}


def train(snapshot_id: str, trainer: str = "baseline") -> str:
    """Train on a stored snapshot; returns the MLflow run id."""
    from reviewops.jobs import train as job
    from reviewops.models.trainers import trainer_for

    s = settings()
    chosen = trainer_for(trainer, s)  # an unknown name fails before any work
    snap, parts = job.load_snapshot(s, snapshot_id)
    return job.train_run(s, snap, parts, trainer=chosen)


def register_and_gate(run_id: str) -> dict:
    from reviewops.jobs import train as job

    return job.register_and_gate(settings(), run_id).summary()


def report_training(summary: dict) -> None:
    from reviewops.jobs import train as job

    job.report_training(settings(), summary)


# --- model_monitor ------------------------------------------------------------------------------------


def monitor(until: datetime | str | None = None) -> dict:
    from reviewops.jobs.monitor import monitor as job

    return job(settings(), until)
