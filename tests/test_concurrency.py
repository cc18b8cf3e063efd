"""Publishers, manifest writers and a reader at once, against a real S3 server (SeaweedFS).

Why: the lease, the content-addressed catalog and the conditional index flip only prove
themselves when publishers race each other and the builders that add versions while a client
keeps reading. A client must never see a broken tree, and no version a builder added may be lost.
Rounds: SSB_CONCURRENCY_ROUNDS (default 16; on Ceph RGW SSB_CONCURRENCY_ROUNDS_RGW, default 12). CI runs the
defaults (about 3.2 s a round on SeaweedFS, 128 publishes); a longer race is one environment variable away.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from realparts import S3Server, make_image

from ssb_s3.commands.publish import PublishOptions, publish
from ssb_s3.commands.verify import verify
from ssb_s3.config import ProductConfig, StorageConfig, TreeConfig, parse_config
from ssb_s3.core.catalog import INDEX_NAME
from ssb_s3.errors import NotFound, SSBError
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.backends.s3 import S3Store
from ssb_s3.storage.store import ObjectInfo, Store
from ssb_s3.storage.tree import refresh_manifest
from ssb_s3.vocabulary.layout import INDEX_KEY

ROUNDS = int(os.environ.get("SSB_CONCURRENCY_ROUNDS", "16"))
# The second store (Ceph RGW) runs the same race shorter: what it adds is its own conditional forms
# (If-Match unquoted) under contention, which a few rounds exercise; the long race stays on SeaweedFS.
SECOND_STORE_ROUNDS = int(os.environ.get("SSB_CONCURRENCY_ROUNDS_RGW", "12"))
PUBLISHERS = 8
PRODUCTS = 4
DEADLINE = 420.0  # seconds for all threads together: a hang fails the test instead of the suite
FIRST = datetime(2026, 1, 2)


def version_name(round_no: int) -> str:
    """One new version per round, a minute apart, in the seed's YYYYMMDD_HHMM form."""
    return (FIRST + timedelta(minutes=round_no)).strftime("%Y%m%d_%H%M")


def make_tree(server: S3Server) -> TreeConfig:
    """~4 products keeping every version; a grace longer than any read keeps old catalogs a while."""
    return parse_config({
        "storage": {"endpoint_url": server.endpoint, "region": "us-east-1",
                    "addressing_style": "path", "checksum_mode": "when_required"},
        # Not 0: with grace 0 a catalog is deleted the moment it stops being current, and a reader
        # that read the previous index just before could find it gone (by design, rare in practice).
        # Short: every publish reads the catalogs of the grace window named by the index history.
        "grace": "10s",
        "lease_ttl": "60s",
        "products": [{
            "name": f"conc:{n}:amd64:default", "arch": "amd64", "release": f"{n}.0", "os": "Busybox",
            "directory": f"conc/p{n}", "days": 10_000, "aliases": [f"conc/p{n}"],
        } for n in range(PRODUCTS)],
    }, "tree.yml")  # fmt: skip


def open_s3(server: S3Server, bucket: str) -> S3Store:
    """Each thread its own store and client, as separate processes would have."""
    store = open_store(f"s3://{bucket}", StorageConfig(endpoint_url=server.endpoint, region="us-east-1",
                                                       addressing_style="path", checksum_mode="when_required"))
    assert isinstance(store, S3Store)
    return store


def add_version(store: Store, tree: TreeConfig, product: ProductConfig, version: str, workdir: Path) -> None:
    """What a builder does: upload a complete, unique version folder, then refresh ssb.json."""
    folder = workdir / product.directory / version
    files = make_image(folder, kind="squashfs", serial=version, release=product.release,
                       description=f"{product.name} {version}")
    for path in files:
        with path.open("rb") as fh:
            store.put(f"{tree.product_dir(product)}/{version}/{path.name}", fh,
                         content_type="application/octet-stream", cache_control=tree.cache_control.artifacts)
        path.unlink()
    refresh_manifest(store, tree, product)


