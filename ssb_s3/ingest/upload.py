"""Ingest: put one built version into the store, each file read once, and record it safely.

Order, so that no reader and no publisher ever sees half a version:
1. check the artifacts (artifacts.inspect_artifacts): nothing is uploaded if LXD would refuse;
   read the product's ssb.json, once (a withdrawn --version is refused before any upload);
2. reserve the version folder by creating <dir>/<VERSION>/.ssb-upload.json with
   If-None-Match: * (a second build in the same minute gets the next free name, never the same);
   the folder scanner ignores a version while this marker exists;
3. upload each file create-only, hashing it (sha256 and the combined fingerprints) in the same
   pass; a file already there whose recorded sha256 matches is skipped (a re-run resumes), a
   different one is an error;
   then a caller's check of the version's items (add: the image the export file names carry) may
   refuse it: its upload is removed and nothing is recorded;
4. plan the new ssb.json from the one read (core.ingest, pure: the version added, or refused as
   a withdrawn name or the same image as another version, its upload then removed) and write it
   If-Match the ETag read; on a conflict read it again and plan again (two builders of one
   product never lose each other's version);
5. remove the marker.
The create-only writes (the marker, each file) and the updates of the marker and of ssb.json are
conditional (If-None-Match / If-Match) unless tree.yml says storage.conditional_writes: false;
before the first one the store must prove it honours them (Store.ensure_conditional_writes). With
conditional writes off, no request carries a conditional header: the folder is checked empty by a
listing and each file absent by a HEAD just before it is committed, which protects a single
builder at a time only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import ProductConfig, TreeConfig
from ..core.ingest import with_version, withdrawn_name_problem
from ..core.versions import version_name_problem
from ..errors import NotFound, PreconditionFailed
from ..progress import Progress
from ..storage.artifacts import ArtifactError, inspect_artifacts
from ..storage.manifest import read_manifest
from ..storage.store import CHUNK_SIZE, Store
from ..storage.tree import update_manifest
from ..vocabulary.imagefiles import BUILT_FILES as ARTIFACTS
from ..vocabulary.imagefiles import VersionHasher, upload_order
from ..vocabulary.layout import UPLOAD_MARKER_NAME, upload_marker_key, version_dir, version_file_key, version_file_of

log = logging.getLogger(__name__)

DEFAULT_VERSION_FORMAT = "%Y%m%d_%H:%M"  # the seed's and images.linuxcontainers.org's
ARTIFACT_TYPE = "application/octet-stream"


@dataclass
class IngestResult:
    """What ingest did: the version, its items, and which files were sent or found already there."""

    product: str
    version: str
    items: dict[str, Any]
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    resumed: bool = False


def _marker(product: ProductConfig, files: Mapping[str, Path]) -> dict[str, Any]:
    return {
        "product": product.name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": int(time.time()),
        "files": {name: {"size": path.stat().st_size} for name, path in sorted(files.items())},
    }


def _same_files(marker: Mapping[str, Any], product: ProductConfig, files: Mapping[str, Path]) -> bool:
    recorded = marker.get("files", {})
    return marker.get("product") == product.name and set(recorded) == set(files) and all(
        recorded[name].get("size") == path.stat().st_size for name, path in files.items()
    )


def _read_marker(store: Store, key: str) -> tuple[dict[str, Any] | None, str]:
    try:
        data, etag = store.read_with_etag(key)
        marker = json.loads(data)
        return (marker if isinstance(marker, dict) else None), etag
    except NotFound:
        return None, ""
    except ValueError:
        return None, ""


def reserve_version(
    store: Store, tree: TreeConfig, product: ProductConfig, files: Mapping[str, Path], *,
    version: str | None, version_format: str, now: datetime,
) -> tuple[str, str, dict[str, Any], bool]:
    """Pick and reserve the version folder: (version, marker etag, marker, resumed)."""
    store.ensure_conditional_writes()
    product_dir = tree.product_dir(product)
    if version is None:
        # An interrupted build of the same files resumes, wherever its marker is.
        for obj in store.list(f"{product_dir}/"):
            parts = version_file_of(product_dir, obj.key)
            if parts is not None and parts[1] == UPLOAD_MARKER_NAME:
                marker, etag = _read_marker(store, obj.key)
                if marker is not None and _same_files(marker, product, files):
                    log.info("%s: resuming the interrupted upload of version %s", product.name, parts[0])
                    return parts[0], etag, marker, True
        base = now.astimezone(timezone.utc).strftime(version_format)
        candidates = [base, *(f"{base}_{n}" for n in range(1, 100))]
    else:
        candidates = [version]
    for name in candidates:
        problem = version_name_problem(name)
        if problem:
            raise ArtifactError(f"version name '{name}' {problem} (see --version-format)")
        key = upload_marker_key(version_dir(product_dir, name))
        marker = _marker(product, files)
        if not any(True for _ in store.list(version_dir(product_dir, name) + "/")):
            try:
                etag = store.put_new(key, json.dumps(marker, sort_keys=True).encode(), cache_control="no-store")
                return name, etag, marker, False
            except PreconditionFailed:
                pass  # another build took this name a moment ago
        existing, etag = _read_marker(store, key)
        if version is not None:
            if existing is not None and _same_files(existing, product, files):
                return name, etag, existing, True
            raise ArtifactError(
                f"{store.describe(f'{product_dir}/{name}/')} already exists"
                + (" with other files" if existing else " and is finished") + "; pick another --version"
            )
    raise ArtifactError(f"no free version name from '{candidates[0]}' in {store.describe(product_dir)}")


def _hash_local(path: Path, feed: Callable[[bytes], None]) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            feed(chunk)


def add_version_to_manifest(
    store: Store, tree: TreeConfig, product: ProductConfig, version: str, items: dict[str, Any],
    read: tuple[dict[str, Any] | None, str] | None = None,
) -> None:
    """Add one version to ssb.json (core.ingest.with_version), If-Match the ETag of `read` (the
    ssb.json as read before the upload; None: read now); on a conflict it is read again and the
    version planned again, so two builders of one product never lose each other's version.
    ArtifactError: the version is refused (core.ingest), nothing written."""
    def added(manifest: dict[str, Any] | None) -> dict[str, Any]:
        new, why = with_version(manifest, product.name, version, items)
        if why is not None:
            raise ArtifactError(why)
        assert new is not None
        return new

    update_manifest(store, tree, product, added, what=f"adding {version}", read=read)


def _remove_upload(store: Store, folder: str, result: IngestResult, marker_key: str) -> None:
    for filename in result.uploaded:
        store.delete(version_file_key(folder, filename))
    store.delete(marker_key)


def ingest_version(
    store: Store,
    tree: TreeConfig,
    product: ProductConfig,
    files: Mapping[str, Path],
    *,
    version: str | None = None,
    version_format: str = DEFAULT_VERSION_FORMAT,
    vm: bool = False,
    part_size: int = CHUNK_SIZE,
    concurrency: int = 4,
    quiet: bool = False,
    now: datetime | None = None,
    check: Callable[[Mapping[str, Any]], str | None] | None = None,
) -> IngestResult:
    """Upload one version of `product` and add it to ssb.json (see the module docstring).

    `check`: called with the version's items once every file is hashed, before anything is recorded;
    a message it returns refuses the version (its upload is removed, nothing is recorded)."""
    inspect_artifacts(dict(files), product, vm=vm)
    read = read_manifest(store, tree, product)  # the one read of ssb.json (again only on a write conflict)
    why = withdrawn_name_problem(read[0], product.name, version) if version else None
    if why is not None:
        raise ArtifactError(why)
    name, marker_etag, marker, resumed = reserve_version(
        store, tree, product, files, version=version, version_format=version_format,
        now=now or datetime.now(timezone.utc),
    )
    product_dir = tree.product_dir(product)
    folder = version_dir(product_dir, name)
    marker_key = upload_marker_key(folder)
    result = IngestResult(product.name, name, {}, resumed=resumed)
    hasher = VersionHasher()
    total = sum(path.stat().st_size for path in files.values())
    with Progress(total, f"{product.name} {name}", files=len(files), quiet=quiet) as progress:
        for filename in upload_order(files):
            path, key = files[filename], version_file_key(folder, filename)
            feed = hasher.start(filename)
            there = store.head(key)
            if there is None:
                try:
                    store.put_new(key, path, feed=feed, digest=functools.partial(hasher.digest, filename),
                                  content_type=ARTIFACT_TYPE, cache_control=tree.cache_control.artifacts,
                                  part_size=part_size, concurrency=concurrency, progress=progress)
                    hasher.finish(filename)
                    result.uploaded.append(filename)
                    result.bytes_uploaded += hasher.sizes[filename]
                except PreconditionFailed:  # another run created it meanwhile: compare instead
                    there = store.head(key)
                    hasher.discard(filename)
                    feed = hasher.start(filename)
            if there is not None:
                _hash_local(path, feed)
                hasher.finish(filename)
                recorded = there.sha256 or marker.get("files", {}).get(filename, {}).get("sha256", "")
                if not recorded:  # no record (e.g. a multipart object whose marker update was lost)
                    remote = hashlib.sha256()
                    for chunk in store.iter_chunks(key):
                        remote.update(chunk)
                    recorded = remote.hexdigest()
                if recorded != hasher.digests[filename]:
                    raise ArtifactError(
                        f"{store.describe(key)} already exists with sha256 {recorded}, but {path} has "
                        f"{hasher.digests[filename]}: refusing to overwrite; build with another --version"
                    )
                progress(path.stat().st_size)
                result.skipped.append(filename)
            progress.file_done()
            marker.setdefault("files", {}).setdefault(filename, {})["sha256"] = hasher.digests[filename]
            marker_etag = store.replace(marker_key, json.dumps(marker, sort_keys=True).encode(), marker_etag,
                                        cache_control="no-store")
    result.items = hasher.items(folder)
    refused = check(result.items) if check is not None else None
    if refused:
        _remove_upload(store, folder, result, marker_key)
        raise ArtifactError(f"{refused}; nothing recorded, its upload was removed")
    try:
        add_version_to_manifest(store, tree, product, name, result.items, read)
    except ArtifactError as refused:  # (core.ingest: a withdrawn name, the same image as another version)
        _remove_upload(store, folder, result, marker_key)
        raise ArtifactError(f"{refused}; nothing recorded, its upload was removed") from None
    store.delete(marker_key)
    log.info("%s: version %s recorded in %s (%d uploaded, %d already there)", product.name, name,
             store.describe(tree.manifest_key(product)), len(result.uploaded), len(result.skipped))
    return result


def collect_artifacts(folder: Path) -> dict[str, Path]:
    """Known artifact files of a distrobuilder output folder (unified tarballs renamed by the caller)."""
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: not a folder")
    found = {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.name in ARTIFACTS}
    if not found:
        names = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise ArtifactError(f"{folder}: no image files (found {names}; expected some of {', '.join(ARTIFACTS)})")
    return found
