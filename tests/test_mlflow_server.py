"""The MLflow tracking server as a real process: a client trains and registers through it, artifacts
are proxied to a folder or to S3 (moto), and the model loads back through the server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from reviewops.config import Settings, reset_settings
from reviewops.errors import ConfigError
from reviewops.jobs.train import run_ingest, run_snapshot, train_and_register
from reviewops.mlflow_server import server_command, server_env, wait_until_up
from reviewops.models.pyfunc import load_predictor
from reviewops.models.trainers import BaselineTrainer
from reviewops.registry.mlflow_registry import Registry
from reviewops.store.db import upgrade

FAST_MODEL = json.dumps({"char_features": 2**18, "word_features": 2**17, "n_jobs": 1})
TEXTS = ["정말 재밌고 감동적이에요 배우들 연기 최고", "시간 아깝다 최악의 영화", "그냥 그랬어요 평범함"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A factory: start `mlflow server` for some settings, wait for /health, return its URL.
    The finaliser kills the server's whole process group (its uvicorn workers included)."""
    procs: list[tuple[subprocess.Popen, Path]] = []

    def start(settings: Settings) -> str:
        port = free_port()
        log = tmp_path / f"mlflow-server-{port}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(server_command(settings, port=port, workers=1), env=server_env(settings),
                                    stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append((proc, log))
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(url, timeout=60)
        except ConfigError:
            raise AssertionError(f"server did not start:\n{log.read_text(errors='replace')[-4000:]}") from None
        return url

    yield start
    for proc, _ in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class CapturingTrainer(BaselineTrainer):
    """The baseline trainer, keeping the fitted model to compare with what the server gives back."""

    def fit(self, *args, **kwargs):
        self.model = super().fit(*args, **kwargs)
        return self.model


@pytest.fixture
def client(home, monkeypatch):
    """A client that knows only the server's URL: no S3 endpoint, no artifact settings."""
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("REVIEWOPS_MODEL_PARAMS", FAST_MODEL)
    upgrade(Settings().db_url)  # the review store, as `reviewops db upgrade` leaves it

    def connect(url: str) -> Settings:
        monkeypatch.setenv("REVIEWOPS_MLFLOW_TRACKING_URI", url)
        reset_settings()
        return Settings()

    return connect


def train_through(settings: Settings, corpus: Path) -> tuple[CapturingTrainer, object]:
    run_ingest(settings, corpus)
    snapshot, parts = run_snapshot(settings)
    trainer = CapturingTrainer(settings)
    result = train_and_register(settings, snapshot, parts, trainer=trainer)
    return trainer, result


def assert_champion_served(settings: Settings, trainer: CapturingTrainer) -> None:
    champion = Registry(settings).by_alias("champion")
    assert champion is not None and champion.version == "1"
    served = load_predictor(f"models:/{settings.model.name}@champion")
    np.testing.assert_allclose(served.predict_proba(TEXTS), trainer.model.predict_proba(TEXTS), rtol=1e-6)


def test_server_on_sqlite_proxies_artifacts_to_a_folder(tmp_path, mlflow_server, client, small_corpus, home):
    server = Settings(home=tmp_path / "server")
    url = mlflow_server(server)
    assert (tmp_path / "server" / "mlflow.db").is_file()

    settings = client(url)
    t0 = time.perf_counter()
    trainer, result = train_through(settings, small_corpus)
    assert result.version == "1" and result.decision.promote, result.summary()
    assert_champion_served(settings, trainer)

    dest = Path(server.mlflow_artifacts_dest)
    stored = {p.name for p in dest.rglob("*") if p.is_file()}
    assert {"MLmodel", "model.skops", "meta.json", "confusion_matrix.png", "manifest.json"} <= stored, stored
    # the client kept no MLflow data of its own
    assert not list(home.rglob("MLmodel")) and not (home / "mlflow.db").exists() and not (home / "mlruns").exists()
    assert time.perf_counter() - t0 < 60


