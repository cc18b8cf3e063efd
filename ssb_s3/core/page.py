"""The catalog web page (index.html): one self-contained HTML file, a pure function of the catalog.

What people see before they add the tree as a remote: the site's title and description (tree.yml
`page: {title, description}`), the `lxc remote add` / `incus remote add` lines for this server's
URL in their own copy boxes, then a table with one row per product (its aliases, OS, release,
arch, variant, container / VM, the clients that list it, the latest version, its age and a stale
mark, its size) and a detail panel per product (versions with short and full fingerprints,
aliases, requirements, the files with their sizes, deltas too, and copyable `lxc` / `incus`
launch lines). Which images a client lists comes from catalog.version_images (the one table of
image files), never from a second copy of that rule.

Invariants:
- pure and deterministic: the same catalog, config, time and URL give the same bytes; `now` (the
  publish time the plan was made at) is given, never read from the clock;
- every text taken from the catalog or tree.yml (title, description) is HTML-escaped: the
  catalog is hostile input (tree.yml's strings are also refused with control, bidi-override or
  line-separator characters, by vocabulary/text when the config is read);
- a link built from the catalog is a relative path under the tree (`./` or `../` first, each
  segment percent-encoded), never something a URL parser reads as a scheme or a host
  (a folder named `javascript:alert(1)` or `https:evil.example` stays a folder);
- the copyable command lines quote the base URL (and the remote:alias argument) for a POSIX
  shell as shlex.quote does, in Python and in the script that fills in the page's own location;
  the script holds no catalog data (it reads the table), and a Content-Security-Policy allows
  only this page's own inline style and script (by hash): injected markup could run nothing;
- no request of any kind: inline CSS and JS only (default-src 'none'), no fonts, images or
  icons (the favicon is an empty data: URL, so the browser does not ask the server for one);
- readable without JS: the table and the panels are in the HTML; the script only sorts,
  filters (the rows and their panels), copies, opens a panel named in the URL and, when no base
  URL was configured, fills in the page's own location;
- one style for each kind of figure: every size is human_size (IEC units after a space), every
  age human_age (minutes, hours, days, singular for 1);
- a launch line names an image the way the clients resolve it on any host: a plain alias names
  the image of the host's own arch only (the clients list ALIAS there, ALIAS/<arch> everywhere),
  so a product of another arch than NATIVE_ARCH is launched by ALIAS/<arch> (the arch as
  written, as the clients form it), which also is what its row shows;
- the layout needs no horizontal scrolling at 390 CSS px (below NARROW every table becomes one
  card per row, command lines wrap) and follows prefers-color-scheme (light and dark palettes).
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
from ..vocabulary.imagefiles import DELTA_FTYPES
from .catalog import SHORT_FINGERPRINT, item_size, version_images
from .versions import version_time

NO_URL = "https://SERVER/PATH"  # shown without JS when no base URL is configured
CLIENT_TOOLS = {"LXD": "lxc", "Incus": "incus"}  # the CLI of each client (catalog.CLIENT_META's keys)
# The arch of most hosts (the clients' canonical name): a product of this arch is launched by its
# plain alias, any other by ALIAS/<arch>, the form the clients list on every host.
NATIVE_ARCH = "x86_64"
NARROW = "48rem"  # below this width the tables are cards (a 390 px phone is 24.4rem at 16 px)

COLUMNS = (  # header, numeric sort
    ("Product", False), ("Alias", False), ("OS", False), ("Release", False), ("Arch", False), ("Variant", False),
    ("Type", False), ("Clients", False), ("Latest version", False), ("Age", True), ("Size", True),
)
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
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);margin:0;
overflow-wrap:break-word}
main{max-width:90rem;margin:0 auto;padding:1rem 1.25rem 3rem}
header{border-bottom:1px solid var(--line);padding-bottom:.8rem;margin-bottom:1rem}
h1{font-size:1.7rem;margin:.3rem 0}h2{font-size:1.2rem;margin:1.6rem 0 .5rem}h3{font-size:1rem;margin:1rem 0 .3rem}
p.lead{font-size:1.05rem;margin:.2rem 0 .6rem;max-width:60rem}
p.meta{color:var(--muted);margin:.3rem 0}
a{color:var(--accent)}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
#remote{background:var(--box);border:1px solid var(--line);border-radius:8px;padding:.2rem 1rem .6rem;margin:1rem 0}
#remote h2{margin:.6rem 0 .4rem;font-size:1.05rem}
table{border-collapse:collapse;width:100%}
caption{text-align:left;color:var(--muted);padding:.3rem 0}
th,td{border-bottom:1px solid var(--line);padding:.3rem .45rem;text-align:left;vertical-align:top}
#products{font-size:14px}
@media (min-width:75rem){#products tbody th{width:17.5rem}}
thead th{background:var(--head);position:sticky;top:0}
tbody th{font-weight:600}
thead button{font:inherit;font-weight:600;color:inherit;background:none;border:0;padding:0;cursor:pointer}
thead button:focus-visible,summary:focus-visible,.copy:focus-visible,input:focus-visible,a:focus-visible{
outline:2px solid var(--accent);outline-offset:2px}
th[aria-sort=ascending] button::after{content:" \\25B2"}th[aria-sort=descending] button::after{content:" \\25BC"}
td.num{text-align:right}.nw,td.num:not(.stale){white-space:nowrap}
.stale{color:var(--warn);font-weight:600}
#controls{margin:.5rem 0}#controls input{font:inherit;padding:.3rem .5rem;width:min(30rem,100%);color:inherit;
background:var(--bg);border:1px solid var(--line);border-radius:4px}
details{border:1px solid var(--line);border-radius:6px;margin:.5rem 0;padding:.3rem .8rem}
summary{cursor:pointer;font-weight:600}
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
table.cards,table.cards tbody,table.cards tr,table.cards td,table.cards th,table.cards caption{{display:block}}
table.cards thead{{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%)}}
#products thead{{position:static;width:auto;height:auto;overflow:visible;clip-path:none;display:block}}
#products thead tr{{display:flex;flex-wrap:wrap;gap:.3rem .9rem;align-items:baseline}}
#products thead tr::before{{content:"Sort by";color:var(--muted)}}
#products thead th{{display:block;position:static;border:0;padding:0;background:none}}
table.cards tbody tr{{border:1px solid var(--line);border-radius:6px;margin:.5rem 0;padding:.3rem .6rem}}
table.cards tbody tr[hidden]{{display:none}}
table.cards tbody th,table.cards tbody td{{border:0;padding:.1rem 0;text-align:left;white-space:normal}}
table.cards td::before{{color:var(--muted);display:inline-block;min-width:6.5rem;padding-right:.5rem}}
table.cards td[colspan]::before{{content:none}}
#products tbody td{{display:inline-block;margin-right:1rem}}
#products td::before{{min-width:0}}
dl{{grid-template-columns:1fr}}dd{{margin-bottom:.3rem}}
{_card_labels("#products", [h for h, _ in COLUMNS], 2)}
{_card_labels(".versions", VERSION_COLUMNS)}
{_card_labels(".files", FILE_COLUMNS)}
}}
""").strip()

