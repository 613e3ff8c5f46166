"""Crawl progress per movie (issue 12, fault 2): a failed page or a page cap never loses the reviews below it.

The site here holds 60 reviews per movie (6 full Megabox pages of 10, 10 full CGV pages of 6), so that
paging, caps and back-fill have room; the crawls run against the real test site and the real store.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from reviewops.config import Settings, reset_settings
from reviewops.devtools.testsite import MEGABOX_REVIEWS, TestSite
from reviewops.sources.crawl import crawl
from reviewops.store import db
from reviewops.store.models import Movie, Review
from tests.conftest import crawler_settings, sample_records, write_jsonl

PER_MOVIE = 60


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    records = sample_records(4 * PER_MOVIE)
    for i, r in enumerate(records):  # four movies of 60 reviews (the sample's movies have about 16)
        r["movie_id"] = 990_000 + i % 4
    corpus = write_jsonl(tmp_path_factory.mktemp("corpus") / "c.jsonl.gz", records)
    s = TestSite(corpus, movies_per_source=2, days=5, reviews_per_day=12)
    url = s.start()
    yield s, url
    s.stop()


@pytest.fixture
def crawl_settings(site, db_url, monkeypatch):
    s, url = site
    s.clear_faults()
    s.set_day(0)
    return crawler_settings(monkeypatch, url, timeout=2, CRAWL_RETRIES="0")


def _stored(settings, source: str) -> dict[str, set[str]]:
    """Stored review ids by movie code."""
    with db.session_scope(settings.db_url) as s:
        rows = s.execute(sa.select(Movie.source_movie_id, Review.source_review_id)
                         .join(Movie, Review.movie_id == Movie.id).where(Review.source == source)).all()
    out: dict[str, set[str]] = {}
    for code, rid in rows:
        out.setdefault(code, set()).add(rid)
    return out


def _visible(site, source: str) -> dict[str, set[str]]:
    return {m["code"]: {r["id"] for r in site.visible_reviews(source, m["code"])} for m in site.movies(source)}


def test_an_empty_page_after_page_one_fails_the_movie_and_loses_nothing(site, crawl_settings):
    s, _ = site
    s.set_day(4)
    first, second = (m["code"] for m in s.movies("megabox"))
    s.set_fault("empty_page", MEGABOX_REVIEWS, count=1, after=1)  # the first movie's page 2 comes back empty
    (result,) = crawl(crawl_settings, sources=("megabox",))
    assert result.status == "partial" and result.movies_failed == 1, result.errors
    assert any(first in e and "page 2: empty" in e for e in result.errors), result.errors
    stored = _stored(crawl_settings, "megabox")
    assert first not in stored  # the movie's transaction stored none of it: nothing half-read to trust later
    assert stored[second] == _visible(s, "megabox")[second]

    s.clear_faults()
    (again,) = crawl(crawl_settings, sources=("megabox",))
    assert again.status == "succeeded", again.errors
    assert _stored(crawl_settings, "megabox") == _visible(s, "megabox")  # every review the site shows


def test_reviews_below_the_page_cap_are_back_filled_run_after_run(site, crawl_settings):
    """A cap of 2 pages a run, new reviews arriving on top between runs (pushing pages down): successive
    runs still reach every review, end cleanly on the empty page after the last full one, then read one
    page a movie."""
    s, _ = site
    s.set_day(3)  # 48 reviews a movie
    runs = [crawl(crawl_settings, max_pages=2)]
    s.set_day(4)  # 12 more on top of each movie: 60, a whole number of pages at both sites
    for _ in range(7):  # CGV: 10 pages a movie, 2 a run, and the first run after the 12 new reads only them
        runs.append(crawl(crawl_settings, max_pages=2))
    assert all(r.status == "succeeded" for run in runs for r in run), [r.errors for run in runs for r in run]
    for source in ("cgv", "megabox"):
        assert _stored(crawl_settings, source) == _visible(s, source)
    assert sum(r.new for run in runs for r in run) == 4 * PER_MOVIE  # each review counted new once
    with db.session_scope(crawl_settings.db_url) as sess:
        assert sess.execute(sa.select(Movie.reviews_complete, Movie.backfill_page)).all() == [(True, None)] * 4
    done = crawl(crawl_settings, max_pages=2)  # complete: one page a movie shows nothing is new
    assert [(r.new, r.pages) for r in done] == [(0, 2), (0, 2)]


def test_the_default_page_cap_no_longer_truncates(site, crawl_settings, monkeypatch):
    """The cap in settings (REVIEWOPS_CRAWL_MAX_PAGES) truncated a long history the same way."""
    s, _ = site
    s.set_day(4)
    monkeypatch.setenv("REVIEWOPS_CRAWL_MAX_PAGES", "3")
    reset_settings()
    capped = Settings()
    first = crawl(capped, sources=("megabox",))
    assert first[0].new == 2 * 30  # three pages a movie
    crawl(capped, sources=("megabox",))
    assert _stored(capped, "megabox") == _visible(s, "megabox")
