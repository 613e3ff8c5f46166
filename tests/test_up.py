"""`make up` (`reviewops up`): the platform on one machine without Docker. Airflow's scheduler runs a
triggered cycle (collect → score and train through Assets → gate → promote → Slack stand-in), and
SIGTERM stops every process it started, also when a terminal or a supervisor signals the whole process
group again and again. The secrets `make up` makes (the API's admin token, one login for MLflow and
Airflow) are kept private and reused."""

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

from reviewops.config import Settings
from reviewops.devtools import launcher
from reviewops.proxy import ensure_credentials

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
    assert "Login for /mlflow/ and /airflow/: admin" in printed  # one login, its password in the proxy's file
    assert str(home / "nginx" / "proxy-password") in printed.replace("\n", "")
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
    landing = httpx.get(f"{front}/mlflow/", auth=("admin", proxy_password))  # MLflow's page, turned to the model
    assert landing.status_code == 200 and "location.replace('#/models/review-sentiment')" in landing.text
    # one login for Airflow through nginx: Airflow's own, with the proxy's password
    assert password == proxy_password
    assert httpx.get(f"{front}/airflow/", follow_redirects=True).status_code == 200
    through = httpx.post(f"{front}/airflow/auth/token", json={"username": "admin", "password": proxy_password})
    assert through.status_code in (200, 201) and through.json()["access_token"]
    # with no basic auth in front of /airflow/, Airflow's own login is the lock: it must refuse strangers
    assert httpx.get(f"{front}/airflow/api/v2/dags").status_code == 401
    refused = httpx.post(f"{front}/airflow/auth/token", json={"username": "admin", "password": "wrong"})
    assert refused.status_code == 401
    auth = {"Authorization": f"Bearer {through.json()['access_token']}"}
    assert httpx.get(f"{front}/airflow/api/v2/dags", headers=auth).status_code == 200
    # the admin token make up generated is the API's
    token = (home / "admin-token").read_text().strip()
    assert str(home / "admin-token") in printed.replace("\n", "") and token not in printed
    assert httpx.post(f"{front}/api/v1/admin/reload", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert httpx.post(f"{front}/api/v1/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401

    # what a terminal or a supervisor does: SIGTERM to the whole process group, more than once
    proc = platform["proc"]
    for _ in range(3):
        os.killpg(proc.pid, signal.SIGTERM)
        time.sleep(0.3)
    assert proc.wait(90) == 0
    time.sleep(1)
    left = {child: _pids_in_group(child) for child in platform["children"]}
    assert all(not pids for pids in left.values()), left


# --- stopping, cheaply: the launcher's own start / supervise with two quick services, under make ------

# A service that takes a while to stop (as Airflow does): a signal arriving meanwhile must not cut the
# stopping short.
SLOW_TO_STOP = "trap 'sleep 3; exit 0' TERM; while :; do sleep 0.1; done"
LAUNCH = """
import json, os, sys
from pathlib import Path
from reviewops.devtools import launcher

ro, port, logs = sys.argv[1], sys.argv[2], Path(sys.argv[3])
site = f"http://127.0.0.1:{port}"
services = [launcher.Service("testsite", [ro, "testsite", "--port", port], site, f"{site}/_control/state"),
            launcher.Service("slow", ["sh", "-c", os.environ["SLOW_TO_STOP"]], site, f"{site}/_control/state")]
launcher.stop_on_signals()  # as `reviewops up` does
launcher.start(services, logs, dict(os.environ), timeout=60, echo=print)
print(json.dumps([s.proc.pid for s in services]), flush=True)
sys.exit(1 if launcher.supervise(services, echo=print) else 0)
"""


def test_repeated_signals_to_the_process_group_stop_every_service(tmp_path):
    """`make up` in a terminal: Ctrl-C or `kill -TERM -- -PGID` reach make and the launcher, and make passes
    its signal on: the launcher gets several. Every service must still be stopped, none left behind."""
    script, makefile, out = tmp_path / "launch.py", tmp_path / "Makefile", tmp_path / "up.out"
    script.write_text(LAUNCH)
    makefile.write_text(f"up:\n\t{sys.executable} {script} {BIN / 'reviewops'} {_free_port()} {tmp_path / 'logs'}\n")
    env = os.environ | {"SLOW_TO_STOP": SLOW_TO_STOP, "REVIEWOPS_HOME": str(tmp_path / "home")}
    with open(out, "w") as log:
        make = subprocess.Popen(["make", "-s", "-f", str(makefile), "up"], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    groups: list[int] = []
    try:
        line = _wait(lambda: next((ln for ln in out.read_text().splitlines() if ln.startswith("[")), None), 60,
                     "the services to start", make)
        groups = [make.pid, *json.loads(line)]  # make's group holds the launcher; each service has its own
        assert all(_pids_in_group(g) for g in groups)
        for _ in range(4):  # the first starts the stopping; the others arrive while it runs
            os.killpg(make.pid, signal.SIGTERM)
            time.sleep(0.2)
        make.wait(60)
        _wait(lambda: not any(_pids_in_group(g) for g in groups), 10, "every process to end")
        assert "Traceback" not in out.read_text(), out.read_text()
    finally:
        for g in groups:
            for pid in _pids_in_group(g):
                os.kill(pid, signal.SIGKILL)


def test_admin_token_is_generated_once_private_and_only_its_path_is_printed(home, monkeypatch):
    monkeypatch.delenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", raising=False)
    settings = Settings()
    token, path = launcher.admin_token(settings)
    assert token and len(token) >= 24 and path == home / "admin-token"
    assert path.stat().st_mode & 0o777 == 0o600 and path.read_text().strip() == token
    assert launcher.admin_token(Settings()) == (token, path)  # a restart keeps it

    api = next(s for s in launcher.platform_services(settings, launcher.PORTS, True, True, admin_token=token)
               if s.name == "api")
    assert api.env["REVIEWOPS_ADMIN_TOKEN"] == token
    printed = launcher.access(settings, 8088)
    assert str(path) in printed and token not in printed
    password = ensure_credentials(home / "nginx")[1]
    assert password not in printed and str(home / "nginx" / "proxy-password") in printed

    # Airflow's admin password is the proxy's: one login for /mlflow/ and /airflow/
    airflow_file = launcher.share_airflow_password(settings, password)
    assert json.loads(airflow_file.read_text()) == {"admin": password}
    assert airflow_file.stat().st_mode & 0o777 == 0o600

    monkeypatch.setenv("REVIEWOPS_ADMIN_TOKEN", "from-the-environment")
    assert launcher.admin_token(Settings()) == (None, None)
    assert "REVIEWOPS_ADMIN_TOKEN" in launcher.access(Settings(), 8088)
