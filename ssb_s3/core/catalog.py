"""The catalog (products:1.0) and the index (index:1.0) as pure functions: manifests in, bytes out.

No I/O here, so the same inputs always give byte-identical output (`updated` is derived from
the newest version, not from the clock). `contract_problems` refuses what the LXD or Incus
client would silently drop or choke on, and an LXC image lxc-create could not use from the
classic LXC index (core/lxcindex), before anything is written; which images each client makes of
a version comes from the client table (vocabulary/clients).
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

from ..config import CANONICAL_ARCH, ProductConfig, TreeConfig
from ..schemas import schema_problems
from ..vocabulary import clients, imagefiles
from ..vocabulary.document import ItemView, items_of, raw_items
from ..vocabulary.layout import catalog_digest, catalog_digest_of
from ..vocabulary.problems import Problem
from ..vocabulary.text import text_problem
from . import lxcindex
from .deltas import delta_problems, published_items
from .versions import version_name_problem, version_time

INDEX_NAME = "images"

# From the one table of image files (imagefiles): which metadata and unified ftype each client
# reads (CLIENT_META), the combined field of each root ftype, every ftype the clients know, the
# metadata and unified ftypes of either client, and the mirrors (items published for one client
# are mirrored for the other: same object, other ftype).
CLIENT_META = imagefiles.CLIENT_META
ROOT_COMBINED_FIELD = imagefiles.ROOT_COMBINED_FIELD
KNOWN_FTYPES = imagefiles.KNOWN_FTYPES
META_FTYPES = imagefiles.META_FTYPES
UNIFIED_FTYPES = imagefiles.UNIFIED_FTYPES
MIRRORS = imagefiles.MIRRORS


def rfc2822(moment: datetime) -> str:
    """simplestreams' `updated` format, e.g. 'Wed, 25 Nov 2026 18:48:00 +0000'."""
    return moment.astimezone(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")


def _support_eol(product: ProductConfig, manifest: Mapping[str, Any]) -> str:
    if product.support_eol:
        return product.support_eol
    if manifest.get("support_eol"):
        return str(manifest["support_eol"])
    expiry = str(manifest.get("expiry", "")).strip()
    if expiry.isdigit():  # the seed wrote unix seconds, which clients ignore: convert
        return datetime.fromtimestamp(int(expiry), tz=timezone.utc).strftime("%Y-%m-%d")
    return ""


def _mirrored_items(items: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(items)
    present = {item.get("ftype") for item in items.values()}
    for have, want in MIRRORS:
        if have in present and want not in present:
            source = next(item for item in items.values() if item.get("ftype") == have)
            out[want] = {**source, "ftype": want}
    return out


def catalog_product(
    product: ProductConfig, manifest: Mapping[str, Any], versions: Iterable[str] | None = None
) -> dict[str, Any]:
    """One product entry with the field names and types both clients parse.

    `versions` restricts the entry to the versions retention keeps (default: all); a delta whose
    base it leaves out goes too (core.deltas.published_items).
    """
    known = manifest.get("versions", {})
    wanted = set(known if versions is None else versions)
    entry: dict[str, Any] = {
        "aliases": ",".join(product.aliases),
        "arch": product.arch,
        "os": product.os,
        "release": product.release,
        "release_title": product.release_title,
        "versions": {
            name: {**{k: v for k, v in version.items() if k != "items"},
                   "items": _mirrored_items(published_items(version["items"], wanted, known))}
            for name, version in sorted(manifest.get("versions", {}).items())
            if name in wanted
        },
    }  # fmt: skip
    if product.variant:
        entry["variant"] = product.variant
    if product.version:
        entry["version"] = product.version
    eol = _support_eol(product, manifest)
    if eol:
        entry["support_eol"] = eol
    if product.requirements:
        # Incus reads `requirements`, LXD `lxd_requirements`: publish both.
        entry["requirements"] = dict(product.requirements)
        entry["lxd_requirements"] = dict(product.requirements)
    return entry


def assemble_catalog(tree: TreeConfig, entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The products:1.0 document around product entries (those without versions are left out)."""
    products = {name: entry for name, entry in sorted(entries.items()) if entry.get("versions")}
    newest = max(
        (version_time(max(entry["versions"])) for entry in products.values()),
        default=datetime(1970, 1, 1, tzinfo=timezone.utc),
    )
    return {
        "content_id": tree.content_id,
        "datatype": tree.datatype,
        "format": tree.format,
        "products": products,
        "updated": rfc2822(newest),
    }


def build_catalog(tree: TreeConfig, manifests: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The catalog for every visible product that has a manifest (all of its versions)."""
    return assemble_catalog(tree, {
        product.name: catalog_product(product, manifests[product.name])
        for product in tree.products
        if not product.hidden and product.name in manifests
    })  # fmt: skip


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building big acyclic JSON documents: its passes
    over millions of young objects make catalog building grow faster than the catalog."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def to_bytes(document: Mapping[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, compact, UTF-8): equal documents give equal bytes."""
    return (json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def addressed_content_problem(key: str, data: bytes) -> str | None:
    """Why the bytes at a content-addressed catalog key are not the catalog that key names, if
    they are not (a catalog of another name is not checked)."""
    named = catalog_digest(key)
    if named and catalog_digest_of(data) != named:
        return "its content does not match its content-addressed name (changed after it was written)"
    return None


def build_index(
    tree: TreeConfig, catalog: Mapping[str, Any], catalog_path: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """streams/v1/index.json naming the catalog; products listed so clients do not skip it.

    `extra` (the publisher's history) goes under the `ssb_s3` key, which clients ignore.
    """
    return {
        **({"ssb_s3": dict(extra)} if extra else {}),
        "format": "index:1.0",
        "index": {
            INDEX_NAME: {
                "datatype": tree.datatype,
                "format": tree.format,
                "path": catalog_path,
                "products": sorted(catalog["products"]),
                "updated": catalog["updated"],
            }
        },
        "updated": catalog["updated"],
    }


def index_catalog_path(index: Any) -> tuple[str, str | None]:
    """(the catalog path index.json (parsed) names in its INDEX_NAME entry, why it cannot be used;
    None: it can). The one reader of that path: a path that is not a plain relative key (a URL,
    '../../etc/passwd') is never requested."""
    try:
        path = index["index"][INDEX_NAME]["path"]
    except (KeyError, TypeError, IndexError):
        return "", "not a simplestreams index"
    why = _path_problem(path)
    return (path if isinstance(path, str) else ""), why


_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_PLAIN_PATH = re.compile(r"(?!/)(?!.*//)(?!(?:.*/)?\.\.?(?:/|$))[^\s\\\x00-\x1f\x7f-\x9f]+(?<!/)")


def _path_problem(path: Any) -> str | None:
    if not isinstance(path, str) or not path:
        return "path is missing"
    if _PLAIN_PATH.fullmatch(path):  # never a URL then: it has no '//'
        # _PLAIN_PATH refuses every ASCII character vocabulary/text refuses; the others (bidi overrides...) here
        why = None if path.isascii() else text_problem(path)
        return None if why is None else f"path '{path[:200]}' {why}"
    if path.startswith("/") or _URL.match(path):
        return f"path '{path}' is absolute; it must be relative to the tree root"
    return f"path {path!r} must be a plain relative path (no '..', '.', '//', '\\', spaces or control characters)"


def fingerprints(items: Mapping[str, Any]) -> set[str]:
    """Every image fingerprint a version's items give, for LXD and Incus alike."""
    mirrored = raw_items(_mirrored_items(items))
    return {fp for client in CLIENT_META for fp, _ in _client_images(mirrored, client)}


def _images_of_version(name: str, items: Mapping[str, Any], client: str) -> list[tuple[str, str]]:
    """(fingerprint, description) of each image `client` (LXD or Incus: its strictest reader in the
    client table, vocabulary/clients) would see in this version's raw items."""
    return _client_images(raw_items(items), client)


def _client_images(items: Mapping[str, ItemView], client: str) -> list[tuple[str, str]]:
    """_images_of_version over items seen as ItemViews (typed, or raw through document.raw_items)."""
    return [(image.fingerprint, f"{image.meta}+{image.root}" if image.root else image.meta)
            for image in clients.images(clients.BY_FAMILY[client], items)]


SHORT_FINGERPRINT = 12  # what `lxc image list` shows


def item_size(item: Mapping[str, Any] | ItemView) -> int:
    """An item's size; 0 when it is not an integer (an entry kept from a served catalog is not re-checked)."""
    size = item.get("size") if isinstance(item, Mapping) else item.size
    return size if isinstance(size, int) and not isinstance(size, bool) else 0


class ClientImage(NamedTuple):
    """One image the clients list in a version: its type (container or virtual-machine), size (meta +
    root bytes, the unified file alone), root ftype (the unified one for a unified tarball) and the
    clients (LXD, Incus) that list it."""

    type: str
    size: int
    root: str
    clients: tuple[str, ...]


def version_images(items: Mapping[str, ItemView]) -> dict[str, ClientImage]:
    """fingerprint -> the image LXD and/or Incus list from one version's (mirrored) items: typed
    Items, or raw ones through document.raw_items (the views, on the publish path)."""
    found: dict[str, ClientImage] = {}
    for client in CLIENT_META:
        for fingerprint, keys in _client_images(items, client):
            if fingerprint in found:
                found[fingerprint] = found[fingerprint]._replace(clients=(*found[fingerprint].clients, client))
                continue
            parts = [items[k] for k in keys.split("+")]
            root = str(parts[-1].ftype)
            found[fingerprint] = ClientImage("virtual-machine" if clients.is_vm_root(root) else "container",
                                             sum(item_size(p) for p in parts), root, (client,))
    return found


def candidate_fingerprints(products: Mapping[str, Any]) -> set[str]:
    """A superset of the fingerprints `_images_of_version` finds in these products' entries, for
    either client: every unified item's sha256 and every metadata item's combined fields (one pass)."""
    unified = {unified for _, unified in CLIENT_META.values()}
    meta = {meta for meta, _ in CLIENT_META.values()}
    fields = clients.fingerprint_fields()
    found: set[str] = set()
    for item in items_of({"products": products}):
        ftype = item.get("ftype")
        if ftype in meta:
            for field in item.keys() & fields:
                found.add(item[field])
        elif ftype in unified:
            found.add(item.get("sha256", ""))
    found.difference_update(("", None))
    return found


def contract_problems(catalog: Mapping[str, Any], source: str = "catalog",
                      image_clients: Iterable[str] = tuple(CLIENT_META)) -> list[str]:
    """Everything in `catalog` that a client would silently drop, choke on, or refuse on download
    (as messages; contract_problems_by_product gives the Problems)."""
    return [str(p) for problems in contract_problems_by_product(catalog, source, image_clients=image_clients).values()
            for p in problems]


def contract_problems_by_product(
    catalog: Mapping[str, Any], source: str = "catalog", focus: set[str] | None = None,
    image_clients: Iterable[str] = tuple(CLIENT_META),
    yielding: frozenset[str] = frozenset(),
) -> dict[str | None, list[Problem]]:
    """Contract problems keyed by the product to blame (None: the whole catalog), each located in
    `source` with the product (and version and item) as its field.

    `focus`: only these products changed (an incremental publish): the others were checked when
    they were published, so only their aliases and fingerprints are looked at, for collisions.
    `image_clients`: the clients (LXD, Incus) every version must give an image to. publish requires
    both (it mirrors each metadata item for the other client); verify only the clients the tree
    serves or the user requires (vocabulary/clients).
    `yielding`: products that lose every alias or fingerprint collision (mirrored ones: an upstream
    never takes an alias or an image of the tree's own products): looked at after the others.
    """
    required = set(image_clients)
    found: dict[str | None, list[Problem]] = {}
    products: Mapping[str, Any] = catalog.get("products", {})
    if not isinstance(products, Mapping):
        return {None: schema_problems(catalog, "products", source)}
    checked = {n: p for n, p in products.items() if focus is None or n in focus}
    for name in sorted(checked) if schema_problems({**catalog, "products": checked}, "products", source) else ():
        typed = schema_problems({**catalog, "products": {name: products[name]}}, "products", source, product=name)
        if typed:
            found[name] = typed  # wrong JSON types: one of them breaks the whole remote
    top = schema_problems({**catalog, "products": {}}, "products", source)
    if top:
        found[None] = top
    if found:
        return found
    if not products:
        return {None: [Problem(None, source, "", "no product has a published version: nothing for clients to list")]}

    def blame(product: str, field: str, text: str) -> None:
        found.setdefault(product, []).append(Problem(product, source, field, text))

    alias_owner: dict[tuple[str, str], str] = {}
    fingerprints: dict[str, dict[str, tuple[str, str]]] = {"LXD": {}, "Incus": {}}  # -> (product, description)
    # The unchanged products' fingerprints matter only if one is also a changed product's: when no
    # candidate is shared (the usual case), their per-version walk is skipped.
    walk_unchanged = len(checked) == len(products) or not candidate_fingerprints(
        {n: products[n] for n in checked}).isdisjoint(candidate_fingerprints(
            {n: p for n, p in products.items() if n not in checked}))
    for pname in sorted(products, key=lambda n: (n in yielding, n)):
        product = products[pname]
        where = f"product {pname}"
        arch = CANONICAL_ARCH.get(product["arch"])
        if pname not in checked:  # unchanged: only what could collide with a changed product
            for alias in product["aliases"].split(",") if product["aliases"] else ():
                owner = alias_owner.setdefault((alias, arch or product["arch"]), pname)
                if owner != pname and owner in checked:
                    blame(owner, f"product {owner}", f"alias '{alias}' for arch {product['arch']} "
                                                     f"is also claimed by {pname}")
            for vname, version in product["versions"].items() if walk_unchanged else ():
                views = raw_items(version["items"])
                for client, seen in fingerprints.items():
                    for fingerprint, what in _client_images(views, client):
                        other, _ = seen.setdefault(fingerprint, (pname, f"{pname} {vname} {what}"))
                        if other != pname and other in checked:
                            blame(other, f"product {other}", f"fingerprint {fingerprint[:12]} also used by {pname} "
                                                             f"{vname} {what} ({client} would refuse it: "
                                                             "'More than one match')")
            continue
        if arch is None:
            blame(pname, where, f"arch '{product['arch']}' is unknown to LXD (the product would be hidden)")
        for lxc_field, text in lxcindex.entry_problems(product):
            blame(pname, f"{where}: {lxc_field}", text)
        if product["aliases"]:
            for alias in product["aliases"].split(","):
                if not alias or alias != alias.strip() or any(c.isspace() for c in alias):
                    blame(pname, f"{where}: aliases", f"blank or space in alias '{alias}' of '{product['aliases']}'")
                    continue
                owner = alias_owner.setdefault((alias, arch or product["arch"]), pname)
                if owner != pname:
                    blame(pname, where, f"alias '{alias}' for arch {product['arch']} is already claimed by {owner}")
        for vname, version in sorted(product["versions"].items()):
            vwhere = f"{where} version {vname}"
            why = version_name_problem(vname)
            if why:
                blame(pname, vwhere, f"version name {why}; LXD would ignore it")
            items = version["items"]
            for key, item in sorted(items.items()):
                if item["ftype"] not in KNOWN_FTYPES:
                    blame(pname, f"{vwhere} item {key}", f"ftype '{item['ftype']}' is unknown to LXD and Incus "
                                                          f"(expected one of {', '.join(sorted(KNOWN_FTYPES))})")
                path_why = _path_problem(item.get("path"))
                if path_why:
                    blame(pname, f"{vwhere} item {key}", path_why)
                if not re.fullmatch(r"[0-9a-f]{64}", str(item.get("sha256", ""))):
                    blame(pname, f"{vwhere} item {key}", "sha256 missing or not 64 hex digits")
            for key, item in sorted(items.items()):
                if item["ftype"] not in META_FTYPES:
                    continue
                for root_key, root in sorted(items.items()):
                    field = ROOT_COMBINED_FIELD.get(root["ftype"])
                    if field and not item.get(field):
                        blame(pname, f"{vwhere} item {key}",
                              f"{field} missing for {root_key} (the image would be dropped)")
            for problem in delta_problems(pname, source, vname, product["versions"]):
                blame(pname, problem.field, problem.text)
            is_lxc_only = not any(i["ftype"] in META_FTYPES or i["ftype"] in UNIFIED_FTYPES for i in items.values())
            views = raw_items(items)
            for client, seen in fingerprints.items():
                images = _client_images(views, client)
                if not images and not is_lxc_only and client in required:
                    blame(pname, vwhere, f"no image that {client} can use")
                for fingerprint, what in images:
                    here = f"{pname} {vname} {what}"
                    _, other = seen.setdefault(fingerprint, (pname, here))
                    if other != here:
                        blame(pname, vwhere, f"fingerprint {fingerprint[:12]} also used by {other} "
                                             f"({client} would refuse it: 'More than one match')")
    for pname, text in lxcindex.collision_problems(products, checked):
        blame(pname, f"product {pname}", text)
    return found
