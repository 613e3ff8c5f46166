"""Crawls at once and crawls killed (issue 12, fault 5): real processes on one real store, the real test site."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from reviewops.devtools.testsite import MEGABOX_REVIEWS, TestSite
from reviewops.jobs.train import run_ingest
from reviewops.sources.crawl import crawl
from reviewops.store import db
from reviewops.store.batches import close_orphaned, owner
from reviewops.store.db import sessions
from reviewops.store.models import CollectionBatch, Review, utcnow
from tests.conftest import crawler_settings, sample_records, write_jsonl

# waits for the go file (its imports done), then runs the real command line
CHILD = ("import pathlib, sys, time\nfrom reviewops.cli import app\n"
         "while not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.001)\napp(sys.argv[2:])")


@pytest.fixture(scope="module")
def site():
    s = TestSite(movies_per_source=8, days=3, reviews_per_day=6)
    url = s.start()
    yield s, url
    s.stop()


@pytest.fixture
def crawl_settings(site, db_url, monkeypatch):
    s, url = site
    s.clear_faults()
    s.set_day(2)
    settings = crawler_settings(monkeypatch, url, timeout=60, CRAWL_RETRIES="0")
    db.upgrade(db_url)  # an existing store: the processes race on its rows, not on creating its tables
    return settings


def _stored(settings) -> list[tuple[str, str]]:
    with db.session_scope(settings.db_url) as s:
        return s.execute(sa.select(Review.source, Review.source_review_id)).all()


def _visible(site) -> set[tuple[str, str]]:
    return {(src, r["id"]) for src in ("cgv", "megabox") for m in site.movies(src)
            for r in site.visible_reviews(src, m["code"])}


def _crawl_twice_at_once(go) -> list[list[dict]]:
    """Two `reviewops crawl --source all` in two processes, started at the same moment: their results."""
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(go), "crawl", "--source", "all", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(2.5)  # both have imported everything and wait
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    go.unlink()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def test_two_crawls_at_once_both_finish_and_store_each_review_once(site, crawl_settings, tmp_path):
    """Both race to insert the same movies (first round) and the same reviews (both rounds)."""
    s, _ = site
    runs = []
    for day in (0, 2):
        s.set_day(day)
        runs += _crawl_twice_at_once(tmp_path / "go")
        assert [r["status"] for run in runs for r in run] == ["succeeded"] * 2 * len(runs), runs
        stored = _stored(crawl_settings)
        assert len(stored) == len(set(stored))  # none stored twice
        assert set(stored) == _visible(s)  # none missing
        assert sum(r["new"] for run in runs for r in run) == len(stored)  # each counted new by one run only


def _running_batch_with_reviews(url: str, source: str) -> int | None:
    with db.session_scope(url) as s:
        return s.scalar(sa.select(CollectionBatch.id).join(Review, Review.batch_id == CollectionBatch.id)
                        .where(CollectionBatch.status == "running", CollectionBatch.source == source).limit(1))


@pytest.mark.parametrize("next_run", ["crawl", "ingest"])
def test_a_killed_run_s_batch_is_closed_as_failed_by_the_next_run(site, crawl_settings, tmp_path, next_run):
    s, _ = site
    s.slow_seconds = 60
    s.set_fault("slow", MEGABOX_REVIEWS, count=1, after=2)  # the first movie's two pages, then the second hangs
    proc = subprocess.Popen([sys.executable, "-m", "reviewops.cli", "crawl", "--source", "megabox"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while (batch_id := _running_batch_with_reviews(crawl_settings.db_url, "megabox")) is None:
            assert proc.poll() is None and time.monotonic() < deadline, "the crawl never stored its first movie"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        s.clear_faults()
    with db.session_scope(crawl_settings.db_url) as sess:
        assert sess.get(CollectionBatch, batch_id).status == "running"  # what the kill left
        owned = sess.scalar(sa.select(sa.func.count(Review.id)).where(Review.batch_id == batch_id))
    assert owned > 0

    if next_run == "crawl":
        crawl(crawl_settings, sources=("cgv",))
    else:
        run_ingest(crawl_settings, write_jsonl(tmp_path / "c.jsonl.gz", sample_records(20)))
    with db.session_scope(crawl_settings.db_url) as sess:
        batch = sess.get(CollectionBatch, batch_id)
        assert batch.status == "failed" and batch.finished_at is not None
        assert "orphaned" in batch.error and f":{proc.pid}:" in batch.error and "is gone" in batch.error
        assert batch.counts["new"] == owned and batch.counts["movies"] == 1


def test_which_running_batches_count_as_orphaned(crawl_settings):
    """Without a live owner to ask, a batch is orphaned after a day without a sign of life; a batch whose
    owner lives, or one heard from lately (Airflow's tasks commit movie after movie), is left running."""
    now = utcnow()
    rows = {
        "silent for a day": {"started_at": now - timedelta(hours=25)},
        "heard from lately": {"started_at": now - timedelta(hours=30), "heartbeat_at": now - timedelta(hours=1)},
        "owner alive": {"started_at": now - timedelta(hours=1), **owner()},
        "owner on another host": {"started_at": now - timedelta(hours=1), "owner": "elsewhere/1:1:1"},
    }
    with db.session_scope(crawl_settings.db_url) as s:
        batches = {k: CollectionBatch(kind="crawl", source="cgv", cleaning_version="v", counts={}, **v)
                   for k, v in rows.items()}
        s.add_all(batches.values())
        s.flush()
        ids = {k: b.id for k, b in batches.items()}
    assert close_orphaned(sessions(crawl_settings)) == [ids["silent for a day"]]
    with db.session_scope(crawl_settings.db_url) as s:
        status = {k: (s.get(CollectionBatch, i).status, s.get(CollectionBatch, i).error) for k, i in ids.items()}
    assert status["silent for a day"][0] == "failed" and "no heartbeat" in status["silent for a day"][1]
    assert all(status[k] == ("running", None) for k in ids if k != "silent for a day")
