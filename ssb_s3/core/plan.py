"""The pure plan: a snapshot of what was read in, the plan of what to write out.

No store, no boto3, no clock, no I/O: the same Snapshot and PlanOptions always give the same Plan
(the Snapshot holds facts only: what a store says of a missing file is read with it, ProductRead.absent;
the run's own settings, credentials, lease timeout, CDN, progress, are not the plan's: storage.tree.RunOptions).
ssb_s3.storage.tree reads the Snapshot and commits the Plan; ssb_s3.commands.publish only sequences the two.

Decisions made here, and only here:
- retention: the newest `days` versions, minus those older than `max_age` (ssb_s3.core.retention);
- checks: item paths stay in their product's version folder, every kept file is in the listing
  with its declared size, published files never change, the client contract (catalog.py);
- keep-going: an invalid product keeps its previously published entry (or is left out), until
  no new problem is found; a problem that blames no product always refuses;
- a mirrored product (declared by a mirror run, or kept as published) loses every alias or
  fingerprint collision with the tree's own products, and never blocks the publish: with or
  without keep-going it keeps its previous entry (unless that is bad too) or is left out, with a
  warning;
- incremental (`only`): every other product keeps its published entry as it is, unchecked but
  for collisions with the changed ones;
- emptying a product (max_age, withdraw) or the whole tree needs `force`;
- withdraw (`opts.withdraw`, ssb_s3.core.withdrawal): one version moves from the product's
  ssb.json `versions` to its `withdrawn` section; the publish then writes that ssb.json, the views
  and the index in the usual order, and its purge treats the version like an expired one. A
  product read from another store (`source:`) is read-only: its withdrawal is recorded in
  index.json (withdrawal.TREE_RECORD), which every plan applies to its manifest (check_products)
  and carries on to the next index; so is a mirrored product's; a withdrawal that would leave
  the version served (a mirrored product keeping its previous entry) refuses the publish;
- the purge plan (grace, history), the views to write (ssb_s3.core.views) and the record of the
  older catalogs written with them (ssb_s3.core.past);
- the .vcdiff deltas the versions it adds want (ssb_s3.core.deltas), made before the flip.
Every problem is a Problem whose `product` says whom it blames; no message is parsed back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import TreeConfig
from ..errors import MAX_LISTED, StoreError, WithdrawError, capped
from ..vocabulary.document import items_of
from ..vocabulary.imagefiles import DELTA_FTYPES, IMAGE_FILES, META_FTYPES
from ..vocabulary.layout import version_dir
from ..vocabulary.problems import Problem, blamed
from .catalog import (
    _path_problem,
    assemble_catalog,
    catalog_product,
    contract_problems_by_product,
    fingerprints,
    no_gc,
    to_bytes,
)
from .deltas import DeltaJob, wanted_deltas, without_orphans
from .lxcindex import lxc_images
from .mirror import recorded_versions
from .past import Past, carry
from .retention import (
    MIRRORED_KEY,
    SIGNED_KEY,
    VIEWS_KEY,
    History,
    PurgePlan,
    catalog_paths,
    plan_purge,
    select_versions,
    served_mirrored,
    served_signed,
    served_views,
)
from .views import Content, View, flip_index, index_view, render, view_keys
from .withdrawal import TREE_RECORD, WITHDRAWN, Recorded, record, resolve, tree_recorded, with_recorded, withdrawn_of

CONTRACT_SOURCE = "catalog built from the manifests"


@dataclass(frozen=True)
class Withdrawal:
    """withdraw: take one version of one product out of its ssb.json and out of the catalog."""

    product: str
    selector: str = ""  # a version name, a fingerprint or a prefix of one; "": the newest served version
    reason: str = ""


@dataclass(frozen=True)
class PlanOptions:
    """What a plan is asked to decide (the run's own settings, how it reads, writes and reports,
    are storage.tree.RunOptions; commands.publish.PublishOptions is both, as the CLI fills them)."""

    dry_run: bool = False  # said in the report
    keep_going: bool = False
    force: bool = False
    skip_purge: bool = False  # the older catalogs this run's purge would delete stay in the record
    grace: int | None = None  # None: tree.yml's grace
    include_unpublished: bool = False  # purge: also expired versions no catalog of ours ever named
    signing: bool = False  # a signing key given to this run (publish --sign-key): the tree is signed
    withdraw: Withdrawal | None = None
    base_url: str | None = None  # the remote URL the page shows (None: tree.yml page.base_url)
    unmirror: frozenset[str] = frozenset()  # mirrored products to leave out (they left their source)


@dataclass
class PublishReport:
    """What a publish did (or, with dry_run, would do)."""

    catalog_key: str
    index_written: bool
    dry_run: bool
    changes: dict[str, dict[str, Any]]
    bytes_added: int
    products: list[str]
    versions: int
    purge: PurgePlan
    copied: list[str] = field(default_factory=list)
    kept_previous: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    invalidation: str | None = None
    failed_products: list[str] = field(default_factory=list)  # with --keep-going: not updated
    published: bool = False  # the publish went through: index.json names this catalog (False: dry run, refused)
    signed: list[str] = field(default_factory=list)  # signed files written (ssb_s3.core.signed)
    signing_seconds: float = 0.0  # time gpg took for them
    withdrawn: dict[str, Any] | None = None  # withdraw: product, version, withdrawn_at, reason, fingerprints
    # withdraw: the served catalog and the new one (for its summary; not in as_dict)
    catalogs: tuple[Mapping[str, Any], Mapping[str, Any]] | None = field(default=None, repr=False)
    deltas: list[dict[str, Any]] = field(default_factory=list)  # made (size set) or, in a dry run, wanted

    def as_dict(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "dry_run": self.dry_run,
            "catalog": self.catalog_key,
            "index_written": self.index_written,
            "products": self.products,
            "versions": self.versions,
            "changes": self.changes,
            "bytes_added": self.bytes_added,
            "copied": self.copied,
            "purge": self.purge.as_dict(),
            "kept_previous_entry": self.kept_previous,
            "problems": capped([str(p) for p in self.problems]),  # the first MAX_LISTED, then '… and N more'
            "problems_count": len(self.problems),
            "problem_details": [p.as_dict() for p in self.problems[:MAX_LISTED]],  # product, where, field, text
            "warnings": self.warnings,
            "cloudfront_invalidation": self.invalidation,
            "failed_products": self.failed_products,
            "signed": self.signed,
            "signing_seconds": round(self.signing_seconds, 3),
            "withdrawn": self.withdrawn,
            "deltas": self.deltas,
        }


ABSENT = "does not exist"  # why a key is not in a listing, unless the read found another reason


@dataclass(frozen=True)
class ProductRead:
    """What was read for one product: facts only, no store to call back. manifest None and error
    None: it has no ssb.json yet. listing: its store's files (None: not listed, e.g. hidden);
    absent: for the keys its manifest names that the listing lacks, why (a local folder leaves out
    a symlink out of its bounds, a FIFO ...: said by the read, ABSENT when not given); refreshed:
    --refresh-manifests rebuilt the manifest, to be written back If-Match `etag` once the publish is
    known valid (never a foreign one: a `source:` is read-only; `behind` says what its ssb.json lacks)."""

    location: str  # where its ssb.json was read, as users name it
    store_url: str  # its store (the target, or its `source`), as users name it: keys are named under it
    manifest: Mapping[str, Any] | None = None
    error: Problem | None = None
    listing: Mapping[str, int] | None = None
    refreshed: bool = False
    etag: str = ""
    foreign: bool = False  # its files live in another store than the tree: copied in
    behind: tuple[str, ...] = ()  # --refresh-manifests of a foreign product: versions its folders hold, unlisted
    absent: Mapping[str, str] = field(default_factory=dict)

    def describe(self, key: str) -> str:
        """`key` of its store as users name it (`s3://bucket/prefix/key`, a file path)."""
        return f"{self.store_url.rstrip('/')}/{key}"


@dataclass(frozen=True)
class Snapshot:
    """Everything a publish (or a purge) reads before deciding, and the time it decides at."""

    now: float
    index: bytes = b""  # index.json as served ("" before a first publish, or when it is unusable)
    etag: str = ""
    served_key: str = ""  # the catalog it names ("" when there is none usable)
    served: Mapping[str, Any] | None = None
    products: Mapping[str, ProductRead] = field(default_factory=dict)
    tree_listing: Mapping[str, int] = field(default_factory=dict)  # the tree's files the purge looks at
    catalogs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # older catalogs found
    catalogs_missing: frozenset[str] = frozenset()  # older catalogs the history names, found gone
    # the record of the older catalogs (core.past) written for the served catalog, if any; and
    # whether `catalogs` was rebuilt from it (partial catalogs) rather than read
    past: Past | None = None
    catalogs_partial: bool = False
    damaged_key: str = ""  # the catalog index.json names, found unusable (damaged after it was written)


@dataclass(frozen=True)
class ManifestWrite:
    """A refreshed ssb.json to write back If-Match `etag` (If-None-Match when new)."""

    product: str
    manifest: Mapping[str, Any]
    etag: str


@dataclass(frozen=True)
class Copy:
    """A file of a product that lives in another store, to copy into the tree (create-only), with
    the sha256 its ssb.json gives, and, for a root, the image fingerprints its version's meta items
    claim for it: (meta path, combined field, value), each sha256(meta bytes ‖ root bytes), checked
    from the bytes as they are copied (ssb_s3.storage.verified)."""

    product: str
    path: str
    size: int
    sha256: str = ""
    combined: tuple[tuple[str, str, str], ...] = ()


@dataclass
class Plan:
    """What a publish writes, in order: manifest updates, copies, views (index last), purge."""

    catalog: dict[str, Any]
    catalog_bytes: bytes
    catalog_key: str
    history: History
    views: tuple[View, ...]
    manifest_writes: list[ManifestWrite]
    copies: list[Copy]
    purge: PurgePlan
    problems: list[Problem]
    warnings: list[str]
    report: PublishReport
    refused: bool  # problems that stop the publish (without keep-going, or blaming no product)
    catalog_changed: bool  # the views differ from what is served: write them
    deltas: list[DeltaJob] = field(default_factory=list)  # to make before the flip (core.deltas)
    flip_index: View | None = None  # index.json as the flip writes it (views.flip_index); None: `index`
    past: Past | None = None  # the record of the older catalogs (core.past) to write with the catalog

    @property
    def index(self) -> View:
        """index.json once every view is written (it records them all)."""
        return next(v for v in self.views if v.is_index)

    @property
    def flipped_index(self) -> View:
        """What the flip writes: with the views to write, the index recording only those written
        before it (views.flip_index); without (catalog unchanged), the final index at once."""
        return self.flip_index if self.catalog_changed and self.flip_index is not None else self.index


# ----------------------------------------------------------------------------------------------
# Checks of one product's manifest


def version_folder(product_dir: str, version: str) -> str:
    """The folder every item of `version` must lie in, with its trailing '/'."""
    return version_dir(product_dir, version) + "/"


def item_path_problem(path: Any, folder: str) -> str | None:
    """Why an item path is not a plain relative path inside `folder` (None: it is)."""
    why = _path_problem(path)
    if why is None and not str(path).startswith(folder):
        why = f"path '{path}' is outside the product's folder: expected a path under '{folder}'"
    return why


def item_path_problems(manifest: Mapping[str, Any], product_dir: str, location: str, product: str) -> list[Problem]:
    """Item paths that leave their product: each must be a plain relative path under
    <product_dir>/<VERSION>/ for the version naming it (the layout the scanner writes), whatever
    the manifest's origin (the tree, a `source` store, a `prefix_path` URL). A path elsewhere
    would let one product's ssb.json serve, copy over or shadow another product's files."""
    problems = []
    for vname, version in sorted(manifest["versions"].items()):
        for key, item in sorted(version.get("items", {}).items()):
            why = item_path_problem(item.get("path"), version_folder(product_dir, vname))
            if why:
                problems.append(Problem(product, location, f"product {product} version {vname} item {key}", why))
    return problems


def file_problems(manifest: Mapping[str, Any], versions: list[str], read: ProductRead,
                  product: str, product_dir: str) -> list[Problem]:
    """Every file a kept version names must exist in the listing with the declared size (items whose
    path leaves the product are `item_path_problems`, never looked up)."""
    problems = []
    listing = read.listing or {}
    for vname in versions:
        for key, item in sorted(manifest["versions"][vname].get("items", {}).items()):
            path = item.get("path", "")
            if item_path_problem(path, version_folder(product_dir, vname)):
                continue
            size = listing.get(path)
            where = f"product {product} version {vname} item {key}"
            if size is None:
                problems.append(Problem(product, "", where, f"{read.describe(path)} {read.absent.get(path, ABSENT)}"))
            elif size != item.get("size"):
                problems.append(Problem(product, "", where,
                                        f"{read.describe(path)} is {size} bytes, ssb.json says {item.get('size')}"))
    return problems


@dataclass
class Checked:
    """The products' manifests after retention and the per-product checks (built here, then read)."""

    manifests: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    kept: dict[str, list[str]] = field(default_factory=dict)
    expired: dict[str, list[str]] = field(default_factory=dict)
    withdrawn: dict[str, list[str]] = field(default_factory=dict)
    recorded: Recorded = field(default_factory=dict)  # the tree's own withdrawals (withdrawal.TREE_RECORD), applied
    problems: dict[str | None, list[Problem]] = field(default_factory=dict)  # None: not a product's fault
    warnings: list[str] = field(default_factory=list)

    def blame(self, problem: Problem) -> None:
        self.problems.setdefault(problem.product, []).append(problem)

    def all_problems(self) -> list[Problem]:
        return [p for problems in self.problems.values() for p in problems]


