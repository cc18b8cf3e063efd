"""ssb.json: a product's versions manifest, built by scanning its folder in the store.

Layout: <prefix>/<directory>/<VERSION>/<file>, VERSION starting with YYYYMMDD, then only ASCII
letters, digits and _ : . + - (a folder with any other character is left out, the character
named). Folders starting with '.' are uploads in progress. Which files count, their items and the
rule of a complete version (metadata + root, or a unified tarball) come from the one table of
image files (imagefiles); delta files (`<base>.<root>.vcdiff`, made by publish) are never scanned
in: an entry keeps the delta items it has while their files are there with the recorded size;
incomplete versions are left out with a warning, so a half-uploaded version is never published.
Each file is streamed once, and never past the size its listing gave (a file that grew is
reported, not read on): its sha256 and the combined sha256(meta ‖ root) of
every meta file are fed from the same chunks (imagefiles.VersionHasher). Only what the store
lists counts: a local folder lists regular files only (no FIFO, device, or symlink leading out of
it). A version hashed here must pass the artifact checks of build-product
(artifacts.check_stored_version): metadata tarballs are checked from the bytes already read (a
unified tarball, or one over 1 MiB, is read again, only up to its metadata.yaml and rootfs).
A version listed in ssb.json's `withdrawn` section (ssb-s3 withdraw) is never scanned back in:
its folder stays until the purge deletes it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import ProductConfig, TreeConfig
from ..core.deltas import without_orphans
from ..core.versions import version_name_problem
from ..core.withdrawal import WITHDRAWN, withdrawn_of
from ..errors import ManifestError, NotFound, StoreError
from ..schemas import schema_problems
from ..vocabulary.imagefiles import (
    BUILT_FILES,
    DELTA_FTYPES,
    HEAD_BYTES,
    IMAGE_FILES,
    TAIL_BYTES,
    VersionHasher,
    is_complete,
    parse_delta_filename,
    truncation_problem,
    upload_order,
)
from ..vocabulary.layout import product_key_kind, version_dir, version_file_key
from .artifacts import check_stored_version
from .httpread import parse_json
from .store import CHUNK_SIZE, ObjectInfo, Store

log = logging.getLogger(__name__)

MAX_UNIX_TIME = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime can show
KEEP_METADATA_BYTES = 1 << 20  # metadata tarballs up to this size are checked from memory
MAX_MANIFEST_BYTES = 64 << 20  # real ones are KBs (about 1 KB a version); parsed, all count in the run's budget
MANIFEST_PROBLEMS_LISTED = 20  # schema problems quoted in the one-line error of one ssb.json


def hash_version(store: Store, version_dir: str, files: Mapping[str, ObjectInfo],
                 heads: dict[str, bytes] | None = None) -> dict[str, Any]:
    """Stream every file of one version once from the store; return its simplestreams items.

    A file is read up to its listed size plus one byte at most (one chunk past it for files of
    CHUNK_SIZE or more): a file that grew, or that is no file at all, is reported as changed,
    never read on. `heads`, if given, gets each file's first HEAD_BYTES, or all of it for a
    metadata tarball of at most KEEP_METADATA_BYTES (for the artifact checks, without reading it
    again).
    """
    hasher = VersionHasher()
    for name in upload_order(files):
        feed = hasher.start(name)
        head, tail = b"", b""
        listed = files[name].size
        keep = IMAGE_FILES[name].is_metadata and listed <= KEEP_METADATA_BYTES
        kept: list[bytes] = []
        chunks = store.iter_chunks(version_file_key(version_dir, name), max(1, min(CHUNK_SIZE, listed + 1)))
        try:
            for chunk in chunks:
                feed(chunk)
                head += chunk[: HEAD_BYTES - len(head)]
                tail = (tail + chunk)[-TAIL_BYTES:]
                if keep and hasher.sizes[name] <= KEEP_METADATA_BYTES:
                    kept.append(chunk)
                if hasher.sizes[name] > listed:
                    break
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        hasher.finish(name)
        if heads is not None:
            heads[name] = b"".join(kept) if keep and hasher.sizes[name] <= KEEP_METADATA_BYTES else head
        if hasher.sizes[name] != listed:
            read = f"more than {listed}" if hasher.sizes[name] > listed else str(hasher.sizes[name])
            raise StoreError(
                f"{store.describe(version_file_key(version_dir, name))}: size changed while hashing "
                f"({listed} listed, {read} read); is an upload still running?"
            )
        why = truncation_problem(name, hasher.sizes[name], head, tail)
        if why:
            raise ManifestError(f"{store.describe(version_file_key(version_dir, name))}: {why}; not published")
    return hasher.items(version_dir)


@dataclass
class ManifestReport:
    """What build-versions-manifest did, for logs and for tests."""

    product: str
    hashed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    withdrawn: list[str] = field(default_factory=list)  # folders left out: withdrawn (ssb.json `withdrawn`)
    changed: bool = False


def _reusable(existing: Mapping[str, Any] | None, version_dir: str, files: Mapping[str, ObjectInfo]) -> bool:
    if not existing:
        return False
    items = {k: i for k, i in existing.get("items", {}).items() if i.get("ftype") not in DELTA_FTYPES}
    recorded = {str(i.get("path", "")): i.get("size") for i in items.values()}
    wanted = {version_file_key(version_dir, name): info.size for name, info in files.items()}
    return recorded == wanted and all(
        IMAGE_FILES[name].item_key in items for name in files
    )


def kept_deltas(existing: Mapping[str, Any] | None, found: Mapping[str, ObjectInfo]) -> dict[str, Any]:
    """The delta items of a version's previous entry whose file is still there with its recorded
    size (`found`: the version's delta files by name). Deltas are made and checked by publish
    (ssb_s3.storage.deltas), never found by a scan: a delta file no entry names stays unpublished."""
    kept = {}
    for key, item in (existing or {}).get("items", {}).items():
        there = found.get(str(item.get("path", "")).rpartition("/")[2])
        if item.get("ftype") in DELTA_FTYPES and there is not None and there.size == item.get("size"):
            kept[key] = item
    return kept


def scan_versions(
    store: Store, product_dir: str, deltas: dict[str, dict[str, ObjectInfo]] | None = None,
) -> tuple[dict[str, dict[str, ObjectInfo]], dict[str, str]]:
    """Group the product folder's objects by version; return (complete versions, skipped+why).
    `deltas`, if given, gets each version's delta files (by file name)."""
    versions: dict[str, dict[str, ObjectInfo]] = {}
    skipped: dict[str, str] = {}
    uploading: set[str] = set()
    base = f"{product_dir}/"
    for obj in store.list(base):
        kind = product_key_kind(product_dir, obj.key)
        if kind is None or not kind.version:
            continue  # ssb.json itself, or deeper files that are not artifacts
        version, filename = kind.version, kind.name
        if version.startswith("."):
            continue  # upload in progress (.VERSION), published only once renamed
        problem = version_name_problem(version)
        if problem:
            skipped[version] = f"folder name {problem}"
            continue
        if kind.kind == "upload-marker":
            uploading.add(version)
        if filename in BUILT_FILES:
            versions.setdefault(version, {})[filename] = obj
        else:
            if deltas is not None and kind.kind == "delta" and parse_delta_filename(filename):
                deltas.setdefault(version, {})[filename] = obj
            versions.setdefault(version, {})
    complete = {}
    for version, files in versions.items():
        if version in uploading:
            skipped[version] = "upload in progress (build-product has not finished it)"
        elif is_complete(files):
            complete[version] = files
        else:
            have = ", ".join(sorted(files)) or "no known image files"
            skipped[version] = f"incomplete (has {have}; needs a metadata file and a root file)"
    return complete, skipped


def build_manifest(
    store: Store,
    tree: TreeConfig,
    product: ProductConfig,
    existing: Mapping[str, Any] | None = None,
    *,
    rehash: bool = False,
) -> tuple[dict[str, Any], ManifestReport]:
    """The product's new ssb.json content, re-hashing only new or changed versions.

    A version hashed here passes the artifact checks of build-product first (ArtifactError).
    """
    report = ManifestReport(product.name)
    product_dir = tree.product_dir(product)
    found_deltas: dict[str, dict[str, ObjectInfo]] = {}
    complete, report.skipped = scan_versions(store, product_dir, found_deltas)
    withdrawn = withdrawn_of(existing or {})
    report.withdrawn = sorted(set(complete) & set(withdrawn))
    for version in report.withdrawn:  # `ssb-s3 withdraw` took it out: it stays out until purged
        del complete[version]
    for version, why in sorted(report.skipped.items()):
        log.warning("%s: version %s left out: %s", product.name, version, why)
    old_versions: Mapping[str, Any] = (existing or {}).get("versions", {})
    versions: dict[str, Any] = {}
    for version in sorted(complete):
        files = complete[version]
        folder = version_dir(product_dir, version)
        deltas = kept_deltas(old_versions.get(version), found_deltas.get(version, {}))
        if not rehash and _reusable(old_versions.get(version), folder, files):
            old = old_versions[version]
            versions[version] = old if len(deltas) == len(old["items"]) - len(files) else {
                **old, "items": {k: i for k, i in old["items"].items()
                                 if i.get("ftype") not in DELTA_FTYPES or k in deltas}}
            report.reused.append(version)
            continue
        log.info("%s: hashing version %s (%d files)", product.name, version, len(files))
        heads: dict[str, bytes] = {}
        versions[version] = {"items": {**hash_version(store, folder, files, heads), **deltas}}
        check_stored_version(store, folder, files, heads, product)  # what build-product checks
        report.hashed.append(version)
    report.removed = sorted(set(old_versions) - set(versions))
    for version in report.removed:
        log.info("%s: version %s is no longer in %s, dropped from ssb.json", product.name, version,
                 store.describe(product_dir))
    manifest: dict[str, Any] = {"name": product.name, "versions": without_orphans(versions)}
    for key in ("expiry", "support_eol", WITHDRAWN):
        if existing and key in existing:
            manifest[key] = existing[key]
    report.changed = manifest != existing
    return manifest, report


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """Canonical serialisation: same manifest, same bytes (so unchanged means no write)."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def parse_manifest(data: bytes, source: str, product: ProductConfig) -> dict[str, Any]:
    """Decode and validate one ssb.json against the schema and against its product.

    At most MAX_MANIFEST_BYTES are accepted, and the error lists at most MANIFEST_PROBLEMS_LISTED
    schema problems on its one line.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{source}: {len(data)} bytes, over the limit of {MAX_MANIFEST_BYTES} bytes for ssb.json")
    try:
        manifest = parse_json(data, source)
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: also JSON nested too deeply
        raise ManifestError(f"{source}: not valid JSON: {exc}") from None
    problems = schema_problems(manifest, "ssb", source, limit=MANIFEST_PROBLEMS_LISTED)
    if problems:
        raise ManifestError("; ".join(map(str, problems)))
    if manifest["name"] != product.name:
        raise ManifestError(
            f"{source}: name: '{manifest['name']}' does not match product '{product.name}' of tree.yml"
        )
    expiry = str(manifest.get("expiry", "")).strip()
    if expiry.isdigit() and int(expiry) > MAX_UNIX_TIME:
        raise ManifestError(f"{source}: expiry: '{expiry}' is out of range, expected unix seconds before year 10000")
    return dict(manifest)


def read_manifest(store: Store, tree: TreeConfig, product: ProductConfig) -> tuple[dict[str, Any] | None, str]:
    """The product's current ssb.json (validated) and its etag; (None, '') if there is none."""
    key = tree.manifest_key(product)
    try:
        data, etag = store.read_limited(key, MAX_MANIFEST_BYTES)
    except NotFound:
        return None, ""
    return parse_manifest(data, store.describe(key), product), etag
