"""The pure half of build-product (and `add`): what a new version does to its product's ssb.json.

No store, no I/O: given the ssb.json as read, the new version's name and its items (hashed during
the upload), the new ssb.json, or why the version is refused. ssb_s3.ingest.upload reads ssb.json
once, uploads, asks this module, and writes the result If-Match the ETag it read (on a conflict it
reads again and asks again: two builders of one product never lose each other's version).

Refused, and then nothing is recorded:
- a withdrawn version's name (its record would be ambiguous): `withdrawn_name_problem`, asked
  before the upload too;
- the same image as another version or a withdrawn one (same fingerprint): clients would refuse
  both ('More than one match'), and a withdrawn image never comes back under a new name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .catalog import fingerprints
from .withdrawal import withdrawn_of


def withdrawn_name_problem(manifest: Mapping[str, Any] | None, product: str, version: str) -> str | None:
    """Why `version` cannot be the name of a new build: it was withdrawn (None: it may be)."""
    if version in withdrawn_of(manifest or {}):
        return (f"{product}: version {version} was withdrawn (ssb.json 'withdrawn'); "
                "build with another --version")
    return None


def duplicate_problem(manifest: Mapping[str, Any] | None, product: str, version: str,
                      items: Mapping[str, Any]) -> str | None:
    """Why the new build is the same image as a version ssb.json lists or withdrew (None: it is not)."""
    new = fingerprints(items)
    withdrawn = {name: record.get("entry", {}) for name, record in withdrawn_of(manifest or {}).items()}
    for other, entry, what in (
        *((name, entry, "version") for name, entry in sorted((manifest or {}).get("versions", {}).items())),
        *((name, entry, "withdrawn version") for name, entry in sorted(withdrawn.items())),
    ):
        if other != version and new & fingerprints(entry.get("items", {})):
            return f"{product}: the new build is identical to {what} {other} (same fingerprint)"
    return None


def with_version(manifest: Mapping[str, Any] | None, product: str, version: str,
                 items: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(ssb.json with the new version, None) or (None, why it is refused)."""
    why = withdrawn_name_problem(manifest, product, version) or duplicate_problem(manifest, product, version, items)
    if why is not None:
        return None, why
    current = dict(manifest or {"name": product, "versions": {}})
    return {**current, "versions": {**current["versions"], version: {"items": dict(items)}}}, None
