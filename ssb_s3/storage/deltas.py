"""Make, check and record .vcdiff deltas (the I/O half; ssb_s3.core.deltas decides which are wanted).

For each wanted delta (a DeltaJob), in a temporary folder removed whatever happens:
1. the base root is fetched once per publish (or read where it already is locally) and its
   sha256 checked against the manifest;
2. the new root is streamed from the store (or read locally: build-product's files) into
   `xdelta3 -e -9 -s BASE`, hashed on the way, its sha256 checked against the manifest;
3. a delta not smaller than `delta_max_ratio` of the root is skipped;
4. the check: `xdelta3 -d -s BASE DELTA` piped into sha256 must give the new root's sha256,
   otherwise the delta is refused (never published);
5. the delta file is written create-only into the new version's folder (one already there from
   an interrupted run is taken if its sha256 is the one just made);
6. the items of every delta made are added to the product's ssb.json (If-Match, no lost update),
   before the publish reads its snapshot again and flips the index: a version and its deltas go
   out in the same commit.
Every xdelta3 run is bounded in time (DELTA_TIMEOUT); without xdelta3 the deltas are skipped with
a warning, and any failure of one delta skips that delta only (the publish goes on without it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..config import TreeConfig
from ..core.deltas import DeltaJob
from ..errors import PreconditionFailed, SSBError
from .store import CHUNK_SIZE, Store
from .tree import update_manifest

log = logging.getLogger(__name__)

ARTIFACT_TYPE = "application/octet-stream"
DELTA_TIMEOUT_BASE = 120.0  # seconds for any xdelta3 run, plus DELTA_SECONDS_PER_GB of its root
DELTA_SECONDS_PER_GB = 600.0


class DeltaFailed(SSBError):
    """One delta could not be made or did not pass its check: it is skipped."""


@dataclass
class DeltaReport:
    """What the delta step did: items added (by product, version) and why others were skipped."""

    made: list[DeltaJob] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # of each delta made
    items: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # product -> version -> items
    skipped: list[str] = field(default_factory=list)


def find_xdelta3(program: str) -> str | None:
    """The xdelta3 program to run (tree.yml `xdelta3`: a name on PATH or a path), or None."""
    return shutil.which(program)


def timeout_for(size: int) -> float:
    return DELTA_TIMEOUT_BASE + DELTA_SECONDS_PER_GB * size / 1e9


def _pump(chunks: Iterator[bytes], sink: IO[bytes], hasher: Any) -> None:
    """Feed `chunks` to a process's stdin, hashing them; a process that stops reading ends it."""
    try:
        for chunk in chunks:
            hasher.update(chunk)
            sink.write(chunk)
    except (BrokenPipeError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError, ValueError):
            sink.close()


def run_piped(argv: list[str], chunks: Iterator[bytes], out: IO[bytes] | None, timeout: float) -> str:
    """Run `argv` with `chunks` on its stdin and stdout to `out` (None: hashed and dropped);
    return the sha256 of what went in (out None: of what came out). Raises DeltaFailed on a
    non-zero exit or a timeout (the process is killed)."""
    in_hash, out_hash = hashlib.sha256(), hashlib.sha256()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out if out is not None else subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    feeder = threading.Thread(target=_pump, args=(chunks, proc.stdin, in_hash), daemon=True)
    feeder.start()
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(proc.stderr.read(1 << 16) if proc.stderr else b""),
                             daemon=True)
    drain.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        if out is None:
            assert proc.stdout is not None
            while chunk := proc.stdout.read(CHUNK_SIZE):
                out_hash.update(chunk)
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        feeder.join(timeout=5)
        drain.join(timeout=5)
    if code != 0:
        why = f"timed out after {timeout:.0f}s" if timed_out.is_set() else f"exit status {code}"
        detail = b"".join(errors).decode(errors="replace").strip().splitlines()
        raise DeltaFailed(f"{argv[0]} {argv[1]}: {why}{': ' + detail[-1] if detail else ''}")
    return (out_hash if out is None else in_hash).hexdigest()


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            yield chunk


