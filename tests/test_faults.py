"""Publishing through faults against a real S3 server (SeaweedFS).

Why: real object stores answer 500 InternalError and 503 SlowDown, and connections drop, also
after the server applied a write (the response is lost: a retried PUT with If-Match then gets
412 for a change that is its own). A publish must either complete or fail with one clear
SSBError line without credentials, and the served tree must stay valid either way.

Two injectors: botocore `before-send` hooks on the publisher's client (500, 503, connection
closed, endpoint unreachable: the request never reaches the server) and a fault-injecting HTTP
proxy in front of the server (drop before forwarding, drop after forwarding, 500 after applying,
response cut mid-way). Which request gets which fault is a pure function of (seed, method, key,
n-th time that request is made), so runs are reproducible whatever the thread timing; only the
number of lease requests (renewals, waits) depends on the clock. botocore's retry backoff is
scaled down 20x so that 8 attempts at 50 % fault rate stay within seconds.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError
from botocore.retries.standard import ExponentialBackoff
from realparts import S3Server, make_image

from ssb_s3.commands.publish import PublishOptions, PublishReport, publish
from ssb_s3.commands.verify import verify
from ssb_s3.config import ProductConfig, StorageConfig, TreeConfig, parse_config
from ssb_s3.errors import ProblemsFound, SSBError
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.backends.s3 import S3Store
from ssb_s3.storage.store import Store
from ssb_s3.vocabulary.layout import INDEX_KEY

# A response cut inside its headers can cut the Date header: botocore's date parser then warns.
pytestmark = pytest.mark.filterwarnings("ignore:tzname .* identified but not understood")

RATES = (0.05, 0.20, 0.50)
PUBLISHES = 4  # per rate, each with a new version of every product before it
SEED = 20260101
HOOK_KINDS = ("http-500", "http-503", "conn-closed", "conn-refused")
PROXY_KINDS = ("drop-before", "drop-after", "error-after", "cut-response")
LOCK_TIMEOUT = 15.0  # > lease_ttl: a lease orphaned by a failed publish expires and is taken over
BACKOFF_SCALE = 0.05
IO_TIMEOUT = 30.0


# --------------------------------------------------------------------------------------------
# Which request gets which fault


@dataclass(frozen=True)
class Rule:
    """Targeted fault: the `occurrence`-th request `method` whose key matches `pattern` (re.search)."""

    method: str
    pattern: str
    kind: str
    occurrence: int = 1
    delay: float = 0.0  # seconds to hold the response back (to let the lease renewal run)


@dataclass
class FaultPlan:
    """Decides per request: a share `rate` of requests get one of `kinds`, plus explicit rules."""

    rate: float = 0.0
    kinds: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    seed: int = SEED
    enabled: bool = True
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    requests: int = 0
    _seen: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    _matched: collections.Counter[Rule] = field(default_factory=collections.Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def decide(self, method: str, key: str) -> Rule | None:
        """The fault for this request (None: let it through); counts what was injected."""
        with self._lock:
            if not self.enabled:
                return None
            self.requests += 1
            self._seen[(method, key)] += 1
            chosen: Rule | None = None
            for rule in self.rules:
                if rule.method == method and re.search(rule.pattern, key):
                    self._matched[rule] += 1
                    if self._matched[rule] == rule.occurrence and chosen is None:
                        chosen = rule
            if chosen is None and self.rate:
                nth = self._seen[(method, key)]
                digest = hashlib.sha256(f"{self.seed}|{method}|{key}|{nth}".encode()).digest()
                if int.from_bytes(digest[:8], "big") / 2**64 < self.rate:
                    chosen = Rule(method, key, self.kinds[digest[8] % len(self.kinds)], nth)
            if chosen is not None:
                self.counts[chosen.kind] += 1
            return chosen


def request_key(url: str) -> str:
    """'[http://host]/bucket/some/key?query' -> 'some/key?query': the bucket name is random per test."""
    parts = urlsplit(url)
    key = parts.path.lstrip("/").partition("/")[2]
    return f"{key}?{parts.query}" if parts.query else key


# --------------------------------------------------------------------------------------------
# Injector 1: botocore hooks on the publisher's client (the request never reaches the server)


class _Body:
    """The minimal raw object AWSResponse reads its content from."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self.data


def s3_error_xml(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}'
            f"</Message><RequestId>fault-injected</RequestId></Error>").encode()


