"""A lease object that serialises the publishers of one tree.

Created with If-None-Match: * (only one creator wins), holding owner, host, pid, since (when it
was taken; leases written before that field stay readable), expiry and a renewal counter; renewed
every ttl/3 by a background thread with If-Match while a long job runs; an expired lease is taken
over with If-Match on the ETag that was read, never by a blind delete, so two waiters cannot both win.
A renewal that fails (a 412 that is not our own applied write, as when another job took the lease
over or the store refuses our If-Match; a store error after botocore's retries), or no successful
renewal for a whole TTL, marks the lease lost: while it is held the lease is the store's write guard
(Store.guard), so the job stops before its next write with one line, and the flip reads the lease
back first (`confirm`). On a local folder a
lease whose pid is dead on this very host is stale at once and taken over the same way.
A waiter says at once (warning) who holds the lease, since when and until when, then one line
every WAIT_REPORT_EVERY seconds until it gets the lease or gives up.
An error inside the `with` block stays the error raised; a failure to release the lease then is
appended to its message as secondary, never raised in its place.
The index flip stays conditional on its own ETag too: the lease saves wasted work, the
conditional flip is what guarantees correctness.

Before the first attempt, a conditional lease asks the store to prove that it honours
If-None-Match / If-Match (Store.ensure_conditional_writes: once per process on S3); a store that
ignores them or answers 501 is refused with one line naming storage.conditional_writes: false.
Stores without conditional writes (storage.conditional_writes: false) get a documented,
weaker fallback: write, wait, read back; only safe when a single publisher runs at a time. Then
no request of the lease carries If-Match or If-None-Match (create, renewal, release).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ..errors import NotFound, PreconditionFailed, SSBError, StoreError
from ..vocabulary.layout import LEASE_KEY
from .backends.local import LocalStore
from .httpread import parse_json
from .store import Store

log = logging.getLogger(__name__)

WAIT_REPORT_EVERY = 10.0  # seconds between "still waiting" lines
WAIT_REPORT_AFTER = 2.0  # a wait is reported once it lasts this long: a shorter one ends in one line, either way


class LeaseError(SSBError):
    """The lease could not be acquired in time, or was lost while working."""


@dataclass(frozen=True)
class LeaseInfo:
    """What the lease object says about its holder."""

    owner: str
    host: str
    pid: int
    purpose: str
    expires: float
    since: float | None = None  # None: a lease written before this field existed

    @classmethod
    def parse(cls, data: bytes) -> LeaseInfo | None:
        try:
            raw: dict[str, Any] = parse_json(data, LEASE_KEY, charged=False)
            since = None if raw.get("since") is None else float(raw["since"])
            info = cls(str(raw["owner"]), str(raw["host"]), int(raw["pid"]), str(raw.get("purpose", "")),
                       float(raw["expires"]), since)
            if not all(map(math.isfinite, (info.expires, info.since or 0.0))):
                raise ValueError("not a time")
            return info
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            return None  # unreadable lease: treated as expired, taken over conditionally

    def describe(self) -> str:
        since = "" if self.since is None else f" since {_utc(self.since)}"
        who = f"{self.purpose or 'a job'} by {self.owner} (pid {self.pid} on {self.host})"
        return f"{who}{since} until {_utc(self.expires)}"

    def dead_here(self) -> bool:
        """True if the holder ran on this host and its process is gone (the pid may not be reused yet)."""
        if self.pid <= 0 or self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except (OSError, OverflowError):
            return False  # alive under another user, or not a pid we can ask about: not provably dead
        return False


def _utc(seconds: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return f"{seconds!r} (not a time)"


class Lease:
    """Context manager: `with Lease(store, ttl=300, timeout=600, purpose="publish"): ...`."""

    def __init__(
        self,
        store: Store,
        *,
        ttl: float,
        timeout: float,
        purpose: str = "publish",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.timeout = timeout
        self.purpose = purpose
        self.conditional = store.conditional_writes  # storage.conditional_writes (ssb_s3.storage.store)
        self.clock = clock
        self.owner = f"ssb-s3-{uuid.uuid4().hex[:12]}"
        self.local = isinstance(store, LocalStore)
        self.since = 0.0  # when this lease was created (kept through renewals)
        self.etag = ""
        self.lost = False
        self.lost_reason = ""
        self._renewals = 0  # written in the lease body: tells whose renewal a re-read shows
        self._held_since = 0.0  # monotonic time of the last successful create or renewal
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outer_guard: Callable[[str], None] | None = None

    def _body(self) -> bytes:
        return json.dumps({
            "owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
            "purpose": self.purpose, "since": self.since, "expires": self.clock() + self.ttl,
            "renewal": self._renewals,
        }, sort_keys=True).encode()  # fmt: skip

    def _stale(self, holder: LeaseInfo) -> bool:
        """Expired, or (local folder only) held by a process that died on this host."""
        return holder.expires <= self.clock() or (self.local and holder.dead_here())

    def _took_over(self, holder: LeaseInfo | None) -> None:
        if holder is None:
            log.warning("took over an unreadable lease %s", self.store.describe(LEASE_KEY))
        elif holder.expires > self.clock():
            log.warning("took over the lease of a dead process (%s): pid %d is gone on this host",
                        holder.describe(), holder.pid)
        else:
            log.warning("took over an expired lease (%s)", holder.describe())

    def _try_take(self) -> LeaseInfo | None:
        """One attempt; returns None when acquired, else who holds it."""
        self.since = self.clock()
        try:
            if not self.conditional:
                return self._take_unconditionally()
            self.etag = self.store.put_new(LEASE_KEY, self._body(), cache_control="no-store")
            return None
        except PreconditionFailed:
            pass
        try:
            data, etag = self.store.read_with_etag(LEASE_KEY)
        except NotFound:
            return LeaseInfo("?", "?", 0, "released just now", self.clock())
        holder = LeaseInfo.parse(data)
        if holder is not None and holder.owner == self.owner:
            self.etag = etag  # our create/takeover was applied, its response lost: the retry met it
            return None
        if holder is not None and not self._stale(holder):
            return holder
        try:
            self.etag = self.store.replace(LEASE_KEY, self._body(), etag, cache_control="no-store")
        except PreconditionFailed:
            return holder or LeaseInfo("?", "?", 0, "taken over by another waiter", self.clock())
        self._took_over(holder)
        return None

    def _take_unconditionally(self) -> LeaseInfo | None:
        try:
            holder = LeaseInfo.parse(self.store.read(LEASE_KEY))
        except NotFound:
            holder = None
        if holder is not None and not self._stale(holder) and holder.owner != self.owner:
            return holder
        self.store.put(LEASE_KEY, self._body(), cache_control="no-store")
        time.sleep(1.0)  # let a concurrent writer's PUT land, then see who won
        holder = LeaseInfo.parse(self.store.read(LEASE_KEY))
        return None if holder is not None and holder.owner == self.owner else holder

    def acquire(self) -> None:
        if self.conditional:
            self.store.ensure_conditional_writes()
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        reported: tuple[str, float] | None = None  # (holder, when we last said so)
        while True:
            holder = self._try_take()
            if holder is None:
                self._held_since = time.monotonic()
                break
            reported = self._report_wait(holder, deadline, reported)
            if time.monotonic() >= deadline:
                raise LeaseError(
                    f"{self.store.describe(LEASE_KEY)} is held: {holder.describe()}; wait, raise "
                    "--lock-timeout, or run `ssb-s3 force-unlock` if that job is dead"
                )
            # Jittered and capped low: with a long backoff the waiters that just arrived (polling
            # fast) always beat the ones that waited longest (polling once a second): starvation.
            time.sleep(min(random.uniform(0.5, 1.0) * delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.25)
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="ssb-lease", daemon=True)
        self._thread.start()
        self._outer_guard, self.store.guard = self.store.guard, self._guard

    def _report_wait(self, holder: LeaseInfo, deadline: float,
                     reported: tuple[str, float] | None) -> tuple[str, float] | None:
        """Say who holds the lease once the wait has lasted WAIT_REPORT_AFTER (and again when the
        holder changes), then every WAIT_REPORT_EVERY seconds how long is left; returns what was last
        said and when."""
        if holder.owner == "?":
            return reported  # gone or changing hands this instant: the next attempt tells
        now = time.monotonic()
        give_up = max(0.0, deadline - now)
        if reported is None and now - (deadline - self.timeout) < WAIT_REPORT_AFTER:
            return None  # not worth a line yet: the lease may come free, or the timeout's error says it all
        if reported is None or reported[0] != holder.owner:
            log.warning("%s is held: %s (expires in %.0fs); waiting up to %.0fs (--lock-timeout)",
                        self.store.describe(LEASE_KEY), holder.describe(), max(0.0, holder.expires - self.clock()),
                        give_up)
            return holder.owner, now if reported else deadline - self.timeout  # the cadence counts from the start
        if now - reported[1] >= WAIT_REPORT_EVERY:
            log.warning("still waiting for the lease held by %s: it expires in %.0fs, giving up in %.0fs",
                        holder.owner, max(0.0, holder.expires - self.clock()), give_up)
            return holder.owner, now
        return reported

    def _renew_loop(self) -> None:
        """Renew every ttl/3. A renewal that fails (412 that is not our own applied write, a timeout,
        any store error after botocore's retries) marks the lease lost: `check`, which the store
        calls before each write of the job (`Store.guard`), then stops the job with one line."""
        while not self._stop.wait(max(self.ttl / 3, 0.05)):
            self._renewals += 1
            try:
                if self.conditional:
                    self.etag = self.store.replace(LEASE_KEY, self._body(), self.etag, cache_control="no-store")
                else:
                    self.store.put(LEASE_KEY, self._body(), cache_control="no-store")
                self._held_since = time.monotonic()
            except PreconditionFailed:
                why = self._not_ours()
                if not why:
                    continue  # our renewal was applied, its response lost: the retry met it
                self._lose(why)
                return
            except StoreError as exc:
                self._lose(f"its renewal failed: {exc}")
                return

    def _lose(self, why: str) -> None:
        if self.lost:
            return
        self.lost_reason = why
        self.lost = True
        log.error("lease %s lost: %s; the job stops before its next write", self.store.describe(LEASE_KEY), why)

    def _not_ours(self) -> str:
        """Why the lease object is not (or no longer) held by this job's last renewal; "" if it is."""
        try:
            data, etag = self.store.read_with_etag(LEASE_KEY)
        except NotFound:
            return "it was removed (force-unlock?)"
        except StoreError as exc:
            return f"it cannot be read back: {exc}"
        holder = LeaseInfo.parse(data)
        if holder is None or holder.owner != self.owner:
            return f"another job took it over ({holder.describe() if holder else 'unreadable lease'})"
        try:
            renewal = parse_json(data, LEASE_KEY, charged=False).get("renewal")
        except (ValueError, AttributeError):
            renewal = None
        if renewal != self._renewals:
            return ("the store refused its renewal (412) although the lease is still ours: it does not honour "
                    "If-Match with the ETag it returned")
        self.etag = etag
        self._held_since = time.monotonic()
        return ""

    def check(self) -> None:
        """Raise if the lease was lost (a renewal failed, or it was not renewed for a whole TTL, e.g.
        this process stalled past its expiry): the job writes nothing more."""
        if not self.lost and self._thread is not None and time.monotonic() - self._held_since > self.ttl:
            self._lose(f"it was not renewed for {self.ttl:g}s, its whole TTL (lease_ttl)")
        if self.lost:
            raise LeaseError(f"{self.store.describe(LEASE_KEY)}: lease lost while working ({self.lost_reason}); "
                             "nothing more written")

    def confirm(self) -> None:
        """`check`, then read the lease object back: it must still be this job's (before the flip)."""
        self.check()
        why = self._holder_problem()
        if why:
            self._lose(why)
            self.check()

    def _holder_problem(self) -> str:
        try:
            holder = LeaseInfo.parse(self.store.read(LEASE_KEY))
        except NotFound:
            return "it was removed (force-unlock?)"
        if holder is None or holder.owner != self.owner:
            return f"another job took it over ({holder.describe() if holder else 'unreadable lease'})"
        return ""

    def _guard(self, key: str) -> None:
        """Store.guard while the lease is held: every write of the job but the lease's own checks it."""
        if key != LEASE_KEY:
            self.check()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
            self.store.guard = self._outer_guard
        if self.lost:
            return
        if time.monotonic() - self._held_since < 0.8 * self.ttl:
            # Renewed (or created) well within its lifetime: nobody can have taken it over.
            self.store.delete(LEASE_KEY)
            return
        try:
            holder = LeaseInfo.parse(self.store.read(LEASE_KEY))
        except NotFound:
            return
        if holder is not None and holder.owner == self.owner:
            self.store.delete(LEASE_KEY)

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.release()
            return
        try:
            self.release()
        except Exception as cleanup:  # the first error is the one to report; this one comes second
            note = f"also, releasing the lease failed: {cleanup}"
            if isinstance(exc, SSBError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
                exc.args = (f"{exc.args[0]}; {note}",)
            else:
                log.error("%s", note)


def force_unlock(store: Store) -> LeaseInfo | None:
    """Remove the lease whoever holds it (operator's decision); returns who held it."""
    try:
        holder = LeaseInfo.parse(store.read(LEASE_KEY))
    except NotFound:
        return None
    store.delete(LEASE_KEY)
    return holder or LeaseInfo("unreadable lease", "?", 0, "", 0.0)
