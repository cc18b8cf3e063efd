"""Delta updates: .vcdiff deltas made, checked and published with their version, dropped with their
base; the client contract on delta items; and (e2e) the LXD and Incus daemons refreshing an image
through a delta, as the HTTPS server's access log shows."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import ssb, tree_product, write_tree_yml
from realparts import IncusDaemon, LxdDaemon, TlsFiles, make_image, need, serve_https_static

from ssb_s3.core.catalog import contract_problems
from ssb_s3.core.deltas import wanted_deltas
from ssb_s3.vocabulary.imagefiles import BUILT_FILES, DELTA_FOR_ROOT, IMAGE_FILES, parse_delta_filename, table_problems

PRODUCT = "busybox:1.36:amd64:default"
DIR = "busybox/amd64/default"
V1, V2, V3, V4 = "20260101_0000", "20260102_0000", "20260103_0000", "20260104_0000"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Tree:
    """A tree in a local folder, built and published with the CLI."""

    def __init__(self, tmp: Path, *, days: int = 3, product_extra: dict[str, Any] | None = None,
                 **top: Any) -> None:
        """`top`: tree.yml's top-level keys besides `grace: 0` (default `deltas: 1`); `product_extra`: the product's."""
        self.tmp, self.root = tmp, tmp / "www"
        self.root.mkdir(parents=True)
        product = tree_product(PRODUCT, directory=DIR, days=days, aliases=["busybox/1.36"], **(product_extra or {}))
        self.conf = write_tree_yml(tmp / "tree.yml", product, grace=0, **{"deltas": 1, **top})

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return ssb("-c", str(self.conf), "-t", str(self.root), *args)

    def image(self, serial: str, kind: str = "squashfs") -> Path:
        out = self.tmp / f"img-{serial}"
        make_image(out, kind=kind, arch="x86_64", release="1.36", serial=serial, description=f"busybox {serial}")
        return out

    def build(self, serial: str, kind: str = "squashfs") -> subprocess.CompletedProcess[str]:
        return self.cli("build-product", PRODUCT, "--from-dir", str(self.image(serial, kind)), "--version", serial)

    def served(self) -> dict[str, Any]:
        index = json.loads((self.root / "streams/v1/index.json").read_text())
        return json.loads((self.root / index["index"]["images"]["path"]).read_text())  # type: ignore[no-any-return]

    def versions(self) -> dict[str, Any]:
        return self.served()["products"][PRODUCT]["versions"]  # type: ignore[no-any-return]

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.root / DIR / "ssb.json").read_text())  # type: ignore[no-any-return]


def deltas_of(version: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: i for k, i in version["items"].items() if i["ftype"].endswith(".vcdiff")}


def decode(base: Path, delta: Path) -> str:
    out = subprocess.run(["xdelta3", "-d", "-c", "-s", str(base), str(delta)], capture_output=True, check=True,
                         timeout=120)
    return sha(out.stdout)


@pytest.fixture
def xdelta3() -> str:
    return need("xdelta3")


# --- the vocabulary and the pure rules -----------------------------------------------------------

def test_delta_rows_are_in_the_one_table_and_never_built() -> None:
    assert table_problems(list(IMAGE_FILES.values())) == []
    assert {r.ftype for r in DELTA_FOR_ROOT.values()} == {"squashfs.vcdiff", "disk-kvm.img.vcdiff"}
    assert not set(BUILT_FILES) & {r.filename for r in DELTA_FOR_ROOT.values()}
    row, base = parse_delta_filename("20260101_12:00.rootfs.squashfs.vcdiff") or (None, "")
    assert row is DELTA_FOR_ROOT["rootfs.squashfs"] and base == "20260101_12:00"
    assert parse_delta_filename("rootfs.squashfs") is None and parse_delta_filename(".rootfs.squashfs.vcdiff") is None
    broken = IMAGE_FILES["rootfs.squashfs.vcdiff"].__class__(
        "x.vcdiff", "x", "squashfs.vcdiff", "squashfs.vcdiff", "squashfs.vcdiff", "delta", ("vcdiff",),
        delta_of="rootfs.tar.xz")
    assert any("delta_of" in p for p in table_problems([*IMAGE_FILES.values(), broken]))


def _version(root_ftype: str | None = "squashfs", vm: bool = False, n: int = 1) -> dict[str, Any]:
    items: dict[str, Any] = {"lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": f"p/{n}/lxd.tar.xz", "size": 1,
                                            "sha256": f"{n:064x}"}}
    if root_ftype:
        items["root.squashfs"] = {"ftype": root_ftype, "path": f"p/{n}/rootfs.squashfs", "size": 100,
                                  "sha256": f"{n + 100:064x}"}
    if vm:
        items["disk.qcow2"] = {"ftype": "disk-kvm.img", "path": f"p/{n}/disk.qcow2", "size": 100,
                               "sha256": f"{n + 200:064x}"}
    return {"items": items}


def test_wanted_deltas_new_versions_against_the_last_n_and_no_vm_delta_incus_would_misread() -> None:
    entry = {"versions": {V1: _version(n=1), V2: _version(n=2), V3: _version(n=3)}}
    jobs = wanted_deltas("p", entry, served=[V1, V2], count=2)
    assert [(j.version, j.base_version, j.row.ftype) for j in jobs] == [
        (V3, V2, "squashfs.vcdiff"), (V3, V1, "squashfs.vcdiff")]
    assert jobs[0].key == f"p/3/{V2}.rootfs.squashfs.vcdiff" and jobs[0].new == "p/3/rootfs.squashfs"
    assert wanted_deltas("p", entry, served=[V1, V2], count=0) == []
    assert [j.base_version for j in wanted_deltas("p", entry, served=[V1, V2], count=1)] == [V2]
    # a product with a squashfs and a VM disk: Incus takes combined_squashfs_sha256 as the base of
    # any delta, so only the squashfs gets one
    both = {"versions": {V1: _version(vm=True, n=1), V2: _version(vm=True, n=2)}}
    assert [j.row.ftype for j in wanted_deltas("p", both, served=[V1], count=1)] == ["squashfs.vcdiff"]
    vm_only = {"versions": {V1: _version(None, vm=True, n=1), V2: _version(None, vm=True, n=2)}}
    assert [j.row.ftype for j in wanted_deltas("p", vm_only, served=[V1], count=1)] == ["disk-kvm.img.vcdiff"]
    # a version that has its delta already wants none
    done = _version(n=2)
    done["items"]["delta-" + V1] = {"ftype": "squashfs.vcdiff", "path": f"p/2/{V1}.rootfs.squashfs.vcdiff",
                                    "size": 5, "sha256": "e" * 64, "delta_base": V1}
    assert wanted_deltas("p", {"versions": {V1: _version(n=1), V2: done}}, served=[V1], count=1) == []


def _catalog(versions: dict[str, Any]) -> dict[str, Any]:
    for version in versions.values():
        meta = version["items"]["lxd.tar.xz"]
        for item in version["items"].values():
            if item["ftype"] == "squashfs":
                meta["combined_squashfs_sha256"] = sha(item["sha256"].encode())
            if item["ftype"] == "disk-kvm.img":
                meta["combined_disk-kvm-img_sha256"] = sha(item["sha256"].encode())
        version["items"]["incus.tar.xz"] = {**meta, "ftype": "incus.tar.xz"}
    return {"content_id": "images", "datatype": "image-downloads", "format": "products:1.0", "updated": "x",
            "products": {"p": {"aliases": "p", "arch": "amd64", "os": "Busybox", "release": "1",
                               "release_title": "1", "versions": versions}}}


def test_contract_refuses_a_delta_base_not_in_the_catalog_and_a_vm_delta_beside_a_squashfs() -> None:
    v2 = _version(n=2)
    v2["items"]["delta-x"] = {"ftype": "squashfs.vcdiff", "path": "p/2/x.vcdiff", "size": 5, "sha256": "e" * 64,
                              "delta_base": "20251231_0000"}
    problems = contract_problems(_catalog({V1: _version(n=1), V2: v2}))
    assert problems == ["catalog: product p version 20260102_0000 item delta-x: delta_base '20251231_0000' is not "
                        "another version of product p in the catalog (clients would skip the delta; expected one "
                        "of its published versions)"]
    v2["items"]["delta-x"]["delta_base"] = V1
    assert contract_problems(_catalog({V1: _version(n=1), V2: v2})) == []
    both2 = _version(vm=True, n=2)
    both2["items"]["delta-kvm-x"] = {"ftype": "disk-kvm.img.vcdiff", "path": "p/2/x.vcdiff", "size": 5,
                                     "sha256": "e" * 64, "delta_base": V1}
    (problem,) = contract_problems(_catalog({V1: _version(vm=True, n=1), V2: both2}))
    assert "item delta-kvm-x: disk-kvm.img.vcdiff where version 20260102_0000 or 20260101_0000 has a squashfs: " \
           "Incus 6.0 would apply it to the squashfs image" in problem


# --- made, checked and published by the CLI --------------------------------------------------------

def test_build_product_publishes_a_checked_delta_with_its_version(tmp_path: Path, xdelta3: str) -> None:
    tree = Tree(tmp_path, deltas=2)
    assert tree.build(V1).returncode == 0
    assert deltas_of(tree.versions()[V1]) == {}
    out = tree.build(V2)
    assert out.returncode == 0, out.stderr
    assert f"+ delta {DIR}/{V2}/{V1}.rootfs.squashfs.vcdiff (" in out.stdout
    versions = tree.versions()
    ((key, item),) = deltas_of(versions[V2]).items()
    root = versions[V2]["items"]["root.squashfs"]
    assert key == f"delta-{V1}" and item["ftype"] == "squashfs.vcdiff" and item["delta_base"] == V1
    assert item["path"] == f"{DIR}/{V2}/{V1}.rootfs.squashfs.vcdiff"
    delta = tree.root / item["path"]
    assert item["size"] == delta.stat().st_size < 0.8 * root["size"]
    assert item["sha256"] == sha(delta.read_bytes())
    # what a client does: rebuild v2's root from v1's root and the delta
    assert decode(tree.root / versions[V1]["items"]["root.squashfs"]["path"], delta) == root["sha256"]
    assert tree.manifest()["versions"][V2]["items"][key] == item  # recorded in ssb.json
    # the next version gets deltas against the last two
    assert tree.build(V3).returncode == 0
    assert {i["delta_base"] for i in deltas_of(tree.versions()[V3]).values()} == {V1, V2}
    assert tree.cli("verify", "--hashes").returncode == 0
    # a refreshed manifest keeps the deltas (their files are there, same size)
    for args in ((), ("--rehash",)):
        out = tree.cli("build-versions-manifest", "-p", PRODUCT, *args)
        assert out.returncode == 0, out.stderr
        assert deltas_of(tree.manifest()["versions"][V3]).keys() == {f"delta-{V1}", f"delta-{V2}"}
    assert deltas_of(tree.manifest()["versions"][V3]).keys() == {f"delta-{V1}", f"delta-{V2}"}


def test_a_vm_only_product_gets_disk_deltas(tmp_path: Path, xdelta3: str) -> None:
    tree = Tree(tmp_path)
    for serial in (V1, V2):
        out = tree.cli("build-product", PRODUCT, "--vm", "--from-dir", str(tree.image(serial, "vm")),
                       "--version", serial)
        assert out.returncode == 0, out.stderr
    versions = tree.versions()
    ((_, item),) = deltas_of(versions[V2]).items()
    assert item["ftype"] == "disk-kvm.img.vcdiff" and item["delta_base"] == V1
    assert item["path"] == f"{DIR}/{V2}/{V1}.disk.qcow2.vcdiff"
    assert decode(tree.root / versions[V1]["items"]["disk.qcow2"]["path"], tree.root / item["path"]) == \
        versions[V2]["items"]["disk.qcow2"]["sha256"]


def test_publish_makes_deltas_for_a_version_uploaded_by_another_tool(tmp_path: Path, xdelta3: str) -> None:
    tree = Tree(tmp_path)
    assert tree.build(V1).returncode == 0
    shutil.copytree(tree.image(V2), tree.root / DIR / V2)  # e.g. `aws s3 sync`, then publish
    dry = tree.cli("publish", "--refresh-manifests", "--dry-run")
    assert dry.returncode == 0 and f"+ delta {DIR}/{V2}/{V1}.rootfs.squashfs.vcdiff (would be made)" in dry.stdout
    assert not list((tree.root / DIR / V2).glob("*.vcdiff"))
    out = tree.cli("publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    assert [i["delta_base"] for i in deltas_of(tree.versions()[V2]).values()] == [V1]
    # a later publish with nothing new makes nothing and writes nothing
    def files() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in (tree.root / DIR).rglob("*") if p.is_file()}

    before = files()
    assert tree.cli("publish").returncode == 0
    assert files() == before


def test_withdrawing_a_delta_base_takes_its_deltas_out_too(tmp_path: Path, xdelta3: str) -> None:
    """v2 is the base of v3's delta: withdrawing v2 takes that delta out of ssb.json and the catalog in
    the same publish (it has nothing left to apply to) instead of refusing the withdraw."""
    tree = Tree(tmp_path)
    for serial in (V1, V2, V3):
        assert tree.build(serial).returncode == 0
    assert [i["delta_base"] for i in deltas_of(tree.versions()[V3]).values()] == [V2]
    out = tree.cli("withdraw", PRODUCT, V2, "--reason", "bad")
    assert out.returncode == 0, out.stderr
    versions = tree.versions()
    assert sorted(versions) == [V1, V3] and deltas_of(versions[V3]) == {}
    assert contract_problems(tree.served()) == []
    assert f"delta-{V2}" not in tree.manifest()["versions"][V3]["items"]
    assert V2 in tree.manifest()["withdrawn"]


def test_expiring_the_base_removes_its_delta_from_the_catalog_in_the_same_flip(tmp_path: Path,
                                                                               xdelta3: str) -> None:
    tree = Tree(tmp_path, days=2)
    for serial in (V1, V2):
        assert tree.build(serial).returncode == 0
    assert [i["delta_base"] for i in deltas_of(tree.versions()[V2]).values()] == [V1]
    assert tree.build(V3).returncode == 0
    versions = tree.versions()
    assert sorted(versions) == [V2, V3]
    assert deltas_of(versions[V2]) == {}  # its base left the catalog: so did the delta
    assert [i["delta_base"] for i in deltas_of(versions[V3]).values()] == [V2]
    assert contract_problems(tree.served()) == []
    # grace 0: v1 is purged at once, and ssb.json drops the delta against it; the delta's file
    # follows its own version's folder (purged with it, after the grace)
    assert V1 not in tree.manifest()["versions"]
    assert f"delta-{V1}" not in tree.manifest()["versions"][V2]["items"]
    assert (tree.root / DIR / V2 / f"{V1}.rootfs.squashfs.vcdiff").is_file()
    out = tree.build(V4)  # the next publishes go on as usual
    assert out.returncode == 0, out.stderr
    assert sorted(tree.versions()) == [V3, V4] and contract_problems(tree.served()) == []
    assert not [p for p in (tree.root / DIR / V2).rglob("*") if p.is_file()]  # v2 purged, its delta too


CORRUPTING = {
    # the encoder's output has one byte flipped: xdelta3 cannot decode it
    "flipped": """#!/bin/sh
