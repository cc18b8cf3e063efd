"""`add` (alias `import`): serve an image you built or exported, in one command, with no tree.yml.

    ssb-s3 -t s3://BUCKET/TREE add METADATA [ROOTFS]

Order (nothing is written before step 4; a crash anywhere leaves the served tree as it was, and
running the same `add` again converges: the upload resumes, an image already recorded is not sent
again):
1. recognise the files by their content, whatever their names (ssb_s3.vocabulary.imagefiles names what is
   stored): a metadata tarball (metadata.yaml; `config` for classic LXC) with a root (squashfs,
   qcow2, or an xz tarball), or one unified tarball (metadata.yaml with rootfs/ or rootfs.img).
   The pairs `incus image export` and `lxc image export` write (`<fp>.tar.xz` + `<fp>.squashfs`,
   `meta-<fp>.tar.xz` + `<fp>.tar.xz`) are such pairs; when both names carry a fingerprint they
   must carry the same one, and the files' content must make that image (checked in the upload's
   one hashing pass: ingest_version's `check`);
2. name the product, its folder, aliases and the version from metadata.yaml (ssb_s3.core.adding);
   a product tree.yml declares or the tree's record holds gets a new version with its own settings;
   a new product takes neither the name nor the folder (equal, inside or around) of another one,
   declared, recorded or mirrored, and no alias (with its arch) another served product holds;
3. an image the product already has (same fingerprint) is a no-op that says so; one another served
   product has is refused (clients would refuse both), found in the upload's hashing pass;
4. upload as build-product does (ssb_s3.ingest.upload.ingest_version: checked, create-only,
   resumable, each file read once and hashed in the same pass, recorded in ssb.json last);
5. record a product tree.yml does not declare in the tree's own record (ssb_s3.storage.record);
6. publish that product (ssb_s3.commands.publish: lease, plan, catalog, index.json flipped last);
   every other product keeps its published entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import CANONICAL_ARCH, ProductConfig, TreeConfig, claim_alias, parse_config
from ..core import adding
from ..core.adding import AddError
from ..core.catalog import SHORT_FINGERPRINT, fingerprints
from ..core.plan import PublishReport
from ..core.retention import served_mirrored
from ..errors import ProblemsFound
from ..ingest.upload import IngestResult, ingest_version
from ..storage.artifacts import ArtifactError, tarball_metadata
from ..storage.manifest import read_manifest
from ..storage.record import read_record, record_product
from ..storage.store import CHUNK_SIZE, Store
from ..storage.tree import Tree
from ..vocabulary.document import walk_versions
from ..vocabulary.imagefiles import (
    DELTA_FTYPES,
    HEAD_BYTES,
    IMAGE_FILES,
    ROOT_FOR_CONTENT,
    TARBALL_KINDS,
    VersionHasher,
    file_for,
    sniff,
    upload_order,
)
from ..vocabulary.layout import PRODUCT_RECORD_KEY
from .publish import PublishOptions, publish

FINGERPRINT_NAME = re.compile(r"^(?:meta-)?([0-9a-f]{64})\.")  # what `incus/lxc image export` write


@dataclass(frozen=True)
class AddRequest:
    """The command line of `add`."""

    metadata: Path
    rootfs: Path | None = None
    product_name: str | None = None
    aliases: tuple[str, ...] = ()
    default_alias: bool = True
    version: str | None = None
    days: int | None = None
    dry_run: bool = False
    part_size: int = 8 << 20
    concurrency: int = 4


@dataclass
class AddReport:
    """What `add` did, or (dry run) would do."""

    product: str
    version: str
    folder: str
    files: dict[str, str]  # stored file name -> the local file
    aliases: list[str]
    new_product: bool
    recorded: bool = False  # the tree's record changed (a new product, or new aliases or days)
    identical_to: str | None = None  # the version that already holds this image: nothing uploaded
    ingest: IngestResult | None = None
    publish: PublishReport | None = None
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        ingest = self.ingest
        return {
            "product": self.product, "version": self.version, "folder": self.folder, "files": self.files,
            "aliases": self.aliases, "new_product": self.new_product, "recorded": self.recorded,
            "identical_to": self.identical_to, "dry_run": self.dry_run, "notes": self.notes,
            "uploaded": ingest.uploaded if ingest else [], "already_there": ingest.skipped if ingest else [],
            "bytes_uploaded": ingest.bytes_uploaded if ingest else 0,
            "publish": self.publish.as_dict() if self.publish else None,
        }  # fmt: skip


@dataclass(frozen=True)
class Recognised:
    """The files as they will be stored, and what metadata.yaml says (None: classic LXC)."""

    files: dict[str, Path]
    meta: dict[str, Any] | None
    vm: bool
    named_fingerprint: str | None  # the image both export names carry


def _head(path: Path, label: str) -> bytes:
    if not path.is_file():
        raise AddError(f"{label} {path}: no such file")
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise AddError(f"{label} {path}: cannot read it: {exc.strerror or exc}") from None
    if not head:
        raise AddError(f"{label} {path}: empty file")
    return head


def _is_tar(path: Path) -> bool:
    import tarfile

    try:
        with tarfile.open(path, mode="r|*") as tar:
            return tar.next() is not None
    except (tarfile.TarError, OSError, EOFError, ValueError):
        return False


def _root_name(path: Path, head: bytes) -> str:
    """The file name of the root row (imagefiles.ROOT_FOR_CONTENT) whose content this file holds; a
    compressed root (a tarball kind) must be a tarball."""
    kind = sniff(head)
    row = ROOT_FOR_CONTENT.get(kind)
    if row is not None and (kind not in TARBALL_KINDS or _is_tar(path)):
        return row.filename
    what = f"a {kind} stream that is not a tarball" if row is not None else \
        (f"a tarball compressed with {kind}" if kind in TARBALL_KINDS and _is_tar(path) else kind)
    accepted = ", ".join(f"{k}{' tarball' if k in TARBALL_KINDS else ''} ({r.filename})"
                         for k, r in ROOT_FOR_CONTENT.items())
    raise AddError(f"ROOTFS {path}: content is {what}; a root file must be one of: {accepted}")


def recognise(request: AddRequest) -> Recognised:
    """Step 1 of the module docstring."""
    meta_path, root_path = request.metadata, request.rootfs
    head = _head(meta_path, "METADATA")
    root_head = _head(root_path, "ROOTFS") if root_path is not None else b""
    root_only = set(ROOT_FOR_CONTENT) - set(TARBALL_KINDS)  # what no metadata tarball holds
    if root_path is not None and sniff(head) in root_only and sniff(root_head) not in root_only:
        meta_path, root_path, head, root_head = root_path, meta_path, root_head, head  # given the other way round
    if sniff(head) not in TARBALL_KINDS:
        raise AddError(f"METADATA {meta_path}: content is {sniff(head)}, expected a tarball holding metadata.yaml")
    try:
        meta, seen = tarball_metadata(meta_path, unified=root_path is None)
    except ArtifactError as exc:
        raise AddError(str(exc)) from None
    if meta is None and "config" not in seen:
        raise AddError(f"{meta_path}: metadata.yaml is missing (LXD and Incus refuse such an image); "
                       "expected an image's metadata tarball or unified tarball")
    files: dict[str, Path]
    vm = False
    if root_path is None:
        if meta is None:
            raise AddError(f"{meta_path}: a classic LXC metadata tarball needs its root: add METADATA ROOTFS")
        if not seen & {"rootfs", "rootfs.img"}:
            raise AddError(f"{meta_path}: holds metadata.yaml but no rootfs/ nor rootfs.img: not a unified tarball; "
                           "give its root too: add METADATA ROOTFS")
        vm = "rootfs.img" in seen and "rootfs" not in seen
        files = {file_for("unified", "LXD"): meta_path}
    else:
        root = _root_name(root_path, root_head)
        if meta is None:
            lxc_meta = IMAGE_FILES[file_for("lxc-meta", "LXD")]
            if not IMAGE_FILES[root].lxc_root:
                roots = " or ".join(r.filename for r in IMAGE_FILES.values() if r.lxc_root)
                raise AddError(f"ROOTFS {root_path}: a classic LXC image's root must be {roots}")
            if sniff(head) not in lxc_meta.content:
                raise AddError(f"METADATA {meta_path}: a classic LXC metadata tarball must be "
                               f"{' or '.join(lxc_meta.content)}-compressed ({lxc_meta.filename})")
            files = {lxc_meta.filename: meta_path, root: root_path}
        else:
            files = {file_for("meta", "LXD"): meta_path, root: root_path}
            vm = IMAGE_FILES[root].vm
    if meta_path.resolve() == (root_path.resolve() if root_path else None):
        raise AddError(f"METADATA and ROOTFS are the same file {meta_path}")
    named = [m.group(1) for p in (meta_path, root_path) if p is not None for m in [FINGERPRINT_NAME.match(p.name)] if m]
    if len(named) == 2 and named[0] != named[1]:
        raise AddError(f"{meta_path.name} and {root_path.name if root_path else ''}: files of two different images "
                       f"(their names carry the fingerprints {named[0][:12]} and {named[1][:12]})")
    return Recognised(files, meta, vm, named[0] if len(named) == 2 or (named and root_path is None) else None)


def _local_fingerprints(files: Mapping[str, Path]) -> tuple[set[str], dict[str, Any]]:
    """The image fingerprints and items of local files, read once (only when a duplicate is likely)."""
    hasher = VersionHasher()
    for name in upload_order(files):
        feed = hasher.start(name)
        with files[name].open("rb") as fh:
            while chunk := fh.read(CHUNK_SIZE):
                feed(chunk)
        hasher.finish(name)
    items = hasher.items("")
    return fingerprints(items), items


def _identical(manifest: Mapping[str, Any] | None, files: Mapping[str, Path], version: str | None) -> str | None:
    """The version of `manifest` holding the same image as `files` (None: none). Files are hashed only
    when some version has files of the same sizes (or the same name)."""
    versions: Mapping[str, Any] = (manifest or {}).get("versions", {})
    sizes = sorted(p.stat().st_size for p in files.values())
    candidates = [name for name, entry in sorted(versions.items())
                  if name == version or sorted(int(i.get("size", -1)) for i in entry.get("items", {}).values()
                                               if str(i.get("ftype", "")) not in DELTA_FTYPES) == sizes]
    if not candidates:
        return None
    local, _ = _local_fingerprints(files)
    for name in candidates:
        if local & fingerprints(versions[name].get("items", {})):
            return name
    if version in versions:
        raise AddError(f"version {version} already holds another image of this product: give --version")
    return None


def _product(tree: TreeConfig, declared: frozenset[str], recorded: Mapping[str, dict[str, Any]],
             served: Served, request: AddRequest, image: Recognised,
             where: str) -> tuple[ProductConfig, dict[str, Any] | None, bool]:
    """(the product, its record entry to write (None: declared in tree.yml), whether it is new).
    `served`: the folders of the served products neither tree.yml nor the record declares (mirrored)."""
    facts = adding.image_facts(image.meta, where) if image.meta is not None else None
    if request.product_name is not None:
        problem = adding.name_problem(request.product_name)
        if problem:
            raise AddError(f"--product-name: {problem}")
        name = request.product_name
    elif facts is None:
        raise AddError(f"{where}: a classic LXC metadata tarball has no metadata.yaml: give --product-name "
                       "of an existing product")
    else:
        name = adding.default_name(facts, where)
    for alias in request.aliases:
        problem = adding.alias_problem(alias)
        if problem:
            raise AddError(f"--alias: {problem}")
    existing = next((p for p in tree.products if p.name == name), None)
    if existing is not None and (existing.source or existing.prefix_path):
        raise AddError(f"--product-name {name}: its versions live in its `source` or `prefix_path` "
                       f"({tree.source_file}), not in this tree: upload there (build-product --from-dir)")
    if existing is not None and name in declared:
        if request.aliases or request.days is not None:
            raise AddError(f"--alias/--days: product {name} is declared in {tree.source_file}: "
                           "set its aliases and days there")
        return existing, None, False
    if existing is not None:
        entry = dict(recorded.get(name) or {})
        entry["aliases"] = list(dict.fromkeys([*entry.get("aliases", []), *request.aliases]))
        if request.days is not None:
            entry["days"] = request.days
        return _config(entry, where), entry, False
    if facts is None:
        raise AddError(f"--product-name {name}: no such product; a classic LXC image (no metadata.yaml) can only "
                       "be added to an existing product")
    folder = adding.folder_of(name)
    if name in served.folders:
        raise AddError(f"--product-name {name}: the tree serves a product of that name that neither "
                       f"{tree.source_file} nor {PRODUCT_RECORD_KEY} declares (a mirrored one); "
                       "give another --product-name")
    clash = adding.overlap(folder, {**served.folders, **{p.name: p.directory for p in tree.products}})
    if clash is not None:
        owner = tree.source_file if clash in declared else PRODUCT_RECORD_KEY if clash in recorded else "mirrored"
        raise AddError(f"--product-name {name}: its folder {folder} collides with the folder of product {clash} "
                       f"({owner}); give another --product-name")
    aliases = [adding.default_alias(facts, where)] if request.default_alias else []
    aliases = list(dict.fromkeys([*aliases, *request.aliases]))
    days = adding.DEFAULT_DAYS if request.days is None else request.days
    entry = adding.product_entry(name, facts, aliases, days, where)
    return _config(entry, where), entry, True


@dataclass
class Served:
    """What the served catalog says about the products other than the one being added."""

    folders: dict[str, str] = field(default_factory=dict)  # mirrored product (undeclared) -> its folder
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)  # (alias, canonical arch) -> product
    images: dict[str, tuple[str, str]] = field(default_factory=dict)  # fingerprint -> (product, version)


def served_others(tree: TreeConfig, store: Store) -> Served:
    """Read the served catalog once (see Served)."""
    index, _, _, catalog = Tree(tree, store).served()
    catalog = catalog or {}
    mirrored = served_mirrored(index)
    known = {p.name for p in tree.products}
    served = Served()
    prefix = tree.under_prefix("")
    for name, product in sorted(catalog.get("products", {}).items()):
        if not isinstance(product, Mapping):
            continue
        versions = {v: e for v, e in (product.get("versions") or {}).items() if isinstance(e, Mapping)}
        for version, entry in versions.items():
            for fp in fingerprints(entry.get("items") or {}):
                served.images.setdefault(fp, (name, version))
        aliases = product.get("aliases")
        for alias in aliases.split(",") if isinstance(aliases, str) and aliases else ():
            claim_alias(served.aliases, alias, str(product.get("arch", "")), name)
        if name in known or name not in mirrored:
            continue
        paths = {str(item.get("path", "")).rsplit("/", 2)[0] for entry in versions.values()
                 for item in (entry.get("items") or {}).values()
                 if isinstance(item, Mapping) and str(item.get("path", "")).count("/") >= 2}
        served.folders[name] = next(iter(paths)).removeprefix(prefix) if len(paths) == 1 else name
    return served


def _alias_clash(product: ProductConfig, served: Served) -> None:
    """A client shows one image per alias and arch: an alias another product holds is refused."""
    arch = CANONICAL_ARCH.get(product.arch, product.arch)
    for alias in product.aliases:
        owner = served.aliases.get((alias, arch))
        if owner is not None and owner != product.name:
            raise AddError(f"alias {alias} ({arch}) already belongs to product {owner}: give --no-default-alias "
                           "and other --alias values, or --product-name of that product")


def _config(entry: Mapping[str, Any], where: str) -> ProductConfig:
    try:
        return parse_config({"products": [dict(entry)]}, where).products[0]
    except ProblemsFound as exc:
        raise AddError(f"{where}: {exc.problems[0].field}: {exc.problems[0].text}") from None


def add_image(tree: TreeConfig, declared: frozenset[str], store: Store, request: AddRequest,
              opts: PublishOptions, quiet: bool = False) -> AddReport:
    """Add one image to the tree (see the module docstring). `declared`: the names tree.yml declares."""
    image = recognise(request)
    where = str(request.metadata)
    entries, _ = read_record(store)
    recorded = {str(e.get("name")): e for e in entries}
    served = served_others(tree, store)
    product, entry, new = _product(tree, declared, recorded, served, request, image, where)
    _alias_clash(product, served)
    facts = adding.image_facts(image.meta, where) if image.meta is not None else None
    version = adding.version_name(facts, request.version, where) if facts is not None else request.version
    others = [p for p in tree.products if p.name != product.name]
    full = replace(tree, products=(*others, product))
    report = AddReport(product.name, version or "", full.product_dir(product),
                       {name: str(path) for name, path in sorted(image.files.items())}, list(product.aliases), new,
                       dry_run=request.dry_run)
    manifest = read_manifest(store, full, product)[0]  # a new product too: an `add` stopped before step 5
    report.identical_to = _identical(manifest, image.files, version)
    if report.identical_to is not None:
        report.version = report.identical_to
        report.notes.append(f"{product.name}: this image is already version {report.identical_to} (same fingerprint): "
                            "nothing uploaded")
    if request.dry_run:
        return report
    if report.identical_to is None:
        named = image.named_fingerprint

        def same_image(items: Mapping[str, Any]) -> str | None:
            elsewhere = sorted(served.images[fp] for fp in fingerprints(items)
                               if served.images.get(fp, (product.name,))[0] != product.name)
            if elsewhere:
                other, at = elsewhere[0]
                return (f"{product.name}: this image is already served as {other} {at} (same fingerprint; clients "
                        "would refuse both: 'More than one match'): add it to that product with --product-name")
            if named is None or named in fingerprints(items):
                return None
            made = ", ".join(sorted(fp[:12] for fp in fingerprints(items)))
            if request.rootfs is None:
                return f"{request.metadata.name}: its name says image {named[:12]}, its content makes {made}"
            return (f"{request.metadata.name} and {request.rootfs.name}: files of two different images "
                    f"(their names say {named[:12]}, their content makes {made})")

        report.ingest = ingest_version(store, full, product, image.files, version=version, vm=image.vm,
                                       part_size=request.part_size, concurrency=request.concurrency, quiet=quiet,
                                       check=same_image)
        report.version = report.ingest.version
    if entry is not None:
        report.recorded = record_product(store, entry)
    local = tuple((f"{full.product_dir(product)}/{report.version}/{name}", str(path))
                  for name, path in image.files.items()) if report.ingest else ()
    report.publish = publish(full, store, replace(opts, local_files=local), only={product.name})
    return report


def is_fingerprint(image: str) -> bool:
    """Whether `image` reads as an image fingerprint: at least 12 hex digits, as `incus image list` shows them."""
    return re.fullmatch(f"[0-9a-f]{{{SHORT_FINGERPRINT},64}}", image) is not None


def find_fingerprint(tree: TreeConfig, store: Store, image: str) -> tuple[str, str]:
    """`remove FINGERPRINT`: (product, fingerprint) of the one served image whose fingerprint starts
    with `image` (at least 12 hex digits, as `incus image list` shows them)."""
    if not is_fingerprint(image):
        raise AddError(f"'{image}' is neither a product ({', '.join(p.name for p in tree.products) or 'none'}) "
                       f"nor an image fingerprint (at least {SHORT_FINGERPRINT} hex digits)")
    catalog = Tree(tree, store).served()[3] or {}
    found = sorted({(name, fp) for name, _, _, entry in walk_versions(catalog)
                    for fp in fingerprints(entry.get("items", {})) if fp.startswith(image)})
    if not found:
        raise AddError(f"{store.describe('')}: no served image has the fingerprint {image}")
    if len({name for name, _ in found}) > 1 or len(found) > 1:
        raise AddError(f"fingerprint {image} is ambiguous: {', '.join(f'{n} {fp[:16]}' for n, fp in found)}")
    return found[0]
