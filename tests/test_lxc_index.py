"""Classic LXC from the same tree: the meta/1.0/index-* view, its contract, verify, retention, and
the real `lxc-create -t download` (Debian's LXC 5.0.2) against SeaweedFS over HTTPS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from helpers import s3_storage, ssb, tree_product, write_tree_yml
from realparts import IncusClient, LxdClient, S3Server, TlsFiles, make_image, missing, need
from test_e2e_clients import expected_images

from ssb_s3.config import load_config
from ssb_s3.core import lxcindex
from ssb_s3.core.catalog import contract_problems_by_product, to_bytes
from ssb_s3.core.views import Content, render

HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake-bin" / "distrobuilder"
TEMPLATE = Path("/usr/share/lxc/templates/lxc-download")
LXC_KEYS = ["meta/1.0/index-system", "meta/1.0/index-system.7", "meta/1.0/index-user", "meta/1.0/index-user.7"]

PRODUCTS = (
    tree_product(arch="x86_64", os="busybox", days=1, aliases=["busybox/1.36"]),
    tree_product("busybox:1.36:arm64:cloud", arch="arm64", os="busybox", variant="cloud",
                 directory="busybox/arm64/cloud", aliases=["busybox/1.36/cloud"]),
    tree_product("busybox:1.36:amd64:lxd-only", os="busybox", variant="lxd-only", directory="busybox/amd64/lxd-only",
                 aliases=["busybox/1.36/lxd-only"]),
)


def both_kinds(dest: Path, *, arch: str, serial: str, variant: str = "default") -> None:
    """What build-product keeps from build-lxd + build-lxc: the LXD image and the LXC image, one folder."""
    make_image(dest, kind="squashfs", arch=arch, serial=serial, variant=variant, os_name="busybox",
               release="1.36", description=f"busybox {variant} {serial}")
    make_image(dest, kind="lxc", arch=arch, serial=serial, variant=variant, os_name="busybox",
               release="1.36", description=f"busybox {variant} {serial}")


@pytest.fixture
def local_tree(tmp_path: Path) -> dict[str, Any]:
    """A local-folder tree: two LXC-capable products (x86_64 and arm64) and an LXD-only one."""
    root = tmp_path / "tree"
    both_kinds(root / "busybox/amd64/default/20260101_0000", arch="x86_64", serial="20260101_0000")
    both_kinds(root / "busybox/arm64/cloud/20260101_0000", arch="arm64", serial="20260101_0000", variant="cloud")
    make_image(root / "busybox/amd64/lxd-only/20260101_0000", kind="squashfs", arch="x86_64",
               serial="20260101_0000", os_name="busybox", release="1.36", description="lxd only")
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, *PRODUCTS, grace="6h")
    return {"root": root, "conf": conf}


def publish(tree: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    return ssb("-c", str(tree["conf"]), "-t", str(tree["root"]), "publish", "--refresh-manifests", *extra)


# ----------------------------------------------------------------------------------------------
# The pure view and the contract


def catalog_of(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
            "products": entries, "updated": "Thu, 01 Jan 2026 00:00:00 +0000"}


def entry(os_name: str = "busybox", arch: str = "x86_64", variant: str | None = None,
          versions: dict[str, list[str]] | None = None, folder: str = "busybox/amd64/default") -> dict[str, Any]:
    """A catalog entry whose versions hold the given file names (items as the scanner writes them)."""
    from ssb_s3.vocabulary.imagefiles import IMAGE_FILES

    out: dict[str, Any] = {"aliases": "", "arch": arch, "os": os_name, "release": "1.36", "release_title": "1.36",
                           "versions": {}}
    if variant is not None:
        out["variant"] = variant
    for vname, files in (versions or {"20260101_0000": ["meta.tar.xz", "rootfs.tar.xz"]}).items():
        out["versions"][vname] = {"items": {
            IMAGE_FILES[f].item_key: {"ftype": IMAGE_FILES[f].ftype, "path": f"{folder}/{vname}/{f}", "size": 3,
                                      "sha256": "0" * 63 + str(i)}
            for i, f in enumerate(files)}}
    return out


def test_index_has_one_line_per_product_whose_newest_version_has_an_lxc_image() -> None:
    catalog = catalog_of({
        "a": entry(),  # x86_64 -> amd64, no variant -> default
        "b": entry(arch="aarch64", variant="cloud", folder="b",
                   versions={"20260101_0000": ["meta.tar.xz", "rootfs.tar.xz"],
                             "20260102_0000": ["meta.tar.xz", "rootfs.tar.xz", "lxd.tar.xz", "rootfs.squashfs"]}),
        "c": entry(folder="c", versions={"20260101_0000": ["meta.tar.xz", "rootfs.tar.xz"],
                                         "20260102_0000": ["lxd.tar.xz", "rootfs.squashfs"]}),  # newest: LXD only
        "d": entry(arch="armhf", folder="d", versions={"20260101_0000": ["lxd.tar.xz", "rootfs.tar.xz"]}),
    })
    assert lxcindex.render_index(lxcindex.lxc_images(catalog)) == (
        b"busybox;1.36;amd64;default;20260101_0000;busybox/amd64/default/20260101_0000\n"
        b"busybox;1.36;arm64;cloud;20260102_0000;b/20260102_0000\n")


def test_view_is_registered_under_every_key_the_clients_ask_for(tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, *PRODUCTS, grace="6h", cache_control={"lxc_index": "public, max-age=30"})
    tree = load_config(conf)
    catalog = catalog_of({"a": entry()})
    views = {v.key: v for v in render(Content(tree, catalog, to_bytes(catalog), "streams/v1/images-x.json", {}))}
    assert [k for k in views if k.startswith("meta/")] == LXC_KEYS
    assert {views[k].data for k in LXC_KEYS} == {b"busybox;1.36;amd64;default;20260101_0000;"
                                                 b"busybox/amd64/default/20260101_0000\n"}
    assert {views[k].cache for k in LXC_KEYS} == {"lxc_index"}
    assert tree.cache_control.lxc_index == "public, max-age=30"
    assert not any(v.create_only for k, v in views.items() if k in LXC_KEYS)  # fixed keys, overwritten
    empty = catalog_of({"d": entry(versions={"20260101_0000": ["lxd.tar.xz", "rootfs.squashfs"]})})
    assert not [v for v in render(Content(tree, empty, b"", "k", {})) if v.key in LXC_KEYS]  # none ever served
    emptied = render(Content(tree, empty, b"", "k", {}, lxc_served=True))  # the served catalog had one
    assert {v.data for v in emptied if v.key in LXC_KEYS} == {b"\n"}  # one empty line, as lxc-ci writes it


@pytest.mark.parametrize(("changes", "field", "text"), [
    ({"os": "busy;box"}, "product p: os", "contains ';'"),
    ({"release": "1.36\nevil;x;y"}, "product p: release", "line break"),
    ({"variant": "a;b"}, "product p: variant", "contains ';'"),
    ({"arch": "mips64"}, "product p: arch", "arch 'mips64' has no LXC name (LXC knows amd64, arm64, armhf, "
                                             "i386, ppc64el, s390x, riscv64"),
])
def test_contract_refuses_what_no_index_line_can_hold(changes: dict[str, str], field: str, text: str) -> None:
    catalog = catalog_of({"p": {**entry(), **changes}})
    problems = contract_problems_by_product(catalog, "catalog")
    lxc = [p for p in problems.get("p", []) if "LXC" in p.text]
    assert len(lxc) == 1 and lxc[0].product == "p" and lxc[0].field == field and text in lxc[0].text, problems
    assert lxcindex.lxc_images(catalog) == []  # never written as a line
    # The same values on an LXD-only product are no LXC problem.
    lxd_only = catalog_of({"p": {**entry(versions={"20260101_0000": ["lxd.tar.xz", "rootfs.squashfs"]}),
                                 **changes}})
    assert not [p for p in contract_problems_by_product(lxd_only, "catalog").get("p", []) if "LXC" in p.text]


def test_two_products_cannot_give_the_same_lxc_image() -> None:
    """lxc-create takes the first line matching dist/release/arch/variant: a second one is unreachable."""
    catalog = catalog_of({"a": entry(arch="x86_64", folder="a"), "b": entry(arch="amd64", folder="b"),
                          "c": entry(arch="amd64", variant="cloud", folder="c")})
    text = ("LXC image busybox;1.36;amd64;default is also given by product {} (lxc-create takes the first line "
            "that matches: set another os, release, arch or variant)")
    full = contract_problems_by_product(catalog, "catalog")
    assert {n: [(p.field, p.text) for p in ps] for n, ps in full.items()} == {"b": [("product b", text.format("a"))]}
    changed_a = contract_problems_by_product(catalog, "catalog", focus={"a"})  # b was published first: a is refused
    assert {n: [p.text for p in ps] for n, ps in changed_a.items()} == {"a": [text.format("b")]}


def test_lxd_arch_names_are_mapped_to_lxcs() -> None:
    assert {a: lxcindex.lxc_arch(a) for a in ("x86_64", "amd64", "aarch64", "arm64", "armv7l", "armhf", "i686",
                                               "i386", "ppc64le", "ppc64el", "s390x", "riscv64", "mips64")} == {
        "x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "armhf",
        "armhf": "armhf", "i686": "i386", "i386": "i386", "ppc64le": "ppc64el", "ppc64el": "ppc64el",
        "s390x": "s390x", "riscv64": "riscv64", "mips64": None}


# ----------------------------------------------------------------------------------------------
# publish, verify, retention, build-product --from-dir (local folder tree, real CLI)


def lxc_lines(root: Path) -> list[str]:
    texts = {(root / key).read_text() for key in LXC_KEYS}
    assert len(texts) == 1, "every index key holds the same lines"
    return texts.pop().splitlines()


def test_publish_writes_the_index_and_verify_checks_every_line(local_tree: dict[str, Any]) -> None:
    out = publish(local_tree)
    assert out.returncode == 0, out.stderr
    root = local_tree["root"]
    assert lxc_lines(root) == [
        "busybox;1.36;amd64;default;20260101_0000;busybox/amd64/default/20260101_0000",
        "busybox;1.36;arm64;cloud;20260101_0000;busybox/arm64/cloud/20260101_0000",
    ]
    index = json.loads((root / "streams/v1/index.json").read_text())
    catalog = json.loads((root / index["index"]["images"]["path"]).read_text())
    assert lxcindex.lxc_images(catalog)  # the catalog names the LXC files it protects (meta.tar.xz too)
    ok = ssb("-c", str(local_tree["conf"]), "-t", str(root), "verify", "--hashes")
    assert ok.returncode == 0 and "2 LXC images" in ok.stdout, ok.stdout + ok.stderr

    folder = root / "busybox/arm64/cloud/20260101_0000"
    (folder / "meta.tar.xz").write_bytes(b"\x1f\x8b" + b"\0" * 40)  # gzip, not what `tar J` unpacks
    (root / "busybox/amd64/default/20260101_0000/rootfs.tar.xz").unlink()
    bad = ssb("-c", str(local_tree["conf"]), "-t", str(root), "verify")
    assert bad.returncode == 1
    assert (f"{root}/busybox/arm64/cloud/20260101_0000/meta.tar.xz: named by meta/1.0/index-system but content is "
            "gzip, expected xz for meta.tar.xz") in bad.stderr
    assert (f"{root}/busybox/amd64/default/20260101_0000/rootfs.tar.xz: named by meta/1.0/index-system but "
            "missing") in bad.stderr


def test_no_index_without_lxc_images_and_an_emptied_one_after_the_last(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, *PRODUCTS, grace=0)
    tree = {"root": root, "conf": conf}
    make_image(root / "busybox/amd64/lxd-only/20260101_0000", kind="squashfs", arch="x86_64",
               serial="20260101_0000", os_name="busybox", release="1.36")
    assert publish(tree).returncode == 0
    assert not (root / "meta").exists()  # a tree that never had an LXC image gets no LXC index
    both_kinds(root / "busybox/amd64/default/20260101_0000", arch="x86_64", serial="20260101_0000")
    assert publish(tree).returncode == 0
    assert lxc_lines(root) == ["busybox;1.36;amd64;default;20260101_0000;busybox/amd64/default/20260101_0000"]
    make_image(root / "busybox/amd64/default/20260102_0000", kind="squashfs", arch="x86_64",
               serial="20260102_0000", os_name="busybox", release="1.36")  # the newest has no LXC image
    assert publish(tree).returncode == 0
    assert lxc_lines(root) == [""]
    assert not (root / "busybox/amd64/default/20260101_0000/meta.tar.xz").exists()  # purged (grace 0)
    assert ssb("-c", str(conf), "-t", str(root), "verify").returncode == 0


def test_verify_reports_a_missing_index_when_the_catalog_has_lxc_images(local_tree: dict[str, Any]) -> None:
    assert publish(local_tree).returncode == 0
    (local_tree["root"] / "meta/1.0/index-user").unlink()
    bad = ssb("-c", str(local_tree["conf"]), "-t", str(local_tree["root"]), "verify")
    assert bad.returncode == 1
    assert "meta/1.0/index-user: missing, but the catalog has LXC images" in bad.stderr


def test_a_damaged_served_catalog_is_reported_then_replaced(local_tree: dict[str, Any]) -> None:
    """A served catalog someone broke (an ftype that is a list) is a problem for verify, one line each,
    and the next publish replaces it: neither stops with an unexpected error."""
    assert publish(local_tree).returncode == 0
    root = local_tree["root"]
    index = json.loads((root / "streams/v1/index.json").read_text())
    path = root / index["index"]["images"]["path"]
    catalog = json.loads(path.read_text())
    version = next(iter(next(iter(catalog["products"].values()))["versions"].values()))
    next(iter(version["items"].values()))["ftype"] = ["x"]
    path.write_text(json.dumps(catalog))
    bad = ssb("-c", str(local_tree["conf"]), "-t", str(root), "verify")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "unexpected" not in bad.stderr, bad.stderr
    assert "ftype" in bad.stderr
    again = publish(local_tree)
    assert again.returncode == 0 and "unexpected" not in again.stderr, again.stderr
    assert ssb("-c", str(local_tree["conf"]), "-t", str(root), "verify").returncode == 0

    # well-formed but changed after it was written: no longer the catalog its name hashes to
    catalog = json.loads(path.read_text())
    item = next(iter(next(iter(next(iter(catalog["products"].values()))["versions"].values()))["items"].values()))
    item["size"] += 1
    path.write_text(json.dumps(catalog))
    repaired = publish(local_tree)
    assert repaired.returncode == 0 and "does not match its content-addressed name" in repaired.stderr
    assert ssb("-c", str(local_tree["conf"]), "-t", str(root), "verify").returncode == 0
    assert json.loads(path.read_text()) != catalog  # the damaged file was replaced under its own key


def test_contract_refusal_leaves_the_served_tree_unchanged(local_tree: dict[str, Any]) -> None:
    assert publish(local_tree).returncode == 0
    before = {k: (local_tree["root"] / k).read_bytes() for k in [*LXC_KEYS, "streams/v1/index.json"]}
    both_kinds(local_tree["root"] / "busybox/amd64/default/20260102_0000", arch="x86_64", serial="20260102_0000")
    conf: Path = local_tree["conf"]
    conf.write_text(conf.read_text().replace("os: busybox\n    directory: busybox/amd64/default",
                                             "os: busy;box\n    directory: busybox/amd64/default"))
    out = publish(local_tree)
    assert out.returncode == 1
    assert ("product busybox:1.36:amd64:default: os: 'busy;box' contains ';', which the LXC index "
            "(one line of ';'-separated fields per image) cannot hold in its field dist") in out.stderr
    assert "Traceback" not in out.stderr
    assert {k: (local_tree["root"] / k).read_bytes() for k in before} == before


def test_a_version_the_served_index_names_is_kept_for_the_grace(local_tree: dict[str, Any]) -> None:
    """Retention: the index only names versions the catalog names, so a superseded version stays
    while a catalog current within the grace names it, exactly like the catalog's own files."""
    assert publish(local_tree).returncode == 0
    root = local_tree["root"]
    both_kinds(root / "busybox/amd64/default/20260102_0000", arch="x86_64", serial="20260102_0000")
    out = publish(local_tree, "--json")
    assert out.returncode == 0, out.stderr
    assert "busybox;1.36;amd64;default;20260102_0000;busybox/amd64/default/20260102_0000" in lxc_lines(root)
    later = [i["version"] for i in json.loads(out.stdout)["purge"]["delete_later"]]
    assert later == ["20260101_0000"] and (root / "busybox/amd64/default/20260101_0000/rootfs.tar.xz").exists()
    assert publish(local_tree, "--grace", "0").returncode == 0
    assert not [p for p in (root / "busybox/amd64/default/20260101_0000").rglob("*") if p.is_file()]
    assert ssb("-c", str(local_tree["conf"]), "-t", str(root), "verify").returncode == 0


