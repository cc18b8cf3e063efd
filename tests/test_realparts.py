"""Proof that the real-parts test library works on this machine.

Each test drives a real part (SeaweedFS, the lxc/incus clients, the LXD daemon) against a
simplestreams tree written here by hand, independently of ssb_s3, so a failure in ssb_s3's own
end-to-end tests can be told apart from a broken harness.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import ssl
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from realparts import (
    IMAGE_KINDS,
    IncusClient,
    LxdClient,
    LxdDaemon,
    RealPartError,
    S3Server,
    TlsFiles,
    _pids_using,
    combined_sha256,
    free_port,
    make_image,
    need,
    run_ceph_rgw,
    serve_https_static,
    sha256_file,
)

VERSION = "20260101_0000"
PRODUCT = "busybox:1.0:amd64:default"


def _item(ftype: str, path: str, f: Path) -> dict[str, Any]:
    return {"ftype": ftype, "path": path, "sha256": sha256_file(f), "size": f.stat().st_size}


def hand_written_tree(meta: Path, root: Path, *, alias: str = "testimg",
                      version: str = VERSION) -> dict[str, bytes]:
    """A minimal simplestreams tree (key -> bytes) for one split squashfs image.

    The meta file is listed twice (lxd.tar.xz for LXD, incus.tar.xz for Incus) pointing at the
    same object, each carrying the combined hash that is the image fingerprint.
    """
    base = f"images/busybox/1.0/amd64/default/{version}"
    fingerprint = combined_sha256(meta, root)
    items = {}
    for ftype in ("lxd.tar.xz", "incus.tar.xz"):
        it = _item(ftype, f"{base}/lxd.tar.xz", meta)
        it["combined_squashfs_sha256"] = fingerprint
        it["combined_sha256"] = fingerprint
        items[ftype] = it
    items["root.squashfs"] = _item("squashfs", f"{base}/rootfs.squashfs", root)
    catalog = {
        "content_id": "images",
        "datatype": "image-downloads",
        "format": "products:1.0",
        "products": {
            PRODUCT: {
                "aliases": alias,
                "arch": "amd64",
                "os": "Busybox",
                "release": "1.0",
                "release_title": "1.0",
                "variant": "default",
                "versions": {version: {"items": items}},
            }
        },
    }
    index = {
        "format": "index:1.0",
        "index": {
            "images": {
                "datatype": "image-downloads",
                "path": "streams/v1/images.json",
                "format": "products:1.0",
                "products": [PRODUCT],
            }
        },
    }
    return {
        "streams/v1/index.json": json.dumps(index, indent=1).encode(),
        "streams/v1/images.json": json.dumps(catalog, indent=1).encode(),
        f"{base}/lxd.tar.xz": meta.read_bytes(),
        f"{base}/rootfs.squashfs": root.read_bytes(),
    }


def upload_tree(s3: S3Server, bucket: str, tree: dict[str, bytes]) -> None:
    """Put every key of ``tree`` into ``bucket``."""
    c = s3.client()
    for key, body in tree.items():
        ctype = "application/json" if key.endswith(".json") else "application/octet-stream"
        c.put_object(Bucket=bucket, Key=key, Body=body, ContentType=ctype)


@pytest.fixture(scope="module")
def squashfs_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One split squashfs image (meta, root) shared by the module."""
    meta, root = make_image(tmp_path_factory.mktemp("img"), kind="squashfs")
    return meta, root


@pytest.fixture
def published(s3_server: S3Server, bucket: str, squashfs_image: tuple[Path, Path]) -> str:
    """The hand-written tree uploaded to a fresh public bucket; returns the remote URL."""
    upload_tree(s3_server, bucket, hand_written_tree(*squashfs_image))
    return s3_server.public_url(bucket)


# ---------------------------------------------------------------------------- S3 server


