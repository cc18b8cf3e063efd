"""End to end with the real daemons: `ssb-s3 add` of what `incus image export` wrote, no tree.yml.

The operator's job of issue 22: an image built and published in the Incus daemon (`incus
publish` of a container holding a file of ours), exported with `incus image export`, then
`ssb-s3 -t s3://BUCKET/TREE add` of the exported files with no tree.yml anywhere; `incus launch`
and `lxc launch` of its alias over HTTPS from the bucket start it, with that file inside. The
split image the container came from (a distrobuilder-shaped pair, imported into Incus, exported as
`meta-<fp>.tar.xz` + `<fp>.squashfs`) is added too: both clients list it under the fingerprint Incus
gave it. A second `add`, of a newer distrobuilder-shaped pair (lxd.tar.xz + rootfs.squashfs), moves
the alias; `remove` takes everything out, and neither client lists anything. One launch per client
(of the unified image `incus publish` made).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import helpers
from realparts import IncusDaemon, LxdDaemon, S3Server, make_image

BUCKET = "e2e-add"
PREFIX = "tree"


def ssb(server: S3Server, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
           "AWS_EC2_METADATA_DISABLED": "true"}
    return helpers.ssb("-t", f"s3://{BUCKET}/{PREFIX}", "--endpoint-url", server.endpoint, *args, env=env,
                       clean=True, cwd=cwd, check=True)


def listed(daemon: IncusDaemon | LxdDaemon, url: str) -> dict[str, list[str]]:
    """fingerprint -> aliases (without the /ARCH twins the clients add), as the client lists the remote
    t: at `url`, its caches dropped first (Incus 6.0 also keeps one in ~/.cache/incus/<sha256 of URL>)."""
    daemon.client.clear_cache()
    daemon.clear_cache()
    shutil.rmtree(Path.home() / ".cache" / "incus" / hashlib.sha256(url.encode()).hexdigest(), ignore_errors=True)
    return {img["fingerprint"]: sorted(a["name"] for a in img["aliases"] or () if not a["name"].endswith("/x86_64"))
            for img in daemon.client.image_list("t")}


def golden(daemon: IncusDaemon | LxdDaemon, name: str) -> str:
    daemon.client.run("exec", name, "--", "true")
    return daemon.client.run("exec", name, "--", "cat", "/golden").stdout


def test_add_what_incus_exported_then_both_clients_launch_it(
        s3_server: S3Server, incus_daemon: IncusDaemon, lxd_daemon: LxdDaemon, tmp_path: Path) -> None:
    incus, lxd = incus_daemon, lxd_daemon
    for daemon in (incus, lxd):
        daemon.delete_instances()
        daemon.delete_local_images()
    s3_server.create_bucket(BUCKET, public_read=True)
    work = tmp_path / "work"  # no tree.yml here, nor anywhere above the tree
    work.mkdir()
    try:
        # a distrobuilder-shaped split image, imported into Incus and exported again
        meta, root = make_image(tmp_path / "split", kind="squashfs", serial="20260301_1000", release="1.36")
        incus.client.run("image", "import", str(meta), str(root), "--alias", "base")
        [base] = incus.client.image_list("local")
        split = incus.client.export("base", tmp_path / "exported-split")
        assert sorted(p.name for p in split) == [f"{base['fingerprint']}.squashfs",
                                                 f"meta-{base['fingerprint']}.tar.xz"]
        # a container holding a file of ours, published as an image by Incus, exported
        incus.client.run("init", "base", "builder")
        secret = tmp_path / "golden"
        secret.write_text("golden image of issue 22\n")
        incus.client.run("file", "push", str(secret), "builder/golden")
        incus.client.run("publish", "builder", "--alias", "golden", "description=golden",
                         "os=Golden", "release=1", "variant=default")
        golden_fp = next(i["fingerprint"] for i in incus.client.image_list("local")
                         if any(a["name"] == "golden" for a in i["aliases"]))
        published = incus.client.export("golden", tmp_path / "exported-golden")
        incus.delete_instances()
        incus.delete_local_images()

        out = ssb(s3_server, work, "add", *map(str, reversed(split)))
        assert "Busybox:1.36:x86_64:default: new product" in out.stdout
        out = ssb(s3_server, work, "add", *map(str, published), "--alias", "golden")
        assert "Golden:1:x86_64:default: new product" in out.stdout, out.stdout
        assert not (work / "tree.yml").exists()

        url = s3_server.public_url(BUCKET, PREFIX)
        for daemon in (incus, lxd):
            daemon.remote_add("t", url)
            images = listed(daemon, url)
            # the fingerprints Incus gave the images are the ones the bucket serves
            assert images == {base["fingerprint"]: ["Busybox/1.36/default"],
                              golden_fp: ["Golden/1/default", "golden"]}, (daemon, images)
        incus.client.run("launch", "t:golden", "c1")
        lxd.client.run("launch", "t:golden", "c1")
        for daemon in (incus, lxd):
            assert golden(daemon, "c1") == "golden image of issue 22\n"
            assert daemon.client.run("config", "get", "c1", "volatile.base_image").stdout.strip() == golden_fp

        # a newer image of the same product moves the alias; both versions are listed
        newer = make_image(tmp_path / "newer", kind="squashfs", serial="20260302_1000", release="1.36")
        ssb(s3_server, work, "add", *map(str, newer))
        rows = json.loads(ssb(s3_server, work, "list", "--format", "json", "product~^Busybox").stdout)
        assert [(r["version"], r["aliases"]) for r in rows] == [("20260301_10:00", []),
                                                              ("20260302_10:00", ["Busybox/1.36/default"])]
        for daemon in (incus, lxd):
            images = listed(daemon, url)
            newest = next(fp for fp in images if fp.startswith(str(rows[1]["fingerprint"])))
            assert images[base["fingerprint"]] == [] and images[newest] == ["Busybox/1.36/default"], (daemon, images)

        # remove: by fingerprint, then each product; neither client lists anything
        ssb(s3_server, work, "remove", str(rows[1]["fingerprint"]))
        ssb(s3_server, work, "remove", "Busybox:1.36:x86_64:default", "--force")
        ssb(s3_server, work, "remove", golden_fp[:12], "--force")
        for daemon in (incus, lxd):
            assert listed(daemon, url) == {}
    finally:
        for daemon in (incus, lxd):
            daemon.delete_instances()
            daemon.delete_local_images()
            daemon.client.remote_remove("t")
