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
  written must read back on the next run;
- a product's folder may not equal, lie inside or contain another product's (tree.yml's, or
  one mirrored already), nor one of the tree's own keys (config.reserved_folders); checked in
  O(depth) per product (Folders), so that selection stays near-linear in the catalog's size;
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

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import CANONICAL_ARCH, KNOWN_ARCHES, ProductConfig, claim_alias, reserved_folders, reserved_problem
from ..filters import Filter, FilterError
from ..schemas import schema_problems
from ..vocabulary import imagefiles
from ..vocabulary.text import document_problem
from . import lxcindex
from .catalog import _images_of_version, _mirrored_items, _path_problem, catalog_product
from .deltas import without_orphans
from .versions import version_name_problem

PRODUCT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+~-]*")  # tree.schema.json's product name
ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~/-]*")  # tree.schema.json's alias
VARIANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
PLAIN = re.compile(r"[^\s/\\]+")
SHA256 = re.compile(r"[0-9a-f]{64}")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
ITEM_FIELDS = ("ftype", "path", "size", "sha256", "md5", *imagefiles.COMBINED_FIELDS, "delta_base")
VERSION_FIELDS = ("label", "pubname")
PRODUCT_FIELDS = ("arch", "release", "os", "release_title", "version", "aliases", "variant", "support_eol",
                  "requirements", "lxd_requirements")  # what _product_config copies
CLIENT_NAMES = {"lxd": "LXD", "incus": "Incus"}
# The longest upstream text copied (a field, an alias list, a path), in UTF-8 bytes: a signed catalog
# holds each member on one line, which GnuPG's clearsign cuts past 19,993 bytes (core/signed).
MAX_TEXT_BYTES = 1024


def _too_long(key: str, value: Any) -> str | None:
    """Why an upstream text is refused for its length (None: it is not a text over MAX_TEXT_BYTES)."""
    size = len(value.encode("utf-8", "surrogatepass")) if isinstance(value, str) else 0
    if size <= MAX_TEXT_BYTES:
        return None
    return (f"{key} is {size} bytes, at most {MAX_TEXT_BYTES} are copied (a signed catalog holds it on one "
            "line, and GnuPG cuts lines past 19,993 bytes)")


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


@dataclass(frozen=True)
class FileCopy:
    """One file to copy: source path -> target key, with the size and sha256 it must have."""

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


def _product_config(pname: str, product: Mapping[str, Any], directory: str,
                    drop: Any) -> ProductConfig | None:
    """Our product for an upstream one; None (with a drop) when a client could not use it."""
    arch, release, os_name = (product.get(k) for k in ("arch", "release", "os"))
    raw = product.get("aliases")
    texts = [(k, product.get(k)) for k in ("arch", "release", "os", "release_title", "variant", "version",
                                            "support_eol")]
    texts.append(("aliases", raw if isinstance(raw, str) else ""))
    for key in ("lxd_requirements", "requirements"):
        found = product.get(key)
        texts += [(f"{key}.{str(k)[:40]}", f"{k}{v}") for k, v in found.items()] if isinstance(found, Mapping) else []
    for key, value in texts:
        why = _too_long(key, value)
        if why:
            drop(why)
            return None
    for key, value in (("arch", arch), ("release", release), ("os", os_name)):
        if not isinstance(value, str) or not value or any(c.isspace() for c in value):
            drop(f"{key} missing or not a word (got {str(value)[:40]!r})")
            return None
    if arch not in KNOWN_ARCHES:
        drop(f"arch '{arch}' is unknown to LXD (the client would hide it)")
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
        if isinstance(raw, Mapping):
            requirements.update({str(k): str(v) for k, v in raw.items() if isinstance(v, (str, bool, int))})
    variant = product.get("variant", "")
    if not isinstance(variant, str) or (variant and not VARIANT.fullmatch(variant)):
        drop(f"variant '{str(variant)[:40]}' left out: expected letters, digits and . _ + - only")
        variant = ""
    eol = product.get("support_eol", "")
    title = product.get("release_title")
    version = product.get("version")
    return ProductConfig(
        name=pname, arch=str(arch), release=str(release), os=str(os_name), directory=directory,
        release_title=title if isinstance(title, str) and title else str(release),
        version=version if isinstance(version, str) else "",
        aliases=tuple(dict.fromkeys(aliases)), variant=variant, requirements=tuple(sorted(requirements.items())),
        support_eol=eol if isinstance(eol, str) and DATE.fullmatch(eol) else "",
    )


def _directory(pname: str, versions: Mapping[str, Any]) -> str:
    """The upstream product folder when every item lies in <folder>/<version>/<file>, else the
    product name as a folder (':' -> '/')."""
    folders = set()
    for vname, version in versions.items():
        for item in version.get("items", {}).values() if isinstance(version, Mapping) else ():
            path = item.get("path") if isinstance(item, Mapping) else None
            parts = path.rsplit("/", 2) if isinstance(path, str) else []
            folders.add(parts[0] if len(parts) == 3 and parts[1] == vname else None)
    folder = folders.pop() if len(folders) == 1 else None
    if folder and _path_problem(folder) is None:
        return folder
    return pname.replace(":", "/")


