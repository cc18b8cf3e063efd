"""Issue 11: the per-client compatibility report (`ssb-s3 compat`) and `verify`'s per-client exit status.

The report's rules come from a table in the code (ssb_s3/vocabulary/clients.py) citing the client
sources. Here every "lists it / does not" of the report is compared with what the real clients
list from the same tree, served over HTTPS from a local folder: LXD 5.0.2 (`lxc image list`),
Incus 6.0.4 (`incus image list`) and python-simplestreams (`sstream-query --json`). The tree is
written by hand (the publisher refuses most of these items on purpose): each product is one
deliberately client-specific kind of image. Current LXD has no real client here: its column is
checked against the table only (test_current_lxd_column_follows_its_source).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ssb
from realparts import IncusClient, LxdClient, TlsFiles, make_image, make_qcow2, need, serve_https_static

from ssb_s3.vocabulary import clients
from ssb_s3.vocabulary.clients import CLIENTS
from ssb_s3.vocabulary.document import Product

BOTH = ("lxd.tar.xz", "incus.tar.xz")
ROOT_FILES = {"rootfs.squashfs": "squashfs", "rootfs.tar.xz": "root.tar.xz", "disk.qcow2": "disk-kvm.img"}
COMBINED = {"squashfs": ("combined_squashfs_sha256",), "root.tar.xz": ("combined_rootxz_sha256", "combined_sha256"),
            "disk-kvm.img": ("combined_disk-kvm-img_sha256",)}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_version(root: Path, directory: str, version: str, kind: str, *, metas: tuple[str, ...] = BOTH,
                  combined: str = "all", vm_too: bool = False, deltas: dict[str, str] | None = None) -> dict[str, Any]:
    """Files of one version (make_image) and its catalog items, written by hand.

    metas: the metadata ftypes published (one object: lxd.tar.xz, or incus.tar.xz when only Incus's);
    combined: all | none | legacy (root.tar.xz fingerprint only in combined_sha256);
    vm_too: also a disk.qcow2 root; deltas: delta ftype -> delta_base version."""
    folder = root / directory / version
    make_image(folder, kind=kind, serial="20260101_0000", description=f"{directory} {version}")
    if vm_too:
        (folder / "disk.qcow2").write_bytes(make_qcow2(payload=f"{directory} {version}".encode()))
    rel = f"{directory}/{version}"
    items: dict[str, Any] = {}

    def item(name: str, ftype: str, **extra: Any) -> dict[str, Any]:
        path = folder / name
        return {"ftype": ftype, "path": f"{rel}/{name}", "size": path.stat().st_size, "sha256": sha(path), **extra}

    if kind == "unified":
        items["lxd_combined.tar.gz"] = item("lxd_combined.tar.gz", "lxd_combined.tar.gz")
        return items
    meta_name = "lxd.tar.xz"
    if metas == ("incus.tar.xz",):
        (folder / "lxd.tar.xz").rename(folder / "incus.tar.xz")
        meta_name = "incus.tar.xz"
    fields: dict[str, str] = {}
    for name, ftype in ROOT_FILES.items():
        if (folder / name).exists():
            items[f"root.{name}"] = item(name, ftype)
            fingerprint = hashlib.sha256((folder / meta_name).read_bytes() + (folder / name).read_bytes()).hexdigest()
            names = COMBINED[ftype] if combined == "all" else ("combined_sha256",) if combined == "legacy" else ()
            fields.update({f: fingerprint for f in names})
    for ftype in metas:
        items[ftype] = item(meta_name, ftype, **fields)
    for dftype, base in (deltas or {}).items():
        (folder / f"{dftype}.bin").write_bytes(f"delta {dftype} {version}".encode())
        items[dftype] = item(f"{dftype}.bin", dftype, delta_base=base)
    return items


def product(arch: str, versions: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"aliases": "", "arch": arch, "os": "Busybox", "release": "1.36", "release_title": "1.36",
            "versions": {name: {"items": items} for name, items in versions.items()}, **extra}


def write_tree(root: Path, products: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """index.json and a catalog naming `products`; returns the catalog."""
    catalog = {"content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
               "products": products, "updated": "Thu, 01 Jan 2026 00:00:00 +0000"}
    index = {"format": "index:1.0", "index": {"images": {
        "datatype": "image-downloads", "format": "products:1.0", "path": "streams/v1/images.json",
        "products": sorted(products), "updated": catalog["updated"]}}, "updated": catalog["updated"]}
    (root / "streams/v1").mkdir(parents=True, exist_ok=True)
    (root / "streams/v1/images.json").write_text(json.dumps(catalog))
    (root / "streams/v1/index.json").write_text(json.dumps(index))
    return catalog


V1, V2 = "20260101_1000", "20260102_1000"


def build_variety(root: Path) -> dict[str, Any]:
    """One product per client-specific kind of image (the measured table's rows)."""
    def one(name: str, kind: str, arch: str = "amd64", version: str = V1, **kw: Any) -> dict[str, Any]:
        extra = {k: kw.pop(k) for k in ("requirements", "lxd_requirements") if k in kw}
        return product(arch, {version: write_version(root, name, version, kind, **kw)}, **extra)

    return write_tree(root, {
        "lxd-only": one("lxd-only", "squashfs", metas=("lxd.tar.xz",)),
        "incus-only": one("incus-only", "squashfs", metas=("incus.tar.xz",)),
        "both": one("both", "squashfs"),
        "requirements": one("requirements", "tarxz", requirements={"privileged": "true"}),
        "lxd-requirements": one("lxd-requirements", "squashfs", lxd_requirements={"privileged": "true"}),
        "vm": one("vm", "vm"),
        "unified-lxd": one("unified-lxd", "unified"),
        "odd-version": one("odd-version", "squashfs", version="v2026.01.01"),
        "arch-mipsle": one("arch-mipsle", "squashfs", arch="mipsle"),
        "arch-mips64le": one("arch-mips64le", "squashfs", arch="mips64le"),
        "arch-armel": one("arch-armel", "squashfs", arch="armel"),
        "arch-loongarch64": one("arch-loongarch64", "squashfs", arch="loongarch64"),
        "arch-amd64v3": one("arch-amd64v3", "squashfs", arch="amd64v3"),
        "no-combined": one("no-combined", "squashfs", combined="none"),
        "rootxz-combined-sha256": one("rootxz-combined-sha256", "tarxz", combined="legacy"),
        "deltas": product("amd64", {
            V1: write_version(root, "deltas", V1, "squashfs", vm_too=True),
            V2: write_version(root, "deltas", V2, "squashfs", vm_too=True,
                              deltas={"squashfs.vcdiff": V1, "disk-kvm.img.vcdiff": V1}),
        }),
    })


@pytest.fixture(scope="module")
def variety(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("compat") / "tree"
    catalog = build_variety(root)
    with serve_https_static(root, tls_files) as url:
        yield {"root": root, "url": url, "catalog": catalog}


def compat(*args: str, target: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return ssb(*(("-t", str(target)) if target else ()), "compat", *args, env=env)


def report_of(variety: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out = compat("--format", "json", target=variety["root"])
    assert out.returncode == 0, out.stderr
    return {(r["product"], r["version"]): r["clients"] for r in json.loads(out.stdout)}


def lists(report: dict[tuple[str, str], dict[str, Any]], client: str) -> set[tuple[str, str]]:
    return {key for key, cells in report.items() if cells[client]["listed"]}


def fingerprints(report: dict[tuple[str, str], dict[str, Any]], client: str) -> dict[str, tuple[str, str]]:
    return {img["fingerprint"]: key for key, cells in report.items() for img in cells[client]["images"]}


MEASURED = {  # (product, version) -> lxd-5.0, incus, simplestreams, lxd (current: the table only)
    ("lxd-only", V1): (True, False, True, True),
    ("incus-only", V1): (False, True, True, False),
    ("both", V1): (True, True, True, True),
    ("requirements", V1): (True, True, True, True),
    ("lxd-requirements", V1): (True, True, True, True),
    ("vm", V1): (True, True, True, True),
    ("unified-lxd", V1): (True, False, True, True),
    ("odd-version", "v2026.01.01"): (False, False, True, False),
    ("arch-mipsle", V1): (True, True, True, True),  # Debian's lxd 5.0.2 knows it (upstream 5.0.2 does not)
    ("arch-mips64le", V1): (True, True, True, True),
    ("arch-armel", V1): (True, True, True, True),
    ("arch-loongarch64", V1): (False, True, True, True),
    ("arch-amd64v3", V1): (False, False, True, True),
    ("no-combined", V1): (False, False, True, False),
    ("rootxz-combined-sha256", V1): (True, True, True, True),
    ("deltas", V1): (True, True, True, True),
    ("deltas", V2): (True, True, True, True),
}


@pytest.mark.parametrize("name, column", [("lxd-5.0", 0), ("incus", 1)])
def test_report_matches_the_real_client(variety: dict[str, Any], tls_files: TlsFiles, tmp_path: Path,
                                        name: str, column: int) -> None:
    """What `lxc image list` (LXD 5.0.2) / `incus image list` (Incus 6.0.4) show is what the report
    says: the same images (fingerprints) of the same versions, of the type and arch it gives."""
    report = report_of(variety)
    client = (LxdClient if name == "lxd-5.0" else IncusClient)(tmp_path / "conf", ca_file=tls_files.ca_cert)
    client.remote_add("t", variety["url"])
    listed = client.image_list("t")
    ours = fingerprints(report, name)
    assert {img["fingerprint"] for img in listed} == set(ours)
    assert {ours[img["fingerprint"]] for img in listed} == lists(report, name)
    assert lists(report, name) == {k for k, v in MEASURED.items() if v[column]}
    for img in listed:
        key = ours[img["fingerprint"]]
        want = next(i for i in report[key][name]["images"] if i["fingerprint"] == img["fingerprint"])
        assert (img["type"], img["properties"]["type"]) == (want["type"], want["root"]), key
        arch = variety["catalog"]["products"][key[0]]["arch"]
        assert img["architecture"] == CLIENTS[name].arches[arch], key
    assert_requirements(report, name, listed)


def assert_requirements(report: dict[tuple[str, str], dict[str, Any]], client: str,
                        listed: list[dict[str, Any]]) -> None:
    """The report's "ignores requirements" note is the client not showing requirements.privileged."""
    for product_name in ("requirements", "lxd-requirements"):
        cell = report[(product_name, V1)][client]
        ignored = any(n.startswith("ignores ") and "requirements" in n for n in cell["notes"])
        props = [img["properties"] for img in listed
                 if img["fingerprint"] in {i["fingerprint"] for i in cell["images"]}]
        assert props and all(("requirements.privileged" not in p) == ignored for p in props), (product_name, props)
    assert [report[("requirements", V1)][client]["notes"], report[("lxd-requirements", V1)][client]["notes"]] == {
        "lxd-5.0": [["ignores requirements (reads lxd_requirements)"], []],
        "incus": [[], ["ignores lxd_requirements (reads requirements)"]],
    }[client]


def test_report_matches_sstream_query(variety: dict[str, Any], tls_files: TlsFiles) -> None:
    query = need("sstream-query")
    env = {**os.environ, "SSL_CERT_FILE": str(tls_files.ca_cert), "REQUESTS_CA_BUNDLE": str(tls_files.ca_cert)}
    out = subprocess.run([query, "--no-verify", "--json", f"{variety['url']}/streams/v1/index.json"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    seen = {(e["product_name"], e["version_name"]) for e in json.loads(out.stdout)}
    report = report_of(variety)
    assert seen == lists(report, "simplestreams") == {k for k, v in MEASURED.items() if v[2]}


def test_current_lxd_column_follows_its_source(variety: dict[str, Any]) -> None:
    """No real current-LXD client runs here: the column is what canonical/lxd main's products.go
    and osarch say (cited in vocabulary/clients), which differs from 5.0.2 in arches (mipsle,
    loongarch64, amd64v3), requirements (falls back to `requirements`) and VM deltas."""
    report = report_of(variety)
    assert lists(report, "lxd") == {k for k, v in MEASURED.items() if v[3]}
    assert report[("requirements", V1)]["lxd"]["notes"] == []
    assert report[("deltas", V2)]["lxd"]["notes"] == ["uses disk-kvm.img.vcdiff (delta from 20260101_1000)",
                                                      "uses squashfs.vcdiff (delta from 20260101_1000)"]


def test_report_reasons_and_delta_notes(variety: dict[str, Any]) -> None:
    report = report_of(variety)
    assert report[("lxd-only", V1)]["incus"]["reason"] == \
        "no incus.tar.xz or incus_combined.tar.gz item (it ignores lxd.tar.xz)"
    assert report[("incus-only", V1)]["lxd-5.0"]["reason"] == \
        "no lxd.tar.xz or lxd_combined.tar.gz item (it ignores incus.tar.xz)"
    assert report[("unified-lxd", V1)]["incus"]["reason"] == \
        "no incus.tar.xz or incus_combined.tar.gz item (it ignores lxd_combined.tar.gz)"
    assert report[("odd-version", "v2026.01.01")]["incus"]["reason"] == \
        "version name 'v2026.01.01' does not start with a YYYYMMDD date"
    assert report[("arch-loongarch64", V1)]["lxd-5.0"]["reason"] == "arch 'loongarch64' is unknown to it"
    assert report[("no-combined", V1)]["lxd-5.0"]["reason"] == \
        "the lxd.tar.xz item has no combined_squashfs_sha256 (no fingerprint)"
    assert report[("deltas", V2)]["lxd-5.0"]["notes"] == [
        "ignores disk-kvm.img.vcdiff: it knows only squashfs.vcdiff deltas",
        "uses squashfs.vcdiff (delta from 20260101_1000)"]
    vm_delta, squashfs_delta = report[("deltas", V2)]["incus"]["notes"]
    assert vm_delta.startswith("disk-kvm.img.vcdiff is offered as a delta from ")
    assert "(combined_squashfs_sha256 of 20260101_1000), not from its disk-kvm.img image " in vm_delta
    assert squashfs_delta == "uses squashfs.vcdiff (delta from 20260101_1000)"
    assert {i["type"] for i in report[("deltas", V2)]["lxd-5.0"]["images"]} == {"container", "virtual-machine"}


def test_compat_table_csv_and_client_filter(variety: dict[str, Any], tls_files: TlsFiles) -> None:
    out = compat("--base-url", variety["url"], "--client", "lxd-5.0", "--client", "incus",
                 env={**os.environ, "SSL_CERT_FILE": str(tls_files.ca_cert)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["PRODUCT", "VERSION", "LXD-5.0", "INCUS"]
    at = next(i for i, line in enumerate(lines) if line.startswith("lxd-only "))
    assert lines[at].split() == ["lxd-only", V1, "yes", "no"]
    assert lines[at + 1:at + 3] == ["  lxd-5.0: images squashfs",
                                    "  incus: no incus.tar.xz or incus_combined.tar.gz item (it ignores lxd.tar.xz)"]
    assert any(line.startswith("lxd-5.0: LXD 5.0, rules from canonical/lxd lxd-5.0.2 ") for line in lines)
    assert "measured against lxc 5.0.2" in out.stdout
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    full = compat(target=variety["root"])  # every client: a detail the clients share is said once
    at = full.stdout.splitlines().index(next(line for line in full.stdout.splitlines() if line.startswith("deltas ")
                                             and V2 in line))
    details = full.stdout.splitlines()[at + 1:at + 5]
    assert "  lxd-5.0, lxd, incus: images squashfs, disk-kvm.img" in details or \
        "  lxd-5.0, lxd, incus: images disk-kvm.img, squashfs" in details, details
    assert sum("uses squashfs.vcdiff (delta from 20260101_1000)" in line for line in full.stdout.splitlines()) == 1
    assert max(len(line) for line in full.stdout.splitlines()) <= 100
    csv = compat("--format", "csv", target=variety["root"])
    assert csv.stdout.splitlines()[0] == "product,version,lxd-5.0,lxd,incus,simplestreams"
    assert len(csv.stdout.splitlines()) == len(MEASURED) + 1


def test_compat_names_an_unusable_tree_in_one_line(tmp_path: Path) -> None:
    out = compat(target=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [f"error: {tmp_path}: cannot report on the tree: 1 problem(s)",
                                       f"  - {tmp_path}/streams/v1/index.json: missing (nothing is published)"]


# --- verify: non-zero only for what breaks a client the tree serves ----------------------------


def lxd_only_tree(root: Path) -> dict[str, Any]:
    """What the seed made (and what a mirror of an LXD-only upstream is): lxd.tar.xz items only."""
    return write_tree(root, {
        "a": product("amd64", {V1: write_version(root, "a", V1, "squashfs", metas=("lxd.tar.xz",)),
                               V2: write_version(root, "a", V2, "squashfs", metas=("lxd.tar.xz",))}),
        "b": product("amd64", {V1: write_version(root, "b", V1, "tarxz", metas=("lxd.tar.xz",))}),
    })


INCUS_MISSES = "Incus 6.0 (incus) does not list {n} of its {n} version(s) ({versions}): " \
               "no incus.tar.xz or incus_combined.tar.gz item (it ignores lxd.tar.xz)"


def test_lxd_only_tree_passes_verify_with_one_warning_per_product(tmp_path: Path) -> None:
    lxd_only_tree(tmp_path)
    out = ssb("-t", str(tmp_path), "verify")
    assert out.returncode == 0, out.stderr
    catalog = f"{tmp_path}/streams/v1/images.json"
    assert out.stderr.splitlines() == [
        f"WARNING: {catalog}: product a: {INCUS_MISSES.format(n=2, versions=f'{V1}, {V2}')} "
        "(not a client this tree serves: require it with --client)",
        f"WARNING: {catalog}: product b: {INCUS_MISSES.format(n=1, versions=V1)} "
        "(not a client this tree serves: require it with --client)",
    ]
    assert out.stdout.strip().endswith("; clients: lxd-5.0, lxd")


def test_lxd_only_tree_fails_verify_client_incus(tmp_path: Path) -> None:
    lxd_only_tree(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    out = ssb("-t", str(tmp_path), "verify", "--client", "incus", "--json")
    assert out.returncode == 1
    catalog = f"{tmp_path}/streams/v1/images.json"
    assert out.stderr.splitlines() == [
        f"error: {tmp_path}: 2 problem(s)",
        f"  - {catalog}: product a: {INCUS_MISSES.format(n=2, versions=f'{V1}, {V2}')}",
        f"  - {catalog}: product b: {INCUS_MISSES.format(n=1, versions=V1)}",
    ]
    report = json.loads(out.stdout)
    assert report["clients"] == ["lxd-5.0", "lxd", "incus"]
    # each problem blames its product, for a script (as publish --json): no message is parsed for it
    assert [(d["product"], d["where"]) for d in report["problem_details"]] == [("a", catalog), ("b", catalog)]
    assert [d["message"] for d in report["problem_details"]] == report["problems"]
    assert before == {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}  # verify writes nothing
    bad = ssb("-t", str(tmp_path), "verify", "--client", "incsu")
    assert bad.returncode == 2 and "'incsu' is not one of 'lxd-5.0', 'lxd', 'incus', 'simplestreams'" in bad.stderr


def test_a_served_client_missing_a_version_still_fails_verify(tmp_path: Path) -> None:
    """The tree carries incus.tar.xz items, so it serves Incus: a version without one breaks it."""
    write_tree(tmp_path, {
        "a": product("amd64", {V1: write_version(tmp_path, "a", V1, "squashfs"),
                               V2: write_version(tmp_path, "a", V2, "squashfs", metas=("lxd.tar.xz",))}),
    })
    out = ssb("-t", str(tmp_path), "verify")
    assert out.returncode == 1
    assert out.stderr.splitlines()[1:] == [
        f"  - {tmp_path}/streams/v1/images.json: product a: Incus 6.0 (incus) does not list 1 of its 2 version(s) "
        f"({V2}): no incus.tar.xz or incus_combined.tar.gz item (it ignores lxd.tar.xz)"]


def test_publish_serves_both_clients_from_an_lxd_only_version(tmp_path: Path) -> None:
    """publish keeps requiring an image for LXD and Incus in every version: it mirrors each
    lxd.tar.xz item as incus.tar.xz, so a seed-made version (lxd.tar.xz only) is served to both."""
    make_image(tmp_path / "tree/a/20260101_1000", kind="squashfs", serial="20260101_1000")
    assert not (tmp_path / "tree/a/20260101_1000/incus.tar.xz").exists()
    conf = tmp_path / "tree.yml"
    conf.write_text("products:\n  - {name: a, arch: amd64, release: '1', os: Busybox, directory: a}\n")
    out = ssb("-c", str(conf), "-t", str(tmp_path / "tree"), "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    out = ssb("-t", str(tmp_path / "tree"), "verify")
    assert out.returncode == 0 and "WARNING" not in out.stderr, out.stderr
    assert out.stdout.strip().endswith("; clients: lxd-5.0, lxd, incus")
    shutil.rmtree(tmp_path / "tree")


def test_a_delta_note_names_its_base_once() -> None:
    """`build-product` keys a delta item delta-<base>: the note does not say the base twice."""
    def meta(fingerprint: str) -> dict[str, Any]:
        return {"ftype": "lxd.tar.xz", "path": "p/m", "size": 1, "combined_squashfs_sha256": fingerprint}

    root = {"ftype": "squashfs", "path": "p/r", "size": 1}
    product = {"arch": "amd64", "versions": {
        "20260101_1000": {"items": {"lxd.tar.xz": meta("a" * 64), "root.squashfs": root}},
        "20260102_1000": {"items": {"lxd.tar.xz": meta("b" * 64), "root.squashfs": root,
                                    "delta-20260101_1000": {"ftype": "squashfs.vcdiff", "path": "p/d",
                                                            "size": 1, "delta_base": "20260101_1000"}}}}}
    typed = Product.from_json({"aliases": "", "os": "os", "release": "1", "release_title": "1", **product})
    cell = clients.cell(clients.CLIENTS["lxd-5.0"], typed, "20260102_1000", typed.versions["20260102_1000"])
    assert cell.notes == ["uses delta-20260101_1000"]
