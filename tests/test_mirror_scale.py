"""Mirror selection scales with the catalog (issue 20, point 9): the work done per upstream product
does not grow with the number of products (the folder-overlap rule used to compare every pair).
Asserted by counting calls, not by timing: twice the products, about twice the calls."""

from __future__ import annotations

import sys
from typing import Any

from ssb_s3.core.mirror import select


def _catalog(count: int, lxc_bad: bool = False) -> dict[str, Any]:
    """`count` products in images.linuxcontainers.org's layout (one LXD/Incus version each);
    `lxc_bad`: every other one with an os the classic LXC index cannot hold (dropped late)."""
    products = {}
    for i in range(count):
        folder = f"images/p{i}/1/amd64/default"
        serial = "20260101_0000"
        products[f"p{i}:1:amd64:default"] = {"arch": "amd64", "release": "1", "os": "X;Y" if lxc_bad and i % 2 else "X",
                                             "aliases": f"p{i}", "versions": {serial: {"items": {
            "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": f"{folder}/{serial}/lxd.tar.xz", "size": 1,
                           "sha256": "a" * 64, "combined_squashfs_sha256": "b" * 64},
            "root.squashfs": {"ftype": "squashfs", "path": f"{folder}/{serial}/root.squashfs", "size": 2,
                              "sha256": "c" * 64}}}}}  # fmt: skip
        if lxc_bad and i % 2:  # a classic LXC image too: its index line could not hold the os
            items = products[f"p{i}:1:amd64:default"]["versions"][serial]["items"]
            items["lxd.tar.xz"]["combined_rootxz_sha256"] = "d" * 64
            for ftype, name in (("meta.tar.xz", "meta.tar.xz"), ("root.tar.xz", "rootfs.tar.xz")):
                items[ftype] = {"ftype": ftype, "path": f"{folder}/{serial}/{name}", "size": 3, "sha256": "e" * 64}
    return {"products": products}


