"""Shared fixtures: an isolated REVIEWOPS_HOME per test, SQLite and PostgreSQL review stores, corpora.

PostgreSQL tests run when REVIEWOPS_TEST_POSTGRES_URL is set (CI sets it to the local server);
without it they are left out and the run says so loudly at the end. With
REVIEWOPS_TEST_REQUIRE_POSTGRES=1 an unreachable server fails the run instead.
"""

from __future__ import annotations

import gzip
import json
import os
import uuid
from pathlib import Path

import pytest

# Tests never reach a model hub: fail at once instead of retrying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from reviewops.config import Settings, reset_settings
from reviewops.store.db import upgrade

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "reviews.sample.jsonl.gz"
PG_URL = os.environ.get("REVIEWOPS_TEST_POSTGRES_URL", "")
REQUIRE_PG = os.environ.get("REVIEWOPS_TEST_REQUIRE_POSTGRES") == "1"

_left_out: list[str] = []


def pytest_collection_modifyitems(config, items) -> None:
    if PG_URL:
        return
    kept = []
    for item in items:
        if "postgres" in item.keywords:
            _left_out.append(item.nodeid)
        else:
            kept.append(item)
    if _left_out:
        config.hook.pytest_deselected(items=[i for i in items if i.nodeid in set(_left_out)])
        items[:] = kept


def pytest_terminal_summary(terminalreporter) -> None:
    if _left_out:
        tr = terminalreporter
        tr.section("POSTGRESQL TESTS LEFT OUT", sep="!", red=True, bold=True)
        tr.write_line(f"{len(_left_out)} tests need PostgreSQL and did not run: set REVIEWOPS_TEST_POSTGRES_URL "
                      "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run them.", red=True, bold=True)


# --- settings ------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh REVIEWOPS_HOME; every other REVIEWOPS_ variable of the caller's shell is cleared."""
    for key in list(os.environ):
        if key.startswith("REVIEWOPS_") and not key.startswith("REVIEWOPS_TEST_"):
            monkeypatch.delenv(key)
    h = tmp_path / "home"
    monkeypatch.setenv("REVIEWOPS_HOME", str(h))
    monkeypatch.chdir(tmp_path)
    reset_settings()
    yield h
    reset_settings()


def only_reviewops_env(mp: pytest.MonkeyPatch, values: dict[str, str]) -> Settings:
    """The REVIEWOPS_ variables become `values` (the REVIEWOPS_TEST_ ones stay), and settings are re-read."""
    for key in list(os.environ):
        if key.startswith("REVIEWOPS_") and not key.startswith("REVIEWOPS_TEST_"):
            mp.delenv(key)
    for key, value in values.items():
        mp.setenv(key, value)
    reset_settings()
    return Settings()


@pytest.fixture
def settings(home) -> Settings:
    return Settings()


def crawler_settings(monkeypatch, site_url: str, timeout: float = 1, **more: str) -> Settings:
    """Settings that crawl the local test site at `site_url` at full speed (no delay, no browser)."""
    env = {"CGV_BASE_URL": site_url, "MEGABOX_BASE_URL": site_url, "CRAWL_DELAY": "0", "CRAWL_BACKOFF": "0.05",
           "CRAWL_TIMEOUT": str(timeout), "SELENIUM_FALLBACK": "false", "CGV_PAGE_SIZE": "6", **more}
    for k, v in env.items():
        monkeypatch.setenv(f"REVIEWOPS_{k}", v)
    reset_settings()
    return Settings()


# --- databases -----------------------------------------------------------------------------------


def _pg_database() -> str:
    """Create an empty database on the test server and return its URL."""
    import sqlalchemy as sa

    name = f"reviewops_t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        msg = f"PostgreSQL at REVIEWOPS_TEST_POSTGRES_URL is unreachable: {exc.orig}"
        if REQUIRE_PG:
            pytest.fail(msg)
        raise
    admin.dispose()
    return str(sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False))


def _drop_pg(url: str) -> None:
    import sqlalchemy as sa

    from reviewops.store.db import get_engine

    get_engine(url).dispose()
    get_engine.cache_clear()
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, home, monkeypatch) -> str:
    """The review store on SQLite and, when available, PostgreSQL, migrated as `reviewops db upgrade` leaves
    it; exported as REVIEWOPS_DATABASE_URL."""
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'reviews.db'}"
        monkeypatch.setenv("REVIEWOPS_DATABASE_URL", url)
        reset_settings()
        upgrade(url)
        yield url
        return
    url = _pg_database()
    monkeypatch.setenv("REVIEWOPS_DATABASE_URL", url)
    reset_settings()
    try:
        upgrade(url)
        yield url
    finally:
        _drop_pg(url)


# --- S3 -----------------------------------------------------------------------------------------------


@pytest.fixture
def moto_server(monkeypatch):
    """moto in server mode on 127.0.0.1: a real S3 endpoint over HTTP; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield f"http://{host}:{port}"
    server.stop()



# --- a browser ---------------------------------------------------------------------------------------


@pytest.fixture
def browser():
    """Headless Chromium driven by Selenium, for tests of what a user sees through nginx."""
    from selenium import webdriver

    from reviewops.sources.browser import CHROMIUM_ARGS, chromium_paths

    binary, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


# --- corpora ----------------------------------------------------------------------------------------


def sample_records(n: int | None = None, skip: int = 0) -> list[dict]:
    out = []
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i < skip:
                continue
            if n is not None and len(out) >= n:
                break
            out.append(json.loads(line))
    return out


def write_jsonl(path: Path, records: list[dict], gz: bool = True) -> Path:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    if gz:
        with gzip.GzipFile(path, "wb", mtime=0) as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    """6,000 real reviews from the bundled sample, as JSONL.gz."""
    return write_jsonl(tmp_path / "small.jsonl.gz", sample_records(6000))
