"""Issue 11: `ssb-s3 withdraw PRODUCT [VERSION|FINGERPRINT] [--reason TEXT] [--force] [--dry-run]`.

End to end: a tree published to SeaweedFS, read over HTTPS by the real `lxc` client (as
tests/test_list.py does). After the withdraw the client no longer lists the version and the alias
resolves to the remaining one; the files stay in the bucket until the grace is over; a later
`publish --refresh-manifests` does not bring the version back; `--dry-run` leaves the bucket
byte-identical. The refusals (unknown or ambiguous version, last version without --force, a bad
reason, a held lease) run on a local folder: one line, exit 1, the tree unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import s3_storage, ssb, tree_product, write_tree_yml
from realparts import LxdClient, S3Server, TlsFiles, make_image, need

from ssb_s3.storage.backends import open_store
from ssb_s3.storage.lease import Lease

OLD, NEW = "20260101_1000", "20260102_1000"
PRODUCT, OTHER = "bb:1.36:amd64:default", "other:1.36:amd64:default"
PRODUCTS = (tree_product(PRODUCT, directory="bb", days=3, aliases=["bb"]),
            tree_product(OTHER, os="Other", directory="other", aliases=["other"]))


def build(root: Path) -> None:
    for version in (OLD, NEW):
        make_image(root / "bb" / version, kind="squashfs", serial=version, description=f"bb {version}")
    make_image(root / "other" / OLD, kind="squashfs", serial=OLD, description="other", os_name="Other")


def combined(manifest: dict[str, Any], version: str) -> str:
    fingerprint: str = manifest["versions"][version]["items"]["lxd.tar.xz"]["combined_squashfs_sha256"]
    return fingerprint


# --- end to end: SeaweedFS over HTTPS, the real lxc client ------------------------------------


def bucket_state(server: S3Server, bucket: str) -> dict[str, bytes]:
    """Every object of the bucket and its bytes."""
    client = server.client()
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def lxc_view(client: LxdClient) -> tuple[set[str], dict[str, str]]:
    """(fingerprints listed, alias -> fingerprint) as `lxc image list/alias list REMOTE:` say, uncached."""
    client.clear_cache()
    listed = {image["fingerprint"] for image in client.image_list("t")}
    return listed, {a["name"]: a["target"] for a in client.alias_list("t")}


def test_withdraw_end_to_end_with_lxc(s3_server: S3Server, bucket: str, tmp_path: Path, tls_files: TlsFiles) -> None:
    need("lxc")
    build(tmp_path / "images")
    client = s3_server.client()
    for path in sorted((tmp_path / "images").rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, path.relative_to(tmp_path / "images").as_posix())
    conf = write_tree_yml(tmp_path / "tree.yml", *PRODUCTS, storage=s3_storage(s3_server), grace="1h")
    env = {**os.environ, **s3_server.credentials}
    base = ("-c", str(conf), "-t", f"s3://{bucket}")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return ssb(*base, *args, env=env)

    assert run("publish", "--refresh-manifests").returncode == 0
    manifest = json.loads(bucket_state(s3_server, bucket)["bb/ssb.json"])
    old_fp, new_fp = combined(manifest, OLD), combined(manifest, NEW)
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
    lxc.remote_add("t", s3_server.public_url(bucket))
    listed, aliases = lxc_view(lxc)
    assert {old_fp, new_fp} <= listed and aliases["bb"] == new_fp

    # --dry-run: says what would change, writes nothing (the bucket byte for byte)
    before = bucket_state(s3_server, bucket)
    dry = run("withdraw", PRODUCT, NEW, "--reason", "broken DHCP", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert bucket_state(s3_server, bucket) == before
    lines = dry.stdout.splitlines()
    assert lines[0] == f"would withdraw {PRODUCT} {NEW} (images {new_fp[:12]}): broken DHCP"
    assert f"- {PRODUCT} {NEW} leaves the catalog" in lines
    assert f"alias bb (x86_64 container): {NEW} -> {OLD}" in lines
    kept = next(line for line in lines if line.startswith(f"files bb/{NEW}/ (2 objects, "))
    assert "stay: withdrawn; kept until " in kept and "(grace 3600s)" in kept, kept
    assert lines[-1].startswith("dry run: catalog streams/v1/images-") and lines[-1].endswith("nothing written")

    # the withdraw, named by a 12-digit fingerprint prefix
    started = time.monotonic()
    out = run("withdraw", PRODUCT, new_fp[:12], "--reason", "broken DHCP")
    seconds = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    print(f"withdraw on SeaweedFS: {seconds:.2f}s")
    assert out.stdout.splitlines()[0] == f"withdrawn {PRODUCT} {NEW} (images {new_fp[:12]}): broken DHCP"
    listed, aliases = lxc_view(lxc)
    assert new_fp not in listed and old_fp in listed
    assert aliases["bb"] == old_fp  # the alias now resolves to the remaining version
    after = bucket_state(s3_server, bucket)
    assert {k for k in before if k.startswith(f"bb/{NEW}/")} <= after.keys()  # files still there (grace 1h)
    assert all(after[k] == before[k] for k in before if k.startswith(("bb/2", "other/")))
    record = json.loads(after["bb/ssb.json"])
    assert NEW not in record["versions"] and OLD in record["versions"]
    assert record["withdrawn"][NEW]["reason"] == "broken DHCP"
    assert record["withdrawn"][NEW]["entry"] == manifest["versions"][NEW]  # nothing is lost
    rows = json.loads(run("list", "--format", "json").stdout)
    assert [(r["product"], r["version"]) for r in rows] == [(PRODUCT, OLD), (OTHER, OLD)]

    # a rescan does not bring it back; within the grace its files stay
    again = run("publish", "--refresh-manifests")
    assert again.returncode == 0, again.stderr
    assert f"+ {PRODUCT} {NEW}" not in again.stdout
    assert "later: 1 folder(s), 2 objects, " in again.stdout
    assert json.loads(bucket_state(s3_server, bucket)["bb/ssb.json"]) == record
    listed, _ = lxc_view(lxc)
    assert new_fp not in listed
    assert f"bb/{NEW}/rootfs.squashfs" in bucket_state(s3_server, bucket)

    # once the grace is over, a later publish deletes them (and the ssb.json record stays)
    gone = run("publish", "--grace", "0")
    assert gone.returncode == 0, gone.stderr
    assert f"deleted bb/{NEW} (2 objects" in gone.stdout and ": withdrawn" in gone.stdout
    final = bucket_state(s3_server, bucket)
    assert not [k for k in final if k.startswith(f"bb/{NEW}/")]
    assert f"bb/{OLD}/rootfs.squashfs" in final and f"other/{OLD}/rootfs.squashfs" in final
    assert NEW in json.loads(final["bb/ssb.json"])["withdrawn"]
    assert run("publish", "--refresh-manifests").returncode == 0
    listed, aliases = lxc_view(lxc)
    assert new_fp not in listed and aliases["bb"] == old_fp


# --- a local folder: refusals, fingerprints, --force, the lease ---------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local tree published by the CLI: bb with two versions, other with one."""
    root = tmp_path_factory.mktemp("withdraw")
    build(root / "out")
    write_tree_yml(root / "tree.yml", *PRODUCTS, grace="1h")
    out = ssb("-c", str(root / "tree.yml"), "-t", str(root / "out"), "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    return root


@pytest.fixture
def local(template: Path, tmp_path: Path) -> Path:
    shutil.copytree(template, tmp_path / "t")
    return tmp_path / "t"


def tree_state(root: Path) -> dict[str, bytes]:
    """Every file of the published tree (the local lease's lock file aside)."""
    out = root / "out"
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".ssb-s3" not in p.parts}


