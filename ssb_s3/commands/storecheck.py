"""store-check: probe what an S3 store does with each conditional request the tool relies on.

Every write probes once per store and caches the verdict in .ssb-s3/store.json (storage/probe.py);
this command probes again (after a server upgrade, say) and records the new verdict. Only an S3
store is probed: a local folder honours every conditional write by construction, and an HTTP(S)
tree is read-only.
"""

from __future__ import annotations

from ..errors import SSBError
from ..storage.backends.s3 import S3Store
from ..storage.probe import Verdict
from ..storage.store import ReadableStore


def store_check(store: ReadableStore) -> Verdict:
    """Probe `store` now and cache the verdict; SSBError for a store that is not S3."""
    if not isinstance(store, S3Store):
        raise SSBError(f"{store.describe('')}: not an S3 store; a local folder honours every conditional "
                       "write by construction")
    return store.probe()
