"""The stores users run (issue 19): every test here runs on SeaweedFS AND on Ceph RGW 16.2 as Debian 12
ships it (`store_server`), both started for real (tests/realparts.py), unless it says otherwise.

RGW differs where it matters: it refuses If-Match with the ETag quoted as S3 returns it, ignores
If-None-Match on CompleteMultipartUpload and CopyObject, and refuses botocore's trailing checksums
over HTTPS. The store probe (ssb_s3.storage.probe) finds that out once per store; these tests check
what a user sees: build-product (a rootfs over the multipart threshold), a first and a second
publish, withdraw, with no retry loop and images.json always equal to the served catalog; a large
create-only upload never overwrites; a lease that cannot be renewed stops the job; HTTPS with the
default checksum mode works; and the real lxc and incus read a tree served from RGW.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import s3_storage, write_tree_yml
from realparts import IncusClient, LxdClient, S3Server, TlsFiles, make_image
from test_e2e_clients import PRODUCTS as E2E_PRODUCTS
from test_e2e_clients import build_images, check_aliases, check_listing
from test_e2e_clients import publish as publish_with_cli
from test_publisher import PRODUCTS, Tree

from ssb_s3.commands import publish as publish_module
from ssb_s3.commands.publish import PublishOptions, publish
from ssb_s3.config import StorageConfig, load_config
from ssb_s3.errors import PreconditionFailed
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.backends.s3 import S3Store
from ssb_s3.storage.lease import LEASE_KEY, LeaseError
from ssb_s3.storage.tree import Tree as TreeOwner

PRODUCT = "busybox:1.36:amd64:default"
MIB = 1024 * 1024
# What each server does, as the probe must find it (DESIGN §4; docs/store-facts.md)
EXPECTED = {
    "seaweedfs": {"create": "honoured", "replace": "quoted", "multipart_create": "honoured"},
    # RGW's own x-amz-copy-if-* headers test the copy's source, not its destination: no create-only copy
    "rgw": {"create": "honoured", "replace": "unquoted", "multipart_create": "ignored", "copy_create": "ignored"},
}


def kind(server: S3Server) -> str:
    return server.kind


def get(t: Tree, key: str) -> bytes:
    return bytes(t.client.get_object(Bucket=t.bucket, Key=key)["Body"].read())


def assert_images_json_is_the_served_catalog(t: Tree) -> None:
    index = json.loads(get(t, "streams/v1/index.json"))
    assert get(t, "streams/v1/images.json") == get(t, index["index"]["images"]["path"])


def built(tmp: Path, serial: str, pad_mib: int = 0) -> Path:
    """A build output folder; `pad_mib` makes the rootfs go up in parts (the threshold is 8 MiB)."""
    out = tmp / "built" / serial
    make_image(out, kind="squashfs", serial=serial, description=f"busybox {serial}")
    with (out / "rootfs.squashfs").open("ab") as fh:
        fh.write(os.urandom(pad_mib * MIB))
    return out


def test_the_probe_finds_what_each_store_does(store_server: S3Server, store_bucket: str, tmp_path: Path) -> None:
    t = Tree(store_server, store_bucket, tmp_path)
    out = t.cli("store-check", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["usable"] is True
    verdict = json.loads(get(t, ".ssb-s3/store.json"))
    for operation, form in EXPECTED[kind(store_server)].items():
        assert verdict[operation] == form, (operation, verdict)
    assert not any(k.startswith(".ssb-s3/probe-") for k in t.key_set())
    again = t.cli("store-check")  # probes again over the recorded verdict, and records it
    assert again.returncode == 0 and "could not record" not in again.stderr, again.stderr
    assert "conditional writes: usable" in again.stdout
    assert json.loads(get(t, ".ssb-s3/store.json"))["probed"] >= verdict["probed"]


def test_build_publish_again_and_withdraw(store_server: S3Server, store_bucket: str, tmp_path: Path) -> None:
    t = Tree(store_server, store_bucket, tmp_path, grace="1h")
    first = t.cli("build-product", PRODUCT, "--from-dir", str(built(tmp_path, "20260101_0000", pad_mib=9)),
                  "--version", "20260101_0000")
    assert first.returncode == 0, first.stderr
    assert "starting again" not in first.stderr and "changed by someone else" not in first.stderr
    rootfs = t.client.head_object(Bucket=t.bucket, Key="busybox/amd64/20260101_0000/rootfs.squashfs")
    assert rootfs["ContentLength"] > 9 * MIB
    assert_images_json_is_the_served_catalog(t)
    # the second publish: a builder uploads a version, publish --refresh-manifests records it
    t.upload("busybox/amd64", "20260102_0000")
    again = t.cli("publish", "--refresh-manifests")
    assert again.returncode == 0, again.stderr
    assert "starting again" not in again.stderr, again.stderr
    assert "20260102_0000" in t.served()["products"][PRODUCT]["versions"]
    assert_images_json_is_the_served_catalog(t)
    withdrawn = t.cli("withdraw", PRODUCT, "20260102_0000", "--reason", "broken build")
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert "20260102_0000" not in t.served()["products"][PRODUCT]["versions"]
    assert_images_json_is_the_served_catalog(t)
    t.ok("verify", "--hashes")


def test_verify_and_list_over_anonymous_https_with_a_getobject_only_policy(
        store_server: S3Server, store_bucket: str, tmp_path: Path) -> None:
    """The bucket allows anonymous s3:GetObject only (what the README says to set): RGW, like AWS, answers
    403 for the LXC index files this tree does not have; verify, list and compat read it as a client does."""
    t = Tree(store_server, store_bucket, tmp_path)
    t.upload("busybox/amd64", "20260101_0000")
    t.ok("publish", "--refresh-manifests")
    url = store_server.public_url(store_bucket)
    env = {"SSL_CERT_FILE": str(store_server.ca_file)}
    verify = t.cli("verify", "--base-url", url, "--hashes", env=env)
    assert verify.returncode == 0, verify.stderr
    assert ("403" in verify.stderr) == (kind(store_server) == "rgw"), verify.stderr  # said once, on RGW
    assert sum("403" in line for line in verify.stderr.splitlines()) <= 1, verify.stderr
    listed = json.loads(t.ok("list", "--base-url", url, "--format", "json", env=env))
    assert {row["version"] for row in listed} == {"20260101_0000"}


def test_a_failed_flip_leaves_images_json_as_served(store_server: S3Server, store_bucket: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer changes index.json between the snapshot and the flip: the flip fails, and at that
    moment images.json still equals the catalog index.json serves; the retry then publishes."""
    t = Tree(store_server, store_bucket, tmp_path)
    t.upload("busybox/amd64", "20260101_0000")
    t.ok("publish", "--refresh-manifests")
    t.upload("busybox/amd64", "20260102_0000")
    store_server.use_credentials(monkeypatch)
    tree = load_config(t.conf)
    seen: list[tuple[bytes, bytes]] = []
    real_flip = TreeOwner.flip

    def contested_flip(owner: TreeOwner, snap: Any, plan: Any) -> str | None:
        if not seen:  # the first attempt: someone rewrites index.json (same catalog, other bytes) first
            index = get(t, "streams/v1/index.json")
            t.client.put_object(Bucket=t.bucket, Key="streams/v1/index.json", Body=index + b"\n")
            try:
                return real_flip(owner, snap, plan)
            except PreconditionFailed:
                served = json.loads(get(t, "streams/v1/index.json"))["index"]["images"]["path"]
                seen.append((get(t, "streams/v1/images.json"), get(t, served)))
                raise
        return real_flip(owner, snap, plan)

    monkeypatch.setattr(TreeOwner, "flip", contested_flip)
    report = publish(tree, open_store(f"s3://{t.bucket}", tree.storage), PublishOptions(refresh_manifests=True))
    assert report.published and report.index_written
    assert len(seen) == 1 and seen[0][0] == seen[0][1]  # during the failed flip: images.json = served catalog
    assert "20260102_0000" in t.served()["products"][PRODUCT]["versions"]
    assert_images_json_is_the_served_catalog(t)


