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

Filters (ssb_s3/filters, the syntax `mirror` uses too) apply to a row's fields (FIELDS), all ANDed;
`aliases=X` matches a row having alias X. A bad filter or key is a FilterError (one line).
Nothing here writes; the index and the catalogs are read bounded (verify, httpread). A tree's
text is shown, never obeyed: render escapes what vocabulary/text refuses (terminal escapes, bidi
overrides, line breaks), as the CLI's printer does for every line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from ..config import CANONICAL_ARCH
from ..core.catalog import SHORT_FINGERPRINT, version_images
from ..core.page import human_size
from ..errors import ProblemsFound
from ..filters import Filter
from ..schemas import schema_problems
from ..storage.store import Store
from ..vocabulary.clients import version_date
from ..vocabulary.imagefiles import IMAGE_FILES
from ..vocabulary.text import UNSAFE, printable
from .verify import read_catalog, served_entries

# Within one version, the clients give an alias to the squashfs image before the tar.xz one
# (measured with LXD 5.0.2 and Incus 6.0.4: tests/test_list.py); anything else comes after.
ALIAS_PREFERENCE = (IMAGE_FILES["rootfs.squashfs"].ftype, IMAGE_FILES["rootfs.tar.xz"].ftype)
FIELDS = ("product", "version", "type", "fingerprint", "aliases", "size", "date", "arch", "os", "release")
FORMATS = ("table", "csv", "json", "yaml")


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
    aliases: list[str] = field(default_factory=list)

    def value(self, key: str) -> str:
        """A field as text, for filters and text output."""
        found = getattr(self, key)
        return ",".join(found) if isinstance(found, list) else str(found)


def _version_images(items: Mapping[str, Any]) -> dict[str, tuple[str, int, int]]:
    """fingerprint -> (type, size, alias rank) of every image a client lists in one version's items."""
    return {fingerprint: (image.type, image.size, ALIAS_PREFERENCE.index(image.root)
                          if image.root in ALIAS_PREFERENCE else len(ALIAS_PREFERENCE))
            for fingerprint, image in version_images(items).items()}


def catalog_rows(catalog: Mapping[str, Any]) -> list[ImageRow]:
    """Every image the clients list from one catalog, aliases assigned as they assign them."""
    rows: list[tuple[ImageRow, list[str], int]] = []  # each image, its product's aliases, its alias rank
    for pname, product in sorted(catalog.get("products", {}).items()):
        arch = CANONICAL_ARCH.get(str(product.get("arch", "")))
        if arch is None:
            continue
        aliases = [a for a in str(product.get("aliases") or "").split(",") if a]
        for vname, version in sorted(product.get("versions", {}).items()):
            date = version_date(vname)
            if date is None:
                continue
            for fingerprint, (kind, size, rank) in sorted(_version_images(version.get("items", {})).items()):
                rows.append((ImageRow(pname, vname, kind, fingerprint, size, date, arch,
                                      str(product.get("os", "")), str(product.get("release", ""))), aliases, rank))
    _assign_aliases(rows)
    return [row for row, _, _ in rows]


def _client_order(entry: tuple[ImageRow, list[str], int]) -> tuple[Any, ...]:
    """The order in which the clients hand out aliases: os, release, newest date, highest version
    name, then squashfs before tar.xz (ALIAS_PREFERENCE)."""
    row, _, rank = entry
    return row.os, row.release, _desc(row.date), _desc(row.version), rank


def _assign_aliases(rows: list[tuple[ImageRow, list[str], int]]) -> None:
    """Per alias, arch and type, the first image in the clients' order gets it (newest first)."""
    taken: set[tuple[str, str, str]] = set()
    for row, aliases, _ in sorted(rows, key=_client_order):
        for alias in aliases:
            if (alias, row.arch, row.type) not in taken:
                taken.add((alias, row.arch, row.type))
                row.aliases.append(alias)


def _desc(text: str) -> tuple[int, ...]:
    """Sort key putting `text` in descending order."""
    return (*(-ord(c) for c in text), 1)


def served_rows(store: Store) -> list[ImageRow]:
    """Rows of every catalog the served index.json names; a tree clients cannot read is an error."""
    problems: list[str] = []
    rows: list[ImageRow] = []
    for entry in served_entries(store, problems):
        catalog = read_catalog(store, entry["path"], problems)
        if catalog is None:
            continue
        wrong = schema_problems(catalog, "products", store.describe(entry["path"]))  # what verify checks too
        if wrong:
            problems.extend(wrong)  # a type error breaks the whole remote for the clients as well
        else:
            rows.extend(catalog_rows(catalog))
    if problems:
        raise ProblemsFound(f"{store.url}: cannot list the tree", problems)
    return sorted(rows, key=lambda r: (r.product, r.version, r.type, r.fingerprint))


def parse_filter(text: str) -> Filter:
    """One filter of `list` (ssb_s3/filters), over the row fields (FIELDS)."""
    return Filter.parse(text, FIELDS)


def _passes(row: ImageRow, f: Filter) -> bool:
    return f.matches_text(row.value(f.key), members=row.aliases if f.key == "aliases" else ())


def select(rows: Iterable[ImageRow], filters: Sequence[Filter]) -> list[ImageRow]:
    return [row for row in rows if all(_passes(row, f) for f in filters)]


def _record(row: ImageRow, full: bool) -> dict[str, Any]:
    data = {k: v for k, v in asdict(row).items() if k in FIELDS}
    data["fingerprint"] = row.fingerprint if full else row.fingerprint[:SHORT_FINGERPRINT]
    return {k: data[k] for k in FIELDS}


def render(rows: Sequence[ImageRow], fmt: str, *, full_fingerprint: bool = False) -> str:
    """The rows as table (sizes human-readable), csv (with a header), json or yaml (sizes in bytes)."""
    records = [_record(row, full_fingerprint) for row in rows]
    shown = [{**record, "size": human_size(row.size)} for record, row in zip(records, rows, strict=True)]
    return render_records(records, FIELDS, fmt, table_records=shown)


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
