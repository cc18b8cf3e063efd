"""Published views: every published file that is not an artifact, rendered purely from the plan.

A view is (key, bytes, content type, cache class): the cache class names the tree.yml
`cache_control` entry it is served with. Today's views: the content-addressed catalog, the plain
images.json copy, the classic LXC index (meta/1.0/index-system, index-user and their `.N` copies:
core/lxcindex), the catalog web page (index.html, ssb_s3.core.page; none with `page: false`)
with its product pages, and index.json.
The commit (ssb_s3.storage.tree) writes the content-addressed views (`addressed`)
before it flips the index, so whatever the index names is already there, and the fixed-name views
after the flip, so none of them ever shows a catalog the index does not serve; then it writes the
index again, recording them (`flip_index`). Adding a view (an HTML page, an
LXC index, a signature) is one renderer here (or in its own module) and one line in VIEWS; the
view carries its own policies (`View.cache_default` for a cache class tree.yml does not name,
`View.signed` for a clearsigned twin), so nothing else changes.

Invariants: a renderer is a pure function of its Content (same content, same bytes; the time it
may show is the plan's, never the clock); a renderer returning None writes nothing; a
content-addressed view (`create_only`) is never overwritten. It is the catalog itself or a
companion keyed `<catalog key><suffix>` (e.g. `images-<hash>.json.asc`) or its clearsigned twin
`images-<hash>.sjson` (written by the signing step, ssb_s3.core.signed, not by a renderer): a
companion is purged with its catalog, once no catalog within the grace names it
(retention.superseded_views, TreeLayout.catalog_of_view).

The product pages (page_views) are `part`s of the page: index.json records the page alone (its key
and settings, which hold the pages' layout), and that record, written only once every fixed-name
view is written, says that every product page of the served catalog is in place. So a publish
renders and writes only the pages of the products whose catalog entry differs from the served
one (all of them when the record is missing or its settings differ), and `delete`s the pages of
the products the catalog no longer lists; the commit writes the parts before the index page that
links to them and deletes only after it (storage.tree.write_fixed_views): a reader never follows
a link from the index to a missing page.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..config import TreeConfig
from ..vocabulary.layout import INDEX_KEY, LXC_INDEX_KEYS, is_product_page_key
from . import lxcindex, page
from .catalog import build_index, to_bytes
from .retention import VIEWS_KEY

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Content:
    """What views are rendered from: the catalog to serve (document, canonical bytes, key), the
    history index.json carries, the time the plan was made (the publish time, in epoch seconds)
    and the remote URL the page shows (publish --base-url, else tree.yml page.base_url; '' none)."""

    tree: TreeConfig
    catalog: Mapping[str, Any]
    catalog_bytes: bytes
    catalog_key: str
    history: Mapping[str, Any]
    now: float = 0.0
    base_url: str = ""
    lxc_served: bool = False  # the served catalog has an LXC image: its LXC index must be rewritten
    served: Mapping[str, Any] | None = None  # the catalog served now (None: none usable)
    served_views: frozenset[str] = frozenset()  # the views the served index.json records (VIEWS_KEY)
    # the tree's files (a full publish's listing, keys from the store's root), where product pages
    # no catalog lists are found (left by a run that stopped after its flip); None: not listed
    listing: Mapping[str, int] | None = None


@dataclass(frozen=True)
class View:
    """One published file, with its own policies: `cache` names the tree.yml `cache_control` class it
    is served with (`cache_default` when tree.yml has no such class: a new view brings its own), and
    `signed` says whether a signed tree gives it a clearsigned twin (and, with signing.detached, a
    detached signature: core.signed)."""

    key: str
    data: bytes
    content_type: str = JSON_TYPE
    cache: str = "catalog"
    cache_default: str = "no-cache"
    signed: bool = False
    create_only: bool = False  # content-addressed: same key, same bytes; never overwritten
    # what else than the catalog the bytes depend on (settings), recorded with the key in
    # index.json: a change of them rewrites the views although the catalog did not change
    settings: str = ""
    part: bool = False  # a product page: recorded with the page, not alone; written before the other views
    delete: bool = False  # a product page to delete (no data), after every other view is written
    # the bytes, rendered when written (`data` is then empty): a full publish of 10,000 products
    # holds no 10,000 product pages at once
    lazy: Callable[[], bytes] | None = None

    def body(self) -> bytes:
        """The bytes to write: `data`, or those `lazy` renders."""
        return self.data if self.lazy is None else self.lazy()

    @property
    def is_index(self) -> bool:
        return self.key == INDEX_KEY

    @property
    def recorded(self) -> str:
        """How index.json records this view (retention.VIEWS_KEY): its key, and its settings."""
        return f"{self.key}#{self.settings}" if self.settings else self.key


# None: nothing to write for this content (a view turned off); a tuple: several views (the page and its parts)
Renderer = Callable[[Content], View | tuple[View, ...] | None]


def catalog_view(content: Content) -> View:
    """The catalog under its content-addressed key: a new one never overwrites one a cached index names."""
    return View(content.catalog_key, content.catalog_bytes, cache="catalog", create_only=True, signed=True)


def images_json_view(content: Content) -> View:
    """The seed's fixed name, a plain copy for readers that open it directly."""
    return View(content.tree.layout.plain_catalog_key, content.catalog_bytes, cache="images_json", signed=True)


