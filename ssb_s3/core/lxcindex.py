"""The classic LXC image index (`lxc-create -t download`), as pure functions of the catalog.

LXC's download template (LXC 5.0.2 `templates/lxc-download`) GETs
`https://<server>/meta/1.0/index-<mode>.<compat>` (mode `system`, or `user` inside a user
namespace; compat level 7 in LXC 5.0.2, lower in older releases), falls back to the name without `.<compat>`
when that fails, and reads one image per line, `dist;release;arch;variant;build_id;path`. It
then GETs `https://<server>/<path>/rootfs.tar.xz` and `<path>/meta.tar.xz` (LXC's own metadata:
config, config-user, templates, create-message, expiry, excludes-user; unpacked with `tar J`).
images.linuxcontainers.org (lxc-ci `bin/jenkins-import-images`) serves the same lines under both
modes, only under the plain names (it removes the old `.N` copies), one line per
dist/release/arch/variant naming its newest build.

Here: one line per catalog product whose newest version (the catalog holds the versions retention
keeps) has an LXC image, i.e. an item of an LXC metadata kind and an item of an LXC root kind
(vocabulary/imagefiles: role `lxc-meta`, `lxc_root`) side by side in one folder under the names the
client asks for. dist/release/arch/variant are the catalog entry's os/release/arch/variant (the
catalog takes them from tree.yml: core/catalog.catalog_product); a missing variant is LXC's
default, `default`; the arch is LXC's name for the catalog's (x86_64 -> amd64, aarch64 -> arm64,
...); build_id is the version name; path is the version folder relative to the tree root, without
a leading slash (the client joins it with '/'; AWS S3 keeps a doubled slash in the key, SeaweedFS
and MinIO fold it). The index itself is asked for as `https://<server>//meta/1.0/...`: SeaweedFS
(checked) and MinIO fold the '//', AWS S3 would look for a key with it (README).

Invariants: the lines are sorted and name only items of the catalog they are rendered from (so
retention protects what they name exactly as it protects the catalog's files, and verify finds
them); a product the contract check (`entry_problems`) refuses is never written as a line, and
it refuses a field with ';' or any character vocabulary/text refuses (NUL, ESC, a line break, ...);
`parse_index` (verify) flags such a line in a served index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import CANONICAL_ARCH
from ..vocabulary import imagefiles
from ..vocabulary.layout import version_file_key
from ..vocabulary.text import text_problem

DEFAULT_VARIANT = "default"  # lxc-download's --variant default

# LXC's architecture names (lxc-ci's image matrix), by the canonical name of config.ARCH_ALIASES.
LXC_ARCH: dict[str, str] = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "armhf",
    "i686": "i386",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
LXC_ARCHES = tuple(LXC_ARCH.values())
FIELDS = ("dist", "release", "arch", "variant", "build_id", "path")


def lxc_arch(arch: str) -> str | None:
    """LXC's name of a catalog arch (LXD or LXC spelling), or None when LXC has none."""
    canonical = CANONICAL_ARCH.get(arch)
    return LXC_ARCH.get(canonical) if canonical else None


def lxc_files() -> tuple[str, str]:
    """(LXC metadata file name, LXC root file name) as the client asks for them."""
    meta = next(r.filename for r in imagefiles.IMAGE_FILES.values() if r.role == "lxc-meta")
    root = next(r.filename for r in imagefiles.IMAGE_FILES.values() if r.lxc_root)
    return meta, root


@dataclass(frozen=True)
class LxcImage:
    """One line of the index."""

    dist: str
    release: str
    arch: str
    variant: str
    build_id: str
    path: str

    def line(self) -> str:
        return ";".join(getattr(self, name) for name in FIELDS)


