"""End to end in headless Chromium through nginx: open the app, type a review, see its label, press
feedback, and find the feedback stored against the prediction."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from reviewops.config import Settings, reset_settings
from reviewops.store import db
from reviewops.store.models import Feedback, Prediction

BIN = Path(sys.executable).parent
REVIEW = "배우들 연기가 정말 좋았고 마지막 장면에서 눈물이 났어요 최고의 영화"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 90, auth=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2, auth=auth).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer 200 within {timeout:.0f}s")


@pytest.fixture
def stack(home, small_corpus, monkeypatch):
    """A champion, then the API, the app and nginx as separate processes, like `make up` runs them."""
    from reviewops import proxy
    from reviewops.jobs.train import run_ingest, run_snapshot, train_and_register
    from reviewops.store.db import upgrade

    s = Settings()
    upgrade(s.db_url)  # as `reviewops init` does before `make up`
    run_ingest(s, small_corpus)
    snap, parts = run_snapshot(s)
    train_and_register(s, snap, parts)
    ports = {"api": _port(), "streamlit": _port(), "proxy": _port(), "mlflow": _port(), "airflow": _port()}
    env = os.environ | {"REVIEWOPS_API_URL": f"http://127.0.0.1:{ports['api']}"}
    procs = [
        subprocess.Popen([str(BIN / "reviewops"), "serve", "--port", str(ports["api"])], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True),
        subprocess.Popen([str(BIN / "reviewops"), "app", "--port", str(ports["streamlit"])], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True),
    ]
    front = proxy.prepare(home / "nginx", f"127.0.0.1:{ports['proxy']}",
                          {k: ports[k] for k in ("streamlit", "api", "mlflow", "airflow")})
    procs.append(subprocess.Popen(front.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True))
    try:
        _wait_http(f"{front.url}/api/readyz")
        _wait_http(f"http://127.0.0.1:{ports['streamlit']}/_stcore/health")
        yield {"url": front.url, "settings": s}
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
        reset_settings()


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def _button(driver, text: str):
    from selenium.webdriver.common.by import By

    def find(d):
        for b in d.find_elements(By.TAG_NAME, "button"):
            if text in b.text and b.is_displayed() and b.is_enabled():
                return b
        return False

    return _wait(driver, find)


def test_a_user_analyses_a_review_and_sends_feedback_through_nginx(stack, browser):
    from selenium.webdriver.common.by import By

    browser.get(stack["url"] + "/")
    area = _wait(browser, lambda d: next((t for t in d.find_elements(By.TAG_NAME, "textarea") if t.is_displayed()),
                                         False))
    area.click()
    area.send_keys(REVIEW)
    _button(browser, "분석하기").click()
    # the label appears as the page's 감성 metric
    _wait(browser, lambda d: "긍정" in " ".join(m.text for m in d.find_elements(
        By.CSS_SELECTOR, "[data-testid='stMetricValue']")))
    assert "긍정 확률" in browser.find_element(By.TAG_NAME, "body").text

    _button(browser, "👍 맞아요").click()
    _wait(browser, lambda d: "피드백을 보냈습니다" in d.find_element(By.TAG_NAME, "body").text)

    with db.session_scope(stack["settings"].db_url) as s:
        rows = s.execute(sa.select(Feedback.label, Prediction.text, Prediction.label, Prediction.public_id)
                         .join(Prediction, Feedback.prediction_id == Prediction.id)).all()
    assert len(rows) == 1
    fb_label, text, predicted, public_id = rows[0]
    assert text == REVIEW and predicted == 1 and fb_label == 1 and len(public_id) == 32
