"""The API's HTTP server: uvicorn with limits on what a client may make it hold or wait for, and with
keep-alive connections closed once they are old, so the work spreads over the workers.

uvicorn's httptools protocol keeps a request's headers in memory however large they grow, and waits
for them (and for a body) as long as a client likes: six connections sending 128 MB headers doubled
the API's memory and starved its health checks. nginx refuses such requests in compose, but the API
is reachable without nginx too (`make up`, compose's network), so the limits live here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from reviewops.config import get_settings


def _close_with(transport: asyncio.Transport, status: str) -> None:
    body = status.encode()
    transport.write(b"HTTP/1.1 " + body + b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
                    + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
    transport.close()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Request line and headers: at most `api_max_header_bytes` (else 431), all of them within
    `api_header_timeout_seconds` of the connection opening or the request starting (else the
    connection is closed). Slow bodies are timed by `middleware.BodyLimit`.

    A request on a connection at least `api_connection_max_age_seconds` old is answered with
    `connection: close`, and the connection closed. uvicorn's workers share connections, not requests:
    the four keep-alive clients of bench/serve.py all landed on one of two workers in some runs, which
    then served half as many reviews a second while the other worker idled. A client that reconnects goes
    to whichever worker accepts first, usually the less busy one."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.max_head, self.head_timeout = settings.api.max_header_bytes, settings.api.header_timeout_seconds
        self.max_age = settings.api.connection_max_age_seconds
        self._opened = 0.0
        self._head_bytes = 0
        self._reading_head = True
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._opened = self.loop.time()
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # parses first: bytes after the headers are the body's, not counted
        if not self._reading_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head:
            self._stop_head_timer()
            self.logger.warning("request headers over %d bytes: 431, connection closed", self.max_head)
            _close_with(self.transport, "431 Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head, self._head_bytes = True, 0
        self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._stop_head_timer()
        super().on_headers_complete()
        if self.max_age and self.cycle is not None and self.loop.time() - self._opened >= self.max_age:
            self.cycle.keep_alive = False  # uvicorn answers with "connection: close", then closes

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._reading_head and (self.cycle is None or self.cycle.response_complete):
            if self._head_bytes:
                self.logger.warning("request headers not received within %.0f s: connection closed",
                                    self.head_timeout)
            self.transport.close()


def run(host: str, port: int, workers: int) -> None:
    """`reviewops serve`: the API under uvicorn with the guarded protocol. With several workers, Prometheus'
    multiprocess mode in a fresh folder (removed at exit), so /metrics sums every worker's counts; the
    variable must be set before a worker imports prometheus_client, so here, before uvicorn starts them."""
    import uvicorn

    from reviewops.serving.metrics import MULTIPROC_ENV

    folder = None
    if workers > 1:
        folder = tempfile.mkdtemp(prefix="reviewops-metrics-")  # a previous run's files would count again
        os.environ[MULTIPROC_ENV] = folder
    try:
        uvicorn.run("reviewops.serving.app:create_app", factory=True, host=host, port=port, workers=workers,
                    http="reviewops.serving.server:GuardedHttpToolsProtocol", log_level="info", access_log=False,
                    proxy_headers=True, forwarded_allow_ips="127.0.0.1")
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
