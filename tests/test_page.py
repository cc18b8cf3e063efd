"""The catalog web page (index.html), in a real browser and with the real LXD daemon.

A 20-product tree is uploaded to a SeaweedFS bucket and published by the CLI; Playwright drives
Debian's chromium over the bucket's HTTPS endpoint: every product is a row, sorting (mouse and
keyboard) and filtering (rows and panels) work, nothing is requested outside the tree, the page
reads without JS, lays out at 390 px without horizontal scrolling, follows the dark colour
scheme and has no serious or critical axe-core violation at 1280 and 390 px; the `lxc remote
add` / `lxc launch` lines read from the page launch a container with the real LXD daemon, and
the launch line of an arm64 product names the image the real lxc resolves on any host. The
renderer itself: hostile catalog text stays inert, the output is deterministic, and 1,000
products render well under a second. docs/page.png and docs/page-390.png are made here
(SSB_UPDATE_SCREENSHOT=1).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from html import escape
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ssb
from realparts import LxdClient, LxdDaemon, S3Server, TlsFiles, make_image, missing, need

from ssb_s3.config import PageConfig, config_as_dict, config_from_text
from ssb_s3.core.catalog import SHORT_FINGERPRINT, version_images
from ssb_s3.core.page import human_size, launch_aliases, product_page_key, render_page, render_product
from ssb_s3.core.versions import version_time
from ssb_s3.core.views import Content, View, page_views, view_keys
from ssb_s3.vocabulary.document import raw_items

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
TITLE = "Example images"
DESCRIPTION = "Nightly LXD and Incus images of Alpine, Debian, Ubuntu and friends, built by the example project."
DOCS_URL = "https://images.example.org/lxd"  # the base URL of the screenshots in docs/


def _directory(name: str) -> str:
    return name.replace(":", "/")


def tree_yml(endpoint: str) -> str:
    lines = [f'storage: {{endpoint_url: "{endpoint}", region: us-east-1, addressing_style: path}}',
             f'cache_control: {{page: "{PAGE_CACHE}"}}',
             f'page: {{remote: ssb, stale_after_days: 30, title: "{TITLE}", description: "{DESCRIPTION}"}}',
             "products:"]
    for name, os_name, release, arch, variant, _, _, aliases, extra in PRODUCTS:
        lines.append(f"  - name: {name}\n    arch: {arch}\n    release: \"{release}\"\n    os: {os_name}\n"
                     f"    directory: {_directory(name)}\n    days: 3\n    variant: {variant}\n"
                     f"    aliases: [{', '.join(aliases)}]\n{extra}".rstrip("\n"))
    return "\n".join(lines) + "\n"


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

    def __init__(self, browser: Any, url: str, *, javascript: bool = True, scale: float = 1.0, width: int = 1280,
                 scheme: str = "light") -> None:
        self.context = browser.new_context(ignore_https_errors=True, java_script_enabled=javascript,
                                           viewport={"width": width, "height": 800}, device_scale_factor=scale,
                                           color_scheme=scheme)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("dialog", lambda dialog: (self.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        if url:
            self.page.goto(url, wait_until="load")

    def open(self, product: str) -> None:
        """Click a product's row link (by its accessible name) and wait for its page."""
        self.page.locator("#products").get_by_role("link", name=product, exact=True).click()
        self.page.wait_for_function("name => document.querySelector('h1') && "
                                    "document.querySelector('h1').textContent === name", arg=product)

    def names(self, visible_only: bool = True) -> list[str]:
        """Product names in table order (the row header cells, not the OS group headers)."""
        rows = ("#products tbody:not([hidden]) tr:not([hidden]) > th:not([scope])" if visible_only
                else "#products tbody tr > th:not([scope])")
        return [text.strip() for text in self.page.locator(rows).all_text_contents()]

    def rows(self) -> dict[str, dict[str, Any]]:
        """Visible rows: product -> its aliases cell, classes and link (as the browser resolves it)."""
        found = self.page.eval_on_selector_all(
            "#products tbody:not([hidden]) tr:not([hidden])", "rows => rows.filter(r => !r.querySelector('[scope]'))"
            ".map(r => [r.cells[0].textContent.trim(), r.cells[1].textContent.trim(), r.className,"
            " r.querySelector('a') ? r.querySelector('a').href : null])")
        return {name: {"alias": alias, "classes": set(classes.split()), "href": href}
                for name, alias, classes, href in found}

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Any, served: dict[str, Any]) -> Iterator[Visit]:
    v = Visit(browser, f"{served['url']}/index.html")
    yield v
    v.close()


def product_url(served: dict[str, Any], name: str) -> str:
    return f"{served['url']}/products/{name}.html"


def expected_order(catalog: dict[str, Any]) -> list[str]:
    """Grouped by OS (case-insensitive), each group by name (numbers compared as numbers)."""
    def natural(text: str) -> list[Any]:
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text.lower())]
    return sorted(catalog, key=lambda n: (natural(catalog[n]["os"]), natural(n)))


def test_pages_are_published_with_their_own_cache_class(served: dict[str, Any], s3_server: S3Server) -> None:
    """index.html and one page per product (products/<name>.html), all text/html with the page's cache class;
    the index is small (no panels: they are the product pages)."""
    assert served["head"]["CacheControl"] == PAGE_CACHE
    assert served["head"]["ContentType"] == "text/html; charset=utf-8"
    assert served["html"].startswith(b"<!DOCTYPE html>")
    size = len(served["html"])
    print(f"index.html for {len(PRODUCTS)} products: {size} bytes")
    assert size < 30_000
    client = s3_server.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="page-tree", Prefix="products/")["Contents"]]
    assert sorted(keys) == sorted(f"products/{p[0]}.html" for p in PRODUCTS)
    head = client.head_object(Bucket="page-tree", Key=f"products/{LAUNCHED}.html")
    assert (head["CacheControl"], head["ContentType"]) == (PAGE_CACHE, "text/html; charset=utf-8")


