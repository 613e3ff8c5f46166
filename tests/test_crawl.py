"""Crawling the local test site: incremental day after day, polite, archived, and safe under faults."""

from __future__ import annotations

import itertools
import json
import time

import pytest
import sqlalchemy as sa

from reviewops.config import Settings, reset_settings
from reviewops.devtools.testsite import TestSite
from reviewops.sources.crawl import crawl
from reviewops.sources.http import FetchError, PoliteClient, Politeness
from reviewops.store import db
from reviewops.store.models import CollectionBatch, Movie, Review
from reviewops.store.objects import open_store
from reviewops.store.queries import aspect_summary
from tests.conftest import crawler_settings


@pytest.fixture(scope="module")
def site():
    s = TestSite(movies_per_source=2, days=3, reviews_per_day=4)
    url = s.start()
    yield s, url
    s.stop()


@pytest.fixture
def crawl_settings(site, home, monkeypatch):
    s, url = site
    s.clear_faults()
    s.set_day(0)
    settings = crawler_settings(monkeypatch, url)
    db.upgrade(settings.db_url)  # as `reviewops db upgrade` before the first crawl
    return settings


def _reviews(settings):
    with db.session_scope(settings.db_url) as s:
        return s.execute(sa.select(Review.source, Review.source_review_id, Review.text, Review.label)).all()


def _visible(site, source):
    return sum(len(site.visible_reviews(source, m["code"])) for m in site.movies(source))


def test_crawl_collects_new_reviews_day_after_day(site, db_url, crawl_settings):
    s, _ = site
    first = crawl(crawl_settings)
    assert [r.status for r in first] == ["succeeded", "succeeded"]
    assert first[0].new == _visible(s, "cgv") and first[1].new == _visible(s, "megabox")
    rows = _reviews(crawl_settings)
    assert len(rows) == len({(r[0], r[1]) for r in rows}) == first[0].new + first[1].new
    assert {r[3] for r in rows} >= {0, 1}  # eggs and scores became labels

    again = crawl(crawl_settings)  # the same day: nothing new, one page per movie
    assert [r.new for r in again] == [0, 0]
    assert [r.pages for r in again] == [2, 2]

    s.set_day(2)
    later = crawl(crawl_settings)
    assert [r.new for r in later] == [2 * 2 * 4, 2 * 2 * 4]  # two more days of 4 reviews for 2 movies each
    rows = _reviews(crawl_settings)
    assert len(rows) == len({(r[0], r[1]) for r in rows}) == _visible(s, "cgv") + _visible(s, "megabox")
    with db.session_scope(crawl_settings.db_url) as sess:
        batches = sess.scalars(sa.select(CollectionBatch).where(CollectionBatch.kind == "crawl")).all()
        assert len(batches) == 6 and all(b.status == "succeeded" for b in batches)
        assert batches[-1].counts["new"] == 16 and "by_rule" in batches[-1].counts
        titles = sess.scalars(sa.select(Movie.title)).all()
        assert all(titles)


def test_a_movie_crawl_retried_after_its_commit_still_counts_its_reviews_new(site, db_url, crawl_settings):
    """Airflow retries a crawl task whose worker died after the commit: the retry finds every review stored and
    says 0 new, but the batch stored them, so the collection reports them new (and training becomes due)."""
    from reviewops.jobs import collect

    batches = collect.open_collection(crawl_settings, ("cgv",))
    targets = collect.collection_targets(batches)
    first = [collect.collect_movie(crawl_settings, **t) for t in targets]  # the attempt that was killed
    retried = [collect.collect_movie(crawl_settings, **t) for t in targets]
    assert sum(r["new"] for r in first) == _visible(site[0], "cgv") > 0 and sum(r["new"] for r in retried) == 0
    summary = collect.close_collection(crawl_settings, batches, retried)
    assert summary["new"] == _visible(site[0], "cgv") and summary["batches"][0]["status"] == "succeeded"
    with db.session_scope(crawl_settings.db_url) as sess:
        counts = sess.get(CollectionBatch, batches[0]["batch_id"]).counts
    assert counts["new"] == _visible(site[0], "cgv") and counts["duplicate"] == 0


