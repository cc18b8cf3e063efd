"""Mirror: a filtered, verified copy of an upstream simplestreams server, published like our own products.

Order (a mirror killed at any point leaves the previous tree served, and a re-run converges):
1. read the source's streams/v1/index.sjson (verified by ssb_s3.gpg.verify, gpgv against --keyring
   only, as `verify --keyring` does, unless --no-verify; a bad signature stops everything) or
   index.json, and each catalog of datatype image-downloads it names (when the index was signed,
   each verified whatever its name: a .json path is read as its .sjson twin); every document
   bounded in size and time (ssb_s3.storage.httpread; redirects never leave the source's origin).
   A 403 for index.sjson is "unsigned source" (S3 answers 403 for a missing key without
   s3:ListBucket); for anything else it is an error. A plain http:// source without --keyring is
   warned about (one line: what it serves can be altered in transit);
   Nothing of the tree is read in this step; what follows runs under the tree's lease (a dry run,
   which writes nothing, takes none);
2. read index.json and the catalog it names, once (Tree.served_read), and the ssb.json of the
   products concerned; then decide, on that read only (ssb_s3.core.mirror, pure): selection
   (filters, --max, drops with their reasons, translation, folders clear of the tree's own and of
   the served mirrored ones); a version this tree withdrew (`withdraw`: its record in index.json,
   core.withdrawal.TREE_RECORD) is dropped with that reason, whatever the upstream says: the
   tree's record wins; one source per product (claim_products); what to copy, and what each
   product's ssb.json becomes (mirrored_manifests); which served mirrored products left their
   source (departure_candidates, departures);
3. copy every selected file not already in the target with the same sha256 into
   <directory>/<version>/ of the target: streamed (no file held whole in memory or on disk),
   create-only, verified against the source's size and sha256 while it streams (the object is
   only committed once both match: a mismatch creates nothing; never read past the declared size,
   which selection caps at the run's max_file_size; over http(s) a file under the run's stall rule,
   stall_bytes in stall_seconds, fails); the metadata files first, so that
   every image fingerprint (combined_*_sha256) is computed as its root streams and a false one
   refuses the root before it is created; in parallel, with the one progress reporter. A version
   with any failed file is left out: nothing of it is published. The served catalog (written by
   the tree alone) is the record of what was mirrored before: a version or item that someone who
   can write a product's folder added to its ssb.json is not kept (core.mirror.recorded_versions).
   The copies run under the lease (it renews itself: Lease), so that what they are decided on
   cannot change meanwhile; other publishers wait for them (their --lock-timeout);
4. publish (ssb_s3.commands.publish, the one commit), under the same lease and given the read of
   step 2 (index.json is not read again, unless the flip fails): the mirrored products join the
   tree's own, their ssb.json prepared here and written by the commit once the plan is known valid; the
   catalog, the views, the index flipped last; the same contract check, the same purge (a
   mirrored product that left its source leaves the catalog at once; the history records it as
   departed, and its folders go after the grace: ssb_s3.core.retention.departed_mirrored).
   index.json's `ssb_s3.mirrored` records the mirrored products, so that a later publish (the
   hooks, build-product, a tree.yml without `mirrors:`) keeps their entries as published; each
   one's ssb.json records `mirror.source` as a digest of the source (source_id), never its URL or
   local path, which stay private.
Nothing is written before step 3, and nothing is served before the flip of step 4. Every drop is
logged (a warning with its reason) before the publish, and every failed version too when the publish
is refused: a run where every upstream product was dropped or failed says why each one was.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, cast

from .. import gpg
from ..config import MirrorConfig, ProductConfig, StorageConfig, TreeConfig, claim_alias
from ..core import mirror as core
from ..core.catalog import _path_problem
from ..core.mirror import has_userinfo, source_id, without_userinfo  # (source_id: callers name it from here)
from ..core.plan import PublishReport, combined_claims
from ..core.signed import clearsigned_content
from ..core.withdrawal import tree_recorded
from ..errors import BudgetSpent, NotFound, PreconditionFailed, SSBError, StoreError, Unreachable
from ..filters import Filter, FilterError, parse_filters
from ..progress import Progress
from ..storage import httpread
from ..storage.backends import open_readable
from ..storage.backends.http import HttpStore
from ..storage.lease import Lease
from ..storage.manifest import read_manifest
from ..storage.store import ReadableStore, Store
from ..storage.tree import ARTIFACT_TYPE, Tree
from ..vocabulary.layout import INDEX_KEY, SIGNED_INDEX_KEY, has_signed_twin, is_signed_key, signed_key
from ..vocabulary.problems import Problem
from ..vocabulary.text import json_strings_clean
from .publish import PublishOptions, publish, refuse_unsigned_over_signed

log = logging.getLogger(__name__)

MAX_INDEX_BYTES = 16 << 20  # images.linuxcontainers.org's index is a few KB
MAX_CATALOG_BYTES = httpread.MAX_DOCUMENT_SIZE  # its catalog is about 10 MB; parsed, all count in the run's budget
# Bounds of one image file over http(s), named in messages as ssb_s3.commands.mirror.<NAME>
DEADLINE = 6 * 3600.0  # an image of several GB on a slow link
TIMEOUT = httpread.TIMEOUT
MAX_DOCUMENT_SIZE = MAX_CATALOG_BYTES
GPGV_TIMEOUT = 120.0
COPIERS = 4  # files copied at once


class MirrorError(SSBError):
    """The source cannot be mirrored (unreadable, bad signature, not simplestreams)."""


class VerifyError(StoreError):
    """A file from the source is not what its catalog says (size or sha256)."""


@dataclass(frozen=True)
class MirrorOptions(MirrorConfig):
    """A mirror run: what tree.yml's `mirrors:` entry says (or the CLI's options), and how many
    files are copied at once."""

    copiers: int = COPIERS

    @classmethod
    def from_config(cls, mirror: MirrorConfig) -> MirrorOptions:
        return cls(**vars(mirror))


@dataclass
class MirrorReport:
    """What a mirror run did (or, dry run, would do)."""

    source: str
    signed: bool = False
    selected: list[tuple[str, str, str]] = field(default_factory=list)
    products: list[str] = field(default_factory=list)
    versions: int = 0
    to_copy: list[str] = field(default_factory=list)
    bytes_to_copy: int = 0
    copied: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    skipped: list[str] = field(default_factory=list)  # already in the target with the same sha256
    drops: list[core.Drop] = field(default_factory=list)
    failed: list[Problem] = field(default_factory=list)  # versions left out: a file failed to copy or verify
    publish: PublishReport | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "signed": self.signed,
            "selected": [list(s) for s in self.selected], "products": self.products, "versions": self.versions,
            "to_copy": self.to_copy, "bytes_to_copy": self.bytes_to_copy, "copied": self.copied,
            "bytes_copied": self.bytes_copied, "skipped": self.skipped,
            "dropped": [d.as_dict() for d in self.drops], "failed": [str(p) for p in self.failed],
            "publish": None if self.publish is None else self.publish.as_dict(),
        }  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Reading the source


def open_source(source: str, storage: StorageConfig | None, *, files: MirrorConfig | None = None) -> ReadableStore:
    """The source as a read-only store: https URL (bounded, redirects kept on its origin; documents
    within httpread's DEADLINE, each image file (`files`: the run's settings) within this module's
    DEADLINE and the run's stall rule), a local folder, or an s3:// tree."""
    if source.startswith(("https://", "http://")):
        if files is not None:
            return HttpStore(source, httpread.Limits(deadline=DEADLINE, same_origin=True,
                                                     option="ssb_s3.commands.mirror.{}",
                                                     stall_bytes=files.stall_bytes,
                                                     stall_seconds=files.stall_seconds))
        return HttpStore(source, httpread.Limits(max_size=MAX_CATALOG_BYTES, same_origin=True))
    return open_readable(source, storage)


