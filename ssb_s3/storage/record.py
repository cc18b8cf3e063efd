"""The tree's own record of the products `add` created: .ssb-s3/products.json.

A tree served with no tree.yml still needs each product's settings (name, arch, release, os,
aliases, directory, days) for every later publish, withdraw, purge, mirror, the hooks and the
page. `add` keeps them in the tree itself, beside the lease and the store verdict:

    .ssb-s3/products.json = {"products": [<a product entry in tree.yml's shape>, ...]}

Invariants:
* the record is read with the same schema and checks as tree.yml's `products` (config.parse_config):
  a broken record is one line naming its key, never half-used;
* with a tree.yml, products declared there win: a recorded product of the same name, or whose
  folder is, holds or lies inside a declared product's folder, is left out (with a warning);
* it is changed only by `record_product`: read it, change it, write it back If-Match its ETag
  (If-None-Match when new), again on a conflict: two `add`s at once never lose each other's product;
* at most MAX_RECORD_BYTES are read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ..config import ProductConfig, TreeConfig, parse_config
from ..errors import ConfigError, NotFound, PreconditionFailed, ProblemsFound, StoreError
from ..vocabulary.layout import PRODUCT_RECORD_KEY
from .httpread import parse_json
from .store import Store

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 1 << 20
ATTEMPTS = 10


def read_record(store: Store) -> tuple[list[dict[str, Any]], str]:
    """The recorded product entries and the record's ETag ('' when there is no record)."""
    try:
        data, etag = store.read_limited(PRODUCT_RECORD_KEY, MAX_RECORD_BYTES)
    except NotFound:
        return [], ""
    where = store.describe(PRODUCT_RECORD_KEY)
    try:
        document = parse_json(data, where)
    except ValueError as exc:
        raise ConfigError(f"{where}: not JSON ({exc}); the tree's record of added products is damaged") from None
    entries = document.get("products") if isinstance(document, Mapping) else None
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError(f"{where}: expected {{\"products\": [...]}}; the tree's record of added products is damaged")
    return [dict(e) for e in entries], etag


def recorded_products(store: Store, entries: list[dict[str, Any]] | None = None) -> tuple[ProductConfig, ...]:
    """The recorded products, checked as tree.yml's products are."""
    if entries is None:
        entries = read_record(store)[0]
    if not entries:
        return ()
    where = store.describe(PRODUCT_RECORD_KEY)
    try:
        return parse_config({"products": entries}, where).products
    except ProblemsFound as exc:
        first = exc.problems[0]
        raise ConfigError(f"{where}: {first.field}: {first.text} (the tree's record of added products)") from None


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def with_recorded(tree: TreeConfig, store: Store) -> TreeConfig:
    """`tree` with the recorded products it does not declare (see the module docstring)."""
    recorded = recorded_products(store)
    if not recorded:
        return tree
    declared = {p.name: p.directory for p in tree.products}
    extra = []
    for product in recorded:
        if product.name in declared:
            continue
        clash = next((n for n, d in declared.items() if _overlaps(product.directory, d)), None)
        if clash is not None:
            log.warning("%s: product %s left out: its folder %s is product %s's (%s)",
                        store.describe(PRODUCT_RECORD_KEY), product.name, product.directory, clash, tree.source_file)
            continue
        extra.append(product)
    return replace(tree, products=(*tree.products, *extra)) if extra else tree


def record_product(store: Store, entry: Mapping[str, Any], *,
                   change: Callable[[dict[str, Any] | None], dict[str, Any]] | None = None) -> bool:
    """Add (or update) one product entry; returns whether the record changed. `change` (optional)
    maps the recorded entry of that name (None: none yet) to the one to keep; default: `entry`."""
    name = entry["name"]
    for _ in range(ATTEMPTS):
        entries, etag = read_record(store)
        current = next((e for e in entries if e.get("name") == name), None)
        new = change(current) if change is not None else dict(entry)
        if current == new:
            return False
        kept = [e for e in entries if e.get("name") != name] + [new]
        recorded_products(store, kept)  # never write a record that would not read back
        data = json.dumps({"products": sorted(kept, key=lambda e: str(e.get("name")))}, indent=2,
                          sort_keys=True).encode()
        try:
            store.replace(PRODUCT_RECORD_KEY, data, etag, cache_control="no-store")
            return True
        except PreconditionFailed:
            log.info("%s changed meanwhile (another add), again", store.describe(PRODUCT_RECORD_KEY))
    raise StoreError(f"{store.describe(PRODUCT_RECORD_KEY)}: changed by someone else {ATTEMPTS} times in a row")
