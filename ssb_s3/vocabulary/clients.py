"""What each simplestreams client accepts: one table of client rules, and the per-client report.

The one home of "which client lists what". Each Client row cites the source file its rule was
read from; the rows are:

- lxd-5.0: the LXD 5.0 client as in Debian 12 (lxd 5.0.2-5): canonical/lxd tag lxd-5.0.2,
  shared/simplestreams/products.go (ToLXD) and shared/osarch/architectures.go, plus Debian's
  mipsle/mips64le aliases (see _OSARCH_50). Measured here with the real `lxc` 5.0.2
  (tests/test_compat.py).
- lxd: the current LXD, canonical/lxd main (products.go last changed in 713ed5bf, 2026-04-07),
  same files. No real client of it runs here: its column comes from this table only.
- incus: Incus 6.0 LTS, lxc/incus tag v6.0.4, shared/simplestreams/products.go and
  shared/osarch/architectures.go. Measured here with the real `incus` 6.0.4.
- simplestreams: python-simplestreams (sstream-query / sstream-mirror; simplestreams/mirrors/
  __init__.py sync_products and filters.py). It reads items, not images: it lists every item of
  every version whatever its ftype, arch or version name. Measured with the real sstream-query.

What the image clients (LXD, Incus) do with a product, as read in ToLXD:
- arch: looked up by name or alias in osarch (`arches`, name -> the client's canonical name);
  unknown: the whole product is skipped;
- version name: fewer than 8 characters, or the first 8 not a YYYYMMDD date: the version is
  skipped (current LXD first tries the whole name as YYYYMMDD_HHMM, only for the creation time);
- images: each metadata item of the client's own ftype (imagefiles.CLIENT_META: lxd.tar.xz or
  incus.tar.xz; the other one is ignored) paired with each root item it knows (`Client.roots`),
  fingerprint from the metadata item's combined field for that root (root.tar.xz falls back to
  combined_sha256); a unified tarball of its own ftype is an image with its own sha256. No
  fingerprint, or a metadata item without path: that image is skipped;
- requirements: LXD 5.0 reads `lxd_requirements`, Incus `requirements`, current LXD
  `lxd_requirements`, else `requirements`. They do not change what is listed, only the
  image's requirements.* properties (what a launch checks);
- deltas: a delta item of the ftype `<root>.vcdiff` for a root the client deltas (LXD 5.0:
  squashfs only; current LXD and Incus: squashfs and disk-kvm.img) is used when `delta_base`
  names a version of the same product whose metadata item carries the base fingerprint; the field
  read for it is `delta_base_fields` (Incus takes combined_squashfs_sha256 even for a VM delta,
  so a VM delta never matches the VM image it should patch). A delta never changes what is listed.

The imagefiles table stays the vocabulary of files we build (names, ftypes, combined fields);
this table derives the metadata and unified ftypes and the combined fields from it and adds what
only clients know (disk1.img and uefi1.img roots, arches, requirements); which clients pair a root
we build, and which use a delta (and read its base from which field), are the table's `read_by`
and `base_field_for` columns, so a new root is listed by no client, and a new delta used by none,
until its row says so (`table_problems` checks the two agree). config's
CANONICAL_ARCH is LXD 5.0's arch map from here. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from . import imagefiles
from .document import Catalog, Item, ItemView, Product, Version, walk_versions

# --- architectures (shared/osarch/architectures.go: architectureNames + architectureAliases) ---

_OSARCH_50: dict[str, tuple[str, ...]] = {  # canonical/lxd lxd-5.0.2, as patched by Debian (below)
    "i686": ("i386", "i586", "386", "x86", "generic_32"),
    "x86_64": ("amd64", "generic_64"),
    "armv6l": ("armel", "arm"),
    "armv7l": ("armhf", "armhfp", "armv7a_hardfp", "armv7", "armv7a_vfpv3_hardfp"),
    "armv8l": (),
    "aarch64": ("arm64", "arm64_generic"),
    "ppc": ("powerpc",),
    "ppc64": ("powerpc64",),
    "ppc64le": ("ppc64el",),
    "s390x": (),
    # Upstream lxd-5.0.2 has only mipsel / mips64el; Debian 12's 5.0.2-5 knows mipsle and mips64le
    # too (its 5.0.2-2 patch "Fix mipsel and mips64el builds"): measured with its lxc, which lists
    # an arch 'mipsle' product as 'mips' (tests/test_compat.py).
    "mips": ("mipsel", "mipsle"),
    "mips64": ("mips64el", "mips64le"),
    "riscv32": (),
    "riscv64": (),
}
_OSARCH_INCUS_60: dict[str, tuple[str, ...]] = {  # lxc/incus v6.0.4
    **_OSARCH_50,
    "loongarch64": ("loong64",),
}
_OSARCH_LXD_MAIN: dict[str, tuple[str, ...]] = {  # canonical/lxd main
    **_OSARCH_INCUS_60,
    "x86_64": ("amd64", "amd64v3", "generic_64"),
}


def _arch_map(table: Mapping[str, Sequence[str]]) -> Mapping[str, str]:
    return MappingProxyType({name: canonical for canonical, names in table.items() for name in (canonical, *names)})


# Roots the image clients pair with a metadata item that we never build, and the metadata fields
# holding their fingerprint (first non-empty wins). With the roots of the imagefiles table whose
# `read_by` names the client, they make `Client.roots`. ToLXD knows the same five roots in
# lxd-5.0.2, LXD main and Incus v6.0.4: root.tar.xz, squashfs, disk-kvm.img (ours), and these two.
_CLIENT_ONLY_ROOTS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "disk1.img": ("combined_disk1-img_sha256",),
    "uefi1.img": ("combined_uefi1-img_sha256",),
})
_CLIENT_ONLY_VM_ROOTS = frozenset({"disk1.img", "uefi1.img"})  # their images are virtual machines


def is_vm_root(ftype: str) -> bool:
    """True for a root ftype whose image the clients list as a virtual-machine (the imagefiles
    table's `vm` roots, and the client-only VM roots); any other root makes a container."""
    return ftype in imagefiles.VM_FTYPES or ftype in _CLIENT_ONLY_VM_ROOTS


@dataclass(frozen=True)
class Client:
    """One client's rules (see the module docstring). `family`: the imagefiles client (LXD or Incus)
    whose metadata and unified ftypes it reads; None: it lists items, not images."""

    name: str
    title: str
    source: str
    family: str | None
    arches: Mapping[str, str] = field(default_factory=dict)
    other_roots: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # roots it knows that we never build
    requirements: tuple[str, ...] = ()  # product fields read for requirements.*, first present wins
    measured_with: str = ""  # the real client the tests compare with ("": the table only)

    @property
    def meta_ftype(self) -> str:
        return imagefiles.CLIENT_META[self.family][0] if self.family else ""

    @property
    def unified_ftype(self) -> str:
        return imagefiles.CLIENT_META[self.family][1] if self.family else ""

    @property
    def roots(self) -> dict[str, tuple[str, ...]]:
        """Root ftype -> the metadata fields holding its fingerprint, for the roots it pairs: the
        imagefiles roots whose `read_by` names it, and its `other_roots`."""
        ours = {row.ftype: row.combined_fields for row in imagefiles.IMAGE_FILES.values()
                if row.role == "root" and self.name in row.read_by}
        return {**ours, **self.other_roots}

    @property
    def deltas(self) -> dict[str, str]:
        """Delta ftype -> the metadata field it reads the base fingerprint from, for the deltas it
        uses: the imagefiles delta rows whose `read_by` names it (the field: their `base_field_for`
        for it, else their root's first combined field)."""
        found = {}
        for row in imagefiles.DELTA_FTYPES.values():
            if self.name in row.read_by:
                root = imagefiles.IMAGE_FILES[row.delta_of]
                found[row.ftype] = dict(row.base_field_for).get(self.name, root.combined_fields[0])
        return found


CLIENTS: dict[str, Client] = {c.name: c for c in (
    Client("lxd-5.0", "LXD 5.0", "canonical/lxd lxd-5.0.2 shared/simplestreams/products.go, shared/osarch",
           "LXD", _arch_map(_OSARCH_50), _CLIENT_ONLY_ROOTS, ("lxd_requirements",), "lxc 5.0.2 (Debian 12)"),
    Client("lxd", "current LXD", "canonical/lxd main shared/simplestreams/products.go, shared/osarch",
           "LXD", _arch_map(_OSARCH_LXD_MAIN), _CLIENT_ONLY_ROOTS, ("lxd_requirements", "requirements")),
    Client("incus", "Incus 6.0", "lxc/incus v6.0.4 shared/simplestreams/products.go, shared/osarch",
           "Incus", _arch_map(_OSARCH_INCUS_60), _CLIENT_ONLY_ROOTS, ("requirements",),
           "incus 6.0.4 (bookworm-backports)"),
    Client("simplestreams", "python-simplestreams",
           "python-simplestreams simplestreams/mirrors/__init__.py (sync_products), filters.py", None,
           measured_with="sstream-query (python-simplestreams 0.1.0)"),
)}  # fmt: skip
BY_FAMILY = {"LXD": CLIENTS["lxd-5.0"], "Incus": CLIENTS["incus"]}  # the contract's strictest reader per family
IMAGE_CLIENTS = tuple(c for c in CLIENTS.values() if c.family)


def fingerprint_fields() -> frozenset[str]:
    """Every metadata item field an image client reads a fingerprint from."""
    return frozenset(f for c in IMAGE_CLIENTS for names in c.roots.values() for f in names)


def table_problems() -> list[str]:
    """Where the client rows and the imagefiles table disagree ([] when they agree): a root's
    `read_by` names image clients; a root we build is not also a client-only root; a delta a
    client uses is of a root it knows."""
    problems = []
    names = {c.name for c in IMAGE_CLIENTS}
    for row in imagefiles.IMAGE_FILES.values():
        unknown = sorted(set(row.read_by) - names)
        if unknown:
            problems.append(f"{row.filename}: read_by names {', '.join(unknown)}, not image clients")
    for client in IMAGE_CLIENTS:
        ours = {row.ftype for row in imagefiles.IMAGE_FILES.values() if row.role == "root"}
        problems.extend(f"{client.name}: {ftype} is both a root we build and one it only knows"
                        for ftype in sorted(ours & set(client.other_roots)))
        problems.extend(f"{client.name}: delta {dftype} is of a root it does not pair"
                        for dftype in client.deltas
                        if dftype.removesuffix(imagefiles.DELTA_SUFFIX) not in client.roots)
    return problems


def version_date(name: str) -> str | None:
    """YYYY-MM-DD the image clients parse from a version name's first 8 characters; None: dropped."""
    try:
        return datetime.strptime(name[:8], "%Y%m%d").strftime("%Y-%m-%d") if len(name) >= 8 else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Image:
    """One image a client lists: its fingerprint, its metadata and root item keys (root '' for a
    unified tarball), and the root ftype ('tar.gz' for a unified tarball, as the clients say)."""

    fingerprint: str
    meta: str
    root: str
    kind: str

    @property
    def type(self) -> str:
        return "virtual-machine" if is_vm_root(self.kind) else "container"


def images(client: Client, items: Mapping[str, ItemView]) -> list[Image]:
    """The images `client` makes of one version's items (ToLXD's item loop), in item order; a raw
    item (the publish path) through document.raw_items."""
    found: list[Image] = []
    roots = client.roots
    for key, item in items.items():
        ftype = item.ftype
        if ftype == client.unified_ftype and item.sha256 and item.path:
            found.append(Image(str(item.sha256), key, "", "tar.gz"))
        if ftype != client.meta_ftype or not item.path:
            continue
        for root_key, root in items.items():
            fields = roots.get(str(root.ftype))
            fingerprint = next((item.combined[f] for f in fields or () if item.combined.get(f)), "")
            if fingerprint:
                found.append(Image(str(fingerprint), key, root_key, str(root.ftype)))
    return found


def item_families(items: Mapping[str, Item]) -> set[str]:
    """The imagefiles clients (LXD, Incus) whose metadata or unified items a version carries."""
    wanted = {ftype: family for family, pair in imagefiles.CLIENT_META.items() for ftype in pair}
    return {wanted[i.ftype] for i in items.values() if i.ftype in wanted}


def families(catalog: Catalog) -> set[str]:
    """The imagefiles clients (LXD, Incus) for which the catalog carries metadata or unified items."""
    found: set[str] = set()
    for _, _, _, version in walk_versions(catalog):
        found |= item_families(version.items)
    return found


def served_clients(catalog: Catalog) -> list[str]:
    """The image clients a tree serves: those whose metadata/unified items it carries."""
    fams = families(catalog)
    return [c.name for c in IMAGE_CLIENTS if c.family in fams]


@dataclass
class Cell:
    """Whether one client lists one version, the images it makes of it, why not, and notes (what
    it ignores: requirements, deltas)."""

    listed: bool
    images: list[Image] = field(default_factory=list)
    reason: str = ""
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        if not self.listed:
            return f"no: {self.reason}"
        kinds = ",".join(dict.fromkeys(i.kind for i in self.images))
        return "yes" + (f" ({kinds})" if kinds else "") + "".join(f"; {n}" for n in self.notes)

    def as_dict(self) -> dict[str, Any]:
        return {"listed": self.listed, "reason": self.reason, "notes": list(self.notes),
                "images": [{"fingerprint": i.fingerprint, "type": i.type, "root": i.kind} for i in self.images]}


def _no_image_reason(client: Client, items: Mapping[str, Item]) -> str:
    ftypes = [i.ftype for i in items.values()]
    own = [f for f in ftypes if f in (client.meta_ftype, client.unified_ftype)]
    if not own:
        other = sorted({f for f in ftypes if f in imagefiles.META_FTYPES or f in imagefiles.UNIFIED_FTYPES})
        ignored = f" (it ignores {', '.join(other)})" if other else ""
        return f"no {client.meta_ftype} or {client.unified_ftype} item{ignored}"
    metas = [i for i in items.values() if i.ftype == client.meta_ftype]
    if metas and not any(m.path for m in metas):
        return f"the {client.meta_ftype} item has no path"
    roots = client.roots
    present = [f for f in ftypes if f in roots]
    if metas and not present:
        return f"no root item it knows ({', '.join(sorted(roots))})"
    if metas:
        wanted = sorted({roots[f][0] for f in present})
        return f"the {client.meta_ftype} item has no {' or '.join(wanted)} (no fingerprint)"
    return f"the {client.unified_ftype} item has no sha256 or path"


def _requirement_note(client: Client, product: Product) -> str:
    given = [f for f in ("lxd_requirements", "requirements") if getattr(product, f)]
    if given and not set(given) & set(client.requirements):
        return f"ignores {'/'.join(given)} (reads {' or '.join(client.requirements)})"
    return ""


def _delta_notes(client: Client, product: Product, items: Mapping[str, Item],
                 listed: Sequence[Image]) -> list[str]:
    notes = []
    for key, delta in sorted(items.items()):
        dftype = delta.ftype
        if dftype not in imagefiles.DELTA_FTYPES:
            continue
        root = dftype.removesuffix(imagefiles.DELTA_SUFFIX)
        if dftype not in client.deltas:
            label = key if key == dftype else f"{key} ({dftype})"
            notes.append(f"ignores {label}: it knows only {' and '.join(client.deltas) or 'no'} deltas")
            continue
        if not any(i.kind == root for i in listed):
            notes.append(f"ignores {key} (no {root} image in this version)")
            continue
        base_name = delta.delta_base or ""
        base = product.versions.get(base_name)
        metas = [i for i in (base.items.values() if base else ()) if i.ftype == client.meta_ftype]
        source = metas[0].combined.get(client.deltas[dftype], "") if metas else ""
        wanted = metas[0].combined.get(client.roots[root][0], "") if metas else ""
        if base is None:
            notes.append(f"ignores {key} (delta_base '{base_name}' is not a version of this product)")
        elif not source:
            notes.append(f"ignores {key} (its base {base_name} has no {client.deltas[dftype]})")
        elif source != wanted:
            notes.append(f"{key} is offered as a delta from {source[:12]} ({client.deltas[dftype]} of {base_name}),"
                         f" not from its {root} image {wanted[:12]}: never applied")
        else:
            notes.append(f"uses {key}" if base_name in key else f"uses {key} (delta from {base_name})")
    return notes


def cell(client: Client, product: Product, version_name: str, version: Version) -> Cell:
    """Whether `client` lists this version of this product, and why not."""
    items = version.items
    if client.family is None:  # python-simplestreams: every item of every version
        return Cell(True) if items else Cell(False, reason="the version has no items")
    arch = product.arch
    if arch not in client.arches:
        return Cell(False, reason=f"arch '{arch}' is unknown to it")
    if version_date(version_name) is None:
        return Cell(False, reason=f"version name '{version_name}' does not start with a YYYYMMDD date")
    found = images(client, items)
    if not found:
        return Cell(False, reason=_no_image_reason(client, items))
    notes = [n for n in (_requirement_note(client, product),) if n] + _delta_notes(client, product, items, found)
    return Cell(True, found, notes=notes)


@dataclass
class Row:
    """One version of one product, and each client's cell."""

    product: str
    version: str
    cells: dict[str, Cell]

    def as_dict(self) -> dict[str, Any]:
        return {"product": self.product, "version": self.version,
                "clients": {name: c.as_dict() for name, c in self.cells.items()}}


def report(catalog: Catalog, clients: Sequence[Client] = tuple(CLIENTS.values())) -> list[Row]:
    """For every version of every product of a catalog (parsed after the products schema check),
    whether each client lists it."""
    return [Row(pname, vname, {c.name: cell(c, product, vname, version) for c in clients})
            for pname, product, vname, version in walk_versions(catalog, ordered=True)]


def unlisted_by_product(rows: Sequence[Row], client: str) -> dict[str, list[tuple[str, str]]]:
    """product -> [(version, reason)] of the versions `client` does not list."""
    found: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        c = row.cells[client]
        if not c.listed:
            found.setdefault(row.product, []).append((row.version, c.reason))
    return found


def unlisted_text(client: str, missing: Sequence[tuple[str, str]], total: int) -> str:
    """Which versions of a product `client` does not list, and why (without the product)."""
    title = CLIENTS[client].title
    reasons = list(dict.fromkeys(reason for _, reason in missing))
    versions = ", ".join(v for v, _ in missing)
    return (f"{title} ({client}) does not list {len(missing)} of its {total} version(s) ({versions}): "
            f"{'; '.join(reasons)}")


def product_line(product: str, client: str, missing: Sequence[tuple[str, str]], total: int) -> str:
    """One line: which versions of a product `client` does not list, and why."""
    return f"product {product}: {unlisted_text(client, missing, total)}"
