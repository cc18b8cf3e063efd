"""Publish: manifests → checks → catalog → index, in the order that never serves a broken tree.

1. read every product's ssb.json (from the tree, its `source` store, or its `prefix_path` URL);
2. check each against its schema and against the listing (every file exists, declared size);
3. build the catalog and refuse anything a client would drop or choke on;
   nothing has been written up to here, so bad input leaves the published tree untouched;
4. copy artifacts of products that live in another bucket into the tree (create-only);
5. write the catalog under a new content-addressed key, then the plain images.json copy;
6. flip streams/v1/index.json last, conditionally on the ETag read at the start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .catalog import (
    INDEX_KEY,
    build_catalog,
    build_index,
    catalog_key,
    contract_problems,
    plain_catalog_key,
    to_bytes,
)
from .config import ProductConfig, StorageConfig, TreeConfig
from .errors import NotFound, PreconditionFailed, ProblemsFound, SSBError, StoreError
from .manifest import parse_manifest, read_manifest, refresh_manifest
from .store import Store, open_store

log = logging.getLogger(__name__)

IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=60"
NO_CACHE = "no-cache"
ARTIFACT_TYPE = "application/octet-stream"
MAX_INDEX_ATTEMPTS = 5


@dataclass
class TreeState:
    """Everything read and checked before a publish writes anything."""

    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    stores: dict[str, Store] = field(default_factory=dict)  # product name -> where its files are
    catalog: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class PublishResult:
    """What a publish did, for the CLI's summary and for tests."""

    catalog_key: str
    index_written: bool
    products: list[str]
    versions: int
    copied: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def fetch_manifest_url(product: ProductConfig, apikey: str | None) -> bytes:
    """GET <prefix_path>/<directory>/ssb.json with the seed's `Authorization: token` header."""
    url = f"{product.prefix_path}/{product.directory}/ssb.json"
    request = urllib.request.Request(url, headers={"User-Agent": "ssb-s3"})
    if apikey:
        request.add_header("Authorization", f"token {apikey}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        raise SSBError(f"product {product.name}: {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SSBError(f"product {product.name}: {url}: cannot fetch ssb.json: {reason}") from None


def file_problems(
    manifest: Mapping[str, Any], listing: Mapping[str, int], store: Store, product: str
) -> list[str]:
    """Every file the manifest names must exist in the listing with the declared size."""
    problems = []
    for vname, version in sorted(manifest.get("versions", {}).items()):
        for key, item in sorted(version.get("items", {}).items()):
            path = item.get("path", "")
            size = listing.get(path)
            where = f"product {product} version {vname} item {key}"
            if size is None:
                problems.append(f"{where}: {store.describe(path)} does not exist")
            elif size != item.get("size"):
                problems.append(
                    f"{where}: {store.describe(path)} is {size} bytes, ssb.json says {item.get('size')}"
                )
    return problems


def _listing(store: Store, prefix: str, cache: dict[str, dict[str, int]]) -> dict[str, int]:
    """One listing per store and publish: cheaper than one request per product or per file."""
    if store.url not in cache:
        cache[store.url] = {o.key: o.size for o in store.list(f"{prefix}/" if prefix else "")}
    return cache[store.url]


def read_tree(
    tree: TreeConfig,
    target: Store,
    *,
    apikey: str | None = None,
    storage: StorageConfig | None = None,
    refresh_manifests: bool = False,
    rehash: bool = False,
) -> TreeState:
    """Steps 1-3: load, validate and assemble; collects every problem instead of stopping at one."""
    state = TreeState()
    listings: dict[str, dict[str, int]] = {}
    for product in tree.products:
        store = open_store(product.source, storage or tree.storage) if product.source else target
        state.stores[product.name] = store
        try:
            if product.prefix_path:
                url = f"{product.prefix_path}/{product.directory}/ssb.json"
                manifest: dict[str, Any] | None = parse_manifest(
                    fetch_manifest_url(product, apikey), url, product
                )
            else:
                if refresh_manifests:
                    refresh_manifest(store, tree, product, rehash=rehash)
                manifest, _ = read_manifest(store, tree, product)
        except SSBError as exc:
            state.problems.append(f"product {product.name}: {exc}" if product.name not in str(exc) else str(exc))
            continue
        if manifest is None:
            msg = (f"product {product.name}: no {store.describe(tree.manifest_key(product))} yet "
                   "(run build-versions-manifest or publish --refresh-manifests); not published")
            state.warnings.append(msg)
            continue
        state.manifests[product.name] = manifest
        if product.hidden:
            continue
        if not manifest["versions"]:
            state.warnings.append(f"product {product.name}: no complete version yet; not published")
        listing = _listing(store, tree.prefix, listings)
        state.problems.extend(file_problems(manifest, listing, store, product.name))
    state.catalog = build_catalog(tree, state.manifests)
    state.problems.extend(contract_problems(state.catalog, "catalog built from the manifests"))
    return state


def copy_foreign_artifacts(tree: TreeConfig, target: Store, state: TreeState) -> list[str]:
    """Products with `source` live in another bucket: clients need their files under our base URL."""
    copied = []
    for name, store in state.stores.items():
        if store is target or name not in state.catalog["products"]:
            continue
        for version in state.manifests[name]["versions"].values():
            for item in version["items"].values():
                path = item["path"]
                there = target.head(path)
                if there is not None:
                    if there.size != item["size"]:
                        raise StoreError(
                            f"{target.describe(path)} exists with {there.size} bytes but "
                            f"{store.describe(path)} has {item['size']}: refusing to overwrite"
                        )
                    continue
                log.info("copying %s -> %s", store.describe(path), target.describe(path))
                with store.open_reader(path) as reader:
                    target.upload(path, reader, content_type=ARTIFACT_TYPE, cache_control=IMMUTABLE)
                copied.append(path)
    return copied


def write_catalog(tree: TreeConfig, target: Store, catalog: Mapping[str, Any]) -> str:
    """Write the catalog under its content-addressed key (create-only) and the plain copy."""
    data = to_bytes(catalog)
    key = catalog_key(tree, data)
    if target.head(key) is None:
        # Same key means same content: if another publisher wrote it first, that is fine.
        with contextlib.suppress(PreconditionFailed):
            target.write(key, data, cache_control=IMMUTABLE, if_none_match=True)
    plain = plain_catalog_key(tree)
    try:
        current = target.read(plain)
    except NotFound:
        current = b""
    if current != data:
        target.write(plain, data, cache_control=SHORT)
    return key


def flip_index(tree: TreeConfig, target: Store, catalog: Mapping[str, Any], key: str, etag: str | None) -> bool:
    """Point index.json at the new catalog; conditional on the etag read at the start."""
    data = to_bytes(build_index(tree, catalog, key))
    try:
        current, current_etag = target.read_with_etag(INDEX_KEY)
    except NotFound:
        current, current_etag = b"", ""
    if etag is not None and current_etag != etag:
        raise PreconditionFailed(f"{target.describe(INDEX_KEY)}: changed during the publish")
    if current == data:
        return False
    target.write(
        INDEX_KEY,
        data,
        cache_control=NO_CACHE,
        if_match=current_etag or None,
        if_none_match=not current_etag,
    )
    return True


def publish(
    tree: TreeConfig,
    target: Store,
    *,
    apikey: str | None = None,
    storage: StorageConfig | None = None,
    refresh_manifests: bool = False,
    rehash: bool = False,
) -> PublishResult:
    """Publish the tree; raises ProblemsFound (nothing written) if any input is bad."""
    for attempt in range(1, MAX_INDEX_ATTEMPTS + 1):
        head = target.head(INDEX_KEY)
        start_etag = head.etag if head else ""
        state = read_tree(
            tree, target, apikey=apikey, storage=storage,
            refresh_manifests=refresh_manifests and attempt == 1, rehash=rehash,
        )  # fmt: skip
        for warning in state.warnings:
            log.warning("%s", warning)
        if state.problems:
            raise ProblemsFound("publish refused, nothing was written", state.problems)
        copied = copy_foreign_artifacts(tree, target, state)
        key = write_catalog(tree, target, state.catalog)
        try:
            written = flip_index(tree, target, state.catalog, key, start_etag)
        except PreconditionFailed:
            log.warning("index.json changed during the publish (attempt %d), starting again", attempt)
            continue
        products = sorted(state.catalog["products"])
        versions = sum(len(p["versions"]) for p in state.catalog["products"].values())
        log.info(
            "published %d products, %d versions: %s -> %s%s",
            len(products), versions, target.describe(INDEX_KEY), key, "" if written else " (unchanged)",
        )
        return PublishResult(key, written, products, versions, copied, state.warnings)
    raise StoreError(
        f"{target.describe(INDEX_KEY)}: another publisher changed it {MAX_INDEX_ATTEMPTS} times "
        "in a row; try again"
    )


def dump_json(document: Mapping[str, Any]) -> str:
    """Human-readable JSON for --stdout."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)
