"""One storage interface: what a store reads (`ReadableStore`) and, for the stores the tool writes to,
the one write path (`Store`). The backends (a local folder, an S3 bucket, a read-only http(s) tree)
live in ssb_s3.storage.backends, one module each, opened by URL scheme through its registry.

Keys are always '/'-separated and relative to the store's root, which is the simplestreams base
URL that clients are given. Writes never expose a partial object: the local backend writes a
temporary file and renames it; S3 PUTs are atomic by nature.

The write path is four methods, and the only code outside the backends that decides how a write
may meet what is already there:
- `put_new(key, data)`: create-only (uploads, deltas, copies, content-addressed views, upload
  markers, the lease): PreconditionFailed if the key exists;
- `replace(key, data, etag)`: only over the object read with `etag` ("": only if there is none):
  ssb.json, the index flip, the lease's renewal and takeover, the product record, upload markers;
- `put(key, data)`: overwrite whatever is there (fixed-name views, records rebuilt by every run);
- `delete(key)`.
The store is told tree.yml's `storage.conditional_writes` when it is opened: with it on, the
backend turns `put_new`/`replace` into conditional requests in the form the store honours (S3:
its probed verdict, ssb_s3.storage.probe); with it off, no request carries a conditional header:
`put_new` checks the key absent with a HEAD just before (a weaker guarantee) and `replace` writes
unconditionally. An http(s) tree is a `ReadableStore` only: writing to it does not type-check.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from ..errors import PreconditionFailed, TooLarge

CHUNK_SIZE = 8 * 1024 * 1024
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing tells about one object."""

    key: str
    size: int
    etag: str = ""
    sha256: str = ""  # recorded in the object's metadata by ingest (single-part uploads)


@dataclass(frozen=True)
class Expect:
    """What a conditional write requires of its key: the object with this ETag, or ("") none at all.
    Made only by `Store` from `put_new`/`replace` with conditional writes on; a backend sends it."""

    etag: str = ""


def _ignore(_: int) -> None:
    return None


class ReadableStore(ABC):
    """The reads publish, manifests, mirror and verify need; nothing backend-specific leaks out."""

    url: str

    def describe(self, key: str) -> str:
        """A location users recognise in messages (`s3://bucket/prefix/key`, a file path)."""
        return f"{self.url.rstrip('/')}/{key}"

    def absent_reason(self, key: str) -> str:
        """Why `key` is not in a listing, for messages: a backend that leaves entries out says why."""
        return "does not exist"

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size and etag of one object, or None if it does not exist."""

    @abstractmethod
    def read_with_etag(self, key: str) -> tuple[bytes, str]:
        """Whole content and its etag (for a later `replace`); raises NotFound."""

    def read(self, key: str) -> bytes:
        return self.read_with_etag(key)[0]

    def read_limited(self, key: str, limit: int) -> tuple[bytes, str]:
        """`read_with_etag`, refusing (TooLarge) an object over `limit` bytes; the stores that can
        (local, S3) never read more than `limit` + 1 bytes of it."""
        data, etag = self.read_with_etag(key)
        if len(data) > limit:
            raise TooLarge(f"{self.describe(key)}: {len(data)} bytes, over the limit of {limit} bytes")
        return data, etag

    @abstractmethod
    def iter_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Stream an object in chunks, constant memory whatever its size; raises NotFound."""

    def open_reader(self, key: str) -> BinaryIO:
        """A read-only file object over `iter_chunks`, for streaming copies between stores."""
        return cast(BinaryIO, io.BufferedReader(_ChunkReader(self.iter_chunks(key)), CHUNK_SIZE))


