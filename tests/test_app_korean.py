"""The app speaks Korean: every page's rendered output (AppTest against the real API) has no English UI
words beyond an allow-list of names, and a deep link opened first on a freshly started app gets the
Korean navigation and the wide layout (Chromium against `reviewops app`)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.test_webapp import NEGATIVE_TEXT, POSITIVE_TEXT, TIMEOUT, page, platform  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "streamlit" / "app.py"
PAGES = {"텍스트 분석": "", "영화 리뷰 분석": "movies", "모델": "model", "모니터링": "monitoring"}

# Latin words a Korean user reads as names, not as English: products, formats, units, metric names.
ALLOWED = {
    "API", "MLflow", "KST", "UTC", "CSV", "TSV", "ID", "F1", "ROC", "AUC", "CPU", "ONNX", "int8", "TF", "IDF",
    "PyTorch", "ms", "OST", "CGV", "NAVER", "NSMC", "UTF", "CP949", "Excel", "HTTP", "p50", "p95", "p99",
    "csv", "tsv", "txt", "id", "document", "review", "sentiment", "REVIEWOPS_ADMIN_TOKEN", "JSON",
    "model_monitor",  # the Airflow job's name, as the Airflow UI shows it
    "p", "vs",  # p값 is the Korean term; "vs" is written in Korean text as it is (read 대)
}
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NOT_WORDS = re.compile(r"<[^>]+>|https?://\S+|\b[0-9a-f]{8,}\b|[\w-]+\.(?:csv|tsv|txt)\b|#[0-9a-fA-F]{3,8}\b|\bv\d+\b")
# table columns that hold what users wrote (reviews, their ids), not the app's words
DATA_COLUMNS = {"id", "document", "text", "ID", "리뷰"}


def english_words(text: str) -> set[str]:
    """Latin words of `text` outside the allow-list (HTML tags, URLs, hex ids and file names aside)."""
    return {w for w in _WORD.findall(_NOT_WORDS.sub(" ", text)) if w not in ALLOWED}


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k in ("title", "text", "format") or isinstance(v, dict | list)
                for s in (_strings(v) if k != "format" else [])]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def shown_text(at: AppTest) -> list[str]:
    """What a user reads on the page: texts, labels, options, table headers and cells, chart titles."""
    out: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "text", "info", "warning", "success",
                 "error"):
        out += [str(e.value) for e in at.get(kind)]
    out += [f"{m.label} {m.value}" for m in at.metric]
    for kind in ("button", "download_button", "text_area", "text_input", "number_input", "selectbox",
                 "radio", "segmented_control", "file_uploader", "tab", "toggle", "checkbox", "multiselect"):
        for e in at.get(kind):
            proto = e.proto
            out += [str(getattr(proto, f, "")) for f in ("label", "placeholder", "help")]
            out += [str(getattr(o, "content", o)) for o in getattr(proto, "options", [])]
    for frame in at.dataframe:
        value, config = frame.value, json.loads(frame.proto.columns or "{}")
        shown = list(frame.proto.column_order) or [c for c in value.columns if not config.get(c, {}).get("hidden")]
        out += [str(config.get(c, {}).get("label") or c) for c in shown]
        out += [str(x) for c in shown if c not in DATA_COLUMNS and value[c].dtype == object for x in value[c].dropna()]
    for chart in at.get("vega_lite_chart"):
        out += _strings(json.loads(chart.proto.spec))
    return out


def assert_korean(at: AppTest, where: str) -> None:
    assert not at.exception, at.exception
    found = {w: t for t in shown_text(at) for w in english_words(t)}
    assert not found, f"{where}: English in the UI: {found}"


@pytest.fixture
def app(platform):  # noqa: F811
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    return at


def test_every_page_speaks_korean(app, platform):  # noqa: F811
    app.text_area(key="review_text").input(POSITIVE_TEXT)
    app.button(key="analyze").click().run()
    data = pd.DataFrame([("1", POSITIVE_TEXT), ("2", NEGATIVE_TEXT), ("3", " "), ("4", "😍👍")],
                        columns=["id", "document"]).to_csv(index=False).encode("utf-8")
    app.file_uploader(key="upload_file").set_value(("reviews.csv", data, "text/csv")).run()
    assert_korean(app, "텍스트 분석")
    page(app, "movie_reviews")
    movies = [e for e in app.selectbox if e.key == "movie"]
    if movies and movies[0].options:
        movies[0].set_value(movies[0].options[0] if not str(movies[0].options[0]).isdigit()
                            else int(movies[0].options[0])).run()
    assert_korean(app, "영화 리뷰 분석")
    page(app, "model")
    assert_korean(app, "모델")
    _store_a_drift_report(platform)
    page(app, "monitoring")
    assert_korean(app, "모니터링")


def _store_a_drift_report(settings) -> None:
    """A monitoring report with drift, so that the page shows its checks and their explanations."""
    from reviewops.monitor import Thresholds, drift_report
    from reviewops.store.objects import open_store

    reference = pd.DataFrame({"text": ["좋아요 최고 재밌다"] * 50 + ["별로 최악 지루함"] * 50,
                              "score": [0.9] * 50 + [0.1] * 50})
    current = pd.DataFrame({"text": ["아주 긴 리뷰입니다 정말 길어요 " * 5] * 60, "score": [0.55] * 60,
                            "label": [1] * 30 + [0] * 30})
    report = drift_report(reference, current, Thresholds(min_reviews=10)) | {
        "model": {"name": "review-sentiment", "version": "1"},
        "window": {"start": "2026-11-24T00:00:00", "end": "2026-11-25T00:00:00"}}
    open_store(settings.artifacts).put("reports/monitor/2026-11-25.json", json.dumps(report).encode(),
                                       overwrite=True)


def test_the_english_check_catches_english():
    assert english_words("first model: accuracy 0.8 clears the floor") == {"first", "model", "accuracy", "clears",
                                                                          "the", "floor"}
    assert not english_words('정확도 · API · p99 12 ms <mark style="x">좋다</mark> e5777fc0eaed reviews.csv')


# --- deep links on a fresh app --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("path", ["model", "monitoring"])
def test_a_deep_link_opened_first_gets_the_korean_navigation_and_wide_layout(path, tmp_path):
    from reviewops.sources.browser import Browser

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWOPS_")} | {
        "REVIEWOPS_HOME": str(tmp_path), "REVIEWOPS_API_URL": f"http://127.0.0.1:{_free_port()}"}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("reviewops")), "app", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        with Browser() as browser:
            browser.render(f"http://127.0.0.1:{port}/{path}", '[data-testid="stSidebarNavLink"]', timeout=30)
            driver = browser._driver
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:  # the navigation is replaced once the app's own script ran
                links = driver.execute_script(
                    "return [...document.querySelectorAll('[data-testid=stSidebarNavLink]')]"
                    ".map(e => e.innerText.split('\\n').pop().trim())")
                if links == list(PAGES):
                    break
                time.sleep(0.3)
            assert links == list(PAGES)
            current = driver.execute_script(
                "return document.querySelector('[data-testid=stSidebarNavLink][aria-current=page]').innerText")
            assert current.split("\n")[-1].strip() == next(k for k, v in PAGES.items() if v == path)
            width = driver.execute_script(
                "return getComputedStyle(document.querySelector('[data-testid=stMainBlockContainer]')).maxWidth")
            assert width == "none"  # layout="wide" of the app's set_page_config, not the narrow default
    finally:
        proc.terminate()
        proc.wait(timeout=20)
