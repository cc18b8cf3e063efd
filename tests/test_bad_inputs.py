"""A corpus of bad inputs, each run through the real CLI against a real S3 server (SeaweedFS).

Every case starts from the same good, already published tree (three products, built once per
module), changes ONE thing -- tree.yml, a product's ssb.json in the bucket, or an artifact in
the bucket -- and runs `python -m ssb_s3 -c tree.yml -t s3://BUCKET publish` (or `validate`).
What must hold for every bad input (README, "Errors are one line..." and "What publish
guarantees"):

* exit code 1 and no Python traceback;
* one line of stderr names the file (the tree.yml path, or the s3:// location of the ssb.json
  or of the artifact), the field, and what was expected;
* nothing published changed: every object of the bucket, keys and bytes, is the same before and
  after (the publisher's own `.ssb-s3/` lease and history are internal and left out).

A case that revealed a bug in ssb_s3 carries `bug=` (what was wrong) and `broken=` (which of
these checks failed then). All of them are fixed: FIXED_BUGS below must stay True; set it to
False to see a case flagged as a known bug again (xfail strict, KnownBug only).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helpers
import pytest
from realparts import S3Server, make_image

# --------------------------------------------------------------------------------------------
# The good tree

SQ, XZ, ARM = "busybox:1.36:amd64:sq", "busybox:1.36:amd64:xz", "busybox:1.36:arm64:sq"
SQ_DIR, XZ_DIR, ARM_DIR = "busybox/amd64", "busybox/tarxz", "busybox/arm64"
V1, V2, VX, VA = "20260101_10:00", "20260102_10:00", "20260103_1000", "20260104_10:00"
VNEW = "20260105_10:00"  # a version builders upload after the good publish
INTERNAL = ".ssb-s3/"  # lease and history: the publisher's own bookkeeping, never served
LEASE = ".ssb-s3/lease.json"

GOOD_TREE = """\
storage:
  endpoint_url: {endpoint}
  region: us-east-1
  addressing_style: path
  checksum_mode: when_required
products:
  - name: busybox:1.36:amd64:sq
    arch: amd64
    release: "1.36"
    os: Busybox
    directory: busybox/amd64
    days: 2
    aliases: [busybox/1.36, busybox]
    support_eol: 2030-01-01
  - name: busybox:1.36:amd64:xz
    arch: x86_64
    release: "1.36"
    os: Busybox
    variant: tarxz
    directory: busybox/tarxz
    days: 2
    aliases: [busybox/1.36/tarxz]
  - name: busybox:1.36:arm64:sq
    arch: arm64
    release: "1.36"
    os: Busybox
    directory: busybox/arm64
    days: 2
    aliases: [busybox/1.36, busybox]
"""


def build_images(root: Path) -> Path:
    """Version folders as builders upload them: 2 squashfs versions, 1 tar.xz, 1 arm64 squashfs."""
    for serial in (V1, V2):
        make_image(root / SQ_DIR / serial, kind="squashfs", serial=serial, description=f"sq {serial}")
    make_image(root / XZ_DIR / VX, kind="tarxz", serial=VX, description="tarxz")
    make_image(root / ARM_DIR / VA, kind="squashfs", arch="aarch64", serial=VA, description="arm64")
    return root


def cli_env(server: S3Server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSB_", "AWS_"))}
    env.update(AWS_ACCESS_KEY_ID=server.access_key, AWS_SECRET_ACCESS_KEY=server.secret_key,
               AWS_EC2_METADATA_DISABLED="true")
    return env


def run_cli(server: S3Server, conf: Path, bucket: str, *args: str) -> subprocess.CompletedProcess[str]:
    return helpers.ssb("-c", str(conf), "-t", f"s3://{bucket}", *args, env=cli_env(server), clean=True)


def list_keys(server: S3Server, bucket: str) -> list[str]:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def read_all(server: S3Server, bucket: str, *, internal: bool = False) -> dict[str, bytes]:
    client = server.client()
    return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read()
            for key in list_keys(server, bucket) if internal or not key.startswith(INTERNAL)}


@dataclass(frozen=True)
class Site:
    """The module's one bucket and what the good publish left in it (lease excluded)."""

    bucket: str
    golden: dict[str, bytes]