@dataclass
class Reader:
    """Reads the tree as a client does (index -> catalog -> files) and records anything broken."""

    store: Store
    polls: int = 0
    broken: list[str] = field(default_factory=list)
    seen: dict[str, set[str]] = field(default_factory=dict)  # product -> versions ever served
    catalogs: set[str] = field(default_factory=set)

    def poll(self) -> None:
        self.polls += 1
        for problem in self.observe():
            self.broken.append(f"poll {self.polls}: {problem}")

    def observe(self) -> list[str]:
        try:
            index = json.loads(self.store.read(INDEX_KEY))
            path = index["index"][INDEX_NAME]["path"]
            listed = sorted(index["index"][INDEX_NAME]["products"])
        except NotFound:
            return ["index.json is missing"]
        except (ValueError, KeyError, TypeError) as exc:
            return [f"index.json unparsable: {exc!r}"]
        try:
            catalog = json.loads(self.store.read(path))
        except NotFound:
            return [f"{path}: named by index.json but missing"]
        except ValueError as exc:
            return [f"{path}: unparsable: {exc!r}"]
        self.catalogs.add(path)
        problems = [] if isinstance(catalog.get("products"), dict) else [f"{path}: no products mapping"]
        if listed != sorted(catalog["products"]):
            problems.append(f"index.json lists {listed}, {path} has {sorted(catalog['products'])}")
        for name, before in sorted(self.seen.items()):
            lost = before - set(catalog["products"].get(name, {}).get("versions", {}))
            if lost:
                problems.append(f"{path}: product {name} lost versions served before: {sorted(lost)}")
        items: dict[str, int] = {}
        newest: list[str] = []
        for name, product in catalog["products"].items():
            versions = product["versions"]
            self.seen.setdefault(name, set()).update(versions)
            for vname, version in versions.items():
                for item in version["items"].values():
                    items[item["path"]] = item["size"]
                    if vname == max(versions):
                        newest.append(item["path"])
        listing = {o.key: o.size for o in self.store.list()}  # after the catalog: all its files must be there
        for item_path, size in sorted(items.items()):
            if listing.get(item_path) != size:
                problems.append(f"{item_path}: listed with {listing.get(item_path)} bytes, {path} says {size}")
        for item_path in sorted(set(newest)):  # what a client downloads first: really HEAD it
            info = self.store.head(item_path)
            if info is None or info.size != items[item_path]:
                problems.append(f"{item_path}: HEAD gives {info}, {path} says {items[item_path]} bytes")
        return problems


@dataclass
class Outcomes:
    """What every thread did; shared between threads (list.append is atomic)."""

    publishes: list[float] = field(default_factory=list)  # seconds each successful publish took
    written_index: list[bool] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # SSBError messages
    writes: dict[str, list[str]] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)  # anything that is not an SSBError


