"""build-product: build (or take) one version's files, upload and record it, then publish the tree.

Order: a signed tree without a key refuses before anything is built (its publish would be
refused); distrobuilder runs into a staging folder (or --from-dir is taken as it is); the version
is uploaded and recorded in ssb.json by ssb_s3.ingest.upload (ssb.json read once, the new one
planned by core.ingest, written If-Match); then, unless told not to, the whole tree is published
(commands.publish: snapshot → plan → commit under the lease), its new version's deltas made from
the files just built. A temporary staging folder is removed once the version is recorded, whatever
the publish does (a failed build or upload leaves it, with distrobuilder's output, to look at).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import ProductConfig, TreeConfig
from ..core.plan import PublishReport
from ..ingest.builder import BuildRequest, cleanup, gather, run_builder, staging_dir
from ..ingest.upload import DEFAULT_VERSION_FORMAT, IngestResult, ingest_version
from ..storage.store import CHUNK_SIZE, Store
from .publish import PublishOptions, publish, refuse_unsigned_over_signed


@dataclass(frozen=True)
class BuildOptions:
    """How build-product builds and uploads one version (the publish after it: PublishOptions)."""

    from_dir: Path | None = None  # already-built files instead of running distrobuilder
    staging_dir: str | None = None  # where distrobuilder writes (None: a temporary folder, removed after)
    version: str | None = None
    version_format: str = DEFAULT_VERSION_FORMAT
    vm: bool = False
    unified: bool = False
    incus: bool = False
    part_size: int = CHUNK_SIZE
    concurrency: int = 4
    quiet: bool = False
    publish: PublishOptions | None = field(default_factory=PublishOptions)  # None: --no-publish


def build_product(tree: TreeConfig, target: Store, store: Store, product: ProductConfig, request: BuildRequest,
                  opts: BuildOptions, recorded: Callable[[IngestResult], None] = lambda _: None,
                  ) -> tuple[IngestResult, PublishReport | None]:
    """Build, upload and record one version of `product` into `store` (the target, or the product's
    `source`), then publish the tree to `target` (module docstring). `recorded` is told of the
    version once it is in ssb.json, before the publish."""
    if opts.publish is not None:  # before the build and the upload: its publish would be refused
        refuse_unsigned_over_signed(tree, target)
    staging, remove = (None, False) if opts.from_dir else staging_dir(opts.staging_dir)
    if opts.from_dir is not None:
        files = gather([("build-lxd", opts.from_dir)], opts.unified, opts.incus, rename=False)
    else:
        assert staging is not None
        files = run_builder(request, staging, quiet=opts.quiet)
    result = ingest_version(store, tree, product, files, version=opts.version, version_format=opts.version_format,
                            vm=opts.vm, part_size=opts.part_size, concurrency=opts.concurrency, quiet=opts.quiet)
    try:
        recorded(result)
        if opts.publish is None:
            return result, None
        # The new version's deltas are made from the files just built (no download of them).
        local = tuple((f"{tree.product_dir(product)}/{result.version}/{name}", str(path))
                      for name, path in files.items())
        return result, publish(tree, target, replace(opts.publish, local_files=local))
    finally:
        if staging is not None and remove:
            cleanup(staging)