@pytest.fixture(scope="module")
def site(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Build the images once, upload them and publish the good tree once.

    One bucket for the whole module, restored before each test: SeaweedFS (`weed mini`) gives
    every bucket its own volumes and runs out of them after ~80 buckets per server, which a
    bucket per case would spend for the whole session.
    """
    work = tmp_path_factory.mktemp("bad-inputs")
    images = build_images(work / "images")
    bucket = f"bad-inputs-{secrets.token_hex(4)}"
    s3_server.create_bucket(bucket, public_read=True)
    s3_server.upload_folder(bucket, images)
    client = s3_server.client()
    conf = work / "tree.yml"
    conf.write_text(GOOD_TREE.format(endpoint=s3_server.endpoint))
    out = run_cli(s3_server, conf, bucket, "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    assert "published: 3 products, 4 versions" in out.stdout, out.stdout
    golden = read_all(s3_server, bucket, internal=True)
    golden.pop(LEASE, None)
    yield Site(bucket, golden)
    with contextlib.suppress(Exception):  # hygiene only: give the server its volumes back
        for key in list_keys(s3_server, bucket):
            client.delete_object(Bucket=bucket, Key=key)
        client.delete_bucket(Bucket=bucket)


def restore(server: S3Server, site: Site) -> None:
    """Put the bucket back to exactly the golden objects (only what a previous case changed)."""
    client = server.client()
    current = read_all(server, site.bucket, internal=True)
    for key in sorted(current.keys() - site.golden.keys()):
        client.delete_object(Bucket=site.bucket, Key=key)
    for key, data in site.golden.items():
        if current.get(key) != data:
            client.put_object(Bucket=site.bucket, Key=key, Body=data)
    assert read_all(server, site.bucket, internal=True) == site.golden, "could not restore the good tree"


@dataclass
class Tree:
    """One test's copy of the published good tree: its bucket, its tree.yml, helpers to break them."""

    server: S3Server
    bucket: str
    conf: Path

    def s3(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def get(self, key: str) -> bytes:
        data: bytes = self.server.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return data

    def put(self, key: str, data: bytes) -> None:
        self.server.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def delete(self, key: str) -> None:
        self.server.client().delete_object(Bucket=self.bucket, Key=key)

    def get_json(self, key: str) -> Any:
        return json.loads(self.get(key))

    def put_json(self, key: str, document: Any) -> None:
        self.put(key, json.dumps(document, indent=2).encode())

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.server, self.conf, self.bucket, *args)

    def snapshot(self) -> dict[str, bytes]:
        """Everything served: every key and its bytes, the publisher's `.ssb-s3/` excluded."""
        return read_all(self.server, self.bucket)

    def published(self) -> tuple[bytes, dict[str, Any]]:
        """The raw catalog bytes index.json names, and the catalog."""
        index = self.get_json("streams/v1/index.json")
        raw = self.get(index["index"]["images"]["path"])
        return raw, json.loads(raw)

    def expand(self, text: str) -> str:
        return text.replace("<conf>", str(self.conf)).replace("<s3>", f"s3://{self.bucket}")


@pytest.fixture
def tree(s3_server: S3Server, site: Site, tmp_path: Path) -> Tree:
    """The module's bucket holding exactly what the good publish left, and a fresh good tree.yml."""
    restore(s3_server, site)
    conf = tmp_path / "tree.yml"
    conf.write_text(GOOD_TREE.format(endpoint=s3_server.endpoint))
    return Tree(s3_server, site.bucket, conf)


def test_the_good_tree_republishes_unchanged(tree: Tree) -> None:
    """Control: the copied good tree is a valid published tree; every failure below is the mutation's."""
    before = tree.snapshot()
    out = tree.run("publish")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("unchanged: 3 products, 4 versions"), out.stdout
    assert tree.snapshot() == before
    ok = tree.run("validate")
    assert ok.returncode == 0 and ok.stdout.startswith("OK: 3 products, 4 versions"), ok.stderr


# --------------------------------------------------------------------------------------------
# Mutations: each changes one thing

Mutation = Callable[[Tree], None]


def conf_sub(old: str, new: str, occurrence: int = 1) -> Mutation:
    """Replace the `occurrence`-th `old` in tree.yml by `new` (the text must be there)."""

    def apply(t: Tree) -> None:
        text = t.conf.read_text()
        at = -1
        for _ in range(occurrence):
            at = text.index(old, at + 1)
        t.conf.write_text(text[:at] + new + text[at + len(old) :])

    return apply


def conf_bytes(make: Callable[[str], bytes]) -> Mutation:
    """Replace tree.yml by bytes made from its good text."""

    def apply(t: Tree) -> None:
        t.conf.write_bytes(make(t.conf.read_text()))

    return apply


def ssb(directory: str, edit: Callable[[dict[str, Any]], object]) -> Mutation:
    """Edit the parsed ssb.json of the product in `directory`, in place, and put it back."""

    def apply(t: Tree) -> None:
        document = t.get_json(f"{directory}/ssb.json")
        edit(document)
        t.put_json(f"{directory}/ssb.json", document)

    return apply


def ssb_bytes(directory: str, make: Callable[[bytes], bytes]) -> Mutation:
    """Replace the product's ssb.json by bytes made from the good ones."""

    def apply(t: Tree) -> None:
        key = f"{directory}/ssb.json"
        t.put(key, make(t.get(key)))

    return apply


def artifact(key: str, make: Callable[[bytes], bytes]) -> Mutation:
    """Replace an artifact in the bucket by bytes made from the good ones."""

    def apply(t: Tree) -> None:
        t.put(key, make(t.get(key)))

    return apply


def remove(key: str) -> Mutation:
    def apply(t: Tree) -> None:
        t.delete(key)

    return apply


def item(document: dict[str, Any], version: str, key: str) -> dict[str, Any]:
    found: dict[str, Any] = document["versions"][version]["items"][key]
    return found


def sq_root(document: dict[str, Any]) -> dict[str, Any]:
    """The newest squashfs version's root item, the usual victim."""
    return item(document, V2, "root.squashfs")


def sq_meta(document: dict[str, Any]) -> dict[str, Any]:
    return item(document, V2, "lxd.tar.xz")


def rename_version(old: str, new: str) -> Callable[[dict[str, Any]], object]:
    def edit(document: dict[str, Any]) -> None:
        document["versions"][new] = document["versions"].pop(old)

    return edit


def steal_versions(t: Tree) -> None:
    """Copy the squashfs product's versions into the tar.xz product's ssb.json: same fingerprints."""
    stolen = t.get_json(f"{SQ_DIR}/ssb.json")["versions"]
    document = t.get_json(f"{XZ_DIR}/ssb.json")
    document["versions"] = stolen
    t.put_json(f"{XZ_DIR}/ssb.json", document)


def upload_version(directory: str, serial: str, kind: str, *, root: Callable[[bytes], bytes] | None = None,
                   **image: str) -> Mutation:
    """Upload a new version folder as a builder would (optionally spoiling its root file)."""

    def apply(t: Tree) -> None:
        build = t.conf.parent / "new" / directory / serial
        for path in make_image(build, kind=kind, serial=serial, **image):
            data = path.read_bytes()
            if root is not None and path.name.startswith("rootfs."):
                data = root(data)
            t.put(f"{directory}/{serial}/{path.name}", data)

    return apply


def copy_version(source: str, dest: str) -> Mutation:
    """Upload a copy of a published version folder under another product or name (same bytes)."""

    def apply(t: Tree) -> None:
        for name in ("lxd.tar.xz", "rootfs.squashfs"):
            t.put(f"{dest}/{name}", t.get(f"{source}/{name}"))

    return apply


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def nothing(data: bytes) -> bytes:
    return b""


# --------------------------------------------------------------------------------------------
# The corpus

CHECKS = ("exit", "traceback", "message", "snapshot")
PUBLISH = ("publish",)
REFRESH = ("publish", "--refresh-manifests")


@dataclass(frozen=True)
class Bad:
    """One bad input: what to change, and the file, field and expectation the error must name.

    `<conf>` stands for the tree.yml path and `<s3>` for s3://BUCKET. `bug` marks a case that
    reveals a bug: the checks in `broken` are expected to fail (xfail strict, KnownBug only).
    """

    id: str
    mutate: Mutation
    file: str
    field: str
    expected: str
    args: tuple[str, ...] = PUBLISH
    bug: str = ""
    broken: frozenset[str] = frozenset()


SQ_SSB, XZ_SSB = f"<s3>/{SQ_DIR}/ssb.json", f"<s3>/{XZ_DIR}/ssb.json"
SQ_ROOT_KEY = f"{SQ_DIR}/{V2}/rootfs.squashfs"
SQ_ITEMS = f"versions.{V2}.items"

BUG_CONTRACT_NO_FILE = (
    "BUG: problems found by the client-contract check (catalog.contract_problems) are reported as "
    "'catalog built from the manifests: product P ...': neither the ssb.json (or tree.yml) holding the "
    "bad value nor, for some, the field is named"
)
BUG_DOTDOT = (
    "BUG: tree.yml's `prefix` and `images_path` accept '..' parts (the schema only asks for a string): "
    "only the store refuses the keys (SeaweedFS: 'read failed: InvalidRequest', 'head failed: 400'), so "
    "the message names neither tree.yml nor the field; a store that takes such keys would get an index "
    "whose catalog path leaves the tree"
)
BUG_EXIT_0 = "BUG: accepted and published (exit 0, published tree changed): "
ALL_BROKEN = frozenset(CHECKS) - {"traceback"}

TREE_CASES = [
    # unknown or misspelled keys: the message names the closest valid key
    Bad("tree-top-key-misspelled", conf_sub("products:\n", "image_path: streams/v1\nproducts:\n"),
        "<conf>", "image_path: unknown key", "did you mean 'images_path'?"),
    Bad("tree-top-key-unknown", conf_sub("products:\n", "colour: blue\nproducts:\n"),
        "<conf>", "colour: unknown key", "valid keys: prefix, images_path"),
    Bad("tree-product-key-misspelled", conf_sub("    days: 2\n", "    dasy: 2\n"),
        "<conf>", "products[0].dasy: unknown key", "did you mean 'days'?"),
    Bad("tree-product-alias-singular", conf_sub("    aliases: [busybox/1.36/tarxz]", "    alias: [busybox/1.36/tarxz]"),
        "<conf>", "products[1].alias: unknown key", "did you mean 'aliases'?"),
    Bad("tree-storage-key-misspelled", conf_sub("  region:", "  regoin:"),
        "<conf>", "storage.regoin: unknown key", "did you mean 'region'?"),
    # wrong types
    Bad("tree-days-string", conf_sub("    days: 2\n", '    days: "two"\n'),
        "<conf>", "products[0].days", 'expected integer, got "two"'),
    Bad("tree-requirements-bool", conf_sub("    days: 2\n", "    days: 2\n    requirements: {secureboot: false}\n"),
        "<conf>", "products[0].requirements.secureboot", "expected string, got false"),
    Bad("tree-requirements-int", conf_sub("    days: 2\n", "    days: 2\n    requirements: {nesting: 1}\n"),
        "<conf>", "products[0].requirements.nesting", "expected string, got 1"),
    Bad("tree-products-mapping",
        conf_bytes(lambda text: text.split("products:")[0].encode() + b"products: {name: busybox}\n"),
        "<conf>", "products", 'expected array, got {"name": "busybox"}'),
    Bad("tree-products-empty", conf_bytes(lambda text: text.split("products:")[0].encode() + b"products: []\n"),
        "<conf>", "products", "should be non-empty"),
    Bad("tree-required-os-missing", conf_sub("    os: Busybox\n", ""),
        "<conf>", "products[0]", "'os' is required"),
    # values the clients would silently drop or refuse
    Bad("tree-unknown-arch", conf_sub("    arch: amd64\n", "    arch: amd46\n"),
        "<conf>", "products[0].arch", "'amd46' is not an architecture LXD knows"),
    Bad("tree-duplicate-name", conf_sub("name: busybox:1.36:amd64:xz", "name: busybox:1.36:amd64:sq"),
        "<conf>", "products[1].name", "'busybox:1.36:amd64:sq' is already used by products[0]"),
    Bad("tree-duplicate-directory", conf_sub("directory: busybox/tarxz", "directory: busybox/amd64/"),
        "<conf>", "products[1].directory", "'busybox/amd64' is already used by products[0]"),
    Bad("tree-directory-dotdot", conf_sub("directory: busybox/tarxz", "directory: busybox/../tarxz"),
        "<conf>", "products[1].directory", "expected a relative path (no leading '/', no '.' or '..' parts"),
    Bad("tree-directory-absolute", conf_sub("directory: busybox/tarxz", "directory: /busybox/tarxz"),
        "<conf>", "products[1].directory", "expected a relative path (no leading '/'"),
    Bad("tree-prefix-path-ftp", conf_sub("    variant: tarxz\n", "    variant: tarxz\n    prefix_path: ftp://ci/ns\n"),
        "<conf>", "products[1].prefix_path", "expected an http:// or https:// URL"),
    Bad("tree-prefix-path-no-scheme",
        conf_sub("    variant: tarxz\n", "    variant: tarxz\n    prefix_path: ci.example.com/ns\n"),
        "<conf>", "products[1].prefix_path", "expected an http:// or https:// URL"),
    Bad("tree-source-and-prefix-path",
        conf_sub("    variant: tarxz\n",
                 "    variant: tarxz\n    source: s3://elsewhere/ci\n    prefix_path: https://ci.example.com/ns\n"),
        "<conf>", "products[1]", "set either 'source' or 'prefix_path', not both"),
    Bad("tree-support-eol-unix-seconds", conf_sub("support_eol: 2030-01-01", "support_eol: 1893456000"),
        "<conf>", "products[0].support_eol", "expected string, got 1893456000"),
    Bad("tree-support-eol-unix-seconds-quoted", conf_sub("support_eol: 2030-01-01", 'support_eol: "1893456000"'),
        "<conf>", "products[0].support_eol", "expected a date YYYY-MM-DD"),
    Bad("tree-support-eol-impossible-date", conf_sub("support_eol: 2030-01-01", "support_eol: 2030-02-30"),
        "<conf>", "products[0].support_eol", "YYYY-MM-DD",
        bug=BUG_EXIT_0 + "support_eol 2030-02-30 matches the YYYY-MM-DD pattern but is no date",
        broken=ALL_BROKEN),
    Bad("tree-grace-not-a-duration", conf_sub("products:\n", "grace: 6 hours\nproducts:\n"),
        "<conf>", "grace", "\"6 hours\" is not valid, expected a duration like 90m, 6h"),
    Bad("tree-checksum-mode-enum", conf_sub("checksum_mode: when_required", "checksum_mode: always"),
        "<conf>", "storage.checksum_mode", "'always' is not one of ['when_supported', 'when_required']"),
    Bad("tree-prefix-dotdot", conf_sub("products:\n", "prefix: ../escape\nproducts:\n"),
        "<conf>", "prefix", "relative", bug=BUG_DOTDOT, broken=frozenset({"message"})),
    Bad("tree-images-path-dotdot", conf_sub("products:\n", "images_path: ../../elsewhere\nproducts:\n"),
        "<conf>", "images_path", "relative", bug=BUG_DOTDOT, broken=frozenset({"message"})),
    Bad("tree-content-id-space", conf_sub("products:\n", "content_id: my images\nproducts:\n"),
        "<conf>", "content_id", "expected letters, digits and . _ : - only"),
    Bad("tree-datatype-wrong", conf_sub("products:\n", "datatype: image-ids\nproducts:\n"),
        "<conf>", "datatype", "'image-downloads' was expected"),
    Bad("tree-max-age-words", conf_sub("    days: 2\n", "    days: 2\n    max_age: a week\n"),
        "<conf>", "products[0].max_age", "expected a duration like 90m, 6h"),
    Bad("tree-endpoint-no-scheme", conf_sub("  endpoint_url: ", "  endpoint_url: x"),
        "<conf>", "storage.endpoint_url", "expected an http:// or https:// URL"),
    Bad("tree-variant-space", conf_sub("variant: tarxz", "variant: tar xz"),
        "<conf>", "products[1].variant", "expected letters, digits and . _ + - only"),
    # aliases
    Bad("tree-alias-blank", conf_sub("aliases: [busybox/1.36/tarxz]", 'aliases: ["", busybox/1.36/tarxz]'),
        "<conf>", "products[1].aliases[0]", "expected an alias without spaces or commas"),
    Bad("tree-alias-comma-space", conf_sub("aliases: [busybox/1.36/tarxz]", 'aliases: ["tarxz, busybox/tarxz"]'),
        "<conf>", "products[1].aliases[0]", "expected an alias without spaces or commas"),
    Bad("tree-alias-same-arch-twice",  # amd64 and x86_64 are the same arch for LXD
        conf_sub("aliases: [busybox/1.36/tarxz]", "aliases: [busybox/1.36/tarxz, busybox]"),
        "<conf>", "products[1].aliases", "'busybox' for arch x86_64 is already claimed by busybox:1.36:amd64:sq",
        bug=BUG_CONTRACT_NO_FILE + " (aliases come from tree.yml, its path and products[1].aliases are not named)",
        broken=frozenset({"message"})),
    # unicode oddities
    Bad("tree-name-with-space", conf_sub("name: busybox:1.36:amd64:xz", '"name": "busybox 1.36 amd64 xz"'),
        "<conf>", "products[1].name", "expected letters, digits and . _ : + ~ - only"),
    Bad("tree-name-nbsp", conf_sub("name: busybox:1.36:amd64:xz", "name: busybox:1.36:amd64:xz\u00a0"),
        "<conf>", "products[1].name", "expected letters, digits and . _ : + ~ - only"),
    Bad("tree-alias-non-ascii", conf_sub("aliases: [busybox/1.36/tarxz]", "aliases: [busybox/1.36/tarxz, bébé]"),
        "<conf>", "products[1].aliases[1]", "expected an alias without spaces or commas"),
    Bad("tree-alias-zero-width-space", conf_sub("aliases: [busybox/1.36/tarxz]", "aliases: [busy\u200bbox]"),
        "<conf>", "products[1].aliases[0]", "expected an alias without spaces or commas"),
    Bad("tree-not-utf8", conf_bytes(lambda text: text.replace("os: Busybox", "os: Bus\u00ffbox").encode("latin-1")),
        "<conf>", "cannot read", "'utf-8' codec can't decode byte 0xff"),
    # huge numbers
    Bad("tree-days-10e30", conf_sub("    days: 2\n", f"    days: {10**30}\n"),
        "<conf>", "products[0].days", f"{10**30} is greater than the maximum of 100000"),
    Bad("tree-days-negative", conf_sub("    days: 2\n", "    days: -100001\n"),  # the seed: days <= 0 is 1
        "<conf>", "products[0].days", "-100001 is less than the minimum of -100000"),
    Bad("tree-days-infinity", conf_sub("    days: 2\n", "    days: .inf\n"),
        "<conf>", "products[0].days", "expected integer, got Infinity"),
    # not YAML, or nothing
    Bad("tree-invalid-yaml", conf_sub("aliases: [busybox/1.36/tarxz]", "aliases: [busybox/1.36/tarxz"),
        "<conf>", "line 23, column 9", "invalid YAML: expected ',' or ']', but got ':'"),
    Bad("tree-tab-indent", conf_sub("    os: Busybox\n", "\tos: Busybox\n"),
        "<conf>", "line 10, column 1", "invalid YAML: found character '\\t' that cannot start any token"),
    Bad("tree-empty-file", conf_bytes(lambda text: b""),
        "<conf>", "the file is empty", "expected a mapping with 'products'"),
    Bad("tree-only-comments", conf_bytes(lambda text: b"# products: to do\n"),
        "<conf>", "the file is empty", "expected a mapping with 'products'"),
    Bad("tree-top-level-list", conf_bytes(lambda text: b"- products\n"),
        "<conf>", "top level", "expected a mapping"),
    Bad("tree-duplicate-yaml-key", conf_sub("    days: 2\n", "    days: 2\n    days: 1\n"),
        "<conf>", "days", "duplicate",
        bug=BUG_EXIT_0 + "a key given twice in one mapping of tree.yml is not an error: the last one wins "
        "silently (here days: 1 unpublishes a version)", broken=ALL_BROKEN),
]

SSB_CASES = [
    # not JSON
    Bad("ssb-not-json", ssb_bytes(SQ_DIR, lambda data: b"this is not json\n"),
        SQ_SSB, "line 1 column 1", "not valid JSON: Expecting value"),
    Bad("ssb-truncated", ssb_bytes(SQ_DIR, half),
        SQ_SSB, "line ", "not valid JSON: "),
    Bad("ssb-empty-file", ssb_bytes(SQ_DIR, nothing),
        SQ_SSB, "line 1 column 1 (char 0)", "not valid JSON: Expecting value"),
    Bad("ssb-not-utf8", ssb_bytes(SQ_DIR, lambda data: data.replace(b'"name": "', b'"name": "\xff')),
        SQ_SSB, "position", "not valid JSON: 'utf-8' codec can't decode byte 0xff"),
    Bad("ssb-top-level-list", ssb_bytes(SQ_DIR, lambda data: b"[" + data + b"]"),
        SQ_SSB, "(top level)", "expected object"),
    # the manifest's own fields
    Bad("ssb-wrong-name", ssb(SQ_DIR, lambda d: d.update(name="busybox:1.36:amd64:default")),
        SQ_SSB, "name", "'busybox:1.36:amd64:default' does not match product 'busybox:1.36:amd64:sq' of tree.yml"),
    Bad("ssb-name-missing", ssb(SQ_DIR, lambda d: d.pop("name")),
        SQ_SSB, "(top level)", "'name' is required"),
    Bad("ssb-versions-list", ssb(SQ_DIR, lambda d: d.update(versions=list(d["versions"].values()))),
        SQ_SSB, "versions", "expected object, got [{"),
    Bad("ssb-version-named-latest", ssb(SQ_DIR, rename_version(V2, "latest")),
        SQ_SSB, "versions", '"latest" is not valid, expected a string matching ^[0-9]{8}'),
    Bad("ssb-version-impossible-date", ssb(SQ_DIR, rename_version(V2, "20261399_10:00")),
        SQ_SSB, "version 20261399_10:00", "'20261399' is not a real calendar date",
        bug=BUG_CONTRACT_NO_FILE, broken=frozenset({"message"})),
    Bad("ssb-items-empty", ssb(SQ_DIR, lambda d: d["versions"][V2].update(items={})),
        SQ_SSB, f"{SQ_ITEMS}", "{} should be non-empty"),
    Bad("ssb-support-eol-unix-seconds", ssb(XZ_DIR, lambda d: d.update(support_eol="1893456000")),
        XZ_SSB, "support_eol", "expected a date YYYY-MM-DD"),
    Bad("ssb-expiry-huge", ssb(XZ_DIR, lambda d: d.update(expiry="99999999999999999999")),
        XZ_SSB, "expiry", "unix seconds",
        bug="BUG: a huge `expiry` (unix seconds) makes datetime.fromtimestamp overflow in "
        "catalog._support_eol: 'error: unexpected OverflowError ...', no file, no field",
        broken=frozenset({"message"})),
    # sizes
    Bad("ssb-size-string", ssb(SQ_DIR, lambda d: sq_root(d).update(size=str(sq_root(d)["size"]))),
        SQ_SSB, f"{SQ_ITEMS}.root.squashfs.size", "expected integer, got \""),
    Bad("ssb-size-negative", ssb(SQ_DIR, lambda d: sq_root(d).update(size=-1)),
        SQ_SSB, f"{SQ_ITEMS}.root.squashfs.size", "-1 is less than the minimum of 0"),
    Bad("ssb-size-2-pow-70", ssb(SQ_DIR, lambda d: sq_root(d).update(size=2**70)),
        SQ_SSB, f"{SQ_ITEMS}.root.squashfs.size", f"{2**70} is greater than the maximum of 9007199254740991"),
    Bad("ssb-size-bool", ssb(SQ_DIR, lambda d: sq_root(d).update(size=True)),
        SQ_SSB, f"{SQ_ITEMS}.root.squashfs.size", "expected integer, got true"),
    Bad("ssb-size-nan", ssb_bytes(SQ_DIR, lambda data: data.replace(b'"size": ', b'"size": NaN, "x": ', 1)),
        SQ_SSB, ".size", "expected integer, got NaN"),
    Bad("ssb-size-float", ssb(SQ_DIR, lambda d: sq_root(d).update(size=float(sq_root(d)["size"]))),
        SQ_SSB, f"{SQ_ITEMS}.root.squashfs.size", "integer",
        bug=BUG_EXIT_0 + "size 1040384.0 passes the schemas' 'integer' type (jsonschema counts integral "
        "floats) and is published as 1040384.0; the real lxc and incus clients then refuse the whole remote: "
        "'Failed parsing products: ... cannot unmarshal number 1040384.0 into Go struct field "
        "ProductVersionItem.products.versions.items.size of type int64'", broken=ALL_BROKEN),
    Bad("ssb-size-wrong", ssb(SQ_DIR, lambda d: sq_root(d).update(size=sq_root(d)["size"] + 1)),
        f"<s3>/{SQ_ROOT_KEY}", "item root.squashfs", "ssb.json says"),
    # hashes
    Bad("ssb-sha256-not-hex", ssb(SQ_DIR, lambda d: sq_root(d).update(sha256="z" * 64)),
        SQ_SSB, f"{SQ_ITEMS}.root.squashfs.sha256", "expected 64 lowercase hex digits"),
    Bad("ssb-sha256-too-short", ssb(SQ_DIR, lambda d: sq_root(d).update(sha256=sq_root(d)["sha256"][:63])),
        SQ_SSB, f"{SQ_ITEMS}.root.squashfs.sha256", "expected 64 lowercase hex digits"),
    Bad("ssb-sha256-uppercase", ssb(SQ_DIR, lambda d: sq_root(d).update(sha256=sq_root(d)["sha256"].upper())),
        SQ_SSB, f"{SQ_ITEMS}.root.squashfs.sha256", "expected 64 lowercase hex digits"),
    Bad("ssb-combined-hash-missing", ssb(SQ_DIR, lambda d: sq_meta(d).pop("combined_squashfs_sha256")),
        SQ_SSB, "combined_squashfs_sha256", "missing for root.squashfs",
        bug=BUG_CONTRACT_NO_FILE, broken=frozenset({"message"})),
    Bad("ssb-combined-hash-not-hex", ssb(SQ_DIR, lambda d: sq_meta(d).update(combined_squashfs_sha256="-")),
        SQ_SSB, f"{SQ_ITEMS}.lxd.tar.xz.combined_squashfs_sha256", "expected 64 lowercase hex digits"),
    Bad("ssb-same-fingerprint-in-two-products", steal_versions,
        XZ_SSB, "fingerprint", "also used by busybox:1.36:amd64:sq",
        bug=BUG_CONTRACT_NO_FILE, broken=frozenset({"message"})),
    # items
    Bad("ssb-ftype-missing", ssb(SQ_DIR, lambda d: sq_root(d).pop("ftype")),
        SQ_SSB, f"{SQ_ITEMS}.root.squashfs", "'ftype' is required"),
    Bad("ssb-path-missing", ssb(SQ_DIR, lambda d: sq_root(d).pop("path")),
        SQ_SSB, f"{SQ_ITEMS}.root.squashfs", "'path' is required"),
    Bad("ssb-ftype-unknown", ssb(SQ_DIR, lambda d: sq_root(d).update(ftype="squashfs2")),
        SQ_SSB, "ftype", "squashfs",
        bug=BUG_CONTRACT_NO_FILE + " ('no image that LXD can use': not even the ftype field is named)",
        broken=frozenset({"message"})),
    Bad("ssb-path-absolute", ssb(SQ_DIR, lambda d: sq_root(d).update(path="/" + sq_root(d)["path"])),
        SQ_SSB, "item root.squashfs", "is absolute; it must be relative to the tree root",
        bug=BUG_CONTRACT_NO_FILE, broken=frozenset({"message"})),
    Bad("ssb-path-dotdot",
        ssb(SQ_DIR, lambda d: sq_root(d).update(path=f"{SQ_DIR}/../amd64/{V2}/rootfs.squashfs")),
        SQ_SSB, "item root.squashfs", "must be a plain relative path (no '..'",
        bug=BUG_CONTRACT_NO_FILE, broken=frozenset({"message"})),
    Bad("ssb-path-other-products-missing-file",
        ssb(SQ_DIR, lambda d: sq_root(d).update(path=f"{XZ_DIR}/{VX}/rootfs.squashfs")),
        SQ_SSB, f"product {SQ} version {V2} item root.squashfs",
        f"path '{XZ_DIR}/{VX}/rootfs.squashfs' is outside the product's folder"),
]

ARTIFACT_CASES = [
    Bad("artifact-squashfs-truncated", artifact(SQ_ROOT_KEY, half),
        f"<s3>/{SQ_ROOT_KEY}", "item root.squashfs", "bytes, ssb.json says"),
    Bad("artifact-squashfs-empty", artifact(SQ_ROOT_KEY, nothing),
        f"<s3>/{SQ_ROOT_KEY}", "item root.squashfs", "is 0 bytes, ssb.json says"),
    Bad("artifact-squashfs-grown", artifact(SQ_ROOT_KEY, lambda data: data + b"\0" * 4096),
        f"<s3>/{SQ_ROOT_KEY}", "item root.squashfs", "bytes, ssb.json says"),
    Bad("artifact-meta-truncated", artifact(f"{XZ_DIR}/{VX}/lxd.tar.xz", half),
        f"<s3>/{XZ_DIR}/{VX}/lxd.tar.xz", "item lxd.tar.xz", "bytes, ssb.json says"),
    Bad("artifact-root-deleted", remove(f"{XZ_DIR}/{VX}/rootfs.tar.xz"),
        f"<s3>/{XZ_DIR}/{VX}/rootfs.tar.xz", "item root.tar.xz", "does not exist"),
    Bad("artifact-meta-deleted", remove(f"{ARM_DIR}/{VA}/lxd.tar.xz"),
        f"<s3>/{ARM_DIR}/{VA}/lxd.tar.xz", "item lxd.tar.xz", "does not exist"),
    Bad("artifact-ssb-json-deleted", remove(f"{ARM_DIR}/ssb.json"),
        f"<s3>/{ARM_DIR}/ssb.json", f"product {ARM}", "is published but its ssb.json is missing",
        bug="BUG: the error for a published product whose ssb.json disappeared names the product but not "
        "the s3:// location where ssb.json was expected", broken=frozenset({"message"})),
    # what the scanner (publish --refresh-manifests) does with spoiled uploads
    Bad("scanner-new-version-empty-root", upload_version(SQ_DIR, "20260105_10:00", "squashfs", root=nothing),
        f"<s3>/{SQ_DIR}/20260105_10:00/rootfs.squashfs", "rootfs.squashfs", "empty", args=REFRESH,
        bug=BUG_EXIT_0 + "the scanner hashes a 0-byte rootfs.squashfs and publishes a version no client can "
        "unpack", broken=ALL_BROKEN),
    Bad("scanner-new-version-truncated-squashfs", upload_version(SQ_DIR, "20260105_10:00", "squashfs", root=half),
        f"<s3>/{SQ_DIR}/20260105_10:00/rootfs.squashfs", "rootfs.squashfs", "truncated", args=REFRESH,
        bug=BUG_EXIT_0 + "the scanner publishes a squashfs shorter than its superblock's bytes_used",
        broken=ALL_BROKEN),
    # The refresh runs build-product's artifact checks (issue 9 point 18): the amd64 metadata is refused
    # before the fingerprint collision with busybox:1.36:amd64:sq is even looked at.
    Bad("scanner-copied-version-refused-but-manifest-written", copy_version(f"{SQ_DIR}/{V2}", f"{ARM_DIR}/{VNEW}"),
        f"<s3>/{ARM_DIR}/{VNEW}/lxd.tar.xz", "metadata.yaml: architecture",
        "'x86_64' does not match product busybox:1.36:arm64:sq", args=REFRESH,
        bug="BUG: `publish --refresh-manifests` writes every refreshed ssb.json before the checks, so a refused "
        "publish ('publish refused, nothing was written') has already rewritten ssb.json to name the refused "
        "version (and " + BUG_CONTRACT_NO_FILE.removeprefix("BUG: ") + ")",
        broken=frozenset({"message", "snapshot"})),
    Bad("scanner-published-version-rewritten", artifact(SQ_ROOT_KEY, lambda data: data + b"\0" * 4096),
        f"<s3>/{SQ_ROOT_KEY}", "item root.squashfs", "changed since it was published", args=REFRESH,
        bug=BUG_EXIT_0 + "a published artifact rewritten with another size is re-hashed and republished: "
        f"the published version {V2} silently gets a new sha256 and fingerprint (clients holding the old "
        "catalog, cached for 1 h, get 'Hash mismatch')", broken=ALL_BROKEN),
]

CASES = TREE_CASES + SSB_CASES + ARTIFACT_CASES


class KnownBug(AssertionError):
    """Raised only for the checks a case's `broken` names: what its xfail(strict=True) expects."""


FIXED_BUGS = True  # every `bug=` case below was fixed in ssb_s3; they now pass like the others


def bug_marks(bug: str) -> list[Any]:
    return [pytest.mark.xfail(strict=True, raises=KnownBug, reason=bug)] if bug and not FIXED_BUGS else []


def params(cases: list[Bad]) -> Iterator[Any]:
    for case in cases:
        yield pytest.param(case, id=case.id, marks=bug_marks(case.bug))


def message_line(stderr: str, *parts: str) -> str | None:
    """The first stderr line naming every part (file, field, expectation), if any."""
    return next((line for line in stderr.splitlines() if all(p in line for p in parts)), None)


def check_refused(case: Bad, t: Tree, before: dict[str, bytes], out: subprocess.CompletedProcess[str]) -> None:
    failed: dict[str, str] = {}
    if out.returncode != 1:
        failed["exit"] = f"exit code {out.returncode}, expected 1"
    if "Traceback" in out.stderr:
        failed["traceback"] = "a traceback was printed"
    parts = [t.expand(p) for p in (case.file, case.field, case.expected)]
    if message_line(out.stderr, *parts) is None:
        failed["message"] = f"no stderr line names all of {parts}"
    after = t.snapshot()
    if after != before:
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        failed["snapshot"] = f"published objects changed: {changed}"
    report = "\n".join(f"{k}: {v}" for k, v in failed.items()) + f"\n--- stdout\n{out.stdout}--- stderr\n{out.stderr}"
    unexpected = set(failed) - case.broken
    assert not unexpected, report
    if failed:
        raise KnownBug(report)


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input_is_refused_and_nothing_changes(tree: Tree, case: Bad) -> None:
    case.mutate(tree)
    before = tree.snapshot()
    out = tree.run(*case.args)
    check_refused(case, tree, before, out)


def test_corpus_is_large_and_ids_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) >= 40
    assert len(set(ids)) == len(ids)