def test_from_dir_takes_the_lxc_image_and_refuses_a_meta_tarball_lxc_cannot_unpack(tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, *PRODUCTS, grace=0)
    root = tmp_path / "tree"
    built = tmp_path / "built"
    make_image(built, kind="lxc", arch="x86_64", serial="20260101_0000", os_name="busybox", release="1.36")
    bad = tmp_path / "bad"
    shutil.copytree(built, bad)
    (bad / "meta.tar.xz").write_bytes(b"\x1f\x8b\x08" + b"\0" * 40)
    refused = ssb("-c", str(conf), "-t", str(root), "build-product", "busybox:1.36:amd64:default",
                  "--from-dir", str(bad))
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"error: {bad}/meta.tar.xz: content is gzip, expected xz for meta.tar.xz"
    assert not (root / "meta").exists()
    out = ssb("-c", str(conf), "-t", str(root), "build-product", "busybox:1.36:amd64:default", "--from-dir",
              str(built), "--version", "20260101_1200")
    assert out.returncode == 0, out.stderr
    manifest = json.loads((root / "busybox/amd64/default/ssb.json").read_text())
    assert set(manifest["versions"]["20260101_1200"]["items"]) == {"meta.tar.xz", "root.tar.xz"}
    assert lxc_lines(root) == ["busybox;1.36;amd64;default;20260101_1200;busybox/amd64/default/20260101_1200"]


