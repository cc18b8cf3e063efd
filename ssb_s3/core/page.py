"""The catalog web pages: a small index (index.html) and one page per product, each one
self-contained HTML file and a pure function of the catalog.

The index is what people see before they add the tree as a remote: the site's title and
description (tree.yml `page: {title, description}`), the `lxc remote add` / `incus remote add`
lines for this server's URL in their own copy boxes, a list of the operating systems (links to
their groups: the filter without JS), then one row per product, grouped by OS: its name, linked
to its product page, and its aliases (as a launch line names them), with a mark when its latest
version is stale or is a VM. The index is re-rendered at every publish that changes the catalog
and stays small (under 1 MB at 10,000 products): everything else is on the product pages.

A product page (PAGES_FOLDER next to the index, `products/<name>.html`: a key of the tree's own,
layout.reserved_folders) holds the product's facts, the remote add and launch lines, its versions
with short and full fingerprints, and its files with their sizes and hashes (deltas too). It is a
pure function of the product's catalog entry and the page settings (never of the time: dates, no
ages), so a publish writes only the pages of the products whose entry changed (views.page_views).
Which images a client lists comes from catalog.version_images (the one table of image files),
never from a second copy of that rule.

Invariants:
- pure and deterministic: the same catalog, config, time and URL give the same bytes; `now` (the
  publish time the plan was made at) is given, never read from the clock, and only the index
  shows it (ages, stale marks);
- every text taken from the catalog or tree.yml (title, description) is HTML-escaped: the
  catalog is hostile input (tree.yml's strings are also refused with control, bidi-override or
  line-separator characters, by vocabulary/text when the config is read);
- a link built from the catalog is a relative path under the tree (`./` or `../` first, each
  segment percent-encoded, except the ':' of a product page's name, which after `./` no URL
  parser reads as a scheme), never something a URL parser reads as a scheme or a host (a folder
  named `javascript:alert(1)` or `https:evil.example` stays a folder); a product whose name is not
  a tree.yml product name (PRODUCT_NAME, at most MAX_NAME characters) gets no page and no link;
- the copyable command lines quote the base URL (and the remote:alias argument) for a POSIX
  shell as shlex.quote does, in Python and in the script that fills in the page's own location;
  the script holds no catalog data (it reads the table), and a Content-Security-Policy allows
  only the pages' own inline style and script (by hash, the same on every page): injected markup
  could run nothing;
- no request of any kind: inline CSS and JS only (default-src 'none'), no fonts, images or
  icons (the favicon is an empty data: URL, so the browser does not ask the server for one);
- readable without JS: every product is a row with its link, every OS a link to its group; the
  script only filters the rows, copies and, when no base URL was configured, fills in the page's
  own location;
- one style for each kind of figure: every size is human_size (IEC units after a space), every
  date _when (UTC, to the minute);
- a launch line names an image the way the clients resolve it on any host: a plain alias names
  the image of the host's own arch only (the clients list ALIAS there, ALIAS/<arch> everywhere),
  so a product of another arch than NATIVE_ARCH is launched by ALIAS/<arch> (the arch as
  written, as the clients form it), which also is what its row shows;
- the layout needs no horizontal scrolling at 390 CSS px (below NARROW a row is a block and the
  product pages' tables become one card per row, command lines wrap) and follows
  prefers-color-scheme (light and dark palettes).
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from typing import Any

from ..config import CANONICAL_ARCH, PageConfig
from ..vocabulary.clients import is_vm_root
from ..vocabulary.document import raw_items
from ..vocabulary.imagefiles import DELTA_FTYPES
from ..vocabulary.layout import page_link_from_product_page, product_page_link, product_pages_folder
from ..vocabulary.layout import product_page_key as layout_page_key
from .catalog import SHORT_FINGERPRINT, item_size, version_images
from .mirror import PRODUCT_NAME
from .versions import version_time

NO_URL = "https://SERVER/PATH"  # shown without JS when no base URL is configured
CLIENT_TOOLS = {"LXD": "lxc", "Incus": "incus"}  # the CLI of each client (catalog.CLIENT_META's keys)
# The arch of most hosts (the clients' canonical name): a product of this arch is launched by its
# plain alias, any other by ALIAS/<arch>, the form the clients list on every host.
NATIVE_ARCH = "x86_64"
NARROW = "48rem"  # below this width rows are blocks, tables cards (a 390 px phone is 24.4rem at 16 px)
MAX_NAME = 200  # a longer product name gets no page (a file name must stay under 255 bytes)
# Part of the page settings (views.page_views): a change of the product pages' layout rewrites them all
FORMAT = "2"

VERSION_COLUMNS = ("Version", "Built", "Type", "Clients", "Size", "Fingerprint")
FILE_COLUMNS = ("Version", "File", "ftype", "Size", "sha256")
VERSION_HEAD = "".join(f'<th scope="col">{h}</th>' for h in VERSION_COLUMNS)
FILE_HEAD = "".join(f'<th scope="col">{h}</th>' for h in FILE_COLUMNS)


def _card_labels(table: str, headers: Sequence[str], first: int = 1) -> str:
    """CSS giving each cell of a narrow-layout card its column's name (the header row is hidden
    there), cells counted from `first` (1-based)."""
    return "".join(f'{table} td:nth-child({i})::before{{content:"{h}"}}'
                   for i, h in enumerate(headers[first - 1:], start=first))


CSS = ("""
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#57606a;--line:#d0d7de;--head:#f6f8fa;--warn:#9a6700;
--accent:#0969da;--box:#f6f8fa}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;--line:#30363d;--head:#161b22;
--warn:#d29922;--accent:#4493f8;--box:#161b22}}
*,::before,::after{box-sizing:border-box}
[hidden]{display:none!important}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);margin:0;
overflow-wrap:break-word}
main{max-width:90rem;margin:0 auto;padding:1rem 1.25rem 3rem}
header{border-bottom:1px solid var(--line);padding-bottom:.8rem;margin-bottom:1rem}
h1{font-size:1.7rem;margin:.3rem 0;overflow-wrap:anywhere}h2{font-size:1.2rem;margin:1.6rem 0 .5rem}
p.lead{font-size:1.05rem;margin:.2rem 0 .6rem;max-width:60rem}
p.meta{color:var(--muted);margin:.3rem 0}
a{color:var(--accent)}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
#remote{background:var(--box);border:1px solid var(--line);border-radius:8px;padding:.2rem 1rem .6rem;margin:1rem 0}
#remote h2{margin:.6rem 0 .4rem;font-size:1.05rem}
#groups ul{list-style:none;padding:0;margin:.3rem 0;display:flex;flex-wrap:wrap;gap:.2rem 1.2rem}
table{border-collapse:collapse;width:100%}
caption{text-align:left;color:var(--muted);padding:.3rem 0}
th,td{border-bottom:1px solid var(--line);padding:.3rem .45rem;text-align:left;vertical-align:top}
#products{font-size:14px}
#products tbody th{font-weight:600;overflow-wrap:anywhere;width:45%}
#products tbody th[scope]{background:var(--head);font-size:1rem}
thead th{background:var(--head)}
summary:focus-visible,.copy:focus-visible,input:focus-visible,a:focus-visible{
outline:2px solid var(--accent);outline-offset:2px}
td.num{text-align:right}.nw,td.num{white-space:nowrap}
.stale,tr.s th::after{color:var(--warn);font-weight:600}
tr.s th::after{content:" stale"}tr.v td::after{content:" (VM)";color:var(--muted)}tr.s.v td::after{content:" (VM)"}
#controls{margin:.5rem 0}#controls input{font:inherit;padding:.3rem .5rem;width:min(30rem,100%);color:inherit;
background:var(--bg);border:1px solid var(--line);border-radius:4px}
.cmd{display:flex;gap:.5rem;align-items:flex-start;margin:.3rem 0}
.cmd pre{margin:0;padding:.35rem .6rem;background:var(--head);border:1px solid var(--line);border-radius:4px;flex:1;
min-width:0;white-space:pre-wrap;overflow-wrap:anywhere}
#remote .cmd pre{background:var(--bg)}
.copy{font:inherit;font-size:.85rem;padding:.3rem .6rem}
.fp{word-break:break-all;color:var(--muted)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.5rem 0}dt{color:var(--muted)}dd{margin:0}
""" + f"""
@media (max-width:{NARROW}){{
main{{padding:.8rem .8rem 2rem}}
#products thead{{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%)}}
#products,#products caption,#products tbody,#products tr,#products tbody th,#products td{{display:block;width:auto}}
#products tbody tr{{border-bottom:1px solid var(--line);padding:.3rem 0}}
#products tbody th,#products tbody td{{border:0;padding:0 .2rem}}
#products tbody th[scope]{{padding:.3rem .2rem}}
table.cards,table.cards tbody,table.cards tr,table.cards td,table.cards th,table.cards caption{{display:block}}
table.cards thead{{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%)}}
table.cards tbody tr{{border:1px solid var(--line);border-radius:6px;margin:.5rem 0;padding:.3rem .6rem}}
table.cards tbody th,table.cards tbody td{{border:0;padding:.1rem 0;text-align:left;white-space:normal}}
table.cards td::before{{color:var(--muted);display:inline-block;min-width:6.5rem;padding-right:.5rem}}
table.cards td[colspan]::before{{content:none}}
dl{{grid-template-columns:1fr}}dd{{margin-bottom:.3rem}}
{_card_labels(".versions", VERSION_COLUMNS)}
{_card_labels(".files", FILE_COLUMNS)}
}}
""").strip()

JS = """
(function () {
  "use strict";
  var table = document.getElementById("products"), filter = document.getElementById("filter");
  if (table && filter) {
    var count = document.getElementById("count"), total = 0;
    var groups = Array.prototype.map.call(table.tBodies, function (body) {
      var rows = Array.prototype.slice.call(body.rows, 1), head = body.rows[0].textContent.toLowerCase();
      total += rows.length;
      return {body: body, rows: rows, texts: rows.map(function (r) {
        var marks = " " + r.className + " ";
        return head + " " + r.textContent.toLowerCase() + (marks.indexOf(" s ") >= 0 ? " stale" : "")
          + (marks.indexOf(" v ") >= 0 ? " vm" : "");
      })};
    });
    document.getElementById("controls").hidden = false;
    filter.addEventListener("input", function () {
      var words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
      groups.forEach(function (g) {
        var any = 0;
        g.rows.forEach(function (r, n) {
          var hide = !words.every(function (w) { return g.texts[n].indexOf(w) >= 0; });
          if (r.hidden !== hide) { r.hidden = hide; }
          if (!hide) { any++; }
        });
        g.body.hidden = !any;
        shown += any;
      });
      count.textContent = shown + " of " + total + " products shown";
    });
  }
  var base = document.body.getAttribute("data-base");
  if (base !== null && /^https?:$/.test(location.protocol)) {
    var url = new URL(base, location.href).href.replace(/\\/$/, "");
    var quoted = /^[\\w@%+=:,.\\/-]+$/.test(url) ? url : "'" + url.replace(/'/g, "'\\"'\\"'") + "'";
    document.querySelectorAll(".base-url").forEach(function (s) { s.textContent = quoted; });
  }
  document.querySelectorAll(".copy").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = button.previousElementSibling.textContent;
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
      }
    });
  });
}());
""".strip()


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CSP = (f"default-src 'none'; style-src {_csp_hash(CSS)}; script-src {_csp_hash(JS)}; img-src data:; "
       "base-uri 'none'; form-action 'none'")
# What every page's bytes depend on besides the catalog and the settings (views.page_views)
LAYOUT = hashlib.sha256(f"{FORMAT}\n{CSS}\n{JS}".encode()).hexdigest()[:12]
_DIGITS = re.compile(r"\d+")
_SPECIAL = re.compile("[&<>\"']")
_SLUG = re.compile(r"[^a-z0-9]+")


def e(text: Any) -> str:
    """Catalog text as HTML text or attribute value (quotes escaped too, as html.escape does); most
    text has nothing to escape, which one regex search finds out fastest."""
    value = str(text)
    return escape(value, quote=True) if _SPECIAL.search(value) else value


def human_size(size: int) -> str:
    """Bytes as '512 B', '1.50 KiB', '2.00 MiB' ... (every size on the pages)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _natural(text: str) -> str:
    """A sort key in which '9' comes before '10' (numbers zero-padded), compared as plain strings."""
    return _DIGITS.sub(lambda m: m.group().zfill(12), text.lower())


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _href(path: str, depth: int) -> str | None:
    """A tree path as a link from a page that lies `depth` folders below the tree's root: always
    a relative path under the tree (`./` or `../` first, every segment percent-encoded, ':' included),
    which no URL parser reads as a scheme or another host; None (no link) for a path with an empty,
    `.` or `..` segment, which could only lead elsewhere."""
    segments = path.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        return None
    return e(("../" * depth or "./") + "/".join(urllib.parse.quote(seg, safe="") for seg in segments))


