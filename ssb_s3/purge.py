"""Purge's I/O: read old catalogs, delete what the purge plan (ssb_s3.retention) says, in an order
that converges after a crash: files, then the manifest entry, then old catalogs.

Purge only deletes version folders of configured products (and our own old catalogs), never
unknown keys. The decisions (retention, grace, history) are pure, in ssb_s3.retention.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

from .catalog import _path_problem
from .config import ProductConfig, TreeConfig
from .errors import NotFound
from .httpread import parse_json
from .manifest import update_manifest
from .retention import (
    CATALOG_NAME,
    HISTORY_FIELD,
    History,
    PurgeItem,
    PurgePlan,
    catalog_paths,
    plan_purge,
    select_versions,
    shape_problem,
)
from .store import Store

__all__ = ["CATALOG_NAME", "HISTORY_FIELD", "History", "PurgeItem", "PurgePlan", "catalog_paths", "execute_purge",
           "plan_purge", "read_catalog", "select_versions", "shape_problem"]  # the pure half: ssb_s3.retention

log = logging.getLogger(__name__)


def read_catalog(store: Store, key: str) -> dict[str, Any] | None:
    """The catalog at `key`, or None (with a warning) when it is missing or cannot be used.

    Unusable: a key that is not a plain relative path (never sent to the store), not JSON, nested
    too deeply, or not an object whose products/versions/items are objects with string paths.
    A store that fails (StoreError) still raises: a transient outage must not pass for "no catalog".
    """
    why = _path_problem(key)
    if why:
        log.warning("catalog %r: %s; ignored", key, why)
        return None
    try:
        catalog = parse_json(store.read(key))
    except NotFound:
        return None
    except ValueError as exc:
        log.warning("%s: not valid JSON (%s), ignored", store.describe(key), exc)
        return None
    why = shape_problem(catalog)
    if why:
        log.warning("%s: %s, ignored", store.describe(key), why)
        return None
    return cast(dict[str, Any], catalog)


def _drop_from_manifest(store: Store, tree: TreeConfig, product: ProductConfig, versions: set[str],
                        conditional: bool) -> None:
    """Remove purged versions from the product's ssb.json."""
    def without(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
        if manifest is None or not versions & set(manifest["versions"]):
            return None
        return {**manifest, "versions": {k: v for k, v in manifest["versions"].items() if k not in versions}}

    update_manifest(store, tree, product, without, what="purging", conditional=conditional)


def execute_purge(
    tree: TreeConfig,
    target: Store,
    plan: PurgePlan,
    *,
    manifest_stores: Mapping[str, Store],
    conditional: bool = True,
) -> None:
    """Delete in an order that converges after a crash: files, then the manifest entry, then catalogs."""
    by_product: dict[str, set[str]] = {}
    for item in plan.delete_now:
        log.info("purging %s (%s)", target.describe(item.folder), item.reason)
        for obj in list(target.list(item.folder + "/")):
            target.delete(obj.key)
        by_product.setdefault(item.product, set()).add(item.version)
    for name, versions in by_product.items():
        product = tree.product(name)
        store = manifest_stores.get(name)
        if store is target and not product.prefix_path:
            _drop_from_manifest(target, tree, product, versions, conditional)
    for key in plan.old_catalogs:  # already left out of the history the index now holds
        target.delete(key)
