"""publish against a real S3 server (SeaweedFS): layout, safe order, aggregation, bad input."""

from __future__ import annotations

import http.server
import json
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import s3_storage, ssb, tree_product, write_tree_yml
from realparts import S3Server, TlsFiles, combined_sha256, make_image, need, sha256_file

PRODUCTS = (
    tree_product(directory="busybox/amd64", days=3, aliases=["busybox/1.36", "busybox"], support_eol="2030-01-01"),
    tree_product("busybox:1.36:amd64:tarxz", arch="x86_64", variant="tarxz", directory="busybox/tarxz",
                 aliases=["busybox/1.36/tarxz"]),
)


def cli(server: S3Server, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return ssb(*args, env={"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
                           **(env or {})})


def upload_dir(server: S3Server, bucket: str, local: Path, prefix: str) -> None:
    client = server.client()
    for path in sorted(local.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local).as_posix()}")


def snapshot(server: S3Server, bucket: str) -> dict[str, bytes]:
    client = server.client()
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """Two versions of a squashfs product (seed-style names) and one rootfs.tar.xz-only product."""
    images = tmp_path / "images"
    for serial in ("20260101_10:00", "20260102_10:00"):
        make_image(images / "busybox/amd64" / serial, kind="squashfs", serial=serial,
                   description=f"busybox {serial}")
    make_image(images / "busybox/tarxz/20260103_1000", kind="tarxz", serial="20260103_1000",
               description="busybox tarxz")
    return images


def write_tree(tmp_path: Path, server: S3Server) -> Path:
    return write_tree_yml(tmp_path / "tree.yml", *PRODUCTS, storage=s3_storage(server, checksum_mode="when_required"))


