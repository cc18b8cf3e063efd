"""One parser for every bucket-event shape users meet, and the mapping from keys to products.

Shapes: AWS S3 notifications (straight to Lambda, or in SQS message bodies, or SNS inside SQS),
MinIO webhook bodies ({"EventName", "Key", "Records"} with "s3:"-prefixed event names), and the
s3:TestEvent. Keys arrive URL-encoded (`+` for spaces) and are decoded here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from ..config import ProductConfig, TreeConfig
from ..errors import SSBError
from ..manifest import ARTIFACTS, UPLOAD_MARKER

OWN_PREFIXES = ("streams/", ".ssb-s3/")  # the tree's own writes: never a reason to publish


class EventError(SSBError):
    """A payload that is not a bucket event at all."""


@dataclass(frozen=True)
class BucketEvent:
    """One object created or removed."""

    bucket: str
    key: str
    created: bool  # False: removed


def _records_of(payload: Any) -> Iterator[BucketEvent]:
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise EventError("message body is not JSON") from None
    if not isinstance(payload, Mapping):
        raise EventError("expected a JSON object")
    if payload.get("Event") == "s3:TestEvent":
        return  # sent by S3 when a notification is configured: nothing to do
    if payload.get("Type") == "Notification" and "Message" in payload:  # SNS envelope (in SQS)
        yield from _records_of(payload["Message"])
        return
    records = payload.get("Records")
    if not isinstance(records, list):
        raise EventError("no Records in the event")
    for record in records:
        if not isinstance(record, Mapping):
            raise EventError("a record is not an object")
        if record.get("eventSource") == "aws:sqs" and "body" in record:  # Lambda fed by SQS
            yield from _records_of(record["body"])
            continue
        if record.get("EventSource") == "aws:sns" or "Sns" in record:  # Lambda fed by SNS
            yield from _records_of(record.get("Sns", {}).get("Message", "{}"))
            continue
        name = str(record.get("eventName", "")).removeprefix("s3:")
        s3 = record.get("s3")
        if not isinstance(s3, Mapping):
            raise EventError("a record has no s3 section")
        try:
            bucket = str(s3["bucket"]["name"])
            key = unquote_plus(str(s3["object"]["key"]))
        except (KeyError, TypeError):
            raise EventError("a record has no s3.bucket.name or s3.object.key") from None
        if name.startswith("ObjectCreated:"):
            yield BucketEvent(bucket, key, True)
        elif name.startswith("ObjectRemoved:"):
            yield BucketEvent(bucket, key, False)
        # anything else (replication, restore, lifecycle transitions...) does not change the tree


def parse_events(payload: Any) -> list[BucketEvent]:
    """Every object event in a payload of any supported shape (raises EventError if it has none)."""
    return list(_records_of(payload))


@dataclass(frozen=True)
class ProductChange:
    """What an event means for one product."""

    product: str
    manifest: bool  # its ssb.json changed
    artifacts: bool  # a file in one of its version folders changed


def _location(url: str) -> tuple[str, str]:
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


def route(tree: TreeConfig, target_url: str, events: Iterable[BucketEvent]) -> dict[str, ProductChange]:
    """Map events to products by folder; keys outside every product and our own writes are ignored."""
    target_bucket, target_prefix = _location(target_url)
    places: list[tuple[str, str, ProductConfig]] = []
    for product in tree.products:
        bucket, prefix = _location(product.source) if product.source.startswith("s3://") else (
            target_bucket, target_prefix)
        folder = "/".join(p for p in (prefix, tree.product_dir(product)) if p)
        places.append((bucket, folder + "/", product))
    places.sort(key=lambda p: len(p[1]), reverse=True)  # the deepest folder wins
    changes: dict[str, ProductChange] = {}
    for event in events:
        relative = event.key.removeprefix(f"{target_prefix}/") if target_prefix else event.key
        if event.bucket == target_bucket and relative.startswith(OWN_PREFIXES):
            continue
        for bucket, folder, product in places:
            if event.bucket != bucket or not event.key.startswith(folder):
                continue
            rest = event.key[len(folder):]
            previous = changes.get(product.name, ProductChange(product.name, False, False))
            if rest == "ssb.json":
                changes[product.name] = ProductChange(product.name, True, previous.artifacts)
            elif rest.count("/") == 1 and (rest.split("/")[1] in ARTIFACTS or rest.endswith("/" + UPLOAD_MARKER)):
                changes[product.name] = ProductChange(product.name, previous.manifest, True)
            break
    return changes