# ----------------------------------------------------------------------------------------------
# End to end: build-product into SeaweedFS, served over HTTPS, read by the real lxc-create


IMAGE_YAML = """image:
  distribution: busybox
  release: "1.36"
  architecture: x86_64
  variant: default
  description: busybox for lxc-create
  serial: "20260101_0042"
  name: busybox-1.36
"""


@pytest.fixture(scope="module")
def served(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """build-product (stand-in distrobuilder: build-lxd + build-lxc) into a public SeaweedFS bucket."""
    work = tmp_path_factory.mktemp("lxc-e2e")
    bucket = "lxc-e2e"
    s3_server.create_bucket(bucket, public_read=True)
    conf = work / "tree.yml"
    write_tree_yml(conf, *PRODUCTS, storage=s3_storage(s3_server), grace="6h")
    image = work / "image.yaml"
    image.write_text(IMAGE_YAML)
    out = ssb("-c", str(conf), "-t", f"s3://{bucket}/tree", "build-product", "busybox:1.36:amd64:default", "-i",
              str(image), "--builder", str(FAKE), "--version", "20260101_1200", env=s3_server.credentials)
    assert out.returncode == 0, out.stderr
    base = s3_server.public_url(bucket, "tree")
    index = s3_server.anonymous_get(f"{base}/meta/1.0/index-system").decode()
    catalog_path = json.loads(s3_server.anonymous_get(f"{base}/streams/v1/index.json"))["index"]["images"]["path"]
    catalog = json.loads(s3_server.anonymous_get(f"{base}/{catalog_path}"))
    return {"bucket": bucket, "base": base, "index": index, "catalog": catalog, "conf": conf, "work": work}


def lxc_create(server: str, tls: TlsFiles, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real lxc-create (root, a private lxc path and cache), wget trusting the test CA through WGETRC."""
    need("lxc-create")
    need("wget")
    if not TEMPLATE.is_file():
        missing(f"{TEMPLATE} not found (apt-get install lxc)")
    if os.geteuid() != 0:
        missing("lxc-create -t download needs root here (a private -P lxc path, system mode)")
    wgetrc = work / "wgetrc"
    wgetrc.write_text(f"ca_certificate = {tls.ca_cert}\n")
    env = {**os.environ, "WGETRC": str(wgetrc), "LXC_CACHE_PATH": str(work / "cache")}
    return subprocess.run(["lxc-create", "-P", str(work / "lxcpath"), *args[:2], "-t", "download", "--",
                           "--server", server, *args[2:]], env=env, capture_output=True, text=True, timeout=300)


def test_lxc_create_lists_and_creates_from_seaweedfs_over_https(served: dict[str, Any], s3_server: S3Server,
                                                                tls_files: TlsFiles, tmp_path: Path) -> None:
    server = served["base"].removeprefix("https://")  # 127.0.0.1:PORT/BUCKET/tree, as users write it
    assert served["index"] == "busybox;1.36;amd64;default;20260101_1200;busybox/amd64/default/20260101_1200\n"
    listed = lxc_create(server, tls_files, tmp_path, "-n", "t", "--list")
    table = listed.stdout.split("---\n")
    # (lxc-download exits 1 after --list by design, so lxc-create fails: the table printed decides)
    assert "DIST\tRELEASE\tARCH\tVARIANT\tBUILD" in listed.stdout, listed.stdout + listed.stderr
    rows = [line.split("\t") for line in table[2].splitlines() if line]
    assert rows == [line.split(";")[:5] for line in served["index"].splitlines()]

    started = time.monotonic()
    made = lxc_create(server, tls_files, tmp_path, "-n", "t", "-d", "busybox", "-r", "1.36", "-a", "amd64")
    elapsed = time.monotonic() - started
    assert made.returncode == 0, made.stdout + made.stderr
    rootfs = tmp_path / "lxcpath" / "t" / "rootfs"
    assert 'BUILD_ID="20260101_0042"' in (rootfs / "etc/os-release").read_text()  # the image's own marker
    assert (rootfs / "bin/busybox").stat().st_size > 100_000
    config = (tmp_path / "lxcpath" / "t" / "config").read_text()
    assert "lxc.arch = x86_64" in config and "lxc.uts.name = t" in config  # the meta.tar.xz config, applied
    assert "You just created a busybox for lxc-create container." in made.stdout  # its create-message
    print(f"lxc-create -t download: {elapsed:.2f} s")


def test_a_missing_lxc_create_fails_under_ssb_require_e2e(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         tls_files: TlsFiles) -> None:
    import realparts

    monkeypatch.setenv("PATH", str(tmp_path))  # no lxc-create, no wget
    monkeypatch.setattr(realparts, "REQUIRE_REAL", True)
    with pytest.raises(pytest.fail.Exception, match=r"required tool 'lxc-create' not found.*SSB_REQUIRE_E2E=1"):
        lxc_create("127.0.0.1:1/b", tls_files, tmp_path, "-n", "t", "--list")
    monkeypatch.setattr(realparts, "REQUIRE_REAL", False)
    with pytest.raises(pytest.skip.Exception):
        lxc_create("127.0.0.1:1/b", tls_files, tmp_path, "-n", "t", "--list")


def test_doubled_slash_requests_reach_the_index_on_seaweedfs(served: dict[str, Any], s3_server: S3Server) -> None:
    """lxc-download asks https://SERVER//meta/1.0/...: SeaweedFS folds '//' inside the key to '/'."""
    single = s3_server.anonymous_get(f"{served['base']}/meta/1.0/index-system.7")
    double = s3_server.anonymous_get(f"{served['base']}//meta/1.0/index-system.7")
    assert double == single == served["index"].encode()
    with pytest.raises(urllib.error.HTTPError):  # a doubled slash before the bucket is no key at all
        s3_server.anonymous_get(served["base"].replace(f"/{served['bucket']}", f"//{served['bucket']}")
                                + "/meta/1.0/index-system")


def test_the_same_tree_still_lists_in_lxd_and_incus(served: dict[str, Any], tls_files: TlsFiles,
                                                    tmp_path: Path) -> None:
    """The tree that serves lxc-create still serves both image clients: each lists exactly the images
    the catalog declares for it (meta.tar.xz and rootfs.tar.xz, LXC's files, are ignored by both)."""
    for client, meta, unified in ((LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert), "lxd.tar.xz",
                                   "lxd_combined.tar.gz"),
                                  (IncusClient(tmp_path / "incusconf", ca_file=tls_files.ca_cert), "incus.tar.xz",
                                   "incus_combined.tar.gz")):
        client.remote_add("t", served["base"])
        expected = expected_images(served["catalog"], meta, unified)
        assert len(expected) == 2  # the metadata with rootfs.squashfs, and with rootfs.tar.xz
        assert {image["fingerprint"] for image in client.image_list("t")} == set(expected), meta