def _document(store: ReadableStore, key: str, limit: int, opts: MirrorOptions, signed: bool) -> Any:
    return _parsed(_document_bytes(store, key, limit, opts, signed), store.describe(key))


def _document_bytes(store: ReadableStore, key: str, limit: int, opts: MirrorOptions, signed: bool) -> bytes:
    """The document's bytes, at most `limit`, its signature verified first when `signed`."""
    data = store.read_limited(key, limit)[0]
    where = store.describe(key)
    if signed:
        try:
            if opts.verify:  # the one gpgv runner (verify --keyring's): GOODSIG and VALIDSIG, not just exit 0
                assert opts.keyring is not None
                data = gpg.verify(data, opts.keyring, timeout=GPGV_TIMEOUT).content
            else:
                data = clearsigned_content(data)
        except gpg.SignatureError as exc:
            raise MirrorError(f"{where}: bad signature, refusing the source (gpgv with {opts.keyring}: {exc})") \
                from None
        except ValueError as exc:
            raise MirrorError(f"{where}: {exc}") from None
    return data


def _parsed(data: bytes, where: str) -> Any:
    try:
        return httpread.parse_json(data, where)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MirrorError(f"{where}: not valid JSON ({exc})") from None


class SourceCatalog(NamedTuple):
    """One catalog of a source, and whether its bytes showed every string of it clean (then
    core.select checks no string again: vocabulary.text.json_strings_clean)."""

    document: dict[str, Any]
    text_clean: bool


