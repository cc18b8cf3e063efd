"""End to end with the real Incus daemon: a tree published by the CLI into S3 is copied and run.

`incus image list` only proves that Incus *lists* an image; here the daemon downloads it (it
recomputes the fingerprint over the bytes it got and refuses a mismatch), unpacks it and boots
it, from both kinds of root (squashfs and tar.xz). The LXD daemon of the session runs alongside:
both must keep working with instances of the same name at the same time, and stopping one
daemon must leave the other's instances running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import s3_storage, tree_product, write_tree_yml
from realparts import IncusDaemon, LxdDaemon, S3Server, daemon_workdir, make_image, run_lxd_daemon
from test_e2e_clients import expected_images, publish

PRODUCT = tree_product("busybox:1.36:amd64:both", release_title="Busybox 1.36", directory="busybox/amd64/both",
                       days=2, aliases=["busybox/both"], variant="both")
DIRECTORY = "busybox/amd64/both"
SERIALS = ("20260201_1000", "20260202_1000")  # each version carries a squashfs and a tar.xz root
ALIAS = "busybox/both"


@pytest.fixture(scope="module")
def tree(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Images uploaded to a public bucket as a builder would, then published by the CLI."""
    work = tmp_path_factory.mktemp("e2e-incusd")
    for serial in SERIALS:
        make_image(work / "images" / DIRECTORY / serial, kind="both", serial=serial, release="1.36",
                   description=f"incusd {serial}", variant="both")
    bucket = "e2e-incus-daemon"
    s3_server.create_bucket(bucket, public_read=True)
    s3_server.upload_folder(bucket, work / "images")
    conf = work / "tree.yml"
    write_tree_yml(conf, PRODUCT, storage=s3_storage(s3_server))
    publish(s3_server, conf, f"s3://{bucket}")
    base = s3_server.public_url(bucket)
    index = json.loads(s3_server.anonymous_get(f"{base}/streams/v1/index.json"))
    catalog = json.loads(s3_server.anonymous_get(f"{base}/{index['index']['images']['path']}"))
    # Incus reads the incus.tar.xz items: fingerprint -> product, serial, root ftype
    images = expected_images(catalog, "incus.tar.xz", "incus_combined.tar.gz")
    assert sorted((i["serial"], i["ftype"]) for i in images.values()) == [
        (s, f) for s in SERIALS for f in ("root.tar.xz", "squashfs")]
    yield {"url": base, "catalog": catalog, "images": images}


@pytest.fixture
def incus(incus_daemon: IncusDaemon, tree: dict[str, Any]) -> Iterator[IncusDaemon]:
    """The session's Incus daemon with remote t: on the tree, and no instance or image left over."""
    incus_daemon.delete_instances()
    incus_daemon.delete_local_images()
    incus_daemon.remote_add("t", tree["url"])
    yield incus_daemon
    incus_daemon.delete_instances()
    incus_daemon.delete_local_images()


def fingerprint_of(images: dict[str, dict[str, Any]], serial: str, ftype: str) -> str:
    """The catalog's combined hash for the version ``serial`` with root ``ftype``."""
    return next(fp for fp, i in images.items() if i["serial"] == serial and i["ftype"] == ftype)


def os_release(daemon: IncusDaemon | LxdDaemon, name: str) -> str:
    """/etc/os-release read inside a running instance: proves it booted the image's own root."""
    daemon.client.run("exec", name, "--", "true")
    return daemon.client.run("exec", name, "--", "cat", "/etc/os-release").stdout


