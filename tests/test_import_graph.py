"""The package's floors: a module imports only from its own floor or the floors below it, and
imports at the top of the file.

Floors, lowest first (a newcomer reads them bottom-up):
0. vocabulary: image files, clients, text, problems; imports nothing of ssb_s3 outside itself
   (the package's own __init__, which holds only __version__, is on this floor too);
1. errors, schemas, filters, progress: typed errors and the shipped schemas;
2. config: the frozen config built from tree.yml; inside it, rooms of their own (SUBFLOORS): model
   and coerce import nothing of config, load and show build on them, and only the package's
   __init__ gathers them (no room imports `ssb_s3.config` itself, so none depends on the order
   the __init__ imports them in);
3. core: the pure plan and its views (no store, no I/O);
4. storage, gpg: stores, the tree's reads and writes, signing;
5. ingest: building and uploading versions;
6. commands: one module per command's work;
7. hooks: bucket-event entry points;
8. cli, __main__: options in, one call per command.

A late import (inside a function) is allowed only for a module outside ssb_s3 that is costly
and optional (boto3 for CloudFront, for instance); there is no cycle left to excuse one.
The graph is read with `ast` from the source, so the test sees what Python would import.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ssb_s3"
FLOORS: dict[str, int] = {
    "vocabulary": 0,
    "errors": 1, "schemas": 1, "filters": 1, "progress": 1,
    "config": 2,
    "core": 3,
    "storage": 4, "gpg": 4,
    "ingest": 5,
    "commands": 6,
    "hooks": 7,
    "cli": 8, "__main__": 8,
}
ROOT_FLOOR = 0  # ssb_s3/__init__.py holds only __version__
# Floors inside a package split into rooms: package -> {module: floor}; the package's __init__ is above them all.
SUBFLOORS: dict[str, dict[str, int]] = {
    "config": {"model": 0, "coerce": 0, "load": 1, "show": 1},
}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported ssb_s3 module, line, at the top of the file) for every import of ssb_s3 in `path`."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base]
            names += [f"{base}.{alias.name}" for alias in node.names if (PACKAGE.parent / f"{base}.{alias.name}"
                      .replace(".", "/")).with_suffix(".py").exists()]
        found += [(name, node.lineno, id(node) in top) for name in names if name.split(".")[0] == "ssb_s3"]
    return found


def _floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS[parts[1]] if len(parts) > 1 else ROOT_FLOOR


def _graph() -> list[tuple[str, str, int, bool]]:
    return [(_module(path), imported, line, top)
            for path in sorted(PACKAGE.rglob("*.py")) for imported, line, top in _imports(path)]


def test_every_module_has_a_floor() -> None:
    assert [m for m in {_module(p) for p in PACKAGE.rglob("*.py")} if len(m.split(".")) > 1
            and m.split(".")[1] not in FLOORS] == []


def test_no_module_imports_from_a_floor_above_its_own() -> None:
    upward = [f"{module} (floor {_floor(module)}) imports {imported} (floor {_floor(imported)}), line {line}"
              for module, imported, line, _ in _graph() if _floor(imported) > _floor(module)]
    assert upward == []


def test_the_floors_the_issue_names_hold() -> None:
    """config, errors and schemas never import core; storage never imports ingest; the vocabulary
    imports nothing of ssb_s3 outside itself; core imports no store."""
    edges = {(m.split(".")[1] if "." in m else m, i.split(".")[1] if "." in i else i) for m, i, _, _ in _graph()}
    for low, high in [("config", "core"), ("errors", "core"), ("schemas", "core"), ("storage", "ingest"),
                      ("core", "storage"), ("core", "commands")]:
        assert (low, high) not in edges, (low, high)
    assert {i for m, i in edges if m == "vocabulary"} <= {"vocabulary"}


def test_no_import_of_ssb_s3_inside_a_function() -> None:
    late = [f"{module}:{line} imports {imported}" for module, imported, line, top in _graph() if not top]
    assert late == []


def _subfloor(module: str) -> tuple[str, int] | None:
    """(package, floor) of a room of a SUBFLOORS package; its __init__ is one floor above every room."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in SUBFLOORS:
        return None
    rooms = SUBFLOORS[parts[1]]
    return parts[1], rooms[parts[2]] if len(parts) > 2 else max(rooms.values()) + 1


def test_every_room_has_a_floor() -> None:
    for package, rooms in SUBFLOORS.items():
        found = {p.stem for p in (PACKAGE / package).glob("*.py") if p.stem != "__init__"}
        assert found == set(rooms), package


def _room_violations(graph: list[tuple[str, str, int, bool]]) -> list[str]:
    """Edges from a room to a room of the same package on its own floor or above (the package's
    __init__ counts as above every room)."""
    found = []
    for module, imported, line, _ in graph:
        low, high = _subfloor(module), _subfloor(imported)
        if (low and high and low[0] == high[0] and len(module.split(".")) > 2 and module != imported
                and high[1] >= low[1]):
            found.append(f"{module} imports {imported}, line {line}")
    return found


def test_no_room_imports_a_room_on_its_floor_or_above() -> None:
    """Inside config: model and coerce import no other room, load and show only those below, and no
    room imports the package's __init__ (which imports them all)."""
    assert _room_violations(_graph()) == []


def test_the_test_sees_a_room_importing_upward() -> None:
    edges = [("ssb_s3.config.model", "ssb_s3.config.load", 1, True), ("ssb_s3.config.load", "ssb_s3.config", 2, True),
             ("ssb_s3.config.coerce", "ssb_s3.config.model", 3, True), ("ssb_s3.config", "ssb_s3.config.load", 4, True),
             ("ssb_s3.config.load", "ssb_s3.config.model", 5, True)]
    assert [v.rsplit(" ", 1)[1] for v in _room_violations(edges)] == ["1", "2", "3"]


def test_the_test_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a core module importing storage, or importing inside a function, is seen."""
    probe = PACKAGE / "core" / "_probe_upward.py"
    probe.write_text("from ..storage.store import Store\n\ndef f() -> None:\n    from ..errors import SSBError\n")
    try:
        graph = [(m, i, top) for m, i, _, top in _graph() if m == "ssb_s3.core._probe_upward"]
    finally:
        probe.unlink()
    assert ("ssb_s3.core._probe_upward", "ssb_s3.storage.store", True) in graph
    assert ("ssb_s3.core._probe_upward", "ssb_s3.errors", False) in graph