def _lxc_items(items: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """(LXC metadata item, LXC root item) of a version's items, either None when absent."""
    meta: Mapping[str, Any] | None = None
    root: Mapping[str, Any] | None = None
    for key in sorted(items):
        item = items[key]
        ftype = item.get("ftype")
        if meta is None and ftype in imagefiles.LXC_META_FTYPES:
            meta = item
        if root is None and ftype in imagefiles.LXC_ROOT_FTYPES:
            root = item
    return meta, root


def newest_lxc_version(entry: Mapping[str, Any]) -> tuple[str, Mapping[str, Any], Mapping[str, Any]] | None:
    """(version name, LXC metadata item, LXC root item) of the entry's newest version, when that
    version has an LXC image."""
    versions = entry.get("versions") or {}
    if not versions:
        return None
    name = max(versions)
    meta, root = _lxc_items(versions[name].get("items", {}))
    return (name, meta, root) if meta is not None and root is not None else None


def entry_problems(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, text) for everything that keeps a catalog product entry's LXC image from being one
    index line lxc-create can use; [] when it has none or it is sound."""
    found = newest_lxc_version(entry)
    if found is None:
        return []
    vname, meta, root = found
    problems: list[tuple[str, str]] = []
    values = {  # (tree.yml's name, LXC's name): value
        ("os", "dist"): entry.get("os"), ("release", "release"): entry.get("release"),
        ("variant", "variant"): entry.get("variant") or DEFAULT_VARIANT, (f"version {vname}", "build_id"): vname,
    }
    for (name, lxc_name), value in values.items():
        if not isinstance(value, str) or not value:
            problems.append((name, f"is empty, but it is the LXC index field {lxc_name}"))
        elif text_problem(value):
            problems.append((name, f"{value!r} {text_problem(value)}: the LXC index (one line of "
                                   f"';'-separated fields per image) cannot hold it in its field {lxc_name}"))
        elif ";" in value:
            problems.append((name, f"{value!r} contains ';', which the LXC index (one line of "
                                   f"';'-separated fields per image) cannot hold in its field {lxc_name}"))
    if lxc_arch(str(entry.get("arch"))) is None:
        problems.append(("arch", f"arch '{entry.get('arch')}' has no LXC name (LXC knows "
                                 f"{', '.join(LXC_ARCHES)}; LXD names such as x86_64 are mapped)"))
    meta_name, root_name = lxc_files()
    folder = str(meta.get("path", "")).rpartition("/")[0]
    for item, name in ((meta, meta_name), (root, root_name)):
        if item.get("path") != version_file_key(folder, name) or not folder:
            problems.append((f"version {vname}", f"LXC image files must be {meta_name} and {root_name} in one "
                                                  f"folder (lxc-create fetches <path>/{name}); got "
                                                  f"{meta.get('path')!r} and {root.get('path')!r}"))
            break
    return problems


def collision_problems(products: Mapping[str, Any], checked: Iterable[str]) -> list[tuple[str, str]]:
    """(product, text) for products whose LXC image has the same dist;release;arch;variant as another
    product's: lxc-create takes the first matching line, so the other image could never be created.
    The image keeps its first claimant (an unchanged product, else the first by name); only
    `checked` products are blamed (an incremental publish checks only what it changes)."""
    checked = set(checked)
    claims: dict[tuple[str, ...], list[str]] = {}
    for pname, entry in sorted(products.items()):
        if isinstance(entry, Mapping) and newest_lxc_version(entry) is not None and not entry_problems(entry):
            key: tuple[str, ...] = (entry["os"], entry["release"], str(lxc_arch(entry["arch"])),
                                    entry.get("variant") or DEFAULT_VARIANT)
            claims.setdefault(key, []).append(pname)
    problems = []
    for image, names in sorted(claims.items()):
        if len(names) > 1:
            owner = next((n for n in names if n not in checked), names[0])
            problems += [(n, f"LXC image {';'.join(image)} is also given by product {owner} (lxc-create takes the "
                             "first line that matches: set another os, release, arch or variant)")
                         for n in names if n != owner and n in checked]
    return problems


def lxc_images(catalog: Mapping[str, Any]) -> list[LxcImage]:
    """The index's images, sorted by line: one per product whose newest version has a sound LXC image."""
    images = []
    for _, entry in sorted((catalog.get("products") or {}).items()):
        if not isinstance(entry, Mapping):
            continue
        found = newest_lxc_version(entry)
        if found is None or entry_problems(entry):
            continue
        vname, meta, _ = found
        images.append(LxcImage(dist=entry["os"], release=entry["release"], arch=str(lxc_arch(entry["arch"])),
                               variant=entry.get("variant") or DEFAULT_VARIANT, build_id=vname,
                               path=str(meta["path"]).rpartition("/")[0]))
    return sorted(images, key=LxcImage.line)


def render_index(images: Iterable[LxcImage]) -> bytes:
    """The index file: one line per image, each ending in a newline; with no image, one empty line
    (as lxc-ci writes it; the client skips it). Never zero bytes: SeaweedFS 4 hangs on concurrent
    zero-byte PUTs (checked here: four of them, as the views are written, never answer)."""
    return "".join(f"{image.line()}\n" for image in images).encode() or b"\n"


def parse_index(data: bytes) -> tuple[list[LxcImage], list[str]]:
    """(images, problems) of a served index, read as lxc-download reads it (blank lines skipped)."""
    images, problems = [], []
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return [], ["not UTF-8 text"]
    for number, line in enumerate(text.split("\n"), start=1):  # lxc-download's `read`: lines end at \n only
        if not line.strip(" \t"):
            continue
        why = text_problem(line)
        if why:
            problems.append(f"line {number}: {line[:80]!r} {why}")
            continue
        fields = line.split(";")
        if len(fields) != len(FIELDS) or not all(fields):
            problems.append(f"line {number}: expected {len(FIELDS)} non-empty fields "
                            f"({';'.join(FIELDS)}), got {line[:80]!r}")
            continue
        image = LxcImage(*fields)
        if image.arch not in LXC_ARCHES:
            problems.append(f"line {number}: arch '{image.arch}' is not one of LXC's ({', '.join(LXC_ARCHES)})")
        images.append(image)
    return images, problems