def test_every_product_is_a_row_linking_to_its_page_and_nothing_is_requested_outside_the_tree(
        visit: Visit, served: dict[str, Any]) -> None:
    page = visit.page
    catalog = served["catalog"]["products"]
    assert visit.names() == expected_order(catalog) and len(visit.names()) == len(PRODUCTS)
    assert page.is_visible("#controls"), "the script ran (its CSP hash matches)"
    assert {name: row["href"] for name, row in visit.rows().items()} == {
        name: product_url(served, name) for name in catalog}
    visit.open(LAUNCHED)
    assert page.url == product_url(served, LAUNCHED)
    commands = page.locator(".cmd code").all_text_contents()
    assert commands == [f"{tool} remote add ssb {served['url']} --protocol simplestreams --public"
                        for tool in ("lxc", "incus")] + ["lxc launch ssb:busybox/1.36", "incus launch ssb:busybox/1.36"]
    page.mouse.wheel(0, 400)
    page.get_by_role("link", name=TITLE).click()  # back to the index
    page.wait_for_url(f"{served['url']}/index.html")
    assert not visit.errors, visit.errors  # no CSP violation, no script error
    outside = [u for u in visit.requests if not u.startswith(served["url"] + "/") and not u.startswith("data:")]
    assert visit.requests and not outside, visit.requests


def test_rows_and_product_pages_show_what_the_catalog_says(visit: Visit, served: dict[str, Any]) -> None:
    catalog = served["catalog"]["products"]
    for name, row in visit.rows().items():
        latest = max(catalog[name]["versions"])
        images = version_images(raw_items(catalog[name]["versions"][latest]["items"]))
        stale = served["published"] - version_time(latest).timestamp() > 30 * 86400
        assert ("s" in row["classes"]) == stale, (name, row)
        assert ("v" in row["classes"]) == any(i.type == "virtual-machine" for i in images.values()), (name, row)
    marks = visit.page.eval_on_selector_all("#products tr.s th, #products tr.v td",
                                            "cells => cells.map(c => getComputedStyle(c, '::after').content)")
    assert set(marks) == {'" stale"', '" (VM)"'}, marks  # the marks the style shows
    # the product page: every version with short and full fingerprints, requirements, every file with its size
    entry = catalog["debian:12:amd64:cloud"]
    visit.open("debian:12:amd64:cloud")
    text = visit.page.inner_text("main")
    for version in entry["versions"].values():
        for fingerprint in version_images(raw_items(version["items"])):
            assert fingerprint in text and fingerprint[:SHORT_FINGERPRINT] in text
        for item in version["items"].values():
            assert item["path"].rsplit("/", 1)[-1] in text
    assert "secureboot=false" in text and "debian/12/cloud" in text and "VM" in text
    assert "lxc launch ssb:debian/12/cloud --vm" in visit.page.locator(".cmd code").all_text_contents()
    sizes = visit.page.locator("td[data-bytes]").evaluate_all("cells => cells.map(c => Number(c.dataset.bytes))")
    assert sorted(sizes) == sorted({i["path"]: i["size"] for v in entry["versions"].values()
                                    for i in v["items"].values()}.values())


def test_filtering_hides_rows_and_empty_groups(visit: Visit, served: dict[str, Any]) -> None:
    page = visit.page
    catalog = served["catalog"]["products"]
    page.fill("#filter", "debian")
    shown = visit.names()
    assert sorted(shown) == sorted(n for n in catalog if n.startswith("debian:"))
    assert page.text_content("#count") == f"{len(shown)} of {len(PRODUCTS)} products shown"
    assert page.locator("#products tbody:visible").count() == 1  # the other OS groups are hidden
    page.fill("#filter", "ubuntu arm64")
    assert visit.names() == ["ubuntu:24.04:arm64:default"]
    page.fill("#filter", "VM")
    assert sorted(visit.names()) == sorted(p[0] for p in PRODUCTS if p[5] == "vm")
    page.fill("#filter", "stale")
    assert sorted(visit.names()) == sorted(n for n in catalog if served["published"] - version_time(
        max(catalog[n]["versions"])).timestamp() > 30 * 86400) != []
    page.fill("#filter", "no such product")
    assert visit.names() == [] and len(visit.names(visible_only=False)) == len(PRODUCTS)
    assert page.locator("#products tbody:visible").count() == 0
    page.fill("#filter", "")
    assert len(visit.names()) == len(PRODUCTS)


def test_keyboard_tab_to_a_product_and_enter_opens_its_page(visit: Visit) -> None:
    page = visit.page
    page.locator("#filter").focus()  # the last control before the table
    page.keyboard.press("Tab")
    first = visit.names()[0]
    assert page.evaluate("document.activeElement.textContent") == first
    page.keyboard.press("Enter")
    page.wait_for_function("name => document.querySelector('h1').textContent === name", arg=first)


def test_readable_without_javascript(browser: Any, served: dict[str, Any]) -> None:
    """Without JS: every product is a row with its link, the list of OSes leads to each group (the filter
    without JS), and a product page shows its launch lines."""
    catalog = served["catalog"]["products"]
    plain = Visit(browser, f"{served['url']}/index.html", javascript=False)
    try:
        assert plain.names() == expected_order(catalog)
        assert all(row["href"] == product_url(served, name) for name, row in plain.rows().items())
        assert plain.page.is_visible("#products") and not plain.page.is_visible("#controls")
        plain.page.locator("#groups").get_by_role("link", name="Debian").click()
        assert plain.page.evaluate("location.hash") == "#os-debian"
        group = plain.page.locator("#os-debian > tr > th:not([scope])").all_text_contents()
        assert sorted(group) == sorted(n for n in catalog if catalog[n]["os"] == "Debian")
        assert plain.page.evaluate("document.querySelector(':target').id") == "os-debian"
        assert plain.page.locator("#os-debian > tr").first.is_visible()
        plain.open("debian:13:amd64:default")
        assert plain.page.is_visible(".cmd code") and "lxc launch ssb:debian/13" in plain.page.locator(
            ".cmd code").all_text_contents()
        outside = [u for u in plain.requests if not u.startswith(served["url"] + "/")]
        assert not outside, outside
    finally:
        plain.close()


