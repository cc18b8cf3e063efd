"""The image-file vocabulary: one table of the files an image version is made of.

Each row (ImageFile) says, for one file name distrobuilder writes: the item key and ftype it gets
in ssb.json, the ftype the LXD and the Incus client look for (the catalog mirrors a metadata or
unified item under the other client's ftype), the meta item fields that hold sha256(meta ‖ root)
for a root file, how its content is recognised (magic bytes), and its role (LXD/Incus metadata,
LXC metadata, root, unified tarball, or a delta of a root: a `.vcdiff` that rebuilds the root from
the same root of an older version; BUILT_FILES are the others). Scan (manifest), catalog and
contract, verify, build-product (ingest, artifacts), the bucket-event filter (hooks.events) and
the client table (vocabulary/clients: what each client lists) read only this table
and what is derived from it here: the completeness rule, the upload order and the one
meta ‖ root hasher (MetaRootHasher; VersionHasher on top of it names files by the table).

Invariants (`table_problems`, checked on every `register`): file names and item keys are unique;
a row's ftype is its LXD or its Incus ftype; for each client an ftype names one kind of file
(two rows may share it only as the same kind under two file names, e.g. lxd.tar.xz and
incus.tar.xz); each client has exactly one metadata ftype and one unified ftype; a root has the
same ftype for both clients and at least one combined field, no combined field belongs to two
roots, and only roots have combined fields; every content kind has magic bytes in MAGIC; a delta
row names its root (delta_of) and its ftype is the root's + '.vcdiff', as the clients derive it.

The derived lookups below (KNOWN_FTYPES, META_FTYPES, ROOT_COMBINED_FIELD, COMBINED_FIELDS,
CLIENT_META, MIRRORS, BUILT_FILES, DELTA_FOR_ROOT, DELTA_FTYPES) are the same objects for the
life of the process: `register` and `unregister` (tests adding a made-up kind) update them in
place, so modules that imported them see the change. Nothing else changes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from . import layout
from .layout import version_file_key

Role = Literal["meta", "lxc-meta", "root", "unified", "delta"]
ROLES: tuple[Role, ...] = ("meta", "lxc-meta", "root", "unified", "delta")
METADATA_ROLES = frozenset({"meta", "lxc-meta"})  # small tarballs whose metadata.yaml or config is checked
CLIENTS = ("LXD", "Incus")
DELTA_SUFFIX = ".vcdiff"  # a delta's ftype is its root's ftype + this (the clients' rule)

# Content kinds by their first bytes; a row's `content` names the kinds its file may hold.
MAGIC: dict[str, tuple[bytes, ...]] = {
    "squashfs": (b"hsqs",),
    "xz": (b"\xfd7zXZ\x00",),
    "gzip": (b"\x1f\x8b",),
    "zstd": (b"\x28\xb5\x2f\xfd",),
    "bzip2": (b"BZh",),
    "qcow2": (b"QFI\xfb",),
    "vcdiff": (b"\xd6\xc3\xc4",),  # RFC 3284 header 'VCD' with the high bits set
}
_TARBALL = ("xz", "gzip", "bzip2", "zstd")


@dataclass(frozen=True)
class ImageFile:
    """One kind of image file (see the module docstring)."""

    filename: str  # as built and as stored in the version folder
    item_key: str  # its item's key in ssb.json
    ftype: str  # its item's ftype in ssb.json: its LXD or its Incus ftype
    lxd_ftype: str
    incus_ftype: str
    role: Role
    content: tuple[str, ...]  # MAGIC kinds it may hold
    combined_fields: tuple[str, ...] = ()  # root: meta item fields of sha256(meta ‖ root); the first is checked
    lxc_root: bool = False  # root: with an LXC metadata tarball it makes a complete (classic LXC) version
    delta_of: str = ""  # delta: the file name of the root it rebuilds (from the same root of an older version)
    read_by: tuple[str, ...] = ()  # root: the client rows (clients.CLIENTS) that pair it with a metadata item

    def ftype_for(self, client: str) -> str:
        """The ftype `client` (LXD or Incus) looks for."""
        return self.lxd_ftype if client == "LXD" else self.incus_ftype

    @property
    def is_metadata(self) -> bool:
        return self.role in METADATA_ROLES


_TOLXD = ("lxd-5.0", "lxd", "incus")  # the image clients of vocabulary.clients

IMAGE_FILES: dict[str, ImageFile] = {
    f.filename: f
    for f in (
        ImageFile("lxd.tar.xz", "lxd.tar.xz", "lxd.tar.xz", "lxd.tar.xz", "incus.tar.xz", "meta", _TARBALL),
        ImageFile("incus.tar.xz", "incus.tar.xz", "incus.tar.xz", "lxd.tar.xz", "incus.tar.xz", "meta", _TARBALL),
        # LXC metadata: lxc-download unpacks it with `tar J`, so xz only
        ImageFile("meta.tar.xz", "meta.tar.xz", "meta.tar.xz", "meta.tar.xz", "meta.tar.xz", "lxc-meta", ("xz",)),
        # Roots: every image client's ToLXD (LXD 5.0, current LXD, Incus 6.0) pairs these three.
        ImageFile("rootfs.squashfs", "root.squashfs", "squashfs", "squashfs", "squashfs", "root", ("squashfs",),
                  ("combined_squashfs_sha256",), read_by=_TOLXD),
        ImageFile("rootfs.tar.xz", "root.tar.xz", "root.tar.xz", "root.tar.xz", "root.tar.xz", "root", ("xz",),
                  ("combined_rootxz_sha256", "combined_sha256"), lxc_root=True, read_by=_TOLXD),
        ImageFile("disk.qcow2", "disk.qcow2", "disk-kvm.img", "disk-kvm.img", "disk-kvm.img", "root", ("qcow2",),
                  ("combined_disk-kvm-img_sha256",), read_by=_TOLXD),
        ImageFile("lxd_combined.tar.gz", "lxd_combined.tar.gz", "lxd_combined.tar.gz", "lxd_combined.tar.gz",
                  "incus_combined.tar.gz", "unified", ("gzip", "xz", "bzip2", "zstd")),
        ImageFile("incus_combined.tar.gz", "incus_combined.tar.gz", "incus_combined.tar.gz", "lxd_combined.tar.gz",
                  "incus_combined.tar.gz", "unified", ("gzip", "xz", "bzip2", "zstd")),
        # Deltas: stored as <version folder>/<base version>.<filename>, item key <item_key>-<base version>.
        ImageFile("rootfs.squashfs.vcdiff", "delta", "squashfs.vcdiff", "squashfs.vcdiff", "squashfs.vcdiff",
                  "delta", ("vcdiff",), delta_of="rootfs.squashfs"),
        ImageFile("disk.qcow2.vcdiff", "delta-kvm", "disk-kvm.img.vcdiff", "disk-kvm.img.vcdiff",
                  "disk-kvm.img.vcdiff", "delta", ("vcdiff",), delta_of="disk.qcow2"),
    )
}  # fmt: skip

# Derived from IMAGE_FILES by _derive() (updated in place; see the module docstring).
KNOWN_FTYPES: set[str] = set()  # every ftype LXD or Incus knows
META_FTYPES: set[str] = set()  # ftypes of LXD/Incus metadata tarballs (those carrying combined fields)
LXC_META_FTYPES: set[str] = set()  # ftypes of classic LXC metadata (role lxc-meta)
LXC_ROOT_FTYPES: set[str] = set()  # ftypes of the roots that pair with LXC metadata (lxc_root)
ROOT_COMBINED_FIELD: dict[str, str] = {}  # root ftype -> the combined field clients check
COMBINED_FIELDS: list[str] = []  # every combined field, in table order
CLIENT_META: dict[str, tuple[str, str]] = {}  # client -> (its metadata ftype, its unified ftype)
MIRRORS: list[tuple[str, str]] = []  # (ftype present, ftype the catalog adds for the other client)
BUILT_FILES: dict[str, ImageFile] = {}  # the rows a build writes (all but deltas), by file name
DELTA_FOR_ROOT: dict[str, ImageFile] = {}  # root file name -> its delta row
DELTA_FTYPES: dict[str, ImageFile] = {}  # delta ftype -> its row


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _derive() -> None:
    everything = list(IMAGE_FILES.values())
    KNOWN_FTYPES.clear()
    KNOWN_FTYPES.update(f for row in everything for f in (row.lxd_ftype, row.incus_ftype))
    deltas = [row for row in everything if row.role == "delta"]
    DELTA_FOR_ROOT.clear()
    DELTA_FOR_ROOT.update({row.delta_of: row for row in deltas})
    DELTA_FTYPES.clear()
    DELTA_FTYPES.update({row.ftype: row for row in deltas})
    BUILT_FILES.clear()
    BUILT_FILES.update({row.filename: row for row in everything if row.role != "delta"})
    rows = list(BUILT_FILES.values())
    META_FTYPES.clear()
    META_FTYPES.update(f for row in rows if row.role == "meta" for f in (row.lxd_ftype, row.incus_ftype))
    LXC_META_FTYPES.clear()
    LXC_META_FTYPES.update(row.ftype for row in rows if row.role == "lxc-meta")
    LXC_ROOT_FTYPES.clear()
    LXC_ROOT_FTYPES.update(row.ftype for row in rows if row.lxc_root)
    ROOT_COMBINED_FIELD.clear()
    ROOT_COMBINED_FIELD.update({row.ftype: row.combined_fields[0] for row in rows if row.role == "root"})
    COMBINED_FIELDS[:] = _unique(f for row in rows for f in row.combined_fields)
    CLIENT_META.clear()
    for client in CLIENTS:
        meta = _unique(row.ftype_for(client) for row in rows if row.role == "meta")
        unified = _unique(row.ftype_for(client) for row in rows if row.role == "unified")
        CLIENT_META[client] = (meta[0], unified[0])
    MIRRORS[:] = _unique(
        pair for row in rows if row.lxd_ftype != row.incus_ftype
        for pair in ((row.lxd_ftype, row.incus_ftype), (row.incus_ftype, row.lxd_ftype))
    )


def table_problems(rows: Sequence[ImageFile], magic: Mapping[str, Sequence[bytes]] = MAGIC) -> list[str]:
    """What breaks the table's invariants (module docstring); [] for a sound table."""
    problems: list[str] = []

    def unique(what: str, values: list[str]) -> None:
        problems.extend(f"{what} '{v}' is used twice" for v in _unique(v for v in values if values.count(v) > 1))

    unique("file name", [r.filename for r in rows])
    unique("item key", [r.item_key for r in rows])
    unique("ssb.json ftype", [r.ftype for r in rows])
    unique("combined field", [f for r in rows for f in r.combined_fields])
    by_name = {r.filename: r for r in rows}
    for client in CLIENTS:
        kinds: dict[str, tuple[Any, ...]] = {}
        for r in rows:
            kind = (r.lxd_ftype, r.incus_ftype, r.role, r.combined_fields, r.lxc_root)
            if kinds.setdefault(r.ftype_for(client), kind) != kind:
                problems.append(f"{client} ftype '{r.ftype_for(client)}' names two kinds of file ({r.filename})")
        for role in ("meta", "unified"):
            if len(_unique(r.ftype_for(client) for r in rows if r.role == role)) != 1:
                problems.append(f"{client} needs exactly one {role} ftype")
    for r in rows:
        if r.role not in ROLES:
            problems.append(f"{r.filename}: role '{r.role}' is not one of {', '.join(ROLES)}")
        if r.ftype not in (r.lxd_ftype, r.incus_ftype):
            problems.append(f"{r.filename}: ftype '{r.ftype}' is neither its LXD nor its Incus ftype")
        if r.role == "root" and (r.lxd_ftype != r.incus_ftype or not r.combined_fields):
            problems.append(f"{r.filename}: a root has one ftype for both clients and at least one combined field")
        if r.role != "root" and (r.combined_fields or r.lxc_root or r.read_by):
            problems.append(f"{r.filename}: only a root has combined fields, clients that read it, "
                            "or pairs with LXC metadata")
        if not r.content or any(k not in magic for k in r.content):
            problems.append(f"{r.filename}: content {r.content} must name kinds of MAGIC")
        if (r.role == "delta") != r.ftype.endswith(DELTA_SUFFIX):
            problems.append(f"{r.filename}: a delta, and only a delta, has an ftype ending in {DELTA_SUFFIX}")
        if r.role == "delta":
            root = by_name.get(r.delta_of)
            if root is None or root.role != "root" or r.lxd_ftype != r.incus_ftype \
                    or r.ftype != root.ftype + DELTA_SUFFIX:
                problems.append(f"{r.filename}: a delta names a root (delta_of) and has its ftype + {DELTA_SUFFIX}")
        elif r.delta_of:
            problems.append(f"{r.filename}: only a delta has delta_of")
    unique("delta_of", [r.delta_of for r in rows if r.role == "delta"])
    return problems


