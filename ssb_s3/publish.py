"""Publish: manifests → checks → catalog → index (with its history) → purge, in the order that never serves
a broken tree.

1. under the tree's lease, read index.json (and its ETag), the catalog it names, and every
   product's ssb.json (from the tree, its `source` store, or its `prefix_path` URL);
2. keep the newest `days` versions (and those younger than max_age), check each manifest against
   its schema, every item path against its product's folder (see `item_path_problems`), and the
   kept versions against the listing (every file exists, declared size);
3. build the catalog and refuse anything a client would drop or choke on; nothing has been
   written up to here, so bad input leaves the published tree untouched (with --keep-going the
   valid products go out and each invalid one keeps its last published entry); a refusal
   (PublishRefused) carries the report, `published` false;
4. copy artifacts of products that live in another bucket into the tree (create-only, and only
   into the product's own folder), with the same progress reporter as build-product's uploads;
5. write the catalog under a new content-addressed key, then the plain images.json copy;
6. flip streams/v1/index.json last, conditionally on the ETag read in step 1 (on a conflict,
   start again, a bounded number of times);
7. the same index.json write records when the previous catalog stopped being current;
8. purge what no catalog current within the grace period names.
A crash anywhere leaves the previous index (and everything it names) in place; a re-run converges.
A failure reports the step that failed first; a lease that then cannot be released is mentioned after it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, cast

from . import httpread
from .catalog import (
    INDEX_KEY,
    INDEX_NAME,
    _path_problem,
    assemble_catalog,
    build_index,
    catalog_key,
    catalog_product,
    contract_problems_by_product,
    no_gc,
    plain_catalog_key,
    to_bytes,
)
from .catalog import _path_problem as path_problem
from .config import ProductConfig, StorageConfig, TreeConfig
from .errors import MAX_LISTED, NotFound, PreconditionFailed, ProblemsFound, SSBError, StoreError, capped
from .ingest import Progress
from .lease import Lease
from .manifest import build_manifest, manifest_bytes, parse_manifest, read_manifest
from .problems import Problem
from .purge import (
    History,
    PurgePlan,
    catalog_paths,
    execute_purge,
    plan_purge,
    read_catalog,
    select_versions,
)
from .store import Store, open_store

log = logging.getLogger(__name__)

ARTIFACT_TYPE = "application/octet-stream"
MAX_INDEX_ATTEMPTS = 5
MANIFEST_LIMITS = httpread.Limits()  # prefix_path fetches: the module constants of ssb_s3.httpread


@dataclass(frozen=True)
class PublishOptions:
    """Everything a publish can be asked; the CLI fills it from flags, tests directly."""

    apikey: str | None = None
    storage: StorageConfig | None = None
    refresh_manifests: bool = False
    rehash: bool = False
    dry_run: bool = False
    keep_going: bool = False
    force: bool = False
    skip_purge: bool = False
    grace: int | None = None  # None: tree.yml's grace
    lock_timeout: float = 600.0
    cloudfront_distribution: str | None = None
    include_unpublished: bool = False  # purge: also expired versions no catalog of ours ever named
    quiet: bool = False  # no progress lines


@dataclass
class TreeState:
    """Everything read and checked before a publish writes anything."""

    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    stores: dict[str, Store] = field(default_factory=dict)  # product name -> where its files are
    kept: dict[str, list[str]] = field(default_factory=dict)
    expired: dict[str, list[str]] = field(default_factory=dict)
    problems: dict[str | None, list[Problem]] = field(default_factory=dict)  # None: not a product's fault
    warnings: list[str] = field(default_factory=list)
    catalog: dict[str, Any] = field(default_factory=dict)
    listings: dict[str, dict[str, int]] = field(default_factory=dict)
    served: Served = field(default_factory=lambda: Served())  # what index.json said when the publish started
    catalog_bytes: bytes = b""
    pending: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)  # refreshed ssb.json, etag

    def blame(self, problem: Problem) -> None:
        self.problems.setdefault(problem.product, []).append(problem)

    def all_problems(self) -> list[Problem]:
        return [p for problems in self.problems.values() for p in problems]


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
            "problem_details": [p.as_dict() for p in self.problems[:MAX_LISTED]],
            "warnings": self.warnings,
            "cloudfront_invalidation": self.invalidation,
            "failed_products": self.failed_products,
        }


class PublishRefused(ProblemsFound):
    """Nothing was published (bad input); carries the report, `published` false, for --json."""

    def __init__(self, what: str, report: PublishReport) -> None:
        super().__init__(what, report.problems)
        self.report = report


def fetch_manifest_url(product: ProductConfig, apikey: str | None, limits: httpread.Limits = MANIFEST_LIMITS) -> bytes:
    """GET <prefix_path>/<directory>/ssb.json with the seed's `Authorization: token` header.

    Bounded by ssb_s3.httpread (deadline, size cap); the token goes to prefix_path's own origin only:
    a redirect elsewhere is followed without it, and an error after it says so.
    """
    url = product.manifest_url
    try:
        return httpread.fetch(url, token=apikey, limits=limits, what="ssb.json")[0]
    except StoreError as exc:
        raise SSBError(f"product {product.name}: {exc}") from None


def version_folder(product_dir: str, version: str) -> str:
    """The folder every item of `version` must lie in, with its trailing '/'."""
    return f"{product_dir}/{version}/"


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


def file_problems(
    manifest: Mapping[str, Any], versions: list[str], listing: Mapping[str, int], store: Store, product: str,
    product_dir: str,
) -> list[Problem]:
    """Every file a kept version names must exist in the listing with the declared size (items whose
    path leaves the product are `item_path_problems`, never looked up)."""
    problems = []
    for vname in versions:
        for key, item in sorted(manifest["versions"][vname].get("items", {}).items()):
            path = item.get("path", "")
            if item_path_problem(path, version_folder(product_dir, vname)):
                continue
            size = listing.get(path)
            where = f"product {product} version {vname} item {key}"
            if size is None:
                problems.append(Problem(product, "", where, f"{store.describe(path)} {store.absent_reason(path)}"))
            elif size != item.get("size"):
                problems.append(Problem(product, "", where,
                                        f"{store.describe(path)} is {size} bytes, ssb.json says {item.get('size')}"))
    return problems


def listing_of(store: Store, prefix: str, cache: dict[str, dict[str, int]]) -> dict[str, int]:
    """One listing per store and prefix and publish: cheaper than one request per product or file."""
    key = f"{store.url}|{prefix}"
    if key not in cache:
        cache[key] = {o.key: o.size for o in store.list(f"{prefix}/" if prefix else "")}
    return cache[key]


MANIFEST_READERS = 16  # manifests are small: many reads in flight hide the latency per request


def read_tree(
    tree: TreeConfig, target: Store, opts: PublishOptions = PublishOptions(), *, now: float | None = None,
    only: set[str] | None = None,
) -> TreeState:
    """Load, select and validate every product (or those in `only`); collects every problem.

    With `only`, nothing of the other products is read or listed: the request count of an
    incremental publish does not grow with the size of the tree.
    """
    state = TreeState()
    now = time.time() if now is None else now
    stores: dict[str, Store] = {}
    selected = [p for p in tree.products if only is None or p.name in only]
    for product in selected:
        if product.source and product.source not in stores:
            stores[product.source] = open_store(product.source, opts.storage or tree.storage)
        state.stores[product.name] = stores[product.source] if product.source else target

    def load(product: ProductConfig) -> tuple[dict[str, Any] | None, str]:
        store = state.stores[product.name]
        try:
            if product.prefix_path:
                return parse_manifest(fetch_manifest_url(product, opts.apikey), product.manifest_url, product), ""
            manifest, etag = read_manifest(store, tree, product)
            if opts.refresh_manifests:  # written only once the whole publish is known to be valid
                fresh, report = build_manifest(store, tree, product, manifest, rehash=opts.rehash)
                if report.changed and (manifest is not None or fresh["versions"]):
                    state.pending[product.name] = (fresh, etag)
                    manifest = fresh
            return manifest, ""
        except SSBError as exc:
            text = str(exc)
            return None, text if product.name in text else f"product {product.name}: {text}"

    with ThreadPoolExecutor(max_workers=MANIFEST_READERS, thread_name_prefix="ssb-read") as pool:
        loaded = list(pool.map(load, selected))
    for product, (manifest, error) in zip(selected, loaded, strict=True):
        store = state.stores[product.name]
        if error:
            state.blame(Problem(product.name, "", "" if product.name in error else f"product {product.name}", error))
            continue
        if manifest is None:
            state.warnings.append(
                f"product {product.name}: no {store.describe(tree.manifest_key(product))} yet "
                "(run build-versions-manifest or publish --refresh-manifests); not published"
            )
            continue
        product_dir = tree.product_dir(product)
        # Before anything reads, lists or copies what the manifest names, whatever its origin.
        for problem in item_path_problems(manifest, product_dir, manifest_location(tree, state, product),
                                          product.name):
            state.blame(problem)
        state.manifests[product.name] = manifest
        kept, expired = select_versions(manifest["versions"], product.days, product.max_age, now)
        state.kept[product.name], state.expired[product.name] = kept, expired
        if product.hidden:
            continue
        if not manifest["versions"]:
            state.warnings.append(f"product {product.name}: no complete version yet; not published")
        scope = tree.prefix if only is None else tree.product_dir(product)
        listing = listing_of(store, scope, state.listings)
        for problem in file_problems(manifest, kept, listing, store, product.name, product_dir):
            state.blame(problem)
    return state


@dataclass(frozen=True)
class Served:
    """What clients are served when a publish starts: index.json (and its ETag) and its catalog."""

    index: bytes = b""
    etag: str = ""
    key: str = ""
    catalog: dict[str, Any] | None = None


def _published(target: Store) -> Served:
    """The served index and catalog; Served() before a first publish.

    An index.json that cannot be used (not JSON, no catalog path, a path that is not a plain
    relative key such as '../../etc/passwd', a catalog missing or unusable) is logged and replaced:
    Served without a key, so the next catalog is written anew and the index flipped to it.
    """
    try:
        data, etag = target.read_with_etag(INDEX_KEY)
    except NotFound:
        return Served()
    try:
        key = httpread.parse_json(data)["index"][INDEX_NAME]["path"]
        why = path_problem(key)
    except (ValueError, KeyError, TypeError):
        why = "not a simplestreams index"
    catalog = None if why else read_catalog(target, key)
    if catalog is None:
        log.warning("%s: unreadable (%s), it will be replaced", target.describe(INDEX_KEY),
                    why or f"the catalog it names, {key}, is missing or unusable")
        return Served(data, etag)
    return Served(data, etag, key, catalog)


def manifest_location(tree: TreeConfig, state: TreeState, product: ProductConfig) -> str:
    """Where a product's ssb.json is read from, as users name it (s3://..., a path, a URL)."""
    if product.prefix_path:
        return product.manifest_url
    store = state.stores.get(product.name)
    return store.describe(tree.manifest_key(product)) if store else tree.manifest_key(product)