SIZE_TEXT = re.compile(r"^(?:\d+ B|\d+\.\d\d [KMGT]iB)$")


def test_title_and_description_head_the_pages(visit: Visit) -> None:
    """tree.yml `page: {title, description}` are the index's heading, its <title> and the paragraph under it;
    a product page's <title> names the product and the site, and links back to the index."""
    page = visit.page
    assert page.text_content("h1") == TITLE
    assert page.title() == f"{TITLE}: {len(PRODUCTS)} products"
    assert page.text_content("header p.lead") == DESCRIPTION
    visit.open(LAUNCHED)
    assert page.title() == f"{LAUNCHED}: {TITLE}"
    assert page.get_by_role("link", name=TITLE).get_attribute("href") == "../index.html"


def test_remote_add_lines_are_copy_boxes_at_the_top(browser: Any, served: dict[str, Any]) -> None:
    """The `lxc` and `incus` `remote add` lines are each in a box of their own with a Copy button, in the
    first screen, above the table, one line each at 1280 px: no sentence around them, no wrap; a
    product page has them too, above its launch lines."""
    for url in (f"{served['url']}/index.html", product_url(served, LAUNCHED)):
        visit = Visit(browser, url)
        try:
            page = visit.page
            boxes = page.locator("#remote .cmd")
            assert [box.locator("code").text_content() for box in boxes.all()][:2] == [
                f"{tool} remote add ssb {served['url']} --protocol simplestreams --public" for tool in ("lxc", "incus")]
            assert all(box.locator("button.copy").is_visible() for box in boxes.all())
            for box in boxes.all():  # each command is the only text of its box and fits on one line
                assert box.locator("pre").inner_text() == box.locator("code").text_content()
                lines = box.locator("code").evaluate(
                    "c => c.getBoundingClientRect().height / parseFloat(getComputedStyle(c).lineHeight)")
                assert 0.5 < lines < 1.5, lines  # two lines would be about 1.8
            top = page.locator("#remote").bounding_box()
            assert top is not None and top["y"] + top["height"] <= 800, top
            table = page.locator("table").first.bounding_box()
            assert table is not None and top["y"] + top["height"] <= table["y"], (top, table)
        finally:
            visit.close()


def test_alias_column_shows_the_aliases_a_launch_line_uses(visit: Visit, served: dict[str, Any]) -> None:
    """The ALIAS column: the product's aliases, as ALIAS/<arch> for a product of another arch than
    amd64 (how the clients name it on any host); filtering by an alias finds its product."""
    catalog = served["catalog"]["products"]
    assert visit.page.locator("#products thead th").nth(1).text_content() == "Alias"
    shown = {name: row["alias"] for name, row in visit.rows().items()}
    assert shown == {name: ", ".join(launch_aliases(entry)) for name, entry in catalog.items()}
    assert shown["debian:12:amd64:default"] == "debian/12, debian/bookworm"
    assert shown["debian:12:arm64:default"] == "debian/12/arm64"
    visit.page.fill("#filter", "bookworm")
    assert visit.names() == ["debian:12:amd64:default"]


def test_sizes_read_one_way(browser: Any, served: dict[str, Any]) -> None:
    """Every size on a product page in one style (IEC units after a space)."""
    visit = Visit(browser, product_url(served, "busybox:1.36:amd64:default"))
    try:
        sizes = visit.page.eval_on_selector_all("td.num", "cells => cells.map(c => c.textContent.trim())")
        sizes.append(visit.page.locator("dt:text-is('Size') + dd").text_content())
        assert len(sizes) > 3 and all(SIZE_TEXT.match(size) for size in sizes), sizes
    finally:
        visit.close()
    assert [human_size(n) for n in (0, 1023, 1024, 12345, 50_000_000, 3 << 30)] == [
        "0 B", "1023 B", "1.00 KiB", "12.06 KiB", "47.68 MiB", "3.00 GiB"]


def test_launch_line_of_another_arch_names_the_arch_alias(visit: Visit, served: dict[str, Any], tmp_path: Path,
                                                          tls_files: TlsFiles) -> None:
    """An arm64 product's launch line is `lxc launch ssb:debian/12/arm64`: the real lxc resolves that to the
    arm64 image on this amd64 host, where the plain `debian/12` names the amd64 one."""
    catalog = served["catalog"]["products"]
    add = visit.page.locator("#remote .cmd code").first.text_content() or ""
    visit.open("debian:12:arm64:default")
    lines = visit.page.locator(".cmd code").all_text_contents()[2:]
    assert lines == ["lxc launch ssb:debian/12/arm64", "incus launch ssb:debian/12/arm64"]
    visit.page.goto(product_url(served, "debian:12:amd64:default"))
    assert "lxc launch ssb:debian/12" in visit.page.locator(".cmd code").all_text_contents()

    def fingerprint(name: str) -> str:
        versions = catalog[name]["versions"]
        return next(iter(version_images(raw_items(versions[max(versions)]["items"]))))

    lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
    lxc.run(*shlex.split(add)[1:])
    assert f"Fingerprint: {fingerprint('debian:12:arm64:default')}" in lxc.image_info(lines[0].split()[-1])
    assert f"Fingerprint: {fingerprint('debian:12:amd64:default')}" in lxc.image_info("ssb:debian/12")