def check_products(tree: TreeConfig, snap: Snapshot, recorded: Recorded | None = None) -> Checked:
    """Retention and the per-product checks of every product the snapshot read (in tree.yml order),
    after the tree's own withdrawals (`recorded`; None: those the served index records)."""
    checked = Checked(recorded=tree_recorded(snap.index) if recorded is None else recorded)
    for product in tree.products:
        read = snap.products.get(product.name)
        if read is None:
            continue
        if read.error is not None:
            checked.blame(read.error)
            continue
        manifest = read.manifest
        if read.behind:  # a source is read-only to the tree: --refresh-manifests does not rebuild it
            checked.warnings.append(
                f"product {product.name}: {read.location} not refreshed, a source is read-only to this tree: its "
                f"folders hold {', '.join(capped(list(read.behind)))}, which it does not list (the source's owner "
                f"adds them with `build-versions-manifest -p {product.name}`)"
                + ("; not published" if manifest is None else ""))
        if manifest is not None:
            manifest = with_recorded(manifest, checked.recorded.get(product.name, {}))
        if manifest is None:
            if not read.behind:
                checked.warnings.append(
                    f"product {product.name}: no {read.describe(tree.manifest_key(product))} yet (run "
                    f"build-versions-manifest{'' if read.foreign else ' or publish --refresh-manifests'}); "
                    "not published")
            continue
        product_dir = tree.product_dir(product)
        # Before anything reads, lists or copies what the manifest names, whatever its origin.
        for problem in item_path_problems(manifest, product_dir, read.location, product.name):
            checked.blame(problem)
        checked.manifests[product.name] = manifest
        kept, expired = select_versions(manifest["versions"], product.days, product.max_age, snap.now)
        checked.kept[product.name], checked.expired[product.name] = kept, expired
        checked.withdrawn[product.name] = sorted(withdrawn_of(manifest))
        if product.hidden:
            continue
        if not manifest["versions"]:
            checked.warnings.append(f"product {product.name}: " + (
                "every version is withdrawn; not published" if withdrawn_of(manifest) else
                "no complete version yet; not published"))
        for problem in file_problems(manifest, kept, read, product.name, product_dir):
            checked.blame(problem)
    return checked


