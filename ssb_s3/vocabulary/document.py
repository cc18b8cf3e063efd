"""The catalog's document model: a products:1.0 catalog as frozen values, and the one walker of
products -> versions -> items.

`Catalog.from_json(obj)` turns a catalog that passed the products schema check
(schemas.schema_problems(obj, "products", ...) is empty) into Catalog -> Product -> Version -> Item;
`to_json()` gives back a mapping equal to the one parsed: the fields the schema names are typed
attributes, every other field (a future simplestreams field, a mirror's own) is kept as is in
`extra`, and the combined fingerprints (combined_*sha256) of an item in `combined`. Values are
frozen and slotted (a 10,000-product catalog holds a few hundred thousand items); the mappings
they hold are read-only views. Parsing a catalog that did not pass the schema check raises
TypeError or KeyError: the check is the caller's, and it reports the one clear line.

`walk(catalog)` yields (product name, product, version name, version, item name, item) for every
item, and `walk_versions(catalog)` (product name, product, version name, version) for every
version, in the catalog's order or, with `ordered=True`, by product then version then item name.
Both take a typed Catalog or a raw catalog mapping: the raw form
costs no parse, so a hot path (publish at 10,000 products, issue 24) walks the bytes it read as
they are. A raw walk skips what is not a mapping where the catalog's shape wants one (an older
catalog read back for the purge is not trusted); the schema check reports it, not the walker.
`items_of(catalog)` is the fast path over every item (a publish walks the whole catalog with it):
it yields a raw item as found, so its caller has checked the shape first.

Item-level readers (vocabulary/clients.images, core/catalog.version_images) take an `ItemView`:
an `Item`, or a raw item seen through `RawItem` (`raw_items(version_items)`), the one adapter for
the publish path, which reads the catalog it serves without a typed parse. A RawItem reads the
mapping as it is (no check, no copy): its attributes are whatever the mapping holds, or None.
This module imports nothing of ssb_s3: every floor may use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from types import MappingProxyType
from typing import Any, Protocol, overload

_EMPTY: Mapping[str, Any] = MappingProxyType({})
COMBINED_PREFIX = "combined_"  # combined_sha256, combined_squashfs_sha256, ...: sha256(meta ‖ root)


def _frozen(mapping: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(mapping) if mapping else _EMPTY


def _mapping(data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise TypeError(f"expected an object, got {type(data).__name__}")
    return data


def _optional(data: Mapping[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"{name}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _required(data: Mapping[str, Any], name: str, kind: type) -> Any:
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{name}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _put(out: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        out[name] = value


@dataclass(frozen=True, slots=True)
class Item:
    """One file of a version: ftype, path (a key of the tree), size, its hashes, the base version
    of a delta, the combined fingerprints by field name, and any other field kept as is."""

    ftype: str
    path: str
    size: int
    sha256: str | None = None
    md5: str | None = None
    delta_base: str | None = None
    combined: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    _FIELDS = frozenset({"ftype", "path", "size", "sha256", "md5", "delta_base"})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Item:
        combined: dict[str, str] = {}
        extra: dict[str, Any] = {}
        for key, value in _mapping(data).items():
            if key in cls._FIELDS:
                continue
            if key.startswith(COMBINED_PREFIX) and isinstance(value, str):
                combined[key] = value
            else:
                extra[key] = value
        return cls(_required(data, "ftype", str), _required(data, "path", str), _required(data, "size", int),
                   _optional(data, "sha256", str), _optional(data, "md5", str), _optional(data, "delta_base", str),
                   _frozen(combined), _frozen(extra))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ftype": self.ftype, "path": self.path, "size": self.size}
        _put(out, "sha256", self.sha256)
        _put(out, "md5", self.md5)
        _put(out, "delta_base", self.delta_base)
        out.update(self.combined)
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a product: its items by item name, its label and pubname if any."""

    items: Mapping[str, Item]
    label: str | None = None
    pubname: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    _FIELDS = frozenset({"items", "label", "pubname"})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Version:
        items = _required(_mapping(data), "items", Mapping)
        return cls(_frozen({name: Item.from_json(item) for name, item in items.items()}),
                   _optional(data, "label", str), _optional(data, "pubname", str),
                   _frozen({k: v for k, v in data.items() if k not in cls._FIELDS}))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"items": {name: item.to_json() for name, item in self.items.items()}}
        _put(out, "label", self.label)
        _put(out, "pubname", self.pubname)
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class Product:
    """One product of the catalog: what the clients show and filter on, and its versions by name."""

    aliases: str
    arch: str
    os: str
    release: str
    release_title: str
    versions: Mapping[str, Version]
    release_codename: str | None = None
    supported: bool | None = None
    support_eol: str | None = None
    version: str | None = None
    variant: str | None = None
    requirements: Mapping[str, str] | None = None
    lxd_requirements: Mapping[str, str] | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    _REQUIRED = ("aliases", "arch", "os", "release", "release_title")
    _OPTIONAL = ("release_codename", "support_eol", "version", "variant")
    _FIELDS = frozenset({*_REQUIRED, *_OPTIONAL, "supported", "requirements", "lxd_requirements", "versions"})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Product:
        versions = _required(_mapping(data), "versions", Mapping)
        requirements = _optional(data, "requirements", Mapping)
        lxd_requirements = _optional(data, "lxd_requirements", Mapping)
        return cls(_required(data, "aliases", str), _required(data, "arch", str), _required(data, "os", str),
                   _required(data, "release", str), _required(data, "release_title", str),
                   versions=_frozen({name: Version.from_json(v) for name, v in versions.items()}),
                   release_codename=_optional(data, "release_codename", str),
                   supported=_optional(data, "supported", bool),
                   support_eol=_optional(data, "support_eol", str),
                   version=_optional(data, "version", str), variant=_optional(data, "variant", str),
                   requirements=None if requirements is None else MappingProxyType(dict(requirements)),
                   lxd_requirements=None if lxd_requirements is None else MappingProxyType(dict(lxd_requirements)),
                   extra=_frozen({k: v for k, v in data.items() if k not in cls._FIELDS}))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self._REQUIRED}
        for name in (*self._OPTIONAL, "supported"):
            _put(out, name, getattr(self, name))
        for name in ("requirements", "lxd_requirements"):
            value = getattr(self, name)
            if value is not None:
                out[name] = dict(value)
        out["versions"] = {name: version.to_json() for name, version in self.versions.items()}
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class Catalog:
    """A products:1.0 catalog (the datatype image-downloads): its content id and its products."""

    content_id: str
    products: Mapping[str, Product]
    datatype: str = "image-downloads"
    format: str = "products:1.0"
    license: str | None = None
    updated: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    _FIELDS = frozenset({"content_id", "products", "datatype", "format", "license", "updated"})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Catalog:
        """The typed catalog of `data`, which passed the products schema check."""
        products = _required(_mapping(data), "products", Mapping)
        return cls(_required(data, "content_id", str),
                   _frozen({name: Product.from_json(p) for name, p in products.items()}),
                   _required(data, "datatype", str), _required(data, "format", str),
                   _optional(data, "license", str), _optional(data, "updated", str),
                   _frozen({k: v for k, v in data.items() if k not in cls._FIELDS}))

    def to_json(self) -> dict[str, Any]:
        """The catalog as the mapping it was parsed from (equal to it, fields in any order)."""
        out: dict[str, Any] = {"content_id": self.content_id, "datatype": self.datatype, "format": self.format}
        _put(out, "license", self.license)
        _put(out, "updated", self.updated)
        out["products"] = {name: product.to_json() for name, product in self.products.items()}
        out.update(self.extra)
        return out


