"""Mirror selection, pure: an upstream catalog and filters in, our products and manifests out.

No I/O (ssb_s3.commands.mirror reads the source, copies the files and commits through publish).
Everything here comes from a server we do not control, so every value is checked before it is used:

- filters (ssb_s3/filters: sstream-mirror's syntax and meaning) are matched against the
  item flattened with its version's, its product's and the catalog's plain fields (plus
  product_name, version_name, item_name); a missing key reads as '';
- a product is mirrored under a name that is valid as our product name, with a known arch, and
  a release/os; each of its items must have a known ftype, a sha256 of 64 hex digits, a size, and
  a plain relative path whose file lands in <directory>/<version>/ of the target (the upstream
  layout when it is one, else the product name's folder); anything else is dropped, with its
  reason (Drop), never silently;
- every copied string (the product's fields, a version's, an item's, their names) is outside
  text that vocabulary/text accepts (no control, bidi-override or line-separator character), else the
  product, version or item is dropped;
- a product whose LXC image the classic LXC index could not hold (core/lxcindex: ';' in os, an
  arch LXC does not know), or with a text over MAX_TEXT_BYTES (release_title, aliases, ...: a
  signed catalog holds each on one line, GnuPG cuts lines past 19,993 bytes) is dropped; an item
  whose path is not plain (control characters, a NUL included) is dropped; a root that a meta
  item gives no combined_*_sha256 for is dropped (the contract would refuse the whole product):
  one bad upstream product, version or item never stops the publish of the rest;
- every copied item field must be what ssb.schema.json accepts (md5, combined_* hashes,
  delta_base: the name of another version of the product), else the item is dropped: what is
  written must read back on the next run (_item_problem holds the schema's item rules;
  tests/test_mirror_scale.py checks every field against the schema itself);
- a product's folder may not equal, lie inside or contain another product's (tree.yml's, or
  one mirrored already), nor one of the tree's own keys (layout.reserved_folders); checked in
  O(depth) per product (Folders), so that selection stays near-linear in the catalog's size;
- what a catalog repeats is checked once per selection, never less strictly: the product fields
  but names and aliases (_common_config), which clients can use a version's items (by the items'
  names, ftypes and fields), vocabulary/text on all of a product's strings at once (each copied part
  again only when one is refused; not at all when the catalog's bytes show every string clean:
  vocabulary.text.json_strings_clean); bench/run.py --only selection times 100k products (the
  target: under 10 s on the 2-core machine);
- an alias (per canonical arch) belongs to the tree's own product that declares it, then to the
  first upstream product in sort order: an upstream product claiming one held by another is
  dropped whole (it never takes nor blocks an alias of ours);
- deltas (squashfs.vcdiff, …) are mirrored only while their delta_base version is mirrored too
  (a version already published keeps its items: published files never change);
- translation for the clients in `clients` (LXD, Incus): the twins (incus.tar.xz of lxd.tar.xz,
  requirements of lxd_requirements) are the catalog's own (core/catalog.py, from the one table of
  image files, vocabulary/imagefiles.py); a version that one of `clients` could not use (after the
  twins) is dropped, as is a product whose name, arch, release or os a client could not use;
- an item declaring a size over the run's max_file_size is dropped (so its version, without it,
  may be too): an upstream cannot make a mirror write more than that per file, and the copy
  never reads past the declared size (commands.mirror.VerifyingReader);
- `--max N`: the newest N versions per product that pass every check (`selected`, the filters'
  choice, takes the newest N as sstream-mirror does); `--keep`: versions that left the source stay;
- a mirrored product's versions are exactly those the source names (plus, with `--keep`, those the
  served catalog shows were mirrored before: recorded_versions): a version or item that a
  co-tenant added to its ssb.json leaves at the next mirror.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, TypeGuard
from urllib.parse import urlsplit, urlunsplit

from ..config import CANONICAL_ARCH, KNOWN_ARCHES, ProductConfig, claim_alias
from ..filters import Filter, FilterError
from ..vocabulary import imagefiles
from ..vocabulary.layout import reserved_folders, reserved_problem, under_prefix, version_dir, version_file_key
from ..vocabulary.text import document_problem, text_problem
from . import lxcindex
from .catalog import _images_of_version, _mirrored_items, _path_problem, catalog_product, no_gc
from .deltas import without_orphans
from .retention import served_mirrored
from .versions import version_name_problem

PRODUCT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+~-]*")  # tree.schema.json's product name
ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~/-]*")  # tree.schema.json's alias
VARIANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
PLAIN = re.compile(r"[^\s/\\]+")
WORD = re.compile(r"\S+")  # \s is what str.isspace calls space
SHA256 = re.compile(r"[0-9a-f]{64}")
MD5 = re.compile(r"[0-9a-f]{32}")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
ITEM_FIELDS = ("ftype", "path", "size", "sha256", "md5", *imagefiles.COMBINED_FIELDS, "delta_base")
_ITEM_FIELD_SET = frozenset(ITEM_FIELDS)
VERSION_FIELDS = ("label", "pubname")
PRODUCT_FIELDS = ("arch", "release", "os", "release_title", "version", "aliases", "variant", "support_eol",
                  "requirements", "lxd_requirements")  # what _product_config copies
CLIENT_NAMES = {"lxd": "LXD", "incus": "Incus"}
# The longest upstream text copied (a field, an alias list, a path), in UTF-8 bytes: a signed catalog
# holds each member on one line, which GnuPG's clearsign cuts past 19,993 bytes (core/signed).
MAX_TEXT_BYTES = 1024


_NEVER_MAPPINGS = frozenset({str, int, float, bool, type(None), list})


def _is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """isinstance(value, Mapping), what JSON gives answered first: the ABC's own check costs more
    than most of the checks it guards, and it runs for every object of the catalog."""
    kind = type(value)
    return kind is dict or (kind not in _NEVER_MAPPINGS and isinstance(value, Mapping))


def _too_long(key: str, value: Any) -> str | None:
    """Why an upstream text is refused for its length (None: it is not a text over MAX_TEXT_BYTES)."""
    if not isinstance(value, str) or len(value) <= MAX_TEXT_BYTES // 4:  # at most 4 bytes a character
        return None
    size = len(value.encode("utf-8", "surrogatepass"))
    if size <= MAX_TEXT_BYTES:
        return None
    return (f"{key} is {size} bytes, at most {MAX_TEXT_BYTES} are copied (a signed catalog holds it on one "
            "line, and GnuPG cuts lines past 19,993 bytes)")


@functools.lru_cache(maxsize=4096)
def _plain_name(name: str) -> bool:
    """PLAIN, for the names every version repeats (item names)."""
    return PLAIN.fullmatch(name) is not None


def parse_clients(text: str) -> tuple[str, ...]:
    """--for lxd,incus -> ('LXD', 'Incus'); ValueError names what was expected."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in CLIENT_NAMES]
    if bad or not names:
        raise FilterError(f"--for '{text}': expected lxd, incus or lxd,incus")
    return tuple(dict.fromkeys(CLIENT_NAMES[n] for n in names))