JS = """
(function () {
  "use strict";
  var table = document.getElementById("products"), body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows), heads = table.tHead.rows[0].cells;
  var filter = document.getElementById("filter"), count = document.getElementById("count");
  var panels = rows.map(function (r) {
    var link = r.querySelector("th a");
    return link ? document.getElementById(link.getAttribute("href").slice(1)) : null;
  });
  document.getElementById("controls").hidden = false;
  function value(row, i) {
    var cell = row.cells[i], v = cell.getAttribute("data-sort");
    return v === null ? cell.textContent.trim().toLowerCase() : v;
  }
  Array.prototype.forEach.call(heads, function (th, i) {
    th.querySelector("button").addEventListener("click", function () {
      var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
      var sign = dir === "ascending" ? 1 : -1, numeric = th.hasAttribute("data-numeric");
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir);
      var sorted = rows.slice().sort(function (a, b) {
        var x = value(a, i), y = value(b, i);
        var c = numeric ? Number(x) - Number(y) : (x < y ? -1 : x > y ? 1 : 0);
        return c * sign || Number(a.getAttribute("data-order")) - Number(b.getAttribute("data-order"));
      });
      sorted.forEach(function (r) { body.appendChild(r); });
    });
  });
  filter.addEventListener("input", function () {
    var words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    rows.forEach(function (r, n) {
      var text = r.textContent.toLowerCase();
      r.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
      if (panels[n]) { panels[n].hidden = r.hidden; }
      if (!r.hidden) { shown++; }
    });
    count.textContent = shown + " of " + rows.length + " products shown";
  });
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
  function openTarget() {
    var el = location.hash ? document.getElementById(decodeURIComponent(location.hash.slice(1))) : null;
    if (el && el.tagName === "DETAILS") { el.hidden = false; el.open = true; }
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
}());
""".strip()


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CSP = (f"default-src 'none'; style-src {_csp_hash(CSS)}; script-src {_csp_hash(JS)}; img-src data:; "
       "base-uri 'none'; form-action 'none'")
