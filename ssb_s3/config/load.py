"""tree.yml: read once, validated against the shipped schema, frozen into the model (config.model).

The order is fixed: bounded YAML → the seed's weak typing (config.coerce) → the schema and the
checks it cannot make, all problems listed at once → the model. Nothing is built from a document
that has a problem.

Every YAML document of the package (tree.yml here, metadata.yaml in artifacts.py) is read by
`load_yaml`: safe types only, dates kept as strings, duplicate keys refused, and bounded in
size and alias expansion; tree.yml is at most MAX_TREE_BYTES, from a file or from S3.

Every key of simplestreams-builder's tree.yml keeps its meaning and default (prefix '/',
images_path 'streams/v1', datatype 'image-downloads', format 'products:1.0', days = number of
versions kept, 0 or less or missing meaning 1); its optional strings `release_title`, `version`
and `prefix_path` may be '' or null, meaning not set (the seed's local mode sets `prefix_path: ''`).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, ProblemsFound
from ..filters import Filter, FilterError
from ..schemas import load_schema, schema_problems
from ..vocabulary.layout import DEFAULT_IMAGES_PATH, DEFAULT_PAGE_PATH, reserved_folders, reserved_problem
from ..vocabulary.problems import Problem
from .coerce import clean_relative, duration, parse_duration, seed_optional, seed_weak_types
from .model import (
    CANONICAL_ARCH,
    DEFAULT_DELTA_MAX_RATIO,
    KNOWN_ARCHES,
    CachePolicy,
    HooksConfig,
    MirrorConfig,
    PageConfig,
    ProductConfig,
    SigningConfig,
    StorageConfig,
    TreeConfig,
    claim_alias,
)

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
            directory = clean_relative(directory)
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
    data = seed_weak_types(data)
    problems = (schema_problems(data, "tree", source_file)
                + _product_problems(data.get("products"), source_file, _reserved_of(data))
                + _storage_problems(data.get("storage"), source_file)
                + _mirror_problems(data.get("mirrors"), source_file))
    if problems:
        raise ProblemsFound(f"{source_file} is not a valid tree.yml", problems)

    products: list[ProductConfig] = []
    for raw in data["products"]:
        directory = clean_relative(raw["directory"])
        products.append(
            ProductConfig(
                name=raw["name"],
                arch=raw["arch"],
                release=raw["release"],
                os=raw["os"],
                directory=directory,
                release_title=seed_optional(raw, "release_title") or raw["release"],
                version=seed_optional(raw, "version"),
                prefix_path=seed_optional(raw, "prefix_path").rstrip("/"),
                source=_resolve_source(raw.get("source", ""), source_file),
                days=max(1, raw.get("days", 1)),
                hidden=raw.get("hidden", False),
                aliases=tuple(raw.get("aliases", ())),
                variant=raw.get("variant", ""),
                requirements=tuple(sorted(raw.get("requirements", {}).items())),
                support_eol=raw.get("support_eol", ""),
                build_script_hook=raw.get("build_script_hook", ""),
                max_age=duration(raw.get("max_age", data.get("max_age"))),
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
        prefix=clean_relative(data.get("prefix", "/")),
        images_path=clean_relative(data.get("images_path", DEFAULT_IMAGES_PATH)),
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
    return reserved_folders(clean_relative(images_path) if isinstance(images_path, str) else DEFAULT_IMAGES_PATH,
                            clean_relative(page_path) if isinstance(page_path, str) else DEFAULT_PAGE_PATH)


def _page(raw: bool | Mapping[str, Any]) -> PageConfig:
    """tree.yml `page`: false (off), true (the defaults) or a mapping of PageConfig's fields."""
    if isinstance(raw, bool):
        return PageConfig(enabled=raw)
    return PageConfig(**{**raw, "path": clean_relative(raw.get("path", DEFAULT_PAGE_PATH)),
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