def _plain(data: Mapping[str, Any]) -> dict[str, Any]:
    """simplestreams' stringitems: the fields that are not objects or lists."""
    return {k: v for k, v in data.items() if not isinstance(v, (dict, list))}


def flatten(catalog: Mapping[str, Any], pname: str, vname: str, iname: str) -> dict[str, Any]:
    """The item as sstream-mirror's filters see it (products_exdata)."""
    product = catalog["products"][pname]
    version = product["versions"][vname]
    return {**_plain(catalog), **_plain(product), "product_name": pname, **_plain(version), "version_name": vname,
            **_plain(version["items"][iname]), "item_name": iname}


@dataclass(frozen=True)
class Drop:
    """Something of the source not mirrored, and why (reported, never silent)."""

    product: str
    version: str
    item: str
    reason: str

    def __str__(self) -> str:
        where = " ".join(p for p in (f"product {self.product}", self.version and f"version {self.version}",
                                     self.item and f"item {self.item}") if p)
        return f"{where}: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        return {"product": self.product, "version": self.version, "item": self.item, "reason": self.reason}


class FileCopy(NamedTuple):
    """One file to copy: source path -> target key, with the size and sha256 it must have (a
    NamedTuple: one is made per file of the catalog, at a fraction of a frozen dataclass's cost)."""

    product: str
    version: str
    source: str
    target: str
    size: int
    sha256: str


@dataclass
class Selection:
    """What a mirror run takes from its source."""

    products: dict[str, ProductConfig] = field(default_factory=dict)
    versions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # product -> version -> entry
    files: dict[tuple[str, str], list[FileCopy]] = field(default_factory=dict)  # (product, version) -> files
    selected: list[tuple[str, str, str]] = field(default_factory=list)  # filters' choice: (product, version, item)
    drops: list[Drop] = field(default_factory=list)

    def discard(self, product: str, reason: str, versions: Iterable[str] | None = None) -> None:
        """Leave a selected product out after all (nothing of it copied), with its reason. `versions`:
        those whose files were listed (default: the product's in `versions`); never a scan of every
        file of the selection (a catalog of many such products would be quadratic)."""
        self.products.pop(product, None)
        listed = self.versions.pop(product, {})
        for version in listed if versions is None else versions:
            self.files.pop((product, version), None)
        self.drops.append(Drop(product, "", "", reason))


# The product fields _common_config reads (with product.get's default for each), and their types
# that make equal values give equal answers (so that one answer serves every product repeating them).
_CONFIG_FIELDS = ("arch", "release", "os", "release_title", "variant", "version", "support_eol")
_CONFIG_DEFAULTS = (None, None, None, None, "", None, "")
_PLAIN_VALUES = frozenset({str, type(None)})


def _product_config(pname: str, product: Mapping[str, Any], directory: str, drop: Any,
                    shared: dict[tuple[Any, ...], Any] | None = None) -> ProductConfig | None:
    """Our product for an upstream one; None (with a drop) when a client could not use it.
    `shared`: _common_config's answers so far, by the values of _CONFIG_FIELDS (a cache for one
    selection: a catalog repeats its arches, releases, os... across products)."""
    fields = tuple(map(product.get, _CONFIG_FIELDS, _CONFIG_DEFAULTS))
    if shared is not None and set(map(type, fields)) <= _PLAIN_VALUES:
        common = shared.get(fields)
        if common is None:
            common = shared[fields] = _common_config(fields)
    else:
        common = _common_config(fields)
    too_long, problem, note, template = common
    raw = product.get("aliases")
    texts = [("aliases", raw if isinstance(raw, str) else "")]
    for key in ("lxd_requirements", "requirements"):
        found = product.get(key)
        texts += [(f"{key}.{str(k)[:40]}", f"{k}{v}") for k, v in found.items()] if _is_mapping(found) else []
    why = too_long or next((why for key, value in texts if (why := _too_long(key, value))), None)
    if why or problem:
        drop(why or problem)
        return None
    aliases: list[str] = []
    raw_aliases = product.get("aliases", "")
    for alias in (raw_aliases.split(",") if isinstance(raw_aliases, str) and raw_aliases else ()):
        if ALIAS.fullmatch(alias):
            aliases.append(alias)
        else:
            drop(f"alias '{alias[:60]}' left out: expected letters, digits and . _ + ~ / - only")
    requirements: dict[str, str] = {}
    for key in ("lxd_requirements", "requirements"):  # Incus reads one, LXD the other: the catalog writes both
        raw = product.get(key)
        if _is_mapping(raw):
            requirements.update({str(k): str(v) for k, v in raw.items() if isinstance(v, (str, bool, int))})
    if note:
        drop(note)
    return _config_like(template, name=pname, directory=directory, aliases=tuple(dict.fromkeys(aliases)),
                        requirements=tuple(sorted(requirements.items())))


