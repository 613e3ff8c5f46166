"""Collection batches left `running` by a run that died, closed by the next run that opens a batch.

A run killed (SIGKILL, a lost machine) never closes its batch. The next crawl or ingest closes it as
`failed`, with the reason in `error` and the counts of the reviews it owns, when:

- the batch names its owning process (a one-process run such as `reviewops crawl`), that process ran
  on this host and it is gone (`reviewops.liveness`: host, pid namespace, pid and start time); or
- nothing was heard from it for `STALE_AFTER` (opened, or a movie committed): a batch run across
  processes (Airflow's mapped tasks) names no owner, and a process on another host cannot be asked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, timedelta

from sqlalchemy import distinct, func, select, update

from reviewops.liveness import abandonment, process_id
from reviewops.store.models import CollectionBatch, Review, utcnow

log = logging.getLogger(__name__)

# far longer than a day's collection leaves between two signs of life (one per movie committed)
STALE_AFTER = timedelta(hours=24)


def owner() -> dict:
    """The column that names this process as a batch's owner."""
    return {"owner": process_id()}


def close_orphaned(sessions: Callable) -> list[int]:
    """Close every orphaned `running` batch as failed; returns their ids. `sessions()` gives a
    transactional scope. Safe to run from several processes at once: a batch is closed once."""
    now, closed = utcnow(), []
    with sessions() as s:
        running = s.execute(select(CollectionBatch.id, CollectionBatch.owner,
                                   func.coalesce(CollectionBatch.heartbeat_at, CollectionBatch.started_at))
                            .where(CollectionBatch.status == "running")).all()
        for batch_id, who, last_sign in running:
            last_sign_ms = last_sign.replace(tzinfo=UTC).timestamp() * 1000  # the store keeps naive UTC
            why = abandonment(who, last_sign_ms, STALE_AFTER.total_seconds())
            if why is None:
                continue
            new, movies = s.execute(select(func.count(Review.id), func.count(distinct(Review.movie_id)))
                                    .where(Review.batch_id == batch_id)).one()
            done = s.execute(update(CollectionBatch)
                             .where(CollectionBatch.id == batch_id, CollectionBatch.status == "running")
                             .values(status="failed", error=f"orphaned: {why}", finished_at=now,
                                     counts={"new": new, "movies": movies, "orphaned": True}))
            if done.rowcount:
                closed.append(batch_id)
                log.warning("batch %d closed as failed (orphaned: %s); it owns %d reviews of %d movies",
                            batch_id, why, new, movies)
    return closed