def needs_old_catalogs(tree: TreeConfig, products: Mapping[str, ProductRead], now: float,
                       only: set[str] | None, recorded: Recorded | None = None) -> bool:
    """Whether the purge needs the older catalogs the history names: always for a full publish; for
    an incremental one only when one of its products has expired versions, or withdrawn ones whose
    files are still listed (its request count stays flat otherwise)."""
    if only is None:
        return True
    for name in only:
        read = products.get(name)
        if read is not None and read.manifest is not None:
            product = tree.product(name)
            if select_versions(read.manifest["versions"], product.days, product.max_age, now)[1]:
                return True
            withdrawn = withdrawn_of(with_recorded(read.manifest, (recorded or {}).get(name, {})))
            folders = tuple(f"{tree.product_dir(product)}/{v}/" for v in withdrawn)
            if folders and any(key.startswith(folders) for key in read.listing or {}):
                return True
    return False


# ----------------------------------------------------------------------------------------------
# The catalog


def assemble(
    tree: TreeConfig, checked: Checked, snap: Snapshot, opts: PlanOptions, only: set[str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The catalog to publish, plus the products that kept their previous entry (--keep-going);
    problems found go to `checked`.

    With `only`, every other product keeps its published entry as it is (incremental publish).
    """
    old_products: Mapping[str, Any] = (snap.served or {}).get("products", {})
    entries: dict[str, Any] = {
        p.name: old_products[p.name] for p in tree.products
        if only is not None and p.name not in only and not p.hidden and p.name in old_products
    }  # fmt: skip
    # Mirrored products tree.yml does not declare (put there by `mirror`) keep their published entry.
    entries.update({name: old_products[name] for name in kept_mirrored(tree, snap, opts) if name in old_products})
    located = {name: read.location for name, read in snap.products.items()}
    yielding = mirrored_names(tree, snap, opts)

    def locate(problem: Problem) -> Problem:
        """Name the ssb.json a contract problem comes from, not the catalog built from it."""
        name = problem.product
        return problem.located(located[name]) if name in located and problem.where == CONTRACT_SOURCE else problem

    for product in tree.products:
        manifest = checked.manifests.get(product.name)
        if product.hidden or (only is not None and product.name not in only):
            continue
        if manifest is None:
            if product.name in old_products and product.name not in checked.problems:
                checked.blame(Problem(product.name, "", "", (
                    f"product {product.name} is published but its ssb.json is missing "
                    f"({located.get(product.name, tree.manifest_key(product))}): "
                    "restore it, or remove the product from tree.yml to unpublish it")))  # fmt: skip
            continue
        kept = checked.kept[product.name]
        if not kept and manifest["versions"] and product.name in old_products and not opts.force:
            checked.blame(Problem(product.name, "", f"product {product.name}",
                                  "max_age would remove every version; refusing to empty a product without --force"))
        entries[product.name] = catalog_product(product, manifest, kept)
        _refuse_changed_files(checked, snap, product.name, old_products.get(product.name, {}),
                              entries[product.name], kept)
    # First every product's own new entry, so that every problem is listed at once ...
    catalog = assemble_catalog(tree, entries)
    first = contract_problems_by_product(catalog, CONTRACT_SOURCE, focus=only, yielding=yielding)
    for name, problems in first.items():
        if name is not None:
            for problem in map(locate, problems):
                if problem not in checked.problems.get(name, []):
                    checked.blame(problem)
    # ... then without the invalid ones (or with their previous entry), until nothing new is found.
    kept_previous: list[str] = []
    spoiled: set[str] = set()  # mirrored products whose previous entry was found bad too: left out
    for _ in range(len(tree.products) + len(yielding) + 1):
        for name in [n for n in checked.problems if n is not None]:
            # a mirrored product never blocks the tree: it keeps its previous entry, or is left out
            if (opts.keep_going or name in yielding) and name in old_products and name not in spoiled:
                entries[name] = old_products[name]
                if name not in kept_previous:
                    kept_previous.append(name)
            else:
                entries.pop(name, None)
        if checked.problems:  # (with none, the entries are those of the catalog just checked)
            catalog = assemble_catalog(tree, entries)
        if not checked.problems and not first:
            break  # the catalog just checked, unchanged: nothing more to find
        by_product = contract_problems_by_product(catalog, CONTRACT_SOURCE, focus=only, yielding=yielding)
        if not catalog["products"] and (opts.force or any(n is not None for n in checked.problems)):
            by_product.pop(None, None)  # an empty catalog is a consequence, not another problem
        fresh = {name: p for name, p in by_product.items() if name not in checked.problems}
        for problems in fresh.values():
            for problem in problems:
                checked.blame(locate(problem))
        again = {n for n in by_product if n in yielding and n in kept_previous and n not in spoiled}
        for name in again:  # its previous entry collides too (e.g. with an alias the tree took since)
            spoiled.add(name)
            kept_previous.remove(name)
        if not (fresh or again) or not (opts.keep_going or set(fresh) <= yielding):
            break
    if old_products and not catalog["products"] and not opts.force and not checked.problems:
        checked.blame(Problem(None, "", "", "the new catalog would have no product at all: "
                                            "refusing to empty the tree without --force"))
    return catalog, sorted(kept_previous)


def _refuse_changed_files(checked: Checked, snap: Snapshot, name: str, old_entry: Mapping[str, Any],
                          entry: Mapping[str, Any], kept: list[str]) -> None:
    """Published files never change: a kept version whose item differs from what was published is refused."""
    published = old_entry.get("versions", {})
    for vname in (v for v in kept if v in published):
        now_items = entry["versions"][vname]["items"]
        for key, was in sorted(published[vname].get("items", {}).items()):
            if key not in now_items and was.get("ftype") in DELTA_FTYPES:
                continue  # a delta whose base expired leaves the catalog (core.deltas)
            now = now_items.get(key, {})
            if (was.get("size"), was.get("sha256")) != (now.get("size"), now.get("sha256")):
                checked.blame(Problem(name, snap.products[name].describe(str(was.get("path"))), "", (
                    f"item {key} of version {vname} changed since it was published ({was.get('size')} -> "
                    f"{now.get('size')} bytes): published files never change; upload a new version instead")))


def mirrored_names(tree: TreeConfig, snap: Snapshot, opts: PlanOptions) -> frozenset[str]:
    """The mirrored products of this publish (declared by a mirror run, or kept as published): they
    lose every collision with the tree's own products, and never block its publish."""
    return frozenset({p.name for p in tree.products if p.mirrored} | set(kept_mirrored(tree, snap, opts)))


def kept_mirrored(tree: TreeConfig, snap: Snapshot, opts: PlanOptions) -> list[str]:
    """Served mirrored products that this publish does not declare: kept as published."""
    declared = {p.name for p in tree.products}
    return sorted(served_mirrored(snap.index) - declared - opts.unmirror)


def index_extra(tree: TreeConfig, catalog: Mapping[str, Any], history: History, signed: bool,
                recorded: Recorded) -> dict[str, Any]:
    """index.json's `ssb_s3` field: the history, the mirrored products the catalog holds, whether
    this publish signs the tree, and the tree's own withdrawals (withdrawal.TREE_RECORD, carried on)."""
    own = {p.name for p in tree.products if not p.mirrored}
    mirrored = sorted(n for n in catalog["products"] if n not in own)  # declared mirrored, or kept_mirrored
    return {**history.as_field(), **({MIRRORED_KEY: mirrored} if mirrored else {}),
            **({SIGNED_KEY: True} if signed else {}), **({TREE_RECORD: recorded} if recorded else {})}


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], int]:
    """Per product: versions added and removed; and bytes of files that the new catalog adds.

    A product whose new entry is its old entry itself (kept by an incremental publish) is skipped:
    it changes nothing and adds no file.
    """
    old_products: Mapping[str, Any] = (old or {}).get("products", {})
    changed = {name: entry for name, entry in new["products"].items() if old_products.get(name) is not entry}
    changes: dict[str, dict[str, Any]] = {}
    for name in sorted((set(old_products) - set(new["products"])) | set(changed)):
        before = set(old_products.get(name, {}).get("versions", {}))
        after = set(new["products"].get(name, {}).get("versions", {}))
        if before != after:
            changes[name] = {"added": sorted(after - before), "removed": sorted(before - after),
                             "versions": len(after)}
    sizes = {item["path"]: item["size"] for item in items_of({"products": changed})}
    old_paths = catalog_paths(old or {}) if sizes else set()
    return changes, sum(size for path, size in sizes.items() if path not in old_paths)