def _config_like(template: ProductConfig, **changes: Any) -> ProductConfig:
    """dataclasses.replace(template, **changes) at a seventh of its cost (a selection makes one per
    upstream product): the template was built by ProductConfig's own __init__ (it has no
    __post_init__), and the changes are fields already checked by _product_config."""
    config: ProductConfig = object.__new__(ProductConfig)
    config.__dict__.update(template.__dict__, **changes)
    return config


def _common_config(fields: tuple[Any, ...]) -> tuple[str | None, str | None, str | None, ProductConfig]:
    """What _CONFIG_FIELDS' values give, whatever the product: (why one is too long, why the product
    is refused, what is left out, a ProductConfig of them with no name, folder, aliases nor
    requirements: _config_like adds the product's), the first two checked in that order, before the
    aliases and requirements are (_product_config)."""
    arch, release, os_name, title, variant, version, eol = fields
    too_long = next((why for key, value in zip(_CONFIG_FIELDS, fields, strict=True)
                     if (why := _too_long(key, value))), None)
    problem = next((f"{key} missing or not a word (got {str(value)[:40]!r})"
                    for key, value in (("arch", arch), ("release", release), ("os", os_name))
                    if not isinstance(value, str) or not WORD.fullmatch(value)), None)
    if problem is None and arch not in KNOWN_ARCHES:
        problem = f"arch '{arch}' is unknown to LXD (the client would hide it)"
    note = None
    if not isinstance(variant, str) or (variant and not VARIANT.fullmatch(variant)):
        note = f"variant '{str(variant)[:40]}' left out: expected letters, digits and . _ + - only"
        variant = ""
    template = ProductConfig(
        name="", directory="", arch=str(arch), release=str(release), os=str(os_name),
        release_title=title if isinstance(title, str) and title else str(release),
        version=version if isinstance(version, str) else "", variant=variant,
        support_eol=eol if isinstance(eol, str) and DATE.fullmatch(eol) else "")
    return too_long, problem, note, template


