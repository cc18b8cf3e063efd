"""Stores that lie about conditional writes (issue 10), against the real S3 server.

Some S3-compatible stores ignore If-None-Match / If-Match without an error, others answer 501
NotImplemented. Before the first conditional write of a run (the lease of publish, the upload
marker of build-product) an S3 store is probed once; a store that ignores the headers or answers
501 is refused with one line naming storage.conditional_writes: false, before anything is written.
With `conditional_writes: false` no request of the lease nor of ingest carries a conditional header.

The misbehaving stores are a loopback proxy (tests/test_faults.FaultProxy, with a header hook) in
front of a SeaweedFS started without credentials: it checks no signature, so the proxy may drop
signed headers (DESIGN section 4). The proxy records every request and its conditional headers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from realparts import S3Server, TlsFiles, make_image, need, run_seaweedfs
from test_faults import FaultPlan, FaultProxy, request_key, s3_error_xml
from test_publisher import Tree

from ssb_s3.commands.publish import publish
from ssb_s3.config import StorageConfig, load_config
from ssb_s3.errors import PreconditionFailed
from ssb_s3.ingest.upload import ingest_version
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.backends.s3 import S3Store
from ssb_s3.storage.lease import LEASE_KEY, Lease
from ssb_s3.vocabulary.layout import PROBE_KEY_PREFIX as PROBE_PREFIX
from ssb_s3.vocabulary.layout import STORE_VERDICT_KEY as VERDICT_KEY

CONDITIONAL = ("if-match", "if-none-match")
PRODUCT = "busybox:1.36:amd64:default"
FIX = "set storage.conditional_writes: false"


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request as the proxy saw it: method, key (bucket stripped), conditional header names."""

    method: str
    key: str
    conditional: tuple[str, ...]


class HeaderProxy(FaultProxy):
    """A store that misbehaves on conditional headers: `strip` drops If-Match / If-None-Match (the
    server never sees them, as with a store that ignores them), `501` answers NotImplemented to
    any request carrying one, `pass` forwards everything. Every request is recorded."""

    def __init__(self, upstream: str, mode: str) -> None:
        super().__init__(upstream, FaultPlan())
        self.mode = mode
        self.seen: list[Seen] = []
        self._seen_lock = threading.Lock()

    def adjust(self, method: str, target: str, headers: list[tuple[str, ...]]
               ) -> tuple[list[tuple[str, ...]], bytes | None]:
        conditional = tuple(sorted({h[0].strip().lower() for h in headers} & set(CONDITIONAL)))
        with self._seen_lock:
            self.seen.append(Seen(method, request_key(target), conditional))
        if conditional and self.mode == "501":
            body = s3_error_xml("NotImplemented", "A header you provided implies functionality that is not implemented")
            return headers, (b"HTTP/1.1 501 Not Implemented\r\nContent-Type: application/xml\r\nConnection: close\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        if self.mode == "strip":
            headers = [h for h in headers if h[0].strip().lower() not in CONDITIONAL]
        return headers, None

    def conditional(self, start: int = 0) -> list[Seen]:
        """The requests since `start` that carried If-Match or If-None-Match (before any rewrite)."""
        with self._seen_lock:
            return [s for s in self.seen[start:] if s.conditional]


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[S3Server]:
    """A second SeaweedFS, without credentials: it checks no signature."""
    need("weed")
    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs-plain"), tls_files, credentials=False) as server:
        yield server


@pytest.fixture
def plain_bucket(plain_server: S3Server, request: pytest.FixtureRequest) -> str:
    stem = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())
    name = f"c-{stem[:40].strip('-')}-{id(request) % 10**6}"
    plain_server.create_bucket(name)
    return name


@pytest.fixture(params=["strip", "501"])
def liar(request: pytest.FixtureRequest, plain_server: S3Server) -> Iterator[HeaderProxy]:
    proxy = HeaderProxy(plain_server.endpoint, request.param)
    yield proxy
    proxy.close()


def tree_through(proxy: HeaderProxy, server: S3Server, bucket: str, tmp: Path, *, conditional: bool) -> Tree:
    """test_publisher's tree whose tree.yml points at the proxy; the test's own client goes direct."""
    t = Tree(dataclasses.replace(server, endpoint=proxy.url), bucket, tmp)
    t.client = server.client()
    if not conditional:
        t.conf.write_text(t.conf.read_text().replace("checksum_mode: when_required}",
                                                     "checksum_mode: when_required, conditional_writes: false}"))
    return t


def built(tmp: Path, serial: str = "20260101_0000", pad_mib: int = 0) -> Path:
    """A build output folder; `pad_mib` makes the rootfs big enough for a multipart upload."""
    out = tmp / "built" / serial
    if not out.exists():
        make_image(out, kind="squashfs", serial=serial, description=f"busybox {serial}")
        with (out / "rootfs.squashfs").open("ab") as fh:
            fh.write(os.urandom(pad_mib * 1024 * 1024))
    return out