def register(row: ImageFile, magic: Mapping[str, tuple[bytes, ...]] | None = None) -> None:
    """Add a kind of image file (and content kinds it needs); refused (ValueError) if the table would
    break its invariants. For tests and for features that add a file kind."""
    new_magic = {**MAGIC, **(magic or {})}
    problems = table_problems([*IMAGE_FILES.values(), row], new_magic)
    if problems:
        raise ValueError(f"cannot register {row.filename}: {'; '.join(problems)}")
    MAGIC.update(new_magic)
    IMAGE_FILES[row.filename] = row
    _derive()


def unregister(filename: str, magic: Iterable[str] = ()) -> None:
    """Remove a kind added by `register` (and the content kinds named)."""
    IMAGE_FILES.pop(filename, None)
    for kind in magic:
        MAGIC.pop(kind, None)
    _derive()


@contextmanager
def registered(row: ImageFile, magic: Mapping[str, tuple[bytes, ...]] | None = None) -> Iterator[ImageFile]:
    """`register` for the duration of a with block."""
    register(row, magic)
    try:
        yield row
    finally:
        unregister(row.filename, magic or {})


_derive()


# --- completeness and order -------------------------------------------------------------------

def is_complete(filenames: Iterable[str]) -> bool:
    """A version is publishable with metadata + a root, or a unified tarball, or the LXC pair."""
    rows = [BUILT_FILES[f] for f in set(filenames) if f in BUILT_FILES]
    roles = {row.role for row in rows}
    return (
        "unified" in roles
        or {"meta", "root"} <= roles
        or ("lxc-meta" in roles and any(row.lxc_root for row in rows))
    )


