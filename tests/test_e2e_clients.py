"""End to end with the real clients: a tree published by the CLI into S3, read by lxc and incus.

What `lxc image list` shows must equal what the catalog declares: the client exits 0 on most
broken trees, silently dropping what it cannot parse, so listing alone proves nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import s3_storage, ssb, tree_product, write_tree_yml
from realparts import (
    IncusClient,
    LxdClient,
    LxdDaemon,
    S3Server,
    TlsFiles,
    make_image,
    serve_https_static,
    source_manifests,
)

PRODUCTS = (
    tree_product(release_title="Busybox 1.36", days=2, aliases=["busybox/1.36", "busybox"], variant="default",
                 support_eol="2030-06-30"),
    tree_product("busybox:1.36:amd64:tarxz", directory="busybox/amd64/tarxz", aliases=["busybox/1.36/tarxz"],
                 variant="tarxz", requirements={"privileged": "false"}),
    tree_product("busybox:1.36:x86_64:seed", arch="x86_64", directory="busybox/x86_64/seed", days=2,
                 aliases=["busybox/1.36/seed"], variant="seed"),
    tree_product("busybox:1.36:amd64:unified", directory="busybox/amd64/unified", aliases=["busybox/1.36/unified"],
                 variant="unified"),
    tree_product("busybox:1.36:amd64:vm", directory="busybox/amd64/vm", aliases=["busybox/1.36/vm"], variant="vm"),
)

IMAGES = [  # directory, kind, serials
    ("busybox/amd64/default", "squashfs", ("20260101_1000", "20260102_1000")),
    ("busybox/amd64/tarxz", "tarxz", ("20260101_1100",)),
    ("busybox/x86_64/seed", "both", ("20260103_10:00", "20260104_10:00")),  # the seed's names
    ("busybox/amd64/unified", "unified", ("20260105_1000",)),
    ("busybox/amd64/vm", "vm", ("20260106_1000",)),
]


def build_images(root: Path) -> None:
    for directory, kind, serials in IMAGES:
        for serial in serials:
            make_image(root / directory / serial, kind=kind, serial=serial,
                       description=f"{directory} {serial}", variant=directory.rsplit("/", 1)[1])


def publish(server: S3Server, conf: Path, target: str) -> None:
    env = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
    out = ssb("-c", str(conf), "-t", target, "publish", "--refresh-manifests", env=env)
    assert out.returncode == 0, out.stderr


@pytest.fixture(scope="module")
def tree(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Images uploaded to a public bucket as a builder would, then published by the CLI."""
    work = tmp_path_factory.mktemp("e2e")
    build_images(work / "images")
    bucket = "e2e-clients"
    s3_server.create_bucket(bucket, public_read=True)
    s3_server.upload_folder(bucket, work / "images")
    conf = work / "tree.yml"
    write_tree_yml(conf, *PRODUCTS, storage=s3_storage(s3_server))
    publish(s3_server, conf, f"s3://{bucket}")
    base = s3_server.public_url(bucket)
    index = json.loads(s3_server.anonymous_get(f"{base}/streams/v1/index.json"))
    catalog = json.loads(s3_server.anonymous_get(f"{base}/{index['index']['images']['path']}"))
    yield {"url": base, "catalog": catalog, "work": work, "conf": conf, "bucket": bucket}


def expected_images(catalog: dict[str, Any], meta_ftype: str, unified_ftype: str) -> dict[str, dict[str, Any]]:
    """What a client must list, by fingerprint, derived from the catalog the way the clients read it."""
    combined = {"squashfs": "combined_squashfs_sha256", "root.tar.xz": "combined_rootxz_sha256",
                "disk-kvm.img": "combined_disk-kvm-img_sha256"}
    out: dict[str, dict[str, Any]] = {}
    for name, product in catalog["products"].items():
        for serial, version in product["versions"].items():
            items = version["items"].values()
            for item in items:
                if item["ftype"] == unified_ftype:
                    out[item["sha256"]] = {"product": name, "serial": serial, "type": "container",
                                           "size": item["size"], "ftype": "tar.gz"}
                if item["ftype"] != meta_ftype:
                    continue
                for root in items:
                    if root["ftype"] in combined:
                        out[item[combined[root["ftype"]]]] = {
                            "product": name, "serial": serial, "size": item["size"] + root["size"],
                            "type": "virtual-machine" if root["ftype"] == "disk-kvm.img" else "container",
                            "ftype": root["ftype"],
                        }
    return out


def check_listing(listed: list[dict[str, Any]], catalog: dict[str, Any], meta: str, unified: str) -> None:
    expected = expected_images(catalog, meta, unified)
    assert {img["fingerprint"] for img in listed} == set(expected)
    assert len(expected) == 9  # 2 squashfs + 1 tarxz + 2x2 both + 1 unified + 1 vm
    for img in listed:
        want = expected[img["fingerprint"]]
        product = catalog["products"][want["product"]]
        assert img["type"] == want["type"]
        assert img["size"] == want["size"]
        assert img["architecture"] == "x86_64"
        props = img["properties"]
        assert props["os"] == product["os"] and props["release"] == product["release"]
        assert props["serial"] == want["serial"]
        assert props["variant"] == product["variant"]
        assert props["type"] == want["ftype"]
        for key, value in product.get("requirements", {}).items():
            assert props[f"requirements.{key}"] == value
        if "support_eol" in product:
            assert img["expires_at"].startswith(product["support_eol"])


