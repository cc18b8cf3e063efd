"""Retention, history and the purge plan: pure functions of what was read (no store, no clock).

Clients cache index.json and the catalog for an hour (plus the CDN's TTL) and keep using a stale
copy when the server errors, so a file must stay downloadable for a while after the last catalog
naming it was replaced. index.json records (under `ssb_s3`, ignored by clients) when each catalog
stopped being current; a file is deleted only when no catalog current within the grace period
names it. The plan deletes only version folders of configured products, those of mirrored products
that left the catalog (departed_mirrored: recorded as departed in the history, named by one of our
catalogs, in a folder of no declared product, named by no catalog within the grace),
and our own superseded content-addressed views (old catalogs), never unknown keys. The fixed-key
views that name files (the classic LXC index, core/lxcindex) name only files of the catalog they
were rendered with, so a stale cached copy names files this grace still keeps (as long as the
grace exceeds their cache max-age).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..config import TreeConfig
from ..vocabulary.document import items_of
from ..vocabulary.layout import in_folder, version_dir
from .catalog import _path_problem
from .versions import version_time

HISTORY_FIELD = "ssb_s3"  # in index.json


def select_versions(
    names: Iterable[str], days: int, max_age: int | None, now: float
) -> tuple[list[str], list[str]]:
    """(kept, expired): the newest `days` versions, minus those older than max_age seconds."""
    ordered = sorted(names)
    kept = ordered[-days:] if days > 0 else ordered
    if max_age is not None:
        kept = [v for v in kept if version_time(v).timestamp() >= now - max_age]
    return kept, [v for v in ordered if v not in kept]


@dataclass
class History:
    """Catalogs that were current, and until when (None: still current, or not yet known).

    It travels inside index.json (key `ssb_s3`, which clients ignore), so the moment a catalog
    stops being current is recorded by the very write that replaces it: no separate object, no
    window where the flip happened but its history was not written.
    """

    entries: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_index(cls, index: bytes) -> History:
        try:
            entries = json.loads(index)[HISTORY_FIELD]["catalogs"] if index else []
        except (ValueError, KeyError, TypeError):
            entries = []  # an index written by another tool: history starts now
        valid = [e for e in entries if isinstance(e, dict) and isinstance(e.get("catalog"), str)
                 and (e.get("until") is None or isinstance(e.get("until"), (int, float)))]
        return cls(valid)

    def record(self, current: str, now: float, departed: Iterable[str] = ()) -> None:
        """`current` is the catalog the index names now: close every other open entry. `departed`:
        the mirrored products the closed catalog held and `current` does not (they left their
        source), recorded in its entry (DEPARTED_KEY) so that a later purge still knows, once
        the grace is over, that their folders were ours (departed_mirrored)."""
        names = sorted(set(departed))
        for entry in self.entries:
            if entry["until"] is None and entry["catalog"] != current:
                entry["until"] = now
                if names:
                    entry[DEPARTED_KEY] = names
        if not any(e["catalog"] == current and e["until"] is None for e in self.entries):
            self.entries.append({"catalog": current, "since": now, "until": None})

    def departed(self) -> frozenset[str]:
        """The mirrored products the history records as having left the catalog (record)."""
        return frozenset(n for e in self.entries if isinstance(e.get(DEPARTED_KEY), list)
                         for n in e[DEPARTED_KEY] if isinstance(n, str))

    def protected(self, current: str, now: float, grace: int) -> set[str]:
        """Catalogs a client may still hold: the current one and any replaced within the grace."""
        keep = {current}
        for entry in self.entries:
            if entry["until"] is None or entry["until"] > now - grace:
                keep.add(entry["catalog"])
        return keep

    def forget(self, catalogs: Iterable[str]) -> None:
        gone = set(catalogs)
        self.entries = [e for e in self.entries if e["catalog"] not in gone]

    def as_field(self) -> dict[str, Any]:
        """The value stored under index.json's `ssb_s3` key."""
        return {"catalogs": self.entries}


MIRRORED_KEY = "mirrored"  # in index.json's `ssb_s3` field: the products `mirror` put in the tree
DEPARTED_KEY = "departed"  # in a history entry: the mirrored products that left when its catalog was replaced


VIEWS_KEY = "views"  # in index.json's `ssb_s3` field: the keys of the views written with its catalog


def _recorded_names(index: bytes, key: str) -> frozenset[str] | None:
    """The list of names index.json's `ssb_s3` field records under `key`; None when it records
    none (an index of another tool, or of a version that did not record it)."""
    try:
        names = json.loads(index)[HISTORY_FIELD][key] if index else None
    except (ValueError, KeyError, TypeError):
        return None
    return frozenset(n for n in names if isinstance(n, str)) if isinstance(names, list) else None


