"""Signed streams, the pure half: which signed files a publish writes and what each one signs.

Signing is an effect (it runs GnuPG and its output carries a timestamp), so it is not a renderer in
VIEWS: the views stay pure. This module turns the rendered views into *signing requests* (the key
of the signed file, the exact bytes to sign, clearsigned or detached); ssb_s3.gpg runs gpg over
them and returns ordinary Views, which the tree owner (ssb_s3.storage.tree) writes in the commit
before the index flip. Nothing here runs a program or touches a store.

The signed files, following python-simplestreams' naming (a `.json` document's clearsigned twin is
its `.sjson`):
- `<catalog dir>/images-<hash>.sjson`: the content-addressed catalog, clearsigned (create-only,
  purged with its catalog: vocabulary.layout.TreeLayout.catalog_of_view knows this name);
- `<catalog dir>/images.sjson`: the plain images.json copy, clearsigned;
- `streams/v1/index.sjson`: the index, clearsigned, naming the *signed* catalog
  (`images-<hash>.sjson`), so a reader that verifies the index verifies the catalog too; it does
  not carry the publisher's history (index.json does). Written after every other signed file;
- with `signing.detached`: `<catalog>.asc`, an armored detached signature of each catalog's
  unsigned bytes (`images-<hash>.json.asc`, `images.json.asc`).

A clearsigned twin signs the same document as its `.json`, pretty-printed (`signed_text`): GnuPG
clearsigns text line by line and silently cuts lines longer than 19,993 bytes, and a canonical
catalog is one line of several MB. Readers compare documents, not bytes (same_document).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import TreeConfig
from ..vocabulary.layout import SIGNED_INDEX_KEY, detached_signature_key, signed_key
from .catalog import build_index
from .views import View

CLEARSIGNED_TYPE = "text/plain; charset=utf-8"  # OpenPGP clearsigned text (not JSON until stripped)
DETACHED_TYPE = "application/pgp-signature"
SIGNED_BEGIN = "-----BEGIN PGP SIGNED MESSAGE-----"
SIGNATURE_BEGIN = "-----BEGIN PGP SIGNATURE-----"


@dataclass(frozen=True)
class ToSign:
    """One signed file to produce: `view` holds its key, cache class and the bytes to sign; the
    signer replaces those bytes by the clearsigned text (or, `detached`, by the signature alone)."""

    view: View
    detached: bool = False


def signing_requests(tree: TreeConfig, catalog: Mapping[str, Any], catalog_bytes: bytes, catalog_key: str,
                     views: Iterable[View], *, detached: bool = False) -> tuple[ToSign, ...]:
    """The signed twins of the rendered views, in write order (the signed index last).

    The index and the views that ask for it (`View.signed`: the catalog, its plain copy) are signed.
    `catalog_bytes`: the catalog's canonical bytes, which the catalog views hold (not parsed again).
    """
    requests: list[ToSign] = []
    index: ToSign | None = None
    texts: dict[bytes, bytes] = {}  # the catalog and its plain copy hold the same bytes: rendered once
    for view in views:
        if view.data == catalog_bytes and view.data not in texts:
            texts[view.data] = signed_text(catalog)
        if view.is_index:
            signed_index = build_index(tree, catalog, signed_key(catalog_key))
            index = ToSign(View(SIGNED_INDEX_KEY, signed_text(signed_index), CLEARSIGNED_TYPE, cache=view.cache))
        elif view.signed:
            if view.data not in texts:
                texts[view.data] = signed_text(json.loads(view.data))
            requests.append(ToSign(View(signed_key(view.key), texts[view.data], CLEARSIGNED_TYPE, cache=view.cache,
                                        create_only=view.create_only)))
            if detached:
                requests.append(ToSign(View(detached_signature_key(view.key), view.data, DETACHED_TYPE,
                                            cache=view.cache, create_only=view.create_only), detached=True))
    return (*requests, *([index] if index else []))


def signed_text(document: Mapping[str, Any]) -> bytes:
    """What a clearsigned twin signs: the document, keys sorted, one member per line (no trailing
    blanks, which clearsigning would drop), so no line comes near GnuPG's 19,993-byte limit. Not
    `indent`: that takes the pure-Python encoder, ~40 times slower on a multi-MB catalog."""
    return (json.dumps(document, sort_keys=True, separators=(",\n", ":"), ensure_ascii=False) + "\n").encode()


def same_document(signed: bytes, data: bytes, parse: Callable[[bytes], Any] = json.loads) -> bool:
    """Whether a clearsigned twin's signed text is the same JSON document as `data` (its `.json`);
    `parse` parses each (readers of outside documents pass the bounded one)."""
    try:
        return bool(parse(signed) == parse(data))
    except ValueError:
        return False


def is_signed_index(view: View) -> bool:
    return view.key == SIGNED_INDEX_KEY


def clearsigned_content(data: bytes) -> bytes:
    """The text an OpenPGP clearsigned document signs (dash-escaping undone), WITHOUT checking
    the signature (mirror --no-verify; ssb_s3.gpg.verify checks it). ValueError when `data` is
    not a clearsigned document."""
    lines = data.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
    if lines[0].strip() != SIGNED_BEGIN:
        raise ValueError("not an OpenPGP clearsigned document")
    try:
        start = lines.index("", 1) + 1
        end = lines.index(SIGNATURE_BEGIN, start)
    except ValueError:
        raise ValueError("not an OpenPGP clearsigned document (no signature block)") from None
    return "\n".join(line[2:] if line.startswith("- ") else line for line in lines[start:end]).encode()