def _item_problem(item: Any) -> str | None:
    if not isinstance(item, Mapping):
        return "not an object"
    if item.get("ftype") not in imagefiles.KNOWN_FTYPES:
        return f"ftype '{str(item.get('ftype'))[:40]}' is unknown to LXD and Incus"
    if not isinstance(item.get("sha256"), str) or not SHA256.fullmatch(item["sha256"]):
        return "sha256 missing or not 64 hex digits (it could not be verified)"
    size = item.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 1 << 53:
        return "size missing or not a number of bytes"
    why = _path_problem(item.get("path")) or _too_long("path", item.get("path"))
    if why:
        return why
    if not PLAIN.fullmatch(item["path"].rsplit("/", 1)[-1]):
        return "its file name is not plain"
    for key in imagefiles.COMBINED_FIELDS:
        if key in item and not (isinstance(item[key], str) and SHA256.fullmatch(item[key])):
            return f"{key} is not 64 hex digits"
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

    def add(self, folder: str, owner: str = "") -> None:
        self._owners.setdefault(folder, set()).add(owner)
        parts = folder.split("/")
        for depth in range(1, len(parts)):
            below = self._below.setdefault("/".join(parts[:depth]), [])
            if len(below) < 2 and folder not in below:
                below.append(folder)

    def _other(self, folder: str, name: str | None) -> bool:
        return bool(self._owners.get(folder, set()) - {name})

    def overlap(self, directory: str, name: str | None = None) -> str | None:
        """A folder (not owned by `name` alone) that `directory` equals, lies inside, or contains
        (None: none); the outermost one above it first."""
        parts = directory.split("/")
        for depth in range(1, len(parts) + 1):
            if self._other(above := "/".join(parts[:depth]), name):
                return above
        return next((f for f in self._below.get(directory, ()) if self._other(f, name)), None)


