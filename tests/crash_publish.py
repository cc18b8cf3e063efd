"""Run one publish that stops dead (os._exit, no cleanup) right after its N-th storage write.

Used by test_crash.py in a subprocess: a real stop, like a killed container or a lost host, so
the lease stays behind and nothing in `finally` blocks runs. Writes are create/replace, upload
and delete; lease renewals (background, timing-dependent) are not counted so that crash points
are the same from run to run (the views written concurrently may swap places, and either order
is a valid crash point).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ssb_s3.commands.publish import PublishOptions, publish
from ssb_s3.config import load_config
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.lease import LEASE_KEY
from ssb_s3.storage.store import ObjectInfo, Store

CRASH_EXIT = 99


class CrashingStore(Store):
    """Delegates to a real store; exits the process right after the N-th write."""

    def __init__(self, inner: Store, crash_after: int) -> None:
        self.inner = inner
        self.url = inner.url
        self.conditional_writes = inner.conditional_writes
        self.crash_after = crash_after
        self.writes: list[str] = []
        self._lock = threading.Lock()

    def _count(self, what: str) -> None:
        with self._lock:  # views are written concurrently: count and check as one step
            self.writes.append(what)
            print(what, flush=True)
            if len(self.writes) == self.crash_after:
                os._exit(CRASH_EXIT)

    def describe(self, key: str) -> str:
        return self.inner.describe(key)

    def ensure_conditional_writes(self) -> None:
        self.inner.ensure_conditional_writes()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def head(self, key: str) -> ObjectInfo | None:
        return self.inner.head(key)

    def read_with_etag(self, key: str) -> tuple[bytes, str]:
        return self.inner.read_with_etag(key)

    def iter_chunks(self, key: str, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        return self.inner.iter_chunks(key, chunk_size)

    def put(self, key: str, data: bytes | BinaryIO, **kwargs: Any) -> str:
        etag = self.inner.put(key, data, **kwargs)
        self._count(f"write {key}" if isinstance(data, bytes) else f"upload {key}")
        return etag

    def replace(self, key: str, data: bytes, etag: str, **kwargs: Any) -> str:
        new = self.inner.replace(key, data, etag, **kwargs)
        if not (key == LEASE_KEY and etag):  # renewals are timing-dependent
            self._count(f"write {key}")
        return new

    def put_new(self, key: str, data: bytes | Path | BinaryIO, **kwargs: Any) -> str:
        etag = self.inner.put_new(key, data, **kwargs)
        self._count(f"write {key}" if isinstance(data, bytes) else f"ingest {key}")
        return etag

    def _write(self, key: str, data: bytes, **kwargs: Any) -> str:
        raise AssertionError("every write goes through put, replace or put_new")

    _upload = _ingest = _write

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        self._count(f"delete {key}")


def main() -> None:
    config, target, crash_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tree = load_config(config)
    store = CrashingStore(open_store(target, tree.storage), crash_after)
    publish(tree, store, PublishOptions(lock_timeout=60))
    print("completed", flush=True)


if __name__ == "__main__":
    main()