def check_aliases(aliases: list[dict[str, Any]], catalog: dict[str, Any], meta: str, unified: str) -> None:
    """Every alias (and ALIAS/<arch>) points at an image of the product's newest version."""
    expected = expected_images(catalog, meta, unified)
    by_name = {a["name"]: a for a in aliases}
    wanted: set[str] = set()
    for name, product in catalog["products"].items():
        newest = max(product["versions"])
        for alias in product["aliases"].split(","):
            for alias_name in (alias, f"{alias}/{product['arch']}"):
                wanted.add(alias_name)
                target = by_name[alias_name]["target"]
                assert expected[target]["product"] == name, alias_name
                assert expected[target]["serial"] == newest, alias_name
    assert wanted == set(by_name)


def test_lxc_lists_exactly_what_the_catalog_declares(tree: dict[str, Any], tmp_path: Path,
                                                     tls_files: TlsFiles) -> None:
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
    lxc.remote_add("t", tree["url"])
    check_listing(lxc.image_list("t"), tree["catalog"], "lxd.tar.xz", "lxd_combined.tar.gz")
    check_aliases(lxc.alias_list("t"), tree["catalog"], "lxd.tar.xz", "lxd_combined.tar.gz")


def test_lxc_exports_every_kind_of_image(tree: dict[str, Any], tmp_path: Path, tls_files: TlsFiles) -> None:
    """`lxc image export` downloads and checks sha256 and the fingerprint of each file."""
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
    lxc.remote_add("t", tree["url"])
    for alias in ("busybox/1.36", "busybox/1.36/tarxz", "busybox/1.36/seed", "busybox/1.36/unified"):
        files = lxc.export(f"t:{alias}", tmp_path / alias.replace("/", "_"))
        assert files, alias
    listed = {i["fingerprint"] for i in lxc.image_list("t")}
    for fingerprint in sorted(listed):  # every image, including the non-default root of "both"
        assert lxc.export(f"t:{fingerprint}", tmp_path / "all" / fingerprint[:12])


def test_incus_lists_and_exports(tree: dict[str, Any], tmp_path: Path, tls_files: TlsFiles) -> None:
    incus = IncusClient(tmp_path / "incusconf", ca_file=tls_files.ca_cert)
    incus.remote_add("t", tree["url"])
    listed = incus.image_list("t")
    check_listing(listed, tree["catalog"], "incus.tar.xz", "incus_combined.tar.gz")
    check_aliases(incus.alias_list("t"), tree["catalog"], "incus.tar.xz", "incus_combined.tar.gz")
    default = next(i for i in listed if i["properties"]["variant"] == "default")
    assert incus.export(f"t:{default['fingerprint']}", tmp_path / "export")


def test_daemon_copies_and_launches(tree: dict[str, Any], lxd_daemon: LxdDaemon) -> None:
    lxd_daemon.remote_add("t", tree["url"])
    lxd_daemon.delete_instances()
    lxd_daemon.delete_local_images()
    client = lxd_daemon.client
    client.run("image", "copy", "t:busybox/1.36/tarxz", "local:", "--alias", "copied")
    assert any(a["name"] == "copied" for a in client.alias_list("local"))
    client.run("launch", "t:busybox/1.36", "c1")
    try:
        client.run("exec", "c1", "--", "true")
        # the container runs the newest version of the aliased product
        out = client.run("exec", "c1", "--", "cat", "/etc/os-release").stdout
        assert 'BUILD_ID="20260102_1000"' in out
    finally:
        client.run("delete", "--force", "c1", check=False)


def test_local_folder_tree_served_by_static_https(tree: dict[str, Any], tmp_path: Path,
                                                  tls_files: TlsFiles) -> None:
    """The same tree published to a folder and served by a plain static HTTPS server."""
    conf: Path = tree["conf"]
    local_conf = tmp_path / "tree.yml"
    local_conf.write_text(conf.read_text().replace("    directory: busybox/", f"    source: {tree['work']}/images\n"
                                                   "    directory: busybox/"))
    source_manifests(local_conf)  # the source's owner (publish --refresh-manifests never writes there)
    out = ssb("-c", str(local_conf), "-t", str(tmp_path / "public"), "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
    with serve_https_static(tmp_path / "public", tls_files) as url:
        lxc.remote_add("local-tree", url)
        local_catalog = json.loads((tmp_path / "public/streams/v1/images.json").read_text())
        assert local_catalog == tree["catalog"]
        check_listing(lxc.image_list("local-tree"), local_catalog, "lxd.tar.xz", "lxd_combined.tar.gz")
        assert lxc.export("local-tree:busybox/1.36/seed", tmp_path / "export")
