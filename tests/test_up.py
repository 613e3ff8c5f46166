"""`make up` (`reviewops up`): the platform on one machine without Docker. Airflow's scheduler runs a
triggered cycle (collect → score and train through Assets → gate → promote → Slack stand-in), and
SIGTERM stops every process it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_in_group(pgid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,pgid="], capture_output=True, text=True, check=True).stdout
    return [int(p) for p, g in (line.split() for line in out.splitlines()) if int(g) == pgid]


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"reviewops up exited ({proc.returncode}) while waiting for {what}")
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def platform(home, small_corpus, monkeypatch):
    ports = {name: _free_port() for name in ("proxy", "api", "app", "airflow", "mlflow", "testsite", "slack")}
    monkeypatch.setenv("REVIEWOPS_CORPUS", str(small_corpus))  # first-start history: small, for speed
    monkeypatch.setenv("REVIEWOPS_TASK_RETRIES", "0")
    monkeypatch.setenv("REVIEWOPS_RETRAIN_MIN_NEW_LABELS", "100")
    monkeypatch.setenv("REVIEWOPS_CRAWL_DELAY", "0")
    monkeypatch.setenv("REVIEWOPS_MODEL_POLL_SECONDS", "2")
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "up.out", "w+")  # noqa: SIM115 - closed in the finaliser
    argv = [str(BIN / "reviewops"), "up", *(f"--{k}-port={v}" for k, v in ports.items())]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True)
    children: list[int] = []
    try:
        _wait(lambda: "ReviewOps is up" in (home / "up.out").read_text(), 240, "the platform to start", proc)
        out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
        children = [int(p) for p, pp in (line.split() for line in out.splitlines()) if int(pp) == proc.pid]
        yield {"proc": proc, "ports": ports, "home": home, "children": children}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for child in children:  # each service has its own process group
            for pid in _pids_in_group(child):
                os.kill(pid, signal.SIGKILL)
        log.close()


def test_make_up_runs_a_triggered_cycle_and_stops_cleanly(platform):
    ports, home = platform["ports"], platform["home"]
    api = f"http://127.0.0.1:{ports['airflow']}/airflow"  # Airflow lives under /airflow, as nginx serves it
    printed = (home / "up.out").read_text()
    assert f"http://127.0.0.1:{ports['proxy']}/" in printed
    password_file = home / "airflow" / "simple_auth_manager_passwords.json.generated"
    assert "simple_auth_manager_passwords.json.generated" in printed.replace("\n", "")
    password = json.loads(password_file.read_text())["admin"]
    token = httpx.post(f"{api}/auth/token", json={"username": "admin", "password": password}).json()["access_token"]
    client = httpx.Client(base_url=f"{api}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30)

    dags = client.get("/dags").json()
    assert sorted(d["dag_id"] for d in dags["dags"]) == ["model_monitor", "reviews_collect", "reviews_score",
                                                          "sentiment_train"]
    assert not any(d["is_paused"] for d in dags["dags"])
    assert client.get("/importErrors").json()["total_entries"] == 0

    started = time.monotonic()
    assert client.post("/dags/reviews_collect/dagRuns", json={"logical_date": None}).status_code == 200

    def finished(dag_id: str, run_type: str | None = None):
        runs = client.get(f"/dags/{dag_id}/dagRuns").json()["dag_runs"]
        done = [r for r in runs
                if r["state"] in ("success", "failed") and (run_type is None or r["run_type"] == run_type)]
        return done[-1] if done else None

    collect = _wait(lambda: finished("reviews_collect"), 300, "reviews_collect", platform["proc"])
    assert collect["state"] == "success"
    train = _wait(lambda: finished("sentiment_train", "asset_triggered"), 400, "sentiment_train", platform["proc"])
    assert train["state"] == "success"
    slack = f"http://127.0.0.1:{ports['slack']}/messages"

    def promoted():
        texts = [m["text"] for m in httpx.get(slack).json()]
        return texts if any("promoted to champion" in t for t in texts) else None

    texts = _wait(promoted, 60, "the training report")
    assert any(t.startswith("Review collection:") for t in texts)

    def rescored():  # the promotion's champion Asset runs reviews_score once more, now with a model
        runs = client.get("/dags/reviews_score/dagRuns").json()["dag_runs"]
        return len([r for r in runs if r["state"] == "success"]) >= 2 or None

    _wait(rescored, 300, "reviews_score after the promotion", platform["proc"])
    print(f"\ntriggered cycle: {time.monotonic() - started:.0f}s")

    # the front door: the app, the API with the new champion, and the admin UIs behind basic auth
    front = f"http://127.0.0.1:{ports['proxy']}"
    assert "<title>Streamlit</title>" in httpx.get(f"{front}/").text
    ready = _wait(lambda: httpx.get(f"{front}/api/readyz").status_code == 200 or None, 60,
                  "the API to load the champion")
    assert ready
    r = httpx.post(f"{front}/api/v1/predict", json={"texts": ["정말 재밌어요 최고의 영화", "돈 아까운 최악의 영화"]})
    assert [p["label"] for p in r.json()["predictions"]] == ["긍정", "부정"]
    assert httpx.get(f"{front}/mlflow/").status_code == 401
    proxy_password = (home / "nginx" / "proxy-password").read_text().strip()
    assert httpx.get(f"{front}/mlflow/", auth=("admin", proxy_password)).status_code == 200
    assert httpx.get(f"{front}/airflow/", auth=("admin", proxy_password), follow_redirects=True).status_code == 200

    proc = platform["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(90) == 0 or proc.returncode in (1, 130)
    time.sleep(1)
    left = {child: _pids_in_group(child) for child in platform["children"]}
    assert all(not pids for pids in left.values()), left