def read_source(store: ReadableStore, opts: MirrorOptions) -> tuple[list[SourceCatalog], bool]:
    """The catalogs (products:1.0, image-downloads) the source's index names, and whether they
    were signed. A signed index needs --keyring (or --no-verify); with --keyring an unsigned
    source is refused."""
    try:
        index = _read_index(store, opts, signed=True)
        signed = True
    except NotFound:
        if opts.keyring and opts.verify:
            raise MirrorError(f"{store.describe(SIGNED_INDEX_KEY)}: not found, but --keyring asks for a signed "
                              "source; pass --no-verify to mirror it unsigned") from None
        try:
            index = _read_index(store, opts, signed=False)
        except NotFound:
            raise MirrorError(f"{store.describe(INDEX_KEY)}: not found; is {store.url} a simplestreams "
                              "server's root?") from None
        signed = False
    entries = index.get("index") if isinstance(index, Mapping) else None
    if not isinstance(entries, Mapping):
        raise MirrorError(f"{store.describe(INDEX_KEY)}: index: expected an object of index entries")
    catalogs = []
    for name in sorted(entries):
        entry = entries[name]
        if not isinstance(entry, Mapping) or entry.get("datatype") != "image-downloads":
            continue
        path = entry.get("path")
        why = _path_problem(path)
        if why:
            raise MirrorError(f"{store.describe(INDEX_KEY)}: index.{name}.path: {why}")
        key = str(path)
        if signed and has_signed_twin(key):
            key = signed_key(key)
        # A signed index: every catalog it names is verified, whatever its name (unverified, --no-verify:
        # a .sjson is read as clearsigned, anything else as it is)
        data = _document_bytes(store, key, MAX_CATALOG_BYTES, opts, signed and (opts.verify or is_signed_key(key)))
        catalog = _parsed(data, store.describe(key))
        if not isinstance(catalog, Mapping) or catalog.get("format") != "products:1.0":
            raise MirrorError(f"{store.describe(key)}: format: expected products:1.0")
        catalogs.append(SourceCatalog(dict(catalog), json_strings_clean(data)))
    if not catalogs:
        raise MirrorError(f"{store.describe(INDEX_KEY)}: no index entry of datatype image-downloads")
    return catalogs, signed


def _read_index(store: ReadableStore, opts: MirrorOptions, *, signed: bool) -> Any:
    """index.sjson (signed) or index.json; NotFound when it is not there. An unsigned source has
    no index.sjson: a 403 for it is absent (httpread.optional_key); index.json is required."""
    if not signed:
        return _document(store, INDEX_KEY, MAX_INDEX_BYTES, opts, signed)
    with httpread.optional_key():
        if opts.verify and not opts.keyring:
            if store.head(SIGNED_INDEX_KEY) is None:
                raise NotFound(SIGNED_INDEX_KEY)
            raise MirrorError(f"{store.describe(SIGNED_INDEX_KEY)}: the source is signed: pass --keyring FILE "
                              "to verify it (or --no-verify)")
        return _document(store, SIGNED_INDEX_KEY, MAX_INDEX_BYTES, opts, signed)


# ----------------------------------------------------------------------------------------------
# Copying


