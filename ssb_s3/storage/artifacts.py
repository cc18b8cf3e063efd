"""Check built artifacts before upload: refuse what LXD would refuse later, with a clear error.

Files are recognised by their content (magic bytes), not only by their names; which content,
which role (metadata, root, unified) and what makes a version complete come from the one table
of image files (imagefiles). Metadata tarballs must hold a metadata.yaml whose architecture
matches the product; a unified tarball must hold rootfs/ (or rootfs.img for a VM). Only small
metadata is read here: the big files are read once, later, while they are uploaded.

The same checks run on files about to be uploaded (`inspect_artifacts`, build-product) and on
files already in a store (`check_stored_version`, build-versions-manifest and publish
--refresh-manifests): one tarball function (`check_tarball`) reads both.

Tarballs come from outside, so reading one is bounded in size, time and memory:
* the members looked for must come within the first MAX_MEMBERS members and MAX_SCAN_BYTES
  uncompressed bytes (distrobuilder writes metadata.yaml first);
* metadata.yaml and config are read only if at most MAX_METADATA_BYTES, and metadata.yaml is
  parsed by the package's one bounded YAML loader (at most MAX_METADATA_YAML bytes and
  MAX_METADATA_NODES nodes once aliases are expanded: no alias bombs);
* tarfile's parsing of extended headers is fenced in, on every Python version: the Python 3.11.7
  here (and every release before 3.12.6 / 3.11.10) backtracks quadratically on crafted pax
  headers (CVE-2024-6232). Before tarfile parses a pax or GNU long-name header, this module reads
  it (at most MAX_EXTENDED_HEADER bytes) and refuses it unless it is well-formed pax records
  with no run of more than MAX_DIGIT_RUN digits; at most MAX_CHAINED_HEADERS extended headers
  may precede one member. On such input tarfile's regular expressions run in linear time.
  Sparse members (GNU 'S' or GNU.sparse pax records), which no image tool writes there, are
  refused: tarfile's sparse maps are unbounded.
Messages quote values from the tarball at most VALUE_CHARS characters long.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

import yaml

from ..config import CANONICAL_ARCH, ProductConfig, load_yaml, yaml_problem
from ..errors import SSBError
from ..vocabulary.imagefiles import BUILT_FILES, IMAGE_FILES, completeness_rule, content_kind_problem, is_complete
from ..vocabulary.layout import version_file_key
from .store import ObjectInfo, Store


class ArtifactError(SSBError):
    """A built file is not what its name says, or does not fit the product."""


MAX_METADATA_BYTES = 1 << 20  # a member read (metadata.yaml, config): real ones are a few KB
MAX_METADATA_YAML = 64 << 10  # metadata.yaml as a YAML document (pure-Python YAML: ~0.2 s)
MAX_METADATA_NODES = 10_000  # YAML nodes of metadata.yaml, aliases expanded
MAX_MEMBERS = 1000  # tar members scanned to find metadata.yaml (and rootfs)
MAX_SCAN_BYTES = 64 << 20  # uncompressed bytes of the tarball skipped to find them
MAX_EXTENDED_HEADER = 64 << 10  # one pax or GNU long-name header
MAX_CHAINED_HEADERS = 8  # extended headers before one member (pax global + pax + long name + long link)
MAX_DIGIT_RUN = 32  # digits in a row in a pax header: lengths, times and ids have far fewer
VALUE_CHARS = 80  # longest value quoted in an error message


def short(value: Any) -> str:
    """repr(value), cut to VALUE_CHARS characters: a message never echoes a huge value."""
    text = repr(value) if not isinstance(value, (dict, list)) else f"a {type(value).__name__}"
    return text if len(text) <= VALUE_CHARS else f"{text[:VALUE_CHARS]}... ({len(text)} characters)"


class _UnsafeTar(tarfile.TarError):
    """A header this module refuses to hand to tarfile (see the module docstring)."""


_PAX_LENGTH = re.compile(rb"[0-9]{1,20} ")
_DIGIT_RUN = re.compile(rb"[0-9]{%d}" % (MAX_DIGIT_RUN + 1))


def pax_problem(data: bytes) -> str | None:
    """Why pax header data is refused (None: well-formed), in time linear in its size.

    Records are 'LENGTH KEYWORD=VALUE\\n' back to back, optionally followed by NUL padding.
    """
    if _DIGIT_RUN.search(data):
        return f"a pax header holds more than {MAX_DIGIT_RUN} digits in a row"
    pos, end = 0, len(data.rstrip(b"\0"))
    while pos < end:
        match = _PAX_LENGTH.match(data, pos)
        if match is None:
            return "a pax header record does not start with its length"
        stop = pos + int(match.group()[:-1])
        record = data[match.end() : stop - 1]
        if stop > end or stop - pos < 5 or data[stop - 1 : stop] != b"\n" or b"=" not in record[1:]:
            return "a pax header record is malformed"
        if record.startswith(b"GNU.sparse."):
            return "sparse members are not supported"
        pos = stop
    return None


class _Replay:
    """tarfile's file object, with bytes already read put back in front of it."""

    def __init__(self, data: bytes, inner: Any) -> None:
        self._data, self._inner = data, inner

    def read(self, size: int = -1) -> bytes:
        if not self._data:
            return bytes(self._inner.read(size))
        if size < 0 or size > len(self._data):
            out, self._data = self._data, b""
            return out + bytes(self._inner.read(-1 if size < 0 else size - len(out)))
        out, self._data = self._data[:size], self._data[size:]
        return out

    def tell(self) -> int:
        return int(self._inner.tell()) - len(self._data)

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos, whence = self.tell() + pos, 0
        self._data = b""
        return int(self._inner.seek(pos, whence))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _FencedTarInfo(tarfile.TarInfo):
    """TarInfo whose extended headers are checked (bounded, linear) before tarfile parses them."""

    def _fenced(self, tar: tarfile.TarFile, parse: Callable[[tarfile.TarFile], tarfile.TarInfo],
                check: Callable[[bytes], str | None]) -> tarfile.TarInfo:
        if self.size > MAX_EXTENDED_HEADER:
            raise _UnsafeTar(f"an extended header of {self.size} bytes (over {MAX_EXTENDED_HEADER})")
        depth = getattr(tar, "_ssb_depth", 0) + 1
        if depth > MAX_CHAINED_HEADERS:
            raise _UnsafeTar(f"more than {MAX_CHAINED_HEADERS} extended headers in a row")
        inner: Any = tar.fileobj
        data = inner.read(-(-self.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE)
        why = check(data[: self.size])
        if why:
            raise _UnsafeTar(why)
        tar.fileobj = _Replay(data, inner)
        setattr(tar, "_ssb_depth", depth)  # noqa: B010 (an attribute tarfile does not declare)
        try:
            return parse(tar)
        finally:
            tar.fileobj = inner
            setattr(tar, "_ssb_depth", depth - 1)  # noqa: B010

    # tarfile's private hooks, called by TarInfo._proc_member (CPython 3.8 to 3.14)
    def _proc_pax(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        return self._fenced(tar, lambda t: _TARINFO._proc_pax(self, t), pax_problem)

    def _proc_gnulong(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        return self._fenced(tar, lambda t: _TARINFO._proc_gnulong(self, t), lambda data: None)

    def _proc_sparse(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        raise _UnsafeTar("sparse members are not supported")


_TARINFO: Any = tarfile.TarInfo


READ_MEMBERS = frozenset({"metadata.yaml", "config"})  # small files whose content is checked

Opener = Callable[[], AbstractContextManager[IO[bytes]]]


def _members(
    opener: Opener, where: str, wanted: set[str], enough: Callable[[set[str]], bool]
) -> dict[str, bytes | None]:
    """Find `wanted` tar members, stopping once `enough` of them were seen (bounded: see above).

    Small known files (metadata.yaml, config) come back with their content; anything else
    (rootfs/, rootfs.img) only as present (None), never read into memory.
    """
    found: dict[str, bytes | None] = {}
    try:
        with opener() as raw, tarfile.open(fileobj=raw, mode="r|*", tarinfo=_FencedTarInfo) as tar:
            for count, member in enumerate(tar, start=1):
                name = member.name.removeprefix("./").rstrip("/")
                top = name.split("/", 1)[0]
                for want in wanted - set(found):
                    if name == want and member.isfile() and want in READ_MEMBERS:
                        found[want] = _read_member(tar, member, where)
                    elif top == want and want not in READ_MEMBERS:
                        found[want] = None
                if enough(set(found)):
                    break
                if count >= MAX_MEMBERS or member.offset_data + member.size > MAX_SCAN_BYTES:
                    missing = " and ".join(sorted(wanted - set(found)))
                    raise ArtifactError(
                        f"{where}: {missing} not found within the first {count} members "
                        f"(at most {MAX_MEMBERS} members and {MAX_SCAN_BYTES >> 20} MiB are read; "
                        "image tools write metadata.yaml first)"
                    )
    except _UnsafeTar as exc:
        raise ArtifactError(f"{where}: refused tarball: {exc}") from None
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise ArtifactError(f"{where}: not a readable tarball ({short(str(exc))[1:-1]})") from None
    return found


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, where: str) -> bytes:
    if member.size > MAX_METADATA_BYTES:
        raise ArtifactError(f"{where}: {member.name} is {member.size} bytes, over the limit of "
                            f"{MAX_METADATA_BYTES} bytes")
    handle = tar.extractfile(member)
    return handle.read(MAX_METADATA_BYTES + 1) if handle else b""


def _check_metadata(where: str, raw: bytes | None, product: ProductConfig) -> None:
    if raw is None:
        raise ArtifactError(
            f"{where}: metadata.yaml is missing (LXD refuses the image: 'Metadata tarball is missing metadata.yaml')"
        )
    try:
        meta: Any = load_yaml(raw, max_bytes=MAX_METADATA_YAML, max_nodes=MAX_METADATA_NODES)
    except yaml.YAMLError as exc:
        line, problem = yaml_problem(exc)
        raise ArtifactError(f"{where}: metadata.yaml:{line}{':' if line else ''} invalid YAML: {problem}") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{where}: metadata.yaml: expected a mapping")
    arch = meta.get("architecture", "")
    if not arch:
        raise ArtifactError(f"{where}: metadata.yaml: architecture is missing")
    if not isinstance(arch, str) or CANONICAL_ARCH.get(arch) != CANONICAL_ARCH.get(product.arch):
        raise ArtifactError(
            f"{where}: metadata.yaml: architecture {short(arch)} does not match product {product.name} "
            f"(arch '{product.arch}', i.e. {CANONICAL_ARCH.get(product.arch, 'unknown')})"
        )
    created = meta.get("creation_date")
    if not isinstance(created, int) or isinstance(created, bool) or created <= 0:
        raise ArtifactError(f"{where}: metadata.yaml: creation_date must be a positive unix timestamp, "
                            f"got {short(created)}")
    props = meta.get("properties")
    if not isinstance(props, dict) or not props:
        raise ArtifactError(f"{where}: metadata.yaml: properties (os, release, description...) are missing")


def check_tarball(name: str, opener: Opener, where: str, product: ProductConfig, vm: bool | None = None) -> None:
    """The tarball checks of one metadata or unified tarball `name`, read through `opener`.

    `vm`: a unified tarball must hold rootfs.img (True), rootfs/ (False) or either (None: the
    version's files are already in a store and the build type is not known).
    """
    role = IMAGE_FILES[name].role
    if role == "meta":
        found = _members(opener, where, {"metadata.yaml"}, lambda seen: "metadata.yaml" in seen)
        _check_metadata(where, found.get("metadata.yaml"), product)
    elif role == "unified":
        roots = {True: {"rootfs.img"}, False: {"rootfs"}, None: {"rootfs", "rootfs.img"}}[vm]
        found = _members(opener, where, {"metadata.yaml", *roots},
                         lambda seen: "metadata.yaml" in seen and bool(seen & roots))
        _check_metadata(where, found.get("metadata.yaml"), product)
        if not roots & set(found):
            expected = " or ".join(sorted("rootfs/" if r == "rootfs" else r for r in roots))
            raise ArtifactError(f"{where}: a unified tarball must hold {expected}")
    elif role == "lxc-meta" and "config" not in _members(opener, where, {"config"}, lambda seen: "config" in seen):
        raise ArtifactError(f"{where}: an LXC metadata tarball must hold 'config'")


def inspect_artifacts(files: dict[str, Path], product: ProductConfig, vm: bool = False) -> None:
    """Refuse anything LXD would refuse; `files` maps distrobuilder file names to paths."""
    unknown = sorted(set(files) - set(BUILT_FILES))
    if unknown:
        raise ArtifactError(f"unknown artifact file(s) {', '.join(unknown)}; expected {', '.join(BUILT_FILES)}")
    for name, path in files.items():
        if path.stat().st_size == 0:
            raise ArtifactError(f"{path}: empty file")
        with path.open("rb") as fh:
            why = content_kind_problem(name, fh.read(8))
        if why:
            raise ArtifactError(f"{path}: {why}")
    if not is_complete(files):
        raise ArtifactError(
            f"incomplete image for {product.name}: got {', '.join(sorted(files))}; need {completeness_rule()}"
        )
    for name, path in sorted(files.items()):
        check_tarball(name, lambda p=path: p.open("rb"), str(path), product, vm)  # type: ignore[misc]


def check_stored_version(store: Store, version_dir: str, files: Mapping[str, ObjectInfo],
                         heads: Mapping[str, bytes], product: ProductConfig) -> None:
    """The checks of `inspect_artifacts`, on one version already in `store`; raises ArtifactError
    naming the stored file. `heads`: each file's first bytes, or all of them, as read while
    hashing it (manifest.hash_version); a tarball not held whole is read from the store again."""
    for name in sorted(files):
        key = version_file_key(version_dir, name)
        where, head = store.describe(key), heads.get(name, b"")
        why = content_kind_problem(name, head)
        if why:
            raise ArtifactError(f"{where}: {why}")
        whole = len(head) == files[name].size
        check_tarball(name, lambda k=key, h=head, w=whole: _reader(store, k, h, w), where, product)  # type: ignore[misc]


def _reader(store: Store, key: str, head: bytes, whole: bool) -> AbstractContextManager[IO[bytes]]:
    return io.BytesIO(head) if whole else store.open_reader(key)


def tarball_metadata(path: Path, *, unified: bool) -> tuple[Any, set[str]]:
    """What `add` needs of a tarball handed in by a user, before any product is known: its
    metadata.yaml parsed (None when it has none), and which of `config` (classic LXC metadata) and,
    when `unified`, rootfs/ and rootfs.img it holds. Bounded like every tarball read here."""
    where = str(path)
    opener: Opener = lambda: path.open("rb")  # noqa: E731
    found = _members(opener, where, {"metadata.yaml", "config"}, bool)
    seen = set(found)
    meta: Any = None
    if "metadata.yaml" in found:
        try:
            meta = load_yaml(found["metadata.yaml"] or b"", max_bytes=MAX_METADATA_YAML, max_nodes=MAX_METADATA_NODES)
        except yaml.YAMLError as exc:
            line, problem = yaml_problem(exc)
            raise ArtifactError(f"{where}: metadata.yaml:{line}{':' if line else ''} invalid YAML: {problem}") from None
        if not isinstance(meta, dict):
            raise ArtifactError(f"{where}: metadata.yaml: expected a mapping")
        if unified:
            seen |= set(_members(opener, where, {"rootfs", "rootfs.img"}, bool))
    return meta, seen
