"""Publish: snapshot → plan → under the lease: commit → purge, in the order that never serves a
broken tree.

1. under the tree's lease, read a snapshot (ssb_s3.storage.tree): index.json (and its ETag), the catalog
   it names, every product's ssb.json (from the tree, its `source` store, or its `prefix_path`
   URL), the listings, and the older catalogs the purge needs;
2. plan (ssb_s3.core.plan, pure): retention, every check (schema, item paths, the listing, published
   files unchanged, the client contract), keep-going, the catalog, the views, the copies, the
   purge. Nothing has been written up to here, so bad input leaves the published tree untouched
   (with --keep-going the valid products go out and each invalid one keeps its last published
   entry); a refusal (PublishRefused) carries the report, `published` false;
3. write refreshed ssb.json If-Match the ETag they were read with (a conflict: start again);
   then make and check the .vcdiff deltas the new versions want (ssb_s3.storage.deltas), write
   them create-only into the versions' folders, add them to ssb.json, and read the snapshot and
   plan again: the flip that first publishes a version publishes its deltas. Each delta is tried
   once per publish, and before the lease where it can be: when no manifest is refreshed and a
   product in scope has `deltas`, a first snapshot and plan (no lease, nothing else written)
   make the deltas they want; under the lease only the ones wanted since are made;
4. copy artifacts of products that live in another bucket into the tree (create-only, and only
   into the product's own folder), with the same progress reporter as build-product's uploads;
5. write the content-addressed views (ssb_s3.core.views.addressed: the catalog under a new key, its
   signed twin images-<hash>.sjson and companions); nothing with a fixed name is written yet. Views
   are signed (ssb_s3.gpg) right after step 2, before step 3 writes anything (and again after step
   3's re-plan when deltas were made), and the key is tried before step 1: a missing or unusable
   key publishes nothing; without a key, a signed tree (streams/v1/index.sjson there) is refused
   under the lease before step 1, whatever the plan (refuse_unsigned_over_signed): a signed tree
   stays signed until that file is deleted on purpose;
6. confirm the lease is still ours (read back), then flip streams/v1/index.json, conditionally on
   the ETag read in step 1 (on a conflict, start again, a bounded number of times); the same write
   records when the previous catalog stopped being current;
7. only now the fixed-name views: first the pages of the products whose catalog entry changed
   (core/page, views.page_views), then the plain images.json copy, the LXC index, the web page
   index.html that links to those pages (unless `page: false`), images.sjson, .asc, then the
   deletion of the pages of the products the catalog no longer lists, streams/v1/index.sjson
   after them; then index.json again (If-Match the flip's ETag) recording them: a crash before that
   leaves an index whose record misses them, and the next publish writes them (views.flip_index),
   every product page included. So a failed flip leaves every fixed-name file as it was: none
   ever shows a catalog index.json does not serve, and the index never links to a missing page;
8. purge what no catalog current within the grace period names.
Every write goes through the target store, which checks the lease first (Store.guard): a lease whose
renewal failed stops the job before its next write.
A crash anywhere leaves the previous index (and everything it names) in place; a re-run converges.
A failure reports the step that failed first; a lease that then cannot be released is mentioned after it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from ..config import TreeConfig
from ..core.deltas import DeltaJob
from ..core.plan import (  # re-exported: callers and tests import them from here
    Plan,
    PlanOptions,
    PublishReport,
    assemble,
    check_products,
    plan_publish,
    plan_purge_only,
)
from ..core.retention import PurgePlan
from ..core.views import View
from ..errors import PreconditionFailed, ProblemsFound, SigningRequired, SSBError, StoreError
from ..gpg import Signer
from ..storage.deltas import DeltaReport, make_deltas
from ..storage.lease import Lease
from ..storage.store import Store
from ..storage.tree import RunOptions, ServedRead, Tree, fetch_manifest_url
from ..vocabulary.layout import INDEX_KEY, SIGNED_INDEX_KEY
from ..vocabulary.problems import Problem
from .cdn import invalidate_index

__all__ = ["PlanOptions", "PublishOptions", "PublishRefused", "PublishReport", "RunOptions", "check_tree", "dump_json",
           "fetch_manifest_url", "publish", "purge"]

log = logging.getLogger(__name__)

MAX_INDEX_ATTEMPTS = 5


@dataclass(frozen=True)
class PublishOptions(RunOptions, PlanOptions):
    """Everything a publish can be asked, as the CLI fills it from flags (tests directly): the
    run's own settings (RunOptions: how it reads, writes and reports) and what its plan decides
    (PlanOptions, all the core is given: `planned`)."""

    @property
    def planned(self) -> PlanOptions:
        """What the plan is given: its own options, signing when this run has a key."""
        return PlanOptions(**{f.name: getattr(self, f.name) for f in fields(PlanOptions)
                              if f.name != "signing"}, signing=self.signing or bool(self.sign_key))


MAX_INVALIDATED_PAGES = 10  # more product pages rewritten than this: their folder is invalidated with one path


def invalidated_keys(tree: TreeConfig, views: tuple[View, ...]) -> list[str]:
    """The fixed keys a publish rewrote or deleted, for the CDN: the product pages one by one, or
    their whole folder (`products/*`, one invalidation path) when there are many."""
    keys = [view.key for view in views if not view.create_only]
    pages = {view.key for view in views if view.part}
    if len(pages) <= MAX_INVALIDATED_PAGES:
        return keys
    return [*(key for key in keys if key not in pages), f"{tree.layout.product_pages_folder}/*"]


class PublishRefused(ProblemsFound):
    """Nothing was published (bad input); carries the report, `published` false, for --json."""

    def __init__(self, what: str, report: PublishReport) -> None:
        super().__init__(what, report.problems)
        self.report = report


def publish(
    tree: TreeConfig, target: Store, opts: PublishOptions | None = None, only: set[str] | None = None,
    prepared: Mapping[str, Mapping[str, Any]] | None = None, sources: Mapping[str, Store] | None = None,
    *, lease: Lease | None = None, served: ServedRead | None = None,
) -> PublishReport:
    """Publish the tree (see the module docstring); raises ProblemsFound if nothing could be published.

    `only`: an incremental publish of these products; every other product keeps its published
    entry, and nothing of theirs is read or listed. `prepared`: product -> its new ssb.json,
    decided by the caller (`mirror`), written in step 3 like a refreshed one. `sources`: the stores
    of `source` URLs the caller opened (the hooks: they remember the ETags of what they write).
    `lease`: the tree's lease, already held by the caller (`mirror`, which decided `prepared` on what
    it read under it); `served`: index.json and its catalog as the caller read them under that lease,
    used by the first snapshot instead of a second read (a flip that fails reads them again).
    """
    opts = opts or PublishOptions()
    unknown = sorted((only or set()) - {p.name for p in tree.products})
    if unknown:
        raise SSBError(f"{tree.source_file}: no product named {', '.join(unknown)}")
    owner = Tree(tree, target, opts, prepared, withdrawing=opts.withdraw is not None, sources=sources)
    signer = Signer.from_config(tree.signing, opts.sign_key)
    if signer is not None:
        signer.check()  # a missing or unusable key fails here, before the lease and any read
    if opts.dry_run:
        refuse_unsigned_over_signed(tree, target, opts.sign_key)  # the real run would be refused
        plan = plan_publish(tree, owner.snapshot(time.time(), only, refresh=opts.refresh_manifests, served=served),
                            opts.planned, only)
        if plan.refused:
            raise PublishRefused("publish would be refused", plan.report)
        plan.report.deltas = [job.described() for job in plan.deltas]
        return plan.report
    refresh = opts.refresh_manifests
    done = DeltaReport()  # the deltas this publish made or skipped
    in_scope = [p for p in tree.products if only is None or p.name in only]
    if not (refresh or opts.refresh_products) and any(p.deltas for p in in_scope):
        early = plan_publish(tree, owner.snapshot(time.time(), only, refresh=False, served=served), opts.planned,
                             only)
        if not early.refused and early.deltas:  # made before the lease: xdelta3 never runs under it
            done = made_deltas(tree, target, early.deltas, opts, done)
    with contextlib.nullcontext(lease) if lease is not None else owner.lease(opts.lock_timeout, "publish") as lease:
        refuse_unsigned_over_signed(tree, target, opts.sign_key)  # under the lease: no signed publish meanwhile
        for attempt in range(1, MAX_INDEX_ATTEMPTS + 1):
            snap = owner.snapshot(time.time(), only, refresh=refresh, served=served if attempt == 1 else None)
            plan = plan_publish(tree, snap, opts.planned, only)
            for warning in plan.warnings:
                log.warning("%s", warning)
            if plan.refused:
                raise PublishRefused("publish refused, nothing was written", plan.report)
            signed, signing_seconds = timed_sign(owner, plan, signer)
            try:
                owner.write_manifests(plan)
            except PreconditionFailed:
                log.warning("an ssb.json changed during the publish (attempt %d), starting again", attempt)
                continue
            refresh = False  # manifests are fresh after this round
            owner.opts = replace(owner.opts, refresh_products=frozenset())
            jobs = [job for job in plan.deltas if job not in done.tried]  # once per publish: not retried
            if jobs:
                made = made_deltas(tree, target, jobs, opts, done, check=lease.check)
                if len(made.made) > len(done.made):
                    log.info("%d delta(s) made and checked; reading the manifests again", len(made.made))
                    snap = owner.snapshot(time.time(), only, refresh=False)
                    plan = plan_publish(tree, snap, opts.planned, only)
                    if plan.refused:
                        raise PublishRefused("publish refused after the deltas were made (they are recorded in "
                                             "ssb.json); the served tree is unchanged", plan.report)
                    signed, more = timed_sign(owner, plan, signer)  # the catalog now names the deltas
                    signing_seconds += more
                done = made
            report = plan.report
            report.signing_seconds = signing_seconds
            report.warnings.extend(f"delta skipped: {why}" for why in done.skipped)
            report.deltas = [job.described(size) for job, size in zip(done.made, done.sizes, strict=True)]
            report.copied = owner.copy(plan, quiet=opts.quiet)
            owner.write_views(plan, signed)
            report.signed = [view.key for view in signed]
            lease.confirm()
            try:
                flipped = owner.flip(snap, plan)
            except PreconditionFailed:
                log.warning("index.json changed during the publish (attempt %d), starting again", attempt)
                continue
            owner.write_fixed_views(plan, signed)
            report.index_written = owner.settle(snap, plan, flipped) or flipped is not None
            if not opts.skip_purge:
                lease.check()
                owner.purge(plan.purge, past_written=plan.catalog_changed and plan.past is not None)
            if report.index_written and opts.cloudfront_distribution:
                rewritten = invalidated_keys(tree, (*plan.views, *signed))
                report.invalidation = invalidate_index(opts.cloudfront_distribution, rewritten, target, opts.storage)
            log.info(
                "published %d products, %d versions: %s -> %s%s", len(report.products), report.versions,
                target.describe(INDEX_KEY), report.catalog_key, "" if report.index_written else " (unchanged)",
            )
            report.published = True
            return report
    raise StoreError(
        f"{target.describe(INDEX_KEY)}: another publisher changed it {MAX_INDEX_ATTEMPTS} times in a row; try again"
    )


def made_deltas(tree: TreeConfig, target: Store, jobs: list[DeltaJob], opts: PublishOptions, done: DeltaReport,
                check: Callable[[], None] = lambda: None) -> DeltaReport:
    """Make these deltas (each skipped one is a warning); `done` with them added."""
    made = make_deltas(tree, target, jobs, local=dict(opts.local_files), check=check, quiet=opts.quiet)
    for why in made.skipped:
        log.warning("delta skipped: %s", why)
    return DeltaReport(made=[*done.made, *made.made], sizes=[*done.sizes, *made.sizes],
                       skipped=[*done.skipped, *made.skipped], tried={*done.tried, *jobs})


def refuse_unsigned_over_signed(tree: TreeConfig, target: Store, sign_key: str | None = None) -> None:
    """A signed tree stays signed: while streams/v1/index.sjson is there, a run without a signing
    key (tree.yml's `signing.key`, or `sign_key`) is refused (SigningRequired) before it writes
    anything: its publish, even of an unchanged catalog, would leave index.sjson naming an older
    catalog (a withdrawn version still listed for sstream users). Deleting index.sjson is how
    signing is stopped on purpose. One HEAD, and only without a key.

    Every write path calls it: publish (and so withdraw and the hooks) under the lease, before its
    first write; build-product before its upload, mirror before its copies (and their publish again),
    build-index and build-images-file (the seed's step-by-step commands) before they read anything."""
    if Signer.from_config(tree.signing, sign_key) is None and target.head(SIGNED_INDEX_KEY) is not None:
        raise SigningRequired(f"{target.describe(SIGNED_INDEX_KEY)}: this tree publishes signed streams, and this "
                              "run has no signing key: set `signing:` in tree.yml (build-product, withdraw, mirror "
                              "and the hooks read it) or pass --sign-key; to stop signing, delete that file first. "
                              "Nothing was written")


def timed_sign(owner: Tree, plan: Plan, signer: Signer | None) -> tuple[tuple[View, ...], float]:
    """The plan's signed views (before anything is written) and the seconds gpg took."""
    start = time.monotonic()
    signed = owner.signed_views(plan, signer)
    return signed, time.monotonic() - start


def purge(tree: TreeConfig, target: Store, opts: PublishOptions | None = None) -> PurgePlan:
    """Only the deletion step: what retention expired and no catalog within the grace names.

    The served catalog is left as it is; versions it still names are never deleted.
    """
    opts = opts or PublishOptions()
    owner = Tree(tree, target, opts)
    if opts.dry_run:
        return plan_purge_only(tree, owner.snapshot(time.time(), refresh=opts.refresh_manifests,
                                                   need_served=True), opts.planned)[0]
    with owner.lease(opts.lock_timeout, "purge") as lease:
        snap = owner.snapshot(time.time(), refresh=opts.refresh_manifests, need_served=True)
        purge_plan, plan = plan_purge_only(tree, snap, opts.planned)
        lease.confirm()
        owner.purge(purge_plan)
        if plan is not None:
            with contextlib.suppress(PreconditionFailed):  # a publish meanwhile: it records its own
                owner.flip(snap, plan)
    return purge_plan


def check_tree(tree: TreeConfig, source: Store, opts: PublishOptions) -> tuple[dict[str, Any], list[Problem],
                                                                               list[str]]:
    """validate / build-images-file / build-index: the catalog of every product, as if nothing were
    published (no index read), with every problem and warning."""
    snap = Tree(tree, source, opts).snapshot(time.time(), read_served=False)
    checked = check_products(tree, snap)
    catalog, _ = assemble(tree, checked, snap, opts.planned)
    return catalog, checked.all_problems(), checked.warnings


def dump_json(document: Mapping[str, Any]) -> str:
    """Human-readable JSON for --stdout and --json."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)

