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
from typing import Any, BinaryIO

from ssb_s3.commands.publish import PublishOptions, publish
from ssb_s3.config import load_config
from ssb_s3.storage.lease import LEASE_KEY
from ssb_s3.storage.store import ObjectInfo, Store, open_store

CRASH_EXIT = 99


class CrashingStore(Store):
    """Delegates to a real store; exits the process right after the N-th write."""

    def __init__(self, inner: Store, crash_after: int) -> None:
        self.inner = inner
        self.url = inner.url
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

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def head(self, key: str) -> ObjectInfo | None:
        return self.inner.head(key)

    def read_with_etag(self, key: str) -> tuple[bytes, str]:
        return self.inner.read_with_etag(key)

    def iter_chunks(self, key: str, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        return self.inner.iter_chunks(key, chunk_size)

    def write(self, key: str, data: bytes, **kwargs: Any) -> str:
        etag = self.inner.write(key, data, **kwargs)
        if not (key == LEASE_KEY and kwargs.get("if_match")):  # renewals are timing-dependent
            self._count(f"write {key}")
        return etag

    def upload(self, key: str, fileobj: BinaryIO, *, content_type: str, cache_control: str) -> None:
        self.inner.upload(key, fileobj, content_type=content_type, cache_control=cache_control)
        self._count(f"upload {key}")

    def ingest_file(self, key: str, path: Any, **kwargs: Any) -> None:
        self.inner.ingest_file(key, path, **kwargs)
        self._count(f"ingest {key}")

    def ingest_stream(self, key: str, src: BinaryIO, size: int, **kwargs: Any) -> None:
        self.inner.ingest_stream(key, src, size, **kwargs)
        self._count(f"ingest {key}")

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
