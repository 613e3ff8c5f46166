"""A polite HTTP client for crawling: it names itself, honours robots.txt, keeps one request in
flight per host with a delay between requests, and retries 429, 5xx and timeouts with exponential
backoff and jitter (honouring Retry-After)."""

from __future__ import annotations

import fcntl
import logging
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from reviewops.errors import SourceError

log = logging.getLogger(__name__)
RETRY_STATUS = {429, 500, 502, 503, 504}


class FetchError(SourceError):
    """A request failed for good (after retries), or robots.txt forbids it."""


@dataclass
class Politeness:
    user_agent: str
    delay: float = 1.0
    timeout: float = 10.0
    retries: int = 4
    backoff: float = 0.5
    backoff_max: float = 30.0
    # Where processes on one machine agree on whose turn it is (Airflow runs one task per movie, in
    # parallel): a lock file per host holding the time its last request finished. None: this process only.
    lock_dir: Path | None = None

    @classmethod
    def from_settings(cls, s) -> Politeness:
        return cls(s.user_agent, s.crawl.delay, s.crawl.timeout, s.crawl.retries, s.crawl.backoff, s.crawl.backoff_max,
                   lock_dir=s.home / "locks")


@dataclass
class _Host:
    lock: threading.Lock = field(default_factory=threading.Lock)
    last: float = float("-inf")  # wall-clock time the last request to this host finished
    robots: RobotFileParser | None = None


class PoliteClient:
    def __init__(self, rules: Politeness, sleep=time.sleep) -> None:
        self.rules = rules
        self._sleep = sleep
        self._hosts: dict[str, _Host] = {}
        self._hosts_lock = threading.Lock()
        self.requests = 0
        self.retried = 0
        self.waited = 0.0  # seconds spent in politeness delays and backoff
        self._http = httpx.Client(headers={"User-Agent": rules.user_agent}, timeout=rules.timeout,
                                  follow_redirects=True)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _host(self, url: str) -> tuple[str, _Host]:
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        with self._hosts_lock:
            return key, self._hosts.setdefault(key, _Host())

    @contextmanager
    def _turn(self, origin: str, host: _Host) -> Iterator[None]:
        """Wait until `delay` has passed since the last request to this host, from this process or (with a
        lock_dir) any other, then hold the host for one request."""
        fh = None
        last = host.last
        if self.rules.lock_dir is not None:
            self.rules.lock_dir.mkdir(parents=True, exist_ok=True)
            fh = open(self.rules.lock_dir / (re.sub(r"[^A-Za-z0-9.-]+", "_", origin) + ".lock"), "a+")  # noqa: SIM115
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            with suppress(ValueError):  # a torn or foreign file: only this process's own record counts
                last = max(last, float(fh.read().strip() or "-inf"))
        try:
            gap = last + self.rules.delay - time.time()
            if gap > 0:
                self.waited += gap
                self._sleep(gap)
            yield
        finally:
            host.last = time.time()
            if fh is not None:
                fh.seek(0)
                fh.truncate()
                fh.write(repr(host.last))
                fh.flush()
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()

    def _allowed(self, origin: str, host: _Host, url: str) -> bool:
        if host.robots is None:
            robots = RobotFileParser()
            try:
                with self._turn(origin, host):
                    resp = self._http.get(f"{origin}/robots.txt")
                    self.requests += 1
                if resp.status_code >= 500:
                    robots.disallow_all = True  # the site is in trouble: do not crawl it now
                elif resp.status_code >= 400:
                    robots.allow_all = True  # no robots.txt: everything is allowed
                else:
                    robots.parse(resp.text.splitlines())
            except httpx.HTTPError as exc:
                raise FetchError(f"{origin}/robots.txt unreachable: {type(exc).__name__}") from None
            host.robots = robots
        return host.robots.can_fetch(self.rules.user_agent, url)

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        """One request, in turn with others to the same host; retried on 429/5xx/timeouts."""
        origin, host = self._host(url)
        with host.lock:  # one request in flight per host
            if not self._allowed(origin, host, url):
                raise FetchError(f"{url}: disallowed by robots.txt")
            attempt = 0
            while True:
                problem: str
                retry_after: float | None = None
                try:
                    with self._turn(origin, host):
                        resp = self._http.request(method, url, **kwargs)
                        self.requests += 1
                    if resp.status_code not in RETRY_STATUS:
                        if resp.status_code >= 400:
                            raise FetchError(f"{method} {url}: HTTP {resp.status_code}")
                        return resp
                    problem = f"HTTP {resp.status_code}"
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
                except httpx.TimeoutException:
                    self.requests += 1
                    problem = f"timed out after {self.rules.timeout:g}s"
                except httpx.TransportError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                if attempt >= self.rules.retries:
                    raise FetchError(f"{method} {url}: {problem} (gave up after {attempt + 1} attempts)")
                pause = min(self.rules.backoff_max, self.rules.backoff * 2**attempt)
                pause += random.uniform(0, self.rules.backoff)
                if retry_after is not None:
                    pause = max(pause, min(retry_after, self.rules.backoff_max))
                log.info("%s %s: %s; retry %d in %.1fs", method, url, problem, attempt + 1, pause)
                self.retried += 1
                self.waited += pause
                self._sleep(pause)
                attempt += 1

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post_json(self, url: str, payload: dict) -> httpx.Response:
        return self.request("POST", url, json=payload)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
