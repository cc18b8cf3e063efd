"""Withdrawing a version: pure decisions (no store, no clock: the time is the snapshot's).

`ssb-s3 withdraw PRODUCT [VERSION|FINGERPRINT]` is a publish with one more input to the pure plan
(ssb_s3.core.plan.Withdrawal): the version leaves the product's ssb.json `versions` for its
`withdrawn` section, and so leaves the catalog that the same publish writes. Invariants:

- nothing is lost: the whole old version entry is kept under `withdrawn[VERSION].entry`, with
  `withdrawn_at` (UTC) and the optional `reason` (one line, at most MAX_REASON characters);
- a withdrawn version is never published again: the scan of the version folders
  (publish --refresh-manifests, build-versions-manifest) skips every version listed there;
- its files are not deleted here: the purge deletes them once no catalog current within the grace
  period names them, like an expired version (ssb_s3.core.retention);
- a product read from another store (`source:`, a folder or bucket other trees may read too) is
  read-only to this tree: its withdrawals are this tree's record, kept in index.json's `ssb_s3`
  field (TREE_RECORD, same record shape) and written by the very flip that takes the version out
  of the catalog; every later plan applies them (with_recorded) before retention, so the version
  stays out of this tree's catalog while every other tree fed from that source keeps serving it;
- a version is named by its name, or by an image fingerprint (full, or a prefix of at least
  MIN_PREFIX hex digits) of the product's manifest or served entry; an ambiguous prefix, an
  unknown name and a reason that vocabulary/text refuses (a line break of any kind, a C0 or C1 control,
  a bidi override) are one-line WithdrawErrors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..errors import WithdrawError, capped
from ..vocabulary.text import text_problem
from .catalog import fingerprints
from .deltas import without_orphans
from .retention import HISTORY_FIELD
from .versions import VERSION_CHARS

MIN_PREFIX = 12  # what `lxc image list` shows: enough to name one image
MAX_REASON = 500  # characters of --reason (ssb.schema.json says the same)
MAX_SELECTOR = 128
MAX_CANDIDATES = 10  # listed in the one line of an ambiguous prefix or an unknown version
WITHDRAWN = "withdrawn"  # the ssb.json section
TREE_RECORD = "withdrawn"  # in index.json's `ssb_s3` field: product -> version -> record, this tree's own
_HEX = re.compile(r"[0-9a-f]+")


def reason_problem(reason: str) -> str | None:
    """Why `reason` cannot be recorded (None: it can): one line, printable, bounded."""
    if len(reason) > MAX_REASON:
        return f"{len(reason)} characters, expected at most {MAX_REASON}"
    return text_problem(reason)  # the one check of outside text (vocabulary/text): controls, bidi overrides, U+2028...


def withdrawn_of(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    """The manifest's withdrawn versions (empty for an ssb.json without the section)."""
    section: Mapping[str, Any] = manifest.get(WITHDRAWN, {})
    return section


Recorded = Mapping[str, Mapping[str, Any]]  # product -> version -> `withdrawn` record (this tree's)


def _is_record(version: Any, found: Any) -> bool:
    return (isinstance(version, str) and 0 < len(version) <= MAX_SELECTOR and all(c in VERSION_CHARS for c in version)
            and isinstance(found, dict) and isinstance(found.get("withdrawn_at"), str)
            and isinstance(found.get("entry"), dict) and isinstance(found["entry"].get("items"), dict)
            and isinstance(found.get("reason", ""), str))


def tree_recorded(index: bytes) -> dict[str, dict[str, Any]]:
    """The withdrawals the served index.json records for this tree (TREE_RECORD); records of
    another shape are left out (an index of another tool records none)."""
    try:
        section = json.loads(index)[HISTORY_FIELD][TREE_RECORD] if index else {}
    except (ValueError, KeyError, TypeError):
        return {}
    if not isinstance(section, dict):
        return {}
    found = {name: {v: r for v, r in versions.items() if _is_record(v, r)} for name, versions in section.items()
             if isinstance(name, str) and isinstance(versions, dict)}
    return {name: versions for name, versions in found.items() if versions}


def with_recorded(manifest: Mapping[str, Any], recorded: Mapping[str, Any]) -> Mapping[str, Any]:
    """The manifest as this tree publishes it: the versions the tree withdrew (`recorded`, one
    product's TREE_RECORD) moved to its `withdrawn` section (the manifest itself is not changed,
    nor ever written back), and the deltas against them left out (core.deltas.without_orphans)."""
    if not recorded:
        return manifest
    return {**manifest, "versions": without_orphans({v: e for v, e in manifest["versions"].items()
                                                     if v not in recorded}),
            WITHDRAWN: {**withdrawn_of(manifest), **recorded}}


def utc(now: float) -> str:
    return datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _listed(names: list[str]) -> str:
    return ", ".join(capped(names, MAX_CANDIDATES)) or "none"


def resolve(product: str, selector: str, manifest: Mapping[str, Any], served: Mapping[str, Any]) -> str:
    """The version `selector` names in this product: a version name (in the manifest, its withdrawn
    section or the served entry), else a fingerprint or a prefix of one; "" means the newest served
    version. WithdrawError (one line) when it names none, or more than one version."""
    known: dict[str, Any] = {**served.get("versions", {}), **manifest["versions"]}
    if not selector:
        if not served.get("versions"):
            raise WithdrawError(f"product {product}: no version is published, nothing to withdraw")
        return str(max(served["versions"]))
    if len(selector) > MAX_SELECTOR or any(ch not in VERSION_CHARS for ch in selector):
        raise WithdrawError(f"product {product}: {json.dumps(selector[:64])} is neither a version name "
                            "nor a fingerprint (expected e.g. 20260101_1200, or at least 12 hex digits)")
    if selector in known or selector in withdrawn_of(manifest):
        return selector
    wanted = selector.lower()
    if _HEX.fullmatch(wanted) and len(wanted) >= MIN_PREFIX:
        matches: dict[str, set[str]] = {}
        for name, entry in sorted(known.items()):
            for fingerprint in fingerprints(entry.get("items", {})):
                if fingerprint.startswith(wanted):
                    matches.setdefault(name, set()).add(fingerprint)
        if len(matches) == 1:
            return next(iter(matches))
        if matches:
            found = [f"{fp[:16]}… ({name})" for name, fps in sorted(matches.items()) for fp in sorted(fps)]
            raise WithdrawError(f"product {product}: fingerprint prefix {selector} is ambiguous, it matches "
                                f"{_listed(found)}; give more digits or the version name")
    short = "" if len(wanted) >= MIN_PREFIX or not _HEX.fullmatch(wanted) else (
        f"; a fingerprint prefix needs at least {MIN_PREFIX} hex digits")
    raise WithdrawError(f"product {product}: no version or fingerprint {selector} (versions: "
                        f"{_listed(sorted(known, reverse=True))}){short}")


def record(entry: Mapping[str, Any], reason: str, now: float) -> dict[str, Any]:
    """The `withdrawn` record of one version: its whole old entry, when, and why."""
    found: dict[str, Any] = {"withdrawn_at": utc(now), "entry": dict(entry)}
    if reason:
        found["reason"] = reason
    return found
