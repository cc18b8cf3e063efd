"""sstream-style filters, the one syntax of `ssb-s3 list` and `ssb-s3 mirror`.

As in python-simplestreams (sstream-query, sstream-mirror): `KEY=VALUE` (the whole text equals
VALUE), `KEY~REGEX` (the regular expression is found anywhere in it, re.search), and their
negations `KEY!=VALUE`, `KEY!~REGEX`; every filter must match (AND); a missing key reads as ''.
A key is letters, digits, `_`, `|` and `-`; spaces around the operator are allowed. A filter is
checked when parsed (its syntax, its regular expression, and with `keys` its key): a bad one is
one FilterError naming its text and what was expected. Pure: no I/O.

One vocabulary for both commands: a command may accept other names for its keys (`synonyms`:
`product` and `product_name` name the same thing in list and mirror), and `arch=` / `arch!=`
compare architectures as the clients do, so amd64 and x86_64 are one arch whichever way the
catalog or the filter spells it (a regular expression still reads the text as written).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SSBError
from .vocabulary.clients import CLIENTS

# The clients' arch names, aliases included (LXD 5.0's: the strictest reader), by canonical name.
_CANONICAL_ARCH = CLIENTS["lxd-5.0"].arches
ARCH_KEY = "arch"

_SYNTAX = re.compile(r"([\w|-]+) *(!?[=~]) *(.*)$", re.DOTALL)
EXPECTED = "expected KEY=VALUE, KEY!=VALUE, KEY~REGEX or KEY!~REGEX"


class FilterError(SSBError):
    """A filter that cannot be used: its text and what was expected."""


@dataclass(frozen=True)
class Filter:
    """One filter; `regex` is set for `~` and `!~`."""

    key: str
    op: str
    value: str
    text: str
    regex: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str, keys: Collection[str] | None = None,
              synonyms: Mapping[str, str] | None = None) -> Filter:
        """`keys`: the keys this filter may name (None: any key); `synonyms`: other names of them."""
        found = _SYNTAX.match(text)
        if not found:
            hint = f" (keys: {', '.join(keys)})" if keys else ""
            raise FilterError(f"filter '{text}': {EXPECTED}{hint}")
        key, op, value = found.groups()
        key = (synonyms or {}).get(key, key)
        if keys is not None and key not in keys:
            raise FilterError(f"filter '{text}': unknown key '{key}' (keys: {', '.join(keys)})")
        regex = None
        if op.endswith("~"):
            try:
                regex = re.compile(value)
            except re.error as exc:
                raise FilterError(f"filter '{text}': '{value}' is not a valid regular expression: {exc}") from None
        return cls(key, op, value, text, regex)

    def matches_text(self, text: str, *, members: Collection[str] = ()) -> bool:
        """Whether a field whose text is `text` passes; `=` also accepts one of `members` (a list
        field such as aliases, matched by element)."""
        if self.regex is not None:
            hit = self.regex.search(text) is not None
        elif self.key == ARCH_KEY:
            hit = _CANONICAL_ARCH.get(text, text) == _CANONICAL_ARCH.get(self.value, self.value)
        else:
            hit = text == self.value or self.value in members
        return hit != self.op.startswith("!")

    def matches(self, fields: Mapping[str, Any]) -> bool:
        return self.matches_text(str(fields.get(self.key, "")))


def parse_filters(texts: Iterable[str], keys: Collection[str] | None = None,
                  synonyms: Mapping[str, str] | None = None) -> tuple[Filter, ...]:
    return tuple(Filter.parse(text, keys, synonyms) for text in texts)
