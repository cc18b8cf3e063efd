"""The one table of image files (ssb_s3.vocabulary.imagefiles): its invariants, and a made-up kind of file
that, once registered, goes through scan → catalog → verify with no other edit.

The made-up kind is a root file 'rootfs.madeup' (item key root.madeup, ftype 'madeup', combined
field combined_madeup_sha256, content starting with b'MADEUPFS'); the `madeup` fixture registers
it and removes it afterwards. The CLI runs in-process (click's CliRunner), so that it sees it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import FrozenInstanceError, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from helpers import invoke
from realparts import make_image
from test_layout import PACKAGE, _prose

from ssb_s3.config import claim_alias, config_from_text
from ssb_s3.core.catalog import build_catalog, contract_problems, version_images
from ssb_s3.errors import ProblemsFound
from ssb_s3.schemas import load_schema, schema_problems
from ssb_s3.vocabulary import clients, imagefiles
from ssb_s3.vocabulary.document import Catalog, Product, raw_items
from ssb_s3.vocabulary.imagefiles import (
    ALIAS_PREFERENCE,
    CLIENT_META,
    CLIENTS,
    COMBINED_FIELDS,
    FOOTERS,
    HEAD_BYTES,
    IMAGE_FILES,
    KNOWN_FTYPES,
    MAGIC,
    META_FTYPES,
    MIRRORS,
    ROOT_COMBINED_FIELD,
    ROOT_FOR_CONTENT,
    SIZE_FIELDS,
    TAIL_BYTES,
    VM_FTYPES,
    ImageFile,
    MetaRootHasher,
    VersionHasher,
    file_for,
    is_complete,
    table_problems,
    upload_order,
)

MADEUP = ImageFile("rootfs.madeup", "root.madeup", "madeup", "madeup", "madeup", "root", ("madeupfs",),
                   ("combined_madeup_sha256",), read_by=("lxd-5.0", "lxd", "incus"))
MADEUP_MAGIC = {"madeupfs": (b"MADEUPFS",)}
PRODUCT = "madeup:1.0:amd64:default"
VERSION = "20260101_0000"
TREE_YML = f"""\
products:
  - name: {PRODUCT}
    arch: amd64
    release: "1.0"
    release_title: "Made-up 1.0"
    os: Madeup
    directory: madeup/amd64
    aliases: [madeup]
