"""The layout of a tree: every key ssb-s3 reads or writes, and every parse of one, in one place.

Nothing else in the package spells a key of the tree or takes one apart (tests/test_layout.py
reads the package's source and fails on a literal of this module's outside it). Keys are
'/'-separated and relative to the store's root, the remote's base URL; `<prefix>` is tree.yml's
`prefix` ('' by default), `<images_path>` its `images_path` (DEFAULT_IMAGES_PATH), `<page>` its
`page.path` (DEFAULT_PAGE_PATH). TreeLayout is the value built from those three (TreeConfig.layout).

    streams/v1/index.json                      INDEX_KEY: what every client opens first
    streams/v1/index.sjson                     SIGNED_INDEX_KEY: the index, clearsigned (signing:)
    <prefix>/<images_path>/images-<hash>.json  catalog_key: content-addressed (CATALOG_DIGEST_LENGTH
                                               hex digits of its sha256), never overwritten
    <prefix>/<images_path>/images-<hash>.sjson its clearsigned twin (signed_key), and companions
                                               `<catalog key><suffix>` (images-<hash>.json.asc)
    <prefix>/<images_path>/images.json         plain_catalog_key: the seed's fixed name, a copy
    <prefix>/<directory>/ssb.json              manifest_key: a product's versions (MANIFEST_NAME)
    <prefix>/<directory>/<version>/            version_dir: one folder per version
    <prefix>/<directory>/<version>/<file>      version_file_key: an image file, or a delta
                                               `<base version>.<root file>.vcdiff` (delta_file_name)
    <prefix>/<directory>/<version>/.ssb-upload.json  UPLOAD_MARKER_NAME: build-product's marker
    <page>                                     page_key: the catalog web page (index.html)
    <page folder>/products/<name>.html         product_page_key: one page per product (PAGES_FOLDER)
    meta/1.0/index-system, index-user (+ .7)   LXC_INDEX_KEYS: the classic LXC index
    .ssb-s3/lease.json                         LEASE_KEY: held while a job writes
    .ssb-s3/store.json                         STORE_VERDICT_KEY: the store's probed conditional writes
    .ssb-s3/probe-<random>                     PROBE_KEY_PREFIX: a probe's throw-away key
    .ssb-s3/products.json                      PRODUCT_RECORD_KEY: the products `add` created
    .ssb-s3/history.json                       PAST_KEY: what the purge needs of the older catalogs (core.past)
    .ssb-s3/write.lock                         LEGACY_LOCK_KEY: earlier versions' lock, never listed

Who writes them, and in what order they become visible to a client:
1. build-product / add / mirror: the version folder's files (create-only; the upload marker
   first, removed last), then the product's ssb.json (If-Match its ETag): nothing a client reads
   names them yet;
2. publish: the content-addressed catalog and its twins and companions (create-only), then
   index.json is flipped to name it (If-Match): from this write on, clients see the new catalog;
3. after the flip, the fixed-name views (images.json and its twins, the LXC index, the product
   pages, then the page that links to them; departed products' pages deleted after it),
   index.sjson after them (it names the signed catalog), then index.json again recording them;
4. purge deletes superseded catalogs and expired version folders after the grace.
The record of the older catalogs (PAST_KEY) is written with the views after the flip, and deleted
before a purge that deletes a catalog it names.
The lease, the verdict and the records are the tool's own (INTERNAL_PREFIX): no client reads them.
A change under any of the tree's own keys (TreeLayout.is_own) is never a reason for the hooks to
republish: it is the tree's own write.

Reserved for the tree: TREE_FOLDERS (streams/v1, meta/1.0, .ssb-s3), `<images_path>`, `<page>` and
the product pages' folder beside it (TreeLayout.reserved). No product folder may equal, lie inside
or contain one (reserved_problem): a product there would wedge the tree for every later run.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

# --- fixed keys, the same in every tree ---------------------------------------------------------

STREAMS_FOLDER = "streams/v1"  # where simplestreams clients look for the index, whatever images_path says
INDEX_KEY = f"{STREAMS_FOLDER}/index.json"
SIGNED_INDEX_KEY = f"{STREAMS_FOLDER}/index.sjson"
DEFAULT_IMAGES_PATH = STREAMS_FOLDER  # tree.yml `images_path` (the seed's default)
DEFAULT_PAGE_PATH = "index.html"  # tree.yml `page.path`

LXC_INDEX_FOLDER = "meta/1.0"  # lxc-create's download template asks for <server>/meta/1.0/index-<mode>
LXC_INDEX_MODES = ("system", "user")
LXC_INDEX_COMPAT_LEVELS = (7,)  # LXC 5.0.2 asks `.7` first; every client falls back to the plain name
LXC_INDEX_KEYS = tuple(f"{LXC_INDEX_FOLDER}/index-{mode}{suffix}" for mode in LXC_INDEX_MODES
                       for suffix in ("", *(f".{n}" for n in LXC_INDEX_COMPAT_LEVELS)))

INTERNAL_FOLDER = ".ssb-s3"  # the tool's own objects: the lease, the store's verdict, the product record
INTERNAL_PREFIX = f"{INTERNAL_FOLDER}/"
LEASE_KEY = f"{INTERNAL_PREFIX}lease.json"
STORE_VERDICT_KEY = f"{INTERNAL_PREFIX}store.json"
PROBE_KEY_PREFIX = f"{INTERNAL_PREFIX}probe-"
PRODUCT_RECORD_KEY = f"{INTERNAL_PREFIX}products.json"
PAST_KEY = f"{INTERNAL_PREFIX}history.json"  # written with each catalog, after the flip (core.past)
LEGACY_LOCK_NAME = "write.lock"  # in INTERNAL_FOLDER: the lock file of earlier versions, still never listed
LEGACY_LOCK_KEY = f"{INTERNAL_PREFIX}{LEGACY_LOCK_NAME}"

# The tree's own folders, whatever tree.yml says (TreeLayout.reserved adds images_path, the page and
# the folder of the product pages beside it).
TREE_FOLDERS = (STREAMS_FOLDER, LXC_INDEX_FOLDER, INTERNAL_FOLDER)
PAGES_FOLDER = "products"  # the product pages (core/page), in this folder beside the page
PAGE_EXTENSION = ".html"

# --- names inside a folder ----------------------------------------------------------------------

MANIFEST_NAME = "ssb.json"  # in a product's folder
UPLOAD_MARKER_NAME = ".ssb-upload.json"  # in a version's folder: written first and removed last by build-product
PLAIN_CATALOG_NAME = "images.json"
CATALOG_STEM = "images"
CATALOG_DIGEST_LENGTH = 20  # hex digits of the catalog's sha256 in its name
DOCUMENT_EXTENSION = ".json"
SIGNED_EXTENSION = ".sjson"  # python-simplestreams' clearsigned twin of a .json document
DETACHED_SIGNATURE_SUFFIX = ".asc"
_CATALOG_NAME = re.compile(rf"^{CATALOG_STEM}-([0-9a-f]{{{CATALOG_DIGEST_LENGTH}}})\.json$")
# A content-addressed view: the catalog, a companion keyed after it (`images-<hash>.json.asc`), or
# its clearsigned twin (`images-<hash>.sjson`) and that twin's companions.
_CATALOG_VIEW_NAME = re.compile(rf"^({CATALOG_STEM}-[0-9a-f]{{{CATALOG_DIGEST_LENGTH}}})\.s?json(?:\.[A-Za-z0-9]+)*$")


def catalog_digest_of(data: bytes) -> str:
    """The digest that names the catalog `data`: the first hex digits of its sha256."""
    return hashlib.sha256(data).hexdigest()[:CATALOG_DIGEST_LENGTH]


def catalog_name(data: bytes) -> str:
    """The content-addressed name of the catalog `data`: images-<catalog_digest_of(data)>.json."""
    return f"{CATALOG_STEM}-{catalog_digest_of(data)}{DOCUMENT_EXTENSION}"


def catalog_digest(key: str) -> str | None:
    """The digest a content-addressed catalog key names (None: not such a key)."""
    named = _CATALOG_NAME.match(key.rpartition("/")[2])
    return named[1] if named else None


def is_catalog_name(name: str) -> bool:
    """True for a content-addressed catalog's file name (images-<hash>.json), not its twins."""
    return _CATALOG_NAME.match(name) is not None