def assemble(
    tree: TreeConfig, state: TreeState, previous: Mapping[str, Any] | None, opts: PublishOptions,
    only: set[str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The catalog to publish, plus the products that kept their previous entry (--keep-going).

    With `only`, every other product keeps its published entry as it is (incremental publish).
    """
    old_products: Mapping[str, Any] = (previous or {}).get("products", {})
    entries: dict[str, Any] = {
        p.name: old_products[p.name] for p in tree.products
        if only is not None and p.name not in only and not p.hidden and p.name in old_products
    }  # fmt: skip
    source = "catalog built from the manifests"
    located = {p.name: manifest_location(tree, state, p) for p in tree.products}

    def locate(problem: Problem) -> Problem:
        """Name the ssb.json a contract problem comes from, not the catalog built from it."""
        name = problem.product
        return problem.located(located[name]) if name in located and problem.where == source else problem

    for product in tree.products:
        manifest = state.manifests.get(product.name)
        if product.hidden or (only is not None and product.name not in only):
            continue
        if manifest is None:
            if product.name in old_products and product.name not in state.problems:
                state.blame(Problem(product.name, "", "", (
                    f"product {product.name} is published but its ssb.json is missing ({located[product.name]}): "
                    "restore it, or remove the product from tree.yml to unpublish it")))  # fmt: skip
            continue
        kept = state.kept[product.name]
        if not kept and manifest["versions"] and product.name in old_products and not opts.force:
            state.blame(Problem(product.name, "", f"product {product.name}",
                                "max_age would remove every version; refusing to empty a product without --force"))
        entries[product.name] = catalog_product(product, manifest, kept)
        published = old_products.get(product.name, {}).get("versions", {})
        for vname in (v for v in kept if v in published):
            now_items = entries[product.name]["versions"][vname]["items"]
            for key, was in sorted(published[vname].get("items", {}).items()):
                now = now_items.get(key, {})
                if (was.get("size"), was.get("sha256")) != (now.get("size"), now.get("sha256")):
                    state.blame(Problem(product.name, state.stores[product.name].describe(str(was.get('path'))), "", (
                        f"item {key} of version {vname} changed since it was published ({was.get('size')} -> "
                        f"{now.get('size')} bytes): published files never change; upload a new version instead")))
    # First every product's own new entry, so that every problem is listed at once ...
    first = contract_problems_by_product(assemble_catalog(tree, entries), source, focus=only)
    for name, problems in first.items():
        if name is not None:
            for problem in map(locate, problems):
                if problem not in state.problems.get(name, []):
                    state.blame(problem)
    # ... then without the invalid ones (or with their previous entry), until nothing new is found.
    kept_previous: list[str] = []
    for _ in range(len(tree.products) + 1):
        for name in [n for n in state.problems if n is not None]:
            if opts.keep_going and name in old_products:
                entries[name] = old_products[name]
                if name not in kept_previous:
                    kept_previous.append(name)
            else:
                entries.pop(name, None)
        catalog = assemble_catalog(tree, entries)
        if not state.problems and not first:
            break  # the catalog just checked, unchanged: nothing more to find
        blamed = contract_problems_by_product(catalog, source, focus=only)
        if not catalog["products"] and (opts.force or any(n is not None for n in state.problems)):
            blamed.pop(None, None)  # an empty catalog is a consequence, not another problem
        fresh = {name: p for name, p in blamed.items() if name not in state.problems}
        for problems in fresh.values():
            for problem in problems:
                state.blame(locate(problem))
        if not fresh or not opts.keep_going:
            break
    if old_products and not catalog["products"] and not opts.force and not state.problems:
        state.blame(Problem(None, "", "", "the new catalog would have no product at all: "
                                          "refusing to empty the tree without --force"))
    return catalog, sorted(kept_previous)


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], int]:
    """Per product: versions added and removed; and bytes of files that the new catalog adds."""
    old_products: Mapping[str, Any] = (old or {}).get("products", {})
    changes: dict[str, dict[str, Any]] = {}
    for name in sorted(set(old_products) | set(new["products"])):
        before = set(old_products.get(name, {}).get("versions", {}))
        after = set(new["products"].get(name, {}).get("versions", {}))
        if before != after:
            changes[name] = {"added": sorted(after - before), "removed": sorted(before - after),
                             "versions": len(after)}
    old_paths = catalog_paths(old or {})
    sizes = {
        item["path"]: item["size"]
        for product in new["products"].values()
        for version in product["versions"].values()
        for item in version["items"].values()
    }
    return changes, sum(size for path, size in sizes.items() if path not in old_paths)


def write_manifests(tree: TreeConfig, state: TreeState) -> None:
    """Write the refreshed ssb.json of every valid product (an invalid one keeps its own)."""
    for name, (manifest, etag) in state.pending.items():
        if name in state.problems:
            continue
        key = tree.manifest_key(tree.product(name))
        state.stores[name].write(key, manifest_bytes(manifest), cache_control=tree.cache_control.manifest,
                                 if_match=etag or None, if_none_match=not etag)
        log.info("%s: %s written", name, state.stores[name].describe(key))


class _Counted(io.RawIOBase):
    """A reader that reports how many bytes were read through it (copy progress)."""

    def __init__(self, inner: BinaryIO, count: Callable[[int], None]) -> None:
        self._inner, self._count = inner, count

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        buffer[:len(data)] = data
        self._count(len(data))
        return len(data)


def copy_foreign_artifacts(tree: TreeConfig, target: Store, state: TreeState, catalog: Mapping[str, Any],
                           *, quiet: bool = False) -> list[str]:
    """Products with `source` live in another bucket: clients need their files under our base URL.

    Only into the product's own version folders (read_tree refused the rest; this holds even for
    an entry kept from a catalog published before that check): a path outside them stops the
    copy before anything is written. One progress reporter over every file (those already there
    count as done): a long copy prints a line every few seconds off a terminal."""
    wanted: dict[str, tuple[Store, int]] = {}  # path -> where it is, its size (two items may share a path)
    for name, store in state.stores.items():
        if store is target or name not in catalog["products"]:
            continue
        product_dir = tree.product_dir(tree.product(name))
        for vname, version in catalog["products"][name]["versions"].items():
            for key, item in version["items"].items():
                why = item_path_problem(item["path"], version_folder(product_dir, vname))
                if why:
                    raise StoreError(f"product {name} version {vname} item {key}: {why}: refusing to copy it "
                                     f"from {store.url} into {target.url}")
                wanted.setdefault(item["path"], (store, item["size"]))
    copied = []
    with Progress(sum(size for _, size in wanted.values()), f"copying into {target.url}", files=len(wanted),
                  quiet=quiet) as progress:
        for path, (store, size) in wanted.items():
            there = target.head(path)
            if there is None:
                log.info("copying %s -> %s", store.describe(path), target.describe(path))
                with store.open_reader(path) as reader:
                    target.upload(path, cast(BinaryIO, _Counted(reader, progress)), content_type=ARTIFACT_TYPE,
                                  cache_control=tree.cache_control.artifacts)
                copied.append(path)
            elif there.size != size:
                raise StoreError(
                    f"{target.describe(path)} exists with {there.size} bytes but "
                    f"{store.describe(path)} has {size}: refusing to overwrite"
                )
            else:
                progress(size)
            progress.file_done()
    return copied


def write_catalog(tree: TreeConfig, target: Store, data: bytes) -> str:
    """Write the catalog bytes under their content-addressed key (create-only) and the plain copy."""
    key = catalog_key(tree, data)
    # Same key means same content: if another publisher (or a crashed run) wrote it first, fine.
    with contextlib.suppress(PreconditionFailed):
        target.write(key, data, cache_control=tree.cache_control.catalog,
                     if_none_match=tree.storage.conditional_writes)
    target.write(plain_catalog_key(tree), data, cache_control=tree.cache_control.images_json)
    return key


def flip_index(tree: TreeConfig, target: Store, catalog: Mapping[str, Any], key: str, served: Served,
               history: History) -> bool:
    """Point index.json at the new catalog, If-Match the ETag read at the start (PreconditionFailed
    if another publisher flipped it meanwhile); False if it already says exactly this."""
    data = to_bytes(build_index(tree, catalog, key, history.as_field()))
    if served.index == data:
        return False
    conditional = tree.storage.conditional_writes
    try:
        target.write(
            INDEX_KEY, data, cache_control=tree.cache_control.index,
            if_match=(served.etag or None) if conditional else None,
            if_none_match=conditional and not served.etag,
        )  # fmt: skip
    except PreconditionFailed:
        if target.read(INDEX_KEY) != data:
            raise
        # our flip was applied, its response lost: the retry met it
    return True


def _purge_plan(
    tree: TreeConfig, target: Store, state: TreeState, current_key: str, current: Mapping[str, Any],
    now: float, grace: int, include_unpublished: bool = False, only: set[str] | None = None,
) -> tuple[PurgePlan, History]:
    """Plan the purge as it will be once the index names `current_key` (history updated in memory).

    An incremental publish (`only`) looks at its own products' folders only, and reads the old
    catalogs only when one of them has expired versions: its request count stays flat.
    """
    served_key = state.served.key
    history = History.from_index(state.served.index)
    if served_key and all(e["catalog"] != served_key for e in history.entries):
        # served by an index without our history (first publish over another tool's tree)
        history.entries.append({"catalog": served_key, "since": now, "until": None})
    history.record(current_key, now)
    catalogs: dict[str, Any] = {}
    names_missing: set[str] = set()
    if only is None or any(state.expired.get(name) for name in only):
        names = ({e["catalog"] for e in history.entries} | {served_key}) - {"", current_key}
        if state.served.catalog is not None and served_key in names:
            catalogs[served_key] = state.served.catalog  # read at the start already
        catalogs.update({k: c for k in names - set(catalogs) if (c := read_catalog(target, k)) is not None})
        names_missing = names - set(catalogs)
    catalogs[current_key] = current
    # Catalogs found gone leave the history the next index holds. Those this run deletes stay
    # until a later publish finds them gone: if this run stops before deleting them, the next
    # one still knows what they named, and purges it.
    history.forget(names_missing - {current_key})
    if only is None:
        listing = listing_of(target, tree.prefix, state.listings)
    else:
        listing = {k: v for scope, found in state.listings.items() if scope.startswith(f"{target.url}|")
                   for k, v in found.items()}
    plan = plan_purge(tree, expired=state.expired, kept=state.kept, current_key=current_key, history=history,
                      catalogs=catalogs, listing=listing, now=now, grace=grace,
                      include_unpublished=include_unpublished)
    return plan, history


def _plan(
    tree: TreeConfig, target: Store, opts: PublishOptions, now: float, only: set[str] | None = None
) -> tuple[TreeState, PublishReport, History]:
    """Read everything and decide; returns (state, report, history to write)."""
    served = _published(target)
    previous = served.catalog
    state = read_tree(tree, target, opts, now=now, only=only)
    with no_gc():
        catalog, kept_previous = assemble(tree, state, previous, opts, only)
    state.catalog = catalog
    state.served = served
    with no_gc():
        state.catalog_bytes = to_bytes(catalog)
    key = catalog_key(tree, state.catalog_bytes)
    grace = tree.grace if opts.grace is None else opts.grace
    purge_plan, history = _purge_plan(tree, target, state, key, catalog, now, grace, only=only)
    changes, added = diff(previous, catalog)
    report = PublishReport(
        catalog_key=key, index_written=False, dry_run=opts.dry_run, changes=changes, bytes_added=added,
        products=sorted(catalog["products"]),
        versions=sum(len(p["versions"]) for p in catalog["products"].values()),
        purge=purge_plan, kept_previous=kept_previous, problems=state.all_problems(), warnings=state.warnings,
        failed_products=sorted(name for name in state.problems if name is not None),
    )
    return state, report, history


def _lease(tree: TreeConfig, target: Store, timeout: float, purpose: str) -> Lease:
    return Lease(target, ttl=tree.lease_ttl, timeout=timeout, purpose=purpose,
                 conditional=tree.storage.conditional_writes)


def publish(
    tree: TreeConfig, target: Store, opts: PublishOptions = PublishOptions(), only: set[str] | None = None
) -> PublishReport:
    """Publish the tree (see the module docstring); raises ProblemsFound if nothing could be published.

    `only`: an incremental publish of these products; every other product keeps its published
    entry, and nothing of theirs is read or listed.
    """
    unknown = sorted((only or set()) - {p.name for p in tree.products})
    if unknown:
        raise SSBError(f"{tree.source_file}: no product named {', '.join(unknown)}")
    if opts.dry_run:
        state, report, _ = _plan(tree, target, opts, time.time(), only)
        if state.problems and (not opts.keep_going or None in state.problems):
            raise PublishRefused("publish would be refused", report)
        return report
    conditional = tree.storage.conditional_writes
    with _lease(tree, target, opts.lock_timeout, "publish") as lease:
        for attempt in range(1, MAX_INDEX_ATTEMPTS + 1):
            state, report, history = _plan(tree, target, opts, time.time(), only)
            for warning in state.warnings:
                log.warning("%s", warning)
            if state.problems and (not opts.keep_going or None in state.problems):
                raise PublishRefused("publish refused, nothing was written", report)
            try:
                write_manifests(tree, state)
            except PreconditionFailed:
                log.warning("an ssb.json changed during the publish (attempt %d), starting again", attempt)
                continue
            opts = replace(opts, refresh_manifests=False)  # manifests are fresh after this round
            report.copied = copy_foreign_artifacts(tree, target, state, state.catalog, quiet=opts.quiet)
            if report.catalog_key != state.served.key:
                write_catalog(tree, target, state.catalog_bytes)
            lease.check()
            try:
                report.index_written = flip_index(tree, target, state.catalog, report.catalog_key, state.served,
                                                  history)
            except PreconditionFailed:
                log.warning("index.json changed during the publish (attempt %d), starting again", attempt)
                continue
            if not opts.skip_purge:
                lease.check()
                execute_purge(tree, target, report.purge, manifest_stores=state.stores, conditional=conditional)
            if report.index_written and opts.cloudfront_distribution:
                from .cdn import invalidate_index

                report.invalidation = invalidate_index(opts.cloudfront_distribution, tree, target, opts.storage)
            log.info(
                "published %d products, %d versions: %s -> %s%s", len(report.products), report.versions,
                target.describe(INDEX_KEY), report.catalog_key, "" if report.index_written else " (unchanged)",
            )
            report.published = True
            return report
    raise StoreError(
        f"{target.describe(INDEX_KEY)}: another publisher changed it {MAX_INDEX_ATTEMPTS} times in a row; try again"
    )


def purge(tree: TreeConfig, target: Store, opts: PublishOptions = PublishOptions()) -> PurgePlan:
    """Only the deletion step: what retention expired and no catalog within the grace names.

    The served catalog is left as it is; versions it still names are never deleted.
    """
    def plan(now: float) -> tuple[PurgePlan, History, TreeState]:
        served = _published(target)
        if served.catalog is None:
            raise SSBError(f"{target.describe(INDEX_KEY)}: nothing published yet, nothing to purge")
        state = read_tree(tree, target, opts, now=now)
        state.served = served
        grace = tree.grace if opts.grace is None else opts.grace
        purge_plan, history = _purge_plan(tree, target, state, served.key, served.catalog, now, grace,
                                          opts.include_unpublished)
        return purge_plan, history, state

    if opts.dry_run:
        return plan(time.time())[0]
    with _lease(tree, target, opts.lock_timeout, "purge") as lease:
        purge_plan, history, state = plan(time.time())
        lease.check()
        execute_purge(tree, target, purge_plan, manifest_stores=state.stores,
                      conditional=tree.storage.conditional_writes)
        if state.served.catalog is not None:
            with contextlib.suppress(PreconditionFailed):  # a publish meanwhile: it records its own
                flip_index(tree, target, state.served.catalog, state.served.key, state.served, history)
    return purge_plan


def dump_json(document: Mapping[str, Any]) -> str:
    """Human-readable JSON for --stdout and --json."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)