_DIGITS = re.compile(r"\d+")
_SPECIAL = re.compile("[&<>\"']")


def e(text: Any) -> str:
    """Catalog text as HTML text or attribute value (quotes escaped too, as html.escape does); most
    text has nothing to escape, which one regex search finds out fastest."""
    value = str(text)
    return escape(value, quote=True) if _SPECIAL.search(value) else value


def human_size(size: int) -> str:
    """Bytes as '512 B', '1.50 KiB', '2.00 MiB' ... (every size on the page)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def human_age(seconds: float) -> str:
    """An age in its largest whole unit: '1 day', '3 days', '5 hours', '1 minute', '0 minutes'
    (a version dated after the publish counts as 0 minutes)."""
    seconds = max(0.0, seconds)
    for length, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= length or unit == "minute":
            count = int(seconds // length)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return "0 minutes"  # pragma: no cover


def _natural(text: str) -> str:
    """A sort key in which '9' comes before '10' (numbers zero-padded), compared as plain strings."""
    return _DIGITS.sub(lambda m: m.group().zfill(12), text.lower())


def _breakable(name: str) -> str:
    """A product name as HTML that may wrap after each ':' (alpine:3.20:amd64:default), so that the
    table fits a 1280 px screen; the text stays the same (<wbr> has none)."""
    return e(name).replace(":", ":<wbr>")  # escaped text has no ':' of its own (&lt; &#x27; ...)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _href(path: str, depth: int) -> str | None:
    """A tree path as a link from the page, which lies `depth` folders below the tree's root: always
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


def _product(index: int, name: str, entry: Mapping[str, Any], *, now: float, stale_after: float,
             remote: str, depth: int) -> tuple[str, str]:
    """(the table row, the detail panel) of one product."""
    pid = f"p-{index}"
    versions = entry["versions"]
    latest = max(versions)
    images = {vname: version_images(version["items"]) for vname, version in versions.items()}
    newest = images[latest]
    types = sorted({"VM" if i.type == "virtual-machine" else "container" for i in newest.values()})
    clients = [c for c in CLIENT_TOOLS if any(c in i.clients for i in newest.values())]
    built = version_time(latest)
    age = now - built.timestamp()
    stale = age > stale_after
    size = sum(item_size(i) for i in {str(i.get("path")): i for i in versions[latest]["items"].values()}.values())
    aliases = [a for a in str(entry.get("aliases") or "").split(",") if a]
    launchable = launch_aliases(entry)
    variant = str(entry.get("variant", ""))
    cells = [
        f'<th scope="row" data-sort="{e(_natural(name))}"><a href="#{pid}">{_breakable(name)}</a></th>',
        f"<td>{e(', '.join(launchable))}</td>",
        *(f'<td data-sort="{e(_natural(str(entry.get(k, ""))))}">{e(entry.get(k, ""))}</td>'
          for k in ("os", "release", "arch")),
        f'<td data-sort="{e(_natural(variant))}">{e(variant)}</td>',
        f"<td>{e(', '.join(types))}</td>",
        f"<td>{e(', '.join(clients)) or 'none'}</td>",
        f'<td data-sort="{e(latest)}"><time datetime="{built.strftime("%Y-%m-%dT%H:%MZ")}">{e(latest)}</time></td>',
        f'<td class="num{" stale" if stale else ""}" data-sort="{int(age)}">'
        + (f'<span class="nw">{e(human_age(age))}</span> (stale)</td>' if stale else f"{e(human_age(age))}</td>"),
        f'<td class="num" data-sort="{size}">{e(human_size(size))}</td>',
    ]
    row = f'<tr data-order="{index}">{"".join(cells)}</tr>'

    requirements = entry.get("requirements") or entry.get("lxd_requirements")
    requirements = requirements if isinstance(requirements, Mapping) else {}
    arch = str(entry.get("arch", ""))
    facts = [("Release title", entry.get("release_title", "")),
             ("Aliases", ", ".join(aliases) or "none"),
             ("On any host", ", ".join(f"{a}/{arch}" for a in aliases) if launchable != aliases else ""),
             ("Support ends", entry.get("support_eol", "")),
             ("Requirements", ", ".join(f"{k}={v}" for k, v in sorted(requirements.items())) or "none")]
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts if v)
    target = launchable[0] if launchable else next(iter(sorted(newest)), "")
    commands = [_command(f"{tool} launch {shlex.quote(f'{remote}:{target}')}" + (" --vm" if kind == "VM" else ""))
                for client, tool in CLIENT_TOOLS.items() if client in clients for kind in types]
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
    panel = (
        f'<details id="{pid}"><summary>{e(name)}</summary><dl>{dl}</dl><h3>Launch it</h3>{use}'
        f'<table class="cards versions"><caption>Versions (newest first)</caption><thead><tr>{VERSION_HEAD}</tr>'
        f"</thead><tbody>{''.join(version_rows)}</tbody></table>{_files(entry, depth)}</details>"
    )
    return row, panel


