"""verify: read the tree as a client does and check everything it would download.

index.json → each image-downloads catalog → the client contract (core/catalog) → per client
(vocabulary/clients): every version a checked client would not list is a problem, one line per product;
checked are the clients the tree serves (those whose metadata/unified items it carries: lxd.tar.xz
serves LXD 5.0 and current LXD, incus.tar.xz Incus) plus those `require`d (`verify --client`);
what other clients will not list is a warning, one line per product. Then every item exists with
its declared size; with
hashes, every file is streamed once and its sha256 and the combined fingerprints are checked
(which ftypes are metadata and roots, and the meta ‖ root hasher: imagefiles).
Works on a local folder, a bucket, or an http(s) base URL (what users actually serve).
A catalog that passes the products schema check is parsed once into the document model
(vocabulary/document.Catalog) for the client and hash checks; an ill-typed one is reported by the
schema's lines (file, field, what was expected), its files' sizes still checked, and walked no further.

Bounds: over http(s) every request has a deadline and a size cap for index.json and catalogs
(ssb_s3.storage.httpread; `verify --timeout/--deadline/--max-catalog-size`). With hashes, no file is read past
its declared size + 1 byte, whatever the server sends: a longer or shorter body is a size problem.
A catalog path that is not a plain relative path is reported and never requested.

The classic LXC index (meta/1.0/index-*, core/lxcindex) is read as lxc-create reads it (at most
MAX_LXC_INDEX bytes per file): every line's <path>/rootfs.tar.xz and <path>/meta.tar.xz must
exist and hold what their names say (xz, sniffed from their first bytes). Missing index files
are a problem only when a served catalog has an LXC image (trees published before the LXC index
existed have none).

Over http(s), a 403 is what S3 answers for a missing key to anonymous readers (no s3:ListBucket):
the files whose absence is normal (the LXC index files, the detached signatures and the plain
images.json copy's signed twins) are read in httpread.optional_key(), where a 403 counts as absent
(said once per run); a 403 on anything the tree needs (index.json, a catalog, a file a catalog
or the LXC index names, index.sjson with --keyring) is a problem saying that the bucket policy
must allow s3:GetObject.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core import lxcindex
from ..core.catalog import INDEX_NAME, contract_problems_by_product, index_catalog_path
from ..core.catalog import _path_problem as path_problem
from ..core.retention import shape_problem
from ..core.signed import same_document
from ..errors import Forbidden, NotFound, StoreError, TooLarge
from ..gpg import SignatureError
from ..gpg import verify as gpg_verify
from ..schemas import schema_problems
from ..storage.backends.http import HttpStore
from ..storage.httpread import optional_key, parse_json
from ..storage.store import CHUNK_SIZE, ReadableStore
from ..vocabulary import clients
from ..vocabulary.document import Catalog, Item, items_of, walk_versions
from ..vocabulary.imagefiles import (
    HEAD_BYTES,
    META_FTYPES,
    ROOT_COMBINED_FIELD,
    MetaRootHasher,
    content_kind_problem,
)
from ..vocabulary.layout import (
    INDEX_KEY,
    LXC_INDEX_KEYS,
    PLAIN_CATALOG_NAME,
    SIGNED_INDEX_KEY,
    detached_signature_key,
    has_signed_twin,
    in_folder,
    parent_folder,
    signed_key,
    version_file_key,
)
from ..vocabulary.problems import Problem

log = logging.getLogger(__name__)

MAX_LXC_INDEX = 8 << 20  # bytes of one LXC index file (~100 bytes a line)


@dataclass
class VerifyReport:
    """What was checked and every problem found."""

    catalogs: list[str] = field(default_factory=list)
    products: int = 0
    versions: int = 0
    files: int = 0
    bytes: int = 0
    hashed_bytes: int = 0
    clients: list[str] = field(default_factory=list)  # checked: served by the tree or required
    lxc_images: int = 0  # lines of the classic LXC index
    problems: list[Problem] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)  # signed files that verified (verify --keyring)
    warnings: list[str] = field(default_factory=list)  # what clients the tree does not serve will not list

    def as_dict(self) -> dict[str, Any]:
        """verify --json: each problem as its line (`problems`) and as its parts (`problem_details`:
        product, where, field, text), as publish --json gives them."""
        return {**vars(self), "problems": [str(p) for p in self.problems],
                "problem_details": [p.as_dict() for p in self.problems]}


def _sizes(store: ReadableStore, paths: set[str]) -> tuple[dict[str, int], dict[str, str]]:
    """(size of each path found, why each path refused over http(s) is not readable)."""
    if isinstance(store, HttpStore):
        found, refused = {}, {}
        for path in sorted(paths):
            try:
                info = store.head(path)
            except Forbidden as exc:  # a file the catalog names: required, never taken as absent
                refused[path] = _reason(store, path, exc)
                continue
            if info is not None:
                found[path] = info.size
        return found, refused
    return {o.key: o.size for o in store.list() if o.key in paths}, {}


class _Hasher:
    """Reads each file once, bounded by its declared size, into the one meta ‖ root hasher
    (imagefiles.MetaRootHasher, keyed by path): metadata hashes are kept to extend into fingerprints."""

    def __init__(self, store: ReadableStore, report: VerifyReport) -> None:
        self.store, self.report = store, report
        self.core = MetaRootHasher()
        self.digests = self.core.digests
        self.sizes: dict[str, int] = {}  # declared by the catalog
        self.wrong_size: dict[str, str] = {}  # path -> what was read instead ("2 bytes", "more than 1 bytes")

    def chunks(self, path: str) -> Iterator[bytes]:
        """The file's bytes, never more than its declared size + 1; a wrong length is recorded."""
        declared = self.sizes.get(path, -1)
        left = declared + 1 if declared >= 0 else None
        read = 0
        stream = self.store.iter_chunks(path, CHUNK_SIZE)
        try:
            for chunk in stream:
                if left is not None:
                    chunk = chunk[:left]
                    left -= len(chunk)
                read += len(chunk)
                self.report.hashed_bytes += len(chunk)
                yield chunk
                if left == 0:
                    break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # an endless body: the connection is dropped here
        if declared >= 0 and read != declared:
            self.wrong_size[path] = f"more than {declared} bytes" if read > declared else f"{read} bytes"

    def _hash(self, path: str, extends: Sequence[str] = (), keep: bool = True) -> None:
        feed = self.core.start_file(path, extends)
        for chunk in self.chunks(path):
            feed(chunk)
        self.core.finish_file(path, keep=keep)

    def meta(self, path: str) -> str:
        """sha256 of a file that is not a root (its hash kept, so that roots can extend it)."""
        if not self.core.kept(path):
            self._hash(path)
        return self.digests[path]

    def root(self, path: str, metas: list[str]) -> dict[str, str]:
        """Stream `path` once; return its own sha256 (key '') and sha256(meta ‖ root) per meta path."""
        for meta in metas:
            self.meta(meta)
        self._hash(path, metas, keep=False)
        return {"": self.digests[path], **{m: self.core.combined[(m, path)] for m in metas}}


