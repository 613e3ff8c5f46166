"""Browser: a real headless Chromium (Debian's chromium + chromium-driver) against a local page."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from reviewops.errors import ReviewOpsError
from reviewops.sources.browser import DEFAULT_USER_AGENT, Browser, BrowserError, chromium_paths

# The Korean text exists only as JS escapes, so finding it in the HTML proves the script ran.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>reviews</title></head>
<body><ul id="reviews"></ul>
<script>
setTimeout(function () {
  var ul = document.getElementById("reviews");
  for (var i = 0; i < 3; i++) {
    var li = document.createElement("li");
    li.className = "box-comment";
    li.textContent = "\\uB9AC\\uBDF0 \\uD14D\\uC2A4\\uD2B8 " + i;
    ul.appendChild(li);
  }
  var done = document.createElement("div");
  done.id = "render-done";
  document.body.appendChild(done);
}, 300);
</script>
</body></html>
"""
KOREAN = "리뷰 텍스트"


@pytest.fixture(scope="module")
def site():
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("User-Agent", "")))
            if self.path == "/slow":
                time.sleep(3)
            if self.path != "/reviews":
                self.send_error(404)
                return
            body = PAGE.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/reviews", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


def test_render_runs_javascript_and_sends_our_user_agent(site, browser):
    url, seen = site
    assert KOREAN not in PAGE
    html = browser.render(url, "#render-done")
    assert html.count(KOREAN) == 3
    assert 'class="box-comment"' in html and 'id="render-done"' in html
    agents = [agent for path, agent in seen if path == "/reviews"]
    assert agents and all(agent == DEFAULT_USER_AGENT for agent in agents)


def test_missing_selector_times_out_with_a_clear_error(site, browser):
    url, _ = site
    started = time.monotonic()
    with pytest.raises(BrowserError, match=r"'li\.never-there' did not appear within 1s") as info:
        browser.render(url, "li.never-there", timeout=1)
    assert time.monotonic() - started < 8
    assert url in str(info.value) and "\n" not in str(info.value)


def test_network_errors_and_slow_pages_are_browser_errors(site):
    url, _ = site
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    with Browser(page_timeout=15) as b:  # generous: a loaded machine must not turn these into time-outs
        with pytest.raises(BrowserError, match="ERR_CONNECTION_REFUSED"):
            b.render(closed, "body", timeout=5)
        with pytest.raises(BrowserError, match="ERR_UNSAFE_PORT"):  # Chromium's own error page
            b.render("http://127.0.0.1:9/", "body", timeout=5)
    with Browser(page_timeout=1) as b:
        slow = url.replace("/reviews", "/slow")
        with pytest.raises(BrowserError, match=r"/slow: page did not load within 1s"):
            b.render(slow, "body", timeout=1)
        assert KOREAN in b.render(url, "#render-done")  # still usable afterwards


def test_context_manager_removes_profile_and_closes():
    with Browser(user_agent="probe") as b:
        profile = b._profile
        assert profile and os.path.isdir(profile)
    assert not os.path.exists(profile)
    with pytest.raises(BrowserError, match="closed"):
        b.render("http://127.0.0.1:9/", "body")


def test_chromium_paths_default_and_missing_driver(tmp_path, monkeypatch):
    monkeypatch.delenv("REVIEWOPS_CHROMIUM_BINARY", raising=False)
    monkeypatch.delenv("REVIEWOPS_CHROMEDRIVER_PATH", raising=False)
    assert chromium_paths() == ("/usr/bin/chromium", "/usr/bin/chromedriver")

    missing = tmp_path / "no-chromedriver"
    monkeypatch.setenv("REVIEWOPS_CHROMEDRIVER_PATH", str(missing))
    with pytest.raises(BrowserError, match="apt-get install chromium chromium-driver") as info:
        chromium_paths()
    assert str(missing) in str(info.value)
    assert isinstance(info.value, ReviewOpsError)
    with pytest.raises(BrowserError, match="chromedriver not found"):
        Browser().render("http://127.0.0.1:9/", "body")


