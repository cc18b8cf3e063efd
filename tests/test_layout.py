"""One owner of the tree's keys (issue 21): ssb_s3.vocabulary.layout builds and parses every key;
no other module of the package spells one.

The check reads the package's source with `ast`, as tests/test_import_graph.py does, and looks at
every string constant (f-string parts included) outside the layout module. Two places may still
name a key, because there they are prose for a reader, not keys the code uses:
- docstrings (a module's, a class's, a function's, a click command's --help text): they explain
  the layout to whoever reads them;
- `help=` arguments (click options' --help lines): a sentence naming the default key a user sees
  (`Print index.json instead of writing streams/v1/index.json`); built from the constants, the
  sentence would be unreadable in the source and say the same.
Comments are not in the syntax tree, so they are free too. Anything else (a message, a default, a
key built with an f-string, a regex) takes its key from the layout module.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

from ssb_s3.config import parse_config
from ssb_s3.hooks.events import BucketEvent, route
from ssb_s3.vocabulary import imagefiles, layout
from ssb_s3.vocabulary.layout import TreeLayout

PACKAGE = Path(__file__).resolve().parents[1] / "ssb_s3"
LAYOUT = PACKAGE / "vocabulary" / "layout.py"
# A tree key, or a piece of one, that only the layout module may spell.
KEY_PIECES = ("streams/v1", "meta/1.0", "index-system", "index-user", "/index-", ".ssb-s3", "images.json",
              "index.sjson", ".sjson", ".ssb-upload", "store.json", "lease.json", "products.json", "write.lock",
              "/ssb.json")
WHOLE_NAMES = frozenset({"ssb.json", "index.json", "index.html", ".json"})  # a key's last part, on its own
CATALOG_NAME = re.compile(r"images-(?![a-z])")  # images-<hash>, images-{...}, images-[0-9a-f] (not build-images-file)


def _prose(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings or `help=` texts."""
    prose: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                prose.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg == "help":
            prose.update(id(sub) for sub in ast.walk(node.value))
    return prose


def _is_key_literal(text: str) -> bool:
    return any(piece in text for piece in KEY_PIECES) or text in WHOLE_NAMES or CATALOG_NAME.search(text) is not None


def key_literals(paths: list[Path]) -> list[tuple[str, int, str]]:
    """(file, line, literal) for every string constant naming a tree key outside docstrings and help."""
    found = []
    for path in paths:
        tree = ast.parse(path.read_text())
        prose = _prose(tree)
        found += [(path.name if path.parent == PACKAGE else str(path.relative_to(PACKAGE)), node.lineno, node.value)
                  for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and id(node) not in prose and _is_key_literal(node.value)]
    return sorted(found)


def test_no_tree_key_literal_outside_the_layout() -> None:
    assert key_literals([p for p in sorted(PACKAGE.rglob("*.py")) if p != LAYOUT]) == []


def test_the_check_sees_a_key_literal() -> None:
    """The checker itself: a key in code, in an f-string or in a regex is seen; a docstring or a
    help text naming one is not."""
    probe = PACKAGE / "core" / "_probe_key_literal.py"
    probe.write_text('"""Reads streams/v1/index.json."""\n'
                     'import click\n'
                     'INDEX = "streams/v1/index.json"\n'
                     'def f(d: str) -> str:\n'
                     '    """Writes d/ssb.json."""\n'
                     '    return f"{d}/ssb.json"\n'
                     'NAME = __import__("re").compile(r"^images-[0-9a-f]{20}\\.json$")\n'
                     'LOCK = ".ssb-s3/" + "write.lock"\n'
                     'opt = click.option("--stdout", help="Print it instead of writing streams/v1/index.json.")\n')
    try:
        found = [line for _, line, _ in key_literals([probe])]
    finally:
        probe.unlink()
    assert found == [3, 6, 7, 8, 8]
    assert key_literals([LAYOUT])  # the layout module does spell them: the check would see it