def _check_hashes(hasher: _Hasher, path: str, pname: str, vname: str, items: Mapping[str, Item],
                  problems: list[Problem]) -> None:
    """Each item's bytes against its sha256 and size, each root against its metas' combined hash:
    problems blame product `pname` of catalog `path`."""

    def problem(key: str, text: str) -> None:
        problems.append(Problem(pname, path, f"product {pname} version {vname} item {key}", text))

    metas = {key: item for key, item in items.items() if item.ftype in META_FTYPES}
    meta_paths = sorted({item.path for item in metas.values()})
    for item in items.values():
        hasher.sizes[item.path] = item.size

    def sized(key: str, item: Item) -> bool:
        """False (and a problem) when the body read was not the declared size: its hash says nothing."""
        wrong = hasher.wrong_size.get(item.path)
        if wrong:
            problem(key, f"{item.path}: read {wrong}, catalog says {item.size}")
        return not wrong

    for key, root in sorted(items.items()):
        field_name = ROOT_COMBINED_FIELD.get(root.ftype)
        if field_name is None:
            continue
        digests = hasher.root(root.path, meta_paths) if root.path not in hasher.digests else None
        if digests is None:
            continue  # shared root already checked through another version
        if not sized(key, root):
            continue
        if digests[""] != root.sha256:
            problem(key, f"{root.path} sha256 is {digests['']}, catalog says {root.sha256}")
        for meta_key, meta in sorted(metas.items()):
            if meta.path in hasher.wrong_size:
                continue
            declared = meta.combined.get(field_name)
            if declared and declared != digests[meta.path]:
                problem(meta_key, f"{field_name} is {declared}, but "
                                  f"sha256({meta.path} ‖ {root.path}) is {digests[meta.path]}")
    for key, item in sorted(items.items()):
        if item.ftype in ROOT_COMBINED_FIELD:
            continue
        digest = hasher.digests[item.path] if item.path in hasher.digests else hasher.meta(item.path)
        if sized(key, item) and digest != item.sha256:
            problem(key, f"{item.path} sha256 is {digest}, catalog says {item.sha256}")


