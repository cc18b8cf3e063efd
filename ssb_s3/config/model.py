"""The frozen model of tree.yml: what every other module reads, never a raw mapping.

Built only by ssb_s3.config.load (after the schema and the checks the schema cannot make); every
field has the default simplestreams-builder gave it (prefix '', images_path 'streams/v1', datatype
'image-downloads', format 'products:1.0', days 1). The values are immutable: a command that needs
another product (mirror) builds a new one. The architecture table and the alias-collision rule
live here because the checks of tree.yml and the core's mirror selection both apply them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from typing import TypeVar

from ..errors import ConfigError
from ..vocabulary.clients import CLIENTS
from ..vocabulary.layout import DEFAULT_IMAGES_PATH, DEFAULT_PAGE_PATH, TreeLayout, manifest_in

# Architecture names the LXD 5.0 client knows (shared/osarch of lxd 5.0.2, vocabulary/clients), by the
# canonical name it maps them to. A product with any other arch is silently dropped by the client,
# so we refuse it.
CANONICAL_ARCH: dict[str, str] = dict(CLIENTS["lxd-5.0"].arches)
KNOWN_ARCHES = frozenset(CANONICAL_ARCH)
_Claimant = TypeVar("_Claimant")


def claim_alias(owners: dict[tuple[str, str], _Claimant], alias: str, arch: str, claimant: _Claimant) -> _Claimant:
    """The one alias-collision rule: a client shows one image per alias and canonical arch. Record
    `claimant` for (alias, arch) unless someone claimed it first; return the owner."""
    return owners.setdefault((alias, CANONICAL_ARCH.get(arch, arch)), claimant)


@dataclass(frozen=True)
class StorageConfig:
    """How to reach S3: None means 'let boto3 decide' (env, profile, AWS_ENDPOINT_URL*).
    `endpoint_set_aside`: tree.yml's endpoint_url when the environment names another (see
    `tree_endpoint`); the S3 client warns once that it is not used."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    addressing_style: str = "auto"
    checksum_mode: str = "when_supported"
    conditional_writes: bool = True
    endpoint_set_aside: str | None = None


IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class CachePolicy:
    """Cache-Control per class of object: the index must be fresh, everything else never changes."""

    index: str = "no-cache"
    catalog: str = IMMUTABLE  # content-addressed: a key never changes content
    images_json: str = "public, max-age=60"  # the plain copy is overwritten at each publish
    manifest: str = "no-cache"
    artifacts: str = IMMUTABLE
    page: str = "no-cache"  # index.html, rewritten by every publish that changes the catalog, like the index
    # meta/1.0/index-* (classic LXC): fixed keys overwritten at each publish, like images.json; a
    # stale copy names versions that stay downloadable for the grace, which must exceed this max-age
    lxc_index: str = "public, max-age=60"

    def of(self, cache_class: str, default: str) -> str:
        """The Cache-Control of a class: tree.yml's (or its default above) for the classes tree.yml
        names, `default` (the view's own, core.views.View.cache_default) for any other."""
        return str(getattr(self, cache_class)) if cache_class in _CACHE_CLASSES else default


_CACHE_CLASSES = frozenset(f.name for f in fields(CachePolicy))


@dataclass(frozen=True)
class PageConfig:
    """The catalog web page (tree.yml `page`; `page: false` turns it off). `path` is relative to the
    tree's root, where streams/v1/index.json is; `base_url` is the remote URL shown in the copyable
    lines (publish --base-url overrides it; '' : the page fills in its own location); `title` and
    `description` head the page (outside text: checked as every tree.yml string, escaped by the page)."""

    enabled: bool = True
    path: str = DEFAULT_PAGE_PATH
    base_url: str = ""
    remote: str = "ssb"  # the remote name in the copyable `lxc remote add` / `incus remote add` lines
    stale_after_days: int = 30
    title: str = "Images"  # the page's heading and <title>
    description: str = ""  # one paragraph under the title ('' : none)


@dataclass(frozen=True)
class HooksConfig:
    """How bucket events are turned into publishes."""

    manifest_on_upload: bool = False  # for builders that upload with other tools
    debounce: int = 2  # seconds to wait for more events before one publish


