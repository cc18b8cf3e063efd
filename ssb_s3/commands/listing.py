"""list: one row per image a client lists, read from the served tree as `verify` reads it.

An image is what `lxc image list REMOTE:` / `incus image list REMOTE:` shows: per version, per
metadata + root pair (or unified tarball) that carries a fingerprint, for LXD or Incus
(catalog.version_images, over the one table of image files). Rows follow the clients:

- a product whose arch the clients do not know, or a version whose name does not start with a
  YYYYMMDD date, is not listed (both clients drop it silently);
- `arch` is the client's canonical name (amd64 is shown as x86_64), `type` is virtual-machine
  for a disk-kvm.img root, else container; `size` is meta + root bytes (the unified file alone);
- `date` is the version name's date: the clients set created_at and uploaded_at to it;
- `aliases` are the product's aliases (without the ALIAS/<arch> forms the clients add), on the
  image the clients give them to: per alias, arch and type, the first image in the clients' order
  (os, release, newest date, highest version name, then squashfs before tar.xz); older versions
  show none. (Go's sort is only stable up to 12 images: a client may break other ties its own way.)

Output is `incus image list`'s (Incus 6.0.4, measured in tests/test_list.py): `-c` picks columns by
its letters (COLUMNS: l L f F p d a s u t, plus N product, v version, o os, r release), default
`lfpdatsu`; `-f table|compact|csv|json|yaml`, with `,noheader` / `,header`; rows sorted naturally
(digit runs as numbers) column by column, empty cells last; the ALIAS column is the shortest alias
and "(N more)", over the aliases the clients make: ALIAS on a host of the image's arch (this host's,
as the clients decide) and ALIAS/<arch> always; sizes "%.2fMiB" of meta + root; dates
"2006/01/02 15:04 UTC"; DESCRIPTION "os release_title arch (label) (version)". json and yaml keep
this tool's record per image (FIELDS, sizes in bytes), whatever `-c` says.

Filters (ssb_s3/filters, the syntax `mirror` uses too) apply to a row's fields (FIELDS), all ANDed;
`aliases=X` matches a row having alias X. A bad filter or key is a FilterError (one line).
Nothing here writes; the index and the catalogs are read bounded (verify, httpread), and each
catalog that passes the products schema check is parsed once (vocabulary/document.Catalog). A tree's
text is shown, never obeyed: render escapes what vocabulary/text refuses (terminal escapes, bidi
overrides, line breaks), as the CLI's printer does for every line.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from ..config import CANONICAL_ARCH
from ..core.catalog import SHORT_FINGERPRINT, version_images
from ..errors import ProblemsFound
from ..filters import Filter
from ..schemas import schema_problems
from ..storage.store import ReadableStore
from ..vocabulary.clients import version_date
from ..vocabulary.document import Catalog, Item, Product, Version, walk_versions
from ..vocabulary.imagefiles import ALIAS_PREFERENCE
from ..vocabulary.problems import Problem
from ..vocabulary.text import UNSAFE, printable
from .verify import read_catalog, served_entries

FIELDS = ("product", "version", "type", "fingerprint", "aliases", "size", "date", "arch", "os", "release",
          "description")
FORMATS = ("table", "compact", "csv", "json", "yaml")
DEFAULT_COLUMNS = "lfpdatsu"  # incus image list's default


@dataclass
class ImageRow:
    """One image as the clients list it."""

    product: str
    version: str
    type: str
    fingerprint: str
    size: int
    date: str
    arch: str
    os: str
    release: str
    description: str = ""
    product_arch: str = ""  # the product's arch as written (amd64): the clients' ALIAS/<arch> uses it
    aliases: list[str] = field(default_factory=list)  # the product's aliases this image has (short forms)
    client_aliases: list[str] = field(default_factory=list)  # as the clients list them here (with ALIAS/<arch>)

    def value(self, key: str) -> str:
        """A field as text, for filters and text output."""
        found = getattr(self, key)
        return ",".join(found) if isinstance(found, list) else str(found)


def _version_images(items: Mapping[str, Item]) -> dict[str, tuple[str, int, int]]:
    """fingerprint -> (type, size, alias rank) of every image a client lists in one version's items."""
    return {fingerprint: (image.type, image.size, ALIAS_PREFERENCE.index(image.root)
                          if image.root in ALIAS_PREFERENCE else len(ALIAS_PREFERENCE))
            for fingerprint, image in version_images(items).items()}