PAGES = ("index.html", "products/debian:12:amd64:cloud.html")  # the index and a product page with every table


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize(("width", "scheme"), [(1280, "light"), (390, "light"), (390, "dark")])
def test_layout_needs_no_horizontal_scroll(browser: Any, served: dict[str, Any], width: int, scheme: str,
                                           path: str) -> None:
    """On a 1280 px screen and a 390 px phone, nothing is wider than the window (on the phone an index row is
    its name above its aliases, and a product page's tables become cards)."""
    visit = Visit(browser, f"{served['url']}/{path}", width=width, scheme=scheme)
    try:
        widths = visit.page.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth]")
        assert max(widths) <= width, widths
        wider = visit.page.eval_on_selector_all(
            "main *", "els => els.filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)"
                      ".map(e => e.tagName + '.' + e.className).slice(0, 5)")
        assert wider == [], wider
        cells = "#products tbody tr:not(:first-child) > *" if path == "index.html" else ".files tbody tr:first-child td"
        first, second = (visit.page.locator(cells).nth(i).bounding_box() for i in (0, 1))
        assert first is not None and second is not None
        stacked = second["y"] >= first["y"] + first["height"] - 1
        assert stacked == (width < 500), (first, second)  # a card on the phone, else a row
    finally:
        visit.close()


def test_dark_mode_follows_the_colour_scheme(browser: Any, served: dict[str, Any]) -> None:
    """prefers-color-scheme: dark gives light text on a dark background (contrast: the axe test)."""
    def luminance(visit: Visit, prop: str) -> float:
        rgb = visit.page.evaluate(f"getComputedStyle(document.body).{prop}")
        r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
        return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

    for path in PAGES:
        for scheme, dark in (("light", False), ("dark", True)):
            visit = Visit(browser, f"{served['url']}/{path}", scheme=scheme)
            try:
                background, text = luminance(visit, "backgroundColor"), luminance(visit, "color")
                expected = (background < 0.2 and text > 0.8) if dark else (background > 0.9 and text < 0.2)
                assert expected, (path, scheme, background, text)
            finally:
                visit.close()


@pytest.fixture(scope="module")
def axe() -> Any:
    """axe-core (the axe-playwright-python wheel bundles axe.min.js; .ci/run installs it with the test extra)."""
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        missing("the pip package axe-playwright-python is not installed")
        raise AssertionError("unreachable") from None
    return Axe()


def axe_violations(axe: Any, visit: Visit) -> dict[str, list[str]]:
    """axe-core's violations on the page as it is: impact -> 'rule-id (N nodes)'."""
    found: dict[str, list[str]] = {}
    for violation in axe.run(visit.page).response["violations"]:
        found.setdefault(violation["impact"], []).append(f"{violation['id']} ({len(violation['nodes'])})")
    return found


@pytest.mark.parametrize("width", [1280, 390])
def test_no_serious_or_critical_accessibility_violation(browser: Any, served: dict[str, Any], axe: Any,
                                                         width: int) -> None:
    """axe-core in the real chromium, on the index and a product page, light and dark: no serious or
    critical violation."""
    for path in PAGES:
        for scheme in ("light", "dark"):
            visit = Visit(browser, f"{served['url']}/{path}", width=width, scheme=scheme)
            try:
                found = axe_violations(axe, visit)
                print(f"axe on {path} at {width} px, {scheme}: {found or 'no violation'}")
                assert not found.get("serious") and not found.get("critical"), (path, found)
                assert not visit.errors, visit.errors  # axe ran beside the page's CSP without an error
            finally:
                visit.close()


SCREENSHOTS = (  # file, page, width, scale
    ("page.png", "index.html", 1280, 0.7), ("page-390.png", "index.html", 390, 1.0),
    ("page-product.png", "products/debian:12:amd64:default.html", 1280, 0.7))