def install_hooks(store: S3Store, plan: FaultPlan) -> None:
    """Answer a share of the client's requests with 500/503, or fail them as dropped connections."""

    def before_send(request: Any, **kwargs: Any) -> AWSResponse | None:
        rule = plan.decide(request.method, request_key(request.url))
        if rule is None:
            return None
        if rule.kind == "conn-closed":
            raise ConnectionClosedError(endpoint_url=request.url)
        if rule.kind == "conn-refused":
            raise EndpointConnectionError(endpoint_url=request.url)
        status, code, message = {"http-500": (500, "InternalError", "We encountered an internal error."),
                                 "http-503": (503, "SlowDown", "Please reduce your request rate.")}[rule.kind]
        body = b"" if request.method == "HEAD" else s3_error_xml(code, message)
        headers = {"Content-Type": "application/xml", "Content-Length": str(len(body))}
        return AWSResponse(request.url, status, headers, _Body(body))

    store.client.meta.events.register("before-send.s3.*", before_send)


# --------------------------------------------------------------------------------------------
# Injector 2: a fault-injecting HTTP proxy in front of the real server


class FaultProxy:
    """Threaded HTTP/1.1 proxy on 127.0.0.1 forwarding each request unchanged (Host kept, so SigV4
    verifies), one request per connection; a share of requests is dropped or answered wrongly.
    Subclasses may rewrite a request's headers or answer it themselves (`adjust`)."""

    MAX_HEAD = 64 * 1024

    def __init__(self, upstream: str, plan: FaultPlan, max_connections: int = 32) -> None:
        target = urlsplit(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.plan = plan
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.slots = threading.BoundedSemaphore(max_connections)
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=5)
        self.listener.close()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            if not self.slots.acquire(timeout=IO_TIMEOUT):
                conn.close()
                continue
            threading.Thread(target=self._handle, args=(conn,), name="fault-proxy-conn", daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(IO_TIMEOUT)
            with contextlib.suppress(OSError):  # the client gave up (its own timeout): nothing to do
                self._exchange(conn)
        finally:
            conn.close()
            self.slots.release()

    @staticmethod
    def _reset(conn: socket.socket) -> None:
        """Close with RST, as a dying load balancer or a broken network does."""
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _exchange(self, conn: socket.socket) -> None:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buffer += chunk
            if len(buffer) > self.MAX_HEAD:
                raise OSError("request head too large")
        head, _, body = buffer.partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = [tuple(h.split(":", 1)) for h in header_lines if ":" in h]
        names = {name.strip().lower(): value.strip() for name, value in headers}
        if names.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if names.get("transfer-encoding", "").lower() == "chunked":
            while not body.endswith(b"0\r\n\r\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
        else:
            length = int(names.get("content-length", "0"))
            while len(body) < length:
                chunk = conn.recv(min(65536, length - len(body)))
                if not chunk:
                    return
                body += chunk
        headers, answer = self.adjust(method, target, headers)
        if answer is not None:
            conn.sendall(answer)
            return
        # Unchanged but for hop-by-hop headers: one request per connection, no 100-continue dance.
        kept = [f"{n}:{v}" for n, v in headers if n.strip().lower() not in ("connection", "expect", "keep-alive")]
        forward = "\r\n".join([request_line, *kept, "Connection: close", "", ""]).encode("latin-1") + body
        rule = self.plan.decide(method, request_key(target))
        if rule is not None and rule.kind == "drop-before":
            self._reset(conn)
            return
        response = self._upstream(forward)
        if rule is not None and rule.delay:
            time.sleep(rule.delay)
        if rule is None or rule.kind == "delay":
            conn.sendall(response)
        elif rule.kind == "drop-after":
            self._reset(conn)
        elif rule.kind == "error-after":
            error = s3_error_xml("InternalError", "We encountered an internal error.")
            conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(error), error))
        elif rule.kind == "cut-response":
            resp_head, _, resp_body = response.partition(b"\r\n\r\n")
            cut = len(resp_head) + 4 + len(resp_body) // 2 if resp_body else len(resp_head) // 2
            conn.sendall(response[:cut])
        else:
            raise AssertionError(f"unknown fault kind {rule.kind}")

    def adjust(self, method: str, target: str, headers: list[tuple[str, ...]]
               ) -> tuple[list[tuple[str, ...]], bytes | None]:
        """The headers to forward (name, value as sent), or a whole response to answer instead."""
        return headers, None

    def _upstream(self, request: bytes) -> bytes:
        with socket.create_connection(self.upstream, timeout=IO_TIMEOUT) as up:
            up.sendall(request)
            parts = []
            while chunk := up.recv(65536):
                parts.append(chunk)
        return b"".join(parts)


