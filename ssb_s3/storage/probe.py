"""What an S3 store does with each conditional request this tool relies on, probed once per store.

S3-compatible stores differ where it matters most: Ceph RGW 16.2 refuses `If-Match` with the ETag
quoted as S3 returns it (and accepts it unquoted), ignores `If-None-Match` on
CompleteMultipartUpload and CopyObject, and refuses botocore's aws-chunked trailing checksums over
HTTPS (411 MissingContentLength). So before the first write of a run, S3Store asks for a
`Verdict`: one decision per operation, and the only thing that decides which form a write takes.

Operations and their verdicts:
- `create` (PUT `If-None-Match: *`): honoured | ignored | unsupported (501);
- `replace` (PUT `If-Match: ETAG`): quoted (as returned) | unquoted (RGW 16.2) | ignored (a stale
  ETag is accepted) | refused (412 even with the right ETag, in both forms) | unsupported;
- `multipart_create` (CompleteMultipartUpload `If-None-Match: *`): honoured | ignored | unsupported.
  Where it is not honoured, a large create-only upload checks that the key is absent before the
  upload starts and again just before it completes (a HEAD each; the version folder's create-only
  upload marker keeps other builders out of it meanwhile);
- `copy_create` (CopyObject create-only): honoured (`If-None-Match: *`) | copy-if-none-match
  (RGW's own `x-amz-copy-if-none-match: *`) | ignored. Recorded for the compatibility table;
- `checksums`: as-configured | when_required (the store refused botocore's trailing checksums:
  the client is rebuilt with `when_required`, and a warning names storage.checksum_mode).
DeleteObject is never conditional here (deletes only remove what no catalog names), so it is not
probed.

Probing costs 11 requests on one throw-away key under `.ssb-s3/probe-*`, deleted at once. The
verdict is cached in the tree at `.ssb-s3/store.json`, keyed by what could change it: the endpoint
URL, the server's identity as its answers give it (`Server`: SeaweedFS names itself and its
version; Ceph RGW sends none and is known by the shape of its `x-amz-request-id`, whose last part
names its zone group) and the settings that decide the probe's answers (`settings`: the probe's own
version PROBE_VERSION and the configured storage.checksum_mode). Every later run reads that object
once (one GET, whose answer also tells the identity) and probes again when any of those differs or
the record is unreadable: it is parsed as hostile input (at most VERDICT_LIMIT bytes, every field
checked against its allowed values), and anything unexpected means "probe again", never "trust it".

What a co-tenant who can write `.ssb-s3/` (but need not be able to write the catalog) can do with a
forged record, and what bounds it:
- claim a form the store does not take (If-Match quoted on RGW, unquoted elsewhere; honoured where
  the store answers 501): the conditional write then fails in a way the verdict did not predict (a
  412 or a 501); a verdict that came from the record is then probed again,
  once per process, and the write is sent again once in the probed form if the form changed, else
  its failure stands. A record can cost one probe; it cannot make a write land;
- claim the store ignores conditional writes: the run refuses with one line (a denial of service,
  `ssb-s3 store-check` probes again and records the truth);
- claim "honoured" on a store that silently ignores If-None-Match/If-Match: that cannot be
  detected without probing (an ignored condition never fails). It removes the protection between
  concurrent publishers, exactly as that co-tenant could by deleting or taking the lease
  (`.ssb-s3/lease.json`), and nothing more: one publisher at a time stays correct. So `.ssb-s3/`
  must be writable by publishers only; caching the verdict there opens nothing new, and anyone who
  can write index.json could do worse.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields

from ..vocabulary.layout import STORE_VERDICT_KEY
from .httpread import parse_json

VERDICT_VERSION = 2  # the record's format: 2 added `settings`
PROBE_VERSION = 1  # what is probed and how: change it when the probe changes, and every store is probed again

CREATE_FORMS = ("honoured", "ignored", "unsupported")
REPLACE_FORMS = ("quoted", "unquoted", "ignored", "refused", "unsupported")
MULTIPART_FORMS = ("honoured", "ignored", "unsupported")
COPY_FORMS = ("honoured", "copy-if-none-match", "ignored")
CHECKSUM_FORMS = ("as-configured", "when_required")


@dataclass(frozen=True)
class Verdict:
    """One decision per conditional operation (see the module docstring)."""

    identity: str
    create: str
    replace: str
    multipart_create: str
    copy_create: str
    checksums: str = "as-configured"
    settings: str = ""  # probe_settings(): the probe's version and the settings the probe answered under

    @property
    def conditional_ok(self) -> bool:
        """PUT create-only and replace-if-match both work, in some form: the lease, ssb.json and the
        flip can be made safe. (A large create-only upload has a fallback; see `multipart_create`.)"""
        return self.create == "honoured" and self.replace in ("quoted", "unquoted")

    def why_not(self) -> str:
        """What the store does not do, for the one-line refusal (empty when `conditional_ok`)."""
        if self.create != "honoured":
            return ("it answered 501 to a PUT with If-None-Match" if self.create == "unsupported"
                    else "a second PUT with If-None-Match: * succeeded instead of 412")
        return {
            "ignored": "a PUT with If-Match: a stale ETag succeeded instead of 412",
            "refused": "a PUT with If-Match: the right ETag was refused (412), quoted and unquoted",
            "unsupported": "it answered 501 to a PUT with If-Match",
        }.get(self.replace, "")

    def if_match(self, etag: str) -> str:
        """The If-Match value in the form this store honours."""
        return etag.strip('"') if self.replace == "unquoted" else etag

    def to_bytes(self) -> bytes:
        return json.dumps({"version": VERDICT_VERSION, "probed": int(time.time()), **asdict(self)},
                          indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def parse(cls, data: bytes, identity: str, settings: str) -> Verdict | None:
        """The cached verdict if it is well formed, for this very server and these very settings;
        None: probe again."""
        try:
            raw = parse_json(data, STORE_VERDICT_KEY)
        except ValueError:
            return None
        if (not isinstance(raw, dict) or raw.get("version") != VERDICT_VERSION or raw.get("identity") != identity
                or raw.get("settings") != settings):
            return None
        allowed = {"create": CREATE_FORMS, "replace": REPLACE_FORMS, "multipart_create": MULTIPART_FORMS,
                   "copy_create": COPY_FORMS, "checksums": CHECKSUM_FORMS}
        values = {f.name: raw.get(f.name) for f in fields(cls)}
        if not all(values[name] in forms for name, forms in allowed.items()):
            return None
        return cls(**{name: str(value) for name, value in values.items()})

    def forms(self) -> tuple[str, str, str, str, str]:
        """What decides the form of each write (identity and settings left out): two verdicts with the
        same forms send the same requests."""
        return self.create, self.replace, self.multipart_create, self.copy_create, self.checksums

    def table(self) -> list[tuple[str, str]]:
        """(operation, verdict) rows, as `ssb-s3 store-check` prints them."""
        return [("PUT If-None-Match: * (create-only)", self.create),
                ("PUT If-Match: ETag (replace)", self.replace),
                ("CompleteMultipartUpload If-None-Match: *", self.multipart_create),
                ("CopyObject create-only", self.copy_create),
                ("request checksums", self.checksums)]


def probe_settings(checksum_mode: str) -> str:
    """The settings a verdict holds for (Verdict.settings): the probe's version and the configured
    storage.checksum_mode (the probe of a client sending trailing checksums can find they are
    refused; one that sends none cannot)."""
    return f"probe {PROBE_VERSION}, checksum_mode {checksum_mode}"
