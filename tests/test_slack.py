"""Slack reports against a local HTTP server standing in for Slack's Web API and webhooks."""

from __future__ import annotations

import json
import logging

import pytest

from reviewops.config import Settings, reset_settings
from reviewops.devtools.slack_standin import SlackStandIn
from reviewops.notify.slack import Notifier, collection_summary, failure, training_report

TOKEN = "xoxb-test-" + "0" * 24
SUMMARY = {
    "run_id": "abc123", "version": "7", "snapshot_id": "5cb0f73e4cc0",
    "metrics": {"accuracy": 0.8866, "f1": 0.8864, "roc_auc": 0.956, "n": 20178.0, "behaviour.accuracy": 0.6,
                "behaviour.n": 60.0, "behaviour.sarcasm.accuracy": 0.2, "behaviour.negation.accuracy": 0.75},
    "decision": {"promote": True, "reason": "accuracy 0.8866 beats the champion's 0.8801 by +0.0065 (margin 0.0020)",
                 "metric": "accuracy", "candidate": 0.8866, "champion": 0.8801},
}


class FakeSlack(SlackStandIn):
    """The library's stand-in for Slack's Web API and webhooks, on a free port."""


@pytest.fixture
def fake():
    f = FakeSlack()
    yield f
    f.close()


def _settings(monkeypatch, **env) -> Settings:
    for k, v in env.items():
        monkeypatch.setenv(f"REVIEWOPS_{k}", v)
    reset_settings()
    return Settings()


def test_training_report_through_the_web_api(home, fake, monkeypatch):
    s = _settings(monkeypatch, SLACK_BOT_TOKEN=TOKEN, SLACK_CHANNEL="#ml", SLACK_API_URL=f"{fake.url}/api/",
                  MLFLOW_UI_URL="http://mlflow.local")
    text, blocks = training_report(SUMMARY, s.mlflow.ui_url)
    assert Notifier(s).send(text, blocks) is True
    (req,) = fake.requests
    assert req["path"] == "/api/chat.postMessage" and req["auth"] == f"Bearer {TOKEN}"
    body = req["body"]
    assert body["channel"] == "#ml" and "v7" in body["text"] and "promoted" in body["text"]
    sent = json.dumps(body["blocks"] if isinstance(body["blocks"], list) else json.loads(body["blocks"]),
                      ensure_ascii=False)
    for expected in ("0.8866", "+0.0065", "5cb0f73e4cc0", "beats the champion", "runs/abc123", "20,178",
                     "Behavioural set:* 60% of 60 cases (sarcasm 20%, negation 75%)"):
        assert expected in sent


def test_collection_summary_and_failure_through_a_webhook(home, fake, monkeypatch):
    s = _settings(monkeypatch, SLACK_WEBHOOK_URL=f"{fake.url}/services/T000/B000/XXXX")
    results = [{"source": "cgv", "status": "partial", "new": 12, "fetched": 40, "movies_failed": 1,
                "errors": ["movie 88381: missing field 'CommentText'"]},
               {"source": "megabox", "status": "succeeded", "new": 20, "fetched": 20, "movies_failed": 0, "errors": []}]
    assert Notifier(s).send(*collection_summary(results))
    assert Notifier(s).send(*failure("reviews_collect", "crawl_movie", "StoreError: cannot reach the database",
                                     "http://airflow.local/log"))
    first, second = (r["body"] for r in fake.requests)
    assert first["text"] == "Review collection: 32 new reviews"
    assert "missing field 'CommentText'" in json.dumps(first["blocks"], ensure_ascii=False)
    assert "reviews_collect.crawl_movie" in second["text"] and "airflow.local/log" in json.dumps(second["blocks"])


def test_without_slack_the_message_is_logged(home, monkeypatch, caplog):
    s = _settings(monkeypatch)
    with caplog.at_level(logging.INFO, logger="reviewops.notify.slack"):
        assert Notifier(s).send(*training_report(SUMMARY)) is False
    assert "slack not configured" in caplog.text and "v7" in caplog.text


@pytest.mark.parametrize(("status", "ok"), [(200, False), (500, False)])
def test_a_refusing_or_broken_slack_never_fails_the_job_or_leaks_the_token(home, monkeypatch, caplog, status, ok):
    f = FakeSlack(status=status, ok=ok)
    try:
        s = _settings(monkeypatch, SLACK_BOT_TOKEN=TOKEN, SLACK_API_URL=f"{f.url}/api/")
        with caplog.at_level(logging.DEBUG):
            assert Notifier(s).send(*training_report(SUMMARY)) is False
    finally:
        f.close()
    assert TOKEN not in caplog.text


def test_dead_slack(home, monkeypatch, caplog):
    s = _settings(monkeypatch, SLACK_WEBHOOK_URL="http://127.0.0.1:9/services/T/B/secretpart")
    with caplog.at_level(logging.DEBUG):
        assert Notifier(s).send(*failure("d", "t", "boom")) is False
    assert "secretpart" not in caplog.text


def test_pipeline_run_reports_to_slack(home, fake, monkeypatch, small_corpus):
    from typer.testing import CliRunner

    from reviewops.cli import app

    _settings(monkeypatch, SLACK_WEBHOOK_URL=f"{fake.url}/services/T/B/X",
              MODEL_PARAMS=json.dumps({"word_features": 2**16, "nospace_features": 2**18, "n_jobs": 1}))
    assert CliRunner().invoke(app, ["db", "upgrade"]).exit_code == 0
    r = CliRunner().invoke(app, ["pipeline", "run", "--corpus", str(small_corpus)])
    assert r.exit_code == 0, r.output
    (req,) = fake.requests
    assert req["body"]["text"].startswith("review-sentiment v1: accuracy") and "promoted" in req["body"]["text"]