class VerifyingReader(io.RawIOBase):
    """The source's bytes as they stream, never past `size`; at the end (or past the size) raises
    VerifyError unless the size and sha256 are those the catalog gave. Readers that commit only
    at the end of the stream (Store.ingest_stream) thus create nothing from a bad file."""

    def __init__(self, chunks: Iterator[bytes], copy: core.FileCopy, where: str,
                 progress: Callable[[int], None], combined: Sequence[CombinedCheck] = ()) -> None:
        self._chunks, self._copy, self._where, self._progress = chunks, copy, where, progress
        self._combined = combined
        self._hash = hashlib.sha256()
        self._size = 0
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending and not self._done:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                self._done = True
                self._check()
            else:
                self._size += len(self._pending)
                if self._size > self._copy.size:
                    raise VerifyError(f"{self._where}: more than the {self._copy.size} bytes its catalog gives")
                self._hash.update(self._pending)
                for check in self._combined:
                    check.hasher.update(self._pending)
                self._progress(len(self._pending))
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _check(self) -> None:
        if self._size != self._copy.size:
            raise VerifyError(f"{self._where}: {self._size} bytes, its catalog gives {self._copy.size}")
        if self._hash.hexdigest() != self._copy.sha256:
            raise VerifyError(f"{self._where}: sha256 {self._hash.hexdigest()}, its catalog gives "
                              f"{self._copy.sha256}: refusing the file")
        for check in self._combined:
            check.verify(self._where)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def hasher(self) -> Any:
        """The sha256 state after every byte read (to go on with a root's bytes: sha256(meta ‖ root))."""
        return self._hash.copy()


@dataclass
class CombinedCheck:
    """One image fingerprint the catalog claims: `field` of the meta item at `meta` is
    sha256(meta bytes ‖ root bytes); `hasher` starts as the meta's sha256 state and is fed the root."""

    meta: str
    field: str
    claimed: str
    hasher: Any = None

    def verify(self, where: str) -> None:
        got = self.hasher.hexdigest()
        if got != self.claimed:
            raise VerifyError(f"{where}: sha256({self.meta.rsplit('/', 1)[-1]} ‖ this file) is {got}, "
                              f"{self.field} of its catalog gives {self.claimed}: refusing the file")


def combined_checks(selection: core.Selection) -> dict[str, list[CombinedCheck]]:
    """Root file target -> every combined_*_sha256 its version's meta items claim for it (the
    image fingerprints clients check; core.plan.combined_claims), computed from the bytes as they
    are copied."""
    checks: dict[str, list[CombinedCheck]] = {}
    for versions in selection.versions.values():
        for version in versions.values():
            for root in version["items"].values():
                for meta, name, value in combined_claims(root, version["items"]):
                    checks.setdefault(root["path"], []).append(CombinedCheck(meta, name, value))
    return checks


def _present(target: Store, copy: core.FileCopy, recorded: Mapping[str, str]) -> bool:
    """Whether the target already has this file with the same sha256 (skipped); an object there
    with other content is an error (create-only: it is never overwritten)."""
    there = target.head(copy.target)
    if there is None:
        return False
    if there.size == copy.size and copy.sha256 in (there.sha256, recorded.get(copy.target)):
        return True
    digest = hashlib.sha256()
    for chunk in target.iter_chunks(copy.target):
        digest.update(chunk)
    if digest.hexdigest() == copy.sha256:
        return True
    raise VerifyError(f"{target.describe(copy.target)} already exists with other content: refusing to overwrite")


def _hashed_again(target: Store, copy: core.FileCopy, combined: Sequence[CombinedCheck]) -> Any:
    """A file already in the target read again: its sha256 state, its fingerprints checked (VerifyError)."""
    reader = VerifyingReader(iter(target.iter_chunks(copy.target)), copy, target.describe(copy.target),
                             lambda n: None, combined)
    while reader.read(httpread.READ_SIZE):
        pass
    return reader.hasher()