def _link(path: str, text: str, depth: int) -> str:
    href = _href(path, depth)
    return e(text) if href is None else f'<a href="{href}">{e(text)}</a>'


def has_page(name: str) -> bool:
    """Whether a product gets a page: a tree.yml product name (letters, digits and . _ : + ~ -, a
    letter or digit first), at most MAX_NAME characters; its page's file name is the name itself."""
    return len(name) <= MAX_NAME and PRODUCT_NAME.fullmatch(name) is not None


def product_page_key(config: PageConfig, name: str) -> str | None:
    """The key of a product's page (layout.product_page_key), None for a name that gets none."""
    return layout_page_key(config.path, name) if has_page(name) else None


def _page_href(name: str) -> str:
    """The link from the index to a product page (has_page: the name needs no HTML escaping and no
    quotes; its ':' after `./` is no scheme; '+' percent-encoded, which S3 would read as a space)."""
    return product_page_link(urllib.parse.quote(name, safe=":"))


def _command(text: str, base_html: str = "", tail: str = "") -> str:
    """One copyable line: escaped `text`, then the URL (already HTML) and escaped `tail` when given."""
    line = e(text) + (" " + base_html if base_html else "") + e(tail)
    return (f'<div class="cmd"><pre><code>{line}</code></pre>'
            '<button type="button" class="copy" hidden>Copy</button></div>')