def test_the_published_keys_keep_their_names() -> None:
    """What clients and earlier trees know: the keys did not move when they found one owner."""
    tree = TreeLayout()
    assert (layout.INDEX_KEY, layout.SIGNED_INDEX_KEY) == ("streams/v1/index.json", "streams/v1/index.sjson")
    assert layout.LXC_INDEX_KEYS == ("meta/1.0/index-system", "meta/1.0/index-system.7",
                                     "meta/1.0/index-user", "meta/1.0/index-user.7")
    assert (layout.LEASE_KEY, layout.STORE_VERDICT_KEY, layout.PRODUCT_RECORD_KEY, layout.LEGACY_LOCK_KEY) == (
        ".ssb-s3/lease.json", ".ssb-s3/store.json", ".ssb-s3/products.json", ".ssb-s3/write.lock")
    assert layout.PROBE_KEY_PREFIX == ".ssb-s3/probe-"
    digest = hashlib.sha256(b"{}").hexdigest()[:20]
    assert tree.catalog_key(b"{}") == f"streams/v1/images-{digest}.json"
    assert tree.plain_catalog_key == "streams/v1/images.json" and tree.page_key == "index.html"
    assert tree.manifest_key("/busybox/amd64/") == "busybox/amd64/ssb.json"
    assert layout.upload_marker_key(layout.version_dir("busybox/amd64", "20260101_00:00")) == \
        "busybox/amd64/20260101_00:00/.ssb-upload.json"
    row = imagefiles.IMAGE_FILES["rootfs.squashfs.vcdiff"]
    assert imagefiles.delta_filename(row, "20260101_0000") == "20260101_0000.rootfs.squashfs.vcdiff"
    prefixed = TreeLayout("lxd", "catalogs/v2", "web/index.html")
    assert prefixed.catalog_dir == "lxd/catalogs/v2" and prefixed.manifest_key("a") == "lxd/a/ssb.json"
    assert prefixed.reserved == ("streams/v1", "meta/1.0", ".ssb-s3", "catalogs/v2", "web/index.html", "web/products")
    assert layout.product_page_key(prefixed.page_path, "a:b") == "web/products/a:b.html"
    assert layout.is_product_page_key(prefixed.page_path, "web/products/a:b.html")
    assert not layout.is_product_page_key(prefixed.page_path, "web/products/a/b.html")


def test_each_key_parse_undoes_its_build() -> None:
    tree = TreeLayout("lxd")
    key = tree.catalog_key(b"catalog")
    digest = layout.catalog_digest(key)
    assert digest == layout.catalog_digest_of(b"catalog") and len(digest) == layout.CATALOG_DIGEST_LENGTH
    assert layout.catalog_digest(tree.plain_catalog_key) is None and layout.catalog_digest(key + ".asc") is None
    for view in (key, layout.signed_key(key), key + ".asc", layout.signed_key(key) + ".asc"):
        assert tree.catalog_of_view(view) == key, view
    assert tree.catalog_of_view(tree.plain_catalog_key) is None
    assert tree.catalog_of_view(TreeLayout().catalog_key(b"catalog")) is None  # another tree's catalog folder
    assert tree.directory_of(tree.product_dir("busybox/amd64")) == "busybox/amd64"
    folder = layout.version_dir(tree.product_dir("busybox"), "20260101_0000")
    assert layout.version_file_of(tree.product_dir("busybox"), layout.version_file_key(folder, "meta.tar.xz")) == \
        ("20260101_0000", "meta.tar.xz")
    assert layout.version_file_of(tree.product_dir("busybox"), tree.manifest_key("busybox")) is None
    assert layout.version_file_of(tree.product_dir("busybox"), folder + "/sub/meta.tar.xz") is None
    assert layout.version_file_of(tree.product_dir("busybox"), "lxd/busyboxes/20260101_0000/meta.tar.xz") is None
    row = imagefiles.IMAGE_FILES["disk.qcow2.vcdiff"]
    assert imagefiles.parse_delta_filename(imagefiles.delta_filename(row, "20260101_0000")) == (row, "20260101_0000")
    assert layout.reserved_problem("streams", tree.reserved) is not None  # it would contain streams/v1
    assert layout.reserved_problem("streams/extra", tree.reserved) is None