# --------------------------------------------------------------------------------------------
# The tree, the clean view and the faulty publisher


def make_tree(server: S3Server, lease_ttl: str) -> TreeConfig:
    """Two products keeping 2 versions, grace 0: every publish also purges (deletes, manifest
    updates, history), so every kind of write meets the faults."""
    return parse_config({
        "storage": {"endpoint_url": server.endpoint, "region": "us-east-1",
                    "addressing_style": "path", "checksum_mode": "when_required"},
        "grace": "0",
        "lease_ttl": lease_ttl,
        "products": [
            {"name": "faults:1:amd64:squashfs", "arch": "amd64", "release": "1.0", "os": "Busybox",
             "directory": "faults/squashfs", "days": 2, "aliases": ["faults/squashfs"]},
            {"name": "faults:1:amd64:unified", "arch": "amd64", "release": "1.0", "os": "Busybox",
             "directory": "faults/unified", "days": 2, "aliases": ["faults/unified"]},
        ],
    }, "tree.yml")  # fmt: skip


def open_s3(endpoint: str, bucket: str) -> S3Store:
    """A fresh client per publish, as a fresh CLI run has (botocore's retry quota included)."""
    store = open_store(f"s3://{bucket}", StorageConfig(endpoint_url=endpoint, region="us-east-1",
                                                       addressing_style="path", checksum_mode="when_required"))
    assert isinstance(store, S3Store)
    return store


@dataclass
class Bench:
    """A bucket with a published tree, a clean (fault-free) store, and a builder."""

    server: S3Server
    bucket: str
    tree: TreeConfig
    clean: S3Store
    workdir: Path
    versions: list[str] = field(default_factory=list)

    def add_version(self, version: str) -> None:
        """Upload a new, unique version of every product through the clean client."""
        for product in self.tree.products:
            kind = "unified" if product.name.endswith("unified") else "squashfs"
            folder = self.workdir / product.directory / version
            for path in make_image(folder, kind=kind, serial=version, description=f"{product.name} {version}"):
                with path.open("rb") as fh:
                    self.clean.put(f"{self.tree.product_dir(product)}/{version}/{path.name}", fh,
                                      content_type="application/octet-stream", cache_control="no-cache")
        self.versions.append(version)

    def served(self) -> dict[str, Any]:
        path = json.loads(self.clean.read(INDEX_KEY))["index"]["images"]["path"]
        catalog: dict[str, Any] = json.loads(self.clean.read(path))
        return catalog

    def served_versions(self, product: ProductConfig) -> set[str]:
        return set(self.served()["products"][product.name]["versions"])

    def assert_served_tree_valid(self) -> None:
        """Read WITHOUT faults, as a client does, every file hashed."""
        report = verify(self.clean, hashes=True)
        assert report.problems == [], report.problems
        assert report.versions >= len(self.tree.products)

    def publish(self, store: Store, **options: Any) -> PublishReport:
        opts = PublishOptions(**{"refresh_manifests": True, "lock_timeout": LOCK_TIMEOUT, **options})
        return publish(self.tree, store, opts)


def make_bench(server: S3Server, bucket: str, workdir: Path, lease_ttl: str = "3s") -> Bench:
    tree = make_tree(server, lease_ttl)
    bench = Bench(server, bucket, tree, open_s3(server.endpoint, bucket), workdir)
    bench.add_version("20260101_0000")
    bench.publish(bench.clean)
    return bench


@pytest.fixture
def env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Credentials from the environment, and botocore's backoff compressed in time."""
    s3_server.use_credentials(monkeypatch)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    original: Callable[[ExponentialBackoff, Any], float] = ExponentialBackoff.delay_amount

    def scaled(self: ExponentialBackoff, context: Any) -> float:
        return original(self, context) * BACKOFF_SCALE

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", scaled)
    return s3_server


@pytest.fixture
def bench(env: S3Server, bucket: str, tmp_path: Path) -> Bench:
    return make_bench(env, bucket, tmp_path)


