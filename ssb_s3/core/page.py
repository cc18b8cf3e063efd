"""The catalog web page (index.html): one self-contained HTML file, a pure function of the catalog.

What people see before they add the tree as a remote: a table with one row per product (OS,
release, arch, variant, container / VM, the clients that list it, the latest version, its age and
a stale mark, its size) and a detail panel per product (versions with short and full
fingerprints, aliases, requirements, the files with their sizes, deltas too, and copyable
`lxc` / `incus` lines for this server's URL). Which images a client lists comes from
catalog.version_images (the one table of image files), never from a second copy of that rule.

Invariants:
- pure and deterministic: the same catalog, config, time and URL give the same bytes; `now` (the
  publish time the plan was made at) is given, never read from the clock;
- every text taken from the catalog or tree.yml is HTML-escaped: the catalog is hostile input;
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
  filters, copies, opens a panel named in the URL and, when no base URL was configured, fills
  in the page's own location.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
import urllib.parse
from collections.abc import Mapping
from datetime import datetime, timezone
from html import escape
from typing import Any

from ..config import PageConfig
from ..vocabulary.imagefiles import DELTA_FTYPES
from .catalog import SHORT_FINGERPRINT, item_size, version_images
from .versions import version_time

NO_URL = "https://SERVER/PATH"  # shown without JS when no base URL is configured
CLIENT_TOOLS = {"LXD": "lxc", "Incus": "incus"}  # the CLI of each client (catalog.CLIENT_META's keys)

CSS = """
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#57606a;--line:#d0d7de;--head:#f6f8fa;--warn:#9a6700;
--accent:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;--line:#30363d;--head:#161b22;
--warn:#d29922;--accent:#4493f8}}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);margin:0;
padding:1rem 1.5rem 3rem}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin:2rem 0 .5rem}h3{font-size:1rem;margin:1rem 0 .3rem}
p.meta{color:var(--muted);margin:.2rem 0 1rem}
a{color:var(--accent)}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
table{border-collapse:collapse;width:100%}
caption{text-align:left;color:var(--muted);padding:.3rem 0}
th,td{border-bottom:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top}
thead th{background:var(--head);position:sticky;top:0}
thead button{font:inherit;font-weight:600;color:inherit;background:none;border:0;padding:0;cursor:pointer}
thead button:focus-visible,summary:focus-visible,.copy:focus-visible,input:focus-visible{
outline:2px solid var(--accent);outline-offset:2px}
th[aria-sort=ascending] button::after{content:" \\25B2"}th[aria-sort=descending] button::after{content:" \\25BC"}
td.num{text-align:right;white-space:nowrap}
.stale{color:var(--warn);font-weight:600}
#controls{margin:.5rem 0}#controls input{font:inherit;padding:.3rem .5rem;width:min(30rem,100%)}
details{border:1px solid var(--line);border-radius:6px;margin:.5rem 0;padding:.3rem .8rem}
summary{cursor:pointer;font-weight:600}
.cmd{display:flex;gap:.5rem;align-items:center;margin:.2rem 0}
.cmd pre{margin:0;padding:.3rem .5rem;background:var(--head);border-radius:4px;overflow-x:auto;flex:1}
.copy{font:inherit;font-size:.85rem}
.fp{word-break:break-all;color:var(--muted)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.5rem 0}dt{color:var(--muted)}dd{margin:0}
""".strip()

JS = """
(function () {
  "use strict";
  var table = document.getElementById("products"), body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows), heads = table.tHead.rows[0].cells;
  var filter = document.getElementById("filter"), count = document.getElementById("count");
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
      rows.sort(function (a, b) {
        var x = value(a, i), y = value(b, i);
        var c = numeric ? Number(x) - Number(y) : (x < y ? -1 : x > y ? 1 : 0);
        return c * sign || Number(a.getAttribute("data-order")) - Number(b.getAttribute("data-order"));
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  filter.addEventListener("input", function () {
    var words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    rows.forEach(function (r) {
      var text = r.textContent.toLowerCase();
      r.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
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
    if (el && el.tagName === "DETAILS") { el.open = true; }
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
}());
""".strip()


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CSP = (f"default-src 'none'; style-src {_csp_hash(CSS)}; script-src {_csp_hash(JS)}; img-src data:; "
       "base-uri 'none'; form-action 'none'")
COLUMNS = (  # header, numeric sort
    ("Product", False), ("OS", False), ("Release", False), ("Arch", False), ("Variant", False),
    ("Type", False), ("Clients", False), ("Latest version", False), ("Age", True), ("Size", True),
)
_DIGITS = re.compile(r"\d+")
_SPECIAL = re.compile("[&<>\"']")


def e(text: Any) -> str:
    """Catalog text as HTML text or attribute value (quotes escaped too, as html.escape does); most
    text has nothing to escape, which one regex search finds out fastest."""
    value = str(text)
    return escape(value, quote=True) if _SPECIAL.search(value) else value


def human_size(size: int) -> str:
    """Bytes as 512B, 1.50KiB, 2.00MiB ... (the list command and the page)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.2f}{unit}"
        value /= 1024
    return f"{size}B"  # pragma: no cover


def human_age(seconds: float) -> str:
    """An age as 'N min', 'N h' or 'N days' (negative ages, a version dated after the publish: 0 min)."""
    seconds = max(0.0, seconds)
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} days"


def _natural(text: str) -> str:
    """A sort key in which '9' comes before '10' (numbers zero-padded), compared as plain strings."""
    return _DIGITS.sub(lambda m: m.group().zfill(12), text.lower())


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


def _command(text: str, base_html: str = "") -> str:
    """One copyable line: escaped `text`, the URL (already HTML) appended when given."""
    line = e(text) + (" " + base_html if base_html else "")
    return (f'<div class="cmd"><pre><code>{line}</code></pre>'
            '<button type="button" class="copy" hidden>Copy</button></div>')


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
    return ("<table><caption>Files</caption><thead><tr><th scope=\"col\">Version</th><th scope=\"col\">File</th>"
            "<th scope=\"col\">ftype</th><th scope=\"col\">Size</th><th scope=\"col\">sha256</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _product(index: int, name: str, entry: Mapping[str, Any], *, now: float, stale_after: float, base_html: str,
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
    variant = str(entry.get("variant", ""))
    cells = [
        f'<th scope="row" data-sort="{e(_natural(name))}"><a href="#{pid}">{e(name)}</a></th>',
        *(f'<td data-sort="{e(_natural(str(entry.get(k, ""))))}">{e(entry.get(k, ""))}</td>'
          for k in ("os", "release", "arch")),
        f'<td data-sort="{e(_natural(variant))}">{e(variant)}</td>',
        f"<td>{e(', '.join(types))}</td>",
        f"<td>{e(', '.join(clients)) or 'none'}</td>",
        f'<td data-sort="{e(latest)}"><time datetime="{built.strftime("%Y-%m-%dT%H:%MZ")}">{e(latest)}</time></td>',
        f'<td class="num{" stale" if stale else ""}" data-sort="{int(age)}">{e(human_age(age))}'
        f'{" (stale)" if stale else ""}</td>',
        f'<td class="num" data-sort="{size}">{e(human_size(size))}</td>',
    ]
    row = f'<tr data-order="{index}">{"".join(cells)}</tr>'

    requirements = entry.get("requirements") or entry.get("lxd_requirements")
    requirements = requirements if isinstance(requirements, Mapping) else {}
    facts = [("Release title", entry.get("release_title", "")), ("Aliases", ", ".join(aliases) or "none"),
             ("Support ends", entry.get("support_eol", "")),
             ("Requirements", ", ".join(f"{k}={v}" for k, v in sorted(requirements.items())) or "none")]
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts if v)
    target = aliases[0] if aliases else next(iter(sorted(newest)), "")
    commands = []
    for client, tool in CLIENT_TOOLS.items():
        if client not in clients:
            continue
        commands.append(_command(f"{tool} remote add {shlex.quote(remote)}",
                                 base_html + e(" --protocol simplestreams --public")))
        for kind in types:
            commands.append(_command(f"{tool} launch {shlex.quote(f'{remote}:{target}')}"
                                     + (" --vm" if kind == "VM" else "")))
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
        f'<details id="{pid}"><summary>{e(name)}</summary><dl>{dl}</dl><h3>Use it</h3>{use}'
        "<table><caption>Versions (newest first)</caption><thead><tr><th scope=\"col\">Version</th>"
        "<th scope=\"col\">Built</th><th scope=\"col\">Type</th><th scope=\"col\">Clients</th>"
        "<th scope=\"col\">Size</th><th scope=\"col\">Fingerprint</th></tr></thead>"
        f"<tbody>{''.join(version_rows)}</tbody></table>{_files(entry, depth)}</details>"
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
                              base_html=base_html, remote=config.remote, depth=depth)
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
    html = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>Images: {e(count)}</title><style>{CSS}</style></head>\n"
        f"<body{data_base}><main><h1>Images</h1>"
        f'<p class="meta">{e(count)}, published {e(published)}. '
        f"Ages are as of that time; a latest version older than {config.stale_after_days} days is marked stale. "
        f"Add this server as a remote: <code>lxc remote add {e(shlex.quote(config.remote))} {base_html} "
        "--protocol simplestreams --public</code></p>"
        '<div id="controls" hidden><label for="filter">Filter </label>'
        '<input id="filter" type="search" placeholder="e.g. debian amd64" aria-controls="products"> '
        f'<span id="count" aria-live="polite">{e(count)} shown</span></div>\n'
        f'<table id="products"><caption>Products: sort by a column header, '
        f"open a product for its versions, files and commands</caption>"
        f"<thead><tr>{heads}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n"
        '<h2 id="details">Products in detail</h2>\n' + "\n".join(panels) + "\n"
        f"</main><script>{JS}</script></body></html>\n"
    )
    return html.encode()
