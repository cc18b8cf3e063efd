"""One parser for every bucket-event shape users meet, and the mapping from keys to products.

Shapes: AWS S3 notifications (straight to Lambda, or in SQS message bodies, or SNS inside SQS),
MinIO webhook bodies ({"EventName", "Key", "Records"} with "s3:"-prefixed event names), and the
s3:TestEvent. Keys arrive URL-encoded (`+` for spaces) and are decoded here.

Whatever comes from outside, `parse_events` returns events or raises EventError with a one-line
reason, never another exception: JSON is nested at most MAX_DEPTH levels, envelopes (SQS body,
SNS message) at most MAX_ENVELOPES deep, and every field is checked for its type before use
(values are never repr'd, so a hostile value cannot cost more than its parse).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from ..config import ProductConfig, TreeConfig
from ..errors import SSBError
from ..vocabulary.imagefiles import BUILT_FILES as ARTIFACTS
from ..vocabulary.layout import product_key_kind


class EventError(SSBError):
    """A payload that is not a bucket event at all."""


@dataclass(frozen=True)
class BucketEvent:
    """One object created or removed."""

    bucket: str
    key: str
    created: bool  # False: removed
    etag: str = field(default="", compare=False)  # of the created object, unquoted ("" when not sent)


MAX_DEPTH = 32  # real events nest 6 levels; JSON deeper than this is refused
MAX_ENVELOPES = 4  # Lambda <- SQS <- SNS <- S3 is 3


def _depth_within(value: Any, limit: int) -> bool:
    """Whether `value` nests at most `limit` containers deep (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, Mapping) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, (Mapping, list)))
    return True


def _loads(text: str) -> Any:
    try:
        payload = json.loads(text)
    except RecursionError:
        raise EventError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise EventError("message body is not JSON") from None
    return payload


def _text(container: Mapping[str, Any], name: str, where: str) -> str:
    value = container.get(name, "")
    if not isinstance(value, str):
        raise EventError(f"{where}{name} must be a string, not {type(value).__name__}")
    return value


def _records_of(payload: Any, envelopes: int = 0) -> Iterator[BucketEvent]:
    if envelopes > MAX_ENVELOPES:
        raise EventError(f"events wrapped more than {MAX_ENVELOPES} times")
    if isinstance(payload, str):
        payload = _loads(payload)
    if not isinstance(payload, Mapping):
        raise EventError("expected a JSON object")
    if not _depth_within(payload, MAX_DEPTH):
        raise EventError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if payload.get("Event") == "s3:TestEvent":
        return  # sent by S3 when a notification is configured: nothing to do
    if payload.get("Type") == "Notification" and "Message" in payload:  # SNS envelope (in SQS)
        yield from _records_of(payload["Message"], envelopes + 1)
        return
    records = payload.get("Records")
    if not isinstance(records, list):
        raise EventError("no Records in the event")
    for record in records:
        if not isinstance(record, Mapping):
            raise EventError("a record is not an object")
        if record.get("eventSource") == "aws:sqs" and "body" in record:  # Lambda fed by SQS
            yield from _records_of(record["body"], envelopes + 1)
            continue
        if record.get("EventSource") == "aws:sns" or "Sns" in record:  # Lambda fed by SNS
            sns = record.get("Sns")
            if not isinstance(sns, Mapping):
                raise EventError("a record's Sns is not an object")
            yield from _records_of(sns.get("Message", "{}"), envelopes + 1)
            continue
        yield from _s3_record(record)


def _s3_record(record: Mapping[str, Any]) -> Iterator[BucketEvent]:
    name = _text(record, "eventName", "a record's ").removeprefix("s3:")
    s3 = record.get("s3")
    if not isinstance(s3, Mapping):
        raise EventError("a record has no s3 section")
    bucket, item = s3.get("bucket"), s3.get("object")
    if not isinstance(bucket, Mapping) or not isinstance(item, Mapping) or "name" not in bucket or "key" not in item:
        raise EventError("a record has no s3.bucket.name or s3.object.key")
    bucket_name, key = _text(bucket, "name", "s3.bucket."), unquote_plus(_text(item, "key", "s3.object."))
    try:
        (bucket_name + key).encode("utf-8")
    except UnicodeEncodeError:
        raise EventError("s3.bucket.name or s3.object.key is not valid Unicode") from None
    if name.startswith("ObjectCreated:"):
        etag = item.get("eTag", "")  # only used to recognise our own writes: any other type is ignored
        yield BucketEvent(bucket_name, key, True, etag.strip('"') if isinstance(etag, str) else "")
    elif name.startswith("ObjectRemoved:"):
        yield BucketEvent(bucket_name, key, False)
    # anything else (replication, restore, lifecycle transitions...) does not change the tree


def parse_events(payload: Any) -> list[BucketEvent]:
    """Every object event in a payload of any supported shape (raises EventError if it has none).

    Nothing but EventError escapes, whatever the payload (a RecursionError from a structure built
    elsewhere, e.g. by the Lambda runtime, included).
    """
    try:
        return list(_records_of(payload))
    except RecursionError:
        raise EventError(f"JSON nested deeper than {MAX_DEPTH} levels") from None


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
        if event.bucket == target_bucket and tree.layout.is_own(relative):  # never a reason to publish
            continue
        for bucket, folder, product in places:
            if event.bucket != bucket or not event.key.startswith(folder):
                continue
            kind = product_key_kind(folder.rstrip("/"), event.key)
            previous = changes.get(product.name, ProductChange(product.name, False, False))
            if kind is not None and kind.kind == "manifest":
                changes[product.name] = ProductChange(product.name, True, previous.artifacts)
            elif kind is not None and (kind.kind == "upload-marker"
                                       or (kind.kind == "version-file" and kind.name in ARTIFACTS)):
                changes[product.name] = ProductChange(product.name, previous.manifest, True)
            break
    return changes
