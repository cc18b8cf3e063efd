"""Text from outside: one rule for what is refused where it enters, one escape for what is printed.

Outside text is every string an upstream catalog, a product's ssb.json (ours, a `source:` one, a
`prefix_path` URL's), tree.yml, a served tree or an error message quoting them brings in. The
characters refused in it (UNSAFE) are those that make text act or read other than it is:

- C0 and C1 control characters, U+0000-U+001F and U+007F-U+009F: ESC and U+009B (a one-byte
  CSI) start terminal escape sequences (ESC ] 52 writes the clipboard in many terminals), NUL
  ends a C string, a newline or U+0085 starts a new line;
- the bidirectional embeddings, overrides and isolates, U+202A-U+202E and U+2066-U+2069: text
  that displays in another order than it reads;
- the line and paragraph separators U+2028 and U+2029.

Every UNSAFE character is one str.isprintable refuses (categories Cc, Cf, Zl, Zp; a test checks
each): text that is printable has none, which the checks answer first (a C loop, several times
faster than the pattern's search).

Invariants: `text_problem` / `document_problem` are the one check (schemas.schema_problems runs it
on every ssb.json and tree.yml it validates; mirror selection on every upstream string it copies;
the LXC index on every field of a line); `printable` is the one escape, applied by every printer
of the command line (cli.py's output and log lines), so that whatever got past the check, or is
shown from a tree this tool did not write (`list --base-url`), reaches the terminal as text:
each refused character as `\\uXXXX` (JSON's own escape, so that JSON output stays the same JSON).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMES = {"\x00": "NUL", "\t": "tab", "\n": "line break LF", "\r": "line break CR", "\x1b": "ESC",
          "\x85": "line break NEL", "\u2028": "line separator", "\u2029": "paragraph separator"}
EXPECTED = "expected one line of printable text (no control, bidirectional-override or line-separator characters)"


def describe_char(ch: str) -> str:
    """A refused character, readable: 'U+001B (ESC)', 'U+202E (bidirectional override)'."""
    code = ord(ch)
    name = _NAMES.get(ch) or ("control character" if code < 0xA0 else "bidirectional override")
    return f"U+{code:04X} ({name})"


def text_problem(text: str) -> str | None:
    """Why `text` is refused as outside text (None: it is not): the first UNSAFE character, named."""
    if text.isprintable():  # the common case, at once: no UNSAFE character is printable (module docstring)
        return None
    found = UNSAFE.search(text)
    if found is None:
        return None
    return f"contains {describe_char(found.group())}, {EXPECTED}"


def _field(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def document_problem(value: Any, path: str = "") -> tuple[str, str] | None:
    """(field, why) of the first refused string of a parsed document (JSON or YAML: every key and
    every string value, depth first in document order), None when there is none. The field is
    named as schemas.field_path names it (`versions.20260101_1200.label`); a refused key is named
    by its parent and printed escaped. Every string is gathered and searched at once first (a
    20,000-version ssb.json in 0.25 s); only a document with a refused string is walked again."""
    strings: list[str] = []
    _gather(value, strings)
    joined = " ".join(strings)
    if joined.isprintable() or UNSAFE.search(joined) is None:  # isprintable: the module docstring
        return None
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            why = text_problem(node)
            if why:
                return where or "(top level)", why
        elif isinstance(node, Mapping):
            children = []
            for key, child in node.items():
                if isinstance(key, str):
                    why = text_problem(key)
                    if why:
                        return where or "(top level)", f"key '{printable(key)[:80]}' {why}"
                children.append((_field(where, key), child))
            stack.extend(reversed(children))
        elif isinstance(node, (list, tuple)):
            stack.extend(reversed([(_field(where, i), child) for i, child in enumerate(node)]))
    return None


def json_strings_clean(data: bytes) -> bool:
    """True when no string of the JSON document `data` can hold a character this module refuses:
    its bytes are ASCII with no NUL (so json.loads reads them as UTF-8: UTF-16 and UTF-32, which it
    detects by their NUL bytes, could spell U+2028 or U+202E in two ASCII bytes), no DEL and no
    escape (an escape could spell any character), and json.loads refuses raw C0 controls inside a
    string. Checks a catalog's every string in one pass over its bytes; a document where this is
    False is checked string by string (document_problem)."""
    return data.isascii() and b"\\" not in data and b"\x7f" not in data and b"\x00" not in data


_SCALARS = frozenset({int, float, bool, type(None)})  # JSON's and YAML's plain values: nothing under them


def _gather(node: Any, out: list[str]) -> None:
    """Every string key and string value under `node`, appended to `out` (the types JSON gives are
    told apart by `type` first: an ABC's isinstance costs more than the rest of the walk)."""
    if type(node) is dict or isinstance(node, Mapping):
        for key, child in node.items():
            if type(key) is str:
                out.append(key)
            kind = type(child)
            if kind is str:
                out.append(child)
            elif kind is dict or kind is list or (kind not in _SCALARS and isinstance(child, (Mapping, list, tuple))):
                _gather(child, out)
    elif isinstance(node, (list, tuple)):
        for child in node:
            kind = type(child)
            if kind is str:
                out.append(child)
            elif kind is dict or kind is list or (kind not in _SCALARS and isinstance(child, (Mapping, list, tuple))):
                _gather(child, out)
    elif isinstance(node, str):
        out.append(node)


def printable(text: str, *, newlines: bool = False) -> str:
    """`text` safe to print on a terminal: every UNSAFE character as `\\uXXXX` (with `newlines`,
    line breaks \\n are kept, for output of several lines: JSON, YAML, reports)."""
    pattern = _UNSAFE_BUT_NEWLINE if newlines else UNSAFE
    if pattern.search(text) is None:
        return text
    return pattern.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