def test_screenshots_at_1280_and_390_px(browser: Any, served: dict[str, Any], tmp_path: Path) -> None:
    """The index at 1280 and 390 px and a product page at 1280 px, rendered from the served catalog as
    published to https://images.example.org/lxd (a real-looking URL) on 2026-12-01; under 400 KB each
    and kept as test artefacts. SSB_UPDATE_SCREENSHOT=1 also writes docs/page.png, docs/page-390.png
    and docs/page-product.png, the README's pictures:
    SSB_UPDATE_SCREENSHOT=1 python3 -m pytest -q tests/test_page.py -k screenshots"""
    config = config_from_text(tree_yml("https://s3.example.org"), "tree.yml").page
    tree = tmp_path / "tree"
    (tree / "products").mkdir(parents=True)
    (tree / "index.html").write_bytes(render_page(served["catalog"], config, now=NOW, base_url=DOCS_URL))
    for name, entry in served["catalog"]["products"].items():
        (tree / f"products/{name}.html").write_bytes(render_product(name, entry, config, base_url=DOCS_URL))
    shots = {}
    for name, path, width, scale in SCREENSHOTS:  # 390: the first 2,000 px
        visit = Visit(browser, f"file://{tree}/{path}", width=width, scale=scale)
        try:
            assert DOCS_URL in (visit.page.locator("#remote code").first.text_content() or "")
            clip = {"x": 0, "y": 0, "width": width, "height": 2000} if width < 1000 else None
            visit.page.screenshot(path=str(tmp_path / name), full_page=True, clip=clip)
            assert not visit.errors, visit.errors
        finally:
            visit.close()
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) < 400_000, (name, len(data))
        print(f"screenshot: {tmp_path / name} ({len(data)} bytes)")
        shots[name] = data
    if os.environ.get("SSB_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        for name, data in shots.items():
            (REPO / "docs" / name).write_bytes(data)


def test_the_copied_lines_launch_a_container_with_lxd(visit: Visit, served: dict[str, Any],
                                                      lxd_daemon: LxdDaemon) -> None:
    """What a user copies from the pages is what works: `lxc remote add` then `lxc launch` (one launch)."""
    add = visit.page.locator("#remote .cmd code").first.text_content() or ""
    visit.open(LAUNCHED)
    lines = visit.page.locator(".cmd code").all_text_contents()
    assert add.startswith("lxc remote add ")
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


def _pages(catalog: dict[str, Any], config: PageConfig | None = None, base_url: str = "") -> dict[str, bytes]:
    """Every product page of `catalog`, by product."""
    config = config or PageConfig()
    return {name: render_product(name, entry, config, base_url=base_url)
            for name, entry in catalog["products"].items() if entry["versions"]}


def test_hostile_catalog_text_renders_inert(browser: Any) -> None:
    catalog = _catalog(2, hostile=True)
    html = render_page(catalog, PageConfig(), now=NOW, base_url="https://x.example/a")
    product = _pages(catalog, base_url="https://x.example/a")[sorted(catalog["products"])[0]]
    for page in (html, product):
        text = page.decode()
        assert text.count("<script") == 1 and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html.decode()  # the OS
    assert "&quot;&gt;&lt;img src=x" in product.decode()
    visit = Visit(browser, "")
    try:
        visit.page.set_content(html.decode(), wait_until="load")
        assert visit.page.evaluate("document.scripts.length") == 1
        assert visit.page.evaluate("document.images.length") == 0
        assert visit.page.text_content("#products tbody th[scope]") == HOSTILE  # shown as text, run as nothing
        visit.page.set_content(product.decode(), wait_until="load")
        assert visit.page.evaluate("document.scripts.length") == 1
        assert visit.page.evaluate("document.images.length") == 0
        text = visit.page.inner_text("main")
        assert "nesting=</code><script>alert(3)</script>" in text and '"><img src=x onerror=alert(2)>' in text
        assert not visit.errors, visit.errors  # no dialog, no script error
    finally:
        visit.close()


def test_hostile_title_and_description_render_as_text() -> None:
    config = PageConfig(title=HOSTILE, description='"><img src=x onerror=alert(4)>')
    catalog = _catalog(1)
    text = render_page(catalog, config, now=NOW).decode()
    assert text.count("<script") == 1 and "<img" not in text
    assert f"<h1>{escape(HOSTILE)}</h1>" in text and f"<title>{escape(HOSTILE)}: 1 product</title>" in text
    assert '<p class="lead">&quot;&gt;&lt;img src=x onerror=alert(4)&gt;</p>' in text
    product = next(iter(_pages(catalog, config).values())).decode()
    assert product.count("<script") == 1 and f">{escape(HOSTILE)}</a>" in product


def test_odd_types_in_a_kept_entry_do_not_break_the_pages() -> None:
    """An entry an incremental publish keeps from the served catalog is not re-checked: odd types
    render as nothing rather than stopping the publish."""
    catalog = _catalog(1)
    entry = next(iter(catalog["products"].values()))
    entry.update(requirements=["not", "a", "mapping"], aliases=5)
    for version in entry["versions"].values():
        version["items"]["root.squashfs"]["size"] = "big"
    text = render_page(catalog, PageConfig(), now=NOW).decode()
    assert text.count("<tr><th><a href=") == 1
    assert "<dt>Requirements</dt><dd>none</dd>" in next(iter(_pages(catalog).values())).decode()


def test_a_product_without_versions_gets_no_row_and_no_page() -> None:
    catalog = _catalog(2)
    empty = sorted(catalog["products"])[0]
    catalog["products"][empty]["versions"] = {}
    text = render_page(catalog, PageConfig(), now=NOW).decode()
    assert text.count("<tr><th><a href=") == 1 and f">{empty}</a>" not in text
    views = page_views(Content(PLAIN_CONFIG, catalog, b"", "k", {}, now=NOW))
    assert views is not None and [v.key for v in views if v.part] == [f"products/{sorted(catalog['products'])[1]}.html"]


def test_deltas_are_listed_with_their_sizes() -> None:
    text = next(iter(_pages(_catalog(1)).values())).decode()
    assert "rootfs.20261129_1000.vcdiff" in text and "squashfs.vcdiff (delta from 20261129_1000)" in text
    assert 'data-bytes="12345"' in text and "12.06 KiB" in text


def test_render_is_deterministic() -> None:
    """The same catalog gives the same bytes whatever its order; a product page does not depend on the
    time, so it is rewritten only when its entry or the settings change (its speed is a bench row,
    not a timed assertion: bench/)."""
    catalog = _catalog(1000)
    reordered = {**catalog, "products": dict(reversed(list(catalog["products"].items())))}
    start = time.perf_counter()
    first = render_page(catalog, PageConfig(), now=NOW, base_url="https://images.example.org")
    elapsed = time.perf_counter() - start
    assert render_page(reordered, PageConfig(), now=NOW, base_url="https://images.example.org") == first
    assert render_page(catalog, PageConfig(), now=NOW + 86400, base_url="https://images.example.org") != first
    print(f"1,000 products: index rendered in {elapsed:.3f}s, {len(first)} bytes")
    assert first.count(b"<tr><th><a href=") == 1000
    pages = _pages(catalog)
    assert _pages(reordered) == pages and len(pages) == 1000


def _bench_catalog(count: int, name: Callable[[int], str], aliases: Callable[[int], str]) -> dict[str, Any]:
    """`count` products of one version each, a year old (stale: the longest rows)."""
    def item(n: int, ftype: str) -> dict[str, Any]:
        return {"ftype": ftype, "path": f"p/{n}/20251201_0000/{ftype}", "size": 1000, "sha256": f"{n:064x}",
                **({"combined_squashfs_sha256": f"{n + 1:064x}"} if ftype == "lxd.tar.xz" else {})}
    return {"products": {name(n): {
        "aliases": aliases(n), "arch": "amd64", "os": f"OS{n % 40}", "release": "1", "variant": "default",
        "versions": {"20251201_0000": {"items": {"lxd.tar.xz": item(n, "lxd.tar.xz"),
                                                 "root.squashfs": item(n, "squashfs")}}}} for n in range(count)}}


def test_the_index_stays_small_at_10000_products() -> None:
    """Issue 24: index.html is under 1 MB at 10,000 products named as the bench names them
    (p1234:1:amd64:default, alias p1234), every one stale; the detail is on the product pages."""
    catalog = _bench_catalog(10_000, lambda n: f"p{n}:1:amd64:default", lambda n: f"p{n}")
    html = render_page(catalog, PageConfig(), now=NOW, base_url="https://images.example.org")
    print(f"index.html at 10,000 products: {len(html):,} bytes")
    assert len(html) < 1_000_000
    assert html.count(b"<tr class=s><th><a href=./products/p") == 10_000
    longer = _bench_catalog(10_000, lambda n: f"debian{n}:12:amd64:cloud", lambda n: f"debian{n}/12/cloud")
    print(f"... with names like debian1234:12:amd64:cloud: "
          f"{len(render_page(longer, PageConfig(), now=NOW)):,} bytes")


@pytest.mark.parametrize("name", ["../x", "a/b", "-a", "x" * 201, "a b", "https://evil.example/x"])
def test_a_name_that_is_no_product_name_gets_no_page_and_no_link(name: str) -> None:
    catalog = _catalog(1)
    catalog["products"] = {name: next(iter(catalog["products"].values()))}
    text = render_page(catalog, PageConfig(), now=NOW).decode()
    assert "<a href=./products" not in text and f"<tr><th>{escape(name)}<td>" in text
    views = page_views(Content(PLAIN_CONFIG, catalog, b"", "k", {}, now=NOW))
    assert views is not None and [v.key for v in views] == ["index.html"]


def test_only_the_pages_of_changed_products_are_rendered_and_departed_ones_deleted() -> None:
    """views.page_views against the served catalog: a product whose entry is unchanged gets no page
    written; a new or changed one does; one the catalog no longer lists has its page deleted; without
    the served index's record of the page with these settings (a crash after the flip, new settings,
    an older version), every page is written, and a full publish's listing finds stray pages."""
    served = _catalog(4)
    names = sorted(served["products"])
    catalog = {**served, "products": {**served["products"]}}
    del catalog["products"][names[0]]  # departed
    catalog["products"][names[1]] = {**served["products"][names[1]], "aliases": "changed"}
    catalog["products"]["new:1:amd64:default"] = served["products"][names[2]]

    def parts(recorded: bool, listing: dict[str, int] | None = None) -> tuple[list[str], list[str]]:
        first = page_views(Content(PLAIN_CONFIG, served, b"", "k", {}, now=NOW))
        assert first is not None
        index = next(v for v in first if not v.part)
        views = page_views(Content(PLAIN_CONFIG, catalog, b"", "k", {}, now=NOW, served=served, listing=listing,
                                   served_views=frozenset([index.recorded] if recorded else [])))
        assert views is not None and views[-1 - sum(v.delete for v in views)].key == "index.html"
        return ([v.key for v in views if v.part and not v.delete], [v.key for v in views if v.delete])

    assert parts(True) == (["products/new:1:amd64:default.html", f"products/{names[1]}.html"],
                           [f"products/{names[0]}.html"])
    everything = sorted(f"products/{n}.html" for n in catalog["products"])
    assert parts(False) == (everything, [f"products/{names[0]}.html"])
    stray = {"products/ghost:1.html": 5, "products/sub/x.html": 5, f"products/{names[3]}.html": 5, "p/x.html": 5}
    assert parts(True, stray)[1] == ["products/ghost:1.html", f"products/{names[0]}.html"]
    views = page_views(Content(PLAIN_CONFIG, catalog, b"", "k", {}, now=NOW))
    assert views is not None and view_keys(views) == [next(v for v in views if v.key == "index.html").recorded]




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


PLAIN_CONFIG = config_from_text(PLAIN_TREE, "tree.yml")


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
    assert (target / "index.html").is_file() and (target / "products/busybox:1.36:amd64:default.html").is_file()
    assert sorted(p.name for p in (target / "streams/v1").glob("images-*.json")) == catalog_before  # same catalog
    index = json.loads((target / "streams/v1/index.json").read_text())
    assert [v for v in index["ssb_s3"]["views"] if v.startswith("index.html#")]  # recorded with its settings
    url = "https://images.example.org/lxd"
    moved = ssb("-c", str(conf), "-t", str(target), "publish", "--base-url", url)  # a new URL, same catalog
    assert moved.returncode == 0, moved.stderr
    assert f'<span class="base-url">{url}</span>' in (target / "index.html").read_text()
    assert f'<span class="base-url">{url}</span>' in (target / "products/busybox:1.36:amd64:default.html").read_text()

    # an index.json written by a version that recorded no views: the views are written once
    del index["ssb_s3"]["views"]
    (target / "streams/v1/index.json").write_text(json.dumps(index))
    (target / "index.html").unlink()
    (target / "products/busybox:1.36:amd64:default.html").unlink()
    again = ssb("-c", str(conf), "-t", str(target), "publish")
    assert again.returncode == 0 and (target / "index.html").is_file(), again.stderr
    assert (target / "products/busybox:1.36:amd64:default.html").is_file()  # the product pages with it
    stamp = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file() and ".ssb-s3" not in p.parts}
    quiet = ssb("-c", str(conf), "-t", str(target), "publish")
    assert quiet.returncode == 0, quiet.stderr
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp  # nothing rewritten