def run_local(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return ssb("-c", str(root / "tree.yml"), "-t", str(root / "out"), *args)


def served_versions(root: Path) -> dict[str, list[str]]:
    index = json.loads((root / "out/streams/v1/index.json").read_text())
    catalog = json.loads((root / "out" / index["index"]["images"]["path"]).read_text())
    return {name: sorted(p["versions"]) for name, p in catalog["products"].items()}


def manifest_of(root: Path, folder: str = "bb") -> dict[str, Any]:
    found: dict[str, Any] = json.loads((root / "out" / folder / "ssb.json").read_text())
    return found


@pytest.mark.parametrize("args, expected", [
    ((PRODUCT, "20260105_1000"), f"error: product {PRODUCT}: no version or fingerprint 20260105_1000 "
                                 f"(versions: {NEW}, {OLD})"),
    ((PRODUCT, "abcdef"), f"error: product {PRODUCT}: no version or fingerprint abcdef (versions: {NEW}, {OLD}); "
                          "a fingerprint prefix needs at least 12 hex digits"),
    ((PRODUCT, "0" * 64), f"error: product {PRODUCT}: no version or fingerprint {'0' * 64} "),
    ((PRODUCT, "../x y"), f'error: product {PRODUCT}: "../x y" is neither a version name nor a fingerprint'),
    ((OTHER, OLD), f"error: product {OTHER}: {OLD} is the last version it would publish; withdrawing it takes "
                   "the product out of the catalog: add --force to do that"),
    ((OTHER,), f"error: product {OTHER}: {OLD} is the last version it would publish"),
    (("nope", OLD), "error: {conf}: no product named nope"),
    ((PRODUCT, NEW, "--reason", "two\nlines"), "error: --reason: contains U+000A (line break LF), expected one line "
                                               "of printable text"),
    ((PRODUCT, NEW, "--reason", "bell\x07"), "error: --reason: contains U+0007 (control character), expected one line"),
    # issue 20 point 14: what Python's str.splitlines or a terminal takes as a line break or a control
    ((PRODUCT, NEW, "--reason", "a\x85b"), "error: --reason: contains U+0085 (line break NEL), expected one line"),
    ((PRODUCT, NEW, "--reason", "a\x9b31mb"), "error: --reason: contains U+009B (control character), expected one"),
    ((PRODUCT, NEW, "--reason", "a\u2028b"), "error: --reason: contains U+2028 (line separator), expected one line"),
    ((PRODUCT, NEW, "--reason", "gpj.exe\u202e"), "error: --reason: contains U+202E (bidirectional override), "
                                                   "expected one line"),
    ((PRODUCT, NEW, "--reason", "x" * 501), "error: --reason: 501 characters, expected at most 500"),
])
def test_refusals_are_one_line_and_change_nothing(local: Path, args: tuple[str, ...], expected: str) -> None:
    before = tree_state(local)
    out = run_local(local, "withdraw", *args)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert out.stderr.startswith(expected.format(conf=local / "tree.yml")), out.stderr
    assert tree_state(local) == before


def test_ambiguous_prefix_lists_the_candidates(local: Path) -> None:
    """Two versions whose fingerprints share their first 12 digits (forged in ssb.json before the
    first publish: real ones collide only by chance)."""
    path = local / "out/bb/ssb.json"
    manifest = json.loads(path.read_text())
    forged = {v: "abcdef012345" + combined(manifest, v)[12:] for v in (OLD, NEW)}
    for version, fingerprint in forged.items():
        manifest["versions"][version]["items"]["lxd.tar.xz"]["combined_squashfs_sha256"] = fingerprint
    path.write_text(json.dumps(manifest))
    shutil.rmtree(local / "out/streams")
    assert run_local(local, "publish").returncode == 0
    before = tree_state(local)
    out = run_local(local, "withdraw", PRODUCT, "ABCDEF012345")
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"error: product {PRODUCT}: fingerprint prefix ABCDEF012345 is ambiguous, it "
                                 f"matches {forged[OLD][:16]}… ({OLD}), {forged[NEW][:16]}… ({NEW}); give more")
    assert tree_state(local) == before
    differ = next(i for i, (a, b) in enumerate(zip(forged[OLD], forged[NEW], strict=True)) if a != b)
    out = run_local(local, "withdraw", PRODUCT, forged[OLD][:differ + 1])  # enough digits: one version
    assert out.returncode == 0, out.stderr
    assert served_versions(local)[PRODUCT] == [NEW]