def render_page(catalog: Mapping[str, Any], config: PageConfig, *, now: float, base_url: str = "") -> bytes:
    """index.html for `catalog`, published at `now` (epoch seconds), for the remote at `base_url`
    ('' : unknown, the page shows its own location when JS runs)."""
    depth = config.path.count("/")
    base_url = base_url.rstrip("/")
    base_html = f'<span class="base-url">{e(shlex.quote(base_url or NO_URL))}</span>'
    products = {name: entry for name, entry in catalog.get("products", {}).items()
                if entry.get("versions")}  # a product without versions lists nothing: no row
    rows, panels = [], []
    for index, name in enumerate(sorted(products)):
        row, panel = _product(index, name, products[name], now=now, stale_after=config.stale_after_days * 86400,
                              remote=config.remote, depth=depth)
        rows.append(row)
        panels.append(panel)
    published = _when(datetime.fromtimestamp(now, tz=timezone.utc))
    sorted_by = ' aria-sort="ascending"'  # the rows come sorted by product name
    heads = "".join(
        f'<th scope="col"{" data-numeric" if numeric else ""}{sorted_by if i == 0 else ""}>'
        f'<button type="button">{e(title)}</button></th>'
        for i, (title, numeric) in enumerate(COLUMNS))
    data_base = "" if base_url else f' data-base="{e("../" * depth or "./")}"'
    count = f"{len(rows)} product{'' if len(rows) == 1 else 's'}"
    remote = shlex.quote(config.remote)
    adds = "".join(_command(f"{tool} remote add {remote}", base_html, " --protocol simplestreams --public")
                   for tool in CLIENT_TOOLS.values())
    description = f'<p class="lead">{e(config.description)}</p>' if config.description else ""
    html = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{e(config.title)}: {e(count)}</title><style>{CSS}</style></head>\n"
        f"<body{data_base}><main><header><h1>{e(config.title)}</h1>{description}"
        f'<p class="meta">{e(count)}, published {e(published)}. '
        f"Ages are as of that time; a latest version older than {config.stale_after_days} days is marked stale."
        "</p></header>\n"
        '<section id="remote" aria-labelledby="remote-title"><h2 id="remote-title">Add this server as a remote</h2>'
        f"{adds}<p class=\"meta\">Then launch an image by its alias, like <code>lxc launch {e(remote)}:ALIAS</code>: "
        "each product below has its own lines.</p></section>\n"
        '<div id="controls" hidden><label for="filter">Filter </label>'
        '<input id="filter" type="search" placeholder="e.g. debian amd64" aria-controls="products"> '
        f'<span id="count" aria-live="polite">{e(count)} shown</span></div>\n'
        f'<table id="products" class="cards"><caption>Products: sort by a column header, '
        f"open a product for its versions, files and commands</caption>"
        f"<thead><tr>{heads}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n"
        '<h2 id="details">Products in detail</h2>\n' + "\n".join(panels) + "\n"
        f"</main><script>{JS}</script></body></html>\n"
    )
    return html.encode()