def _directory(pname: str, versions: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """The upstream product folder when every item lies in <folder>/<version>/<file>, else the
    product name as a folder (':' -> '/'). `versions`: version -> its checked items."""
    folders: set[str | None] = set()
    for vname, items in versions.items():
        for item in items.values():
            parts = str(item["path"]).rsplit("/", 2)
            folders.add(parts[0] if len(parts) == 3 and parts[1] == vname else None)
    folder = folders.pop() if len(folders) == 1 else None
    if folder:  # a leading part of a checked path (_path_problem) is a plain relative path too
        return folder
    return pname.replace(":", "/")


def _item_problem(item: Any) -> str | None:
    """Why an upstream item is refused (None: every field ssb.schema.json's item knows is what it
    accepts, so that the ssb.json written holds nothing the next run would refuse: the same rules as
    schemas._fast_ssb_version, pinned by tests/test_mirror.py's test against the schema)."""
    if not (type(item) is dict or isinstance(item, Mapping)):
        return "not an object"
    if item.get("ftype") not in imagefiles.KNOWN_FTYPES:
        return f"ftype '{str(item.get('ftype'))[:40]}' is unknown to LXD and Incus"
    sha256 = item.get("sha256")
    if type(sha256) is not str or not SHA256.fullmatch(sha256):
        return "sha256 missing or not 64 hex digits (it could not be verified)"
    size = item.get("size")
    if type(size) is not int or not 0 <= size < 1 << 53:
        return "size missing or not a number of bytes"
    why = _path_problem(item.get("path")) or _too_long("path", item.get("path"))
    if why:
        return why
    # its file name is plain (PLAIN) too: _path_problem refuses spaces, '\\' and an empty last part
    if len(item) > 4:  # more than ftype, path, size and sha256
        for key in [k for k in imagefiles.COMBINED_FIELDS if k in item]:
            if not (type(item[key]) is str and SHA256.fullmatch(item[key])):
                return f"{key} is not 64 hex digits"
        md5 = item.get("md5")
        if md5 is not None and not (type(md5) is str and MD5.fullmatch(md5)):
            return "md5 is not 32 hex digits"
    return None


class Folders:
    """Product folders and their owners, for the overlap rule: a folder equal to, inside or around
    another product's is refused. Each question costs O(depth of the folder), never O(folders):
    a folder is found above `directory` by looking up each of its ancestors, below it through
    `_below` (each ancestor -> up to two folders under it: only one folder, the asking product's
    own, is ever excluded from an answer, so a second one is always enough to answer)."""

    def __init__(self, folders: Iterable[str] = (), owner: str = "") -> None:
        self._owners: dict[str, set[str]] = {}  # folder -> product names ('': anyone's, never excluded)
        self._below: dict[str, list[str]] = {}
        for folder in folders:
            self.add(folder, owner)

    def add(self, folder: str, owner: str = "", ancestors: list[str] | None = None) -> None:
        """`ancestors`: _ancestors(folder), when the caller has it already."""
        self._owners.setdefault(folder, set()).add(owner)
        for above in (_ancestors(folder) if ancestors is None else ancestors)[:-1]:
            below = self._below.get(above)
            if below is None:
                self._below[above] = [folder]
            elif len(below) < 2 and folder not in below:
                below.append(folder)

    def _other(self, folder: str, name: str | None) -> bool:
        owners = self._owners.get(folder)
        return owners is not None and (len(owners) > 1 or name not in owners)

    def overlap(self, directory: str, name: str | None = None, ancestors: list[str] | None = None) -> str | None:
        """A folder (not owned by `name` alone) that `directory` equals, lies inside, or contains
        (None: none); the outermost one above it first. `ancestors`: _ancestors(directory), when the
        caller has it already."""
        if ancestors is None:
            ancestors = _ancestors(directory)
        if self._owners.keys().isdisjoint(ancestors) and directory not in self._below:
            return None  # the common case, answered without a loop
        for above in ancestors:
            if self._other(above, name):
                return above
        return next((f for f in self._below.get(directory, ()) if self._other(f, name)), None)


def _ancestors(folder: str) -> list[str]:
    """'a/b/c' -> ['a', 'a/b', 'a/b/c'] (made by C code alone: accumulate and str.format)."""
    return list(itertools.accumulate(folder.split("/"), "{}/{}".format))


def _prepared_item(vname: str, iname: str, item: Mapping[str, Any], versions: Mapping[str, Any],
                   text: bool) -> tuple[dict[str, Any] | None, str | None]:
    """The item as our ssb.json will hold it (the copied fields; path set later), or why not.
    `text`: check its name with vocabulary/text (False: the product's strings were found clean; its
    other strings are hex digits, a known ftype, a version name or a path _path_problem checked)."""
    why = _item_problem(item) or (None if _plain_name(iname) else "item name is not plain")
    if why is None and text:
        why = text_problem(iname)
        why = None if why is None else f"item name {why}"
    if why:
        return None, why
    if "delta_base" in item:
        base = item["delta_base"]
        if not (type(base) is str and base in versions and base != vname):
            return None, f"delta_base {str(base)[:40]!r} is not another version of this product"
    if item.keys() <= _ITEM_FIELD_SET:  # nothing else in it (ssb.json is written with sorted keys)
        return dict(item), None
    return {k: item[k] for k in ITEM_FIELDS if k in item}, None


def select(catalog: Mapping[str, Any], filters: Sequence[Filter], *, clients: Sequence[str] = ("LXD", "Incus"),
           max_versions: int | None = None, prefix: str = "", taken_dirs: Iterable[str] = (),
           taken_names: Iterable[str] = (), mirrored_dirs: Mapping[str, str] | None = None,
           taken_aliases: dict[tuple[str, str], str] | None = None,
           reserved: tuple[str, ...] = reserved_folders(), max_file_size: int | None = None,
           text_clean: bool = False) -> Selection:
    """What to mirror from an upstream products:1.0 catalog (see the module docstring).

    `prefix`: the target tree's prefix (items go to <prefix>/<directory>/<version>/<file>);
    `taken_dirs`/`taken_names`: folders and names of the tree's own products (and of products
    mirrored already), never reused: a folder equal to, inside or around one of them is refused;
    `mirrored_dirs`: the folders of products served as mirrored, by name (taken for every other name).
    `reserved`: the tree's own keys (layout.reserved_folders): a product whose folder overlaps one
    is dropped.
    `taken_aliases`: (alias, canonical arch) -> the product that has it (config.claim_alias), the
    tree's own products first; an upstream product claiming one that another product holds is
    dropped whole (an upstream never takes nor blocks an alias of ours), and the aliases of every
    product selected are added to it (the first upstream product in sort order keeps an alias, as
    LXD's own rule).
    `max_file_size`: an item declaring more bytes is dropped (nothing of it is ever copied).
    `text_clean`: every string of the catalog is known clean (vocabulary.text.json_strings_clean of
    the bytes it was parsed from); else each product's strings are checked.
    `selected` is the filters' choice with --max, as sstream-mirror makes it; the versions kept
    are the newest `max_versions` of those that pass every check.
    The cyclic garbage collector is paused meanwhile (catalog.no_gc: what is built is acyclic, and
    its passes over the catalog's millions of objects cost a sixth of a 100k-product selection).
    """
    with no_gc():
        return _select(catalog, filters, clients=clients, max_versions=max_versions, prefix=prefix,
                       taken_dirs=taken_dirs, taken_names=taken_names, mirrored_dirs=mirrored_dirs,
                       taken_aliases=taken_aliases, reserved=reserved, max_file_size=max_file_size,
                       text_clean=text_clean)


def _select(catalog: Mapping[str, Any], filters: Sequence[Filter], *, clients: Sequence[str],
            max_versions: int | None, prefix: str, taken_dirs: Iterable[str], taken_names: Iterable[str],
            mirrored_dirs: Mapping[str, str] | None, taken_aliases: dict[tuple[str, str], str] | None,
            reserved: tuple[str, ...], max_file_size: int | None, text_clean: bool) -> Selection:
    out = Selection()
    products = catalog.get("products")
    if not isinstance(products, Mapping):
        out.drops.append(Drop("", "", "", "the catalog has no products object"))
        return out
    dirs, names = Folders(taken_dirs), set(taken_names)
    usable: dict[tuple[Any, ...], str | None] = {}  # _version_items' cache, for this selection
    shared: dict[tuple[Any, ...], Any] = {}  # _product_config's cache, for this selection
    for mirrored, folder in (mirrored_dirs or {}).items():  # taken for every other name
        dirs.add(folder, mirrored)
    for pname in sorted(products):
        product = products[pname]

        def drop(reason: str, version: str = "", item: str = "", pname: str = pname) -> None:
            out.drops.append(Drop(pname, version, item, reason))

        if not isinstance(pname, str) or not PRODUCT_NAME.fullmatch(pname) or len(pname) > 200:
            drop("the name is not valid as a product name (letters, digits and . _ : + ~ - only)")
            continue
        if not _is_mapping(product) or not _is_mapping(product.get("versions")):
            drop("not an object with versions")
            continue
        # vocabulary/text on every copied string: one search of all the product's strings answers for all of
        # them when none is refused (`clean`); else each copied part is checked on its own.
        clean = text_clean or document_problem(product) is None
        bad_text = None if clean else document_problem({k: product[k] for k in PRODUCT_FIELDS if k in product})
        if bad_text:
            drop(f"{bad_text[0]} {bad_text[1]}")
            continue
        # The filters' choice, exactly as sstream-mirror makes it.
        chosen: dict[str, list[str]] = {}
        for vname in sorted(product["versions"]):
            version = product["versions"][vname]
            if not _is_mapping(version) or not _is_mapping(version.get("items")):
                continue
            for iname in sorted(version["items"]):
                if not _is_mapping(version["items"][iname]):
                    continue
                if not filters or all(f.matches(flatten(catalog, pname, vname, iname)) for f in filters):
                    chosen.setdefault(vname, []).append(iname)
        if not chosen:
            continue
        ordered = sorted(chosen, reverse=True)
        theirs = ordered[:max_versions] if max_versions is not None else ordered
        out.selected.extend((pname, v, i) for v in sorted(theirs) for i in chosen[v])
        if pname in names:
            drop("a product of tree.yml (or of another mirror) has this name")
            continue
        # Every version checked first, then the newest N valid ones kept (--max counts usable versions).
        drops: list[Drop] = []
        valid: dict[str, dict[str, dict[str, Any]]] = {}  # version -> item -> prepared item (path: the source's)
        for vname in ordered:
            if max_versions is not None and len(valid) >= max_versions:
                break
            why = version_name_problem(vname)
            if why:
                drops.append(Drop(pname, vname, "", f"version name {why}"))
                continue
            bad_text = None if clean else document_problem({k: v for k, v in product["versions"][vname].items()
                                                            if k in VERSION_FIELDS})
            if bad_text:
                drops.append(Drop(pname, vname, "", f"{bad_text[0]} {bad_text[1]}"))
                continue
            items = _version_items(pname, vname, chosen[vname], product["versions"], clients, drops,
                                   max_file_size, text=not clean, usable=usable)
            if items:
                valid[vname] = items
        out.drops.extend(drops)
        if not valid:
            continue
        directory = _directory(pname, valid)
        why = reserved_problem(directory, reserved)
        if why:
            drop(why)
            continue
        ancestors = _ancestors(directory)
        other = dirs.overlap(directory, pname, ancestors)
        if other is not None:
            drop(f"its folder {directory} overlaps {other}, the folder of another product")
            continue
        config = _product_config(pname, product, directory, drop, shared)
        if config is None:
            continue
        owners = {} if taken_aliases is None else taken_aliases
        held = [(alias, owners[key]) for alias in config.aliases
                if (key := (alias, CANONICAL_ARCH.get(config.arch, config.arch))) in owners and owners[key] != pname]
        if held:
            alias, owner = held[0]
            drop(f"alias '{alias}' for arch {config.arch} is already claimed by product {owner}: "
                 "the upstream product is left out")
            continue
        product_dir = under_prefix(prefix, directory)
        kept: dict[str, dict[str, Any]] = {}
        for vname in sorted(valid):
            version = product["versions"][vname]
            files: dict[str, FileCopy] = {}
            items = {}
            folder = version_dir(product_dir, vname)
            for iname, item in valid[vname].items():
                target = version_file_key(folder, item["path"].rsplit("/", 1)[-1])
                files[target] = FileCopy(pname, vname, item["path"], target, item["size"], item["sha256"])
                items[iname] = {**item, "path": target}
            entry = {k: version[k] for k in VERSION_FIELDS if isinstance(version.get(k), str)}
            for vfield, value in list(entry.items()):
                too_long = _too_long(vfield, value)
                if too_long:
                    del entry[vfield]
                    drop(f"{too_long}; left out", vname)
            kept[vname] = {**entry, "items": items}
            out.files[(pname, vname)] = [files[target] for target in sorted(files)]
        _drop_orphan_deltas(pname, kept, out)
        # the index's line is made of the newest version alone (lxcindex.newest_lxc_version)
        newest = max(kept)
        lxc = lxcindex.entry_problems(catalog_product(config, {"versions": kept}, [newest])) if _may_give_lxc_line(
            kept[newest]["items"]) else []
        if lxc:  # the classic LXC index (one ';'-separated line per image) could not hold it: one bad
            out.discard(pname, f"{lxc[0][0]}: {lxc[0][1]}", kept)  # upstream product never stops the others
            continue
        for alias in config.aliases:
            claim_alias(owners, alias, config.arch, pname)
        dirs.add(directory, "", ancestors)
        names.add(pname)
        out.products[pname] = config
        out.versions[pname] = kept
    return out


def _version_items(pname: str, vname: str, chosen: Sequence[str], versions: Mapping[str, Any],
                   clients: Sequence[str], drops: list[Drop], max_file_size: int | None = None,
                   text: bool = True, usable: dict[tuple[Any, ...], str | None] | None = None,
                   ) -> dict[str, dict[str, Any]]:
    """The items of one upstream version that pass every check (their paths still the source's);
    {} when no client of `clients` could use what is left (each refusal added to `drops`).
    `text`: check the copied strings with vocabulary/text (False: the product's were found clean);
    `usable`: the answers of _unusable_by so far, by the items' image signature (a cache for one
    selection)."""
    prepared: dict[str, dict[str, Any]] = {}
    refused: dict[str, str] = {}
    for iname in chosen:
        item, why = _prepared_item(vname, iname, versions[vname]["items"][iname], versions, text)
        if item is None:
            refused[iname] = str(why)
        else:
            prepared[iname] = item
    items: dict[str, dict[str, Any]] = {}
    names: dict[str, tuple[str, int]] = {}
    for iname in chosen:
        why = refused.get(iname)
        if why is not None:
            drops.append(Drop(pname, vname, iname, why))
            continue
        item = prepared[iname]
        if max_file_size is not None and item["size"] > max_file_size:
            drops.append(Drop(pname, vname, iname, f"declares {item['size']} bytes, over the max_file_size of "
                                                   f"{max_file_size} bytes (tree.yml mirrors: max_file_size)"))
            continue
        name = item["path"].rsplit("/", 1)[-1]
        other = names.get(name)
        if other is not None and other != (item["sha256"], item["size"]):
            drops.append(Drop(pname, vname, iname, f"another item of this version has the file name {name}"))
            continue
        names[name] = (item["sha256"], item["size"])
        items[iname] = item
    metas = [k for k, i in items.items() if i["ftype"] in imagefiles.META_FTYPES]
    for iname, item in list(items.items()):
        field_name = imagefiles.ROOT_COMBINED_FIELD.get(item["ftype"])
        lacking = [m for m in metas if field_name and field_name not in items[m]]
        if lacking:  # the contract refuses a root whose image a client would drop
            drops.append(Drop(pname, vname, iname, f"{field_name} missing on item {lacking[0]}: no client could "
                                                   "use this root"))
            del items[iname]
    if not items:
        return {}
    # Which images a client makes of checked items depends only on their names and ftypes, in order,
    # and which fields each has (every sha256, path and combined field set is a non-empty string):
    # asked once per such signature.
    signature = (tuple(clients), *[(k, i["ftype"], tuple(i)) for k, i in items.items()])
    cache = {} if usable is None else usable
    if signature not in cache:
        cache[signature] = _unusable_by(vname, items, clients)
    client = cache[signature]
    if client is not None:
        drops.append(Drop(pname, vname, "", f"no image that {client} can use in the items selected"))
        return {}
    return items


def _unusable_by(vname: str, items: Mapping[str, Any], clients: Sequence[str]) -> str | None:
    """The first client of `clients` that could use no image of a version's checked items (None: each can)."""
    for client in clients:
        if not _images_of_version(vname, _mirrored_items(items), client) and not _lxc_only(items):
            return client
    return None


def _may_give_lxc_line(items: Mapping[str, Any]) -> bool:
    """Whether a version's items (with the twins the catalog adds) hold both an LXC metadata and an LXC
    root item, without which lxcindex.newest_lxc_version finds no image (and entry_problems has nothing
    to refuse): the catalog entry is built for the check only then."""
    ftypes = {i["ftype"] for i in items.values()}
    ftypes.update([want for have, want in imagefiles.MIRRORS if have in ftypes])
    return not ftypes.isdisjoint(imagefiles.LXC_META_FTYPES) and not ftypes.isdisjoint(imagefiles.LXC_ROOT_FTYPES)


def _lxc_only(items: Mapping[str, Any]) -> bool:
    """A classic-LXC version (meta.tar.xz + root.tar.xz, nothing for LXD or Incus): for lxc-create."""
    ftypes = {i["ftype"] for i in items.values()}
    clients = {f for pair in imagefiles.CLIENT_META.values() for f in pair}
    return not ftypes & clients and bool(ftypes & imagefiles.LXC_META_FTYPES) and bool(
        ftypes & imagefiles.LXC_ROOT_FTYPES)


def _drop_orphan_deltas(pname: str, kept: dict[str, dict[str, Any]], out: Selection) -> None:
    """A delta is useless (and refused by nobody, but wasted) without its base: kept only while
    the base version is mirrored."""
    for vname, version in kept.items():
        for iname, item in list(version["items"].items()):
            if item["ftype"] in imagefiles.DELTA_FTYPES and item.get("delta_base") not in kept:
                del version["items"][iname]
                out.drops.append(Drop(pname, vname, iname,
                                      f"delta from {str(item.get('delta_base'))[:40]}, which is not mirrored"))
                out.files[(pname, vname)] = [f for f in out.files[(pname, vname)]
                                             if any(i["path"] == f.target for i in version["items"].values())]


def recorded_versions(existing: Mapping[str, Any] | None, served: Mapping[str, Any] | None) -> dict[str, Any]:
    """What this tree mirrored before: the versions of the product's existing ssb.json that the
    served catalog's entry of the product (`served`, written by the tree alone) names, each with only
    the items that entry holds exactly as they are (its version fields taken from there). A version
    or an item that someone who can write the product's folder added to ssb.json is not recorded."""
    there: Mapping[str, Any] = (served or {}).get("versions", {}) if isinstance(served, Mapping) else {}
    out: dict[str, Any] = {}
    for vname, version in (existing or {}).get("versions", {}).items():
        entry = there.get(vname)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("items"), Mapping):
            continue
        items = {k: i for k, i in version.get("items", {}).items() if entry["items"].get(k) == i}
        if items:
            out[vname] = {**{k: entry[k] for k in VERSION_FIELDS if isinstance(entry.get(k), str)}, "items": items}
    return out


