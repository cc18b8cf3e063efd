"""The catalog web page (index.html), in a real browser and with the real LXD daemon.

A 20-product tree is uploaded to a SeaweedFS bucket and published by the CLI; Playwright drives
Debian's chromium over the bucket's HTTPS endpoint: every product is a row, sorting (mouse and
keyboard) and filtering work, nothing is requested outside the tree, the page reads without JS,
and the `lxc remote add` / `lxc launch` lines read from the page launch a container with the
real LXD daemon. The renderer itself: hostile catalog text stays inert, the output is
deterministic, and 1,000 products render well under a second.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from realparts import LxdDaemon, S3Server, make_image, missing, need

from ssb_s3.config import PageConfig, config_as_dict, config_from_text
from ssb_s3.core.catalog import SHORT_FINGERPRINT, version_images
from ssb_s3.core.page import render_page
from ssb_s3.core.versions import version_time

REPO = Path(__file__).resolve().parent.parent

# name, os, release, arch, variant, image kind, versions, aliases, extra tree.yml keys
PRODUCTS: list[tuple[str, str, str, str, str, str, tuple[str, ...], tuple[str, ...], str]] = [
    ("alpine:3.20:amd64:default", "Alpine", "3.20", "amd64", "default", "squashfs",
     ("20261128_1000", "20261130_1000"), ("alpine/3.20",), ""),
    ("alpine:3.20:arm64:default", "Alpine", "3.20", "arm64", "default", "squashfs", ("20261130_1000",),
     ("alpine/3.20",), ""),
    ("alpine:3.21:amd64:default", "Alpine", "3.21", "amd64", "default", "squashfs", ("20261129_0600",),
     ("alpine/3.21", "alpine/edge"), ""),
    ("alpine:3.21:amd64:cloud", "Alpine", "3.21", "amd64", "cloud", "vm", ("20261129_0600",),
     ("alpine/3.21/cloud",), ""),
    ("busybox:1.36:amd64:default", "Busybox", "1.36", "amd64", "default", "squashfs",
     ("20261125_1000", "20261130_1200"), ("busybox/1.36", "busybox"), ""),
    ("busybox:1.36:amd64:tarxz", "Busybox", "1.36", "amd64", "tarxz", "tarxz", ("20261127_1000",),
     ("busybox/1.36/tarxz",), "    requirements: {privileged: \"false\"}\n"),
    ("busybox:1.36:amd64:unified", "Busybox", "1.36", "amd64", "unified", "unified", ("20261127_1100",),
     ("busybox/1.36/unified",), ""),
    ("debian:11:amd64:default", "Debian", "11", "amd64", "default", "squashfs", ("20250601_1000",),
     ("debian/11", "debian/bullseye"), "    support_eol: 2026-08-31\n"),
    ("debian:12:amd64:default", "Debian", "12", "amd64", "default", "squashfs", ("20261130_0300",),
     ("debian/12", "debian/bookworm"), ""),
    ("debian:12:amd64:cloud", "Debian", "12", "amd64", "cloud", "vm", ("20261130_0300",), ("debian/12/cloud",),
     "    requirements: {secureboot: \"false\"}\n"),
    ("debian:12:arm64:default", "Debian", "12", "arm64", "default", "squashfs", ("20261129_0300",),
     ("debian/12",), ""),
    ("debian:13:amd64:default", "Debian", "13", "amd64", "default", "squashfs", ("20261130_0400",),
     ("debian/13", "debian/trixie"), ""),
    ("fedora:40:amd64:default", "Fedora", "40", "amd64", "default", "squashfs", ("20261120_0800",),
     ("fedora/40",), ""),
    ("fedora:41:amd64:default", "Fedora", "41", "amd64", "default", "unified", ("20261130_0800",),
     ("fedora/41",), ""),
    ("ubuntu:22.04:amd64:default", "Ubuntu", "22.04", "amd64", "default", "squashfs", ("20261126_0700",),
     ("ubuntu/22.04", "ubuntu/jammy"), ""),
    ("ubuntu:24.04:amd64:default", "Ubuntu", "24.04", "amd64", "default", "squashfs",
     ("20261129_0700", "20261130_0700"), ("ubuntu/24.04", "ubuntu/noble"), ""),
    ("ubuntu:24.04:amd64:cloud", "Ubuntu", "24.04", "amd64", "cloud", "vm", ("20261130_0700",),
     ("ubuntu/24.04/cloud",), ""),
    ("ubuntu:24.04:arm64:default", "Ubuntu", "24.04", "arm64", "default", "squashfs", ("20261130_0700",),
     ("ubuntu/24.04",), ""),
    ("archlinux:current:amd64:default", "Archlinux", "current", "amd64", "default", "squashfs",
     ("20260901_0000",), ("archlinux",), ""),
    ("opensuse:15.6:amd64:default", "openSUSE", "15.6", "amd64", "default", "tarxz", ("20261128_0500",),
     ("opensuse/15.6",), ""),
]
LAUNCHED = "busybox:1.36:amd64:default"
CLIENT_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
PAGE_CACHE = "public, max-age=120"


def _directory(name: str) -> str:
    return name.replace(":", "/")


def tree_yml(endpoint: str) -> str:
    lines = [f'storage: {{endpoint_url: "{endpoint}", region: us-east-1, addressing_style: path}}',
             f'cache_control: {{page: "{PAGE_CACHE}"}}',
             "page: {remote: ssb, stale_after_days: 30}",
             "products:"]
    for name, os_name, release, arch, variant, _, _, aliases, extra in PRODUCTS:
        lines.append(f"  - name: {name}\n    arch: {arch}\n    release: \"{release}\"\n    os: {os_name}\n"
                     f"    directory: {_directory(name)}\n    days: 3\n    variant: {variant}\n"
                     f"    aliases: [{', '.join(aliases)}]\n{extra}".rstrip("\n"))
    return "\n".join(lines) + "\n"


def ssb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ssb_s3", *args], capture_output=True, text=True, timeout=300,
                          env=env)


@pytest.fixture(scope="module")
def served(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The 20 products built as distrobuilder would, uploaded to a public bucket, published by the CLI."""
    work = tmp_path_factory.mktemp("page")
    for name, os_name, release, arch, variant, kind, versions, _, _ in PRODUCTS:
        for serial in versions:
            make_image(work / "images" / _directory(name) / serial, kind=kind, arch=CLIENT_ARCH[arch],
                       os_name=os_name, release=release, variant=variant, serial=serial,
                       description=f"{name} {serial}")
    bucket = "page-tree"
    s3_server.create_bucket(bucket, public_read=True)
    s3_server.upload_folder(bucket, work / "images")
    client = s3_server.client()
    conf = work / "tree.yml"
    conf.write_text(tree_yml(s3_server.endpoint))
    url = s3_server.public_url(bucket)
    published = time.time()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key}
    out = ssb("-c", str(conf), "-t", f"s3://{bucket}", "publish", "--refresh-manifests", "--base-url", url, env=env)
    assert out.returncode == 0, out.stderr
    index = json.loads(s3_server.anonymous_get(f"{url}/streams/v1/index.json"))
    catalog = json.loads(s3_server.anonymous_get(f"{url}/{index['index']['images']['path']}"))
    head = client.head_object(Bucket=bucket, Key="index.html")
    return {"url": url, "catalog": catalog, "work": work, "head": head, "published": published,
            "html": s3_server.anonymous_get(f"{url}/index.html")}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright (no browser download): a missing one skips, or fails
    under SSB_REQUIRE_E2E=1."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the pip package playwright is not installed")
        raise AssertionError("unreachable") from None
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        missing("Debian's chromium (/usr/bin/chromium) is not installed")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