def lxc_index_renderer(key: str) -> Renderer:
    """The classic LXC index under `key` (one of layout.LXC_INDEX_KEYS: every key holds the same
    lines). A fixed key, overwritten at each publish that changes the catalog, so that it never
    names a version the catalog does not (core/lxcindex): written when the catalog has an LXC image
    or the served one had (then possibly with no line); a tree that never had one gets no file."""
    def lxc_index_view(content: Content) -> View | None:
        images = lxcindex.lxc_images(content.catalog)
        if not images and not content.lxc_served:
            return None
        return View(key, lxcindex.render_index(images), content_type=TEXT_TYPE, cache="lxc_index")
    lxc_index_view.__name__ = f"lxc_index_view[{key}]"
    return lxc_index_view


LXC_INDEX_VIEWS: tuple[Renderer, ...] = tuple(lxc_index_renderer(key) for key in LXC_INDEX_KEYS)


def index_view(content: Content) -> View:
    """streams/v1/index.json naming the catalog, with the publisher's history (flipped last)."""
    index = build_index(content.tree, content.catalog, content.catalog_key, content.history)
    return View(INDEX_KEY, to_bytes(index), cache="index")


def page_views(content: Content) -> tuple[View, ...] | None:
    """The catalog web page at tree.yml page.path (index.html), unless `page: false`, with the pages
    of the products whose entry differs from the served catalog's (every product's when the served
    index.json does not record this page with these settings), and the deletions of the pages of
    the products it no longer lists (a product without versions has none)."""
    config = content.tree.page
    if not config.enabled:
        return None
    base_url = content.base_url or config.base_url
    html = page.render_page(content.catalog, config, now=content.now, base_url=base_url)
    settings = hashlib.sha256(repr((config, base_url, page.LAYOUT)).encode()).hexdigest()[:12]
    index = View(content.tree.layout.page_key, html, content_type=HTML_TYPE, cache="page", settings=settings)
    served = content.served or {}
    in_place = index.recorded in content.served_views  # every page of the served catalog is there
    before: Mapping[str, Any] = served.get("products", {}) if in_place else {}
    wanted: dict[str, str] = {}  # product -> its page's key
    parts = []
    for name, entry in content.catalog.get("products", {}).items():
        key = page.product_page_key(config, name)
        if key is None or not entry.get("versions"):
            continue
        wanted[name] = key
        old = before.get(name)
        if old is entry or old == entry:
            continue
        parts.append(View(key, b"", content_type=HTML_TYPE, cache="page", part=True,
                          lazy=functools.partial(page.render_product, name, entry, config, base_url=base_url)))
    gone = {key for name, entry in served.get("products", {}).items()
            if name not in wanted and (key := page.product_page_key(config, name)) is not None}
    gone.update(key for key in content.listing or () if is_product_page_key(config.path, key)
                and key not in wanted.values())
    deletes = [View(key, b"", content_type=HTML_TYPE, cache="page", part=True, delete=True) for key in sorted(gone)]
    return (*sorted(parts, key=lambda v: v.key), index, *deletes)


def seed_content(tree: TreeConfig, catalog: Mapping[str, Any]) -> Content:
    """build-images-file / build-index (the seed's step-by-step commands): the index names the plain
    images.json, without history."""
    return Content(tree, catalog, to_bytes(catalog), tree.layout.plain_catalog_key, {})


VIEWS: tuple[Renderer, ...] = (catalog_view, images_json_view, *LXC_INDEX_VIEWS, page_views, index_view)


class ViewError(ValueError):
    """A renderer broke the view invariants (a programming error, not bad input)."""


def render(content: Content, views: tuple[Renderer, ...] | None = None) -> tuple[View, ...]:
    """Every registered view of `content` (the registry is read at call time: tests may add one).
    index.json comes last and records the keys of the others (retention.VIEWS_KEY), so that the
    next publish sees a view missing from the served tree (a new kind, or one turned on) with no
    request, and writes the views although the catalog did not change."""
    renderers = VIEWS if views is None else views
    rendered: tuple[View, ...] = ()
    for renderer in renderers:
        if renderer is not index_view:
            made = renderer(content)
            rendered += (made,) if isinstance(made, View) else made or ()
    for view in rendered:
        if view.create_only and not view.key.startswith(content.catalog_key):
            raise ViewError(f"content-addressed view {view.key} must be keyed after its catalog "
                            f"{content.catalog_key} (<catalog key><suffix>), or purge would never find it")
    if index_view in renderers:
        recorded = {**content.history, VIEWS_KEY: view_keys(rendered)}
        rendered += (index_view(replace(content, history=recorded)),)
    return rendered


def addressed(view: View, catalog_key: str) -> bool:
    """Named by its content (the catalog, its companions and signed twin): written before the flip.
    Every other view has a fixed name (images.json, the LXC index, the page, the signed plain copy
    and index.sjson) and is written only after the flip, so it never shows a catalog that is not served."""
    return view.create_only or view.key == catalog_key


def flip_index(content: Content, rendered: tuple[View, ...]) -> View:
    """index.json as the flip writes it: it records (retention.VIEWS_KEY) only the views written before
    it (`addressed`). Once the fixed-name views are written, the index is written again as `render`
    made it, recording them all; a crash in between leaves an index whose record misses them, so the
    next publish writes them again (plan.catalog_changed) although the catalog did not change."""
    before = tuple(view for view in rendered if addressed(view, content.catalog_key))
    return index_view(replace(content, history={**content.history, VIEWS_KEY: view_keys(before)}))


def view_keys(views: tuple[View, ...]) -> list[str]:
    """The views other than index.json and the product pages, as index.json records them (View.recorded)."""
    return sorted(view.recorded for view in views if not view.is_index and not view.part)
