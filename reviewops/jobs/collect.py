"""The collection job: open one batch per cinema site, crawl each movie now playing into it, close the
batches and report to Slack. The crawl mechanics (politeness, parsing, progress) are in
`reviewops.sources.crawl`; what passes between the steps is plain JSON-able dicts, so Airflow can run
each movie as its own task."""

from __future__ import annotations

from dataclasses import asdict

from reviewops.config import Settings
from reviewops.notify.slack import Notifier, collection_summary
from reviewops.sources.base import MovieRef
from reviewops.sources.crawl import SOURCES, MovieResult, SourceResult, close_batch, crawl_movie, open_batch
from reviewops.sources.crawl import crawl as crawl_sources


def crawl(settings: Settings, sources: tuple[str, ...] = SOURCES, movie: str | None = None,
          max_pages: int | None = None) -> list[SourceResult]:
    """The whole job in one process (the CLI's `crawl`): crawl, then report to Slack."""
    results = crawl_sources(settings, sources, movie, max_pages)
    Notifier(settings).send(*collection_summary([{"source": r.source, "status": r.status, **r.counts()}
                                                 for r in results]))
    return results


def open_collection(settings: Settings, sources: tuple[str, ...] | None = None) -> list[dict]:
    """Open one batch per source and list its movies now playing:
    [{"source", "batch_id", "error", "movies": [{"code", "title"}, ...]}, ...]."""
    batches = []
    for name in sources or SOURCES:
        batch_id, movies, error = open_batch(settings, name)
        batches.append({"source": name, "batch_id": batch_id, "error": error,
                        "movies": [{"code": m.code, "title": m.title} for m in movies]})
    return batches


def collection_targets(batches: list[dict]) -> list[dict]:
    """One crawl per source × movie: the keyword arguments of `collect_movie` (without the settings)."""
    return [{"source": b["source"], "batch_id": b["batch_id"], **m} for b in batches for m in b["movies"]]


def collect_movie(settings: Settings, source: str, code: str, batch_id: int,
                  title: str | None = None) -> dict:
    """Crawl one movie's new reviews into its source's batch."""
    return asdict(crawl_movie(settings, source, MovieRef(source, code, title), batch_id))


def close_collection(settings: Settings, batches: list[dict], results: list[dict]) -> dict:
    """Close each batch with its movies' results, report to Slack, and say how many reviews are new.
    A movie whose crawl failed for good has no result: its batch is partial and says so."""
    results = [r for r in results if r]
    out = []
    for b in batches:
        mine = [MovieResult(**r) for r in results if r["source"] == b["source"]]
        errors = [b["error"]] if b.get("error") else []
        closed = close_batch(settings, b["source"], b["batch_id"], mine, errors)
        out.append({"source": closed.source, "batch_id": closed.batch_id, "status": closed.status,
                    "new": closed.new, "fetched": closed.fetched, "movies": closed.movies,
                    "movies_failed": closed.movies_failed, "errors": closed.errors})
    Notifier(settings).send(*collection_summary(out))
    return {"new": sum(r["new"] for r in out), "batches": out}