def _steps(count: int, lxc_bad: bool = False) -> int:
    """Python calls, builtin calls and lines run (a loop's every turn) by one selection of `count`
    products (with as many folders of the tree's own and of products mirrored before)."""
    catalog = _catalog(count, lxc_bad)
    taken = [f"own/{i}" for i in range(count)]
    mirrored = {f"m{i}:1:amd64:default": f"mirrored/m{i}" for i in range(count)}
    steps = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal steps
        steps += event == "c_call"

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal steps
        steps += 1
        return trace

    sys.setprofile(profile)
    sys.settrace(trace)
    try:
        selection = select(catalog, [], taken_dirs=taken, mirrored_dirs=mirrored)
    finally:
        sys.settrace(None)
        sys.setprofile(None)
    assert len(selection.products) == (count + 1) // 2 if lxc_bad else count, selection.drops[:3]
    assert len(selection.drops) == (count // 2 if lxc_bad else 0), selection.drops[:3]
    return steps


def test_selection_is_near_linear_in_the_number_of_upstream_products() -> None:
    """The folder-overlap rule compared every pair; each product dropped late scanned every file."""
    for lxc_bad in (False, True):
        small, large = _steps(200, lxc_bad), _steps(400, lxc_bad)
        assert large / small < 2.3, (lxc_bad, small, large)  # quadratic: about 4


def test_folder_overlap_still_found_among_many() -> None:
    from ssb_s3.core.mirror import Folders

    folders = Folders([f"own/{i}" for i in range(1000)])
    folders.add("mirrored/a/b", "m")
    assert folders.overlap("own/5") == "own/5"
    assert folders.overlap("own/5/x") == "own/5"
    assert folders.overlap("own") == "own/0"
    assert folders.overlap("own2") is None and folders.overlap("own/5x") is None
    assert folders.overlap("mirrored/a", "m") is None and folders.overlap("mirrored/a/b", "m") is None
    assert folders.overlap("mirrored/a", "other") == "mirrored/a/b"
    assert folders.overlap("mirrored/a/b/c", "other") == "mirrored/a/b"
    folders.add("mirrored/a/c")
    assert folders.overlap("mirrored", "m") == "mirrored/a/c"


def test_products_dropped_late_never_scan_the_whole_selection() -> None:
    """Selection.discard (a product the LXC index cannot hold, or mirrored from another source) used to
    look at every file of the selection: n such products, n² steps."""
    from ssb_s3.core.mirror import FileCopy, Selection

    class Watched(dict[tuple[str, str], list[FileCopy]]):
        walked = 0

        def __iter__(self) -> Any:
            for key in super().__iter__():
                Watched.walked += 1
                yield key

    selection = Selection(files=Watched())
    for i in range(1000):
        selection.versions[f"p{i}"] = {"v": {}}
        selection.files[(f"p{i}", "v")] = [FileCopy(f"p{i}", "v", "a", f"p{i}/v/a", 1, "0" * 64)]
    for i in range(1000):
        selection.discard(f"p{i}", "dropped")
    assert not selection.files and not selection.versions and len(selection.drops) == 1000
    assert Watched.walked == 0


def test_what_a_catalog_repeats_is_judged_for_every_product() -> None:
    """Selection answers repeated values once (product fields, the clients' use of a version's items):
    each product still gets its own drops, and values equal but of another type are judged apart."""
    catalog = _catalog(4)
    products = catalog["products"]
    for name in ("p0:1:amd64:default", "p1:1:amd64:default"):
        products[name]["variant"] = "bad variant"  # left out, with a drop for each product
    products["p2:1:amd64:default"]["release"] = 1  # not a word (a number), unlike "1"
    items = products["p3:1:amd64:default"]["versions"]["20260101_0000"]["items"]
    del items["lxd.tar.xz"]["combined_squashfs_sha256"]  # the same ftypes as the others, no image for a client
    selection = select(catalog, [])
    reasons = {(d.product, d.item): d.reason for d in selection.drops}
    assert sorted(selection.products) == ["p0:1:amd64:default", "p1:1:amd64:default"], selection.drops
    assert all(selection.products[n].variant == "" for n in selection.products)
    assert "variant 'bad variant' left out" in reasons[("p0:1:amd64:default", "")]
    assert "variant 'bad variant' left out" in reasons[("p1:1:amd64:default", "")]
    assert "release missing or not a word (got '1')" in reasons[("p2:1:amd64:default", "")]
    assert any(d.product == "p3:1:amd64:default" for d in selection.drops), selection.drops


# Values ssb.schema.json refuses for one item field, each (field, value): the selection must drop each
# such item itself, since it no longer runs the schema over what it keeps (that cost a tenth of it).
_BAD_ITEM_FIELDS = [
    ("ftype", None), ("ftype", ""), ("ftype", 7), ("path", None), ("path", ""), ("path", ["a"]),
    ("size", -1), ("size", 1 << 53), ("size", 1.5), ("size", True), ("size", "1"), ("sha256", "A" * 64),
    ("sha256", "a" * 63), ("sha256", 1), ("md5", "a" * 31), ("md5", "G" * 32), ("md5", 5),
    *[(field, bad) for field in ("combined_sha256", "combined_squashfs_sha256", "combined_rootxz_sha256",
                                 "combined_disk-kvm-img_sha256") for bad in ("a" * 65, "Z" * 64, None)],
    ("delta_base", 3), ("delta_base", None),
]


def test_every_item_the_selection_keeps_is_one_the_ssb_schema_accepts() -> None:
    """What mirror writes into ssb.json must be readable by the next run: each item field given a
    value the schema refuses is dropped with its reason, and the versions kept pass the schema."""
    from ssb_s3.schemas import schema_problems

    catalog = _catalog(len(_BAD_ITEM_FIELDS) + 1)
    names = sorted(catalog["products"], key=lambda n: int(n.split(":")[0][1:]))
    for name, (field, bad) in zip(names, _BAD_ITEM_FIELDS, strict=False):
        version = next(iter(catalog["products"][name]["versions"].values()))
        version["items"]["root.squashfs"][field] = bad
    selection = select(catalog, [])
    assert list(selection.products) == [names[-1]], [d for d in selection.drops if d.product == names[-1]]
    dropped = {d.product: d.reason for d in selection.drops if d.item == "root.squashfs"}
    for name, (field, bad) in zip(names, _BAD_ITEM_FIELDS, strict=False):
        assert name in dropped, (field, bad)
        assert field.split("_")[0] in dropped[name] or field in dropped[name], (field, bad, dropped[name])
    for name, versions in selection.versions.items():
        document = {"name": name, "versions": versions}
        assert schema_problems(document, "ssb", "ssb.schema.json") == []


def test_a_catalog_whose_bytes_are_plain_is_judged_clean_and_any_escape_is_checked_string_by_string() -> None:
    """json_strings_clean speaks for every string only when no escape or non-ASCII byte could hide a
    control character; then an item name holding ESC (from an escape) is still dropped."""
    import json

    from ssb_s3.vocabulary.text import document_problem, json_strings_clean

    plain = json.dumps(_catalog(3)).encode()
    assert json_strings_clean(plain) and document_problem(json.loads(plain)) is None
    for hostile in (b'{"a": "\\u001b]52;c;x\\u0007"}', b'{"a": "\\u202e"}', '{"a": "\u2028"}'.encode(),
                    b'{"a": "\x7f"}', b'{"a": "\\n"}', '{"a": "\u00e9"}'.encode(),
                    '{"a": "\u2028\u202e"}'.encode("utf-16-le"), '{"a": "\u2028"}'.encode("utf-32-be")):
        assert not json_strings_clean(hostile), hostile
    for wide in ('{"a": "\u2028\u202e"}'.encode("utf-16-le"), '{"a": "\u2028"}'.encode("utf-32-be")):
        # every byte ASCII, no escape, no DEL: json.loads reads it as UTF-16/32, holding U+2028 and U+202E
        assert wide.isascii() and b"\\" not in wide and document_problem(json.loads(wide)) is not None
    catalog = _catalog(1)
    items = next(iter(catalog["products"]["p0:1:amd64:default"]["versions"].values()))["items"]
    items["lxd\x1b.tar.xz"] = items.pop("lxd.tar.xz")
    data = json.dumps(catalog).encode()
    assert not json_strings_clean(data)
    selection = select(json.loads(data), [], text_clean=json_strings_clean(data))
    assert not selection.products
    assert any(d.item == "lxd\x1b.tar.xz" and d.reason.startswith("item name contains U+001B (ESC)")
               for d in selection.drops), selection.drops
