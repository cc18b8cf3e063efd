"""One bounded HTTP(S) reader for everything ssb_s3 reads from a server it does not control.

Used by the `prefix_path` fetch of a product's ssb.json (publish) and by HttpStore (`verify
--base-url`: index, catalog, files). Invariants:

- Time: every request has a per-read timeout (`Limits.timeout`, default TIMEOUT) AND a total
  deadline (`Limits.deadline`, default DEADLINE) covering connect, redirects, headers and body. A
  watchdog shuts the socket down at the deadline, so a server trickling one byte at a time is cut.
- Stall: with `Limits.stall_bytes`, a body bringing fewer bytes than that in a window of
  `Limits.stall_seconds` fails (one line), checked as each read returns: so within stall_seconds
  plus the per-read timeout. Mirror's files are bounded by rate, not only by their deadline.
- Size: a document body (ssb.json, index.json, a catalog) is never read past `Limits.max_size`
  (default MAX_DOCUMENT_SIZE); a larger declared Content-Length is refused before reading. File
  streams are read in chunks; the caller bounds them (verify stops at the declared size + 1).
- A Content-Length that is not a plain number of bytes is refused (one line).
- The token: `Authorization: token …` is sent only to the origin (scheme, host, port) of the URL
  it was configured for. Redirects are followed by hand, at most `Limits.max_redirects`; a redirect
  to another origin is FOLLOWED WITHOUT the header (as curl and requests do), and an error after
  such a redirect says so (with `Limits.same_origin`, as `mirror` reads its source, such a
  redirect is refused). A redirect from https:// to http:// is refused. A token about to travel
  over plain http:// logs one warning per origin and process. No message ever contains the token
  (or the user:password part of a URL).
- Errors are StoreError (NotFound for 404, Forbidden for 403) with one line: the URL, what
  happened, the limit. A redirect whose Location is not a usable URL is one such line ("redirect
  to an invalid URL"), never a ValueError.
- 403: S3 answers 403, not 404, for a missing key to a reader without s3:ListBucket (a
  GetObject-only bucket policy, AWS and Ceph RGW alike). The reader that knows a key is optional
  (its absence is normal) reads it inside `optional_key()`: a 403 there is NotFound, and the
  first such answer per origin and process is logged once. Everywhere else a 403 is Forbidden,
  whose line says that the bucket policy must allow s3:GetObject on the key.
- JSON from outside goes through `parse_json`: a document nested too deeply is a ValueError,
  never a RecursionError.

Limits are module constants here; `verify` sets them per run (`--timeout`, `--deadline`,
`--max-catalog-size`). Proxies (http_proxy, https_proxy) are not used.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import Forbidden, NotFound, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

TIMEOUT = 30.0  # seconds without a byte before a read fails
DEADLINE = 300.0  # seconds for one whole request: connect, redirects, headers and body
MAX_DOCUMENT_SIZE = 64 * 1024 * 1024  # bytes of an ssb.json, index.json or catalog
MAX_REDIRECTS = 5
READ_SIZE = 1024 * 1024  # at most this much per read
REDIRECTS = (301, 302, 303, 307, 308)
_LENGTH = re.compile(r"[0-9]{1,19}")


class HttpStatus(StoreError):
    """The server answered with an error status (NotFound is raised for 404, Forbidden for 403)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Bounds of one request; `option` tells users where each is set ({} is the limit's name)."""

    timeout: float = TIMEOUT
    deadline: float = DEADLINE
    max_size: int = MAX_DOCUMENT_SIZE
    max_redirects: int = MAX_REDIRECTS
    same_origin: bool = False  # refuse a redirect to another origin (mirror: the source's bounds)
    stall_bytes: int = 0  # the stall rule: a body bringing fewer bytes than this in any
    stall_seconds: float = 0.0  # window of stall_seconds fails (0: off; mirror's files use it)
    option: str = "ssb_s3.storage.httpread.{}"  # e.g. "verify --{}"

    def name(self, limit: str) -> str:
        """How users set one limit: 'verify --deadline', 'ssb_s3.storage.httpread.DEADLINE'."""
        if "--" in self.option:
            return self.option.format({"size": "max-catalog-size"}.get(limit, limit))
        return self.option.format({"size": "MAX_DOCUMENT_SIZE"}.get(limit, limit.upper()))


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL: the token goes to one origin only."""
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:  # a bad port or bracket, e.g. in a Location header
        raise StoreError(f"'{shown(url)}': not a valid URL ({exc})") from None


def shown(url: str) -> str:
    """A URL as messages show it: without any user:password@ part, at most 300 characters."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        url = f"{scheme}{sep}{netloc.rsplit('@', 1)[1]}{slash}{path}"
    return url if len(url) <= 300 else url[:300] + "…"


_warned: set[tuple[str, str, int]] = set()
_warned_lock = threading.Lock()


def _warn_plain_http(url: str) -> None:
    where = origin(url)
    with _warned_lock:
        if where in _warned:
            return
        _warned.add(where)
    log.warning("%s: the apikey is sent over plain http://, readable by anyone on the way; use https://",
                shown(url))


class Response:
    """One response whose reads honour the request's deadline and per-read timeout."""

    def __init__(self, url: str, conn: http.client.HTTPConnection, sock: socket.socket,
                 resp: http.client.HTTPResponse, guard: _Guard, limits: Limits, note: str) -> None:
        self.url, self.status, self.headers = url, resp.status, resp.headers
        self.note = note  # said after errors: how the request was redirected
        self._conn, self._sock, self._resp, self._guard, self._limits = conn, sock, resp, guard, limits
        self.length = content_length(url, resp.headers.get_all("Content-Length") or [])

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection and end the request's deadline watchdog."""
        self._guard.cancel()
        self.release()

    def release(self) -> None:
        """Drop the connection; the deadline still runs (a redirect continues the request)."""
        self._resp.close()
        self._conn.close()

    def chunks(self, limit: int | None = None, size: int = READ_SIZE) -> Iterator[bytes]:
        """The body in chunks of at most `size`, at most `limit` bytes in all (None: until the end)."""
        left = limit
        stall = _Stall(self._limits, self.url, self.note) if self._limits.stall_bytes > 0 else None
        while left is None or left > 0:
            want = size if left is None else min(size, left)
            chunk = self._guard.run(self.url, self.note, self._read1, want, stall)
            if not chunk:
                if self._guard.expired:  # the watchdog shut the socket: that end is not the body's
                    raise self._guard.error(self.url, self.note)
                return
            if left is not None:
                left -= len(chunk)
            yield chunk

    def _read1(self, size: int, stall: _Stall | None = None) -> bytes:
        self._sock.settimeout(min(self._limits.timeout, max(self._guard.left(), 0.01)))
        chunk = self._resp.read1(size)  # (a socket that timed out cannot be read again: no shorter wait)
        if stall is not None:
            stall.count(len(chunk))
        return chunk

    def read(self, what: str = "body") -> bytes:
        """The whole body, refused past `max_size` (before reading when Content-Length says so)."""
        cap = self._limits.max_size
        limit = f"the size limit of {cap} bytes ({self._limits.name('size')}){self.note}"
        if self.length is not None and self.length > cap:
            raise StoreError(f"{shown(self.url)}: {what} declares {self.length} bytes, over {limit}")
        data = bytearray()
        for chunk in self.chunks(cap + 1):
            data += chunk
        if len(data) > cap:
            raise StoreError(f"{shown(self.url)}: {what} is over {limit}")
        if self.length is not None and len(data) != self.length:
            raise StoreError(f"{shown(self.url)}: connection closed after {len(data)} of {self.length} bytes"
                             f"{self.note}")
        return bytes(data)


class _Stall:
    """The stall rule of one body: at least `stall_bytes` in each window of `stall_seconds`, else
    one StoreError line (a server trickling a byte every few seconds stays under the per-read
    timeout and the deadline, but not under this)."""

    def __init__(self, limits: Limits, url: str, note: str) -> None:
        self.limits, self.url, self.note = limits, url, note
        self.start, self.got = time.monotonic(), 0

    def left(self) -> float:
        return self.start + self.limits.stall_seconds - time.monotonic()

    def count(self, size: int) -> None:
        self.got += size
        if self.left() > 0:
            return
        if self.got < self.limits.stall_bytes:
            raise StoreError(f"{shown(self.url)}: stalled: {self.got} bytes in {self.limits.stall_seconds:g} s, "
                             f"under the {self.limits.stall_bytes} bytes of the stall rule (tree.yml mirrors: "
                             f"stall_bytes, stall_seconds){self.note}")
        self.start, self.got = time.monotonic(), 0


def content_length(url: str, values: list[str]) -> int | None:
    """The declared body size, or None; anything but one plain number of bytes is refused."""
    if not values:
        return None
    if len(set(values)) != 1 or not _LENGTH.fullmatch(values[0].strip()):
        bad = ", ".join(repr(v[:40]) for v in values[:3])
        raise StoreError(f"{shown(url)}: invalid Content-Length {bad} (expected one number of bytes)")
    return int(values[0])


class _Guard:
    """The request's deadline: shuts the socket down when it passes, so no read can outlive it."""

    def __init__(self, limits: Limits, url: str) -> None:
        self.limits, self.url = limits, url
        self.end = time.monotonic() + limits.deadline
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(limits.deadline, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        return self.end - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shut()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)  # the fd, even under TLS

    def cancel(self) -> None:
        self._timer.cancel()

    def error(self, url: str, note: str = "") -> StoreError:
        return StoreError(f"{shown(url)}: no complete answer within the deadline of {self.limits.deadline:g} s "
                          f"({self.limits.name('deadline')}){note}")

    def run(self, url: str, note: str, step: Callable[..., T], *args: Any) -> T:
        """Run one network step; any failure becomes one line naming the URL and the limit hit."""
        if self.expired or self.left() <= 0:
            raise self.error(url, note)
        try:
            return step(*args)
        except TimeoutError:
            if self.expired or self.left() <= 0:
                raise self.error(url, note) from None
            raise StoreError(f"{shown(url)}: no data for {self.limits.timeout:g} s "
                             f"(per-read timeout, {self.limits.name('timeout')}){note}") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if self.expired:
                raise self.error(url, note) from None
            raise StoreError(f"{shown(url)}: {str(exc) or exc.__class__.__name__}{note}") from None


def _connect(url: str, method: str, headers: dict[str, str], limits: Limits, guard: _Guard,
             note: str) -> Response:
    parts = urllib.parse.urlsplit(url)
    scheme, host, port = origin(url)
    timeout = max(min(limits.timeout, guard.left()), 0.01)
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    try:
        guard.run(url, note, conn.connect)
        sock = conn.sock
        assert sock is not None
        guard.watch(sock)
        guard.run(url, note, conn.request, method, target, None, headers)
        resp = guard.run(url, note, conn.getresponse)
        return Response(url, conn, sock, resp, guard, limits, note)
    except BaseException:
        conn.close()
        raise


def open_url(url: str, *, method: str = "GET", token: str | None = None, limits: Limits = Limits(),
             user_agent: str = "ssb-s3") -> Response:
    """Send the request, follow redirects (see the module docstring) and return a 2xx response.

    4xx/5xx answers are StoreError (NotFound for 404) naming the URL and any redirect taken.
    """
    home = origin(url)
    guard = _Guard(limits, url)
    current, note = url, ""
    try:
        for _ in range(limits.max_redirects + 1):
            scheme = origin(current)[0]
            if scheme not in ("http", "https"):
                raise StoreError(f"{shown(url)}: redirected to {shown(current)}: refused, only http(s) is followed")
            headers = {"User-Agent": user_agent, "Accept-Encoding": "identity"}
            if token and origin(current) == home:
                if scheme == "http":
                    _warn_plain_http(current)
                headers["Authorization"] = f"token {token}"
            resp = _connect(current, method, headers, limits, guard, note)
            if resp.status in REDIRECTS:
                location = resp.headers.get("Location", "")
                resp.release()
                if not location:
                    raise StoreError(f"{shown(current)}: HTTP {resp.status} redirect without a Location{note}")
                target = _redirect_target(current, location, resp.status, note)
                if limits.same_origin and origin(target) != home:
                    raise StoreError(f"{shown(current)}: redirect to {shown(target)} refused: "
                                     "it leaves the source's origin")
                if origin(current)[0] == "https" and origin(target)[0] == "http":
                    raise StoreError(f"{shown(current)}: redirect to {shown(target)} refused: "
                                     "it would downgrade https:// to plain http://")
                if token and origin(target) != home and not note:
                    note = (f" (redirected to {shown(target)}, followed without the Authorization header: "
                            f"the apikey is only sent to {home[0]}://{home[1]}:{home[2]})")
                elif not note:
                    note = f" (redirected to {shown(target)})"
                current = target
                continue
            if resp.status >= 300:
                resp.release()
                reason = f"{shown(current)}: HTTP {resp.status} {resp._resp.reason}{note}"
                if resp.status == 404:
                    raise NotFound(reason)
                if resp.status == 403:
                    raise Forbidden(f"{reason}: missing or not readable; the bucket policy must allow "
                                    "s3:GetObject on this key (an S3 server answers 403 for a missing key "
                                    "to readers without s3:ListBucket)"
                                    + ("; or the apikey is refused" if "Authorization" in headers else ""), current)
                raise HttpStatus(reason, resp.status)
            return resp
        raise StoreError(f"{shown(url)}: more than {limits.max_redirects} redirects{note}")
    except BaseException:
        guard.cancel()
        raise


def _redirect_target(current: str, location: str, status: int, note: str) -> str:
    """The absolute URL a Location header points at, or one StoreError line when it is none."""
    try:
        target = urllib.parse.urljoin(current, location.strip())
        parts = urllib.parse.urlsplit(target)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
        if parts.scheme.lower() in ("http", "https") and not parts.hostname:
            raise ValueError("no host")
    except ValueError as exc:
        raise StoreError(f"{shown(current)}: HTTP {status} redirect to an invalid URL {location[:200]!r} "
                         f"({exc}){note}") from None
    return target


_said_forbidden: set[tuple[str, str, int]] = set()


@contextlib.contextmanager
def optional_key() -> Iterator[None]:
    """Around the read of a key whose absence is normal (an LXC index file, a signature, a signed
    index, the page, ...): a 403 answer (Forbidden) counts as NotFound. The first per origin and
    process is logged as one warning: such a server answers 403 for every missing key."""
    try:
        yield
    except Forbidden as exc:
        try:
            where = origin(exc.url)
        except StoreError:
            where = ("", exc.url, 0)
        with _warned_lock:
            first = where not in _said_forbidden
            _said_forbidden.add(where)
        if first:
            log.warning("%s: HTTP 403 Forbidden, taken as absent: this server answers 403 for missing keys, as S3 "
                        "does for readers without s3:ListBucket (said once; a file the tree needs that answers "
                        "403 is still an error)", shown(exc.url))
        raise NotFound(str(exc)) from None


def fetch(url: str, *, token: str | None = None, limits: Limits = Limits(), what: str = "body",
          user_agent: str = "ssb-s3") -> tuple[bytes, str]:
    """GET a whole document (bounded by `limits.max_size`); returns (body, ETag)."""
    with open_url(url, token=token, limits=limits, user_agent=user_agent) as resp:
        return resp.read(what), resp.headers.get("ETag", "")


def parse_json(data: bytes | str) -> Any:
    """json.loads for documents from outside: nesting too deep is a ValueError, not a RecursionError."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply (more levels than Python's recursion limit)") from None
