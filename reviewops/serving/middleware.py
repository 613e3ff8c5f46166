"""The API's ASGI middlewares: a limit on request bodies (size and time), and request observation."""

from __future__ import annotations

import asyncio
import json
import logging
import time

log = logging.getLogger(__name__)


class BodyLimit:
    """413 for a request body over the limit, declared (Content-Length) or streamed; 408 for one that
    does not arrive within `timeout` seconds (a slow client holds a connection and memory). Bodies are
    small (a few MB at most), so the middleware reads one whole and hands it on."""

    def __init__(self, app, max_bytes: int, timeout: float) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or {}).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send, 413, f"request body over {self.max_bytes:,} bytes")
        chunks, seen = [], 0
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away
                    chunks.append(message.get("body", b""))
                    seen += len(chunks[-1])
                    if seen > self.max_bytes:
                        return await self._reject(send, 413, f"request body over {self.max_bytes:,} bytes")
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            log.warning("request body not received within %.0f s: 408", self.timeout)
            return await self._reject(send, 408, f"request body not received within {self.timeout:g} s")
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _reject(self, send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,  # the rest of the body is not read
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class Observe:
    """Request count and latency by route (plain ASGI: no task or stream per request)."""

    def __init__(self, app, on_done) -> None:
        self.app, self.on_done = app, on_done

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def sent(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            self.on_done(scope, status, time.perf_counter() - start)
