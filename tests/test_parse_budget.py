"""Issue 20 point 8: memory per run, not per document.

Every JSON document a run parses (an upstream's index and catalogs, a served tree's, every
ssb.json from a prefix_path or a source) is charged to one budget per run at a cost estimated from
its bytes BEFORE it is parsed (ssb_s3.storage.httpread.parse_cost, ParseBudget): the document that
would pass the budget stops the run with one line naming it and `--max-parse-memory`, nothing
published changes, and the run's peak RSS stays bounded however many documents the upstream names.

The estimate is checked against what json.loads really takes (tracemalloc) for the shapes that
cost the most per byte. The CLI runs as users run it, in a child whose own peak RSS is measured
(tests/measure.py), against real loopback HTTPS servers (realparts.serve_https_static) serving
hostile trees; the small budgets keep the documents small, and one test runs at the default
settings against the issue's five 63 MiB catalogs.
"""

from __future__ import annotations

import json
import os
import shutil
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from measure import Run, measured
from realparts import TlsFiles, serve_https_static
from test_hardening_remote import PRODUCT, Target, one_error_line
from test_mirror import write_upstream

from ssb_s3.errors import BudgetSpent
from ssb_s3.storage import httpread

# Shapes that cost the most memory per byte parsed (measured: module docstring of httpread).
SHAPES: dict[str, Callable[[int], bytes]] = {
    "empty dicts": lambda n: b"[" + b",".join([b"{}"] * (n // 3)) + b"]",
    "empty lists": lambda n: b"[" + b",".join([b"[]"] * (n // 3)) + b"]",
    "nested lists": lambda n: b"[" + b",".join([b"[" * 40 + b"]" * 40] * (n // 81)) + b"]",
    "nested dicts": lambda n: b"[" + b",".join([b'{"":' * 20 + b"0" + b"}" * 20] * (n // 102)) + b"]",
    "one-key dicts": lambda n: b"[" + b",".join([b'{"a":0}'] * (n // 8)) + b"]",
    "dicts of empty dicts": lambda n: b"[" + b",".join([b'{"a":{}}'] * (n // 9)) + b"]",
    "new keys": lambda n: b"{" + b",".join(b'"%x":0' % i for i in range(n // 9)) + b"}",
    "short strings": lambda n: b"[" + b",".join([b'"ab"'] * (n // 5)) + b"]",
    "non-ASCII strings": lambda n: b"[" + b",".join(['"Ā"'.encode()] * (n // 5)) + b"]",
    "astral strings": lambda n: b"[" + b",".join(['"😀"'.encode()] * (n // 7)) + b"]",
    "escaped astral strings": lambda n: b"[" + b",".join([b'"\\ud83d\\ude00ab"'] * (n // 17)) + b"]",
    "one long astral string": lambda n: '["😀'.encode() + b"a" * n + b'"]',
    "floats": lambda n: b"[" + b",".join(b"%d.5" % i for i in range(n // 8)) + b"]",
    "ints": lambda n: b"[" + b",".join(b"%d" % (i + 1000) for i in range(n // 7)) + b"]",
}


def legit_catalog(products: int) -> bytes:
    """A catalog shaped as images.linuxcontainers.org's: 3 versions a product, 6 items a version."""
    items = {f"{name}": {"ftype": name, "path": f"images/p/{name}", "size": 123456789, "sha256": "a" * 64,
                         **({"combined_squashfs_sha256": "b" * 64, "combined_sha256": "c" * 64}
                            if name.endswith("tar.xz") else {})}
             for name in ("lxd.tar.xz", "incus.tar.xz", "root.squashfs", "disk.qcow2", "root.tar.xz", "meta.tar.xz")}
    catalog = {"content_id": "images", "datatype": "image-downloads", "format": "products:1.0", "products": {
        f"distro{i}:release:amd64:default": {
            "arch": "amd64", "os": "Distro", "release": "release", "release_title": "release", "variant": "default",
            "aliases": f"distro{i}/release", "versions": {f"2026010{v}_07:42": {"items": items} for v in range(3)}}
        for i in range(products)}}
    return json.dumps(catalog).encode()


def peak_of_parse(data: bytes) -> int:
    """What json.loads(data) allocates at its peak (tracemalloc), plus the bytes it reads."""
    tracemalloc.start()
    try:
        json.loads(data)
        return tracemalloc.get_traced_memory()[1] + len(data)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_estimate_is_over_what_parsing_takes_for_every_costly_shape(shape: str) -> None:
    data = SHAPES[shape](300_000)
    peak, estimate = peak_of_parse(data), httpread.parse_cost(data)
    assert estimate >= peak, (shape, estimate / peak)
    assert estimate <= 9 * peak, (shape, estimate / peak)  # and an upper bound within a small factor


def test_the_estimate_of_a_real_catalog_is_within_twice_what_parsing_takes() -> None:
    for data in (legit_catalog(60), json.dumps(json.loads(legit_catalog(60)), indent=2).encode()):
        peak, estimate = peak_of_parse(data), httpread.parse_cost(data)
        assert peak <= estimate <= 2 * peak, estimate / peak


def test_a_document_over_what_is_left_is_refused_before_it_is_parsed() -> None:
    dense = SHAPES["empty dicts"](1 << 20)  # about 26 MB parsed
    cost = httpread.parse_cost(dense)
    budget = httpread.new_run(cost + cost // 2, "test --max-parse-memory")
    try:
        assert httpread.parse_json(dense, "first") == [{}] * len(dense[1:-1].split(b","))
        assert budget.spent == cost
        tracemalloc.start()
        try:
            with pytest.raises(BudgetSpent) as refused:
                httpread.parse_json(dense, "https://up.example/streams/v1/second.json")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < len(dense), peak  # counted, not parsed
        assert budget.spent == cost
        line = str(refused.value)
        assert line.startswith("https://up.example/streams/v1/second.json: not parsed: it would take about ")
        assert line.endswith("(test --max-parse-memory)") and "\n" not in line
        fresh = httpread.new_run()  # the next run (a hook's next publish) starts from nothing
        assert fresh.limit == budget.limit and fresh.spent == 0
        httpread.parse_json(dense, "again")
    finally:
        httpread.new_run(httpread.MAX_PARSE_MEMORY, "ssb_s3.storage.httpread.MAX_PARSE_MEMORY")


# --------------------------------------------------------------------------------------------
# Through the CLI, against real loopback HTTPS servers


def dense_catalog(size: int) -> bytes:
    """A products:1.0 catalog (no product) padded to about `size` bytes with empty objects, the
    costliest shape per byte that an upstream can serve in one valid catalog."""
    return b'{"format": "products:1.0", "content_id": "images", "products": {}, "x": [' + \
        b"{}," * (size // 3) + b"{}]}"


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def name_catalogs(streams: Path, catalog: bytes, count: int) -> list[str]:
    """Write `count` copies of `catalog` and an index.json naming them all (and nothing else)."""
    paths = [f"streams/v1/c{i}.json" for i in range(1, count + 1)]
    for path in paths:
        (streams.parent.parent / path).unlink(missing_ok=True)
    (streams.parent.parent / paths[0]).write_bytes(catalog)
    for path in paths[1:]:  # the same bytes (written once: the default test's are 63 MiB)
        os.link(streams.parent.parent / paths[0], streams.parent.parent / path)
    entries = {f"c{i}": {"datatype": "image-downloads", "format": "products:1.0", "path": path,
                         "products": [PRODUCT]} for i, path in enumerate(paths, 1)}
    (streams / "index.json").write_text(json.dumps({"format": "index:1.0", "index": entries}))
    return paths


def budget_for(documents: float, catalog: bytes) -> int:
    """A run budget that pays for `documents` such catalogs (and the run's small documents)."""
    return int(documents * httpread.parse_cost(catalog))


def _mirror(target: Path, url: str, tls: TlsFiles, *args: str) -> Run:
    return measured("-t", str(target), "mirror", url, *args, env={"SSL_CERT_FILE": str(tls.ca_cert)},
                    cwd=target.parent)


def test_mirror_of_an_index_naming_five_catalogs_stops_at_the_run_budget(tmp_path: Path, tls_files: TlsFiles) -> None:
    upstream, target = tmp_path / "up", tmp_path / "target"
    write_upstream(upstream, [(PRODUCT, "amd64", "1.36", "default", ("20260101_0000",))])
    with serve_https_static(upstream, tls_files) as url:
        first = _mirror(target, url, tls_files)
        assert first.returncode == 0, first.stderr
        before = files_of(target)
        catalog = dense_catalog(100_000)  # about 8 MiB estimated, 2.6 MB parsed
        paths = name_catalogs(upstream / "streams/v1", catalog, 5)
        out = _mirror(target, url, tls_files, "--max-parse-memory", str(budget_for(2.5, catalog)))
    line = one_error_line(out)
    assert line.startswith(f"error: {url}/{paths[2]}: not parsed: it would take about "), line
    assert line.endswith("(mirror --max-parse-memory)"), line
    assert files_of(target) == before  # nothing published changed
    assert out.peak_mb < 150, out.peak_mb


@pytest.fixture
def served(tmp_path: Path) -> tuple[Target, dict[str, bytes]]:
    """A tree published to a folder, and its files."""
    target = Target(tmp_path)
    target.add_version()
    assert target.cli("publish", "--refresh-manifests").returncode == 0
    return target, files_of(target.local)


@pytest.mark.parametrize("command", ["verify", "list"])
def test_served_tree_reads_of_five_catalogs_stop_at_the_run_budget(served: tuple[Target, dict[str, bytes]],
                                                                  tls_files: TlsFiles, command: str) -> None:
    target, _ = served
    catalog = dense_catalog(100_000)
    paths = name_catalogs(target.local / "streams/v1", catalog, 5)
    with serve_https_static(target.local, tls_files) as url:
        out = measured(command, "--base-url", url, "--max-parse-memory", str(budget_for(2.5, catalog)),
                       env={"SSL_CERT_FILE": str(tls_files.ca_cert)}, cwd=target.tmp)
    line = one_error_line(out)
    assert line.startswith(f"error: {url}/{paths[2]}: not parsed: it would take about "), line
    assert line.endswith(f"({command} --max-parse-memory)"), line
    assert out.peak_mb < 150, out.peak_mb


PREFIX_PATH_PRODUCTS = 4


def test_publish_of_prefix_path_products_stops_at_the_run_budget(served: tuple[Target, dict[str, bytes]],
                                                                tls_files: TlsFiles, tmp_path: Path) -> None:
    target, before = served
    ssb = dense_catalog(100_000)  # valid JSON, whatever it holds: the budget is charged before any check
    hostile = tmp_path / "hostile"
    for i in range(PREFIX_PATH_PRODUCTS):
        (hostile / f"ns/p{i}").mkdir(parents=True)
        (hostile / f"ns/p{i}/ssb.json").write_bytes(ssb)
    tree = target.conf.read_text()
    with serve_https_static(hostile, tls_files) as url:
        target.conf.write_text(tree + "".join(
            f"  - {{name: 'p{i}:1:amd64:default', arch: amd64, release: '1', os: P, directory: p{i}, "
            f"prefix_path: '{url}/ns'}}\n" for i in range(PREFIX_PATH_PRODUCTS)))
        runs = [measured("-c", str(target.conf), "-t", str(target.local), "publish", *keep_going,
                         "--max-parse-memory", str(budget_for(2.5, ssb)),
                         env={"SSL_CERT_FILE": str(tls_files.ca_cert)}, cwd=target.tmp)
                for keep_going in ([], ["--keep-going"])]  # as the hooks publish: the budget is still the run's
    for out in runs:
        line = one_error_line(out)
        assert line.startswith(f"error: {url}/ns/p"), line
        assert "/ssb.json: not parsed: it would take about " in line and \
            line.endswith("(publish --max-parse-memory)"), line
        assert out.peak_mb < 150, out.peak_mb
    assert files_of(target.local) == before  # nothing published changed


def test_the_issues_five_63_mib_catalogs_at_the_default_budget(tmp_path: Path, tls_files: TlsFiles) -> None:
    """The issue's case: an index naming five catalogs of 63 MiB (a MemoryError before). At the
    default budget, two real-shaped ones are parsed (about 300 MB each) and the third is refused;
    one of small containers (5 GB estimated) is refused before it is parsed."""
    upstream, target = tmp_path / "up", tmp_path / "target"
    streams = upstream / "streams/v1"
    streams.mkdir(parents=True)
    one = legit_catalog(1)
    real = legit_catalog(63 * (1 << 20) // len(one))
    assert 60 << 20 < len(real) < 64 << 20
    assert 2 * httpread.parse_cost(real) < httpread.MAX_PARSE_MEMORY < 3 * httpread.parse_cost(real)
    paths = name_catalogs(streams, real, 5)
    with serve_https_static(upstream, tls_files) as url:
        out = _mirror(target, url, tls_files)
        line = one_error_line(out)  # refused while it arrives: what is left cannot even hold its bytes
        assert line.startswith(f"error: {url}/{paths[2]}: c3.json not read past "), line
        assert line.endswith("(mirror --max-parse-memory)"), line
        assert out.peak_mb < 700, out.peak_mb  # two parsed (about 500 MB); 5 GB and a MemoryError before

        name_catalogs(streams, dense_catalog(63 << 20), 5)
        out = _mirror(target, url, tls_files)
        line = one_error_line(out)
        assert line.startswith(f"error: {url}/{paths[0]}: not parsed: "), line
        assert out.peak_mb < 250, out.peak_mb  # the 63 MiB body (about 160 MB), never its 1.7 GB parse
    assert not target.exists() or not (target / "streams").exists()
    shutil.rmtree(upstream)


def test_a_publish_that_reads_its_snapshot_again_pays_only_for_those_it_holds(
        served: tuple[Target, dict[str, bytes]]) -> None:
    """A publish reads a new snapshot when it starts again (another publisher, deltas made): the
    documents of the one it dropped no longer count, those of the one it still holds do."""
    from ssb_s3.config import load_config
    from ssb_s3.storage.backends import open_store
    from ssb_s3.storage.tree import Tree

    target, _ = served
    owner = Tree(load_config(target.conf), open_store(str(target.local)))
    try:
        budget = httpread.new_run(httpread.MAX_PARSE_MEMORY)
        snap = owner.snapshot(0.0)
        one = budget.spent
        assert one > 0 and snap.served is not None and snap.products[PRODUCT].manifest is not None
        del snap
        assert budget.spent == 0
        budget = httpread.new_run(int(2.5 * one))
        for _ in range(4):  # each new one read while the last is still held, as publish does
            snap = owner.snapshot(0.0)
            assert budget.spent <= 2 * one
        with pytest.raises(BudgetSpent):  # what is held still counts: a third one at once is refused
            held = [snap, owner.snapshot(0.0), owner.snapshot(0.0)]
            assert not held
    finally:
        httpread.new_run(httpread.MAX_PARSE_MEMORY, "ssb_s3.storage.httpread.MAX_PARSE_MEMORY")


def test_each_publish_of_the_hooks_is_a_run_of_its_own(served: tuple[Target, dict[str, bytes]]) -> None:
    """A long-lived hooks process (serve, sqs, a warm Lambda): what earlier publishes parsed does
    not count against the next one; the limit the command line set stays."""
    from ssb_s3.config import load_config
    from ssb_s3.hooks.republish import Republisher
    from ssb_s3.storage.backends import open_store

    target, _ = served
    republisher = Republisher(load_config(target.conf), "s3://tree", open_store(str(target.local)))
    try:
        earlier = httpread.new_run(1 << 24, "hooks serve --max-parse-memory")
        httpread.parse_json(b"[" + b"{}," * 10_000 + b"{}]", "an earlier publish's document")
        assert earlier.spent > 0
        republisher.handle([])
        now = httpread.run_budget()
        assert now.spent == 0 and now.limit == 1 << 24 and now.option == "hooks serve --max-parse-memory"
    finally:
        httpread.new_run(httpread.MAX_PARSE_MEMORY, "ssb_s3.storage.httpread.MAX_PARSE_MEMORY")


def test_a_body_is_not_read_on_past_what_is_left(tmp_path: Path, tls_files: TlsFiles,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Documents read at once (16 manifest readers) are held on the budget while they arrive."""
    (tmp_path / "big.json").write_bytes(b"[" + b"0," * (2 << 20) + b"0]")  # 4 MiB
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca_cert))
    budget = httpread.new_run(3 << 20, "test --max-parse-memory")
    try:
        with serve_https_static(tmp_path, tls_files) as url, pytest.raises(BudgetSpent) as refused:
            httpread.fetch(f"{url}/big.json", what="ssb.json")
        assert str(refused.value).startswith(f"{url}/big.json: ssb.json not read past ")
        assert str(refused.value).endswith("(test --max-parse-memory)")
        assert budget.spent == 0  # given back
    finally:
        httpread.new_run(httpread.MAX_PARSE_MEMORY, "ssb_s3.storage.httpread.MAX_PARSE_MEMORY")
