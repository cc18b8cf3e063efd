"""Which .vcdiff deltas a publish wants, and which a catalog may name: pure, from what was read.

A delta rebuilds a version's root file (squashfs, or a VM's qcow2) from the same root of an
older version of the product (its `delta_base`); LXD and Incus download it instead of the root
when they already hold the base image (auto-update, `image refresh`, a newer copy or launch).

Rules (the clients' shared/simplestreams/products.go):
- the delta item is `<root ftype>.vcdiff` with `delta_base`, in the new version; a client looks
  the base's fingerprint up in `versions[delta_base]` and silently skips the delta when the base
  is gone, so a delta is published only while its base is (`published_items`: a base that
  retention expires takes its deltas out of the catalog in the same flip; its file stays in the
  new version's folder and goes with it);
- each client reads the base fingerprint from its own field (vocabulary/clients, `deltas`): Incus takes
  `combined_squashfs_sha256` even for a VM delta, so no delta is wanted (and the contract refuses
  one) where a client would read another root's fingerprint (`misreading_client`): a VM delta
  where the new version or its base has a squashfs;
- the contract refuses a delta whose `delta_base` is not a version of the product in the catalog;
  ssb.json drops a delta when its base leaves it (purge, a rebuilt manifest: `without_orphans`).

Wanted: for each version a publish adds to the catalog (not in the served catalog yet), against
the `deltas` versions before it that the catalog keeps, for each root kind both share, unless the
version already has that delta. A version is considered once: when it is first published (a
delta skipped then, e.g. too large, is never retried). Making and checking them is I/O:
ssb_s3.storage.deltas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..vocabulary.clients import IMAGE_CLIENTS
from ..vocabulary.imagefiles import (
    BUILT_FILES,
    DELTA_FOR_ROOT,
    DELTA_FTYPES,
    ROOT_COMBINED_FIELD,
    ImageFile,
    delta_filename,
    delta_item_key,
)
from ..vocabulary.layout import parent_folder, version_file_key
from ..vocabulary.problems import Problem


@dataclass(frozen=True)
class DeltaJob:
    """One delta to make: `row` of the root at `new` (a store key) against the same root at `base`."""

    product: str
    version: str
    base_version: str
    row: ImageFile  # the delta's row of the vocabulary
    new: str
    new_size: int
    new_sha256: str
    base: str
    base_size: int
    base_sha256: str

    @property
    def key(self) -> str:
        """Where the delta file goes: the new version's folder."""
        return version_file_key(parent_folder(self.new), delta_filename(self.row, self.base_version))

    @property
    def item_key(self) -> str:
        return delta_item_key(self.row, self.base_version)

    def described(self, size: int | None = None) -> dict[str, Any]:
        """For the publish report: what was made (size) or would be (None)."""
        return {"product": self.product, "version": self.version, "delta_base": self.base_version,
                "path": self.key, "size": size, "root_size": self.new_size}

    def item(self, size: int, sha256: str) -> dict[str, Any]:
        """The delta's item in ssb.json once made and checked."""
        return {"ftype": self.row.ftype, "path": self.key, "size": size, "sha256": sha256,
                "delta_base": self.base_version}


