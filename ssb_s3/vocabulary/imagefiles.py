"""The image-file vocabulary: one table of the files an image version is made of.

Each row (ImageFile) says, for one file name distrobuilder writes: the item key and ftype it gets
in ssb.json, the ftype the LXD and the Incus client look for (the catalog mirrors a metadata or
unified item under the other client's ftype), the meta item fields that hold sha256(meta ‖ root)
for a root file, how its content is recognised (magic bytes), and its role (LXD/Incus metadata,
LXC metadata, root, unified tarball, or a delta of a root: a `.vcdiff` that rebuilds the root from
the same root of an older version; BUILT_FILES are the others). A root row also says whether it
makes a virtual-machine image (`vm`), which clients pair it with a metadata item (`read_by`), and
where the clients rank it when they give a version's alias to one of its images (`alias_rank`); a
delta row, which clients use it (`read_by`) and, where a client reads its base's fingerprint from
another field than its root's, which (`base_field_for`).
Beside the rows: each content kind's magic bytes (MAGIC), the header field that records a whole
file's size (SIZE_FIELDS) and the bytes that end a whole file (FOOTERS); every reader of a file's
head reads HEAD_BYTES, every reader of its tail TAIL_BYTES.

Scan (manifest), catalog and contract, verify, list, add, build-product (ingest, artifacts), the
bucket-event filter (hooks.events), the JSON schemas' combined fields (schemas) and the client
table (vocabulary/clients: what each client lists) read only this table and what is derived from
it here: the completeness rule, the upload order and the one meta ‖ root hasher (MetaRootHasher;
VersionHasher on top of it names files by the table). Adding a kind of image file is one row here
(and its MAGIC kind if new); nothing else in the package names one.

Invariants (`table_problems`, checked on every `register`): file names and item keys are unique;
a row's ftype is its LXD or its Incus ftype; for each client an ftype names one kind of file
(two rows may share it only as the same kind under two file names, e.g. lxd.tar.xz and
incus.tar.xz); each client has exactly one metadata ftype and one unified ftype; a root has the
same ftype for both clients and at least one combined field, no combined field belongs to two
roots, and only roots have combined fields, `vm`, `alias_rank` or `lxc_root` (roots and deltas
`read_by`, deltas `base_field_for`); a content
kind names at most one root (add recognises a root by its content); every content kind has magic
bytes in MAGIC, and magic bytes and size fields lie within HEAD_BYTES; a delta row names its root
(delta_of) and its ftype is the root's + '.vcdiff', as the clients derive it.

VOCABULARY is the table and everything derived from it, one frozen value (Vocabulary.of). The
module-level names below (IMAGE_FILES, MAGIC, KNOWN_FTYPES, DELTA_FTYPES, ...) are read-only views
of the current VOCABULARY's columns: `register` and `unregister` (tests adding a made-up kind)
replace VOCABULARY by a new value, and every module that imported a view sees the change. Nothing
else replaces it, and nothing can change a Vocabulary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar

from . import layout
from .layout import version_file_key

Role = Literal["meta", "lxc-meta", "root", "unified", "delta"]
ROLES: tuple[Role, ...] = ("meta", "lxc-meta", "root", "unified", "delta")
METADATA_ROLES = frozenset({"meta", "lxc-meta"})  # small tarballs whose metadata.yaml or config is checked
CLIENTS = ("LXD", "Incus")
DELTA_SUFFIX = ".vcdiff"  # a delta's ftype is its root's ftype + this (the clients' rule)

# The first bytes of a file that sniff and truncation_problem read: every reader of a file's head
# reads this many (every magic and size field lies within them: table_problems), and of its tail
# TAIL_BYTES (every footer lies within them).
HEAD_BYTES = 64
TAIL_BYTES = 2

# Content kinds by their first bytes; a row's `content` names the kinds its file may hold.
_MAGIC: dict[str, tuple[bytes, ...]] = {
    "squashfs": (b"hsqs",),
    "xz": (b"\xfd7zXZ\x00",),
    "gzip": (b"\x1f\x8b",),
    "zstd": (b"\x28\xb5\x2f\xfd",),
    "bzip2": (b"BZh",),
    "qcow2": (b"QFI\xfb",),
    "vcdiff": (b"\xd6\xc3\xc4",),  # RFC 3284 header 'VCD' with the high bits set
}
TARBALL_KINDS = ("xz", "gzip", "bzip2", "zstd")  # the compressions a tarball may have


@dataclass(frozen=True)
class SizeField:
    """Where a content kind's header records the whole file's size: `length` little-endian bytes at
    `offset`, in its `header` (named in messages)."""

    offset: int
    length: int
    header: str


# A file shorter than its header says is truncated (truncation_problem).
SIZE_FIELDS: Mapping[str, SizeField] = MappingProxyType({
    "squashfs": SizeField(40, 8, "squashfs superblock"),  # bytes_used
})
# A file of this kind that does not end with these bytes is truncated (truncation_problem).
FOOTERS: Mapping[str, bytes] = MappingProxyType({
    "xz": b"YZ",  # the xz stream footer's magic
})


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
    # root: the client rows (clients.CLIENTS) that pair it with a metadata item; delta: those that use it
    read_by: tuple[str, ...] = ()
    # delta: (client, metadata field) where a client reads the base fingerprint from another field than
    # its root's first combined field (Incus 6.0 reads combined_squashfs_sha256 for a VM delta)
    base_field_for: tuple[tuple[str, str], ...] = ()
    vm: bool = False  # root: its image is a virtual machine (else a container)
    # root: within one version the clients give an alias to the image of the lowest rank first
    # (measured with LXD 5.0.2 and Incus 6.0.4: tests/test_list.py); None: after every ranked root.
    alias_rank: int | None = None

    def ftype_for(self, client: str) -> str:
        """The ftype `client` (LXD or Incus) looks for."""
        return self.lxd_ftype if client == "LXD" else self.incus_ftype

    @property
    def is_metadata(self) -> bool:
        return self.role in METADATA_ROLES


_TOLXD = ("lxd-5.0", "lxd", "incus")  # the image clients of vocabulary.clients

_TABLE: tuple[ImageFile, ...] = (
    ImageFile("lxd.tar.xz", "lxd.tar.xz", "lxd.tar.xz", "lxd.tar.xz", "incus.tar.xz", "meta", TARBALL_KINDS),
    ImageFile("incus.tar.xz", "incus.tar.xz", "incus.tar.xz", "lxd.tar.xz", "incus.tar.xz", "meta", TARBALL_KINDS),
    # LXC metadata: lxc-download unpacks it with `tar J`, so xz only
    ImageFile("meta.tar.xz", "meta.tar.xz", "meta.tar.xz", "meta.tar.xz", "meta.tar.xz", "lxc-meta", ("xz",)),
    # Roots: every image client's ToLXD (LXD 5.0, current LXD, Incus 6.0) pairs these three.
    ImageFile("rootfs.squashfs", "root.squashfs", "squashfs", "squashfs", "squashfs", "root", ("squashfs",),
              ("combined_squashfs_sha256",), read_by=_TOLXD, alias_rank=0),
    ImageFile("rootfs.tar.xz", "root.tar.xz", "root.tar.xz", "root.tar.xz", "root.tar.xz", "root", ("xz",),
              ("combined_rootxz_sha256", "combined_sha256"), lxc_root=True, read_by=_TOLXD, alias_rank=1),
    ImageFile("disk.qcow2", "disk.qcow2", "disk-kvm.img", "disk-kvm.img", "disk-kvm.img", "root", ("qcow2",),
              ("combined_disk-kvm-img_sha256",), read_by=_TOLXD, vm=True),
    ImageFile("lxd_combined.tar.gz", "lxd_combined.tar.gz", "lxd_combined.tar.gz", "lxd_combined.tar.gz",
              "incus_combined.tar.gz", "unified", ("gzip", "xz", "bzip2", "zstd")),
    ImageFile("incus_combined.tar.gz", "incus_combined.tar.gz", "incus_combined.tar.gz", "lxd_combined.tar.gz",
              "incus_combined.tar.gz", "unified", ("gzip", "xz", "bzip2", "zstd")),
    # Deltas: stored as <version folder>/<base version>.<filename>, item key <item_key>-<base version>.
    # LXD 5.0 deltas squashfs only; current LXD and Incus 6.0 both (shared/simplestreams/products.go).
    ImageFile("rootfs.squashfs.vcdiff", "delta", "squashfs.vcdiff", "squashfs.vcdiff", "squashfs.vcdiff",
              "delta", ("vcdiff",), delta_of="rootfs.squashfs", read_by=_TOLXD),
    ImageFile("disk.qcow2.vcdiff", "delta-kvm", "disk-kvm.img.vcdiff", "disk-kvm.img.vcdiff",
              "disk-kvm.img.vcdiff", "delta", ("vcdiff",), delta_of="disk.qcow2", read_by=("lxd", "incus"),
              base_field_for=(("incus", "combined_squashfs_sha256"),)),
)  # fmt: skip


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _frozen_map(pairs: Iterable[tuple[Any, Any]]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(pairs))


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """The table (`rows`, by file name, in table order), its content kinds (`magic`), and every
    lookup derived from them. Built by `of`; never changed."""

    rows: Mapping[str, ImageFile]
    magic: Mapping[str, tuple[bytes, ...]]
    known_ftypes: frozenset[str]  # every ftype LXD or Incus knows
    meta_ftypes: frozenset[str]  # ftypes of LXD/Incus metadata tarballs (those carrying combined fields)
    unified_ftypes: frozenset[str]  # ftypes of unified tarballs (either client's)
    lxc_meta_ftypes: frozenset[str]  # ftypes of classic LXC metadata (role lxc-meta)
    lxc_root_ftypes: frozenset[str]  # ftypes of the roots that pair with LXC metadata (lxc_root)
    vm_ftypes: frozenset[str]  # ftypes of the roots whose image is a virtual machine
    root_combined_field: Mapping[str, str]  # root ftype -> the combined field clients check
    combined_fields: tuple[str, ...]  # every combined field, in table order
    client_meta: Mapping[str, tuple[str, str]]  # client -> (its metadata ftype, its unified ftype)
    mirrors: tuple[tuple[str, str], ...]  # (ftype present, ftype the catalog adds for the other client)
    built_files: Mapping[str, ImageFile]  # the rows a build writes (all but deltas), by file name
    delta_for_root: Mapping[str, ImageFile]  # root file name -> its delta row
    delta_ftypes: Mapping[str, ImageFile]  # delta ftype -> its row
    root_for_content: Mapping[str, ImageFile]  # content kind -> the root row that holds it
    alias_preference: tuple[str, ...]  # root ftypes by alias_rank: the clients' alias goes to the first

    @classmethod
    def of(cls, table: Iterable[ImageFile], magic: Mapping[str, tuple[bytes, ...]]) -> Vocabulary:
        everything = list(table)
        deltas = [row for row in everything if row.role == "delta"]
        rows = [row for row in everything if row.role != "delta"]
        roots = [row for row in rows if row.role == "root"]
        client_meta = {}
        for client in CLIENTS:
            meta = _unique(row.ftype_for(client) for row in rows if row.role == "meta")
            unified = _unique(row.ftype_for(client) for row in rows if row.role == "unified")
            client_meta[client] = (meta[0], unified[0])
        return cls(
            rows=_frozen_map((row.filename, row) for row in everything),
            magic=MappingProxyType(dict(magic)),
            known_ftypes=frozenset(f for row in everything for f in (row.lxd_ftype, row.incus_ftype)),
            meta_ftypes=frozenset(f for row in rows if row.role == "meta" for f in (row.lxd_ftype, row.incus_ftype)),
            unified_ftypes=frozenset(f for row in rows if row.role == "unified"
                                     for f in (row.lxd_ftype, row.incus_ftype)),
            lxc_meta_ftypes=frozenset(row.ftype for row in rows if row.role == "lxc-meta"),
            lxc_root_ftypes=frozenset(row.ftype for row in roots if row.lxc_root),
            vm_ftypes=frozenset(row.ftype for row in roots if row.vm),
            root_combined_field=_frozen_map((row.ftype, row.combined_fields[0]) for row in roots),
            combined_fields=tuple(_unique(f for row in rows for f in row.combined_fields)),
            client_meta=MappingProxyType(client_meta),
            mirrors=tuple(_unique(
                pair for row in rows if row.lxd_ftype != row.incus_ftype
                for pair in ((row.lxd_ftype, row.incus_ftype), (row.incus_ftype, row.lxd_ftype)))),
            built_files=_frozen_map((row.filename, row) for row in rows),
            delta_for_root=_frozen_map((row.delta_of, row) for row in deltas),
            delta_ftypes=_frozen_map((row.ftype, row) for row in deltas),
            root_for_content=_frozen_map((kind, row) for row in roots for kind in row.content),
            alias_preference=tuple(row.ftype for row in sorted((r for r in roots if r.alias_rank is not None),
                                                               key=lambda r: r.alias_rank or 0)),
        )


VOCABULARY = Vocabulary.of(_TABLE, _MAGIC)

# --- read-only views of VOCABULARY's columns, under the names the package imports ---------------

_K = TypeVar("_K")
_V = TypeVar("_V")
_T = TypeVar("_T")


class _MapColumn(Mapping[_K, _V]):
    """A Mapping column of the current VOCABULARY."""

    __slots__ = ("_column",)

    def __init__(self, column: str) -> None:
        self._column = column

    def _now(self) -> Mapping[_K, _V]:
        now: Mapping[_K, _V] = getattr(VOCABULARY, self._column)
        return now

    def __getitem__(self, key: _K) -> _V:
        return self._now()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._now()

    def __iter__(self) -> Iterator[_K]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())

    def __repr__(self) -> str:
        return f"<imagefiles {self._column}: {dict(self._now())!r}>"


class _SetColumn(Set[_T], Generic[_T]):
    """A frozenset column of the current VOCABULARY."""

    __slots__ = ("_column",)

    def __init__(self, column: str) -> None:
        self._column = column

    def _now(self) -> frozenset[_T]:
        now: frozenset[_T] = getattr(VOCABULARY, self._column)
        return now

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> frozenset[Any]:
        return frozenset(it)

    def __contains__(self, value: object) -> bool:
        return value in self._now()

    def __iter__(self) -> Iterator[_T]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())

    def __repr__(self) -> str:
        return f"<imagefiles {self._column}: {set(self._now())!r}>"


class _SeqColumn(Sequence[_T]):
    """A tuple column of the current VOCABULARY."""

    __slots__ = ("_column",)

    def __init__(self, column: str) -> None:
        self._column = column

    def _now(self) -> tuple[_T, ...]:
        now: tuple[_T, ...] = getattr(VOCABULARY, self._column)
        return now

    def __getitem__(self, index: Any) -> Any:
        return self._now()[index]

    def __contains__(self, value: object) -> bool:
        return value in self._now()

    def __iter__(self) -> Iterator[_T]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())

    def __repr__(self) -> str:
        return f"<imagefiles {self._column}: {list(self._now())!r}>"


IMAGE_FILES: Mapping[str, ImageFile] = _MapColumn("rows")  # every row, by file name
MAGIC: Mapping[str, tuple[bytes, ...]] = _MapColumn("magic")
KNOWN_FTYPES: Set[str] = _SetColumn("known_ftypes")
META_FTYPES: Set[str] = _SetColumn("meta_ftypes")
UNIFIED_FTYPES: Set[str] = _SetColumn("unified_ftypes")
LXC_META_FTYPES: Set[str] = _SetColumn("lxc_meta_ftypes")
LXC_ROOT_FTYPES: Set[str] = _SetColumn("lxc_root_ftypes")
VM_FTYPES: Set[str] = _SetColumn("vm_ftypes")
ROOT_COMBINED_FIELD: Mapping[str, str] = _MapColumn("root_combined_field")
COMBINED_FIELDS: Sequence[str] = _SeqColumn("combined_fields")
CLIENT_META: Mapping[str, tuple[str, str]] = _MapColumn("client_meta")
MIRRORS: Sequence[tuple[str, str]] = _SeqColumn("mirrors")
BUILT_FILES: Mapping[str, ImageFile] = _MapColumn("built_files")
DELTA_FOR_ROOT: Mapping[str, ImageFile] = _MapColumn("delta_for_root")
DELTA_FTYPES: Mapping[str, ImageFile] = _MapColumn("delta_ftypes")
ROOT_FOR_CONTENT: Mapping[str, ImageFile] = _MapColumn("root_for_content")
ALIAS_PREFERENCE: Sequence[str] = _SeqColumn("alias_preference")


def table_problems(rows: Sequence[ImageFile], magic: Mapping[str, Sequence[bytes]] = MAGIC) -> list[str]:
    """What breaks the table's invariants (module docstring); [] for a sound table."""
    problems: list[str] = []

    def unique(what: str, values: list[str]) -> None:
        problems.extend(f"{what} '{v}' is used twice" for v in _unique(v for v in values if values.count(v) > 1))

    unique("file name", [r.filename for r in rows])
    unique("item key", [r.item_key for r in rows])
    unique("ssb.json ftype", [r.ftype for r in rows])
    unique("combined field", [f for r in rows for f in r.combined_fields])
    unique("root content kind", [k for r in rows if r.role == "root" for k in r.content])
    by_name = {r.filename: r for r in rows}
    for client in CLIENTS:
        kinds: dict[str, tuple[Any, ...]] = {}
        for r in rows:
            kind = (r.lxd_ftype, r.incus_ftype, r.role, r.combined_fields, r.lxc_root, r.vm)
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
        if r.role != "root" and (r.combined_fields or r.lxc_root or r.vm or r.alias_rank is not None):
            problems.append(f"{r.filename}: only a root has combined fields, a VM flag, an alias rank, "
                            "or pairs with LXC metadata")
        if r.role not in ("root", "delta") and r.read_by:
            problems.append(f"{r.filename}: only a root or a delta has clients that read it")
        if r.role != "delta" and r.base_field_for:
            problems.append(f"{r.filename}: only a delta has base_field_for")
        if not r.content or any(k not in magic for k in r.content):
            problems.append(f"{r.filename}: content {r.content} must name kinds of MAGIC")
        if (r.role == "delta") != r.ftype.endswith(DELTA_SUFFIX):
            problems.append(f"{r.filename}: a delta, and only a delta, has an ftype ending in {DELTA_SUFFIX}")
        if r.role == "delta" and not r.filename.endswith(layout.DELTA_FILE_SUFFIX):
            problems.append(f"{r.filename}: a delta's file name ends in {layout.DELTA_FILE_SUFFIX}")
        if r.role == "delta":
            root = by_name.get(r.delta_of)
            if root is None or root.role != "root" or r.lxd_ftype != r.incus_ftype \
                    or r.ftype != root.ftype + DELTA_SUFFIX:
                problems.append(f"{r.filename}: a delta names a root (delta_of) and has its ftype + {DELTA_SUFFIX}")
        elif r.delta_of:
            problems.append(f"{r.filename}: only a delta has delta_of")
    unique("delta_of", [r.delta_of for r in rows if r.role == "delta"])
    problems.extend(f"content kind '{kind}': its magic bytes must lie within HEAD_BYTES ({HEAD_BYTES})"
                    for kind, magics in magic.items() if not magics or any(len(m) > HEAD_BYTES for m in magics))
    problems.extend(f"content kind '{kind}': its size field must lie within HEAD_BYTES ({HEAD_BYTES})"
                    for kind, where in SIZE_FIELDS.items() if where.offset + where.length > HEAD_BYTES)
    problems.extend(f"content kind '{kind}': its footer must lie within TAIL_BYTES ({TAIL_BYTES})"
                    for kind, footer in FOOTERS.items() if len(footer) > TAIL_BYTES)
    return problems


