"""build-product: distrobuilder command lines, artifact checks, one-pass create-only upload into a
real S3 server, version naming, resume after a kill, progress output, and LXD launching the result."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import SSB, s3_storage, ssb, tree_product, write_tree_yml
from realparts import LxdDaemon, S3Server, make_image

from ssb_s3.ingest.builder import BuildRequest, builder_commands

HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake-bin" / "distrobuilder"

PRODUCTS = (
    tree_product(days=5, aliases=["busybox/1.36"]),
    tree_product("busybox:1.36:amd64:vm", directory="busybox/amd64/vm", aliases=["busybox/1.36/vm"]),
    tree_product("busybox:1.36:arm64:default", arch="arm64", directory="busybox/arm64/default",
                 aliases=["busybox/1.36"]),
)

IMAGE = """image:
  distribution: Busybox
  release: "1.36"
  architecture: {arch}
  variant: default
  description: {description}
  serial: "{serial}"
  name: busybox-1.36
"""


def test_command_lines_match_distrobuilders_documented_cli(tmp_path: Path) -> None:
    image = tmp_path / "image.yaml"
    seed = builder_commands(BuildRequest(image), tmp_path)
    assert [argv[1:] for _, argv, _ in seed] == [
        ["build-lxd", str(image), str(tmp_path / "lxd"), "--type=split", "--compression=xz"],
        ["build-lxc", str(image), str(tmp_path / "lxc"), "--compression=xz"],
    ]
    vm = builder_commands(BuildRequest(image, vm=True, incus=True, options=("image.release=1.37",)), tmp_path)
    assert [argv[1:] for _, argv, _ in vm] == [
        ["build-incus", str(image), str(tmp_path / "incus"), "--type=split", "--compression=xz", "--vm",
         "-o", "image.release=1.37"],
    ]
    unified = builder_commands(BuildRequest(image, unified=True, lxc=False), tmp_path)
    assert [argv[1:] for _, argv, _ in unified] == [
        ["build-lxd", str(image), str(tmp_path / "lxd"), "--type=unified", "--compression=gzip"]]


class Builder:
    """A tree on the real S3 server, image definitions, and the CLI with the stand-in distrobuilder."""

    def __init__(self, server: S3Server, bucket: str, tmp: Path) -> None:
        self.server, self.bucket, self.tmp = server, bucket, tmp
        self.conf = tmp / "tree.yml"
        write_tree_yml(self.conf, *PRODUCTS, storage=s3_storage(server, checksum_mode="when_required"), grace=0)
        self.log = tmp / "distrobuilder.log"
        self.client = server.client()

    def image(self, serial: str, arch: str = "x86_64", description: str = "") -> Path:
        path = self.tmp / f"image-{serial}-{arch}.yaml"
        path.write_text(IMAGE.format(arch=arch, description=description or f"busybox {serial}", serial=serial))
        return path

    def env(self) -> dict[str, str]:
        return {**os.environ, "AWS_ACCESS_KEY_ID": self.server.access_key,
                "AWS_SECRET_ACCESS_KEY": self.server.secret_key, "FAKE_DISTROBUILDER_LOG": str(self.log)}

    def args(self, *args: str) -> list[str]:
        return ["-c", str(self.conf), "-t", f"s3://{self.bucket}", *args]

    def cli(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return ssb(*self.args(*args), env={**self.env(), **(extra_env or {})})

    def build(self, product: str, image: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cli("build-product", product, "-i", str(image), "--builder", str(FAKE), *args)

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]

    def served(self) -> dict[str, Any]:
        index = json.loads(self.get("streams/v1/index.json"))
        return json.loads(self.get(index["index"]["images"]["path"]))  # type: ignore[no-any-return]


@pytest.fixture
def builder(s3_server: S3Server, bucket: str, tmp_path: Path) -> Builder:
    return Builder(s3_server, bucket, tmp_path)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_build_uploads_records_and_publishes(builder: Builder) -> None:
    out = builder.build("busybox:1.36:amd64:default", builder.image("20260101_0000"))
    assert out.returncode == 0, out.stderr
    calls = [json.loads(line) for line in builder.log.read_text().splitlines()]
    assert [c[0] for c in calls] == ["build-lxd", "build-lxc"]
    catalog = builder.served()
    ((version, entry),) = catalog["products"]["busybox:1.36:amd64:default"]["versions"].items()
    assert version.startswith(time.strftime("%Y%m%d_", time.gmtime())) and version[11] == ":"  # YYYYMMDD_HH:MM UTC
    items = entry["items"]
    assert set(items) == {"lxd.tar.xz", "incus.tar.xz", "meta.tar.xz", "root.squashfs", "root.tar.xz"}
    folder = f"busybox/amd64/default/{version}"
    meta, squash = builder.get(f"{folder}/lxd.tar.xz"), builder.get(f"{folder}/rootfs.squashfs")
    assert items["root.squashfs"]["sha256"] == sha(squash)
    assert items["lxd.tar.xz"]["combined_squashfs_sha256"] == sha(meta + squash)
    assert items["lxd.tar.xz"]["combined_rootxz_sha256"] == sha(meta + builder.get(f"{folder}/rootfs.tar.xz"))
    head = builder.client.head_object(Bucket=builder.bucket, Key=f"{folder}/rootfs.squashfs")
    assert head["Metadata"]["sha256"] == sha(squash)  # the recorded sha256 that re-runs compare
    assert "immutable" in head["CacheControl"]
    assert not [k for k in builder.keys(folder) if k.endswith(".ssb-upload.json")]  # marker removed
    assert builder.cli("verify", "--hashes").returncode == 0


def test_same_minute_never_overwrites_and_identical_rebuild_is_refused(builder: Builder) -> None:
    first = builder.build("busybox:1.36:amd64:default", builder.image("20260101_0000"), "--skip-lxc",
                          "--version-format", "%Y%m%d_0000")
    second = builder.build("busybox:1.36:amd64:default", builder.image("20260102_0000"), "--skip-lxc",
                           "--version-format", "%Y%m%d_0000")
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    versions = sorted(builder.served()["products"]["busybox:1.36:amd64:default"]["versions"])
    today = time.strftime("%Y%m%d", time.gmtime())
    assert versions == [f"{today}_0000", f"{today}_0000_1"]
    same = builder.build("busybox:1.36:amd64:default", builder.image("20260102_0000"), "--skip-lxc",
                         "--version-format", "%Y%m%d_0000")
    assert same.returncode == 1 and "identical to version" in same.stderr
    assert not builder.keys(f"busybox/amd64/default/{today}_0000_2/")


def test_explicit_version_is_create_only(builder: Builder) -> None:
    image = builder.image("20260101_0000")
    assert builder.build("busybox:1.36:amd64:default", image, "--version", "20260101_1200").returncode == 0
    again = builder.build("busybox:1.36:amd64:default", builder.image("20260102_0000"), "--version",
                          "20260101_1200")
    assert again.returncode == 1 and "already exists and is finished; pick another --version" in again.stderr


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"),
    [
        ("arch", None, "architecture 'aarch64' does not match product busybox:1.36:amd64:default"),
        ("content", lambda d: (d / "rootfs.squashfs").write_bytes(b"\xfd7zXZ\x00" + b"0" * 100),
         "rootfs.squashfs: content is xz, expected squashfs"),
        ("empty", lambda d: (d / "rootfs.squashfs").write_bytes(b""), "rootfs.squashfs: empty file"),
        ("nometa", lambda d: (d / "lxd.tar.xz").unlink(), "incomplete image"),
    ],
)
def test_bad_artifacts_are_refused_before_any_upload(builder: Builder, tmp_path: Path, kind: str,
                                                     mutate: Any, expected: str) -> None:
    out_dir = tmp_path / "built"
    make_image(out_dir, kind="squashfs", arch="aarch64" if kind == "arch" else "x86_64")
    if mutate:
        mutate(out_dir)
    out = builder.cli("build-product", "busybox:1.36:amd64:default", "--from-dir", str(out_dir))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert expected in out.stderr
    assert builder.keys("busybox/") == []


def test_unified_tarball_must_hold_rootfs(builder: Builder, tmp_path: Path) -> None:
    import gzip
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"architecture: x86_64\ncreation_date: 1767225600\nproperties: {os: Busybox}\n"
        info = tarfile.TarInfo("metadata.yaml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "lxd_combined.tar.gz").write_bytes(gzip.compress(buf.getvalue()))
    out = builder.cli("build-product", "busybox:1.36:amd64:default", "--from-dir", str(tmp_path / "u"))
    assert out.returncode == 1 and "a unified tarball must hold rootfs/" in out.stderr


def test_unified_vm_and_incus_builds(builder: Builder) -> None:
    unified = builder.build("busybox:1.36:amd64:default", builder.image("20260103_0000"), "--unified",
                            "--skip-lxc")
    assert unified.returncode == 0, unified.stderr
    vm = builder.build("busybox:1.36:amd64:vm", builder.image("20260104_0000"), "--vm", "--incus")
    assert vm.returncode == 0, vm.stderr
    calls = [json.loads(line) for line in builder.log.read_text().splitlines()]
    assert calls[0][:1] + calls[0][3:] == ["build-lxd", "--type=unified", "--compression=gzip"]
    assert [c[0] for c in calls[1:]] == ["build-incus"] and "--vm" in calls[1]  # no build-lxc for a VM
    catalog = builder.served()["products"]
    (default,) = catalog["busybox:1.36:amd64:default"]["versions"].values()
    assert default["items"]["lxd_combined.tar.gz"]["ftype"] == "lxd_combined.tar.gz"
    (vm_version,) = catalog["busybox:1.36:amd64:vm"]["versions"].values()
    assert vm_version["items"]["disk.qcow2"]["ftype"] == "disk-kvm.img"
    assert "combined_disk-kvm-img_sha256" in vm_version["items"]["incus.tar.xz"]


def test_distrobuilder_failure_is_reported(builder: Builder) -> None:
    out = builder.cli("build-product", "busybox:1.36:amd64:default", "-i", str(builder.image("20260101_0000")),
                      "--builder", str(FAKE), extra_env={"FAKE_DISTROBUILDER_FAIL": "no space left"})
    assert out.returncode == 1
    assert "distrobuilder build-lxd failed with exit code 1: Error: simulated build failure: no space left" in (
        out.stderr)
    missing = builder.cli("build-product", "busybox:1.36:amd64:default", "-i", "/nonexistent.yaml")
    assert missing.returncode == 1 and "/nonexistent.yaml: image definition not found" in missing.stderr


def test_interrupted_upload_is_invisible_and_resumes(builder: Builder, tmp_path: Path) -> None:
    out_dir = tmp_path / "big"
    make_image(out_dir, kind="squashfs", serial="20260105_0000")
    root = out_dir / "rootfs.squashfs"
    with root.open("ab") as fh:  # a big rootfs: a squashfs with padding, many parts to upload
        fh.write(os.urandom(400 * 1024 * 1024))
    args = ("build-product", "busybox:1.36:amd64:default", "--from-dir", str(out_dir), "--part-size", "5",
            "--concurrency", "1", "--no-publish")
    proc = subprocess.Popen([*SSB, *builder.args("-v", *args)], env=builder.env(), stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # the first progress line of the big file: partly uploaded; kill -9 now
        if "MiB/s" in line and " 0%" not in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (marker,) = [k for k in builder.keys("busybox/amd64/default/") if k.endswith("/.ssb-upload.json")]
    version = marker.split("/")[3]
    folder = f"busybox/amd64/default/{version}"
    assert f"{folder}/.ssb-upload.json" in builder.keys(folder)
    assert f"{folder}/rootfs.squashfs" not in builder.keys(folder)  # no partial object, ever
    # A publisher that scans the folders does not pick the version up.
    scan = builder.cli("publish", "--refresh-manifests")
    assert "upload in progress" in scan.stderr
    assert builder.cli("verify").returncode == 1  # nothing published: no index at all
    # The re-run resumes the same version and does not upload the finished file again.
    again = builder.cli(*args)
    assert again.returncode == 0, again.stderr
    assert f"version {version} resumed and recorded (1 uploaded, 1 already there" in again.stdout
    builder.cli("publish").check_returncode()
    assert version in builder.served()["products"]["busybox:1.36:amd64:default"]["versions"]
    assert builder.cli("verify", "--hashes").returncode == 0


def test_progress_on_a_terminal_plain_lines_otherwise_nothing_with_q(builder: Builder, tmp_path: Path) -> None:
    def built(serial: str) -> tuple[str, ...]:
        out_dir = tmp_path / serial
        make_image(out_dir, kind="squashfs", serial=serial)
        with (out_dir / "rootfs.squashfs").open("ab") as fh:
            fh.write(os.urandom(20 * 1024 * 1024))
        return ("build-product", "busybox:1.36:amd64:default", "--from-dir", str(out_dir), "--no-publish")

    every_chunk = {"SSB_PROGRESS_INTERVAL": "0"}  # off a terminal: a line every N seconds (default 5), no -v needed
    quiet = builder.cli("-q", *built("20260106_0001"), extra_env=every_chunk)
    assert quiet.returncode == 0 and quiet.stderr == ""
    plain = builder.cli(*built("20260106_0002"), extra_env=every_chunk)
    assert "100% " in plain.stderr and "MiB/s" in plain.stderr and "\r" not in plain.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*SSB, *builder.args(*built("20260106_0003"))], env=builder.env(),
                            stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait() == 0, seen
    assert b"\r" in seen and b"MiB/s" in seen and b"left" in seen


def test_lxd_launches_what_build_product_published(builder: Builder, lxd_daemon: LxdDaemon) -> None:
    assert builder.build("busybox:1.36:amd64:default", builder.image("20260107_0000"), "--skip-lxc").returncode == 0
    vm = builder.build("busybox:1.36:amd64:vm", builder.image("20260107_0001", description="vm"), "--vm")
    assert vm.returncode == 0, vm.stderr
    lxd_daemon.remote_add("built", builder.server.public_url(builder.bucket))
    client = lxd_daemon.client
    listed = client.image_list("built")
    assert {i["type"] for i in listed} == {"container", "virtual-machine"}
    vm_image = next(i for i in listed if i["type"] == "virtual-machine")
    assert any(a["name"] == "busybox/1.36/vm" for a in vm_image["aliases"])
    client.run("launch", "built:busybox/1.36", "b1")
    try:
        client.run("exec", "b1", "--", "true")
    finally:
        client.run("delete", "--force", "b1", check=False)


def test_ingest_reads_ssb_json_once_then_plans_then_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """build-product reads ssb.json once; what the new version does to it is decided by the pure
    core.ingest (a withdrawn name, the same image again: refused, the upload removed), written If-Match."""
    from ssb_s3.config import parse_config
    from ssb_s3.core.ingest import with_version
    from ssb_s3.ingest.upload import ingest_version
    from ssb_s3.storage.artifacts import ArtifactError
    from ssb_s3.storage.backends.local import LocalStore

    tree = parse_config({"products": [{"name": "busybox:1.36:amd64:default", "arch": "amd64", "release": "1.36",
                                       "os": "Busybox", "directory": "busybox/amd64"}]}, "tree.yml")
    product = tree.product("busybox:1.36:amd64:default")
    store = LocalStore(tmp_path / "tree")
    reads: list[str] = []
    original = LocalStore.read_limited

    def read_limited(self: LocalStore, key: str, limit: int) -> Any:
        reads.append(key)
        return original(self, key, limit)

    monkeypatch.setattr(LocalStore, "read_limited", read_limited)
    first = {p.name: p for p in make_image(tmp_path / "a", kind="squashfs", description="a")}
    ingest_version(store, tree, product, first, version="20260101_0000", quiet=True)
    second = {p.name: p for p in make_image(tmp_path / "b", kind="squashfs", description="b")}
    ingest_version(store, tree, product, second, version="20260102_0000", quiet=True)
    assert reads.count("busybox/amd64/ssb.json") == 2, reads  # once per build
    manifest = json.loads((tmp_path / "tree/busybox/amd64/ssb.json").read_text())
    assert sorted(manifest["versions"]) == ["20260101_0000", "20260102_0000"]
    # the same image again: refused by the plan, its upload removed, nothing recorded
    with pytest.raises(ArtifactError, match=r"identical to version 20260101_0000.*upload was removed"):
        ingest_version(store, tree, product, first, version="20260103_0000", quiet=True)
    assert not (tmp_path / "tree/busybox/amd64/20260103_0000").exists() or not any(
        (tmp_path / "tree/busybox/amd64/20260103_0000").iterdir())
    assert json.loads((tmp_path / "tree/busybox/amd64/ssb.json").read_text()) == manifest
    # the plan alone: pure, the same answer for the same input
    items = manifest["versions"]["20260101_0000"]["items"]
    assert with_version(manifest, product.name, "20260104_0000", items) == (
        None, f"{product.name}: the new build is identical to version 20260101_0000 (same fingerprint)")
    withdrawn = {**manifest, "withdrawn": {"20260104_0000": {"withdrawn_at": 1, "entry": {"items": {}}}}}
    assert with_version(withdrawn, product.name, "20260104_0000", {})[1] == (
        f"{product.name}: version 20260104_0000 was withdrawn (ssb.json 'withdrawn'); build with another --version")