def _prepared_item(pname: str, vname: str, iname: str, item: Mapping[str, Any],
                   versions: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The item as our ssb.json will hold it (the copied fields; path set later), or why not:
    every copied field must be what ssb.schema.json accepts (else the next run could not read it)."""
    why = _item_problem(item) or (None if PLAIN.fullmatch(iname) else "item name is not plain")
    if why:
        return None, why
    base = item.get("delta_base")
    if "delta_base" in item and not (isinstance(base, str) and base in versions and base != vname):
        return None, f"delta_base {str(base)[:40]!r} is not another version of this product"
    prepared = {k: item[k] for k in ITEM_FIELDS if k in item}
    problems = schema_problems({"name": pname, "versions": {vname: {"items": {iname: prepared}}}}, "ssb",
                               "ssb.schema.json", limit=1)
    if problems:
        return None, problems[0][:300]
    return prepared, None


def select(catalog: Mapping[str, Any], filters: Sequence[Filter], *, clients: Sequence[str] = ("LXD", "Incus"),
           max_versions: int | None = None, prefix: str = "", taken_dirs: Iterable[str] = (),
           taken_names: Iterable[str] = (), mirrored_dirs: Mapping[str, str] | None = None,
           taken_aliases: dict[tuple[str, str], str] | None = None,
           reserved: tuple[str, ...] = reserved_folders(), max_file_size: int | None = None) -> Selection:
    """What to mirror from an upstream products:1.0 catalog (see the module docstring).

    `prefix`: the target tree's prefix (items go to <prefix>/<directory>/<version>/<file>);
    `taken_dirs`/`taken_names`: folders and names of the tree's own products (and of products
    mirrored already), never reused: a folder equal to, inside or around one of them is refused;
    `mirrored_dirs`: the folders of products served as mirrored, by name (taken for every other name).
    `reserved`: the tree's own keys (config.reserved_folders): a product whose folder overlaps one
    is dropped.
    `taken_aliases`: (alias, canonical arch) -> the product that has it (config.claim_alias), the
    tree's own products first; an upstream product claiming one that another product holds is
    dropped whole (an upstream never takes nor blocks an alias of ours), and the aliases of every
    product selected are added to it (the first upstream product in sort order keeps an alias, as
    LXD's own rule).
    `max_file_size`: an item declaring more bytes is dropped (nothing of it is ever copied).
    `selected` is the filters' choice with --max, as sstream-mirror makes it; the versions kept
    are the newest `max_versions` of those that pass every check.
    """
    out = Selection()
    products = catalog.get("products")
    if not isinstance(products, Mapping):
        out.drops.append(Drop("", "", "", "the catalog has no products object"))
        return out
    dirs, names = Folders(taken_dirs), set(taken_names)
    for mirrored, folder in (mirrored_dirs or {}).items():  # taken for every other name
        dirs.add(folder, mirrored)
    for pname in sorted(products):
        product = products[pname]

        def drop(reason: str, version: str = "", item: str = "", pname: str = pname) -> None:
            out.drops.append(Drop(pname, version, item, reason))

        if not isinstance(pname, str) or not PRODUCT_NAME.fullmatch(pname) or len(pname) > 200:
            drop("the name is not valid as a product name (letters, digits and . _ : + ~ - only)")
            continue
        if not isinstance(product, Mapping) or not isinstance(product.get("versions"), Mapping):
            drop("not an object with versions")
            continue
        bad_text = document_problem({k: product[k] for k in PRODUCT_FIELDS if k in product})  # vocabulary/text
        if bad_text:
            drop(f"{bad_text[0]} {bad_text[1]}")
            continue
        # The filters' choice, exactly as sstream-mirror makes it.
        chosen: dict[str, list[str]] = {}
        for vname in sorted(product["versions"]):
            version = product["versions"][vname]
            if not isinstance(version, Mapping) or not isinstance(version.get("items"), Mapping):
                continue
            for iname in sorted(version["items"]):
                if not isinstance(version["items"][iname], Mapping):
                    continue
                if all(f.matches(flatten(catalog, pname, vname, iname)) for f in filters):
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
            bad_text = document_problem({k: v for k, v in product["versions"][vname].items() if k in VERSION_FIELDS})
            if bad_text:
                drops.append(Drop(pname, vname, "", f"{bad_text[0]} {bad_text[1]}"))
                continue
            items = _version_items(pname, vname, chosen[vname], product["versions"], clients, drops,
                                   max_file_size)
            if items:
                valid[vname] = items
        out.drops.extend(drops)
        if not valid:
            continue
        directory = _directory(pname, {v: {"items": items} for v, items in valid.items()})
        why = reserved_problem(directory, reserved)
        if why:
            drop(why)
            continue
        other = dirs.overlap(directory, pname)
        if other is not None:
            drop(f"its folder {directory} overlaps {other}, the folder of another product")
            continue
        config = _product_config(pname, product, directory, drop)
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
        product_dir = f"{prefix}/{directory}" if prefix else directory
        kept: dict[str, dict[str, Any]] = {}
        for vname in sorted(valid):
            version = product["versions"][vname]
            files: dict[str, FileCopy] = {}
            items = {}
            for iname, item in valid[vname].items():
                target = f"{product_dir}/{vname}/{item['path'].rsplit('/', 1)[-1]}"
                files[target] = FileCopy(pname, vname, item["path"], target, item["size"], item["sha256"])
                items[iname] = {**item, "path": target}
            entry = {k: version[k] for k in VERSION_FIELDS if isinstance(version.get(k), str)}
            for vfield, value in list(entry.items()):
                too_long = _too_long(vfield, value)
                if too_long:
                    del entry[vfield]
                    drop(f"{too_long}; left out", vname)
            kept[vname] = {**entry, "items": items}
            out.files[(pname, vname)] = sorted(files.values(), key=lambda f: f.target)
        _drop_orphan_deltas(pname, kept, out)
        lxc = lxcindex.entry_problems(catalog_product(config, {"versions": kept}))
        if lxc:  # the classic LXC index (one ';'-separated line per image) could not hold it: one bad
            out.discard(pname, f"{lxc[0][0]}: {lxc[0][1]}", kept)  # upstream product never stops the others
            continue
        for alias in config.aliases:
            claim_alias(owners, alias, config.arch, pname)
        dirs.add(directory)
        names.add(pname)
        out.products[pname] = config
        out.versions[pname] = kept
    return out


def _version_items(pname: str, vname: str, chosen: Sequence[str], versions: Mapping[str, Any],
                   clients: Sequence[str], drops: list[Drop], max_file_size: int | None = None,
                   ) -> dict[str, dict[str, Any]]:
    """The items of one upstream version that pass every check (their paths still the source's);
    {} when no client of `clients` could use what is left (each refusal added to `drops`)."""
    items: dict[str, dict[str, Any]] = {}
    names: dict[str, tuple[str, int]] = {}
    for iname in chosen:
        item, why = _prepared_item(pname, vname, iname, versions[vname]["items"][iname], versions)
        if item is None:
            drops.append(Drop(pname, vname, iname, str(why)))
            continue
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
    for client in clients:
        if not _images_of_version(vname, _mirrored_items(items), client) and not _lxc_only(items):
            drops.append(Drop(pname, vname, "", f"no image that {client} can use in the items selected"))
            return {}
    return items


def _lxc_only(items: Mapping[str, Any]) -> bool:
    """A classic-LXC version (meta.tar.xz + root.tar.xz, nothing for LXD or Incus): for lxc-create."""
    ftypes = {i["ftype"] for i in items.values()}
    clients = {f for pair in imagefiles.CLIENT_META.values() for f in pair}
    lxc_meta = {r.ftype for r in imagefiles.IMAGE_FILES.values() if r.role == "lxc-meta"}
    lxc_roots = {r.ftype for r in imagefiles.IMAGE_FILES.values() if r.lxc_root}
    return not ftypes & clients and bool(ftypes & lxc_meta) and bool(ftypes & lxc_roots)


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