def test_full_fingerprint_and_default_newest(local: Path) -> None:
    manifest = manifest_of(local)
    out = run_local(local, "withdraw", PRODUCT, combined(manifest, OLD))
    assert out.returncode == 0, out.stderr
    assert served_versions(local)[PRODUCT] == [NEW]
    assert "alias" not in out.stdout  # the alias stays on the newest version
    out = run_local(local, "withdraw", PRODUCT, OLD)
    assert out.returncode == 1 and out.stderr.startswith(f"error: product {PRODUCT}: version {OLD} was already "
                                                         "withdrawn at 20")
    out = run_local(local, "withdraw", PRODUCT)  # no version: the newest published, which is the last
    assert out.returncode == 1 and f"{NEW} is the last version it would publish" in out.stderr


def test_force_takes_the_last_version_and_the_product_out(local: Path) -> None:
    out = run_local(local, "withdraw", OTHER, "--force", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["published"] and report["withdrawn"]["version"] == OLD and report["withdrawn"]["reason"] == ""
    assert served_versions(local) == {PRODUCT: [OLD, NEW]}
    assert f"other/{OLD}/rootfs.squashfs" in tree_state(local)  # the grace (1h) keeps its files
    refreshed = run_local(local, "publish", "--refresh-manifests")
    assert refreshed.returncode == 0 and f"product {OTHER}: every version is withdrawn" in refreshed.stderr
    assert served_versions(local) == {PRODUCT: [OLD, NEW]}


def test_a_withdraw_stopped_before_its_flip_converges_on_a_rerun(local: Path) -> None:
    """ssb.json is written before the views and the flip: a crash in between leaves the version
    recorded as withdrawn but still served. Running withdraw again finishes it."""
    path = local / "out/bb/ssb.json"
    manifest = json.loads(path.read_text())
    entry = manifest["versions"].pop(NEW)
    manifest["withdrawn"] = {NEW: {"withdrawn_at": "2026-12-01T00:00:00Z", "reason": "first try", "entry": entry}}
    path.write_text(json.dumps(manifest))
    assert served_versions(local)[PRODUCT] == [OLD, NEW]  # what the crashed run left
    out = run_local(local, "withdraw", PRODUCT, NEW, "--reason", "second try")
    assert out.returncode == 0, out.stderr
    assert served_versions(local)[PRODUCT] == [OLD]
    assert manifest_of(local)["withdrawn"][NEW]["reason"] == "first try"  # the record is not rewritten


def test_a_held_lease_makes_withdraw_wait_then_refuse(local: Path) -> None:
    before = tree_state(local)
    with Lease(open_store(str(local / "out")), ttl=60, timeout=0, purpose="publish"):
        started = time.monotonic()
        out = run_local(local, "withdraw", PRODUCT, NEW, "--lock-timeout", "3s")
        waited = time.monotonic() - started
    waiting, error = out.stderr.splitlines()  # as publish: the wait (once it lasted 2 s), then the refusal
    assert out.returncode == 1 and "lease.json is held: publish by" in waiting and "waiting up to 1s" in waiting
    assert error.startswith("error: ") and "lease.json is held" in error and "force-unlock" in error, error
    assert waited >= 3
    assert tree_state(local) == before
    assert run_local(local, "withdraw", PRODUCT, NEW).returncode == 0  # released: it goes through


def test_ssb_json_withdrawn_section_is_checked_against_the_schema(local: Path) -> None:
    path = local / "out/bb/ssb.json"
    manifest = json.loads(path.read_text())
    manifest["withdrawn"] = {NEW: {"withdrawn_at": "yesterday", "reason": "a\nb", "entry": {"items": {}}}}
    path.write_text(json.dumps(manifest))
    out = run_local(local, "publish")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    for field in (f"withdrawn.{NEW}.withdrawn_at", f"withdrawn.{NEW}.reason", f"withdrawn.{NEW}.entry.items"):
        assert field in out.stderr, out.stderr


def test_withdrawn_section_fast_path_agrees_with_the_schema() -> None:
    """The hand-written fast path of ssb.json (schemas._fast_ssb) says valid only when jsonschema
    does, with and without the `withdrawn` section; the reason's bound is the schema's."""
    from jsonschema import Draft202012Validator

    from ssb_s3.core.withdrawal import MAX_REASON
    from ssb_s3.schemas import _fast_ssb, load_schema, schema_problems

    item = {"ftype": "lxd_combined.tar.gz", "path": f"p/{OLD}/lxd_combined.tar.gz", "size": 1, "sha256": "a" * 64}
    entry = {"items": {"lxd_combined.tar.gz": item}}
    good = {"withdrawn_at": "2026-12-01T00:00:00Z", "reason": "x" * MAX_REASON, "entry": entry}
    variants: list[tuple[Any, bool]] = [
        (None, True), ({}, True), ({NEW: good}, True), ({NEW: {k: v for k, v in good.items() if k != "reason"}}, True),
        ({NEW: {**good, "reason": "x" * (MAX_REASON + 1)}}, False), ({NEW: {**good, "reason": "a\tb"}}, False),
        ({NEW: {**good, "withdrawn_at": "2026-12-01 00:00:00"}}, False), ({NEW: {**good, "entry": {}}}, False),
        ({"latest": good}, False), ({NEW: {"entry": entry}}, False), ([], False),
    ]
    validator = Draft202012Validator(load_schema("ssb"))
    for withdrawn, valid in variants:
        doc: dict[str, Any] = {"name": "p", "versions": {OLD: entry}}
        if withdrawn is not None:
            doc["withdrawn"] = withdrawn
        assert validator.is_valid(doc) is valid, withdrawn
        assert _fast_ssb(doc) is valid, withdrawn  # valid ones take the fast path, and only they do
        assert bool(schema_problems(doc, "ssb", "ssb.json")) is not valid


def test_the_pure_plan_of_a_withdraw() -> None:
    """Withdraw is one more input to plan_publish: the ssb.json to write (If-Match the ETag read),
    the catalog without the version, and its files waiting for the grace; nothing else changes."""
    from dataclasses import replace

    from test_plan import a_tree, read, served

    from ssb_s3.core.plan import PlanOptions, Withdrawal, plan_publish

    tree = a_tree(days=3)
    before = served(tree, {"a": read("a", [OLD, NEW]), "b": read("b", [OLD])})
    assert sorted(before.served["products"]["a"]["versions"]) == [OLD, NEW]
    snap = replace(before, products={"a": replace(before.products["a"], etag="etag-a")})
    plan = plan_publish(tree, snap, PlanOptions(grace=3600, withdraw=Withdrawal("a", NEW, "why")), only={"a"})
    assert not plan.refused and plan.catalog_changed
    [write] = plan.manifest_writes
    assert (write.product, write.etag) == ("a", "etag-a")
    assert list(write.manifest["versions"]) == [OLD]
    assert write.manifest["withdrawn"][NEW] == {"withdrawn_at": "2026-01-11T00:00:00Z", "reason": "why",
                                                "entry": before.products["a"].manifest["versions"][NEW]}
    assert sorted(plan.catalog["products"]["a"]["versions"]) == [OLD]
    assert plan.catalog["products"]["b"] is before.served["products"]["b"]  # untouched
    assert [(i.version, i.reason.split(";")[0]) for i in plan.purge.delete_later] == [(NEW, "withdrawn")]
    assert plan.report.changes == {"a": {"added": [], "removed": [NEW], "versions": 1}}
    # once the grace is over, a later plain publish of the product deletes the files
    after = replace(snap, now=snap.now + 3601, index=plan.index.data, served_key=plan.catalog_key,
                    served=plan.catalog, catalogs={snap.served_key: snap.served},
                    products={"a": replace(snap.products["a"], manifest=write.manifest)})
    later = plan_publish(tree, after, PlanOptions(grace=3600), only={"a"})
    assert [(i.version, i.reason) for i in later.purge.delete_now] == [(NEW, "withdrawn")]
    assert not later.manifest_writes and not later.catalog_changed


def test_build_product_never_brings_a_withdrawn_image_back(local: Path, tmp_path: Path) -> None:
    """A rebuild identical to the withdrawn image, under a new name, is refused (its upload removed),
    and so is a new build that takes the withdrawn version's name."""
    withdrawn_files = tmp_path / "same"
    shutil.copytree(local / "out" / "bb" / NEW, withdrawn_files)
    out = run_local(local, "withdraw", PRODUCT, NEW, "--reason", "broken")
    assert out.returncode == 0, out.stderr
    before = tree_state(local)

    again = run_local(local, "build-product", PRODUCT, "--from-dir", str(withdrawn_files), "--version",
                      "20260103_1000", "--no-publish")
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert f"identical to withdrawn version {NEW}" in again.stderr, again.stderr
    assert tree_state(local) == before  # nothing recorded, the upload removed

    other = tmp_path / "other"
    make_image(other, kind="squashfs", serial="20260104_1000", description="a new build")
    named = run_local(local, "build-product", PRODUCT, "--from-dir", str(other), "--version", NEW, "--no-publish")
    assert named.returncode == 1 and "Traceback" not in named.stderr
    assert f"version {NEW} was withdrawn" in named.stderr, named.stderr
    assert tree_state(local) == before
    assert NEW not in served_versions(local)[PRODUCT]



def test_dry_run_shows_every_change_of_the_real_run(local: Path, tmp_path: Path) -> None:
    """Issue 20, point 19: with `days: 1`, withdrawing the newest version brings the older one,
    expired by retention, back into the catalog; the dry run said only that the withdrawn one left.
    Its report now lists every version the catalog gains or loses, as the real run's does."""
    conf = local / "tree.yml"
    conf.write_text(conf.read_text().replace("days: 3", "days: 1"))
    assert run_local(local, "publish").returncode == 0
    assert served_versions(local)[PRODUCT] == [NEW]
    before = tree_state(local)
    dry, dry_json = (run_local(local, "withdraw", PRODUCT, NEW, "--dry-run", *extra) for extra in ((), ("--json",)))
    assert dry.returncode == 0 and dry_json.returncode == 0, dry.stderr + dry_json.stderr
    assert tree_state(local) == before
    back = f"+ {PRODUCT} {OLD} enters the catalog (within retention once {NEW} is withdrawn)"
    assert back in dry.stdout.splitlines(), dry.stdout
    twin = tmp_path / "twin"  # the same tree, for the real run's text report
    shutil.copytree(local, twin)
    real, real_json = run_local(twin, "withdraw", PRODUCT, NEW), run_local(local, "withdraw", PRODUCT, NEW, "--json")
    assert real.returncode == 0 and real_json.returncode == 0, real.stderr + real_json.stderr
    assert served_versions(local)[PRODUCT] == served_versions(twin)[PRODUCT] == [OLD]
    planned, done = json.loads(dry_json.stdout), json.loads(real_json.stdout)
    assert planned["changes"] == done["changes"] == {PRODUCT: {"added": [OLD], "removed": [NEW], "versions": 1}}
    assert (planned["catalog"], planned["products"], planned["versions"]) == \
        (done["catalog"], done["products"], done["versions"])
    assert [(i["folder"], i["objects"]) for i in planned["purge"]["delete_later"]] == \
        [(i["folder"], i["objects"]) for i in done["purge"]["delete_later"]] == [(f"bb/{NEW}", 2)]
    # the text: the real run's lines, but for the verbs, the times and the last line
    def same(lines: str, dry_run: bool) -> list[str]:
        lines = re.sub(r"kept until [0-9-]+ [0-9:]+ UTC", "kept until T", lines)
        return (lines.replace("would withdraw", "withdrawn") if dry_run else lines).splitlines()[:-1]

    said = same(dry.stdout, True)
    assert said == same(real.stdout, False)
    assert said[1:4] == [f"- {PRODUCT} {NEW} leaves the catalog", back, f"alias bb (x86_64 container): {NEW} -> {OLD}"]


def all_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, hidden ones too (a lock file, a lease)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_withdraw_never_writes_into_a_shared_source(tmp_path: Path) -> None:
    """Issue 20, point 16: two trees fed from one local `source:` folder. Withdrawing a version in
    tree A used to rewrite the source's ssb.json (and leave .ssb-s3/write.lock there), so tree B
    lost the version too. The withdrawal is A's record (its index.json): the source stays
    byte-identical, A's later publishes keep the version out, B still serves it."""
    source = tmp_path / "shared"
    for version in (OLD, NEW):
        make_image(source / "bb" / version, kind="squashfs", serial=version, description=f"bb {version}")
    roots = {name: tmp_path / name for name in ("a", "b")}
    for root in roots.values():
        root.mkdir()
        write_tree_yml(root / "tree.yml", tree_product(PRODUCT, directory="bb", days=3, source=str(source)),
                       grace="1h")
    made = ssb("-c", str(roots["a"] / "tree.yml"), "build-versions-manifest", "-p", PRODUCT)  # the source's owner
    assert made.returncode == 0, made.stderr
    for root in roots.values():
        assert run_local(root, "publish").returncode == 0
        assert served_versions(root) == {PRODUCT: [OLD, NEW]}
    shared = all_files(source)
    out = run_local(roots["a"], "withdraw", PRODUCT, NEW, "--reason", "broken on our hosts")
    assert out.returncode == 0, out.stderr
    assert f"- {PRODUCT} {NEW} leaves the catalog" in out.stdout.splitlines()
    assert all_files(source) == shared  # not a byte, not a lock file
    assert served_versions(roots["a"]) == {PRODUCT: [OLD]}
    index = json.loads((roots["a"] / "out/streams/v1/index.json").read_text())
    assert index["ssb_s3"]["withdrawn"][PRODUCT][NEW]["reason"] == "broken on our hosts"  # A's own record
    for args in (("publish",), ("publish", "--refresh-manifests")):  # A's later publishes honour it
        again = run_local(roots["a"], *args)
        assert again.returncode == 0, again.stderr
        assert served_versions(roots["a"]) == {PRODUCT: [OLD]}, args
    twice = run_local(roots["a"], "withdraw", PRODUCT, NEW)
    assert twice.returncode == 1 and f"version {NEW} was already withdrawn at 20" in twice.stderr
    assert all_files(source) == shared
    assert run_local(roots["b"], "publish").returncode == 0  # B, fed from the same source, still serves it
    assert served_versions(roots["b"]) == {PRODUCT: [OLD, NEW]}
    assert all_files(source) == shared


def test_the_trees_own_withdrawals_are_read_from_index_json_and_shape_checked() -> None:
    from ssb_s3.core.withdrawal import tree_recorded, with_recorded

    good = {"withdrawn_at": "2026-12-01T00:00:00Z", "entry": {"items": {}}, "reason": "r"}
    index = {"ssb_s3": {"withdrawn": {"p": {NEW: good, "../x": good, OLD: {"entry": "no"}}, "q": [], "r": {}}}}
    assert tree_recorded(json.dumps(index).encode()) == {"p": {NEW: good}}
    for hostile in (b"", b"[]", b'{"ssb_s3": {"withdrawn": "x"}}', b'{"ssb_s3": []}', b"not json"):
        assert tree_recorded(hostile) == {}
    manifest = {"name": "p", "versions": {OLD: {"items": {}}, NEW: {"items": {}}}}
    assert with_recorded(manifest, {NEW: good}) == {"name": "p", "versions": {OLD: {"items": {}}},
                                                    "withdrawn": {NEW: good}}
    assert with_recorded(manifest, {}) is manifest


def test_a_mirrored_version_is_withdrawn_and_stays_withdrawn(s3_server: S3Server, bucket: str, tmp_path: Path,
                                                             tls_files: TlsFiles) -> None:
    """Issue 20, point 14: a version `mirror` put in the tree could not be withdrawn ("tree.yml: file
    not found" on a mirror-only tree, "no product named …" with a tree.yml not declaring it). Now it
    leaves the catalog (the real lxc no longer lists it), the withdrawal is this tree's record
    (index.json) and wins over the upstream naming it at the next mirror, and its files go only
    after the grace, as for our own products."""
    need("lxc")
    from test_mirror import PRODUCTS, bucket_keys, fingerprints, run_cli, served, write_upstream

    root, target = tmp_path / "up", f"s3://{bucket}"
    catalog = write_upstream(root, [PRODUCTS[0], PRODUCTS[2]])
    name, single = PRODUCTS[0][0], PRODUCTS[2][0]  # two versions (the newer with a delta), and one
    old, new = PRODUCTS[0][4]
    first = run_cli(s3_server, target, "mirror", str(root))  # no tree.yml: a tree of mirrored products
    assert first.returncode == 0, first.stderr
    old_fps, new_fps = (fingerprints(catalog, "lxd.tar.xz", {(name, v)}) for v in (old, new))
    lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
    lxc.remote_add("t", s3_server.public_url(bucket))
    listed, _ = lxc_view(lxc)
    assert old_fps | new_fps <= listed
    folder = f"images/busybox/1.36/amd64/default/{old}/"
    files = {k for k in bucket_keys(s3_server, bucket) if k.startswith(folder)}
    assert len(files) == 4

    out = run_cli(s3_server, target, "withdraw", name, old, "--reason", "broken upstream build")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith(f"withdrawn {name} {old} (images ")
    assert f"- {name} {old} leaves the catalog" in out.stdout.splitlines()
    listed, aliases = lxc_view(lxc)
    assert not old_fps & listed and new_fps <= listed
    assert aliases["busybox/1.36"] in new_fps
    index, served_catalog = served(s3_server, bucket)
    assert set(served_catalog["products"][name]["versions"]) == {new}
    assert not [i for i in served_catalog["products"][name]["versions"][new]["items"].values()
                if i.get("delta_base") == old]  # the delta against it goes with it
    assert json.loads(index)["ssb_s3"]["withdrawn"][name][old]["reason"] == "broken upstream build"
    assert files <= bucket_keys(s3_server, bucket)  # within the grace

    # the upstream still names it: the next mirror leaves it out, says why, copies nothing of it
    again = run_cli(s3_server, target, "mirror", str(root), "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert [d for d in report["dropped"] if d["version"] == old] == [{
        "product": name, "version": old, "item": "", "reason": "withdrawn from this tree at "
        f"{json.loads(index)['ssb_s3']['withdrawn'][name][old]['withdrawn_at']} (broken upstream build); "
        "not mirrored again"}]
    assert not [k for k in report["copied"] if k.startswith(folder)]
    listed, _ = lxc_view(lxc)
    assert not old_fps & listed and new_fps <= listed
    assert files <= bucket_keys(s3_server, bucket)  # still within the grace

    # with a tree.yml that does not declare the mirrored product (it used to say "no product named …")
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, tree_product("own:1.0:amd64:default", release="1.0", os="Own", directory="own"))
    alone = run_cli(s3_server, target, "-c", str(conf), "withdraw", single, "--force")
    assert alone.returncode == 0, alone.stderr
    _, served_catalog = served(s3_server, bucket)
    assert set(served_catalog["products"]) == {name}

    # past the grace, the next mirror deletes the files; the versions stay out
    later = run_cli(s3_server, target, "mirror", str(root), "--grace", "0")
    assert later.returncode == 0, later.stderr
    keys = bucket_keys(s3_server, bucket)
    assert not [k for k in keys if k.startswith((folder, "images/busybox/1.35/amd64/default/20260101_0000/"))]
    _, served_catalog = served(s3_server, bucket)
    assert set(served_catalog["products"]) == {name}
    assert set(served_catalog["products"][name]["versions"]) == {new}
    listed, _ = lxc_view(lxc)
    assert not old_fps & listed and new_fps <= listed


