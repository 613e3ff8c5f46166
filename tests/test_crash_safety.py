"""Crashes and full disks during training: real processes killed with SIGKILL mid-way, a real full
filesystem (a small tmpfs), real MLflow. The next training (or `reviewops init`) cleans up what a crash
left; work still in progress in another process is left alone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pytest

from reviewops.config import Settings
from reviewops.errors import RegistryError
from reviewops.liveness import abandonment, process_id
from reviewops.registry.mlflow_registry import (
    ABANDONED_TAG,
    GATE_TAG,
    HEARTBEAT_TAG,
    OWNER_TAG,
    Registry,
)
from tests.conftest import ROOT
from tests.test_pipeline import cli, run_json

# A real `reviewops train` that stops for good at one step and says where: after MLflow created the new
# version (before any other tag, alias or gate decision), or inside the model's training.
CHILD = textwrap.dedent("""
    import sys, time

    import mlflow

    from reviewops.cli import app

    def stall(what):
        print("STALLED", what, flush=True)
        time.sleep(600)

    if sys.argv[1] == "after-register":
        from reviewops.registry.mlflow_registry import Registry

        register = Registry.register
        Registry.register = lambda self, uri: stall(register(self, uri))
    else:
        from reviewops.models.trainers import BaselineTrainer

        BaselineTrainer.fit = lambda self, *args: stall(mlflow.active_run().info.run_id)
    app(["train", "--max-rows", "3000"])
""")


@pytest.fixture
def trained(home, small_corpus, monkeypatch) -> Registry:
    """A home with version 1 as champion, trained by the real pipeline on the bundled sample."""
    monkeypatch.setenv("REVIEWOPS_MODEL_PARAMS", '{"char_features": 262144, "word_features": 131072, "n_jobs": 1}')
    assert cli("db", "upgrade").exit_code == 0
    first = run_json("pipeline", "run", "--corpus", str(small_corpus), "--max-rows", "3000")
    assert first["train"]["version"] == "1"
    return Registry(Settings())


class Stalled:
    """A child `reviewops train` stopped at one step; `kill()` sends it SIGKILL."""

    def __init__(self, step: str, tmp_path: Path) -> None:
        script = tmp_path / "stalled_train.py"
        script.write_text(CHILD)
        self.proc = subprocess.Popen([sys.executable, str(script), step], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env={**os.environ})
        deadline = time.monotonic() + 240
        for line in self.proc.stdout:
            if line.startswith("STALLED "):
                self.where = line.split()[1]
                return
            assert time.monotonic() < deadline
        raise AssertionError(f"the child exited with {self.proc.wait()} before stalling")

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.proc.stdout.close()


def _listed(registry: Registry) -> list[str]:
    return [v.version for v in registry.versions()]


def test_kill_after_registration_leaves_no_half_version(trained, tmp_path):
    child = Stalled("after-register", tmp_path)
    try:
        half = child.where
        assert half == "2"
        v = trained.get(half)  # exactly what a kill leaves: no alias, no decision, nothing but the owner tag
        assert GATE_TAG not in v.tags and not v.aliases and set(v.tags) == {OWNER_TAG}
        # while its process lives, the version is no candidate, and no repair touches it
        assert _listed(trained) == ["1"]
        assert "│ 2 " not in cli("models").stdout
        assert trained.repair().versions == {}
        assert trained.get(half).version == half
    finally:
        child.kill()
    run_id = trained.get(half).run_id

    # the next training finds the dead owner and deletes the half version; its run says why
    nxt = run_json("train", "--max-rows", "3000")
    with pytest.raises(RegistryError):
        trained.get(half)
    reason = mlflow.MlflowClient().get_run(run_id).data.tags[ABANDONED_TAG]
    assert f"registration of version {half} interrupted" in reason and "is gone" in reason
    assert _listed(trained) == ["1", nxt["version"]]
    assert all(GATE_TAG in v.tags for v in trained.versions(include_undecided=True))


def test_kill_during_training_leaves_no_running_run(trained, tmp_path):
    client = mlflow.MlflowClient()
    child = Stalled("in-training", tmp_path)
    try:
        run_id = child.where
        assert client.get_run(run_id).info.status == "RUNNING"
        assert trained.repair().runs == {}  # a run in progress in another process is not touched
        run = client.get_run(run_id)
        assert run.info.status == "RUNNING" and ABANDONED_TAG not in run.data.tags
    finally:
        child.kill()
    assert client.get_run(run_id).info.status == "RUNNING"  # what a kill leaves

    r = cli("init", "--no-bootstrap")
    assert r.exit_code == 0, r.output
    assert f"run {run_id} marked FAILED" in r.stdout
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[ABANDONED_TAG].startswith("found abandoned while RUNNING: its process")
    assert _listed(trained) == ["1"]
    again = cli("init", "--no-bootstrap")  # idempotent
    assert again.exit_code == 0 and "nothing left behind by crashed runs" in again.stdout


def test_work_on_another_machine_is_abandoned_only_after_its_heartbeat_stops(trained):
    """Another host's process cannot be looked up: its heartbeat decides (here set by hand on real runs)."""
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(trained.settings.mlflow.experiment).experiment_id
    elsewhere = "worker-7/pid:[4026531836]:4242:123456"
    fresh = client.create_run(experiment, tags={OWNER_TAG: elsewhere, HEARTBEAT_TAG: f"{time.time():.0f}"})
    silent = client.create_run(experiment, tags={OWNER_TAG: elsewhere, HEARTBEAT_TAG: f"{time.time() - 700:.0f}"})
    report = trained.repair(max_age=600)
    assert list(report.runs) == [silent.info.run_id] and "no heartbeat for 70" in report.runs[silent.info.run_id]
    assert client.get_run(silent.info.run_id).info.status == "FAILED"
    assert client.get_run(fresh.info.run_id).info.status == "RUNNING"


