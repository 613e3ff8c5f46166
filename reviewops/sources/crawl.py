"""The crawl runner: one collection batch per source, incremental and atomic per movie.

For each movie now playing it reads reviews newest first from page 1 until it meets stored ones
(the store's review ids are the watermark, so a re-run adds nothing). Until a crawl has once
reached the end of a movie's reviews (a page shorter than a full one), the rest is back-filled:
on from the page where the last run stopped, `max_pages` pages a run, so that a page cap or a
failed page never loses what lies below it. An empty page after full ones is a failure, not the
end, unless the site's own count says the reviews end there.

A movie's new reviews and its progress are committed in one transaction; a movie or source that
fails leaves what was stored before untouched, and a source that keeps failing is stopped for the
run. Crawls may run at once on one store: a review or movie stored by another run is skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from types import SimpleNamespace

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from reviewops.config import Settings
from reviewops.data.ingest import RawReview, ReviewWriter
from reviewops.data.labels import LabelPolicy
from reviewops.errors import InputError, ReviewOpsError
from reviewops.progress import progress
from reviewops.sources.base import Archive, MovieRef, Page, ParseError, Source
from reviewops.sources.http import PoliteClient, Politeness
from reviewops.store.batches import close_orphaned, owner
from reviewops.store.db import sessions
from reviewops.store.models import CollectionBatch, Movie, Review, utcnow
from reviewops.store.objects import open_store
from reviewops.text.clean import REJECT_RULES, Cleaner

log = logging.getLogger(__name__)
SOURCES = ("cgv", "megabox")


@dataclass
class MovieResult:
    """What crawling one movie did; JSON-able (Airflow passes it between tasks)."""

    source: str
    code: str
    pages: int = 0
    fetched: int = 0
    new: int = 0
    duplicate: int = 0
    rejected: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class SourceResult:
    source: str
    batch_id: int
    status: str = "running"
    movies: int = 0
    movies_failed: int = 0
    pages: int = 0
    fetched: int = 0
    new: int = 0
    duplicate: int = 0
    rejected: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict:
        return {k: getattr(self, k) for k in ("movies", "movies_failed", "pages", "fetched", "new", "duplicate",
                                              "rejected", "by_rule", "errors")}

    def add(self, m: MovieResult) -> None:
        self.movies += 1
        for k in ("pages", "fetched", "new", "duplicate", "rejected"):
            setattr(self, k, getattr(self, k) + getattr(m, k))
        for rule, n in m.by_rule.items():
            self.by_rule[rule] = self.by_rule.get(rule, 0) + n
        if m.error:
            self.movies_failed += 1
            self.errors.append(f"movie {m.code}: {m.error}")


def make_source(name: str, settings: Settings, client: PoliteClient, archive: Archive) -> Source:
    from reviewops.sources.cgv import CgvSource
    from reviewops.sources.megabox import MegaboxSource

    browser = None
    if settings.selenium_fallback:
        from functools import partial

        from reviewops.sources.browser import Browser

        browser = partial(Browser, user_agent=settings.user_agent)
    cls = {"cgv": CgvSource, "megabox": MegaboxSource}[name]
    return cls(settings, client, archive, browser)


def _check_source(name: str) -> None:
    if name not in SOURCES:
        raise InputError(f"unknown source {name!r} (known: {', '.join(SOURCES)})")


def _known_ids(session, source: str, code: str) -> set[str]:
    return set(session.scalars(
        select(Review.source_review_id).join(Movie, Review.movie_id == Movie.id)
        .where(Movie.source == source, Movie.source_movie_id == code)))


@dataclass(frozen=True)
class Progress:
    """How far a movie's crawls went (Movie.reviews_complete, Movie.backfill_page): complete when a crawl
    reached the end of its reviews with everything above stored; else the page the back-fill goes on from
    (None: from the first page below the newest stored reviews)."""

    complete: bool = False
    backfill_page: int | None = None


def _progress(session: Session, source: str, code: str) -> Progress:
    row = session.execute(select(Movie.reviews_complete, Movie.backfill_page)
                          .where(Movie.source == source, Movie.source_movie_id == code)).first()
    return Progress(bool(row[0]), row[1]) if row else Progress()


def _save_progress(session: Session, source: str, code: str, read: Progress, new: Progress) -> None:
    """Store `new` if the progress is still what this run read; if another run moved it meanwhile, its claim
    and ours may not combine: back-fill the whole movie once more (never a loss, only pages read again)."""
    this = (Movie.source == source) & (Movie.source_movie_id == code)
    same = this & (Movie.reviews_complete == read.complete) & (
        Movie.backfill_page.is_(None) if read.backfill_page is None else Movie.backfill_page == read.backfill_page)
    if session.execute(update(Movie).where(same).values(reviews_complete=new.complete,
                                                        backfill_page=new.backfill_page)).rowcount == 0:
        session.execute(update(Movie).where(this).values(reviews_complete=False, backfill_page=None))


def _is_last(source: Source, movie: MovieRef, n: int, page: Page, stored: int) -> bool:
    """Whether page `n` ends the movie's reviews: a page shorter than a full one does. An empty page is the
    end only where it cannot hide reviews: page 1 of a movie with none stored, or after a full page when
    the site's count says the reviews end there; otherwise the page failed (a ParseError)."""
    if page.reviews:
        return len(page.reviews) < source.page_size
    what = f"{source.name} reviews of movie {movie.code} page {n}"
    if n == 1:
        if stored:
            raise ParseError(f"{what}: empty, yet {stored} reviews of this movie are stored")
        return True
    if page.total and page.total <= (n - 1) * source.page_size:
        return True
    raise ParseError(f"{what}: empty after full pages (the site counts {page.total} reviews); "
                     "will be read again next run")