def test_page_path_is_configurable_and_the_url_found_by_the_page(tmp_path: Path, images: Path, browser: Any) -> None:
    """Without a base URL the page shows a placeholder, and its script fills in where it is served from."""
    need("openssl")
    out, target = publish_local(tmp_path, images, "page: {path: images/list.html}\n")
    assert out.returncode == 0, out.stderr
    assert not (target / "index.html").exists() and not (target / "products").exists()
    html = (target / "images/list.html").read_text()
    product = (target / "images/products/busybox:1.36:amd64:default.html").read_text()  # beside the page
    assert "https://SERVER/PATH" in html and "https://SERVER/PATH" in product
    assert 'href="../../busybox/amd64/20261130_1000/rootfs.squashfs"' in product
    from realparts import make_test_ca, serve_https_static

    with serve_https_static(target, make_test_ca(tmp_path / "tls")) as url:
        visit = Visit(browser, f"{url}/images/list.html")
        try:
            for expected in (f"{url}/images/list.html", f"{url}/images/products/busybox:1.36:amd64:default.html"):
                assert visit.page.url == expected
                lines = visit.page.locator("#remote .cmd code").all_text_contents()
                assert f"lxc remote add ssb {url} --protocol simplestreams --public" in lines, lines
                if expected.endswith("list.html"):
                    visit.open("busybox:1.36:amd64:default")
            with visit.page.expect_download() as download:
                visit.page.get_by_role("link", name="rootfs.squashfs").click()
            assert download.value.url == f"{url}/busybox/amd64/20261130_1000/rootfs.squashfs"
            assert not visit.errors, visit.errors
        finally:
            visit.close()


