"""The effective configuration printed back as tree.yml (`ssb-s3 print`).

The output is itself a valid tree.yml that loads to the same TreeConfig: defaults filled in,
durations in seconds, local paths absolute (a saved copy names the same folders wherever it lives).
"""

from __future__ import annotations

import os
from typing import Any

from .model import MirrorConfig, TreeConfig


def config_as_dict(tree: TreeConfig) -> dict[str, Any]:
    """The effective configuration, defaults filled in, in tree.yml's own shape (for `print`).

    A local `source` is printed absolute: the output, saved anywhere, names the same folder (a
    relative one would be read relative to wherever it is saved).
    """
    products = []
    for p in tree.products:
        entry: dict[str, Any] = {
            "name": p.name, "arch": p.arch, "release": p.release,
            "release_title": p.release_title, "os": p.os, "directory": p.directory,
            "days": p.days, "hidden": p.hidden, "aliases": list(p.aliases),
        }  # fmt: skip
        if p.max_age is not None:
            entry["max_age"] = f"{p.max_age}s"
        if p.deltas:
            entry["deltas"] = p.deltas
        for key in ("version", "prefix_path", "source", "variant", "support_eol", "build_script_hook"):
            if getattr(p, key):
                entry[key] = getattr(p, key)
        if p.source and not p.source.startswith("s3://"):
            entry["source"] = os.path.abspath(p.source)
        if p.requirements:
            entry["requirements"] = dict(p.requirements)
        products.append(entry)
    storage = {k: v for k, v in vars(tree.storage).items() if v is not None}
    return {
        "prefix": "/" + tree.prefix,
        "images_path": tree.images_path,
        "datatype": tree.datatype,
        "format": tree.format,
        "content_id": tree.content_id,
        "storage": storage,
        "cache_control": vars(tree.cache_control),
        "grace": f"{tree.grace}s",
        "lease_ttl": f"{tree.lease_ttl}s",
        "delta_max_ratio": tree.delta_max_ratio,
        "xdelta3": tree.xdelta3,
        "hooks": {"manifest_on_upload": tree.hooks.manifest_on_upload, "debounce": f"{tree.hooks.debounce}s"},
        **({"signing": {"key": tree.signing.key, "detached": tree.signing.detached,
                        "timeout": f"{tree.signing.timeout}s",
                        **({"gnupghome": os.path.abspath(tree.signing.gnupghome)} if tree.signing.gnupghome else {})}}
           if tree.signing.key else {}),
        "page": {k: v for k, v in vars(tree.page).items() if k != "enabled" and v != ""}
        if tree.page.enabled else False,
        "products": products,
        **({"mirrors": [_mirror_as_dict(m) for m in tree.mirrors]} if tree.mirrors else {}),
    }


def _mirror_as_dict(mirror: MirrorConfig) -> dict[str, Any]:
    entry: dict[str, Any] = {"source": mirror.source, "filters": list(mirror.filters),
                             "for": [c.lower() for c in mirror.clients], "keep": mirror.keep, "verify": mirror.verify,
                             "max_file_size": mirror.max_file_size, "stall_bytes": mirror.stall_bytes,
                             "stall_seconds": mirror.stall_seconds}
    if mirror.max_versions is not None:
        entry["max"] = mirror.max_versions
    if mirror.keyring:
        entry["keyring"] = os.path.abspath(mirror.keyring)
    return entry