def crawl(settings: Settings, sources: tuple[str, ...] = SOURCES, movie: str | None = None,
          max_pages: int | None = None, today: date | None = None, client: PoliteClient | None = None
          ) -> list[SourceResult]:
    """Crawl each source once; returns one result (and one batch) per source."""
    own_client = client is None
    client = client or PoliteClient(Politeness.from_settings(settings))
    results = []
    try:
        for name in sources:
            results.append(_crawl_source(settings, name, client, today, movie, max_pages))
    finally:
        if own_client:
            client.close()
    return results


def open_batch(settings: Settings, name: str, only_movie: str | None = None, today: date | None = None,
               client: PoliteClient | None = None, owned: bool = False) -> tuple[int, list[MovieRef], str | None]:
    """Start a source's collection batch and list its movies now playing: (batch id, movies, listing error).
    `owned`: this process runs the whole batch (its death orphans the batch), not several tasks (Airflow).
    Batches orphaned by dead runs are closed first (reviewops.store.batches)."""
    _check_source(name)
    open_session = sessions(settings)
    close_orphaned(open_session)
    with open_session() as s:
        batch = CollectionBatch(kind="crawl", source=name, location=getattr(settings, name).base_url,
                                cleaning_version=Cleaner.from_settings(settings).version, counts={},
                                **(owner() if owned else {}))
        s.add(batch)
        s.flush()
        batch_id = batch.id
    own_client = client is None
    client = client or PoliteClient(Politeness.from_settings(settings))
    try:
        source = make_source(name, settings, client, _archive(settings, name, today))
        movies = source.now_playing()
        if only_movie:
            movies = [m for m in movies if m.code == only_movie] or [MovieRef(name, only_movie)]
        return batch_id, movies, None
    except ReviewOpsError as exc:
        return batch_id, [], f"now playing: {exc}"
    finally:
        if own_client:
            client.close()


def crawl_movie(settings: Settings, name: str, movie: MovieRef, batch_id: int, max_pages: int | None = None,
                today: date | None = None, client: PoliteClient | None = None) -> MovieResult:
    """Collect one movie's new reviews into a batch, in one transaction. A failure is reported, not raised:
    what was stored before stays untouched."""
    _check_source(name)
    result = MovieResult(name, movie.code)
    cleaner = Cleaner.from_settings(settings)
    own_client = client is None
    client = client or PoliteClient(Politeness.from_settings(settings))
    try:
        source = make_source(name, settings, client, _archive(settings, name, today))
        _crawl_movie(settings, source, movie, sessions(settings), cleaner,
                     LabelPolicy.from_settings(settings), batch_id, result, max_pages or settings.crawl.max_pages)
    except ReviewOpsError as exc:
        result.error = str(exc)
        log.warning("%s movie %s failed: %s", name, movie.code, exc)
    finally:
        if own_client:
            client.close()
    result.by_rule = cleaner.summary()
    return result


def close_batch(settings: Settings, name: str, batch_id: int, movies: list[MovieResult],
                errors: list[str] | tuple[str, ...] = ()) -> SourceResult:
    """Finish a batch: succeeded, partial (some movies failed) or failed (nothing could be collected)."""
    result = SourceResult(name, batch_id)
    result.errors.extend(errors)
    for m in movies:
        result.add(m)
    ok = result.movies - result.movies_failed
    result.status = "failed" if ok == 0 else ("partial" if result.errors else "succeeded")
    with sessions(settings)() as s:
        # What the batch stored, whichever attempt stored it: a movie's crawl killed after its commit and then
        # retried finds its reviews stored and reports them as duplicates, and 0 new would skip training.
        stored = s.scalar(select(func.count()).select_from(Review).where(Review.batch_id == batch_id)) or 0
        if stored > result.new:
            result.duplicate = max(0, result.duplicate - (stored - result.new))
            result.new = stored
        s.execute(update(CollectionBatch).where(CollectionBatch.id == batch_id).values(
            status=result.status, counts=result.counts(), finished_at=utcnow(),
            error="; ".join(result.errors)[:2000] or None))
    return result