def copies(tree: TreeConfig, snap: Snapshot, catalog: Mapping[str, Any]) -> list[Copy]:
    """Files of products that live in another bucket, which clients need under our base URL.

    Only into the product's own version folders (the checks refused the rest; this holds even for
    an entry kept from a catalog published before that check): a path outside them refuses the
    publish before anything is written. Two items may share a path: one copy. The metadata files
    come first, so that each root's fingerprints can be computed as it streams.
    """
    wanted: dict[str, Copy] = {}
    for name, read in snap.products.items():
        if not read.foreign or name not in catalog["products"]:
            continue
        product_dir = tree.product_dir(tree.product(name))
        for vname, version in catalog["products"][name]["versions"].items():
            for key, item in version["items"].items():
                why = item_path_problem(item["path"], version_folder(product_dir, vname))
                if why:
                    raise StoreError(f"product {name} version {vname} item {key}: {why}: refusing to copy it "
                                     f"from {read.describe('').rstrip('/')} into the tree")
                wanted.setdefault(item["path"], Copy(name, item["path"], item["size"], str(item.get("sha256", "")),
                                                     combined_claims(item, version["items"])))
    metas = {meta for copy in wanted.values() for meta, _, _ in copy.combined}
    return sorted(wanted.values(), key=lambda c: c.path not in metas)


