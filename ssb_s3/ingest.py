"""Ingest: put one built version into the store, each file read once, and record it safely.

Order, so that no reader and no publisher ever sees half a version:
1. check the artifacts (artifacts.inspect_artifacts): nothing is uploaded if LXD would refuse;
2. reserve the version folder by creating <dir>/<VERSION>/.ssb-upload.json with
   If-None-Match: * (a second build in the same minute gets the next free name, never the same);
   the folder scanner ignores a version while this marker exists;
3. upload each file create-only, hashing it (sha256 and the combined fingerprints) in the same
   pass; a file already there whose recorded sha256 matches is skipped (a re-run resumes), a
   different one is an error;
4. add the version to the product's ssb.json with a conditional write (two builders of one
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
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from .artifacts import ArtifactError, inspect_artifacts
from .catalog import fingerprints
from .config import ProductConfig, TreeConfig
from .errors import NotFound, PreconditionFailed
from .imagefiles import IMAGE_FILES as ARTIFACTS
from .imagefiles import VersionHasher, upload_order
from .manifest import (
    UPLOAD_MARKER,
    read_manifest,
    update_manifest,
    version_name_problem,
)
from .store import CHUNK_SIZE, Store

log = logging.getLogger(__name__)

DEFAULT_VERSION_FORMAT = "%Y%m%d_%H:%M"  # the seed's and images.linuxcontainers.org's
ARTIFACT_TYPE = "application/octet-stream"


PROGRESS_INTERVAL_ENV = "SSB_PROGRESS_INTERVAL"  # seconds between progress lines off a terminal
DEFAULT_PROGRESS_INTERVAL = 5.0


def progress_interval() -> float:
    """Seconds between progress lines when stderr is not a terminal: $SSB_PROGRESS_INTERVAL, else 5."""
    raw = os.environ.get(PROGRESS_INTERVAL_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_PROGRESS_INTERVAL
    except ValueError:
        return DEFAULT_PROGRESS_INTERVAL
    return value if math.isfinite(value) and value >= 0 else DEFAULT_PROGRESS_INTERVAL


class Progress:
    """The one progress reporter of long transfers (build-product uploads, publish's copies).

    Bytes, files, rate and time left on stderr: redrawn in place on a terminal; anywhere else (CI
    logs, pipes) one line every `interval` seconds (default $SSB_PROGRESS_INTERVAL, else 5 s),
    and a last line at close() if any was printed, so a job shorter than the interval prints
    nothing; nothing at all when quiet. Callable with a byte count; safe to share between threads.
    """

    def __init__(self, total: int, label: str, *, files: int = 0, stream: TextIO | None = None,
                 quiet: bool = False, interval: float | None = None) -> None:
        self.total, self.label, self.quiet, self.files = max(total, 1), label, quiet, files
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = progress_interval() if interval is None else interval
        self.done = 0
        self.files_done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._last_draw = self.started if not self.tty else 0.0
        self._printed = False
        self._closed = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, n: int) -> None:
        with self._lock:
            self.done += n
            self._maybe_draw()

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1
            self._maybe_draw()

    def close(self) -> None:
        """The last line, ending the terminal's redrawn one; only if an earlier line was printed."""
        with self._lock:
            if not self._closed and not self.quiet and self._printed:
                self._write(self._line(), final=True)
            self._closed = True

    def _maybe_draw(self) -> None:
        if self.quiet or self._closed:
            return
        now = time.monotonic()
        if now - self._last_draw >= (0.1 if self.tty else self.interval):
            self._write(self._line(), final=False)
            self._last_draw = now

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        left = max(self.total - self.done, 0) / rate if rate > 0 else 0.0
        mib = 1024 * 1024
        files = f" {self.files_done}/{self.files} files" if self.files else ""
        return (f"{self.label}: {min(100 * self.done // self.total, 100):3d}% {self.done / mib:.1f}/"
                f"{self.total / mib:.1f} MiB{files} {rate / mib:.1f} MiB/s {left:.0f}s left")

    def _write(self, line: str, *, final: bool) -> None:
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._printed = True


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
    conditional = tree.storage.conditional_writes
    if conditional:
        store.ensure_conditional_writes()
    product_dir = tree.product_dir(product)
    if version is None:
        # An interrupted build of the same files resumes, wherever its marker is.
        for obj in store.list(f"{product_dir}/"):
            parts = obj.key[len(product_dir) + 1:].split("/")
            if len(parts) == 2 and parts[1] == UPLOAD_MARKER:
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
        key = f"{product_dir}/{name}/{UPLOAD_MARKER}"
        marker = _marker(product, files)
        if not any(True for _ in store.list(f"{product_dir}/{name}/")):
            try:
                etag = store.write(key, json.dumps(marker, sort_keys=True).encode(), cache_control="no-store",
                                   if_none_match=conditional)
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
    store: Store, tree: TreeConfig, product: ProductConfig, version: str, items: dict[str, Any]
) -> None:
    """Add one version to ssb.json (two builders of one product never lose each other's version)."""
    def added(manifest: dict[str, Any] | None) -> dict[str, Any]:
        manifest = manifest or {"name": product.name, "versions": {}}
        return {**manifest, "versions": {**manifest["versions"], version: {"items": items}}}

    update_manifest(store, tree, product, added, what=f"adding {version}",
                    conditional=tree.storage.conditional_writes)