def test_the_pure_plan_of_a_mirrored_withdraw() -> None:
    """A mirrored product's withdrawal is the tree's record in index.json (its ssb.json is the
    upstream's, rewritten by every mirror); a version someone added to that ssb.json is not published
    by it; and a withdrawal that would leave the version served (a mirrored product with a problem
    keeps its previous entry) refuses instead of saying "withdrawn"."""
    from dataclasses import replace

    from test_plan import a_tree, manifest, read, served

    from ssb_s3.core.plan import PlanOptions, Withdrawal, plan_publish

    base = a_tree(days=3)
    tree = replace(base, products=(replace(base.products[0], mirrored=True), base.products[1]))
    snap = served(tree, {"a": read("a", [OLD, NEW]), "b": read("b", [OLD])})
    added = "20991231_0000"  # written into its folder and ssb.json by someone else since
    sneaked = replace(snap.products["a"], manifest=manifest("a", [OLD, NEW, added]),
                      listing={**(snap.products["a"].listing or {}), f"a/{added}/lxd_combined.tar.gz": 10})
    plan = plan_publish(tree, replace(snap, products={**snap.products, "a": sneaked}),
                        PlanOptions(withdraw=Withdrawal("a", OLD, "why")), only={"a"})
    assert not plan.refused and not plan.manifest_writes
    assert sorted(plan.catalog["products"]["a"]["versions"]) == [NEW]
    assert json.loads(plan.index.data)["ssb_s3"]["withdrawn"]["a"][OLD]["reason"] == "why"
    missing = replace(snap.products["a"], listing={})  # its files gone: its previous entry would be kept
    refused = plan_publish(tree, replace(snap, products={**snap.products, "a": missing}),
                           PlanOptions(withdraw=Withdrawal("a", OLD)), only={"a"})
    assert refused.refused
    assert f"product a: version {OLD} would still be served" in "\n".join(map(str, refused.problems))


