"""`ssb-s3 hooks serve`: receive MinIO webhook notifications and republish.

POST / with MinIO's event body and `Authorization: Bearer <auth_token>` (the token of MinIO's
notify_webhook `auth_token`; a raw token is accepted too). The token comes from the environment
(SSB_HOOK_TOKEN) or a file, never the command line, and the server refuses to start without one.
Answers 200 only once the event is published (so MinIO retries otherwise), 401 on a wrong or
missing token, 400 on a malformed body, 411/413 on a missing or too large Content-Length,
GET /healthz for probes. Binds 127.0.0.1 unless told otherwise. One JSON log line per request.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .events import EventError, parse_events
from .republish import Coalescer

log = logging.getLogger("ssb_s3.hooks.server")

MAX_BODY = 1024 * 1024
DRAIN_LIMIT = 16 * 1024 * 1024  # an oversized body is read and dropped up to this, then the socket closes
PUBLISH_TIMEOUT = 600.0


class HookServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of notifications must queue, not be reset

    def __init__(self, address: tuple[str, int], token: str, coalescer: Coalescer, max_body: int = MAX_BODY) -> None:
        if len(token) < 16:
            raise ValueError("the hook token must be at least 16 characters")
        super().__init__(address, _Handler)
        self.token = token.encode()
        self.coalescer = coalescer
        self.max_body = max_body
        self.requests = 0


class _Handler(BaseHTTPRequestHandler):
    server: HookServer
    server_version = "ssb-s3-hooks"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # replaced by one JSON line per request
        pass

    def _answer(self, status: int, body: dict[str, Any], started: float, **fields: Any) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400 and status != 401:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.server.requests += 1
        log.info("%s", json.dumps({
            "remote": self.client_address[0], "method": self.command, "path": self.path, "status": status,
            "ms": round(1000 * (time.monotonic() - started), 1), **fields,
        }, sort_keys=True))

    def _drain(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                return
            length -= len(chunk)

    def _authorised(self) -> bool:
        given = self.headers.get("Authorization", "").strip()
        given = given[len("Bearer "):].strip() if given.lower().startswith("bearer ") else given
        return hmac.compare_digest(given.encode(), self.server.token)

    def do_GET(self) -> None:
        started = time.monotonic()
        if self.path == "/healthz":
            self._answer(200, {"status": "ok"}, started)
        else:
            self._answer(404 if self.path != "/" else 405, {"error": "POST events to /"}, started)

    def do_HEAD(self) -> None:
        self._answer(200 if self.path in ("/", "/healthz") else 404, {}, time.monotonic())

    def do_PUT(self) -> None:
        self._answer(405, {"error": "POST events to /"}, time.monotonic())

    do_DELETE = do_PATCH = do_PUT

    def do_POST(self) -> None:
        started = time.monotonic()
        if self.path not in ("/", ""):
            self._answer(404, {"error": "POST events to /"}, started)
            return
        if not self._authorised():
            self._answer(401, {"error": "missing or wrong token"}, started)
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self._answer(411, {"error": "Content-Length required"}, started)
            return
        length = int(length_header)
        if length > self.server.max_body:
            self._drain(min(length, DRAIN_LIMIT))  # so that the client reads the answer, not a reset
            self._answer(413, {"error": f"body over {self.server.max_body} bytes"}, started, bytes=length)
            return
        body = self.rfile.read(length)
        try:
            events = parse_events(body.decode("utf-8"))
        except (EventError, UnicodeDecodeError) as exc:
            self._answer(400, {"error": f"not a bucket event: {exc}"}, started, bytes=length)
            return
        future = self.server.coalescer.submit(events)
        try:
            outcome = future.result(timeout=PUBLISH_TIMEOUT)
        except Exception as exc:
            self._answer(503, {"error": f"publish failed: {exc}"}, started, bytes=length, events=len(events))
            return
        status = 200 if outcome.ok else 500
        self._answer(status, {"published": outcome.products, "failed": outcome.failed}, started, bytes=length,
                     events=len(events), products=outcome.products)


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "127.0.0.1", int(port)
