"""Issue 11: seed tree.yml files run unchanged, and `ssb-s3 list` shows what the clients list.

Seed compatibility: tests/data/seed-tree.example.yml is simplestreams-builder's
contrib/config/tree.example.yml (MottainaiCI/simplestreams-builder @ 2df9b770), copied verbatim.
The seed reads its optional strings (release_title, version, prefix_path) into Go strings, so ''
(and null) mean "not set"; its documented local mode is `prefix_path: ''`.

`list`: compared with `lxc image list REMOTE: --format json` and `incus image list` on one tree
published to SeaweedFS and read over HTTPS, like tests/test_e2e_clients.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import test_e2e_clients as e2e
import yaml
from helpers import s3_storage, ssb, tree_product, write_tree_yml
from realparts import IncusClient, LxdClient, S3Server, TlsFiles, combined_sha256, make_image

DATA = Path(__file__).parent / "data"
SEED_EXAMPLE = DATA / "seed-tree.example.yml"
BASE = "sabayon-base:current:amd64:default"
BUILDER = "sabayon-builder:current:amd64:default"


def local_mode(tmp_path: Path, *, extra: str = "") -> Path:
    """The seed's example in its documented local mode: prefix_path '' (plus `extra` product keys)."""
    text = SEED_EXAMPLE.read_text().replace('prefix_path: "http://my.mottainai.org/namespace/lxd-sabayon-builder"',
                                            "prefix_path: ''" + extra)
    assert "prefix_path: ''" in text
    conf = tmp_path / "tree.yml"
    conf.write_text(text)
    return conf


# --- seed compatibility -----------------------------------------------------------------------


def test_seed_example_prints_unchanged(tmp_path: Path) -> None:
    out = ssb("-c", str(SEED_EXAMPLE), "-t", str(tmp_path / "out"), "print")
    assert out.returncode == 0, out.stderr
    printed = yaml.safe_load(out.stdout)
    assert printed["prefix"] == "/images"
    by_name = {p["name"]: p for p in printed["products"]}
    assert set(by_name) == {BUILDER, BASE}
    assert by_name[BUILDER]["prefix_path"] == "http://my.mottainai.org/namespace/lxd-sabayon-builder"
    assert by_name[BUILDER]["release_title"] == "Sabayon Builder"
    assert by_name[BASE]["release_title"] == "current"  # the seed's default: the release
    assert by_name[BASE]["aliases"] == ["sabayon/base"] and by_name[BASE]["days"] == 1


def test_seed_example_validates_without_a_schema_error(tmp_path: Path) -> None:
    """No schema problem; the local product has no ssb.json yet (the documented warning). The
    prefix_path product is fetched from the seed's example host, which may or may not answer."""
    out = ssb("-c", str(SEED_EXAMPLE), "-t", str(tmp_path / "out"), "validate")
    assert "is not a valid tree.yml" not in out.stderr, out.stderr
    assert f"product {BASE}: no {tmp_path}/out/images/sbi/sabayon-base/ssb.json yet" in out.stderr


def test_local_mode_empty_prefix_path_publishes_with_the_no_manifest_warnings(tmp_path: Path) -> None:
    conf = local_mode(tmp_path)
    out = ssb("-c", str(conf), "-t", str(tmp_path / "out"), "publish")
    assert "is not a valid tree.yml" not in out.stderr, out.stderr
    for product, folder in ((BUILDER, "sabayon-builder"), (BASE, "sabayon-base")):
        assert f"product {product}: no {tmp_path}/out/images/sbi/{folder}/ssb.json yet" in out.stderr
    assert not (tmp_path / "out/streams/v1/index.json").exists()