def read_published(server: S3Server, bucket: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    base = server.public_url(bucket)
    index = json.loads(server.anonymous_get(f"{base}/streams/v1/index.json"))
    path = index["index"]["images"]["path"]
    return index, json.loads(server.anonymous_get(f"{base}/{path}")), path


def test_publish_to_s3_from_uploaded_folders(s3_server: S3Server, bucket: str, built: Path,
                                             tmp_path: Path) -> None:
    upload_dir(s3_server, bucket, built, "")
    conf = write_tree(tmp_path, s3_server)
    out = cli(s3_server, "-c", str(conf), "-t", f"s3://{bucket}", "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    assert "published: 2 products, 3 versions" in out.stdout

    index, catalog, path = read_published(s3_server, bucket)
    assert path.startswith("streams/v1/images-") and path.endswith(".json")
    assert index["index"]["images"]["products"] == sorted(catalog["products"])
    client = s3_server.client()
    plain = client.get_object(Bucket=bucket, Key="streams/v1/images.json")
    assert json.loads(plain["Body"].read()) == catalog
    head_index = client.head_object(Bucket=bucket, Key="streams/v1/index.json")
    head_catalog = client.head_object(Bucket=bucket, Key=path)
    assert head_index["ContentType"] == head_catalog["ContentType"] == "application/json"
    assert head_index["CacheControl"] == "no-cache"
    assert "immutable" in head_catalog["CacheControl"]

    product = catalog["products"]["busybox:1.36:amd64:default"]
    assert product["aliases"] == "busybox/1.36,busybox"
    assert product["support_eol"] == "2030-01-01"
    for serial in ("20260101_10:00", "20260102_10:00"):
        items = product["versions"][serial]["items"]
        folder = built / "busybox/amd64" / serial
        fingerprint = combined_sha256(folder / "lxd.tar.xz", folder / "rootfs.squashfs")
        assert items["lxd.tar.xz"]["combined_squashfs_sha256"] == fingerprint
        assert items["incus.tar.xz"]["combined_squashfs_sha256"] == fingerprint
        assert items["root.squashfs"]["sha256"] == sha256_file(folder / "rootfs.squashfs")
    tarxz = catalog["products"]["busybox:1.36:amd64:tarxz"]["versions"]["20260103_1000"]["items"]
    folder = built / "busybox/tarxz/20260103_1000"
    assert tarxz["lxd.tar.xz"]["combined_rootxz_sha256"] == combined_sha256(
        folder / "lxd.tar.xz", folder / "rootfs.tar.xz")
    manifest = json.loads(client.get_object(Bucket=bucket, Key="busybox/amd64/ssb.json")["Body"].read())
    assert sorted(manifest["versions"]) == ["20260101_10:00", "20260102_10:00"]

    # Idempotent: a second publish writes nothing new.
    before = snapshot(s3_server, bucket)
    again = cli(s3_server, "-c", str(conf), "-t", f"s3://{bucket}", "publish", "--refresh-manifests")
    assert again.returncode == 0 and again.stdout.startswith("unchanged"), again.stderr
    assert snapshot(s3_server, bucket) == before


def test_bad_manifest_on_s3_leaves_published_tree_untouched(s3_server: S3Server, bucket: str,
                                                            built: Path, tmp_path: Path) -> None:
    upload_dir(s3_server, bucket, built, "")
    conf = write_tree(tmp_path, s3_server)
    assert cli(s3_server, "-c", str(conf), "-t", f"s3://{bucket}", "publish",
               "--refresh-manifests").returncode == 0
    client = s3_server.client()
    manifest = json.loads(client.get_object(Bucket=bucket, Key="busybox/amd64/ssb.json")["Body"].read())
    manifest["versions"]["20260102_10:00"]["items"]["lxd.tar.xz"]["size"] += 1
    manifest["versions"]["20260102_10:00"]["items"]["root.squashfs"]["path"] = "busybox/../../x"
    client.put_object(Bucket=bucket, Key="busybox/amd64/ssb.json", Body=json.dumps(manifest).encode())
    before = snapshot(s3_server, bucket)
    out = cli(s3_server, "-c", str(conf), "-t", f"s3://{bucket}", "publish")
    assert out.returncode == 1
    assert "publish refused, nothing was written" in out.stderr
    assert "ssb.json says" in out.stderr and "plain relative path" in out.stderr
    assert "Traceback" not in out.stderr
    assert snapshot(s3_server, bucket) == before


def test_source_products_are_copied_from_another_bucket(s3_server: S3Server, bucket: str,
                                                        built: Path, tmp_path: Path) -> None:
    builds = bucket[:50] + "-src"
    s3_server.create_bucket(builds)
    upload_dir(s3_server, builds, built, "ci")
    conf = write_tree(tmp_path, s3_server)
    conf.write_text(conf.read_text().replace(
        "    directory: busybox/amd64\n", f"    directory: busybox/amd64\n    source: s3://{builds}/ci\n"))
    owner = cli(s3_server, "-c", str(conf), "-t", f"s3://{bucket}/tree", "build-versions-manifest", "-p",
                "busybox:1.36:amd64:default")  # the source's owner: publish --refresh-manifests never writes there
    assert owner.returncode == 0, owner.stderr
    out = cli(s3_server, "-c", str(conf), "-t", f"s3://{bucket}/tree", "publish", "--refresh-manifests")
    # the tarxz product has no source and no files in the target: its manifest is missing
    assert out.returncode == 0, out.stderr
    assert "busybox:1.36:amd64:tarxz: no" in out.stderr
    _, catalog, _ = read_published(s3_server, f"{bucket}/tree")
    items = catalog["products"]["busybox:1.36:amd64:default"]["versions"]["20260101_10:00"]["items"]
    data = s3_server.anonymous_get(f"{s3_server.public_url(bucket, 'tree')}/{items['root.squashfs']['path']}")
    assert len(data) == items["root.squashfs"]["size"]
    assert s3_server.client().head_object(Bucket=builds, Key="ci/busybox/amd64/ssb.json")


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    token = ""
    files: dict[str, bytes] = {}  # noqa: RUF012 - set per test
    seen: list[str] = []  # noqa: RUF012

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") != f"token {self.token}":
            self.send_error(401)
            return
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def token_server(tls_files: TlsFiles) -> Iterator[tuple[str, type[_TokenHandler]]]:
    handler = type("Handler", (_TokenHandler,), {"token": "s3cr3t-token", "files": {}, "seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tls_files.server_cert), str(tls_files.server_key))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}/ns", handler
    httpd.shutdown()
    httpd.server_close()


def test_prefix_path_fetches_ssb_json_with_token(s3_server: S3Server, bucket: str, built: Path,
                                                 tmp_path: Path, tls_files: TlsFiles,
                                                 token_server: tuple[str, Any]) -> None:
    url, handler = token_server
    upload_dir(s3_server, bucket, built, "")
    conf = write_tree(tmp_path, s3_server)
    # Build the tarxz product's manifest where its builder would, then serve it over HTTPS only.
    assert cli(s3_server, "-c", str(conf), "-t", f"s3://{bucket}", "build-versions-manifest",
               "-p", "busybox:1.36:amd64:tarxz").returncode == 0
    body = s3_server.client().get_object(Bucket=bucket, Key="busybox/tarxz/ssb.json")["Body"].read()
    s3_server.client().delete_object(Bucket=bucket, Key="busybox/tarxz/ssb.json")
    handler.files["/ns/busybox/tarxz/ssb.json"] = body
    conf.write_text(conf.read_text().replace(
        "    directory: busybox/tarxz\n", f"    directory: busybox/tarxz\n    prefix_path: {url}\n"))
    env = {"SSL_CERT_FILE": str(tls_files.ca_cert)}
    base = ("-c", str(conf), "-t", f"s3://{bucket}")
    denied = cli(s3_server, *base, "-k", "wrong-token", "publish", "--refresh-manifests", env=env)
    assert denied.returncode == 1
    assert "busybox:1.36:amd64:tarxz" in denied.stderr and "HTTP 401" in denied.stderr
    assert "wrong-token" not in denied.stderr
    ok = cli(s3_server, *base, "publish", "--refresh-manifests", env={**env, "SSB_APIKEY": "s3cr3t-token"})
    assert ok.returncode == 0, ok.stderr
    assert handler.seen[-1] == "token s3cr3t-token"
    _, catalog, _ = read_published(s3_server, bucket)
    assert "20260103_1000" in catalog["products"]["busybox:1.36:amd64:tarxz"]["versions"]


def test_third_reader_python_simplestreams(s3_server: S3Server, bucket: str, built: Path,
                                           tmp_path: Path, tls_files: TlsFiles) -> None:
    """sstream-mirror checks every file's sha256 and size, and rejects absolute paths."""
    mirror = need("sstream-mirror")
    upload_dir(s3_server, bucket, built, "")
    conf = write_tree(tmp_path, s3_server)
    assert cli(s3_server, "-c", str(conf), "-t", f"s3://{bucket}", "publish",
               "--refresh-manifests").returncode == 0
    out = tmp_path / "mirror"
    env = {**os.environ, "SSL_CERT_FILE": str(tls_files.ca_cert), "REQUESTS_CA_BUNDLE": str(tls_files.ca_cert)}
    done = subprocess.run([mirror, "--no-verify", "--path", "streams/v1/index.json",
                           s3_server.public_url(bucket) + "/", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    mirrored = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "busybox/amd64/20260102_10:00/rootfs.squashfs" in mirrored
    assert "busybox/tarxz/20260103_1000/rootfs.tar.xz" in mirrored
