"""build-versions-manifest: what is a version, how it is hashed, and what is left out."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import tree_config, tree_product

from ssb_s3.errors import ManifestError
from ssb_s3.storage.backends.local import LocalStore
from ssb_s3.storage.manifest import build_manifest, read_manifest
from ssb_s3.storage.store import CHUNK_SIZE
from ssb_s3.storage.tree import refresh_manifest

TREE = tree_config(tree_product("p:1:amd64:default", release="1", os="P", directory="p/amd64"))
PRODUCT = TREE.products[0]


def _tar(members: dict[str, bytes | None], compress: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if compress == "gz" else lzma.compress(raw)


METADATA = b"architecture: x86_64\ncreation_date: 1767225600\nproperties: {os: P, release: '1'}\n"


def artifact(name: str, data: bytes) -> bytes:
    """`data` wrapped into a file that passes build-product's checks for `name` (the manifest
    runs them too); distinct data gives distinct files, same-size data same-size files."""
    if name in ("lxd.tar.xz", "incus.tar.xz"):
        return _tar({"metadata.yaml": METADATA, "tag": data}, "xz")
    if name == "meta.tar.xz":
        return _tar({"config": b"lxc.arch = x86_64\n", "tag": data}, "xz")
    if name.endswith("_combined.tar.gz"):
        return _tar({"metadata.yaml": METADATA, "rootfs": None, "rootfs/tag": data}, "gz")
    if name == "rootfs.squashfs":
        return b"hsqs" + bytes(44) + data
    if name == "rootfs.tar.xz":
        return lzma.compress(data)
    return data


def put(root: Path, rel: str, data: bytes) -> bytes:
    path = root / "p" / "amd64" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data = artifact(path.name, data)
    path.write_bytes(data)
    return data


def sha(*parts: bytes) -> str:
    return hashlib.sha256(b"".join(parts)).hexdigest()


class CountingStore(LocalStore):
    """Counts streamed reads, to prove files are read once and unchanged versions not at all."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        self.reads.append(key)
        return super().iter_chunks(key, chunk_size)


def test_combined_hashes_per_meta_file_and_root(tmp_path: Path) -> None:
    lxd = put(tmp_path, "20260101_10:00/lxd.tar.xz", os.urandom(300))
    incus = put(tmp_path, "20260101_10:00/incus.tar.xz", os.urandom(200))
    squash = put(tmp_path, "20260101_10:00/rootfs.squashfs", os.urandom(5000))
    rootxz = put(tmp_path, "20260101_10:00/rootfs.tar.xz", os.urandom(4000))
    store = CountingStore(tmp_path)
    manifest, report = build_manifest(store, TREE, PRODUCT)
    items = manifest["versions"]["20260101_10:00"]["items"]
    assert items["lxd.tar.xz"]["combined_squashfs_sha256"] == sha(lxd, squash)
    assert items["lxd.tar.xz"]["combined_rootxz_sha256"] == sha(lxd, rootxz)
    assert items["lxd.tar.xz"]["combined_sha256"] == sha(lxd, rootxz)
    # The seed fed both meta files into one hasher; each meta gets its own fingerprint here.
    assert items["incus.tar.xz"]["combined_squashfs_sha256"] == sha(incus, squash)
    assert items["root.squashfs"] == {
        "ftype": "squashfs", "path": "p/amd64/20260101_10:00/rootfs.squashfs",
        "size": len(squash), "sha256": sha(squash),
    }
    assert items["root.tar.xz"]["ftype"] == "root.tar.xz"
    assert sorted(store.reads) == sorted(set(store.reads))  # every file streamed exactly once
    assert len(store.reads) == 4
    assert report.hashed == ["20260101_10:00"]


def test_vm_unified_and_lxc_pair(tmp_path: Path) -> None:
    meta = put(tmp_path, "20260101_0000/lxd.tar.xz", b"m")
    disk = put(tmp_path, "20260101_0000/disk.qcow2", b"QFI\xfb" + os.urandom(100))
    unified = put(tmp_path, "20260102_0000/incus_combined.tar.gz", os.urandom(50))
    put(tmp_path, "20260103_0000/meta.tar.xz", b"lxc-meta")
    put(tmp_path, "20260103_0000/rootfs.tar.xz", b"lxc-root")
    manifest, _ = build_manifest(LocalStore(tmp_path), TREE, PRODUCT)
    vm = manifest["versions"]["20260101_0000"]["items"]
    assert vm["disk.qcow2"]["ftype"] == "disk-kvm.img"
    assert vm["lxd.tar.xz"]["combined_disk-kvm-img_sha256"] == sha(meta, disk)
    uni = manifest["versions"]["20260102_0000"]["items"]
    assert uni == {"incus_combined.tar.gz": {
        "ftype": "incus_combined.tar.gz", "path": "p/amd64/20260102_0000/incus_combined.tar.gz",
        "size": len(unified), "sha256": sha(unified)}}
    assert set(manifest["versions"]["20260103_0000"]["items"]) == {"meta.tar.xz", "root.tar.xz"}


