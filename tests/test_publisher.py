"""The hardened publisher on a real S3 server: retention with grace, purge, dry run and JSON
reports, keep-going, refusals, the lease, verify, cache classes and CloudFront (moto server)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from helpers import s3_storage, ssb, tree_product, write_tree_yml
from realparts import S3Server, TlsFiles, make_image

from ssb_s3.config import StorageConfig
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.lease import LEASE_KEY, Lease

PRODUCTS = (tree_product(directory="busybox/amd64", days=1, aliases=["busybox"]),
            tree_product("busybox:1.36:amd64:tarxz", variant="tarxz", directory="busybox/tarxz",
                         aliases=["busybox/tarxz"]))


class Tree:
    """A bucket with its tree.yml, a builder that uploads versions, and the CLI."""

    def __init__(self, server: S3Server, bucket: str, tmp: Path, **top: Any) -> None:
        self.server, self.bucket, self.tmp = server, bucket, tmp
        self.conf = write_tree_yml(tmp / "tree.yml", *PRODUCTS,
                                   storage=s3_storage(server, checksum_mode="when_required"), **top)
        self.client = server.client()

    def upload(self, directory: str, serial: str, kind: str = "squashfs") -> None:
        folder = self.tmp / "images" / directory / serial
        for path in make_image(folder, kind=kind, serial=serial, description=f"{directory} {serial}"):
            self.client.upload_file(str(path), self.bucket, f"{directory}/{serial}/{path.name}")

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return ssb("-c", str(self.conf), "-t", f"s3://{self.bucket}", *args,
                   env={"AWS_ACCESS_KEY_ID": self.server.access_key, "AWS_SECRET_ACCESS_KEY": self.server.secret_key,
                        **(env or {})})

    def ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        out = self.cli(*args, env=env)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def key_set(self, prefix: str = "") -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def served(self) -> dict[str, Any]:
        index = json.loads(self.client.get_object(Bucket=self.bucket, Key="streams/v1/index.json")["Body"].read())
        path = index["index"]["images"]["path"]
        return json.loads(self.client.get_object(Bucket=self.bucket, Key=path)["Body"].read())  # type: ignore[no-any-return]

    def snapshot(self) -> dict[str, bytes]:
        return {k: self.client.get_object(Bucket=self.bucket, Key=k)["Body"].read()
                for k in self.key_set() if not k.startswith(".ssb-s3/")}


@pytest.fixture
def tree(s3_server: S3Server, bucket: str, tmp_path: Path) -> Tree:
    t = Tree(s3_server, bucket, tmp_path)
    t.upload("busybox/amd64", "20260101_0000")
    t.upload("busybox/tarxz", "20260101_0000", kind="tarxz")
    t.ok("publish", "--refresh-manifests")
    return t


def versions(catalog: dict[str, Any], product: str = "busybox:1.36:amd64:default") -> list[str]:
    return sorted(catalog["products"][product]["versions"])


def test_retention_leaves_catalog_at_once_and_files_after_the_grace(tree: Tree) -> None:
    tree.upload("busybox/amd64", "20260102_0000")
    out = tree.ok("-v", "publish", "--refresh-manifests")  # -v: the purge's folders one by one
    assert "+ busybox:1.36:amd64:default 20260102_0000" in out
    assert "- busybox:1.36:amd64:default 20260101_0000" in out
    assert "later busybox/amd64/20260101_0000 (2 objects" in out and "grace 21600s" in out
    assert versions(tree.served()) == ["20260102_0000"]
    assert "busybox/amd64/20260101_0000/rootfs.squashfs" in tree.key_set()  # cached clients still fetch it

    dry = tree.ok("purge", "--dry-run")
    assert "later busybox/amd64/20260101_0000" in dry and "until" in dry
    dry0 = tree.ok("purge", "--dry-run", "--grace", "0")
    assert "would delete busybox/amd64/20260101_0000 (2 objects" in dry0
    assert "busybox/amd64/20260101_0000/rootfs.squashfs" in tree.key_set()  # dry run deleted nothing

    done = tree.ok("purge", "--grace", "0", "--json")
    report = json.loads(done)
    assert [i["version"] for i in report["delete_now"]] == ["20260101_0000"]
    assert len(report["old_catalogs"]) == 1
    assert not tree.key_set("busybox/amd64/20260101_0000/")
    assert not tree.key_set(report["old_catalogs"][0])
    manifest = json.loads(tree.client.get_object(Bucket=tree.bucket, Key="busybox/amd64/ssb.json")["Body"].read())
    assert sorted(manifest["versions"]) == ["20260102_0000"]  # the purged version left ssb.json too
    assert tree.ok("verify", "--hashes").startswith("OK:")
    assert "nothing to purge" in tree.ok("purge", "--grace", "0")


def test_grace_from_tree_yml_and_unknown_keys_untouched(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    t = Tree(s3_server, bucket, tmp_path, grace=0)
    t.client.put_object(Bucket=bucket, Key="busybox/amd64/notes.txt", Body=b"mine")
    t.client.put_object(Bucket=bucket, Key="unrelated/file.bin", Body=b"x")
    for serial in ("20260101_0000", "20260102_0000", "20260103_0000"):
        t.upload("busybox/amd64", serial)
        t.ok("publish", "--refresh-manifests")
    assert versions(t.served()) == ["20260103_0000"]
    assert not t.key_set("busybox/amd64/20260101_0000/") and not t.key_set("busybox/amd64/20260102_0000/")
    assert {"busybox/amd64/notes.txt", "unrelated/file.bin"} <= t.key_set()
    assert len([k for k in t.key_set("streams/v1/") if k.startswith("streams/v1/images-")]) == 1


def test_migrated_versions_never_published_are_kept_unless_asked(s3_server: S3Server, bucket: str,
                                                                 tmp_path: Path) -> None:
    t = Tree(s3_server, bucket, tmp_path, grace=0)
    t.upload("busybox/amd64", "20251201_0000")  # left by the old tool: days: 1 expires it at once
    t.upload("busybox/amd64", "20260101_0000")
    out = t.ok("publish", "--refresh-manifests")  # without -v: one summary line
    kept = [line for line in out.splitlines() if line.startswith("kept")]
    assert len(kept) == 1 and kept[0].startswith("kept: 1 folder(s), 2 objects, ") and "-v lists them" in kept[0]
    assert "kept busybox/amd64/20251201_0000" in t.ok("purge", "--dry-run")  # purge names each folder
    assert t.key_set("busybox/amd64/20251201_0000/")
    t.ok("purge", "--include-unpublished")
    assert not t.key_set("busybox/amd64/20251201_0000/")


def test_dry_run_and_json_report_write_nothing(tree: Tree) -> None:
    tree.upload("busybox/amd64", "20260102_0000")
    tree.ok("build-versions-manifest", "-p", "busybox:1.36:amd64:default")
    before = tree.snapshot()
    out = tree.ok("publish", "--dry-run")
    assert "+ busybox:1.36:amd64:default 20260102_0000" in out and "nothing written" in out
    report = json.loads(tree.ok("publish", "--dry-run", "--json"))
    assert report["dry_run"] is True and report["index_written"] is False
    assert report["changes"]["busybox:1.36:amd64:default"] == {
        "added": ["20260102_0000"], "removed": ["20260101_0000"], "versions": 1}
    assert report["bytes_added"] > 0
    assert [i["version"] for i in report["purge"]["delete_later"]] == ["20260101_0000"]
    assert tree.snapshot() == before
    done = json.loads(tree.ok("publish", "--json"))
    assert done["dry_run"] is False and done["index_written"] is True


def test_keep_going_publishes_valid_products_and_keeps_the_last_entry(tree: Tree) -> None:
    old_entry = tree.served()["products"]["busybox:1.36:amd64:tarxz"]
    tree.upload("busybox/amd64", "20260102_0000")
    tree.ok("build-versions-manifest", "-p", "busybox:1.36:amd64:default")
    tree.client.put_object(Bucket=tree.bucket, Key="busybox/tarxz/ssb.json", Body=b"{not json")
    refused = tree.cli("publish")
    assert refused.returncode == 1 and "busybox/tarxz/ssb.json: not valid JSON" in refused.stderr
    assert versions(tree.served()) == ["20260101_0000"]
    partial = tree.cli("publish", "--keep-going")
    assert partial.returncode == 1
    assert "kept the previously published entry of busybox:1.36:amd64:tarxz" in partial.stdout
    served = tree.served()
    assert versions(served) == ["20260102_0000"]
    assert served["products"]["busybox:1.36:amd64:tarxz"] == old_entry


def test_refuses_to_empty_a_product_or_the_tree_without_force(tree: Tree) -> None:
    tree.conf.write_text(tree.conf.read_text().replace("    days: 1\n", "    days: 1\n    max_age: 1d\n"))
    refused = tree.cli("publish")
    assert refused.returncode == 1
    assert "max_age would remove every version; refusing to empty a product without --force" in refused.stderr
    forced = tree.ok("publish", "--force")
    assert "- busybox:1.36:amd64:default 20260101_0000" in forced
    assert "busybox:1.36:amd64:default" not in tree.served()["products"]
    everything = tree.conf.read_text().replace("    aliases: [busybox/tarxz]\n",
                                               "    aliases: [busybox/tarxz]\n    max_age: 1d\n")
    tree.conf.write_text(everything)
    empty = tree.cli("publish")
    assert empty.returncode == 1 and "refusing to empty" in empty.stderr


def test_lease_waits_times_out_names_the_holder_and_can_be_forced(tree: Tree, s3_server: S3Server,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    s3_server.use_credentials(monkeypatch)
    store = open_store(f"s3://{tree.bucket}", StorageConfig(endpoint_url=s3_server.endpoint, region="us-east-1",
                                                            addressing_style="path"))
    held = Lease(store, ttl=300, timeout=5, purpose="a test holder")
    held.acquire()
    try:
        blocked = tree.cli("publish", "--lock-timeout", "1")
        assert blocked.returncode == 1
        assert "is held: a test holder by ssb-s3-" in blocked.stderr and "force-unlock" in blocked.stderr
        assert blocked.stderr.count("is held") == 1, blocked.stderr  # one line: no warning before the error
        # a second Lease waits while the first one is renewed, then gets it once released
        waiter = Lease(store, ttl=300, timeout=30, purpose="waiter")
        started = time.monotonic()
        threading.Timer(1.0, held.release).start()
        waiter.acquire()
        assert time.monotonic() - started >= 0.9
        waiter.release()
    finally:
        held.release()
    # a dead publisher's lease, still valid for 5 minutes: the operator forces it
    stale = Lease(store, ttl=300, timeout=5, purpose="dead publisher")
    stale.acquire()
    stale._stop.set()  # simulate the process dying: no renewal, no release
    assert "removed the lease held for dead publisher" in tree.ok("force-unlock")
    assert store.head(LEASE_KEY) is None
    assert tree.ok("publish").startswith("unchanged")
    # an expired lease is taken over without any operator
    expired = Lease(store, ttl=0.5, timeout=5, purpose="expired publisher")
    expired.acquire()
    expired._stop.set()
    time.sleep(0.7)
    taken = tree.cli("publish")
    assert taken.returncode == 0 and "took over an expired lease" in taken.stderr
    assert store.head(LEASE_KEY) is None


def test_verify_from_the_store_and_over_https(tree: Tree, tls_files: TlsFiles) -> None:
    assert tree.ok("verify", "--hashes").startswith("OK: 1 catalog, 2 products, 2 versions")
    env = {"SSL_CERT_FILE": str(tls_files.ca_cert)}
    url = tree.server.public_url(tree.bucket)
    assert "hashes verified" in tree.ok("verify", "--base-url", url, "--hashes", env=env)
    key = "busybox/amd64/20260101_0000/rootfs.squashfs"
    data = tree.client.get_object(Bucket=tree.bucket, Key=key)["Body"].read()
    tree.client.put_object(Bucket=tree.bucket, Key=key, Body=bytes([data[0] ^ 1]) + data[1:])  # same size
    assert tree.ok("verify").startswith("OK:")  # sizes still match
    bad = tree.cli("verify", "--base-url", url, "--hashes", env=env)
    assert bad.returncode == 1
    assert f"{key} sha256 is" in bad.stderr and "combined_squashfs_sha256" in bad.stderr
    tree.client.delete_object(Bucket=tree.bucket, Key=key)
    gone = tree.cli("verify")
    assert gone.returncode == 1 and f"s3://{tree.bucket}/{key}: named by" in gone.stderr


def test_cache_control_classes_are_configurable(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    t = Tree(s3_server, bucket, tmp_path, cache_control={"index": "public, max-age=30", "manifest": "max-age=5"})
    t.upload("busybox/amd64", "20260101_0000")
    t.ok("publish", "--refresh-manifests")
    head = t.client.head_object
    assert head(Bucket=bucket, Key="streams/v1/index.json")["CacheControl"] == "public, max-age=30"
    assert head(Bucket=bucket, Key="busybox/amd64/ssb.json")["CacheControl"] == "max-age=5"
    catalog = json.loads(t.client.get_object(Bucket=bucket, Key="streams/v1/index.json")["Body"].read())
    path = catalog["index"]["images"]["path"]
    assert head(Bucket=bucket, Key=path)["CacheControl"] == "public, max-age=31536000, immutable"
    assert head(Bucket=bucket, Key="streams/v1/images.json")["CacheControl"] == "public, max-age=60"


def test_store_without_conditional_writes_fallback(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    t = Tree(s3_server, bucket, tmp_path)
    t.conf.write_text(t.conf.read_text().replace("checksum_mode: when_required}",
                                                 "checksum_mode: when_required, conditional_writes: false}"))
    t.upload("busybox/amd64", "20260101_0000")
    t.ok("publish", "--refresh-manifests")
    assert t.ok("verify", "--hashes").startswith("OK:")


def test_cloudfront_invalidation_after_a_change(tree: Tree, moto_server: str) -> None:
    cf = boto3.client("cloudfront", endpoint_url=moto_server, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    dist = cf.create_distribution(DistributionConfig={
        "CallerReference": "ssb-test", "Comment": "images", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "s3", "DomainName": f"{tree.bucket}.s3.amazonaws.com",
                                              "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "s3", "ViewerProtocolPolicy": "https-only",
                                 "MinTTL": 0, "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                                 "TrustedSigners": {"Enabled": False, "Quantity": 0}},
    })["Distribution"]["Id"]
    env = {"AWS_ENDPOINT_URL_CLOUDFRONT": moto_server}
    assert tree.ok("publish", "--cloudfront-distribution", dist, env=env).startswith("unchanged")
    assert cf.list_invalidations(DistributionId=dist)["InvalidationList"]["Quantity"] == 0  # nothing changed
    tree.upload("busybox/amd64", "20260102_0000")
    report = json.loads(tree.ok("publish", "--refresh-manifests", "--cloudfront-distribution", dist, "--json",
                                env=env))
    invalidations = cf.list_invalidations(DistributionId=dist)["InvalidationList"]["Items"]
    assert [i["Id"] for i in invalidations] == [report["cloudfront_invalidation"]]
    paths = cf.get_invalidation(DistributionId=dist, Id=report["cloudfront_invalidation"])[
        "Invalidation"]["InvalidationBatch"]["Paths"]["Items"]
    assert sorted(paths) == ["/index.html", "/products/busybox:1.36:amd64:default.html", "/streams/v1/images.json",
                             "/streams/v1/index.json"]  # the page of the product that changed
    failed = tree.cli("publish", "--refresh-manifests", "--cloudfront-distribution", "NOPE", env=env)
    assert failed.returncode == 0  # nothing changed, so no invalidation is attempted
