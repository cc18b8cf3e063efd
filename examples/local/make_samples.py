"""Regenerate the tiny sample artifacts of examples/local/images (byte-for-byte reproducible).

They are real LXD image files (metadata tarball + root tarball, and one unified tarball), small
enough to keep in the repository; the rootfs holds a single file, so they list and export but do
not boot. `python examples/local/make_samples.py` then
`ssb-s3 -c examples/local/tree.yml -t examples/local/images build-versions-manifest -p NAME`
rebuilds them and their ssb.json.
"""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent / "images"
EPOCH = 1767225600  # 2026-01-01T00:00:00Z


def _tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in sorted(entries.items()):
            info = tarfile.TarInfo(name)
            info.mtime = EPOCH
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _metadata(arch: str, serial: str) -> bytes:
    return (
        f"architecture: {arch}\ncreation_date: {EPOCH}\nproperties:\n  os: Sample\n"
        f"  release: '1.0'\n  variant: default\n  description: Sample 1.0 {arch} ({serial})\n"
        "templates: {}\n"
    ).encode()


def write_split(folder: Path, arch: str, serial: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lxd.tar.xz").write_bytes(lzma.compress(_tar({"metadata.yaml": _metadata(arch, serial)})))
    rootfs = _tar({"etc/": b"", "etc/hostname": b"sample\n", "etc/os-release": b"NAME=Sample\n"})
    (folder / "rootfs.tar.xz").write_bytes(lzma.compress(rootfs))


def write_unified(folder: Path, arch: str, serial: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = _tar({"metadata.yaml": _metadata(arch, serial), "rootfs/": b"", "rootfs/etc/": b"",
                 "rootfs/etc/hostname": b"sample\n"})
    (folder / "lxd_combined.tar.gz").write_bytes(gzip.compress(data, mtime=0))


if __name__ == "__main__":
    for serial in ("20260101_00:00", "20260102_00:00"):
        write_split(HERE / "sample" / "amd64" / serial, "x86_64", serial)
    write_unified(HERE / "sample" / "arm64" / "20260101_0000", "aarch64", "20260101_0000")
    print(f"samples written under {HERE}")