def catalog_rows(catalog: Catalog) -> list[ImageRow]:
    """Every image the clients list from one catalog, aliases assigned as they assign them."""
    rows: list[tuple[ImageRow, list[str], int]] = []  # each image, its product's aliases, its alias rank
    for pname, product, vname, version in walk_versions(catalog, ordered=True):
        arch = CANONICAL_ARCH.get(product.arch)
        date = version_date(vname)
        if arch is None or date is None:
            continue
        aliases = [a for a in product.aliases.split(",") if a]
        description = _description(product, version, vname)
        for fingerprint, (kind, size, rank) in sorted(_version_images(version.items).items()):
            rows.append((ImageRow(pname, vname, kind, fingerprint, size, date, arch, product.os,
                                  product.release, description, product.arch), aliases, rank))
    _assign_aliases(rows)
    return [row for row, _, _ in rows]


def _description(product: Product, version: Version, name: str) -> str:
    """The clients' description: "os release_title arch", then " (label)" if any, then " (version)"."""
    text = f"{product.os} {product.release_title} {product.arch}"
    label = version.label
    return f"{text}{f' ({label})' if label else ''} ({name})"


def _client_order(entry: tuple[ImageRow, list[str], int]) -> tuple[Any, ...]:
    """The order in which the clients hand out aliases: os, release, newest date, highest version
    name, then the root the clients prefer (imagefiles.ALIAS_PREFERENCE: squashfs before tar.xz)."""
    row, _, rank = entry
    return row.os, row.release, _desc(row.date), _desc(row.version), rank


def _assign_aliases(rows: list[tuple[ImageRow, list[str], int]], host_arch: str | None = None) -> None:
    """Per alias, arch and type, the first image in the clients' order gets it (newest first);
    the clients show the alias itself only on a host of the image's arch, and ALIAS/<arch> (the
    product's arch as written) on every host, each name to one image per type."""
    host = host_arch if host_arch is not None else CANONICAL_ARCH.get(platform.machine(), platform.machine())
    taken: set[tuple[str, str, str]] = set()
    shown: set[tuple[str, str]] = set()
    for row, aliases, _ in sorted(rows, key=_client_order):
        for alias in aliases:
            if (alias, row.arch, row.type) not in taken:
                taken.add((alias, row.arch, row.type))
                row.aliases.append(alias)
            forms = ([alias] if row.arch == host else []) + [f"{alias}/{row.product_arch}"]
            for name in forms:
                if (name, row.type) not in shown:
                    shown.add((name, row.type))
                    row.client_aliases.append(name)


def _desc(text: str) -> tuple[int, ...]:
    """Sort key putting `text` in descending order."""
    return (*(-ord(c) for c in text), 1)


def served_rows(store: ReadableStore) -> list[ImageRow]:
    """Rows of every catalog the served index.json names; a tree clients cannot read is an error."""
    problems: list[Problem] = []
    rows: list[ImageRow] = []
    for entry in served_entries(store, problems):
        catalog = read_catalog(store, entry["path"], problems)
        if catalog is None:
            continue
        wrong = schema_problems(catalog, "products", store.describe(entry["path"]))  # what verify checks too
        if wrong:
            problems.extend(wrong)  # a type error breaks the whole remote for the clients as well
        else:
            rows.extend(catalog_rows(Catalog.from_json(catalog)))
    if problems:
        raise ProblemsFound(f"{store.url}: cannot list the tree", problems)
    return sorted(rows, key=lambda r: (r.product, r.version, r.type, r.fingerprint))


def parse_filter(text: str) -> Filter:
    """One filter of `list` (ssb_s3/filters), over the row fields (FIELDS); `product_name` (the
    name `mirror`'s filters use) is `product`."""
    return Filter.parse(text, FIELDS, {"product_name": "product"})


def _passes(row: ImageRow, f: Filter) -> bool:
    return f.matches_text(row.value(f.key), members=row.aliases if f.key == "aliases" else ())


def select(rows: Iterable[ImageRow], filters: Sequence[Filter]) -> list[ImageRow]:
    return [row for row in rows if all(_passes(row, f) for f in filters)]


# --- incus image list's columns and formats ---------------------------------------------------

