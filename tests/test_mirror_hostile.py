"""A hostile mirror upstream or a co-tenant (issue 20, points 1-6 and 12): whatever the upstream
serves, the tree's own products publish, the real clients resolve our aliases and fingerprints to
our images, and each upstream product, version or item left out is named with its reason."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import ssb
from realparts import LxdClient, S3Server, TlsFiles, combined_sha256, make_image, sha256_file, source_manifests
from test_mirror import PRODUCTS, make_key, run_cli, save, served, write_upstream

OURS = "sample:1.0:amd64:default"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """PRODUCTS in images.linuxcontainers.org's shape, signed, built once for the module: each test
    copies it (upstream()) and makes it hostile its own way."""
    work = tmp_path_factory.mktemp("pristine")
    home, ring = make_key(work)
    catalog = write_upstream(work / "root", PRODUCTS, gnupg=home)
    listed = subprocess.run(["gpg", "--homedir", str(home), "--list-keys", "--with-colons"], check=True,
                            capture_output=True, text=True, timeout=60).stdout
    fingerprint = next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr:"))
    return {"root": work / "root", "catalog": catalog, "gnupg": home, "keyring": ring, "fingerprint": fingerprint}


def upstream(pristine: dict[str, Any], where: Path, *names: str) -> tuple[Path, dict[str, Any]]:
    """A copy of the pristine upstream in `where` (its catalog: only the products named, if any), and
    that catalog to change; write it back with unsigned()."""
    shutil.copytree(pristine["root"], where)
    catalog = json.loads(json.dumps(pristine["catalog"]))
    if names:
        catalog["products"] = {n: p for n, p in catalog["products"].items() if n in names}
    return where, catalog


def unsigned(root: Path, catalog: dict[str, Any]) -> None:
    """The catalog served unsigned (index.json, images.json; no .sjson)."""
    for name in ("index.sjson", "images.sjson"):
        (root / "streams/v1" / name).unlink(missing_ok=True)
    save(root, catalog, None)


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
    source_manifests(conf)
    return conf, version


def _fingerprint(info: str) -> str:
    found = re.search(r"^Fingerprint: ([0-9a-f]{64})$", info, re.M)
    assert found, info
    return found.group(1)


def test_an_upstream_claiming_our_alias_is_dropped_and_lxc_resolves_it_to_our_image(
        pristine: dict[str, Any], s3_server: S3Server, bucket: str, tls_files: TlsFiles, tmp_path: Path) -> None:
    """Point 1: `busybox…` sorts before `sample…`: it used to take the alias (--keep-going) or
    blame our product (refused). Now the upstream product is dropped with a line naming it."""
    up, catalog = upstream(pristine, tmp_path / "up", PRODUCTS[0][0], PRODUCTS[2][0])
    catalog["products"][PRODUCTS[0][0]]["aliases"] = "busybox/1.36,sample/1.0,sample"
    unsigned(up, catalog)
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


def test_a_version_a_co_tenant_adds_to_a_mirrored_product_leaves_at_the_next_mirror(
        pristine: dict[str, Any], tmp_path: Path) -> None:
    """Point 5: files plus an ssb.json entry for 20991231_0000 in a mirrored product's folder (and an
    item added to a mirrored version) are not kept, with or without --keep: they were never mirrored."""
    up, catalog = upstream(pristine, tmp_path / "up", PRODUCTS[0][0])
    unsigned(up, catalog)
    name, folder = PRODUCTS[0][0], "images/busybox/1.36/amd64/default"
    for extra in ((), ("--keep",)):
        target = tmp_path / f"target{len(extra)}"
        first = run_cli(None, str(target), "mirror", str(up), *extra)
        assert first.returncode == 0, first.stderr
        manifest_file = target / folder / "ssb.json"
        manifest = json.loads(manifest_file.read_text())
        planted = json.loads(json.dumps(manifest["versions"]["20260102_0000"]).replace("20260102_0000",
                                                                                        "20991231_0000"))
        planted["items"] = {k: i for k, i in planted["items"].items() if not k.startswith("delta")}
        (target / folder / "20991231_0000").mkdir()
        for item in planted["items"].values():
            source = target / item["path"].replace("20991231_0000", "20260102_0000")
            (target / item["path"]).write_bytes(source.read_bytes())
        manifest["versions"]["20991231_0000"] = planted
        manifest["versions"]["20260101_0000"]["items"]["extra"] = {
            **manifest["versions"]["20260101_0000"]["items"]["root.squashfs"], "ftype": "root.tar.xz"}
        manifest_file.write_text(json.dumps(manifest))
        again = run_cli(None, str(target), "mirror", str(up), *extra)
        assert again.returncode == 0, again.stderr
        catalog = json.loads((target / "streams/v1/images.json").read_text())
        versions = catalog["products"][name]["versions"]
        assert set(versions) == {"20260101_0000", "20260102_0000"}, extra
        assert "extra" not in versions["20260101_0000"]["items"]
        rewritten = json.loads(manifest_file.read_text())
        assert set(rewritten["versions"]) == {"20260101_0000", "20260102_0000"}
        assert "extra" not in rewritten["versions"]["20260101_0000"]["items"]


def test_merged_manifest_keeps_only_versions_the_served_catalog_records() -> None:
    from ssb_s3.core.mirror import merged_manifest, recorded_versions

    item = {"ftype": "squashfs", "path": "p/1/root.squashfs", "size": 1, "sha256": "a" * 64}
    existing = {"versions": {"20260101": {"items": {"root": item, "added": {**item, "sha256": "b" * 64}}},
                             "20991231": {"items": {"root": item}}}}
    served = {"versions": {"20260101": {"label": "old", "items": {"root": item, "twin": item}}}}
    recorded = recorded_versions(existing, served)
    assert recorded == {"20260101": {"label": "old", "items": {"root": item}}}
    fresh = {"20260102": {"items": {"root": {**item, "path": "p/2/root.squashfs"}}}}
    assert set(merged_manifest("p", fresh, recorded, keep=False)[0]["versions"]) == {"20260102"}
    assert set(merged_manifest("p", fresh, recorded, keep=True)[0]["versions"]) == {"20260101", "20260102"}
    # named by the source, its copy failed this time: it stays as it was
    assert set(merged_manifest("p", fresh, recorded, keep=False, named=["20260101", "20260102"])[0]["versions"]) \
        == {"20260101", "20260102"}


def test_fingerprints_are_computed_while_copying_and_a_false_one_is_refused(
        pristine: dict[str, Any], s3_server: S3Server, bucket: str, tls_files: TlsFiles, tmp_path: Path) -> None:
    """Point 3: an upstream meta item claiming our image's fingerprint (its own bytes give another):
    that version is refused, nothing of its root created; `lxc image info m:<our fingerprint>`
    answers with our image (not "More than one match"), and `verify --hashes` passes on the tree."""
    up, catalog = upstream(pristine, tmp_path / "up", PRODUCTS[0][0])
    conf, version = own_tree(tmp_path, f"mirrors:\n  - source: {up}\n")
    ours = combined_sha256(version / "lxd.tar.xz", version / "rootfs.squashfs")
    items = catalog["products"][PRODUCTS[0][0]]["versions"]["20260102_0000"]["items"]
    items["lxd.tar.xz"]["combined_squashfs_sha256"] = ours
    unsigned(up, catalog)
    out = run_cli(s3_server, f"s3://{bucket}", "-c", str(conf), "publish", "--refresh-manifests")
    assert out.returncode == 1 and "Traceback" not in out.stderr and "unexpected" not in out.stderr
    assert f"product {PRODUCTS[0][0]} version 20260102_0000: not mirrored: " in out.stderr, out.stderr
    assert f"combined_squashfs_sha256 of its catalog gives {ours}: refusing the file" in out.stderr, out.stderr
    _, catalog_served = served(s3_server, bucket)
    assert set(catalog_served["products"][PRODUCTS[0][0]]["versions"]) == {"20260101_0000"}
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert "images/busybox/1.36/amd64/default/20260102_0000/rootfs.squashfs" not in keys
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
    lxc.remote_add("m", s3_server.public_url(bucket))
    assert _fingerprint(lxc.image_info(f"m:{ours}")) == ours
    assert _fingerprint(lxc.image_info("m:sample")) == ours
    checked = run_cli(s3_server, f"s3://{bucket}", "-c", str(conf), "verify", "--hashes")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_false_fingerprint_of_a_file_already_in_the_target_is_refused(pristine: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    """The files are there (an earlier run, or a co-tenant) but the served catalog does not record
    that fingerprint: the root is hashed again from the target, and the claim refused."""
    up, catalog = upstream(pristine, tmp_path / "up", PRODUCTS[2][0])
    unsigned(up, catalog)
    target = tmp_path / "target"
    first = run_cli(None, str(target), "mirror", str(up))
    assert first.returncode == 0, first.stderr
    items = catalog["products"][PRODUCTS[2][0]]["versions"]["20260101_0000"]["items"]
    items["incus.tar.xz"]["combined_rootxz_sha256"] = "0" * 64
    unsigned(up, catalog)
    again = run_cli(None, str(target), "mirror", str(up), "--json")
    assert again.returncode == 1, again.stderr
    assert "combined_rootxz_sha256 of its catalog gives " + "0" * 64 in again.stderr
    served_catalog = json.loads((target / "streams/v1/images.json").read_text())
    assert "0" * 64 not in json.dumps(served_catalog)


def _cli(conf: Path, target: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return ssb("-c", str(conf), "-t", str(target), *args, env=env)


def _add_lxc_image(root: Path, version: dict[str, Any], folder: str, scratch: Path) -> None:
    """An LXC metadata tarball next to the version's rootfs.tar.xz (a classic LXC image)."""
    if not scratch.exists():
        make_image(scratch, kind="lxc")
    dest = root / folder / "meta.tar.xz"
    dest.write_bytes((scratch / "meta.tar.xz").read_bytes())
    version["items"]["meta.tar.xz"] = {"ftype": "meta.tar.xz", "path": f"{folder}/meta.tar.xz",
                                       "size": dest.stat().st_size, "sha256": sha256_file(dest)}


