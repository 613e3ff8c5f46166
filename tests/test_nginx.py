"""The reverse proxy (`reviewops.proxy`, `nginx/nginx.conf.template`): real nginx processes on free ports
in front of real upstreams (uvicorn servers in threads that echo which upstream they are, the path and
the headers they received, answer a page when asked `?html`, and accept Streamlit's websocket)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.sync.client import connect as ws_connect

from reviewops import proxy
from reviewops.errors import ConfigError

SECURITY_HEADERS = ("x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy",
                    "permissions-policy")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- upstreams -----------------------------------------------------------------------------------------


def echo_app(name: str) -> Starlette:
    """Answers every path with what it received; `.../big` adds a large JSON list (for gzip);
    `/_stcore/stream` is a websocket that reports its handshake, then echoes one message."""

    async def echo(request: Request) -> JSONResponse | HTMLResponse:
        if "html" in request.query_params:  # a page, and which Accept-Encoding reached the upstream
            seen = request.headers.get("accept-encoding", "")
            return HTMLResponse(f"<html><head><title>{name}</title></head><body>{seen}</body></html>")
        body = await request.body()
        out = {"upstream": name, "method": request.method, "path": request.scope["raw_path"].decode(),
               "query": request.scope["query_string"].decode(), "headers": dict(request.headers),
               "body_bytes": len(body)}
        if request.scope["path"].endswith("/big"):
            out["items"] = [{"id": i, "label": "긍정", "score": 0.5} for i in range(2000)]
        return JSONResponse(out, headers={"X-Frame-Options": "DENY"})  # the proxy's own copy wins

    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json({"upstream": name, "path": ws.scope["path"], "headers": dict(ws.headers)})
        await ws.send_text("echo:" + await ws.receive_text())
        await ws.close()

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(routes=[WebSocketRoute("/_stcore/stream", stream),
                             Route("/{path:path}", echo, methods=methods)])


class Upstream:
    def __init__(self, name: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(echo_app(name), log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, f"upstream {name} did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def upstreams():
    servers = {name: Upstream(name) for name in proxy.UPSTREAMS}
    yield {name: f"127.0.0.1:{s.port}" for name, s in servers.items()}
    for s in servers.values():
        s.stop()


# --- nginx ---------------------------------------------------------------------------------------------


class Nginx:
    def __init__(self, runtime: Path, upstreams: dict[str, str], **limits):
        self.port = _free_port()
        self.user, self.password, htpasswd, _ = proxy.ensure_credentials(runtime)
        text = proxy.render_config(f"127.0.0.1:{self.port}", upstreams, htpasswd, runtime, **limits)
        self.conf = proxy.write_config(runtime, text)
        proxy.check_config(self.conf, runtime)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(runtime / "nginx.out", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(proxy.nginx_command(self.conf, runtime), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, (runtime / "nginx.out").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/_proxy/health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.05)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def nginx(upstreams, tmp_path_factory):
    server = Nginx(tmp_path_factory.mktemp("nginx"), upstreams)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(nginx):
    with httpx.Client(base_url=nginx.url, timeout=10) as c:
        yield c


# --- configuration -------------------------------------------------------------------------------------


def test_rendered_config_passes_nginx_t(upstreams, tmp_path):
    _, _, htpasswd, _ = proxy.ensure_credentials(tmp_path)
    text = proxy.render_config("127.0.0.1:8088", upstreams, htpasswd, tmp_path, max_body="512k", rate="5r/m",
                               burst=1)
    assert "{{" not in text and "client_max_body_size 512k;" in text and "rate=5r/m;" in text
    assert f'pid "{tmp_path.resolve()}/nginx.pid";' in text
    proxy.check_config(proxy.write_config(tmp_path, text), tmp_path)


def test_broken_config_is_a_config_error_with_nginx_message(upstreams, tmp_path):
    _, _, htpasswd, _ = proxy.ensure_credentials(tmp_path)
    text = proxy.render_config(8088, upstreams, htpasswd, tmp_path).replace("http {", "http {\n    bogus_directive on;")
    conf = proxy.write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=r'unknown directive "bogus_directive" in .*nginx.conf:\d+'):
        proxy.check_config(conf, tmp_path)


def test_missing_nginx_says_how_to_install_it(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="apt-get install nginx"):
        proxy.check_config(tmp_path / "nginx.conf", tmp_path, nginx=str(tmp_path / "no-nginx"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(proxy, "NGINX_DIRS", (str(tmp_path),))
    with pytest.raises(ConfigError, match="apt-get install nginx"):
        proxy.nginx_command(tmp_path / "nginx.conf", tmp_path)


@pytest.mark.parametrize("change", [
    {"listen": "127.0.0.1:80; include /etc/shadow"}, {"listen": "127.0.0.1:70000"}, {"max_body": "2m;"},
    {"rate": "fast"}, {"burst": 0}, {"upstreams": {"api": 8000}},
])
def test_values_that_are_not_plain_settings_are_refused(change, upstreams, tmp_path):
    args = {"listen": 8088, "upstreams": upstreams, "htpasswd": tmp_path / "htpasswd", "runtime_dir": tmp_path} | change
    with pytest.raises(ConfigError):
        proxy.render_config(**args)


def test_credentials_are_generated_once_and_kept_private(tmp_path):
    user, password, htpasswd, password_file = proxy.ensure_credentials(tmp_path / "rt")
    assert user == "admin" and len(password) >= 20
    assert password_file.read_text().strip() == password
    line = htpasswd.read_text()
    assert line.startswith("admin:$6$") and password not in line
    for f in (htpasswd, password_file):
        assert f.stat().st_mode & 0o777 == 0o600
    assert proxy.ensure_credentials(tmp_path / "rt")[1] == password
    with pytest.raises(ConfigError):
        proxy.write_htpasswd(tmp_path / "h", "bad:user", "x")


# --- routes --------------------------------------------------------------------------------------------


def test_each_route_reaches_its_upstream(client, nginx):
    r = client.get("/")
    assert r.status_code == 200 and r.json()["upstream"] == "streamlit" and r.json()["path"] == "/"
    assert client.get("/static/js/main.js").json()["upstream"] == "streamlit"

    r = client.post("/api/v1/predict?trace=1", json={"texts": ["재밌다"]},
                    headers={"X-Forwarded-For": "6.6.6.6", "Authorization": "Bearer admin-token"})
    seen = r.json()
    assert (seen["upstream"], seen["method"], seen["path"], seen["query"]) == ("api", "POST", "/v1/predict", "trace=1")
    headers = seen["headers"]
    assert headers["host"] == f"127.0.0.1:{nginx.port}"
    assert headers["x-forwarded-for"] == "127.0.0.1"  # the client's own value is not trusted
    assert headers["x-forwarded-proto"] == "http" and headers["x-forwarded-prefix"] == "/api"
    assert headers["authorization"] == "Bearer admin-token"  # the API's admin endpoints need it

    auth = (nginx.user, nginx.password)
    for name, path, kwargs in (("mlflow", "/mlflow/ajax-api/2.0/mlflow/experiments/search", {"auth": auth}),
                               ("airflow", "/airflow/api/v2/monitor/health",
                                {"headers": {"Authorization": "Bearer airflow-jwt"}})):
        kwargs["headers"] = kwargs.get("headers", {}) | {"X-Forwarded-Prefix": "/evil"}
        seen = client.get(path, **kwargs).json()
        assert (seen["upstream"], seen["path"]) == (name, path)
        assert seen["headers"]["host"] == f"127.0.0.1:{nginx.port}"
        assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
        assert "x-forwarded-prefix" not in seen["headers"]  # nothing was stripped
        if name == "mlflow":
            assert "authorization" not in seen["headers"]  # the proxy's password stays at the proxy
        else:
            assert seen["headers"]["authorization"] == "Bearer airflow-jwt"  # Airflow's own login

    r = client.get("/mlflow", auth=auth)  # the bare prefix redirects to the folder
    assert r.status_code == 301 and r.headers["location"].endswith("/mlflow/")


def test_streamlit_websocket_is_upgraded_through_the_proxy(nginx):
    with ws_connect(f"ws://127.0.0.1:{nginx.port}/_stcore/stream", open_timeout=5, close_timeout=2) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["upstream"] == "streamlit" and hello["path"] == "/_stcore/stream"
        assert hello["headers"]["upgrade"].lower() == "websocket"
        assert hello["headers"]["host"] == f"127.0.0.1:{nginx.port}"
        ws.send("안녕")
        assert ws.recv(timeout=5) == "echo:안녕"


def test_mlflow_needs_the_password_and_airflow_has_one_login_its_own(client, nginx):
    for path in ("/mlflow/", "/mlflow/?html", "/mlflow/ajax-api/2.0/mlflow/experiments/search"):
        r = client.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert client.get(path, auth=(nginx.user, "wrong-password")).status_code == 401
        assert client.get(path, auth=("root", nginx.password)).status_code == 401
        assert client.get(path, auth=(nginx.user, nginx.password)).status_code == 200
    for path in ("/airflow/", "/airflow/auth/login/", "/airflow/api/v2/monitor/health"):
        r = client.get(path)  # no second login in front of Airflow's own
        assert r.status_code == 200 and "www-authenticate" not in r.headers


def test_mlflow_opens_on_the_registered_model(client, nginx):
    page = client.get("/mlflow/?html", auth=(nginx.user, nginx.password))
    assert "location.replace('#/models/review-sentiment')" in page.text
    assert "location.pathname==='/mlflow/'" in page.text  # only the bare folder, any other address stays
    assert page.text.count("<script>") == 1 and "<title>mlflow</title>" in page.text
    assert "gzip" not in page.text  # nginx edits the page: the upstream is asked for it uncompressed
    assert "<script>" not in client.get("/?html").text  # the app's pages are left alone


def test_airflow_ui_defaults_to_the_platform_time_zone(client):
    page = client.get("/airflow/?html", headers={"Accept-Encoding": "gzip"})
    assert page.headers["content-encoding"] == "gzip"  # compressed by nginx instead
    assert "localStorage.getItem('timezone')||localStorage.setItem('timezone','\"Asia/Seoul\"')" in page.text
    assert "<title>airflow</title>" in page.text and "gzip" not in page.text.split("</head>")[1]


def test_odd_model_names_and_time_zones_cannot_break_the_config(upstreams, tmp_path):
    _, _, htpasswd, _ = proxy.ensure_credentials(tmp_path)
    text = proxy.render_config(8088, upstreams, htpasswd, tmp_path, model="리뷰 '모델\"; x", ui_timezone="UTC")
    assert "#/models/%EB%A6%AC%EB%B7%B0%20%27%EB%AA%A8%EB%8D%B8%22%3B%20x'" in text
    assert "'\\\"UTC\\\"'" in text
    proxy.check_config(proxy.write_config(tmp_path, text), tmp_path)
    with pytest.raises(ConfigError, match="time zone"):
        proxy.render_config(8088, upstreams, htpasswd, tmp_path, ui_timezone='Asia/Seoul"; evil')


def test_body_over_the_limit_is_413(client):
    assert client.post("/api/v1/predict", content=b"x" * 1_000_000).json()["body_bytes"] == 1_000_000
    r = client.post("/api/v1/predict", content=b"x" * (2 * 1024 * 1024 + 1))
    assert r.status_code == 413


def test_api_is_rate_limited_but_the_dashboard_is_not(upstreams, tmp_path):
    server = Nginx(tmp_path, upstreams, rate="2r/s", burst=5)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            api = [c.get("/api/v1/model").status_code for _ in range(40)]
            assert api.count(429) >= 10 and api.count(200) >= 6 and set(api) == {200, 429}
            assert api[:6] == [200] * 6  # the burst is served at once
            assert {c.get("/").status_code for _ in range(40)} == {200}
    finally:
        server.stop()


def test_gzip_security_headers_and_no_version(client, nginx):
    r = client.get("/api/v1/big", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip" and "Accept-Encoding" in r.headers["vary"]
    assert len(r.json()["items"]) == 2000
    assert "content-encoding" not in client.get("/api/v1/big", headers={"Accept-Encoding": "identity"}).headers

    answers = [r, client.get("/"), client.get("/mlflow/"), client.get("/_proxy/health"),
               client.post("/api/v1/predict", content=b"x" * (3 * 1024 * 1024)), client.get("/airflow/?html")]
    assert [a.status_code for a in answers] == [200, 200, 401, 200, 413, 200]
    for a in answers:
        assert a.headers["server"] == "nginx"
        for name in SECURITY_HEADERS:
            assert len(a.headers.get_list(name)) == 1, (name, a.request.url)
        assert a.headers["x-content-type-options"] == "nosniff" and a.headers["x-frame-options"] == "SAMEORIGIN"
        csp = a.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "connect-src 'self' ws: wss:" in csp
        assert "style-src 'self' 'unsafe-inline'" in csp and "img-src 'self' data: blob:" in csp


def test_tls_serves_https_and_plain_http_redirects(upstreams, tmp_path):
    """With a certificate (REVIEWOPS_TLS_CERT/KEY in compose) the platform answers over HTTPS; plain HTTP
    keeps the health check and sends everything else to HTTPS."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    tls_port = _free_port()
    server = Nginx(tmp_path / "rt", upstreams, tls_listen=f"127.0.0.1:{tls_port}", tls_cert=cert, tls_key=key,
                   tls_public_port=tls_port)
    try:
        r = httpx.get(f"{server.url}/api/v1/model", timeout=10)
        assert r.status_code == 301
        assert r.headers["location"] == f"https://127.0.0.1:{tls_port}/api/v1/model"
        with httpx.Client(base_url=f"https://127.0.0.1:{tls_port}", verify=str(cert), timeout=10) as c:
            seen = c.post("/api/v1/predict", json={"texts": ["좋다"]})
            assert seen.status_code == 200 and seen.json()["upstream"] == "api"
            assert seen.json()["headers"]["x-forwarded-proto"] == "https"
            assert seen.headers["strict-transport-security"].startswith("max-age=")
            assert c.get("/mlflow/").status_code == 401  # still behind basic auth
    finally:
        server.stop()
    with pytest.raises(ConfigError, match="does not exist"):
        proxy.render_config(8088, upstreams, tmp_path / "h", tmp_path, tls_listen=8443, tls_cert=tmp_path / "no.pem",
                            tls_key=key)
    with pytest.raises(ConfigError, match="needs a certificate"):
        proxy.render_config(8088, upstreams, tmp_path / "h", tmp_path, tls_cert=cert)
