"""compat: which client lists which image of the served tree, and why not (rules: vocabulary/clients).

Reads index.json and its catalogs as `verify` and `list` do (bounded, nothing written); a catalog
with wrong JSON types is refused field by field, as `list` refuses it. One row per product
version; per client a cell (vocabulary/clients.Cell). csv, json and yaml go through list's
renderer (json and yaml carry each cell's images, reason and notes); the table shows yes/no per
client and, under each row, its details wrapped to WIDTH columns, each said once for the clients
that share it ("lxd-5.0, incus: uses delta-20260101_1000").
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from ..errors import ProblemsFound
from ..schemas import schema_problems
from ..storage.store import ReadableStore
from ..vocabulary import clients
from ..vocabulary.document import Catalog
from ..vocabulary.problems import Problem
from ..vocabulary.text import printable
from .listing import render_records
from .verify import read_catalog, served_entries


def served_report(store: ReadableStore, chosen: Sequence[str] = ()) -> tuple[list[clients.Row], list[str]]:
    """The report rows of every served catalog, for `chosen` clients (default all), and their names."""
    names = [name for name in clients.CLIENTS if not chosen or name in chosen]
    problems: list[Problem] = []
    rows: list[clients.Row] = []
    for entry in served_entries(store, problems):
        catalog = read_catalog(store, entry["path"], problems)
        if catalog is None:
            continue
        wrong = schema_problems(catalog, "products", store.describe(entry["path"]))
        if wrong:
            problems.extend(wrong)
        else:
            rows.extend(clients.report(Catalog.from_json(catalog), [clients.CLIENTS[n] for n in names]))
    if problems:
        raise ProblemsFound(f"{store.url}: cannot report on the tree", problems)
    return rows, names


def render_report(rows: Sequence[clients.Row], names: Sequence[str], fmt: str) -> str:
    """table/csv: one column per client with the cell's text; json/yaml: the whole cells."""
    if fmt in ("json", "yaml"):
        records: list[dict[str, Any]] = [row.as_dict() for row in rows]
        return render_records(records, ("product", "version", "clients"), fmt)
    if fmt == "csv":
        flat = [{"product": row.product, "version": row.version, **{n: row.cells[n].text() for n in names}}
                for row in rows]
        return render_records(flat, ("product", "version", *names), fmt)
    return _table(rows, names)


WIDTH = 100  # the table's lines, details included, fit a terminal this wide


def _details(row: clients.Row, names: Sequence[str]) -> list[str]:
    """The row's details, each once, prefixed by the clients it concerns (in column order)."""
    said: dict[str, list[str]] = {}
    for name in names:
        cell = row.cells[name]
        kinds = ", ".join(dict.fromkeys(i.kind for i in cell.images))
        found = ([f"images {kinds}"] if kinds else []) + cell.notes if cell.listed else [cell.reason]
        for text in found:
            said.setdefault(text, []).append(name)
    return [f"{', '.join(who)}: {text}" for text, who in said.items()]


def _table(rows: Sequence[clients.Row], names: Sequence[str]) -> str:
    records = [{"product": row.product, "version": row.version,
                **{n: "yes" if row.cells[n].listed else "no" for n in names}} for row in rows]
    table = render_records(records, ("product", "version", *names), "table").split("\n")
    lines = table[:1]
    for row, line in zip(rows, table[1:], strict=True):
        lines.append(line)
        for detail in _details(row, names):
            lines += textwrap.wrap(printable(detail), WIDTH, initial_indent="  ", subsequent_indent="      ",
                                   break_on_hyphens=False)
    lines.append("")
    for c in (clients.CLIENTS[n] for n in names):
        source = (f"{c.name}: {c.title}, rules from {c.source}"
                  + (f"; measured against {c.measured_with}" if c.measured_with else
                     "; no real client here: from the cited source only"))
        lines += textwrap.wrap(source, WIDTH, subsequent_indent="    ", break_on_hyphens=False)
    return "\n".join(lines)