def _refuse_duplicate(store: Store, tree: TreeConfig, product: ProductConfig, version: str,
                      result: IngestResult, marker_key: str) -> None:
    """The same image again (e.g. a rebuild of unchanged sources) would make clients refuse both
    ('More than one match'): drop the new folder instead of recording it."""
    manifest, _ = read_manifest(store, tree, product)
    new = fingerprints(result.items)
    for other, entry in sorted((manifest or {}).get("versions", {}).items()):
        if other != version and new & fingerprints(entry.get("items", {})):
            for filename in result.uploaded:
                store.delete(f"{tree.product_dir(product)}/{version}/{filename}")
            store.delete(marker_key)
            raise ArtifactError(
                f"{product.name}: the new build is identical to version {other} (same fingerprint); "
                "nothing recorded, its upload was removed"
            )


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
) -> IngestResult:
    """Upload one version of `product` and add it to ssb.json (see the module docstring)."""
    inspect_artifacts(dict(files), product, vm=vm)
    name, marker_etag, marker, resumed = reserve_version(
        store, tree, product, files, version=version, version_format=version_format,
        now=now or datetime.now(timezone.utc),
    )
    conditional = tree.storage.conditional_writes
    product_dir = tree.product_dir(product)
    version_dir = f"{product_dir}/{name}"
    marker_key = f"{version_dir}/{UPLOAD_MARKER}"
    result = IngestResult(product.name, name, {}, resumed=resumed)
    hasher = VersionHasher()
    total = sum(path.stat().st_size for path in files.values())
    with Progress(total, f"{product.name} {name}", files=len(files), quiet=quiet) as progress:
        for filename in upload_order(files):
            path, key = files[filename], f"{version_dir}/{filename}"
            feed = hasher.start(filename)
            there = store.head(key)
            if there is None:
                try:
                    store.ingest_file(key, path, feed=feed, digest=functools.partial(hasher.digest, filename),
                                      content_type=ARTIFACT_TYPE, cache_control=tree.cache_control.artifacts,
                                      part_size=part_size, concurrency=concurrency, progress=progress,
                                      conditional=conditional)
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
            marker_etag = store.write(marker_key, json.dumps(marker, sort_keys=True).encode(), cache_control="no-store",
                                      if_match=(marker_etag or None) if conditional else None)
    result.items = hasher.items(version_dir)
    _refuse_duplicate(store, tree, product, name, result, marker_key)
    add_version_to_manifest(store, tree, product, name, result.items)
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