def launch_aliases(entry: Mapping[str, Any]) -> list[str]:
    """The product's aliases as a launch line names them on any host: as written for a product of
    NATIVE_ARCH, else ALIAS/<arch> (the arch as written, as the clients form it)."""
    aliases = [a for a in str(entry.get("aliases") or "").split(",") if a]
    arch = str(entry.get("arch", ""))
    if CANONICAL_ARCH.get(arch, arch) == NATIVE_ARCH:
        return aliases
    return [f"{alias}/{arch}" for alias in aliases]


def _head(title: str) -> str:
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{e(title)}</title><style>{CSS}</style></head>\n")


def _body(base_url: str, depth: int) -> str:
    """<body>, with the path to the tree's root when the page must find its own base URL."""
    return "<body>" if base_url else f'<body data-base="{e("../" * depth or "./")}">'


def _adds(config: PageConfig, base_url: str) -> str:
    base_html = f'<span class="base-url">{e(shlex.quote(base_url or NO_URL))}</span>'
    remote = shlex.quote(config.remote)
    return "".join(_command(f"{tool} remote add {remote}", base_html, " --protocol simplestreams --public")
                   for tool in CLIENT_TOOLS.values())


def _latest(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any], list[str], list[str]]:
    """(latest version, its client images, their types, the clients listing them)."""
    versions = entry["versions"]
    latest = max(versions)
    newest = version_images(raw_items(versions[latest]["items"]))
    types = sorted({"VM" if i.type == "virtual-machine" else "container" for i in newest.values()})
    clients = [c for c in CLIENT_TOOLS if any(c in i.clients for i in newest.values())]
    return latest, newest, types, clients


