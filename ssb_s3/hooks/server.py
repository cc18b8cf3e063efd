"""`ssb-s3 hooks serve`: receive MinIO webhook notifications and republish.

POST / with MinIO's event body and `Authorization: Bearer <auth_token>` (the token of MinIO's
notify_webhook `auth_token`; a raw token is accepted too). The token comes from the environment
(SSB_HOOK_TOKEN) or a file, never the command line, and the server refuses to start without one.
Answers 200 only once the event is published (so MinIO retries otherwise), 401 on a wrong or
missing token, 400 with a one-line reason on any malformed body (events.parse_events raises
nothing but EventError), 408 on a body shorter than its Content-Length, 411/413 on a missing (or
not plain ASCII digits) or too large Content-Length, GET /healthz for probes. Binds 127.0.0.1
unless told otherwise. One JSON log line per request (an answer of 400 or more names its reason;
a 500 names the failed products, whose reasons are on the publish's own line, see republish.py),
and one line (never a traceback) for a client that hangs up or times out, and for a refused
connection. An address already in use is an OSError out of the constructor, nothing else.

Limits (a stranger without the token cannot hold the server):
- Reading a request (request line, headers and body) must finish within `timeout` seconds
  (`--timeout`, default 5): each read waits at most that long, and a reaper thread cuts the
  reading side of a connection whose request is still incomplete at its deadline, so a trickle
  cannot stretch it. The wait for the publish is not bounded by it (PUBLISH_TIMEOUT).
- At most `max_connections` connections (`--max-connections`, default 64) are open. A new
  connection over the cap takes the slot of the oldest one still reading its request (it is cut
  like a timed-out one), so idle or stalled sockets cannot lock legitimate events out. When every
  slot is busy with an authenticated request being published, the new connection is refused at
  once: a 503 is sent without reading the request and the socket is closed (the client may see a
  reset instead of the 503; MinIO retries either way).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .events import EventError, parse_events
from .republish import Coalescer, log_json

log = logging.getLogger("ssb_s3.hooks.server")

MAX_BODY = 1024 * 1024
DRAIN_LIMIT = 16 * 1024 * 1024  # an oversized body is read and dropped up to this, then the socket closes
PUBLISH_TIMEOUT = 600.0
TIMEOUT = 5.0  # seconds to receive a whole request (headers and body)
MAX_CONNECTIONS = 64
REFUSED = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"


def _log_line(**fields: Any) -> None:
    log_json(log, logging.INFO, **fields)


class HookServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of notifications must queue, not be reset

    def __init__(self, address: tuple[str, int], token: str, coalescer: Coalescer, max_body: int = MAX_BODY,
                 timeout: float = TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> None:
        if len(token) < 16:
            raise ValueError("the hook token must be at least 16 characters")
        self._closing = threading.Event()  # before binding: a failed bind calls server_close()
        super().__init__(address, _Handler)
        self.token = token.encode()
        self.coalescer = coalescer
        self.max_body = max_body
        self.request_timeout = timeout
        self.max_connections = max_connections
        self.requests = 0
        # open connection -> deadline of the request it is reading, None while its event is published;
        # in arrival order, so the first reading one is the oldest
        self._open: dict[socket.socket, float | None] = {}
        self._lock = threading.Lock()
        self._reaper = threading.Thread(target=self._reap, name="ssb-hooks-reaper", daemon=True)
        self._reaper.start()

    # -- connection slots ------------------------------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            admitted = len(self._open) < self.max_connections or self._evict_oldest_reader()
            if admitted:
                self._open[request] = time.monotonic() + self.request_timeout
        if admitted:
            super().process_request(request, client_address)
        else:
            self._refuse(request, client_address)

    def _evict_oldest_reader(self) -> bool:
        """Free the slot of the oldest connection still reading its request (the lock is held)."""
        for conn, deadline in self._open.items():
            if deadline is not None:
                self._cut(conn)
                return True
        return False

    def _cut(self, conn: socket.socket) -> None:
        """Stop reading from `conn` (its handler sees the end of the stream and finishes; the lock is held)."""
        del self._open[conn]
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RD)

    def _refuse(self, request: socket.socket, client_address: Any) -> None:
        with contextlib.suppress(OSError):
            request.setblocking(False)
            request.send(REFUSED)
        self.shutdown_request(request)
        _log_line(remote=client_address[0], status=503, error=f"over {self.max_connections} connections, refused")

    def reading(self, conn: socket.socket) -> None:
        """`conn` starts reading a request: it must be complete within the timeout."""
        with self._lock:
            if conn in self._open:
                self._open[conn] = time.monotonic() + self.request_timeout

    def working(self, conn: socket.socket) -> None:
        """`conn`'s request is read and authenticated: its slot is kept while it is published."""
        with self._lock:
            if conn in self._open:
                self._open[conn] = None

    def _reap(self) -> None:
        period = min(0.5, self.request_timeout / 4)
        while not self._closing.wait(period):
            now = time.monotonic()
            with self._lock:
                for conn in [c for c, deadline in self._open.items() if deadline is not None and deadline < now]:
                    self._cut(conn)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:  # forgotten before it is closed: the reaper never touches a closed socket
            self._open.pop(request, None)
        super().shutdown_request(request)

    def server_close(self) -> None:
        self._closing.set()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line, never a traceback: a hang-up or a timeout is the client's business."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            _log_line(remote=client_address[0], error=f"client hung up or timed out: {type(exc).__name__}")
        else:
            log.error("%s: unexpected %s: %s", client_address[0], type(exc).__name__, exc)
            log.debug("traceback", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: HookServer
    server_version = "ssb-s3-hooks"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.request_timeout)  # each read and write on the socket

    def handle_one_request(self) -> None:
        self.server.reading(self.connection)  # a kept-alive connection gets a fresh deadline per request
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:  # replaced by one JSON line per request
        pass

    def log_error(self, format: str, *args: Any) -> None:  # a bad request line, a timeout...: one line
        _log_line(remote=self.client_address[0], error=format % args)

    def _answer(self, status: int, body: dict[str, Any], started: float, **fields: Any) -> None:
        data = (json.dumps(body) + "\n").encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status >= 400 and status != 401:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (ConnectionError, TimeoutError) as exc:
            self.close_connection = True
            fields["error"] = f"client hung up before the answer: {type(exc).__name__}"
        if status >= 400 and "error" in body:
            fields.setdefault("error", body["error"])
        self.server.requests += 1
        _log_line(remote=self.client_address[0], method=self.command, path=self.path, status=status,
                  ms=round(1000 * (time.monotonic() - started), 1), **fields)

    def _drain(self, length: int) -> None:
        with contextlib.suppress(TimeoutError):
            while length > 0:
                chunk = self.rfile.read(min(length, 65536))
                if not chunk:
                    return
                length -= len(chunk)

    def _body(self, length: int) -> bytes | None:
        """The body, or None if it did not arrive in time (shorter than its Content-Length)."""
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            return None
        return body if len(body) == length else None

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
        if length_header is None or not _is_number(length_header):
            self._answer(411, {"error": "Content-Length required"}, started)
            return
        length = int(length_header)
        if length > self.server.max_body:
            self._drain(min(length, DRAIN_LIMIT))  # so that the client reads the answer, not a reset
            self._answer(413, {"error": f"body over {self.server.max_body} bytes"}, started, bytes=length)
            return
        body = self._body(length)
        if body is None:
            self._answer(408, {"error": f"body shorter than its Content-Length after {self.server.request_timeout:g}s"},
                         started, bytes=length)
            return
        try:
            events = parse_events(body.decode("utf-8"))
        except (EventError, UnicodeDecodeError) as exc:
            self._answer(400, {"error": f"not a bucket event: {exc}"}, started, bytes=length)
            return
        self.server.working(self.connection)
        future = self.server.coalescer.submit(events)
        try:
            outcome = future.result(timeout=PUBLISH_TIMEOUT)
        except Exception as exc:
            self._answer(503, {"error": f"publish failed: {exc}"}, started, bytes=length, events=len(events))
            return
        status = 200 if outcome.ok else 500
        fields: dict[str, Any] = {"failed": sorted(outcome.failed)} if outcome.failed else {}
        self._answer(status, {"published": outcome.products, "failed": outcome.failed}, started, bytes=length,
                     events=len(events), products=outcome.products, **fields)


def _is_number(text: str, digits: int = 18) -> bool:
    """ASCII digits only (str.isdigit() also takes '²' and other scripts' digits), and not absurdly many."""
    return 0 < len(text) <= digits and text.isascii() and text.isdigit()


def parse_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT (an empty HOST is 127.0.0.1; PORT 0 picks a free port); ValueError with one line otherwise."""
    host, _, port = listen.rpartition(":")
    if not _is_number(port, 5):
        raise ValueError(f"{listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    if int(port) > 65535:
        raise ValueError(f"{listen!r}: the port must be 1-65535 (or 0 for any free port), not {int(port)}")
    return host.strip("[]") or "127.0.0.1", int(port)