def test_refresh_manifests_never_writes_into_a_source(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    """Issue 20, point 16 (the rest): `publish --refresh-manifests` rebuilt a `source:` product's
    ssb.json and wrote it into the source (a bucket other trees read too). The source is read-only to
    the tree: its ssb.json is used as it is, the publish says which versions its folders hold that it
    does not list (and how the source's owner adds them), and the source stays byte-identical."""
    from test_mirror import run_cli

    client = s3_server.client()

    def upload(version: str) -> None:
        make_image(tmp_path / "built" / version, kind="squashfs", serial=version, description=f"bb {version}")
        for path in sorted((tmp_path / "built" / version).iterdir()):
            client.upload_file(str(path), bucket, f"shared/bb/{version}/{path.name}")

    def shared() -> dict[str, bytes]:
        return {k: v for k, v in bucket_state(s3_server, bucket).items() if k.startswith("shared/")}

    def served_here() -> list[str]:
        index = json.loads(client.get_object(Bucket=bucket, Key="tree/streams/v1/index.json")["Body"].read())
        key = "tree/" + index["index"]["images"]["path"]
        return sorted(json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())["products"][PRODUCT]
                      ["versions"])

    upload(OLD)
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, tree_product(PRODUCT, directory="bb", days=3, source=f"s3://{bucket}/shared"))
    tree = (f"s3://{bucket}/tree", "-c", str(conf))
    owner = run_cli(s3_server, *tree, "build-versions-manifest", "-p", PRODUCT)  # the source's owner: explicit
    assert owner.returncode == 0, owner.stderr
    upload(NEW)  # a version the source's ssb.json does not list yet
    before = shared()
    out = run_cli(s3_server, *tree, "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    assert shared() == before  # not a byte, no .ssb-s3/ object
    assert (f"WARNING: product {PRODUCT}: s3://{bucket}/shared/bb/ssb.json not refreshed, a source is read-only "
            f"to this tree: its folders hold {NEW}, which it does not list (the source's owner adds them with "
            f"`build-versions-manifest -p {PRODUCT}`)") in out.stderr.splitlines()
    assert served_here() == [OLD]  # the tree publishes what the source's ssb.json says
    assert run_cli(s3_server, *tree, "build-versions-manifest", "-p", PRODUCT).returncode == 0
    after = shared()
    again = run_cli(s3_server, *tree, "publish", "--refresh-manifests")
    assert again.returncode == 0, again.stderr
    assert "not refreshed" not in again.stderr and shared() == after
    assert served_here() == [OLD, NEW]
    assert f"tree/bb/{NEW}/rootfs.squashfs" in bucket_state(s3_server, bucket)  # copied into the tree