# ----------------------------------------------------------------------------------------------
# The index


def _slug(text: str, taken: set[str]) -> str:
    """An id for an OS group: its name in lower case, runs of other characters as '-', unique."""
    base = "os-" + (_SLUG.sub("-", text.lower()).strip("-") or "other")
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    taken.add(slug)
    return slug


def _row(name: str, entry: Mapping[str, Any], *, now: float, stale_after: float) -> str:
    """One product's row of the index: name (linked to its page), aliases, and the classes `s` (its
    latest version is stale) and `v` (it is a VM), which the style shows as marks and the script
    filters by. Kept short (the link unquoted: has_page names need no quotes): at 10,000
    products the index must stay under 1 MB."""
    versions = entry["versions"]
    latest = max(versions)
    items = versions[latest]["items"]
    # a VM image needs a VM root: most versions have none, and need no walk of the image table
    vm = any(is_vm_root(str(i.get("ftype"))) for i in items.values()) and any(
        i.type == "virtual-machine" for i in version_images(raw_items(items)).values())
    marks = " ".join(mark for mark, on in (("s", now - version_time(latest).timestamp() > stale_after),
                                           ("v", vm)) if on)
    tr = "<tr>" if not marks else f"<tr class={marks}>" if " " not in marks else f'<tr class="{marks}">'
    link = f"<a href={_page_href(name)}>{name}</a>" if has_page(name) else e(name)
    return f"{tr}<th>{link}<td>{e(', '.join(launch_aliases(entry)))}\n"


