"""From events to publishes: route, refresh manifests when asked, publish only what changed.

Shared by the Lambda handler, the SQS consumer and the webhook receiver, so the three behave the
same. Bursts are coalesced (one publish for many events); redelivered events are harmless
because a publish of an unchanged product writes nothing.

A manifest refreshed on upload (hooks.manifest_on_upload) is rebuilt by the publish's own read and
written with its other ssb.json writes (RunOptions.refresh_products): under the tree's lease, If-Match
the ETag read, and only once the product is known valid; only new version folders are hashed.
What the hooks write themselves (a manifest refreshed on upload, ssb.json updated by a publish)
comes back as bucket events: each write's ETag is remembered (Store.written) and an event naming
that object with that ETag is dropped, so no write of ours triggers a publish. An event without an
ETag is never dropped.

Every `handle` logs one JSON line: the products republished, and every failed product with its
reason (at ERROR, so it shows at the default verbosity); nothing else logs a product's failure.
Each `handle` is a run of its own for the budget of parsed documents (httpread.new_run): what
earlier publishes of a long-lived process parsed does not count against the next one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from ..commands.publish import PublishOptions, PublishReport, publish
from ..config import TreeConfig
from ..errors import SSBError
from ..storage import httpread
from ..storage.backends import open_store
from ..storage.store import Store
from .events import BucketEvent, route

log = logging.getLogger(__name__)

OWN_WRITES_KEPT = 1024  # ETags of our latest writes, remembered to drop their events


def log_json(logger: logging.Logger, level: int, **fields: Any) -> None:
    """One JSON line: the form of every line the hooks log about events, requests and publishes."""
    logger.log(level, "%s", json.dumps(fields, sort_keys=True))


@dataclass
class Outcome:
    """What one batch of events did: products published, products that failed (and why)."""

    products: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    report: PublishReport | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


class Republisher:
    """Events in, incremental publishes out."""

    def __init__(self, tree: TreeConfig, target_url: str, store: Store | None = None,
                 opts: PublishOptions | None = None) -> None:
        self.tree = tree
        self.target_url = target_url
        self.store = store or open_store(target_url, tree.storage)
        self.opts = replace(opts or PublishOptions(), keep_going=True, dry_run=False)
        self.publishes = 0
        self._stores: dict[str, Store] = {}
        self._own: OrderedDict[tuple[str, str], None] = OrderedDict()  # (location, ETag) of our writes
        self.store.written = self._written

    def _store_for(self, source: str) -> Store:
        if not source:
            return self.store
        if source not in self._stores:
            self._stores[source] = store = open_store(source, self.opts.storage or self.tree.storage)
            store.written = self._written
        return self._stores[source]

    def _written(self, location: str, etag: str) -> None:
        self._own[(location, etag.strip('"'))] = None
        while len(self._own) > OWN_WRITES_KEPT:
            self._own.popitem(last=False)

    def ours(self, event: BucketEvent) -> bool:
        """Whether `event` is one of our own writes coming back (it names the ETag we wrote)."""
        return bool(event.created and event.etag and (f"s3://{event.bucket}/{event.key}", event.etag) in self._own)

    def products_of(self, events: Iterable[BucketEvent]) -> set[str]:
        """Which products these events concern (empty: nothing to do)."""
        changes = route(self.tree, self.target_url, (e for e in events if not self.ours(e)))
        return {name for name, change in changes.items()
                if change.manifest or (change.artifacts and self.tree.hooks.manifest_on_upload)}

    def handle(self, events: Iterable[BucketEvent], lock_timeout: float | None = None) -> Outcome:
        """One publish for all these events (`lock_timeout`: the longest wait for the tree's lease,
        instead of the options'); logs one JSON line saying what it did."""
        events = list(events)
        httpread.new_run()  # the documents of earlier publishes no longer count in the parse budget
        theirs = [e for e in events if not self.ours(e)]
        outcome = self._handle(theirs, lock_timeout)
        fields: dict[str, Any] = {"events": len(events), "republished": outcome.products}
        if len(theirs) < len(events):
            fields["own_writes_ignored"] = len(events) - len(theirs)
        if outcome.failed:
            log_json(log, logging.ERROR, **fields, failed=outcome.failed)
        else:
            log_json(log, logging.INFO, **fields)
        return outcome

    def _handle(self, events: list[BucketEvent], lock_timeout: float | None) -> Outcome:
        changes = route(self.tree, self.target_url, events)
        outcome = Outcome()
        wanted: set[str] = set()
        refreshed: set[str] = set()  # their ssb.json rebuilt by the publish's read, under its lease
        for name, change in sorted(changes.items()):
            product = self.tree.product(name)
            if change.artifacts and self.tree.hooks.manifest_on_upload and not product.prefix_path:
                self._store_for(product.source)  # opened here: the ETag of its ssb.json write is remembered
                refreshed.add(name)
                wanted.add(name)
            elif change.manifest:
                wanted.add(name)
        if not wanted:
            return outcome
        opts = replace(self.opts, refresh_products=frozenset(refreshed),
                       lock_timeout=self.opts.lock_timeout if lock_timeout is None else lock_timeout)
        try:
            report = publish(self.tree, self.store, opts, only=wanted, sources=self._stores)
        except SSBError as exc:
            for name in wanted:
                outcome.failed[name] = str(exc)
            return outcome
        finally:
            self.publishes += 1
        outcome.report = report
        for problem in report.problems:  # each blames its product by name: no message is parsed
            if problem.product in report.failed_products:
                outcome.failed.setdefault(problem.product, str(problem))
        for name in report.failed_products:
            outcome.failed.setdefault(name, "invalid; its last published entry was kept")
        outcome.products = sorted(wanted - set(outcome.failed))
        return outcome


class Coalescer:
    """Collects events from many callers and publishes them together after a quiet `debounce`.

    `submit` returns a Future resolved once the publish that includes those events is done, so
    a webhook answers 2xx only after its event is published.
    """

    def __init__(self, republisher: Republisher, debounce: float) -> None:
        self.republisher = republisher
        self.debounce = debounce
        self._lock = threading.Condition()
        self._pending: list[tuple[list[BucketEvent], Future[Outcome]]] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="ssb-coalescer", daemon=True)
        self._thread.start()

    def submit(self, events: list[BucketEvent]) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        with self._lock:
            if self._stopped:
                future.set_exception(SSBError("shutting down"))
                return future
            self._pending.append((events, future))
            self._lock.notify()
        return future

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopped:
                    self._lock.wait()
                if self._stopped and not self._pending:
                    return
                first_seen = time.monotonic()
                last_count = -1
                # wait until no new event arrived for `debounce` (bounded to 10 debounce periods)
                while len(self._pending) != last_count and time.monotonic() - first_seen < 10 * self.debounce:
                    last_count = len(self._pending)
                    self._lock.wait(self.debounce)
                batch, self._pending = self._pending, []
            events = [e for events, _ in batch for e in events]
            try:
                outcome = self.republisher.handle(events)
                for _, future in batch:
                    future.set_result(outcome)
            except Exception as exc:  # a bug: one line, the traceback with -vv
                log_json(log, logging.ERROR, events=len(events), error=f"publish failed: {type(exc).__name__}: {exc}")
                log.debug("traceback", exc_info=True)
                for _, future in batch:
                    future.set_exception(exc)

    def close(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()
        self._thread.join(timeout=600)
