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
- a version is named by its name, or by an image fingerprint (full, or a prefix of at least
  MIN_PREFIX hex digits) of the product's manifest or served entry; an ambiguous prefix, an
  unknown name and a reason that core/text refuses (a line break of any kind, a C0 or C1 control,
  a bidi override) are one-line WithdrawErrors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..errors import WithdrawError, capped
from .catalog import fingerprints
from .text import text_problem
from .versions import VERSION_CHARS

MIN_PREFIX = 12  # what `lxc image list` shows: enough to name one image
MAX_REASON = 500  # characters of --reason (ssb.schema.json says the same)
MAX_SELECTOR = 128
MAX_CANDIDATES = 10  # listed in the one line of an ambiguous prefix or an unknown version
WITHDRAWN = "withdrawn"  # the ssb.json section
_HEX = re.compile(r"[0-9a-f]+")


def reason_problem(reason: str) -> str | None:
    """Why `reason` cannot be recorded (None: it can): one line, printable, bounded."""
    if len(reason) > MAX_REASON:
        return f"{len(reason)} characters, expected at most {MAX_REASON}"
    return text_problem(reason)  # the one check of outside text (core/text): controls, bidi overrides, U+2028...


def withdrawn_of(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    """The manifest's withdrawn versions (empty for an ssb.json without the section)."""
    section: Mapping[str, Any] = manifest.get(WITHDRAWN, {})
    return section


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
