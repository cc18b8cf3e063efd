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
import sys
import threading
import time
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import pytest
import yaml
from realparts import LxdClient, LxdDaemon, S3Server, TlsFiles, make_image, missing, need

from ssb_s3.config import PageConfig, config_as_dict, config_from_text
from ssb_s3.core.catalog import SHORT_FINGERPRINT, version_images
from ssb_s3.core.page import human_age, human_size, launch_aliases, render_page
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
        """Click a product's row link (by its accessible name: the name may wrap after each ':')."""
        self.page.locator("#products").get_by_role("link", name=product, exact=True).click()

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


COL = {"product": 0, "alias": 1, "os": 2, "release": 3, "arch": 4, "variant": 5, "type": 6, "clients": 7,
       "latest": 8, "age": 9, "size": 10}


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
    visit.open(LAUNCHED)
    panel = page.locator("details[open]")
    assert panel.locator("summary").text_content() == LAUNCHED
    commands = panel.locator(".cmd code").all_text_contents()
    assert commands == ["lxc launch ssb:busybox/1.36", "incus launch ssb:busybox/1.36"]
    assert page.locator("#remote .cmd code").all_text_contents() == [
        f"{tool} remote add ssb {served['url']} --protocol simplestreams --public" for tool in ("lxc", "incus")]
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
    visit.open("debian:12:amd64:cloud")
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


SIZE_TEXT = re.compile(r"^(?:\d+ B|\d+\.\d\d [KMGT]iB)$")
AGE_TEXT = re.compile(r"^(?:1 (?:minute|hour|day)|(?:0|[2-9]|\d\d+) (?:minutes|hours|days))(?: \(stale\))?$")


def test_title_and_description_head_the_page(visit: Visit) -> None:
    """tree.yml `page: {title, description}` are the page's heading, its <title> and the paragraph under it."""
    page = visit.page
    assert page.text_content("h1") == TITLE
    assert page.title() == f"{TITLE}: {len(PRODUCTS)} products"
    assert page.text_content("header p.lead") == DESCRIPTION


def test_remote_add_lines_are_copy_boxes_at_the_top(browser: Any, served: dict[str, Any]) -> None:
    """The `lxc` and `incus` `remote add` lines are each in a box of their own with a Copy button, in the
    first screen, above the table, one line each at 1280 px: no sentence around them, no wrap."""
    visit = Visit(browser, f"{served['url']}/index.html")
    try:
        page = visit.page
        boxes = page.locator("#remote .cmd")
        assert boxes.count() == 2
        assert [box.locator("code").text_content() for box in boxes.all()] == [
            f"{tool} remote add ssb {served['url']} --protocol simplestreams --public" for tool in ("lxc", "incus")]
        assert all(box.locator("button.copy").is_visible() for box in boxes.all())
        for box in boxes.all():  # each command is the only text of its box and fits on one line
            assert box.locator("pre").inner_text() == box.locator("code").text_content()
            lines = box.locator("code").evaluate(
                "c => c.getBoundingClientRect().height / parseFloat(getComputedStyle(c).lineHeight)")
            assert 0.5 < lines < 1.5, lines  # two lines would be about 1.8
        top, table = page.locator("#remote").bounding_box(), page.locator("#products").bounding_box()
        assert top is not None and table is not None
        assert top["y"] + top["height"] <= min(800, table["y"]), (top, table)
    finally:
        visit.close()


def test_alias_column_shows_the_aliases_a_launch_line_uses(visit: Visit, served: dict[str, Any]) -> None:
    """The ALIAS column: the product's aliases, as ALIAS/<arch> for a product of another arch than
    amd64 (how the clients name it on any host); filtering by an alias finds its product."""
    catalog = served["catalog"]["products"]
    assert visit.page.locator("#products thead th").nth(COL["alias"]).text_content() == "Alias"
    shown = dict(zip(visit.names(), visit.column(COL["alias"]), strict=True))
    assert shown == {name: ", ".join(launch_aliases(entry)) for name, entry in catalog.items()}
    assert shown["debian:12:amd64:default"] == "debian/12, debian/bookworm"
    assert shown["debian:12:arm64:default"] == "debian/12/arm64"
    visit.page.fill("#filter", "bookworm")
    assert visit.names() == ["debian:12:amd64:default"]