@contextlib.contextmanager
def proxy_for(server: S3Server, plan: FaultPlan) -> Iterator[FaultProxy]:
    proxy = FaultProxy(server.endpoint, plan)
    try:
        yield proxy
    finally:
        proxy.close()


def check_failure(exc: SSBError, server: S3Server) -> str:
    """A refused or failed publish: one clear line (plus one per problem), no credentials."""
    lines = [str(exc), *map(str, exc.problems)] if isinstance(exc, ProblemsFound) else [str(exc)]
    for line in lines:
        assert line.strip() and "\n" not in line and len(line) < 600, repr(line)
        assert server.secret_key not in line and server.access_key not in line, line
        assert "Traceback" not in line, line
    return " | ".join(lines)


@dataclass
class Sweep:
    """Outcome of several faulty publishes."""

    completed: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def sweep(bench: Bench, plan: FaultPlan, faulty_store: Callable[[], S3Store]) -> Sweep:
    """New versions, then a faulty publish, PUBLISHES times; the contract is checked after each."""
    result = Sweep()
    started = time.monotonic()
    for n in range(PUBLISHES):
        version = f"202602{n + 1:02d}_0000"
        bench.add_version(version)
        plan.enabled = True
        try:
            bench.publish(faulty_store())
        except SSBError as exc:
            result.failed.append(check_failure(exc, bench.server))
        except Exception as exc:
            pytest.fail(f"publish {n + 1} raised {type(exc).__module__}.{type(exc).__name__}, not an SSBError: {exc}")
        else:
            result.completed += 1
            bench.assert_served_tree_valid()
            for product in bench.tree.products:
                assert version in bench.served_versions(product)
        finally:
            plan.enabled = False  # a lease renewal thread left behind must not draw more faults
        bench.assert_served_tree_valid()
    result.seconds = time.monotonic() - started
    # A clean re-run converges: everything uploaded that retention keeps is served.
    bench.publish(bench.clean)
    bench.assert_served_tree_valid()
    for product in bench.tree.products:
        assert bench.served_versions(product) == set(bench.versions[-2:])
    return result


def figures(name: str, rate: float, plan: FaultPlan, result: Sweep) -> str:
    kinds = " ".join(f"{k}={plan.counts[k]}" for k in sorted(plan.counts))
    text = (f"{name} rate={rate:.0%}: publishes={PUBLISHES} completed={result.completed} "
            f"failed={len(result.failed)} requests={plan.requests} faults: {kinds} ({result.seconds:.1f}s)")
    print(text)
    for message in result.failed:
        print(f"   failed: {message}")
    return text


# --------------------------------------------------------------------------------------------
# Sweeps: a share of all requests fails


@pytest.mark.parametrize("rate", RATES, ids=[f"{r:.0%}" for r in RATES])
def test_publish_through_client_side_errors(bench: Bench, rate: float) -> None:
    """500 InternalError, 503 SlowDown and dropped connections before the request leaves."""
    plan = FaultPlan(rate=rate, kinds=HOOK_KINDS, seed=SEED + int(rate * 100))

    def faulty() -> S3Store:
        store = open_s3(bench.server.endpoint, bench.bucket)
        install_hooks(store, plan)
        return store

    result = sweep(bench, plan, faulty)
    figures("hooks", rate, plan, result)
    assert sum(plan.counts.values()) > 0


@pytest.mark.parametrize("rate", RATES, ids=[f"{r:.0%}" for r in RATES])
def test_publish_through_a_faulty_proxy(bench: Bench, rate: float) -> None:
    """Connections dropped before and after the server applied the request, 500 after applying,
    responses cut mid-way: the proxy sits between the publisher and the real server."""
    plan = FaultPlan(rate=rate, kinds=PROXY_KINDS, seed=SEED + int(rate * 100))
    with proxy_for(bench.server, plan) as proxy:
        result = sweep(bench, plan, lambda: open_s3(proxy.url, bench.bucket))
    figures("proxy", rate, plan, result)
    assert sum(plan.counts.values()) > 0


# --------------------------------------------------------------------------------------------
# One lost response on each conditional write: the server applied it, the client never heard