def copy_files(source: ReadableStore, target: Store, tree: TreeConfig, selection: core.Selection,
               recorded: Mapping[str, str], report: MirrorReport, *, copiers: int, quiet: bool,
               recorded_combined: frozenset[tuple[str, str, str]] = frozenset()) -> set[tuple[str, str]]:
    """Copy what the target lacks (module docstring, step 3); the (product, version) pairs that failed.

    The metadata files first, then the rest: a root's bytes go on from its meta items' sha256 state,
    so that every image fingerprint (combined_*_sha256) is computed while the root streams, and a
    mismatch refuses the root before it is created. A root already there is hashed again from the
    target unless the served catalog records the same fingerprints (`recorded_combined`: (meta
    path, field, value)), checked when it was copied; a meta file already there is read again
    only when such a root needs it."""
    jobs = [c for files in selection.files.values() for c in files]
    by_target = {c.target: c for c in jobs}
    checks = combined_checks(selection)
    metas = {c.meta for found in checks.values() for c in found}
    meta_state: dict[str, Any] = {}  # meta target -> its sha256 state (as copied, or read from the target)
    failed: dict[tuple[str, str], str] = {}
    lock = threading.Lock()

    def state_of(meta: str) -> Any:
        if meta not in meta_state:  # there already: read again, only when a root needs it
            meta_state[meta] = _hashed_again(target, by_target[meta], ())
        return meta_state[meta].copy()

    with Progress(sum(c.size for c in jobs), f"mirroring into {target.url}", files=len(jobs), quiet=quiet) as progress:
        def one(copy: core.FileCopy) -> None:
            where = source.describe(copy.source)
            try:
                if (copy.product, copy.version) in failed:
                    return  # a meta file of its version failed: the version is left out already
                wanted = checks.get(copy.target, ())
                present = _present(target, copy, recorded)
                if present and all((c.meta, c.field, c.claimed) in recorded_combined for c in wanted):
                    progress(copy.size)
                    with lock:
                        report.skipped.append(copy.target)
                    return
                combined = [replace(c, hasher=state_of(c.meta)) for c in wanted]
                if present:  # its fingerprints not recorded yet: checked from the target's bytes
                    _hashed_again(target, copy, combined)
                    progress(copy.size)
                    with lock:
                        report.skipped.append(copy.target)
                    return
                reader = VerifyingReader(iter(source.iter_chunks(copy.source)), copy, where, progress, combined)
                stream = cast(BinaryIO, io.BufferedReader(reader, httpread.READ_SIZE))
                log.info("copying %s -> %s", where, target.describe(copy.target))
                try:
                    target.put_new(copy.target, stream, size=copy.size, digest=lambda: copy.sha256,
                                   content_type=ARTIFACT_TYPE, concurrency=2,
                                   cache_control=tree.cache_control.artifacts)
                    if copy.target in metas:
                        meta_state[copy.target] = reader.hasher()
                except PreconditionFailed:  # another run created it meanwhile: the same file, or refused
                    if not _present(target, copy, recorded):
                        raise
                    _hashed_again(target, copy, combined)
                with lock:
                    report.copied.append(copy.target)
                    report.bytes_copied += copy.size
            except Unreachable:
                raise  # the source's server: no other copy from it can succeed
            except SSBError as exc:
                with lock:
                    failed.setdefault((copy.product, copy.version), str(exc))
            finally:
                progress.file_done()

        with ThreadPoolExecutor(max_workers=max(1, copiers), thread_name_prefix="ssb-mirror") as pool:
            list(pool.map(one, [c for c in jobs if c.target in metas]))  # their sha256 states first
            list(pool.map(one, [c for c in jobs if c.target not in metas]))
    for (product, version), why in sorted(failed.items()):
        report.failed.append(Problem(product, "", f"product {product} version {version}", f"not mirrored: {why}"))
    return set(failed)


# ----------------------------------------------------------------------------------------------
# The whole run


def mirror(tree: TreeConfig, target: Store, opts: MirrorOptions, publish_opts: PublishOptions) -> MirrorReport:
    """Mirror `opts.source` into the tree (module docstring); with publish_opts.dry_run, only say
    what would be copied (and what publishing the tree's own products would do). Raises SSBError
    (nothing published) on a source that cannot be used."""
    return mirror_all(tree, target, [opts], publish_opts)[0]


def mirror_all(tree: TreeConfig, target: Store, runs: Sequence[MirrorOptions],
               publish_opts: PublishOptions) -> list[MirrorReport]:
    """Every mirror of `runs` (the `mirror` command: one; publish with tree.yml's `mirrors:`: all),
    then one publish of the tree's own products and the mirrored ones together."""
    for o in runs:  # before anything is read, logged or recorded
        if has_userinfo(o.source):
            raise MirrorError(f"source {without_userinfo(o.source)}: a user or password in the URL would be "
                              "printed (reports, logs): refused; use a URL without them")
    filters = [parse_filters(o.filters, synonyms=FILTER_SYNONYMS) for o in runs]  # bad filters: nothing is read
    for o in runs:
        if o.verify and o.keyring and not Path(o.keyring).is_file():
            raise MirrorError(f"--keyring {o.keyring}: not a file")
        if o.source.startswith("http://") and not (o.verify and o.keyring):
            log.warning("source %s: plain http:// without --keyring: the catalog and the files can be altered in "
                        "transit (use https:// or --keyring)", o.source)
    refuse_unsigned_over_signed(tree, target, publish_opts.sign_key)  # before the lease and any copy
    storage = publish_opts.storage or tree.storage
    read: list[SourceRead] = []
    for run, run_filters in zip(runs, filters, strict=True):  # the upstreams, not the tree: read before the lease
        source = open_source(run.source, storage)
        catalogs, signed = read_source(source, run)
        unknown_filter_keys(run_filters, [c.document for c in catalogs], source.url)
        read.append(SourceRead(run, run_filters, source, catalogs, signed))
    owner = Tree(tree, target)
    if publish_opts.dry_run:  # nothing written: no lease
        return _mirror_tree(tree, target, owner, read, publish_opts, None)
    with owner.lease(publish_opts.lock_timeout, "mirror") as lease:
        return _mirror_tree(tree, target, owner, read, publish_opts, lease)


