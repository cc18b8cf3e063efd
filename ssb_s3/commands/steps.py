"""The seed's step-by-step commands: build-versions-manifest, build-images-file, build-index, validate.

`publish` does all of this in the safe order (ssb_s3.commands.publish); these commands keep
simplestreams-builder's pipeline for scripts that run one step at a time. Invariants:
- nothing is written when anything is wrong: the catalog is checked (check_tree: tree.yml, every
  ssb.json, every file it names, what the clients accept) before a byte goes out, and every
  problem is listed at once (ProblemsFound);
- a signed tree stays signed: build-images-file and build-index refuse to write without the key
  (refuse_unsigned_over_signed) before they read anything;
- `stdout` runs write nothing and read only: they return the document's text;
- same manifests give byte-identical output.
The CLI only parses options, calls one function here and prints what it returns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import ProductConfig, TreeConfig
from ..core.views import Content, View, images_json_view, index_view, seed_content
from ..errors import ProblemsFound
from ..storage.manifest import ManifestReport, build_manifest, manifest_bytes, read_manifest
from ..storage.store import Store
from ..storage.tree import Tree, refresh_manifest
from .publish import PublishOptions, check_tree, dump_json, refuse_unsigned_over_signed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepOutput:
    """What one step gives back: the document's text (`stdout`), or where it was written."""

    text: str | None = None
    written: str | None = None  # the store's description of the key written


def checked_catalog(tree: TreeConfig, source: Store, opts: PublishOptions,
                    refused: str = "refused, nothing was written") -> dict[str, Any]:
    """The catalog of every product of `tree` read from `source`, as if nothing were published;
    its warnings logged, any problem raised (ProblemsFound headed by `refused`)."""
    catalog, problems, warnings = check_tree(tree, source, opts)
    for warning in warnings:
        log.warning("%s", warning)
    if problems:
        raise ProblemsFound(refused, problems)
    return catalog


def build_versions_manifest(tree: TreeConfig, store: Store, product: ProductConfig, *, rehash: bool,
                            stdout: bool) -> ManifestReport | str:
    """Scan `product`'s version folders in `store`: with `stdout`, its ssb.json as text (nothing
    written); otherwise <directory>/ssb.json brought up to date, and the report of what changed."""
    if stdout:
        existing, _ = read_manifest(store, tree, product)
        manifest, _ = build_manifest(store, tree, product, existing, rehash=rehash)
        return manifest_bytes(manifest).decode()
    return refresh_manifest(store, tree, product, rehash=rehash)


def _step(tree: TreeConfig, target: Store, source: Store, opts: PublishOptions, stdout: bool,
          view_of: Callable[[Content], View], text_of: Callable[[dict[str, Any], View], str]) -> StepOutput:
    """One written step: refuse an unsigned write over a signed tree, check the catalog, then return
    its text (`stdout`) or write its view."""
    if not stdout:  # a signed tree stays signed: nothing is read or written without the key
        refuse_unsigned_over_signed(tree, target)
    catalog = checked_catalog(tree, source, opts)
    view = view_of(seed_content(tree, catalog))
    if stdout:
        return StepOutput(text=text_of(catalog, view))
    Tree(tree, target).write_view(view)
    return StepOutput(written=target.describe(view.key))


def build_images_file(tree: TreeConfig, target: Store, source: Store, opts: PublishOptions, *,
                      stdout: bool) -> StepOutput:
    """The products catalog (<images_path>/images.json) of every product's ssb.json in `source`,
    checked, then written to `target` (or the catalog returned as text with `stdout`)."""
    return _step(tree, target, source, opts, stdout, images_json_view, lambda catalog, _: dump_json(catalog))


def build_index(tree: TreeConfig, target: Store, source: Store, opts: PublishOptions, *,
                stdout: bool) -> StepOutput:
    """streams/v1/index.json pointing at <images_path>/images.json (as the seed tool did), after the
    same check as build-images-file; written to `target` (or returned as text with `stdout`)."""
    return _step(tree, target, source, opts, stdout, index_view, lambda _, view: dump_json(json.loads(view.data)))


@dataclass(frozen=True)
class Validation:
    """What validate found in a valid tree."""

    products: int  # in the catalog
    versions: int
    declared: int  # products in tree.yml


def validate(tree: TreeConfig, source: Store, opts: PublishOptions) -> Validation:
    """Check tree.yml, every ssb.json, every file they name and the catalog; ProblemsFound lists
    every problem. Nothing is written."""
    catalog = checked_catalog(tree, source, opts, refused="not valid, publish would refuse this tree")
    versions = sum(len(p["versions"]) for p in catalog["products"].values())
    return Validation(len(catalog["products"]), versions, len(tree.products))