def probe_cleaned(proxy: HeaderProxy) -> bool:
    """Every probe object the store created was deleted: the last request on each is a DELETE."""
    last: dict[str, str] = {}
    for seen in proxy.seen:
        if seen.key.startswith(PROBE_PREFIX):
            last[seen.key.split("?")[0]] = seen.method
    return bool(last) and set(last.values()) == {"DELETE"}


def verdict_of(t: Tree) -> dict[str, Any]:
    """The store's verdict the probe recorded in the bucket (.ssb-s3/store.json)."""
    return dict(json.loads(t.client.get_object(Bucket=t.bucket, Key=VERDICT_KEY)["Body"].read()))


def refusal(out: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exit 1 and exactly one `error:` line, no traceback."""
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


# --------------------------------------------------------------------------------------------
# (a), (b): a store that ignores the headers, or answers 501 to them, is refused before any write


def test_publish_refuses_a_store_without_conditional_writes(liar: HeaderProxy, plain_server: S3Server,
                                                           plain_bucket: str, tmp_path: Path) -> None:
    t = tree_through(liar, plain_server, plain_bucket, tmp_path, conditional=True)
    t.upload("busybox/amd64", "20260101_0000")
    before = t.key_set()
    line = refusal(t.cli("publish", "--refresh-manifests"))
    assert FIX in line and "If-None-Match/If-Match" in line and "single publisher" in line, line
    # nothing published: no index, no catalog, no lease, no probe left; only the store's verdict
    assert t.key_set() == before | {VERDICT_KEY}
    assert all(s.key.startswith(PROBE_PREFIX) for s in liar.conditional())  # only the probe asked
    assert probe_cleaned(liar)
    assert verdict_of(t)["create"] == ("ignored" if liar.mode == "strip" else "unsupported")
    # the verdict is remembered: a second run refuses at once, with no probe and no conditional request
    start = len(liar.seen)
    line = refusal(t.cli("publish", "--refresh-manifests"))
    assert FIX in line, line
    assert [s for s in liar.seen[start:] if s.key.startswith(PROBE_PREFIX)] == [] and liar.conditional(start) == []


def test_build_product_refuses_a_store_without_conditional_writes(liar: HeaderProxy, plain_server: S3Server,
                                                                 plain_bucket: str, tmp_path: Path) -> None:
    t = tree_through(liar, plain_server, plain_bucket, tmp_path, conditional=True)
    line = refusal(t.cli("build-product", PRODUCT, "--from-dir", str(built(tmp_path))))
    assert FIX in line and "If-None-Match/If-Match" in line, line
    assert t.key_set() == {VERDICT_KEY}  # no marker, no file, no ssb.json, no probe left over
    assert all(s.key.startswith(PROBE_PREFIX) for s in liar.conditional())  # only the probe asked
    assert probe_cleaned(liar)


# --------------------------------------------------------------------------------------------
# (c): conditional_writes: false works through either store and sends no conditional header


def test_build_product_without_conditional_writes_sends_none(liar: HeaderProxy, plain_server: S3Server,
                                                             plain_bucket: str, tmp_path: Path) -> None:
    t = tree_through(liar, plain_server, plain_bucket, tmp_path, conditional=False)
    out = t.cli("build-product", PRODUCT, "--from-dir", str(built(tmp_path, pad_mib=6)), "--version", "20260101_0000",
                "--part-size", "5", "--no-publish")
    assert out.returncode == 0, out.stderr
    # the rootfs went up in parts: CompleteMultipartUpload (POST ?uploadId=) was sent, without If-None-Match
    assert any(s.method == "POST" and "rootfs.squashfs?uploadId=" in s.key for s in liar.seen)
    keys = t.key_set()
    assert "busybox/amd64/ssb.json" in keys and "busybox/amd64/20260101_0000/rootfs.squashfs" in keys
    assert not any(k.endswith(".ssb-upload.json") for k in keys)
    assert liar.conditional() == []  # marker, files, marker updates, ssb.json: all without
    # the same files again: found there (HEAD), compared, not overwritten; still no conditional header
    again = t.cli("build-product", PRODUCT, "--from-dir", str(built(tmp_path)), "--version", "20260101_0000",
                  "--part-size", "5", "--no-publish")
    assert again.returncode == 1 and "already exists" in again.stderr, again.stderr
    assert liar.conditional() == []


def test_publish_without_conditional_writes_sends_none_for_the_lease(
        liar: HeaderProxy, plain_server: S3Server, plain_bucket: str, tmp_path: Path) -> None:
    """The lease and the version folders: what lease.py and ingest.py send (build-product then publish)."""
    t = tree_through(liar, plain_server, plain_bucket, tmp_path, conditional=False)
    out = t.cli("build-product", PRODUCT, "--from-dir", str(built(tmp_path)))
    assert out.returncode == 0, out.stderr
    assert PRODUCT in t.served()["products"]
    lease = [s for s in liar.seen if s.key == LEASE_KEY]
    assert {s.method for s in lease} >= {"PUT", "GET", "DELETE"}  # it was taken and released
    assert [s for s in liar.conditional() if s.key == LEASE_KEY or s.key.startswith("busybox/amd64/2026")] == []
    assert LEASE_KEY not in t.key_set()


@pytest.mark.parametrize("mib", [0, 6], ids=["single-put", "multipart"])
def test_create_only_upload_without_conditional_writes_checks_with_head(
        liar: HeaderProxy, plain_server: S3Server, plain_bucket: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, mib: int) -> None:
    """put_new with storage.conditional_writes: false: no If-None-Match, a HEAD instead; an existing key is
    kept."""
    plain_server.use_credentials(monkeypatch)
    store = open_store(f"s3://{plain_bucket}", StorageConfig(
        endpoint_url=liar.url, region="us-east-1", addressing_style="path", checksum_mode="when_required",
        conditional_writes=False))
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(os.urandom(mib * 1024 * 1024 + 100))
    second.write_bytes(os.urandom(mib * 1024 * 1024 + 100))
    args: dict[str, Any] = {"feed": lambda chunk: None, "digest": lambda: "0" * 64, "content_type": "text/plain",
                            "cache_control": "no-cache", "part_size": 5 * 1024 * 1024}
    store.put_new("v/file", first, **args)
    with pytest.raises(PreconditionFailed, match="already exists"):
        store.put_new("v/file", second, **args)
    client = plain_server.client()
    assert client.get_object(Bucket=plain_bucket, Key="v/file")["Body"].read() == first.read_bytes()
    assert client.list_multipart_uploads(Bucket=plain_bucket).get("Uploads", []) == []  # aborted
    assert liar.conditional() == []
    heads = [s for s in liar.seen if s.method == "HEAD" and s.key == "v/file"]
    # one before each commit (PUT, or CompleteMultipartUpload); a multipart upload also checks before
    # it starts, so the second one is refused before any part is sent
    assert len(heads) == (2 if mib == 0 else 3)
    assert sum(1 for s in liar.seen if s.method == "POST" and s.key.endswith("?uploads")) == (0 if mib == 0 else 1)


def test_publish_without_conditional_writes_sends_none_at_all(
        liar: HeaderProxy, plain_server: S3Server, plain_bucket: str, tmp_path: Path) -> None:
    t = tree_through(liar, plain_server, plain_bucket, tmp_path, conditional=False)
    t.upload("busybox/amd64", "20260101_0000")
    t.upload("busybox/tarxz", "20260101_0000", kind="tarxz")
    out = t.cli("publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    t.upload("busybox/amd64", "20260102_0000")
    out = t.cli("publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    assert liar.conditional() == [], [s.key for s in liar.conditional()]


# --------------------------------------------------------------------------------------------
# (d): the real server honours them: the probe passes once per store, and its verdict is cached


def _counting(store: S3Store) -> list[tuple[str, str]]:
    """(method, key) of every request the store's client sends."""
    sent: list[tuple[str, str]] = []

    def before_send(request: Any, **kwargs: Any) -> None:
        sent.append((request.method, request_key(request.url)))

    store.client.meta.events.register("before-send.s3.*", before_send)
    return sent


def test_probe_passes_on_the_real_server_once(s3_server: S3Server, bucket: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    s3_server.use_credentials(monkeypatch)
    t = Tree(s3_server, bucket, tmp_path)
    tree = load_config(t.conf)
    # as build-product does: one store for the ingest, another for the publish, same bucket
    ingest_store, publish_store = (open_store(f"s3://{bucket}", tree.storage) for _ in range(2))
    assert isinstance(ingest_store, S3Store) and isinstance(publish_store, S3Store)
    sent_ingest, sent_publish = _counting(ingest_store), _counting(publish_store)
    files = {p.name: p for p in make_image(tmp_path / "b", kind="squashfs")}
    ingest_version(ingest_store, tree, tree.product(PRODUCT), files, version="20260101_0000", quiet=True)
    report = publish(tree, publish_store)
    assert report.published and report.index_written
    with Lease(publish_store, ttl=30, timeout=5):  # a third conditional start: no probe again
        pass
    probes = [r for r in sent_ingest + sent_publish if r[1].startswith(PROBE_PREFIX)]
    assert [r for r in sent_ingest if r[1].startswith(PROBE_PREFIX)] == probes  # the first user probed
    assert probes[-2:] == [("DELETE", k) for _, k in probes[-2:]]  # the probe objects, deleted
    assert not any(k.startswith(PROBE_PREFIX) for k in t.key_set())
    verdict = verdict_of(t)
    assert (verdict["create"], verdict["replace"], verdict["multipart_create"]) == ("honoured", "quoted", "honoured")
    assert "SeaweedFS" in verdict["identity"]
    # another process (the next run): one GET of the cached verdict, no probe
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from ssb_s3.config import load_config; "
         "from ssb_s3.storage.backends import open_store; tree = load_config(sys.argv[1]); "
         "store = open_store(sys.argv[2], tree.storage); store.ensure_conditional_writes(); "
         "print(store.verdict().replace)", str(t.conf), f"s3://{bucket}"],
        capture_output=True, text=True, env={**os.environ, **s3_server.credentials}, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "quoted", out.stderr
    assert not any(k.startswith(PROBE_PREFIX) for k in t.key_set())