"""


def snapshot() -> tuple[object, ...]:
    """Everything register/unregister may touch, copied."""
    return (dict(IMAGE_FILES), dict(MAGIC), set(KNOWN_FTYPES), set(META_FTYPES), dict(ROOT_COMBINED_FIELD),
            list(COMBINED_FIELDS), dict(CLIENT_META), list(MIRRORS))


@pytest.fixture
def madeup() -> Iterator[ImageFile]:
    before = snapshot()
    with imagefiles.registered(MADEUP, MADEUP_MAGIC) as row:
        yield row
    assert snapshot() == before, "the made-up kind was not removed cleanly"


# --- the table's invariants -------------------------------------------------------------------

def test_the_table_keeps_its_invariants() -> None:
    assert table_problems(list(IMAGE_FILES.values())) == []


def test_every_combined_field_belongs_to_one_root_and_every_root_has_one() -> None:
    owners = {f: [r.filename for r in IMAGE_FILES.values() if f in r.combined_fields] for f in COMBINED_FIELDS}
    assert all(len(o) == 1 and IMAGE_FILES[o[0]].role == "root" for o in owners.values()), owners
    roots = [r for r in IMAGE_FILES.values() if r.role == "root"]
    assert roots and all(r.combined_fields and r.lxd_ftype == r.incus_ftype for r in roots)


def test_an_ftype_names_one_kind_per_client() -> None:
    for client in CLIENTS:
        kinds: dict[str, set[tuple[str, str, str]]] = {}
        for r in IMAGE_FILES.values():
            kinds.setdefault(r.ftype_for(client), set()).add((r.lxd_ftype, r.incus_ftype, r.role))
        assert all(len(k) == 1 for k in kinds.values()), (client, kinds)
    assert len({r.ftype for r in IMAGE_FILES.values()}) == len(IMAGE_FILES)
    assert len({r.item_key for r in IMAGE_FILES.values()}) == len(IMAGE_FILES)


def test_the_derived_vocabulary_is_the_published_one() -> None:
    """What clients read must not move: these are the values catalog.py and verify.py had as literals."""
    assert CLIENT_META == {"LXD": ("lxd.tar.xz", "lxd_combined.tar.gz"),
                           "Incus": ("incus.tar.xz", "incus_combined.tar.gz")}
    assert ROOT_COMBINED_FIELD == {"squashfs": "combined_squashfs_sha256", "root.tar.xz": "combined_rootxz_sha256",
                                   "disk-kvm.img": "combined_disk-kvm-img_sha256"}
    known, metas, mirrors = set(KNOWN_FTYPES), set(META_FTYPES), list(MIRRORS)
    assert known == {"lxd.tar.xz", "incus.tar.xz", "meta.tar.xz", "squashfs", "root.tar.xz", "disk-kvm.img",
                     "lxd_combined.tar.gz", "incus_combined.tar.gz", "squashfs.vcdiff", "disk-kvm.img.vcdiff"}
    assert metas == {"lxd.tar.xz", "incus.tar.xz"}
    assert mirrors == [("lxd.tar.xz", "incus.tar.xz"), ("incus.tar.xz", "lxd.tar.xz"),
                       ("lxd_combined.tar.gz", "incus_combined.tar.gz"),
                       ("incus_combined.tar.gz", "lxd_combined.tar.gz")]
    assert [file_for(role, client) for role in ("meta", "unified") for client in CLIENTS] == [
        "lxd.tar.xz", "incus.tar.xz", "lxd_combined.tar.gz", "incus_combined.tar.gz"]
    assert {r.filename: (r.item_key, r.ftype) for r in IMAGE_FILES.values()} == {
        "lxd.tar.xz": ("lxd.tar.xz", "lxd.tar.xz"), "incus.tar.xz": ("incus.tar.xz", "incus.tar.xz"),
        "meta.tar.xz": ("meta.tar.xz", "meta.tar.xz"), "rootfs.squashfs": ("root.squashfs", "squashfs"),
        "rootfs.tar.xz": ("root.tar.xz", "root.tar.xz"), "disk.qcow2": ("disk.qcow2", "disk-kvm.img"),
        "lxd_combined.tar.gz": ("lxd_combined.tar.gz", "lxd_combined.tar.gz"),
        "incus_combined.tar.gz": ("incus_combined.tar.gz", "incus_combined.tar.gz"),
        "rootfs.squashfs.vcdiff": ("delta", "squashfs.vcdiff"),
        "disk.qcow2.vcdiff": ("delta-kvm", "disk-kvm.img.vcdiff"),
    }


@pytest.mark.parametrize("schema", ["ssb", "products"])
def test_every_combined_field_is_typed_by_the_published_schemas(schema: str) -> None:
    text = json.dumps(load_schema(schema))
    assert [f for f in COMBINED_FIELDS if f'"{f}"' not in text] == []


@pytest.mark.parametrize(("broken", "why"), [
    (replace(MADEUP, incus_ftype="squashfs", lxd_ftype="squashfs", ftype="squashfs"), "names two kinds"),
    (replace(MADEUP, item_key="root.squashfs"), "item key 'root.squashfs' is used twice"),
    (replace(MADEUP, combined_fields=("combined_squashfs_sha256",)), "combined field"),
    (replace(MADEUP, role="unified"), "only a root has combined fields"),
    (replace(MADEUP, incus_ftype="madeup2"), "a root has one ftype for both clients"),
    (replace(MADEUP, ftype="other"), "neither its LXD nor its Incus ftype"),
    (replace(MADEUP, content=("nosuch",)), "must name kinds of MAGIC"),
    (replace(MADEUP, role="meta", combined_fields=(), lxd_ftype="madeup.meta", incus_ftype="madeup.meta",
             ftype="madeup.meta"), "exactly one meta ftype"),
])
def test_register_refuses_a_kind_that_breaks_the_table(broken: ImageFile, why: str) -> None:
    before = snapshot()
    with pytest.raises(ValueError, match=why):
        imagefiles.register(broken, MADEUP_MAGIC)
    assert snapshot() == before


def test_completeness_and_order() -> None:
    assert is_complete(["lxd.tar.xz", "rootfs.squashfs"])
    assert is_complete(["incus.tar.xz", "disk.qcow2"])
    assert is_complete(["lxd_combined.tar.gz"])
    assert is_complete(["meta.tar.xz", "rootfs.tar.xz"])
    assert not is_complete(["meta.tar.xz", "rootfs.squashfs"])
    assert not is_complete(["lxd.tar.xz", "meta.tar.xz"])
    assert not is_complete(["rootfs.squashfs", "rootfs.madeup"])
    assert upload_order(["rootfs.squashfs", "README", "lxd.tar.xz", "disk.qcow2", "incus.tar.xz"]) == [
        "incus.tar.xz", "lxd.tar.xz", "disk.qcow2", "rootfs.squashfs"]


@pytest.mark.parametrize("size", [10, 3 << 20])  # small chunks, and chunks hashed on the pool
def test_one_hasher_gives_sha256_of_meta_then_root(size: int) -> None:
    meta, root = b"m" * 1000, bytes(range(256)) * (size // 256)
    hasher = VersionHasher()
    for name, data in (("lxd.tar.xz", meta), ("incus.tar.xz", meta + b"!"), ("rootfs.squashfs", root)):
        feed = hasher.start(name)
        for i in range(0, len(data), 1 << 20):
            feed(data[i:i + (1 << 20)])
        hasher.finish(name)
    items = hasher.items("p/v")
    assert items["root.squashfs"]["sha256"] == hashlib.sha256(root).hexdigest()
    assert items["lxd.tar.xz"]["combined_squashfs_sha256"] == hashlib.sha256(meta + root).hexdigest()
    assert items["incus.tar.xz"]["combined_squashfs_sha256"] == hashlib.sha256(meta + b"!" + root).hexdigest()
    core = MetaRootHasher()  # the same core, keyed by paths (verify)
    core.start_file("a/meta")(meta)
    core.finish_file("a/meta", keep=True)
    core.start_file("a/root", ["a/meta"])(root)
    core.finish_file("a/root")
    assert core.combined[("a/meta", "a/root")] == items["lxd.tar.xz"]["combined_squashfs_sha256"]


# --- a made-up kind through scan → catalog → verify ----------------------------------------------

def run(tree: Path, *args: str) -> Result:
    return invoke("-c", str(tree / "tree.yml"), "-t", str(tree), *args)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A tree folder with one version: lxd.tar.xz + the made-up root rootfs.madeup."""
    version = tmp_path / "madeup" / "amd64" / VERSION
    made = tmp_path / "made"
    make_image(made, kind="tarxz", serial=VERSION)
    version.mkdir(parents=True)
    shutil.copy(made / "lxd.tar.xz", version / "lxd.tar.xz")
    (version / "rootfs.madeup").write_bytes(b"MADEUPFS" + bytes(range(256)) * 100)
    (tmp_path / "tree.yml").write_text(TREE_YML)
    return tmp_path