def test_local_mode_empty_strings_mean_not_set_and_a_version_publishes(tmp_path: Path) -> None:
    """prefix_path '', release_title '', version '' and `version:` (null): not set. The product is
    read from the tree folder (not fetched) and published; a client lists it."""
    conf = local_mode(tmp_path, extra="\n    release_title: ''\n    version:")
    conf.write_text(conf.read_text().replace('    release_title: "Sabayon Builder"\n', "")
                    .replace("    directory: sbi/sabayon-base\n", "    directory: sbi/sabayon-base\n    version: ''\n"))
    target = tmp_path / "out"
    for folder in ("sabayon-builder", "sabayon-base"):
        make_image(target / "images/sbi" / folder / "20260101_1000", kind="squashfs", serial="20260101_1000",
                   description=folder)
    printed = ssb("-c", str(conf), "-t", str(target), "print")
    assert printed.returncode == 0, printed.stderr
    for product in yaml.safe_load(printed.stdout)["products"]:
        assert "prefix_path" not in product and "version" not in product
        assert product["release_title"] == "current"
    out = ssb("-c", str(conf), "-t", str(target), "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    catalog = json.loads((target / "images/streams/v1/images.json").read_text())
    assert set(catalog["products"]) == {BUILDER, BASE}
    assert {p["release_title"] for p in catalog["products"].values()} == {"current"}
    assert all("version" not in p for p in catalog["products"].values())


@pytest.mark.parametrize("line, expected", [
    ("    prefix_pth: ''", "products[0].prefix_pth: unknown key (did you mean 'prefix_path'?)"),
    ("    prefix_path: ftp://x", "products[0].prefix_path: \"ftp://x\" is not valid, expected an http:// or https://"),
    ("    version: [1]", "products[0].version: expected ['string', 'null'], got [1]"),
])
def test_strictness_kept(tmp_path: Path, line: str, expected: str) -> None:
    conf = tmp_path / "tree.yml"
    conf.write_text(SEED_EXAMPLE.read_text().replace(
        '    prefix_path: "http://my.mottainai.org/namespace/lxd-sabayon-builder"', line))
    out = ssb("-c", str(conf), "-t", str(tmp_path / "out"), "validate")
    assert out.returncode == 1
    assert f"{conf}: {expected}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_negative_days_mean_one_as_in_the_seed(tmp_path: Path) -> None:
    conf = local_mode(tmp_path)
    conf.write_text(conf.read_text().replace("    #days: 1\n", "    days: -3\n"))
    out = ssb("-c", str(conf), "-t", str(tmp_path / "out"), "print")
    assert out.returncode == 0, out.stderr
    assert {p["name"]: p["days"] for p in yaml.safe_load(out.stdout)["products"]}[BASE] == 1


# --- ssb-s3 list ------------------------------------------------------------------------------


TIE_DIR = "busybox/amd64/both"
TIE_PRODUCT = tree_product("busybox:1.36:amd64:both", directory=TIE_DIR, aliases=["busybox/1.36/both"],
                           variant="both")


def tie_breaker(dest: Path) -> None:
    """A version with a squashfs and a tar.xz root whose tar.xz fingerprint sorts first: the
    alias must still go where the clients put it, not to the smaller fingerprint."""
    for attempt in range(64):
        files = {p.name: p for p in make_image(dest, kind="both", serial=dest.name, description=f"tie {attempt}")}
        squashfs = combined_sha256(files["lxd.tar.xz"], files["rootfs.squashfs"])
        tarxz = combined_sha256(files["lxd.tar.xz"], files["rootfs.tar.xz"])
        if tarxz < squashfs:
            return
    raise AssertionError("no tar.xz fingerprint below the squashfs one in 64 tries")


@pytest.fixture(scope="module")
def served(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """test_e2e_clients' tree (squashfs, tar.xz, both, unified, VM; amd64 and x86_64), uploaded to
    a public bucket as a builder would and published by the CLI; read over HTTPS."""
    work = tmp_path_factory.mktemp("list")
    e2e.build_images(work / "images")
    tie_breaker(work / "images" / TIE_DIR / "20260107_1000")
    bucket = "list-clients"
    s3_server.create_bucket(bucket, public_read=True)
    s3_server.upload_folder(bucket, work / "images")
    conf = work / "tree.yml"
    write_tree_yml(conf, *e2e.PRODUCTS, TIE_PRODUCT, storage=s3_storage(s3_server))
    e2e.publish(s3_server, conf, f"s3://{bucket}")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key}
    return {"url": s3_server.public_url(bucket), "target": f"s3://{bucket}", "conf": conf, "env": env}


def listed(served: dict[str, Any], *args: str, tls: TlsFiles | None = None) -> list[dict[str, Any]]:
    env = {**served["env"], **({"SSL_CERT_FILE": str(tls.ca_cert)} if tls else {})}
    where = ["--base-url", served["url"]] if tls else []
    out = ssb("-c", str(served["conf"]), "-t", served["target"], "list", *where, "--format", "json", *args, env=env)
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def client_view(images: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a client's `image list --format json` says, by fingerprint, in list's terms."""
    return {img["fingerprint"]: {
        "type": img["type"], "size": img["size"], "arch": img["architecture"],
        "date": img["created_at"][:10], "uploaded": img["uploaded_at"][:10],
        "os": img["properties"]["os"], "release": img["properties"]["release"],
        "version": img["properties"]["serial"],
        # the product's aliases; the clients also add ALIAS/<arch> for each
        "aliases": sorted(a["name"] for a in img["aliases"] or ()
                          if not a["name"].endswith("/" + img["properties"]["architecture"])),
    } for img in images}


def ours(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["fingerprint"]: {
        "type": r["type"], "size": r["size"], "arch": r["arch"], "date": r["date"], "uploaded": r["date"],
        "os": r["os"], "release": r["release"], "version": r["version"], "aliases": sorted(r["aliases"]),
    } for r in rows}


def test_list_matches_lxc_and_incus(served: dict[str, Any], tmp_path: Path, tls_files: TlsFiles) -> None:
    rows = listed(served, "--full-fingerprint", tls=tls_files)
    assert rows == listed(served, "--full-fingerprint")  # the bucket and its URL give the same rows
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
    lxc.remote_add("t", served["url"])
    incus = IncusClient(tmp_path / "incusconf", ca_file=tls_files.ca_cert)
    incus.remote_add("t", served["url"])
    by_lxc, by_incus = client_view(lxc.image_list("t")), client_view(incus.image_list("t"))
    print(f"images listed: ssb-s3 list {len(rows)}, lxc {len(by_lxc)}, incus {len(by_incus)}")
    assert len(rows) == 11
    assert ours(rows) == by_lxc
    assert ours(rows) == by_incus


def run_list(served: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return ssb("-c", str(served["conf"]), "-t", served["target"], "list", *args, env=served["env"])


def test_list_filters_and_short_fingerprints(served: dict[str, Any]) -> None:
    rows = listed(served)
    assert {len(r["fingerprint"]) for r in rows} == {12}
    assert [r["product"] for r in listed(served, "type=virtual-machine")] == ["busybox:1.36:amd64:vm"]
    assert len(listed(served, "type!=virtual-machine")) == len(rows) - 1
    seed = listed(served, "product~:seed$", "version!~^20260103")
    assert {(r["version"], r["arch"]) for r in seed} == {("20260104_10:00", "x86_64")}
    assert len(seed) == 2  # the squashfs and the tar.xz image of the newest version
    assert [r["aliases"] for r in listed(served, "aliases=busybox")] == [["busybox/1.36", "busybox"]]
    # one arch whichever way it is spelled (the clients' canonical name is x86_64), as mirror's filters
    assert listed(served, "arch=amd64") == listed(served, "arch=x86_64") == rows
    assert listed(served, "arch!=amd64") == listed(served, "arch=arm64") == []
    assert listed(served, "arch~^amd") == []  # a regular expression reads the text as listed
    assert listed(served, "product_name=busybox:1.36:amd64:vm") == listed(served, "product=busybox:1.36:amd64:vm")
    by_date = listed(served, "date=2026-01-06")
    assert [(r["product"], r["size"] > 0) for r in by_date] == [("busybox:1.36:amd64:vm", True)]


def test_list_formats(served: dict[str, Any]) -> None:
    rows = listed(served, "--full-fingerprint")
    as_yaml = run_list(served, "--format", "yaml", "--full-fingerprint")
    assert as_yaml.returncode == 0 and yaml.safe_load(as_yaml.stdout) == rows
    assert {r["version"]: r["description"] for r in rows if r["product"] == "busybox:1.36:amd64:default"} == {
        "20260101_1000": "Busybox Busybox 1.36 amd64 (20260101_1000)",
        "20260102_1000": "Busybox Busybox 1.36 amd64 (20260102_1000)"}  # the clients' os, release_title, arch
    as_csv = run_list(served, "-f", "csv,header", "-c", "NvtfLsua")
    records = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert records[0] == ["PRODUCT", "VERSION", "TYPE", "FINGERPRINT", "ALIASES", "SIZE", "UPLOAD DATE", "ARCHITECTURE"]
    assert len(records) == len(rows) + 1
    newest = next(r for r in records if r[:2] == ["busybox:1.36:amd64:default", "20260102_1000"])
    assert newest[4] == "busybox\nbusybox/1.36\nbusybox/1.36/amd64\nbusybox/amd64"  # ALIASES: one a line, sorted
    table = run_list(served, "type=virtual-machine", "-f", "compact", "-c", "Nvtfl")
    head, line = table.stdout.splitlines()
    assert head.split() == ["PRODUCT", "VERSION", "TYPE", "FINGERPRINT", "ALIAS"]
    vm = next(r for r in rows if r["type"] == "virtual-machine")
    assert line.split() == ["busybox:1.36:amd64:vm", "20260106_1000", "VIRTUAL-MACHINE", vm["fingerprint"][:12],
                            "busybox/1.36/vm", "(1", "more)"]


@pytest.mark.parametrize("args", [[], ["-c", "lLfFpdasut"], ["-f", "compact"], ["-f", "csv"], ["-f", "csv,header"],
                                  ["-f", "table,noheader", "-c", "L,t,s"]],
                         ids=["default", "every-column", "compact", "csv", "csv-header", "noheader"])
def test_list_prints_what_incus_prints(served: dict[str, Any], tmp_path: Path, tls_files: TlsFiles,
                                       args: list[str]) -> None:
    """Byte for byte the real `incus image list REMOTE:` with the same -c and -f, on this host."""
    incus = IncusClient(tmp_path / "incusconf", ca_file=tls_files.ca_cert)
    incus.remote_add("t", served["url"])
    theirs = incus.run("image", "list", "t:", *args).stdout
    ours = run_list(served, *args)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs


def test_list_says_when_no_image_matches_and_refuses_bad_columns(served: dict[str, Any]) -> None:
    out = run_list(served, "os=Plan9", "type=container")
    assert out.returncode == 0 and out.stdout == "no image matches os=Plan9 type=container\n"
    assert run_list(served, "os=Plan9", "-f", "json").stdout == "[]\n"
    for args, expected in [(["-c", "lz"], "error: columns 'lz': unknown column 'z' (letters: lLfFpdasutNvor)"),
                           (["-f", "xml"], "error: format 'xml': expected one of table, compact, csv, json, yaml, "
                                           "optionally with ,header or ,noheader")]:
        bad = run_list(served, *args)
        assert bad.returncode == 1 and bad.stdout == "" and bad.stderr == expected + "\n", bad.stderr


@pytest.mark.parametrize("bad, expected", [
    ("colour=red", "error: filter 'colour=red': unknown key 'colour' (keys: product, version, type,"),
    ("type", "error: filter 'type': expected KEY=VALUE, KEY!=VALUE, KEY~REGEX or KEY!~REGEX"),
    ("os~(", "error: filter 'os~(': '(' is not a valid regular expression: missing ), unterminated subpattern"),
])
def test_list_bad_filter_is_one_line(served: dict[str, Any], bad: str, expected: str) -> None:
    out = run_list(served, bad)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith(expected) and len(out.stderr.splitlines()) == 1, out.stderr


def test_list_nothing_published_and_bad_base_url(tmp_path: Path) -> None:
    out = ssb("-c", str(tmp_path / "none.yml"), "-t", str(tmp_path), "list")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [f"error: {tmp_path}: cannot list the tree: 1 problem(s)",
                                       f"  - {tmp_path}/streams/v1/index.json: missing (nothing is published)"]
    out = ssb("list", "--base-url", "ftp://example.invalid/x")
    assert out.returncode == 1 and out.stderr.startswith("error: --base-url ") and "Traceback" not in out.stderr


def test_list_and_verify_name_a_null_catalog(tmp_path: Path) -> None:
    index = {"format": "index:1.0", "index": {"images": {
        "datatype": "image-downloads", "path": "streams/v1/images.json", "format": "products:1.0",
        "products": ["p"], "updated": "Thu, 01 Jan 2026 00:00:00 +0000"}}}
    (tmp_path / "streams/v1").mkdir(parents=True)
    (tmp_path / "streams/v1/index.json").write_text(json.dumps(index))
    (tmp_path / "streams/v1/images.json").write_text("null")
    for command in ("list", "verify"):
        out = ssb("-c", str(tmp_path / "none.yml"), "-t", str(tmp_path), command)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert f"  - {tmp_path}/streams/v1/images.json: null, expected a products:1.0 catalog" in out.stderr


def test_list_names_every_mistyped_field_of_a_served_catalog(tmp_path: Path) -> None:
    """A catalog with wrong JSON types (tampered, or another tool's) is refused field by field, as
    verify does, never walked into an unexpected AttributeError."""
    import json

    (tmp_path / "streams/v1").mkdir(parents=True)
    (tmp_path / "streams/v1/index.json").write_text(json.dumps({"format": "index:1.0", "index": {"images": {
        "datatype": "image-downloads", "path": "streams/v1/c.json", "products": ["p"]}}}))
    (tmp_path / "streams/v1/c.json").write_text(json.dumps({"products": {"p": {"arch": "amd64", "aliases": 3,
        "versions": {"20260101": {"items": {"a": {"ftype": "lxd.tar.xz", "path": "p/20260101/lxd.tar.xz",
                                                  "size": "x", "combined_squashfs_sha256": 5}, "b": 7}}}}}}))
    out = ssb("-t", str(tmp_path), "list", timeout=60, cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr and "unexpected" not in out.stderr, out.stderr
    for field in ("products.p.aliases: expected string", "items.a.size: expected integer",
                  "items.b: expected object"):
        assert field in out.stderr, out.stderr