def test_sizes_and_ages_read_one_way(visit: Visit) -> None:
    """Every size on the page in one style (IEC units after a space), every age in its largest whole
    unit ('1 day', '3 days', never '30 h')."""
    for summary in visit.page.locator("details summary").all():
        summary.click()
    sizes = visit.column(COL["size"]) + visit.page.eval_on_selector_all(
        "details td.num", "cells => cells.map(c => c.textContent.trim())")
    assert len(sizes) > len(PRODUCTS) and all(SIZE_TEXT.match(size) for size in sizes), sizes
    ages = visit.column(COL["age"])
    assert all(AGE_TEXT.match(age) for age in ages), ages
    seconds = dict(zip(ages, (int(s) for s in visit.column(COL["age"], "data-sort")), strict=False))
    for age, value in seconds.items():
        assert age.split(" (")[0] == human_age(value)
    assert [human_age(s) for s in (-5, 59, 60, 3599, 3600, 7200, 30 * 3600, 47 * 3600, 3 * 86400 + 5)] == [
        "0 minutes", "0 minutes", "1 minute", "59 minutes", "1 hour", "2 hours", "1 day", "1 day", "3 days"]
    assert [human_size(n) for n in (0, 1023, 1024, 12345, 50_000_000, 3 << 30)] == [
        "0 B", "1023 B", "1.00 KiB", "12.06 KiB", "47.68 MiB", "3.00 GiB"]


def test_filter_also_narrows_the_detail_panels(visit: Visit, served: dict[str, Any]) -> None:
    page = visit.page

    def panels() -> list[str]:
        return [t.strip() for t in page.locator("details:not([hidden]) > summary").all_text_contents()]

    assert sorted(panels()) == sorted(served["catalog"]["products"])
    page.fill("#filter", "ubuntu 24.04")
    assert sorted(panels()) == sorted(visit.names()) == sorted(p[0] for p in PRODUCTS if p[0].startswith("ubuntu:24"))
    assert page.locator("details:visible").count() == len(visit.names())
    page.fill("#filter", "no such product")
    assert panels() == [] and page.locator("details:visible").count() == 0
    page.fill("#filter", "")
    assert len(panels()) == len(PRODUCTS)


def test_launch_line_of_another_arch_names_the_arch_alias(visit: Visit, served: dict[str, Any], tmp_path: Path,
                                                          tls_files: TlsFiles) -> None:
    """An arm64 product's launch line is `lxc launch ssb:debian/12/arm64`: the real lxc resolves that to the
    arm64 image on this amd64 host, where the plain `debian/12` names the amd64 one."""
    catalog = served["catalog"]["products"]
    visit.open("debian:12:arm64:default")
    lines = visit.page.locator("details[open] .cmd code").all_text_contents()
    assert lines == ["lxc launch ssb:debian/12/arm64", "incus launch ssb:debian/12/arm64"]
    visit.open("debian:12:amd64:default")
    assert "lxc launch ssb:debian/12" in visit.page.locator("details[open] .cmd code").all_text_contents()

    def fingerprint(name: str) -> str:
        versions = catalog[name]["versions"]
        return next(iter(version_images(versions[max(versions)]["items"])))

    lxc = LxdClient(tmp_path / "lxdconf", ca_file=tls_files.ca_cert)
    add = visit.page.locator("#remote .cmd code").first.text_content() or ""
    lxc.run(*shlex.split(add)[1:])
    assert f"Fingerprint: {fingerprint('debian:12:arm64:default')}" in lxc.image_info(lines[0].split()[-1])
    assert f"Fingerprint: {fingerprint('debian:12:amd64:default')}" in lxc.image_info("ssb:debian/12")


def _open_all(visit: Visit) -> None:
    visit.page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")


@pytest.mark.parametrize(("width", "scheme"), [(1280, "light"), (390, "light"), (390, "dark")])
def test_layout_needs_no_horizontal_scroll(browser: Any, served: dict[str, Any], width: int, scheme: str) -> None:
    """On a 1280 px screen and a 390 px phone, every panel open, nothing is wider than the window (on the
    phone the tables become cards)."""
    visit = Visit(browser, f"{served['url']}/index.html", width=width, scheme=scheme)
    try:
        _open_all(visit)
        widths = visit.page.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth]")
        assert max(widths) <= width, widths
        wider = visit.page.eval_on_selector_all(
            "main *", "els => els.filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)"
                      ".map(e => e.tagName + '.' + e.className).slice(0, 5)")
        assert wider == [], wider
        row = visit.page.locator("#products tbody tr").first.bounding_box()
        assert row is not None
        assert row["height"] > 60 if width < 500 else row["height"] < 60, row  # a card on the phone, else a row
    finally:
        visit.close()


def test_dark_mode_follows_the_colour_scheme(browser: Any, served: dict[str, Any]) -> None:
    """prefers-color-scheme: dark gives light text on a dark background (contrast: the axe test)."""
    def luminance(visit: Visit, prop: str) -> float:
        rgb = visit.page.evaluate(f"getComputedStyle(document.body).{prop}")
        r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
        return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

    for scheme, dark in (("light", False), ("dark", True)):
        visit = Visit(browser, f"{served['url']}/index.html", scheme=scheme)
        try:
            background, text = luminance(visit, "backgroundColor"), luminance(visit, "color")
            expected = (background < 0.2 and text > 0.8) if dark else (background > 0.9 and text < 0.2)
            assert expected, (scheme, background, text)
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
    """axe-core's violations on the page as it is (every panel open): impact -> 'rule-id (N nodes)'."""
    _open_all(visit)
    found: dict[str, list[str]] = {}
    for violation in axe.run(visit.page).response["violations"]:
        found.setdefault(violation["impact"], []).append(f"{violation['id']} ({len(violation['nodes'])})")
    return found