def test_wrong_secret_is_rejected(s3_server: S3Server) -> None:
    assert isinstance(s3_server.client().list_buckets()["Buckets"], list)
    for endpoint in (s3_server.endpoint, s3_server.https_endpoint):
        bad = s3_server.client(secret_key="not-the-secret", endpoint=endpoint)
        with pytest.raises(ClientError) as err:
            bad.list_buckets()
        assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_anonymous_https_get_works_only_on_public_buckets(s3_server: S3Server,
                                                          bucket: str) -> None:
    c = s3_server.client()
    c.put_object(Bucket=bucket, Key="dir/hello.txt", Body=b"hello")
    url = s3_server.public_url(bucket, "dir") + "/hello.txt"
    assert url.startswith("https://127.0.0.1:")
    assert s3_server.anonymous_get(url) == b"hello"

    # Plain urllib with only the test CA trusted, as a remote's client would do it.
    ctx = ssl.create_default_context(cafile=str(s3_server.ca_file))
    with urllib.request.urlopen(url, context=ctx, timeout=30) as resp:
        assert resp.status == 200 and resp.read() == b"hello"

    # Without the CA, verification fails: the CA is really what makes https work.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(url, context=ssl.create_default_context(), timeout=30)

    # A bucket without the policy is not readable anonymously, and listing stays private.
    s3_server.create_bucket(bucket + "-private")
    c.put_object(Bucket=bucket + "-private", Key="k", Body=b"x")
    with pytest.raises(urllib.error.HTTPError) as err:
        s3_server.anonymous_get(s3_server.public_url(bucket + "-private") + "/k")
    assert err.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as err:
        s3_server.anonymous_get(s3_server.public_url(bucket) + "/?list-type=2")
    assert err.value.code == 403


def test_conditional_put_works(s3_server: S3Server, bucket: str) -> None:
    c = s3_server.client()
    c.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        c.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


# What each real server answers an anonymous GET of a missing key in a GetObject-only bucket:
# RGW (as AWS) says 403, since telling "absent" from "forbidden" needs s3:ListBucket.
MISSING_KEY_STATUS = {"seaweedfs": 404, "rgw": 403}


def test_store_server_checks_signatures_and_serves_anonymous_reads(
        store_server: S3Server, store_bucket: str, request: pytest.FixtureRequest) -> None:
    c = store_server.client()
    c.put_object(Bucket=store_bucket, Key="dir/hello.txt", Body=b"hello")
    for endpoint in (store_server.endpoint, store_server.https_endpoint):
        signed = store_server.client(endpoint=endpoint)
        assert signed.get_object(Bucket=store_bucket, Key="dir/hello.txt")["Body"].read() == b"hello"
        bad = store_server.client(secret_key="not-the-secret", endpoint=endpoint)
        with pytest.raises(ClientError) as err:
            bad.put_object(Bucket=store_bucket, Key="dir/hello.txt", Body=b"forged")
        assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        with pytest.raises(ClientError) as err:
            bad.get_object(Bucket=store_bucket, Key="dir/hello.txt")
        assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert c.get_object(Bucket=store_bucket, Key="dir/hello.txt")["Body"].read() == b"hello"

    url = store_server.public_url(store_bucket, "dir") + "/hello.txt"
    assert url.startswith("https://127.0.0.1:")
    assert store_server.anonymous_get(url) == b"hello"
    with pytest.raises(urllib.error.HTTPError) as missing:
        store_server.anonymous_get(store_server.public_url(store_bucket, "dir") + "/missing.txt")
    assert missing.value.code == MISSING_KEY_STATUS[request.node.callspec.params["store_server"]]
    with pytest.raises(urllib.error.HTTPError) as listing:  # GetObject only: no listing
        store_server.anonymous_get(store_server.public_url(store_bucket) + "/?list-type=2")
    assert listing.value.code == 403


def test_rgw_start_failure_carries_the_log_and_stops_everything(tmp_path: Path,
                                                                 tls_files: TlsFiles) -> None:
    # radosgw does not exit on a certificate it cannot read; the fixture must still give up at once.
    bad = TlsFiles(ca_cert=tls_files.ca_cert, server_cert=tmp_path / "absent.crt",
                   server_key=tls_files.server_key)
    with pytest.raises(RealPartError, match=r"(?s)radosgw frontend failed.*absent\.crt"), \
            run_ceph_rgw(tmp_path / "rgw", bad):
        pass
    assert _pids_using(str(tmp_path)) == []