class SourceRead(NamedTuple):
    """One mirror run's source, as read (before the lease: nothing of the tree)."""

    run: MirrorOptions
    filters: Sequence[Filter]
    store: ReadableStore
    catalogs: list[SourceCatalog]
    signed: bool


def _mirror_tree(tree: TreeConfig, target: Store, owner: Tree, read: Sequence[SourceRead],
                 publish_opts: PublishOptions, lease: Lease | None) -> list[MirrorReport]:
    """Steps 2-4 under the tree's lease (none in a dry run): index.json and its catalog read once,
    every decision (folders, withdrawn versions, one source per product, what to copy, what left
    its source) made by core.mirror on that read, the copies, then the publish under the same lease,
    given that read."""
    served = owner.served_read()  # written by the tree alone: the record of what was mirrored before
    index = served.index
    served_products: Mapping[str, Any] = (served.catalog or {}).get("products", {})
    storage = publish_opts.storage or tree.storage
    reports: list[MirrorReport] = []
    products: dict[str, ProductConfig] = {}
    prepared: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}  # product -> the source it is mirrored from
    keeps: dict[str, bool] = {}  # source -> whether what left it stays (its own `keep`)
    taken_dirs = {p.directory for p in tree.products}
    taken_names = {p.name for p in tree.products}
    taken_aliases: dict[tuple[str, str], str] = {}  # the tree's own first: an upstream never takes one of theirs
    for own in tree.products:
        for alias in own.aliases:
            claim_alias(taken_aliases, alias, own.arch, own.name)
    mirrored_dirs = core.served_mirrored_dirs(tree.prefix, index, served_products)
    withdrawn = tree_recorded(index)  # `withdraw` of a mirrored version: this tree's record, it wins
    known = {source_id(r.store.url): r.store.url for r in read}  # source_id -> the source it stands for
    for run, run_filters, source, catalogs, signed in read:
        report = MirrorReport(source=source.url, signed=signed)
        for catalog, text_clean in catalogs:
            selection = core.select(catalog, run_filters, clients=run.clients, max_versions=run.max_versions,
                                    prefix=tree.prefix, taken_dirs=taken_dirs, taken_names=taken_names | set(products),
                                    mirrored_dirs=mirrored_dirs, taken_aliases=taken_aliases,
                                    reserved=tree.layout.reserved,
                                    max_file_size=run.max_file_size, text_clean=text_clean)
            core.without_withdrawn(selection, withdrawn)
            manifests = {name: read_manifest(target, tree, config)[0] for name, config in selection.products.items()}
            prior = core.claim_products(selection, manifests, served_products, source.url, known)
            report.selected.extend(selection.selected)
            report.drops.extend(selection.drops)
            jobs = [c for files in selection.files.values() for c in files]
            for copy in jobs if publish_opts.dry_run else ():  # a real run says what it copied instead
                if target.head(copy.target) is None:
                    report.to_copy.append(copy.target)
                    report.bytes_to_copy += copy.size
            failed: set[tuple[str, str]] = set()
            if not publish_opts.dry_run:
                files = open_source(run.source, storage, files=run) if isinstance(source, HttpStore) else source
                failed = copy_files(files, target, tree, selection, prior.recorded, report, copiers=run.copiers,
                                    quiet=publish_opts.quiet, recorded_combined=prior.recorded_combined)
            for name, (config, manifest) in core.mirrored_manifests(selection, prior, failed, keep=run.keep,
                                                                    source=source.url).items():
                products[name] = config
                prepared[name] = manifest
                sources[name] = source.url
                taken_dirs.add(config.directory)
        keeps[source_id(source.url)] = keeps.get(source_id(source.url), False) or run.keep
        if run_filters and not report.selected:
            log.warning("filters %s matched nothing in %s", " ".join(f.text for f in run_filters), source.url)
        reports.append(report)
    candidates, undeclared = core.departure_candidates(tree.prefix, index, served_products,
                                                       [*(p.name for p in tree.products), *products])
    if undeclared:
        raise MirrorError(f"{target.describe(INDEX_KEY)}: product {undeclared[0]} is served but is neither in "
                          f"tree.yml ({tree.source_file}) nor a mirrored product: pass -c with the tree.yml "
                          "declaring it")
    unmirror = core.departures({name: None if config is None else _maybe_manifest(target, tree, config)
                                for name, config in candidates.items()}, keeps)
    for name in unmirror:
        log.warning("%s: no longer selected from its source: left out of the catalog", name)
    full = replace(tree, products=(*tree.products, *products.values()))
    publish_opts = replace(publish_opts, unmirror=frozenset(unmirror))
    for report in reports:
        report.products = sorted(n for n, s in sources.items() if s == report.source)
        report.versions = sum(len(prepared[n]["versions"]) for n in report.products)
    if publish_opts.dry_run:  # nothing copied: the tree's own products planned as publish --dry-run plans them
        if tree.products:
            planned = publish(tree, target, publish_opts, served=served)
            for report in reports:
                report.publish = planned
        return reports
    for report in reports:  # before the publish, which may be refused for want of any product
        for drop in report.drops:
            log.warning("%s: %s", without_userinfo(report.source), drop)
    try:
        result = publish(full, target, publish_opts, prepared=prepared, lease=lease, served=served)
    except SSBError:
        for problem in (problem for report in reports for problem in report.failed):
            log.warning("%s", problem)  # (else said by the caller, after what was published)
        raise
    for report in reports:
        report.publish = result
    return reports


