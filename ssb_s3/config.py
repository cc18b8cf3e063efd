"""tree.yml: read once, validated against the shipped schema, frozen into dataclasses.

Every YAML document of the package (tree.yml here, metadata.yaml in artifacts.py) is read by
`load_yaml`: safe types only, dates kept as strings, duplicate keys refused, and bounded in
size and alias expansion; tree.yml is at most MAX_TREE_BYTES, from a file or from S3.

Every key of simplestreams-builder's tree.yml keeps its meaning and default (prefix '/',
images_path 'streams/v1', datatype 'image-downloads', format 'products:1.0', days = number of
versions kept, 0 or less or missing meaning 1); its optional strings `release_title`, `version`
and `prefix_path` may be '' or null, meaning not set (the seed's local mode sets `prefix_path: ''`).
"""

from __future__ import annotations

import decimal
import functools
import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError, ProblemsFound
from .filters import Filter, FilterError
from .schemas import load_schema, schema_problems
from .vocabulary.clients import CLIENTS
from .vocabulary.layout import (
    DEFAULT_IMAGES_PATH,
    DEFAULT_PAGE_PATH,
    TreeLayout,
    manifest_in,
    reserved_folders,
    reserved_problem,
)
from .vocabulary.problems import Problem

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


_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNIT_SECONDS = (7 * 86400, 86400, 3600, 60, 1)


def parse_duration(text: str | int) -> int:
    """'90m', '6h', '7d', '1h30m', '45s', '0' (or a number of seconds) -> seconds.

    ValueError names what was expected.
    """
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    value = str(text).strip()
    if value.isdigit():
        return int(value)
    match = _DURATION.match(value)
    if not value or not match or not any(match.groups()):
        raise ValueError(f"'{text}' is not a duration (expected e.g. 90m, 6h, 7d, 1h30m or 0)")
    return sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_SECONDS, strict=True) if n)


ENDPOINT_EXPECTED = "expected http(s)://HOST[:PORT]"


def endpoint_url_problem(url: str) -> str | None:
    """Why `url` cannot be an S3 endpoint (boto3 would fail with a bare ValueError), or None."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # ValueError when not a number or out of range
    except ValueError:
        return ENDPOINT_EXPECTED
    if parts.scheme not in ("http", "https") or not parts.hostname or any(ch.isspace() for ch in url):
        return ENDPOINT_EXPECTED
    return None


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


ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # botocore's order for S3


def endpoint_from_env() -> tuple[str, str] | None:
    """(variable, URL) of the endpoint botocore takes from the environment, or None."""
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").strip().lower() == "true":
        return None
    return next(((name, os.environ[name]) for name in ENDPOINT_ENV if os.environ.get(name)), None)


def tree_endpoint(configured: str | None) -> tuple[str | None, str | None]:
    """(endpoint_url, endpoint_set_aside) for tree.yml's storage.endpoint_url, in the AWS CLI's order:
    --endpoint-url, then AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, then the configuration files
    (tree.yml, then ~/.aws/config). So a tree.yml copied into a Lambda bundle never overrides the
    function's environment: when the environment names an endpoint, tree.yml's is set aside and
    botocore takes the environment's."""
    if configured is None or endpoint_from_env() is None:
        return configured, None
    return None, configured


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


