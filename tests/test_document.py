"""The catalog's document model (vocabulary/document, issue 21 point 4): a catalog that passed the
products schema check parses once into frozen Catalog/Product/Version/Item values whose
to_json() gives back the very mapping (so the published bytes do not move), and one walker
yields products -> versions -> items alike from the typed model and from the raw mapping."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ssb_s3.core.catalog import item_size, version_images
from ssb_s3.schemas import schema_problems
from ssb_s3.vocabulary import clients
from ssb_s3.vocabulary.document import Catalog, Item, Product, Version, items_of, raw_items, walk, walk_versions

ROOT = Path(__file__).resolve().parent.parent


def _dumps(document: Any) -> bytes:
    """The catalog's serialisation (core/catalog.catalog_bytes)."""
    return (json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def full_catalog() -> dict[str, Any]:
    """A catalog with every optional field the schema names, a delta, and unknown fields at each level."""
    old, new = "20260101_0000", "20260102_0000"
    root = {"ftype": "squashfs", "path": f"debian/{new}/rootfs.squashfs", "size": 4096, "sha256": "b" * 64,
            "md5": "c" * 32}
    return {
        "content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
        "license": "CC0", "updated": "Thu, 01 Jan 2026 00:00:00 +0000", "x-mirror": {"from": "elsewhere"},
        "products": {
            "debian:12:amd64:default": {
                "aliases": "debian/12,debian/bookworm", "arch": "amd64", "os": "Debian", "release": "12",
                "release_codename": "bookworm", "release_title": "12 (bookworm)", "supported": True,
                "support_eol": "2028-06-30", "version": "12", "variant": "default",
                "requirements": {"secureboot": "false"}, "lxd_requirements": {"cgroup": "v2"},
                "x-product-note": ["kept", 1, None],
                "versions": {
                    old: {"items": {
                        "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": f"debian/{old}/lxd.tar.xz", "size": 600,
                                       "sha256": "a" * 64, "combined_sha256": "d" * 64,
                                       "combined_squashfs_sha256": "e" * 64},
                        "root.squashfs": {**root, "path": f"debian/{old}/rootfs.squashfs"}}},
                    new: {"label": "release", "pubname": "debian-12-amd64-20260102", "x-version": 7, "items": {
                        "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": f"debian/{new}/lxd.tar.xz", "size": 600,
                                       "sha256": "f" * 64, "combined_sha256": "1" * 64,
                                       "combined_squashfs_sha256": "2" * 64,
                                       "combined_rootxz_sha256": "3" * 64,
                                       "combined_disk-kvm-img_sha256": "4" * 64, "x-item": {"k": "v"}},
                        "root.squashfs": root,
                        f"{old}.squashfs.vcdiff": {"ftype": "squashfs.vcdiff", "size": 10, "sha256": "5" * 64,
                                                   "path": f"debian/{new}/{old}.squashfs.vcdiff",
                                                   "delta_base": old}}},
                }},
            "alpine:3.20:arm64:default": {
                "aliases": "", "arch": "arm64", "os": "Alpine", "release": "3.20", "release_title": "3.20",
                "versions": {"20260101_0000": {"items": {"incus.tar.xz": {
                    "ftype": "incus.tar.xz", "path": "alpine/20260101_0000/incus.tar.xz", "size": 0}}}}},
        }}


