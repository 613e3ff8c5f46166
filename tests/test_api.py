"""The prediction API: the contract, every error path, feedback, admin actions, hot swap under
concurrent load with zero failed requests, MLflow down, and a schemathesis fuzz of the OpenAPI schema."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import schemathesis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from reviewops.config import Settings, reset_settings
from reviewops.models.baseline import BaselineParams
from reviewops.serving.app import create_app
from reviewops.store import db
from reviewops.store.models import Feedback, Prediction
from tests.conftest import sample_records, write_jsonl

TOKEN = "admin-token-for-tests-" + "x" * 16
TEXTS = ["배우들 연기가 정말 좋았고 마지막 장면에서 눈물이 났어요", "시간 아깝다 진짜 최악의 영화",
         "OST가 너무 좋아서 계속 생각나네요"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A home with two registered versions: v1 (champion) and v2 (challenger, different features)."""
    from reviewops.jobs.train import run_ingest, run_snapshot, train_and_register
    from reviewops.registry.mlflow_registry import Registry

    home = tmp_path_factory.mktemp("api") / "home"
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("REVIEWOPS_") and not k.startswith("REVIEWOPS_TEST"))}
    env |= {"REVIEWOPS_HOME": str(home), "REVIEWOPS_ADMIN_TOKEN": TOKEN, "REVIEWOPS_MODEL_POLL_SECONDS": "0.5",
            "REVIEWOPS_GATE_MARGIN": "0.9"}  # the second version stays challenger
    with pytest.MonkeyPatch.context() as mp:
        for k in list(os.environ):
            if k not in env:
                mp.delenv(k)
        for k, v in env.items():
            mp.setenv(k, v)
        reset_settings()
        s = Settings()
        db.upgrade(s.db_url)  # as `reviewops init` would
        corpus = write_jsonl(tmp_path_factory.mktemp("corpus") / "c.jsonl.gz", sample_records(6000))
        run_ingest(s, corpus)
        snap, parts = run_snapshot(s)
        train_and_register(s, snap, parts)
        train_and_register(s, snap, parts, BaselineParams.from_dict({"char_features": 2**16, "word_features": 2**15}))
        assert Registry(s).by_alias("champion").version == "1"
    reset_settings()
    return env


@pytest.fixture
def env(platform, monkeypatch):
    for k in list(os.environ):
        if k.startswith("REVIEWOPS_") and not k.startswith("REVIEWOPS_TEST"):
            monkeypatch.delenv(k)
    for k, v in platform.items():
        if k.startswith("REVIEWOPS_"):
            monkeypatch.setenv(k, v)
    reset_settings()
    yield Settings()
    reset_settings()


@pytest.fixture
def client(env):
    with TestClient(create_app(env, poll=False)) as c:
        yield c


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_env(request, env, monkeypatch):
    """The API's settings with the review store on SQLite (the home's) or on a fresh PostgreSQL database,
    as in the compose deployment."""
    if request.param == "sqlite":
        yield env
        return
    from tests.conftest import _drop_pg, _pg_database

    url = _pg_database()
    db.upgrade(url)
    monkeypatch.setenv("REVIEWOPS_DATABASE_URL", url)
    reset_settings()
    try:
        yield Settings()
    finally:
        _drop_pg(url)


def _stored(settings, ids) -> dict[str, str]:
    """public id -> text of the logged predictions among `ids`."""
    with db.session_scope(settings.db_url) as s:
        return dict(s.execute(sa.select(Prediction.public_id, Prediction.text)
                              .where(Prediction.public_id.in_(list(ids)))).all())


def _champion(settings, version: str) -> None:
    from reviewops.registry.mlflow_registry import Registry

    Registry(settings).promote(version, "test")


def test_predict_contract(client):
    r = client.post("/v1/predict", json={"texts": TEXTS})
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == {"name": "review-sentiment", "version": "1"}
    labels = [p["label"] for p in body["predictions"]]
    assert labels == ["긍정", "부정", "긍정"]
    for p in body["predictions"]:
        assert p["label_id"] == (1 if p["label"] == "긍정" else 0) and 0 <= p["score"] <= 1
        assert (p["score"] >= 0.5) == (p["label_id"] == 1) and len(p["id"]) == 32
    assert len({p["id"] for p in body["predictions"]}) == 3