def _archive(settings: Settings, name: str, today: date | None) -> Archive:
    return Archive(open_store(settings.artifacts, settings.s3_endpoint_url), name, today or date.today())


def _crawl_source(settings, name, client, today, only_movie, max_pages) -> SourceResult:
    batch_id, movies, listing_error = open_batch(settings, name, only_movie, today, client, owned=True)
    done: list[MovieResult] = []
    errors = [listing_error] if listing_error else []
    failures_in_a_row = 0
    with progress(f"crawl {name}", total=len(movies), unit_count=True) as bar:
        for m in movies:
            r = crawl_movie(settings, name, m, batch_id, max_pages, today, client)
            done.append(r)
            failures_in_a_row = failures_in_a_row + 1 if r.error else 0
            bar.advance()
            if failures_in_a_row >= settings.crawl.max_failures:
                errors.append(f"stopped {name} after {failures_in_a_row} failed movies in a row")
                break
    return close_batch(settings, name, batch_id, done, errors)


def _walk(source: Source, m: MovieRef, known: set[str], read: Progress, max_pages: int,
          result: MovieResult) -> tuple[dict[str, RawReview], Progress]:
    """Read a movie's pages: from page 1 until the stored reviews, then, while its history is incomplete, on
    down from where the last back-fill stopped; each part at most `max_pages` pages. Returns the new
    reviews and the progress to store with them."""
    fresh: dict[str, RawReview] = {}
    n, budget, met = 1, max_pages, False
    while result.pages < budget:
        page = source.review_page(m, n)
        result.pages += 1
        result.fetched += len(page.reviews)
        new_here = [r for r in page.reviews if r.source_review_id not in known and r.source_review_id not in fresh]
        result.duplicate += len(page.reviews) - len(new_here)
        fresh.update((r.source_review_id, r) for r in new_here)
        if _is_last(source, m, n, page, len(known)):
            return fresh, Progress(complete=True)
        if not met and any(r.source_review_id in known for r in page.reviews):
            met = True  # everything above is read; below, the stored reviews begin
            if read.complete:
                return fresh, read
            budget = result.pages + max_pages  # the back-fill gets its own pages: it moves on every run
            if read.backfill_page and read.backfill_page > n + 1:
                # the pages between were stored by earlier runs; new reviews since only push them down
                n = read.backfill_page
                continue
        n += 1
    # stopped by the cap: pages 1..n-1 are stored now, the next run goes on from page n (if the cap came
    # before the stored reviews, the unread gap lies below: the back-fill runs through it)
    return fresh, Progress(complete=False, backfill_page=n)


def _crawl_movie(settings, source, m, sessions, cleaner, policy, batch_id, result, max_pages) -> None:
    with sessions() as s:
        read = _progress(s, source.name, m.code)  # before the ids: a run committing in between is caught below
        known = _known_ids(s, source.name, m.code)
        has_plot = s.scalar(select(func.count(Movie.id)).where(
            Movie.source == source.name, Movie.source_movie_id == m.code, Movie.plot.is_not(None)))
    fresh, progress = _walk(source, m, known, read, max_pages, result)
    details = {}
    if not has_plot:
        try:
            details = source.details(m)
        except ReviewOpsError as exc:
            log.warning("%s movie %s: no details (%s)", source.name, m.code, exc)
    # one transaction per movie: all of its new reviews and its progress, or nothing
    before = dict(cleaner.counts)
    with sessions() as s:
        writer = ReviewWriter(s, SimpleNamespace(source=source.name, id=batch_id), cleaner, policy,
                              label_expectations=settings.crawl.label_expectations)
        writer.add(list(fresh.values()))
        if details:
            s.execute(update(Movie).where(Movie.source == source.name, Movie.source_movie_id == m.code)
                      .values(**{k: v for k, v in details.items() if k in ("title", "plot")}))
        _save_progress(s, source.name, m.code, read, progress)
        s.execute(update(CollectionBatch).where(CollectionBatch.id == batch_id).values(heartbeat_at=utcnow()))
    result.new += writer.new
    result.duplicate += writer.already_stored  # stored by another run meanwhile
    result.rejected += sum(cleaner.counts.get(r, 0) - before.get(r, 0) for r in REJECT_RULES)