class Visit:
    """One page load in a fresh context, recording every request and console error."""

    def __init__(self, browser: Any, url: str, *, javascript: bool = True, scale: float = 1.0) -> None:
        self.context = browser.new_context(ignore_https_errors=True, java_script_enabled=javascript,
                                           viewport={"width": 1280, "height": 800}, device_scale_factor=scale)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("dialog", lambda dialog: (self.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        if url:
            self.page.goto(url, wait_until="load")

    def names(self, visible_only: bool = True) -> list[str]:
        """Product names in table order (the row header cells)."""
        rows = self.page.locator("#products tbody tr" + (":not([hidden])" if visible_only else ""))
        return [text.strip() for text in rows.locator("th").all_text_contents()]

    def column(self, index: int, attribute: str = "") -> list[str]:
        """A column's cells (text, or an attribute) in row order, visible rows only."""
        return self.page.eval_on_selector_all(
            "#products tbody tr:not([hidden])",
            "(rows, [i, a]) => rows.map(r => a ? r.cells[i].getAttribute(a) : r.cells[i].textContent.trim())",
            [index, attribute])

    def sort_state(self) -> dict[str, str]:
        return self.page.eval_on_selector_all(
            "#products thead th[aria-sort]", "ths => Object.fromEntries(ths.map(t => "
            "[t.textContent.trim(), t.getAttribute('aria-sort')]))")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Any, served: dict[str, Any]) -> Iterator[Visit]:
    v = Visit(browser, f"{served['url']}/index.html")
    yield v
    v.close()


COL = {"product": 0, "os": 1, "release": 2, "arch": 3, "variant": 4, "type": 5, "clients": 6, "latest": 7,
       "age": 8, "size": 9}


def test_page_is_published_with_its_own_cache_class(served: dict[str, Any]) -> None:
    assert served["head"]["CacheControl"] == PAGE_CACHE
    assert served["head"]["ContentType"] == "text/html; charset=utf-8"
    assert served["html"].startswith(b"<!DOCTYPE html>")
    size = len(served["html"])
    print(f"index.html for {len(PRODUCTS)} products: {size} bytes")
    assert size < 200_000


def test_every_product_is_a_row_and_nothing_is_requested_outside_the_tree(visit: Visit,
                                                                         served: dict[str, Any]) -> None:
    page = visit.page
    assert sorted(visit.names()) == sorted(served["catalog"]["products"]) and len(visit.names()) == len(PRODUCTS)
    assert visit.names() == sorted(visit.names()), "rows come sorted by product name"
    assert page.is_visible("#controls"), "the script ran (its CSP hash matches)"
    # every detail panel opens from its row, the launch lines name this server and product
    page.click(f"#products a:text-is('{LAUNCHED}')")
    panel = page.locator("details[open]")
    assert panel.locator("summary").text_content() == LAUNCHED
    commands = panel.locator(".cmd code").all_text_contents()
    assert f"lxc remote add ssb {served['url']} --protocol simplestreams --public" in commands
    assert "lxc launch ssb:busybox/1.36" in commands and "incus launch ssb:busybox/1.36" in commands
    page.mouse.wheel(0, 400)
    assert not visit.errors, visit.errors  # no CSP violation, no script error
    outside = [u for u in visit.requests if not u.startswith(served["url"] + "/") and not u.startswith("data:")]
    assert visit.requests and not outside, visit.requests


def test_rows_show_what_the_catalog_says(visit: Visit, served: dict[str, Any]) -> None:
    catalog = served["catalog"]["products"]
    names = visit.names()
    latest = visit.column(COL["latest"])
    types = visit.column(COL["type"])
    ages = visit.column(COL["age"])
    for name, version, kind, age in zip(names, latest, types, ages, strict=True):
        entry = catalog[name]
        assert version == max(entry["versions"])
        images = version_images(entry["versions"][version]["items"])
        assert kind == ("VM" if {i.type for i in images.values()} == {"virtual-machine"} else "container")
        stale = served["published"] - version_time(version).timestamp() > 30 * 86400
        assert ("(stale)" in age) == stale, (name, age)
    assert set(visit.column(COL["clients"])) == {"LXD, Incus"}
    # the detail panel: every version with short and full fingerprints, requirements, every file with its size
    entry = catalog["debian:12:amd64:cloud"]
    visit.page.click("#products a:text-is('debian:12:amd64:cloud')")
    panel = visit.page.locator("details[open]")
    text = panel.inner_text()
    for version in entry["versions"].values():
        for fingerprint in version_images(version["items"]):
            assert fingerprint in text and fingerprint[:SHORT_FINGERPRINT] in text
        for item in version["items"].values():
            assert item["path"].rsplit("/", 1)[-1] in text
    assert "secureboot=false" in text and "debian/12/cloud" in text
    assert "lxc launch ssb:debian/12/cloud --vm" in panel.locator(".cmd code").all_text_contents()
    sizes = panel.locator("td[data-bytes]").evaluate_all("cells => cells.map(c => Number(c.dataset.bytes))")
    assert sorted(sizes) == sorted({i["path"]: i["size"] for v in entry["versions"].values()
                                    for i in v["items"].values()}.values())


def test_sorting_by_a_column_reorders_the_rows(visit: Visit) -> None:
    page = visit.page
    page.click("#products thead button:text-is('Size')")
    assert visit.sort_state() == {"Size": "ascending"}
    sizes = [int(s) for s in visit.column(COL["size"], "data-sort")]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    page.click("#products thead button:text-is('Size')")
    assert visit.sort_state() == {"Size": "descending"}
    assert [int(s) for s in visit.column(COL["size"], "data-sort")] == sorted(sizes, reverse=True)
    page.click("#products thead button:text-is('OS')")
    oses = visit.column(COL["os"])
    assert oses == sorted(oses, key=str.lower) and oses != sorted(oses)  # openSUSE sorts among the others
    page.click("#products thead button:text-is('Age')")
    ages = [int(s) for s in visit.column(COL["age"], "data-sort")]
    assert ages == sorted(ages) and visit.column(COL["age"])[-1].endswith("(stale)")


def test_filtering_hides_rows_that_do_not_match(visit: Visit, served: dict[str, Any]) -> None:
    page = visit.page
    page.fill("#filter", "debian")
    shown = visit.names()
    assert sorted(shown) == sorted(n for n in served["catalog"]["products"] if n.startswith("debian:"))
    assert page.text_content("#count") == f"{len(shown)} of {len(PRODUCTS)} products shown"
    page.fill("#filter", "ubuntu arm64")
    assert visit.names() == ["ubuntu:24.04:arm64:default"]
    page.fill("#filter", "VM")
    assert sorted(visit.names()) == sorted(p[0] for p in PRODUCTS if p[5] == "vm")
    page.fill("#filter", "no such product")
    assert visit.names() == [] and len(visit.names(visible_only=False)) == len(PRODUCTS)
    page.fill("#filter", "")
    assert len(visit.names()) == len(PRODUCTS)


def test_keyboard_tab_to_a_sort_header_and_enter_sorts(visit: Visit) -> None:
    page = visit.page
    page.locator("#filter").focus()  # the last control before the table
    for _ in range(len(COL) + 2):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Arch":
            break
    assert page.evaluate("document.activeElement.tagName") == "BUTTON"
    assert page.evaluate("document.activeElement.textContent") == "Arch"
    page.keyboard.press("Enter")
    assert visit.sort_state() == {"Arch": "ascending"}
    arches = visit.column(COL["arch"])
    assert arches == sorted(arches) and arches[0] == "amd64" and arches[-1] == "arm64"
    page.keyboard.press("Enter")
    assert visit.sort_state() == {"Arch": "descending"}
    assert visit.column(COL["arch"])[0] == "arm64"


def test_readable_without_javascript(browser: Any, served: dict[str, Any]) -> None:
    plain = Visit(browser, f"{served['url']}/index.html", javascript=False)
    try:
        assert sorted(plain.names()) == sorted(served["catalog"]["products"])
        assert plain.page.is_visible("#products") and not plain.page.is_visible("#controls")
        plain.page.click("summary:text-is('debian:13:amd64:default')")  # <details> open without JS
        assert plain.page.is_visible("details[open] .cmd code")
        outside = [u for u in plain.requests if not u.startswith(served["url"] + "/")]
        assert not outside, outside
    finally:
        plain.close()


def test_screenshot_of_the_20_product_tree(browser: Any, served: dict[str, Any], tmp_path: Path) -> None:
    """The whole page, one product open, kept as a test artefact (a 1280 px wide layout at 0.7 device
    pixels per CSS pixel: under 300 KB); SSB_UPDATE_SCREENSHOT=1 also writes docs/page.png, the
    README's picture."""
    shot = tmp_path / "page.png"
    visit = Visit(browser, f"{served['url']}/index.html#p-10", scale=0.7)  # debian:12:amd64:default
    try:
        assert visit.page.locator("details[open] summary").text_content() == "debian:12:amd64:default"
        visit.page.evaluate("window.scrollTo(0, 0)")  # the sticky table header back at the top
        visit.page.screenshot(path=str(shot), full_page=True)
    finally:
        visit.close()
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) < 300_000, len(data)
    print(f"screenshot: {shot} ({len(data)} bytes)")
    if os.environ.get("SSB_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        (REPO / "docs" / "page.png").write_bytes(data)


def test_the_copied_lines_launch_a_container_with_lxd(visit: Visit, served: dict[str, Any],
                                                      lxd_daemon: LxdDaemon) -> None:
    """What a user copies from the page is what works: `lxc remote add` then `lxc launch` (one launch)."""
    visit.page.click(f"#products a:text-is('{LAUNCHED}')")
    lines = visit.page.locator("details[open] .cmd code").all_text_contents()
    add = next(line for line in lines if line.startswith("lxc remote add "))
    launch = next(line for line in lines if line.startswith("lxc launch "))
    client = lxd_daemon.client
    remote = shlex.split(add)[3]
    client.remote_remove(remote)
    client.run(*shlex.split(add)[1:])
    client.trust_remote_ca(remote, lxd_daemon.ca_file)  # the daemon's trust of the test CA (a real server: none)
    client.run("delete", "--force", "c", check=False)
    try:
        client.run(*shlex.split(launch)[1:], "c")
        client.run("exec", "c", "--", "true")
        newest = max(served["catalog"]["products"][LAUNCHED]["versions"])
        assert f'BUILD_ID="{newest}"' in client.run("exec", "c", "--", "cat", "/etc/os-release").stdout
    finally:
        client.run("delete", "--force", "c", check=False)
        client.remote_remove(remote)


# --------------------------------------------------------------------------------------------
# The renderer alone

HOSTILE = "<script>alert(1)</script>"


def _catalog(count: int, *, hostile: bool = False) -> dict[str, Any]:
    """A catalog of `count` products shaped as the publisher writes them (mirrored meta items, two
    versions, a delta on the newest)."""
    products: dict[str, Any] = {}
    for n in range(count):
        versions = {}
        for day in (29, 30):
            vname = f"202611{day}_1000"
            meta = f"{n:08x}{day:02d}".ljust(64, "a")
            fingerprint = f"{n:08x}{day:02d}".ljust(64, "f")
            folder = f"os{n}/{vname}"
            meta_item = {"ftype": "lxd.tar.xz", "path": f"{folder}/lxd.tar.xz", "size": 400, "sha256": meta,
                         "combined_squashfs_sha256": fingerprint}
            items = {"lxd.tar.xz": meta_item, "incus.tar.xz": {**meta_item, "ftype": "incus.tar.xz"},
                     "root.squashfs": {"ftype": "squashfs", "path": f"{folder}/rootfs.squashfs", "size": 50_000_000,
                                       "sha256": meta.replace("a", "b")}}
            if day == 30:
                items["delta-20261129_1000.vcdiff"] = {
                    "ftype": "squashfs.vcdiff", "path": f"{folder}/rootfs.20261129_1000.vcdiff", "size": 12345,
                    "sha256": meta.replace("a", "c"), "delta_base": "20261129_1000"}
            versions[vname] = {"items": items}
        products[f"os{n}:{n % 7}:amd64:default"] = {
            "aliases": f"os{n}/{n % 7},os{n}", "arch": "amd64", "os": HOSTILE if hostile else f"OS {n % 13}",
            "release": str(n % 7), "release_title": '"><img src=x onerror=alert(2)>' if hostile else f"R{n}",
            "variant": "default", "versions": versions,
            "requirements": {"nesting": "</code><script>alert(3)</script>" if hostile else "true"},
        }
    return {"content_id": "images", "datatype": "image-downloads", "format": "products:1.0", "products": products,
            "updated": "Mon, 30 Nov 2026 10:00:00 +0000"}


NOW = 1_796_083_200.0  # 2026-12-01 00:00 UTC


def test_hostile_catalog_text_renders_inert(browser: Any) -> None:
    html = render_page(_catalog(2, hostile=True), PageConfig(), now=NOW, base_url="https://x.example/a")
    text = html.decode()
    assert text.count("<script") == 1 and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&quot;&gt;&lt;img src=x" in text
    visit = Visit(browser, "")
    try:
        visit.page.set_content(text, wait_until="load")
        visit.page.click("#products a >> nth=0")
        assert visit.page.evaluate("document.scripts.length") == 1
        assert visit.page.evaluate("document.images.length") == 0
        assert visit.page.text_content("#products tbody td") == HOSTILE  # shown as text, run as nothing
        panel = visit.page.inner_text("details[open]")
        assert "nesting=</code><script>alert(3)</script>" in panel and '"><img src=x onerror=alert(2)>' in panel
        assert not visit.errors, visit.errors  # no dialog, no script error
    finally:
        visit.close()


def test_odd_types_in_a_kept_entry_do_not_break_the_page() -> None:
    """An entry an incremental publish keeps from the served catalog is not re-checked: odd types
    render as nothing rather than stopping the publish."""
    catalog = _catalog(1)
    entry = next(iter(catalog["products"].values()))
    entry.update(requirements=["not", "a", "mapping"], aliases=5)
    for version in entry["versions"].values():
        version["items"]["root.squashfs"]["size"] = "big"
    text = render_page(catalog, PageConfig(), now=NOW).decode()
    assert text.count('<tr data-order="') == 1 and "<dt>Requirements</dt><dd>none</dd>" in text


def test_a_product_without_versions_gets_no_row() -> None:
    catalog = _catalog(2)
    empty = sorted(catalog["products"])[0]
    catalog["products"][empty]["versions"] = {}
    text = render_page(catalog, PageConfig(), now=NOW).decode()
    assert text.count('<tr data-order="') == 1 and f">{empty}</a>" not in text


def test_deltas_are_listed_with_their_sizes() -> None:
    text = render_page(_catalog(1), PageConfig(), now=NOW).decode()
    assert "rootfs.20261129_1000.vcdiff" in text and "squashfs.vcdiff (delta from 20261129_1000)" in text
    assert 'data-bytes="12345"' in text and "12.06KiB" in text


def test_render_is_deterministic_and_fast() -> None:
    catalog = _catalog(1000)
    reordered = {**catalog, "products": dict(reversed(list(catalog["products"].items())))}
    start = time.perf_counter()
    first = render_page(catalog, PageConfig(), now=NOW, base_url="https://images.example.org")
    elapsed = time.perf_counter() - start
    assert render_page(reordered, PageConfig(), now=NOW, base_url="https://images.example.org") == first
    assert render_page(catalog, PageConfig(), now=NOW + 86400, base_url="https://images.example.org") != first
    print(f"1,000 products: rendered in {elapsed:.3f}s, {len(first)} bytes")
    assert elapsed < 1.0, elapsed
    assert first.count(b'<tr data-order="') == 1000


# --------------------------------------------------------------------------------------------
# Configuration and the CLI

PLAIN_TREE = """\
products:
  - name: busybox:1.36:amd64:default
    arch: amd64
    release: "1.36"
    os: Busybox
    directory: busybox/amd64
    aliases: [busybox/1.36]
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("page-images")
    make_image(root / "busybox/amd64/20261130_1000", kind="squashfs", serial="20261130_1000")
    return root


def publish_local(tmp_path: Path, images: Path, extra: str = "", *args: str) -> tuple[subprocess.CompletedProcess[str],
                                                                                        Path]:
    target = tmp_path / "tree"
    shutil.copytree(images, target, dirs_exist_ok=True)
    conf = tmp_path / "tree.yml"
    conf.write_text(extra + PLAIN_TREE)
    return ssb("-c", str(conf), "-t", str(target), "publish", "--refresh-manifests", *args), target


def test_page_false_writes_no_page(tmp_path: Path, images: Path) -> None:
    out, target = publish_local(tmp_path, images, "page: false\n")
    assert out.returncode == 0, out.stderr
    assert (target / "streams/v1/index.json").exists() and not list(target.rglob("*.html"))


def test_a_view_missing_from_the_served_tree_is_written_without_a_catalog_change(tmp_path: Path,
                                                                                images: Path) -> None:
    """Turning the page on over an unchanged catalog, or upgrading from a version that wrote no page,
    writes it (index.json records which views go with its catalog); a publish after that writes nothing."""
    out, target = publish_local(tmp_path, images, "page: false\n")
    assert out.returncode == 0, out.stderr
    conf = tmp_path / "tree.yml"
    catalog_before = sorted(p.name for p in (target / "streams/v1").glob("images-*.json"))

    conf.write_text(PLAIN_TREE)  # the page back on (the default); nothing else changed
    on = ssb("-c", str(conf), "-t", str(target), "publish")
    assert on.returncode == 0, on.stderr
    assert (target / "index.html").is_file()
    assert sorted(p.name for p in (target / "streams/v1").glob("images-*.json")) == catalog_before  # same catalog
    index = json.loads((target / "streams/v1/index.json").read_text())
    assert [v for v in index["ssb_s3"]["views"] if v.startswith("index.html#")]  # recorded with its settings
    url = "https://images.example.org/lxd"
    moved = ssb("-c", str(conf), "-t", str(target), "publish", "--base-url", url)  # a new URL, same catalog
    assert moved.returncode == 0, moved.stderr
    assert f'<span class="base-url">{url}</span>' in (target / "index.html").read_text()

    # an index.json written by a version that recorded no views: the views are written once
    del index["ssb_s3"]["views"]
    (target / "streams/v1/index.json").write_text(json.dumps(index))
    (target / "index.html").unlink()
    again = ssb("-c", str(conf), "-t", str(target), "publish")
    assert again.returncode == 0 and (target / "index.html").is_file(), again.stderr
    stamp = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file() and ".ssb-s3" not in p.parts}
    quiet = ssb("-c", str(conf), "-t", str(target), "publish")
    assert quiet.returncode == 0, quiet.stderr
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp  # nothing rewritten


def test_page_path_is_configurable_and_the_url_found_by_the_page(tmp_path: Path, images: Path, browser: Any) -> None:
    """Without a base URL the page shows a placeholder, and its script fills in where it is served from."""
    need("openssl")
    out, target = publish_local(tmp_path, images, "page: {path: images/list.html}\n")
    assert out.returncode == 0, out.stderr
    assert not (target / "index.html").exists()
    html = (target / "images/list.html").read_text()
    assert "https://SERVER/PATH" in html and 'href="../busybox/amd64/20261130_1000/rootfs.squashfs"' in html
    from realparts import make_test_ca, serve_https_static

    with serve_https_static(target, make_test_ca(tmp_path / "tls")) as url:
        visit = Visit(browser, f"{url}/images/list.html")
        try:
            visit.page.click("#products a >> nth=0")
            lines = visit.page.locator("details[open] .cmd code").all_text_contents()
            assert f"lxc remote add ssb {url} --protocol simplestreams --public" in lines, lines
            assert not visit.errors, visit.errors
        finally:
            visit.close()


@pytest.mark.parametrize(("extra", "field", "expected"), [
    ("page: {path: ../index.html}\n", "page.path", "a relative path ending in .html"),
    ("page: {path: index.txt}\n", "page.path", "a relative path ending in .html"),
    ("page: {base_url: \"http://insecure.example\"}\n", "page.base_url", "https://"),
    ("page: {stale_after_days: 0}\n", "page.stale_after_days", "minimum of 1"),
    ("page: {colour: blue}\n", "page.colour", "unknown key"),
    ("page: yes please\n", "page", "boolean"),
    ("cache_control: {page: \"\"}\n", "cache_control.page", ""),
])
def test_bad_page_settings_are_one_clear_error(tmp_path: Path, images: Path, extra: str, field: str,
                                               expected: str) -> None:
    out, target = publish_local(tmp_path, images, extra)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "tree.yml" in out.stderr and field in out.stderr and expected in out.stderr, out.stderr
    assert not (target / "streams").exists() and not (target / "index.html").exists()


def test_bad_base_url_option_is_refused(tmp_path: Path, images: Path) -> None:
    out, target = publish_local(tmp_path, images, "", "--base-url", "ftp://example.org")
    assert out.returncode == 2 and "--base-url" in out.stderr and "https://" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not (target / "streams").exists()


def test_config_defaults_and_page_off() -> None:
    tree = config_from_text(PLAIN_TREE, "tree.yml")
    assert tree.page == PageConfig() and tree.page.enabled and tree.cache_control.page == "no-cache"
    assert not config_from_text("page: false\n" + PLAIN_TREE, "tree.yml").page.enabled
    custom = config_from_text("page: {path: a//b.html, base_url: 'https://x.example/y/', remote: mine, "
                              "stale_after_days: 7}\n" + PLAIN_TREE, "tree.yml").page
    assert (custom.path, custom.base_url, custom.remote, custom.stale_after_days) == (
        "a/b.html", "https://x.example/y", "mine", 7)
    for text in (PLAIN_TREE, "page: false\n" + PLAIN_TREE):  # `print` gives a tree.yml that reads back the same
        tree = config_from_text(text, "tree.yml")
        assert config_from_text(yaml.safe_dump(config_as_dict(tree)), "tree.yml").page == tree.page


# --------------------------------------------------------------------------------------------
# Issue 20, point 13: links and command lines built from outside strings

HOSTILE_FOLDERS = ("javascript:alert(1)", "https:evil.example", "a b/%2e%2e;x", "..")
HOSTILE_BASE = "https://x.example/x;touch${IFS}PWNED|sh;#'q"
HOSTILE_FOLDER = "u$(touch$IFS'PWNED')'y"  # no character a URL parser percent-encodes in a path


@contextlib.contextmanager
def serve_http_static(root: Path) -> Iterator[str]:
    """`root` over plain http:// on 127.0.0.1 (where a `https:evil.example` href would leave the tree)."""
    from realparts import _QuietHandler

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="http-static", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _hostile_folder_catalog() -> dict[str, Any]:
    """One product per hostile folder name (as a mirrored upstream's layout could give them)."""
    catalog = _catalog(len(HOSTILE_FOLDERS))
    for (name, entry), folder in zip(sorted(catalog["products"].items()), HOSTILE_FOLDERS, strict=True):
        for version in entry["versions"].values():
            for item in version["items"].values():
                item["path"] = item["path"].replace(name.split(":")[0], folder, 1)
    return catalog


def _file_links(visit: Visit) -> list[str]:
    """Every link of the page but the in-page ones, resolved by the browser (a.href)."""
    for summary in visit.page.locator("details summary").all():
        summary.click()
    return visit.page.eval_on_selector_all("a[href]:not([href^='#'])", "links => links.map(a => a.href)")


def test_links_from_upstream_folders_resolve_under_the_tree(browser: Any, tmp_path: Path) -> None:
    """Over http:// and file://, every file link (a folder named `javascript:alert(1)`, `https:evil.example`,
    ...) resolves to a file under the page's own tree; a path with a `..` segment gets no link."""
    tree = tmp_path / "tree"
    tree.mkdir()
    html = render_page(_hostile_folder_catalog(), PageConfig(), now=NOW, base_url="https://x.example/a")
    (tree / "index.html").write_bytes(html)
    (tree / "javascript:alert(1)/20261130_1000").mkdir(parents=True)
    (tree / "javascript:alert(1)/20261130_1000/lxd.tar.xz").write_bytes(b"\xfd7zXZ\x00")
    assert b'href="javascript' not in html and b'href="https:' not in html
    with serve_http_static(tmp_path) as url:
        for page_url, under in ((f"{url}/tree/index.html", f"{url}/tree/"),
                                (f"file://{tree}/index.html", f"file://{tree}/")):
            visit = Visit(browser, page_url)
            try:
                links = _file_links(visit)
                assert len(links) == 3 * 5, links  # 3 linked products (not `..`), 5 files each
                assert all(link.startswith(under) for link in links), links
                for folder in ("javascript%3Aalert%281%29/", "https%3Aevil.example/", "a%20b/%252e%252e%3Bx/"):
                    assert any(link.startswith(under + folder) for link in links), (folder, links)
                if page_url.startswith("http"):  # a click fetches the file from the tree: no script runs
                    with visit.page.expect_download() as download:
                        visit.page.locator("a[href^='./javascript']").first.click()
                    assert download.value.url == f"{under}javascript%3Aalert%281%29/20261130_1000/lxd.tar.xz"
                assert not visit.errors, visit.errors
            finally:
                visit.close()


def _copied(visit: Visit) -> str:
    """What the Copy button of the first `lxc remote add` line puts on the clipboard."""
    visit.page.click("#products a >> nth=0")
    line = visit.page.locator("details[open] .cmd", has_text="lxc remote add").first
    line.locator("button.copy").click()
    visit.page.wait_for_function("document.querySelector('details[open] .copy').textContent === 'Copied'")
    return str(visit.page.evaluate("navigator.clipboard.readText()"))


def _run_in_sh(command: str, cwd: Path) -> list[str]:
    """The arguments a POSIX shell gives `lxc` for `command` (printf in its place, in `cwd`)."""
    assert command.startswith("lxc ")
    out = subprocess.run(["sh", "-c", "printf '%s\\n' " + command[len("lxc "):]], cwd=cwd, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_the_copied_remote_add_line_is_shell_safe(browser: Any, tmp_path: Path, images: Path) -> None:
    """`--base-url 'https://…/x;touch${IFS}PWNED|sh;#'…'` is copied quoted: a POSIX shell gives lxc the URL as
    one argument and runs nothing else. The same when the page fills in its own location (a folder
    named `u$(touch$IFS'PWNED')'y`, which the browser's URL keeps as it is)."""
    out, target = publish_local(tmp_path, images, "", "--base-url", HOSTILE_BASE)
    assert out.returncode == 0, out.stderr
    served = tmp_path / "served"
    shutil.copytree(target, served / "configured")
    plain = publish_local(tmp_path / "plain", images)[1]
    shutil.copytree(plain, served / HOSTILE_FOLDER)
    with serve_http_static(served) as url:
        for folder, base in (("configured", HOSTILE_BASE), (HOSTILE_FOLDER, None)):
            page_url = f"{url}/{folder}/index.html"
            visit = Visit(browser, "")
            try:
                visit.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
                visit.page.goto(page_url, wait_until="load")
                copied = _copied(visit)
                shown = visit.page.evaluate("new URL('./', location.href).href").rstrip("/")
                expected = base or shown
                assert "'" in expected and "$" in expected and (base or expected.endswith(HOSTILE_FOLDER))
                assert shlex.split(copied) == ["lxc", "remote", "add", "ssb", expected, "--protocol", "simplestreams",
                                               "--public"], copied
                assert _run_in_sh(copied, tmp_path) == shlex.split(copied)[1:]
                assert not list(tmp_path.rglob("PWNED")) and not visit.errors, visit.errors
            finally:
                visit.close()
