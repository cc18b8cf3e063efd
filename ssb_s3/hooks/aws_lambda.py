"""AWS Lambda entry point: `ssb_s3.hooks.aws_lambda.handler`.

Configuration from the environment:
  SSB_CONFIG  tree.yml: a path in the package/layer, or s3://BUCKET/KEY (read at cold start and
              whenever its ETag changes); optional: without it (and no tree.yml bundled) the tree's
              products are those `ssb-s3 add` recorded in it (.ssb-s3/products.json), which are
              also added to a tree.yml's products
  SSB_TARGET  the tree: s3://BUCKET[/PREFIX]
Invoked by S3 directly, through SNS, or through SQS. For SQS batches it returns
{"batchItemFailures": [...]} so that only the messages whose product failed come back; a malformed
message (parse_events raises nothing but EventError) is listed there alone, and the rest of the
batch is published.

The wait for the tree's lease is bounded by the invocation's remaining time (the context's
get_remaining_time_in_millis) minus LEASE_MARGIN seconds for the publish itself: a lease held
elsewhere fails the batch (its messages come back) before Lambda kills the function. Each failure
is logged once, as one JSON line with its reason (a malformed message here, a failed product on
the publish's line, see republish.py).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..config import MAX_TREE_BYTES, TreeConfig, config_from_text, load_config
from ..errors import SSBError
from ..storage.backends import open_store
from ..storage.record import with_recorded
from .events import BucketEvent, EventError, parse_events
from .republish import Republisher, log_json

log = logging.getLogger(__name__)
_cache: dict[str, Any] = {}
LEASE_MARGIN = 60.0  # seconds of the invocation kept for the publish after the lease is taken


def _load_tree(url: str) -> TreeConfig:
    """tree.yml from a file or from S3; cached across warm invocations, re-read when it changes."""
    if not url.startswith("s3://"):
        if "tree" not in _cache:
            _cache["tree"] = load_config(url)
        return _cache["tree"]  # type: ignore[no-any-return]
    bucket, _, key = url.removeprefix("s3://").partition("/")
    store = open_store(f"s3://{bucket}")
    head = store.head(key)
    if head is None:
        raise SSBError(f"{url}: tree.yml not found")
    if _cache.get("etag") != head.etag:
        data, _ = store.read_limited(key, MAX_TREE_BYTES)
        _cache["tree"] = config_from_text(data, url)
        _cache["etag"] = head.etag
    return _cache["tree"]  # type: ignore[no-any-return]


def _republisher() -> Republisher:
    """The tree.yml (SSB_CONFIG; none at all when unset and no tree.yml is bundled) with the products
    `ssb-s3 add` recorded in the tree itself (.ssb-s3/products.json, read at every invocation: one
    small GET), over SSB_TARGET; the Republisher is kept across warm invocations while both stay."""
    config, target = os.environ.get("SSB_CONFIG", ""), os.environ.get("SSB_TARGET", "")
    if not target.startswith("s3://"):
        raise SSBError("SSB_TARGET must be s3://BUCKET[/PREFIX]")
    if not config and not os.path.exists("tree.yml"):
        tree = _cache.setdefault("bare", TreeConfig(source_file="(no tree.yml)", products=()))
    else:
        tree = _load_tree(config or "tree.yml")
    full = with_recorded(tree, open_store(target, tree.storage))
    if _cache.get("republisher_for") != (id(tree), target) or _cache.get("products") != full.products:
        _cache["republisher"] = Republisher(full, target)
        _cache["republisher_for"] = (id(tree), target)
        _cache["products"] = full.products
    return _cache["republisher"]  # type: ignore[no-any-return]


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Republish the products the event concerns."""
    logging.getLogger().setLevel(logging.INFO)
    records = event.get("Records", []) if isinstance(event, dict) else []
    republisher = _republisher()
    if records and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records):
        return _sqs_batch(republisher, records, lease_wait(context))
    events = parse_events(event)
    outcome = republisher.handle(events, lease_wait(context))
    if not outcome.ok:  # raise: Lambda retries the invocation, then sends it to its DLQ
        raise SSBError("; ".join(f"{name}: {why}" for name, why in sorted(outcome.failed.items())))
    return {"published": outcome.products}


def lease_wait(context: Any) -> float | None:
    """The longest wait for the lease this invocation can afford (None: no context, the default)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return max(0.0, float(remaining()) / 1000 - LEASE_MARGIN)


def _sqs_batch(republisher: Republisher, records: list[dict[str, Any]], wait: float | None) -> dict[str, Any]:
    by_message: dict[str, list[BucketEvent]] = {}
    failures: list[str] = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            by_message[message_id] = parse_events(record.get("body", ""))
        except EventError as exc:
            log_json(log, logging.ERROR, message=message_id, error=f"not an event, it comes back: {exc}")
            failures.append(message_id)  # it comes back, then goes to the queue's dead-letter queue
    outcome = republisher.handle((e for events in by_message.values() for e in events), wait)
    for message_id, events in by_message.items():
        if republisher.products_of(events) & set(outcome.failed):
            failures.append(message_id)
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failures]}