def completeness_rule() -> str:
    """The rule of `is_complete` in words, for error messages."""
    lxc_meta = " or ".join(r.filename for r in BUILT_FILES.values() if r.role == "lxc-meta")
    lxc_roots = " or ".join(r.filename for r in BUILT_FILES.values() if r.lxc_root)
    return f"a metadata tarball and a root file, a unified tarball, or {lxc_meta} + {lxc_roots}"


def file_for(role: Role, client: str) -> str:
    """The file name of `role` that `client` (LXD or Incus) reads under its own ftype, e.g. the name
    a unified tarball built for Incus gets (incus_combined.tar.gz)."""
    return next(r.filename for r in IMAGE_FILES.values() if r.role == role and r.ftype == r.ftype_for(client))


def delta_filename(row: ImageFile, base: str) -> str:
    """The file name of a delta of `row` against version `base`, e.g. 20260101_0000.rootfs.squashfs.vcdiff."""
    return layout.delta_file_name(row.filename, base)


def delta_item_key(row: ImageFile, base: str) -> str:
    """The item key of a delta of `row` against version `base`, e.g. delta-20260101_0000."""
    return f"{row.item_key}-{base}"


def parse_delta_filename(name: str) -> tuple[ImageFile, str] | None:
    """(delta row, base version) of a delta file name, or None for any other name."""
    for row in DELTA_FTYPES.values():
        base = layout.delta_base_of(name, row.filename)
        if base:
            return row, base
    return None


