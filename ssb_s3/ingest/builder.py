"""build-product: run distrobuilder (or take its output) and ingest the result as a new version.

The command lines are the ones distrobuilder documents:
  distrobuilder build-lxd <image.yaml> <dir> --type=split --compression=xz [--vm]
  distrobuilder build-lxd <image.yaml> <dir> --type=unified --compression=gzip
  distrobuilder build-incus ... (same flags; distrobuilder 3 has only build-incus)
  distrobuilder build-lxc <image.yaml> <dir> --compression=xz
Outputs: lxd.tar.xz (or incus.tar.xz) + rootfs.squashfs or disk.qcow2; a unified
<image.name>.tar.gz (published as lxd_combined.tar.gz / incus_combined.tar.gz); meta.tar.xz +
rootfs.tar.xz for LXC. The LXC and LXD outputs of one build go into one version.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import SSBError
from ..storage.artifacts import ArtifactError
from ..vocabulary.imagefiles import BUILT_FILES, file_for
from .upload import collect_artifacts

log = logging.getLogger(__name__)


class BuildError(SSBError):
    """distrobuilder is missing or failed."""


@dataclass(frozen=True)
class BuildRequest:
    """What to build: the seed's switches plus the new ones."""

    image_file: Path
    builder: str = "distrobuilder"
    lxd: bool = True  # --skip-lxd turns the LXD/Incus image off
    lxc: bool = True  # --skip-lxc turns the LXC image off
    incus: bool = False  # build-incus instead of build-lxd
    vm: bool = False
    unified: bool = False
    options: tuple[str, ...] = ()  # -o key=value, passed through


def builder_commands(request: BuildRequest, staging: Path) -> list[tuple[str, list[str], Path]]:
    """(kind, argv, output folder) for every distrobuilder run the request needs."""
    if request.vm and request.unified:
        vm_roots = " or ".join(r.filename for r in BUILT_FILES.values() if r.vm)
        raise BuildError(f"--vm and --unified cannot be combined: a VM image is split (metadata + {vm_roots})")
    if not request.lxd and (request.vm or request.unified or request.incus):
        raise BuildError("--vm, --unified and --incus need the LXD/Incus image: drop --skip-lxd")
    if not request.lxd and not request.lxc:
        raise BuildError("--skip-lxc and --skip-lxd together leave nothing to build")
    image = str(request.image_file)
    extra = [arg for opt in request.options for arg in ("-o", opt)]
    runs: list[tuple[str, list[str], Path]] = []
    if request.lxd:
        subcommand = "build-incus" if request.incus else "build-lxd"
        out = staging / ("incus" if request.incus else "lxd")
        argv = [request.builder, subcommand, image, str(out)]
        argv += ["--type=unified", "--compression=gzip"] if request.unified else ["--type=split", "--compression=xz"]
        if request.vm:
            argv.append("--vm")
        runs.append((subcommand, argv + extra, out))
    if request.lxc and not request.vm:
        out = staging / "lxc"
        runs.append(("build-lxc", [request.builder, "build-lxc", image, str(out), "--compression=xz", *extra], out))
    return runs


def _run(kind: str, argv: list[str], quiet: bool) -> None:
    log.info("running %s", " ".join(argv))
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL if quiet else sys.stderr,
                              stderr=subprocess.PIPE, text=True, check=False)
    except FileNotFoundError:
        raise BuildError(f"{argv[0]}: not found (install distrobuilder, or set --builder)") from None
    except PermissionError:
        raise BuildError(f"{argv[0]}: not executable") from None
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise BuildError(f"distrobuilder {kind} failed with exit code {done.returncode}: {tail or 'no output'}")


def gather(outputs: list[tuple[str, Path]], unified: bool, incus: bool, rename: bool = True) -> dict[str, Path]:
    """Map distrobuilder's output files to artifact names.

    The unified tarball, `<image.name>.tar.gz`, becomes lxd_combined.tar.gz (renamed in a
    staging folder; only mapped when the folder is the user's, from --from-dir).
    """
    files: dict[str, Path] = {}
    for kind, folder in outputs:
        if kind != "build-lxc" and unified:
            tarballs = sorted(p for p in folder.iterdir() if p.name.endswith(".tar.gz"))
            if len(tarballs) != 1:
                raise ArtifactError(f"{folder}: expected one unified <name>.tar.gz, found {[p.name for p in tarballs]}")
            name = file_for("unified", "Incus" if incus else "LXD")
            files[name] = tarballs[0].rename(folder / name) if rename else tarballs[0]
            continue
        for name, path in collect_artifacts(folder).items():
            if name in files:
                raise ArtifactError(f"{path} and {files[name]} would both be {name} in one version")
            files[name] = path
    return files


def run_builder(request: BuildRequest, staging: Path, quiet: bool = False) -> dict[str, Path]:
    """Run every needed distrobuilder command into `staging`; return the artifacts."""
    if not request.image_file.is_file():
        raise BuildError(f"{request.image_file}: image definition not found (set -i/--image-filename and -s)")
    outputs = []
    for kind, argv, out in builder_commands(request, staging):
        out.mkdir(parents=True, exist_ok=True)
        _run(kind, argv, quiet)
        outputs.append((kind, out))
    return gather(outputs, request.unified, request.incus)


def resolve_image_file(image: str, source_dir: str | None, product_directory: str) -> Path:
    """-i relative to -s: <SRC>/<directory>/<image> if it exists, else <SRC>/<image>."""
    path = Path(image)
    if path.is_absolute() or not source_dir:
        return path
    per_product = Path(source_dir) / product_directory / image
    return per_product if per_product.exists() else Path(source_dir) / image


def staging_dir(explicit: str | None) -> tuple[Path, bool]:
    """(folder, remove afterwards): a private temporary folder unless one is given."""
    if explicit:
        path = Path(explicit)
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    return Path(tempfile.mkdtemp(prefix="ssb-build-")), True


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