def merged_manifest(name: str, fresh: Mapping[str, Any], recorded: Mapping[str, Any], *,
                    keep: bool, named: Iterable[str] = (), support_eol: str = "") -> tuple[dict[str, Any], int]:
    """The product's ssb.json after this run, and its `days`: exactly the source's versions (fresh;
    `named`: those it names, a version mirrored before whose copy failed this time staying as it
    was), plus, with `keep`, those this tree mirrored before (`recorded`: recorded_versions) that
    left the source. Without `keep`, those leave ssb.json and the catalog at once; the purge
    deletes their files once no catalog within the grace names them. Published files never change: a
    version already mirrored keeps every recorded item it had (but a delta whose base is no
    longer in ssb.json); items the source added to it are added."""
    wanted = set(named)
    versions = {**{k: v for k, v in recorded.items() if keep or k in wanted}, **fresh}
    for vname in set(recorded) & set(fresh):
        versions[vname] = {**fresh[vname], "items": {**fresh[vname]["items"], **recorded[vname]["items"]}}
    # a recorded delta whose base left with its version goes too (core.deltas: ssb.json never names a missing base)
    manifest: dict[str, Any] = {"name": name, "versions": dict(sorted(without_orphans(versions).items()))}
    if support_eol:
        manifest["support_eol"] = support_eol
    return manifest, max(1, len(versions))


