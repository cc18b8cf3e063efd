"""Signed streams (issue 15): clearsigned index.sjson and catalog twins, checked by real readers.

A throwaway GnuPG key in a temporary GNUPGHOME signs a tree published into SeaweedFS and served
over HTTPS; python-simplestreams (sstream-query, sstream-mirror --keyring) and `ssb-s3 verify
--keyring` check it, a flipped byte must fail both, a missing or expired key must publish nothing,
and the real LXD client still lists the tree from the untouched index.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import invoke, s3_storage, ssb, tree_product, write_tree_yml
from realparts import LxdClient, S3Server, TlsFiles, make_image, need

from ssb_s3.config import parse_config
from ssb_s3.core.catalog import to_bytes
from ssb_s3.core.retention import History, superseded_views
from ssb_s3.core.signed import ToSign, signing_requests
from ssb_s3.core.views import Content, View, render
from ssb_s3.vocabulary.layout import SIGNED_INDEX_KEY, signed_key

UID = "ssb-s3 test signer <signer@example.org>"
EXPIRED_UID = "ssb-s3 expired signer <expired@example.org>"

PRODUCTS = (tree_product(aliases=["busybox/1.36"]),
            tree_product("busybox:1.36:amd64:tarxz", variant="tarxz", directory="busybox/amd64/tarxz"))


@dataclass(frozen=True)
class Key:
    home: Path
    fingerprint: str
    keyring: Path  # exported public key, binary (what gpgv --keyring and sstream-query take)
    expired: str  # fingerprint of an expired key in the same home


def _gpg(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", *args], capture_output=True, text=True,
                          timeout=120, check=True)


def _fingerprint(home: Path, uid: str) -> str:
    out = _gpg(home, "--with-colons", "--list-keys", uid).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


@pytest.fixture(scope="module")
def key() -> Iterator[Key]:
    """A throwaway ed25519 key without passphrase (and an expired one) in a short temp GNUPGHOME
    (gpg-agent's socket path must stay short)."""
    need("gpg")
    need("gpgv")
    home = Path(tempfile.mkdtemp(prefix="ssbgpg"))
    os.chmod(home, 0o700)
    try:
        _gpg(home, "--passphrase", "", "--quick-gen-key", UID, "ed25519", "sign", "1y")
        _gpg(home, "--passphrase", "", "--faked-system-time", "20200101T000000", "--quick-gen-key", EXPIRED_UID,
             "ed25519", "sign", "1d")
        fingerprint = _fingerprint(home, UID)
        keyring = home / "trusted.gpg"
        keyring.write_bytes(subprocess.run(["gpg", "--homedir", str(home), "--batch", "--export", fingerprint],
                                           capture_output=True, timeout=60, check=True).stdout)
        yield Key(home, fingerprint, keyring, _fingerprint(home, EXPIRED_UID))
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, timeout=30,
                       check=False)
        shutil.rmtree(home, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# The pure half: what is signed, under which names, and that retention purges it with its catalog


PURE_TREE = parse_config({"products": [{"name": "p", "arch": "amd64", "release": "1", "os": "P",
                                        "directory": "p"}]}, "tree.yml")


def test_signing_requests_name_the_signed_catalog_and_come_index_last() -> None:
    catalog = {"content_id": "images", "format": "products:1.0", "datatype": "image-downloads",
               "updated": "Thu, 01 Jan 2026 00:00:00 +0000", "products": {"p": {"versions": {}}}}
    data = to_bytes(catalog)
    key = PURE_TREE.layout.catalog_key(data)
    views = render(Content(PURE_TREE, catalog, data, key, {"catalogs": []}))
    requests = signing_requests(PURE_TREE, catalog, data, key, views, detached=True)
    keys = [r.view.key for r in requests]
    assert keys[-1] == SIGNED_INDEX_KEY  # written after the catalogs it names
    stem = key.removesuffix(".json")
    assert set(keys) == {f"{stem}.sjson", f"{key}.asc", "streams/v1/images.sjson", "streams/v1/images.json.asc",
                         SIGNED_INDEX_KEY}
    index = json.loads(requests[-1].view.data)
    assert json.loads(by_key_data(requests, "streams/v1/images.sjson")) == catalog
    assert index["index"]["images"]["path"] == f"{stem}.sjson"  # not the unsigned catalog (lxc-ci's mistake)
    assert "ssb_s3" not in index  # the history stays in index.json
    by_key = {r.view.key: r for r in requests}
    assert json.loads(by_key[f"{stem}.sjson"].view.data) == catalog and by_key[f"{stem}.sjson"].view.create_only
    assert by_key[f"{key}.asc"].view.data == data  # a detached signature covers the exact bytes
    assert by_key[f"{key}.asc"].detached and not by_key[f"{stem}.sjson"].detached
    assert [r.view.key for r in signing_requests(PURE_TREE, catalog, data, key, views)][-1] == SIGNED_INDEX_KEY
    assert len(signing_requests(PURE_TREE, catalog, data, key, views)) == 3  # no .asc unless asked


def by_key_data(requests: Any, key: str) -> bytes:
    return next(r.view.data for r in requests if r.view.key == key)  # type: ignore[no-any-return]


def test_a_multi_megabyte_catalog_is_signed_whole(key: Key) -> None:
    """GnuPG cuts clearsigned lines past 19,993 bytes without a word: a canonical catalog is one line
    of several MB, so the twin signs it pretty-printed; a line too long is refused, never cut."""
    from ssb_s3.gpg import MAX_CLEARSIGN_LINE, Signer, SigningError, verify

    catalog = {"content_id": "images", "format": "products:1.0", "datatype": "image-downloads",
               "updated": "Thu, 01 Jan 2026 00:00:00 +0000",
               "products": {f"p{i}": {"versions": {"20260101_0000": {"items": {"root": {
                   "path": f"p{i}/20260101_0000/rootfs.squashfs", "sha256": "0" * 64, "size": i}}}}}
                   for i in range(20000)}}
    data = to_bytes(catalog)
    assert len(data) > 3_000_000 and data.count(b"\n") == 1
    ckey = PURE_TREE.layout.catalog_key(data)
    views = render(Content(PURE_TREE, catalog, data, ckey, {}))
    signer = Signer(key.fingerprint, str(key.home), detached=True)
    started = time.monotonic()
    signed = signer.sign(signing_requests(PURE_TREE, catalog, data, ckey, views, detached=True))
    seconds = time.monotonic() - started
    twin = next(v for v in signed if v.key == signed_key(ckey))
    assert json.loads(verify(twin.data, str(key.keyring)).content) == catalog
    asc = next(v for v in signed if v.key == ckey + ".asc")
    assert verify(data, str(key.keyring), signature=asc.data).fingerprint == key.fingerprint
    assert seconds < 20, seconds
    print(f"signed {len(signed)} files of a {len(data)}-byte catalog in {seconds:.2f}s")
    too_long = ToSign(View("streams/v1/x.sjson", b"x" * (MAX_CLEARSIGN_LINE + 1) + b"\n"))
    with pytest.raises(SigningError, match=f"a line of {MAX_CLEARSIGN_LINE + 1} bytes"):
        signer.sign([too_long])


def test_a_superseded_catalogs_signed_twin_is_purged_with_it() -> None:
    old, new = "streams/v1/images-00000000000000000001.json", "streams/v1/images-00000000000000000002.json"
    assert signed_key(old) == "streams/v1/images-00000000000000000001.sjson"
    assert PURE_TREE.layout.catalog_of_view(signed_key(old)) == old
    assert PURE_TREE.layout.catalog_of_view(signed_key(old) + ".asc") == old
    assert PURE_TREE.layout.catalog_of_view("streams/v1/images.sjson") is None  # the plain copy is overwritten
    history = History([{"catalog": old, "since": 0, "until": 100}, {"catalog": new, "since": 100, "until": None}])
    listing = [old, signed_key(old), old + ".asc", new, signed_key(new), "streams/v1/images.sjson",
               SIGNED_INDEX_KEY]
    assert superseded_views(PURE_TREE, history, {new}, listing) == sorted([old, signed_key(old), old + ".asc"])
    assert superseded_views(PURE_TREE, history, {old, new}, listing) == []  # within the grace: kept


def test_signing_config_is_read_from_tree_yml(tmp_path: Path) -> None:
    tree = parse_config({"signing": {"key": "ABCD", "gnupghome": "keys", "detached": True, "timeout": "2m"},
                         "products": [{"name": "p", "arch": "amd64", "release": "1", "os": "P",
                                       "directory": "p"}]}, str(tmp_path / "tree.yml"))
    assert (tree.signing.key, tree.signing.gnupghome, tree.signing.detached, tree.signing.timeout) == \
        ("ABCD", str(tmp_path / "keys"), True, 120)
    conf = tmp_path / "bad.yml"
    conf.write_text("signing: {gnupghome: /x}\nproducts: [{name: p, arch: amd64, release: '1', os: P, "
                    "directory: p}]\n")
    out = ssb("-c", str(conf), "print")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "signing" in out.stderr and "key" in out.stderr


# ------------------------------------------------------------------------------------------------
# A local folder: --sign-key and GNUPGHOME, signing turned on for an unchanged catalog


def local_tree(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "tree.yml"
    conf.write_text(f"products:\n  - {{name: p, arch: amd64, release: '1.0', os: Busybox, directory: p, "
                    f"source: {tmp_path / 'images'}}}\n")
    source_version(tmp_path, "20260101_0000")
    return conf


def source_version(tmp_path: Path, serial: str) -> None:
    """A version in local_tree's `source:` folder, and that folder's ssb.json rebuilt as its owner does
    (build-versions-manifest): `publish --refresh-manifests` never writes into a source."""
    from ssb_s3.config import load_config
    from ssb_s3.storage.backends import open_store
    from ssb_s3.storage.tree import refresh_manifest

    make_image(tmp_path / "images/p" / serial, kind="squashfs", serial=serial)
    tree = load_config(tmp_path / "tree.yml")
    product = tree.product("p")
    refresh_manifest(open_store(product.source), tree, product)


def test_sign_key_option_with_gnupghome_signs_an_already_published_tree(key: Key, tmp_path: Path) -> None:
    conf = local_tree(tmp_path)
    public = tmp_path / "public"
    assert ssb("-c", str(conf), "-t", str(public), "publish", "--refresh-manifests").returncode == 0
    assert not (public / SIGNED_INDEX_KEY).exists()
    index_before = (public / "streams/v1/index.json").read_bytes()
    env = {"GNUPGHOME": str(key.home)}
    out = ssb("-c", str(conf), "-t", str(public), "publish", "--sign-key", key.fingerprint, "--json", env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert SIGNED_INDEX_KEY in report["signed"]  # the catalog unchanged: its key stays, index.json records "signed"
    index_after = json.loads((public / "streams/v1/index.json").read_bytes())
    assert index_after["index"] == json.loads(index_before)["index"] and index_after["ssb_s3"]["signed"] is True
    ok = ssb("-t", str(public), "verify", "--keyring", str(key.keyring))
    assert ok.returncode == 0, ok.stderr
    assert "3 signatures verified" in ok.stdout  # index.sjson, images-<hash>.sjson, images.sjson (no .asc)
    again = ssb("-c", str(conf), "-t", str(public), "publish", "--sign-key", key.fingerprint, "--json", env=env)
    assert json.loads(again.stdout)["signed"] == []  # nothing changed: gpg is not even run for the tree


def test_a_publish_without_the_key_over_a_signed_tree_is_refused(key: Key, tmp_path: Path) -> None:
    """Signed with --sign-key, then a change published without it (a hook, a withdraw, a forgotten
    flag): index.sjson would keep naming the older catalog, so the publish is refused and writes
    nothing; deleting index.sjson is how signing is stopped on purpose."""
    conf = local_tree(tmp_path)
    public = tmp_path / "public"
    env = {"GNUPGHOME": str(key.home)}
    assert ssb("-c", str(conf), "-t", str(public), "publish", "--refresh-manifests", "--sign-key", key.fingerprint,
               env=env).returncode == 0
    source_version(tmp_path, "20260102_0000")
    before = {p: p.read_bytes() for p in public.rglob("*") if p.is_file() and ".ssb-s3" not in p.parts}
    out = ssb("-c", str(conf), "-t", str(public), "publish", "--refresh-manifests")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "this tree publishes signed streams, and this run has no signing key" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in public.rglob("*") if p.is_file() and ".ssb-s3" not in p.parts} == before
    signed = ssb("-c", str(conf), "-t", str(public), "publish", "--refresh-manifests", "--sign-key",
                 key.fingerprint, env=env)
    assert signed.returncode == 0, signed.stderr
    assert ssb("-t", str(public), "verify", "--keyring", str(key.keyring)).returncode == 0
    (public / SIGNED_INDEX_KEY).unlink()  # stop signing on purpose
    source_version(tmp_path, "20260103_0000")
    unsigned = ssb("-c", str(conf), "-t", str(public), "publish", "--refresh-manifests")
    assert unsigned.returncode == 0, unsigned.stderr
    assert "signed" not in json.loads((public / "streams/v1/index.json").read_text())["ssb_s3"]


def served_files(public: Path) -> dict[Path, bytes]:
    """Every file of a local tree but the lease's (.ssb-s3): what a reader or a later run sees."""
    return {p: p.read_bytes() for p in public.rglob("*") if p.is_file() and ".ssb-s3" not in p.parts}


def local_sstream_query(public: Path, key: Key) -> set[str]:
    """(product version item) that python-simplestreams lists from the signed index, checked with gpgv."""
    out = subprocess.run([need("sstream-query"), "--keyring", str(key.keyring), "--output-format",
                          "%(product_name)s %(version_name)s %(item_name)s", str(public / SIGNED_INDEX_KEY)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.splitlines()) - {""}


def test_a_signed_tree_stays_signed_on_every_write_path(key: Key, tmp_path: Path) -> None:
    """Issue 20, point 15: signed with --sign-key, then an unchanged publish without a key (it used to
    rewrite index.json without its `signed` record, since the guard only ran on a changed catalog),
    then a withdraw without a key: both went through, and index.sjson kept naming the old catalog.
    Now every write path without a key (publish, withdraw and its dry run, build-product, mirror,
    the hooks, and the seed's build-index and build-images-file, which used to rewrite index.json
    and images.json unsigned) refuses with one line and writes nothing, until index.sjson is
    deleted on purpose."""

    from ssb_s3.commands.publish import PublishOptions
    from ssb_s3.config import load_config
    from ssb_s3.hooks.events import BucketEvent
    from ssb_s3.hooks.republish import Republisher
    from ssb_s3.storage.backends import open_store

    conf = local_tree(tmp_path)
    conf.write_text(conf.read_text().replace("directory: p,", "directory: p, days: 2,"))
    source_version(tmp_path, "20260102_0000")
    public = tmp_path / "public"
    env = {"GNUPGHOME": str(key.home)}
    tree = ["-c", str(conf), "-t", str(public)]
    assert ssb(*tree, "publish", "--refresh-manifests", "--sign-key", key.fingerprint, env=env).returncode == 0
    listed = local_sstream_query(public, key)
    assert {line.split()[1] for line in listed} == {"20260101_0000", "20260102_0000"}
    upstream = tmp_path / "upstream"  # an unsigned tree to mirror from
    assert ssb("-c", str(local_tree(tmp_path / "up")), "-t", str(upstream), "publish",
               "--refresh-manifests").returncode == 0
    built = tmp_path / "built"
    make_image(built, kind="squashfs", serial="20260103_0000")
    before, source_before = served_files(public), served_files(tmp_path / "images")
    runs = {
        "publish": ("publish",),
        "publish --refresh-manifests": ("publish", "--refresh-manifests"),
        "publish --dry-run": ("publish", "--dry-run"),
        "withdraw": ("withdraw", "p", "20260102_0000"),
        "withdraw --dry-run": ("withdraw", "p", "20260102_0000", "--dry-run"),
        "build-product": ("build-product", "p", "--from-dir", str(built), "--version", "20260103_0000"),
        "mirror": ("mirror", str(upstream), "--no-verify"),
        "build-index": ("build-index",),  # the seed's step-by-step commands
        "build-images-file": ("build-images-file",),
    }
    for what, args in runs.items():  # in-process (fast); the GnuPG home holds the key, but nothing names it
        out = invoke(*tree, *args, env=env)
        assert out.exit_code == 1, (what, out.stdout, out.stderr)
        assert out.stderr.strip().splitlines() == [
            f"error: {public / SIGNED_INDEX_KEY}: this tree publishes signed streams, and this run has no signing "
            "key: set `signing:` in tree.yml (build-product, withdraw, mirror and the hooks read it) or pass "
            "--sign-key; to stop signing, delete that file first. Nothing was written"], what
        assert served_files(public) == before, what
        assert served_files(tmp_path / "images") == source_before, what  # not even build-product's upload
    hooks = Republisher(load_config(conf), "s3://tree", open_store(str(public)), PublishOptions(quiet=True))
    outcome = hooks.handle([BucketEvent("tree", "p/ssb.json", True)])
    assert "this tree publishes signed streams" in outcome.failed["p"] and outcome.products == []
    assert served_files(public) == before
    ok = ssb("-t", str(public), "verify", "--keyring", str(key.keyring))
    assert ok.returncode == 0, ok.stderr
    assert local_sstream_query(public, key) == listed
    # with the key (withdraw reads tree.yml's `signing:`), the withdrawal reaches the signed streams too
    conf.write_text(conf.read_text() + f"signing: {{key: {key.fingerprint}}}\n")
    done = ssb(*tree, "withdraw", "p", "20260102_0000", env=env)
    assert done.returncode == 0, done.stderr
    assert ssb("-t", str(public), "verify", "--keyring", str(key.keyring)).returncode == 0
    assert {line.split()[1] for line in local_sstream_query(public, key)} == {"20260101_0000"}


def test_an_index_sjson_naming_the_unsigned_catalog_is_reported(key: Key, tmp_path: Path) -> None:
    """lxc-ci's mistake: a signed index naming the unsigned catalog (sstream-query --keyring then stops at
    'No signature found'); verify --keyring names it."""
    from ssb_s3.core.catalog import build_index
    from ssb_s3.gpg import Signer

    conf = local_tree(tmp_path)
    public = tmp_path / "public"
    out = ssb("-c", str(conf), "-t", str(public), "publish", "--refresh-manifests", "--sign-key", key.fingerprint,
              env={"GNUPGHOME": str(key.home)})
    assert out.returncode == 0, out.stderr
    unsigned = json.loads((public / "streams/v1/index.json").read_text())["index"]["images"]["path"]
    catalog = json.loads((public / unsigned).read_text())
    wrong = build_index(parse_config({"products": [{"name": "p", "arch": "amd64", "release": "1", "os": "P",
                                                    "directory": "p"}]}, "tree.yml"), catalog, unsigned)
    (public / SIGNED_INDEX_KEY).write_bytes(Signer(key.fingerprint, str(key.home)).sign_bytes(to_bytes(wrong)))
    bad = ssb("-t", str(public), "verify", "--keyring", str(key.keyring))
    assert bad.returncode == 1
    assert (f"index.sjson: names {unsigned}, expected {signed_key(unsigned)}, the signed twin of the catalog "
            f"index.json names ({unsigned})") in bad.stderr


def test_signed_catalog_before_the_flip_fixed_names_and_index_sjson_after_it(
        key: Key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The content-addressed catalog and its signed twins before the flip; every fixed name (the plain
    copies, their signatures, the page) after it, index.sjson after them; then index.json again,
    recording the views."""
    from ssb_s3.commands.publish import PublishOptions, publish
    from ssb_s3.config import load_config
    from ssb_s3.storage.backends import open_store

    conf = local_tree(tmp_path)
    conf.write_text(conf.read_text() + "signing: {key: " + key.fingerprint + ", detached: true}\n")
    monkeypatch.setenv("GNUPGHOME", str(key.home))  # no gnupghome in tree.yml: GNUPGHOME is honoured
    store = open_store(str(tmp_path / "public"))
    written: list[str] = []
    real_write = store._write

    def recording(key: str, data: bytes, **kwargs: Any) -> str:
        written.append(key)
        return real_write(key, data, **kwargs)

    monkeypatch.setattr(store, "_write", recording)
    report = publish(load_config(conf), store, PublishOptions(refresh_manifests=True, quiet=True))
    keys = [k for k in written if not k.startswith((".", "p/"))]  # not the lease, not ssb.json
    flip = keys.index("streams/v1/index.json")
    assert set(keys[:flip]) == {report.catalog_key, signed_key(report.catalog_key), report.catalog_key + ".asc"}
    assert keys[-2:] == [SIGNED_INDEX_KEY, "streams/v1/index.json"]
    assert set(keys[flip + 1:-2]) == {"streams/v1/images.json", "streams/v1/images.sjson",
                                      "streams/v1/images.json.asc", "index.html", "products/p.html"}  # not signed
    recorded = json.loads((tmp_path / "public" / "streams/v1/index.json").read_bytes())
    assert "index.html" in json.dumps(recorded)  # the settled index records the fixed-name views


def test_gpg_failing_after_the_plan_writes_nothing(key: Key, tmp_path: Path) -> None:
    """The key check passes, signing the tree then fails: not even the refreshed ssb.json is written."""
    conf = local_tree(tmp_path)
    public = tmp_path / "public"
    assert ssb("-c", str(conf), "-t", str(public), "publish", "--refresh-manifests").returncode == 0
    source_version(tmp_path, "20260102_0000")
    before = {p: p.read_bytes() for p in public.rglob("*") if p.is_file()}
    manifest_before = (tmp_path / "images/p/ssb.json").read_bytes()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gpg").write_text(f"#!/bin/sh\n[ -e {tmp_path}/once ] || {{ touch {tmp_path}/once; "
                                 f"exec {shutil.which('gpg')} \"$@\"; }}\n"
                                 "echo 'gpg: signing failed: Operation cancelled' >&2\nexit 2\n")
    (bin_dir / "gpg").chmod(0o755)
    out = ssb("-c", str(conf), "-t", str(public), "publish", "--refresh-manifests", "--sign-key", key.fingerprint,
              env={"GNUPGHOME": str(key.home), "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"error: signing streams/v1/images-{out.stderr.split('images-')[1][:20]}.sjson with key {key.fingerprint} "
        f"(GnuPG home {key.home}): gpg failed (exit 2): gpg: signing failed: Operation cancelled; "
        "nothing was published"]
    assert {p: p.read_bytes() for p in public.rglob("*") if p.is_file()} == before
    assert (tmp_path / "images/p/ssb.json").read_bytes() == manifest_before


# ------------------------------------------------------------------------------------------------
# A bucket served over HTTPS, read by python-simplestreams, ssb-s3 verify and LXD


@dataclass
class Published:
    server: S3Server
    bucket: str
    url: str
    conf: Path
    work: Path
    report: dict[str, Any]

    def env(self, **extra: str) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.server.access_key, "AWS_SECRET_ACCESS_KEY": self.server.secret_key,
                **extra}

    def publish(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return ssb("-c", str(self.conf), "-t", f"s3://{self.bucket}", "publish", "--refresh-manifests", *args,
                   env={**self.env(), **(env or {})})

    def snapshot(self) -> dict[str, bytes]:
        client = self.server.client()
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
                for o in page.get("Contents", [])]
        return {k: client.get_object(Bucket=self.bucket, Key=k)["Body"].read() for k in keys}

    def get(self, key: str) -> bytes:
        return self.server.anonymous_get(f"{self.url}/{key}")

    def put(self, key: str, data: bytes) -> None:
        self.server.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def upload_version(self, directory: str, kind: str, serial: str) -> None:
        make_image(self.work / "images" / directory / serial, kind=kind, serial=serial, release="1.36",
                   variant=directory.rsplit("/", 1)[1], description=f"{directory} {serial}")
        client = self.server.client()
        for path in sorted((self.work / "images" / directory / serial).iterdir()):
            client.upload_file(str(path), self.bucket, f"{directory}/{serial}/{path.name}")


@pytest.fixture(scope="module")
def published(s3_server: S3Server, key: Key, tmp_path_factory: pytest.TempPathFactory) -> Published:
    work = tmp_path_factory.mktemp("signed")
    bucket = "signed-streams"
    s3_server.create_bucket(bucket, public_read=True)
    conf = work / "tree.yml"
    write_tree_yml(conf, *PRODUCTS, storage=s3_storage(s3_server), grace=0,
                   signing={"key": key.fingerprint, "gnupghome": str(key.home), "detached": True})
    tree = Published(s3_server, bucket, s3_server.public_url(bucket), conf, work, {})
    tree.upload_version("busybox/amd64/default", "squashfs", "20260101_1000")
    tree.upload_version("busybox/amd64/tarxz", "tarxz", "20260101_1100")
    out = tree.publish("--json")
    assert out.returncode == 0, out.stderr
    tree.report = json.loads(out.stdout)
    return tree


def reader_env(tls_files: TlsFiles) -> dict[str, str]:
    return {**os.environ, "SSL_CERT_FILE": str(tls_files.ca_cert), "REQUESTS_CA_BUNDLE": str(tls_files.ca_cert)}


def sstream_query(published: Published, key: Key, tls_files: TlsFiles) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("sstream-query"), "--keyring", str(key.keyring), "--output-format",
                           "%(product_name)s %(version_name)s %(item_name)s %(path)s",
                           f"{published.url}/{SIGNED_INDEX_KEY}", "arch=amd64"],
                          env=reader_env(tls_files), capture_output=True, text=True, timeout=300)


def test_publish_writes_signed_twins_before_the_flip_and_reports_the_time(published: Published, key: Key) -> None:
    report = published.report
    catalog = report["catalog"]
    stem = catalog.removesuffix(".json")
    assert report["signed"][-1] == SIGNED_INDEX_KEY
    assert set(report["signed"]) == {f"{stem}.sjson", f"{catalog}.asc", "streams/v1/images.sjson",
                                     "streams/v1/images.json.asc", SIGNED_INDEX_KEY}
    assert 0 < report["signing_seconds"] < 30
    signed_index = published.get(SIGNED_INDEX_KEY)
    assert signed_index.startswith(b"-----BEGIN PGP SIGNED MESSAGE-----")
    assert f'"path":"{stem}.sjson"'.encode() in signed_index
    assert published.get(f"{stem}.sjson").startswith(b"-----BEGIN PGP SIGNED MESSAGE-----")
    index = json.loads(published.get("streams/v1/index.json"))
    assert index["index"]["images"]["path"] == catalog  # index.json still names the unsigned catalog


def test_sstream_query_verifies_and_lists_the_images(published: Published, key: Key, tls_files: TlsFiles) -> None:
    out = sstream_query(published, key, tls_files)
    assert out.returncode == 0, out.stderr
    catalog = json.loads(published.get(published.report["catalog"]))
    expected = {f"{p} {v} {i} {item['path']}" for p, product in catalog["products"].items()
                for v, version in product["versions"].items() for i, item in version["items"].items()}
    assert set(out.stdout.split("\n")) - {""} == expected
    assert len(expected) == 6  # lxd.tar.xz, incus.tar.xz and the rootfs of each product


def test_ssb_verify_keyring_checks_every_signature(published: Published, key: Key) -> None:
    out = ssb("verify", "--base-url", published.url, "--keyring", str(key.keyring),
              env={"SSL_CERT_FILE": str(published.server.ca_file)})
    assert out.returncode == 0, out.stderr
    # index.sjson, images-<hash>.sjson, images-<hash>.json.asc, images.sjson, images.json.asc
    assert "5 signatures verified" in out.stdout
    other = key.home / "other.gpg"
    other.write_bytes(b"")
    wrong = ssb("verify", "--base-url", published.url, "--keyring", str(other),
                env={"SSL_CERT_FILE": str(published.server.ca_file)})
    assert wrong.returncode == 1
    assert f"streams/v1/index.sjson: signed by key {key.fingerprint[-16:]}, which is not in the keyring" in wrong.stderr


def test_a_flipped_byte_fails_sstream_query_and_verify(published: Published, key: Key, tls_files: TlsFiles) -> None:
    twin = published.report["catalog"].removesuffix(".json") + ".sjson"
    original = published.get(twin)
    at = original.index(b'"products":') + 2  # inside the signed text: "products" -> "qroducts"
    try:
        published.put(twin, original[:at] + bytes([original[at] + 1]) + original[at + 1:])
        query = sstream_query(published, key, tls_files)
        assert query.returncode != 0
        # python-simplestreams reports it as gpgv's failure (a CalledProcessError traceback: its way)
        assert f"['gpgv', '--keyring={key.keyring}', '-']' returned non-zero exit status 1" in query.stderr
        out = ssb("verify", "--base-url", published.url, "--keyring", str(key.keyring),
                  env={"SSL_CERT_FILE": str(published.server.ca_file)})
        assert out.returncode == 1
        assert f"{twin}: BAD signature: the signed content was changed" in out.stderr
        assert out.stderr.count("\n  - ") == 1  # the unsigned tree and the other signatures are fine
    finally:
        published.put(twin, original)


def test_sstream_mirror_mirrors_the_signed_tree(published: Published, key: Key, tls_files: TlsFiles,
                                                tmp_path: Path) -> None:
    out = tmp_path / "mirror"
    done = subprocess.run([need("sstream-mirror"), "--keyring", str(key.keyring), f"{published.url}/", str(out)],
                          env=reader_env(tls_files), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    catalog = json.loads(published.get(published.report["catalog"]))
    paths = {item["path"] for product in catalog["products"].values() for version in product["versions"].values()
             for item in version["items"].values()}
    for path in paths:  # every file, checked by sstream-mirror against the signed catalog's sha256
        assert (out / path).read_bytes() == published.get(path)
    assert (out / SIGNED_INDEX_KEY).exists()


def test_lxd_still_lists_the_signed_tree(published: Published, tls_files: TlsFiles, tmp_path: Path) -> None:
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
    lxc.remote_add("signed", published.url)
    catalog = json.loads(published.get(published.report["catalog"]))
    expected = set()
    for product in catalog["products"].values():
        for version in product["versions"].values():
            meta = version["items"]["lxd.tar.xz"]
            expected |= {v for k, v in meta.items() if k.startswith("combined_") and k.endswith("_sha256")}
    assert {image["fingerprint"] for image in lxc.image_list("signed")} == expected


def test_a_missing_or_expired_key_publishes_nothing(published: Published, key: Key) -> None:
    published.upload_version("busybox/amd64/default", "squashfs", "20260102_1000")
    before = published.snapshot()
    cases = {"nobody@example.org": "no such key in the GnuPG home", key.expired: "the key has expired or is revoked"}
    for wrong, reason in cases.items():
        out = published.publish("--sign-key", wrong)
        assert out.returncode == 1
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith(f"error: signing key {wrong} (GnuPG home ")
        assert lines[0].endswith(f"{reason}; nothing was published")
        assert published.snapshot() == before
    # a gpg that hangs is cut off after signing.timeout: one line as well
    hang = published.work / "bin"
    hang.mkdir(exist_ok=True)
    (hang / "gpg").write_text("#!/bin/sh\nexec sleep 30\n")
    (hang / "gpg").chmod(0o755)
    conf = published.conf.read_text()
    published.conf.write_text(conf.replace("detached: true", "detached: true, timeout: 1s"))
    try:
        started = time.monotonic()
        out = published.publish(env={"PATH": f"{hang}:{os.environ['PATH']}"})
        assert time.monotonic() - started < 20
    finally:
        published.conf.write_text(conf)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert "gpg did not finish within 1s" in out.stderr
    assert published.snapshot() == before


def test_an_old_catalogs_signed_files_are_purged_after_the_grace(published: Published, key: Key) -> None:
    first = published.report["catalog"]
    published.upload_version("busybox/amd64/tarxz", "tarxz", "20260102_1100")  # days 1: a new catalog
    out = published.publish("--json")
    assert out.returncode == 0, out.stderr
    second = json.loads(out.stdout)["catalog"]
    assert second != first
    keys = set(published.snapshot())
    # grace 0: the first catalog, its .sjson twin and its .asc went in the same run
    assert not {first, signed_key(first), first + ".asc"} & keys
    assert {second, signed_key(second), second + ".asc", SIGNED_INDEX_KEY} <= keys
    assert re.search(rf'"path":"{re.escape(signed_key(second))}"', published.get(SIGNED_INDEX_KEY).decode())
    ok = ssb("verify", "--base-url", published.url, "--keyring", str(key.keyring),
             env={"SSL_CERT_FILE": str(published.server.ca_file)})
    assert ok.returncode == 0, ok.stderr