def served_mirrored(index: bytes) -> frozenset[str]:
    """The mirrored products the served index.json records (publish keeps their entries even
    though tree.yml does not declare them); empty for an index of another tool."""
    return _recorded_names(index, MIRRORED_KEY) or frozenset()


SIGNED_KEY = "signed"  # in index.json's `ssb_s3` field: true when the publish that wrote it signed the tree


def served_signed(index: bytes) -> bool:
    """Whether the publish that wrote the served index.json signed the tree (SIGNED_KEY)."""
    try:
        return json.loads(index)[HISTORY_FIELD][SIGNED_KEY] is True if index else False
    except (ValueError, KeyError, TypeError):
        return False


def served_views(index: bytes) -> frozenset[str] | None:
    """The views written with the served catalog (VIEWS_KEY); None when the index does not say."""
    return _recorded_names(index, VIEWS_KEY)


def catalog_paths(catalog: Mapping[str, Any]) -> set[str]:
    """Every file path a catalog names."""
    return {item["path"] for item in items_of(catalog)}


def shape_problem(catalog: Any) -> str | None:
    """What keeps `catalog` from being walked as products → versions → items → path (and the
    item fields looked up by value: ftype, delta_base), if anything. A served catalog with such a
    problem is ignored, so the next publish replaces it."""
    if not isinstance(catalog, dict) or not isinstance(catalog.get("products", {}), dict):
        return "not a catalog object with a 'products' object"
    for pname, product in catalog.get("products", {}).items():
        if not isinstance(product, dict) or not isinstance(product.get("versions", {}), dict):
            return f"product {pname} is not an object with a 'versions' object"
        for vname, version in product.get("versions", {}).items():
            if not isinstance(version, dict) or not isinstance(version.get("items", {}), dict):
                return f"product {pname} version {vname} is not an object with an 'items' object"
            for item in version.get("items", {}).values():
                if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                    return f"product {pname} version {vname} has an item that is not an object with a path"
                if any(not isinstance(item.get(key, ""), str) for key in ("ftype", "delta_base")):
                    return f"product {pname} version {vname} has an item whose ftype or delta_base is not a string"
    return None


@dataclass
class PurgeItem:
    """One version folder to delete (now) or to keep until its grace ends."""

    product: str
    version: str
    folder: str
    reason: str
    objects: int = 0
    size: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class PurgePlan:
    """delete_now: gone in this run; delete_later: waiting for the grace; never_published:
    expired before any catalog of ours named them (a migration, a backfill), kept unless asked."""

    delete_now: list[PurgeItem] = field(default_factory=list)
    delete_later: list[PurgeItem] = field(default_factory=list)
    never_published: list[PurgeItem] = field(default_factory=list)
    old_catalogs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "delete_now": [i.as_dict() for i in self.delete_now],
            "delete_later": [i.as_dict() for i in self.delete_later],
            "never_published": [i.as_dict() for i in self.never_published],
            "old_catalogs": list(self.old_catalogs),
        }


