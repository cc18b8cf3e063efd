"""Issue 9, points 1, 3, 8 and 19: what a product's ssb.json and a local folder can make publish
read, copy and serve.

* 1: every item path of a product's manifest lies under <its directory>/<VERSION>/, whatever the
  manifest's origin; a `source` product naming another product's files is refused (located), its
  files are never copied, and --keep-going publishes the others (real S3 server, SeaweedFS).
* 3: a local folder (-t, or a product's `source`) never publishes a symlink that resolves
  outside it.
* 8: a '..' item path in a local product's ssb.json is a located problem of that product, like
  on S3: every problem listed, --keep-going and --dry-run --json work.
* 19: FIFOs, devices and symlinks to /dev/zero are no files: --refresh-manifests finishes at
  once, and hashing never reads past the listed size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ssb
from realparts import S3Server, make_image, source_manifests

from ssb_s3.errors import StoreError
from ssb_s3.storage.backends.local import LocalStore
from ssb_s3.storage.manifest import hash_version, scan_versions
from ssb_s3.storage.store import CHUNK_SIZE, ObjectInfo

V1, V2, EVIL = "20260101_00:00", "20260102_00:00", "20991231_00:00"
LEASE = ".ssb-s3/lease.json"
TIMEOUT = 120  # a publish of these tiny trees takes a few seconds; a hang is killed


def line_with(text: str, *parts: str) -> str | None:
    """The first line of `text` naming every part."""
    return next((line for line in text.splitlines() if all(p in line for p in parts)), None)


def product_yaml(name: str, directory: str, alias: str, extra: str = "") -> str:
    return (f"  - name: {name}\n    arch: amd64\n    release: '1.0'\n    os: Busybox\n"
            f"    directory: {directory}\n    days: 3\n    aliases: [{alias}]\n{extra}")


def items_of(root: Path, product_dir: str, version: str) -> dict[str, Any]:
    """The simplestreams items the scanner would write for one version folder under `root`."""
    store = LocalStore(root)
    complete, _ = scan_versions(store, product_dir)
    return hash_version(store, f"{product_dir}/{version}", complete[version])


def local_served(tree: Path) -> dict[str, Any]:
    index = json.loads((tree / "streams/v1/index.json").read_text())
    return json.loads((tree / index["index"]["images"]["path"]).read_text())  # type: ignore[no-any-return]


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under root (the publisher's own .ssb-s3/ left out)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.relative_to(root).as_posix().startswith(".ssb-s3/")}


# ------------------------------------------------------------------------------------------
# Point 1: cross-product injection through `source` (real S3 server)

S3_TREE = """storage: {{endpoint_url: "{endpoint}", region: us-east-1, addressing_style: path,
          checksum_mode: when_required}}
products:
{products}"""


class Site:
    """The served bucket (victim `sample`, bystander `busy`), and the attacker's `source` bucket."""

    def __init__(self, server: S3Server, bucket: str, tmp: Path) -> None:
        self.server, self.bucket, self.tmp = server, bucket, tmp
        self.other = f"{bucket[:50]}-src"
        server.create_bucket(self.other)
        self.client = server.client()
        self.conf = tmp / "tree.yml"
        self.conf.write_text(S3_TREE.format(endpoint=server.endpoint, products="".join([
            product_yaml("sample:1.0:amd64:default", "sample/amd64", "sample"),
            product_yaml("busy:1.0:amd64:default", "busy/amd64", "busy"),
            product_yaml("evil:1.0:amd64:default", "evil/amd64", "evil", f"    source: s3://{self.other}\n"),
        ])))
        self.env = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
                    "AWS_EC2_METADATA_DISABLED": "true"}

    def upload(self, bucket: str, directory: str, serial: str, description: str) -> Path:
        folder = self.tmp / bucket / directory / serial
        for path in make_image(folder, kind="squashfs", serial=serial, description=description):
            self.client.upload_file(str(path), bucket, f"{directory}/{serial}/{path.name}")
        return self.tmp / bucket

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return ssb("-c", str(self.conf), "-t", f"s3://{self.bucket}", *args, env=self.env)

    def keys(self, bucket: str, prefix: str = "") -> dict[str, str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}

    def served(self) -> dict[str, Any]:
        index = json.loads(self.client.get_object(Bucket=self.bucket, Key="streams/v1/index.json")["Body"].read())
        raw = self.client.get_object(Bucket=self.bucket, Key=index["index"]["images"]["path"])["Body"].read()
        return json.loads(raw)  # type: ignore[no-any-return]