def test_verdict_band_and_flags(client, env, monkeypatch):
    """The verdict is the label outside the uncertain band, 애매함 inside it or when the input is flagged."""
    texts = [*TEXTS, "good movie", "👍👍 !!", "뷁뛟 똵쒧 꿿뜛 쀍쀍", "정말 재밌어요 ^^ good"]
    body = client.post("/v1/predict", json={"texts": texts}).json()["predictions"]
    assert [p["flags"] for p in body] == [[], [], [], ["no_hangul"], ["emoji_only"], ["mostly_unseen"], []]
    for p in body:
        assert p["label"] is not None and p["id"] is not None and "explanation" not in p
        sure = not p["flags"] and not 0.35 <= p["score"] <= 0.65
        assert p["verdict"] == (p["label"] if sure else "애매함"), p
    assert [p["verdict"] for p in body[:3]] == ["긍정", "부정", "긍정"]
    # the band is a setting: widened to everything, every verdict is 애매함
    monkeypatch.setenv("REVIEWOPS_SERVE_UNCERTAIN_LOW", "0")
    monkeypatch.setenv("REVIEWOPS_SERVE_UNCERTAIN_HIGH", "1")
    reset_settings()
    with TestClient(create_app(Settings(), poll=False)) as c:
        body = c.post("/v1/predict", json={"texts": TEXTS}).json()["predictions"]
    assert {p["verdict"] for p in body} == {"애매함"} and [p["label"] for p in body] == ["긍정", "부정", "긍정"]


def test_blank_texts_are_answered_not_refused_and_not_logged(client, env):
    r = client.post("/v1/predict", json={"texts": ["", TEXTS[0], "  \n "]})
    assert r.status_code == 200
    blank, scored, blank2 = r.json()["predictions"]
    for p in (blank, blank2):
        assert p == {"id": None, "label": None, "label_id": None, "score": None, "verdict": "애매함",
                     "flags": ["empty"]}
    assert scored["label"] == "긍정" and scored["id"]
    assert client.app.state.prediction_log.flush()
    assert list(_stored(env, [scored["id"]])) == [scored["id"]]
    r = client.post("/v1/predict", json={"texts": [" "], "explain": True})
    assert r.status_code == 200 and r.json()["predictions"][0]["explanation"] == []


def test_micro_batched_models_answer_by_the_same_rule(client, env):
    """A transformer's path (micro-batched) scores only the texts that are not blank and judges them alike."""
    from reviewops.serving.models import LoadedModel, ModelManager

    texts = ["", TEXTS[0], " ", TEXTS[1], "good"]
    direct = client.post("/v1/predict", json={"texts": texts}).json()["predictions"]
    manager = ModelManager(env)
    manager.current = LoadedModel("review-sentiment", "1", "transformer", client.app.state.manager.current.model)
    with TestClient(create_app(env, manager=manager, poll=False)) as c:
        batched = c.post("/v1/predict", json={"texts": texts}).json()["predictions"]
        blank = c.post("/v1/predict", json={"texts": ["", "  "]}).json()["predictions"]
    strip = ("id",)
    assert [{k: v for k, v in p.items() if k not in strip} for p in batched] == \
        [{k: v for k, v in p.items() if k not in strip} for p in direct]
    assert [p["verdict"] for p in batched[:4]] == ["애매함", "긍정", "애매함", "부정"]
    assert [p["id"] is None for p in blank] == [True, True]


def test_explanations_are_spans_of_the_original_text(client, env):
    from reviewops.models.explain import contributions

    texts = ["배우들   연기가 정말 좋았고ㅋㅋㅋㅋ <b>최고</b>", "시간 아깝다 진짜 최악의 영화"]
    r = client.post("/v1/predict", json={"texts": texts, "explain": True})
    assert r.status_code == 200
    model = client.app.state.manager.current.model  # the BaselineModel the API serves
    for text, p in zip(texts, r.json()["predictions"], strict=True):
        spans = p["explanation"]
        assert [s["start"] for s in spans] == sorted(s["start"] for s in spans)
        assert all(text[s["start"]:s["end"]] == s["text"] for s in spans)
        assert [s["text"] for s in spans] == text.split()
        # exact: the weights are the model's own contributions, in calibrated logit units
        slope, intercept = model.calibration[0], float(model.clf.intercept_[0])
        expected = slope * (float(model.margin([text])[0]) - intercept)
        assert sum(s["weight"] for s in spans) == pytest.approx(expected, abs=1e-4)
        assert sum(contributions(model, [text])[0]) * slope == pytest.approx(expected, abs=1e-4)
    worst = min(r.json()["predictions"][1]["explanation"], key=lambda s: s["weight"])
    assert worst["text"] in {"아깝다", "최악의"}
    r = client.post("/v1/predict", json={"texts": ["좋아요"] * 101, "explain": True})
    assert r.status_code == 400 and "at most 100" in r.json()["detail"]
    assert client.post("/v1/predict", json={"texts": ["좋아요"] * 101}).status_code == 200