def test_without_the_kind_its_file_is_not_an_image_file(tree: Path) -> None:
    result = run(tree, "build-versions-manifest", "-p", PRODUCT)
    assert "incomplete (has lxd.tar.xz; needs a metadata file and a root file)" in result.output
    assert not (tree / "madeup/amd64/ssb.json").exists()


def test_a_made_up_kind_goes_through_scan_catalog_and_verify(madeup: ImageFile, tree: Path) -> None:
    version = tree / "madeup" / "amd64" / VERSION
    meta, root = (version / "lxd.tar.xz").read_bytes(), (version / "rootfs.madeup").read_bytes()

    # scan: ssb.json records it under its item key and ftype, and its combined hash on the metadata item
    assert run(tree, "build-versions-manifest", "-p", PRODUCT).exit_code == 0
    items = json.loads((tree / "madeup/amd64/ssb.json").read_text())["versions"][VERSION]["items"]
    assert items["root.madeup"] == {"ftype": "madeup", "path": f"madeup/amd64/{VERSION}/rootfs.madeup",
                                    "size": len(root), "sha256": hashlib.sha256(root).hexdigest()}
    assert items["lxd.tar.xz"]["combined_madeup_sha256"] == hashlib.sha256(meta + root).hexdigest()

    # catalog: published with its ftype, for both clients (the metadata item mirrored for Incus)
    result = run(tree, "publish")
    assert result.exit_code == 0, result.output
    index = json.loads((tree / "streams/v1/index.json").read_text())
    catalog = json.loads((tree / index["index"]["images"]["path"]).read_text())
    published = catalog["products"][PRODUCT]["versions"][VERSION]["items"]
    assert published["root.madeup"]["ftype"] == "madeup"
    assert published["incus.tar.xz"]["combined_madeup_sha256"] == items["lxd.tar.xz"]["combined_madeup_sha256"]

    # verify --hashes: passes, then sees a changed byte of the made-up file, in its sha256 and fingerprint
    result = run(tree, "verify", "--hashes")
    assert result.exit_code == 0 and "hashes verified" in result.output, result.output
    (version / "rootfs.madeup").write_bytes(root[:-1] + b"X")
    result = run(tree, "verify", "--hashes")
    assert result.exit_code == 1
    assert f"item root.madeup: madeup/amd64/{VERSION}/rootfs.madeup sha256 is" in result.output
    assert "item lxd.tar.xz: combined_madeup_sha256 is" in result.output