def signed_key(key: str) -> str:
    """The clearsigned twin of a `.json` key: `images-<hash>.json` → `images-<hash>.sjson`."""
    stem, dot, ext = key.rpartition(".")
    if not dot or f".{ext}" != DOCUMENT_EXTENSION:
        raise ValueError(f"{key}: only a {DOCUMENT_EXTENSION} document has a {SIGNED_EXTENSION} twin")
    return f"{stem}{SIGNED_EXTENSION}"


def detached_signature_key(key: str) -> str:
    """The armored detached signature of the document at `key` (signing.detached): `<key>.asc`, a
    companion keyed after it, so purge deletes it with its catalog (TreeLayout.catalog_of_view)."""
    return f"{key}{DETACHED_SIGNATURE_SUFFIX}"


def has_signed_twin(key: str) -> bool:
    """True for a `.json` document's key: signed_key gives its twin."""
    return key.endswith(DOCUMENT_EXTENSION)


def is_signed_key(key: str) -> bool:
    """True for a clearsigned twin's key (`.sjson`)."""
    return key.endswith(SIGNED_EXTENSION)


def under_prefix(prefix: str, path: str) -> str:
    """Join a tree-relative path under `prefix` (tree.yml's, normalised; '' : none)."""
    return f"{prefix}/{path}" if prefix else path