def test_one_bad_upstream_product_version_or_item_is_dropped_and_the_signed_tree_publishes(
        pristine: dict[str, Any], tmp_path: Path) -> None:
    """Point 2: ';' in an LXC image's os, an arch LXC does not know, a 30 KB release_title on a
    signed tree, a NUL byte in one item path: each dropped at selection with its reason; our own
    product and the sound upstream ones publish (signed), with no 'unexpected' line."""
    up, catalog = upstream(pristine, tmp_path / "up")
    products = catalog["products"]
    semi, arch, nul, long_title = (p[0] for p in PRODUCTS)
    products[semi]["os"] = "Busy;box"
    _add_lxc_image(up, products[semi]["versions"]["20260102_0000"],
                   "images/busybox/1.36/amd64/default/20260102_0000", tmp_path / "lxc1")
    products[arch]["arch"] = "ppc"  # LXD knows it, LXC does not
    _add_lxc_image(up, products[arch]["versions"]["20260101_0000"],
                   "images/busybox/1.36/arm64/default/20260101_0000", tmp_path / "lxc1")
    nul_item = products[nul]["versions"]["20260101_0000"]["items"]["root.tar.xz"]
    nul_item["path"] = nul_item["path"].replace("rootfs", "root\x00fs")
    products[long_title]["release_title"] = "t" * 30000
    unsigned(up, catalog)
    home, fingerprint = pristine["gnupg"], pristine["fingerprint"]
    conf, _ = own_tree(tmp_path, f"mirrors:\n  - source: {up}\n")
    target = tmp_path / "public"
    out = _cli(conf, target, "publish", "--refresh-manifests", "--sign-key", fingerprint,
               env={"GNUPGHOME": str(home)})
    assert out.returncode == 0, out.stderr
    assert "unexpected" not in out.stderr and "Traceback" not in out.stderr
    assert f"product {semi}: os: 'Busy;box' contains ';'" in out.stderr, out.stderr
    assert f"product {arch}: arch: arch 'ppc' has no LXC name" in out.stderr
    assert f"product {nul} version 20260101_0000 item root.tar.xz: path " in out.stderr
    assert "must be a plain relative path (no '..', '.', '//', '\\', spaces or control characters)" in out.stderr
    assert f"product {long_title}: release_title is 30000 bytes, at most 1024 are copied" in out.stderr
    served_catalog = json.loads((target / "streams/v1/images.json").read_text())
    assert set(served_catalog["products"]) == {OURS, nul}
    assert "root.tar.xz" not in served_catalog["products"][nul]["versions"]["20260101_0000"]["items"]
    assert (target / "streams/v1/index.sjson").is_file()


