"""`ssb-s3 hooks sqs`: consume S3 event notifications from an SQS queue.

Long polling; events received within the debounce window make one publish; a message is
deleted only after the publish that covers it succeeded (a failed product's messages come back
after the visibility timeout, and end in the queue's dead-letter queue). A malformed message
(anything events.parse_events refuses: it raises nothing but EventError) is logged as one line
and left in the queue the same way, while the rest of its batch is published and deleted, and
the loop goes on. A failed delete is logged and the loop goes on (the message comes back, and its
publish is a no-op). SIGTERM stops the loop after the current batch.

What it logs, as JSON lines (hooks sqs shows them at the default verbosity): the start and the
stop, each malformed message with its reason, each batch (messages, deleted, left in the queue),
and the publish line of republish.py with each failed product's reason.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from ..errors import StoreError
from .events import BucketEvent, EventError, parse_events
from .republish import Republisher, log_json

log = logging.getLogger(__name__)


class SqsConsumer:
    def __init__(self, republisher: Republisher, queue_url: str, client: Any, *, debounce: float = 2.0,
                 wait: int = 20, max_batch: int = 100) -> None:
        self.republisher, self.queue_url, self.client = republisher, queue_url, client
        self.debounce, self.wait, self.max_batch = debounce, wait, max_batch
        self.stop = threading.Event()
        self.batches = 0

    def _receive(self, wait: int) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self.client.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                               WaitTimeSeconds=wait)
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"{self.queue_url}: receive failed: {exc}") from None
        return list(resp.get("Messages", []))

    def collect(self) -> list[dict[str, Any]]:
        """Long-poll for a first message, then gather more for `debounce` seconds."""
        messages = self._receive(self.wait)
        if not messages:
            return []
        deadline = time.monotonic() + self.debounce
        while len(messages) < self.max_batch and time.monotonic() < deadline and not self.stop.is_set():
            more = self._receive(max(0, min(20, int(deadline - time.monotonic()))))
            if not more and time.monotonic() >= deadline:
                break
            messages += more
        return messages

    def process(self, messages: list[dict[str, Any]]) -> None:
        parsed: dict[str, tuple[str, list[BucketEvent]]] = {}
        for message in messages:
            try:
                parsed[message["MessageId"]] = (message["ReceiptHandle"], parse_events(message.get("Body", "")))
            except (EventError, KeyError, TypeError) as exc:
                why = str(exc) if isinstance(exc, EventError) else "no MessageId or ReceiptHandle"
                log_json(log, logging.ERROR, message=str(message.get("MessageId", "")),
                         error=f"left in the queue: {why}")
        outcome = self.republisher.handle(e for _, events in parsed.values() for e in events)
        done = [handle for _, (handle, events) in parsed.items()
                if not self.republisher.products_of(events) & set(outcome.failed)]
        deleted = 0
        for start in range(0, len(done), 10):
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(done[start:start + 10])]
            deleted += self._delete(entries)
        self.batches += 1
        log_json(log, logging.INFO, messages=len(messages), deleted=deleted, left=len(messages) - deleted)

    def _delete(self, entries: list[dict[str, str]]) -> int:
        """Delete these messages; how many were deleted (a failure is logged: they come back)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            log_json(log, logging.ERROR, error=f"{self.queue_url}: delete failed, {len(entries)} message(s) "
                                               f"will come back: {exc}")
            return 0
        for failed in resp.get("Failed", []):
            log_json(log, logging.ERROR, error=f"{self.queue_url}: delete failed, the message will come back: "
                                               f"{failed.get('Code', '')} {failed.get('Message', '')}".rstrip())
        return len(entries) - len(resp.get("Failed", []))

    def run(self) -> None:
        def on_term(signum: int, frame: FrameType | None) -> None:
            log_json(log, logging.INFO, signal=signum, note="stopping after the current batch")
            self.stop.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_term)
            signal.signal(signal.SIGINT, on_term)
        log_json(log, logging.INFO, consuming=self.queue_url)
        while not self.stop.is_set():
            messages = self.collect()
            if messages:
                self.process(messages)
        log_json(log, logging.INFO, stopped=f"after {self.batches} batch(es)")
