"""The API's on-disk model cache: a damaged cached model is downloaded again from the registry instead of
keeping the API down, and the model in service keeps serving meanwhile. Real trained and registered
models, real MLflow; the damage is three flipped bytes in the cached `model.skops`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient

from reviewops.config import Settings, reset_settings
from reviewops.models.baseline import BaselineParams
from reviewops.registry.mlflow_registry import Registry
from reviewops.serving.app import create_app
from reviewops.serving.models import ModelManager
from tests.conftest import only_reviewops_env, sample_records, write_jsonl

TEXTS = ["배우들 연기가 정말 좋았고 마지막 장면에서 눈물이 났어요", "시간 아깝다 진짜 최악의 영화"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A home with two versions trained by the real pipeline: v1 champion, v2 challenger."""
    from reviewops.jobs.train import run_ingest, run_snapshot, train_and_register
    from reviewops.store.db import upgrade

    home = tmp_path_factory.mktemp("cache") / "home"
    env = {"REVIEWOPS_HOME": str(home), "REVIEWOPS_GATE_MARGIN": "0.9",  # the second version stays challenger
           "REVIEWOPS_MODEL_PARAMS": json.dumps({"char_features": 2**18, "word_features": 2**17, "n_jobs": 1})}
    with pytest.MonkeyPatch.context() as mp:
        s = only_reviewops_env(mp, env)
        upgrade(s.db_url)
        run_ingest(s, write_jsonl(tmp_path_factory.mktemp("corpus") / "c.jsonl.gz", sample_records(4000)))
        snap, parts = run_snapshot(s)
        train_and_register(s, snap, parts)
        train_and_register(s, snap, parts, BaselineParams.from_dict({"char_features": 2**16, "word_features": 2**15,
                                                                     "n_jobs": 1}))
    reset_settings()
    return env


@pytest.fixture
def settings(platform, monkeypatch):
    s = only_reviewops_env(monkeypatch, platform)
    Registry(s).promote("1", "test")
    yield s
    Registry(s).promote("1", "test")
    reset_settings()


def _cached_skops(settings: Settings, version: str) -> Path:
    [skops] = (settings.model_cache / settings.model.name / version).rglob("model.skops")
    return skops


def _flip(path: Path) -> bytes:
    """Flip three bytes in the middle of `path`; returns the original content."""
    original = path.read_bytes()
    data = bytearray(original)
    for i in (len(data) // 3, len(data) // 2, 2 * len(data) // 3):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return original


def _intact(skops: Path) -> bool:
    meta = json.loads((skops.parent / "meta.json").read_text())
    return hashlib.sha256(skops.read_bytes()).hexdigest() == meta["sha256"]


def _serves(manager: ModelManager, version: str) -> bool:
    return (manager.current is not None and manager.current.version == version
            and manager.current.predict_proba(TEXTS).shape == (2,))


def test_corrupted_cache_is_downloaded_again_after_a_restart(settings):
    first = ModelManager(settings)
    assert first.refresh() and _serves(first, "1")
    skops = _cached_skops(settings, "1")
    _flip(skops)
    assert not _intact(skops)

    restarted = ModelManager(settings)  # an API restart finds the damaged cache
    assert restarted.refresh() and _serves(restarted, "1") and restarted.last_error is None
    assert _intact(_cached_skops(settings, "1"))

    # the same through the API: ready at once, and a reload changes nothing
    _flip(_cached_skops(settings, "1"))
    with TestClient(create_app(settings, poll=False)) as c:
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["model"]["version"] == "1"
        assert c.post("/v1/predict", json={"texts": TEXTS}).status_code == 200
    assert _intact(_cached_skops(settings, "1"))


def test_damaged_cache_of_a_new_champion_never_takes_the_old_one_down(settings):
    registry = Registry(settings)
    serving = ModelManager(settings)
    assert serving.refresh() and _serves(serving, "1")
    registry.promote("2", "test")  # an earlier spell as champion left v2 in the cache ...
    assert ModelManager(settings).refresh()
    registry.promote("1", "test")
    _flip(_cached_skops(settings, "2"))  # ... and it was damaged since

    registry.promote("2", "test")
    assert serving.refresh() and _serves(serving, "2") and serving.last_error is None
    assert _intact(_cached_skops(settings, "2"))

    # when the registry's own copy is broken too, the model in service keeps serving
    registry.promote("1", "test")
    assert serving.refresh() and _serves(serving, "1")
    _flip(_cached_skops(settings, "2"))
    mv = mlflow.MlflowClient().get_model_version(settings.model.name, "2")
    logged = mlflow.MlflowClient().get_logged_model(mv.source.removeprefix("models:/"))  # models:/m-<id>
    [stored] = Path(logged.artifact_location.removeprefix("file://")).rglob("model.skops")
    original = _flip(stored)
    try:
        registry.promote("2", "test")
        assert serving.refresh() is False
        assert _serves(serving, "1") and "checksum" in serving.last_error
        assert not (settings.model_cache / settings.model.name / "2").exists()  # nothing broken stays cached
    finally:
        stored.write_bytes(original)
    assert serving.refresh() and _serves(serving, "2")  # repaired in the registry: served at the next check