TWO_PRODUCTS = PLAIN_TREE + """\
  - name: busybox:1.36:amd64:other
    arch: amd64
    release: "1.36"
    os: Busybox
    directory: busybox/other
    aliases: [busybox/other]
"""


def _stamps(target: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (target / "products").iterdir()}


def test_product_pages_follow_the_catalog(tmp_path: Path, images: Path) -> None:
    """Issue 24: a publish rewrites the page of the product whose entry changed (and the index), not the
    others; a product that leaves the catalog loses its page; after a run that stopped before recording
    its views (index.json without the record), the next publish writes every page again and a full
    publish deletes a page no catalog lists."""
    two = tmp_path / "images"
    shutil.copytree(images, two)
    make_image(two / "busybox/other/20261130_1000", kind="squashfs", serial="20261130_1000", description="other")
    target = tmp_path / "tree"
    shutil.copytree(two, target)
    conf = tmp_path / "tree.yml"
    conf.write_text(TWO_PRODUCTS)
    out = ssb("-c", str(conf), "-t", str(target), "publish", "--refresh-manifests")
    assert out.returncode == 0, out.stderr
    assert sorted(_stamps(target)) == ["busybox:1.36:amd64:default.html", "busybox:1.36:amd64:other.html"]
    before, index = _stamps(target), (target / "index.html").stat().st_mtime_ns
    conf.write_text(TWO_PRODUCTS.replace("[busybox/other]", "[busybox/renamed]"))
    out = ssb("-c", str(conf), "-t", str(target), "publish")
    assert out.returncode == 0, out.stderr
    after = _stamps(target)
    assert after["busybox:1.36:amd64:default.html"] == before["busybox:1.36:amd64:default.html"]
    assert after["busybox:1.36:amd64:other.html"] != before["busybox:1.36:amd64:other.html"]
    assert "busybox/renamed" in (target / "products/busybox:1.36:amd64:other.html").read_text()
    assert (target / "index.html").stat().st_mtime_ns != index and "busybox/renamed" in (
        target / "index.html").read_text()
    # a run that stopped after its flip: no record of the views; and a stray page
    index_json = target / "streams/v1/index.json"
    record = json.loads(index_json.read_text())
    del record["ssb_s3"]["views"]
    index_json.write_text(json.dumps(record))
    (target / "products/ghost:1:amd64:default.html").write_text("left by a crash")
    before = _stamps(target)
    out = ssb("-c", str(conf), "-t", str(target), "publish")
    assert out.returncode == 0, out.stderr
    after = _stamps(target)
    assert sorted(after) == ["busybox:1.36:amd64:default.html", "busybox:1.36:amd64:other.html"]
    assert all(after[name] != before[name] for name in after)
    # the product leaves tree.yml: its page goes, the index no longer links to it
    conf.write_text(PLAIN_TREE)
    out = ssb("-c", str(conf), "-t", str(target), "publish")
    assert out.returncode == 0, out.stderr
    assert sorted(_stamps(target)) == ["busybox:1.36:amd64:default.html"]
    assert "other" not in (target / "index.html").read_text()


def test_a_product_folder_over_the_product_pages_is_refused(tmp_path: Path, images: Path) -> None:
    out, target = publish_local(tmp_path, images, "")
    assert out.returncode == 0, out.stderr
    conf = tmp_path / "tree.yml"
    conf.write_text(PLAIN_TREE.replace("directory: busybox/amd64", "directory: products/busybox"))
    bad = ssb("-c", str(conf), "-t", str(target), "publish")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    lines = [line for line in bad.stderr.splitlines() if "overlaps" in line]
    assert len(lines) == 1 and "products[0].directory: the folder 'products/busybox' overlaps 'products', one " \
        "of the tree's own keys" in lines[0], bad.stderr
    assert "tree.yml's page.path moves the page and its product pages' folder" in lines[0]  # the way out
    moved = tmp_path / "moved.yml"
    moved.write_text(conf.read_text() + "page: {path: site/index.html}\n")
    from ssb_s3.config import load_config

    assert load_config(moved).layout.product_pages_folder == "site/products"  # products/ is the tree's again