class ItemView(Protocol):
    """What an item-level reader uses of an item: an `Item`, or a raw item through `RawItem`."""

    @property
    def ftype(self) -> str | None: ...
    @property
    def path(self) -> str | None: ...
    @property
    def size(self) -> int | None: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def delta_base(self) -> str | None: ...
    @property
    def combined(self) -> Mapping[str, Any]: ...


class RawItem:
    """A raw item mapping read through Item's attribute names, unchecked and uncopied (see the
    module docstring); `combined` is the mapping itself, so a combined field reads as it is."""

    __slots__ = ("combined",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.combined = data

    @property
    def ftype(self) -> Any:
        return self.combined.get("ftype")

    @property
    def path(self) -> Any:
        return self.combined.get("path")

    @property
    def size(self) -> Any:
        return self.combined.get("size")

    @property
    def sha256(self) -> Any:
        return self.combined.get("sha256")

    @property
    def delta_base(self) -> Any:
        return self.combined.get("delta_base")


def raw_items(items: Mapping[str, Any]) -> dict[str, RawItem]:
    """A version's raw items (checked by the caller) as ItemViews, by item name."""
    return {name: RawItem(item) for name, item in items.items()}


def _raw(value: Any) -> Mapping[str, Any]:
    return value if type(value) is dict or isinstance(value, Mapping) else _EMPTY  # (dict first: the fast case)


def _pairs(mapping: Mapping[str, Any], ordered: bool) -> Any:
    return sorted(mapping.items()) if ordered else mapping.items()


RawPlace = tuple[str, Mapping[str, Any], str, Mapping[str, Any]]
RawItemPlace = tuple[str, Mapping[str, Any], str, Mapping[str, Any], str, Mapping[str, Any]]


@overload
def walk_versions(catalog: Catalog, *, ordered: bool = False) -> Iterator[tuple[str, Product, str, Version]]: ...
@overload
def walk_versions(catalog: Mapping[str, Any], *, ordered: bool = False) -> Iterator[RawPlace]: ...
def walk_versions(catalog: Catalog | Mapping[str, Any], *, ordered: bool = False) -> Iterator[Any]:
    """(product name, product, version name, version) for every version of `catalog`."""
    if isinstance(catalog, Catalog):
        for pname, product in _pairs(catalog.products, ordered):
            for vname, version in _pairs(product.versions, ordered):
                yield pname, product, vname, version
        return
    for pname, product in _pairs(_raw(catalog.get("products")), ordered):  # the same walk, shape unchecked
        if type(product) is dict or isinstance(product, Mapping):
            for vname, version in _pairs(_raw(product.get("versions")), ordered):
                if type(version) is dict or isinstance(version, Mapping):
                    yield pname, product, vname, version


@overload
def walk(catalog: Catalog, *, ordered: bool = False) -> Iterator[tuple[str, Product, str, Version, str, Item]]: ...
@overload
def walk(catalog: Mapping[str, Any], *, ordered: bool = False) -> Iterator[RawItemPlace]: ...
def walk(catalog: Catalog | Mapping[str, Any], *, ordered: bool = False) -> Iterator[Any]:
    """(product name, product, version name, version, item name, item) for every item of `catalog`."""
    if isinstance(catalog, Catalog):
        for pname, product in _pairs(catalog.products, ordered):
            for vname, version in _pairs(product.versions, ordered):
                for iname, item in _pairs(version.items, ordered):
                    yield pname, product, vname, version, iname, item
        return
    for pname, product in _pairs(_raw(catalog.get("products")), ordered):  # the same walk, shape unchecked
        if type(product) is not dict and not isinstance(product, Mapping):
            continue
        for vname, version in _pairs(_raw(product.get("versions")), ordered):
            if type(version) is not dict and not isinstance(version, Mapping):
                continue
            for iname, item in _pairs(_raw(version.get("items")), ordered):
                if type(item) is dict or isinstance(item, Mapping):
                    yield pname, product, vname, version, iname, item


@overload
def items_of(catalog: Catalog) -> Iterator[Item]: ...
@overload
def items_of(catalog: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]: ...
def items_of(catalog: Catalog | Mapping[str, Any]) -> Iterator[Any]:
    """Every item of `catalog` (typed Items or raw mappings), in the catalog's order: the fast
    path for a publish, which walks every item of the catalog (no tuples, no test per item). In
    the raw form, products and versions that are not mappings are skipped as by `walk`, but an
    item is yielded as found: the caller has checked the shape (the schema check, or
    retention.shape_problem for an older catalog) or tests each item itself."""
    return chain.from_iterable(version.items.values() if isinstance(version, Version)
                               else _raw(version.get("items")).values()
                               for _, _, _, version in walk_versions(catalog))
