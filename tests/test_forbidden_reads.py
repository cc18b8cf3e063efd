"""Issue 19 point 5: S3 answers 403, not 404, for a missing key to anonymous readers.

With a GetObject-only bucket policy (what the README and most AWS users set; Ceph RGW does the
same), a missing key is 403 AccessDenied. A file whose absence is normal (the LXC index of a tree
without LXC images, index.sjson of an unsigned source, a detached signature) answered 403 counts
as absent, said once per run; a file the tree needs answered 403 is one line saying that the
bucket policy must allow s3:GetObject.

Real parts: a published folder behind a loopback HTTPS server that answers as S3 does (403 for
every key that is not a file: realparts.serve_https_static(missing=403)), and SeaweedFS, which
answers 404 inside a policy's resources but 403 outside them, so a policy that leaves meta/* out
gives the AWS answer for the LXC index. Every command runs as a user runs it (python -m ssb_s3).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from realparts import S3Server, TlsFiles, serve_https_static
from test_hardening_remote import PRODUCT, Target, one_error_line, run
from test_mirror import run_cli, write_upstream
from test_signing import Key, key, local_tree  # noqa: F401 (key: fixture)

SAID_ONCE = "this server answers 403 for missing keys, as S3 does for readers without s3:ListBucket"
GET_OBJECT = "the bucket policy must allow s3:GetObject on this key"


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree published to a folder: one product, no LXC image (so no meta/1.0/index-* files)."""
    target = Target(tmp_path_factory.mktemp("published"))
    target.add_version()
    out = target.cli("publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    assert not (target.local / "meta").exists()  # the keys verify asks for, and S3 answers 403
    return target.local


def _env(tls: TlsFiles) -> dict[str, str]:
    return {"SSL_CERT_FILE": str(tls.ca_cert)}


def test_served_tree_commands_take_a_403_for_a_missing_optional_key_as_absent(
        published: Path, tls_files: TlsFiles) -> None:
    log: list[str] = []
    with serve_https_static(published, tls_files, log, missing=403) as url:
        verify = run("verify", "--base-url", url, "--hashes", env=_env(tls_files))
        listed = run("list", "--base-url", url, "--format", "json", env=_env(tls_files))
        compat = run("compat", "--base-url", url, "--format", "json", env=_env(tls_files))
    assert any(line.startswith("GET /meta/1.0/index-system 403") for line in log), log  # the S3 answer was met
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.startswith("OK: 1 catalog, 1 products, 1 versions") and "hashes verified" in verify.stdout
    assert verify.stderr.count(SAID_ONCE) == 1, verify.stderr  # said once, whatever the number of keys
    assert f"{url}/meta/1.0/index-system" in verify.stderr
    assert listed.returncode == 0, listed.stderr
    assert [row["product"] for row in json.loads(listed.stdout)] == [PRODUCT]
    assert compat.returncode == 0, compat.stderr
    assert [row["product"] for row in json.loads(compat.stdout)] == [PRODUCT]


def test_verify_keyring_takes_a_403_for_a_detached_signature_the_tree_lacks_as_absent(
        key: Key, tls_files: TlsFiles, tmp_path: Path) -> None:  # noqa: F811 (key: the fixture)
    """A tree signed without detached .asc files (the default): verify --keyring asks for them."""
    conf = local_tree(tmp_path)
    public = tmp_path / "public"
    out = run("-c", str(conf), "-t", str(public), "publish", "--refresh-manifests", "--sign-key", key.fingerprint,
              env={"GNUPGHOME": str(key.home)})
    assert out.returncode == 0, out.stderr
    assert not list(public.rglob("*.asc"))
    log: list[str] = []
    with serve_https_static(public, tls_files, log, missing=403) as url:
        verify = run("verify", "--base-url", url, "--keyring", str(key.keyring), env=_env(tls_files))
        (public / "streams/v1/index.sjson").unlink()
        unsigned = run("verify", "--base-url", url, "--keyring", str(key.keyring), env=_env(tls_files))
    assert any(line.startswith("GET /streams/v1/images.json.asc 403") for line in log), log
    assert verify.returncode == 0, verify.stderr
    assert "3 signatures verified" in verify.stdout and verify.stderr.count(SAID_ONCE) == 1, verify.stderr
    line = one_error_line(unsigned)  # with --keyring, index.sjson is required
    assert line.startswith(f"  - {url}/streams/v1/index.sjson: unreadable: HTTP 403 Forbidden: ") and GET_OBJECT in line


def test_a_403_on_a_file_the_tree_needs_names_s3_getobject(published: Path, tls_files: TlsFiles,
                                                           tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(published, tree)
    index = json.loads((tree / "streams/v1/index.json").read_text())
    catalog = json.loads((tree / index["index"]["images"]["path"]).read_text())
    root = catalog["products"][PRODUCT]["versions"]["20260101_0000"]["items"]["root.squashfs"]["path"]
    (tree / root).unlink()
    with serve_https_static(tree, tls_files, missing=403) as url:
        verify = run("verify", "--base-url", url, env=_env(tls_files))
        (tree / "streams/v1/index.json").unlink()
        listed = run("list", "--base-url", url, env=_env(tls_files))
        compat = run("compat", "--base-url", url, env=_env(tls_files))
    line = one_error_line(verify)
    assert line.startswith(f"  - {url}/{root}: named by {index['index']['images']['path']} but HTTP 403 Forbidden: "
                           f"missing or not readable; {GET_OBJECT}"), line
    for out in (listed, compat):
        line = one_error_line(out)
        assert line.startswith(f"  - {url}/streams/v1/index.json: unreadable: HTTP 403 Forbidden: "), line
        assert GET_OBJECT in line


def test_mirror_from_a_server_answering_403_for_missing_keys(tls_files: TlsFiles, tmp_path: Path) -> None:
    """An unsigned upstream has no index.sjson: its 403 is "unsigned", with and without --no-verify;
    a file the catalog names answering 403 leaves that version out with the s3:GetObject line."""
    root = tmp_path / "up"
    catalog = write_upstream(root, [("busybox:1.36:amd64:default", "amd64", "1.36", "default",
                                     ("20260101_0000", "20260102_0000"))])
    versions = catalog["products"]["busybox:1.36:amd64:default"]["versions"]
    with serve_https_static(root, tls_files, missing=403) as url:
        plain = run_cli(None, str(tmp_path / "a"), "mirror", url, "--json", ca=tls_files.ca_cert)
        unverified = run_cli(None, str(tmp_path / "b"), "mirror", url, "--no-verify", "--json", ca=tls_files.ca_cert)
        gone = versions["20260102_0000"]["items"]["root.squashfs"]["path"]
        (root / gone).unlink()
        partial = run_cli(None, str(tmp_path / "c"), "mirror", url, "--json", ca=tls_files.ca_cert)
    for out in (unverified, plain):
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["signed"] is False and report["versions"] == 2 and not report["failed"]
        assert out.stderr.count(SAID_ONCE) == 1 and "streams/v1/index.sjson" in out.stderr
    assert partial.returncode == 1 and "Traceback" not in partial.stderr
    failed = json.loads(partial.stdout)["failed"]
    assert len(failed) == 1 and failed[0].startswith(
        f"product busybox:1.36:amd64:default version 20260102_0000: not mirrored: {url}/{gone}: HTTP 403 Forbidden")
    assert GET_OBJECT in failed[0]
    served = json.loads((tmp_path / "c/streams/v1/images.json").read_text())
    assert set(served["products"]["busybox:1.36:amd64:default"]["versions"]) == {"20260101_0000"}


def test_a_prefix_path_ssb_json_answering_403_names_s3_getobject(tls_files: TlsFiles, tmp_path: Path) -> None:
    target = Target(tmp_path)
    target.add_version()
    target.env.update(_env(tls_files))
    empty = tmp_path / "ci"
    empty.mkdir()
    with serve_https_static(empty, tls_files, missing=403) as url:
        target.write_tree(prefix_path=f"{url}/ns")
        out = target.cli("publish")
    line = one_error_line(out)
    assert f"product {PRODUCT}: {url}/ns/busybox/amd64/ssb.json: HTTP 403 Forbidden: missing or not readable; " \
           f"{GET_OBJECT}" in line, line
    assert not (target.local / "streams").exists()  # nothing published


def _policy(s3: S3Server, bucket: str, prefixes: list[str]) -> None:
    """Anonymous s3:GetObject on these key prefixes only (what the README tells AWS users to set)."""
    statement: dict[str, Any] = {"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
                                 "Resource": [f"arn:aws:s3:::{bucket}/{p}*" for p in prefixes]}
    s3.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17",
                                                                     "Statement": [statement]}))