MAX_YAML_ALIASES = 100  # real tree.yml and metadata.yaml files use none or a few
MAX_TREE_BYTES = 1 << 20  # tree.yml, from a file or from S3
MAX_TREE_NODES = 250_000  # nodes once aliases are expanded: a 1 MiB tree.yml of ~7,000 products has ~120,000


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader that keeps dates as strings (`support_eol: 2027-06-30` must stay a string),
    refuses a key given twice in one mapping (PyYAML would silently keep the last one), and
    bounds alias expansion: at most MAX_YAML_ALIASES aliases, and at most `max_nodes` nodes once
    every alias is expanded (counted while composing, before anything is built), so that a
    billion-laughs document fails in milliseconds instead of eating gigabytes."""

    max_nodes = MAX_TREE_NODES  # load_yaml sets it per document

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._nodes = 0  # nodes of the document with every alias expanded
        self._expanded: dict[int, int] = {}  # id(node) -> its expanded node count, once composed

    def _count(self, nodes: int, mark: Any) -> None:
        self._nodes += nodes
        if self._nodes > self.max_nodes:
            raise yaml.composer.ComposerError(
                None, None, f"more than {self.max_nodes} nodes once aliases are expanded "
                "(a YAML bomb?); refusing the document", mark)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_YAML_ALIASES} aliases (a YAML bomb?); refusing the document", mark)
            if id(node) not in self._expanded:
                raise yaml.composer.ComposerError(None, None, "an alias refers to a node that contains it", mark)
            self._count(self._expanded[id(node)], mark)
            return node
        before = self._nodes
        self._count(1, mark)
        node = super().compose_node(parent, index)
        self._expanded[id(node)] = self._nodes - before
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first on line {seen[key] + 1})", key_node.start_mark)
            if isinstance(key, str):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_PlainLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}


def load_yaml(data: str | bytes, *, max_bytes: int, max_nodes: int) -> Any:
    """The one YAML loader of the package: safe (no objects), dates kept as strings, duplicate
    keys refused, document size and alias expansion bounded. Raises yaml.YAMLError."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise yaml.YAMLError(f"the document is {size} bytes, over the limit of {max_bytes} bytes")
    loader = _PlainLoader(data)
    loader.max_nodes = max_nodes
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.YAMLError) -> tuple[str, str]:
    """A YAML error as (' line L, column C' or '' when unknown, the problem on one bounded line)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return where, " ".join(str(problem).split())[:200]


def _clean_relative(value: str) -> str:
    return re.sub(r"/+", "/", value).strip("/")


SEED_OPTIONAL = ("release_title", "version", "prefix_path")  # the seed's optional strings: '' or null is "not set"


def _seed_optional(raw: Mapping[str, Any], key: str) -> str:
    """One of the seed's optional string keys (SEED_OPTIONAL): '' or null (`version:`) means not set,
    as in simplestreams-builder, where a missing key and an empty one are the same Go zero value."""
    return raw.get(key) or ""


# The seed read tree.yml with viper, which decodes into its Go struct with mapstructure's weak typing:
# a scalar of another type is converted rather than refused. Those conversions are its meaning of a
# tree.yml, so they are ours for the seed's own keys (our newer keys stay strictly typed).
SEED_STRING_KEYS = ("name", "arch", "release", "release_title", "os", "directory", "version", "prefix_path")
SEED_TOP_STRING_KEYS = ("prefix", "images_path", "datatype", "format")
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # strconv.ParseBool
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _go_string(value: Any) -> Any:
    """mapstructure's weak string: bool -> "1"/"0", int -> decimal, float -> Go's shortest 'f'
    format (so `release: 12.10` is "12.1", as the seed read it). Anything else is left for the schema."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return format(decimal.Decimal(repr(value)), "f")
    return value


def _go_int(value: Any) -> Any:
    """mapstructure's weak int: bool -> 1/0, float -> truncated, string -> strconv.ParseInt(s, 0, 64)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?(0[xX][0-9a-fA-F_]+|0[oObB]?[0-9_]+|[1-9][0-9_]*|0)", value):
        text = value.replace("_", "")
        octal = re.fullmatch(r"([+-]?)0([0-7]+)", text)  # Go's base 0: a leading 0 is octal
        try:
            return int(octal[1] + octal[2], 8) if octal else int(text, 0)
        except ValueError:
            return value
    return value


def _go_bool(value: Any) -> Any:
    """mapstructure's weak bool: a number is true unless 0, a string as strconv.ParseBool ('' is false)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, str) and value in _GO_TRUE + _GO_FALSE + ("",):
        return value in _GO_TRUE
    return value