@pytest.mark.parametrize("width", [1280, 390])
def test_no_serious_or_critical_accessibility_violation(browser: Any, served: dict[str, Any], axe: Any,
                                                         width: int) -> None:
    """axe-core in the real chromium, light and dark, every panel open: no serious or critical violation."""
    for scheme in ("light", "dark"):
        visit = Visit(browser, f"{served['url']}/index.html", width=width, scheme=scheme)
        try:
            found = axe_violations(axe, visit)
            print(f"axe at {width} px, {scheme}: {found or 'no violation'}")
            assert not found.get("serious") and not found.get("critical"), found
            assert not visit.errors, visit.errors  # axe ran beside the page's CSP without an error
        finally:
            visit.close()


def test_screenshots_at_1280_and_390_px(browser: Any, served: dict[str, Any], tmp_path: Path) -> None:
    """The whole page with one product open, at 1280 and 390 px, rendered from the served catalog as
    published to https://images.example.org/lxd (a real-looking URL) on 2026-12-01; under 400 KB each
    and kept as test artefacts. SSB_UPDATE_SCREENSHOT=1 also writes docs/page.png and docs/page-390.png,
    the README's pictures:
    SSB_UPDATE_SCREENSHOT=1 python3 -m pytest -q tests/test_page.py -k screenshots"""
    tree = config_from_text(tree_yml("https://s3.example.org"), "tree.yml").page
    html = render_page(served["catalog"], tree, now=NOW, base_url=DOCS_URL)
    (tmp_path / "index.html").write_bytes(html)
    shots = {}
    for width, name, scale in ((1280, "page.png", 0.7), (390, "page-390.png", 1.0)):  # 390: the first 2,000 px
        visit = Visit(browser, f"file://{tmp_path}/index.html#p-10", width=width, scale=scale)  # debian:12:amd64
        try:
            assert visit.page.locator("details[open] summary").text_content() == "debian:12:amd64:default"
            assert DOCS_URL in (visit.page.locator("#remote code").first.text_content() or "")
            visit.page.evaluate("window.scrollTo(0, 0)")  # the sticky table header back at the top
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
    """What a user copies from the page is what works: `lxc remote add` then `lxc launch` (one launch)."""
    visit.open(LAUNCHED)
    lines = visit.page.locator("details[open] .cmd code").all_text_contents()
    add = visit.page.locator("#remote .cmd code").first.text_content() or ""
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
        os_cell = f"#products tbody td:nth-child({COL['os'] + 1})"
        assert visit.page.text_content(os_cell) == HOSTILE  # shown as text, run as nothing
        panel = visit.page.inner_text("details[open]")
        assert "nesting=</code><script>alert(3)</script>" in panel and '"><img src=x onerror=alert(2)>' in panel
        assert not visit.errors, visit.errors  # no dialog, no script error
    finally:
        visit.close()


def test_hostile_title_and_description_render_as_text() -> None:
    config = PageConfig(title=HOSTILE, description='"><img src=x onerror=alert(4)>')
    text = render_page(_catalog(1), config, now=NOW).decode()
    assert text.count("<script") == 1 and "<img" not in text
    assert f"<h1>{escape(HOSTILE)}</h1>" in text and f"<title>{escape(HOSTILE)}: 1 product</title>" in text
    assert '<p class="lead">&quot;&gt;&lt;img src=x onerror=alert(4)&gt;</p>' in text


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
    assert 'data-bytes="12345"' in text and "12.06 KiB" in text


def test_render_is_deterministic() -> None:
    """The same catalog gives the same bytes whatever its order (its speed is a bench row, not a
    timed assertion: bench/)."""
    catalog = _catalog(1000)
    reordered = {**catalog, "products": dict(reversed(list(catalog["products"].items())))}
    start = time.perf_counter()
    first = render_page(catalog, PageConfig(), now=NOW, base_url="https://images.example.org")
    elapsed = time.perf_counter() - start
    assert render_page(reordered, PageConfig(), now=NOW, base_url="https://images.example.org") == first
    assert render_page(catalog, PageConfig(), now=NOW + 86400, base_url="https://images.example.org") != first
    print(f"1,000 products: rendered in {elapsed:.3f}s, {len(first)} bytes")
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
            lines = visit.page.locator("#remote .cmd code").all_text_contents()
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
