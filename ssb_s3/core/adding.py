"""`add`: the pure rules that turn an image's metadata.yaml into a product, a version and aliases.

The rules are incus-simplestreams' (`add`, DESIGN §4b), with ssb-s3's own product-name order:
* the product is `{os}:{release}:{arch}:{variant}` (the seed's and ours; incus-simplestreams writes
  `{os}:{release}:{variant}:{arch}`) unless --product-name names it; its folder is the name with
  each ':' made a '/' (`debian:12:amd64:default` -> `debian/12/amd64/default`);
* `arch` is `properties.architecture` when it is an architecture LXD knows, else the top-level
  `architecture` (which must be one LXD knows: a client silently drops any other);
* the default alias is `{os}/{release}/{variant}` (only that one) unless --no-default-alias;
  --alias adds more;
* the version is --version, else `creation_date` (UTC) as `YYYYMMDD_HH:MM`, the seed's form.
Each missing or unusable field is one AddError line naming the field and the flag that replaces
it (or saying that none does). Nothing here reads a file: callers hand in the parsed metadata.yaml.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..config import CANONICAL_ARCH
from ..errors import SSBError
from ..schemas import load_schema

VERSION_FORMAT = "%Y%m%d_%H:%M"
DEFAULT_DAYS = 3  # versions an added product keeps unless --days says otherwise
VALUE_CHARS = 60  # longest value quoted in a message


class AddError(SSBError):
    """An image `add` cannot publish as asked: one line naming the field and the flag to use."""


def _pattern(*path: str) -> re.Pattern[str]:
    node: Any = load_schema("tree")["$defs"]
    for part in path:
        node = node[part]
    return re.compile(node["pattern"])


NAME_RE = _pattern("product", "properties", "name")
ALIAS_RE = _pattern("product", "properties", "aliases", "items")
VARIANT_RE = _pattern("product", "properties", "variant")
RELPATH_RE = _pattern("relpath")
RELEASE_RE = _pattern("product", "properties", "release")


def _q(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + "..."


@dataclass(frozen=True)
class ImageFacts:
    """What an image says about itself in metadata.yaml (strings '' when absent)."""

    architecture: str
    creation_date: int
    os: str
    release: str
    variant: str
    description: str
    arch: str  # the product arch: properties.architecture if LXD knows it, else `architecture`


def image_facts(meta: Mapping[str, Any], where: str) -> ImageFacts:
    """The fields of metadata.yaml `add` uses; the architecture must be one LXD knows."""
    arch = meta.get("architecture")
    if arch in (None, ""):
        raise AddError(f"{where}: metadata.yaml: architecture is missing (no flag replaces it: "
                       "LXD and Incus need it)")
    if not isinstance(arch, str) or arch not in CANONICAL_ARCH:
        raise AddError(f"{where}: metadata.yaml: architecture {_q(arch)} is not an architecture LXD knows "
                       f"(one of {', '.join(sorted(CANONICAL_ARCH))}); no flag replaces it")
    created = meta.get("creation_date")
    if not isinstance(created, int) or isinstance(created, bool) or created <= 0:
        created = 0
    props = meta.get("properties")
    props = props if isinstance(props, Mapping) else {}

    def prop(key: str) -> str:
        value = props.get(key, "")
        return str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""

    named = prop("architecture")
    product_arch = named if named in CANONICAL_ARCH and CANONICAL_ARCH[named] == CANONICAL_ARCH[arch] else arch
    return ImageFacts(arch, created, prop("os"), prop("release"), prop("variant"), prop("description"), product_arch)


def version_name(facts: ImageFacts, version: str | None, where: str) -> str:
    """--version, else creation_date as YYYYMMDD_HH:MM (UTC)."""
    if version:
        return version
    if not facts.creation_date:
        raise AddError(f"{where}: metadata.yaml: creation_date is missing or not a positive unix timestamp "
                       "(LXD and Incus need it; --version names the version but does not replace it)")
    return datetime.fromtimestamp(facts.creation_date, timezone.utc).strftime(VERSION_FORMAT)


def _needed(facts: ImageFacts, key: str, where: str, flag: str) -> str:
    value: str = getattr(facts, key)
    if not value:
        raise AddError(f"{where}: metadata.yaml: properties.{key} is missing ({flag})")
    return value


def default_name(facts: ImageFacts, where: str) -> str:
    """`{os}:{release}:{arch}:{variant}`, checked as a product name."""
    flag = "or give --product-name"
    parts = [_needed(facts, "os", where, flag), _needed(facts, "release", where, flag), facts.arch,
             _needed(facts, "variant", where, flag)]
    name = ":".join(parts)
    if not NAME_RE.match(name) or "\n" in name:
        raise AddError(f"{where}: metadata.yaml: the product name {_q(name)} made of properties.os, release, "
                       "architecture and variant is not valid (letters, digits and . _ : + ~ - only): "
                       "give --product-name")
    return name


def name_problem(name: str) -> str | None:
    """Why --product-name cannot be a product name (and folder), or None."""
    if not NAME_RE.match(name) or "\n" in name:
        return f"{_q(name)} is not a valid product name (letters, digits and . _ : + ~ - only)"
    if not RELPATH_RE.match(folder_of(name)):
        return f"{_q(name)} gives the folder {_q(folder_of(name))}, which is not a plain relative path"
    return None


def folder_of(name: str) -> str:
    """The product's folder: its name with each ':' made a '/'."""
    return name.replace(":", "/")


def default_alias(facts: ImageFacts, where: str) -> str:
    """`{os}/{release}/{variant}` (incus-simplestreams' one default alias)."""
    flag = "or give --no-default-alias"
    alias = "/".join(_needed(facts, k, where, flag) for k in ("os", "release", "variant"))
    if not ALIAS_RE.match(alias) or "\n" in alias:
        raise AddError(f"{where}: metadata.yaml: the default alias {_q(alias)} made of properties.os, release and "
                       "variant is not valid (letters, digits and . _ + ~ / - only): give --no-default-alias "
                       "(and --alias)")
    return alias


def alias_problem(alias: str) -> str | None:
    if not ALIAS_RE.match(alias) or "\n" in alias:
        return f"{_q(alias)} is not a valid alias (letters, digits and . _ + ~ / - only, like debian/12)"
    return None


def product_entry(name: str, facts: ImageFacts, aliases: list[str], days: int, where: str) -> dict[str, Any]:
    """A new product's entry, in tree.yml's shape (the tree's record holds these)."""
    flag = "needed for a new product; or give --product-name of an existing one"
    os_name = _needed(facts, "os", where, flag)
    release = _needed(facts, "release", where, flag)
    if not RELEASE_RE.match(release):
        raise AddError(f"{where}: metadata.yaml: properties.release {_q(release)} has spaces; "
                       "give --product-name of an existing product")
    entry: dict[str, Any] = {"name": name, "arch": facts.arch, "release": release, "release_title": release,
                             "os": os_name, "directory": folder_of(name), "days": days, "aliases": aliases}
    if facts.variant and VARIANT_RE.match(facts.variant):
        entry["variant"] = facts.variant
    return entry


def overlap(folder: str, others: Mapping[str, str]) -> str | None:
    """The name of the product whose folder is `folder`, inside it or around it, or None."""
    for name, other in sorted(others.items()):
        if folder == other or folder.startswith(other + "/") or other.startswith(folder + "/"):
            return name
    return None