def _reason(store: ReadableStore, key: str, exc: Exception) -> str:
    """What a store error says after the file it names (store errors start with it)."""
    where, text = store.describe(key), str(exc)
    return text[len(where) + 2:] if text.startswith(f"{where}: ") else text


def _unreadable(store: ReadableStore, key: str, exc: Exception) -> Problem:
    """One line naming the file once: store errors already start with it."""
    return Problem(None, store.describe(key), "", f"unreadable: {_reason(store, key, exc)}")


def served_entries(store: ReadableStore, problems: list[Problem]) -> list[dict[str, Any]]:
    """The image-downloads entries of the served index.json, as clients read it (`verify`, `list`);
    [] with the reason in `problems` when there is none or the index is missing or unusable."""
    try:
        index = parse_json(store.read(INDEX_KEY), store.describe(INDEX_KEY))
    except NotFound:
        problems.append(Problem(None, store.describe(INDEX_KEY), "", "missing (nothing is published)"))
        return []
    except (ValueError, StoreError) as exc:
        problems.append(_unreadable(store, INDEX_KEY, exc))
        return []
    index_problems = schema_problems(index, "index", store.describe(INDEX_KEY))
    if index_problems:
        problems.extend(index_problems)
        return []
    entries = [e for e in index["index"].values() if e["datatype"] == "image-downloads" and e["products"]]
    if not entries:
        problems.append(Problem(None, store.describe(INDEX_KEY), "",
                                "no image-downloads entry with products: clients list nothing"))
    return entries


def read_catalog(store: ReadableStore, path: str, problems: list[Problem]) -> Any:
    """The parsed catalog an index entry names, or None with the reason in `problems`. A path that
    is not a plain relative path is never requested ('../../etc/passwd' stays on this side)."""
    why = path_problem(path)
    if why:
        problems.append(Problem(None, store.describe(INDEX_KEY), "", f"catalog {why}"))
        return None
    try:
        catalog = parse_json(store.read(path), store.describe(path))
    except NotFound:
        problems.append(Problem(None, store.describe(path), "", "named by index.json but missing"))
        return None
    except (ValueError, StoreError) as exc:
        problems.append(_unreadable(store, path, exc))
        return None
    if catalog is None:
        problems.append(Problem(None, store.describe(path), "", "null, expected a products:1.0 catalog"))
    return catalog


def _head_bytes(store: ReadableStore, key: str) -> bytes:
    """The first bytes of an object (the connection is dropped after them)."""
    stream = store.iter_chunks(key, HEAD_BYTES)
    try:
        return next(iter(stream), b"")[:HEAD_BYTES]
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def check_lxc_index(store: ReadableStore, catalogs: list[Any], problems: list[Problem]) -> int:
    """Check the served LXC index files and the files their lines name; the number of images listed."""
    expected = any(lxcindex.lxc_images(c) for c in catalogs if shape_problem(c) is None)
    checked: dict[str, str | None] = {}  # file key -> its problem (None: fine), each looked at once
    images = 0
    for key in LXC_INDEX_KEYS:
        try:
            with optional_key():  # trees without LXC images have none
                data, _ = store.read_limited(key, MAX_LXC_INDEX)
        except NotFound:
            if expected:
                problems.append(Problem(None, store.describe(key), "", "missing, but the catalog has LXC images "
                                        "(lxc-create -t download cannot find them)"))
            continue
        except (TooLarge, StoreError) as exc:
            problems.append(_unreadable(store, key, exc))
            continue
        found, why = lxcindex.parse_index(data)
        problems.extend(Problem(None, store.describe(key), "", text) for text in why)
        images = max(images, len(found))
        for image in found:
            bad_path = path_problem(image.path)
            if bad_path:
                problems.append(Problem(None, store.describe(key), "", f"{image.line()}: {bad_path}"))
                continue
            for name in lxcindex.lxc_files():
                file_key = version_file_key(image.path, name)
                if file_key not in checked:
                    checked[file_key] = _lxc_file_problem(store, file_key, name)
                if checked[file_key]:
                    problems.append(Problem(None, store.describe(file_key), "",
                                            f"named by {key} but {checked[file_key]}"))
    return images


def _lxc_file_problem(store: ReadableStore, key: str, name: str) -> str | None:
    try:
        if store.head(key) is None:
            return "missing"
        return content_kind_problem(name, _head_bytes(store, key))
    except NotFound:
        return "missing"
    except StoreError as exc:
        return f"unreadable ({exc})"


