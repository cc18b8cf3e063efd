"""The CLI as a user runs it: real subprocesses, exit codes, one-line errors, seed words."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ssb

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "local"


def served_files(root: Path) -> dict[Path, bytes]:
    """Every file a client could fetch (the publisher's own .ssb-s3/ lease and history excluded)."""
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".ssb-s3" not in p.parts}


def test_every_command_has_help() -> None:
    top = ssb("--help")
    assert top.returncode == 0
    for command in ("print", "build-versions-manifest", "build-images-file", "build-index",
                    "validate", "publish"):
        assert command in top.stdout
        sub = ssb(command, "--help")
        assert sub.returncode == 0 and "Usage:" in sub.stdout, sub.stderr
    for option in ("--config", "--target-dir", "--apikey", "--endpoint-url", "--region", "--profile",
                   "SSB_CONFIG", "SSB_TARGET"):
        assert option in top.stdout


def test_simplestreams_builder_alias_is_installed() -> None:
    exe = shutil.which("simplestreams-builder")
    assert exe, "console script simplestreams-builder missing (pip install -e .)"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "build-versions-manifest" in out.stdout


def test_quickstart_publishes_the_example_tree(tmp_path: Path) -> None:
    """The README's first command, into a temporary folder."""
    out = ssb("-c", str(EXAMPLE / "tree.yml"), "-t", str(tmp_path / "public"), "publish")
    assert out.returncode == 0, out.stderr
    assert "published: 2 products, 3 versions" in out.stdout
    index = json.loads((tmp_path / "public/streams/v1/index.json").read_text())
    catalog_path = index["index"]["images"]["path"]
    catalog = json.loads((tmp_path / "public" / catalog_path).read_text())
    assert sorted(catalog["products"]) == ["sample:1.0:amd64:default", "sample:1.0:arm64:default"]
    for product in catalog["products"].values():
        for version in product["versions"].values():
            for item in version["items"].values():
                assert (tmp_path / "public" / item["path"]).stat().st_size == item["size"]
    again = ssb("-c", str(EXAMPLE / "tree.yml"), "-t", str(tmp_path / "public"), "publish")
    assert again.returncode == 0 and again.stdout.startswith("unchanged"), again.stdout


def test_print_and_validate_with_env_vars(tmp_path: Path) -> None:
    env = {"SSB_CONFIG": str(EXAMPLE / "tree.yml"), "SSB_TARGET": str(tmp_path)}
    printed = ssb("print", env=env)
    assert printed.returncode == 0 and "name: sample:1.0:amd64:default" in printed.stdout
    assert "days: 2" in printed.stdout and "images_path: streams/v1" in printed.stdout
    ok = ssb("validate", env=env)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: 2 products, 3 versions"), ok.stderr


def test_stdout_variants_write_nothing(tmp_path: Path) -> None:
    base = ("-c", str(EXAMPLE / "tree.yml"), "-t", str(tmp_path))
    catalog = ssb(*base, "build-images-file", "--stdout")
    assert catalog.returncode == 0, catalog.stderr
    assert json.loads(catalog.stdout)["products"]["sample:1.0:arm64:default"]["aliases"] == "sample/1.0,sample"
    index = ssb(*base, "build-index", "--stdout")
    assert json.loads(index.stdout)["index"]["images"]["path"] == "streams/v1/images.json"
    manifest = ssb(*base, "build-versions-manifest", "-p", "sample:1.0:amd64:default", "--stdout")
    assert sorted(json.loads(manifest.stdout)["versions"]) == ["20260101_00:00", "20260102_00:00"]
    assert list(tmp_path.iterdir()) == []


def test_step_by_step_commands_write_seed_layout(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(EXAMPLE / "images", tree)
    conf = tmp_path / "tree.yml"
    conf.write_text((EXAMPLE / "tree.yml").read_text().replace("    source: images\n", ""))
    base = ("-c", str(conf), "-t", str(tree))
    (tree / "sample/amd64/ssb.json").unlink()
    assert ssb(*base, "build-versions-manifest", "-p", "sample:1.0:amd64:default").returncode == 0
    assert ssb(*base, "build-images-file").returncode == 0
    assert ssb(*base, "build-index").returncode == 0
    index = json.loads((tree / "streams/v1/index.json").read_text())
    assert index["index"]["images"]["path"] == "streams/v1/images.json"
    assert (tree / "streams/v1/images.json").exists()


def test_bad_config_is_one_clear_error_and_nothing_written(tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    conf.write_text("products:\n  - {name: a, arch: amd64, release: '1', os: A, directory: a, alias: [x]}\n")
    out = ssb("-c", str(conf), "-t", str(tmp_path / "out"), "publish")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert f"{conf}: products[0].alias: unknown key (did you mean 'aliases'?)" in out.stderr
    assert not (tmp_path / "out").exists()


def test_missing_config_and_unknown_product(tmp_path: Path) -> None:
    out = ssb("-c", str(tmp_path / "none.yml"), "validate")
    assert out.returncode == 1 and "none.yml: file not found" in out.stderr
    out = ssb("-c", str(EXAMPLE / "tree.yml"), "-t", str(tmp_path), "build-versions-manifest", "-p", "nope")
    assert out.returncode == 1 and "no product named 'nope'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("target", ["s3://", "ftp://host/x"])
def test_bad_target_url(tmp_path: Path, target: str) -> None:
    out = ssb("-c", str(EXAMPLE / "tree.yml"), "-t", target, "publish")
    assert out.returncode == 1 and "expected" in out.stderr and "Traceback" not in out.stderr


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(EXAMPLE / "images", tree)
    conf = tmp_path / "tree.yml"
    conf.write_text((EXAMPLE / "tree.yml").read_text().replace("    source: images\n", ""))
    (tree / "sample/amd64/20260101_00:00/rootfs.tar.xz").write_bytes(b"truncated")
    manifest = json.loads((tree / "sample/arm64/ssb.json").read_text())
    manifest["versions"]["20260101_0000"]["items"]["lxd_combined.tar.gz"]["path"] = "/etc/passwd"
    (tree / "sample/arm64/ssb.json").write_text(json.dumps(manifest))
    before = served_files(tree)
    out = ssb("-c", str(conf), "-t", str(tree), "validate")
    assert out.returncode == 1
    assert "rootfs.tar.xz is 9 bytes, ssb.json says" in out.stderr
    assert "'/etc/passwd' is absolute" in out.stderr
    published = ssb("-c", str(conf), "-t", str(tree), "publish")
    assert published.returncode == 1 and "publish refused, nothing was written" in published.stderr
    assert served_files(tree) == before