# ----------------------------------------------------------------------------------------------
# Decisions on what the tree holds: made on what a mirror run read under the tree's lease
# (commands.mirror: index.json and the catalog it names, read once, and the ssb.json of the
# products concerned), never on an earlier read.


def has_userinfo(source: str) -> bool:
    """Whether a source URL carries a user or password (https://user:pass@host/)."""
    return "://" in source and "@" in urlsplit(source).netloc


def without_userinfo(source: str) -> str:
    """The URL with any user or password left out (safe to print)."""
    if not has_userinfo(source):
        return source
    parts = urlsplit(source)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def source_id(source: str) -> str:
    """What a mirrored product's public ssb.json records of its source (`mirror.source`): a digest
    of the URL or path, never the URL or path itself (local paths and internal hosts stay private).
    All this tool needs of it is equality: one product has one source, and `keep` applies to the
    products of its own source."""
    return "sha256:" + hashlib.sha256(without_userinfo(source).encode()).hexdigest()


def mirrored_from(manifest: Mapping[str, Any] | None) -> str | None:
    """The source_id of the source an existing ssb.json says its product is mirrored from (None:
    not mirrored); an older ssb.json that recorded the URL itself gives that URL's id."""
    mirror = (manifest or {}).get("mirror")
    source = mirror.get("source") if isinstance(mirror, Mapping) else None
    if not isinstance(source, str):
        return None
    return source if source.startswith("sha256:") else source_id(source)


