"""Issue 9, points 2, 9 and 20: remote reads are bounded and the apikey never leaves its host.

Hostile servers are real local HTTP servers (http.server on 127.0.0.1, in threads): endless and
trickling bodies, a bad Content-Length, a catalog nested 200,000 deep, redirects to a second
server that records every header. The tampered index.json runs against a local folder and the
real S3 server (SeaweedFS). The CLI runs as a user runs it: `python -m ssb_s3 -c tree.yml -t DIR`.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import s3_storage, tree_product, write_tree_yml
from measure import Run, measured
from realparts import S3Server, TlsFiles, make_image

from ssb_s3.commands.publish import fetch_manifest_url
from ssb_s3.config import load_config
from ssb_s3.errors import SSBError, StoreError
from ssb_s3.storage import httpread

TOKEN = "s3cr3t-t0ken-never-elsewhere"
PRODUCT = "busybox:1.36:amd64:default"

Route = Callable[["Hostile"], None]


class Hostile(http.server.BaseHTTPRequestHandler):
    """Answers each path with its route (404 otherwise) and records every request's headers."""

    protocol_version = "HTTP/1.0"  # bodies without Content-Length end when the connection closes
    routes: dict[str, Route] = {}  # noqa: RUF012 - one class per server
    seen: list[tuple[str, str, dict[str, str]]] = []  # noqa: RUF012

    def _answer(self) -> None:
        self.seen.append((self.command, self.path, dict(self.headers.items())))
        route = self.routes.get(self.path)
        try:
            if route is None:
                self.send_error(404)
            else:
                route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    do_GET = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


def body(data: bytes, length: str | None = None) -> Route:
    def route(h: Hostile) -> None:
        h.send_response(200)
        h.send_header("Content-Length", length if length is not None else str(len(data)))
        h.end_headers()
        if h.command == "GET":
            h.wfile.write(data)
    return route


def redirect(location: str) -> Route:
    def route(h: Hostile) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return route


def endless(head_length: str | None = None) -> Route:
    """200 and zeros until the client hangs up (HEAD: only the headers, maybe a Content-Length)."""
    def route(h: Hostile) -> None:
        h.send_response(200)
        if h.command == "HEAD" and head_length is not None:
            h.send_header("Content-Length", head_length)
        h.end_headers()
        if h.command == "GET":
            block = b"0" * 65536
            while True:
                h.wfile.write(block)
    return route


def trickle(h: Hostile) -> None:
    """One byte every 0.2 s: never silent long enough for a per-read timeout."""
    h.send_response(200)
    h.send_header("Content-Length", "1000000")
    h.end_headers()
    for _ in range(1000000):
        h.wfile.write(b" ")
        h.wfile.flush()
        time.sleep(0.2)