def in_folder(folder: str, name: str) -> str:
    """`name` in `folder` ('' : the store's root)."""
    return f"{folder}/{name}" if folder else name


def manifest_in(folder: str) -> str:
    """The ssb.json of the product folder (or URL) `folder`."""
    return f"{folder}/{MANIFEST_NAME}"


def version_dir(product_dir: str, version: str) -> str:
    """The folder of one version of the product at `product_dir`."""
    return f"{product_dir}/{version}"


def version_file_key(version_folder: str, name: str) -> str:
    """The key of the file `name` (an image file, a delta, the upload marker) in a version folder."""
    return f"{version_folder}/{name}"


def version_file_of(product_dir: str, key: str) -> tuple[str, str] | None:
    """(version, file name) of a key right inside a version folder of the product at `product_dir`;
    None for any other key (the product's ssb.json, a deeper key, a key outside the folder)."""
    if not key.startswith(f"{product_dir}/"):
        return None
    parts = key[len(product_dir) + 1:].split("/")
    return (parts[0], parts[1]) if len(parts) == 2 else None


def upload_marker_key(version_folder: str) -> str:
    return version_file_key(version_folder, UPLOAD_MARKER_NAME)


def parent_folder(key: str) -> str:
    """The folder holding `key` ('' at the store's root)."""
    return key.rpartition("/")[0]


DELTA_FILE_SUFFIX = ".vcdiff"  # every delta file's name ends with it (imagefiles checks its delta rows)


def delta_file_name(root_delta_name: str, base: str) -> str:
    """The file name of a delta against version `base`: `<base>.<root file>.vcdiff`, where
    `root_delta_name` is the delta row's own name (e.g. rootfs.squashfs.vcdiff)."""
    return f"{base}.{root_delta_name}"


def delta_base_of(name: str, root_delta_name: str) -> str | None:
    """The base version of the delta file `name` of the row named `root_delta_name`, or None."""
    base = name[: -len(root_delta_name) - 1]
    return base if name.endswith(f".{root_delta_name}") and base else None


# --- what a key is ------------------------------------------------------------------------------

KeyKindName = Literal["index", "signed-index", "catalog", "catalog-companion", "plain-catalog", "manifest",
                      "version-file", "upload-marker", "delta", "internal", "lxc-index", "page", "product-page",
                      "other"]


@dataclass(frozen=True)
class KeyKind:
    """What a key of the tree is (TreeLayout.kind_of, product_key_kind): `kind`; `owner`: the product
    folder of a product's key, the catalog key of a catalog or its companion ('' otherwise);
    `version` and `name`: the version folder and file name of a key inside one."""

    kind: KeyKindName
    owner: str = ""
    version: str = ""
    name: str = ""


OTHER = KeyKind("other")