# ---------------------------------------------------------------------------- images


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_make_image_kinds(tmp_path: Path, kind: str) -> None:
    expected = {
        "squashfs": ["lxd.tar.xz", "rootfs.squashfs"],
        "tarxz": ["lxd.tar.xz", "rootfs.tar.xz"],
        "both": ["lxd.tar.xz", "rootfs.squashfs", "rootfs.tar.xz"],
        "unified": ["lxd_combined.tar.gz"],
        "vm": ["lxd.tar.xz", "disk.qcow2"],
        "lxc": ["meta.tar.xz", "rootfs.tar.xz"],
    }[kind]
    a = make_image(tmp_path / "a", kind=kind)
    assert [p.name for p in a] == expected
    assert all(p.stat().st_size < 2_000_000 for p in a)
    again = make_image(tmp_path / "a2", kind=kind)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in again], "not reproducible"
    b = make_image(tmp_path / "b", kind=kind, serial="20260102_0000")
    c = make_image(tmp_path / "c", kind=kind, description="another image")
    for other in (b, c):
        assert combined_sha256(*a) != combined_sha256(*other)
        assert a[0].read_bytes() != other[0].read_bytes()
    if len(a) > 1:  # the root differs too (useful for delta tests)
        assert a[1].read_bytes() != b[1].read_bytes()

    if kind == "unified":
        with tarfile.open(a[0]) as tar:
            names = set(tar.getnames())
            assert {"metadata.yaml", "rootfs/bin/busybox", "rootfs/sbin/init"} <= names
            meta = tar.extractfile("metadata.yaml")
            assert meta is not None
            text = meta.read().decode()
        assert gzip.decompress(a[0].read_bytes())  # a real gzip stream
    elif kind == "lxc":
        with tarfile.open(a[0]) as tar:
            assert {"config", "templates", "expiry"} <= set(tar.getnames())
        return
    else:
        with tarfile.open(a[0]) as tar:
            meta = tar.extractfile("metadata.yaml")
            assert meta is not None
            text = meta.read().decode()
    assert 'architecture: "x86_64"' in text and "creation_date: 1767225600" in text
    assert 'description: "test image"' in text

    for p in a:
        if p.name == "rootfs.squashfs":
            listing = subprocess.run([need("unsquashfs"), "-lls", str(p)], check=True,
                                     capture_output=True, text=True).stdout
            for want in ("/bin/busybox", "/bin/sh -> busybox", "/sbin/init -> ../bin/busybox",
                         "/dev", "/proc", "/sys", "/tmp", "/etc", "/root", "/run"):
                assert want in listing
        elif p.name == "rootfs.tar.xz":
            with tarfile.open(p) as tar:
                assert {"bin/busybox", "bin/true", "sbin/init", "dev", "run"} <= set(
                    tar.getnames())
        elif p.name == "disk.qcow2":
            data = p.read_bytes()
            assert data[:4] == b"QFI\xfb" and int.from_bytes(data[4:8], "big") == 3
            qemu_img = shutil.which("qemu-img")  # optional: apt package qemu-utils
            if qemu_img:
                check = subprocess.run([qemu_img, "check", str(p)], capture_output=True,
                                       text=True)
                assert check.returncode == 0, check.stdout + check.stderr
                info = json.loads(subprocess.run(
                    [qemu_img, "info", "--output=json", str(p)], check=True,
                    capture_output=True, text=True).stdout)
                assert info["format"] == "qcow2" and info["virtual-size"] == 1 << 20


# ---------------------------------------------------------------------------- clients


def _check_listing(images: list[dict[str, Any]], fingerprint: str) -> None:
    assert len(images) == 1, images
    img = images[0]
    assert img["fingerprint"] == fingerprint
    assert img["architecture"] == "x86_64"
    assert img["type"] == "container"
    assert img["properties"]["os"] == "Busybox"
    assert img["properties"]["serial"] == VERSION
    assert {a["name"] for a in img["aliases"]} == {"testimg", "testimg/amd64"}


def test_lxc_client_lists_and_exports(tmp_path: Path, s3_server: S3Server, published: str,
                                      squashfs_image: tuple[Path, Path]) -> None:
    fingerprint = combined_sha256(*squashfs_image)
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=s3_server.ca_file)
    lxc.remote_add("t", published)
    _check_listing(lxc.image_list("t"), fingerprint)
    aliases = lxc.alias_list("t")
    assert {(a["name"], a["target"], a["type"]) for a in aliases} == {
        ("testimg", fingerprint, "container"), ("testimg/amd64", fingerprint, "container")}
    assert fingerprint in lxc.image_info("t:testimg")

    files = lxc.export("t:testimg", tmp_path / "out")
    assert [f.name for f in files] == ["lxd.tar.xz", "rootfs.squashfs"]
    assert [f.read_bytes() for f in files] == [p.read_bytes() for p in squashfs_image]
    files = lxc.export(f"t:{fingerprint[:12]}", tmp_path / "out2")
    assert combined_sha256(*files) == fingerprint


def test_lxc_export_catches_a_corrupt_file(tmp_path: Path, s3_server: S3Server, bucket: str,
                                           squashfs_image: tuple[Path, Path]) -> None:
    tree = hand_written_tree(*squashfs_image)
    key = next(k for k in tree if k.endswith("rootfs.squashfs"))
    tree[key] = tree[key][:-1] + bytes([tree[key][-1] ^ 1])  # same size, wrong bytes
    upload_tree(s3_server, bucket, tree)
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=s3_server.ca_file)
    lxc.remote_add("t", s3_server.public_url(bucket))
    assert len(lxc.image_list("t")) == 1  # listing cannot see it
    with pytest.raises(RealPartError, match=r"(?i)hash mismatch|fingerprint"):
        lxc.export("t:testimg", tmp_path / "out")