def test_incus_daemon_copies_each_image_with_the_catalog_fingerprint(incus: IncusDaemon,
                                                                       tree: dict[str, Any]) -> None:
    images: dict[str, dict[str, Any]] = tree["images"]
    client = incus.client
    # by alias: the newest version, squashfs root (Incus prefers it over root.tar.xz)
    client.run("image", "copy", f"t:{ALIAS}", "local:", "--alias", "copied")
    [local] = client.image_list("local")
    assert local["fingerprint"] == fingerprint_of(images, SERIALS[-1], "squashfs")
    assert [a["name"] for a in local["aliases"]] == ["copied"]
    # by fingerprint: every image the catalog declares, both roots of both versions
    for fingerprint in sorted(set(images) - {local["fingerprint"]}):
        client.run("image", "copy", f"t:{fingerprint}", "local:")
    copied = {img["fingerprint"]: img for img in client.image_list("local")}
    assert set(copied) == set(images)
    for fingerprint, img in copied.items():
        want = images[fingerprint]
        assert img["type"] == "container"
        assert img["size"] == want["size"]
        assert img["architecture"] == "x86_64"
        assert img["properties"]["serial"] == want["serial"]
        assert img["properties"]["os"] == "Busybox" and img["properties"]["release"] == "1.36"


def test_incus_daemon_launches_and_runs_both_roots(incus: IncusDaemon, tree: dict[str, Any]) -> None:
    images: dict[str, dict[str, Any]] = tree["images"]
    client = incus.client
    client.run("launch", f"t:{ALIAS}", "c1")  # squashfs root of the newest version
    older_tarxz = fingerprint_of(images, SERIALS[0], "root.tar.xz")
    client.run("launch", f"t:{older_tarxz}", "c2")
    assert {i["name"]: i["status"] for i in incus.instances()} == {"c1": "Running", "c2": "Running"}
    assert f'BUILD_ID="{SERIALS[-1]}"' in os_release(incus, "c1")
    assert f'BUILD_ID="{SERIALS[0]}"' in os_release(incus, "c2")
    # each instance was created from the image the catalog declares
    for name, fingerprint in (("c1", fingerprint_of(images, SERIALS[-1], "squashfs")), ("c2", older_tarxz)):
        assert client.run("config", "get", name, "volatile.base_image").stdout.strip() == fingerprint
    for name in ("c1", "c2"):
        client.run("delete", "--force", name)
    assert incus.instances() == []


def test_lxd_and_incus_daemons_run_side_by_side(incus: IncusDaemon, lxd_daemon: LxdDaemon,
                                                tree: dict[str, Any]) -> None:
    """Same instance name in both daemons at once (one cgroup tree); each sees only its own."""
    lxd_daemon.delete_instances()
    lxd_daemon.delete_local_images()
    lxd_daemon.remote_add("t", tree["url"])
    try:
        incus.client.run("launch", f"t:{ALIAS}", "c1")
        lxd_daemon.client.run("launch", f"t:{ALIAS}", "c1")  # LXD reads the lxd.tar.xz items
        assert [i["name"] for i in incus.instances()] == ["c1"]
        assert [i["name"] for i in lxd_daemon.instances()] == ["c1"]
        assert f'BUILD_ID="{SERIALS[-1]}"' in os_release(lxd_daemon, "c1")
        assert f'BUILD_ID="{SERIALS[-1]}"' in os_release(incus, "c1")
        lxd_daemon.client.run("delete", "--force", "c1")
        assert "BUILD_ID" in os_release(incus, "c1")
    finally:
        lxd_daemon.delete_instances()
        lxd_daemon.delete_local_images()


def test_stopping_an_lxd_daemon_leaves_incus_running(incus: IncusDaemon, tree: dict[str, Any]) -> None:
    """A whole LXD daemon with a running instance starts and stops while Incus runs c1."""
    incus.client.run("launch", f"t:{ALIAS}", "c1")
    with daemon_workdir("ssb-lxd2-") as workdir:
        with run_lxd_daemon(workdir, incus.ca_file) as lxd:
            lxd.remote_add("t", tree["url"])
            lxd.client.run("launch", f"t:{ALIAS}", "c1")
            assert "BUILD_ID" in os_release(lxd, "c1")
        assert lxd.proc.poll() is not None  # that daemon is gone
    assert [(i["name"], i["status"]) for i in incus.instances()] == [("c1", "Running")]
    assert f'BUILD_ID="{SERIALS[-1]}"' in os_release(incus, "c1")