def test_select_a_root_without_its_fingerprint_and_overlong_texts_are_dropped() -> None:
    from ssb_s3.core.mirror import select

    catalog = _catalog("20260101", "20260102")
    versions = catalog["products"][NAME]["versions"]
    versions["20260101"]["items"]["root.tar.xz"] = {"ftype": "root.tar.xz", "path": "images/p/20260101/r.tar.xz",
                                                    "size": 2, "sha256": "e" * 64}
    versions["20260102"]["label"] = "l" * 2000
    selection = select(catalog, [])
    reasons = _reasons(selection)
    assert reasons[(NAME, "20260101", "root.tar.xz")] == \
        "combined_rootxz_sha256 missing on item lxd.tar.xz: no client could use this root"
    assert reasons[(NAME, "20260102", "")].startswith("label is 2000 bytes, at most 1024 are copied")
    assert set(selection.versions[NAME]["20260101"]["items"]) == {"lxd.tar.xz", "root.squashfs"}
    assert "label" not in selection.versions[NAME]["20260102"]


def test_product_folders_over_the_trees_own_keys_are_refused(pristine: dict[str, Any], tmp_path: Path) -> None:
    """Point 6: upstream products laid out at streams/v1/index.json, index.html, meta/1.0/index-system
    and .ssb-s3 are dropped (each with its line), our product and the sound one publish, and the
    next run works; a tree.yml product folder there is refused with one line."""
    up, catalog = upstream(pristine, tmp_path / "up", PRODUCTS[2][0])
    model = catalog["products"][PRODUCTS[0][0]] = pristine["catalog"]["products"][PRODUCTS[0][0]]
    folders = ("streams/v1/index.json", "index.html", "meta/1.0/index-system", ".ssb-s3")
    for n, folder in enumerate(folders):
        text = json.dumps(model).replace("images/busybox/1.36/amd64/default", folder)
        catalog["products"][f"evil{n}:1:amd64:default"] = {**json.loads(text), "aliases": f"evil{n}"}
        for version in json.loads(text)["versions"].values() if n else ():  # (the upstream's own index.json)
            for item in version["items"].values():
                source = up / item["path"].replace(folder, "images/busybox/1.36/amd64/default")
                (up / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, up / item["path"])
    del catalog["products"][PRODUCTS[0][0]]
    unsigned(up, catalog)
    conf, _ = own_tree(tmp_path, f"mirrors:\n  - source: {up}\n")
    target = tmp_path / "public"
    for _ in range(2):  # the tree is not wedged: a second run publishes as well
        out = _cli(conf, target, "publish", "--refresh-manifests")
        assert out.returncode == 0, out.stderr
        for n, folder in enumerate(folders):
            assert f"product evil{n}:1:amd64:default: the folder '{folder}' overlaps " in out.stderr, out.stderr
        served_catalog = json.loads((target / "streams/v1/images.json").read_text())
        assert set(served_catalog["products"]) == {OURS, PRODUCTS[2][0]}
    assert (target / "streams/v1/index.json").is_file() and (target / "index.html").is_file()
    # declared in tree.yml: one line, nothing written
    conf, _ = own_tree(tmp_path, "", directory="meta")
    bad = _cli(conf, tmp_path / "other", "publish", "--refresh-manifests")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    lines = [line for line in bad.stderr.splitlines() if "overlaps" in line]
    assert len(lines) == 1 and "products[0].directory: the folder 'meta' overlaps 'meta/1.0', one of the tree's " \
        "own keys" in lines[0], bad.stderr
    assert not (tmp_path / "other").exists()