@pytest.fixture(scope="module")
def example_catalog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The catalog `publish` writes for examples/local (its bytes are pinned in test_plan)."""
    target = tmp_path_factory.mktemp("example")
    out = subprocess.run([sys.executable, "-m", "ssb_s3", "-q", "-c", str(ROOT / "examples/local/tree.yml"),
                          "-t", str(target), "publish"], capture_output=True, text=True, check=False, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    document: dict[str, Any] = json.loads((target / "streams/v1/images.json").read_bytes())
    return document


def test_the_example_catalog_round_trips_to_the_same_bytes(example_catalog: dict[str, Any]) -> None:
    assert not schema_problems(example_catalog, "products", "images.json")
    typed = Catalog.from_json(example_catalog)
    assert typed.to_json() == example_catalog
    assert _dumps(typed.to_json()) == _dumps(example_catalog)
    assert len(list(walk(typed))) == len(list(walk(example_catalog))) > 0


def test_every_optional_field_delta_and_unknown_field_is_kept() -> None:
    document = full_catalog()
    assert not schema_problems(document, "products", "catalog.json")
    before = copy.deepcopy(document)
    typed = Catalog.from_json(document)
    assert typed.to_json() == before and _dumps(typed.to_json()) == _dumps(before)
    assert document == before  # parsing does not touch the mapping it reads

    product = typed.products["debian:12:amd64:default"]
    assert (product.supported, product.support_eol, product.variant) == (True, "2028-06-30", "default")
    assert dict(product.requirements or {}) == {"secureboot": "false"}
    assert product.extra == {"x-product-note": ["kept", 1, None]}
    assert typed.extra == {"x-mirror": {"from": "elsewhere"}}
    version = product.versions["20260102_0000"]
    assert (version.label, version.pubname, version.extra) == ("release", "debian-12-amd64-20260102",
                                                               {"x-version": 7})
    delta = version.items["20260101_0000.squashfs.vcdiff"]
    assert (delta.ftype, delta.delta_base, delta.size) == ("squashfs.vcdiff", "20260101_0000", 10)
    meta = version.items["lxd.tar.xz"]
    assert set(meta.combined) == {"combined_sha256", "combined_squashfs_sha256", "combined_rootxz_sha256",
                                  "combined_disk-kvm-img_sha256"}
    assert meta.extra == {"x-item": {"k": "v"}}
    bare = typed.products["alpine:3.20:arm64:default"].versions["20260101_0000"].items["incus.tar.xz"]
    assert (bare.sha256, bare.md5, bare.delta_base, dict(bare.combined), dict(bare.extra)) == (None, None, None, {}, {})
    assert bare.to_json() == {"ftype": "incus.tar.xz", "path": "alpine/20260101_0000/incus.tar.xz", "size": 0}


def test_the_values_are_frozen_and_slotted() -> None:
    typed = Catalog.from_json(full_catalog())
    product = typed.products["debian:12:amd64:default"]
    item = product.versions["20260101_0000"].items["lxd.tar.xz"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.size = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        product.versions["x"] = product.versions["20260101_0000"]  # type: ignore[index]
    with pytest.raises(TypeError):
        item.combined["combined_sha256"] = "0"  # type: ignore[index]
    for value in (typed, product, product.versions["20260101_0000"], item):
        assert not hasattr(value, "__dict__")  # slots: no per-object dict among a few hundred thousand items


@pytest.mark.parametrize("field, value", [("size", "600"), ("size", True), ("path", 5), ("sha256", 1)])
def test_a_catalog_that_fails_the_schema_does_not_parse(field: str, value: Any) -> None:
    document = full_catalog()
    document["products"]["alpine:3.20:arm64:default"]["versions"]["20260101_0000"]["items"]["incus.tar.xz"][
        field] = value
    assert schema_problems(document, "products", "catalog.json")  # the caller's check says why
    with pytest.raises(TypeError, match=field):
        Catalog.from_json(document)
    del document["products"]["alpine:3.20:arm64:default"]["versions"]
    with pytest.raises(KeyError):
        Product.from_json(document["products"]["alpine:3.20:arm64:default"])


def test_one_walker_for_the_typed_model_and_the_raw_mapping() -> None:
    document = full_catalog()
    typed = Catalog.from_json(document)
    raw_places = [(p, v, i) for p, _, v, _, i, _ in walk(document, ordered=True)]
    typed_places = [(p, v, i) for p, _, v, _, i, _ in walk(typed, ordered=True)]
    assert raw_places == typed_places == sorted(raw_places)
    assert raw_places[0] == ("alpine:3.20:arm64:default", "20260101_0000", "incus.tar.xz")
    assert len(raw_places) == 6
    for pname, product, vname, version, iname, item in walk(typed):
        assert isinstance(product, Product) and isinstance(version, Version) and isinstance(item, Item)
        assert item.to_json() == document["products"][pname]["versions"][vname]["items"][iname]
    assert [(p, v) for p, _, v, _ in walk_versions(document)] == [(p, v) for p, _, v, _ in walk_versions(typed)]
    assert [i["path"] for i in items_of(document)] == [i.path for i in items_of(typed)]


def test_a_raw_walk_skips_what_is_not_a_mapping() -> None:
    # an older catalog read back for the purge is not trusted: its shape is the schema check's to report
    broken = {"products": {"a": [], "b": {"versions": []}, "c": {"versions": {"v": "x", "w": {"items": {
        "i": 1, "j": {"path": "c/w/j"}}}}}, "d": {}}}
    assert [(p, v, i) for p, _, v, _, i, _ in walk(broken)] == [("c", "w", "j")]
    assert [(p, v) for p, _, v, _ in walk_versions(broken)] == [("c", "w")]
    assert list(items_of(broken)) == [1, {"path": "c/w/j"}]  # the fast path: the caller checked the items
    assert list(walk({})) == [] and list(walk({"products": None})) == []


def test_the_publish_path_walks_the_raw_catalog() -> None:
    # issue 24: an incremental publish at 10,000 products must not pay a typed parse of the served
    # catalog; the plan, the views and the tree read it as raw mappings, walked with `walk`/`items_of`
    package = ROOT / "ssb_s3"
    hot = ["core/plan.py", "core/catalog.py", "core/views.py", "core/page.py", "core/retention.py",
           "core/lxcindex.py", "storage/tree.py", "commands/publish.py"]
    assert [path for path in hot if "from_json" in (package / path).read_text()] == []


def test_a_raw_item_through_the_adapter_gives_what_the_typed_item_gives(example_catalog: dict[str, Any]) -> None:
    # the item-level readers take an Item (list, compat, verify) or a raw item through raw_items
    # (the publish path, which never parses): one implementation, the same images and sizes
    typed = Catalog.from_json(example_catalog)
    raw_versions = {(p, v): version for p, _, v, version in walk_versions(example_catalog)}
    seen = 0
    for pname, _, vname, version in walk_versions(typed):
        raw = raw_items(raw_versions[pname, vname]["items"])
        for client in clients.IMAGE_CLIENTS:
            assert clients.images(client, raw) == clients.images(client, version.items)
            seen += len(clients.images(client, raw))
        assert version_images(raw) == version_images(version.items)
        assert [item_size(i) for i in raw.values()] == [item_size(i) for i in version.items.values()]
    assert seen > 0
    with pytest.raises(TypeError):
        Version.from_json({"items": {"a": "not an item"}})  # an unchecked catalog: TypeError, as documented