def client_check(catalog: Catalog, source: str, required: Sequence[str], report: VerifyReport) -> None:
    """Per client (vocabulary/clients): a version a checked client (one the tree serves, or `required`)
    does not list is a problem, one line per product; one warning line per product that a client
    the tree does not serve will not list. Classic-LXC-only versions are no image client's."""
    checked = [c for c in clients.CLIENTS if c in set(clients.served_clients(catalog)) | set(required)]
    report.clients = sorted(set(report.clients) | set(checked), key=list(clients.CLIENTS).index)
    families = {(p, v): clients.item_families(version.items) for p, _, v, version in walk_versions(catalog)}
    rows = [r for r in clients.report(catalog) if families[r.product, r.version]]
    totals: dict[str, int] = {}
    for row in rows:
        totals[row.product] = totals.get(row.product, 0) + 1
    unserved: dict[str, list[str]] = {}
    for name in (c.name for c in clients.IMAGE_CLIENTS if c.name not in checked):
        for product, missing in clients.unlisted_by_product(rows, name).items():
            unserved.setdefault(product, []).append(clients.unlisted_text(name, missing, totals[product]))
    for product, parts in sorted(unserved.items()):
        report.warnings.append(f"{source}: product {product}: {'; '.join(parts)} (not a client this tree serves: "
                               "require it with --client)")
    for name in checked:
        for product, missing in clients.unlisted_by_product(rows, name).items():
            report.problems.append(Problem(product, source, "", clients.product_line(product, name, missing,
                                                                                   totals[product])))


def verify(store: ReadableStore, *, hashes: bool = False, keyring: str | None = None,
           require: Sequence[str] = ()) -> VerifyReport:
    """Check the tree served from `store`; every problem lands in the report. The image clients
    every version must give an image to are those the tree serves plus `require` (vocabulary/clients).
    With `keyring`, the signed streams too (verify_signatures)."""
    report = VerifyReport()
    problems = report.problems
    hasher = _Hasher(store, report)
    catalogs: list[Any] = []
    for entry in served_entries(store, problems):
        path = entry["path"]
        report.catalogs.append(path)
        catalog = read_catalog(store, path, problems)
        if catalog is None:
            continue
        catalogs.append(catalog)
        by_product = contract_problems_by_product(catalog, store.describe(path), image_clients=())  # client_check
        contract = [p for found in by_product.values() for p in found]  # checks the clients
        problems.extend(contract)
        if contract and not (isinstance(catalog, dict) and isinstance(catalog.get("products"), dict)):
            continue
        # parsed once, when well typed (the contract check holds the schema's lines); an ill-typed
        # catalog still has its files' sizes checked below, but no client or hash check
        ill_typed = bool(contract) and bool(schema_problems(catalog, "products", store.describe(path)))
        typed = None if ill_typed else Catalog.from_json(catalog)
        if typed is not None:
            client_check(typed, store.describe(path), require, report)
        if sorted(entry["products"]) != sorted(catalog["products"]):
            problems.append(Problem(None, store.describe(INDEX_KEY), "",
                                    f"products listed for {path} differ from the catalog's"))
        items = {item["path"]: item for item in items_of(catalog)
                 if isinstance(item, dict) and path_problem(item.get("path")) is None}  # others: in `contract`
        sizes, refused = _sizes(store, set(items))
        for item_path, item in sorted(items.items()):
            if item_path in refused:
                problems.append(Problem(None, store.describe(item_path), "",
                                        f"named by {path} but {refused[item_path]}"))
            elif item_path not in sizes:
                problems.append(Problem(None, store.describe(item_path), "", f"named by {path} but missing"))
            elif sizes[item_path] != item.get("size"):
                problems.append(Problem(None, store.describe(item_path), "",
                                        f"{sizes[item_path]} bytes, {path} says {item.get('size')}"))
        report.files += len(items)
        report.bytes += sum(sizes.values())
        report.products += len(catalog["products"])
        if typed is None:
            report.versions += sum(1 for _ in walk_versions(catalog))
            continue
        for pname, _, vname, version in walk_versions(typed, ordered=True):
            report.versions += 1
            if hashes and all(i.path in sizes for i in version.items.values()):
                _check_hashes(hasher, path, pname, vname, version.items, problems)
    report.lxc_images = check_lxc_index(store, catalogs, problems)
    if keyring is not None:
        verify_signatures(store, keyring, report)
    return report


