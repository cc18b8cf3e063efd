"""Version names: what LXD and Incus accept (YYYYMMDD first, sorted by time) and what we allow in keys.

Pure: the names are folder names in the tree and version keys in ssb.json and the catalog.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, timezone

VERSION_NAME = re.compile(r"^[0-9]{8}[0-9A-Za-z_:.+-]*$")
VERSION_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_:.+-")
_CHAR_NAMES = {" ": "space", "\t": "tab", "\n": "newline", "\r": "carriage return"}


@functools.lru_cache(maxsize=65536)
def version_name_problem(name: str) -> str | None:
    """Why a version name would be dropped by LXD (it parses the first 8 chars as YYYYMMDD), or is
    refused here: only ASCII letters, digits and _ : . + - (names go into keys and URLs as is)."""
    bad = _bad_chars(name)
    if bad:
        return (f"contains {bad}, not allowed in a version name "
                "(allowed: ASCII letters, digits and _ : . + -)")
    if not VERSION_NAME.match(name):
        return "does not start with a YYYYMMDD date (e.g. 20260101_12:00 or 20260101_1200)"
    try:
        datetime.strptime(name[:8], "%Y%m%d")
    except ValueError:
        return f"'{name[:8]}' is not a real calendar date"
    return None


def _bad_chars(name: str, shown: int = 5) -> str:
    """The distinct characters of `name` not allowed in a version name, readable: "' ' (space), '%'";
    at most `shown` of them, so that a long name still gives a short message."""
    bad = list(dict.fromkeys(ch for ch in name if ch not in VERSION_CHARS))
    if not bad:
        return ""
    words = [_describe_char(ch) for ch in bad[:shown]] + ([f"{len(bad) - shown} more"] if len(bad) > shown else [])
    return ", ".join(words)


def _describe_char(ch: str) -> str:
    if ch in _CHAR_NAMES:
        return f"{ch!r} ({_CHAR_NAMES[ch]})"
    if ch.isascii() and ch.isprintable():
        return f"'{ch}'"
    return f"{ch!r} (U+{ord(ch):04X})"


@functools.lru_cache(maxsize=65536)
def version_time(name: str) -> datetime:
    """When a version was built, from its name (YYYYMMDD_HH:MM, YYYYMMDD_HHMM or YYYYMMDD), UTC."""
    for fmt, length in (("%Y%m%d_%H:%M", 14), ("%Y%m%d_%H%M", 13), ("%Y%m%d", 8)):
        try:
            return datetime.strptime(name[:length], fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return datetime(1970, 1, 1, tzinfo=timezone.utc)
