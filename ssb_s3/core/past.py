"""What the purge needs from the older catalogs, kept in one small record (issue 24): pure functions.

The purge (core.retention.plan_purge) looks at the catalogs the history in index.json names, for
three things only: which versions of a product each names, which file paths each names, and (a full
publish) the folders of departed mirrored products. So a publish writes, with its catalog, one
record of every older catalog the next index's history will name: product -> version -> path ->
the catalogs naming that path. An incremental publish then reads that record (one GET, whatever
the number of catalogs within the grace) instead of every older catalog (one GET and one parse of
the whole catalog each), and rebuilds from it the part of each catalog its purge looks at:
its own products' entries, and every path in its listing (`partial_catalogs`). The purge decides
exactly as from the catalogs themselves: same candidates, same "published", same protected paths
and the same release times (those come from the history in index.json, not from the record).

Invariants:
- the record holds for one served catalog (`served`): a record written for another catalog (a
  publish that stopped before its flip, another tool) is not used, and the catalogs are read as before;
- every catalog it lists is one the next history names, with all its paths (from the catalog
  itself, read or served, or from the previous record); if one of them has no such source the
  record is not written (the next publish reads the catalogs);
- the catalogs a purge deletes are left out of it (when the purge runs); a record that still lists
  a catalog about to be deleted is deleted first (Tree.purge). A catalog the history names and the
  record does not is, for the purge, a catalog found gone (retention: forgotten), which only ever
  keeps more: it was left out because it was no longer protected;
- it is parsed as hostile input (bounded, every field type-checked): anything unexpected means
  "read the catalogs". Who can write `.ssb-s3/` can make a purge delete early by leaving paths out,
  as who can write index.json can by changing the history's times: the same trust as today.

Full publishes read every catalog anyway (their purge also looks for departed mirrored products)
and write the record from them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PAST_VERSION = 1
MAX_PAST_BYTES = 512 * 1024 * 1024  # ~1.1 MiB at 1,000 products x 10 versions; its parse is charged as any JSON

# product -> version -> path -> the catalogs that name it, as a bit mask over Past.catalogs (bit i: catalogs[i])
Names = dict[str, dict[str, dict[str, int]]]


@dataclass(frozen=True)
class Past:
    """The record: written for the catalog `served`, covering the older catalogs `catalogs`."""

    served: str
    catalogs: tuple[str, ...]
    names: Names

    def to_bytes(self) -> bytes:
        return json.dumps({"version": PAST_VERSION, "served": self.served, "catalogs": list(self.catalogs),
                           "names": self.names}, separators=(",", ":")).encode()

    @classmethod
    def from_document(cls, raw: Any) -> Past | None:
        """The record from its parsed JSON, or None when anything in it is not as written."""
        if not isinstance(raw, dict) or raw.get("version") != PAST_VERSION or not isinstance(raw.get("served"), str):
            return None
        order, names = raw.get("catalogs"), raw.get("names")
        if (not isinstance(order, list) or not all(isinstance(k, str) for k in order) or len(set(order)) != len(order)
                or not isinstance(names, dict)):
            return None
        every = (1 << len(order)) - 1
        for versions in names.values():
            if not isinstance(versions, dict):
                return None
            for items in versions.values():
                if not isinstance(items, dict) or not all(
                        type(mask) is int and 0 < mask <= every for mask in items.values()):
                    return None
        return cls(raw["served"], tuple(order), names)


def carry(served: str, keep: Iterable[str], catalogs: Mapping[str, Mapping[str, Any]], prior: Past | None
          ) -> Past | None:
    """The record for the catalog `served` covering the catalogs `keep` (the next history's, but the
    served one and those the purge deletes), each from `prior` or else from `catalogs` (whole
    catalogs in memory); None when one of them is in neither (the next publish reads the catalogs).

    The catalogs keep their bit from one record to the next, so that the usual publish (no catalog
    dropped) only adds the paths of the catalog it replaces; the prior record's names are then
    reused (and extended in place: the same call again gives the same record)."""
    wanted = set(keep) - {served}
    order = [key for key in prior.catalogs if key in wanted] if prior is not None else []
    names: Names = {}
    if prior is not None and len(order) == len(prior.catalogs):
        names = prior.names
    elif prior is not None and order:  # some catalogs dropped: the others move to their new bits
        moved = [(1 << i, 1 << order.index(key)) for i, key in enumerate(prior.catalogs) if key in wanted]
        memo: dict[int, int] = {}
        for product, versions in prior.names.items():
            for version, items in versions.items():
                for path, mask in items.items():
                    new = memo.get(mask)
                    if new is None:
                        new = memo[mask] = sum(to for was, to in moved if mask & was)
                    if new:
                        names.setdefault(product, {}).setdefault(version, {})[path] = new
    for key in sorted(wanted - set(order)):
        if key not in catalogs:
            return None
        mark = 1 << len(order)
        order.append(key)
        for product, entry in catalogs[key].get("products", {}).items():
            versions = names.setdefault(product, {})
            for version, body in entry.get("versions", {}).items():
                items = versions.setdefault(version, {})
                for item in body.get("items", {}).values():
                    items[item["path"]] = items.get(item["path"], 0) | mark
    return Past(served, tuple(order), names)


def partial_catalogs(past: Past, only: set[str], listing: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """What the purge of an incremental publish of `only` looks at in each catalog the record covers:
    the entries of those products, and every other path in `listing` (the only paths it protects)."""
    out: dict[str, dict[str, Any]] = {key: {"products": {}} for key in past.catalogs}
    bits = list(enumerate(past.catalogs))
    for product, versions in past.names.items():
        mine = product in only
        for version, items in versions.items():
            for path, mask in items.items():
                if mine or path in listing:
                    for i, key in bits:
                        if mask >> i & 1:
                            entry = out[key]["products"].setdefault(product, {"versions": {}})
                            body = entry["versions"].setdefault(version, {"items": {}})
                            body["items"][str(len(body["items"]))] = {"path": path}
    return out