@pytest.fixture
def site(s3_server: S3Server, bucket: str, tmp_path: Path) -> Site:
    """Published: sample (victim) V1, busy V1, evil V1 from the attacker's bucket."""
    s = Site(s3_server, bucket, tmp_path)
    s.upload(bucket, "sample/amd64", V1, "the real sample")
    s.upload(bucket, "busy/amd64", V1, "busy v1")
    s.upload(s.other, "evil/amd64", V1, "evil v1")
    owner = s.cli("build-versions-manifest", "-p", "evil:1.0:amd64:default")  # its bucket's owner writes its ssb.json
    assert owner.returncode == 0, owner.stderr
    out = s.cli("publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    assert sorted(s.served()["products"]) == ["busy:1.0:amd64:default", "evil:1.0:amd64:default",
                                              "sample:1.0:amd64:default"]
    return s


def inject(site: Site) -> str:
    """The attack of issue 9: the attacker's ssb.json (in its own bucket) names a version whose
    files are under the victim's folder, e.g. sample/amd64/20991231_00:00/lxd.tar.xz."""
    root = site.upload(site.other, "sample/amd64", EVIL, "the attacker's image")
    manifest_key = "evil/amd64/ssb.json"
    manifest = json.loads(site.client.get_object(Bucket=site.other, Key=manifest_key)["Body"].read())
    manifest["versions"][EVIL] = {"items": items_of(root, "sample/amd64", EVIL)}
    assert manifest["versions"][EVIL]["items"]["lxd.tar.xz"]["path"] == f"sample/amd64/{EVIL}/lxd.tar.xz"
    site.client.put_object(Bucket=site.other, Key=manifest_key, Body=json.dumps(manifest).encode())
    return f"s3://{site.other}/{manifest_key}"


def assert_victim_untouched(site: Site, entry: dict[str, Any], victim_keys: dict[str, str]) -> None:
    catalog = site.served()
    assert catalog["products"]["sample:1.0:amd64:default"] == entry
    assert sorted(entry["versions"]) == [V1] and entry["aliases"] == "sample"
    assert all(i["path"].startswith(f"sample/amd64/{V1}/") for i in entry["versions"][V1]["items"].values())
    owners = [name for name, p in catalog["products"].items() if "sample" in p["aliases"].split(",")]
    assert owners == ["sample:1.0:amd64:default"]
    assert site.keys(site.bucket, "sample/") == victim_keys, "something was written under the victim's folder"
    for product in catalog["products"].values():
        assert EVIL not in product["versions"]