def test_in_progress_incomplete_and_misnamed_folders_are_left_out(tmp_path: Path) -> None:
    put(tmp_path, ".20260105_0000/lxd.tar.xz", b"m")  # upload in progress
    put(tmp_path, ".20260105_0000/rootfs.squashfs", b"r")
    put(tmp_path, "20260106_0000/lxd.tar.xz", b"m")  # no root yet
    put(tmp_path, "latest/lxd.tar.xz", b"m")
    put(tmp_path, "latest/rootfs.squashfs", b"r")
    put(tmp_path, "20261399_0000/lxd.tar.xz", b"m")
    put(tmp_path, "20261399_0000/rootfs.squashfs", b"r")
    put(tmp_path, "20260107_0000/lxd.tar.xz", b"m2")
    put(tmp_path, "20260107_0000/rootfs.squashfs", b"r2")
    put(tmp_path, "20260107_0000/build.log", b"log")  # unknown files are ignored
    manifest, report = build_manifest(LocalStore(tmp_path), TREE, PRODUCT)
    assert list(manifest["versions"]) == ["20260107_0000"]
    assert set(manifest["versions"]["20260107_0000"]["items"]) == {"lxd.tar.xz", "root.squashfs"}
    assert "incomplete" in report.skipped["20260106_0000"]
    assert "YYYYMMDD" in report.skipped["latest"]
    assert "not a real calendar date" in report.skipped["20261399_0000"]
    assert ".20260105_0000" not in report.skipped


def test_incremental_rehash_and_removed_versions(tmp_path: Path) -> None:
    put(tmp_path, "20260101_0000/lxd.tar.xz", b"m1")
    put(tmp_path, "20260101_0000/rootfs.squashfs", b"r1")
    store = CountingStore(tmp_path)
    first = refresh_manifest(store, TREE, PRODUCT)
    assert first.hashed == ["20260101_0000"] and first.changed
    put(tmp_path, "20260102_0000/lxd.tar.xz", b"m2")
    put(tmp_path, "20260102_0000/rootfs.squashfs", b"r2")
    store.reads.clear()
    second = refresh_manifest(store, TREE, PRODUCT)
    assert second.reused == ["20260101_0000"] and second.hashed == ["20260102_0000"]
    assert all("20260101_0000" not in key for key in store.reads)
    # Same size, different content is not detected without --rehash (sizes are the contract) ...
    put(tmp_path, "20260101_0000/rootfs.squashfs", b"R1")
    assert refresh_manifest(store, TREE, PRODUCT).changed is False
    # ... and --rehash forces it.
    forced = refresh_manifest(store, TREE, PRODUCT, rehash=True)
    assert forced.changed and sorted(forced.hashed) == ["20260101_0000", "20260102_0000"]
    # A size change is seen without --rehash.
    put(tmp_path, "20260102_0000/rootfs.squashfs", b"r2-longer")
    assert refresh_manifest(store, TREE, PRODUCT).hashed == ["20260102_0000"]
    # A deleted folder leaves the manifest.
    for f in (tmp_path / "p/amd64/20260101_0000").iterdir():
        f.unlink()
    gone = refresh_manifest(store, TREE, PRODUCT)
    assert gone.removed == ["20260101_0000"]
    manifest, _ = read_manifest(store, TREE, PRODUCT)
    assert manifest is not None and list(manifest["versions"]) == ["20260102_0000"]


def test_ssb_json_is_seed_compatible_and_keeps_expiry(tmp_path: Path) -> None:
    put(tmp_path, "20260101_0000/lxd.tar.xz", b"m1")
    put(tmp_path, "20260101_0000/rootfs.tar.xz", b"r1")
    seed = {"name": PRODUCT.name, "expiry": "1893456000", "versions": {}}
    (tmp_path / "p/amd64/ssb.json").write_text(json.dumps(seed))
    refresh_manifest(LocalStore(tmp_path), TREE, PRODUCT)
    written = json.loads((tmp_path / "p/amd64/ssb.json").read_text())
    assert written["expiry"] == "1893456000" and written["name"] == PRODUCT.name
    assert set(written["versions"]["20260101_0000"]["items"]) == {"lxd.tar.xz", "root.tar.xz"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{", "not valid JSON"),
        (b'{"name": "p:1:amd64:default"}', "'versions' is required"),
        (b'{"name": "other", "versions": {}}', "does not match product"),
        (b'{"name": "p:1:amd64:default", "versions": {"v1": {"items": {}}}}', "versions"),
        (b'{"name": "p:1:amd64:default", "versions": {"20260101": {"items": {"a": '
         b'{"ftype": "squashfs", "path": "x", "size": "12", "sha256": "00"}}}}}', "size: expected integer"),
    ],
)
def test_bad_ssb_json_names_file_and_field(tmp_path: Path, content: bytes, expected: str) -> None:
    (tmp_path / "p/amd64").mkdir(parents=True)
    (tmp_path / "p/amd64/ssb.json").write_bytes(content)
    with pytest.raises(ManifestError) as info:
        read_manifest(LocalStore(tmp_path), TREE, PRODUCT)
    assert str(tmp_path / "p/amd64/ssb.json") in str(info.value)
    assert expected in str(info.value)