def upload_order(names: Iterable[str]) -> list[str]:
    """Metadata first, roots last: a root's combined hashes extend its metadata files' hashes."""
    return sorted((n for n in names if n in BUILT_FILES), key=lambda n: (IMAGE_FILES[n].role == "root", n))


# --- content ----------------------------------------------------------------------------------

# The first bytes of a file that sniff and truncation_problem read (the squashfs superblock's
# bytes_used ends at 48): every reader of a file's head reads this many.
HEAD_BYTES = 64


def sniff(head: bytes) -> str:
    """The content kind of a file from its first bytes (a MAGIC key), or 'unknown'."""
    for kind, magics in MAGIC.items():
        if any(head.startswith(m) for m in magics):
            return kind
    return "unknown"


def content_kind_problem(name: str, head: bytes) -> str | None:
    """Why `head` (the file's first bytes) is not what the file name `name` says; None if it is."""
    expected = IMAGE_FILES[name].content
    kind = sniff(head)
    if kind in expected:
        return None
    return f"content is {kind}, expected {' or '.join(expected)} for {name}"


def truncation_problem(name: str, size: int, head: bytes, tail: bytes) -> str | None:
    """Why no client could use this file, from its first HEAD_BYTES and last 2 bytes (None: looks whole)."""
    if size == 0:
        return "is empty (0 bytes)"
    kind = sniff(head)
    if kind == "squashfs" and "squashfs" in IMAGE_FILES[name].content and len(head) >= 48:
        used = int.from_bytes(head[40:48], "little")  # superblock bytes_used
        if used > size:
            return f"is truncated: its squashfs superblock says {used} bytes, the object has {size}"
    if kind == "xz" and tail != b"YZ":
        return "is truncated: the xz stream has no footer"
    return None