def test_driver_that_fails_to_start_names_the_paths(tmp_path, monkeypatch):
    fake = tmp_path / "chromedriver"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.delenv("REVIEWOPS_CHROMIUM_BINARY", raising=False)
    monkeypatch.setenv("REVIEWOPS_CHROMEDRIVER_PATH", str(fake))
    before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(BrowserError, match="could not start Chromium") as info, Browser():
        pass
    assert str(fake) in str(info.value) and "/usr/bin/chromium" in str(info.value)
    leftover = set(os.listdir(tempfile.gettempdir())) - before
    assert not [name for name in leftover if name.startswith("reviewops-chromium-")]


# --- what a user opens through nginx -------------------------------------------------------------------


@pytest.fixture
def api_behind_nginx(settings, tmp_path):
    """The real prediction API (no model yet: the docs need none) behind the real nginx configuration;
    the other upstreams are the proxy tests' echo servers."""
    import uvicorn

    from reviewops.serving.app import create_app
    from reviewops.store import db
    from tests.test_nginx import Nginx, Upstream

    db.upgrade(settings.db_url)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings, poll=False), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    others = {name: Upstream(name) for name in ("streamlit", "mlflow", "airflow")}
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    api = f"127.0.0.1:{sock.getsockname()[1]}"
    nginx = Nginx(tmp_path / "nginx", {"api": api} | {name: f"127.0.0.1:{u.port}" for name, u in others.items()})
    try:
        yield f"http://{api}", nginx
    finally:
        nginx.stop()
        for upstream in others.values():
            upstream.stop()
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_api_docs_render_their_operations_through_nginx_and_at_the_api(api_behind_nginx, browser):
    """Swagger UI's files come from the API itself (no CDN, which the CSP blocks and offline networks
    cannot reach) and the page fetches its schema relative to itself: /api/openapi.json behind nginx."""
    api, nginx = api_behind_nginx
    for url in (f"{nginx.url}/api/docs", f"{api}/docs"):
        html = browser.render(url, ".opblock-summary-path", timeout=30)
        assert "/v1/predict" in html and "/v1/feedback" in html, url
        assert "cdn.jsdelivr.net" not in html
    # behind the proxy the schema's server is the prefix, so "Try it out" reaches the API, not the app
    schema = httpx.get(f"{nginx.url}/api/openapi.json").json()
    assert schema["servers"] == [{"url": "/api"}] and "/v1/predict" in schema["paths"]
    assert "servers" not in httpx.get(f"{api}/openapi.json").json()
    r = httpx.get(f"{nginx.url}/api/docs/assets/swagger-ui-bundle.js", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"


def test_mlflow_opens_on_the_model_and_airflow_shows_kst_in_chromium(tmp_path, browser):
    """The lines nginx adds to MLflow's and Airflow's pages run in a real browser, under the proxy's CSP."""
    from tests.test_nginx import Nginx, Upstream

    upstreams = {name: Upstream(name) for name in ("streamlit", "api", "mlflow", "airflow")}
    nginx = Nginx(tmp_path / "nginx", {name: f"127.0.0.1:{u.port}" for name, u in upstreams.items()})
    try:
        browser.render(f"http://{nginx.user}:{nginx.password}@127.0.0.1:{nginx.port}/mlflow/?html", "title")
        driver = browser._start()
        deadline = time.monotonic() + 10
        while not driver.current_url.endswith("#/models/review-sentiment"):
            assert time.monotonic() < deadline, driver.current_url
            time.sleep(0.1)
        browser.render(f"{nginx.url}/airflow/?html", "title")
        assert driver.execute_script("return localStorage.getItem('timezone')") == '"Asia/Seoul"'
        driver.execute_script("localStorage.setItem('timezone', JSON.stringify('Europe/Berlin'))")
        browser.render(f"{nginx.url}/airflow/?html", "title")  # a choice the user made stays
        assert driver.execute_script("return localStorage.getItem('timezone')") == '"Europe/Berlin"'
    finally:
        nginx.stop()
        for upstream in upstreams.values():
            upstream.stop()