def combined_claims(root: Mapping[str, Any], items: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """(meta path, field, value) of every combined_*_sha256 the meta items of a version claim for
    `root` (none for a file that is not a root)."""
    row = next((r for r in IMAGE_FILES.values() if r.role == "root" and r.ftype == root.get("ftype")), None)
    if row is None:
        return ()
    return tuple(sorted({(str(meta["path"]), name, str(meta[name])) for meta in items.values()
                         if meta.get("ftype") in META_FTYPES for name in row.combined_fields if name in meta}))


def deltas_wanted(tree: TreeConfig, snap: Snapshot, catalog: Mapping[str, Any]) -> list[DeltaJob]:
    """The deltas of the versions this catalog adds (core.deltas.wanted_deltas), for products whose
    files are in the tree itself (not a `source` store or a `prefix_path` URL: nothing is written there)."""
    served: Mapping[str, Any] = (snap.served or {}).get("products", {})
    jobs: list[DeltaJob] = []
    for product in tree.products:
        read = snap.products.get(product.name)
        entry = catalog["products"].get(product.name)
        if read is None or read.foreign or product.prefix_path or entry is None or not product.deltas:
            continue
        if entry is served.get(product.name):
            continue  # kept as published (an incremental publish of another product)
        jobs += wanted_deltas(product.name, entry, served.get(product.name, {}).get("versions", {}), product.deltas)
    return jobs


# ----------------------------------------------------------------------------------------------
# Purge


def purge_plan(
    tree: TreeConfig, snap: Snapshot, checked: Checked, current_key: str, current: Mapping[str, Any], grace: int,
    include_unpublished: bool = False, only: set[str] | None = None,
) -> tuple[PurgePlan, History]:
    """The purge as it will be once the index names `current_key` (and the history the index then holds).

    The mirrored products the served index records (MIRRORED_KEY) that `current` no longer holds
    are recorded as departed in the replaced catalog's entry: their folders go after the grace
    (retention.departed_mirrored). An incremental publish (`only`) looks at its own products'
    folders only, and at the older catalogs only when one of them has expired versions
    (needs_old_catalogs).
    """
    served_key = snap.served_key
    history = History.from_index(snap.index)
    if served_key and all(e["catalog"] != served_key for e in history.entries):
        # served by an index without our history (first publish over another tool's tree)
        history.entries.append({"catalog": served_key, "since": snap.now, "until": None})
    history.record(current_key, snap.now, departed=served_mirrored(snap.index) - set(current.get("products", {})))
    catalogs: dict[str, Mapping[str, Any]] = {}
    if needs_old_catalogs(tree, snap.products, snap.now, only, checked.recorded):
        catalogs = {k: c for k, c in snap.catalogs.items() if k != current_key}
        if snap.served is not None and served_key and served_key != current_key:
            catalogs.setdefault(served_key, snap.served)
    catalogs[current_key] = current
    # Catalogs found gone leave the history the next index holds. Those this run deletes stay
    # until a later publish finds them gone: if this run stops before deleting them, the next
    # one still knows what they named, and purges it.
    history.forget(snap.catalogs_missing - {current_key})
    plan = plan_purge(tree, expired=checked.expired, kept=checked.kept, withdrawn=checked.withdrawn,
                      current_key=current_key, history=history,
                      catalogs=catalogs, listing=snap.tree_listing, now=snap.now, grace=grace,
                      include_unpublished=include_unpublished, only=only)
    return plan, history


def grace_of(tree: TreeConfig, opts: PlanOptions) -> int:
    return tree.grace if opts.grace is None else opts.grace


def plan_purge_only(tree: TreeConfig, snap: Snapshot, opts: PlanOptions) -> tuple[PurgePlan, Plan | None]:
    """`purge`: the deletion step alone, the served catalog left as it is (None: nothing served),
    with the index (its history updated) to write back: the only view, nothing else is rewritten."""
    if snap.served is None:
        return PurgePlan(), None
    checked = check_products(tree, snap)
    plan, history = purge_plan(tree, snap, checked, snap.served_key, snap.served, grace_of(tree, opts),
                               opts.include_unpublished)
    mirrored = sorted(served_mirrored(snap.index))
    content = Content(tree, snap.served, b"", snap.served_key,
                      {**history.as_field(), **({MIRRORED_KEY: mirrored} if mirrored else {}),
                       **({SIGNED_KEY: True} if served_signed(snap.index) else {}),
                       **({TREE_RECORD: checked.recorded} if checked.recorded else {}),
                       VIEWS_KEY: sorted(served_views(snap.index) or ())})  # the views it leaves as they are
    report = PublishReport(snap.served_key, False, opts.dry_run, {}, 0, [], 0, plan)
    return plan, Plan(dict(snap.served), b"", snap.served_key, history, (index_view(content),), [], [], plan, [], [],
                      report, refused=False, catalog_changed=False)


# ----------------------------------------------------------------------------------------------
# The whole plan


def plan_publish(tree: TreeConfig, snap: Snapshot, opts: PlanOptions, only: set[str] | None = None) -> Plan:
    """Decide everything a publish writes, from what it read. Refused (nothing to write) when a
    problem blames no product, or any problem without keep-going. With opts.withdraw, the version
    leaves the product's ssb.json first (apply_withdrawal; WithdrawError when it cannot)."""
    withdrawn = None
    recorded: Recorded = tree_recorded(snap.index)
    if opts.withdraw is not None:
        snap, withdrawn, recorded = apply_withdrawal(tree, snap, opts.withdraw, opts.force, recorded)
    checked = check_products(tree, snap, recorded)
    with no_gc():
        catalog, kept_previous = assemble(tree, checked, snap, opts, only)
        data = to_bytes(catalog)
    key = tree.layout.catalog_key(data)
    purge, history = purge_plan(tree, snap, checked, key, catalog, grace_of(tree, opts), only=only)
    if withdrawn is not None and withdrawn["version"] in catalog["products"].get(
            withdrawn["product"], {}).get("versions", {}):  # a mirrored product kept its previous entry
        checked.blame(Problem(None, "", f"product {withdrawn['product']}", (
            f"version {withdrawn['version']} would still be served (the problems of the product keep its "
            "previous entry); nothing was withdrawn")))
    changes, added = diff(snap.served, catalog)
    yielding = mirrored_names(tree, snap, opts)
    problems = [p for p in checked.all_problems() if p.product not in yielding]
    checked.warnings.extend(  # a mirrored product never blocks the tree: said, not refused
        f"{p} (mirrored product: {'its previous entry kept' if p.product in kept_previous else 'left out'})"
        for p in checked.all_problems() if p.product in yielding)
    report = PublishReport(
        catalog_key=key, index_written=False, dry_run=opts.dry_run, changes=changes, bytes_added=added,
        products=sorted(catalog["products"]),
        versions=sum(len(p["versions"]) for p in catalog["products"].values()),
        purge=purge, kept_previous=kept_previous, problems=problems, warnings=checked.warnings,
        failed_products=blamed(problems), withdrawn=withdrawn,
        catalogs=None if withdrawn is None else (snap.served or {}, catalog),
    )
    refused = bool(problems) and (not opts.keep_going or None in checked.problems)  # (none of a mirrored product)
    writes = [ManifestWrite(name, read.manifest, read.etag) for name, read in snap.products.items()
              if read.refreshed and read.manifest is not None and name not in checked.problems]
    signing = opts.signing or bool(tree.signing.key)
    content = Content(tree, catalog, data, key, index_extra(tree, catalog, history, signing, recorded), now=snap.now,
                      base_url=opts.base_url or tree.page.base_url, lxc_served=bool(lxc_images(snap.served or {})),
                      served=snap.served, served_views=served_views(snap.index) or frozenset(),
                      listing=snap.tree_listing if only is None else None)
    views = render(content)
    if key == snap.damaged_key:  # what is under our own key is not what the key names: replace it
        views = tuple(replace(view, create_only=False) if view.key == key else view for view in views)
    return Plan(
        catalog=catalog, catalog_bytes=data, catalog_key=key, history=history, views=views,
        manifest_writes=writes, copies=[] if refused else copies(tree, snap, catalog), purge=purge,
        problems=problems, warnings=checked.warnings, report=report, refused=refused,
        catalog_changed=key != snap.served_key or served_views(snap.index) != frozenset(view_keys(views)),
        deltas=[] if refused else deltas_wanted(tree, snap, catalog), flip_index=flip_index(content, views),
        past=past_record(snap, key, catalog, history, purge, opts),
    )


def past_record(snap: Snapshot, current_key: str, current: Mapping[str, Any], history: History, purge: PurgePlan,
                opts: PlanOptions) -> Past | None:
    """The record of the older catalogs (core.past) to write with the catalog `current_key`: those
    the next history names but the catalogs this run's purge deletes; None when one of them is
    neither in memory (read, or served) nor in the record read."""
    deleted = set() if opts.skip_purge else set(purge.old_catalogs)
    keep = {e["catalog"] for e in history.entries} - deleted - {current_key, ""}
    newest_first = [e["catalog"] for e in sorted(history.entries, reverse=True, key=lambda e: (
        e["until"] is None, e["until"] or 0.0))]
    return carry(current_key, current, keep, snap.served_key, snap.served,
                 {} if snap.catalogs_partial else snap.catalogs, newest_first, snap.past)


# ----------------------------------------------------------------------------------------------
# Withdraw


def apply_withdrawal(tree: TreeConfig, snap: Snapshot, withdrawal: Withdrawal, force: bool, recorded: Recorded
                     ) -> tuple[Snapshot, dict[str, Any], Recorded]:
    """The snapshot as if the product's ssb.json already had the version under `withdrawn` (to be
    written back If-Match the ETag it was read with), what was withdrawn, and the tree's own
    withdrawals. A product read from another store (`source:`) is read-only to this tree: its
    ssb.json stays as read, and the record joins `recorded` (withdrawal.TREE_RECORD), which the
    flip writes into index.json. So does a mirrored product's (its ssb.json is rewritten from the
    upstream by every mirror run, which leaves the recorded versions out), whose versions are
    those its served entry holds (core.mirror.recorded_versions: not one someone added to its
    ssb.json since).

    A version already withdrawn that the served catalog still names (a withdraw that stopped
    before its flip) is withdrawn again without a new record: a re-run converges.
    """
    name = withdrawal.product
    product, read = tree.product(name), snap.products.get(name)
    if product.prefix_path:
        raise WithdrawError(f"product {name}: its ssb.json is read from {product.manifest_url}, which ssb-s3 "
                            "does not write; withdraw the version there, then publish")
    if read is None or read.error is not None or read.manifest is None:
        why = read.error.text if read is not None and read.error is not None else "no ssb.json yet"
        raise WithdrawError(f"product {name}: {why}; nothing to withdraw")
    ours: Mapping[str, Any] = recorded.get(name, {})
    served: Mapping[str, Any] = (snap.served or {}).get("products", {}).get(name, {})
    own: Mapping[str, Any] = read.manifest
    if product.mirrored:  # what the tree mirrored (its served entry), not what someone added to ssb.json since
        own = {**own, "versions": recorded_versions(own, served)}
        read = replace(read, manifest=own)
    manifest = with_recorded(own, ours)
    version = resolve(name, withdrawal.selector, manifest, served)
    withdrawn, listed = withdrawn_of(manifest), manifest["versions"]
    was = withdrawn.get(version)
    if was is not None and version not in listed and version not in served.get("versions", {}):
        why = f" ({was['reason']})" if was.get("reason") else ""
        raise WithdrawError(f"product {name}: version {version} was already withdrawn at {was['withdrawn_at']}{why}")
    # a delta whose base is the withdrawn version has nothing left to apply to (core.deltas)
    remaining = without_orphans({k: v for k, v in listed.items() if k != version})
    if not select_versions(remaining, product.days, product.max_age, snap.now)[0] and not force:
        raise WithdrawError(f"product {name}: {version} is the last version it would publish; withdrawing it "
                            "takes the product out of the catalog: add --force to do that")
    found = was or record(listed.get(version) or served["versions"][version], withdrawal.reason, snap.now)
    if read.foreign or product.mirrored:  # read-only, or rewritten by each mirror: this tree's record
        recorded = {**recorded, name: {**ours, version: found}}
    elif was is None or version in listed:  # (else: recorded by a run that stopped before its flip)
        # `own`: as read, not with this tree's records applied
        manifest = {**own, "versions": without_orphans({k: v for k, v in own["versions"].items() if k != version}),
                    WITHDRAWN: {**withdrawn_of(own), version: found}}
        read = replace(read, manifest=manifest, refreshed=True)
    summary = {"product": name, "version": version, "withdrawn_at": found["withdrawn_at"],
               "reason": found.get("reason", ""), "fingerprints": sorted(fingerprints(found["entry"]["items"])),
               "was_served": version in served.get("versions", {})}
    return replace(snap, products={**snap.products, name: read}), summary, recorded