def product_key_kind(product_dir: str, key: str) -> KeyKind | None:
    """What `key` is in the product folder `product_dir` (its manifest, a file right inside one of
    its version folders: the upload marker, a delta, any other file; 'other': deeper, or right in
    the folder); None: not inside the folder."""
    if key == manifest_in(product_dir):
        return KeyKind("manifest", product_dir)
    if not key.startswith(f"{product_dir}/"):
        return None
    parts = version_file_of(product_dir, key)
    if parts is None:
        return KeyKind("other", product_dir)
    version, name = parts
    if name == UPLOAD_MARKER_NAME:
        return KeyKind("upload-marker", product_dir, version, name)
    if name.endswith(DELTA_FILE_SUFFIX) and "." in name.removesuffix(DELTA_FILE_SUFFIX):
        return KeyKind("delta", product_dir, version, name)
    return KeyKind("version-file", product_dir, version, name)


# --- the reserved keys --------------------------------------------------------------------------

def product_pages_folder(page_path: str = DEFAULT_PAGE_PATH) -> str:
    """The folder of the product pages: PAGES_FOLDER in the page's own folder (`products` beside
    `index.html`, `images/products` beside `images/list.html`)."""
    folder = page_path.strip("/").rpartition("/")[0]
    return f"{folder}/{PAGES_FOLDER}" if folder else PAGES_FOLDER


def product_page_key(page_path: str, name: str) -> str:
    """The key of the page of product `name` (a name that may have a page: core/page.has_page)."""
    return f"{product_pages_folder(page_path)}/{name}{PAGE_EXTENSION}"


def product_page_link(name: str) -> str:
    """The relative link from the page to the page of product `name` (the folder of the product
    pages is beside the page): `./products/<name>.html`; `name` as it goes into the link (the
    page percent-encodes it)."""
    return f"./{PAGES_FOLDER}/{name}{PAGE_EXTENSION}"


def page_link_from_product_page(page_path: str) -> str:
    """The relative link from a product page back to the page: `../<the page's file name>`, as
    it goes into the link before percent-encoding (the page's own name)."""
    return f"../{page_path.rsplit('/', 1)[-1]}"


def is_product_page_key(page_path: str, key: str) -> bool:
    """True for a key right inside the folder of the product pages that names a page."""
    folder = f"{product_pages_folder(page_path)}/"
    return key.startswith(folder) and key.endswith(PAGE_EXTENSION) and "/" not in key[len(folder):]


def reserved_folders(images_path: str = DEFAULT_IMAGES_PATH, page_path: str = DEFAULT_PAGE_PATH) -> tuple[str, ...]:
    """Every key or folder of the tree's own, relative to its prefix."""
    return tuple(dict.fromkeys(p for p in (*TREE_FOLDERS, images_path.strip("/"), page_path.strip("/"),
                                           product_pages_folder(page_path)) if p))


@functools.cache
def _first_parts(reserved: tuple[str, ...]) -> frozenset[str]:
    return frozenset(key.partition("/")[0] for key in reserved)


def reserved_problem(directory: str, reserved: tuple[str, ...]) -> str | None:
    """Why a product folder is refused for the tree's own keys (None: it is not)."""
    if directory.partition("/")[0] not in _first_parts(reserved):
        return None  # overlapping needs the same first part: the common case, answered at once
    for key in reserved:
        if directory == key or directory.startswith(key + "/") or key.startswith(directory + "/"):
            return (f"the folder '{directory}' overlaps '{key}', one of the tree's own keys ({STREAMS_FOLDER}/..., "
                    f"{LXC_INDEX_FOLDER}/..., the page and its product pages, {INTERNAL_FOLDER}): "
                    "reserved for the tree (tree.yml's page.path moves the page and its product pages' folder)")
    return None