def _catalog_of(product: dict[str, Any]) -> Catalog:
    """A typed catalog of one product built from a manifest (the fields the clients do not read: blank)."""
    fields = {"aliases": "", "os": "os", "release": "1", "release_title": "1"}
    return Catalog("c", {PRODUCT: Product.from_json({**fields, **product})})


def test_a_root_no_client_reads_is_listed_by_none_and_refused(tree: Path) -> None:
    """Which clients pair a root is the table's read_by column: a root none reads is an image no
    client can use, so the catalog's contract refuses it (before, every root counted for every
    client, and LXD 5.0 was reported to list it)."""
    unread = replace(MADEUP, read_by=())
    with imagefiles.registered(unread, MADEUP_MAGIC):
        assert run(tree, "build-versions-manifest", "-p", PRODUCT).exit_code == 0
        product = {**json.loads((tree / "madeup/amd64/ssb.json").read_text()), "arch": "amd64"}
        cells = clients.report(_catalog_of(product))[0].cells
        assert not cells["lxd-5.0"].listed and "no root item it knows" in cells["lxd-5.0"].reason
        assert not cells["incus"].listed and cells["simplestreams"].listed
        result = run(tree, "publish")
        assert result.exit_code == 1 and "no image that LXD can use" in result.output, result.output
        assert not (tree / "streams").exists()
    with imagefiles.registered(replace(MADEUP, read_by=("lxd",)), MADEUP_MAGIC):  # current LXD only
        cells = clients.report(_catalog_of(product))[0].cells
        assert cells["lxd"].listed and [i.kind for i in cells["lxd"].images] == ["madeup"]
        assert not cells["lxd-5.0"].listed


