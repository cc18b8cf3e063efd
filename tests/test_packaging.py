"""The package as a user gets it: the declared dependency floors work, the sdist is complete.

Each test builds a private venv and installs from PyPI with pip, as a user does (pip's cache
makes a second run fast). The floors are read from pyproject.toml, so raising one is tested at
once: the venv gets exactly `NAME==FLOOR` of each direct dependency (their own dependencies
resolve as pip would resolve them), then the package without dependencies, then publishes the
example tree to a folder and to a real SeaweedFS bucket.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest
from realparts import S3Server, missing

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "local" / "tree.yml"


def declared_floors() -> dict[str, str]:
    """name -> floor of each `name>=floor` in pyproject.toml's [project] dependencies."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    assert block, "pyproject.toml: no [project] dependencies list"
    floors = dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9][^",;]*)"', block.group(1)))
    assert floors, "pyproject.toml: no NAME>=FLOOR dependency"
    return floors


def project_copy(where: Path) -> Path:
    """The project's files in `where`, so that building it leaves no build/ nor *.egg-info here."""
    shutil.copytree(ROOT, where, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"))
    return where


def make_venv(where: Path) -> Path:
    """A fresh venv with pip; returns its bin/ folder."""
    venv.EnvBuilder(with_pip=True).create(where)
    return where / "bin"


def pip(bin_dir: Path, *args: str, cwd: Path | None = None) -> None:
    """pip install in the venv; a failure shows pip's own output."""
    try:
        subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                       check=True, capture_output=True, text=True, timeout=300, cwd=cwd)
    except subprocess.CalledProcessError as exc:
        if "No matching distribution" in exc.stderr or "Could not fetch" in exc.stderr:
            missing(f"PyPI not reachable: {exc.stderr.strip().splitlines()[-1]}")
        raise AssertionError(f"pip install {' '.join(args)} failed:\n{exc.stdout}\n{exc.stderr}") from None


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=cwd)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_the_declared_floors_install_and_publish_to_a_folder_and_to_s3(
        s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    floors = declared_floors()
    assert {"boto3", "pyyaml", "click", "jsonschema"} <= set(floors)
    bin_dir = make_venv(tmp_path / "venv")
    build_floor = re.search(r'requires = \["(setuptools>=[0-9.]+)"\]', (ROOT / "pyproject.toml").read_text())
    assert build_floor, "pyproject.toml: no setuptools>=N build requirement"
    pip(bin_dir, *(f"{name}=={floor}" for name, floor in floors.items()), build_floor.group(1))
    pip(bin_dir, "--no-deps", "--no-build-isolation", str(project_copy(tmp_path / "src")))
    installed = run([str(bin_dir / "python"), "-m", "pip", "list", "--format=freeze"])
    for name, floor in floors.items():
        assert re.search(rf"^{re.escape(name)}=={re.escape(floor)}$", installed, re.M | re.I), installed

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SSB_"))}
    out = tmp_path / "public"
    run([str(bin_dir / "ssb-s3"), "-c", str(EXAMPLE), "-t", str(out), "publish"], env=env, cwd=tmp_path)
    assert (out / "streams" / "v1" / "index.json").is_file()

    env.update(s3_server.credentials)
    run([str(bin_dir / "ssb-s3"), "-c", str(EXAMPLE), "-t", f"s3://{bucket}", "--endpoint-url", s3_server.endpoint,
         "publish"], env=env, cwd=tmp_path)
    index = s3_server.client().get_object(Bucket=bucket, Key="streams/v1/index.json")["Body"].read()
    assert b"images" in index
    listed = run([str(bin_dir / "ssb-s3"), "-c", str(EXAMPLE), "-t", f"s3://{bucket}",
                  "--endpoint-url", s3_server.endpoint, "list", "-c", "Nv", "--format", "csv"], env=env, cwd=tmp_path)
    assert sorted(listed.split()) == ["sample:1.0:amd64:default,20260101_00:00",
                                      "sample:1.0:amd64:default,20260102_00:00",
                                      "sample:1.0:arm64:default,20260101_0000"], listed


def test_the_sdist_and_wheel_pass_twine_and_the_sdist_runs_its_own_tests(tmp_path: Path) -> None:
    """`python -m build` makes the sdist, then the wheel from it; both pass `twine check --strict`;
    the unpacked sdist's unit tests (a fast subset, no server) pass against the installed wheel."""
    for module in ("build", "twine"):
        if subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode:
            missing(f"Python module {module!r} not installed (pip install -e '.[test]')")
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(project_copy(tmp_path / "src"))], cwd=tmp_path)
    sdists, wheels = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in dist.iterdir())
    checked = run([sys.executable, "-m", "twine", "check", "--strict", str(sdists[0]), str(wheels[0])])
    assert checked.count("PASSED") == 2, checked

    with tarfile.open(sdists[0]) as tar:
        names = set(tar.getnames())
        if hasattr(tarfile, "data_filter"):  # 3.10.12+, 3.11.4+
            tar.extractall(tmp_path / "unpacked", filter="data")
        else:
            tar.extractall(tmp_path / "unpacked")
    top = sdists[0].name[: -len(".tar.gz")]
    for needed in ("LICENSE", "tests/conftest.py", "tests/realparts.py", "tests/data/seed-tree.example.yml",
                   "tests/fake-bin/distrobuilder", "examples/local/tree.yml", "tests/test_config.py"):
        assert f"{top}/{needed}" in names, f"the sdist lacks {needed}"
    tree = tmp_path / "unpacked" / top
    assert os.access(tree / "tests" / "fake-bin" / "distrobuilder", os.X_OK)
    assert "GPL-3.0-or-later" in (tree / "PKG-INFO").read_text()

    bin_dir = make_venv(tmp_path / "venv")
    pip(bin_dir, str(wheels[0]), "pytest")  # the wheel `build` made from this very sdist
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SSB_REQUIRE_E2E")}
    out = run([str(bin_dir / "pytest"), "-q", "-p", "no:cacheprovider", "tests/test_config.py", "tests/test_catalog.py",
               "tests/test_manifest.py"],
              env=env, cwd=tree)
    assert re.search(r"\d+ passed", out) and "failed" not in out, out
    where = run([str(bin_dir / "python"), "-c", "import ssb_s3; print(ssb_s3.__file__)"], env=env, cwd=tmp_path)
    assert where.startswith(str(tmp_path / "venv")), where


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_as_the_readme_documents_it(shell: str) -> None:
    assert f"_SSB_S3_COMPLETE={shell}_source ssb-s3" in (ROOT / "README.md").read_text()
    main = [sys.executable, "-c", "from ssb_s3.cli import main; main()"]
    script = run(main, env={**os.environ, "_SSB_S3_COMPLETE": f"{shell}_source"})
    assert f"_SSB_S3_COMPLETE={shell}_complete" in script, script
    if shell == "bash":  # what the sourced script asks for when the user types `ssb-s3 pub<TAB>`
        words = run(main, env={**os.environ, "_SSB_S3_COMPLETE": "bash_complete", "COMP_WORDS": "ssb-s3 pub",
                               "COMP_CWORD": "1"})
        assert words.split() == ["plain,publish"], words