def entry_folder(entry: Mapping[str, Any], prefix: str) -> str | None:
    """The one product folder (relative to the prefix) all item paths of a served catalog entry lie
    in, or None."""
    paths = [i.get("path") for v in entry.get("versions", {}).values() if isinstance(v, Mapping)
             for i in (v.get("items") or {}).values() if isinstance(i, Mapping)]
    folders = {p.rsplit("/", 2)[0] for p in paths if isinstance(p, str) and p.count("/") >= 2}
    if len(folders) != 1:
        return None
    folder = folders.pop()
    if prefix:
        return folder[len(prefix) + 1:] if folder.startswith(prefix + "/") else None
    return folder


def served_mirrored_dirs(prefix: str, index: bytes, served: Mapping[str, Any]) -> dict[str, str]:
    """The folders of the products the served catalog holds as mirrored (index.json records them),
    by name: no other product may be laid out in, inside or around them."""
    dirs = {}
    for name in sorted(served_mirrored(index) & set(served)):
        directory = entry_folder(served[name], prefix)
        if directory is not None:
            dirs[name] = directory
    return dirs


def served_mirrored_product(prefix: str, index: bytes, served: Mapping[str, Any], name: str) -> ProductConfig | None:
    """The tree's config of a mirrored product that tree.yml does not declare, from what the tree
    alone wrote: index.json records it as mirrored, and its served catalog entry (`served`: the
    catalog's products) gives its folder and fields; every served version is kept (`days`). None
    when the served index records no such product (withdraw, and a mirror run's departures, use it)."""
    entry = served.get(name)
    if name not in served_mirrored(index) or not isinstance(entry, Mapping):
        return None
    directory = entry_folder(entry, prefix)
    config = None if directory is None else _product_config(name, entry, directory, lambda reason: None)
    if config is None:
        return None
    versions = entry.get("versions")
    return replace(config, mirrored=True, days=max(1, len(versions) if isinstance(versions, Mapping) else 0))