# --------------------------------------------------------------------------------------------
# validate: every problem at once, nothing written


def two(first: Mutation, second: Mutation) -> Mutation:
    def apply(t: Tree) -> None:
        first(t)
        second(t)

    return apply


@dataclass(frozen=True)
class Many:
    """Two independent problems in two products; each must get its own line (file, field, expected)."""

    id: str
    mutate: Mutation
    lines: tuple[tuple[str, str, str], ...]
    header: str
    bug: str = ""


VALIDATE_CASES = [
    Many("manifest-and-artifact",
         two(ssb(SQ_DIR, lambda d: sq_root(d).update(size="big")), remove(f"{XZ_DIR}/{VX}/rootfs.tar.xz")),
         ((SQ_SSB, f"{SQ_ITEMS}.root.squashfs.size", 'expected integer, got "big"'),
          (f"<s3>/{XZ_DIR}/{VX}/rootfs.tar.xz", f"product {XZ} version {VX} item root.tar.xz", "does not exist")),
         "error: not valid, publish would refuse this tree: 2 problem(s)"),
    Many("two-manifests",
         two(ssb(SQ_DIR, lambda d: d.update(name="other")), ssb_bytes(ARM_DIR, half)),
         ((SQ_SSB, "name", "does not match product 'busybox:1.36:amd64:sq' of tree.yml"),
          (f"<s3>/{ARM_DIR}/ssb.json", "line ", "not valid JSON")),
         "error: not valid, publish would refuse this tree: 2 problem(s)"),
    Many("tree-two-schema-problems",
         two(conf_sub("    days: 2\n", '    days: "two"\n'), conf_sub("    days: 2\n", "    dasy: 2\n", 2)),
         (("<conf>", "products[0].days", 'expected integer, got "two"'),
          ("<conf>", "products[2].dasy: unknown key", "did you mean 'days'?")),
         "is not a valid tree.yml: 2 problem(s)"),
    Many("tree-two-semantic-problems",
         two(conf_sub("    arch: amd64\n", "    arch: amd46\n"),
             conf_sub("directory: busybox/arm64", "directory: busybox/tarxz")),
         (("<conf>", "products[0].arch", "'amd46' is not an architecture LXD knows"),
          ("<conf>", "products[2].directory", "'busybox/tarxz' is already used by products[1]")),
         "is not a valid tree.yml: 2 problem(s)"),
    Many("tree-schema-and-semantic-problem",
         two(conf_sub("    arch: amd64\n", "    arch: amd46\n"), conf_sub("    days: 2\n", "    dasy: 2\n", 3)),
         (("<conf>", "products[0].arch", "'amd46' is not an architecture LXD knows"),
          ("<conf>", "products[2].dasy: unknown key", "did you mean 'days'?")),
         "is not a valid tree.yml: 2 problem(s)",
         bug="BUG: config.parse_config returns the schema problems alone: the checks after the schema "
         "(arch, duplicate names/directories, source+prefix_path) only run once the schema passes, so "
         "`validate` needs two runs to show two independent problems"),
]


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.id, marks=bug_marks(c.bug))
    for c in VALIDATE_CASES
])
def test_validate_lists_every_problem_at_once(tree: Tree, case: Many) -> None:
    case.mutate(tree)
    before = tree.snapshot()
    out = tree.run("validate")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert tree.snapshot() == before
    missing = [parts for parts in case.lines if message_line(out.stderr, *map(tree.expand, parts)) is None]
    if case.header not in out.stderr.splitlines()[0]:
        missing.append(("first line", case.header, ""))
    report = f"not listed: {missing}\n--- stderr\n{out.stderr}"
    if missing and case.bug:
        raise KnownBug(report)
    assert not missing, report


