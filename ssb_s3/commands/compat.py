"""compat: which client lists which image of the served tree, and why not (rules: vocabulary/clients).

Reads index.json and its catalogs as `verify` and `list` do (bounded, nothing written); a catalog
with wrong JSON types is refused field by field, as `list` refuses it. One row per product
version; per client a cell (vocabulary/clients.Cell). Output through list's renderer (table, csv,
json, yaml); json and yaml carry each cell's images, reason and notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ProblemsFound
from ..schemas import schema_problems
from ..storage.store import Store
from ..vocabulary import clients
from .listing import render_records
from .verify import read_catalog, served_entries


def served_report(store: Store, chosen: Sequence[str] = ()) -> tuple[list[clients.Row], list[str]]:
    """The report rows of every served catalog, for `chosen` clients (default all), and their names."""
    names = [name for name in clients.CLIENTS if not chosen or name in chosen]
    problems: list[str] = []
    rows: list[clients.Row] = []
    for entry in served_entries(store, problems):
        catalog = read_catalog(store, entry["path"], problems)
        if catalog is None:
            continue
        wrong = schema_problems(catalog, "products", store.describe(entry["path"]))
        if wrong:
            problems.extend(wrong)
        else:
            rows.extend(clients.report(catalog, [clients.CLIENTS[n] for n in names]))
    if problems:
        raise ProblemsFound(f"{store.url}: cannot report on the tree", problems)
    return rows, names


def render_report(rows: Sequence[clients.Row], names: Sequence[str], fmt: str) -> str:
    """table/csv: one column per client with the cell's text; json/yaml: the whole cells."""
    if fmt in ("json", "yaml"):
        records: list[dict[str, Any]] = [row.as_dict() for row in rows]
        return render_records(records, ("product", "version", "clients"), fmt)
    flat = [{"product": row.product, "version": row.version, **{n: row.cells[n].text() for n in names}}
            for row in rows]
    text = render_records(flat, ("product", "version", *names), fmt)
    if fmt == "table":
        sources = [f"{c.name}: {c.title}, rules from {c.source}"
                   + (f"; measured against {c.measured_with}" if c.measured_with else
                      "; no real client here: from the cited source only")
                   for c in (clients.CLIENTS[n] for n in names)]
        text += "\n\n" + "\n".join(sources)
    return text