def register(row: ImageFile, magic: Mapping[str, tuple[bytes, ...]] | None = None) -> None:
    """Add a kind of image file (and content kinds it needs); refused (ValueError) if the table would
    break its invariants. For tests and for features that add a file kind."""
    global VOCABULARY
    new_magic = {**VOCABULARY.magic, **(magic or {})}
    problems = table_problems([*VOCABULARY.rows.values(), row], new_magic)
    if problems:
        raise ValueError(f"cannot register {row.filename}: {'; '.join(problems)}")
    VOCABULARY = Vocabulary.of([*VOCABULARY.rows.values(), row], new_magic)


def unregister(filename: str, magic: Iterable[str] = ()) -> None:
    """Remove a kind added by `register` (and the content kinds named)."""
    global VOCABULARY
    gone = set(magic)
    VOCABULARY = Vocabulary.of([r for r in VOCABULARY.rows.values() if r.filename != filename],
                               {k: v for k, v in VOCABULARY.magic.items() if k not in gone})


@contextmanager
def registered(row: ImageFile, magic: Mapping[str, tuple[bytes, ...]] | None = None) -> Iterator[ImageFile]:
    """`register` for the duration of a with block."""
    register(row, magic)
    try:
        yield row
    finally:
        unregister(row.filename, magic or {})


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
    """Why no client could use this file, from its first HEAD_BYTES and last TAIL_BYTES (None: looks
    whole): its header's size field (SIZE_FIELDS) says more bytes, or its footer (FOOTERS) is missing."""
    if size == 0:
        return "is empty (0 bytes)"
    kind = sniff(head)
    where = SIZE_FIELDS.get(kind)
    if where is not None and kind in IMAGE_FILES[name].content and len(head) >= where.offset + where.length:
        used = int.from_bytes(head[where.offset:where.offset + where.length], "little")
        if used > size:
            return f"is truncated: its {where.header} says {used} bytes, the object has {size}"
    footer = FOOTERS.get(kind)
    if footer is not None and not tail.endswith(footer):
        return f"is truncated: the {kind} stream has no footer"
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