def without_withdrawn(selection: Selection, withdrawn: Mapping[str, Mapping[str, Any]]) -> None:
    """Leave out of the selection the versions this tree withdrew (index.json's own record,
    core.withdrawal.TREE_RECORD), with a drop naming when and why, and the deltas against them:
    the upstream naming a version again never brings it back, nor copies its files again."""
    for name, versions in selection.versions.items():
        gone = sorted(set(versions) & set(withdrawn.get(name, {})))
        for version in gone:
            found = withdrawn[name][version]
            why = f" ({found['reason']})" if found.get("reason") else ""
            del versions[version]
            selection.files.pop((name, version), None)
            selection.drops.append(Drop(name, version, "", f"withdrawn from this tree at "
                                                           f"{found['withdrawn_at']}{why}; not mirrored again"))
        for version, entry in versions.items() if gone else ():
            orphans = {i["path"] for i in entry["items"].values() if i.get("delta_base") in gone}
            if orphans:
                versions[version] = {**entry, "items": {k: i for k, i in entry["items"].items()
                                                        if i["path"] not in orphans}}
                selection.files[(name, version)] = [f for f in selection.files.get((name, version), [])
                                                    if f.target not in orphans]


@dataclass
class Prior:
    """What the tree holds of a selection's products, as this run's copies and ssb.json need it."""

    existing: dict[str, dict[str, Any]] = field(default_factory=dict)  # product -> versions mirrored before
    recorded: dict[str, str] = field(default_factory=dict)  # path -> sha256, of the files the served catalog names
    # (meta path, combined field, value) the served catalog records: checked when they were copied
    recorded_combined: frozenset[tuple[str, str, str]] = frozenset()


def claim_products(selection: Selection, manifests: Mapping[str, Mapping[str, Any] | None],
                   served: Mapping[str, Any], source: str, known: Mapping[str, str]) -> Prior:
    """One product has one source: a selected product whose ssb.json (`manifests`, as read) says it
    is mirrored from another source is discarded, with a drop naming that source (`known`: this
    run's source ids -> their URLs); the others' versions mirrored before (recorded_versions: only
    what the served catalog, `served` products, names) and their files' sha256 and fingerprints."""
    prior = Prior()
    for name in list(selection.products):
        manifest = manifests.get(name)
        other = mirrored_from(manifest)
        if other is not None and other != source_id(source):
            selection.discard(name, f"already mirrored from {known.get(other, other)}: one product has "
                                    "one source (remove it there first)")
            continue
        prior.existing[name] = recorded_versions(manifest, served.get(name))
        for version in prior.existing[name].values():
            prior.recorded.update({i["path"]: i["sha256"] for i in version["items"].values()})
    prior.recorded_combined = frozenset(
        (i["path"], f, i[f]) for versions in prior.existing.values() for version in versions.values()
        for i in version["items"].values() for f in imagefiles.COMBINED_FIELDS if f in i)
    return prior


def mirrored_manifests(selection: Selection, prior: Prior, failed: set[tuple[str, str]], *, keep: bool,
                       source: str) -> dict[str, tuple[ProductConfig, dict[str, Any]]]:
    """Each product this run mirrors from `source`: its config and its new ssb.json (merged_manifest:
    the versions copied, but those of `failed`, with those mirrored before), recording the source
    as its digest (source_id: public, never the URL or path). A product with no version at all is
    left out."""
    out = {}
    for name, config in selection.products.items():
        fresh = {v: e for v, e in selection.versions[name].items() if (name, v) not in failed}
        if not fresh and not prior.existing.get(name):
            continue
        manifest, days = merged_manifest(name, fresh, prior.existing.get(name, {}), keep=keep,
                                         named=selection.versions[name])
        manifest["mirror"] = {"source": source_id(source)}
        out[name] = (replace(config, days=days, mirrored=True), manifest)
    return out


def departure_candidates(prefix: str, index: bytes, served: Mapping[str, Any], declared: Iterable[str]
                         ) -> tuple[dict[str, ProductConfig | None], list[str]]:
    """Served products that neither tree.yml nor this run declares: those index.json records as
    mirrored, by name with their config (served_mirrored_product; None: none can be made), whose
    ssb.json says where they came from; and those that are not mirrored, which a mirror run would
    unpublish (refused by the caller: run with the tree.yml that declares them)."""
    recorded, named = served_mirrored(index), set(declared)
    candidates: dict[str, ProductConfig | None] = {}
    undeclared = []
    for name in sorted(served):
        if name in named:
            continue
        if name not in recorded:
            undeclared.append(name)
            continue
        candidates[name] = served_mirrored_product(prefix, index, served, name)
    return candidates, undeclared


def departures(manifests: Mapping[str, Mapping[str, Any] | None], keeps: Mapping[str, bool]) -> list[str]:
    """Of the departure candidates (their ssb.json as read, None when unreadable), those mirrored from
    a source of this run that no longer selects them and does not `keep` what left it: they leave
    the catalog (their files go after the grace). Those from another source keep their entry (the
    publish keeps every mirrored product index.json records)."""
    return sorted(name for name, manifest in manifests.items()
                  if (source := mirrored_from(manifest)) is not None and keeps.get(source) is False)