def _roots(items: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The version's root items that have a delta kind, by root file name."""
    by_ftype = {row.ftype: name for name, row in BUILT_FILES.items() if name in DELTA_FOR_ROOT}
    return {by_ftype[i["ftype"]]: i for i in items.values() if i.get("ftype") in by_ftype}


@dataclass(frozen=True)
class Misreading:
    """A client that would take another root's fingerprint as a delta's base: its title, the
    metadata field it reads, and the root ftype that field belongs to."""

    client: str
    field: str
    root: str


def misreading_client(row: ImageFile, items: Mapping[str, Any], base_items: Mapping[str, Any]) -> Misreading | None:
    """The client (vocabulary/clients: the field each reads a delta's base fingerprint from) that would
    take another root's fingerprint as this delta's base, because the version or its base has
    that other root (Incus reads combined_squashfs_sha256 for a VM delta); None if none would."""
    right = ROOT_COMBINED_FIELD[BUILT_FILES[row.delta_of].ftype]
    present = {ROOT_COMBINED_FIELD.get(str(i.get("ftype"))): str(i.get("ftype"))
               for i in (*items.values(), *base_items.values()) if isinstance(i, Mapping)}
    for client in IMAGE_CLIENTS:
        read = client.deltas.get(row.ftype)
        if read and read != right and read in present:
            return Misreading(client.title, read, present[read])
    return None


def wanted_deltas(product: str, entry: Mapping[str, Any], served: Iterable[str], count: int) -> list[DeltaJob]:
    """The deltas to make for one product's new catalog `entry` (module docstring); `served`: the
    versions the served catalog already names; `count`: the product's `deltas`."""
    if count <= 0:
        return []
    versions: Mapping[str, Any] = entry.get("versions", {})
    ordered = sorted(versions)
    already = set(served)
    jobs = []
    for position, vname in enumerate(ordered):
        if vname in already:
            continue
        items = versions[vname]["items"]
        have = {(i.get("ftype"), i.get("delta_base")) for i in items.values() if i.get("ftype") in DELTA_FTYPES}
        for base_name in reversed(ordered[max(0, position - count):position]):
            base_items = versions[base_name]["items"]
            base_roots = _roots(base_items)
            for root_name, root in sorted(_roots(items).items()):
                row = DELTA_FOR_ROOT[root_name]
                base = base_roots.get(root_name)
                if base is None or (row.ftype, base_name) in have or misreading_client(row, items, base_items):
                    continue
                if base.get("sha256") == root.get("sha256"):
                    continue  # the same root: nothing to download anyway
                jobs.append(DeltaJob(product, vname, base_name, row, root["path"], root["size"], root["sha256"],
                                     base["path"], base["size"], base["sha256"]))
    return jobs


def published_items(items: Mapping[str, Any], kept: Iterable[str], known: Iterable[str]) -> dict[str, Any]:
    """A version's items without the deltas whose base retention expired (in `known`, the
    manifest's versions, but not `kept`); a delta naming a version never known stays, for the
    contract to refuse."""
    gone = set(known) - set(kept)
    return {k: i for k, i in items.items() if i.get("ftype") not in DELTA_FTYPES or i.get("delta_base") not in gone}


def without_orphans(versions: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest's versions without the delta items whose base is no longer among them (purged,
    or its folder gone): ssb.json never names a base it does not have."""
    out: dict[str, Any] = {}
    for vname, version in versions.items():
        items = version.get("items", {})
        orphans = [k for k, i in items.items()
                   if i.get("ftype") in DELTA_FTYPES and i.get("delta_base") not in versions]
        out[vname] = {**version, "items": {k: i for k, i in items.items() if k not in orphans}} if orphans else version
    return out


def delta_problems(product: str, source: str, vname: str, versions: Mapping[str, Any]) -> list[Problem]:
    """What is wrong with the deltas of one catalog version (the client contract)."""
    problems = []
    items = versions[vname]["items"]
    roots = _roots(items)
    for key, item in sorted(items.items()):
        row = DELTA_FTYPES.get(item.get("ftype", ""))
        if row is None:
            continue
        where = f"product {product} version {vname} item {key}"
        base = item.get("delta_base")
        if not isinstance(base, str) or not base:
            problems.append(Problem(product, source, where, "delta_base missing: clients cannot use this delta"))
        elif base == vname or base not in versions:
            problems.append(Problem(product, source, where, (
                f"delta_base '{base}' is not another version of product {product} in the catalog "
                "(clients would skip the delta; expected one of its published versions)")))
        elif row.delta_of not in roots or row.delta_of not in _roots(versions[base]["items"]):
            problems.append(Problem(product, source, where, (
                f"{row.ftype} needs a {BUILT_FILES[row.delta_of].ftype} root in version {vname} "
                f"and in its delta_base {base}")))
        elif misread := misreading_client(row, items, versions[base]["items"]):
            problems.append(Problem(product, source, where, (
                f"{row.ftype} where version {vname} or {base} has a {misread.root}: {misread.client} would apply "
                f"it to the {misread.root} image (it takes {misread.field} as the base); publish no "
                f"{row.ftype} delta here")))
    return problems