def test_verify_on_seaweedfs_with_getobject_only_on_the_tree_files(s3_server: S3Server, bucket: str,
                                                                   tmp_path: Path, tls_files: TlsFiles) -> None:
    """SeaweedFS answers 403 outside the policy's resources: meta/* left out is the AWS answer for
    the LXC index of a tree without LXC images; the image folder left out is a required file."""
    target = Target(tmp_path, s3_server, bucket)
    target.add_version()
    out = target.cli("publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    url = s3_server.public_url(bucket)
    _policy(s3_server, bucket, ["streams/", "busybox/", "index.html"])
    ok = run("verify", "--base-url", url, env=_env(tls_files))
    assert ok.returncode == 0 and ok.stdout.startswith("OK: 1 catalog"), ok.stderr
    assert ok.stderr.count(SAID_ONCE) == 1 and f"{url}/meta/1.0/index-system" in ok.stderr
    _policy(s3_server, bucket, ["streams/"])
    bad = run("verify", "--base-url", url, env=_env(tls_files))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    problems = [line for line in bad.stderr.splitlines() if line.startswith("  - ")]
    assert problems and all("HTTP 403 Forbidden" in p and GET_OBJECT in p and f"{url}/busybox/amd64/" in p
                            for p in problems), bad.stderr
