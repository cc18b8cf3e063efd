"""A folder on disk as a store (`LocalStore`): any path without a URL scheme.

Writes are a temporary file beside the object, synced, then renamed into place (never a partial
object); create-only streams are linked into place (atomic, fails if the key appeared meanwhile);
`replace` and create-only bytes compare under an exclusive flock on the root folder, so the local
folder honours conditional writes by construction, without any header. A folder's objects are its
regular files inside it: a symlink leading out of the folder, a FIFO or a device is never listed
nor read (see LocalStore).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ...config import StorageConfig
from ...errors import NotFound, PreconditionFailed, StoreError, TooLarge
from ...vocabulary.layout import LEGACY_LOCK_KEY
from ..store import CHUNK_SIZE, Expect, ObjectInfo, Store

log = logging.getLogger(__name__)

TEMP_MARK = ".ssb-tmp-"


def _file_kind(mode: int) -> str:
    """What a non-regular file is, for messages."""
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "not a regular file"


class LocalStore(Store):
    """A folder on disk, e.g. served by any static HTTPS server.

    Keys are plain relative paths ('.', '..' and empty parts are refused). Only regular files
    are objects: a FIFO, a device, a socket or a folder is not, and neither is a symlink that
    resolves outside the store's root folder (or dangles, or loops). A symlink that stays inside
    the root is followed. Listings leave every non-object out, with one warning naming the file
    and what it is (for a symlink: where it points); reads refuse it with a StoreError saying the
    same, and never block: a file is opened non-blocking and checked with fstat before any byte
    is read. So a version file that is a symlink to /etc/... or to /dev/zero, or a FIFO, is never
    hashed, copied nor published.
    """

    def __init__(self, root: str | Path, *, conditional_writes: bool = True) -> None:
        self.root = Path(root)
        self.conditional_writes = conditional_writes
        self.url = str(self.root)
        self._warned: set[str] = set()

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise StoreError(f"refusing key '{key}': not a plain relative path")
        return self.root.joinpath(*parts)

    def describe(self, key: str) -> str:
        try:
            return str(self._path(key))
        except StoreError:
            return f"{self.url.rstrip('/')}/{key}"  # for messages only: never touched

    @staticmethod
    def _etag(st: os.stat_result) -> str:
        return f"{st.st_mtime_ns:x}-{st.st_size:x}"

    @staticmethod
    def _inside(real: str, real_root: str) -> bool:
        return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)

    def _not_an_object(
        self, path: Path, real_root: str, *, walked: bool = False
    ) -> tuple[str | None, os.stat_result | None]:
        """(why `path` is no object, None) or (None, its stat); (None, None) if nothing is there.

        `walked`: found by os.walk from the root, so only its last part can be a symlink."""
        if not walked or os.path.islink(path):
            real = os.path.realpath(path)
            if not self._inside(real, real_root):
                how = "is a symlink" if os.path.islink(path) else "leads through a symlink"
                return f"{how} to {real}, outside the folder {real_root}", None
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            if os.path.islink(path):
                return f"is a symlink to {os.path.realpath(path)}, which does not exist", None
            return None, None
        except OSError as exc:
            return f"cannot be read ({exc.strerror})", None
        if not stat.S_ISREG(st.st_mode):
            return f"is {_file_kind(st.st_mode)}, not a regular file", None
        return None, st

    def _left_out(self, path: Path, why: str) -> None:
        if str(path) not in self._warned:
            self._warned.add(str(path))
            log.warning("%s: %s: left out (only regular files inside %s count)", path, why, self.root)

    def absent_reason(self, key: str) -> str:
        try:
            why, _ = self._not_an_object(self._path(key), os.path.realpath(self.root))
        except StoreError as exc:
            return str(exc)
        return f"{why}: refused" if why else "does not exist"

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            return
        real_root = os.path.realpath(self.root)
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            for name in filenames:
                if TEMP_MARK in name or rel_dir + name == LEGACY_LOCK_KEY:
                    continue
                key = rel_dir + name
                if not key.startswith(prefix):
                    continue
                path = Path(dirpath, name)
                why, st = self._not_an_object(path, real_root, walked=True)
                if why:
                    self._left_out(path, why)
                elif st is not None:
                    found.append(ObjectInfo(key, st.st_size, self._etag(st)))
        yield from sorted(found, key=lambda o: o.key)

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        why, st = self._not_an_object(path, os.path.realpath(self.root))
        if why:
            self._left_out(path, why)
        return None if st is None else ObjectInfo(key, st.st_size, self._etag(st))

    def _open(self, key: str) -> BinaryIO:
        """Open an object for reading: a regular file inside the root, or NotFound / StoreError."""
        path = self._path(key)
        why, st = self._not_an_object(path, os.path.realpath(self.root))
        if why:
            raise StoreError(f"{path}: {why}: refused")
        if st is None:
            raise NotFound(f"{path}: not found")
        try:  # non-blocking: a FIFO swapped in since the check must not hang the open
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"{path}: not found") from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot read: {exc.strerror}") from None
        mode = os.fstat(fd).st_mode
        why = None if stat.S_ISREG(mode) else f"is {_file_kind(mode)}, not a regular file"
        with contextlib.suppress(OSError):  # what was opened, not what the path was a moment ago (Linux)
            real = os.readlink(f"/proc/self/fd/{fd}")
            if not self._inside(real, os.path.realpath(self.root)):
                why = f"is a symlink to {real}, outside the folder {os.path.realpath(self.root)}"
        if why:
            os.close(fd)
            raise StoreError(f"{path}: {why}: refused")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def read_with_etag(self, key: str) -> tuple[bytes, str]:
        with self._open(key) as fh:
            try:
                st = os.fstat(fh.fileno())
                return fh.read(), self._etag(st)
            except OSError as exc:
                raise StoreError(f"{self._path(key)}: cannot read: {exc.strerror}") from None

    def read_limited(self, key: str, limit: int) -> tuple[bytes, str]:
        path = self._path(key)
        try:  # through _open, as every read: symlinks confined, a FIFO or device refused, never blocking
            with self._open(key) as fh:
                st = os.fstat(fh.fileno())
                data = fh.read(limit + 1) if st.st_size <= limit else b""
                if st.st_size > limit or len(data) > limit:
                    raise TooLarge(f"{path}: {max(st.st_size, len(data))} bytes, over the limit of {limit} bytes")
                return data, self._etag(st)
        except FileNotFoundError:
            raise NotFound(f"{path}: not found") from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot read: {exc.strerror}") from None

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        with self._open(key) as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Serialise conditional writes between processes sharing this folder: an exclusive flock on
        the root folder itself (the same folder is the same inode whatever path names it), so no
        lock file sits in the served tree."""
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StoreError(f"{self.root}: cannot open the folder to lock it: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise StoreError(f"{self.root}: cannot lock the folder: {exc.strerror}") from None
            yield
        finally:
            os.close(fd)  # closing the only descriptor releases the lock

    @contextlib.contextmanager
    def _staged(self, path: Path) -> Iterator[tuple[BinaryIO, Path]]:
        """A temporary file beside `path`, synced when the block ends; the block's caller puts it
        in place (rename or link). Never truncates `path` in place; the temporary file is removed
        whatever happens; OS errors become a StoreError naming `path`."""
        tmp = ""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_MARK}")
            with os.fdopen(fd, "wb") as out:
                yield out, Path(tmp)
        except OSError as exc:
            hint = " (disk full)" if exc.errno == errno.ENOSPC else ""
            raise StoreError(f"{path}: cannot write: {exc.strerror}{hint}") from None
        finally:
            if tmp:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    @staticmethod
    def _sync(out: BinaryIO, tmp: Path) -> None:
        out.flush()
        os.fsync(out.fileno())
        os.chmod(tmp, 0o644)

    def _write(self, key: str, data: bytes, *, content_type: str, cache_control: str,
               expect: Expect | None) -> str:
        path = self._path(key)
        with self._staged(path) as (out, tmp):
            out.write(data)
            self._sync(out, tmp)
            with self._write_lock():
                current = self.head(key)
                if expect is not None and not expect.etag and current is not None:
                    raise PreconditionFailed(f"{path}: already exists")
                if expect is not None and expect.etag and (current is None or current.etag != expect.etag):
                    raise PreconditionFailed(f"{path}: changed since it was read")
                os.replace(tmp, path)
                return self._etag(path.stat())

    def _upload(self, key: str, fileobj: BinaryIO, *, content_type: str, cache_control: str) -> None:
        path = self._path(key)
        with self._staged(path) as (out, tmp):
            shutil.copyfileobj(fileobj, out, CHUNK_SIZE)
            self._sync(out, tmp)
            os.replace(tmp, path)

    def _ingest(self, key: str, src: BinaryIO, size: int, *, feed: Callable[[bytes], None],
                digest: Callable[[], str], content_type: str, cache_control: str, part_size: int,
                concurrency: int, progress: Callable[[int], None]) -> None:
        """Always create-only, conditional writes on or off: a local link is atomic without any header."""
        dest = self._path(key)
        if dest.exists():
            raise PreconditionFailed(f"{dest}: already exists")
        with self._staged(dest) as (out, tmp):
            while chunk := src.read(part_size):
                feed(chunk)
                out.write(chunk)
                progress(len(chunk))
            self._sync(out, tmp)
            try:
                os.link(tmp, dest)  # create-only, atomic: fails if someone created it meanwhile
            except FileExistsError:
                raise PreconditionFailed(f"{dest}: already exists") from None

    def delete(self, key: str) -> None:
        self._before_write(key)
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()


def open_local(url: str, storage: StorageConfig) -> LocalStore:
    """The registry's opener of a folder (ssb_s3.storage.backends)."""
    return LocalStore(url, conditional_writes=storage.conditional_writes)