@pytest.mark.parametrize(("payload", "status", "message"), [
    ({"texts": []}, 422, "at least 1"),
    ({"texts": ["가" * 2001]}, 422, "at most 2000"),
    ({"texts": ["가"] * 1001}, 422, "at most 1000"),
    ({"texts": "영화"}, 422, "valid list"),
    ({"texts": [3]}, 422, "valid string"),
    ({"text": ["영화"]}, 422, "texts: Field required"),
    ([], 422, "valid dictionary"),
])
def test_client_mistakes_are_422_with_a_clear_message(client, payload, status, message):
    r = client.post("/v1/predict", json=payload)
    assert r.status_code == status
    assert message in _detail(r)


def _detail(response) -> str:
    """A 422's detail in the schema's shape (HTTPValidationError: a list of {loc, msg, type}), as one line."""
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    for item in detail:
        assert set(item) == {"loc", "msg", "type"} and isinstance(item["loc"], list), item
    return "; ".join(".".join(str(p) for p in d["loc"] if p != "body") + ": " + d["msg"] for d in detail)


def test_422_bodies_follow_the_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    ref = schema["paths"]["/v1/predict"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert ref["$ref"].endswith("/HTTPValidationError")
    assert schema["components"]["schemas"]["HTTPValidationError"]["properties"]["detail"]["type"] == "array"
    r = client.post("/v1/predict", json={"texts": ["가" * 2001]})
    assert r.status_code == 422 and "가" * 100 not in r.text  # the input is not echoed back


def test_broken_json_and_oversized_bodies(client):
    r = client.post("/v1/predict", content=b'{"texts": ["a"', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in _detail(r)
    big = json.dumps({"texts": ["가" * 1500] * 600}).encode()  # ~2.7 MB
    r = client.post("/v1/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "request body over" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit holds for streamed bodies too
        for _ in range(40):
            yield b" " * 100_000

    r = client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_feedback_is_stored_against_the_prediction(client, env):
    pred = client.post("/v1/predict", json={"texts": [TEXTS[1]]}).json()["predictions"][0]
    r = client.post("/v1/feedback", json={"prediction_id": pred["id"], "label": "긍정", "comment": "반어법이에요"})
    assert r.status_code == 201 and r.json()["label_id"] == 1
    with db.session_scope(env.db_url) as s:
        fb = s.scalars(sa.select(Feedback)).all()[-1]
        p = s.get(Prediction, fb.prediction_id)
        assert (p.public_id, p.label, fb.label, fb.comment) == (pred["id"], 0, 1, "반어법이에요")
        assert p.model_version == "1" and p.review_id is None
    assert client.post("/v1/feedback", json={"prediction_id": "nope", "label": 1}).status_code == 404
    assert client.post("/v1/feedback", json={"prediction_id": pred["id"], "label": "좋음"}).status_code == 422


def test_model_health_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["model"]["version"] == "1"
    model = client.get("/v1/model").json()
    assert model["version"] == "1" and model["backend"] == "baseline" and model["metrics"]["accuracy"] > 0.7
    history = client.get("/v1/models").json()
    assert history["champion"] == "1" and [v["version"] for v in history["versions"]] == ["1", "2"]
    assert history["versions"][1]["decision"] == "challenger"
    client.post("/v1/predict", json={"texts": TEXTS})
    text = client.get("/metrics").text
    assert 'reviewops_api_requests_total{method="POST",route="/v1/predict",status="200"}' in text
    assert 'reviewops_api_model_info{backend="baseline",name="review-sentiment",version="1"} 1.0' in text
    assert "reviewops_api_batch_size_bucket" in text and "reviewops_api_request_seconds_bucket" in text
    client.post("/v1/predict", json={"texts": TEXTS[:1]})
    client.app.state.prediction_log.flush()
    client.app.state.metrics.request_log.flush()  # answered requests and their latency are in the store too
    mon = client.get("/v1/monitoring").json()
    assert mon["latency_ms"]["p50"] is not None and set(mon) >= {"traffic", "prediction_mix", "feedback", "drift"}
    assert mon["latency"][-1]["hour"] == mon["traffic"][-1]["hour"] and len(mon["traffic"]) == 24
    hour = mon["traffic"][-1]
    assert hour["predictions"] >= 4 and hour["requests"] >= 2 and hour["predictions"] > hour["requests"]


def test_admin_actions_need_the_token(client, env):
    assert client.post("/v1/admin/reload").status_code == 401
    assert client.post("/v1/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/v1/admin/reload", headers=auth).json()["changed"] is False
    try:
        r = client.post("/v1/admin/promote", json={"version": "2"}, headers=auth)
        assert r.json() == {"champion": "2"}
        assert client.post("/v1/predict", json={"texts": TEXTS}).json()["model"]["version"] == "2"
        assert client.post("/v1/admin/promote", json={"version": "99"}, headers=auth).status_code == 404
        r = client.post("/v1/admin/rollback", headers=auth)
        assert r.json() == {"champion": "1", "was": "2"}
        assert client.get("/v1/model").json()["version"] == "1"
    finally:
        _champion(env, "1")


def test_every_route_documents_its_success_response(client):
    """Each route's 2xx answer has a schema in the OpenAPI document (a response model), not `{}`."""
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    undocumented = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            bodies = [content.get("schema") or {} for status, answer in operation["responses"].items()
                      if status.startswith("2") for content in answer.get("content", {}).values()]
            resolved = [components[b["$ref"].rsplit("/", 1)[-1]] if "$ref" in b else b for b in bodies]
            if not resolved or not all(b.get("properties") or b.get("type") == "string" for b in resolved):
                undocumented.append(f"{method.upper()} {path}")
    assert not undocumented
    assert len(schema["paths"]) >= 13


def test_library_errors_answer_with_the_status_their_class_carries(client, monkeypatch):
    from reviewops import errors, insights

    expected = {errors.InputError: 400, errors.ConfigError: 503, errors.StoreError: 503,
                errors.ModelArtifactError: 503, errors.RegistryError: 503, errors.NotFoundError: 404,
                errors.ConflictError: 409, errors.SourceError: 502, errors.StorageFullError: 507}
    for error, status in expected.items():
        def fail(*args, error=error, **kwargs):
            raise error("the library says no\nand more on a second line")

        monkeypatch.setattr(insights, "list_movies", fail)
        r = client.get("/v1/movies")
        assert (r.status_code, r.json()) == (status, {"detail": "the library says no"}), error


def test_registry_errors_keep_their_status(client, monkeypatch):
    from reviewops.registry.mlflow_registry import Registry

    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = client.post("/v1/admin/promote", json={"version": "99"}, headers=auth)
    assert r.status_code == 404 and "has no version 99" in r.json()["detail"]
    monkeypatch.setattr(Registry, "history", lambda self: [])  # as if v1 had always been the champion
    r = client.post("/v1/admin/rollback", headers=auth)
    assert r.status_code == 409 and "nothing to roll back to" in r.json()["detail"]
    assert client.get("/v1/model").json()["version"] == "1"


def test_admin_actions_are_refused_without_a_configured_token(env, monkeypatch):
    monkeypatch.delenv("REVIEWOPS_ADMIN_TOKEN")
    reset_settings()
    with TestClient(create_app(Settings(), poll=False)) as c:
        r = c.post("/v1/admin/reload", headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403 and "REVIEWOPS_ADMIN_TOKEN" in r.json()["detail"]


def test_503_while_no_model_is_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("REVIEWOPS_HOME", str(tmp_path / "empty"))
    reset_settings()
    with TestClient(create_app(Settings(), poll=False)) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and "no champion" in r.json()["detail"]
        r = c.post("/v1/predict", json={"texts": ["재밌어요"]})
        assert r.status_code == 503 and "no model loaded" in r.json()["detail"]


def test_a_worker_without_a_model_asks_the_registry_when_a_request_comes(env, monkeypatch):
    """One of several API workers started before the first champion existed: the first request after the
    champion appears is answered by it, not with a 503 until the worker's next poll (an hour here). Requests
    that find no model ask the registry at most once per `CHECK_NOW_INTERVAL_SECONDS`."""
    from reviewops.registry.mlflow_registry import Registry
    from reviewops.serving import models

    monkeypatch.setenv("REVIEWOPS_MODEL_POLL_SECONDS", "3600")
    reset_settings()
    asked: list[str] = []
    by_alias = Registry.by_alias
    no_champion = True

    def counted(self, alias):
        asked.append(alias)
        return None if no_champion else by_alias(self, alias)

    monkeypatch.setattr(Registry, "by_alias", counted)
    monkeypatch.setattr(models, "CHECK_NOW_INTERVAL_SECONDS", 60.0)
    with TestClient(create_app(Settings())) as c:  # polls: its start found no champion
        assert asked == ["champion"]
        r = c.post("/v1/predict", json={"texts": TEXTS})
        assert r.status_code == 503 and "no model loaded" in r.json()["detail"]
        no_champion = False  # another worker's poll would find v1 now
        assert c.post("/v1/predict", json={"texts": TEXTS}).status_code == 503
        assert asked == ["champion"]  # its start asked under a minute ago: neither request asked again
        monkeypatch.setattr(models, "CHECK_NOW_INTERVAL_SECONDS", 0.0)
        r = c.post("/v1/predict", json={"texts": TEXTS})
        assert r.status_code == 200 and r.json()["model"]["version"] == "1"
        checks = len(asked)
        assert [c.post("/v1/predict", json={"texts": TEXTS}).status_code for _ in range(5)] == [200] * 5
        assert len(asked) == checks  # a worker that serves leaves the registry to its poll


def test_mlflow_down_keeps_serving_the_last_good_model(client, env, monkeypatch):
    client.get("/readyz")  # the first app cached v1 on disk
    monkeypatch.setenv("REVIEWOPS_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    reset_settings()
    with TestClient(create_app(Settings(), poll=False)) as c:  # a restart while MLflow is down
        assert c.get("/readyz").status_code == 200
        r = c.post("/v1/predict", json={"texts": TEXTS})
        assert r.status_code == 200 and r.json()["model"]["version"] == "1"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        reloaded = c.post("/v1/admin/reload", headers=auth).json()
        assert reloaded["changed"] is False and "cannot reach MLflow" in reloaded["error"]
        assert c.get("/v1/model").json()["from_cache"] is True


def test_hot_swap_under_concurrent_load_fails_no_request(env):
    """Requests keep coming while the champion moves to v2 and back: every one answers 200, and each
    names the version that scored it."""
    import uvicorn

    app = create_app(env)  # polls the alias every 0.5 s
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    import httpx

    stop = threading.Event()
    results: list[tuple[int, str | None]] = []

    def hammer():
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as h:
            while not stop.is_set():
                r = h.post("/v1/predict", json={"texts": TEXTS})
                results.append((r.status_code, r.json()["model"]["version"] if r.status_code == 200 else r.text))

    try:
        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(hammer)
            time.sleep(1)
            _champion(env, "2")
            deadline = time.monotonic() + 20
            while not any(v == "2" for _, v in results[-20:]) and time.monotonic() < deadline:
                time.sleep(0.2)
            _champion(env, "1")
            deadline = time.monotonic() + 20
            while not results or results[-1][1] != "1":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            time.sleep(0.5)
            stop.set()
    finally:
        stop.set()
        _champion(env, "1")
        server.should_exit = True
        thread.join(10)
    failed = [r for r in results if r[0] != 200]
    versions = [v for _, v in results]
    assert not failed and len(results) > 50
    assert "2" in versions and versions[-1] == "1"
    swaps = sum(1 for a, b in itertools.pairwise(versions) if a != b)
    assert swaps >= 2


# --- what the store cannot hold --------------------------------------------------------------------------


def test_nul_characters_are_removed_and_no_prediction_is_lost(store_env):
    """PostgreSQL's text cannot hold NUL: one in a request used to fail the log's insert and drop every
    prediction batched with it (0 of 2,025 logged). The store removes NUL for every writer."""
    mixed, ids = ["좋아\u0000요", "정상 리뷰", "\u0000최악\u0000"], []
    with TestClient(create_app(store_env, poll=False)) as c:
        for i in range(120):
            r = c.post("/v1/predict", json={"texts": mixed if i % 8 == 0 else TEXTS})
            assert r.status_code == 200
            ids += [p["id"] for p in r.json()["predictions"]]
        first = ids[0]
        r = c.post("/v1/feedback", json={"prediction_id": first, "label": 1, "comment": "반어\u0000법"})
        assert r.status_code == 201
        assert c.post("/v1/feedback", json={"prediction_id": "ab\u0000cd", "label": 1}).status_code == 404
        log = c.app.state.prediction_log
        assert log.flush() and log.dropped == 0 and log.last_error is None
    stored = _stored(store_env, ids)
    assert set(stored) == set(ids) and len(ids) == 360
    assert stored[first] == "좋아요" and stored[ids[2]] == "최악"
    with db.session_scope(store_env.db_url) as s:
        assert s.scalars(sa.select(Feedback.comment).order_by(Feedback.id.desc())).first() == "반어법"


def test_a_logged_prediction_carries_the_time_it_was_answered(store_env):
    """The log's writer inserts rows in batches, up to a flush interval after the answer; a row's time is
    the answer's, which the monitoring page counts by."""
    from reviewops.store.models import utcnow

    with TestClient(create_app(store_env, poll=False)) as c:
        before = utcnow()
        r = c.post("/v1/predict", json={"texts": TEXTS})
        answered = utcnow()
        time.sleep(0.6)  # the writer waits up to flush_every (0.5 s) for more rows, then writes
        assert c.app.state.prediction_log.flush()
    ids = [p["id"] for p in r.json()["predictions"] if p["id"]]
    with db.session_scope(store_env.db_url) as s:
        stamped = s.scalars(sa.select(Prediction.created_at).where(Prediction.public_id.in_(ids))).all()
    assert len(stamped) == len(ids) > 0
    assert all(before <= t <= answered for t in stamped), (before, answered, stamped)


def test_a_row_the_database_refuses_takes_no_other_row_with_it(store_env):
    from reviewops.serving.runtime import PredictionLog
    from reviewops.store.db import sessions

    def row(pid: str) -> dict:
        return {"public_id": pid, "text": "리뷰 \ud800", "label": 1, "score": 0.9, "model_name": "m",
                "model_version": "1"}

    a, b, c = (uuid.uuid4().hex for _ in range(3))
    log = PredictionLog(sessions(store_env), flush_every=0.05)
    try:
        log.add([row(a)])
        assert log.flush() and log.dropped == 0
        log.add([row(b), row(a), row(c)])  # `a` again: the unique public id refuses that row alone
        assert log.flush() and log.dropped == 1
    finally:
        log.close()
    assert _stored(store_env, [a, b, c]) == {x: "리뷰 \ufffd" for x in (a, b, c)}  # a lone surrogate: U+FFFD


def test_the_prediction_log_drops_whole_requests_only_beyond_its_backlog(store_env):
    """A request's rows are queued as one item; past `max_pending` rows a request's rows are dropped and
    counted, and the rows already queued are still written."""
    from reviewops.serving.runtime import PredictionLog
    from reviewops.store.db import sessions

    def rows(n: int) -> list[dict]:
        return [{"public_id": uuid.uuid4().hex, "text": "리뷰", "label": 0, "score": 0.1, "model_name": "m",
                 "model_version": "1"} for _ in range(n)]

    log = PredictionLog(sessions(store_env), flush_every=0.05)
    log.max_pending = 3
    kept, refused = rows(3), rows(2)
    try:
        with log._written:  # hold the writer back so the backlog is what add() sees
            log.add(kept)
            log.add(refused)
        assert log.flush() and log.dropped == 2
    finally:
        log.close()
    assert set(_stored(store_env, [r["public_id"] for r in kept + refused])) == {r["public_id"] for r in kept}


@contextlib.contextmanager
def _read_only(url: str):
    """The review database refusing writes, as a read-only replica or a full disk would."""
    engine = db.get_engine(url)
    if engine.dialect.name == "sqlite":
        def query_only(conn, _record):
            conn.execute("PRAGMA query_only=ON")

        sa.event.listen(engine, "connect", query_only)
        engine.dispose()
        try:
            yield
        finally:
            sa.event.remove(engine, "connect", query_only)
            engine.dispose()
        return
    name = engine.url.database
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    engine.dispose()
    try:
        yield
    finally:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("SET default_transaction_read_only = off")
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
        engine.dispose()


def test_feedback_names_the_storage_error_when_the_database_refuses_writes(store_env):
    with TestClient(create_app(store_env, poll=False)) as c:
        with _read_only(store_env.db_url):
            pred = c.post("/v1/predict", json={"texts": TEXTS[:1]}).json()["predictions"][0]
            r = c.post("/v1/feedback", json={"prediction_id": pred["id"], "label": 1})
            assert r.status_code == 503 and "refuses writes" in r.json()["detail"], r.text
        c.post("/v1/predict", json={"texts": TEXTS[:1]})  # written again: the log recovers
        assert c.app.state.prediction_log.flush() and c.app.state.prediction_log.last_error is None


# --- fuzzing --------------------------------------------------------------------------------------------


def test_fuzzed_requests_never_get_a_server_error_and_every_prediction_is_logged(store_env):
    """schemathesis generates requests from the OpenAPI schema, valid and not: none may get a 5xx, and every
    prediction answered is in the log, on SQLite and on PostgreSQL (where NULs used to drop whole batches)."""
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable

    app = create_app(store_env, poll=False)
    seen, calls, answered = [], [], []
    with TestClient(app):  # runs the lifespan: the model is loaded
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        for result, mode in itertools.product(list(schema.get_all_operations()), schemathesis.GenerationMode):
            operation = result.ok()

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
            def check(case):
                response = case.call()
                calls.append(response.status_code)
                assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])
                if case.path == "/v1/predict" and response.status_code == 200:
                    answered.extend(p["id"] for p in response.json()["predictions"] if p["id"] is not None)

            try:
                check()
            except Unsatisfiable:  # an operation without parameters has no invalid form
                assert mode is schemathesis.GenerationMode.NEGATIVE
                continue
            seen.append(f"{operation.method.upper()} {operation.path}")
        assert app.state.prediction_log.flush(timeout=30)
    assert {"POST /v1/predict", "POST /v1/feedback", "GET /v1/movies/{movie_id}/summary"} <= set(seen)
    assert len(calls) >= 100 and 422 in calls and 200 in calls
    assert len(answered) >= 20 and set(_stored(store_env, answered)) == set(answered)
    assert app.state.prediction_log.dropped == 0


# --- clients that try to hold the server ------------------------------------------------------------------


@pytest.fixture
def served(env, tmp_path):
    """`reviewops serve` in its own process (the real server and protocol), with short slow-client timeouts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child_env = {**os.environ, "REVIEWOPS_API_HEADER_TIMEOUT_SECONDS": "1", "REVIEWOPS_API_BODY_TIMEOUT_SECONDS": "1",
                 "REVIEWOPS_API_CONNECTION_MAX_AGE_SECONDS": "1"}
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "reviewops.cli", "serve", "--port", str(port)], env=child_env,
                            stdout=log, stderr=subprocess.STDOUT)
    import httpx

    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):  # noqa: SIM115
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _send_huge_header(port: int, megabytes: int) -> tuple[int, bytes]:
    """Sends a header of `megabytes` MB (or until the server closes); (bytes sent, the server's answer)."""
    sent, chunk = 0, b"a" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: api\r\nX-Big: ")
        try:
            while sent < megabytes * 2**20:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:  # the server closed the connection: what it said is still readable, or reset
            pass
        try:
            return sent, sock.recv(4096)
        except OSError:
            return sent, b""


def test_oversized_headers_get_431_and_cost_no_memory(served):
    """Six connections sending 128 MB headers took the API from 1.05 to 1.96 GB and starved its health
    checks. Now each is refused after the header limit, memory stays flat and health checks answer."""
    import httpx

    proc, port = served
    before = _rss_mb(proc.pid)
    _, answer = _send_huge_header(port, 1)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    with ThreadPoolExecutor(6) as pool:
        attacks = [pool.submit(_send_huge_header, port, 128) for _ in range(6)]
        health = [httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code for _ in range(20)]
        results = [a.result() for a in attacks]
    assert health == [200] * 20
    assert all(n < 32 * 2**20 for n, _ in results), [n for n, _ in results]  # cut off, not read to the end
    assert _rss_mb(proc.pid) - before < 40
    ok = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Fine": "a" * 4000}, timeout=2)
    assert ok.status_code == 200  # ordinary headers are still welcome


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
        return True, data
    except TimeoutError:
        return False, data
    except OSError:
        return True, data


def test_slow_clients_are_timed_out(served):
    import httpx

    _, port = served
    idle = socket.create_connection(("127.0.0.1", port))  # connects and says nothing
    slow_head = socket.create_connection(("127.0.0.1", port))
    slow_head.sendall(b"GET /healthz HTTP/1.1\r\nHost: api\r\n")  # and never ends its headers
    slow_body = socket.create_connection(("127.0.0.1", port))
    slow_body.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"texts\": [")  # 11 of 100 bytes
    with idle, slow_head, slow_body:
        assert _closed_within(idle, 5)[0]
        assert _closed_within(slow_head, 5)[0]
        closed, answer = _closed_within(slow_body, 5)
        assert closed and answer.startswith(b"HTTP/1.1 408"), answer[:200]
    r = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"texts": TEXTS}, timeout=5)
    assert r.status_code == 200


def _one_answer(sock: socket.socket) -> bytes:
    """Reads one HTTP answer with a Content-Length body from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                  if line.startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(4096)
    return head


def test_an_old_keep_alive_connection_is_closed_after_its_answer(served):
    """uvicorn's workers share connections, not requests: a few keep-alive clients could all sit on one
    worker while another idled. A connection older than REVIEWOPS_API_CONNECTION_MAX_AGE_SECONDS (1 s) gets
    its answer with `connection: close`, and the client's next connection goes to whichever worker is free."""
    _, port = served
    request = b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        young = _one_answer(sock)
        assert young.startswith(b"HTTP/1.1 200") and b"connection: close" not in young.lower()
        sock.sendall(request)  # still young: the same connection answers again
        assert _one_answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(1.2)
        sock.sendall(request)
        closed, old = _closed_within(sock, 5)
    assert closed and old.startswith(b"HTTP/1.1 200") and b"connection: close" in old.lower(), old[:300]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # a new connection is welcome
        sock.sendall(request)
        assert _one_answer(sock).startswith(b"HTTP/1.1 200")


def test_sigterm_shuts_down_gracefully_and_writes_the_log(served, env):
    """konlpy's JVM used to take SIGTERM (docker stop, a supervisor) and exit at once with 143: the API's
    shutdown never ran and the predictions still queued for the log were lost."""
    import httpx

    proc, port = served
    ids = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as h:
        for _ in range(5):
            ids += [p["id"] for p in h.post("/v1/predict", json={"texts": TEXTS}).json()["predictions"]]
    proc.send_signal(15)
    assert proc.wait(20) == -15  # uvicorn shuts down, then re-raises the signal it caught: not the JVM's 143
    assert set(_stored(env, ids)) == set(ids)


# --- movies (issue 16, items 7-9) ---------------------------------------------------------------------------


def test_movies_crawled_first_searchable_and_disagreements_correctable(client, env):
    from reviewops import insights
    from reviewops.store.models import CollectionBatch, Movie, Review

    insights.warm_up()  # konlpy's JVM starts on the main thread (see tests/test_webapp.py)
    rows = [("긴장감이 대단하고 배우들 연기가 최고", 10, 1, 0.97), ("최최악이다 돈아깝고 시간 아깝다", 1, 0, 0.95),
            ("그럭저럭 볼만했다", 7, None, 0.6), ("지루하고 뻔한 전개", 2, 0, 0.1)]
    with db.session_scope(env.db_url) as s:
        batch = s.scalar(sa.select(CollectionBatch.id).limit(1))
        movie = Movie(source="cgv", source_movie_id="20036", title="서울의 봄")
        s.add(movie)
        s.flush()
        for i, (text, rating, label, score) in enumerate(rows):
            review = Review(source="cgv", source_review_id=f"api-{i}", movie_id=movie.id, text=text, clean_text=text,
                            text_key=f"api-{i}", rating=rating, label=label, cleaning_version="test", batch_id=batch)
            s.add(review)
            s.flush()
            s.add(Prediction(review_id=review.id, text=text, label=int(score >= 0.5), score=score,
                             model_name=env.model.name, model_version="1"))  # as the scoring job stores them
        movie_id = movie.id

    feedback_before = client.get("/v1/monitoring").json()["feedback"]["n"]
    listed = client.get("/v1/movies").json()
    first = listed["movies"][0]
    assert (first["id"], first["name"], first["crawled"], first["reviews"]) == (movie_id, "서울의 봄", True, 4)
    assert listed["total"] == len(listed["movies"]) > 1
    assert {"source": "naver", "name": "NAVER", "crawled": False, "movies": listed["total"] - 1} in listed["sources"]
    history = client.get("/v1/movies", params={"crawled": "false", "limit": 3}).json()
    assert len(history["movies"]) == 3 and history["total"] == listed["total"] - 1
    assert all(m["name"] == f"NAVER 영화 #{m['source_movie_id']}" for m in history["movies"])
    assert [m["id"] for m in client.get("/v1/movies", params={"q": "서울의봄"}).json()["movies"]] == [movie_id]
    assert client.get("/v1/movies", params={"source": "megabox"}).json() | {"sources": []} == {
        "movies": [], "total": 0, "sources": []}

    summary = client.get(f"/v1/movies/{movie_id}/summary").json()
    # not the 1-star review, nor the 0.6 one (애매함: in the settings' uncertain band)
    assert [r["text"] for r in summary["representative"]["positive"]] == [rows[0][0]]
    assert summary["by_week"] and summary["aspects"] == []
    wrong = summary["disagreements"]
    assert wrong["count"] == 1 and wrong["reviews"][0]["text"] == rows[1][0]
    assert (wrong["reviews"][0]["label"], wrong["reviews"][0]["predicted"]) == (0, 1)
    correction = {"prediction_id": wrong["reviews"][0]["feedback_id"], "label": "부정"}
    # it replaces the review's training label, and its id is a guessable row id: an admin action
    assert client.post("/v1/feedback", json=correction).status_code == 401
    assert client.post("/v1/feedback", json=correction, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(f"/v1/movies/{movie_id}/summary").json()["disagreements"]["reviews"][0]["feedback"] is None
    r = client.post("/v1/feedback", json=correction, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201
    assert client.get(f"/v1/movies/{movie_id}/summary").json()["disagreements"]["reviews"][0]["feedback"] == 0
    # a correction of a scored review is no verdict on the API's answers: users' agreement leaves it out
    assert client.get("/v1/monitoring").json()["feedback"]["n"] == feedback_before