class DeltaMaker:
    """Makes the deltas of one publish; bases are fetched once into `workdir`."""

    def __init__(self, tree: TreeConfig, store: Store, workdir: Path, xdelta3: str,
                 local: Mapping[str, str] | None = None) -> None:
        self.tree, self.store, self.workdir, self.xdelta3 = tree, store, workdir, xdelta3
        self.local = dict(local or {})  # store key -> a local file with the same content
        self._bases: dict[str, Path] = {}

    def _chunks(self, key: str, size: int) -> Iterator[bytes]:
        """The file's bytes, never more than `size` + 1 (a longer one then fails its sha256 check)."""
        chunks = _file_chunks(Path(self.local[key])) if key in self.local else self.store.iter_chunks(key)
        left = size + 1
        for chunk in chunks:
            yield chunk[:left]
            left -= len(chunk)
            if left <= 0:
                return

    def base(self, key: str, size: int, sha256: str) -> Path:
        """The base root as a local file (fetched once per publish, unless it is local already)."""
        if key in self.local:
            return Path(self.local[key])
        if key not in self._bases:
            path = self.workdir / f"base-{len(self._bases)}"
            digest = hashlib.sha256()
            written = 0
            with path.open("wb") as out:
                for chunk in self._chunks(key, size):  # never past what ssb.json says, whatever the store sends
                    written += len(chunk)
                    digest.update(chunk)
                    out.write(chunk)
            if written != size or digest.hexdigest() != sha256:
                path.unlink()
                raise DeltaFailed(f"{self.store.describe(key)}: its size or sha256 is not the one ssb.json records")
            self._bases[key] = path
        return self._bases[key]

    def make(self, job: DeltaJob) -> tuple[Path, str] | None:
        """Make and check one delta: (its file, its sha256), or None when it is not worth it."""
        base = self.base(job.base, job.base_size, job.base_sha256)
        out = self.workdir / "delta"
        timeout = timeout_for(job.new_size)
        with out.open("wb") as fh:
            encode = [self.xdelta3, "-e", "-9", "-c", "-s", str(base)]
            fed = run_piped(encode, self._chunks(job.new, job.new_size), fh, timeout)
        if fed != job.new_sha256:
            raise DeltaFailed(f"{self.store.describe(job.new)}: its sha256 is not the one ssb.json records")
        size = out.stat().st_size
        limit = self.tree.delta_max_ratio * job.new_size
        if size >= limit:
            log.info("%s: delta against %s is %d bytes, not under %.0f%% of %d: skipped", job.new, job.base_version,
                     size, 100 * self.tree.delta_max_ratio, job.new_size)
            return None
        check_delta(self.xdelta3, base, out, job.new_sha256, timeout, self.store.describe(job.key))
        return out, hash_file(out)

    def publish_file(self, job: DeltaJob, path: Path, sha256: str) -> int:
        """Write the delta create-only; one already there is taken if it is this very delta."""
        digest = hashlib.sha256()
        try:
            self.store.ingest_file(job.key, path, feed=digest.update, digest=digest.hexdigest,
                                   content_type=ARTIFACT_TYPE, cache_control=self.tree.cache_control.artifacts,
                                   conditional=self.tree.storage.conditional_writes)
        except PreconditionFailed:
            there = hashlib.sha256()
            for chunk in self._chunks(job.key, path.stat().st_size):
                there.update(chunk)
            if there.hexdigest() != sha256:
                raise DeltaFailed(f"{self.store.describe(job.key)} already exists with other content; "
                                  "not overwritten") from None
        return path.stat().st_size


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    for chunk in _file_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def check_delta(xdelta3: str, base: Path, delta: Path, expected: str, timeout: float, what: str) -> None:
    """Decode `delta` against `base` and compare the result's sha256 with `expected` (DeltaFailed if not)."""
    try:
        got = run_piped([xdelta3, "-d", "-c", "-s", str(base), str(delta)], iter(()), None, timeout)
    except DeltaFailed as exc:
        raise DeltaFailed(f"{what}: the check could not decode it against its base ({exc}); refused") from None
    if got != expected:
        raise DeltaFailed(f"{what}: decoding it gives sha256 {got[:12]}…, not the new root's {expected[:12]}…; "
                          "refused")


def make_deltas(tree: TreeConfig, store: Store, jobs: list[DeltaJob], *, local: Mapping[str, str] | None = None,
                check: Callable[[], None] = lambda: None) -> DeltaReport:
    """Make, check and write every job's delta, then record them in the products' ssb.json
    (module docstring). `check` is called between deltas (the publish lease's)."""
    report = DeltaReport()
    if not jobs:
        return report
    xdelta3 = find_xdelta3(tree.xdelta3)
    if xdelta3 is None:
        report.skipped.append(f"{tree.xdelta3} not found (install xdelta3, or set xdelta3: in tree.yml): "
                              f"{len(jobs)} delta(s) not made")
        return report
    with tempfile.TemporaryDirectory(prefix="ssb-delta-") as tmp:
        maker = DeltaMaker(tree, store, Path(tmp), xdelta3, local)
        for job in jobs:
            check()
            try:
                made = maker.make(job)
                if made is None:
                    report.skipped.append(f"{job.product} {job.version}: delta against {job.base_version} "
                                          f"not under {tree.delta_max_ratio:g} of the full file")
                    continue
                size = maker.publish_file(job, *made)
            except (SSBError, OSError) as exc:  # e.g. the base cannot be read: this delta only is skipped
                report.skipped.append(f"{job.product} {job.version}: delta against {job.base_version}: {exc}")
                continue
            finally:
                (Path(tmp) / "delta").unlink(missing_ok=True)
            report.made.append(job)
            report.sizes.append(size)
            report.items.setdefault(job.product, {}).setdefault(job.version, {})[job.item_key] = \
                job.item(size, made[1])
    for product, versions in report.items.items():
        update_manifest(store, tree, tree.product(product), _with_deltas(versions), what="adding deltas")
    return report


def _with_deltas(new: Mapping[str, Mapping[str, Any]]) -> Callable[[dict[str, Any] | None], dict[str, Any] | None]:
    """An ssb.json change adding delta items to the versions still there (a version's root never
    changes: its files are written create-only, and publish refuses a changed published file)."""
    def change(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
        if manifest is None:
            return None
        versions = dict(manifest["versions"])
        for vname, items in new.items():
            if vname in versions:
                versions[vname] = {**versions[vname], "items": {**versions[vname]["items"], **items}}
        return {**manifest, "versions": versions}
    return change