def test_raw_archive_is_written_once_and_never_overwritten(site, crawl_settings):
    crawl(crawl_settings, sources=("cgv",))
    store = open_store(crawl_settings.artifacts)
    keys = store.list("raw/cgv")
    assert keys and all(k.startswith("raw/cgv/") and k.count("/") == 4 for k in keys)
    before = {k: store.get(k) for k in keys}
    crawl(crawl_settings, sources=("cgv",))
    after = store.list("raw/cgv")
    assert set(before) <= set(after)
    assert all(store.get(k) == v for k, v in before.items())
    with db.session_scope(crawl_settings.db_url) as sess:
        refs = set(sess.scalars(sa.select(Review.raw_ref)))
    assert refs and all(ref and ref.startswith(store.uri("raw/cgv")) for ref in refs)
    assert refs <= {store.uri(k) for k in after}


def test_transient_faults_are_retried(site, crawl_settings):
    s, _ = site
    s.set_fault("http500", "/common/ajax", count=2)
    s.set_fault("http429", "/on/oh/oha/Movie/selectOneLnList.do", count=1)
    s.set_fault("slow", "/on/oh/oha/Movie/selectMovieList.do", count=1)
    client = PoliteClient(Politeness.from_settings(crawl_settings))
    results = crawl(crawl_settings, client=client)
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    assert client.retried == 4
    assert sum(r.new for r in results) == _visible(s, "cgv") + _visible(s, "megabox")


@pytest.mark.parametrize(
    ("mode", "path", "source", "message"),
    [
        ("renamed_field", "/common/ajax", "cgv", "missing field 'CommentText'"),
        ("truncated_json", "/common/ajax", "cgv", "not valid JSON"),
        ("garbage_html", "/movies/", "cgv", "no element matches"),
        ("empty_page", "/on/oh/oha/Movie/selectMovieList.do", "megabox", "'movieList' is empty"),
        ("renamed_field", "/on/oh/oha/Movie/selectOneLnList.do", "megabox", "missing field 'onelnEvalCn'"),
        ("http500", "/on/oh/oha/Movie/selectOneLnList.do", "megabox", "HTTP 500"),
    ],
)
def test_lasting_faults_fail_clearly_and_lose_nothing(site, db_url, crawl_settings, mode, path, source, message):
    s, _ = site
    crawl(crawl_settings)
    stored = sorted(_reviews(crawl_settings))
    s.set_day(1)
    s.set_fault(mode, path, count=-1)
    (result,) = crawl(crawl_settings, sources=(source,))
    s.clear_faults()
    assert result.status == "failed" and result.new == 0
    assert any(message in e for e in result.errors), result.errors
    assert sorted(_reviews(crawl_settings)) == stored  # what was stored before is untouched
    with db.session_scope(crawl_settings.db_url) as sess:
        batch = sess.get(CollectionBatch, result.batch_id)
        assert batch.status == "failed" and message in batch.error
    recovered = crawl(crawl_settings, sources=(source,))
    assert recovered[0].status == "succeeded" and recovered[0].new > 0


def test_a_failing_source_is_stopped_for_the_run(site, crawl_settings, monkeypatch):
    s, _ = site
    monkeypatch.setenv("REVIEWOPS_CRAWL_MAX_FAILURES", "1")
    monkeypatch.setenv("REVIEWOPS_CRAWL_RETRIES", "0")
    reset_settings()
    s.set_fault("http500", "/common/ajax", count=-1)
    (result,) = crawl(Settings(), sources=("cgv",))
    s.clear_faults()
    assert result.movies == 1 and result.movies_failed == 1
    assert any("stopped cgv" in e for e in result.errors)


