"""A published tree read over http(s) as a store (`HttpStore`): read-only by type.

HttpStore is a ReadableStore only (ssb_s3.storage.store): it has no write method, so a write to it
does not type-check, and `open_store` (ssb_s3.storage.backends) refuses an http(s) URL where a store
to write to is wanted. It cannot list (a web server has no listing a client may rely on).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

from ...config import StorageConfig
from ...core.catalog import _path_problem
from ...errors import NotFound, StoreError
from ..httpread import Limits, Response, open_url, shown
from ..store import CHUNK_SIZE, ObjectInfo, ReadableStore


class HttpStore(ReadableStore):
    """A published tree read over HTTP(S), as a client reads it (for `verify`): read-only.

    Every request goes through ssb_s3.storage.httpread with `limits` (deadline, per-read timeout, a size cap
    for whole documents); a key that is not a plain relative path is refused before any request.
    A 404 is NotFound (`head` gives None); a 403 is Forbidden for every method, as S3 answers it for
    a missing key too: the caller that knows the key is optional reads it in httpread.optional_key().
    """

    def __init__(self, base_url: str, limits: Limits | None = None) -> None:
        if "@" in base_url.partition("://")[2].partition("/")[0]:  # user:password@host
            raise StoreError(f"'{shown(base_url)}': a user or password in the URL is not supported (it would be "
                             "shown in every message, and is never sent): give the URL without it")
        self.url = base_url.rstrip("/")
        self.limits = limits or Limits()

    def _open(self, key: str, method: str = "GET") -> Response:
        why = _path_problem(key)
        if why:
            raise StoreError(f"{self.url}: refusing key '{key}', not sent to the server: {why}")
        url = f"{self.url}/{urllib.parse.quote(key)}"
        return open_url(url, method=method, limits=self.limits, user_agent="ssb-s3-verify")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        raise StoreError(f"{self.url}: cannot list over HTTP")

    def head(self, key: str) -> ObjectInfo | None:
        try:
            with self._open(key, "HEAD") as resp:
                size = -1 if resp.length is None else resp.length
                return ObjectInfo(key, size, resp.headers.get("ETag", ""))
        except NotFound:
            return None

    def read_with_etag(self, key: str) -> tuple[bytes, str]:
        with self._open(key) as resp:
            return resp.read(key.rsplit("/", 1)[-1]), resp.headers.get("ETag", "")

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The body as it comes (at most chunk_size per chunk); the caller bounds the total."""
        with self._open(key) as resp:
            yield from resp.chunks(size=chunk_size)


def open_http(url: str, storage: StorageConfig) -> HttpStore:
    """The registry's opener of an http(s):// tree (ssb_s3.storage.backends)."""
    return HttpStore(url)