# --- one tree's keys ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TreeLayout:
    """The keys of one tree, from tree.yml's `prefix`, `images_path` and `page.path` (normalised:
    no slashes around). Pure: builds and parses keys, reads nothing."""

    prefix: str = ""
    images_path: str = DEFAULT_IMAGES_PATH
    page_path: str = DEFAULT_PAGE_PATH

    def under_prefix(self, path: str) -> str:
        """Join a tree-relative path under the configured prefix."""
        return under_prefix(self.prefix, path)

    def product_dir(self, directory: str) -> str:
        """The folder of a product whose tree.yml `directory` is `directory`."""
        return self.under_prefix(directory.strip("/"))

    def directory_of(self, product_dir: str) -> str:
        """The tree.yml `directory` of the product folder `product_dir` (the inverse of product_dir)."""
        return product_dir[len(self.under_prefix("")):]

    def manifest_key(self, directory: str) -> str:
        return manifest_in(self.product_dir(directory))

    @property
    def catalog_dir(self) -> str:
        return self.under_prefix(self.images_path.strip("/"))

    def catalog_key(self, data: bytes) -> str:
        """Content-addressed key: a new catalog never overwrites one that a cached index names."""
        return f"{self.catalog_dir}/{catalog_name(data)}"

    @property
    def plain_catalog_key(self) -> str:
        """The seed's fixed name, kept as a plain copy for readers that open it directly."""
        return f"{self.catalog_dir}/{PLAIN_CATALOG_NAME}"

    @property
    def page_key(self) -> str:
        return self.page_path

    @property
    def product_pages_folder(self) -> str:
        """The folder of the product pages, beside the page (product_pages_folder)."""
        return product_pages_folder(self.page_path)

    def catalog_of_view(self, key: str) -> str | None:
        """The catalog key a content-addressed view belongs to (a catalog belongs to itself), or None."""
        folder, _, name = key.rpartition("/")
        match = _CATALOG_VIEW_NAME.match(name)
        return f"{folder}/{match.group(1)}{DOCUMENT_EXTENSION}" if match and folder == self.catalog_dir else None

    @functools.cached_property
    def reserved(self) -> tuple[str, ...]:
        """The tree's own keys and folders, relative to the prefix (reserved_folders)."""
        return reserved_folders(self.images_path, self.page_path)

    @functools.cached_property
    def _folders(self) -> tuple[str, str]:
        """(product pages folder, catalog folder), for kind_of."""
        return self.product_pages_folder, self.catalog_dir

    @functools.cached_property
    def _fixed_kinds(self) -> dict[str, KeyKind]:
        """kind_of's answer for each of the tree's keys with a fixed name."""
        plain = self.plain_catalog_key
        plain_kind = KeyKind("plain-catalog", plain)
        return {
            INDEX_KEY: KeyKind("index"), SIGNED_INDEX_KEY: KeyKind("signed-index"),
            **{key: KeyKind("lxc-index") for key in LXC_INDEX_KEYS},
            self.page_key: KeyKind("page"),
            **{key: plain_kind for key in (plain, signed_key(plain), detached_signature_key(plain),
                                            detached_signature_key(signed_key(plain)))},
        }

    def kind_of(self, key: str, product_dirs: Iterable[str] = ()) -> KeyKind:
        """What `key` (relative to the store's root) is: one of the tree's own keys, else a key of
        the deepest of `product_dirs` (product folders, TreeConfig.product_dir) holding it
        (product_key_kind), else 'other'."""
        fixed = self._fixed_kinds.get(key)
        if fixed is not None:
            return fixed
        if key.startswith(INTERNAL_PREFIX):
            return KeyKind("internal")
        folder, _, name = key.rpartition("/")
        pages_folder, catalog_dir = self._folders
        if folder == pages_folder and name.endswith(PAGE_EXTENSION):
            return KeyKind("product-page")
        if folder == catalog_dir and (match := _CATALOG_VIEW_NAME.match(name)):
            catalog = f"{folder}/{match.group(1)}{DOCUMENT_EXTENSION}"
            return KeyKind("catalog" if catalog == key else "catalog-companion", catalog)
        for product_dir in sorted(product_dirs, key=len, reverse=True):
            found = product_key_kind(product_dir, key)
            if found is not None:
                return found
        return OTHER

    def is_own(self, key: str) -> bool:
        """True for a key the tree writes itself (index, catalogs, views, the tool's objects), relative
        to the store's root: a change there is never a product's."""
        own = (*TREE_FOLDERS, *([self.catalog_dir] if self.images_path.strip("/") else []), self.product_pages_folder)
        return key.startswith(tuple(f"{folder}/" for folder in own)) or key == self.page_key
