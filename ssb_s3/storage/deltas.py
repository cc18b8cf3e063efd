"""Make, check and record .vcdiff deltas (the I/O half; ssb_s3.core.deltas decides which are wanted).

publish makes the deltas its manifests want before it takes the tree's lease (only the ones that
appear under the lease are made there). For each wanted delta (a DeltaJob), in a temporary
folder removed whatever happens:
1. the base root and the new root are fetched (once per publish for a base; read in place where
   they are local already) and each one's size and sha256 checked against the manifest;
2. the early skip: SAMPLES short pieces of the new root, spread over it (runs of one byte value
   left out), are looked for in the base; when none is found the two share nothing a delta
   could use, and xdelta3 is not run;
3. the new root is fed to `xdelta3 -e -9 -s BASE`, hashed on the way and checked again; xdelta3
   is stopped as soon as its output reaches `delta_max_ratio` of the root (the delta can only
   grow): skipped;
4. the check: `xdelta3 -d -s BASE DELTA` piped into sha256 must give the new root's sha256,
   otherwise the delta is refused (never published);
5. the delta file is written create-only into the new version's folder (one already there from
   an interrupted run is taken if its sha256 is the one just made);
6. the items of every delta made are added to the product's ssb.json (If-Match, no lost update),
   before the publish reads its snapshot again and flips the index: a version and its deltas go
   out in the same commit.
Every xdelta3 run is bounded in time (timeout_for): it runs in its own session, and at the
deadline (or the output limit, or once it has exited) its whole process group is killed, so no
child it left behind holds a pipe open. The bytes fed to xdelta3 show on the one progress reporter
(ssb_s3.progress). Without xdelta3 the deltas are skipped with a warning, and any failure of one
delta skips that delta only (the publish goes on without it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..config import TreeConfig
from ..core.deltas import DeltaJob
from ..errors import PreconditionFailed, SSBError
from ..progress import Progress
from .store import CHUNK_SIZE, Store
from .tree import update_manifest

log = logging.getLogger(__name__)

ARTIFACT_TYPE = "application/octet-stream"
DELTA_TIMEOUT_BASE = 120.0  # seconds for any xdelta3 run, plus DELTA_SECONDS_PER_GB of its root
DELTA_SECONDS_PER_GB = 600.0
SAMPLES = 24  # pieces of the new root looked for in the base (none found: nothing to share)
SAMPLE_BYTES = 64
SAMPLE_MIN_SIZE = 1 << 20  # smaller roots go straight to xdelta3


class DeltaFailed(SSBError):
    """One delta could not be made or did not pass its check: it is skipped."""


class OutputLimit(DeltaFailed):
    """xdelta3's output reached the limit: stopped, the delta is not worth it."""


