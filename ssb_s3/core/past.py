"""What the purge needs from the older catalogs, kept in one small record (issue 24): pure functions.

The purge (core.retention.plan_purge) looks at the catalogs the history in index.json names for
which versions of a product each names and which file paths each names (and, in a full publish,
the folders of departed mirrored products). Two catalogs one after the other differ only in the
products that changed between them, so the record is a chain: for the served catalog `served`,
the older catalogs newest first (`steps`), each with the entries (version -> item paths; None:
absent) of only the products whose entry differs from the next newer catalog's. A publish adds one
step (the catalog it replaces, against the one it writes: the products this publish changed), and
drops the steps past the oldest catalog the next history keeps: its cost is that of what changed,
not of the tree nor of the number of catalogs within the grace.

An incremental publish reads that record (one GET, whatever the number of older catalogs) instead
of every older catalog, and rebuilds from it and the served catalog the part of each older
catalog its purge looks at (`partial_catalogs`): the entries of its own products, and of every
product that changed since. The purge decides exactly as from the catalogs themselves: same
candidates, same "published", same protected paths and release times (a path of a product left
out is named by the served catalog too, which is closed last, at this run's time: it protects the
path at least as long; the times come from index.json's history, not from the record).

Invariants:
- the record holds for one served catalog (`served`): a record written for another catalog (a
  publish that stopped before its flip, another tool) is not used, and the catalogs are read as before;
- every catalog the next history keeps is in the chain, else the record is not written (the next
  publish reads the catalogs);
- the catalogs a purge deletes are left out of it (when the purge runs); a record that still
  offers a catalog about to be deleted is deleted first (Tree.purge). A catalog the history names
  and the record does not offer is, for the purge, a catalog found gone (retention: forgotten),
  which only ever keeps more: it was left out because it was no longer protected;
- it is parsed as hostile input (bounded, every field type-checked): anything unexpected means
  "read the catalogs". Who can write `.ssb-s3/` can make a purge delete early by leaving paths out,
  as who can write index.json can by changing the history's times: the same trust as today.

Full publishes read every catalog anyway (their purge also looks for departed mirrored products)
and write the record from them when there is none to extend.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PAST_VERSION = 2
MAX_PAST_BYTES = 64 * 1024 * 1024  # a step holds the products one publish changed; its parse is charged as any JSON

Entry = dict[str, list[str]]  # version -> the paths of its items


@dataclass(frozen=True)
class Step:
    """An older catalog: the entries of the products that differ from the next newer catalog's."""

    catalog: str
    entries: dict[str, Entry | None]  # product -> its entry in `catalog` (None: not in it)
    offered: bool = True  # False: kept only to reach older ones (the history no longer names it)


@dataclass(frozen=True)
class Past:
    """The record: written for the catalog `served`, its older catalogs newest first."""

    served: str
    steps: tuple[Step, ...]

    @property
    def catalogs(self) -> frozenset[str]:
        return frozenset(step.catalog for step in self.steps if step.offered)

    def to_bytes(self) -> bytes:
        steps = [{"catalog": st.catalog, "offered": st.offered, "entries": st.entries} for st in self.steps]
        return json.dumps({"version": PAST_VERSION, "served": self.served, "steps": steps},
                          separators=(",", ":")).encode()

    @classmethod
    def from_document(cls, raw: Any) -> Past | None:
        """The record from its parsed JSON, or None when anything in it is not as written."""
        if not isinstance(raw, dict) or raw.get("version") != PAST_VERSION or not isinstance(raw.get("served"), str):
            return None
        steps = raw.get("steps")
        if not isinstance(steps, list):
            return None
        out = []
        for step in steps:
            if (not isinstance(step, dict) or not isinstance(step.get("catalog"), str)
                    or not isinstance(step.get("offered"), bool) or not isinstance(step.get("entries"), dict)):
                return None
            for entry in step["entries"].values():
                if entry is not None and (not isinstance(entry, dict) or not all(
                        isinstance(ps, list) and all(isinstance(p, str) for p in ps) for ps in entry.values())):
                    return None
            out.append(Step(step["catalog"], step["entries"], step["offered"]))
        if len({st.catalog for st in out} | {raw["served"]}) != len(out) + 1:
            return None
        return cls(raw["served"], tuple(out))


def _entry(product: Any) -> Entry | None:
    if product is None:
        return None
    return {version: [item["path"] for item in body.get("items", {}).values()]
            for version, body in product.get("versions", {}).items()}


def _step(older_key: str, older: Mapping[str, Any], newer: Mapping[str, Any]) -> Step:
    """`older` against `newer` (two catalogs' `products`): the entries that differ."""
    names = set(older) | set(newer)
    return Step(older_key, {name: _entry(older.get(name)) for name in sorted(names)
                            if older.get(name) is not newer.get(name) and older.get(name) != newer.get(name)})


def carry(current_key: str, current: Mapping[str, Any], keep: Iterable[str], served_key: str,
          served: Mapping[str, Any] | None, catalogs: Mapping[str, Mapping[str, Any]], order: list[str],
          prior: Past | None) -> Past | None:
    """The record for the catalog `current_key` (`current`) offering the catalogs `keep` (the next
    history's, but the current one and those the purge deletes). From `prior` (written for the
    served catalog) plus one step (the served catalog against `current`), else from the whole
    catalogs in memory (`catalogs`, newest first in `order`); None when neither has them all."""
    wanted = set(keep) - {current_key}
    newer = current.get("products", {})
    steps: list[Step] = []
    if prior is not None and prior.served == served_key:
        if served is not None and served_key and served_key != current_key:
            steps.append(_step(served_key, served.get("products", {}), newer))
        steps.extend(prior.steps)
    else:
        whole = dict(catalogs)
        if served is not None and served_key:
            whole[served_key] = served
        for key in order:
            if key == current_key:
                continue
            if key not in whole:
                break  # what is older than a catalog we do not have cannot be reached
            older = whole[key].get("products", {})
            steps.append(_step(key, older, newer))
            newer = older
    reached = {st.catalog for st in steps}
    if not wanted <= reached:
        return None
    last = max((i for i, st in enumerate(steps) if st.catalog in wanted), default=-1)
    return Past(current_key, tuple(Step(st.catalog, st.entries, st.catalog in wanted) for st in steps[:last + 1]))


def partial_catalogs(past: Past, served: Mapping[str, Any], only: set[str]) -> dict[str, dict[str, Any]]:
    """What the purge of an incremental publish of `only` looks at in each older catalog the record
    offers: the entries of those products and of every product that changed since (the others name
    what the served catalog names)."""
    out: dict[str, dict[str, Any]] = {}
    since: dict[str, Entry | None] = {}
    products = served.get("products", {})
    for step in past.steps:
        since.update(step.entries)
        if not step.offered:
            continue
        entries = {name: entry for name, entry in since.items() if entry is not None}
        for name in only - set(since):
            if (entry := _entry(products.get(name))) is not None:
                entries[name] = entry
        out[step.catalog] = {"products": {name: {"versions": {
            version: {"items": {str(i): {"path": path} for i, path in enumerate(paths)}}
            for version, paths in entry.items()}} for name, entry in entries.items()}}
    return out