def test_liveness_rule():
    me = process_id()
    assert abandonment(me, 0, 600) is None  # alive here: no age makes it stale
    host, pid, start = me.rsplit(":", 2)
    assert "is gone" in abandonment(f"{host}:{pid}:{int(start) + 1}", None, 600)  # a reused pid is another process
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = process_id(child.pid)
    assert abandonment(owner, None, 600) is None
    child.kill()
    deadline = time.monotonic() + 10
    while abandonment(owner, None, 600) is None:  # a zombie not yet reaped is gone too
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.wait()
    assert "is gone" in abandonment(owner, None, 600)
    now = time.time()
    assert abandonment("elsewhere/x:1:1", (now - 30) * 1000, 600, now) is None
    assert abandonment("elsewhere/x:1:1", (now - 900) * 1000, 600, now) == "no heartbeat for 900s (over 600s)"
    assert abandonment(None, None, 600) is None


# --- a full disk ---------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A real 512 KiB filesystem (tmpfs): writes past it fail with ENOSPC."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here (the test needs root, as CI has): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_during_train_is_one_line_and_leaves_nothing_partial(home, small_corpus, small_disk, monkeypatch):
    monkeypatch.setenv("REVIEWOPS_MLFLOW_ARTIFACT_ROOT", (small_disk / "mlruns").as_uri())
    monkeypatch.setenv("REVIEWOPS_MODEL_PARAMS", '{"char_features": 262144, "word_features": 131072, "n_jobs": 1}')
    assert cli("db", "upgrade").exit_code == 0
    assert cli("ingest", str(small_corpus)).exit_code == 0

    r = cli("train", "--max-rows", "3000")
    assert r.exit_code == 8, r.output + repr(r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output
    assert re.search(r"training run \w+ stopped, storage is full or read-only: No space left on device at "
                     + re.escape(str(small_disk)), lines[0])

    # the model that did not fit is gone, files and record; the run is FAILED; nothing was registered
    left = [p.relative_to(small_disk) for p in small_disk.rglob("*") if p.is_file()]
    assert not [p for p in left if "models" in p.parts or p.name == "model.skops"], left
    client = mlflow.MlflowClient()
    [run] = client.search_runs([client.get_experiment_by_name("review-sentiment").experiment_id])
    assert run.info.status == "FAILED"
    assert not client.search_logged_models([run.info.experiment_id])
    assert Registry(Settings()).versions(include_undecided=True) == []
