"""The tree's keys and its served state: the I/O half of the core (ssb_s3.core.plan is the pure half).

The only code that reads index.json and the catalogs it names (or, for an incremental publish, the
record of the older ones, ssb_s3.core.past), reads the products' ssb.json for a publish and does the
read-modify-write of ssb.json, writes the views (ssb_s3.core.views) and flips the index. It writes
through the store's write path (ssb_s3.storage.store: `put_new`, `replace`, `put`), which alone
turns `storage.conditional_writes` into request headers.

Invariants: a snapshot is read before anything is written; signed views (ssb_s3.core.signed) are
signed before anything is written; views are written (concurrently: they are independent of each
other, and so is the record of the older catalogs) before the flip, streams/v1/index.sjson after
every other view (it names the signed catalog), the index last and only If-Match the ETag the
snapshot read (If-None-Match when there was none); ssb.json is only ever written If-Match the ETag
it was read with, so no concurrent update is lost.
A `source:` store (another folder or bucket, which other trees may read too) is read-only to a
publish: --refresh-manifests uses its ssb.json as it is, and says which versions its folders hold
that it does not list, and a withdrawal is the tree's record (core.withdrawal.TREE_RECORD). Only
commands that name it on purpose write there (build-versions-manifest, build-product, the hooks'
manifest_on_upload), through refresh_manifest / update_manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from ..config import ProductConfig, StorageConfig, TreeConfig
from ..core.catalog import _path_problem, addressed_content_problem, index_catalog_path
from ..core.deltas import without_orphans
from ..core.past import MAX_PAST_BYTES, Past, partial_catalogs
from ..core.plan import ABSENT, Plan, ProductRead, Snapshot, needs_old_catalogs
from ..core.retention import History, PurgePlan, shape_problem
from ..core.signed import is_signed_index, signing_requests
from ..core.views import View, addressed
from ..core.withdrawal import tree_recorded, withdrawn_of
from ..errors import BudgetSpent, ManifestError, NotFound, PreconditionFailed, SSBError, StoreError, Unreachable
from ..gpg import Signer
from ..progress import Progress
from ..vocabulary.layout import INDEX_KEY, MANIFEST_NAME, PAST_KEY, SIGNED_INDEX_KEY
from ..vocabulary.problems import Problem
from . import httpread
from .backends import open_store
from .lease import Lease
from .manifest import ManifestReport, build_manifest, manifest_bytes, parse_manifest, read_manifest, scan_versions
from .store import Store
from .verified import Fingerprints

log = logging.getLogger(__name__)

ARTIFACT_TYPE = "application/octet-stream"
MANIFEST_READERS = 16  # manifests are small: many reads in flight hide the latency per request
VIEW_WRITERS = 16  # views written at once (a full publish may write thousands of product pages)
MANIFEST_LIMITS = httpread.Limits()  # prefix_path fetches: the module constants of ssb_s3.storage.httpread


@dataclass(frozen=True)
class RunOptions:
    """How one run reads, writes and reports: never a decision of the plan (core.plan.PlanOptions)."""

    apikey: str | None = None  # prefix_path products: the seed's `Authorization: token`
    storage: StorageConfig | None = None  # None: tree.yml's storage
    refresh_manifests: bool = False  # the read rebuilds each product's ssb.json from its folders
    rehash: bool = False  # ... hashing every file again
    # these products' ssb.json rebuilt from their folders by the read, written by the publish's own
    # manifest_writes (under its lease, If-Match), a `source`'s too: named on purpose by the hooks'
    # manifest_on_upload, the one caller that writes a source's ssb.json during a publish
    refresh_products: frozenset[str] = frozenset()
    lock_timeout: float = 600.0
    cloudfront_distribution: str | None = None
    quiet: bool = False  # no progress lines
    sign_key: str | None = None  # publish --sign-key: signed streams with this key (over tree.yml's signing.key)
    local_files: tuple[tuple[str, str], ...] = ()  # (store key, local file with its content): build-product's


@dataclass(frozen=True)
class ServedRead:
    """What Tree.served read: index.json, its ETag, the catalog key it names and that catalog, and
    the key of a damaged catalog of ours it names ("": none). Read once under a lease, it may be
    given to the snapshot of the publish under the same lease (commands.mirror)."""

    index: bytes
    etag: str
    key: str
    catalog: dict[str, Any] | None
    damaged_key: str = ""


def fetch_manifest_url(product: ProductConfig, apikey: str | None, limits: httpread.Limits = MANIFEST_LIMITS) -> bytes:
    """GET <prefix_path>/<directory>/ssb.json with the seed's `Authorization: token` header.

    Bounded by ssb_s3.storage.httpread (deadline, size cap); the token goes to prefix_path's own origin only:
    a redirect elsewhere is followed without it, and an error after it says so.
    """
    url = product.manifest_url
    try:
        return httpread.fetch(url, token=apikey, limits=limits, what=MANIFEST_NAME)[0]
    except (StoreError, Unreachable) as exc:  # one product's source: its problem, the others go on
        raise SSBError(f"product {product.name}: {exc}") from None


def update_manifest(
    store: Store,
    tree: TreeConfig,
    product: ProductConfig,
    change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    *,
    what: str,
    attempts: int = 10,
    read: tuple[dict[str, Any] | None, str] | None = None,
) -> bool:
    """The one way ssb.json is changed: read it, apply `change`, write it back If-Match its ETag
    (If-None-Match when new; Store.replace); on a conflict re-read and redo, so no concurrent update
    is lost. `read`: (ssb.json, its ETag) as the caller already read it, used by the first attempt
    instead of reading it again.

    `change` gets the current manifest (None if there is none) and returns the new one, or None
    when there is nothing to write. Returns whether something was written.
    """
    key = tree.manifest_key(product)
    for _ in range(attempts):
        current, etag = read if read is not None else read_manifest(store, tree, product)
        read = None
        new = change(current)
        if new is None:
            return False
        try:
            store.replace(key, manifest_bytes(new), etag, cache_control=tree.cache_control.manifest)
            return True
        except PreconditionFailed:
            log.info("%s: ssb.json changed meanwhile (another writer), %s again", product.name, what)
    raise ManifestError(f"{store.describe(key)}: changed by someone else {attempts} times in a row while {what}")


def refresh_manifest(
    store: Store,
    tree: TreeConfig,
    product: ProductConfig,
    *,
    rehash: bool = False,
    attempts: int = 5,
) -> ManifestReport:
    """Bring <directory>/ssb.json up to date with the version folders (only new versions hashed)."""
    reports: list[ManifestReport] = []

    def rebuilt(existing: dict[str, Any] | None) -> dict[str, Any] | None:
        manifest, report = build_manifest(store, tree, product, existing, rehash=rehash)
        reports.append(report)
        if not report.changed or (existing is None and not manifest["versions"]):
            return None  # nothing new, or nothing at all: no empty ssb.json is created
        return manifest

    if update_manifest(store, tree, product, rebuilt, what="rebuilding it", attempts=attempts):
        report = reports[-1]
        log.info(
            "%s: ssb.json written (%d hashed, %d reused, %d removed)",
            product.name, len(report.hashed), len(report.reused), len(report.removed),
        )
    return reports[-1]


def read_catalog(store: Store, key: str) -> dict[str, Any] | None:
    """The catalog at `key`, or None (with a warning) when it is missing or cannot be used.

    Unusable: a key that is not a plain relative path (never sent to the store), not JSON, nested
    too deeply, not an object whose products/versions/items are objects with string paths, or a
    content-addressed catalog whose bytes no longer hash to its name (changed after it was written).
    A store that fails (StoreError) still raises: a transient outage must not pass for "no catalog".
    """
    why = _path_problem(key)
    if why:
        log.warning("catalog %r: %s; ignored", key, why)
        return None
    try:
        raw = store.read(key)
        catalog = httpread.parse_json(raw, store.describe(key))
    except NotFound:
        return None
    except ValueError as exc:
        log.warning("%s: not valid JSON (%s), ignored", store.describe(key), exc)
        return None
    why = shape_problem(catalog) or addressed_content_problem(key, raw)
    if why:
        log.warning("%s: %s, ignored", store.describe(key), why)
        return None
    return cast(dict[str, Any], catalog)


def listing_of(store: Store, prefix: str, cache: dict[str, dict[str, int]]) -> dict[str, int]:
    """One listing per store and prefix and publish: cheaper than one request per product or file."""
    key = f"{store.url}|{prefix}"
    if key not in cache:
        cache[key] = {o.key: o.size for o in store.list(f"{prefix}/" if prefix else "")}
    return cache[key]



def absent_reasons(store: Store, manifest: Mapping[str, Any] | None, listing: Mapping[str, int] | None
                   ) -> dict[str, str]:
    """Why each file `manifest` names is not in `listing`, when the store says more than that it
    does not exist (a local folder: a symlink out of its bounds, a FIFO ...): read here, so that the
    plan never asks the store (core.plan: the same Snapshot gives the same Plan)."""
    if manifest is None or listing is None:
        return {}
    reasons: dict[str, str] = {}
    for version in manifest.get("versions", {}).values():
        for item in version.get("items", {}).values():
            path = item.get("path")
            if isinstance(path, str) and path not in listing and path not in reasons:
                reasons[path] = store.absent_reason(path)
    return {path: why for path, why in reasons.items() if why != ABSENT}


class Tree:
    """A tree (tree.yml) over its target store: reads snapshots, commits plans."""

    def __init__(self, config: TreeConfig, target: Store, opts: RunOptions | None = None,
                 prepared: Mapping[str, Mapping[str, Any]] | None = None, *, withdrawing: bool = False,
                 sources: Mapping[str, Store] | None = None) -> None:
        self.config, self.target, self.opts = config, target, opts or RunOptions()
        self.withdrawing = withdrawing  # a withdraw's snapshot reads every older catalog (its purge names them)
        # product -> its new ssb.json, decided by the caller (`mirror`): written back like a
        # refreshed one, If-Match the ETag read here, once the whole publish is known valid
        self.prepared = dict(prepared or {})
        self.stores: dict[str, Store] = {}  # product name -> where its files are
        self._sources: dict[str, Store] = dict(sources or {})  # a `source` URL -> its store, opened by the caller
        self.damaged_key = ""  # set by served(): the catalog index.json names, found unusable

    def store_of(self, product: ProductConfig) -> Store:
        if not product.source:
            return self.target
        if product.source not in self._sources:
            self._sources[product.source] = open_store(product.source, self.opts.storage or self.config.storage)
        return self._sources[product.source]

    def manifest_location(self, product: ProductConfig) -> str:
        """Where a product's ssb.json is read from, as users name it (s3://..., a path, a URL)."""
        if product.prefix_path:
            return product.manifest_url
        return self.store_of(product).describe(self.config.manifest_key(product))

    # -- reading --------------------------------------------------------------------------------

    def served(self) -> tuple[bytes, str, str, dict[str, Any] | None]:
        """(index.json, its ETag, the catalog key it names, that catalog); empty before a first publish.

        An index.json that cannot be used (not JSON, no catalog path, a path that is not a plain
        relative key such as '../../etc/passwd', a catalog missing or unusable) is logged and
        replaced: no key, so the next catalog is written anew and the index flipped to it; a
        damaged catalog under a key of ours (`damaged_key`) is overwritten by the plan's.
        """
        self.damaged_key = ""
        try:
            data, etag = self.target.read_with_etag(INDEX_KEY)
        except NotFound:
            return b"", "", "", None
        try:
            key, why = index_catalog_path(httpread.parse_json(data, self.target.describe(INDEX_KEY)))
        except ValueError:
            key, why = "", "not a simplestreams index"
        catalog = None if why else read_catalog(self.target, key)
        if catalog is None:
            log.warning("%s: unreadable (%s), it will be replaced", self.target.describe(INDEX_KEY),
                        why or f"the catalog it names, {key}, is missing or unusable")
            self.damaged_key = "" if why else key
            return data, etag, "", None
        return data, etag, key, catalog

    def served_read(self) -> ServedRead:
        """Tree.served as one value."""
        index, etag, key, catalog = self.served()
        return ServedRead(index, etag, key, catalog, self.damaged_key)

    def _load(self, product: ProductConfig, refresh: bool
              ) -> tuple[dict[str, Any] | None, str, Problem | None, bool, tuple[str, ...]]:
        """(manifest, its etag, why it could not be read, whether it was rebuilt by --refresh-manifests,
        the versions its folders hold that it does not list: a `source:` product, never rebuilt)."""
        store = self.store_of(product)
        try:
            if product.prefix_path:
                data = fetch_manifest_url(product, self.opts.apikey)
                return parse_manifest(data, product.manifest_url, product), "", None, False, ()
            manifest, etag = read_manifest(store, self.config, product)
            if product.name in self.prepared:
                fresh = dict(self.prepared[product.name])
                return fresh, etag, None, fresh != manifest, ()
            if refresh and store is not self.target and product.name not in self.opts.refresh_products:
                # a source is read-only: its ssb.json used as it is
                complete = scan_versions(store, self.config.product_dir(product))[0]
                listed = {*(manifest or {}).get("versions", {}), *withdrawn_of(manifest or {})}
                return manifest, etag, None, False, tuple(sorted(set(complete) - listed))
            if refresh or product.name in self.opts.refresh_products:  # written once the publish is known valid
                fresh, report = build_manifest(store, self.config, product, manifest, rehash=self.opts.rehash)
                if report.changed and (manifest is not None or fresh["versions"]):
                    return fresh, etag, None, True, ()
            return manifest, etag, None, False, ()
        except (BudgetSpent, Unreachable):
            raise  # the run's, not this product's: the publish stops
        except SSBError as exc:
            text = str(exc)
            return None, "", Problem(product.name, "", "" if product.name in text else f"product {product.name}",
                                     text), False, ()

    def snapshot(self, now: float, only: set[str] | None = None, *, refresh: bool = False,
                 read_served: bool = True, need_served: bool = False, served: ServedRead | None = None) -> Snapshot:
        """Read what a plan needs: the served index and catalog, every product's (or those in
        `only`) ssb.json and listing, the tree's listing and the older catalogs the purge needs.

        With `only`, nothing of the other products is read or listed: the request count of an
        incremental publish does not grow with the size of the tree. The served index and catalog
        are read while the manifests are being read (but first when `need_served`: a purge with
        nothing published reads no manifest). What its documents cost the run's parse budget is given
        back once the snapshot is dropped (a publish that starts again reads a new one). `served`:
        the served index and catalog as the caller read them under the lease it holds (not read again).
        """
        budget = httpread.run_budget()
        spent = budget.spent
        nothing: tuple[bytes, str, str, dict[str, Any] | None] = (b"", "", "", None)
        given = served
        if given is not None:
            self.damaged_key = given.damaged_key
            nothing = (given.index, given.etag, given.key, given.catalog)
        if need_served:
            index, etag, served_key, catalog = self.served() if given is None else nothing
            if catalog is None:
                raise SSBError(f"{self.target.describe(INDEX_KEY)}: nothing published yet, nothing to purge")
        selected = [p for p in self.config.products if only is None or p.name in only]
        for product in selected:
            self.stores[product.name] = self.store_of(product)
        with ThreadPoolExecutor(max_workers=MANIFEST_READERS, thread_name_prefix="ssb-read") as pool:
            # an incremental publish reads the record of the older catalogs (core.past), not them
            reading_past = pool.submit(self.past) if only is not None and read_served else None
            pending = pool.map(lambda p: self._load(p, refresh), selected)  # the manifests are read meanwhile
            if not need_served:
                index, etag, served_key, catalog = self.served() if read_served and given is None else nothing
            loaded = list(pending)
            past = reading_past.result() if reading_past is not None else None
        if past is not None and (not served_key or past.served != served_key):
            past = None  # written for another catalog (a publish that stopped before its flip): not used
        listings: dict[str, dict[str, int]] = {}
        products: dict[str, ProductRead] = {}
        for product, (manifest, manifest_etag, error, refreshed, behind) in zip(selected, loaded, strict=True):
            store = self.stores[product.name]
            listing = None
            if manifest is not None and not product.hidden:
                scope = self.config.prefix if only is None else self.config.product_dir(product)
                listing = listing_of(store, scope, listings)
            products[product.name] = ProductRead(
                location=self.manifest_location(product), store_url=store.url, manifest=manifest, error=error,
                listing=listing, refreshed=refreshed, etag=manifest_etag, foreign=store is not self.target,
                behind=behind, absent=absent_reasons(store, manifest, listing))
        if only is None:
            tree_listing = listing_of(self.target, self.config.prefix, listings)
        else:
            tree_listing = {k: v for scope, found in listings.items() if scope.startswith(f"{self.target.url}|")
                            for k, v in found.items()}
        catalogs: dict[str, dict[str, Any]] = {}
        missing: set[str] = set()
        withdrawing = self.withdrawing  # its purge plan names the withdrawn version's files
        partial = False
        if read_served and (withdrawing or needs_old_catalogs(self.config, products, now, only, tree_recorded(index))):
            names = {e["catalog"] for e in History.from_index(index).entries} - {"", served_key}
            if only is not None and past is not None and not withdrawing:
                catalogs = {k: c for k, c in partial_catalogs(past, catalog or {}, only).items() if k in names}
                partial = True
            else:
                catalogs = {k: c for k in names if (c := read_catalog(self.target, k)) is not None}
            missing = names - set(catalogs)
        snap = Snapshot(now=now, index=index, etag=etag, served_key=served_key, served=catalog, products=products,
                        tree_listing=tree_listing, catalogs=catalogs, catalogs_missing=frozenset(missing),
                        damaged_key=self.damaged_key, past=past, catalogs_partial=partial)
        weakref.finalize(snap, budget.refund, budget.spent - spent)
        return snap

    def past(self) -> Past | None:
        """The record of the older catalogs (core.past), or None when there is none or it cannot be
        used (then the catalogs are read: never an error of its own)."""
        try:
            data, _ = self.target.read_limited(PAST_KEY, MAX_PAST_BYTES)
            return Past.from_document(httpread.parse_json(data, self.target.describe(PAST_KEY)))
        except NotFound:
            return None
        except (ValueError, StoreError) as exc:
            log.info("%s: not used (%s); the older catalogs are read instead", self.target.describe(PAST_KEY), exc)
            return None

    # -- committing -----------------------------------------------------------------------------

    def write_manifests(self, plan: Plan) -> None:
        """Write the refreshed ssb.json of every valid product, If-Match the ETag it was read with
        (PreconditionFailed: it changed meanwhile; the publish starts again)."""
        for write in plan.manifest_writes:
            key = self.config.manifest_key(self.config.product(write.product))
            store = self.stores[write.product]
            store.replace(key, manifest_bytes(dict(write.manifest)), write.etag,
                          cache_control=self.config.cache_control.manifest)
            log.info("%s: %s written", write.product, store.describe(key))

    def copy(self, plan: Plan, *, quiet: bool = False) -> list[str]:
        """Copy the files of products that live in another bucket into the tree, create-only (the
        store's one create-only upload: a key created meanwhile by someone else is never overwritten,
        and is then kept only if it has the same size). One progress reporter over every file
        (those already there count as done)."""
        copied = []
        target = self.target
        checked, metas = Fingerprints(), {m for c in plan.copies for m, _, _ in c.combined}  # storage.verified
        with Progress(sum(c.size for c in plan.copies), f"copying into {target.url}", files=len(plan.copies),
                      quiet=quiet) as progress:
            for item in plan.copies:
                store, path = self.stores[item.product], item.path
                there = target.head(path)
                if there is None:
                    log.info("copying %s -> %s", store.describe(path), target.describe(path))
                    sha = hashlib.sha256()
                    try:
                        with store.open_reader(path) as reader:
                            target.put_new(path, checked.reader(item, reader, store.describe(path)), size=item.size,
                                           feed=sha.update, digest=sha.hexdigest, content_type=ARTIFACT_TYPE,
                                           progress=progress, cache_control=self.config.cache_control.artifacts)
                        copied.append(path)
                    except PreconditionFailed:
                        there = target.head(path)  # created meanwhile by someone else: compared below
                if there is not None:
                    if there.size != item.size:
                        raise StoreError(f"{target.describe(path)} exists with {there.size} bytes but "
                                         f"{store.describe(path)} has {item.size}: refusing to overwrite")
                    checked.present(item, target, metas)
                    progress(item.size)
                progress.file_done()
        return copied

    def signed_views(self, plan: Plan, signer: Signer | None) -> tuple[View, ...]:
        """The signed twins of the plan's views (ssb_s3.core.signed), signed now, before anything is
        written: a failing gpg leaves the tree as it was. None when signing is off, or when the
        catalog is unchanged and streams/v1/index.sjson is there already (one HEAD); signing turned
        on over an unchanged catalog signs it."""
        if signer is None or (not plan.catalog_changed and self.target.head(SIGNED_INDEX_KEY) is not None):
            return ()
        requests = signing_requests(self.config, plan.catalog, plan.catalog_bytes, plan.catalog_key, plan.views,
                                    detached=signer.detached)
        return signer.sign(requests)

    def write_views(self, plan: Plan, signed: tuple[View, ...] = ()) -> None:
        """Before the flip: the content-addressed views (the catalog, its companions and signed twin),
        when the catalog changed; create-only (same key means same content, so one written first by
        another publisher or a crashed run is fine). Written concurrently: they are independent of
        each other and the catalog is several MB; the flip comes only after every one succeeded."""
        views = [view for view in plan.views if addressed(view, plan.catalog_key)] if plan.catalog_changed else []
        past = [plan.past] if plan.catalog_changed and plan.past is not None else []
        self._write_all([*views, *(view for view in signed if addressed(view, plan.catalog_key))], past)

    def write_fixed_views(self, plan: Plan, signed: tuple[View, ...] = ()) -> None:
        """After the flip: the product pages to write, then the other fixed-name views (images.json,
        the LXC index, the page that links to those product pages, the signed plain copy),
        concurrently, then the product pages to delete (the page no longer links to them), then
        streams/v1/index.sjson, which names the signed catalog. A failed flip never reaches here, so
        none of them ever shows a catalog that index.json does not serve."""
        fixed = [view for view in plan.views if not view.is_index and not addressed(view, plan.catalog_key)]
        if not plan.catalog_changed:
            fixed = []
        self._write_all([view for view in fixed if view.part and not view.delete])
        self._write_all([*(view for view in fixed if not view.part),
                         *(view for view in signed if not addressed(view, plan.catalog_key)
                           and not is_signed_index(view))])
        self._write_all([view for view in fixed if view.delete])
        for view in signed:
            if is_signed_index(view):
                self._write_one(view)

    def _write_all(self, views: list[View], past: list[Past] | None = None) -> None:
        """`views`, and with them the record of the older catalogs (`past`, core.past)."""
        jobs = len(views) + len(past or ())
        if not jobs:
            return
        with ThreadPoolExecutor(max_workers=min(VIEW_WRITERS, jobs), thread_name_prefix="ssb-view") as pool:
            writes = [pool.submit(self._write_one, view) for view in views]
            writes += [pool.submit(self._write_past, record) for record in past or ()]
            for done in writes:
                done.result()

    def _write_past(self, past: Past) -> None:
        """The record of the older catalogs, before the flip: if the flip fails it names a catalog that
        is not served and is not used. Failing to write it is a warning (the next publish reads the
        catalogs): the old record names the catalog being replaced."""
        try:
            self.target.put(PAST_KEY, past.to_bytes(), cache_control="no-store")
        except StoreError as exc:
            log.warning("%s: not written (%s); the next publish reads the older catalogs", self.target.describe(
                PAST_KEY), exc)

    def _cache(self, view: View) -> str:
        """The Cache-Control a view is written with: tree.yml's for its class, else its own default."""
        return self.config.cache_control.of(view.cache, view.cache_default)

    def _write_one(self, view: View) -> None:
        if view.delete:
            self.target.delete(view.key)
            return
        cache = self._cache(view)
        if view.create_only:
            with contextlib.suppress(PreconditionFailed):
                self.target.put_new(view.key, view.body(), content_type=view.content_type, cache_control=cache)
        else:
            self.target.put(view.key, view.body(), content_type=view.content_type, cache_control=cache)

    def write_view(self, view: View) -> None:
        """One view, unconditionally (build-images-file, build-index: the seed's step-by-step commands)."""
        self.target.put(view.key, view.data, content_type=view.content_type, cache_control=self._cache(view))

    def flip(self, snap: Snapshot, plan: Plan) -> str | None:
        """Point index.json at the plan's catalog (Plan.flipped_index), If-Match the ETag the snapshot
        read (PreconditionFailed if another publisher flipped it meanwhile). Returns the ETag of the
        index written, None if it already said this."""
        return self._write_index(plan.flipped_index, snap.index, snap.etag)

    def settle(self, snap: Snapshot, plan: Plan, flipped: str | None) -> bool:
        """After the fixed-name views: index.json again, now recording them (views.flip_index),
        If-Match the ETag the flip wrote (or the snapshot's, when the flip found it written already).
        Returns whether it wrote. Lost to another writer: a warning; the next publish records them."""
        if plan.flipped_index is plan.index:
            return False
        current, etag = (plan.flipped_index.data, flipped) if flipped is not None else (snap.index, snap.etag)
        try:
            return self._write_index(plan.index, current, etag) is not None
        except PreconditionFailed:
            log.warning("%s changed right after the flip (another writer): the next publish records the views",
                        self.target.describe(INDEX_KEY))
            return False

    def _write_index(self, view: View, current: bytes, etag: str) -> str | None:
        if current == view.data:
            return None
        try:
            return self.target.replace(view.key, view.data, etag, content_type=view.content_type,
                                       cache_control=self._cache(view))
        except PreconditionFailed:
            data, now = self.target.read_with_etag(view.key)
            if data != view.data:
                raise
            return now  # our write was applied, its response lost: the retry met it

    def purge(self, plan: PurgePlan, *, past_written: bool = False) -> None:
        """Delete in an order that converges after a crash: files, then the manifest entry, then catalogs
        (before them, the record of the older catalogs, unless this run wrote one without them:
        `past_written`)."""
        target = self.target
        by_product: dict[tuple[str, str], set[str]] = {}  # (product, its folder) -> versions purged
        for item in plan.delete_now:
            log.info("purging %s (%s)", target.describe(item.folder), item.reason)
            for obj in list(target.list(item.folder + "/")):
                target.delete(obj.key)
            by_product.setdefault((item.product, item.folder.rpartition("/")[0]), set()).add(item.version)
        declared = {p.name: p for p in self.config.products}
        for (name, folder), versions in by_product.items():
            product = declared.get(name) or self._departed(name, folder)
            if (self.stores.get(name) is target or name not in declared) and not product.prefix_path:
                update_manifest(target, self.config, product, _without(versions), what="purging")
        if plan.old_catalogs and not past_written:
            target.delete(PAST_KEY)  # it may list them: read the catalogs next time (core.past)
        for key in plan.old_catalogs:  # found gone by the next publish, which forgets them
            target.delete(key)

    def _departed(self, name: str, folder: str) -> ProductConfig:
        """A mirrored product that left the catalog (retention.departed_mirrored), enough to name its
        ssb.json in `folder`, beside the version folders purged."""
        directory = self.config.layout.directory_of(folder)
        return ProductConfig(name=name, arch="", release="", os="", directory=directory, release_title="")

    def lease(self, timeout: float, purpose: str) -> Lease:
        return Lease(self.target, ttl=self.config.lease_ttl, timeout=timeout, purpose=purpose)


def _without(versions: set[str]) -> Callable[[dict[str, Any] | None], dict[str, Any] | None]:
    """An ssb.json change that removes purged versions (and the deltas against them)."""
    def change(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
        if manifest is None or not versions & set(manifest["versions"]):
            return None
        return {**manifest, "versions": without_orphans(
            {k: v for k, v in manifest["versions"].items() if k not in versions})}
    return change