def test_lxc_client_without_ca_fails(tmp_path: Path, published: str) -> None:
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=None)
    lxc.remote_add("t", published)
    proc = lxc.run("image", "list", "t:", "--format", "json", check=False)
    assert proc.returncode != 0
    assert "certificate" in proc.stderr.lower(), proc.stderr


def test_incus_client_lists_and_exports(tmp_path: Path, s3_server: S3Server, published: str,
                                        squashfs_image: tuple[Path, Path]) -> None:
    fingerprint = combined_sha256(*squashfs_image)
    incus = IncusClient(tmp_path / "incusconf", ca_file=s3_server.ca_file)
    incus.remote_add("t", published)
    _check_listing(incus.image_list("t"), fingerprint)
    assert {a["name"] for a in incus.alias_list("t")} == {"testimg", "testimg/amd64"}
    files = incus.export(f"t:{fingerprint}", tmp_path / "out")
    assert combined_sha256(*files) == fingerprint


def test_incus_ignores_lxd_only_items(tmp_path: Path, s3_server: S3Server, bucket: str,
                                      squashfs_image: tuple[Path, Path]) -> None:
    tree = hand_written_tree(*squashfs_image)
    catalog = json.loads(tree["streams/v1/images.json"])
    del catalog["products"][PRODUCT]["versions"][VERSION]["items"]["incus.tar.xz"]
    tree["streams/v1/images.json"] = json.dumps(catalog).encode()
    upload_tree(s3_server, bucket, tree)
    url = s3_server.public_url(bucket)
    incus = IncusClient(tmp_path / "incusconf", ca_file=s3_server.ca_file)
    incus.remote_add("t", url)
    assert incus.image_list("t") == []
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=s3_server.ca_file)
    lxc.remote_add("t", url)
    assert len(lxc.image_list("t")) == 1


def test_static_https_server_serves_a_tree(tmp_path: Path, tls_files: TlsFiles,
                                           squashfs_image: tuple[Path, Path]) -> None:
    root = tmp_path / "www"
    for key, body in hand_written_tree(*squashfs_image).items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(body)
    with serve_https_static(root, tls_files) as url:
        ctx = ssl.create_default_context(cafile=str(tls_files.ca_cert))
        with urllib.request.urlopen(url + "/streams/v1/index.json", context=ctx) as resp:
            assert json.load(resp)["format"] == "index:1.0"
        lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
        lxc.remote_add("s", url)
        _check_listing(lxc.image_list("s"), combined_sha256(*squashfs_image))
        files = lxc.export("s:testimg", tmp_path / "out")
        assert combined_sha256(*files) == combined_sha256(*squashfs_image)


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


# ---------------------------------------------------------------------------- LXD daemon


def test_daemon_copies_and_launches_from_s3(lxd_daemon: LxdDaemon, s3_server: S3Server,
                                            published: str,
                                            squashfs_image: tuple[Path, Path]) -> None:
    lxc = lxd_daemon.client
    fingerprint = combined_sha256(*squashfs_image)
    lxd_daemon.delete_instances()
    lxd_daemon.delete_local_images()
    lxd_daemon.remote_add("t", published)
    try:
        lxc.run("image", "copy", "t:testimg", "local:", "--alias", "copied")
        local = lxc.image_list("local")
        assert [i["fingerprint"] for i in local] == [fingerprint]
        lxd_daemon.delete_local_images()

        lxc.run("launch", "t:testimg", "c1")
        lxc.run("exec", "c1", "--", "true")
        out = lxc.run("exec", "c1", "--", "cat", "/etc/os-release").stdout
        assert VERSION in out
        state = json.loads(lxc.run("list", "c1", "--format", "json").stdout)
        assert state[0]["status"] == "Running"
    finally:
        lxd_daemon.delete_instances()
        lxc.remote_remove("t")


