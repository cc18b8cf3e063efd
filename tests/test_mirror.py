"""`ssb-s3 mirror`: an upstream in images.linuxcontainers.org's shape, mirrored into SeaweedFS and read
by the real clients; tampered files and signatures refused; a kill -9 mid-copy; parity with
python-simplestreams' sstream-mirror."""

from __future__ import annotations

import contextlib
import http.server
import json
import lzma
import os
import shutil
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import SSB, ssb
from realparts import (
    IncusClient,
    LxdClient,
    LxdDaemon,
    S3Server,
    TlsFiles,
    combined_sha256,
    make_image,
    need,
    serve_https_static,
    sha256_file,
    source_manifests,
)

from ssb_s3.vocabulary.layout import INTERNAL_PREFIX

ROOT = Path(__file__).resolve().parent.parent

# (name, arch, release, variant, serials); images.linuxcontainers.org's layout
PRODUCTS = [
    ("busybox:1.36:amd64:default", "amd64", "1.36", "default", ("20260101_0000", "20260102_0000")),
    ("busybox:1.36:arm64:default", "arm64", "1.36", "default", ("20260101_0000",)),
    ("busybox:1.35:amd64:default", "amd64", "1.35", "default", ("20260101_0000",)),
    ("busybox:1.36:amd64:cloud", "amd64", "1.36", "cloud", ("20260103_0000",)),
]
FILTERS = ["arch=amd64", "release~^1\\.36$"]


def _item(path: Path, rel: str, ftype: str) -> dict[str, Any]:
    return {"ftype": ftype, "path": rel, "size": path.stat().st_size, "sha256": sha256_file(path)}


def add_version(root: Path, product: dict[str, Any], name: str, arch: str, release: str, variant: str, serial: str,
                *, lxd_only: bool = False, base: str | None = None, big: int = 0) -> None:
    """One version in images.linuxcontainers.org's shape: lxd.tar.xz + incus.tar.xz + squashfs +
    root.tar.xz (lxd_only: the cloud-images shape, lxd.tar.xz + squashfs), a delta from `base`."""
    folder = f"images/busybox/{release}/{arch}/{variant}/{serial}"
    dest = root / folder
    make_image(dest, kind="both", arch={"amd64": "x86_64", "arm64": "aarch64"}[arch], os_name="Busybox",
               release=release, variant=variant, serial=serial, description=f"{name} {serial}")
    if big:  # a big root (for the interrupted copy): real squashfs head, padded
        with (dest / "rootfs.squashfs").open("ab") as fh:
            fh.write(os.urandom(big))
    items: dict[str, Any] = {}
    metas = ["lxd.tar.xz"]
    if not lxd_only:
        # Incus's metadata tarball: the same content, other bytes (as upstream builds it)
        (dest / "incus.tar.xz").write_bytes(lzma.compress(lzma.decompress((dest / "lxd.tar.xz").read_bytes()),
                                                          preset=1))
        metas.append("incus.tar.xz")
    else:
        (dest / "rootfs.tar.xz").unlink()
    for meta in metas:
        entry = _item(dest / meta, f"{folder}/{meta}", meta)
        entry["combined_squashfs_sha256"] = combined_sha256(dest / meta, dest / "rootfs.squashfs")
        if not lxd_only:
            entry["combined_rootxz_sha256"] = entry["combined_sha256"] = combined_sha256(dest / meta,
                                                                                       dest / "rootfs.tar.xz")
        items[meta] = entry
    items["root.squashfs"] = _item(dest / "rootfs.squashfs", f"{folder}/rootfs.squashfs", "squashfs")
    if not lxd_only:
        items["root.tar.xz"] = _item(dest / "rootfs.tar.xz", f"{folder}/rootfs.tar.xz", "root.tar.xz")
    if base:
        delta = dest / f"{base}.vcdiff"
        delta.write_bytes(b"\xd6\xc3\xc4\x00" + serial.encode())
        items[f"delta-{base}"] = {**_item(delta, f"{folder}/{base}.vcdiff", "squashfs.vcdiff"), "delta_base": base}
    product["versions"][serial] = {"items": items}


def write_upstream(root: Path, products: list[tuple[str, str, str, str, tuple[str, ...]]], *, lxd_only: bool = False,
                   gnupg: Path | None = None) -> dict[str, Any]:
    catalog: dict[str, Any] = {"content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
                               "updated": "Thu, 01 Jan 2026 00:00:00 +0000", "products": {}}
    for name, arch, release, variant, serials in products:
        product = catalog["products"].setdefault(name, {
            "aliases": f"busybox/{release}/{variant}" if variant != "default" else f"busybox/{release}",
            "arch": arch, "os": "Busybox", "release": release, "release_title": release, "variant": variant,
            "versions": {}})
        if lxd_only:
            product["lxd_requirements"] = {"secureboot": "false"}
        previous = None
        for serial in serials:
            add_version(root, product, name, arch, release, variant, serial, lxd_only=lxd_only, base=previous)
            previous = serial
    save(root, catalog, gnupg)
    return catalog


def save(root: Path, catalog: dict[str, Any], gnupg: Path | None) -> None:
    streams = root / "streams/v1"
    streams.mkdir(parents=True, exist_ok=True)
    (streams / "images.json").write_text(json.dumps(catalog, indent=1))
    index = {"format": "index:1.0", "updated": catalog["updated"], "index": {"images": {
        "datatype": "image-downloads", "format": "products:1.0", "path": "streams/v1/images.json",
        "products": sorted(catalog["products"]), "updated": catalog["updated"]}}}
    (streams / "index.json").write_text(json.dumps(index, indent=1))
    if gnupg is not None:  # as upstream signs: index.sjson names images.sjson
        index["index"]["images"]["path"] = "streams/v1/images.sjson"
        (streams / "index.signed.json").write_text(json.dumps(index, indent=1))
        for name, source in (("index", "index.signed.json"), ("images", "images.json")):
            (streams / f"{name}.sjson").unlink(missing_ok=True)
            subprocess.run(["gpg", "--homedir", str(gnupg), "--batch", "--yes", "--clearsign", "-o",
                            str(streams / f"{name}.sjson"), str(streams / source)], check=True,
                           capture_output=True, timeout=60)
        (streams / "index.signed.json").unlink()