DEFAULT_DELTA_MAX_RATIO = 0.8  # a delta at least this fraction of its full file is not worth publishing


@dataclass(frozen=True)
class SigningConfig:
    """Signed streams (ssb_s3.core.signed, ssb_s3.gpg): off while `key` is empty."""

    key: str = ""
    gnupghome: str = ""  # "": GNUPGHOME, else GnuPG's default home
    detached: bool = False  # also <catalog>.asc
    timeout: int = 60  # seconds one gpg run may take


@dataclass(frozen=True)
class ProductConfig:
    """One product of tree.yml; `directory` is relative to the tree's prefix."""

    name: str
    arch: str
    release: str
    os: str
    directory: str
    release_title: str
    version: str = ""
    prefix_path: str = ""
    source: str = ""
    days: int = 1
    hidden: bool = False
    aliases: tuple[str, ...] = ()
    variant: str = ""
    requirements: tuple[tuple[str, str], ...] = ()
    support_eol: str = ""
    build_script_hook: str = ""
    max_age: int | None = None  # seconds; None = keep by count (`days`) only
    deltas: int = 0  # .vcdiff deltas of a new version against this many previous ones (0: none)
    mirrored: bool = False  # made by `mirror` from an upstream product, not declared in tree.yml

    @property
    def manifest_url(self) -> str:
        """Where a `prefix_path` product's ssb.json is fetched (the seed's layout)."""
        return manifest_in(f"{self.prefix_path}/{self.directory}")


@dataclass(frozen=True)
class MirrorConfig:
    """One entry of tree.yml's `mirrors:` (the options of `ssb-s3 mirror`)."""

    source: str
    filters: tuple[str, ...] = ()
    clients: tuple[str, ...] = ("LXD", "Incus")
    max_versions: int | None = None
    keep: bool = False
    keyring: str | None = None
    verify: bool = True
    # Bounds of each copied file: a declared size over max_file_size is refused before any byte is
    # written; a file that brings fewer than stall_bytes in any stall_seconds fails (its version only).
    max_file_size: int = 64 << 30
    stall_bytes: int = 64 << 10
    stall_seconds: float = 60.0


@dataclass(frozen=True)
class TreeConfig:
    """The whole tree.yml. `prefix` is normalised: '' or 'some/path' (no slashes around)."""

    source_file: str
    products: tuple[ProductConfig, ...]
    prefix: str = ""
    images_path: str = DEFAULT_IMAGES_PATH
    datatype: str = "image-downloads"
    format: str = "products:1.0"
    content_id: str = "images"
    storage: StorageConfig = field(default_factory=StorageConfig)
    cache_control: CachePolicy = field(default_factory=CachePolicy)
    grace: int = 6 * 3600
    lease_ttl: int = 300
    delta_max_ratio: float = DEFAULT_DELTA_MAX_RATIO
    xdelta3: str = "xdelta3"
    hooks: HooksConfig = field(default_factory=HooksConfig)
    signing: SigningConfig = field(default_factory=SigningConfig)
    page: PageConfig = field(default_factory=PageConfig)
    mirrors: tuple[MirrorConfig, ...] = ()

    def product(self, name: str) -> ProductConfig:
        """Look a product up by name; the error lists the names that exist."""
        for product in self.products:
            if product.name == name:
                return product
        names = ", ".join(p.name for p in self.products)
        raise ConfigError(f"{self.source_file}: no product named '{name}' (products: {names})")

    @functools.cached_property
    def layout(self) -> TreeLayout:
        """The tree's keys (ssb_s3.vocabulary.layout)."""
        return TreeLayout(self.prefix, self.images_path, self.page.path)

    def under_prefix(self, path: str) -> str:
        """Join a tree-relative path under the configured prefix."""
        return self.layout.under_prefix(path)

    def product_dir(self, product: ProductConfig) -> str:
        return self.layout.product_dir(product.directory)

    def manifest_key(self, product: ProductConfig) -> str:
        return self.layout.manifest_key(product.directory)

    @property
    def catalog_dir(self) -> str:
        return self.layout.catalog_dir