COLUMNS: dict[str, tuple[str, Callable[[ImageRow], str]]] = {
    "l": ("ALIAS", lambda r: _shortest(r.client_aliases)),
    "L": ("ALIASES", lambda r: "\n".join(sorted(r.client_aliases))),
    "f": ("FINGERPRINT", lambda r: r.fingerprint[:SHORT_FINGERPRINT]),
    "F": ("FINGERPRINT", lambda r: r.fingerprint),
    "p": ("PUBLIC", lambda r: "yes"),  # a simplestreams remote serves public images only
    "d": ("DESCRIPTION", lambda r: r.description),
    "a": ("ARCHITECTURE", lambda r: r.arch),
    "s": ("SIZE", lambda r: f"{r.size / 1024 / 1024:.2f}MiB"),
    "u": ("UPLOAD DATE", lambda r: r.date.replace("-", "/") + " 00:00 UTC"),
    "t": ("TYPE", lambda r: r.type.upper()),
    # not incus's: this tree's names for the image
    "N": ("PRODUCT", lambda r: r.product),
    "v": ("VERSION", lambda r: r.version),
    "o": ("OS", lambda r: r.os),
    "r": ("RELEASE", lambda r: r.release),
}


def _shortest(aliases: Sequence[str]) -> str:
    """The clients' ALIAS cell: the first shortest alias, and how many more there are."""
    if not aliases:
        return ""
    shortest = min(aliases, key=len)  # min keeps the first of equal lengths, as the clients do
    return f"{shortest} ({len(aliases) - 1} more)" if len(aliases) > 1 else shortest


def parse_columns(text: str, full_fingerprint: bool = False) -> list[str]:
    """`-c` letters (commas allowed, as incus allows them) → column letters; a ValueError names a
    letter that is not one."""
    letters = [c for c in text if c != ","]
    unknown = [c for c in letters if c not in COLUMNS]
    if unknown or not letters:
        raise ValueError(f"columns '{text}': {'unknown column ' + repr(unknown[0]) if unknown else 'none given'} "
                         f"(letters: {''.join(COLUMNS)})")
    return ["F" if c == "f" and full_fingerprint else c for c in letters]


def parse_format(text: str) -> tuple[str, bool | None]:
    """`-f FORMAT[,header|,noheader]` → (format, header wanted: None for the format's default)."""
    name, _, option = text.partition(",")
    if name not in FORMATS or option not in ("", "header", "noheader"):
        raise ValueError(f"format '{text}': expected one of {', '.join(FORMATS)}, optionally with ,header or "
                         ",noheader")
    return name, None if not option else option == "header"


def _natural_key(text: str) -> tuple[tuple[int, int, str, int], ...]:
    """Sort key of a natural order: runs of digits compare as numbers (fewer leading zeros first
    on a tie) and sort before other characters, which compare by their UTF-8 bytes."""
    key = []
    for run in re.finditer(r"[0-9]+|[^0-9]", text):
        part = run.group()
        if part.isdigit():
            digits = part.lstrip("0")
            key.append((0, len(digits), digits, len(part) - len(digits)))
        else:
            key.append((1, 0, part.encode().decode("latin-1"), 0))
    return tuple(key)


def _row_key(cells: Sequence[str]) -> tuple[tuple[int, Any], ...]:
    """Rows compare cell by cell, left to right; an empty cell sorts after any other."""
    return tuple((1, ()) if not cell else (0, _natural_key(cell)) for cell in cells)


def render_columns(rows: Sequence[ImageRow], columns: Sequence[str], fmt: str, header: bool | None = None) -> str:
    """The rows as `incus image list -c COLUMNS -f FMT` prints them (table, compact or csv)."""
    heads = [COLUMNS[c][0] for c in columns]
    # each line of a cell escaped on its own: ALIASES is one alias a line
    cells = sorted(([_cell(row, c) for c in columns] for row in rows), key=_row_key)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if header:  # incus's csv has no header unless asked
            writer.writerow(heads)
        writer.writerows(cells)
        return out.getvalue().rstrip("\n")
    show_header = header is not False
    widths = [max([len(h) if show_header else 0, *(len(line) for row in cells for line in row[i].split("\n"))])
              for i, h in enumerate(heads)]

    def lines(row: Sequence[str], centred: bool = False) -> list[list[str]]:
        parts = [cell.split("\n") for cell in row]
        height = max(len(p) for p in parts)
        return [[(_centre(p[n], w) if centred else p[n].ljust(w)) if n < len(p) else " " * w
                 for p, w in zip(parts, widths, strict=True)] for n in range(height)]

    if fmt == "compact":
        body = ([lines(heads, centred=True)] if show_header else []) + [lines(row) for row in cells]
        return "\n".join("  " + "  ".join(line) + "  " for block in body for line in block)
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out_lines = [border]
    if show_header:
        out_lines += ["| " + " | ".join(line) + " |" for line in lines(heads, centred=True)] + [border]
    for row in cells:
        out_lines += ["| " + " | ".join(line) + " |" for line in lines(row)] + [border]
    return "\n".join(out_lines)