def _signed(store: ReadableStore, key: str, keyring: str, problems: list[Problem], *, data: bytes | None = None,
            required: bool = True) -> bytes | None:
    """The content a signed file signs, once gpgv checked it against `keyring` (None: a problem,
    or an optional file that is absent). `data`: check the detached signature `key` over it."""
    try:
        with optional_key() if not required else contextlib.nullcontext():
            raw = store.read(key)
    except NotFound:
        if required:
            problems.append(Problem(None, store.describe(key), "", "missing, expected a signed file"))
        return None
    except StoreError as exc:
        problems.append(_unreadable(store, key, exc))
        return None
    try:
        verified = gpg_verify(raw, keyring) if data is None else gpg_verify(data, keyring, signature=raw)
    except SignatureError as exc:
        problems.append(Problem(None, store.describe(key), "", str(exc)))
        return None
    return verified.content if data is None else data


def verify_signatures(store: ReadableStore, keyring: str, report: VerifyReport) -> None:
    """As sstream-query --keyring reads a tree: index.sjson verified with gpgv against `keyring`
    only, then each catalog it names; on top, what each signs must be what the unsigned twin holds
    (index.sjson names the signed twin of the catalog index.json names, and that twin signs the
    catalog's exact bytes), and any detached <catalog>.asc must verify over the catalog."""
    problems = report.problems
    content = _signed(store, SIGNED_INDEX_KEY, keyring, problems)
    if content is None:
        return
    report.signatures.append(SIGNED_INDEX_KEY)
    where = store.describe(SIGNED_INDEX_KEY)
    try:
        index = parse_json(content, where)
    except ValueError as exc:
        problems.append(Problem(None, where, "", f"signed content is not JSON ({exc})"))
        return
    index_problems = schema_problems(index, "index", where)
    if index_problems:
        problems.extend(index_problems)
        return
    try:
        named, unusable = index_catalog_path(parse_json(store.read(INDEX_KEY), store.describe(INDEX_KEY)))
        unsigned_path = "" if unusable else named  # reported by the unsigned walk already
    except (ValueError, StoreError):
        unsigned_path = ""
    for name, entry in sorted(index["index"].items()):
        path = entry["path"]
        why = path_problem(path)
        if why:
            problems.append(Problem(None, where, "", f"catalog {why}"))
            continue
        expected = signed_key(unsigned_path) if name == INDEX_NAME and unsigned_path \
            and has_signed_twin(unsigned_path) else None
        if expected is not None and path != expected:
            problems.append(Problem(None, where, "", f"names {path}, expected {expected}, the signed twin of the "
                                                     f"catalog index.json names ({unsigned_path})"))
            continue
        signed = _signed(store, path, keyring, problems)
        if signed is None:
            continue
        report.signatures.append(path)
        try:
            catalog = parse_json(signed, store.describe(path))
            products = sorted(catalog["products"])
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(Problem(None, store.describe(path), "", f"signed content is not a catalog ({exc})"))
            continue
        if products != sorted(entry["products"]):
            problems.append(Problem(None, where, "", f"products listed for {path} differ from the signed catalog's"))
        if expected is None:
            continue
        try:
            unsigned = store.read(unsigned_path)
        except StoreError:
            continue  # reported by the unsigned walk
        if not same_document(signed, unsigned, lambda doc: parse_json(doc, store.describe(unsigned_path))):
            problems.append(Problem(None, store.describe(path), "", f"signs another document than {unsigned_path}"))
        detached = detached_signature_key(unsigned_path)
        if _signed(store, detached, keyring, problems, data=unsigned, required=False) is not None:
            report.signatures.append(detached)
        _check_plain_copy(store, keyring, parent_folder(unsigned_path), report)


def _check_plain_copy(store: ReadableStore, keyring: str, folder: str, report: VerifyReport) -> None:
    """images.sjson (and images.json.asc), when there: signatures of the plain images.json copy."""
    plain = in_folder(folder, PLAIN_CATALOG_NAME)
    try:
        with optional_key():
            data = store.read(plain)
    except StoreError:
        return  # no plain copy (another tool's tree): nothing of it to check
    twin = signed_key(plain)
    signed = _signed(store, twin, keyring, report.problems, required=False)
    if signed is not None:
        report.signatures.append(twin)
        if not same_document(signed, data, lambda doc: parse_json(doc, store.describe(plain))):
            report.problems.append(Problem(None, store.describe(twin), "", f"signs another document than {plain}"))
    if _signed(store, detached_signature_key(plain), keyring, report.problems, data=data, required=False) is not None:
        report.signatures.append(detached_signature_key(plain))
