"""withdraw: take one version of a product out of its ssb.json and out of the served catalog.

It is a publish of that one product (ssb_s3.commands.publish, `only`) with one more input to the
pure plan (ssb_s3.core.plan.Withdrawal, decided in ssb_s3.core.withdrawal), so it runs under the
same lease and writes in the same order: the product's ssb.json (If-Match the ETag it was read
with, the version moved to its `withdrawn` section), then the views, then index.json last. A
reader sees the old catalog (the version and its files still there) or the new one (without
it), never a catalog naming files that are gone. The files stay until no catalog current within
the grace period names them; then this run's purge, or a later publish's, deletes them. A product
read from another store (`source:`) is read-only: nothing is written there, the withdrawal is
recorded in this tree's index.json by the flip itself (ssb_s3.core.withdrawal.TREE_RECORD). So is
the withdrawal of a mirrored version (a product `mirror` put in the tree, which tree.yml need not
declare: its config comes from the served index and catalog, core.mirror.served_mirrored_product):
each mirror run rewrites that ssb.json from the upstream, and the tree's record wins over the
upstream naming the version again (commands.mirror leaves it out of its selection).

With dry_run nothing is written and no lease is taken. A bad reason, an unknown version or
fingerprint, an ambiguous prefix and the last version without `force` are one-line
WithdrawErrors raised before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..config import TreeConfig
from ..core.mirror import served_mirrored_product
from ..core.plan import PublishReport, Withdrawal
from ..core.withdrawal import reason_problem
from ..errors import WithdrawError
from ..storage.store import Store
from ..storage.tree import Tree
from ..vocabulary.document import Catalog
from ..vocabulary.layout import INDEX_KEY
from .add import find_fingerprint, is_fingerprint
from .listing import ImageRow, catalog_rows
from .publish import PublishOptions, publish


@dataclass(frozen=True)
class AliasMove:
    """Where an alias of the product points before and after (version "": no image any more)."""

    alias: str
    arch: str
    type: str
    before: str
    after: str


def withdraw(tree: TreeConfig, target: Store, withdrawal: Withdrawal, opts: PublishOptions) -> PublishReport:
    """Withdraw one version (see the module docstring); the report's `withdrawn` says which."""
    why = reason_problem(withdrawal.reason)
    if why:
        raise WithdrawError(f"--reason: {why}")
    if withdrawal.product not in {p.name for p in tree.products}:
        index, _, _, served = Tree(tree, target).served()
        mirrored = served_mirrored_product(tree.prefix, index, (served or {}).get("products", {}), withdrawal.product)
        if mirrored is None:
            raise WithdrawError(f"{tree.source_file}: no product named {withdrawal.product} (nor does "
                                f"{target.describe(INDEX_KEY)} record a mirrored product of that name)")
        tree = replace(tree, products=(*tree.products, mirrored))
    opts = PublishOptions(**{**vars(opts), "withdraw": withdrawal})
    return publish(tree, target, opts, only={withdrawal.product})


def remove(tree: TreeConfig, target: Store, image: str, version: str, reason: str,
           opts: PublishOptions) -> PublishReport:
    """incus-simplestreams' `remove`: withdraw PRODUCT [VERSION], or the image of a fingerprint (at
    least its first 12 hex digits) whatever its product."""
    product = image
    if image not in {p.name for p in tree.products} and not version and is_fingerprint(image):
        product, version = find_fingerprint(tree, target, image)
    return withdraw(tree, target, Withdrawal(product, version, reason), opts)


def _holders(rows: list[ImageRow], product: str) -> dict[tuple[str, str, str], str]:
    return {(alias, row.arch, row.type): row.version for row in rows if row.product == product
            for alias in row.aliases}


def _rows(catalog: Mapping[str, Any]) -> list[ImageRow]:
    """The images the clients list from a catalog the publish read or built; none from an empty
    or ill-typed one (a served catalog is not trusted: the publish reported its shape)."""
    try:
        return catalog_rows(Catalog.from_json(catalog)) if catalog else []
    except (TypeError, KeyError):
        return []


def alias_moves(report: PublishReport) -> list[AliasMove]:
    """The product's aliases whose image changes, as the clients hand them out (ssb_s3.commands.listing)."""
    if report.withdrawn is None or report.catalogs is None:
        return []
    product = report.withdrawn["product"]
    before, after = (_holders(_rows(c), product) for c in report.catalogs)
    return [AliasMove(alias, arch, kind, version, after.get((alias, arch, kind), ""))
            for (alias, arch, kind), version in sorted(before.items())
            if after.get((alias, arch, kind), "") != version]


def summary(report: PublishReport) -> list[str]:
    """What the withdrawal changes, one line each: the version, every version the catalog loses or
    gains (an older version retention had left out comes back), the aliases, the files. A dry run
    prints the same lines as the real run (but for its verbs): it plans the same publish."""
    found: Mapping[str, Any] | None = report.withdrawn
    if found is None:
        return []
    product, version = found["product"], found["version"]
    verb = "would withdraw" if report.dry_run else "withdrawn"
    reason = f": {found['reason']}" if found["reason"] else ""
    lines = [f"{verb} {product} {version} (images {', '.join(fp[:12] for fp in found['fingerprints'])}){reason}"]
    for name, change in sorted(report.changes.items()):  # every version the catalog gains or loses
        for gone in change["removed"]:
            lines.append(f"- {name} {gone} leaves the catalog")
        for back in change["added"]:
            why = f" (within retention once {version} is withdrawn)" if name == product and back < version else ""
            lines.append(f"+ {name} {back} enters the catalog{why}")
    for move in alias_moves(report):
        lines.append(f"alias {move.alias} ({move.arch} {move.type}): {move.before} -> "
                     f"{move.after or 'no image (the alias disappears)'}")
    purge = report.purge
    for item in purge.delete_now:
        if (item.product, item.version) == (product, version):
            now = "would be deleted now" if report.dry_run else "deleted"
            lines.append(f"files {item.folder}/ ({item.objects} objects, {item.size} bytes) {now}: no catalog "
                         "current within the grace period names them")
    for item in purge.delete_later:
        if (item.product, item.version) == (product, version):
            lines.append(f"files {item.folder}/ ({item.objects} objects, {item.size} bytes) stay: {item.reason}; "
                         "a later publish or purge deletes them")
    return lines