def test_the_client_rows_agree_with_the_table() -> None:
    assert clients.table_problems() == []
    with imagefiles.registered(replace(MADEUP, read_by=("lxd-4.0",)), MADEUP_MAGIC):
        assert clients.table_problems() == ["rootfs.madeup: read_by names lxd-4.0, not image clients"]


def test_a_third_delta_row_leaves_every_module_importable(tmp_path: Path) -> None:
    """The client table once unpacked the delta rows into two names: a third delta row, which the
    table itself accepts, made the CLI fail to import."""
    script = (
        "from ssb_s3.vocabulary import imagefiles as f\n"
        "deltas = len(f.DELTA_FTYPES)\n"
        "root = f.ImageFile('rootfs.madeup', 'root.madeup', 'madeup', 'madeup', 'madeup', 'root', ('madeupfs',),"
        " ('combined_madeup_sha256',), read_by=('incus',))\n"
        "f.register(root, {'madeupfs': (b'MADEUPFS',)})\n"
        "f.register(f.ImageFile('rootfs.madeup.vcdiff', 'delta-madeup', 'madeup.vcdiff', 'madeup.vcdiff',"
        " 'madeup.vcdiff', 'delta', ('vcdiff',), delta_of='rootfs.madeup'))\n"
        "assert len(f.DELTA_FTYPES) == deltas + 1 >= 3\n"
        "import ssb_s3.cli\n"
        "from ssb_s3.vocabulary import clients\n"
        "print(sorted(clients.CLIENTS['incus'].deltas), clients.table_problems())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['disk-kvm.img.vcdiff', 'squashfs.vcdiff'] []"


# --- one alias-collision rule -------------------------------------------------------------------

def test_tree_yml_and_the_catalog_share_one_alias_rule() -> None:
    """amd64 and x86_64 are one arch to the clients: the same alias on both is one collision, for
    tree.yml (config) and for the catalog's contract alike; on another arch it is none."""
    two = TREE_YML + TREE_YML.replace(PRODUCT, "other:1.0").replace("madeup/amd64", "other").replace(
        "arch: amd64", "arch: x86_64").replace("products:\n", "")
    with pytest.raises(ProblemsFound) as caught:
        config_from_text(two, "tree.yml")
    assert any("aliases: 'madeup' for arch x86_64 is already claimed by" in str(p) for p in caught.value.problems)
    owners: dict[tuple[str, str], str] = {}
    assert claim_alias(owners, "madeup", "amd64", "a") == "a"
    assert claim_alias(owners, "madeup", "x86_64", "b") == "a"
    assert claim_alias(owners, "madeup", "arm64", "c") == "c"
    tree = config_from_text(two.replace("x86_64", "arm64"), "tree.yml")
    catalog = build_catalog(tree, {p.name: {"name": p.name, "versions": {VERSION: {"items": {
        "lxd_combined.tar.gz": {"ftype": "lxd_combined.tar.gz", "path": f"{p.directory}/{VERSION}/x.tar.gz",
                                "size": 1, "sha256": hashlib.sha256(p.name.encode()).hexdigest()}}}}}
        for p in tree.products})
    assert contract_problems(catalog) == []
    catalog["products"]["other:1.0"]["arch"] = "x86_64"
    assert any("alias 'madeup' for arch x86_64 is already claimed" in p for p in contract_problems(catalog))


# --- one frozen Vocabulary, its columns, and what is generated from it -------------------------

def test_the_vocabulary_is_one_frozen_value_and_register_replaces_it() -> None:
    """Nothing can change a Vocabulary nor write through the names the package imports; register
    gives a new value, which every imported view then shows."""
    before = imagefiles.VOCABULARY
    with pytest.raises(FrozenInstanceError):
        before.known_ftypes = frozenset()  # type: ignore[misc]
    with pytest.raises(TypeError):
        before.delta_ftypes["x"] = MADEUP  # type: ignore[index]
    assert not any(hasattr(view, name) for view in (KNOWN_FTYPES, IMAGE_FILES, COMBINED_FIELDS)
                   for name in ("add", "clear", "update", "append", "pop"))
    with imagefiles.registered(MADEUP, MADEUP_MAGIC):
        assert imagefiles.VOCABULARY is not before and "rootfs.madeup" not in before.rows
        assert "madeup" in KNOWN_FTYPES and COMBINED_FIELDS[-1] == "combined_madeup_sha256"
    assert "madeup" not in KNOWN_FTYPES and imagefiles.VOCABULARY.rows == before.rows


def test_the_columns_clients_list_and_add_read() -> None:
    """What catalog, list, add and the client table once spelled themselves is the table's."""
    assert set(VM_FTYPES) == {"disk-kvm.img"}
    assert list(ALIAS_PREFERENCE) == ["squashfs", "root.tar.xz"]
    assert {k: r.filename for k, r in ROOT_FOR_CONTENT.items()} == {
        "squashfs": "rootfs.squashfs", "xz": "rootfs.tar.xz", "qcow2": "disk.qcow2"}
    assert {c.name: c.deltas for c in clients.IMAGE_CLIENTS} == {
        "lxd-5.0": {"squashfs.vcdiff": "combined_squashfs_sha256"},
        "lxd": {"squashfs.vcdiff": "combined_squashfs_sha256",
                "disk-kvm.img.vcdiff": "combined_disk-kvm-img_sha256"},
        "incus": {"squashfs.vcdiff": "combined_squashfs_sha256",
                  "disk-kvm.img.vcdiff": "combined_squashfs_sha256"},
    }
    assert max(len(m) for m in MAGIC.values()) <= HEAD_BYTES
    assert all(f.offset + f.length <= HEAD_BYTES for f in SIZE_FIELDS.values())
    assert all(len(f) <= TAIL_BYTES for f in FOOTERS.values())


@pytest.mark.parametrize(("broken", "why"), [
    (replace(MADEUP, content=("squashfs",)), "root content kind 'squashfs' is used twice"),
    (replace(MADEUP, role="unified", combined_fields=(), read_by=(), vm=True, lxd_ftype="x.tar.gz",
             incus_ftype="x.tar.gz", ftype="x.tar.gz"), "only a root has combined fields, a VM flag"),
    (replace(MADEUP, base_field_for=(("incus", "combined_squashfs_sha256"),)), "only a delta has base_field_for"),
    (ImageFile("rootfs.madeup.delta", "delta-madeup", "squashfs.vcdiff2", "squashfs.vcdiff2", "squashfs.vcdiff2",
               "delta", ("vcdiff",), delta_of="rootfs.squashfs"), "a delta's file name ends in .vcdiff"),
])
def test_register_refuses_columns_out_of_place(broken: ImageFile, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        imagefiles.register(broken, MADEUP_MAGIC)


def test_a_vm_root_and_its_alias_rank_come_from_its_row() -> None:
    """A made-up root marked vm is listed as a virtual-machine (catalog, list, page), and one with an
    alias rank before squashfs gets the version's alias first."""
    items = {"lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": "p/v/lxd.tar.xz", "size": 1, "sha256": "0" * 64,
                            "combined_madeup_sha256": "1" * 64, "combined_squashfs_sha256": "2" * 64},
             "root.madeup": {"ftype": "madeup", "path": "p/v/rootfs.madeup", "size": 2, "sha256": "3" * 64},
             "root.squashfs": {"ftype": "squashfs", "path": "p/v/rootfs.squashfs", "size": 2, "sha256": "4" * 64}}
    with imagefiles.registered(MADEUP, MADEUP_MAGIC):
        assert version_images(raw_items(items))["1" * 64].type == "container"
        assert list(ALIAS_PREFERENCE) == ["squashfs", "root.tar.xz"]
    with imagefiles.registered(replace(MADEUP, vm=True, alias_rank=-1), MADEUP_MAGIC):
        assert version_images(raw_items(items))["1" * 64].type == "virtual-machine"
        assert clients.is_vm_root("madeup") and list(ALIAS_PREFERENCE) == ["madeup", "squashfs", "root.tar.xz"]
    assert not clients.is_vm_root("madeup")


def test_the_schemas_combined_fields_are_generated_from_the_table() -> None:
    """The shipped JSON names no combined field; the loaded schemas type exactly the table's, and
    still refuse what they refused: a combined field that is no sha256 (ssb.json), or no string (catalog)."""
    shipped = PACKAGE / "schemas"
    assert [p.name for p in sorted(shipped.glob("*.json")) if "combined_" in p.read_text()] == []
    ssb_item = load_schema("ssb")["$defs"]["item"]["properties"]
    assert {k: v for k, v in ssb_item.items() if k.startswith("combined_")} == {
        f: {"$ref": "#/$defs/sha256"} for f in COMBINED_FIELDS}
    products_item = load_schema("products")["properties"]["products"]["additionalProperties"]["properties"][
        "versions"]["additionalProperties"]["properties"]["items"]["additionalProperties"]["properties"]
    assert {k: v for k, v in products_item.items() if k.startswith("combined_")} == {
        f: {"type": "string"} for f in COMBINED_FIELDS}

    def ssb(item_extra: dict[str, object]) -> dict[str, object]:
        item = {"ftype": "lxd.tar.xz", "path": "p/v/lxd.tar.xz", "size": 1, "sha256": "0" * 64, **item_extra}
        return {"name": "p", "versions": {VERSION: {"items": {"lxd.tar.xz": item}}}}

    def catalog(item_extra: dict[str, object]) -> dict[str, object]:
        item = {"ftype": "lxd.tar.xz", "path": "p/v/lxd.tar.xz", "size": 1, **item_extra}
        return {"content_id": "x", "datatype": "image-downloads", "format": "products:1.0", "products": {"p": {
            "aliases": "", "arch": "amd64", "os": "o", "release": "r", "release_title": "t",
            "versions": {VERSION: {"items": {"lxd.tar.xz": item}}}}}}

    for field in COMBINED_FIELDS:
        assert schema_problems(ssb({field: "1" * 64}), "ssb", "ssb.json") == []
        refused = schema_problems(ssb({field: "not a sha256"}), "ssb", "ssb.json")
        assert [p.field for p in refused] == [f"versions.{VERSION}.items.lxd.tar.xz.{field}"], refused
        assert schema_problems(catalog({field: "x"}), "products", "images.json") == []
        assert [p.field for p in schema_problems(catalog({field: 1}), "products", "images.json")] == [
            f"products.p.versions.{VERSION}.items.lxd.tar.xz.{field}"]
    assert schema_problems(ssb({"combined_madeup_sha256": "no"}), "ssb", "ssb.json") == []  # not a field yet
    with imagefiles.registered(MADEUP, MADEUP_MAGIC):
        assert "combined_madeup_sha256" in load_schema("ssb")["$defs"]["item"]["properties"]
        assert len(schema_problems(ssb({"combined_madeup_sha256": "no"}), "ssb", "ssb.json")) == 1


def test_no_image_file_name_outside_the_vocabulary() -> None:
    """Code names an image file, ftype, item key or combined field only through the table (docstrings,
    comments and help texts may; vocabulary/imagefiles.py holds the table)."""
    names = {n for r in IMAGE_FILES.values()
             for n in (r.filename, r.item_key, r.ftype, r.lxd_ftype, r.incus_ftype, *r.combined_fields)} - {"delta"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "vocabulary" / "imagefiles.py":
            continue
        tree = ast.parse(path.read_text())
        prose = _prose(tree)
        found += [(str(path.relative_to(PACKAGE)), node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
                  and any(name in node.value for name in names)]
    assert found == []