def render_page(catalog: Mapping[str, Any], config: PageConfig, *, now: float, base_url: str = "") -> bytes:
    """index.html for `catalog`, published at `now` (epoch seconds), for the remote at `base_url`
    ('' : unknown, the page shows its own location when JS runs)."""
    depth = config.path.count("/")
    base_url = base_url.rstrip("/")
    products = {name: entry for name, entry in catalog.get("products", {}).items()
                if entry.get("versions")}  # a product without versions lists nothing: no row
    groups: dict[str, list[str]] = {}
    for name in products:
        groups.setdefault(str(products[name].get("os", "")), []).append(name)
    stale_after = config.stale_after_days * 86400
    taken: set[str] = set()
    nav, bodies = [], []
    for os_name in sorted(groups, key=lambda o: (_natural(o), o)):
        names = sorted(groups[os_name], key=lambda n: (_natural(n), n))
        slug = _slug(os_name, taken)
        nav.append(f'<li><a href="#{slug}">{e(os_name) or "(no OS)"}</a> ({len(names)})</li>')
        rows = "".join(_row(name, products[name], now=now, stale_after=stale_after) for name in names)
        bodies.append(f'<tbody id="{slug}"><tr><th colspan="2" scope="rowgroup">{e(os_name) or "(no OS)"}</th></tr>\n'
                      f"{rows}</tbody>\n")
    published = _when(datetime.fromtimestamp(now, tz=timezone.utc))
    count = f"{len(products)} product{'' if len(products) == 1 else 's'}"
    remote = e(shlex.quote(config.remote))
    description = f'<p class="lead">{e(config.description)}</p>' if config.description else ""
    html = (
        _head(f"{config.title}: {count}") + _body(base_url, depth)
        + f"<main><header><h1>{e(config.title)}</h1>{description}"
        f'<p class="meta">{e(count)}, published {e(published)}. '
        f"A product whose latest version is older than {config.stale_after_days} days (as of then) is marked stale."
        "</p></header>\n"
        '<section id="remote" aria-labelledby="remote-title"><h2 id="remote-title">Add this server as a remote</h2>'
        f'{_adds(config, base_url)}<p class="meta">Then launch an image by its alias, like '
        f"<code>lxc launch {remote}:ALIAS</code>: each product's page has its own lines, its versions and files."
        "</p></section>\n"
        '<nav id="groups" aria-labelledby="groups-title"><h2 id="groups-title">Operating systems</h2>'
        f"<ul>{''.join(nav)}</ul></nav>\n"
        '<div id="controls" hidden><label for="filter">Filter </label>'
        '<input id="filter" type="search" placeholder="e.g. debian amd64" aria-controls="products"> '
        f'<span id="count" aria-live="polite">{e(count)} shown</span></div>\n'
        '<table id="products"><caption>Products by operating system: open one for its launch lines, versions '
        'and files</caption><thead><tr><th scope="col">Product</th><th scope="col">Alias</th></tr></thead>\n'
        + "".join(bodies) + "</table>\n"
        f"</main><script>{JS}</script></body></html>\n"
    )
    return html.encode()


# ----------------------------------------------------------------------------------------------
# A product's page