def test_a_large_create_only_upload_never_overwrites(store_server: S3Server, store_bucket: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store_server.use_credentials(monkeypatch)
    store = open_store(f"s3://{store_bucket}", StorageConfig(endpoint_url=store_server.endpoint, region="us-east-1",
                                                              addressing_style="path", checksum_mode="when_required"))
    assert isinstance(store, S3Store)
    first, second, racer = (tmp_path / name for name in ("first", "second", "racer"))
    for path in (first, second):
        path.write_bytes(os.urandom(6 * MIB))
    racer.write_bytes(b"created by someone else while the upload ran")
    args: dict[str, Any] = {"digest": lambda: "0" * 64, "content_type": "application/octet-stream",
                            "cache_control": "no-cache", "part_size": 5 * MIB}
    store.put_new("v/one", first, feed=lambda chunk: None, **args)
    with pytest.raises(PreconditionFailed):
        store.put_new("v/one", second, feed=lambda chunk: None, **args)
    assert get_object(store_server, store_bucket, "v/one") == first.read_bytes()

    def race(chunk: bytes) -> None:  # another writer creates the key while the parts go up
        store_server.client().put_object(Bucket=store_bucket, Key="v/two", Body=racer.read_bytes())

    with pytest.raises(PreconditionFailed):
        store.put_new("v/two", second, feed=race, **args)
    assert get_object(store_server, store_bucket, "v/two") == racer.read_bytes()
    assert store_server.client().list_multipart_uploads(Bucket=store_bucket).get("Uploads", []) == []


def get_object(server: S3Server, bucket: str, key: str) -> bytes:
    return bytes(server.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def test_a_lease_taken_over_stops_the_job_before_its_next_write(
        store_server: S3Server, store_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lease_ttl 3s, and the job's planning outlasts it while another job takes the lease over: the
    renewal fails (412), and the publish stops before its first write with one line."""
    t = Tree(store_server, store_bucket, tmp_path, lease_ttl="3s")
    t.upload("busybox/amd64", "20260101_0000")
    t.ok("publish", "--refresh-manifests")
    before = t.snapshot()
    t.upload("busybox/amd64", "20260102_0000")
    store_server.use_credentials(monkeypatch)
    tree = load_config(t.conf)
    real_plan = publish_module.plan_publish

    def slow_plan(*args: Any, **kwargs: Any) -> Any:
        holder = {"owner": "ssb-s3-other", "host": "elsewhere", "pid": 1, "purpose": "publish", "since": 0,
                  "expires": 4102444800}
        t.client.put_object(Bucket=t.bucket, Key=LEASE_KEY, Body=json.dumps(holder).encode())
        time.sleep(tree.lease_ttl * 1.5)  # a renewal (every ttl/3) meets the other job's lease
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(publish_module, "plan_publish", slow_plan)
    with pytest.raises(LeaseError, match=r"lease lost while working \(another job took it over"):
        publish(tree, open_store(f"s3://{t.bucket}", tree.storage), PublishOptions(refresh_manifests=True))
    after = t.snapshot()
    after.pop("busybox/amd64/20260102_0000/lxd.tar.xz", None)
    after.pop("busybox/amd64/20260102_0000/rootfs.squashfs", None)
    assert after == before  # not one write: no ssb.json, no catalog, no flip
    assert json.loads(get(t, LEASE_KEY))["owner"] == "ssb-s3-other"  # the other job's lease is left alone


def test_https_with_the_default_checksum_mode(store_server: S3Server, store_bucket: str, tmp_path: Path) -> None:
    """botocore's default (when_supported) sends aws-chunked trailing checksums over HTTPS; RGW 16.2
    answers 411 MissingContentLength. The store then gets checksums only when required, with a warning
    naming storage.checksum_mode, and every command works."""
    t = Tree(store_server, store_bucket, tmp_path)
    write_tree_yml(t.conf, *PRODUCTS, storage=s3_storage(store_server.https_endpoint))  # default checksum_mode
    env = {"AWS_CA_BUNDLE": str(store_server.ca_file)}
    out = t.cli("build-product", PRODUCT, "--from-dir", str(built(tmp_path, "20260101_0000", pad_mib=9)),
                "--version", "20260101_0000", env=env)
    assert out.returncode == 0, out.stderr
    assert ("storage.checksum_mode" in out.stderr) == (kind(store_server) == "rgw"), out.stderr
    assert_images_json_is_the_served_catalog(t)
    again = t.cli("publish", "--refresh-manifests", env=env)  # a later run: from the cached verdict, no failed request
    assert again.returncode == 0, again.stderr
    verify = t.cli("verify", "--hashes", env=env)
    assert verify.returncode == 0, verify.stderr


def test_lxc_and_incus_read_a_tree_served_from_rgw(rgw_server: S3Server, tmp_path: Path, tls_files: TlsFiles) -> None:
    """The e2e tree of tests/test_e2e_clients (every kind of image), published to RGW by the CLI and
    read over RGW's HTTPS by the real clients: what they list equals what the catalog declares.
    (SeaweedFS has the same check in test_e2e_clients.)"""
    build_images(tmp_path / "images")
    bucket = "e2e-rgw"
    rgw_server.create_bucket(bucket, public_read=True)
    rgw_server.upload_folder(bucket, tmp_path / "images")
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, *E2E_PRODUCTS, storage=s3_storage(rgw_server))
    publish_with_cli(rgw_server, conf, f"s3://{bucket}")
    base = rgw_server.public_url(bucket)
    index = json.loads(rgw_server.anonymous_get(f"{base}/streams/v1/index.json"))
    catalog = json.loads(rgw_server.anonymous_get(f"{base}/{index['index']['images']['path']}"))
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=rgw_server.ca_file)
    lxc.remote_add("t", base)
    check_listing(lxc.image_list("t"), catalog, "lxd.tar.xz", "lxd_combined.tar.gz")
    check_aliases(lxc.alias_list("t"), catalog, "lxd.tar.xz", "lxd_combined.tar.gz")
    assert lxc.export("t:busybox/1.36", tmp_path / "export")
    incus = IncusClient(tmp_path / "incusconf", ca_file=rgw_server.ca_file)
    incus.remote_add("t", base)
    check_listing(incus.image_list("t"), catalog, "incus.tar.xz", "incus_combined.tar.gz")
    check_aliases(incus.alias_list("t"), catalog, "incus.tar.xz", "incus_combined.tar.gz")


# --- the lease's own failure paths, on a local folder (fault injection: the store is real, the fault is not)


def test_a_renewal_error_or_a_stalled_renewal_stops_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ssb_s3.errors import StoreError
    from ssb_s3.storage.lease import Lease

    store = open_store(str(tmp_path / "tree"))
    real_replace = store.replace
    failing = {"now": False}

    def replace(key: str, data: bytes, etag: str, **kwargs: Any) -> str:
        if key == LEASE_KEY and failing["now"]:
            raise StoreError(f"{key}: write failed: timeout")
        return real_replace(key, data, etag, **kwargs)

    monkeypatch.setattr(store, "replace", replace)
    with Lease(store, ttl=1, timeout=5):
        store.put("a", b"written while the lease holds")
        failing["now"] = True
        time.sleep(0.8)  # the renewal (every ttl/3) fails
        with pytest.raises(LeaseError, match=r"lease lost while working \(its renewal failed: .*timeout"):
            store.put("b", b"never written")
    assert not (tmp_path / "tree" / "b").exists() and (tmp_path / "tree" / "a").exists()

    stalled = Lease(store, ttl=1, timeout=5)
    failing["now"] = False
    with stalled:
        stalled._stop.set()  # the renewal thread stops renewing (a stalled process)
        time.sleep(1.2)
        with pytest.raises(LeaseError, match=r"not renewed for 1s, its whole TTL"):
            store.put("c", b"never written")
    assert not (tmp_path / "tree" / "c").exists()


def test_the_tools_own_objects_nested_too_deeply_are_read_as_damaged_never_a_traceback(tmp_path: Path) -> None:
    """.ssb-s3/store.json, lease.json and products.json are bucket contents anyone with write access can
    change: a document nested past Python's recursion limit is "probe again", "unreadable lease" or one
    ConfigError line, never a RecursionError."""
    from ssb_s3.errors import ConfigError
    from ssb_s3.storage.lease import LeaseInfo
    from ssb_s3.storage.probe import Verdict
    from ssb_s3.storage.record import read_record
    from ssb_s3.vocabulary.layout import PRODUCT_RECORD_KEY as RECORD_KEY

    deep = b"[" * 100_000
    assert Verdict.parse(deep, "identity", "settings") is None
    assert LeaseInfo.parse(deep) is None
    store = open_store(str(tmp_path))
    store.put(RECORD_KEY, deep)
    with pytest.raises(ConfigError, match="nested too deeply"):
        read_record(store)
