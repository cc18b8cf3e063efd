"""Retention, history and the purge plan: pure decisions, tested without any store."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from helpers import tree_config, tree_product

from ssb_s3.core.retention import History, plan_purge, select_versions

DAY = 86400
NOW = datetime(2026, 1, 10, tzinfo=timezone.utc).timestamp()


def test_days_keeps_the_newest_and_max_age_trims_further() -> None:
    names = ["20260101_0000", "20260105_00:00", "20260109_0000", "20260103_0000"]
    assert select_versions(names, 2, None, NOW) == (["20260105_00:00", "20260109_0000"],
                                                    ["20260101_0000", "20260103_0000"])
    kept, expired = select_versions(names, 10, 6 * DAY, NOW)
    assert kept == ["20260105_00:00", "20260109_0000"]
    assert expired == ["20260101_0000", "20260103_0000"]
    assert select_versions(names, 10, DAY // 2, NOW)[0] == []  # publish refuses that without --force


def test_history_closes_the_previous_catalog_and_protects_within_grace() -> None:
    history = History()
    history.record("c1", NOW - 100)
    history.record("c1", NOW - 90)  # unchanged: still one open entry
    assert [e["catalog"] for e in history.entries] == ["c1"]
    history.record("c2", NOW - 50)
    assert history.entries[0]["until"] == NOW - 50 and history.entries[1]["until"] is None
    assert history.protected("c2", NOW, grace=60) == {"c1", "c2"}
    assert history.protected("c2", NOW, grace=40) == {"c2"}


TREE = tree_config(tree_product("p", release="1", os="P", directory="p", days=1))


def catalog(*versions: str) -> dict[str, Any]:
    return {"products": {"p": {"versions": {
        v: {"items": {"root": {"path": f"p/{v}/rootfs.squashfs"}, "meta": {"path": f"p/{v}/lxd.tar.xz"}}}
        for v in versions
    }}}}


LISTING = {f"p/{v}/{f}": 10 for v in ("20260101_0000", "20260102_0000", "20260103_0000")
           for f in ("lxd.tar.xz", "rootfs.squashfs")} | {"other/unknown.bin": 5}


def plan(history: History, grace: int, include_unpublished: bool = False) -> Any:
    catalogs = {"streams/v1/images-00000000000000000001.json": catalog("20260101_0000", "20260102_0000"),
                "streams/v1/images-00000000000000000002.json": catalog("20260103_0000")}
    return plan_purge(TREE, expired={"p": ["20260101_0000", "20260102_0000"]}, kept={"p": ["20260103_0000"]},
                      current_key="streams/v1/images-00000000000000000002.json", history=history,
                      catalogs=catalogs, listing=LISTING, now=NOW, grace=grace,
                      include_unpublished=include_unpublished)


def two_catalog_history(replaced_at: float) -> History:
    history = History()
    history.record("streams/v1/images-00000000000000000001.json", replaced_at - DAY)
    history.record("streams/v1/images-00000000000000000002.json", replaced_at)
    return history


def test_expired_versions_wait_for_the_grace_then_go() -> None:
    waiting = plan(two_catalog_history(NOW - 3600), grace=6 * 3600)
    assert [i.version for i in waiting.delete_later] == ["20260101_0000", "20260102_0000"]
    assert waiting.delete_now == [] and waiting.old_catalogs == []
    assert "until 2026-01-10 05:00:00 UTC" in waiting.delete_later[0].reason
    due = plan(two_catalog_history(NOW - 7 * 3600), grace=6 * 3600)
    assert [(i.version, i.objects, i.size) for i in due.delete_now] == [
        ("20260101_0000", 2, 20), ("20260102_0000", 2, 20)]
    assert due.old_catalogs == ["streams/v1/images-00000000000000000001.json"]


def test_never_published_versions_are_kept_unless_asked() -> None:
    history = History()
    history.record("streams/v1/images-00000000000000000002.json", NOW - DAY)
    result = plan_purge(TREE, expired={"p": ["20260101_0000"]}, kept={"p": ["20260103_0000"]},
                        current_key="streams/v1/images-00000000000000000002.json", history=history,
                        catalogs={"streams/v1/images-00000000000000000002.json": catalog("20260103_0000")},
                        listing=LISTING, now=NOW, grace=0)
    assert [i.version for i in result.never_published] == ["20260101_0000"]
    assert result.delete_now == []


def test_only_version_folders_of_configured_products() -> None:
    everything = plan(two_catalog_history(NOW - 7 * 3600), grace=0)
    folders = {i.folder for i in everything.delete_now + everything.delete_later}
    assert folders == {"p/20260101_0000", "p/20260102_0000"}  # never other/unknown.bin, never the kept one


def test_a_mirrored_product_that_left_goes_after_the_grace_and_nothing_not_provably_ours() -> None:
    older, old, new = (f"streams/v1/images-0000000000000000000{n}.json" for n in (3, 1, 2))

    def entry(folder: str, version: str) -> dict[str, Any]:
        return {"versions": {version: {"items": {"root": {"path": f"{folder}/{version}/rootfs.squashfs"}}}}}

    catalogs = {older: {"products": {"m": entry("m", "20251231_0000")}},  # expired while m was mirrored
                old: {"products": {"m": entry("m", "20260101_0000"),  # mirrored, left
                                   "x": entry("x", "20260101_0000"),  # left, but never recorded as mirrored
                                   "d": entry("p", "20260104_0000"),  # recorded mirrored, in declared p's folder
                                   "k": entry("k", "20260101_0000")}},  # still in the current catalog
                new: {"products": {"p": catalog("20260103_0000")["products"]["p"], "k": entry("k", "20260101_0000")}}}
    listing = {f"{d}/{v}/rootfs.squashfs": 10 for d, v in (("m", "20251231_0000"), ("m", "20260101_0000"),
                                                           ("x", "20260101_0000"),
                                                           ("p", "20260104_0000"), ("k", "20260101_0000"))}

    def decide(replaced_at: float, recorded: bool = True) -> Any:
        history = History()
        history.record(older, replaced_at - 2 * DAY)
        history.record(old, replaced_at - DAY)
        history.record(new, replaced_at, departed=["m", "d", "k"] if recorded else ())
        return plan_purge(TREE, expired={}, kept={"p": ["20260103_0000"]}, current_key=new, history=history,
                          catalogs=catalogs, listing=listing, now=NOW, grace=6 * 3600)

    waiting = decide(NOW - 3600)
    assert [(i.product, i.folder) for i in waiting.delete_now] == [("m", "m/20251231_0000")]  # its grace is over
    assert [(i.product, i.folder) for i in waiting.delete_later] == [("m", "m/20260101_0000")]
    due = decide(NOW - 7 * 3600)
    assert [(i.product, i.folder, i.objects, i.size) for i in due.delete_now] == [
        ("m", "m/20251231_0000", 1, 10), ("m", "m/20260101_0000", 1, 10)]
    assert due.delete_later == [] and due.old_catalogs == [old, older]
    assert decide(NOW - 7 * 3600, recorded=False).delete_now == []  # never recorded as departed: not ours