def _cell(row: ImageRow, column: str) -> str:
    value = COLUMNS[column][1](row)
    return "\n".join(printable(line) for line in (sorted(row.client_aliases) if column == "L" else [value]))


def _centre(text: str, width: int) -> str:
    """A header centred as the clients' tables centre it (the odd space on the right)."""
    left = (width - len(text)) // 2
    return " " * left + text + " " * (width - len(text) - left)


def _record(row: ImageRow, full: bool) -> dict[str, Any]:
    data = {k: v for k, v in asdict(row).items() if k in FIELDS}
    data["fingerprint"] = row.fingerprint if full else row.fingerprint[:SHORT_FINGERPRINT]
    return {k: data[k] for k in FIELDS}


def render(rows: Sequence[ImageRow], fmt: str, *, full_fingerprint: bool = False) -> str:
    """The rows as json or yaml records: every field (FIELDS), sizes in bytes."""
    return render_records([_record(row, full_fingerprint) for row in rows], FIELDS, fmt)


class _Dumper(yaml.SafeDumper):
    """YAML output whose strings holding a character vocabulary/text refuses are double-quoted: YAML
    escapes most of them there, and what it leaves (bidi overrides) the CLI's printer escapes as
    \\uXXXX, which is a YAML escape of the same character in a double-quoted string."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if UNSAFE.search(value) else None)


_Dumper.add_representer(str, _represent_str)


def render_records(records: Sequence[Mapping[str, Any]], fields: Sequence[str], fmt: str, *,
                   table_records: Sequence[Mapping[str, Any]] | None = None) -> str:
    """Records as `--format` table|csv|json|yaml (shared by list and compat): json and yaml as they
    are; csv (a header, lists comma-joined) and table (upper-case header, aligned columns) show
    `fields`, the table from `table_records` when given (e.g. human-readable sizes). Values may be
    a foreign tree's text: csv and table cells are escaped (vocabulary/text.printable), one row a line;
    json and yaml keep the text, escaped as their syntax allows (the CLI's printer does the rest)."""
    if fmt == "json":
        return json.dumps(list(records), indent=2, ensure_ascii=False)
    if fmt == "yaml":
        return yaml.dump(list(records), Dumper=_Dumper, sort_keys=False,
                         allow_unicode=True).rstrip("\n") if records else "[]"

    def texts(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
        return [[printable(",".join(v) if isinstance(v, list) else str(v)) for v in (r[f] for f in fields)]
                for r in rows]

    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(fields)
        writer.writerows(texts(records))
        return out.getvalue().rstrip("\n")
    table = [[f.upper() for f in fields], *texts(records if table_records is None else table_records)]
    widths = [max(len(line[i]) for line in table) for i in range(len(fields))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in table)


@dataclass(frozen=True)
class ListRequest:
    """`list`'s options, parsed before anything is read (list_request)."""

    filters: tuple[str, ...]  # as typed, for the "no image matches" line
    parsed: tuple[Filter, ...]
    columns: tuple[str, ...]  # the column letters
    fmt: str
    header: bool | None
    full_fingerprint: bool


def list_request(filters: Sequence[str], columns: str, fmt: str, full_fingerprint: bool) -> ListRequest:
    """`list`'s FILTERs, -c and -f checked; ValueError (a FilterError among them) names the bad one."""
    parsed = tuple(parse_filter(text) for text in filters)
    chosen, header = parse_format(fmt)
    return ListRequest(tuple(filters), parsed, tuple(parse_columns(columns, full_fingerprint)), chosen, header,
                       full_fingerprint)


def list_images(store: ReadableStore, request: ListRequest) -> str:
    """The images of the tree served by `store` that pass the request's filters, rendered as asked."""
    rows = select(served_rows(store), request.parsed)
    if not rows and request.filters and request.fmt in ("table", "compact"):
        return f"no image matches {' '.join(request.filters)}"
    if request.fmt in ("json", "yaml"):
        return render(rows, request.fmt, full_fingerprint=request.full_fingerprint)
    return render_columns(rows, request.columns, request.fmt, request.header)
