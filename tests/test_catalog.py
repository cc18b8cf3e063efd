"""The catalog and index: what the clients parse, and the contract check that refuses the rest."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from helpers import tree_config, tree_product

from ssb_s3.core.catalog import build_catalog, build_index, contract_problems, index_catalog_path, to_bytes
from ssb_s3.errors import ProblemsFound


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def tree_with(**product: Any) -> Any:
    return tree_config(tree_product("p:1:amd64:default", release="1", os="P", directory="p", **product))


def manifest(version: str = "20260101_10:00", *, tag: str = "a") -> dict[str, Any]:
    return {
        "name": "p:1:amd64:default",
        "versions": {
            version: {
                "items": {
                    "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": f"p/{version}/lxd.tar.xz", "size": 3,
                                   "sha256": h(f"meta{tag}"), "combined_squashfs_sha256": h(f"fp{tag}")},
                    "root.squashfs": {"ftype": "squashfs", "path": f"p/{version}/rootfs.squashfs",
                                      "size": 9, "sha256": h(f"root{tag}")},
                }
            }
        },
    }


def test_catalog_fields_and_types_for_both_clients() -> None:
    tree = tree_with(aliases=["p/1", "p"], variant="cloud", support_eol="2030-01-31",
                     requirements={"secureboot": "false"}, version="1.0", release_title="P One")
    catalog = build_catalog(tree, {"p:1:amd64:default": manifest()})
    product = catalog["products"]["p:1:amd64:default"]
    assert product["aliases"] == "p/1,p"
    assert product["support_eol"] == "2030-01-31"
    assert product["requirements"] == product["lxd_requirements"] == {"secureboot": "false"}
    assert product["variant"] == "cloud" and product["release_title"] == "P One"
    items = product["versions"]["20260101_10:00"]["items"]
    assert items["incus.tar.xz"] == {**items["lxd.tar.xz"], "ftype": "incus.tar.xz"}
    assert catalog["updated"] == "Thu, 01 Jan 2026 10:00:00 +0000"
    assert catalog["content_id"] == "images" and catalog["format"] == "products:1.0"
    assert contract_problems(catalog) == []


def test_same_inputs_give_identical_bytes_and_key() -> None:
    tree = tree_with(aliases=["p"])
    a = to_bytes(build_catalog(tree, {"p:1:amd64:default": manifest()}))
    b = to_bytes(build_catalog(tree, {"p:1:amd64:default": json.loads(json.dumps(manifest()))}))
    assert a == b and tree.layout.catalog_key(a) == tree.layout.catalog_key(b)
    assert tree.layout.catalog_key(a).startswith("streams/v1/images-")


def test_seed_expiry_seconds_become_a_date_and_hidden_products_are_left_out() -> None:
    m = {**manifest(), "expiry": "1893456000"}
    catalog = build_catalog(tree_with(), {"p:1:amd64:default": m})
    assert catalog["products"]["p:1:amd64:default"]["support_eol"] == "2030-01-01"
    assert build_catalog(tree_with(hidden=True), {"p:1:amd64:default": m})["products"] == {}


def test_index_names_catalog_and_products() -> None:
    tree = tree_with()
    catalog = build_catalog(tree, {"p:1:amd64:default": manifest()})
    index = build_index(tree, catalog, "streams/v1/images-x.json")
    assert index["format"] == "index:1.0"
    assert index["index"]["images"] == {
        "datatype": "image-downloads", "format": "products:1.0", "path": "streams/v1/images-x.json",
        "products": ["p:1:amd64:default"], "updated": catalog["updated"],
    }


def two_products(**second: Any) -> dict[str, Any]:
    tree = tree_config(tree_product("a", release="1", os="A", directory="a", aliases=["x"]),
                       tree_product("b", arch="x86_64", release="1", os="B", directory="b", **second))
    mb = manifest(tag="b")
    mb["name"] = "b"
    return build_catalog(tree, {"a": {**manifest(), "name": "a"}, "b": mb})


def test_alias_collision_across_arch_spellings() -> None:
    with pytest.raises(ProblemsFound) as refused:  # tree.yml refuses it first ...
        two_products(aliases=["x"])
    assert ("products[1].aliases: 'x' for arch x86_64 is already claimed by a (products[0])"
            in str(refused.value.problems[0]))
    catalog = two_products(aliases=["y"])
    assert contract_problems(catalog) == []
    catalog["products"]["b"]["aliases"] = "x"  # ... and the catalog check, for manifests from elsewhere
    problems = contract_problems(catalog)
    assert any("alias 'x' for arch x86_64 is already claimed by a" in p for p in problems), problems


def test_same_alias_other_arch_is_fine() -> None:
    tree = tree_config(tree_product("a", release="1", os="A", directory="a", aliases=["x"]),
                       tree_product("b", arch="arm64", release="1", os="B", directory="b", aliases=["x"]))
    mb = manifest(tag="b")
    catalog = build_catalog(tree, {"a": manifest(), "b": mb})
    assert contract_problems(catalog) == []


def test_duplicate_fingerprint_across_products() -> None:
    tree = tree_config(tree_product("a", release="1", os="A", directory="a"),
                       tree_product("b", release="1", os="B", directory="b"))
    catalog = build_catalog(tree, {"a": manifest(), "b": manifest()})
    problems = contract_problems(catalog)
    assert any("fingerprint" in p and "More than one match" in p and "LXD" in p for p in problems)
    assert any("Incus" in p for p in problems)


def broken(mutate: Any) -> list[str]:
    catalog = build_catalog(tree_with(aliases=["p"]), {"p:1:amd64:default": manifest()})
    catalog = copy.deepcopy(catalog)
    mutate(catalog["products"]["p:1:amd64:default"])
    return contract_problems(catalog)


def items(product: dict[str, Any]) -> dict[str, Any]:
    return product["versions"]["20260101_10:00"]["items"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.update(arch="amd46"), "arch 'amd46' is unknown to LXD"),
        (lambda p: p.update(aliases="a, b"), "blank or space in alias ' b'"),
        (lambda p: p.update(aliases="a,,b"), "blank or space in alias ''"),
        (lambda p: p["versions"].update(latest=p["versions"]["20260101_10:00"]), "version name does not start"),
        (lambda p: items(p)["lxd.tar.xz"].pop("combined_squashfs_sha256"), "combined_squashfs_sha256 missing"),
        (lambda p: items(p)["root.squashfs"].update(path="/abs/rootfs"), "is absolute"),
        (lambda p: items(p)["root.squashfs"].update(path="https://cdn/rootfs"), "is absolute"),
        (lambda p: items(p)["root.squashfs"].update(path="p/../../etc/passwd"), "plain relative path"),
        (lambda p: items(p)["root.squashfs"].update(size="9"), "size: expected integer"),
        (lambda p: items(p)["root.squashfs"].update(size=2**64), "size"),
        (lambda p: p.update(aliases=["p"]), "aliases: expected string"),
        (lambda p: p.update(requirements={"secureboot": False}), "expected string"),
        (lambda p: p.update(support_eol="1893456000"), "support_eol"),
        (lambda p: items(p)["root.squashfs"].pop("sha256"), "sha256 missing"),
    ],
)
def test_contract_refuses_what_clients_drop_or_choke_on(mutate: Any, expected: str) -> None:
    problems = broken(mutate)
    assert any(expected in p for p in problems), problems


def test_empty_catalog_is_refused() -> None:
    catalog = build_catalog(tree_with(), {})
    assert "nothing for clients to list" in contract_problems(catalog)[0]


@pytest.mark.parametrize(("index", "expected"), [
    ({"index": {"images": {"path": "streams/v1/images-0123.json"}}}, ("streams/v1/images-0123.json", None)),
    ({"index": {"images": {"path": "../../etc/passwd"}}}, ("../../etc/passwd", "must be a plain relative path")),
    ({"index": {"images": {"path": "https://elsewhere/x.json"}}}, ("https://elsewhere/x.json", "is absolute")),
    ({"index": {"images": {"path": 7}}}, ("", "path is missing")),
    ({"index": {"other": {}}}, ("", "not a simplestreams index")),
    ([], ("", "not a simplestreams index")),
])
def test_the_catalog_path_of_index_json_is_read_in_one_place(index: Any, expected: tuple[str, str | None]) -> None:
    """storage.tree (publish) and verify read index.json's catalog path through index_catalog_path."""
    path, why = index_catalog_path(index)
    assert path == expected[0]
    assert (why is None) if expected[1] is None else (why is not None and expected[1] in why), why