def _seed_weak_types(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """tree.yml with the seed's keys converted as the seed converted them (a copy; the rest as is):
    `release: 12` is "12", `days: "2"` is 2, `hidden: "true"` is true, `aliases: a` is [a]."""
    converted = dict(data)
    for key in SEED_TOP_STRING_KEYS:
        if key in converted:
            converted[key] = _go_string(converted[key])
    products = converted.get("products")
    if not isinstance(products, list):
        return converted
    converted["products"] = [_seed_weak_product(raw) if isinstance(raw, Mapping) else raw for raw in products]
    return converted


def _seed_weak_product(raw: Mapping[str, Any]) -> dict[str, Any]:
    product = dict(raw)
    for key in SEED_STRING_KEYS:
        if key in product and product[key] is not None:
            product[key] = _go_string(product[key])
    if "days" in product:
        product["days"] = _go_int(product["days"])
    if "hidden" in product:
        product["hidden"] = _go_bool(product["hidden"])
    aliases = product.get("aliases")
    if isinstance(aliases, (str, int, float)):
        aliases = [aliases]  # a single value where a list is expected
    if isinstance(aliases, list):
        product["aliases"] = [_go_string(alias) for alias in aliases]
    return product


def _duration(value: str | int | None) -> int | None:
    return None if value is None else parse_duration(value)


def _resolve_source(source: str, source_file: str) -> str:
    """A relative local `source` folder is relative to tree.yml, not to the current directory."""
    source = source.rstrip("/")
    if not source or source.startswith("s3://") or Path(source).is_absolute():
        return source
    return str(Path(source_file).parent / source)


def _product_problems(raw_products: Any, source_file: str, reserved: tuple[str, ...] = reserved_folders()
                      ) -> list[Problem]:
    """What the schema cannot say; runs even when the schema found problems, so all are listed at once.
    `reserved`: the tree's own keys (reserved_folders), which no product folder may overlap."""
    problems: list[Problem] = []
    seen_names: dict[str, int] = {}
    seen_dirs: dict[str, int] = {}
    seen_aliases: dict[tuple[str, str], tuple[int, str]] = {}
    for idx, raw in enumerate(raw_products if isinstance(raw_products, list) else ()):
        if not isinstance(raw, Mapping):
            continue
        where = f"products[{idx}]"

        def add(field: str, text: str, where: str = where) -> None:
            problems.append(Problem(None, source_file, f"{where}{field}", text))

        arch, name, directory = raw.get("arch"), raw.get("name"), raw.get("directory")
        if isinstance(arch, str) and arch and arch not in KNOWN_ARCHES:
            add(".arch", f"'{arch}' is not an architecture LXD knows "
                f"(use one of amd64, x86_64, arm64, aarch64, armhf, i386, ppc64el, s390x, riscv64)")
        if isinstance(name, str):
            if name in seen_names:
                add(".name", f"'{name}' is already used by products[{seen_names[name]}]")
            seen_names.setdefault(name, idx)
        if isinstance(directory, str):
            directory = _clean_relative(directory)
            if directory in seen_dirs:
                add(".directory", f"'{directory}' is already used by products[{seen_dirs[directory]}]")
            seen_dirs.setdefault(directory, idx)
            why = reserved_problem(directory, reserved)
            if why:
                add(".directory", why)
        aliases = raw.get("aliases", ())
        if isinstance(arch, str) and isinstance(aliases, list) and raw.get("hidden") is not True:
            canonical = CANONICAL_ARCH.get(arch, arch)
            for alias in (a for a in aliases if isinstance(a, str)):
                owner = claim_alias(seen_aliases, alias, arch, (idx, str(name)))
                if owner[0] != idx:
                    add(".aliases", f"'{alias}' for arch {canonical} is already claimed by "
                                    f"{owner[1]} (products[{owner[0]}]); LXD would show only one of them")
        eol = raw.get("support_eol")
        if isinstance(eol, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", eol):
            try:
                datetime.strptime(eol, "%Y-%m-%d")
            except ValueError:
                add(".support_eol", f"'{eol}' is not a real calendar date, expected YYYY-MM-DD")
        if raw.get("source") and raw.get("prefix_path"):
            add("", "set either 'source' or 'prefix_path', not both")
    return problems


def _storage_problems(storage: Any, source_file: str) -> list[Problem]:
    """storage.endpoint_url beyond the schema's ^https?:// (e.g. 'http://' alone, a bad port)."""
    url = storage.get("endpoint_url") if isinstance(storage, Mapping) else None
    problem = endpoint_url_problem(url) if isinstance(url, str) and url.startswith(("http://", "https://")) else None
    return [Problem(None, source_file, "storage.endpoint_url", f"'{url}' is not valid, {problem}")] if problem else []


def _mirror_problems(mirrors: Any, source_file: str) -> list[Problem]:
    """Filters the schema's pattern lets through but that cannot be used (a bad regular expression)."""
    problems = []
    for i, raw in enumerate(mirrors if isinstance(mirrors, list) else ()):
        filters = raw.get("filters") if isinstance(raw, Mapping) else None
        for j, text in enumerate(filters if isinstance(filters, list) else ()):
            try:
                Filter.parse(str(text))
            except FilterError as exc:
                problems.append(Problem(None, source_file, f"mirrors[{i}].filters[{j}]", str(exc)))
    return problems


def parse_config(data: Any, source_file: str) -> TreeConfig:
    """Build a TreeConfig from already-parsed YAML; every problem is reported at once."""
    if data is None:
        raise ConfigError(f"{source_file}: the file is empty, expected a mapping with 'products'")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source_file}: expected a mapping at the top level")
    data = _seed_weak_types(data)
    problems = (schema_problems(data, "tree", source_file)
                + _product_problems(data.get("products"), source_file, _reserved_of(data))
                + _storage_problems(data.get("storage"), source_file)
                + _mirror_problems(data.get("mirrors"), source_file))
    if problems:
        raise ProblemsFound(f"{source_file} is not a valid tree.yml", problems)

    products: list[ProductConfig] = []
    for raw in data["products"]:
        directory = _clean_relative(raw["directory"])
        products.append(
            ProductConfig(
                name=raw["name"],
                arch=raw["arch"],
                release=raw["release"],
                os=raw["os"],
                directory=directory,
                release_title=_seed_optional(raw, "release_title") or raw["release"],
                version=_seed_optional(raw, "version"),
                prefix_path=_seed_optional(raw, "prefix_path").rstrip("/"),
                source=_resolve_source(raw.get("source", ""), source_file),
                days=max(1, raw.get("days", 1)),
                hidden=raw.get("hidden", False),
                aliases=tuple(raw.get("aliases", ())),
                variant=raw.get("variant", ""),
                requirements=tuple(sorted(raw.get("requirements", {}).items())),
                support_eol=raw.get("support_eol", ""),
                build_script_hook=raw.get("build_script_hook", ""),
                max_age=_duration(raw.get("max_age", data.get("max_age"))),
                deltas=raw.get("deltas", data.get("deltas", 0)),
            )
        )
    if problems:
        raise ProblemsFound(f"{source_file} is not a valid tree.yml", problems)

    storage_raw = data.get("storage", {})
    mirrors = tuple(
        MirrorConfig(
            source=_resolve_source(raw["source"], source_file) if "://" not in raw["source"] else raw["source"],
            filters=tuple(raw.get("filters", ())),
            clients=tuple(dict.fromkeys({"lxd": "LXD", "incus": "Incus"}[c] for c in raw.get("for", ("lxd", "incus")))),
            max_versions=raw.get("max"),
            keep=raw.get("keep", False),
            keyring=_resolve_source(raw["keyring"], source_file) if raw.get("keyring") else None,
            verify=raw.get("verify", True),
            max_file_size=raw.get("max_file_size", MirrorConfig.max_file_size),
            stall_bytes=raw.get("stall_bytes", MirrorConfig.stall_bytes),
            stall_seconds=raw.get("stall_seconds", MirrorConfig.stall_seconds),
        )
        for raw in data.get("mirrors", ())
    )
    return TreeConfig(
        source_file=source_file,
        products=tuple(products),
        prefix=_clean_relative(data.get("prefix", "/")),
        images_path=_clean_relative(data.get("images_path", DEFAULT_IMAGES_PATH)),
        datatype=data.get("datatype", "image-downloads"),
        format=data.get("format", "products:1.0"),
        content_id=data.get("content_id", "images"),
        storage=StorageConfig(
            endpoint_url=tree_endpoint(storage_raw.get("endpoint_url"))[0],
            endpoint_set_aside=tree_endpoint(storage_raw.get("endpoint_url"))[1],
            region=storage_raw.get("region"),
            profile=storage_raw.get("profile"),
            addressing_style=storage_raw.get("addressing_style", "auto"),
            checksum_mode=storage_raw.get("checksum_mode", "when_supported"),
            conditional_writes=storage_raw.get("conditional_writes", True),
        ),
        cache_control=CachePolicy(**data.get("cache_control", {})),
        grace=parse_duration(data.get("grace", "6h")),
        lease_ttl=max(1, parse_duration(data.get("lease_ttl", "5m"))),
        delta_max_ratio=float(data.get("delta_max_ratio", DEFAULT_DELTA_MAX_RATIO)),
        xdelta3=data.get("xdelta3", "xdelta3"),
        hooks=HooksConfig(
            manifest_on_upload=data.get("hooks", {}).get("manifest_on_upload", False),
            debounce=parse_duration(data.get("hooks", {}).get("debounce", 2)),
        ),
        signing=_signing(data.get("signing"), source_file),
        page=_page(data.get("page", True)),
        mirrors=mirrors,
    )


def _signing(raw: Mapping[str, Any] | None, source_file: str) -> SigningConfig:
    """`signing:` (schema-checked); a relative gnupghome is relative to tree.yml."""
    if not raw:
        return SigningConfig()
    home = raw.get("gnupghome", "")
    if home and not Path(home).expanduser().is_absolute():
        home = str(Path(source_file).parent / home)
    return SigningConfig(key=raw["key"], gnupghome=str(Path(home).expanduser()) if home else "",
                         detached=raw.get("detached", False), timeout=max(1, parse_duration(raw.get("timeout", 60))))


def base_url_problem(url: str) -> str | None:
    """Why `url` cannot be the remote URL the page shows (publish --base-url), after the schema's
    page.base_url; None if it can."""
    spec = load_schema("tree")["properties"]["page"]["properties"]["base_url"]
    if re.search(spec["pattern"], url) and not url.endswith("\n"):
        return None
    return f"'{url}' is not valid: expected {spec['description']}, like https://images.example.org/lxd"


def _reserved_of(data: Mapping[str, Any]) -> tuple[str, ...]:
    """reserved_folders of a tree.yml as read (before its own checks: wrong types give the defaults)."""
    images_path, page = data.get("images_path", DEFAULT_IMAGES_PATH), data.get("page", True)
    page_path = page.get("path", DEFAULT_PAGE_PATH) if isinstance(page, Mapping) else DEFAULT_PAGE_PATH
    return reserved_folders(_clean_relative(images_path) if isinstance(images_path, str) else DEFAULT_IMAGES_PATH,
                            _clean_relative(page_path) if isinstance(page_path, str) else DEFAULT_PAGE_PATH)


def _page(raw: bool | Mapping[str, Any]) -> PageConfig:
    """tree.yml `page`: false (off), true (the defaults) or a mapping of PageConfig's fields."""
    if isinstance(raw, bool):
        return PageConfig(enabled=raw)
    return PageConfig(**{**raw, "path": _clean_relative(raw.get("path", DEFAULT_PAGE_PATH)),
                         "base_url": raw.get("base_url", "").rstrip("/")})


def load_config(path: str | Path) -> TreeConfig:
    """Read and validate tree.yml; raises ConfigError/ProblemsFound naming the file and field."""
    source = str(path)
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(MAX_TREE_BYTES + 1)  # never more than the limit, whatever the file
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found (set -c/--config or SSB_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from None
    return config_from_text(data, source)


def config_from_text(text: str | bytes, source: str) -> TreeConfig:
    """Parse and validate tree.yml content read from anywhere (a file, an S3 object); at most
    MAX_TREE_BYTES bytes and MAX_TREE_NODES nodes (aliases expanded)."""
    if len(text) > MAX_TREE_BYTES:
        raise ConfigError(f"{source}: {len(text)} bytes or more, over the limit of {MAX_TREE_BYTES} bytes for tree.yml")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: cannot read: {exc}") from None
    try:
        data = load_yaml(text, max_bytes=MAX_TREE_BYTES, max_nodes=MAX_TREE_NODES)
    except yaml.YAMLError as exc:
        where, problem = yaml_problem(exc)
        raise ConfigError(f"{source}:{where}: invalid YAML: {problem}") from None
    return parse_config(data, source)


def config_as_dict(tree: TreeConfig) -> dict[str, Any]:
    """The effective configuration, defaults filled in, in tree.yml's own shape (for `print`).

    A local `source` is printed absolute: the output, saved anywhere, names the same folder (a
    relative one would be read relative to wherever it is saved).
    """
    products = []
    for p in tree.products:
        entry: dict[str, Any] = {
            "name": p.name, "arch": p.arch, "release": p.release,
            "release_title": p.release_title, "os": p.os, "directory": p.directory,
            "days": p.days, "hidden": p.hidden, "aliases": list(p.aliases),
        }  # fmt: skip
        if p.max_age is not None:
            entry["max_age"] = f"{p.max_age}s"
        if p.deltas:
            entry["deltas"] = p.deltas
        for key in ("version", "prefix_path", "source", "variant", "support_eol", "build_script_hook"):
            if getattr(p, key):
                entry[key] = getattr(p, key)
        if p.source and not p.source.startswith("s3://"):
            entry["source"] = os.path.abspath(p.source)
        if p.requirements:
            entry["requirements"] = dict(p.requirements)
        products.append(entry)
    storage = {k: v for k, v in vars(tree.storage).items() if v is not None}
    return {
        "prefix": "/" + tree.prefix,
        "images_path": tree.images_path,
        "datatype": tree.datatype,
        "format": tree.format,
        "content_id": tree.content_id,
        "storage": storage,
        "cache_control": vars(tree.cache_control),
        "grace": f"{tree.grace}s",
        "lease_ttl": f"{tree.lease_ttl}s",
        "delta_max_ratio": tree.delta_max_ratio,
        "xdelta3": tree.xdelta3,
        "hooks": {"manifest_on_upload": tree.hooks.manifest_on_upload, "debounce": f"{tree.hooks.debounce}s"},
        **({"signing": {"key": tree.signing.key, "detached": tree.signing.detached,
                        "timeout": f"{tree.signing.timeout}s",
                        **({"gnupghome": os.path.abspath(tree.signing.gnupghome)} if tree.signing.gnupghome else {})}}
           if tree.signing.key else {}),
        "page": {k: v for k, v in vars(tree.page).items() if k != "enabled" and v != ""}
        if tree.page.enabled else False,
        "products": products,
        **({"mirrors": [_mirror_as_dict(m) for m in tree.mirrors]} if tree.mirrors else {}),
    }


def _mirror_as_dict(mirror: MirrorConfig) -> dict[str, Any]:
    entry: dict[str, Any] = {"source": mirror.source, "filters": list(mirror.filters),
                             "for": [c.lower() for c in mirror.clients], "keep": mirror.keep, "verify": mirror.verify,
                             "max_file_size": mirror.max_file_size, "stall_bytes": mirror.stall_bytes,
                             "stall_seconds": mirror.stall_seconds}
    if mirror.max_versions is not None:
        entry["max"] = mirror.max_versions
    if mirror.keyring:
        entry["keyring"] = os.path.abspath(mirror.keyring)
    return entry