@dataclass
class DeltaReport:
    """What the delta step did: items added (by product, version) and why others were skipped."""

    made: list[DeltaJob] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # of each delta made
    items: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # product -> version -> items
    skipped: list[str] = field(default_factory=list)
    tried: set[DeltaJob] = field(default_factory=set)  # made or skipped


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


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process and every process it started (its own session: the group is its pid)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_piped(argv: list[str], chunks: Iterator[bytes], out: IO[bytes] | None, timeout: float,
              limit: int | None = None) -> str:
    """Run `argv` with `chunks` on its stdin and stdout to `out` (None: hashed and dropped);
    return the sha256 of what went in (out None: of what came out). Raises DeltaFailed on a
    non-zero exit or a timeout, OutputLimit once `limit` bytes came out; the process group is
    killed in every case once the process is done."""
    in_hash, out_hash = hashlib.sha256(), hashlib.sha256()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr
    feeder = threading.Thread(target=_pump, args=(chunks, proc.stdin, in_hash), daemon=True)
    feeder.start()
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(stderr.read(1 << 16)), daemon=True)
    drain.start()
    timed_out, over = threading.Event(), threading.Event()

    def read() -> None:
        written = 0
        while chunk := stdout.read(CHUNK_SIZE):
            written += len(chunk)
            if limit is not None and written >= limit:
                over.set()
                _kill_group(proc)
                return
            if out is None:
                out_hash.update(chunk)
            else:
                out.write(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def kill() -> None:
        timed_out.set()
        _kill_group(proc)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        code = proc.wait()
    finally:
        timer.cancel()
        _kill_group(proc)  # what it left behind (a child still holding a pipe: the reader ends here)
        proc.wait()
        for thread in (reader, feeder, drain):
            thread.join(timeout=5)
    if reader.is_alive():  # a process out of its group still holds the output
        raise DeltaFailed(f"{argv[0]} {argv[1]}: its output was still open after it exited")
    if over.is_set():
        raise OutputLimit(f"{argv[0]} {argv[1]}: stopped at {limit} bytes of output")
    if code != 0 or timed_out.is_set():
        why = f"timed out after {timeout:.0f}s" if timed_out.is_set() else f"exit status {code}"
        detail = b"".join(errors).decode(errors="replace").strip().splitlines()
        raise DeltaFailed(f"{argv[0]} {argv[1]}: {why}{': ' + detail[-1] if detail else ''}")
    return (out_hash if out is None else in_hash).hexdigest()


def shared_samples(base: Path, new: Path, samples: int = SAMPLES) -> tuple[int, int]:
    """(found, looked for): how many of `samples` pieces of `new`, spread evenly over it, occur
    anywhere in `base`. A piece of few byte values (zero padding...) would be found anywhere: the
    next one is taken, and after a few such the sample is left out of both counts."""
    size = new.stat().st_size
    if base.stat().st_size < SAMPLE_BYTES:
        return 0, 0
    found = looked = 0
    with base.open("rb") as bf, mmap.mmap(bf.fileno(), 0, access=mmap.ACCESS_READ) as haystack, \
            new.open("rb") as nf:
        for i in range(samples):
            nf.seek(int((i + 0.5) * size / samples))
            for _ in range(8):
                piece = nf.read(SAMPLE_BYTES)
                if len(piece) < SAMPLE_BYTES or len(set(piece)) >= SAMPLE_BYTES // 4:
                    break
            if len(piece) == SAMPLE_BYTES and len(set(piece)) >= SAMPLE_BYTES // 4:
                looked += 1
                found += haystack.find(piece) != -1
    return found, looked


def _counted(chunks: Iterator[bytes], progress: Callable[[int], None]) -> Iterator[bytes]:
    for chunk in chunks:
        progress(len(chunk))
        yield chunk


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
        if key not in self._bases:
            self._bases[key] = self._fetch(key, size, sha256, self.workdir / f"base-{len(self._bases)}")
        return self._bases[key]

    def _fetch(self, key: str, size: int, sha256: str, path: Path) -> Path:
        """The file at `key` as a local file (read in place when it is local), size and sha256 checked."""
        if key in self.local:
            return Path(self.local[key])
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
        return path

    def make(self, job: DeltaJob, progress: Callable[[int], None] = lambda n: None) -> tuple[Path, str] | str:
        """Make and check one delta: (its file, its sha256), or why it is not worth it.
        `progress` gets the bytes of the new root as xdelta3 reads them (all of them, whatever happens)."""
        fed_bytes = 0

        def fed(n: int) -> None:
            nonlocal fed_bytes
            fed_bytes += n
            progress(n)

        try:
            return self._make(job, fed)
        finally:
            progress(job.new_size - fed_bytes)

    def _make(self, job: DeltaJob, progress: Callable[[int], None]) -> tuple[Path, str] | str:
        base = self.base(job.base, job.base_size, job.base_sha256)
        new = self._fetch(job.new, job.new_size, job.new_sha256, self.workdir / "new")
        ratio = self.tree.delta_max_ratio
        not_worth = f"delta against {job.base_version} not under {ratio:g} of the full file"
        if job.new_size >= SAMPLE_MIN_SIZE:
            found, looked = shared_samples(base, new)
            if looked >= SAMPLES // 2 and not found:
                return f"{not_worth} (none of {looked} pieces of it is in the base: skipped before xdelta3)"
        out = self.workdir / "delta"
        timeout = timeout_for(job.new_size)
        limit = max(1, int(ratio * job.new_size))
        try:
            with out.open("wb") as fh:
                encode = [self.xdelta3, "-e", "-9", "-c", "-s", str(base)]
                digest = run_piped(encode, _counted(_file_chunks(new), progress), fh, timeout, limit=limit)
        except OutputLimit:
            return f"{not_worth} (xdelta3 stopped when its output reached that)"
        if digest != job.new_sha256:
            raise DeltaFailed(f"{self.store.describe(job.new)}: its sha256 is not the one ssb.json records")
        check_delta(self.xdelta3, base, out, job.new_sha256, timeout, self.store.describe(job.key))
        return out, hash_file(out)

    def publish_file(self, job: DeltaJob, path: Path, sha256: str) -> int:
        """Write the delta create-only; one already there is taken if it is this very delta."""
        digest = hashlib.sha256()
        try:
            self.store.put_new(job.key, path, feed=digest.update, digest=digest.hexdigest,
                               content_type=ARTIFACT_TYPE, cache_control=self.tree.cache_control.artifacts)
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
                check: Callable[[], None] = lambda: None, quiet: bool = False) -> DeltaReport:
    """Make, check and write every job's delta, then record them in the products' ssb.json
    (module docstring). `check` is called between deltas (the publish lease's, when it holds it)."""
    report = DeltaReport()
    if not jobs:
        return report
    xdelta3 = find_xdelta3(tree.xdelta3)
    if xdelta3 is None:
        report.skipped.append(f"{tree.xdelta3} not found (install xdelta3, or set xdelta3: in tree.yml): "
                              f"{len(jobs)} delta(s) not made")
        return report
    with tempfile.TemporaryDirectory(prefix="ssb-delta-") as tmp, \
            Progress(sum(job.new_size for job in jobs), "making deltas", files=len(jobs), quiet=quiet) as progress:
        maker = DeltaMaker(tree, store, Path(tmp), xdelta3, local)
        for job in jobs:
            check()
            started = time.monotonic()
            try:
                made = maker.make(job, progress)
                if isinstance(made, str):
                    report.skipped.append(f"{job.product} {job.version}: {made}")
                    continue
                size = maker.publish_file(job, *made)
            except (SSBError, OSError) as exc:  # e.g. the base cannot be read: this delta only is skipped
                report.skipped.append(f"{job.product} {job.version}: delta against {job.base_version}: {exc}")
                continue
            finally:
                progress.file_done()
                log.info("%s %s: delta against %s: %.1fs", job.product, job.version, job.base_version,
                         time.monotonic() - started)
                for name in ("delta", "new"):
                    (Path(tmp) / name).unlink(missing_ok=True)
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
