"""Signed streams, the pure half: which signed files a publish writes and what each one signs.

Signing is an effect (it runs GnuPG and its output carries a timestamp), so it is not a renderer in
VIEWS: the views stay pure. This module turns the rendered views into *signing requests* (the key
of the signed file, the exact bytes to sign, clearsigned or detached); ssb_s3.gpg runs gpg over
them and returns ordinary Views, which the tree owner (ssb_s3.storage.tree) writes in the commit
before the index flip. Nothing here runs a program or touches a store.

The signed files, following python-simplestreams' naming (a `.json` document's clearsigned twin is
its `.sjson`):
- `<catalog dir>/images-<hash>.sjson`: the content-addressed catalog, clearsigned (create-only,
  purged with its catalog: ssb_s3.core.retention.catalog_of_view knows this name);
- `<catalog dir>/images.sjson`: the plain images.json copy, clearsigned;
- `streams/v1/index.sjson`: the index, clearsigned, naming the *signed* catalog
  (`images-<hash>.sjson`), so a reader that verifies the index verifies the catalog too; it does
  not carry the publisher's history (index.json does). Written after every other signed file;
- with `signing.detached`: `<catalog>.asc`, an armored detached signature of each catalog's
  unsigned bytes (`images-<hash>.json.asc`, `images.json.asc`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import TreeConfig
from .catalog import build_index, to_bytes
from .views import View

SIGNED_INDEX_KEY = "streams/v1/index.sjson"
CLEARSIGNED_TYPE = "text/plain; charset=utf-8"  # OpenPGP clearsigned text (not JSON until stripped)
DETACHED_TYPE = "application/pgp-signature"
DETACHED_SUFFIX = ".asc"


def signed_key(key: str) -> str:
    """The clearsigned twin of a `.json` key: `images-<hash>.json` → `images-<hash>.sjson`."""
    stem, dot, ext = key.rpartition(".")
    if not dot or ext != "json":
        raise ValueError(f"{key}: only a .json document has a .sjson twin")
    return f"{stem}.sjson"


@dataclass(frozen=True)
class ToSign:
    """One signed file to produce: `view` holds its key, cache class and the bytes to sign; the
    signer replaces those bytes by the clearsigned text (or, `detached`, by the signature alone)."""

    view: View
    detached: bool = False


def signing_requests(tree: TreeConfig, catalog: Mapping[str, Any], catalog_key: str, views: Iterable[View],
                     *, detached: bool = False) -> tuple[ToSign, ...]:
    """The signed twins of the rendered views, in write order (the signed index last).

    Only the index and the catalogs (the views that are `.json` simplestreams documents) are signed.
    """
    requests: list[ToSign] = []
    index: ToSign | None = None
    for view in views:
        if view.is_index:
            signed_index = build_index(tree, catalog, signed_key(catalog_key))
            index = ToSign(View(SIGNED_INDEX_KEY, to_bytes(signed_index), CLEARSIGNED_TYPE, cache=view.cache))
        elif view.content_type.startswith("application/json") and view.key.endswith(".json"):
            requests.append(ToSign(View(signed_key(view.key), view.data, CLEARSIGNED_TYPE, cache=view.cache,
                                        create_only=view.create_only)))
            if detached:
                requests.append(ToSign(View(view.key + DETACHED_SUFFIX, view.data, DETACHED_TYPE, cache=view.cache,
                                            create_only=view.create_only), detached=True))
    return (*requests, *([index] if index else []))


def same_signed_content(signed: bytes, data: bytes) -> bool:
    """Whether the text a clearsigned file signs is `data`: clearsigning ends the text with one
    newline and drops trailing blanks of each line (RFC 4880 7.1), which canonical JSON has none of."""
    return signed.rstrip(b"\r\n") == data.rstrip(b"\r\n")


def is_signed_index(view: View) -> bool:
    return view.key == SIGNED_INDEX_KEY