def run_threads(targets: list[Callable[[], None]], outcomes: Outcomes, deadline: float) -> list[str]:
    """Start every target at once; return the names of threads still running at the deadline."""

    def guard(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # recorded, asserted on in the test
                outcomes.crashes.append(f"{threading.current_thread().name}: {exc!r}")

        return run

    threads = [threading.Thread(target=guard(t), name=getattr(t, "__name__", "worker"), daemon=True)
               for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    return [t.name for t in threads if t.is_alive()]


def test_publishers_writers_and_a_reader_at_once(store_server: S3Server, store_bucket: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """8 publishers and 4 manifest writers for different products race for ROUNDS rounds
    (SECOND_STORE_ROUNDS on RGW) while a reader polls; the reader never sees a broken tree, and every
    version written gets served."""
    store_server.use_credentials(monkeypatch)
    rounds = ROUNDS if store_server.kind == "seaweedfs" else SECOND_STORE_ROUNDS
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    tree = make_tree(store_server)
    setup = open_s3(store_server, store_bucket)
    for product in tree.products:  # a first published tree, so that the reader has something to read
        add_version(setup, tree, product, "20260101_0000", tmp_path)
    publish(tree, setup, PublishOptions(lock_timeout=120))

    outcomes = Outcomes(writes={p.name: ["20260101_0000"] for p in tree.products})
    reader = Reader(open_s3(store_server, store_bucket))
    stop = threading.Event()

    def publisher(seed: int) -> Callable[[], None]:
        def run() -> None:
            store = open_s3(store_server, store_bucket)
            for _ in range(rounds):
                publish_once(store)

        run.__name__ = f"publisher-{seed}"
        return run

    def publish_once(store: Store) -> None:
        started = time.monotonic()
        try:
            report = publish(tree, store, PublishOptions(lock_timeout=120))
        except SSBError as exc:
            outcomes.refused.append(str(exc) + "".join(f"\n  - {p}" for p in getattr(exc, "problems", [])))
            return
        outcomes.publishes.append(time.monotonic() - started)
        outcomes.written_index.append(report.index_written)

    def writer(product: ProductConfig) -> Callable[[], None]:
        def write() -> None:
            store = open_s3(store_server, store_bucket)
            for round_no in range(rounds):
                version = version_name(round_no)
                add_version(store, tree, product, version, tmp_path)
                outcomes.writes[product.name].append(version)

        write.__name__ = f"writer-{product.directory}"
        return write

    def read() -> None:
        while not stop.is_set():
            reader.poll()
            stop.wait(0.05)

    started = time.monotonic()
    reading = threading.Thread(target=read, name="reader", daemon=True)
    reading.start()
    stuck = run_threads([*(publisher(n) for n in range(PUBLISHERS)), *(writer(p) for p in tree.products)],
                        outcomes, started + DEADLINE)
    racing = time.monotonic() - started
    stop.set()
    reading.join(timeout=60)
    assert not stuck, f"still running after {DEADLINE:.0f}s: {stuck}"
    assert not reading.is_alive(), "the reader did not stop"

    final = publish(tree, setup, PublishOptions(lock_timeout=120))
    reader.poll()  # one last look at the final tree
    catalog = json.loads(setup.read(final.catalog_key))
    report = verify(setup, hashes=True)
    total = time.monotonic() - started
    figures = (f"rounds={rounds} publishes={len(outcomes.publishes)} (index flipped "
               f"{sum(outcomes.written_index)}) refused={len(outcomes.refused)} (lease starvation) "
               f"writes={sum(len(v) - 1 for v in outcomes.writes.values())} reader_polls={reader.polls} "
               f"catalogs_seen={len(reader.catalogs)} racing={racing:.1f}s total={total:.1f}s "
               f"per_round={racing / max(rounds, 1):.2f}s max_publish={max(outcomes.publishes, default=0):.1f}s")
    print(figures)

    assert not outcomes.crashes, outcomes.crashes
    assert reader.broken == [], "\n".join(reader.broken[:20])
    assert reader.polls >= max(10, rounds), figures
    for name, versions in outcomes.writes.items():
        missing = sorted(set(versions) - set(catalog["products"][name]["versions"]))
        assert not missing, f"{name}: written but not served: {missing}"
    assert report.problems == [], report.problems
    assert report.versions == sum(len(v) for v in outcomes.writes.values())
    # Every publish gets through, but for lease starvation: the lease has no queue, and a waiter
    # backing off up to 1 s keeps losing to publishers that just started polling (measured: waits
    # of 50 s at 20 rounds, > 120 s at 50 rounds). Liveness, not safety: the tree stays valid.
    unexpected = [r for r in outcomes.refused if "lease.json is held" not in r]
    assert not unexpected, unexpected
    assert len(outcomes.publishes) + len(outcomes.refused) == PUBLISHERS * rounds


class BuilderAfterListing(S3Store):
    """A store whose first full listing lets a builder finish a version right after it: the
    publisher's listing then predates a manifest it may read later."""

    def __init__(self, bucket: str, client: Any, builder: Callable[[], None]) -> None:
        super().__init__(bucket, "", client)
        self.builder: Callable[[], None] | None = builder

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        objects = list(super().list(prefix))
        if prefix == "" and self.builder is not None:
            builder, self.builder = self.builder, None
            builder()
        yield from objects


def test_a_builder_finishing_during_a_publish_is_no_problem(s3_server: S3Server, bucket: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic form of a race the threads above hit now and then: a manifest that names
    files uploaded after the publisher's listing must not be refused as 'does not exist'."""
    s3_server.use_credentials(monkeypatch)
    tree = make_tree(s3_server)
    builder = open_s3(s3_server, bucket)
    for product in tree.products:
        add_version(builder, tree, product, "20260101_0000", tmp_path)
    publish(tree, builder, PublishOptions())
    last = tree.products[-1]  # read after the listing if manifests and listing interleave

    racing = BuilderAfterListing(bucket, builder.client,
                                 lambda: add_version(builder, tree, last, "20260101_0100", tmp_path))
    publish(tree, racing, PublishOptions(lock_timeout=30))
    assert racing.builder is None, "the publisher never listed the whole tree"
    assert verify(builder, hashes=True).problems == []
    publish(tree, builder, PublishOptions())
    catalog = json.loads(builder.read(json.loads(builder.read(INDEX_KEY))["index"][INDEX_NAME]["path"]))
    assert "20260101_0100" in catalog["products"][last.name]["versions"]


def test_the_reader_notices_a_broken_tree(s3_server: S3Server, bucket: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The race test is only as good as its reader: it must see a missing or resized file, a
    catalog that is gone, and versions that disappear."""
    s3_server.use_credentials(monkeypatch)
    tree = make_tree(s3_server)
    store = open_s3(s3_server, bucket)
    for product in tree.products:
        add_version(store, tree, product, "20260101_0000", tmp_path)
    publish(tree, store, PublishOptions())
    reader = Reader(store)
    reader.poll()
    assert reader.broken == [] and reader.seen

    index = json.loads(store.read(INDEX_KEY))
    path = index["index"][INDEX_NAME]["path"]
    catalog = json.loads(store.read(path))
    items = catalog["products"][tree.products[0].name]["versions"]["20260101_0000"]["items"]
    gone, resized = sorted({i["path"] for i in items.values()})
    store.delete(gone)
    store.put(resized, b"short", content_type="application/octet-stream")
    reader.poll()
    assert any(gone in b for b in reader.broken) and any(resized in b for b in reader.broken), reader.broken

    del catalog["products"][tree.products[1].name]
    store.put("streams/v1/images-rewritten.json", json.dumps(catalog).encode())
    index["index"][INDEX_NAME]["path"] = "streams/v1/images-rewritten.json"
    store.put(INDEX_KEY, json.dumps(index).encode())
    reader.broken.clear()
    reader.poll()
    assert any("lost versions" in b for b in reader.broken), reader.broken
    store.delete("streams/v1/images-rewritten.json")
    reader.broken.clear()
    reader.poll()
    assert reader.broken == ["poll 4: streams/v1/images-rewritten.json: named by index.json but missing"]
