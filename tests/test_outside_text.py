"""Issue 20, points 7 and 14: text from outside never acts on a terminal, and never gets published.

A hostile upstream (a local source folder: the selection and the printing are what is tested)
holds terminal escapes (ESC ] 52 writes the clipboard, ESC [ 2J clears the screen), a one-byte
CSI (U+009B), a bidi override, a NUL in an LXC image's release: each product or version is
dropped with its reason, the rest is mirrored, and nothing of it reaches the terminal raw, in
`mirror`'s warnings or in `list`. A foreign tree's catalog holding the same characters is listed
escaped in every format (json and yaml read back to the exact text). A `source:` ssb.json or a
tree.yml holding them is one clear line. A served index-system line with a NUL is flagged by
`verify`.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import functools
import http.server
import io
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ssb
from realparts import make_image, sha256_file, source_manifests
from test_mirror import PRODUCTS, run_cli, run_mirror, save, write_upstream

from ssb_s3.core import lxcindex
from ssb_s3.vocabulary.text import UNSAFE, document_problem, printable, text_problem

CLIPBOARD = "Busybox\x1b]52;c;ZWNobyBwd25lZA==\x07"  # OSC 52: sets the clipboard in many terminals
CLEAR = "busybox/evil\x1b[2J"  # clears the screen; no ';' in it
CSI = "x\x9b31m"  # U+009B: a one-byte CSI
BIDI = "safe\u202etxt.exe"
GOOD, OTHER = PRODUCTS[0][0], PRODUCTS[2][0]  # busybox:1.36:amd64:default (two versions), busybox:1.35:amd64:default


def raw_unsafe(text: str) -> set[str]:
    """The characters vocabulary/text refuses that appear raw in output (line breaks between lines aside)."""
    return {c for c in UNSAFE.findall(text) if c != "\n"}


def lxc_product(root: Path, release: str) -> dict[str, Any]:
    """An upstream product holding one classic LXC image (meta.tar.xz + rootfs.tar.xz)."""
    folder = "images/lxconly/1.35/amd64/default/20260101_0000"
    make_image(root / folder, kind="lxc", release="1.35", description="lxc only")
    items = {name: {"ftype": name.replace("rootfs.", "root."), "path": f"{folder}/{name}",
                    "size": (root / folder / name).stat().st_size, "sha256": sha256_file(root / folder / name)}
             for name in ("meta.tar.xz", "rootfs.tar.xz")}
    return {"arch": "amd64", "os": "Busybox", "release": release, "release_title": "1.35", "variant": "default",
            "aliases": "", "versions": {"20260101_0000": {"items": items}}}


def test_hostile_upstream_text_is_dropped_with_its_reason_and_never_printed_raw(tmp_path: Path) -> None:
    root = tmp_path / "up"
    catalog = write_upstream(root, [PRODUCTS[0], PRODUCTS[2]])
    base = catalog["products"][OTHER]
    hostile = {"evil:os:amd64:default": {"os": CLIPBOARD}, "evil:alias:amd64:default": {"aliases": CLEAR},
               "evil:title:amd64:default": {"release_title": BIDI}}
    for name, change in hostile.items():
        catalog["products"][name] = {**copy.deepcopy(base), **change}
    catalog["products"]["lxc:nul:amd64:default"] = lxc_product(root, "1.35\x00")
    catalog["products"]["lxc:clear:amd64:default"] = {**lxc_product(root, "1.35"), "os": "Busybox\x1b[2J"}
    catalog["products"][GOOD]["versions"]["20260101_0000"]["label"] = CSI
    save(root, catalog, None)
    target = tmp_path / "target"

    out = run_mirror(None, str(target), str(root))
    assert out.returncode == 0, out.stderr
    assert not raw_unsafe(out.stdout + out.stderr), out.stderr
    warned = out.stderr
    for name, field, char in (("evil:os:amd64:default", "os", "U+001B (ESC)"),
                              ("evil:alias:amd64:default", "aliases", "U+001B (ESC)"),
                              ("evil:title:amd64:default", "release_title", "U+202E (bidirectional override)"),
                              ("lxc:nul:amd64:default", "release", "U+0000 (NUL)"),
                              ("lxc:clear:amd64:default", "os", "U+001B (ESC)")):
        assert f"product {name}: {field} contains {char}" in warned, warned
    assert f"product {GOOD} version 20260101_0000: label contains U+009B (control character)" in warned, warned
    assert "\\u001b]52;c;" not in warned  # the reason names the character; the value is not repeated

    index = json.loads((target / "streams/v1/index.json").read_text())
    served = json.loads((target / index["index"]["images"]["path"]).read_text())
    assert set(served["products"]) == {GOOD, OTHER}
    assert set(served["products"][GOOD]["versions"]) == {"20260102_0000"}
    published = b"".join(p.read_bytes() for p in target.rglob("*") if p.is_file() and p.suffix in (".json", ""))
    assert not raw_unsafe(published.decode("utf-8", "replace").replace("\n", "")) and b"\x00" not in published
    assert not (target / "meta/1.0/index-system").exists() or b"\x00" not in (
        target / "meta/1.0/index-system").read_bytes()

    listed = run_cli(None, str(target), "list", "-c", "Nl")
    assert listed.returncode == 0 and GOOD in listed.stdout and not raw_unsafe(listed.stdout + listed.stderr)


def _hostile_tree(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A published local tree whose served catalog was then rewritten with hostile text (a foreign tree)."""
    root = tmp_path / "tree"
    make_image(root / "p/20260101_0000", kind="squashfs", serial="20260101_0000")
    conf = tmp_path / "tree.yml"
    conf.write_text("products:\n  - name: p:1:amd64:default\n    arch: amd64\n    release: '1'\n    os: Busybox\n"
                    "    directory: p\n    aliases: [p]\n")
    out = ssb("-c", str(conf), "-t", str(root), "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    index = json.loads((root / "streams/v1/index.json").read_text())
    path = root / index["index"]["images"]["path"]
    catalog = json.loads(path.read_text())
    values = {"os": CLIPBOARD, "release": BIDI + "\u2028\x85" + CSI}
    catalog["products"]["p:1:amd64:default"].update(values)
    path.write_text(json.dumps(catalog, ensure_ascii=False))
    return root, values


@pytest.mark.parametrize("fmt", ["table", "compact", "csv", "json", "yaml"])
def test_a_foreign_trees_text_is_listed_escaped_in_every_format(tmp_path: Path, fmt: str) -> None:
    root, values = _hostile_tree(tmp_path)
    out = ssb("-t", str(root), "list", "--format", fmt + (",header" if fmt == "csv" else ""), "-c", "Ndor",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not raw_unsafe(out.stdout + out.stderr), repr(out.stdout)
    if fmt == "json":
        row = json.loads(out.stdout)[0]
    elif fmt == "yaml":
        row = yaml.safe_load(out.stdout)[0]
    else:
        assert printable(CLIPBOARD) in out.stdout and printable(values["release"]) in out.stdout, out.stdout
        # the header and the one row (between borders in a table): no line break of the tree's
        assert len(out.stdout.splitlines()) == (5 if fmt == "table" else 2)
        if fmt == "csv":
            assert next(csv.DictReader(io.StringIO(out.stdout)))["OS"] == printable(CLIPBOARD)
        return
    assert (row["os"], row["release"]) == (values["os"], values["release"])  # escaped as JSON/YAML escape: exact


def test_a_source_ssb_json_or_tree_yml_holding_escapes_is_one_clear_line(tmp_path: Path) -> None:
    source = tmp_path / "built"
    make_image(source / "own/20260101_0000", kind="squashfs", serial="20260101_0000")
    conf = tmp_path / "tree.yml"
    tree = ("products:\n  - name: own:1:amd64:default\n    arch: amd64\n    release: '1'\n    os: {os}\n"
            f"    directory: own\n    source: {source}\n")
    conf.write_text(tree.format(os="Own"))
    source_manifests(conf)  # the source's owner (publish --refresh-manifests never writes there)
    target = tmp_path / "public"
    assert ssb("-c", str(conf), "-t", str(target), "publish", "--refresh-manifests").returncode == 0
    manifest_path = source / "own/ssb.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["versions"]["20260101_0000"]["label"] = "\x1b]52;c;ZWNobyBwd25lZA==\x07"
    manifest_path.write_text(json.dumps(manifest))
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    out = ssb("-c", str(conf), "-t", str(target), "publish")
    assert out.returncode == 1 and "Traceback" not in out.stderr and not raw_unsafe(out.stderr), out.stderr
    assert (f"{manifest_path}: versions.20260101_0000.label: contains U+001B (ESC), expected one line of "
            "printable text") in out.stderr, out.stderr
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before

    conf.write_text(tree.format(os='"Own\\e[2J\\u202e"'))  # YAML's own escapes
    out = ssb("-c", str(conf), "-t", str(target), "validate")
    assert out.returncode == 1 and not raw_unsafe(out.stderr), out.stderr
    assert f"{conf}: products[0].os: contains U+001B (ESC)" in out.stderr, out.stderr


def test_verify_flags_an_lxc_index_line_holding_a_nul_or_an_escape(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    make_image(root / "p/20260101_0000", kind="lxc", serial="20260101_0000")
    conf = tmp_path / "tree.yml"
    conf.write_text("products:\n  - name: p:1:amd64:default\n    arch: amd64\n    release: '1'\n    os: Busybox\n"
                    "    directory: p\n")
    assert ssb("-c", str(conf), "-t", str(root), "publish", "--refresh-manifests").returncode == 0
    index = root / "meta/1.0/index-system"
    line = index.read_text()
    assert line == "Busybox;1;amd64;default;20260101_0000;p/20260101_0000\n"
    assert ssb("-c", str(conf), "-t", str(root), "verify").returncode == 0
    for bad, char in (("Busybox;1\x00;", "U+0000 (NUL)"), ("Busybox\x1b[2J;1;", "U+001B (ESC)"),
                      ("Busybox\x1c;1;", "U+001C (control character)")):
        index.write_text(line.replace("Busybox;1;", bad))
        out = ssb("-c", str(conf), "-t", str(root), "verify")
        assert out.returncode == 1 and not raw_unsafe(out.stderr), out.stderr
        assert f"{index}: line 1: " in out.stderr and f"contains {char}" in out.stderr, out.stderr


# ----------------------------------------------------------------------------------------------
# The one check and the one escape, alone


@pytest.mark.parametrize("char", ["\x00", "\x07", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9b", "\u2028",
                                  "\u2029", "\u202a", "\u202e", "\u2066", "\u2069"])
def test_every_refused_character_is_refused_and_escaped(char: str) -> None:
    text = f"a{char}b"
    assert text_problem(text) is not None and f"U+{ord(char):04X}" in str(text_problem(text))
    assert printable(text) == f"a\\u{ord(char):04x}b" and json.loads(f'"{printable(text)}"') == text
    assert document_problem({"x": [{"y": text}]}) == ("x[0].y", text_problem(text))
    assert document_problem({text: 1}) is not None


def test_ordinary_text_passes_untouched() -> None:
    for text in ("Ubuntu 24.04 LTS", "Debian — trixie", "日本語", "café", "a\u200bb", "x;y|z$(id)"):
        assert text_problem(text) is None and printable(text) == text
    assert document_problem({"versions": {"20260101": {"label": "ok", "n": 5, "l": ["a"]}}}) is None
    assert printable("a\nb", newlines=True) == "a\nb" and printable("a\nb") == "a\\u000ab"


def test_lxc_contract_refuses_escapes_without_a_semicolon() -> None:
    from test_lxc_index import catalog_of, entry

    for value in ("Busybox\x1b[2J", "1.36\x00", "a\u202eb"):
        problems = lxcindex.entry_problems({**entry(), "os": value})
        assert problems and "U+" in problems[0][1], problems
        assert lxcindex.lxc_images(catalog_of({"p": {**entry(), "os": value}})) == []


# ----------------------------------------------------------------------------------------------
# Point 14: what a mirror says about its source, and what it publishes of it


@contextlib.contextmanager
def serve_http(root: Path) -> Iterator[str]:
    """`root` over plain http:// on 127.0.0.1."""
    from realparts import _QuietHandler

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


IN_TRANSIT = "plain http:// without --keyring: the catalog and the files can be altered in transit"


def test_an_http_source_without_a_keyring_gives_one_warning_line(tmp_path: Path) -> None:
    root = tmp_path / "up"
    write_upstream(root, [PRODUCTS[2]])
    (tmp_path / "empty.gpg").write_bytes(b"")
    with serve_http(root) as url:
        out = run_mirror(None, str(tmp_path / "t1"), url, "--dry-run")
        assert out.returncode == 0, out.stderr
        warned = [line for line in out.stderr.splitlines() if IN_TRANSIT in line]
        assert warned == [f"WARNING: source {url}: {IN_TRANSIT} (use https:// or --keyring)"], out.stderr
        keyed = run_mirror(None, str(tmp_path / "t2"), url, "--dry-run", "--keyring", str(tmp_path / "empty.gpg"))
        assert IN_TRANSIT not in keyed.stderr  # (refused: the source is not signed; but no warning)
    local = run_mirror(None, str(tmp_path / "t3"), str(root), "--dry-run")
    assert local.returncode == 0 and IN_TRANSIT not in local.stderr


def test_the_public_tree_does_not_name_the_mirror_source(tmp_path: Path) -> None:
    """ssb.json's mirror.source is a digest: the source's local path (or internal URL) is published nowhere,
    and the next mirror from the same source still knows the product as its own (an older ssb.json
    that recorded the path itself too)."""
    from ssb_s3.commands.mirror import source_id

    root = tmp_path / "internal-build-host-share"
    write_upstream(root, [PRODUCTS[2]])
    target = tmp_path / "public"
    assert run_mirror(None, str(target), str(root)).returncode == 0
    published = [p for p in target.rglob("*") if p.is_file() and ".ssb-s3" not in p.parts]
    assert not [p for p in published if b"internal-build-host-share" in p.read_bytes()]
    manifest_path = next(p for p in published if p.name == "ssb.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["mirror"] == {"source": source_id(str(root))}
    manifest["mirror"] = {"source": str(root)}  # what an older version wrote
    manifest_path.write_text(json.dumps(manifest))
    again = run_mirror(None, str(target), str(root), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["dropped"] == [] and json.loads(again.stdout)["products"] == [OTHER]
    assert json.loads(manifest_path.read_text())["mirror"] == {"source": source_id(str(root))}


def test_printable_text_never_holds_a_refused_character() -> None:
    """text_problem and document_problem answer printable text at once (str.isprintable, a C loop):
    sound only while every character UNSAFE names is one isprintable refuses; and a refused
    character among printable ones is still found, with its field."""
    refused = [chr(c) for c in range(sys.maxunicode + 1) if UNSAFE.match(chr(c))]
    assert len(refused) == 32 + 33 + 2 + 5 + 4
    assert not any(c.isprintable() for c in refused)
    for c in refused:
        assert text_problem(f"plain {c} text") is not None
        assert document_problem({"a": ["x", {"b": f"y{c}"}]}) is not None
    assert document_problem({"k": "é ü ß 日本", "n": 1, "l": [None, True, 1.5]}) is None
