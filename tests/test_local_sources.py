"""Local sources (issue 20, point 10): every read of a local mirror source (index, catalog) and of a
`source:` product's ssb.json goes through LocalStore's rules: a FIFO (or device) is refused without
blocking, a symlink leading out of the folder is refused; one clear line, exit 1, never a hang."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import tree_product, write_tree_yml
from realparts import make_image, source_manifests
from test_mirror import PRODUCTS, run_cli, write_upstream

TIMEOUT = 60  # a hang is a failure, not a stuck CI job


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unsigned upstream of one product, built once for the module."""
    root = tmp_path_factory.mktemp("pristine") / "up"
    write_upstream(root, [PRODUCTS[2]])
    return root


def _one_line_exit_1(out: subprocess.CompletedProcess[str], *wanted: str) -> None:
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and "unexpected" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if all(w in line for w in wanted)]
    assert len(lines) == 1, out.stderr


@pytest.mark.parametrize("name", ["index.json", "images.json"])
def test_a_fifo_in_a_local_mirror_source_is_refused_without_blocking(pristine: Path, tmp_path: Path,
                                                                      name: str) -> None:
    up = tmp_path / "up"
    shutil.copytree(pristine, up)
    (up / "streams/v1" / name).unlink()
    os.mkfifo(up / "streams/v1" / name)
    out = run_cli(None, str(tmp_path / "target"), "mirror", str(up), timeout=TIMEOUT)
    _one_line_exit_1(out, f"streams/v1/{name}", "is a FIFO, not a regular file: refused")
    assert not (tmp_path / "target/streams").exists()


@pytest.mark.parametrize("name", ["index.json", "images.json"])
def test_a_symlink_out_of_a_local_mirror_source_is_refused(pristine: Path, tmp_path: Path, name: str) -> None:
    """The outside file is a valid copy: it used to be read, and the mirror exited 0."""
    up = tmp_path / "up"
    shutil.copytree(pristine, up)
    outside = tmp_path / "elsewhere" / name
    outside.parent.mkdir()
    (up / "streams/v1" / name).rename(outside)
    (up / "streams/v1" / name).symlink_to(outside)
    out = run_cli(None, str(tmp_path / "target"), "mirror", str(up), timeout=TIMEOUT)
    _one_line_exit_1(out, f"streams/v1/{name}", f"is a symlink to {outside}, outside the folder", "refused")
    assert not (tmp_path / "target/streams").exists()


def _own_tree(tmp_path: Path) -> tuple[Path, Path]:
    """tree.yml with one product read from a local `source:` folder; (tree.yml, its ssb.json there)."""
    built = tmp_path / "built"
    make_image(built / "own/20260105_0000", kind="squashfs", serial="20260105_0000", description="own")
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, tree_product("own:1.0:amd64:default", release="1.0", os="Own", directory="own",
                                      source=str(built)))
    return conf, built / "own/ssb.json"


def test_a_fifo_at_a_source_products_ssb_json_is_refused_without_blocking(tmp_path: Path) -> None:
    conf, manifest = _own_tree(tmp_path)
    os.mkfifo(manifest)
    for extra in ((), ("--refresh-manifests",)):
        out = run_cli(None, str(tmp_path / "target"), "-c", str(conf), "publish", *extra, timeout=TIMEOUT)
        _one_line_exit_1(out, str(manifest), "is a FIFO, not a regular file: refused")
    assert not (tmp_path / "target/streams").exists()


def test_a_symlink_out_of_the_folder_at_a_source_products_ssb_json_is_refused(tmp_path: Path) -> None:
    conf, manifest = _own_tree(tmp_path)
    source_manifests(conf)  # the source's owner (publish --refresh-manifests never writes there)
    target = tmp_path / "target"
    first = run_cli(None, str(target), "-c", str(conf), "publish", "--refresh-manifests", timeout=TIMEOUT)
    assert first.returncode == 0, first.stderr
    # a valid ssb.json, outside the source folder: it used to be read as the product's
    outside = tmp_path / "elsewhere/ssb.json"
    outside.parent.mkdir()
    manifest.rename(outside)
    manifest.symlink_to(outside)
    out = run_cli(None, str(target), "-c", str(conf), "publish", timeout=TIMEOUT)
    _one_line_exit_1(out, str(manifest), f"is a symlink to {outside}, outside the folder", "refused")
