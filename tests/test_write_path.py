"""One write path (issue 21): only the store and its backends turn a write into conditional headers.

Everything else writes through `Store.put_new` / `replace` / `put` (ssb_s3.storage.store), which the
store turns into If-None-Match / If-Match in the form its backend honours, or into none at all with
storage.conditional_writes: false. The check reads the package's source with `ast`, as
tests/test_layout.py does, and refuses, outside the write path, every `if_match` / `if_none_match` /
`IfMatch` / `IfNoneMatch` keyword argument or parameter, those names as strings (a dict of extra
arguments), and a string that is an If-Match / If-None-Match header (`"If-Match"`, `"If-None-Match: *"`).
Docstrings and comments are prose and are free, and so is a message that mentions a header in a sentence.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ssb_s3.config import StorageConfig
from ssb_s3.errors import PreconditionFailed
from ssb_s3.storage.backends import open_store

PACKAGE = Path(__file__).resolve().parents[1] / "ssb_s3"
# The write path: the store's interface and the backends, and the probe that says which header form a store takes.
WRITE_PATH = (PACKAGE / "storage" / "store.py", PACKAGE / "storage" / "probe.py", PACKAGE / "storage" / "backends")
NAMES = frozenset({"if_match", "if_none_match", "IfMatch", "IfNoneMatch"})
HEADER = re.compile(r"\s*(if-(none-)?match|ifmatch|ifnonematch)(\s*:.*)?", re.IGNORECASE | re.DOTALL)


def _docstrings(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def conditional_spelled(paths: list[Path]) -> list[tuple[str, int, str]]:
    """(file, line, what) for every conditional keyword, parameter or header string in `paths`."""
    found = []
    for path in paths:
        tree = ast.parse(path.read_text())
        prose = _docstrings(tree)
        for node in ast.walk(tree):
            what = ""
            if isinstance(node, ast.keyword) and node.arg in NAMES:
                what = f"keyword {node.arg}="
            elif isinstance(node, ast.arg) and node.arg in NAMES:
                what = f"parameter {node.arg}"
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose \
                    and (node.value in NAMES or HEADER.fullmatch(node.value)):
                what = f"string {node.value!r}"
            if what:
                where = path.relative_to(PACKAGE.parent) if PACKAGE.parent in path.parents else path
                found.append((str(where), getattr(node, "lineno", 0), what))
    return found


def outside_write_path() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py"))
            if not any(path == place or place in path.parents for place in WRITE_PATH)]


def test_no_conditional_header_is_spelled_outside_the_write_path() -> None:
    assert conditional_spelled(outside_write_path()) == []


def test_the_check_sees_a_planted_conditional_write(tmp_path: Path) -> None:
    """A module that writes If-Match by hand, in each spelling the check knows, is refused."""
    planted = tmp_path / "planted.py"
    planted.write_text('"""If-Match in a docstring is prose."""\n\n'
                       "def flip(store, etag, if_none_match=False):\n"
                       "    store.client.put_object(Key='x', IfMatch=etag)\n"
                       "    extra = {'IfNoneMatch': '*', 'if_match': etag}\n"
                       "    store.write('x', b'', if_match=etag)\n"
                       "    return {'If-None-Match': '*', 'note': 'sent If-Match with the ETag it returned'}\n")
    found = sorted(what for _, _, what in conditional_spelled([planted]))
    assert found == sorted(["parameter if_none_match", "keyword IfMatch=", "string 'IfNoneMatch'", "string 'if_match'",
                            "keyword if_match=", "string 'If-None-Match'"])
    assert outside_write_path() and PACKAGE / "storage" / "backends" / "s3.py" not in outside_write_path()


def test_with_conditional_writes_off_put_new_still_refuses_an_existing_key(tmp_path: Path) -> None:
    """The write path's own promise without headers: create-only is a HEAD just before the write."""
    store = open_store(str(tmp_path), StorageConfig(conditional_writes=False))
    assert not store.conditional_writes
    etag = store.put_new("a.json", b"1")
    with pytest.raises(PreconditionFailed, match="already exists"):
        store.put_new("a.json", b"2")
    assert store.replace("a.json", b"3", "stale-etag-ignored") != etag  # no condition without conditional writes
    assert store.read("a.json") == b"3"