def test_the_delay_is_respected_one_request_at_a_time(site, crawl_settings, monkeypatch):
    s, _ = site
    monkeypatch.setenv("REVIEWOPS_CRAWL_DELAY", "0.25")
    reset_settings()
    start = len(s.request_log)
    crawl(Settings(), sources=("megabox",))
    times = [t for t, _, path in s.request_log[start:] if not path.startswith("/_control")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 4 and min(gaps) >= 0.24


def test_robots_txt_is_honoured(site, crawl_settings):
    _, url = site
    with PoliteClient(Politeness.from_settings(crawl_settings)) as client:
        with pytest.raises(FetchError, match="robots.txt"):
            client.get(f"{url}/private/reviews")
        assert client.get(f"{url}/robots.txt").status_code == 200


def test_backoff_grows_and_honours_retry_after(site, crawl_settings):
    s, url = site
    pauses: list[float] = []
    rules = Politeness("test-agent", delay=0, timeout=1, retries=3, backoff=0.1, backoff_max=5)
    s.set_fault("http500", "/on/oh/oha/Movie/selectMovieList.do", count=2)  # the longest matching prefix wins
    s.set_fault("http429", "/on/oh/oha/Movie/", count=1)
    with PoliteClient(rules, sleep=pauses.append) as client:
        resp = client.post_json(f"{url}/on/oh/oha/Movie/selectMovieList.do", {})
    assert resp.status_code == 200 and len(pauses) == 3
    assert 0.1 <= pauses[0] <= 0.2 and 0.2 <= pauses[1] <= 0.3  # 0.1·2^n plus jitter below 0.1
    assert pauses[2] >= 1.0  # the 429's Retry-After: 1 beats the 0.4 s backoff


def test_crawl_command(site, crawl_settings):
    from typer.testing import CliRunner

    from reviewops.cli import app

    result = CliRunner().invoke(app, ["crawl", "--source", "all", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert [p["source"] for p in payload] == ["cgv", "megabox"] and all(p["new"] > 0 for p in payload)
    assert CliRunner().invoke(app, ["crawl", "--source", "naver"]).exit_code == 2


def test_selenium_fallback_renders_the_movie_page(site, crawl_settings, monkeypatch):
    s, _ = site
    monkeypatch.setenv("REVIEWOPS_SELENIUM_FALLBACK", "true")
    reset_settings()
    code = s.movies("cgv")[0]["code"]
    s.set_fault("renamed_field", "/common/ajax", count=1)  # the adapter's JSON call breaks, the page's own works
    t = time.monotonic()
    (result,) = crawl(Settings(), sources=("cgv",), movie=code, max_pages=1)
    assert result.status == "succeeded", result.errors
    assert result.new == min(6, len(s.visible_reviews("cgv", code)))
    with db.session_scope(crawl_settings.db_url) as sess:
        plot = sess.scalar(sa.select(Movie.plot).where(Movie.source_movie_id == code))
    assert plot  # movie details came from the rendered page
    assert time.monotonic() - t < 60


def test_megabox_rendered_page_gives_the_same_reviews_as_its_json(site, crawl_settings, monkeypatch):
    """The fallback reads the page the site renders: same ids (the like button's data-no), kinds, points, scores."""
    s, _ = site
    s.set_day(2)
    monkeypatch.setenv("REVIEWOPS_SELENIUM_FALLBACK", "true")
    reset_settings()
    code = s.movies("megabox")[0]["code"]
    s.set_fault("renamed_field", "/on/oh/oha/Movie/selectOneLnList.do", count=1)
    (result,) = crawl(Settings(), sources=("megabox",), movie=code, max_pages=1)
    assert result.status == "succeeded", result.errors
    with db.session_scope(crawl_settings.db_url) as sess:
        stored = sess.execute(sa.select(Review.source_review_id, Review.kind, Review.aspects, Review.rating)
                              .where(Review.source == "megabox").order_by(Review.posted_at.desc())).all()
    shown = s.visible_reviews("megabox", code)[:10]
    assert [tuple(r) for r in stored] == [(r["id"], r["kind"], r["aspects"], r["rating"]) for r in shown]
    assert {r.kind for r in stored} == {"review", "expectation"}
    with db.session_scope(crawl_settings.db_url) as sess:
        refs = set(sess.scalars(sa.select(Review.raw_ref).where(Review.source == "megabox")))
    assert len(refs) == 1 and "/rendered-p1-" in refs.pop()  # from the page Chromium rendered


def test_one_failing_movie_makes_a_partial_batch(site, crawl_settings, monkeypatch):
    s, _ = site
    monkeypatch.setenv("REVIEWOPS_CRAWL_RETRIES", "0")
    reset_settings()
    s.set_fault("http500", "/on/oh/oha/Movie/selectOneLnList.do", count=1)  # the first movie's first page
    (result,) = crawl(Settings(), sources=("megabox",))
    assert result.status == "partial" and result.movies_failed == 1 and result.movies == 2
    first = s.movies("megabox")[0]["code"]
    assert any(first in e and "HTTP 500" in e for e in result.errors)
    assert result.new == len(s.visible_reviews("megabox", s.movies("megabox")[1]["code"]))
    again = crawl(Settings(), sources=("megabox",))  # the next run picks up what was missed
    assert again[0].status == "succeeded" and again[0].new == len(s.visible_reviews("megabox", first))


def test_testsite_command_serves_the_site(tmp_path):
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "reviewops.cli", "testsite", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/robots.txt", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("the test site did not start")
        assert resp.status_code == 200 and "Disallow" in resp.text
        movies = httpx.post(f"http://127.0.0.1:{port}/on/oh/oha/Movie/selectMovieList.do", json={}).json()
        assert len(movies["movieList"]) == 4
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_crawl_uses_the_configured_store(db_url, crawl_settings):
    assert crawl_settings.db_url == db_url


def test_rule_counts_belong_to_their_own_source(site, crawl_settings):
    results = crawl(crawl_settings)
    for r in results:
        assert r.by_rule["kept"] + sum(r.by_rule[k] for k in ("empty", "too_short", "too_long", "low_hangul",
                                                              "duplicate")) == r.new


def test_the_delay_holds_across_clients_that_share_the_lock_folder(site, crawl_settings, tmp_path):
    """Airflow crawls movies in parallel task processes: clients that share nothing but the lock folder
    still keep one request at a time per host, `delay` apart."""
    import threading

    s, url = site
    delay = 0.15

    def hammer(lock_dir):
        rules = Politeness("test-agent", delay=delay, timeout=2, retries=0, lock_dir=lock_dir)
        with PoliteClient(rules) as client:
            for _ in range(4):
                client.get(f"{url}/robots.txt")

    def gaps(lock_dir):
        start = len(s.request_log)
        threads = [threading.Thread(target=hammer, args=(lock_dir,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        times = sorted(t for t, _, path in s.request_log[start:] if not path.startswith("/_control"))
        assert len(times) == 3 * 5  # robots.txt itself once per client, then 4 gets
        return [b - a for a, b in itertools.pairwise(times)]

    shared = gaps(tmp_path / "locks")
    assert min(shared) >= delay * 0.9, shared
    assert list((tmp_path / "locks").glob("*.lock"))
    alone = gaps(None)  # without the shared folder each client only paces itself: requests overlap
    assert min(alone) < delay * 0.5, alone


@pytest.mark.parametrize("label_expectations", [False, True])
def test_megabox_kind_and_points_reach_the_store(site, db_url, crawl_settings, monkeypatch, label_expectations):
    """A 기대평 is stored as kind "expectation" with no label (unless REVIEWOPS_CRAWL_LABEL_EXPECTATIONS), the
    ticked points as aspects, scores sent as numbers or strings as ratings; the film's aspect summary reads them."""
    s, _ = site
    s.set_day(2)
    monkeypatch.setenv("REVIEWOPS_CRAWL_LABEL_EXPECTATIONS", str(label_expectations).lower())
    reset_settings()
    (result,) = crawl(Settings(), sources=("megabox",))
    assert result.status == "succeeded"
    shown = {r["id"]: r for m in s.movies("megabox") for r in s.visible_reviews("megabox", m["code"])}
    assert {r["kind"] for r in shown.values()} == {"review", "expectation"}  # the site shows both
    with db.session_scope(crawl_settings.db_url) as sess:
        stored = {r.source_review_id: r for r in sess.execute(
            sa.select(Review.source_review_id, Review.kind, Review.aspects, Review.rating, Review.label,
                      Review.reject_reason).where(Review.source == "megabox"))}
        films = dict(sess.execute(sa.select(Movie.source_movie_id, Movie.id).where(Movie.source == "megabox")).all())
        summaries = {code: {a["aspect"]: a["reviews"] for a in aspect_summary(sess, films[code])} for code in films}
    assert stored.keys() == shown.keys()
    for rid, r in stored.items():
        site_review = shown[rid]
        assert (r.kind, r.aspects, r.rating) == (site_review["kind"], site_review["aspects"], site_review["rating"])
        by_rating = 1 if r.rating >= 9 else 0 if r.rating <= 4 else None
        unlabelled = r.kind == "expectation" and not label_expectations
        assert r.label == (None if unlabelled else by_rating), rid
    assert any(r.kind == "expectation" and r.label is not None for r in stored.values()) == label_expectations
    for m in s.movies("megabox"):
        kept = [r for rid, r in stored.items() if r.kind == "review" and r.reject_reason is None
                and shown[rid] in s.visible_reviews("megabox", m["code"])]
        assert summaries[m["code"]] == {a: sum(a in (r.aspects or []) for r in kept)
                                        for a in ("연출", "스토리", "영상미", "배우", "OST")}