def test_a_signed_index_naming_a_catalog_not_ending_in_json_has_it_verified_too(
        pristine: dict[str, Any], tmp_path: Path) -> None:
    """Point 4: a validly signed index.sjson naming streams/v1/images.catalog: that catalog, unsigned,
    is refused (it used to be read unsigned, reported signed=true); clearsigned by the key, it is read."""
    up, catalog = upstream(pristine, tmp_path / "up", PRODUCTS[2][0])
    streams = up / "streams/v1"
    (streams / "images.catalog").write_text(json.dumps(catalog))
    index = {"format": "index:1.0", "index": {"images": {
        "datatype": "image-downloads", "format": "products:1.0", "path": "streams/v1/images.catalog",
        "products": sorted(catalog["products"])}}}
    (streams / "index.plain").write_text(json.dumps(index))

    def clearsign(source: Path, dest: Path) -> None:
        dest.unlink(missing_ok=True)
        subprocess.run(["gpg", "--homedir", str(pristine["gnupg"]), "--batch", "--yes", "--clearsign", "-o",
                        str(dest), str(source)], check=True, capture_output=True, timeout=60)

    clearsign(streams / "index.plain", streams / "index.sjson")
    target = tmp_path / "target"
    out = run_cli(None, str(target), "mirror", str(up), "--keyring", str(pristine["keyring"]), "--json")
    assert out.returncode == 1 and "Traceback" not in out.stderr and "unexpected" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "streams/v1/images.catalog: bad signature, refusing the source" in lines[0], out.stderr
    assert not target.exists()
    clearsign(streams / "images.catalog", streams / "images.signed")
    (streams / "images.signed").replace(streams / "images.catalog")
    out = run_cli(None, str(target), "mirror", str(up), "--keyring", str(pristine["keyring"]), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["signed"] is True and report["products"] == [PRODUCTS[2][0]]


def test_when_every_upstream_product_is_dropped_or_fails_each_reason_is_printed(
        pristine: dict[str, Any], tmp_path: Path) -> None:
    """Point 12: not only "no product has a published version"."""
    up, catalog = upstream(pristine, tmp_path / "up", PRODUCTS[2][0], PRODUCTS[3][0])
    catalog["products"][PRODUCTS[2][0]]["arch"] = "sparc"
    bad = up / "images/busybox/1.36/amd64/cloud/20260103_0000/rootfs.squashfs"
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    unsigned(up, catalog)
    target = tmp_path / "target"
    out = run_cli(None, str(target), "mirror", str(up))
    assert out.returncode == 1 and "Traceback" not in out.stderr and "unexpected" not in out.stderr
    assert "no product has a published version" in out.stderr
    assert f"product {PRODUCTS[2][0]}: arch 'sparc' is unknown to LXD" in out.stderr, out.stderr
    assert f"product {PRODUCTS[3][0]} version 20260103_0000: not mirrored: " in out.stderr
    assert "rootfs.squashfs: sha256" in out.stderr


def test_a_false_fingerprint_in_a_local_source_ssb_json_is_refused_while_copying(tmp_path: Path) -> None:
    """Point 3, a tree.yml product with a local `source:` whose ssb.json claims a fingerprint its
    bytes do not give: refused while its files are copied, nothing published; the true one publishes."""
    conf, version = own_tree(tmp_path, "")
    meta, root = version / "lxd.tar.xz", version / "rootfs.squashfs"
    item = {k: {"ftype": f, "path": f"sample/20260105_0000/{p.name}", "size": p.stat().st_size,
                "sha256": sha256_file(p)} for k, f, p in (("lxd.tar.xz", "lxd.tar.xz", meta),
                                                          ("root.squashfs", "squashfs", root))}
    manifest = {"name": OURS, "versions": {"20260105_0000": {"items": item}}}
    item["lxd.tar.xz"]["combined_squashfs_sha256"] = "f" * 64
    (version.parent / "ssb.json").write_text(json.dumps(manifest))
    target = tmp_path / "public"
    out = _cli(conf, target, "publish")
    assert out.returncode == 1 and "Traceback" not in out.stderr and "unexpected" not in out.stderr
    assert f"combined_squashfs_sha256 of its ssb.json gives {'f' * 64}: refusing the file" in out.stderr, out.stderr
    assert not (target / "streams/v1/index.json").exists()
    assert not (target / "sample/20260105_0000/rootfs.squashfs").exists()
    item["lxd.tar.xz"]["combined_squashfs_sha256"] = combined_sha256(meta, root)
    (version.parent / "ssb.json").write_text(json.dumps(manifest))
    out = _cli(conf, target, "publish")
    assert out.returncode == 0, out.stderr
    checked = _cli(conf, target, "verify", "--hashes")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_mirrored_product_never_takes_nor_blocks_our_image_or_alias_in_any_publish(
        pristine: dict[str, Any], s3_server: S3Server, bucket: str, tls_files: TlsFiles, tmp_path: Path) -> None:
    """Points 1 and 3, past selection: an upstream serving our very image (same bytes, same
    fingerprint) is left out with a warning, and our product publishes; a publish without `mirrors:`
    (the hooks) where tree.yml gives our product an alias a mirrored product had: ours gets it."""
    up, catalog = upstream(pristine, tmp_path / "up", PRODUCTS[2][0])
    conf, version = own_tree(tmp_path, f"mirrors:\n  - source: {up}\n")
    ours = combined_sha256(version / "lxd.tar.xz", version / "rootfs.squashfs")
    folder = "images/copycat/20260101_0000"
    (up / folder).mkdir(parents=True)
    items = {}
    for key, ftype, name in (("lxd.tar.xz", "lxd.tar.xz", "lxd.tar.xz"), ("root.squashfs", "squashfs",
                                                                         "rootfs.squashfs")):
        shutil.copyfile(version / name, up / folder / name)
        items[key] = {"ftype": ftype, "path": f"{folder}/{name}", "size": (up / folder / name).stat().st_size,
                      "sha256": sha256_file(up / folder / name)}
    items["lxd.tar.xz"]["combined_squashfs_sha256"] = ours
    catalog["products"]["copycat:1:amd64:default"] = {"arch": "amd64", "os": "Copy", "release": "1",
                                                      "aliases": "copycat", "versions": {"20260101_0000": {
                                                          "items": items}}}
    unsigned(up, catalog)
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
    lxc.remote_add("m", s3_server.public_url(bucket))
    out = run_cli(s3_server, f"s3://{bucket}", "-c", str(conf), "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    assert f"fingerprint {ours[:12]} also used by {OURS}" in out.stderr and "(mirrored product: left out)" in out.stderr
    _, served_catalog = served(s3_server, bucket)
    assert set(served_catalog["products"]) == {OURS, PRODUCTS[2][0]}
    assert _fingerprint(lxc.image_info(f"m:{ours}")) == ours
    # the hooks' publish (no `mirrors:`): tree.yml now gives our product the mirrored product's alias
    conf.write_text(conf.read_text().split("mirrors:")[0].replace("[sample, sample/1.0]",
                                                                  "[sample, sample/1.0, busybox/1.35]"))
    out = run_cli(s3_server, f"s3://{bucket}", "-c", str(conf), "publish")
    assert out.returncode == 0, out.stderr
    assert f"alias 'busybox/1.35' for arch amd64 is already claimed by {OURS}" in out.stderr, out.stderr
    _, served_catalog = served(s3_server, bucket)
    assert set(served_catalog["products"]) == {OURS}
    lxc.clear_cache()
    assert _fingerprint(lxc.image_info("m:busybox/1.35")) == ours
