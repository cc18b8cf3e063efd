"""Issue 10, performance of an incremental publish (`only`): the plan looks at the changed products,
not at every product of the served catalog, and decides exactly what the full walk decided.

The figures are bench/run.py's (scenario_incremental); these tests hold the plan to doing less work
for the products that did not change, and to the same problems and purge as before."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from test_plan import a_tree, read, served

from ssb_s3.config import parse_config
from ssb_s3.core import catalog as catalog_module
from ssb_s3.core.plan import PlanOptions, diff, plan_publish
from ssb_s3.core.retention import History, plan_purge

V1, V2 = "20260101_0000", "20260102_0000"


def three_products() -> Any:
    """Three products, without the page (it renders every product: its cost is measured in test_page.py)."""
    return parse_config({"page": False, "products": [
        {"name": name, "arch": "amd64", "release": "1", "os": name.upper(), "directory": name, "aliases": [name]}
        for name in ("a", "b", "c")]}, "tree.yml")  # fmt: skip


def test_incremental_contract_check_walks_only_the_changed_products(monkeypatch: pytest.MonkeyPatch) -> None:
    tree = three_products()
    before = served(tree, {n: read(n, [V1]) for n in ("a", "b", "c")})
    snap = replace(before, products={"b": read("b", [V1, V2])})
    walked: list[str] = []
    real = catalog_module._client_images  # what the contract check asks of each version's items

    def counting(items: Any, client: str) -> list[tuple[str, str]]:
        walked.extend(str(item.path).split("/")[0] for item in items.values())
        return real(items, client)

    monkeypatch.setattr(catalog_module, "_client_images", counting)
    plan = plan_publish(tree, snap, PlanOptions(), only={"b"})
    assert not plan.problems
    assert set(walked) == {"b"}  # a and c did not change and share no fingerprint with b: not walked


@pytest.mark.parametrize("changed", ["a", "c"])  # sorted before and after the unchanged product b
def test_incremental_still_refuses_a_fingerprint_of_an_unchanged_product(changed: str) -> None:
    tree = three_products()
    before = served(tree, {n: read(n, [V1]) for n in ("a", "b", "c")})
    stolen = read(changed, [V1, V2])
    b_item = before.served["products"]["b"]["versions"][V1]["items"]["lxd_combined.tar.gz"]
    stolen.manifest["versions"][V2]["items"]["lxd_combined.tar.gz"]["sha256"] = b_item["sha256"]
    plan = plan_publish(tree, replace(before, products={changed: stolen}), PlanOptions(), only={changed})
    assert plan.refused and plan.report.failed_products == [changed]
    fingerprint = b_item["sha256"][:12]
    keys = (("LXD", "lxd_combined.tar.gz"), ("Incus", "incus_combined.tar.gz"))  # the catalog mirrors the item
    if changed == "a":  # b comes later: the changed product is blamed when b is met
        expected = [f"mem://tree/a/ssb.json: product a: fingerprint {fingerprint} also used by b {V1} "
                    f"{key} ({client} would refuse it: 'More than one match')" for client, key in keys]
    else:  # b came first: met when c is checked
        expected = [f"mem://tree/c/ssb.json: product c version {V2}: fingerprint {fingerprint} also used by b {V1} "
                    f"{key} ({client} would refuse it: 'More than one match')" for client, key in keys]
    assert [str(p) for p in plan.problems] == expected


def test_incremental_purge_plans_only_the_changed_products_versions() -> None:
    # b's folder lies inside a's: an incremental publish of a lists it, but b was not read (nothing
    # says which of its versions are kept) and must not show up in a's purge plan.
    tree = parse_config({"products": [
        {"name": "a", "arch": "amd64", "release": "1", "os": "A", "directory": "a", "days": 1},
        {"name": "b", "arch": "amd64", "release": "1", "os": "B", "directory": "a/b"}]}, "tree.yml")  # fmt: skip

    def entry(folder: str, versions: list[str]) -> dict[str, Any]:
        return {"versions": {v: {"items": {"x": {"path": f"{folder}/{v}/x", "size": 1}}} for v in versions}}

    current = {"products": {"a": entry("a", [V2]), "b": entry("a/b", [V1])}}
    older = {"products": {"a": entry("a", [V1, V2]), "b": entry("a/b", [V1])}}
    history = History([{"catalog": "old", "since": 0.0, "until": 50.0}, {"catalog": "new", "since": 50.0,
                                                                         "until": None}])
    listing = {"a/20260101_0000/x": 1, "a/20260102_0000/x": 1, "a/b/20260101_0000/x": 1}
    plan = plan_purge(tree, expired={"a": [V1]}, kept={"a": [V2]}, current_key="new", history=history,
                      catalogs={"new": current, "old": older}, listing=listing, now=100.0, grace=3600,
                      only={"a"})
    assert [(i.product, i.version) for i in plan.delete_later] == [("a", V1)]  # the old catalog names it
    assert plan.delete_now == [] and plan.never_published == []


class NotListed(dict[str, Any]):
    """The versions of a product entry kept as it was: listing them (set(), for, keys) is refused."""

    def _refuse(self, *_: Any, **__: Any) -> Iterator[Any]:
        raise AssertionError("the versions of an unchanged product were listed")

    __iter__ = keys = _refuse  # type: ignore[assignment]


def test_diff_skips_entries_kept_as_they_were() -> None:
    path = "a/20260102_0000/x"
    kept = {"versions": NotListed({V1: {"items": {"x": {"path": "b/20260101_0000/x", "size": 5}}}})}
    old = {"products": {"a": {"versions": {V1: {"items": {}}}}, "b": kept}}
    new = {"products": {"a": {"versions": {V1: {"items": {}}, V2: {"items": {"x": {"path": path, "size": 7}}}}},
                        "b": kept}}
    changes, added = diff(old, new)
    assert changes == {"a": {"added": [V2], "removed": [], "versions": 2}}
    assert added == 7


def test_incremental_and_full_plans_agree_on_catalog_and_purge() -> None:
    tree = a_tree(days=1)
    before = served(a_tree(days=2), {"a": read("a", [V1, V2]), "b": read("b", [V1])})
    newer = "20260103_0000"
    a_now = read("a", [V1, V2, newer])
    a_listed = {k: v for k, v in before.tree_listing.items() if k.startswith("a/")}  # what `only` lists
    incremental = plan_publish(tree, replace(before, products={"a": a_now}, tree_listing=a_listed),
                               PlanOptions(grace=0), only={"a"})
    full = plan_publish(tree, replace(before, products={"a": a_now, "b": before.products["b"]}),
                        PlanOptions(grace=0))
    assert incremental.catalog_bytes == full.catalog_bytes
    assert incremental.report.changes == full.report.changes
    assert incremental.report.bytes_added == full.report.bytes_added
    assert incremental.purge.as_dict() == full.purge.as_dict()
    assert hashlib.sha256(incremental.catalog_bytes).hexdigest()[:20] in incremental.catalog_key