def plan_purge(
    tree: TreeConfig,
    *,
    expired: Mapping[str, list[str]],
    kept: Mapping[str, Iterable[str]],
    current_key: str,
    history: History,
    catalogs: Mapping[str, Mapping[str, Any]],
    listing: Mapping[str, int],
    now: float,
    grace: int,
    include_unpublished: bool = False,
    only: set[str] | None = None,
    withdrawn: Mapping[str, Iterable[str]] | None = None,
) -> PurgePlan:
    """What to delete now and what waits: pure, from the state read before.

    Only listed files can be deleted, so only they are looked up in the catalogs. Versions taken
    out by `withdraw` (`withdrawn`) are candidates like expired ones. `only` (an
    incremental publish, whose listing holds its own products' folders): only their versions are
    candidates.
    """
    plan = PurgePlan()
    protected_keys = history.protected(current_key, now, grace)
    protected: set[str] = set()
    release_at: dict[str, float] = {}  # when each protected path stops being protected

    def protect() -> None:
        """The listed paths a protected catalog names, and the latest `until` of a catalog naming each."""
        named = {key: catalog_paths(catalogs.get(key, {})) & listing.keys() for key in protected_keys}
        protected.update(*named.values())
        for entry in history.entries:
            if entry["catalog"] in protected_keys and entry["until"] is not None:
                for path in named[entry["catalog"]]:
                    release_at[path] = max(release_at.get(path, 0.0), entry["until"] + grace)

    looked_up = False

    def classify(item: PurgeItem, paths: set[str]) -> None:
        """Delete now, or wait while a catalog within the grace names one of its files."""
        nonlocal looked_up
        if not looked_up:  # the first candidate with files: only now are the catalogs walked
            protect()
            looked_up = True
        if paths & protected:
            until = max((release_at.get(p, 0.0) for p in paths & protected), default=0.0)
            when = "while the current catalog names it" if until == 0.0 else (
                "until " + datetime.fromtimestamp(until, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
            item.reason = f"{item.reason}; kept {when} (grace {grace}s)"
            plan.delete_later.append(item)
        else:
            plan.delete_now.append(item)

    for product in (p for p in tree.products if only is None or p.name in only):
        candidates = {v: "withdrawn" for v in (withdrawn or {}).get(product.name, ())}
        candidates.update({v: "expired by retention" for v in expired.get(product.name, [])})
        for key, catalog in sorted(catalogs.items()):
            entry = catalog.get("products", {}).get(product.name, {})
            for version in entry.get("versions", {}):
                candidates.setdefault(version, f"only named by the old catalog {key}")
        for version in sorted(set(candidates) - set(kept.get(product.name, ()))):
            folder = version_dir(tree.product_dir(product), version)
            paths = {k for k in listing if k.startswith(folder + "/")}
            if not paths:
                continue
            item = PurgeItem(product.name, version, folder, candidates[version], len(paths),
                             sum(listing[k] for k in paths))
            published = any(version in c.get("products", {}).get(product.name, {}).get("versions", {})
                            for c in catalogs.values())
            if not published and not include_unpublished:
                item.reason += "; never published by ssb-s3, so kept (purge --include-unpublished deletes it)"
                plan.never_published.append(item)
            else:
                classify(item, paths)
    if only is None:  # (an incremental publish lists its own products' folders only)
        for (name, version), folder in sorted(departed_mirrored(tree, history, catalogs, current_key).items()):
            paths = {k for k in listing if k.startswith(folder + "/")}
            if paths:
                classify(PurgeItem(name, version, folder, "its mirrored product left the catalog", len(paths),
                                   sum(listing[k] for k in paths)), paths)
    plan.old_catalogs = superseded_views(tree, history, protected_keys, listing)
    return plan


def departed_mirrored(tree: TreeConfig, history: History, catalogs: Mapping[str, Mapping[str, Any]],
                      current_key: str) -> dict[tuple[str, str], str]:
    """(product, version) -> version folder of the mirrored products that left the catalog: a
    product the history records as departed (History.departed: index.json's `mirrored` named it
    until it left), not in the current catalog, declared by no product of this run; a version of
    it that one of the history's catalogs names, every item in its one folder <dir>/<version>
    under the prefix, that folder in no declared product's folder (nor holding one). Anything
    else is not provably ours and is never a candidate."""
    names = history.departed() - {p.name for p in tree.products}
    names -= set(catalogs.get(current_key, {}).get("products", {}))
    dirs = [tree.product_dir(p) + "/" for p in tree.products]
    found: dict[tuple[str, str], str] = {}
    for key in sorted(catalogs) if names else ():
        products = catalogs[key].get("products", {})
        for name in sorted(names & set(products)):
            for vname, version in products[name].get("versions", {}).items():
                folders = {str(i["path"]).rpartition("/")[0] for i in version.get("items", {}).values()}
                folder = folders.pop() if len(folders) == 1 else ""
                if (folder.rpartition("/")[2] == vname and folder.startswith(tree.under_prefix(""))
                        and folder.count("/") >= 1 and not _path_problem(folder)
                        and not any((folder + "/").startswith(d) or d.startswith(folder + "/") for d in dirs)):
                    found.setdefault((name, vname), folder)
    return found


def superseded_views(tree: TreeConfig, history: History, protected: set[str], listing: Iterable[str]) -> list[str]:
    """Old catalogs and the content-addressed views keyed after them, none that a client may still
    read: those of the history's unprotected catalogs, and orphans (written by a publish that
    stopped before its flip, or whose history entry was dropped)."""
    known = {e["catalog"] for e in history.entries}
    stale = {e["catalog"] for e in history.entries
             if e["catalog"] not in protected and tree.layout.kind_of(e["catalog"]).kind == "catalog"}
    in_catalog_dir = in_folder(tree.layout.catalog_dir, "")  # a full listing holds every file of every version
    found = {key for key in listing
             if key.startswith(in_catalog_dir) and (kind := tree.layout.kind_of(key)).kind in ("catalog",
                                                                                                "catalog-companion")
             and kind.owner not in protected and (kind.owner in stale or kind.owner not in known)}
    return sorted(stale | found)