def test_source_product_cannot_inject_into_another_product(site: Site) -> None:
    entry = site.served()["products"]["sample:1.0:amd64:default"]
    victim_keys = site.keys(site.bucket, "sample/")
    location = inject(site)
    site.upload(site.bucket, "busy/amd64", V2, "busy v2")  # a bystander with a new version
    assert site.cli("build-versions-manifest", "-p", "busy:1.0:amd64:default").returncode == 0

    before = site.keys(site.bucket)
    out = site.cli("publish")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    for item in ("lxd.tar.xz", "root.squashfs"):
        path = f"sample/amd64/{EVIL}/{'rootfs.squashfs' if item == 'root.squashfs' else item}"
        assert line_with(out.stderr, location, "product evil:1.0:amd64:default", f"version {EVIL}",
                         f"item {item}", f"'{path}'", "outside the product's folder",
                         f"'evil/amd64/{EVIL}/'"), out.stderr
    assert site.keys(site.bucket) == before, "a refused publish wrote something"
    assert_victim_untouched(site, entry, victim_keys)

    out = site.cli("publish", "--keep-going")
    assert out.returncode == 1, out.stderr
    assert line_with(out.stderr, location, f"version {EVIL}", "item lxd.tar.xz", "outside"), out.stderr
    catalog = site.served()
    assert sorted(catalog["products"]["busy:1.0:amd64:default"]["versions"]) == [V1, V2]  # the others go out
    assert sorted(catalog["products"]["evil:1.0:amd64:default"]["versions"]) == [V1]  # its last entry
    assert_victim_untouched(site, entry, victim_keys)

    # The second step: a refresh must not find the injected version in the victim's folder.
    # The source is read-only to the tree (issue 20 point 16): the refresh uses evil's ssb.json as it is,
    # refuses it again and writes nothing there; its owner's rebuild scans evil's own folder only.
    theirs = site.keys(site.other)
    out = site.cli("publish", "--refresh-manifests")
    assert out.returncode == 1 and "outside the product's folder" in out.stderr, out.stderr
    assert site.keys(site.other) == theirs
    assert site.cli("build-versions-manifest", "-p", "evil:1.0:amd64:default").returncode == 0
    out = site.cli("publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr  # evil's ssb.json, rebuilt from its own folder
    assert_victim_untouched(site, entry, victim_keys)
    assert sorted(site.served()["products"]["sample:1.0:amd64:default"]["versions"]) == [V1]


def test_tree_manifest_naming_another_products_files_is_refused(site: Site) -> None:
    """The same rule for a manifest in the tree itself: busy's ssb.json names sample's files."""
    entry = site.served()["products"]["sample:1.0:amd64:default"]
    victim_keys = site.keys(site.bucket, "sample/")
    manifest = json.loads(site.client.get_object(Bucket=site.bucket, Key="busy/amd64/ssb.json")["Body"].read())
    stolen = json.loads(site.client.get_object(Bucket=site.bucket, Key="sample/amd64/ssb.json")["Body"].read())
    manifest["versions"][V2] = stolen["versions"][V1]
    site.client.put_object(Bucket=site.bucket, Key="busy/amd64/ssb.json", Body=json.dumps(manifest).encode())
    out = site.cli("validate")
    assert out.returncode == 1
    assert line_with(out.stderr, f"s3://{site.bucket}/busy/amd64/ssb.json", f"version {V2}", "item root.squashfs",
                     f"'sample/amd64/{V1}/rootfs.squashfs'", f"expected a path under 'busy/amd64/{V2}/'"), out.stderr
    assert_victim_untouched(site, entry, victim_keys)


# ------------------------------------------------------------------------------------------
# Local trees (points 3, 8, 19)

LOCAL_TREE = "products:\n{products}"


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Path]:
    """A folder tree: products a, b, c, each with V1, published."""
    root = tmp_path / "tree"
    for name in "abc":
        make_image(root / name / V1, kind="squashfs", serial=V1, description=f"{name} v1")
    conf = tmp_path / "tree.yml"
    conf.write_text(LOCAL_TREE.format(products="".join(
        product_yaml(f"{name}:1.0:amd64:default", name, name) for name in "abc")))
    out = ssb("-c", str(conf), "-t", str(root), "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    yield root


def edit_manifest(root: Path, product: str, edit: Any) -> None:
    path = root / product / "ssb.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_local_dotdot_item_path_is_a_located_problem_of_its_product(local: Path, tmp_path: Path) -> None:
    conf = str(tmp_path / "tree.yml")
    bad = f"a/{V1}/../../b/{V1}/rootfs.squashfs"
    edit_manifest(local, "a", lambda m: m["versions"][V1]["items"]["root.squashfs"].update(path=bad))
    edit_manifest(local, "b", lambda m: m["versions"][V1]["items"]["root.squashfs"].update(size=1))
    make_image(local / "c" / V2, kind="squashfs", serial=V2, description="c v2")
    edit_manifest(local, "c", lambda m: m["versions"].update({V2: {"items": items_of(local, "c", V2)}}))
    a_ssb = str(local / "a" / "ssb.json")

    def check(out: subprocess.CompletedProcess[str], text: str) -> None:
        assert out.returncode == 1, out.stderr
        assert "Traceback" not in out.stderr and "refusing key" not in text
        assert line_with(text, a_ssb, "product a:1.0:amd64:default", f"version {V1}", "item root.squashfs",
                         f"'{bad}'", "plain relative path"), text
        assert line_with(text, "product b:1.0:amd64:default", "root.squashfs", "ssb.json says 1"), text

    before = files_of(local)
    for args in (("validate",), ("publish",), ("publish", "--dry-run")):
        out = ssb("-c", conf, "-t", str(local), *args)
        check(out, out.stderr)
        assert files_of(local) == before

    out = ssb("-c", conf, "-t", str(local), "publish", "--dry-run", "--json", "--keep-going")
    report = json.loads(out.stdout)
    check(out, "\n".join(report["problems"]))
    assert report["failed_products"] == ["a:1.0:amd64:default", "b:1.0:amd64:default"]
    assert report["changes"]["c:1.0:amd64:default"]["added"] == [V2]
    assert files_of(local) == before

    out = ssb("-c", conf, "-t", str(local), "publish", "--keep-going")
    check(out, out.stderr)
    served = local_served(local)["products"]
    assert sorted(served["c:1.0:amd64:default"]["versions"]) == [V1, V2]
    assert sorted(served["a:1.0:amd64:default"]["versions"]) == [V1]  # the last published entry
    assert served["a:1.0:amd64:default"]["versions"][V1]["items"]["root.squashfs"]["path"] == \
        f"a/{V1}/rootfs.squashfs"


def outside_image(tmp_path: Path, serial: str) -> Path:
    """A valid image outside every store: what a symlink would smuggle in."""
    folder = tmp_path / "outside" / serial
    make_image(folder, kind="squashfs", serial=serial, description="smuggled")
    return folder


def plant_symlinked_version(root: Path, directory: str, serial: str, tmp_path: Path) -> Path:
    """A version folder whose rootfs.squashfs is a symlink to a file outside `root`."""
    smuggled = outside_image(tmp_path, serial)
    (root / directory / serial).mkdir(parents=True)
    shutil.copy(smuggled / "lxd.tar.xz", root / directory / serial / "lxd.tar.xz")
    (root / directory / serial / "rootfs.squashfs").symlink_to(smuggled / "rootfs.squashfs")
    return smuggled / "rootfs.squashfs"


def test_local_tree_symlink_outside_is_not_published(local: Path, tmp_path: Path) -> None:
    conf = str(tmp_path / "tree.yml")
    target = Path(os.path.realpath(plant_symlinked_version(local, "a", V2, tmp_path)))
    link = local / "a" / V2 / "rootfs.squashfs"

    out = ssb("-c", conf, "-t", str(local), "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    assert line_with(out.stderr, str(link), f"symlink to {target}", "outside"), out.stderr
    assert sorted(local_served(local)["products"]["a:1.0:amd64:default"]["versions"]) == [V1]

    # An ssb.json written by hand (right size and sha256) naming the symlink: refused, located.
    whole = tmp_path / "whole"
    shutil.copytree(target.parent, whole / "a" / V2)
    edit_manifest(local, "a", lambda m: m["versions"].update({V2: {"items": items_of(whole, "a", V2)}}))
    before = files_of(local)
    out = ssb("-c", conf, "-t", str(local), "publish")
    assert out.returncode == 1, out.stderr
    assert line_with(out.stderr, f"version {V2} item root.squashfs", str(link), f"symlink to {target}",
                     "outside the folder"), out.stderr
    assert files_of(local) == before
    assert sorted(local_served(local)["products"]["a:1.0:amd64:default"]["versions"]) == [V1]


def test_local_source_symlink_outside_is_not_copied(tmp_path: Path) -> None:
    source, tree = tmp_path / "builds", tmp_path / "tree"
    make_image(source / "a" / V1, kind="squashfs", serial=V1, description="a v1")
    target = Path(os.path.realpath(plant_symlinked_version(source, "a", V2, tmp_path)))
    conf = tmp_path / "tree.yml"
    conf.write_text(LOCAL_TREE.format(products=product_yaml("a:1.0:amd64:default", "a", "a",
                                                           f"    source: {source}\n")))
    source_manifests(conf)  # the source's owner (publish --refresh-manifests never writes there)
    out = ssb("-c", str(conf), "-t", str(tree), "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    assert line_with(out.stderr, str(source / "a" / V2 / "rootfs.squashfs"), f"symlink to {target}"), out.stderr
    assert sorted(local_served(tree)["products"]["a:1.0:amd64:default"]["versions"]) == [V1]
    assert not (tree / "a" / V2).exists()

    whole = tmp_path / "whole"
    shutil.copytree(target.parent, whole / "a" / V2)
    edit_manifest(source, "a", lambda m: m["versions"].update({V2: {"items": items_of(whole, "a", V2)}}))
    out = ssb("-c", str(conf), "-t", str(tree), "publish")
    assert out.returncode == 1, out.stderr
    assert line_with(out.stderr, f"version {V2} item root.squashfs", f"symlink to {target}", "outside"), out.stderr
    assert not (tree / "a" / V2).exists()


def test_symlink_inside_the_folder_is_followed(tmp_path: Path) -> None:
    """The decision: a symlink that stays inside the store's folder is an ordinary file."""
    root = tmp_path / "tree"
    make_image(root / "pool", kind="squashfs", serial=V1, description="pooled")
    (root / "a" / V1).mkdir(parents=True)
    for name in ("lxd.tar.xz", "rootfs.squashfs"):
        (root / "a" / V1 / name).symlink_to(f"../../pool/{name}")
    conf = tmp_path / "tree.yml"
    conf.write_text(LOCAL_TREE.format(products=product_yaml("a:1.0:amd64:default", "a", "a")))
    out = ssb("-c", str(conf), "-t", str(root), "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    assert sorted(local_served(root)["products"]["a:1.0:amd64:default"]["versions"]) == [V1]


def test_fifo_and_dev_zero_do_not_hang_refresh(local: Path, tmp_path: Path) -> None:
    conf = str(tmp_path / "tree.yml")
    make_image(local / "a" / V2, kind="squashfs", serial=V2, description="a v2")
    fifo = local / "a" / V2 / "rootfs.squashfs"
    fifo.unlink()
    os.mkfifo(fifo)
    make_image(local / "b" / V2, kind="squashfs", serial=V2, description="b v2")
    zero = local / "b" / V2 / "rootfs.squashfs"
    zero.unlink()
    zero.symlink_to("/dev/zero")
    make_image(local / "c" / V2, kind="squashfs", serial=V2, description="c v2")

    start = time.monotonic()
    out = ssb("-c", conf, "-t", str(local), "publish", "--refresh-manifests", timeout=60)
    elapsed = time.monotonic() - start
    assert out.returncode == 0, out.stderr
    assert elapsed < 30, f"took {elapsed:.1f}s"
    assert line_with(out.stderr, str(fifo), "is a FIFO, not a regular file"), out.stderr
    assert line_with(out.stderr, str(zero), "symlink to /dev/zero", "outside"), out.stderr
    served = local_served(local)["products"]
    assert sorted(served["a:1.0:amd64:default"]["versions"]) == [V1]
    assert sorted(served["b:1.0:amd64:default"]["versions"]) == [V1]
    assert sorted(served["c:1.0:amd64:default"]["versions"]) == [V1, V2]
    assert not (local / LEASE).exists(), "the lease was not released"


def test_reading_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """Even a file that became a FIFO after the listing: refused without blocking."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    store = LocalStore(tmp_path)
    errors: list[BaseException] = []

    def read_all() -> None:
        for read in (lambda: list(store.iter_chunks("pipe")), lambda: store.read("pipe")):
            try:
                read()
            except Exception as exc:  # collected and checked below
                errors.append(exc)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # blocked in open(): give it a writer so that the thread ends
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert [str(e) for e in errors] == [f"{pipe}: is a FIFO, not a regular file: refused"] * 2
    assert all(isinstance(e, StoreError) for e in errors)
    assert [o.key for o in store.list()] == []


class CountingStore(LocalStore):
    """A local store that counts the bytes it hands out."""

    read_bytes = 0

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        for chunk in super().iter_chunks(key, chunk_size):
            self.read_bytes += len(chunk)
            yield chunk


@pytest.mark.parametrize("listed", [1, 5000, CHUNK_SIZE + 3])
def test_hashing_stops_past_the_listed_size(tmp_path: Path, listed: int) -> None:
    """A file longer than its listing (it grew, or is endless): reported as changed, not read on."""
    folder = tmp_path / "p" / V1
    make_image(folder, kind="squashfs", serial=V1)
    with (folder / "rootfs.squashfs").open("ab") as fh:
        fh.truncate(3 * CHUNK_SIZE)
    store = CountingStore(tmp_path)
    files = {name: ObjectInfo(f"p/{V1}/{name}", (folder / name).stat().st_size) for name in ("lxd.tar.xz",)}
    files["rootfs.squashfs"] = ObjectInfo(f"p/{V1}/rootfs.squashfs", listed)
    meta = files["lxd.tar.xz"].size
    with pytest.raises(StoreError, match=rf"size changed while hashing \({listed} listed, more than {listed} read\)"):
        hash_version(store, f"p/{V1}", files)
    bound = listed + 1 if listed < CHUNK_SIZE else listed + CHUNK_SIZE
    assert store.read_bytes - meta <= bound