@pytest.mark.parametrize(("extra", "field", "expected"), [
    ("page: {path: ../index.html}\n", "page.path", "a relative path ending in .html"),
    ("page: {path: index.txt}\n", "page.path", "a relative path ending in .html"),
    ("page: {base_url: \"http://insecure.example\"}\n", "page.base_url", "https://"),
    ("page: {stale_after_days: 0}\n", "page.stale_after_days", "minimum of 1"),
    ("page: {colour: blue}\n", "page.colour", "unknown key"),
    ("page: yes please\n", "page", "boolean"),
    ("cache_control: {page: \"\"}\n", "cache_control.page", ""),
    ("page: {title: \"Images\\e[31m\"}\n", "page.title", "U+001B (ESC)"),
    ("page: {title: \"   \"}\n", "page.title", "at most 120 characters"),
    ("page: {description: \"a\\u202eb\"}\n", "page.description", "bidirectional override"),
    (f"page: {{description: {'x' * 1001}}}\n", "page.description", "at most 1000 characters"),
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
    assert (tree.page.title, tree.page.description) == ("Images", "")
    custom = config_from_text("page: {path: a//b.html, base_url: 'https://x.example/y/', remote: mine, "
                              "stale_after_days: 7, title: 'My <images>', description: 'Built & signed'}\n"
                              + PLAIN_TREE, "tree.yml").page
    assert (custom.path, custom.base_url, custom.remote, custom.stale_after_days, custom.title,
            custom.description) == ("a/b.html", "https://x.example/y", "mine", 7, "My <images>", "Built & signed")
    # `print` gives a tree.yml that reads back the same
    for text in (PLAIN_TREE, "page: false\n" + PLAIN_TREE, "page: {title: T, description: D}\n" + PLAIN_TREE):
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
    """Every link of the page but the in-page ones and the link back to the index, resolved by the
    browser (a.href)."""
    return visit.page.eval_on_selector_all("main a[href]:not([href^='#']):not(header a)",
                                           "links => links.map(a => a.href)")


def test_links_from_upstream_folders_resolve_under_the_tree(browser: Any, tmp_path: Path) -> None:
    """Over http:// and file://, every link of the index (to the product pages) and every file link of a
    product page (a folder named `javascript:alert(1)`, `https:evil.example`, ...) resolves to a file
    under the page's own tree; a path with a `..` segment gets no link."""
    tree = tmp_path / "tree"
    (tree / "products").mkdir(parents=True)
    catalog = _hostile_folder_catalog()
    html = render_page(catalog, PageConfig(), now=NOW, base_url="https://x.example/a")
    (tree / "index.html").write_bytes(html)
    pages = _pages(catalog, base_url="https://x.example/a")
    for name, data in pages.items():
        (tree / f"products/{name}.html").write_bytes(data)
        assert b'href="javascript' not in data and b'href="https:' not in data
    (tree / "javascript:alert(1)/20261130_1000").mkdir(parents=True)
    (tree / "javascript:alert(1)/20261130_1000/lxd.tar.xz").write_bytes(b"\xfd7zXZ\x00")
    assert b"href=javascript" not in html and b"href=https:" not in html
    with serve_http_static(tmp_path) as url:
        for root in (f"{url}/tree/", f"file://{tree}/"):
            visit = Visit(browser, f"{root}index.html")
            try:
                assert sorted(_file_links(visit)) == sorted(f"{root}products/{name}.html" for name in pages)
                links = []
                for name in sorted(pages):
                    visit.page.goto(f"{root}products/{name}.html")
                    links += _file_links(visit)
                assert len(links) == 3 * 5, links  # 3 linked products (not `..`), 5 files each
                assert all(link.startswith(root) for link in links), links
                for folder in ("javascript%3Aalert%281%29/", "https%3Aevil.example/", "a%20b/%252e%252e%3Bx/"):
                    assert any(link.startswith(root + folder) for link in links), (folder, links)
                if root.startswith("http"):  # a click fetches the file from the tree: no script runs
                    visit.page.goto(f"{root}products/{sorted(pages)[0]}.html")  # its folder: javascript:...
                    with visit.page.expect_download() as download:
                        visit.page.locator("a[href^='../javascript']").first.click()
                    assert download.value.url == f"{root}javascript%3Aalert%281%29/20261130_1000/lxd.tar.xz"
                assert not visit.errors, visit.errors
            finally:
                visit.close()


def _copied(visit: Visit) -> str:
    """What the Copy button of the first `lxc remote add` line puts on the clipboard."""
    line = visit.page.locator("#remote .cmd", has_text="lxc remote add").first
    line.locator("button.copy").click()
    visit.page.wait_for_function("document.querySelector('#remote .copy').textContent === 'Copied'")
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
        for folder, base, path in (("configured", HOSTILE_BASE, "index.html"), (HOSTILE_FOLDER, None, "index.html"),
                                   (HOSTILE_FOLDER, None, "products/busybox:1.36:amd64:default.html")):
            page_url = f"{url}/{folder}/{path}"
            visit = Visit(browser, "")
            try:
                visit.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
                visit.page.goto(page_url, wait_until="load")
                copied = _copied(visit)
                root = "../" if "/" in path else "./"  # the tree's root, from the page
                shown = visit.page.evaluate("p => new URL(p, location.href).href", root).rstrip("/")
                expected = base or shown
                assert "'" in expected and "$" in expected and (base or expected.endswith(HOSTILE_FOLDER))
                assert shlex.split(copied) == ["lxc", "remote", "add", "ssb", expected, "--protocol", "simplestreams",
                                               "--public"], copied
                assert _run_in_sh(copied, tmp_path) == shlex.split(copied)[1:]
                assert not list(tmp_path.rglob("PWNED")) and not visit.errors, visit.errors
            finally:
                visit.close()


def test_many_rewritten_product_pages_are_one_cdn_path() -> None:
    """CloudFront: a publish that rewrote a few product pages invalidates each; more than
    MAX_INVALIDATED_PAGES, their folder as one path (`products/*`)."""
    from ssb_s3.commands.publish import MAX_INVALIDATED_PAGES, invalidated_keys

    def views(pages: int) -> tuple[View, ...]:
        return (View("index.html", b""), *(View(f"products/p{n}.html", b"", part=True) for n in range(pages)),
                View("streams/v1/images-x.json", b"", create_only=True))

    assert invalidated_keys(PLAIN_CONFIG, views(2)) == ["index.html", "products/p0.html", "products/p1.html"]
    assert invalidated_keys(PLAIN_CONFIG, views(MAX_INVALIDATED_PAGES + 1)) == ["index.html", "products/*"]


def test_a_product_page_link_names_its_key() -> None:
    """The index links a product to its page's key: unquoted, ':' kept (no scheme after `./`), '+'
    percent-encoded (S3 reads a '+' in a path as a space)."""
    catalog = _catalog(1)
    name = "c++:1~rc:amd64:default"
    catalog["products"] = {name: next(iter(catalog["products"].values()))}
    text = render_page(catalog, PageConfig(), now=NOW).decode()
    href = re.findall(r"<a href=(\./products/[^>]*)>", text)
    assert href == ["./products/c%2B%2B:1~rc:amd64:default.html"]
    assert urllib.parse.unquote(href[0]) == "./" + str(product_page_key(PageConfig(), name))