def test_server_proxies_artifacts_to_s3(tmp_path, moto_server, mlflow_server, client, small_corpus):
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server)
    s3.create_bucket(Bucket="mlflow-artifacts")
    server = Settings(home=tmp_path / "server",
                      mlflow={"artifacts_destination": "s3://mlflow-artifacts/prod"},
                      s3_endpoint_url=moto_server)
    assert server_env(server)["MLFLOW_S3_ENDPOINT_URL"] == moto_server
    url = mlflow_server(server)

    settings = client(url)
    assert "MLFLOW_S3_ENDPOINT_URL" not in os.environ and settings.s3_endpoint_url is None
    trainer, result = train_through(settings, small_corpus)
    assert result.version == "1"

    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow-artifacts")
            for o in page.get("Contents", [])]
    assert keys and all(k.startswith("prod/") for k in keys), keys
    names = {k.rsplit("/", 1)[-1] for k in keys}
    assert {"MLmodel", "model.skops", "meta.json"} <= names, names
    assert not (tmp_path / "server" / "mlartifacts").exists()
    assert_champion_served(settings, trainer)


def test_command_and_env(home, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_BACKEND_STORE_URI", raising=False)
    local = Settings(home=tmp_path / "h", mlflow={"artifacts_destination": "rel/artifacts"})
    cmd = server_command(local, host="0.0.0.0", port=5001, workers=2, static_prefix="mlflow/",
                         allowed_hosts="mlflow,mlflow:*")
    assert Path(cmd[0]).name == "mlflow" and Path(cmd[0]).is_file() and cmd[1] == "server"
    args = dict(pairwise(cmd))
    assert args["--backend-store-uri"] == f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}"
    assert args["--artifacts-destination"] == str(tmp_path / "rel" / "artifacts")  # made absolute (cwd)
    assert (tmp_path / "h").is_dir() and (tmp_path / "rel" / "artifacts").is_dir()
    assert "--serve-artifacts" in cmd and args["--workers"] == "2" and args["--static-prefix"] == "/mlflow"
    assert args["--allowed-hosts"] == "mlflow,mlflow:*" and args["--host"] == "0.0.0.0" and args["--port"] == "5001"
    assert "--workers" not in server_command(local)

    pg = Settings(home=tmp_path / "h",
                  mlflow={"backend_store_uri": "postgresql+psycopg://ml:s3cret@db:5432/mlflow",
                          "artifacts_destination": "s3://bucket/prefix"})
    cmd = server_command(pg)
    assert not any("s3cret" in a for a in cmd) and "--backend-store-uri" not in cmd
    assert cmd[cmd.index("--artifacts-destination") + 1] == "s3://bucket/prefix"
    env = server_env(pg)
    assert env["MLFLOW_BACKEND_STORE_URI"] == pg.mlflow_backend and "MLFLOW_S3_ENDPOINT_URL" not in env


def test_health_wait_names_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"MLflow server at {url} is not up after 1s .*GET {url}/health"):
        wait_until_up(url, timeout=1)
    assert time.perf_counter() - t0 < 5


def test_dag_runs_hide_mlflow_notices_but_not_its_warnings(capfd):
    """`reviewops dag test` (and so `make demo`) runs the tasks in its own process: MLflow's notices
    ("Successfully registered model ...") and INFO lines are not shown there, its warnings are."""
    import logging

    import mlflow  # noqa: F401 - configures MLflow's logger and stream, as a task's import does
    from mlflow.utils.logging_utils import enable_logging, eprint

    from reviewops.platform import _mlflow_notices_hidden

    with _mlflow_notices_hidden():
        enable_logging()  # as MLflow's autologging wrappers do on their way out
        eprint("Successfully registered model 'review-sentiment'.")
        logging.getLogger("mlflow.tracking.fluent").info("an INFO line")
        logging.getLogger("mlflow.tracking.fluent").warning("a warning")
    eprint("a notice afterwards")
    err = capfd.readouterr().err
    assert "Successfully registered" not in err and "an INFO line" not in err
    assert "a warning" in err and "a notice afterwards" in err
