"""A local stand-in for Slack's Web API and incoming webhooks, for tests, `make demo` and `make up`.

It accepts `POST /api/chat.postMessage` (JSON or form body, Bearer token) and `POST /webhook/...`,
answers like Slack, keeps every message (in memory and, when given a file, as JSON lines), and shows
them at `GET /` (HTML) and `GET /messages` (JSON). Point the platform at it with
`REVIEWOPS_SLACK_BOT_TOKEN=local-standin REVIEWOPS_SLACK_API_URL=http://127.0.0.1:PORT/api/`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from reviewops.devtools.render import escape, render

# The stand-in accepts any bearer token; this one is a placeholder, not a credential.
STANDIN_TOKEN = "local-standin"


def standin_env(url: str) -> dict[str, str]:
    """The settings that point the platform's Slack reports at a stand-in running at `url`."""
    return {"REVIEWOPS_SLACK_BOT_TOKEN": STANDIN_TOKEN, "REVIEWOPS_SLACK_API_URL": f"{url}/api/"}


class SlackStandIn:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_file: Path | None = None,
                 status: int = 200, ok: bool = True) -> None:
        self.requests: list[dict] = []
        self.log_file = log_file
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode("utf-8", "replace")
                ctype = self.headers.get("Content-Type", "")
                try:
                    payload = (json.loads(body) if "json" in ctype
                               else {k: v[0] for k, v in parse_qs(body).items()})
                except json.JSONDecodeError:
                    payload = {"unparsed": body[:2000]}
                outer._record({"path": self.path, "auth": self.headers.get("Authorization"), "body": payload})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                if self.path.startswith("/api/"):
                    answer = {"ok": ok, "error": None if ok else "channel_not_found"}
                    self.wfile.write(json.dumps(answer).encode())
                else:
                    self.wfile.write(b"ok" if status == 200 else b"error")

            def do_GET(self) -> None:
                if self.path.startswith("/messages"):
                    data = json.dumps(outer.messages(), ensure_ascii=False).encode()
                    ctype = "application/json"
                else:
                    items = "".join(render("slack_message.html", text=escape(m["text"]))
                                    for m in reversed(outer.messages()))
                    data = render("slack_standin.html", count=len(outer.requests), items=items).encode()
                    ctype = "text/html; charset=utf-8"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _record(self, request: dict) -> None:
        with self._lock:
            self.requests.append(request)
            if self.log_file is not None:
                with open(self.log_file, "a", encoding="utf-8") as fh:
                    masked = request | {"auth": "***" if request["auth"] else None}
                    fh.write(json.dumps(masked, ensure_ascii=False) + "\n")

    def messages(self) -> list[dict]:
        """Each message's text and blocks, in arrival order."""
        out = []
        for r in list(self.requests):
            blocks = r["body"].get("blocks", [])
            if isinstance(blocks, str):
                blocks = json.loads(blocks)
            out.append({"path": r["path"], "text": r["body"].get("text", ""), "blocks": blocks})
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(host: str = "127.0.0.1", port: int = 8802, log_file: Path | None = None) -> None:
    standin = SlackStandIn(host, port, log_file)
    url = standin.url
    print(f"Slack stand-in on {url} (messages at {url}/ and {url}/messages)", flush=True)
    try:
        standin._thread.join()
    except KeyboardInterrupt:
        standin.close()