def test_daemon_needs_servercerts_to_trust_the_ca(lxd_daemon: LxdDaemon,
                                                  published: str) -> None:
    """The client trusts SSL_CERT_FILE, the daemon does not: it needs servercerts/<remote>.crt."""
    lxc = lxd_daemon.client
    lxd_daemon.delete_local_images()
    lxc.remote_add("nocert", published)
    try:
        assert len(lxc.image_list("nocert")) == 1  # the client itself is fine
        proc = lxc.run("image", "copy", "nocert:testimg", "local:", check=False)
        assert proc.returncode != 0
        assert "certificate" in proc.stderr.lower(), proc.stderr
        lxc.trust_remote_ca("nocert")
        lxc.run("image", "copy", "nocert:testimg", "local:")
    finally:
        lxc.remote_remove("nocert")
        lxd_daemon.delete_local_images()


@pytest.mark.parametrize("kind", ["squashfs", "tarxz", "unified"])
def test_made_images_boot(lxd_daemon: LxdDaemon, tmp_path: Path, kind: str) -> None:
    lxc = lxd_daemon.client
    files = make_image(tmp_path / "img", kind=kind, description=f"boot {kind}")
    alias = f"boot-{kind}"
    lxd_daemon.delete_instances()
    lxc.run("image", "import", *map(str, files), "--alias", alias)
    try:
        lxc.run("launch", alias, "c-" + kind)
        lxc.run("exec", "c-" + kind, "--", "true")
    finally:
        lxd_daemon.delete_instances()
        lxc.run("image", "delete", alias, check=False)


def test_tree_keys_hash_like_the_catalog_says(squashfs_image: tuple[Path, Path]) -> None:
    tree = hand_written_tree(*squashfs_image)
    catalog = json.loads(tree["streams/v1/images.json"])
    items = catalog["products"][PRODUCT]["versions"][VERSION]["items"]
    for item in items.values():
        assert hashlib.sha256(tree[item["path"]]).hexdigest() == item["sha256"]
        assert len(tree[item["path"]]) == item["size"]
    meta, root = squashfs_image
    assert items["lxd.tar.xz"]["combined_squashfs_sha256"] == hashlib.sha256(
        meta.read_bytes() + root.read_bytes()).hexdigest()


def test_daemon_caches_the_catalog_per_url(lxd_daemon: LxdDaemon, s3_server: S3Server,
                                           bucket: str, tmp_path: Path,
                                           squashfs_image: tuple[Path, Path]) -> None:
    """DESIGN 1: the daemon keeps index.json and the catalog; the CLI client does not."""
    lxc = lxd_daemon.client
    old_fp = combined_sha256(*squashfs_image)
    new_image = make_image(tmp_path / "new", kind="squashfs", serial="20260102_0000")
    new_fp = combined_sha256(*new_image)
    lxd_daemon.delete_local_images()
    upload_tree(s3_server, bucket, hand_written_tree(*squashfs_image))
    lxd_daemon.remote_add("t", s3_server.public_url(bucket))
    try:
        lxc.run("image", "copy", "t:testimg", "local:")
        lxd_daemon.delete_local_images()
        upload_tree(s3_server, bucket, hand_written_tree(*new_image, version="20260102_0000"))
        assert [i["fingerprint"] for i in lxc.image_list("t")] == [new_fp]  # client: fresh

        lxc.run("image", "copy", "t:testimg", "local:")  # daemon: stale catalog
        assert [i["fingerprint"] for i in lxc.image_list("local")] == [old_fp]
        lxd_daemon.delete_local_images()

        lxd_daemon.clear_cache()
        lxc.run("image", "copy", "t:testimg", "local:")
        assert [i["fingerprint"] for i in lxc.image_list("local")] == [new_fp]
    finally:
        lxc.remote_remove("t")
        lxd_daemon.delete_local_images()


def test_vm_image_imports_as_a_virtual_machine(lxd_daemon: LxdDaemon, tmp_path: Path) -> None:
    """The hand-written qcow2 is accepted by LXD (VMs cannot start here: no vhost_vsock)."""
    lxc = lxd_daemon.client
    files = make_image(tmp_path / "vm", kind="vm")
    lxc.run("image", "import", *map(str, files), "--alias", "vmimg")
    try:
        (img,) = [i for i in lxc.image_list("local") if i["fingerprint"] == combined_sha256(*files)]
        assert img["type"] == "virtual-machine"
    finally:
        lxc.run("image", "delete", "vmimg", check=False)


def test_need_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import realparts

    assert Path(need("sh")).name == "sh"
    monkeypatch.setattr(realparts, "REQUIRE_REAL", False)
    with pytest.raises(pytest.skip.Exception):
        need("no-such-tool-ssb")
    monkeypatch.setattr(realparts, "REQUIRE_REAL", True)
    with pytest.raises(pytest.fail.Exception, match="SSB_REQUIRE_E2E"):
        need("no-such-tool-ssb")