@pytest.fixture
def serve() -> Iterator[Callable[[], tuple[str, type[Hostile]]]]:
    """Start hostile servers on free ports; each gets its own routes and request log."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start() -> tuple[str, type[Hostile]]:
        handler = type("Handler", (Hostile,), {"routes": {}, "seen": []})
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}", handler

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Run:
    """The CLI as a user runs it, in a child whose own peak RSS is measured."""
    return measured(*args, env=env, timeout=timeout)


def one_error_line(out: Run) -> str:
    """The run failed with one `error:` line (and at most one problem under it), no traceback;
    returns the line that says what went wrong."""
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and "unexpected" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    problems = [line for line in out.stderr.splitlines() if line.startswith("  - ")]
    assert len(lines) == 1 and len(problems) <= 1, out.stderr
    return problems[0] if problems else lines[0]


# --------------------------------------------------------------------------------------------
# A tree to publish: a local folder, or a bucket on the real S3 server


class Target:
    """Where the tree is published (-t) and how the CLI reaches it."""

    def __init__(self, tmp: Path, server: S3Server | None = None, bucket: str = "") -> None:
        self.tmp, self.server, self.bucket = tmp, server, bucket
        self.conf = tmp / "tree.yml"
        self.local = tmp / "tree"
        self.env: dict[str, str] = {}
        self.storage: dict[str, Any] = {}
        if server is not None:
            self.env = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
            self.storage = {"storage": s3_storage(server, checksum_mode="when_required")}
        self.url = f"s3://{bucket}" if server is not None else str(self.local)
        self.write_tree()

    def write_tree(self, prefix_path: str = "") -> None:
        product = tree_product(PRODUCT, directory="busybox/amd64", aliases=["busybox"],
                               **({"prefix_path": prefix_path} if prefix_path else {}))
        write_tree_yml(self.conf, product, **self.storage)

    def add_version(self, serial: str = "20260101_0000") -> None:
        folder = self.tmp / "images" / serial
        files = make_image(folder, kind="squashfs", serial=serial, description=f"busybox {serial}")
        for path in files:
            self.put(f"busybox/amd64/{serial}/{path.name}", path.read_bytes())

    def put(self, key: str, data: bytes) -> None:
        if self.server is None:
            (self.local / key).parent.mkdir(parents=True, exist_ok=True)
            (self.local / key).write_bytes(data)
        else:
            self.server.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, key: str) -> bytes:
        if self.server is None:
            return (self.local / key).read_bytes()
        data: bytes = self.server.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return data

    def cli(self, *args: str, timeout: float = 120) -> Run:
        return run("-c", str(self.conf), "-t", self.url, *args, env=self.env, timeout=timeout)


def make_target(request: pytest.FixtureRequest, store: str, tmp_path: Path) -> Target:
    if store == "local":
        return Target(tmp_path)
    server: S3Server = request.getfixturevalue("s3_server")
    return Target(tmp_path, server, request.getfixturevalue("bucket"))


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return make_target(request, request.param, tmp_path)


# --------------------------------------------------------------------------------------------
# Point 2: the apikey follows no redirect to another host


def test_apikey_is_not_sent_to_the_host_a_redirect_points_at(target: Target, serve: Any) -> None:
    target.add_version()
    manifest = target.cli("build-versions-manifest", "-p", PRODUCT, "--stdout")
    assert manifest.returncode == 0, manifest.stderr
    configured, first = serve()
    other, second = serve()
    path = "/ns/busybox/amd64/ssb.json"
    first.routes[path] = redirect(f"{other}{path}")
    second.routes[path] = body(manifest.stdout.encode())
    target.write_tree(prefix_path=f"{configured}/ns")

    # The other host serves the manifest: followed without the header, the publish goes on.
    done = target.cli("-k", TOKEN, "publish")
    assert done.returncode == 0, done.stderr
    assert [h.get("Authorization") for _, _, h in first.seen] == [f"token {TOKEN}"]
    assert second.seen and all("Authorization" not in h for _, _, h in second.seen)
    assert done.stderr.count("sent over plain http://") == 1  # warned, once
    assert TOKEN not in done.stderr + done.stdout
    index = json.loads(target.get("streams/v1/index.json"))
    assert PRODUCT in index["index"]["images"]["products"]

    # The other host wants credentials: one line says where the redirect went and that the
    # header was not sent; what is published stays as it was.
    before = target.get("streams/v1/index.json")
    second.routes[path] = lambda h: h.send_error(401)
    refused = target.cli("-k", TOKEN, "publish", "--force")
    line = " ".join(refused.stderr.split())
    assert refused.returncode == 1, refused.stderr
    assert f"redirected to {other}{path}, followed without the Authorization header" in line
    assert "HTTP 401" in line and TOKEN not in refused.stderr
    assert all("Authorization" not in h for _, _, h in second.seen)
    assert target.get("streams/v1/index.json") == before


def test_same_host_redirect_keeps_the_apikey_and_loops_are_bounded(tmp_path: Path, serve: Any) -> None:
    target = Target(tmp_path)
    target.add_version()
    manifest = target.cli("build-versions-manifest", "-p", PRODUCT, "--stdout").stdout.encode()
    url, server = serve()
    server.routes["/ns/busybox/amd64/ssb.json"] = redirect("/moved/ssb.json")
    server.routes["/moved/ssb.json"] = body(manifest)
    target.write_tree(prefix_path=f"{url}/ns")
    done = target.cli("-k", TOKEN, "publish")
    assert done.returncode == 0, done.stderr
    assert [h.get("Authorization") for _, _, h in server.seen] == [f"token {TOKEN}"] * 2

    server.routes["/moved/ssb.json"] = redirect("/ns/busybox/amd64/ssb.json")  # a loop
    started = time.monotonic()
    line = one_error_line(target.cli("-k", TOKEN, "publish"))
    assert f"{url}/ns/busybox/amd64/ssb.json: more than {httpread.MAX_REDIRECTS} redirects" in line
    assert time.monotonic() - started < 30


def test_redirect_from_https_to_plain_http_is_refused(tls_files: TlsFiles, serve: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    plain, plain_server = serve()
    handler = type("Handler", (Hostile,), {"routes": {"/x": redirect(f"{plain}/x")}, "seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tls_files.server_cert), str(tls_files.server_key))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca_cert))
    try:
        url = f"https://127.0.0.1:{httpd.server_address[1]}/x"
        with pytest.raises(StoreError, match=r"redirect to http://127\.0\.0\.1:\d+/x refused: it would downgrade"):
            httpread.fetch(url, token=TOKEN)
        assert [h.get("Authorization") for _, _, h in handler.seen] == [f"token {TOKEN}"]
        assert plain_server.seen == []
    finally:
        httpd.shutdown()
        httpd.server_close()


# Issue 20 point 11: a Location that is no URL ends nothing but that request, in one line

BAD_LOCATIONS = ["https://[::1/x", "http://127.0.0.1:99999/x", "https:///x", "http://[::1]:port/x"]


@pytest.mark.parametrize("location", BAD_LOCATIONS)
def test_a_prefix_path_redirect_to_an_invalid_url_is_one_line(tmp_path: Path, serve: Any, location: str) -> None:
    target = Target(tmp_path)
    target.add_version()
    url, server = serve()
    server.routes["/ns/busybox/amd64/ssb.json"] = redirect(location)
    target.write_tree(prefix_path=f"{url}/ns")
    line = one_error_line(target.cli("publish"))
    assert f"product {PRODUCT}: {url}/ns/busybox/amd64/ssb.json: HTTP 302 redirect to an invalid URL " \
           f"{location!r}" in line, line
    assert not (target.local / "streams").exists()  # nothing published


@pytest.mark.parametrize("location", BAD_LOCATIONS[:2])
def test_a_mirror_file_redirected_to_an_invalid_url_fails_its_version_only(tmp_path: Path, serve: Any,
                                                                          location: str) -> None:
    from test_mirror import run_cli, write_upstream

    root = tmp_path / "up"
    catalog = write_upstream(root, [("busybox:1.36:amd64:default", "amd64", "1.36", "default",
                                     ("20260101_0000", "20260102_0000"))])
    url, server = serve()
    for path in root.rglob("*"):
        if path.is_file():
            server.routes["/" + path.relative_to(root).as_posix()] = body(path.read_bytes())
    bad = catalog["products"]["busybox:1.36:amd64:default"]["versions"]["20260102_0000"]["items"]["root.squashfs"]
    server.routes["/" + bad["path"]] = redirect(location)
    out = run_cli(None, str(tmp_path / "target"), "mirror", url, "--json")
    assert out.returncode == 1 and "Traceback" not in out.stderr and "unexpected" not in out.stderr, out.stderr
    failed = json.loads(out.stdout)["failed"]
    assert len(failed) == 1 and failed[0].startswith(
        f"product busybox:1.36:amd64:default version 20260102_0000: not mirrored: {url}/{bad['path']}: "
        f"HTTP 302 redirect to an invalid URL {location!r} ("), failed
    served = json.loads((tmp_path / "target/streams/v1/images.json").read_text())
    assert set(served["products"]["busybox:1.36:amd64:default"]["versions"]) == {"20260101_0000"}


# --------------------------------------------------------------------------------------------
# Point 9: a tampered index.json is replaced, not a blocker

TAMPERED = {
    "dotdot": ("../../etc/passwd", None),
    "absolute": ("/etc/passwd", None),
    "url": ("https://evil.example/images.json", None),
    "not-json": ("streams/v1/images-tampered.json", b"<html>not json</html>"),
    "not-object": ("streams/v1/images-tampered.json", b"[1, 2, 3]"),
    "bad-products": ("streams/v1/images-tampered.json", b'{"products": {"p": {"versions": {"v": 5}}}}'),
    "deep": ("streams/v1/images-tampered.json", b"[" * 200_000 + b"]" * 200_000),
}


@pytest.mark.parametrize(("store", "kind"), [
    *(("local", kind) for kind in sorted(TAMPERED)),
    *(("s3", kind) for kind in ("dotdot", "not-object", "deep")),  # the real server: one of each sort
])
def test_tampered_index_is_replaced_with_a_warning(request: pytest.FixtureRequest, tmp_path: Path, store: str,
                                                   kind: str) -> None:
    target = make_target(request, store, tmp_path)
    target.add_version()
    assert target.cli("publish", "--refresh-manifests").returncode == 0
    index = json.loads(target.get("streams/v1/index.json"))
    path, catalog = TAMPERED[kind]
    index["index"]["images"]["path"] = path
    index["ssb_s3"]["catalogs"].append({"catalog": path, "since": 0, "until": 1})  # the history too
    target.put("streams/v1/index.json", json.dumps(index).encode())
    if catalog is not None:
        target.put(path, catalog)

    started = time.monotonic()
    done = target.cli("publish")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    warnings = [line for line in done.stderr.splitlines() if "index.json" in line and "replaced" in line]
    assert len(warnings) == 1, done.stderr
    assert "Traceback" not in done.stderr
    fresh = json.loads(target.get("streams/v1/index.json"))
    assert fresh["index"]["images"]["path"].startswith("streams/v1/images-")
    assert fresh["index"]["images"]["path"] != path
    assert all(e["catalog"] != path for e in fresh["ssb_s3"]["catalogs"])  # forgotten
    verified = target.cli("verify", "--hashes")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("OK: 1 catalog, 1 products, 1 versions")


ILL_TYPED_ITEMS: dict[str, tuple[Callable[[dict[str, Any]], object], str, str]] = {
    # case: (edit of the version, the field the line names, what it says was expected)
    "item-not-object": (lambda v: v["items"].__setitem__("incus.tar.xz", "x"), ".items.incus.tar.xz",
                        'expected object, got "x"'),
    "path-a-list": (lambda v: v["items"]["incus.tar.xz"].__setitem__("path", ["a"]),
                    ".items.incus.tar.xz.path", 'expected string, got ["a"]'),
    "no-ftype": (lambda v: v["items"]["incus.tar.xz"].pop("ftype"), ".items.incus.tar.xz", "'ftype' is required"),
    "no-items": (lambda v: v.pop("items"), "", "'items' is required"),
    "items-a-list": (lambda v: v.__setitem__("items", [1]), ".items", "expected object, got [1]"),
}


def test_verify_hashes_refuses_an_ill_typed_item_in_one_line(tmp_path: Path) -> None:
    # issue 21: verify --hashes walked every item of a served catalog the schema check had refused,
    # and a string item, a list path or a missing ftype/items ended in "unexpected TypeError"
    target = Target(tmp_path)
    target.add_version()
    assert target.cli("publish", "--refresh-manifests").returncode == 0
    path = json.loads(target.get("streams/v1/index.json"))["index"]["images"]["path"]
    good = json.loads(target.get(path))
    where = f"{target.local / path}: products.{PRODUCT}.versions.20260101_0000"
    for case, (edit, field, expected) in ILL_TYPED_ITEMS.items():
        catalog = json.loads(json.dumps(good))
        edit(catalog["products"][PRODUCT]["versions"]["20260101_0000"])
        target.put(path, json.dumps(catalog).encode())
        out = target.cli("verify", "--hashes")
        assert out.returncode == 1, (case, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr and "unexpected" not in out.stderr, (case, out.stderr)
        assert f"  - {where}{field}: {expected}" in out.stderr.splitlines(), (case, out.stderr)


# --------------------------------------------------------------------------------------------
# Point 20: remote reads are bounded in size and time, with one-line errors


def test_prefix_path_endless_body_stops_at_the_size_cap(tmp_path: Path, serve: Any) -> None:
    target = Target(tmp_path)
    target.add_version()
    url, server = serve()
    server.routes["/ns/busybox/amd64/ssb.json"] = endless()
    target.write_tree(prefix_path=f"{url}/ns")
    started = time.monotonic()
    out = target.cli("-k", TOKEN, "publish", timeout=60)
    elapsed = time.monotonic() - started
    line = one_error_line(out)
    assert f"{url}/ns/busybox/amd64/ssb.json: ssb.json is over the size limit of {httpread.MAX_DOCUMENT_SIZE} bytes" \
        in line and "ssb_s3.storage.httpread.MAX_DOCUMENT_SIZE" in line
    assert elapsed < 30
    assert out.peak_mb < 250, out.peak_mb  # one 64 MiB read (about 100 MB peak), not gigabytes
    assert not (target.local / "streams").exists()


def test_prefix_path_trickle_is_cut_at_the_deadline(tmp_path: Path, serve: Any) -> None:
    url, server = serve()
    server.routes["/ns/busybox/amd64/ssb.json"] = trickle
    target = Target(tmp_path)
    target.write_tree(prefix_path=f"{url}/ns")
    product = load_config(target.conf).products[0]
    started = time.monotonic()
    with pytest.raises(SSBError) as err:
        fetch_manifest_url(product, TOKEN, httpread.Limits(timeout=5, deadline=2))
    elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 5
    assert str(err.value) == (f"product {PRODUCT}: {url}/ns/busybox/amd64/ssb.json: no complete answer within "
                              "the deadline of 2 s (ssb_s3.storage.httpread.DEADLINE)")


def trickled_headers(h: Hostile) -> None:
    """The status line, then a header one byte every 0.2 s: the response never starts."""
    h.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
    for _ in range(1000000):
        h.wfile.write(b"a")
        h.wfile.flush()
        time.sleep(0.2)


def test_deadline_covers_redirects_and_trickled_headers(serve: Any) -> None:
    url, server = serve()
    server.routes["/start"] = redirect("/slow")
    server.routes["/slow"] = trickled_headers
    started = time.monotonic()
    with pytest.raises(StoreError) as err:
        httpread.fetch(f"{url}/start", limits=httpread.Limits(timeout=10, deadline=2))
    assert 1.5 < time.monotonic() - started < 5
    assert str(err.value) == (f"{url}/slow: no complete answer within the deadline of 2 s "
                              f"(ssb_s3.storage.httpread.DEADLINE) (redirected to {url}/slow)")


def test_prefix_path_bad_content_length_and_deep_nesting_are_one_line(tmp_path: Path, serve: Any) -> None:
    target = Target(tmp_path)
    target.add_version()
    url, server = serve()
    target.write_tree(prefix_path=f"{url}/ns")
    server.routes["/ns/busybox/amd64/ssb.json"] = body(b"{}" + b" " * 10, length="12abc")
    line = one_error_line(target.cli("publish"))
    assert f"{url}/ns/busybox/amd64/ssb.json: invalid Content-Length '12abc'" in line
    server.routes["/ns/busybox/amd64/ssb.json"] = body(b"[" * 200_000 + b"]" * 200_000)
    out = target.cli("publish")
    assert out.returncode == 1 and "Traceback" not in out.stderr and "RecursionError" not in out.stderr
    assert "nested too deeply" in out.stderr and f"{url}/ns/busybox/amd64/ssb.json" in out.stderr


@pytest.fixture
def served_tree(tmp_path: Path, serve: Any) -> tuple[str, type[Hostile], dict[str, Any], Path]:
    """A published folder served by a hostile server (every file a route); (url, server, catalog, folder)."""
    target = Target(tmp_path)
    target.add_version()
    assert target.cli("publish", "--refresh-manifests").returncode == 0
    url, server = serve()
    for path in target.local.rglob("*"):
        if path.is_file():
            server.routes["/" + path.relative_to(target.local).as_posix()] = body(path.read_bytes())
    index = json.loads(target.get("streams/v1/index.json"))
    catalog = json.loads(target.get(index["index"]["images"]["path"]))
    assert run("verify", "--base-url", url, "--hashes").returncode == 0
    return url, server, {"index": index, "catalog": catalog}, target.local


def _catalog_route(index: dict[str, Any]) -> str:
    return "/" + str(index["index"]["images"]["path"])


@pytest.mark.parametrize(("route", "options", "expected"), [
    (endless(), ["--max-catalog-size", "1048576"],
     "is over the size limit of 1048576 bytes (verify --max-catalog-size)"),
    (trickle, ["--deadline", "2"], "no complete answer within the deadline of 2 s (verify --deadline)"),
    (body(b"{}", length="12abc"), [], "invalid Content-Length '12abc' (expected one number of bytes)"),
    (body(b"[" * 200_000 + b"]" * 200_000), [], "JSON nested too deeply"),
], ids=["endless", "trickle", "bad-content-length", "deep"])
def test_verify_base_url_catalog_reads_are_bounded(served_tree: Any, route: Route, options: list[str],
                                                   expected: str) -> None:
    url, server, docs, _ = served_tree
    path = _catalog_route(docs["index"])
    server.routes[path] = route
    started = time.monotonic()
    out = run("verify", "--base-url", url, *options, timeout=60)
    assert time.monotonic() - started < 30
    one_error_line(out)
    problems = [line for line in out.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, out.stderr
    assert f"{url}{path}" in problems[0] and expected in problems[0]
    assert out.peak_mb < 150, out.peak_mb  # about 35 MB: the body is never held whole


def test_verify_base_url_index_reads_are_bounded(served_tree: Any) -> None:
    url, server, _, _ = served_tree
    server.routes["/streams/v1/index.json"] = endless()
    started = time.monotonic()
    out = run("verify", "--base-url", url, "--max-catalog-size", "65536", timeout=60)
    assert time.monotonic() - started < 30
    one_error_line(out)
    assert (f"{url}/streams/v1/index.json: unreadable: index.json is over the size limit of 65536 bytes "
            "(verify --max-catalog-size)") in out.stderr


def test_verify_base_url_never_requests_a_dotdot_catalog_path(served_tree: Any) -> None:
    url, server, docs, _ = served_tree
    index = docs["index"]
    index["index"]["images"]["path"] = "../../etc/passwd"
    server.routes["/streams/v1/index.json"] = body(json.dumps(index).encode())
    out = run("verify", "--base-url", url)
    one_error_line(out)
    assert "catalog path '../../etc/passwd' must be a plain relative path" in out.stderr
    assert all(".." not in p and "passwd" not in p for _, p, _ in server.seen)


def test_verify_hashes_stops_at_the_declared_size_plus_one(served_tree: Any) -> None:
    url, server, docs, _ = served_tree
    catalog = docs["catalog"]
    items = catalog["products"][PRODUCT]["versions"]["20260101_0000"]["items"]
    root = items["root.squashfs"]
    root["size"] = 1
    server.routes[_catalog_route(docs["index"])] = body(json.dumps(catalog).encode())
    server.routes["/" + root["path"]] = endless(head_length="1")  # HEAD agrees, GET never ends
    started = time.monotonic()
    out = run("verify", "--base-url", url, "--hashes", timeout=60)
    assert time.monotonic() - started < 30
    one_error_line(out)
    assert f"item root.squashfs: {root['path']}: read more than 1 bytes, catalog says 1" in out.stderr
    assert out.peak_mb < 150, out.peak_mb  # about 35 MB: the body is never held whole


def test_verify_head_with_bad_content_length_is_one_line(served_tree: Any) -> None:
    url, server, docs, _ = served_tree
    items = docs["catalog"]["products"][PRODUCT]["versions"]["20260101_0000"]["items"]
    server.routes["/" + items["root.squashfs"]["path"]] = body(b"x", length="12abc")
    line = one_error_line(run("verify", "--base-url", url))
    assert f"{url}/{items['root.squashfs']['path']}: invalid Content-Length '12abc'" in line


@pytest.mark.parametrize("command", [("verify",), ("list",), ("compat",)])
def test_a_password_in_a_base_url_is_refused_and_never_shown(command: tuple[str, ...]) -> None:
    """A user:password@ part would reach every message naming a file (and is never sent): one line,
    without the password, and no request."""
    out = run(*command, "--base-url", "https://reader:s3cret-pw@127.0.0.1:9/tree")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "s3cret-pw" not in out.stdout + out.stderr
    assert "a user or password in the URL is not supported" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