if [ "$1" = "-e" ]; then
  out=$(mktemp); {real} "$@" > "$out" || exit $?
  python3 -c "import sys; d=bytearray(open(sys.argv[1],'rb').read()); d[-3]^=0xff; sys.stdout.buffer.write(d)" "$out"
  rc=$?; rm -f "$out"; exit $rc
fi
exec {real} "$@"
""",
    # the encoder is fed one byte more than the new root: a valid delta of the wrong file
    "wrong target": """#!/bin/sh
if [ "$1" = "-e" ]; then
  {{ cat; printf x; }} | {real} "$@"; exit $?
fi
exec {real} "$@"
""",
}


@pytest.mark.parametrize(("corruption", "why"), [
    ("flipped", "the check could not decode it against its base"),
    ("wrong target", "decoding it gives sha256"),
])
def test_a_corrupted_delta_is_refused_by_the_check_and_never_published(tmp_path: Path, xdelta3: str,
                                                                       corruption: str, why: str) -> None:
    fake = tmp_path / "xdelta3-corrupting"
    fake.write_text(CORRUPTING[corruption].format(real=xdelta3))
    fake.chmod(0o755)
    tree = Tree(tmp_path, xdelta3=str(fake))
    assert tree.build(V1).returncode == 0
    out = tree.build(V2)
    assert out.returncode == 0, out.stderr  # the version is published, without the delta
    assert V2 in tree.versions() and deltas_of(tree.versions()[V2]) == {}
    assert f"delta skipped: {PRODUCT} {V2}: delta against {V1}: " in out.stderr
    assert f"{V1}.rootfs.squashfs.vcdiff: {why}" in out.stderr and "; refused" in out.stderr
    assert not list((tree.root / DIR / V2).glob("*.vcdiff"))
    assert deltas_of(tree.manifest()["versions"][V2]) == {}


def test_without_xdelta3_or_when_not_worth_it_deltas_are_skipped_with_a_warning(tmp_path: Path,
                                                                                 xdelta3: str) -> None:
    tree = Tree(tmp_path, xdelta3="/nonexistent/xdelta3")
    assert tree.build(V1).returncode == 0
    out = tree.build(V2)
    assert out.returncode == 0, out.stderr
    assert "delta skipped: /nonexistent/xdelta3 not found" in out.stderr
    assert deltas_of(tree.versions()[V2]) == {}
    small = Tree(tmp_path / "ratio", delta_max_ratio=0.0001)
    assert small.build(V1).returncode == 0
    out = small.build(V2)
    assert out.returncode == 0 and "not under 0.0001 of the full file" in out.stderr
    assert deltas_of(small.versions()[V2]) == {}
    off = Tree(tmp_path / "off", product_extra={"deltas": 0})
    assert off.build(V1).returncode == 0 and off.build(V2).returncode == 0
    assert deltas_of(off.versions()[V2]) == {} and "delta" not in off.build(V3).stderr


def test_a_bad_deltas_key_is_one_line_naming_the_field(tmp_path: Path) -> None:
    tree = Tree(tmp_path, deltas=-1)
    out = tree.cli("publish")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "tree.yml" in out.stderr and "deltas" in out.stderr


# --- end to end: the daemons refresh through the delta -----------------------------------------------

def _refresh_through_delta(daemon: LxdDaemon | IncusDaemon, tmp_path: Path, tls_files: TlsFiles) -> None:
    """Publish v1, copy it with --auto-update, publish v2 with its delta, `image refresh`: the
    daemon downloads the delta, not v2's root, and ends up with v2's fingerprint; it launches."""
    need("xdelta3")
    tree = Tree(tmp_path)
    assert tree.build(V1).returncode == 0
    log: list[str] = []
    client = daemon.client
    daemon.delete_instances()
    daemon.delete_local_images()
    with serve_https_static(tree.root, tls_files, access_log=log) as url:
        daemon.remote_add("dt", url)
        try:
            client.run("image", "copy", "dt:busybox/1.36", "local:", "--auto-update")
            v1 = tree.versions()[V1]["items"]["lxd.tar.xz"]["combined_squashfs_sha256"]
            assert [i["fingerprint"] for i in client.image_list("local")] == [v1]
            out = tree.build(V2)
            assert out.returncode == 0, out.stderr
            items = tree.versions()[V2]["items"]
            ((_, delta),) = deltas_of(tree.versions()[V2]).items()
            v2 = items["lxd.tar.xz"]["combined_squashfs_sha256"]
            daemon.clear_cache()  # the daemon keeps the catalog an hour
            log.clear()
            client.run("image", "refresh", v1, timeout=300)
            got = [line.split()[1] for line in log if line.startswith("GET ")]
            assert f"/{delta['path']}" in got, log
            assert f"/{items['root.squashfs']['path']}" not in got, log  # the full root was not fetched
            assert [i["fingerprint"] for i in client.image_list("local")] == [v2], daemon.log_tail()
            client.run("launch", v2, "c1")
            try:
                client.run("exec", "c1", "--", "true")
                assert f'BUILD_ID="{V2}"' in client.run("exec", "c1", "--", "cat", "/etc/os-release").stdout
            finally:
                client.run("delete", "--force", "c1")
        finally:
            daemon.delete_instances()
            daemon.delete_local_images()
            client.run("remote", "remove", "dt", check=False)


def test_lxd_daemon_refreshes_an_image_through_the_delta(lxd_daemon: LxdDaemon, tmp_path: Path,
                                                         tls_files: TlsFiles) -> None:
    _refresh_through_delta(lxd_daemon, tmp_path, tls_files)


def test_incus_daemon_refreshes_an_image_through_the_delta(incus_daemon: IncusDaemon, tmp_path: Path,
                                                           tls_files: TlsFiles) -> None:
    _refresh_through_delta(incus_daemon, tmp_path, tls_files)


# ----------------------------------------------------------------------------------------------
# Issue 20, point 18: deltas before the lease, skipped early, and bounded with their children

RECORDING = """#!/bin/sh
if [ -e "{lease}" ]; then held=held; else held=free; fi
echo "$1 $held" >> "{calls}"
exec {real} "$@"
"""


def build_with_root(tree: Tree, serial: str, root: bytes) -> subprocess.CompletedProcess[str]:
    """build-product of an image whose rootfs.squashfs is a real squashfs superblock, then `root`."""
    image = tree.image(serial)
    path = image / "rootfs.squashfs"
    path.write_bytes(path.read_bytes()[:96] + root)
    return tree.cli("build-product", PRODUCT, "--from-dir", str(image), "--version", serial)


def test_deltas_are_made_before_the_lease_and_skipped_early_when_not_worth_it(tmp_path: Path,
                                                                              xdelta3: str) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "xdelta3-recording"
    tree = Tree(tmp_path / "t", delta_max_ratio=0.5, xdelta3=str(fake))
    fake.write_text(RECORDING.format(lease=tree.root / ".ssb-s3/lease.json", calls=calls, real=xdelta3))
    fake.chmod(0o755)
    size = 2 << 20
    assert build_with_root(tree, V1, os.urandom(size)).returncode == 0

    # nothing in common: skipped without running xdelta3
    v2 = os.urandom(size)
    out = build_with_root(tree, V2, v2)
    assert out.returncode == 0, out.stderr
    assert f"delta skipped: {PRODUCT} {V2}: delta against {V1} not under 0.5 of the full file (none of " in out.stderr
    assert "skipped before xdelta3" in out.stderr and not calls.exists()

    # a quarter in common: xdelta3 runs (before the lease) and is stopped once its output reaches half
    out = build_with_root(tree, V3, v2[: size // 4] + os.urandom(size - size // 4))
    assert out.returncode == 0, out.stderr
    assert "not under 0.5 of the full file (xdelta3 stopped when its output reached that)" in out.stderr
    assert calls.read_text().split("\n") == ["-e free", ""]
    assert deltas_of(tree.versions()[V3]) == {} and not list((tree.root / DIR / V3).glob("*.vcdiff"))

    # mostly the same: made and checked before the lease, published with its version
    v3 = (tree.root / DIR / V3 / "rootfs.squashfs").read_bytes()
    out = build_with_root(tree, V4, v3[96:-1000] + os.urandom(1000))
    assert out.returncode == 0, out.stderr
    assert [i["delta_base"] for i in deltas_of(tree.versions()[V4]).values()] == [V3]
    assert calls.read_text().split("\n") == ["-e free", "-e free", "-d free", ""]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize(("script", "timeout", "expected"), [
    ("cat", 60.0, None),  # exits at once, its child holds the output open
    ("sleep 300", 1.0, "timed out after 1s"),  # never ends: the deadline kills both
])
def test_an_xdelta3_that_leaves_a_child_is_bounded_by_its_process_group(
        tmp_path: Path, script: str, timeout: float, expected: str | None) -> None:
    from ssb_s3.storage.deltas import DeltaFailed, run_piped

    pidfile = tmp_path / "child.pid"
    fake = tmp_path / "xdelta3-wrapper"
    fake.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\n{script}\n")
    fake.chmod(0o755)
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(run_piped([str(fake), "-e"], iter([b"the new root"]), None, timeout))
        except DeltaFailed as exc:
            result.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout=timeout + 15)
    took = time.monotonic() - started
    assert not worker.is_alive(), "run_piped still blocked by the wrapper's child"
    if expected is None:
        assert result == [sha(b"the new root")]
    else:
        assert isinstance(result[0], DeltaFailed) and expected in str(result[0])
    assert took < timeout + 10, took
    assert not alive(int(pidfile.read_text())), "the wrapper's child was left running"
