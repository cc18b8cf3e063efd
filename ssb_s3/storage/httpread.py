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
- Memory per run: `parse_json` charges every document it parses to the run's ParseBudget (one per
  process run, `new_run`; the hooks start one per publish), at the cost `parse_cost` estimates from
  the bytes, BEFORE json.loads runs: a document whose estimate is over what is left of the budget
  (default MAX_PARSE_MEMORY, `--max-parse-memory` of publish, mirror, verify, list, compat and
  the hooks) is refused with one line naming it and the setting (BudgetSpent), and the run stops
  (the tool's own lease is the one document not charged); a body being read over http(s) is held
  on it as it arrives (twice its bytes: it and its copy), so documents read at once (16 manifest
  readers) cannot outgrow it before they are parsed. So the documents of one run (index, catalogs,
  every ssb.json, however many an upstream names) take at most the budget, parsed, whatever their
  shape: the per-document size cap alone let a 63 MiB catalog of small containers take 1.7 GB, and
  five of them a MemoryError. What a publish's snapshot cost is given back once it is dropped
  (storage.tree: a publish that starts again does not pay twice). What a run builds from the
  documents it accepted (a mirror's selection, verify's checks, a publish's plan) is not counted.

  parse_cost is an upper bound of json.loads' peak, the bytes themselves included: per byte 1 (the
  bytes) + the width of the decoded text (1 ASCII, 2, 4 with characters past U+FFFF) + that of the
  strings (doubled when the document holds escapes: such strings are built piecewise), plus
  PER_CONTAINER per `[` or `{` and PER_SEPARATOR per `,` or `:` (every value, key and container
  follows one of them), plus PER_DOCUMENT. Measured on CPython 3.11 (tracemalloc peak of
  json.loads, and the growth of the process's peak RSS, of 32 MB documents), estimate / RSS:
      a catalog as images.linuxcontainers.org's (3 versions a product, 6 items a version), compact
      RSS 4.7 x its size, estimate 8.0 x (1.7); indented RSS 4.0 x, estimate 6.8 x (1.7);
      `[{},{},...]` RSS 26 x, estimate 86 x (3.3);  `[[[...]]]` 500 deep, repeated: 50 x, 78 x (1.6);
      `{"":{"":...0}}` repeated: 41 x, 53 x (1.3);  `[{"a":0},...]`: 27 x, 47 x (1.7);
      `{"1":0,"2":0,...}` (every key new): 15 x, 20 x (1.3);  `["ab",...]`: 16 x, 23 x (1.4);
      `["\u0100",...]`: 21 x, 25 x (1.18);  one long string with a character past U+FFFF: 9 x, 9 x (1.0);
      `[0,0,...]` (cached small ints): 6 x, 53 x (8.8; cheap shapes are overestimated, never the
      expensive ones underestimated). The tracemalloc peak is under the estimate for every shape
      (tests/test_parse_budget.py checks it). Counting takes about 4 ms per MB.

Limits are module constants here; `verify` sets them per run (`--timeout`, `--deadline`,
`--max-catalog-size`).

Transport: each request is sent by urllib3 through ssb_s3.storage.transport (pooled connections, the
CA bundle in the AWS tools' order, HTTPS_PROXY/HTTP_PROXY/NO_PROXY), which never retries nor follows
a redirect: the rules above are this module's, on top. A connection goes back to its pool only once
its body was read to the end (a HEAD has none); any other is closed. A failure no retry can heal
(refused, a certificate not trusted, the wrong scheme for the port) is errors.Unreachable, one
line, and not a StoreError: the run stops there instead of trying every other file of the tree.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3.exceptions

from ..errors import BudgetSpent, Forbidden, NotFound, StoreError
from . import transport

log = logging.getLogger(__name__)
T = TypeVar("T")

TIMEOUT = 30.0  # seconds without a byte before a read fails
DEADLINE = 300.0  # seconds for one whole request: connect, redirects, headers and body
MAX_DOCUMENT_SIZE = 64 * 1024 * 1024  # bytes of an ssb.json, index.json or catalog
# Estimated memory the JSON documents of one run may take parsed, in all (parse_cost): 1 GiB holds
# about 130 MB of catalogs as real ones are (images.linuxcontainers.org's is about 10 MB) and keeps
# a run under about 1.5 GB whatever it is served; a 63 MiB catalog of small containers (5 GB
# estimated) is refused.
MAX_PARSE_MEMORY = 1 << 30
PER_CONTAINER = 150  # bytes estimated for each `[` or `{` (a list or dict, its slot in its parent)
PER_SEPARATOR = 100  # bytes estimated for each `,` or `:` (a value or key: its object, its slot)
PER_DOCUMENT = 64 << 10  # and for each document (the parser's own state, the objects' headers)
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

    def __init__(self, url: str, resp: Any, guard: _Guard, limits: Limits, note: str, method: str) -> None:
        self.url, self.status, self.headers = url, int(resp.status), resp.headers
        self.reason = str(resp.reason or "")
        self.note = note  # said after errors: how the request was redirected
        self._resp, self._guard, self._limits = resp, guard, limits
        self._done = method == "HEAD"  # the body read to its end: the connection goes back to the pool
        self.length = content_length(url, resp.headers.getlist("Content-Length"))

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Give the connection back (to the pool if the body was read to its end, else closed) and
        end the request's deadline watchdog."""
        self._guard.cancel()
        self.release()

    def release(self) -> None:
        """Give the connection back; the deadline still runs (a redirect continues the request)."""
        with contextlib.suppress(Exception):
            if not self._done:
                self._resp.close()  # a body not read to its end: the connection cannot be reused
            self._resp.release_conn()

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
                self._done = True
                return
            if left is not None:
                left -= len(chunk)
            yield chunk

    def _read1(self, size: int, stall: _Stall | None = None) -> bytes:
        sock = self._guard.sock
        if sock is not None:
            sock.settimeout(min(self._limits.timeout, max(self._guard.left(), 0.01)))
        # What has arrived, at most `size`, from the http.client response urllib3 wraps (its body not
        # decoded: Accept-Encoding is identity); a socket that timed out cannot be read again.
        fp = getattr(self._resp, "_fp", None)
        chunk: bytes = fp.read1(size) if isinstance(fp, http.client.HTTPResponse) else self._resp.read(size)
        if stall is not None:
            stall.count(len(chunk))
        return chunk

    def read(self, what: str = "body") -> bytes:
        """The whole body, refused past `max_size` (before reading when Content-Length says so).
        While it arrives, the body and its copy are held on the run's parse budget (BudgetSpent):
        documents read at once (the manifest readers) cannot outgrow it before they are parsed."""
        cap = self._limits.max_size
        limit = f"the size limit of {cap} bytes ({self._limits.name('size')}){self.note}"
        if self.length is not None and self.length > cap:
            raise StoreError(f"{shown(self.url)}: {what} declares {self.length} bytes, over {limit}")
        data = bytearray()
        budget, held = _run, 0
        try:
            for chunk in self.chunks(cap + 1):
                data += chunk
                budget.hold(2 * len(chunk), f"{shown(self.url)}: {what}", len(data), self.note)
                held += 2 * len(chunk)
        finally:
            budget.refund(held)  # its parse is charged instead (parse_json), the bytes included
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

    @property
    def sock(self) -> socket.socket | None:
        """The socket of the request's current step."""
        return self._sock

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
        except (TimeoutError, urllib3.exceptions.TimeoutError) as exc:
            if self.expired or self.left() <= 0:
                raise self.error(url, note) from None
            what = "no connection" if isinstance(exc, urllib3.exceptions.ConnectTimeoutError) else "no data"
            raise StoreError(f"{shown(url)}: {what} for {self.limits.timeout:g} s "
                             f"(per-read timeout, {self.limits.name('timeout')}){note}") from None
        except (OSError, ValueError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
            if self.expired:
                raise self.error(url, note) from None
            raise StoreError(f"{shown(url)}: {_cause(exc)}{note}") from None


def _cause(exc: BaseException) -> str:
    """What went wrong, in words: the innermost cause urllib3 wraps (its own text names objects)."""
    if isinstance(exc, urllib3.exceptions.HTTPError):
        for inner in (*exc.args, exc.__cause__, exc.__context__):
            if isinstance(inner, BaseException):
                return _cause(inner)
    return str(exc) or exc.__class__.__name__


def _connect(url: str, method: str, headers: dict[str, str], limits: Limits, guard: _Guard,
             note: str) -> Response:
    timeout = max(min(limits.timeout, guard.left()), 0.01)
    resp = guard.run(url, note, transport.request, url, method, headers, timeout, guard.watch)
    try:
        return Response(url, resp, guard, limits, note, method)
    except BaseException:
        resp.close()
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
                if resp.status == 400:
                    wrong_scheme = transport.plain_http_to_tls(current)  # http:// to a TLS port
                    if wrong_scheme is not None:
                        raise wrong_scheme
                reason = f"{shown(current)}: HTTP {resp.status} {resp.reason}{note}"
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


_ASTRAL_ESCAPE = re.compile(rb"\\u[dD][89abAB]")  # half of a surrogate pair: a character past U+FFFF
_ASTRAL_LEADS = tuple(bytes([lead]) for lead in range(0xF0, 0xF5))  # UTF-8 lead bytes of those


def parse_cost(data: bytes) -> int:
    """An upper bound of the memory json.loads(data) takes at its peak, `data` included, counted
    from the bytes in a few passes of C (module docstring: the formula and how it was measured)."""
    if data.isascii():
        text = 1
        chars = 1 if b"\\u" not in data else 4 if _ASTRAL_ESCAPE.search(data) else 2
    else:
        text = 4 if any(lead in data for lead in _ASTRAL_LEADS) or _ASTRAL_ESCAPE.search(data) else 2
        chars = text
    if b"\\" in data:
        chars *= 2
    containers = data.count(b"[") + data.count(b"{")
    separators = data.count(b",") + data.count(b":")
    return len(data) * (1 + text + chars) + PER_CONTAINER * containers + PER_SEPARATOR * separators + PER_DOCUMENT


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


class ParseBudget:
    """The memory the JSON documents of one run may take parsed, in all (module docstring).
    `option` tells users where the limit is set. Charged from any thread."""

    def __init__(self, limit: int = MAX_PARSE_MEMORY, option: str = "ssb_s3.storage.httpread.MAX_PARSE_MEMORY") -> None:
        self.limit, self.option = limit, option
        self.spent = 0
        self._lock = threading.Lock()

    def _take(self, amount: int) -> int | None:
        """Spend `amount` if that much is left (None); else nothing is spent and what is left is returned."""
        with self._lock:
            left = self.limit - self.spent
            if amount <= left:
                self.spent += amount
                return None
            return left

    def charge(self, data: bytes, where: str) -> None:
        """Count `data`'s parse cost, or raise BudgetSpent (one line naming `where`) when it is over
        what is left: before anything is parsed."""
        cost = parse_cost(data)
        left = self._take(cost)
        if left is None:
            return
        raise BudgetSpent(f"{where}: not parsed: it would take about {_mib(cost)} of memory (estimated from its "
                          f"{len(data)} bytes), over the {_mib(max(left, 0))} left of the {_mib(self.limit)} "
                          f"the documents of one run may take ({self.option})")

    def hold(self, size: int, what: str, received: int, note: str = "") -> None:
        """Hold `size` more bytes of a document being read (given back with `refund`), or raise
        BudgetSpent: a body is not read on past what is left."""
        left = self._take(size)
        if left is None:
            return
        raise BudgetSpent(f"{what} not read past {received} bytes: holding it would take more than the "
                          f"{_mib(max(left, 0))} left of the {_mib(self.limit)} the documents of one run may take "
                          f"({self.option}){note}")

    def refund(self, cost: int) -> None:
        """Give back what documents the run no longer holds cost (a publish's dropped snapshot)."""
        with self._lock:
            self.spent = max(0, self.spent - cost)


_run = ParseBudget()


def run_budget() -> ParseBudget:
    """The budget of the run under way."""
    return _run


def new_run(limit: int | None = None, option: str | None = None) -> ParseBudget:
    """Start a run: a new budget (by default with the last one's limit and option); what earlier
    runs of this process parsed no longer counts (the hooks start one per publish)."""
    global _run
    _run = ParseBudget(_run.limit if limit is None else limit, _run.option if option is None else option)
    return _run


def parse_json(data: bytes, where: str, *, charged: bool = True) -> Any:
    """json.loads for documents from outside, `where` naming the document in messages: charged to
    the run's budget first (BudgetSpent, nothing parsed; `charged=False` only for the tool's own
    lease, read back by its renewal thread), and nesting too deep is a ValueError, not a
    RecursionError."""
    if charged:
        _run.charge(data, where)
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply (more levels than Python's recursion limit)") from None
