"""The numbers under `reviewops serve --workers 2`: whichever worker answers GET /v1/monitoring (read from
the store), requests, predictions and latency are those of both workers, and a restart keeps them;
whichever worker answers /metrics (Prometheus multiprocess mode), the counters are both workers' sums.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from reviewops.config import reset_settings
from reviewops.store import db
from tests.conftest import only_reviewops_env, sample_records, write_jsonl

TEXTS = ["배우들 연기가 정말 좋았고 마지막 장면에서 눈물이 났어요", "시간 아깝다 진짜 최악의 영화",
         "OST가 너무 좋아서 계속 생각나네요", "스토리는 뻔했지만 그럭저럭 볼 만했다"]
COUNTER = re.compile(r'^reviewops_api_requests_total\{method="POST",route="/v1/predict",status="200"\} (\S+)$', re.M)


@pytest.fixture(scope="module")
def home_env(tmp_path_factory):
    """The environment of a home with a trained champion (a small corpus: only serving is tested)."""
    from reviewops.jobs.train import run_ingest, run_snapshot, train_and_register

    home = tmp_path_factory.mktemp("workers") / "home"
    with pytest.MonkeyPatch.context() as mp:
        s = only_reviewops_env(mp, {"REVIEWOPS_HOME": str(home), "REVIEWOPS_MODEL_POLL_SECONDS": "60"})
        env = dict(os.environ)  # what the servers run with
        db.upgrade(s.db_url)
        run_ingest(s, write_jsonl(tmp_path_factory.mktemp("corpus") / "c.jsonl.gz", sample_records(2000)))
        snap, parts = run_snapshot(s)
        train_and_register(s, snap, parts)
    reset_settings()
    return env


class Served:
    """`reviewops serve --workers 2` in its own process group."""

    def __init__(self, env: dict, port: int, log) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "reviewops.cli", "serve", "--port", str(port),
                                      "--workers", "2"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 300  # two workers start a JVM each: slow on a busy machine
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the API exited while starting"
            if sum(_get(self.url, "/readyz").status_code == 200 for _ in range(6)) == 6:  # both workers
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("the API did not become ready within 300 s")

    def stop(self) -> None:
        """SIGTERM to the group; the server removes its metrics folder on the way out."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _get(url: str, path: str) -> httpx.Response:
    try:  # a new connection each time, so either worker may answer
        return httpx.get(url + path, timeout=10, headers={"connection": "close"})
    except httpx.TransportError:
        return httpx.Response(599)


def _send(url: str, n_requests: int) -> int:
    """n_requests concurrent predictions of 1-4 texts, each on a new connection; the number of texts sent."""
    sizes = [1 + i % len(TEXTS) for i in range(n_requests)]

    def one(size: int) -> None:
        r = httpx.post(url + "/v1/predict", json={"texts": TEXTS[:size]}, timeout=30, headers={"connection": "close"})
        assert r.status_code == 200, r.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, sizes))
    return sum(sizes)


def _totals(url: str) -> tuple[int, int]:
    """(requests, predictions) of the window, as GET /v1/monitoring counts them."""
    traffic = _get(url, "/v1/monitoring").json()["traffic"]
    return sum(h["requests"] for h in traffic), sum(h["predictions"] for h in traffic)


def _agreed(url: str, requests: int, texts: int) -> list[tuple[int, int]]:
    """Twelve readings of /v1/monitoring once the log has caught up (it writes within a second)."""
    deadline = time.monotonic() + 15
    while _totals(url) != (requests, texts) and time.monotonic() < deadline:
        time.sleep(0.3)
    return [_totals(url) for _ in range(12)]


def _scraped(url: str) -> set[float]:
    """The answered-predict counter of twenty /metrics scrapes, each on a new connection."""
    found = [COUNTER.findall(_get(url, "/metrics").text) for _ in range(20)]
    assert all(len(f) == 1 for f in found), found
    return {float(f[0]) for f in found}


def test_two_workers_and_a_restart_agree_on_the_monitoring_numbers(home_env, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(tmp_path / "serve.log", "wb") as log:
        api = Served(home_env, port, log)
        try:
            texts = _send(api.url, 60)
            readings = _agreed(api.url, 60, texts)
            assert set(readings) == {(60, texts)}, readings
            assert _scraped(api.url) == {60.0}
            data = _get(api.url, "/v1/monitoring").json()
            assert data["latency"] and all(h["p50"] <= h["p95"] <= h["p99"] for h in data["latency"])
            assert 0 < data["latency_ms"]["p50"] <= data["latency_ms"]["p99"]
        finally:
            api.stop()
        api = Served(home_env, port, log)  # a restart: nothing is lost, and the new requests add up
        try:
            more = _send(api.url, 20)
            readings = _agreed(api.url, 80, texts + more)
            assert set(readings) == {(80, texts + more)}, readings
            assert _scraped(api.url) == {20.0}  # Prometheus counters start again (a scraper expects that)
        finally:
            api.stop()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
