"""Check built artifacts before upload: refuse what LXD would refuse later, with a clear error.

Root files are recognised by their content (magic bytes), not only by their names; metadata
tarballs must hold a metadata.yaml whose architecture matches the product; a unified tarball
must hold rootfs/ (or rootfs.img for a VM). Only small metadata is read here: the big files
are read once, later, while they are uploaded.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import yaml

from .config import CANONICAL_ARCH, ProductConfig
from .errors import SSBError
from .manifest import ARTIFACTS


class ArtifactError(SSBError):
    """A built file is not what its name says, or does not fit the product."""


MAGIC = {
    "squashfs": (b"hsqs",),
    "xz": (b"\xfd7zXZ\x00",),
    "gzip": (b"\x1f\x8b",),
    "zstd": (b"\x28\xb5\x2f\xfd",),
    "bzip2": (b"BZh",),
    "qcow2": (b"QFI\xfb",),
}
EXPECTED_CONTENT = {
    "rootfs.squashfs": ("squashfs",),
    "rootfs.tar.xz": ("xz",),
    "disk.qcow2": ("qcow2",),
    "lxd.tar.xz": ("xz", "gzip", "bzip2", "zstd"),
    "incus.tar.xz": ("xz", "gzip", "bzip2", "zstd"),
    "meta.tar.xz": ("xz", "gzip", "bzip2", "zstd"),
    "lxd_combined.tar.gz": ("gzip", "xz", "bzip2", "zstd"),
    "incus_combined.tar.gz": ("gzip", "xz", "bzip2", "zstd"),
}


def sniff(path: Path) -> str:
    """The content type by magic bytes: squashfs, xz, gzip, zstd, bzip2, qcow2 or 'unknown'."""
    with path.open("rb") as fh:
        head = fh.read(8)
    for kind, magics in MAGIC.items():
        if any(head.startswith(m) for m in magics):
            return kind
    return "unknown"


READ_MEMBERS = frozenset({"metadata.yaml", "config"})  # small files whose content is checked


def _members(path: Path, wanted: set[str]) -> dict[str, bytes | None]:
    """Find `wanted` tar members, stopping once all are seen.

    Small known files (metadata.yaml, config) come back with their content; anything else
    (rootfs/, rootfs.img) only as present (None), never read into memory.
    """
    found: dict[str, bytes | None] = {}
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                name = member.name.removeprefix("./").rstrip("/")
                top = name.split("/", 1)[0]
                for want in wanted - set(found):
                    if name == want and member.isfile() and want in READ_MEMBERS:
                        handle = tar.extractfile(member)
                        found[want] = handle.read() if handle else b""
                    elif top == want and want not in READ_MEMBERS:
                        found[want] = None
                if found.keys() >= wanted:
                    break
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArtifactError(f"{path}: not a readable tarball ({exc})") from None
    return found


def _check_metadata(path: Path, raw: bytes | None, product: ProductConfig) -> None:
    if raw is None:
        raise ArtifactError(
            f"{path}: metadata.yaml is missing (LXD refuses the image: 'Metadata tarball is missing metadata.yaml')"
        )
    try:
        meta: Any = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ArtifactError(f"{path}: metadata.yaml is not valid YAML ({exc})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: metadata.yaml: expected a mapping")
    arch = str(meta.get("architecture", ""))
    if not arch:
        raise ArtifactError(f"{path}: metadata.yaml: architecture is missing")
    if CANONICAL_ARCH.get(arch) != CANONICAL_ARCH.get(product.arch):
        raise ArtifactError(
            f"{path}: metadata.yaml: architecture '{arch}' does not match product {product.name} "
            f"(arch '{product.arch}', i.e. {CANONICAL_ARCH.get(product.arch, 'unknown')})"
        )
    created = meta.get("creation_date")
    if not isinstance(created, int) or isinstance(created, bool) or created <= 0:
        raise ArtifactError(f"{path}: metadata.yaml: creation_date must be a positive unix timestamp, got {created!r}")
    props = meta.get("properties")
    if not isinstance(props, dict) or not props:
        raise ArtifactError(f"{path}: metadata.yaml: properties (os, release, description...) are missing")


def inspect_artifacts(files: dict[str, Path], product: ProductConfig, vm: bool = False) -> None:
    """Refuse anything LXD would refuse; `files` maps distrobuilder file names to paths."""
    unknown = sorted(set(files) - set(ARTIFACTS))
    if unknown:
        raise ArtifactError(f"unknown artifact file(s) {', '.join(unknown)}; expected {', '.join(ARTIFACTS)}")
    for name, path in files.items():
        if path.stat().st_size == 0:
            raise ArtifactError(f"{path}: empty file")
        kind = sniff(path)
        if kind not in EXPECTED_CONTENT[name]:
            raise ArtifactError(f"{path}: content is {kind}, expected {' or '.join(EXPECTED_CONTENT[name])} for {name}")
    roles = {ARTIFACTS[name].role for name in files}
    if not ({"meta", "root"} <= roles or "unified" in roles or ("lxc-meta" in roles and "rootfs.tar.xz" in files)):
        raise ArtifactError(
            f"incomplete image for {product.name}: got {', '.join(sorted(files))}; need a metadata tarball and a "
            "root file, a unified tarball, or meta.tar.xz + rootfs.tar.xz"
        )
    for name in ("lxd.tar.xz", "incus.tar.xz"):
        if name in files:
            _check_metadata(files[name], _members(files[name], {"metadata.yaml"}).get("metadata.yaml"),
                                         product)
    for name in ("lxd_combined.tar.gz", "incus_combined.tar.gz"):
        if name in files:
            root = "rootfs.img" if vm else "rootfs"
            found = _members(files[name], {"metadata.yaml", root})
            _check_metadata(files[name], found.get("metadata.yaml"), product)
            if root not in found:
                raise ArtifactError(f"{files[name]}: a unified tarball must hold {root}{'' if vm else '/'}")
    if "meta.tar.xz" in files and "config" not in _members(files["meta.tar.xz"], {"config"}):
        raise ArtifactError(f"{files['meta.tar.xz']}: an LXC metadata tarball must hold 'config'")