FILTER_SYNONYMS = {"product": "product_name"}  # list's name of it: one vocabulary for both commands


def publish_tree(tree: TreeConfig, target: Store, opts: PublishOptions
                 ) -> tuple[PublishReport | None, list[MirrorReport]]:
    """`publish`: the tree's own products (commands.publish); with tree.yml's `mirrors:`, the
    mirrored ones too, in the same commit (mirror_all), each mirror's failed versions then among the
    report's problems (each blames its product). (None, reports): a dry run with nothing to plan."""
    if not tree.mirrors:
        return publish(tree, target, opts), []
    reports = mirror_all(tree, target, [MirrorOptions.from_config(m) for m in tree.mirrors], opts)
    report = reports[0].publish
    if report is not None and not opts.dry_run:
        report.problems.extend(problem for r in reports for problem in r.failed)
    return report, reports


def unknown_filter_keys(filters: Sequence[Filter], catalogs: Sequence[Mapping[str, Any]], source: str) -> None:
    """A filter naming a key that no product, version or item of the source has (a typo: it would
    match nothing, or with != everything) is one FilterError, as `list` refuses an unknown key."""
    if not filters:
        return
    keys = {"product_name", "version_name", "item_name"}
    for catalog in catalogs:
        keys |= {k for k, v in catalog.items() if not isinstance(v, Mapping)}
        for product in _mappings(catalog.get("products")):
            keys |= set(product)
            for version in _mappings(product.get("versions")):
                keys |= set(version)
                for item in _mappings(version.get("items")):
                    keys |= set(item)
    for f in filters:
        if f.key not in keys:
            shown = sorted(k for k in keys if isinstance(k, str) and k not in ("products", "versions", "items"))
            raise FilterError(f"filter '{f.text}': no product, version or item of {source} has a key '{f.key}' "
                              f"(keys there: {', '.join(shown[:40])}{', …' if len(shown) > 40 else ''})")


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value.values() if isinstance(v, Mapping)] if isinstance(value, Mapping) else []


def _maybe_manifest(target: Store, tree: TreeConfig, config: ProductConfig) -> dict[str, Any] | None:
    try:
        return read_manifest(target, tree, config)[0]
    except (BudgetSpent, Unreachable):
        raise  # the run's, not this product's
    except SSBError:
        return None


def dump(reports: Sequence[MirrorReport]) -> str:
    return json.dumps([r.as_dict() for r in reports] if len(reports) != 1 else reports[0].as_dict(), indent=2,
                      sort_keys=True)