def publish_with(bench: Bench, rules: tuple[Rule, ...], **options: Any) -> tuple[PublishReport, FaultPlan]:
    """A new version, then one publish through the proxy with exactly these faults."""
    bench.add_version("20260301_0000")
    plan = FaultPlan(rules=rules)
    with proxy_for(bench.server, plan) as proxy:
        try:
            report = bench.publish(open_s3(proxy.url, bench.bucket), **options)
        finally:
            plan.enabled = False
    assert sum(plan.counts.values()) == len(rules), plan.counts
    return report, plan


def assert_published(bench: Bench) -> None:
    bench.assert_served_tree_valid()
    for product in bench.tree.products:
        assert "20260301_0000" in bench.served_versions(product)


INDEX = r"^streams/v1/index\.json$"
LEASE = r"^\.ssb-s3/lease\.json$"


@pytest.mark.parametrize("pattern", [
    r"^faults/squashfs/ssb\.json$",           # refresh_manifest: If-None-Match / If-Match
    r"^streams/v1/images-[0-9a-f]{20}\.json$",  # the content-addressed catalog: If-None-Match
    r"^streams/v1/images\.json$",              # the plain copy: unconditional
], ids=["manifest", "catalog", "plain-copy"])  # fmt: skip
@pytest.mark.parametrize("kind", ["drop-after", "error-after"])
def test_lost_response_on_a_write_is_harmless(bench: Bench, pattern: str, kind: str) -> None:
    """The retried write meets its own change (412, or the same bytes again): publish goes on."""
    report, _ = publish_with(bench, (Rule("PUT", pattern, kind),))
    assert report.index_written
    assert_published(bench)


@pytest.mark.parametrize("kind", ["drop-after", "error-after"])
def test_lost_response_on_the_index_flip_still_publishes(bench: Bench, kind: str) -> None:
    """PUT index.json If-Match applied, response lost, retry gets 412: the next round of the
    publish finds the index already naming its catalog and finishes."""
    publish_with(bench, (Rule("PUT", INDEX, kind),))
    assert_published(bench)


def test_lost_response_on_the_index_flip_is_reported_as_a_change(bench: Bench) -> None:
    """The index did change during this publish: the report must say so (CDN invalidation)."""
    report, _ = publish_with(bench, (Rule("PUT", INDEX, "drop-after"),))
    assert_published(bench)
    assert report.index_written, "index.json was flipped by this publish but the report says unchanged"


def test_lost_response_on_the_lease_create(env: S3Server, bucket: str, tmp_path: Path) -> None:
    """The lease object is ours: the publisher must recognise it instead of waiting for itself."""
    bench = make_bench(env, bucket, tmp_path, lease_ttl="60s")
    publish_with(bench, (Rule("PUT", LEASE, "drop-after"),), lock_timeout=3.0)
    assert_published(bench)


def test_lost_response_on_a_lease_renewal(env: S3Server, bucket: str, tmp_path: Path) -> None:
    """lease_ttl 1s renews every 0.33s; the index read is held back 2s so a renewal happens."""
    bench = make_bench(env, bucket, tmp_path, lease_ttl="1s")
    publish_with(bench, (Rule("PUT", LEASE, "drop-after", occurrence=2), Rule("GET", INDEX, "delay", delay=2.0)))
    assert_published(bench)


def test_cut_response_on_a_read_is_retried(bench: Bench) -> None:
    """botocore retries a request only until its response headers arrive; reading the body is
    the caller's job, so the store must retry a GET whose body was cut."""
    publish_with(bench, (Rule("GET", INDEX, "cut-response"),))
    assert_published(bench)


def test_cut_responses_fail_cleanly(bench: Bench) -> None:
    """A response cut mid-way (in the body, or in the headers when there is none) on each kind of
    request: retried, or one SSBError line; never a raw urllib3/botocore exception."""
    for n, (method, pattern) in enumerate([("GET", INDEX), ("GET", r"ssb\.json$"), ("GET", r"list-type=2"),
                                           ("PUT", LEASE), ("DELETE", LEASE)]):
        bench.add_version(f"202604{n + 1:02d}_0000")
        plan = FaultPlan(rules=(Rule(method, pattern, "cut-response"),))
        with proxy_for(bench.server, plan) as proxy:
            try:
                bench.publish(open_s3(proxy.url, bench.bucket))
                outcome = "completed"
            except SSBError as exc:
                outcome = "failed: " + check_failure(exc, bench.server)
        print(f"cut {method} {pattern}: injected={plan.counts['cut-response']} {outcome}")
        assert plan.counts["cut-response"] == 1
        bench.assert_served_tree_valid()