def make_key(where: Path) -> tuple[Path, Path]:
    """A throwaway signing key in its own GNUPGHOME; (that home, the exported public keyring)."""
    need("gpg")
    need("gpgv")
    home = where / "gnupg"
    home.mkdir(mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "", "--quick-gen-key",
                    "ssb mirror test <test@invalid>", "ed25519", "sign", "never"], check=True, capture_output=True,
                   timeout=120)
    ring = where / "upstream.gpg"
    ring.write_bytes(subprocess.run(["gpg", "--homedir", str(home), "--export"], check=True, capture_output=True,
                                    timeout=60).stdout)
    return home, ring


def run_mirror(server: S3Server | None, target: str, *args: str, ca: Path | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run_cli(server, target, "mirror", *args, ca=ca, timeout=timeout)


def run_cli(server: S3Server | None, target: str, *args: str, ca: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`ssb-s3 -t TARGET ARGS...` without a tree.yml (a tree of mirrored products only)."""
    env: dict[str, str] = {}
    if server is not None:
        env.update({"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
                    "AWS_ENDPOINT_URL": server.endpoint, "AWS_DEFAULT_REGION": "us-east-1"})
    if ca is not None:
        env["SSL_CERT_FILE"] = str(ca)
    return ssb("-t", target, *args, env=env, timeout=timeout, cwd="/")  # no tree.yml there


def served(server: S3Server, bucket: str) -> tuple[bytes, dict[str, Any]]:
    base = server.public_url(bucket)
    index = server.anonymous_get(f"{base}/streams/v1/index.json")
    catalog = json.loads(server.anonymous_get(f"{base}/{json.loads(index)['index']['images']['path']}"))
    return index, catalog


def fingerprints(catalog: dict[str, Any], meta: str, wanted: set[tuple[str, str]]) -> set[str]:
    """The images of `meta`'s client for the (product, version) pairs wanted, from the upstream catalog."""
    return {item[field] for name, product in catalog["products"].items()
            for serial, version in product["versions"].items() if (name, serial) in wanted
            for item in version["items"].values() if item["ftype"] == meta
            for field in ("combined_squashfs_sha256", "combined_rootxz_sha256") if field in item}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("upstream")
    home, ring = make_key(work)
    root = work / "root"
    catalog = write_upstream(root, PRODUCTS, gnupg=home)
    return {"root": root, "catalog": catalog, "gnupg": home, "keyring": ring, "work": work}


WANTED = {("busybox:1.36:amd64:default", "20260101_0000"), ("busybox:1.36:amd64:default", "20260102_0000"),
          ("busybox:1.36:amd64:cloud", "20260103_0000")}


def test_mirror_signed_upstream_listed_by_lxc_and_incus_and_launched(
        upstream: dict[str, Any], s3_server: S3Server, bucket: str, tls_files: TlsFiles, tmp_path: Path,
        lxd_daemon: LxdDaemon) -> None:
    with serve_https_static(upstream["root"], tls_files) as url:  # one URL for every run: a product has one source
        dry = run_mirror(s3_server, f"s3://{bucket}", url, *FILTERS, "--keyring", str(upstream["keyring"]),
                         "--dry-run", "--json", ca=tls_files.ca_cert)
        assert dry.returncode == 0, dry.stderr
        plan = json.loads(dry.stdout)
        assert plan["signed"] is True and plan["publish"] is None
        assert {(p, v) for p, v, _ in plan["selected"]} == WANTED
        assert plan["bytes_to_copy"] == sum(
            item["size"] for p, v in WANTED
            for item in {i["path"]: i for i in upstream["catalog"]["products"][p]["versions"][v]["items"].values()
                         }.values())
        assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # the dry run wrote nothing
        out = run_mirror(s3_server, f"s3://{bucket}", url, *FILTERS, "--keyring", str(upstream["keyring"]),
                         "--json", ca=tls_files.ca_cert)
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["publish"]["published"] is True
        assert len(report["copied"]) == len(plan["to_copy"]) and not report["skipped"]
        _, catalog = served(s3_server, bucket)
        assert set(catalog["products"]) == {"busybox:1.36:amd64:default", "busybox:1.36:amd64:cloud"}
        base = s3_server.public_url(bucket)
        lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
        lxc.remote_add("m", base)
        assert {i["fingerprint"] for i in lxc.image_list("m")} == fingerprints(upstream["catalog"], "lxd.tar.xz",
                                                                               WANTED)
        incus = IncusClient(tmp_path / "incusconf", ca_file=tls_files.ca_cert)
        incus.remote_add("m", base)
        assert {i["fingerprint"] for i in incus.image_list("m")} == fingerprints(upstream["catalog"],
                                                                                 "incus.tar.xz", WANTED)
        # the daemon launches one (downloads both files, checks sha256 and the fingerprint)
        lxd_daemon.remote_add("m", base)
        lxd_daemon.delete_instances()
        client = lxd_daemon.client
        client.run("launch", "m:busybox/1.36", "mirrored")
        try:
            assert 'BUILD_ID="20260102_0000"' in client.run("exec", "mirrored", "--", "cat",
                                                            "/etc/os-release").stdout
        finally:
            client.run("delete", "--force", "mirrored", check=False)
        # a second run copies nothing: every file is there with its sha256
        again = run_mirror(s3_server, f"s3://{bucket}", url, *FILTERS, "--keyring", str(upstream["keyring"]),
                           "--json", ca=tls_files.ca_cert)
        assert again.returncode == 0, again.stderr
        second = json.loads(again.stdout)
        assert second["copied"] == [] and len(second["skipped"]) == len(report["copied"])


def test_lxd_only_upstream_is_listed_by_incus(s3_server: S3Server, bucket: str, tls_files: TlsFiles,
                                              tmp_path: Path) -> None:
    """The cloud-images shape (lxd.tar.xz only): the mirror adds the incus.tar.xz twins."""
    catalog = write_upstream(tmp_path / "up", [PRODUCTS[0]], lxd_only=True)
    with serve_https_static(tmp_path / "up", tls_files) as url:
        out = run_mirror(s3_server, f"s3://{bucket}", url, ca=tls_files.ca_cert)
    assert out.returncode == 0, out.stderr
    incus = IncusClient(tmp_path / "incusconf", ca_file=tls_files.ca_cert)
    incus.remote_add("m", s3_server.public_url(bucket))
    listed = incus.image_list("m")
    wanted = {(PRODUCTS[0][0], s) for s in PRODUCTS[0][4]}
    assert {i["fingerprint"] for i in listed} == fingerprints(catalog, "lxd.tar.xz", wanted)
    assert all(i["properties"]["requirements.secureboot"] == "false" for i in listed)
    _, served_catalog = served(s3_server, bucket)
    product = served_catalog["products"][PRODUCTS[0][0]]
    assert product["requirements"] == product["lxd_requirements"] == {"secureboot": "false"}
    # the delta whose base is mirrored stays
    assert any(i["ftype"] == "squashfs.vcdiff" for i in product["versions"]["20260102_0000"]["items"].values())


def test_tampered_file_refused_that_version_not_published(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    root = tmp_path / "up"
    write_upstream(root, [PRODUCTS[0]])
    bad = root / "images/busybox/1.36/amd64/default/20260102_0000/rootfs.squashfs"
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF  # same size, other content
    bad.write_bytes(bytes(data))
    out = run_mirror(s3_server, f"s3://{bucket}", str(root), "--json")
    assert out.returncode == 1
    assert "busybox:1.36:amd64:default version 20260102_0000: not mirrored" in out.stderr
    assert "rootfs.squashfs: sha256" in out.stderr and "refusing the file" in out.stderr
    _, catalog = served(s3_server, bucket)
    assert set(catalog["products"][PRODUCTS[0][0]]["versions"]) == {"20260101_0000"}
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert "images/busybox/1.36/amd64/default/20260102_0000/rootfs.squashfs" not in keys


def test_tampered_signature_refused_nothing_published(upstream: dict[str, Any], s3_server: S3Server, bucket: str,
                                                      tmp_path: Path) -> None:
    root = tmp_path / "up"
    shutil.copytree(upstream["root"], root)
    signed = root / "streams/v1/index.sjson"
    signed.write_text(signed.read_text().replace('"busybox:1.36:amd64:cloud"', '"busybox:1.36:amd64:cloudy"'))
    out = run_mirror(s3_server, f"s3://{bucket}", str(root), *FILTERS, "--keyring", str(upstream["keyring"]))
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "index.sjson: bad signature, refusing the source" in lines[0]
    assert "BAD signature: the signed content was changed" in lines[0]  # ssb_s3.gpg.verify's typed reason
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    # a good signature by a key that is not in --keyring: refused too (gpgv's status, not only its exit code)
    _, other_ring = make_key(tmp_path)
    out = run_mirror(s3_server, f"s3://{bucket}", str(upstream["root"]), *FILTERS, "--keyring", str(other_ring))
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 1 and len(lines) == 1 and "Traceback" not in out.stderr
    assert "index.sjson: bad signature, refusing the source" in lines[0] and "which is not in the keyring" in lines[0]
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    # signed without --keyring: told what to pass; --no-verify reads it
    out = run_mirror(s3_server, f"s3://{bucket}", str(upstream["root"]), *FILTERS, "--dry-run")
    assert out.returncode == 1 and "the source is signed: pass --keyring FILE" in out.stderr


class _SlowHandler(http.server.SimpleHTTPRequestHandler):
    """Static files; rootfs.squashfs trickles (so that a copy can be killed in the middle of it)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def copyfile(self, source: Any, outputfile: Any) -> None:
        if not self.path.endswith("rootfs.squashfs"):
            super().copyfile(source, outputfile)
            return
        while chunk := source.read(256 << 10):
            outputfile.write(chunk)
            time.sleep(0.2)


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client killed mid-transfer: expected here


@contextlib.contextmanager
def serve_tls(handler: Any, tls: TlsFiles) -> Iterator[str]:
    """`handler` served over HTTPS on 127.0.0.1 (a client cut mid-transfer is not logged)."""
    httpd = _QuietServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tls.server_cert), str(tls.server_key))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def serve_slow(root: Path, tls: TlsFiles) -> contextlib.AbstractContextManager[str]:
    return serve_tls(lambda *a, **k: _SlowHandler(*a, directory=str(root), **k), tls)


def test_kill_9_mid_copy_keeps_the_served_tree_and_the_rerun_copies_only_the_rest(
        s3_server: S3Server, bucket: str, tls_files: TlsFiles, tmp_path: Path) -> None:
    root = tmp_path / "up"
    catalog = write_upstream(root, [("busybox:1.36:amd64:default", "amd64", "1.36", "default", ("20260101_0000",))])
    with serve_slow(root, tls_files) as url:  # one source for both runs (a product has one source)
        first = run_mirror(s3_server, f"s3://{bucket}", url, ca=tls_files.ca_cert)
        assert first.returncode == 0, first.stderr
        index_before, catalog_before = served(s3_server, bucket)
        product = catalog["products"]["busybox:1.36:amd64:default"]
        add_version(root, product, "busybox:1.36:amd64:default", "amd64", "1.36", "default", "20260102_0000",
                    big=12 << 20)
        save(root, catalog, None)
        new_files = {i["path"] for i in product["versions"]["20260102_0000"]["items"].values()}
        env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": s3_server.access_key,
               "AWS_SECRET_ACCESS_KEY": s3_server.secret_key, "AWS_ENDPOINT_URL": s3_server.endpoint,
               "AWS_DEFAULT_REGION": "us-east-1", "SSL_CERT_FILE": str(tls_files.ca_cert), "SSB_PROGRESS_INTERVAL": "0"}
        proc = subprocess.Popen([*SSB, "-t", f"s3://{bucket}", "mirror", url,
                                 "--copies", "1"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                text=True, cwd=tmp_path)
        assert proc.stderr is not None
        done = 0
        deadline = time.monotonic() + 120
        for line in proc.stderr:  # the files before rootfs.squashfs (sorted: incus, lxd, the vcdiff...)
            if f"{len(new_files) - 2}/{len(new_files) + 4} files" in line:
                time.sleep(1)  # well inside the trickling squashfs
                done = len(new_files) - 2
                break
            assert time.monotonic() < deadline
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert done
        assert served(s3_server, bucket) == (index_before, catalog_before)  # the previous tree, still served
        lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
        lxc.remote_add("m", s3_server.public_url(bucket))
        assert len(lxc.image_list("m")) == 2  # the first version's squashfs and root.tar.xz images
        # the copies ran under the tree's lease, which the killed run still holds: its owner, who
        # killed it, takes it back rather than wait for it to expire (lease_ttl, 5 minutes)
        unlock = subprocess.run([*SSB, "-t", f"s3://{bucket}", "force-unlock"], env=env, capture_output=True,
                                text=True, cwd=tmp_path, timeout=120)
        assert unlock.returncode == 0 and "removed the lease held for" in unlock.stdout, unlock.stderr
        again = run_mirror(s3_server, f"s3://{bucket}", url, "--json", ca=tls_files.ca_cert, timeout=600)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    new_keys = {k for k in new_files}
    assert {k for k in report["copied"]} | {k for k in report["skipped"] if k in new_keys} == new_keys
    assert len([k for k in report["skipped"] if k in new_keys]) == done
    assert len(report["copied"]) == len(new_keys) - done
    _, after = served(s3_server, bucket)
    assert set(after["products"]["busybox:1.36:amd64:default"]["versions"]) == {"20260101_0000", "20260102_0000"}


def test_parity_with_sstream_mirror(upstream: dict[str, Any], tmp_path: Path) -> None:
    """python-simplestreams selects the same items with the same filters (and --max)."""
    exe = need("sstream-mirror")
    for filters, extra in ((FILTERS, []), (["ftype~(lxd.tar.xz|squashfs)", "variant!=cloud"], ["--max", "1"]),
                           (["arch!~arm", "item_name!~delta"], [])):
        done = subprocess.run([exe, "--no-verify", "--dry-run", *extra,
                               str(upstream["root"] / "streams/v1/index.sjson"), str(tmp_path / "sstream"), *filters],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        # its report: "+ PRODUCT VERSION ITEM PATH SIZE Mb" per item it would download
        theirs = {tuple(line.split()[1:4]) for line in done.stderr.splitlines() if line.startswith("+ ")}
        ours = run_mirror(None, str(tmp_path / "target"), str(upstream["root"]), *filters, *extra, "--no-verify",
                          "--dry-run", "--json")
        assert ours.returncode == 0, ours.stderr
        assert {tuple(s) for s in json.loads(ours.stdout)["selected"]} == theirs and theirs, filters


def test_bad_filters_and_hostile_catalogs(tmp_path: Path) -> None:
    """One clear line per bad input; nothing written."""
    root = tmp_path / "up"
    catalog = write_upstream(root, [PRODUCTS[0]])
    target = tmp_path / "target"
    out = run_mirror(None, str(target), str(root), "arch")
    assert out.returncode != 0 and "filter 'arch': expected KEY=VALUE" in out.stderr and "Traceback" not in out.stderr
    # a path that climbs out of the tree, a product name we cannot use, an unknown ftype
    product = catalog["products"][PRODUCTS[0][0]]
    items = product["versions"]["20260101_0000"]["items"]
    items["root.squashfs"]["path"] = "../../etc/passwd"
    items["root.tar.xz"]["ftype"] = "root.tar.zst"
    catalog["products"]["bad name!"] = json.loads(json.dumps(product))
    items["extra"] = {**items["lxd.tar.xz"], "ftype": "lxd.tar.zst"}
    save(root, catalog, None)
    out = run_mirror(None, str(target), str(root), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    reasons = {(d["product"], d["version"], d["item"]): d["reason"] for d in report["dropped"]}
    assert "must be a plain relative path" in reasons[(PRODUCTS[0][0], "20260101_0000", "root.squashfs")]
    assert "not valid as a product name" in reasons[("bad name!", "", "")]
    assert "unknown to LXD and Incus" in reasons[(PRODUCTS[0][0], "20260101_0000", "extra")]
    assert "no image that LXD can use" in reasons[(PRODUCTS[0][0], "20260101_0000", "")]
    # the version without its root went nowhere; its delta (base gone) neither, with a reason
    assert "not mirrored" in reasons[(PRODUCTS[0][0], "20260102_0000", "delta-20260101_0000")]
    served_catalog = json.loads((target / "streams/v1/images.json").read_text())
    assert set(served_catalog["products"][PRODUCTS[0][0]]["versions"]) == {"20260102_0000"}
    assert not (tmp_path / "etc").exists() and not (target / "etc").exists()


def test_mirror_filters_speak_lists_vocabulary(tmp_path: Path) -> None:
    """One filter vocabulary (issue 23 §3): a key no product, version or item of the source has is
    refused in one line, as `list` refuses one; arch=x86_64 finds amd64 products and `product` is
    `product_name`; filters that match nothing say so."""
    root = tmp_path / "up"
    write_upstream(root, PRODUCTS[:2])
    target = tmp_path / "target"
    typo = run_mirror(None, str(target), str(root), "arhc=amd64")
    assert typo.returncode == 1 and len(typo.stderr.splitlines()) == 1, typo.stderr
    assert typo.stderr.startswith("error: filter 'arhc=amd64': no product, version or item of ") and \
        "has a key 'arhc' (keys there: " in typo.stderr and "arch, " in typo.stderr
    assert not (target / "streams").exists()
    out = run_mirror(None, str(target), str(root), "arch=x86_64", f"product={PRODUCTS[0][0]}", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["products"] == [PRODUCTS[0][0]]
    empty = run_mirror(None, str(tmp_path / "other"), str(root), "arch=riscv64")
    assert f"filters arch=riscv64 matched nothing in {root}" in empty.stderr, empty.stderr


def own_product(tmp_path: Path) -> str:
    """tree.yml's entry of one product of our own (one version, built in tmp_path/built)."""
    built = tmp_path / "built"
    make_image(built / "own/20260105_0000", kind="squashfs", serial="20260105_0000", description="own")
    source_manifests(products=[{"name": "own:1.0:amd64:default", "arch": "amd64", "release": "1.0", "os": "Own",
                                "directory": "own", "source": str(built)}])
    return f"""  - name: own:1.0:amd64:default
    arch: amd64
    release: "1.0"
    os: Own
    directory: own
    source: {built}"""


def test_tree_yml_mirrors_publish_keeps_built_and_mirrored_products_in_one_tree(tmp_path: Path) -> None:
    """tree.yml's `mirrors:`: `publish` mirrors, then commits the tree's own and the mirrored products at once."""
    upstream = tmp_path / "up"
    write_upstream(upstream, PRODUCTS)
    conf = tmp_path / "tree.yml"
    conf.write_text(f"""
products:
{own_product(tmp_path)}
    aliases: [own]
mirrors:
  - source: up
    filters: ["arch=amd64", "release~^1\\\\.36$", "variant=default"]
    max: 1
""")
    target = tmp_path / "public"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return ssb("-c", str(conf), "-t", str(target), *args)

    printed = cli("print")
    assert printed.returncode == 0, printed.stderr
    assert f"source: {upstream}" in printed.stdout and "max: 1" in printed.stdout
    # the dry run says what the mirror would copy AND plans the tree's own products; writes nothing
    dry = cli("publish", "--refresh-manifests", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+ own:1.0:amd64:default 20260105_0000" in dry.stdout.splitlines(), dry.stdout
    assert "files to copy" in dry.stdout and "dry run: 1 products, 1 versions" in dry.stdout
    assert not target.exists()
    dry = cli("publish", "--refresh-manifests", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["publish"]["changes"]["own:1.0:amd64:default"]["added"] == ["20260105_0000"]
    out = cli("publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    catalog = json.loads((target / "streams/v1/images.json").read_text())
    assert set(catalog["products"]) == {"own:1.0:amd64:default", "busybox:1.36:amd64:default"}
    assert set(catalog["products"]["busybox:1.36:amd64:default"]["versions"]) == {"20260102_0000"}  # max: 1
    # its delta's base is not mirrored (max: 1): left out, with its reason
    assert "delta from 20260101_0000, which is not mirrored" in out.stderr
    assert "delta-20260101_0000" not in json.dumps(catalog)
    index = json.loads((target / "streams/v1/index.json").read_text())
    assert index["ssb_s3"]["mirrored"] == ["busybox:1.36:amd64:default"]
    # publish, build-product and the hooks without `mirrors:` keep the mirrored product as published
    text = conf.read_text()
    conf.write_text(text[:text.index("mirrors:")].replace("aliases: [own]", "aliases: [own, own/1]"))
    again = cli("publish")
    assert again.returncode == 0, again.stderr
    after = json.loads((target / "streams/v1/images.json").read_text())
    assert after["products"]["busybox:1.36:amd64:default"] == catalog["products"]["busybox:1.36:amd64:default"]
    assert after["products"]["own:1.0:amd64:default"]["aliases"] == "own,own/1"
    # `mirror` without the tree.yml declaring `own` would unpublish it: refused, nothing changed
    refused = run_mirror(None, str(target), str(upstream))
    assert refused.returncode == 1
    assert "product own:1.0:amd64:default is served but is neither in tree.yml" in refused.stderr
    assert json.loads((target / "streams/v1/images.json").read_text()) == after
    # a filter that is no regular expression: one line naming the field
    conf.write_text(text.replace('variant=default', 'variant~(default'))
    bad = cli("publish")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    expected = "mirrors[0].filters[2]: filter 'variant~(default': '(default' is not a valid regular expression"
    assert expected in bad.stderr


class _Redirect(http.server.BaseHTTPRequestHandler):
    """Every request redirected to another origin (`elsewhere`)."""

    elsewhere = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", f"{self.elsewhere}{self.path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET


def test_a_redirect_out_of_the_source_is_refused(upstream: dict[str, Any], tls_files: TlsFiles,
                                                 tmp_path: Path) -> None:
    with serve_https_static(upstream["root"], tls_files) as real, \
            serve_tls(type("R", (_Redirect,), {"elsewhere": real}), tls_files) as redirecting:
        out = run_mirror(None, str(tmp_path / "target"), redirecting, "--no-verify", ca=tls_files.ca_cert)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "refused: it leaves the source's origin" in out.stderr
    assert not (tmp_path / "target").exists()


def test_versions_that_left_the_source_expire_unless_keep(tmp_path: Path) -> None:
    root = tmp_path / "up"
    catalog = write_upstream(root, [PRODUCTS[0]])
    name = PRODUCTS[0][0]
    for target, extra, wanted in ((tmp_path / "plain", [], {"20260102_0000"}),
                                  (tmp_path / "kept", ["--keep"], {"20260101_0000", "20260102_0000"})):
        first = run_mirror(None, str(target), str(root), *extra)
        assert first.returncode == 0, first.stderr
        gone = json.loads(json.dumps(catalog))
        del gone["products"][name]["versions"]["20260101_0000"]
        del gone["products"][name]["versions"]["20260102_0000"]["items"]["delta-20260101_0000"]
        save(root, gone, None)
        try:
            again = run_mirror(None, str(target), str(root), *extra)
        finally:
            save(root, catalog, None)
        assert again.returncode == 0, again.stderr
        served_catalog = json.loads((target / "streams/v1/images.json").read_text())
        assert set(served_catalog["products"][name]["versions"]) == wanted, extra
        # out of the catalog at once; its files stay for the grace (clients holding the old catalog)
        assert (target / "images/busybox/1.36/amd64/default/20260101_0000/lxd.tar.xz").exists()
    bad = run_mirror(None, str(tmp_path / "x"), str(root), "--for", "lxc")
    assert bad.returncode == 2 and "--for 'lxc': expected lxd, incus or lxd,incus" in bad.stderr


# ----------------------------------------------------------------------------------------------
# core/mirror.py's selection, pure: hostile values in an upstream catalog become reported drops

NAME = "p:1:amd64:default"


def _catalog(*serials: str, folder: str = "images/p", name: str = NAME) -> dict[str, Any]:
    """A catalog of one product, each version an LXD/Incus image (fake but well-formed hashes)."""
    versions = {}
    for serial in serials:
        versions[serial] = {"items": {
            "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": f"{folder}/{serial}/lxd.tar.xz", "size": 1,
                           "sha256": "a" * 64, "combined_squashfs_sha256": "b" * 64},
            "root.squashfs": {"ftype": "squashfs", "path": f"{folder}/{serial}/root.squashfs", "size": 2,
                              "sha256": "c" * 64}}}
    return {"products": {name: {"arch": "amd64", "release": "1", "os": "X", "versions": versions}}}


def _reasons(selection: Any) -> dict[tuple[str, str, str], str]:
    return {(d.product, d.version, d.item): d.reason for d in selection.drops}


def test_select_delta_base_that_is_not_a_version_name_is_dropped() -> None:
    from ssb_s3.core.mirror import select

    catalog = _catalog("20260101", "20260102")
    items = catalog["products"][NAME]["versions"]["20260102"]["items"]
    delta = {"ftype": "squashfs.vcdiff", "path": "images/p/20260102/x.vcdiff", "size": 3, "sha256": "d" * 64}
    items["list"] = {**delta, "delta_base": ["20260101"]}  # a TypeError (unhashable) before
    items["other"] = {**delta, "path": "images/p/20260102/y.vcdiff", "delta_base": "20250101"}
    items["good"] = {**delta, "path": "images/p/20260102/z.vcdiff", "delta_base": "20260101"}
    selection = select(catalog, [])
    reasons = _reasons(selection)
    assert reasons[(NAME, "20260102", "list")] == "delta_base \"['20260101']\" is not another version of this product"
    assert "'20250101' is not another version" in reasons[(NAME, "20260102", "other")]
    kept = selection.versions[NAME]["20260102"]["items"]
    assert set(kept) == {"lxd.tar.xz", "root.squashfs", "good"} and kept["good"]["delta_base"] == "20260101"


def test_select_copied_fields_must_pass_ssb_schema() -> None:
    """An md5 that ssb.schema.json refuses would make every later run's read of ssb.json fail."""
    from ssb_s3.core.mirror import select
    from ssb_s3.schemas import schema_problems

    catalog = _catalog("20260101")
    items = catalog["products"][NAME]["versions"]["20260101"]["items"]
    items["root.squashfs"]["md5"] = "not-an-md5"
    items["lxd.tar.xz"]["md5"] = "0" * 32
    selection = select(catalog, [])
    reasons = _reasons(selection)
    assert "md5" in reasons[(NAME, "20260101", "root.squashfs")], reasons
    assert "no image that LXD can use" in reasons[(NAME, "20260101", "")]
    assert NAME not in selection.versions
    items["root.squashfs"]["md5"] = "f" * 32
    selection = select(catalog, [])
    manifest = {"name": NAME, "versions": selection.versions[NAME]}
    assert selection.versions[NAME]["20260101"]["items"]["root.squashfs"]["md5"] == "f" * 32
    assert schema_problems(manifest, "ssb", "ssb.json") == []


@pytest.mark.parametrize("folder, taken", [
    ("own/20260101_0000", "own"),  # inside a version folder of one of ours
    ("own", "own"),
    ("images", "images/own"),  # around one of ours
])
def test_select_refuses_a_folder_inside_around_or_equal_to_another_product(folder: str, taken: str) -> None:
    from ssb_s3.core.mirror import select

    selection = select(_catalog("20260101", folder=folder), [], taken_dirs=[taken])
    assert not selection.products and not selection.files
    assert _reasons(selection)[(NAME, "", "")] == \
        f"its folder {folder} overlaps {taken}, the folder of another product"
    # two mirrored products of one catalog: the second inside the first's folder is refused too
    catalog = _catalog("20260101", folder="images/p")
    catalog["products"].update(_catalog("20260101", folder="images/p/20260101", name="q:1:amd64:default")["products"])
    selection = select(catalog, [])
    assert set(selection.products) == {NAME}
    assert "overlaps images/p" in _reasons(selection)[("q:1:amd64:default", "", "")]


def test_select_max_counts_only_valid_versions() -> None:
    from ssb_s3.core.mirror import select

    catalog = _catalog("20260101", "20260102", "20260103")
    catalog["products"][NAME]["versions"]["20260103"]["items"]["root.squashfs"]["sha256"] = "bad"
    selection = select(catalog, [], max_versions=2)
    assert set(selection.versions[NAME]) == {"20260101", "20260102"}
    assert "sha256 missing" in _reasons(selection)[(NAME, "20260103", "root.squashfs")]
    # the filters' choice stays sstream-mirror's (newest 2, whatever their items)
    assert {v for _, v, _ in selection.selected} == {"20260102", "20260103"}


def test_a_product_mirrored_from_one_source_is_not_taken_over_by_another(tmp_path: Path) -> None:
    from ssb_s3.commands.mirror import source_id

    first, second = tmp_path / "up1", tmp_path / "up2"
    write_upstream(first, [PRODUCTS[2]])
    write_upstream(second, [PRODUCTS[2], PRODUCTS[1]])
    target = tmp_path / "target"
    assert run_mirror(None, str(target), str(first)).returncode == 0
    before = (target / "streams/v1/images.json").read_bytes()
    manifest = target / "images/busybox/1.35/amd64/default/ssb.json"
    recorded = json.loads(manifest.read_text())["mirror"]["source"]
    out = run_mirror(None, str(target), str(second), "--json")
    assert out.returncode == 0, out.stderr
    reasons = {(d["product"], d["version"], d["item"]): d["reason"] for d in json.loads(out.stdout)["dropped"]}
    assert reasons[(PRODUCTS[2][0], "", "")] == \
        f"already mirrored from {recorded}: one product has one source (remove it there first)"
    assert recorded == source_id(str(first))  # a digest: the source's path or URL is not published
    assert json.loads(manifest.read_text())["mirror"]["source"] == recorded
    catalog = json.loads((target / "streams/v1/images.json").read_text())
    assert catalog["products"][PRODUCTS[2][0]] == json.loads(before)["products"][PRODUCTS[2][0]]
    assert set(catalog["products"]) == {PRODUCTS[2][0], PRODUCTS[1][0]}  # the other product of up2 joined


def test_keep_applies_to_its_own_mirror_only(tmp_path: Path) -> None:
    """tree.yml: one mirror with `keep: true`, one without: a product that left the second leaves the catalog."""
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    write_upstream(kept, [PRODUCTS[1]])
    write_upstream(gone, [PRODUCTS[0], PRODUCTS[3]])
    conf = tmp_path / "tree.yml"
    text = f"""
products:
{own_product(tmp_path)}
mirrors:
  - source: {kept}
    keep: true
  - source: {gone}
    filters: [{{filter}}]
"""
    conf.write_text(text.replace("{filter}", "'arch=amd64'"))
    target = tmp_path / "public"

    def publish() -> set[str]:
        out = ssb("-c", str(conf), "-t", str(target), "publish")
        assert out.returncode == 0, out.stderr
        return set(json.loads((target / "streams/v1/images.json").read_text())["products"]) - {"own:1.0:amd64:default"}

    assert publish() == {PRODUCTS[1][0], PRODUCTS[0][0], PRODUCTS[3][0]}
    conf.write_text(text.replace("{filter}", "'variant=default'"))  # the cloud product leaves `gone`
    assert publish() == {PRODUCTS[1][0], PRODUCTS[0][0]}


def test_a_source_url_with_a_user_or_password_is_refused_and_never_printed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    out = run_mirror(None, str(target), "https://someone:s3cr3t-token@127.0.0.1:9/images/", "--dry-run")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: source https://127.0.0.1:9/images/: a user or password in the URL would be printed "
        "(reports, logs): refused; use a URL without them"]
    assert "s3cr3t" not in out.stdout + out.stderr and "someone" not in out.stdout + out.stderr
    assert not target.exists()


def test_clearsigned_content_without_verifying() -> None:
    """mirror --no-verify reads a clearsigned document's text (dash-escaping undone); anything else is refused."""
    from ssb_s3.core.signed import clearsigned_content

    doc = (b"-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA512\r\n\r\n{\"a\":\n- -1}\n"
           b"-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n")
    assert clearsigned_content(doc) == b'{"a":\n-1}'
    for bad, why in ((b'{"a": 1}', "not an OpenPGP clearsigned document"),
                     (b"-----BEGIN PGP SIGNED MESSAGE-----\n\n{}\n", "no signature block")):
        with pytest.raises(ValueError, match=why):
            clearsigned_content(bad)


def test_select_a_folder_of_a_product_mirrored_before_is_taken_for_other_names_only() -> None:
    from ssb_s3.core.mirror import select

    served = {"other:1:amd64:default": "images", NAME: "images/p"}  # index.json's mirrored products, by folder
    selection = select(_catalog("20260101", folder="images/p"), [], mirrored_dirs=served)
    assert _reasons(selection)[(NAME, "", "")] == \
        "its folder images/p overlaps images, the folder of another product"
    selection = select(_catalog("20260101", folder="images/p"), [], mirrored_dirs={NAME: "images/p"})
    assert set(selection.products) == {NAME} and not selection.drops  # its own folder, mirrored again
def bucket_keys(server: S3Server, bucket: str) -> set[str]:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_a_product_that_left_the_source_leaves_the_catalog_and_its_files_go_after_the_grace(
        s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    root, target = tmp_path / "up", f"s3://{bucket}"
    catalog = write_upstream(root, [PRODUCTS[0], PRODUCTS[2]])
    stay, gone = PRODUCTS[0][0], PRODUCTS[2][0]
    first = run_mirror(s3_server, target, str(root))
    assert first.returncode == 0, first.stderr
    gone_dir = "images/busybox/1.35/amd64/default/"
    gone_files = {k for k in bucket_keys(s3_server, bucket) if k.startswith(gone_dir + "20260101_0000/")}
    assert len(gone_files) == 4  # lxd.tar.xz, incus.tar.xz, rootfs.squashfs, rootfs.tar.xz
    left = json.loads(json.dumps(catalog))
    del left["products"][gone]
    save(root, left, None)
    # out of the catalog at once; its files stay for the grace (clients holding the old catalog)
    again = run_mirror(s3_server, target, str(root), "--json")
    assert again.returncode == 0, again.stderr
    purge = json.loads(again.stdout)["publish"]["purge"]
    assert [(i["product"], i["folder"]) for i in purge["delete_later"]] == [(gone, gone_dir + "20260101_0000")]
    assert "its mirrored product left the catalog; kept until" in purge["delete_later"][0]["reason"]
    assert purge["delete_now"] == []
    _, served_catalog = served(s3_server, bucket)
    assert set(served_catalog["products"]) == {stay}
    before = bucket_keys(s3_server, bucket)
    assert gone_files <= before
    # `purge` (no tree.yml: a tree of mirrored products) past the grace: exactly that folder
    dry = run_cli(s3_server, target, "purge", "--dry-run", "--grace", "0", "--json")
    assert dry.returncode == 0, dry.stderr
    assert [i["folder"] for i in json.loads(dry.stdout)["delete_now"]] == [gone_dir + "20260101_0000"]
    assert bucket_keys(s3_server, bucket) == before  # the dry run deleted nothing
    # a later mirror past the grace deletes its files, nothing else (but the old catalog's views)
    later = run_mirror(s3_server, target, str(root), "--grace", "0", "--json")
    assert later.returncode == 0, later.stderr
    after = bucket_keys(s3_server, bucket)
    removed = before - after
    # (and the tool's own record of the older catalogs, .ssb-s3/history.json: rebuilt by the next publish)
    assert {k for k in removed if not k.startswith(("streams/v1/images-", INTERNAL_PREFIX))} == gone_files
    assert after - before == set()
    _, served_catalog = served(s3_server, bucket)
    assert set(served_catalog["products"]) == {stay}
    for version in served_catalog["products"][stay]["versions"].values():
        assert {i["path"] for i in version["items"].values()} <= after
    # its ssb.json no longer names the purged version; the next run has nothing more to purge
    manifest = json.loads(s3_server.client().get_object(Bucket=bucket, Key=gone_dir + "ssb.json")["Body"].read())
    assert manifest["versions"] == {}
    quiet = run_cli(s3_server, target, "purge", "--dry-run", "--grace", "0", "--json")
    assert quiet.returncode == 0 and json.loads(quiet.stdout)["delete_now"] == []


def test_an_s3_tree_published_by_ssb_s3_mirrored_into_another_bucket(
        store_server: S3Server, store_bucket: str, tls_files: TlsFiles, tmp_path: Path) -> None:
    """SOURCE s3://: a tree `publish` wrote in one bucket, mirrored (filtered) into another bucket of
    the same server; the real clients list from the copy exactly the source's filtered images."""
    built = tmp_path / "built"
    for directory, release, serials in (("one", "1.0", ("20260101_0000", "20260102_0000")),
                                        ("two", "2.0", ("20260101_0000",))):
        for serial in serials:
            make_image(built / directory / serial, kind="both", release=release, serial=serial,
                       description=f"{directory} {serial}")
    conf = tmp_path / "tree.yml"
    conf.write_text(f"""
products:
  - {{name: "own:1.0:amd64:default", arch: amd64, release: "1.0", os: Own, directory: one, source: {built},
     aliases: [own/1.0], days: 2}}
  - {{name: "own:2.0:amd64:default", arch: amd64, release: "2.0", os: Own, directory: two, source: {built},
     aliases: [own/2.0]}}
""")
    source_manifests(conf)  # the owner of `built` (publish --refresh-manifests never writes into a source)
    source = f"src-{store_bucket}"[:63]
    store_server.create_bucket(source, public_read=True)
    published = run_cli(store_server, f"s3://{source}/up", "-c", str(conf), "publish", "--refresh-manifests")
    assert published.returncode == 0, published.stderr
    out = run_mirror(store_server, f"s3://{store_bucket}", f"s3://{source}/up", "release=1.0", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["source"] == f"s3://{source}/up" and report["failed"] == []
    assert report["copied"] and not report["skipped"]
    assert {(p, v) for p, v, _ in report["selected"]} == {("own:1.0:amd64:default", "20260101_0000"),
                                                         ("own:1.0:amd64:default", "20260102_0000")}
    _, catalog = served(store_server, store_bucket)
    assert set(catalog["products"]) == {"own:1.0:amd64:default"}
    for meta, client_kind in (("lxd.tar.xz", LxdClient), ("incus.tar.xz", IncusClient)):
        client = client_kind(tmp_path / f"{meta}-conf", ca_file=tls_files.ca_cert)
        client.remote_add("src", store_server.public_url(source, "up"))
        client.remote_add("m", store_server.public_url(store_bucket))
        wanted = {i["fingerprint"] for i in client.image_list("src") if i["properties"]["release"] == "1.0"}
        assert len(wanted) == 4  # two versions, each with a squashfs and a rootfs.tar.xz image
        assert {i["fingerprint"] for i in client.image_list("m")} == wanted, meta
    # a second run copies nothing: every file is there with its sha256
    again = run_mirror(store_server, f"s3://{store_bucket}", f"s3://{source}/up", "release=1.0", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["copied"] == []
    assert sorted(json.loads(again.stdout)["skipped"]) == sorted(report["copied"])


def test_mirror_decides_and_copies_under_the_lease_on_one_read_of_index_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a mirror copies and records is decided on index.json as read under the tree's lease,
    read once (the publish under the same lease is given that read): while another job holds the
    lease nothing is copied; once it is free, index.json is read once per run."""
    from click.testing import CliRunner

    from ssb_s3.cli import cli
    from ssb_s3.storage.backends.local import LocalStore
    from ssb_s3.storage.lease import Lease
    from ssb_s3.storage.tree import Tree as TreeIO

    up, target = tmp_path / "up", tmp_path / "target"
    write_upstream(up, [PRODUCTS[2], PRODUCTS[1]])
    monkeypatch.chdir(tmp_path)  # no tree.yml: a tree of mirrored products only
    reads: list[str] = []
    served = TreeIO.served

    def counted(self: TreeIO) -> Any:
        reads.append(self.target.url)
        return served(self)

    monkeypatch.setattr(TreeIO, "served", counted)
    with Lease(LocalStore(target), ttl=300, timeout=5, purpose="another publisher"):
        out = CliRunner().invoke(cli, ["-t", str(target), "mirror", str(up), "--lock-timeout", "1"])
    assert out.exit_code == 1 and "another publisher" in out.output, out.output
    assert not [p for p in target.rglob("*") if p.is_file() and ".ssb-s3" not in p.parts], list(target.rglob("*"))
    reads.clear()
    out = CliRunner().invoke(cli, ["-t", str(target), "mirror", str(up)])
    assert out.exit_code == 0, out.output
    assert set(json.loads((target / "streams/v1/images.json").read_text())["products"]) == {
        PRODUCTS[2][0], PRODUCTS[1][0]}
    assert reads == [str(target)], reads  # (before: once to decide, before the lease, and once to publish)
    reads.clear()
    write_upstream(up, [PRODUCTS[2]])  # one product left the source: it leaves the catalog
    out = CliRunner().invoke(cli, ["-t", str(target), "mirror", str(up)])
    assert out.exit_code == 0, out.output
    assert set(json.loads((target / "streams/v1/images.json").read_text())["products"]) == {PRODUCTS[2][0]}
    assert reads == [str(target)], reads


def test_mirror_decisions_are_pure_functions_of_what_was_read() -> None:
    """core.mirror: which served mirrored products left their source, and which selected product
    belongs to another source, from the documents alone."""
    from ssb_s3.core.mirror import claim_products, departures, select, source_id

    one, other = source_id("https://one.example/"), source_id("https://other.example/")
    manifests = {"gone": {"mirror": {"source": one}}, "elsewhere": {"mirror": {"source": other}}, "unread": None}
    assert departures(manifests, {one: False}) == ["gone"]
    assert departures(manifests, {one: True}) == []  # --keep: what left the source stays
    selection = select(_catalog("20260101_0000"), [])
    [name] = selection.products
    prior = claim_products(selection, {name: {"name": name, "versions": {}, "mirror": {"source": other}}}, {},
                           "https://one.example/", {other: "https://other.example/"})
    assert not selection.products and not prior.existing
    assert selection.drops[-1].reason == ("already mirrored from https://other.example/: one product has one "
                                          "source (remove it there first)")