class Store(ReadableStore):
    """A store the tool writes to, through the write path of the module docstring."""

    # tree.yml's storage.conditional_writes, given when the store is opened (see the module docstring)
    conditional_writes: bool = True
    # Called with the key before every write and delete; while a job holds the tree's lease it is
    # the lease's check (ssb_s3.storage.lease): a job whose lease is lost stops before its next write.
    guard: Callable[[str], None] | None = None
    # Called with the location (`describe(key)`) and the new ETag after every successful write of
    # bytes: the hooks recognise the bucket events of their own writes by it (ssb_s3.hooks.republish).
    written: Callable[[str, str], None] | None = None

    def _before_write(self, key: str) -> None:
        if self.guard is not None:
            self.guard(key)

    def _after_write(self, key: str, etag: str) -> str:
        if self.written is not None:
            self.written(self.describe(key), etag)
        return etag

    def ensure_conditional_writes(self) -> None:
        """Raise StoreError unless this store honours create-only and replace-if-match writes (a
        no-op with conditional writes off). A local folder does by construction (a lock and
        create-only links); an S3 store is probed once (ssb_s3.storage.probe)."""
        return None

    # -- the write path ------------------------------------------------------------------------------

    def put(self, key: str, data: bytes | BinaryIO, *, content_type: str = JSON_TYPE,
            cache_control: str = "no-cache") -> str:
        """Store `data` at `key` whatever is there; returns the new ETag ("" for a stream, which is
        sent streaming: multipart on S3)."""
        self._before_write(key)
        if isinstance(data, bytes):
            return self._after_write(key, self._write(key, data, content_type=content_type,
                                                      cache_control=cache_control, expect=None))
        self._upload(key, data, content_type=content_type, cache_control=cache_control)
        return ""

    def replace(self, key: str, data: bytes, etag: str, *, content_type: str = JSON_TYPE,
                cache_control: str = "no-cache") -> str:
        """Store `data` over the object read with `etag` ("": only if there is none); PreconditionFailed
        when someone else changed (or created) it meanwhile. Returns the new ETag. With conditional
        writes off: written whatever is there."""
        self._before_write(key)
        expect = Expect(etag) if self.conditional_writes else None
        return self._after_write(key, self._write(key, data, content_type=content_type,
                                                  cache_control=cache_control, expect=expect))

    def put_new(
        self,
        key: str,
        data: bytes | Path | BinaryIO,
        *,
        size: int | None = None,
        content_type: str = JSON_TYPE,
        cache_control: str = "no-cache",
        feed: Callable[[bytes], None] | None = None,
        digest: Callable[[], str] | None = None,
        progress: Callable[[int], None] = _ignore,
        part_size: int = CHUNK_SIZE,
        concurrency: int = 4,
    ) -> str:
        """Create `key`: PreconditionFailed if it exists. Bytes are one request (returns the ETag); a
        file or a stream of `size` bytes is read exactly once, streaming (returns ""): every chunk read
        goes to `feed` (the caller hashes it) and to the store, `digest()` is called once everything
        was fed (the object's metadata, where the backend can still set it); the stream may raise while
        it is read (a verifying reader at a sha256 mismatch): then nothing is created. Constant memory:
        at most `concurrency` + 1 parts at a time. With conditional writes off the key is checked with
        a HEAD just before the object is committed, so a concurrent creator in between is not detected."""
        if isinstance(data, Path):
            with data.open("rb") as src:
                return self.put_new(key, cast(BinaryIO, src), size=data.stat().st_size, content_type=content_type,
                                    cache_control=cache_control, feed=feed, digest=digest, progress=progress,
                                    part_size=part_size, concurrency=concurrency)
        self._before_write(key)
        if isinstance(data, bytes):
            if feed is not None:
                feed(data)
            if not self.conditional_writes:
                self._refuse_existing(key)
            return self._after_write(key, self._write(key, data, content_type=content_type,
                                                      cache_control=cache_control,
                                                      expect=Expect() if self.conditional_writes else None))
        if size is None:
            raise ValueError("put_new of a stream needs its size")
        self._ingest(key, data, size, feed=feed or (lambda chunk: None), digest=digest or (lambda: ""),
                     content_type=content_type, cache_control=cache_control, part_size=part_size,
                     concurrency=concurrency, progress=progress)
        return ""

    def _refuse_existing(self, key: str) -> None:
        """Create-only without a conditional header (storage.conditional_writes: false): a HEAD."""
        if self.head(key) is not None:
            raise PreconditionFailed(f"{self.describe(key)}: already exists")

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; a missing one is not an error."""

    # -- what a backend implements (called after `_before_write`) ------------------------------------

    @abstractmethod
    def _write(self, key: str, data: bytes, *, content_type: str, cache_control: str,
               expect: Expect | None) -> str:
        """Store `data` in one atomic step, only if `expect` holds (None: whatever is there), and
        return the new ETag; PreconditionFailed when it does not hold."""

    @abstractmethod
    def _upload(self, key: str, fileobj: BinaryIO, *, content_type: str, cache_control: str) -> None:
        """Store a large object from a file object, streaming, whatever is there."""

    @abstractmethod
    def _ingest(self, key: str, src: BinaryIO, size: int, *, feed: Callable[[bytes], None],
                digest: Callable[[], str], content_type: str, cache_control: str, part_size: int,
                concurrency: int, progress: Callable[[int], None]) -> None:
        """`put_new` of a stream (see there): create-only, conditionally as `conditional_writes` says."""


class _ChunkReader(io.RawIOBase):
    """Adapts an iterator of byte chunks to a raw file object."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