def test_hooks_know_the_trees_own_keys_from_its_layout() -> None:
    """The hooks ignored everything under "streams/" whatever images_path said, and so never
    republished a product whose folder is there (allowed: only streams/v1 is the tree's); they now
    ignore exactly the tree's own keys, with a configured images_path and page among them."""
    tree = parse_config({"images_path": "catalogs", "page": {"path": "site/index.html"}, "products": [
        {"name": "a", "arch": "amd64", "release": "1", "os": "A", "directory": "streams/extra/amd64"},
        {"name": "b", "arch": "amd64", "release": "1", "os": "B", "directory": "site/b"},
    ], "hooks": {"manifest_on_upload": True}}, "tree.yml")
    events = [BucketEvent("images", f"tree/{key}", True) for key in (
        "streams/extra/amd64/ssb.json", "site/b/20260101_0000/rootfs.squashfs",
        "catalogs/images-0123456789abcdef0123.json", "site/index.html", "site/products/a.html", "streams/v1/index.json",
        "meta/1.0/index-system", ".ssb-s3/lease.json")]
    changes = route(tree, "s3://images/tree", events)
    assert sorted(changes) == ["a", "b"]
    assert changes["a"].manifest and not changes["a"].artifacts
    assert changes["b"].artifacts and not changes["b"].manifest
    assert all(tree.layout.is_own(e.key.removeprefix("tree/")) for e in events[2:])


def test_kind_of_names_every_key_of_the_tree() -> None:
    """One answer to "what is this key": the hooks, the manifest scan and the purge ask it."""
    tree = TreeLayout("lxd", "catalogs", "web/index.html")
    catalog = tree.catalog_key(b"catalog")
    product = tree.product_dir("busybox/amd64")
    version = layout.version_dir(product, "20260101_0000")
    delta = imagefiles.delta_filename(imagefiles.IMAGE_FILES["rootfs.squashfs.vcdiff"], "20251231_0000")
    expected = {
        layout.INDEX_KEY: ("index", ""), layout.SIGNED_INDEX_KEY: ("signed-index", ""),
        catalog: ("catalog", catalog), layout.signed_key(catalog): ("catalog-companion", catalog),
        layout.detached_signature_key(catalog): ("catalog-companion", catalog),
        tree.plain_catalog_key: ("plain-catalog", tree.plain_catalog_key),
        layout.signed_key(tree.plain_catalog_key): ("plain-catalog", tree.plain_catalog_key),
        tree.manifest_key("busybox/amd64"): ("manifest", product),
        layout.version_file_key(version, "rootfs.squashfs"): ("version-file", product),
        layout.upload_marker_key(version): ("upload-marker", product),
        layout.version_file_key(version, delta): ("delta", product),
        layout.version_file_key(version, "sub/file"): ("other", product),
        layout.LEASE_KEY: ("internal", ""), layout.PAST_KEY: ("internal", ""),
        layout.LXC_INDEX_KEYS[1]: ("lxc-index", ""),
        tree.page_key: ("page", ""), layout.product_page_key(tree.page_path, "a:b"): ("product-page", ""),
        "lxd/elsewhere/file": ("other", ""),
    }
    found = {key: (kind.kind, kind.owner) for key in expected for kind in [tree.kind_of(key, [product, "lxd/busybox"])]}
    assert found == expected
    assert tree.kind_of(layout.version_file_key(version, delta), [product]).version == "20260101_0000"
    assert tree.kind_of(tree.manifest_key("busybox/amd64")).kind == "other"  # no product folders given
    assert {k for k, _ in expected.values()} == set(layout.KeyKindName.__args__)  # type: ignore[attr-defined]


def test_the_page_links_to_its_product_pages_through_the_layout() -> None:
    """The page's link to a product page, and the product page's link back, come from the layout:
    a moved page (page.path) moves both."""
    assert layout.product_page_link("a:b") == "./products/a:b.html"
    for page_path in ("index.html", "web/list.html"):
        folder = page_path.rpartition("/")[0]
        product_page = layout.product_page_key(page_path, "a")
        assert layout.in_folder(folder, layout.product_page_link("a").removeprefix("./")) == product_page
        back = layout.page_link_from_product_page(page_path)
        assert layout.in_folder(layout.parent_folder(layout.parent_folder(product_page)),
                                back.removeprefix("../")) == page_path
