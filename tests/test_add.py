"""`add` / `import` and `remove` on a local-folder tree with no tree.yml (the CLI in-process).

What a user checks: the product, alias and version names `add` derives from metadata.yaml; the
tree's own record (.ssb-s3/products.json) that later commands read with no tree.yml; an identical
image is a no-op; a second image moves the aliases and `days` keeps that many; `remove` by
fingerprint; each bad input is one line naming the field and the flag, and writes nothing.
The real clients launching what `add` published: tests/test_e2e_add.py.
"""

from __future__ import annotations

import io
import json
import lzma
import tarfile
from pathlib import Path

import pytest
from click.testing import Result
from helpers import invoke, tree_product, write_tree_yml
from realparts import make_image


def ssb(tree: Path, *args: str, cwd: Path | None = None) -> Result:
    return invoke("-t", str(tree), *args)


def listed(tree: Path) -> list[dict[str, object]]:
    result = ssb(tree, "list", "--format", "json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "unexpected" not in result.stderr
    return lines[0]


def files_of(tree: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()} \
        if tree.exists() else {}


@pytest.fixture(autouse=True)
def no_tree_yml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no tree.yml anywhere


def test_add_names_the_product_from_metadata_and_records_it_in_the_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    meta, root = make_image(tmp_path / "a", kind="squashfs", serial="20260101_1000", release="1.36")
    result = ssb(tree, "add", str(meta), str(root))
    assert result.exit_code == 0, result.output
    assert "Busybox:1.36:x86_64:default: new product in Busybox/1.36/x86_64/default" in result.stdout
    assert "recorded in the tree's record (.ssb-s3/products.json)" in result.stdout
    [row] = listed(tree)
    assert (row["product"], row["version"], row["aliases"]) == (
        "Busybox:1.36:x86_64:default", "20260101_10:00", ["Busybox/1.36/default"])
    record = json.loads((tree / ".ssb-s3/products.json").read_text())
    assert [(p["name"], p["directory"], p["days"]) for p in record["products"]] == [
        ("Busybox:1.36:x86_64:default", "Busybox/1.36/x86_64/default", 3)]
    # the same image again: a no-op that says so, nothing uploaded
    before = files_of(tree)
    again = ssb(tree, "import", str(meta), str(root))
    assert again.exit_code == 0, again.output
    assert "is already version 20260101_10:00 (same fingerprint): nothing uploaded" in again.stdout
    assert "unchanged:" in again.stdout
    assert files_of(tree) == before
    # an add stopped after the upload, before the record: the same add again records it, uploads nothing
    (tree / ".ssb-s3/products.json").unlink()
    again = ssb(tree, "add", str(meta), str(root))
    assert again.exit_code == 0, again.output
    assert "nothing uploaded" in again.stdout and "recorded in the tree's record" in again.stdout
    assert files_of(tree) == before
    # print shows the effective product list with no tree.yml
    printed = ssb(tree, "print")
    assert printed.exit_code == 0 and "name: Busybox:1.36:x86_64:default" in printed.stdout
    # publish, validate and purge work with no tree.yml
    for command in (("publish",), ("validate",), ("purge",)):
        assert ssb(tree, *command).exit_code == 0, command


def test_second_add_moves_the_alias_days_retention_and_remove(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    serials = ("20260101_1000", "20260102_1000", "20260103_1000")
    images = [make_image(tmp_path / s, kind="squashfs", serial=s) for s in serials]
    first = ssb(tree, "add", *map(str, images[0]), "--days", "2", "--product-name", "busybox:1.0:amd64:default",
                "--alias", "busybox", "--no-default-alias")
    assert first.exit_code == 0, first.output
    name = ("--product-name", "busybox:1.0:amd64:default")
    assert ssb(tree, "add", *map(str, images[1]), *name).exit_code == 0
    rows = listed(tree)
    assert [(r["version"], r["aliases"]) for r in rows] == [("20260101_10:00", []),
                                                              ("20260102_10:00", ["busybox"])]
    assert rows[0]["product"] == "busybox:1.0:amd64:default" and rows[0]["arch"] == "x86_64"
    # a third: days 2 keeps the newest two
    assert ssb(tree, "add", *map(str, images[2]), *name).exit_code == 0
    assert [r["version"] for r in listed(tree)] == ["20260102_10:00", "20260103_10:00"]
    # remove by fingerprint (as incus-simplestreams): the alias goes back to the previous version
    newest = next(r for r in listed(tree) if r["version"] == "20260103_10:00")
    removed = ssb(tree, "remove", str(newest["fingerprint"])[:12])
    assert removed.exit_code == 0, removed.output
    assert "alias busybox (x86_64 container): 20260103_10:00 -> 20260102_10:00" in removed.stdout
    assert [(r["version"], r["aliases"]) for r in listed(tree)][-1] == ("20260102_10:00", ["busybox"])
    # remove PRODUCT: the newest version; the last one needs --force, then nothing is listed
    assert ssb(tree, "remove", "busybox:1.0:amd64:default").exit_code == 0
    line = one_line_error(ssb(tree, "remove", "busybox:1.0:amd64:default"))
    assert "add --force" in line
    assert ssb(tree, "remove", "busybox:1.0:amd64:default", "--force").exit_code == 0
    assert "clients list nothing" in ssb(tree, "list").stderr


def test_unified_tarball_and_a_tree_yml_whose_products_win(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    [unified] = make_image(tmp_path / "u", kind="unified", serial="20260101_1000", variant="uni")
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, tree_product("declared:1", release="1.0", directory="busybox/declared", aliases=["declared"]))
    # an undeclared product goes to the tree's record, and says so
    result = ssb(tree, "add", str(unified))
    assert result.exit_code == 0, result.output
    assert "Busybox:1.0:x86_64:uni: new product" in result.stdout and ".ssb-s3/products.json" in result.stdout
    # a declared product gets a new version with tree.yml's settings
    [meta, root] = make_image(tmp_path / "d", kind="squashfs", serial="20260102_1000")
    declared = ssb(tree, "add", str(meta), str(root), "--product-name", "declared:1")
    assert declared.exit_code == 0, declared.output
    rows = {r["product"]: r for r in listed(tree)}
    assert rows["declared:1"]["aliases"] == ["declared"] and rows["Busybox:1.0:x86_64:uni"]["aliases"] == [
        "Busybox/1.0/uni"]
    printed = ssb(tree, "print").stdout
    assert "name: declared:1" in printed and "name: Busybox:1.0:x86_64:uni" in printed
    # --alias for a declared product belongs in tree.yml
    [meta2, root2] = make_image(tmp_path / "d2", kind="squashfs", serial="20260103_1000")
    line = one_line_error(ssb(tree, "add", str(meta2), str(root2), "--product-name", "declared:1", "--alias", "x"))
    assert "declared in tree.yml: set its aliases and days there" in line
    # a new product whose folder is a declared product's
    line = one_line_error(ssb(tree, "add", str(meta2), str(root2), "--product-name", "busybox:declared"))
    assert line == ("error: --product-name busybox:declared: its folder busybox/declared collides with the folder "
                    "of product declared:1 (tree.yml); give another --product-name")


def _tar_xz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buf.getvalue())


GOOD_META = (b"architecture: x86_64\ncreation_date: 1767261600\nproperties:\n  os: Busybox\n  release: '1.0'\n"
             b"  variant: default\n  description: t\n")


@pytest.mark.parametrize(("meta_yaml", "expected"), [
    (None, "metadata.yaml is missing"),
    (b"creation_date: 1767261600\nproperties: {os: a, release: b, variant: c}\n",
     "metadata.yaml: architecture is missing (no flag replaces it: LXD and Incus need it)"),
    (GOOD_META.replace(b"architecture: x86_64", b"architecture: pdp11"),
     "metadata.yaml: architecture 'pdp11' is not an architecture LXD knows"),
    (GOOD_META.replace(b"  os: Busybox\n", b""), "metadata.yaml: properties.os is missing (or give --product-name)"),
    (GOOD_META.replace(b"  variant: default\n", b""),
     "metadata.yaml: properties.variant is missing (or give --product-name)"),
    (GOOD_META.replace(b"os: Busybox", b"os: Alpine Linux"),
     "is not valid (letters, digits and . _ : + ~ - only): give --product-name"),
    (GOOD_META.replace(b"creation_date: 1767261600", b"creation_date: 0"),
     "metadata.yaml: creation_date is missing or not a positive unix timestamp"),
])
def test_bad_metadata_is_one_line_naming_the_field_and_the_flag(tmp_path: Path, meta_yaml: bytes | None,
                                                                expected: str) -> None:
    tree = tmp_path / "tree"
    root = make_image(tmp_path / "img", kind="squashfs")[1]
    meta = tmp_path / "meta.tar.xz"
    meta.write_bytes(_tar_xz({"templates/x": b"x"} if meta_yaml is None else {"metadata.yaml": meta_yaml}))
    line = one_line_error(ssb(tree, "add", str(meta), str(root)))
    assert expected in line, line
    assert files_of(tree) == {}


def test_bad_files_are_one_line_each(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    a_meta, a_root = make_image(tmp_path / "a", kind="squashfs", serial="20260101_1000")
    _, b_root = make_image(tmp_path / "b", kind="squashfs", serial="20260102_1000")
    gz = tmp_path / "root.tar.gz"
    gz.write_bytes(make_image(tmp_path / "u", kind="unified")[0].read_bytes())
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    cases = [
        ((str(a_meta), str(gz)), "ROOTFS " + str(gz) + ": content is a tarball compressed with gzip; a root file must "
                                 "be one of: squashfs (rootfs.squashfs), xz tarball (rootfs.tar.xz), "
                                 "qcow2 (disk.qcow2)"),
        ((str(a_meta), str(text)), "content is unknown; a root file must be one of: squashfs (rootfs.squashfs)"),
        ((str(tmp_path / "missing.tar.xz"),), "METADATA " + str(tmp_path / "missing.tar.xz") + ": no such file"),
        ((str(a_meta),), "holds metadata.yaml but no rootfs/ nor rootfs.img: not a unified tarball"),
        ((str(a_meta), str(a_root), "--product-name", "bad name"), "--product-name: 'bad name' is not a valid product"),
        ((str(a_meta), str(a_root), "--alias", "a b"), "--alias: 'a b' is not a valid alias"),
        ((str(a_meta), str(a_root), "--version", "../x"), "--version '../x'"),
    ]
    for args, expected in cases:
        line = one_line_error(ssb(tree, "add", *args))
        assert expected in line, (args, line)
    # files of two different images, as `incus image export` names them: refused before any upload
    fp_a, fp_b = "a" * 64, "b" * 64
    (tmp_path / f"{fp_a}.tar.xz").write_bytes(a_meta.read_bytes())
    (tmp_path / f"{fp_b}.squashfs").write_bytes(b_root.read_bytes())
    line = one_line_error(ssb(tree, "add", str(tmp_path / f"{fp_a}.tar.xz"), str(tmp_path / f"{fp_b}.squashfs")))
    assert "files of two different images (their names carry the fingerprints aaaaaaaaaaaa and bbbbbbbbbbbb)" in line
    # the same fingerprint in both names, but the content of two images: found in the upload's one pass
    (tmp_path / f"{fp_a}.squashfs").write_bytes(b_root.read_bytes())
    line = one_line_error(ssb(tree, "add", str(tmp_path / f"{fp_a}.tar.xz"), str(tmp_path / f"{fp_a}.squashfs")))
    assert "files of two different images (their names say aaaaaaaaaaaa, their content makes" in line
    assert "nothing recorded, its upload was removed" in line
    assert not [k for k in files_of(tree) if not k.startswith(".ssb-s3/")]
    assert ssb(tree, "list", "--format", "json").stdout.strip() in ("[]", "")


def test_dry_run_writes_nothing_and_json_reports(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    meta, root = make_image(tmp_path / "a", kind="squashfs", serial="20260101_1000")
    dry = ssb(tree, "add", str(meta), str(root), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: Busybox:1.0:x86_64:default 20260101_10:00: " in dry.stdout and "nothing written" in dry.stdout
    assert files_of(tree) == {}
    done = ssb(tree, "add", str(meta), str(root), "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["product"], report["version"], report["new_product"], report["recorded"]) == (
        "Busybox:1.0:x86_64:default", "20260101_10:00", True, True)
    assert sorted(report["uploaded"]) == ["lxd.tar.xz", "rootfs.squashfs"] and report["publish"]["published"]


def test_classic_lxc_pair_joins_an_existing_product(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    meta, root = make_image(tmp_path / "a", kind="squashfs", serial="20260101_1000")
    assert ssb(tree, "add", str(meta), str(root)).exit_code == 0
    lxc_meta, lxc_root = make_image(tmp_path / "lxc", kind="lxc", serial="20260102_1000")
    line = one_line_error(ssb(tree, "add", str(lxc_meta), str(lxc_root)))
    assert "a classic LXC metadata tarball has no metadata.yaml: give --product-name of an existing product" in line
    added = ssb(tree, "add", str(lxc_meta), str(lxc_root), "--product-name", "Busybox:1.0:x86_64:default",
                "--version", "20260102_10:00")
    assert added.exit_code == 0, added.output
    assert (tree / "meta/1.0/index-system").read_text().count("Busybox") >= 1


def test_a_damaged_record_is_one_line(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    meta, root = make_image(tmp_path / "a", kind="squashfs")
    assert ssb(tree, "add", str(meta), str(root)).exit_code == 0
    record = tree / ".ssb-s3/products.json"
    document = json.loads(record.read_text())
    document["products"][0]["arch"] = "pdp11"
    record.write_text(json.dumps(document))
    line = one_line_error(ssb(tree, "publish"))
    assert ".ssb-s3/products.json: products[0].arch:" in line and "the tree's record of added products" in line
    record.write_text("{not json")
    assert "not JSON" in one_line_error(ssb(tree, "publish"))


def test_a_new_product_never_takes_what_a_mirrored_product_holds(tmp_path: Path) -> None:
    """Name, folder, alias and image of a product `mirror` put in the tree: each one line, nothing recorded."""
    upstream, tree = tmp_path / "upstream", tmp_path / "tree"
    meta, root = make_image(tmp_path / "a", kind="squashfs")
    assert ssb(upstream, "add", str(meta), str(root)).exit_code == 0
    assert ssb(tree, "mirror", str(upstream)).exit_code == 0
    cases = [
        ((), "--product-name Busybox:1.0:x86_64:default: the tree serves a product of that name that neither "
             "(no tree.yml) nor .ssb-s3/products.json declares (a mirrored one)"),
        (("--product-name", "Busybox:1.0"), "its folder Busybox/1.0 collides with the folder of product "
                                            "Busybox:1.0:x86_64:default (mirrored)"),
        (("--product-name", "other:1"), "alias Busybox/1.0/default (x86_64) already belongs to product "
                                        "Busybox:1.0:x86_64:default: give --no-default-alias"),
        (("--product-name", "other:1", "--no-default-alias"),
         "other:1: this image is already served as Busybox:1.0:x86_64:default 20260101_00:00 (same fingerprint"),
    ]
    for args, expected in cases:
        line = one_line_error(ssb(tree, "add", str(meta), str(root), *args))
        assert expected in line, (args, line)
    assert not (tree / ".ssb-s3/products.json").exists()
    assert [r["product"] for r in listed(tree)] == ["Busybox:1.0:x86_64:default"]
