"""A hostile mirror upstream or a co-tenant (issue 20, points 1-6 and 12): whatever the upstream
serves, the tree's own products publish, the real clients resolve our aliases and fingerprints to
our images, and each upstream product, version or item left out is named with its reason."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from realparts import LxdClient, S3Server, TlsFiles, combined_sha256, make_image
from test_mirror import PRODUCTS, run_cli, save, served, write_upstream

OURS = "sample:1.0:amd64:default"


def own_tree(tmp_path: Path, mirrors: str, *, directory: str = "sample") -> tuple[Path, Path]:
    """tree.yml with our product `sample` (aliases sample, sample/1.0; one version built in
    tmp_path/built) and the `mirrors:` text given; (tree.yml, our version's folder)."""
    built = tmp_path / "built"
    version = built / directory / "20260105_0000"
    if not version.exists():
        make_image(version, kind="squashfs", serial="20260105_0000", description="ours")
    conf = tmp_path / "tree.yml"
    conf.write_text(f"""
products:
  - name: {OURS}
    arch: amd64
    release: "1.0"
    os: Own
    directory: {directory}
    source: {built}
    aliases: [sample, sample/1.0]
{mirrors}""")
    return conf, version


def _fingerprint(info: str) -> str:
    found = re.search(r"^Fingerprint: ([0-9a-f]{64})$", info, re.M)
    assert found, info
    return found.group(1)


def test_an_upstream_claiming_our_alias_is_dropped_and_lxc_resolves_it_to_our_image(
        s3_server: S3Server, bucket: str, tls_files: TlsFiles, tmp_path: Path) -> None:
    """Point 1: `busybox…` sorts before `sample…`: it used to take the alias (--keep-going) or
    blame our product (refused). Now the upstream product is dropped with a line naming it."""
    up = tmp_path / "up"
    catalog = write_upstream(up, [PRODUCTS[0], PRODUCTS[2]])
    catalog["products"][PRODUCTS[0][0]]["aliases"] = "busybox/1.36,sample/1.0,sample"
    save(up, catalog, None)
    conf, version = own_tree(tmp_path, f"mirrors:\n  - source: {up}\n")
    ours = combined_sha256(version / "lxd.tar.xz", version / "rootfs.squashfs")
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
    lxc.remote_add("m", s3_server.public_url(bucket))
    for extra in ((), ("--keep-going",)):
        out = run_cli(s3_server, f"s3://{bucket}", "-c", str(conf), "publish", "--refresh-manifests", *extra)
        assert out.returncode == 0, out.stderr
        assert (f"product {PRODUCTS[0][0]}: alias 'sample/1.0' for arch amd64 is already claimed by product "
                f"{OURS}: the upstream product is left out") in out.stderr, out.stderr
        _, catalog_served = served(s3_server, bucket)
        assert set(catalog_served["products"]) == {OURS, PRODUCTS[2][0]}
        lxc.clear_cache()
        for alias in ("sample", "sample/1.0"):
            assert _fingerprint(lxc.image_info(f"m:{alias}")) == ours, (extra, alias)


def test_select_an_upstream_alias_held_by_another_product_drops_the_upstream_product() -> None:
    from ssb_s3.config import claim_alias
    from ssb_s3.core.mirror import select

    catalog = _catalog("20260101")
    catalog["products"][NAME]["aliases"] = "p,ours"
    catalog["products"].update(_catalog("20260101", folder="images/q", name="q:1:x86_64:default")["products"])
    catalog["products"]["q:1:x86_64:default"].update(arch="x86_64", aliases="p")
    taken: dict[tuple[str, str], str] = {}
    claim_alias(taken, "ours", "x86_64", OURS)  # x86_64 and amd64 are one arch for the clients
    selection = select(catalog, [], taken_aliases=taken)
    assert set(selection.products) == {"q:1:x86_64:default"}  # p, dropped, held no alias
    assert all(key[0] != NAME for key in selection.files)
    reasons = _reasons(selection)
    assert reasons[(NAME, "", "")] == (f"alias 'ours' for arch amd64 is already claimed by product {OURS}: "
                                       "the upstream product is left out")
    # two upstream products: the first in sort order keeps the alias, as LXD's own rule
    del catalog["products"][NAME]
    catalog["products"].update(_catalog("20260101")["products"])
    catalog["products"][NAME]["aliases"] = "p"
    selection = select(catalog, [], taken_aliases={})
    assert set(selection.products) == {NAME}
    assert "alias 'p' for arch x86_64 is already claimed by product p:1:amd64:default" in \
        _reasons(selection)[("q:1:x86_64:default", "", "")]


# ----------------------------------------------------------------------------------------------
# Pure selection helpers

NAME = "p:1:amd64:default"


def _catalog(*serials: str, folder: str = "images/p", name: str = NAME) -> dict[str, Any]:
    from test_mirror import _catalog as catalog

    return json.loads(json.dumps(catalog(*serials, folder=folder, name=name)))


def _reasons(selection: Any) -> dict[tuple[str, str, str], str]:
    return {(d.product, d.version, d.item): d.reason for d in selection.drops}
