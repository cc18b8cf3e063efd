"""Mirror selection scales with the catalog (issue 20, point 9): the work done per upstream product
does not grow with the number of products (the folder-overlap rule used to compare every pair).
Asserted by counting calls, not by timing: twice the products, about twice the calls."""

from __future__ import annotations

import sys
from typing import Any

from ssb_s3.core.mirror import select


def _catalog(count: int) -> dict[str, Any]:
    """`count` products in images.linuxcontainers.org's layout (one LXD/Incus version each)."""
    products = {}
    for i in range(count):
        folder = f"images/p{i}/1/amd64/default"
        serial = "20260101_0000"
        products[f"p{i}:1:amd64:default"] = {"arch": "amd64", "release": "1", "os": "X", "aliases": f"p{i}",
                                             "versions": {serial: {"items": {
            "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": f"{folder}/{serial}/lxd.tar.xz", "size": 1,
                           "sha256": "a" * 64, "combined_squashfs_sha256": "b" * 64},
            "root.squashfs": {"ftype": "squashfs", "path": f"{folder}/{serial}/root.squashfs", "size": 2,
                              "sha256": "c" * 64}}}}}  # fmt: skip
    return {"products": products}


def _calls(count: int) -> int:
    """Python and builtin calls made by one selection of `count` products (with as many folders of
    the tree's own and of products mirrored before)."""
    catalog = _catalog(count)
    taken = [f"own/{i}" for i in range(count)]
    mirrored = {f"m{i}:1:amd64:default": f"mirrored/m{i}" for i in range(count)}
    calls = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(profile)
    try:
        selection = select(catalog, [], taken_dirs=taken, mirrored_dirs=mirrored)
    finally:
        sys.setprofile(None)
    assert len(selection.products) == count and not selection.drops
    return calls


def test_selection_is_near_linear_in_the_number_of_upstream_products() -> None:
    small, large = _calls(300), _calls(600)
    assert large / small < 2.3, (small, large)  # quadratic: about 4 (it was 3.4 at these sizes; now 2.0)


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