# --------------------------------------------------------------------------------------------
# publish --keep-going: the valid products go out, each invalid one keeps its published entry

NEW_XZ = "20260105_1000"


def entry_bytes(catalog: dict[str, Any], product: str) -> bytes:
    """A product's entry as the catalog's canonical serialisation writes it (sorted, compact)."""
    return json.dumps(catalog["products"][product], sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


@pytest.mark.parametrize(("breakage", "parts"), [
    pytest.param(ssb(SQ_DIR, lambda d: sq_root(d).update(size="big")),
                 (SQ_SSB, f"{SQ_ITEMS}.root.squashfs.size", "expected integer"), id="manifest-schema-error"),
    pytest.param(ssb_bytes(SQ_DIR, half), (SQ_SSB, "line ", "not valid JSON"), id="manifest-truncated"),
    pytest.param(artifact(SQ_ROOT_KEY, half), (f"<s3>/{SQ_ROOT_KEY}", "item root.squashfs", "ssb.json says"),
                 id="artifact-truncated"),
    pytest.param(ssb(SQ_DIR, rename_version(V2, "20261399_10:00")),
                 (f"product {SQ} version 20261399_10:00", "version name", "not a real calendar date"),
                 id="client-contract-problem"),
])
def test_keep_going_publishes_the_valid_and_keeps_the_invalid_entry(
    tree: Tree, breakage: Mutation, parts: tuple[str, str, str]
) -> None:
    upload_version(XZ_DIR, NEW_XZ, "tarxz", description="tarxz new")(tree)
    built = tree.run("build-versions-manifest", "-p", XZ)
    assert built.returncode == 0, built.stderr
    old_raw, old_catalog = tree.published()
    breakage(tree)
    before = tree.snapshot()

    out = tree.run("publish", "--keep-going")

    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert "error: some products were not updated:" in out.stderr, out.stderr
    assert message_line(out.stderr, *map(tree.expand, parts)), out.stderr
    assert f"+ {XZ} {NEW_XZ}" in out.stdout, out.stdout
    assert f"kept the previously published entry of {SQ}" in out.stdout, out.stdout
    new_raw, new_catalog = tree.published()
    assert sorted(new_catalog["products"][XZ]["versions"]) == [VX, NEW_XZ]
    for unchanged in (SQ, ARM):
        assert entry_bytes(new_catalog, unchanged) == entry_bytes(old_catalog, unchanged)
        assert entry_bytes(old_catalog, unchanged) in old_raw and entry_bytes(new_catalog, unchanged) in new_raw
    after = tree.snapshot()
    assert before.keys() <= after.keys(), "nothing may be deleted"
    changed = {k for k in after if before.get(k) != after[k]}
    index = tree.get_json("streams/v1/index.json")["index"]["images"]["path"]
    # the page's index shows the publish time to the minute: rewritten, maybe with the same bytes
    assert changed - {"index.html"} == {"streams/v1/index.json", "streams/v1/images.json", f"products/{XZ}.html",
                                        index}, changed
    assert index not in before, "the catalog is a new content-addressed key"


def test_keep_going_does_not_excuse_a_bad_tree_yml(tree: Tree) -> None:
    """A tree.yml problem is nobody's product: nothing is published, even with --keep-going."""
    conf_sub("    arch: amd64\n", "    arch: amd46\n")(tree)
    before = tree.snapshot()
    out = tree.run("publish", "--keep-going")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert message_line(out.stderr, str(tree.conf), "products[0].arch", "is not an architecture LXD knows")
    assert tree.snapshot() == before


def test_keep_going_with_every_product_invalid_changes_nothing(tree: Tree) -> None:
    for directory in (SQ_DIR, XZ_DIR, ARM_DIR):
        ssb_bytes(directory, nothing)(tree)
    before = tree.snapshot()
    out = tree.run("publish", "--keep-going")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    for directory in (SQ_DIR, XZ_DIR, ARM_DIR):
        assert message_line(out.stderr, tree.s3(f"{directory}/ssb.json"), "line 1 column 1", "not valid JSON")
    assert tree.snapshot() == before