# --- the one meta ‖ root hasher ---------------------------------------------------------------

_HASH_POOL = ThreadPoolExecutor(max_workers=3, thread_name_prefix="ssb-hash")


def update_all(hashers: Sequence[Any], chunk: bytes) -> None:
    """Feed one chunk to several hashers at once: hashlib releases the GIL on large buffers, so a
    root file's own sha256 and its combined fingerprints cost the time of one on 2+ cores."""
    if len(hashers) == 1 or len(chunk) < 1 << 16:
        for h in hashers:
            h.update(chunk)
        return
    pending = [_HASH_POOL.submit(h.update, chunk) for h in hashers[1:]]
    hashers[0].update(chunk)
    for future in pending:
        future.result()


class MetaRootHasher:
    """sha256 of files each streamed once, named by any key (file name, path); a root's chunks also
    extend a copy of each kept metadata hash, giving sha256(meta ‖ root) without a second read."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.digests: dict[str, str] = {}
        self.combined: dict[tuple[str, str], str] = {}  # (meta key, root key) -> fingerprint
        self._kept: dict[str, Any] = {}
        self._open: dict[str, tuple[Any, dict[str, Any]]] = {}

    def start_file(self, key: str, extends: Iterable[str] = ()) -> Callable[[bytes], None]:
        """A feed function for `key`, also extending the kept hashes of `extends` (metadata keys)."""
        own = hashlib.sha256()
        combined = {m: self._kept[m].copy() for m in extends}
        targets = [own, *combined.values()]
        self._open[key] = (own, combined)
        self.sizes[key] = 0

        def feed(chunk: bytes) -> None:
            update_all(targets, chunk)
            self.sizes[key] += len(chunk)

        return feed

    def finish_file(self, key: str, keep: bool = False) -> None:
        """Record the digests of `key`; `keep` its hash state, for roots fed later to extend."""
        own, combined = self._open.pop(key)
        self.digests[key] = own.hexdigest()
        if keep:
            self._kept[key] = own
        for meta, h in combined.items():
            self.combined[(meta, key)] = h.hexdigest()

    def kept(self, key: str) -> bool:
        return key in self._kept

    def digest(self, key: str) -> str:
        """The file's sha256 once all of it was fed (before finishing it)."""
        return str(self._open[key][0].hexdigest())

    def discard(self, key: str) -> None:
        """Forget a half-fed file (its upload failed), so that it can be fed again from the start."""
        self._open.pop(key, None)
        self.sizes.pop(key, None)


class VersionHasher(MetaRootHasher):
    """Hashes the files of one version by file name, each streamed once, in `upload_order`: every
    root file extends the hash of each LXD/Incus metadata file finished before it."""

    def start(self, name: str) -> Callable[[bytes], None]:
        """A feed function for file `name`; call `finish(name)` after the last chunk."""
        metas = [m for m in self._kept if IMAGE_FILES[m].role == "meta"]
        return self.start_file(name, metas if IMAGE_FILES[name].role == "root" else ())

    def finish(self, name: str) -> None:
        self.finish_file(name, keep=IMAGE_FILES[name].role == "meta")

    def items(self, version_dir: str) -> dict[str, Any]:
        """simplestreams items of the version, as written into ssb.json."""
        items: dict[str, dict[str, Any]] = {}
        for name in upload_order(self.digests):
            row = IMAGE_FILES[name]
            items[row.item_key] = {"ftype": row.ftype, "path": version_file_key(version_dir, name),
                                   "size": self.sizes[name], "sha256": self.digests[name]}
        for (meta, root), digest in self.combined.items():
            for fieldname in IMAGE_FILES[root].combined_fields:
                items[IMAGE_FILES[meta].item_key][fieldname] = digest
        return items