def _files(entry: Mapping[str, Any], depth: int) -> str:
    """Every file of every version, once per path (mirrored items share one object), deltas marked."""
    rows = []
    for vname, version in sorted(entry["versions"].items(), reverse=True):
        by_path: dict[str, list[Mapping[str, Any]]] = {}
        for _, item in sorted(version["items"].items()):
            by_path.setdefault(str(item.get("path", "")), []).append(item)
        for path, items in sorted(by_path.items()):
            ftypes = sorted({str(i.get("ftype", "")) for i in items})
            delta = next((i for i in items if i.get("ftype") in DELTA_FTYPES), None)
            kind = ", ".join(ftypes) + (f" (delta from {delta.get('delta_base', '?')})" if delta else "")
            size = item_size(items[0])
            sha = str(items[0].get("sha256", ""))
            rows.append(f'<tr><td>{e(vname)}</td><td>{_link(path, path.rsplit("/", 1)[-1], depth)}'
                        f'</td><td>{e(kind)}</td><td class="num" data-bytes="{size}">{e(human_size(size))}</td>'
                        f'<td><code title="{e(sha)}">{e(sha[:SHORT_FINGERPRINT])}</code></td></tr>')
    return (f'<table class="cards files"><caption>Files</caption><thead><tr>{FILE_HEAD}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def render_product(name: str, entry: Mapping[str, Any], config: PageConfig, *, base_url: str = "") -> bytes:
    """The page of one product (at product_page_key): a function of its catalog entry and the
    settings only, never of the time."""
    depth = product_pages_folder(config.path).count("/") + 1
    base_url = base_url.rstrip("/")
    versions = entry["versions"]
    latest, newest, types, clients = _latest(entry)
    images = {vname: version_images(raw_items(version["items"])) for vname, version in versions.items()}
    images[latest] = newest
    size = sum(item_size(i) for i in {str(i.get("path")): i for i in versions[latest]["items"].values()}.values())
    aliases = [a for a in str(entry.get("aliases") or "").split(",") if a]
    launchable = launch_aliases(entry)
    requirements = entry.get("requirements") or entry.get("lxd_requirements")
    requirements = requirements if isinstance(requirements, Mapping) else {}
    arch = str(entry.get("arch", ""))
    release = str(entry.get("release", ""))
    title = str(entry.get("release_title") or "")
    facts = [("OS", entry.get("os", "")),
             ("Release", f"{release} ({title})" if title and title != release else release),
             ("Arch", arch), ("Variant", entry.get("variant", "")),
             ("Aliases", ", ".join(aliases) or "none"),
             ("On any host", ", ".join(f"{a}/{arch}" for a in aliases) if launchable != aliases else ""),
             ("Type", ", ".join(types) or "none"), ("Clients", ", ".join(clients) or "none"),
             ("Latest version", f"{latest}, built {_when(version_time(latest))}"),
             ("Size", human_size(size)),
             ("Support ends", entry.get("support_eol", "")),
             ("Requirements", ", ".join(f"{k}={v}" for k, v in sorted(requirements.items())) or "none")]
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts if v)
    target = launchable[0] if launchable else next(iter(sorted(newest)), "")
    commands = [_command(f"{tool} launch {shlex.quote(f'{config.remote}:{target}')}"
                         + (" --vm" if kind == "VM" else "")) for client, tool in CLIENT_TOOLS.items()
                if client in clients for kind in types]
    use = "".join(commands) or "<p>No image for LXD or Incus in the latest version.</p>"
    version_rows = []
    for vname in sorted(versions, reverse=True):
        for fingerprint, image in sorted(images[vname].items()):
            version_rows.append(
                f"<tr><td>{e(vname)}</td><td>{e(_when(version_time(vname)))}</td>"
                f"<td>{'VM' if image.type == 'virtual-machine' else 'container'}</td>"
                f"<td>{e(', '.join(image.clients))}</td>"
                f'<td class="num">{e(human_size(image.size))}</td><td><code>{e(fingerprint[:SHORT_FINGERPRINT])}</code>'
                f'<br><code class="fp">{e(fingerprint)}</code></td></tr>')
        if not images[vname]:
            version_rows.append(f'<tr><td>{e(vname)}</td><td>{e(_when(version_time(vname)))}</td>'
                                '<td colspan="4">no LXD or Incus image</td></tr>')
    back = page_link_from_product_page(config.path)
    html = (
        _head(f"{name}: {config.title}") + _body(base_url, depth)
        + f'<main><header><p class="meta"><a href="{e(urllib.parse.quote(back))}">{e(config.title)}</a>'
        f" / product</p><h1>{e(name)}</h1></header>\n"
        '<section id="remote" aria-labelledby="remote-title"><h2 id="remote-title">Add this server as a remote, '
        f"then launch it</h2>{_adds(config, base_url)}{use}</section>\n"
        f"<h2>About</h2><dl>{dl}</dl>\n"
        f'<table class="cards versions"><caption>Versions (newest first)</caption><thead><tr>{VERSION_HEAD}</tr>'
        f"</thead><tbody>{''.join(version_rows)}</tbody></table>\n{_files(entry, depth)}\n"
        f"</main><script>{JS}</script></body></html>\n"
    )
    return html.encode()
