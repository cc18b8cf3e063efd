"""The store backends, one module each, and the registry that opens a URL with its backend.

`BACKENDS` maps a URL scheme to its backend's opener (one line per backend); a URL without a scheme is
a local folder. `open_readable` gives any store (a read-only http(s) tree too); `open_store` gives a
store to write to, and refuses with one line a URL whose backend is read-only by type. Both refuse,
before any request, a likely typo of s3:// (`s3:/x`, `S3:x`: `./s3:x` names such a folder) and a URL
scheme no backend serves. Each store is told tree.yml's storage section (storage.conditional_writes:
the write path of ssb_s3.storage.store).
"""

from __future__ import annotations

from collections.abc import Callable

from ...config import StorageConfig
from ...errors import StoreError
from ..store import ReadableStore, Store
from .http import open_http
from .local import open_local
from .s3 import S3_TYPO, open_s3

Opener = Callable[[str, StorageConfig], ReadableStore]

BACKENDS: dict[str, Opener] = {
    "s3": open_s3,
    "https": open_http,
    "http": open_http,
}


def open_readable(url: str, storage: StorageConfig | None = None) -> ReadableStore:
    """The store at `url`: `scheme://...` by its backend in BACKENDS, anything else without a scheme a
    local folder."""
    storage = storage or StorageConfig()
    scheme, sep, _ = url.partition("://")
    if sep and scheme in BACKENDS:
        return BACKENDS[scheme](url, storage)
    if S3_TYPO.match(url):
        raise StoreError(f"'{url}': looks like a mistyped s3://BUCKET[/PREFIX]; to publish to a local folder "
                         f"of that name, write ./{url}")
    if sep:
        raise StoreError(f"'{url}': unsupported URL; expected an http(s):// URL (read-only), "
                         "s3://BUCKET[/PREFIX] or a local folder")
    return open_local(url, storage)


def open_store(url: str, storage: StorageConfig | None = None) -> Store:
    """The store at `url` to write to (`open_readable`); a read-only one is refused with one line."""
    store = open_readable(url, storage)
    if not isinstance(store, Store):
        raise StoreError(f"{store.url}: an http(s) URL is read-only; publish to a folder or s3:// URL")
    return store
