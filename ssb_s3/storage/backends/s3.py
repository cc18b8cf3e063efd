"""An S3 bucket, optionally under a key prefix, as a store (`s3://BUCKET[/PREFIX]`), and its client.

The one backend that sends conditional requests: `put_new`/`replace` (ssb_s3.storage.store) become
If-None-Match / If-Match in the form the store's probed verdict says it honours (ssb_s3.storage.probe):
some S3-compatible stores ignore them without an error, so `ensure_conditional_writes` probes a store
once per process before the first one is relied on, and refuses (one line naming
storage.conditional_writes: false) a store that ignores them or answers 501. With conditional writes
off, no request carries a conditional header (a create-only upload is checked by a HEAD just before
the object is committed, a weaker guarantee). A body cut mid-way is resumed with a Range GET whose
answer must carry the same ETag. `open_s3` refuses, before any request, a bucket name outside S3's
naming rule, a prefix outside tree.yml's `prefix` rule and an endpoint URL that is not
http(s)://HOST[:PORT]. No write creates a bucket: the first write to a bucket in a process is preceded
by one HEAD bucket (some stores create a bucket on the first PUT into it). The S3 client trusts the CA
bundle of ssb_s3.storage.transport and does not retry a failure no retry can heal (refused, an
untrusted certificate, the wrong scheme for the port): that is errors.Unreachable, one line, at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import re
import secrets
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, NoReturn

from urllib3.exceptions import HTTPError as WireError  # a body botocore reads outside its retries

from ...config import ENDPOINT_EXPECTED, StorageConfig, endpoint_from_env, endpoint_url_problem
from ...errors import NotFound, PreconditionFailed, SSBError, StoreError, TooLarge
from ...schemas import load_schema
from ...vocabulary.layout import INTERNAL_PREFIX, LEASE_KEY, PROBE_KEY_PREFIX, STORE_VERDICT_KEY
from .. import transport
from ..probe import Verdict, probe_settings
from ..store import CHUNK_SIZE, Expect, ObjectInfo, Store

log = logging.getLogger(__name__)

READ_ATTEMPTS = 5  # a body cut mid-way: botocore's own retries end once the headers arrived

NOT_SUPPORTED = ("NotImplemented", "501", "NotSupported")  # a store refusing a header it does not implement
# What a store answers when it refuses botocore's aws-chunked trailing checksums (Ceph RGW 16.2 over
# HTTPS: 411 MissingContentLength); the client is then rebuilt with checksum_mode when_required.
CHECKSUM_REFUSED = ("MissingContentLength", "411", "XAmzContentSHA256Mismatch", "InvalidDigest", "BadDigest")
PROBE_BODY = b"ssb-s3: probe of conditional writes, deleted at once; safe to delete\n"
STALE_ETAG = '"00000000000000000000000000000000"'  # no object has this etag (the md5 of nothing differs)
VERDICT_LIMIT = 64 * 1024  # .ssb-s3/store.json is a few hundred bytes: anything bigger is not ours
CONDITIONAL_FIX = ("so concurrent publishers are not protected; set storage.conditional_writes: false in tree.yml "
                   "to run a single publisher at a time")
CREDENTIALS_FIX = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (or --profile, storage.profile) "
                   "naming a profile of ~/.aws/credentials")
# (endpoint, bucket, prefix, settings) -> its verdict, this process; and those of them read from the record
# (not probed by this process): a conditional write failing as such a verdict did not predict probes again
_VERDICTS: dict[tuple[str, str, str, str], Verdict] = {}
_RECORDED: set[tuple[str, str, str, str]] = set()
_PROBE_LOCK = threading.Lock()
_BUCKETS_SEEN: set[tuple[str, str]] = set()  # (endpoint, bucket) found by HEAD bucket, this process


def _client_error_code(exc: Exception) -> str:
    response: dict[str, Any] = getattr(exc, "response", {}) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code or str(status or "")


# Ceph RGW's x-amz-request-id: tx<21 hex>-<time, hex>-<instance, hex>-<zone group>; the instance id changes
# with each radosgw process (and between the radosgw behind one endpoint), the zone group does not.
RGW_REQUEST_ID = re.compile(r"tx[0-9a-f]{21}-[0-9a-f]{8,}-[0-9a-f]+-([A-Za-z0-9_.-]{1,64})$")


def _server_header(response: Mapping[str, Any]) -> str:
    """Who answered, from a boto3 answer (or a ClientError's response), for the store's identity: the
    `Server` header (SeaweedFS names itself and its version); Ceph RGW sends none, and is known by
    its request ids and x-rgw-* headers."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    server = str(headers.get("server", ""))[:200]
    rgw = RGW_REQUEST_ID.match(str(headers.get("x-amz-request-id", "")))
    if not server and (rgw or any(str(name).startswith("x-rgw-") for name in headers)):
        server = f"Ceph RGW {rgw.group(1)}" if rgw else "Ceph RGW"
    return server


class S3Store(Store):
    """An S3 bucket, optionally under a key prefix (`s3://bucket/some/prefix`).

    The one place where a conditional request is sent. Which form each takes comes from the
    store's probed `Verdict` (ssb_s3.storage.probe): If-Match quoted or unquoted, a large
    create-only upload completed If-None-Match or checked by HEAD before it starts and before it
    completes. `conditional_writes=False` (storage.conditional_writes: false): no request carries
    a conditional header, and the store is not probed. A store that refuses botocore's trailing
    checksums gets its client rebuilt with checksum_mode when_required (`required_checksums`
    makes that client), with one warning naming storage.checksum_mode, and the request is sent again.
    """

    def __init__(self, bucket: str, prefix: str, client: Any, *, conditional_writes: bool = True,
                 required_checksums: Callable[[], Any] | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.conditional_writes = conditional_writes
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._required_checksums = required_checksums
        self._checksums_required = required_checksums is None
        self._swap_lock = threading.Lock()
        self._verdict: Verdict | None = None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, exc: Exception) -> SSBError:
        """`exc` from botocore as one line naming the store (the key, unless it is one of the tool's own
        objects under .ssb-s3/ that a user never named: the lease is named, force-unlock acts on it)
        and, for credentials, what to set."""
        from botocore.exceptions import NoCredentialsError, PartialCredentialsError

        internal = key.startswith(INTERNAL_PREFIX) and key != LEASE_KEY
        where = self.url if internal or not key else self.describe(key)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StoreError(f"{self.url}: {action} failed: no S3 credentials found: {CREDENTIALS_FIX}")
        if not hasattr(exc, "response"):
            endpoint = str(getattr(self.client.meta, "endpoint_url", ""))
            problem = transport.unreachable(endpoint, exc, transport.proxy_for(endpoint)) if endpoint else None
            if problem is not None:
                return problem
            # botocore's own errors (endpoint unreachable...) carry no secrets.
            return StoreError(f"{where}: {action} failed: {exc}")
        code = _client_error_code(exc)
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFound(f"{self.describe(key)}: not found")
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            return PreconditionFailed(f"{self.describe(key)}: changed by someone else ({code})")
        if code == "NoSuchBucket":
            return StoreError(f"{self.url}: bucket '{self.bucket}' does not exist")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StoreError(f"{where}: {action} refused ({code}): check the credentials: {CREDENTIALS_FIX}")
        if code in ("AccessDenied", "403"):
            return StoreError(f"{where}: {action} refused ({code}): check the credentials ({CREDENTIALS_FIX}) "
                              "and what they may do in this bucket")
        if code in ("400", "BadRequest"):  # plain http to a TLS port: Go's servers answer 400
            wrong_scheme = transport.plain_http_to_tls(str(getattr(self.client.meta, "endpoint_url", "")))
            if wrong_scheme is not None:
                return wrong_scheme
        if code in CHECKSUM_REFUSED:
            return StoreError(f"{where}: {action} refused ({code}): the store does not accept "
                              "botocore's request checksums; set storage.checksum_mode: when_required in tree.yml")
        detail = code or type(exc).__name__
        return StoreError(f"{where}: {action} failed: {detail}")

    def _before_write(self, key: str) -> None:
        self._ensure_bucket()
        super()._before_write(key)

    def _ensure_bucket(self) -> None:
        """One HEAD bucket before the first write to a bucket in this process: some stores create a
        missing bucket on the first PUT into it (SeaweedFS), so a mistyped bucket name would become
        a new bucket. A 404 is one line saying the bucket does not exist; any other refusal (403:
        credentials allowed objects only) lets the writes go on and answer for themselves."""
        from botocore.exceptions import BotoCoreError, ClientError

        ident = (str(getattr(self.client.meta, "endpoint_url", "")), self.bucket)
        if ident in _BUCKETS_SEEN:
            return
        try:
            self._send("head_bucket", Bucket=self.bucket)
        except ClientError as exc:
            if _client_error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                raise StoreError(f"{self.url}: bucket '{self.bucket}' does not exist") from None
        except (BotoCoreError, WireError) as exc:
            raise self._fail("check of the bucket", "", exc) from None
        _BUCKETS_SEEN.add(ident)

    # -- the checksum fallback -----------------------------------------------------------------

    def _require_checksums_only_when_required(self, why: str) -> bool:
        """Rebuild the client with checksum_mode when_required (once); False if it already is."""
        with self._swap_lock:
            if self._checksums_required or self._required_checksums is None:
                return False
            self.client = self._required_checksums()
            self._checksums_required = True
        log.warning("%s: %s; using storage.checksum_mode: when_required (set it in tree.yml to skip this check)",
                    self.url, why)
        return True

    def _send(self, operation: str, **kwargs: Any) -> Any:
        """One client call; sent again once with checksums only when required if the store refused
        botocore's trailing checksums (HTTPS to Ceph RGW 16.2: 411 MissingContentLength)."""
        from botocore.exceptions import ClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            code = _client_error_code(exc)
            if code not in CHECKSUM_REFUSED or not self._require_checksums_only_when_required(
                    f"the store refused botocore's request checksums ({code})"):
                raise
            return getattr(self.client, operation)(**kwargs)

    # -- the probe -------------------------------------------------------------------------------

    def _ident(self) -> tuple[str, str, str, str]:
        """What this process's copy of the verdict is keyed by: endpoint, bucket, prefix and settings."""
        return (str(getattr(self.client.meta, "endpoint_url", "")), self.bucket, self.prefix, self._settings)

    @property
    def _settings(self) -> str:
        """probe_settings() of this store: the checksum mode configured (not the one fallen back to)."""
        return probe_settings("when_supported" if self._required_checksums is not None else "when_required")

    def verdict(self) -> Verdict:
        """What this store does with each conditional request (ssb_s3.storage.probe): this process's
        copy, else the one cached in the bucket for this very server and settings, else probed now
        (and cached)."""
        if self._verdict is None:
            ident = self._ident()
            with _PROBE_LOCK:
                found = _VERDICTS.get(ident)
                if found is None:
                    found, recorded = self._cached_or_probed(ident[0])
                    _VERDICTS[ident] = found
                    if recorded:
                        _RECORDED.add(ident)
            if found.checksums == "when_required":
                self._require_checksums_only_when_required("this store refuses botocore's request checksums "
                                                           f"(recorded in {self.describe(STORE_VERDICT_KEY)})")
            self._verdict = found
        return self._verdict

    def probe(self) -> Verdict:
        """Probe now, whatever is cached, and cache the result (`ssb-s3 store-check`)."""
        ident = self._ident()
        with _PROBE_LOCK:
            found = self._cached_or_probed(ident[0], again=True)[0]
            _VERDICTS[ident] = found
            _RECORDED.discard(ident)
        self._verdict = found
        return found

    def _unpredicted(self, key: str, code: str) -> bool:
        """A conditional write failed (`code`: 412 or 501) where the verdict, read from the record and
        not probed by this process, said the form it was sent in is honoured: probe again (once per
        process, ssb_s3.storage.probe: a forged or outdated record). True when the new verdict sends
        that write in another form (send it again), False when the failure stands."""
        ident = self._ident()
        with _PROBE_LOCK:
            if ident not in _RECORDED:
                return False
            _RECORDED.discard(ident)
        before = self.verdict()
        log.warning("%s: a conditional write of %s failed (%s) as the recorded verdict (%s) did not predict: "
                    "probing the store again", self.url, key, code, self.describe(STORE_VERDICT_KEY))
        return self.probe().forms() != before.forms()

    def _cached_or_probed(self, endpoint: str, *, again: bool = False) -> tuple[Verdict, bool]:
        """The verdict, and whether it came from the record (True) or was probed now (False)."""
        from botocore.exceptions import BotoCoreError, ClientError

        data, recorded = b"", None  # what .ssb-s3/store.json holds, and its ETag (None: not there)
        try:
            resp = self._send("get_object", Bucket=self.bucket, Key=self._key(STORE_VERDICT_KEY))
            server, recorded = _server_header(resp), str(resp.get("ETag", ""))
            with contextlib.closing(resp["Body"]):
                data = resp["Body"].read(VERDICT_LIMIT + 1)
        except ClientError as exc:
            if _client_error_code(exc) not in ("NoSuchKey", "404", "NotFound", "AccessDenied", "403"):
                raise self._fail("read", STORE_VERDICT_KEY, exc) from None
            server = _server_header(getattr(exc, "response", {}) or {})
        except (BotoCoreError, WireError) as exc:
            raise self._fail("read", STORE_VERDICT_KEY, exc) from None
        identity = f"{endpoint} {server}".strip()
        cached = None if again or not 0 < len(data) <= VERDICT_LIMIT else Verdict.parse(data, identity, self._settings)
        return (cached, True) if cached else (self._probed(identity, recorded), False)

    def _probed(self, identity: str, recorded: str | None = None) -> Verdict:
        """Probe each operation on one throw-away key (module docstring of ssb_s3.storage.probe),
        delete it, and record the verdict at .ssb-s3/store.json, in the verdict's own create-only or
        replace-if-match form when it has one (a bucket policy may require conditional writes), over
        the ETag `recorded` of the verdict found there (None: nothing there). Failing to record is a
        warning: the next run probes again."""
        key = f"{PROBE_KEY_PREFIX}{secrets.token_hex(8)}"
        copy_key = f"{key}-copy"
        try:
            applied, etag = self._probe_put(key, IfNoneMatch="*")
            if applied == "refused":
                raise StoreError(self._no_conditionals(f"it refused to create the new key {key} If-None-Match: *"))
            create = "unsupported" if applied == "unsupported" else ""
            if create:
                etag = self._probe_put(key)[1]
            else:
                again, new_etag = self._probe_put(key, IfNoneMatch="*")
                create = {"refused": "honoured", "applied": "ignored"}.get(again, again)
                etag = new_etag or etag
            replace = self._probe_replace(key, etag)
            multipart = self._probe_multipart(key)
            copy = self._probe_copy(key, copy_key)
        finally:
            for leftover in (key, copy_key):
                with contextlib.suppress(StoreError):
                    self.delete(leftover)
        verdict = Verdict(identity=identity, create=create, replace=replace, multipart_create=multipart,
                          copy_create=copy, checksums="when_required" if self._required_checksums is not None
                          and self._checksums_required else "as-configured", settings=self._settings)
        condition: dict[str, str] = {}
        if verdict.conditional_ok:
            condition = {"IfNoneMatch": "*"} if recorded is None else {"IfMatch": verdict.if_match(recorded)}
        try:
            if self._probe_put(STORE_VERDICT_KEY, body=verdict.to_bytes(), **condition)[0] != "applied":
                raise StoreError(f"{self.describe(STORE_VERDICT_KEY)}: written meanwhile by another run")
        except StoreError as exc:
            log.warning("could not record the store's verdict (probed again next run): %s", exc)
        log.info("%s: conditional requests: %s", self.url, ", ".join(f"{op}: {v}" for op, v in verdict.table()))
        return verdict

    def _probe_replace(self, key: str, etag: str) -> str:
        """PUT If-Match: a stale ETag (must be refused), then the right one quoted, then unquoted."""
        stale, _ = self._probe_put(key, IfMatch=STALE_ETAG)
        if stale != "refused":
            return "unsupported" if stale == "unsupported" else "ignored"
        quoted, _ = self._probe_put(key, IfMatch=etag)
        if quoted == "applied":
            return "quoted"
        unquoted, _ = self._probe_put(key, IfMatch=etag.strip('"'))
        if unquoted != "applied":
            return "refused"
        stale_unquoted, _ = self._probe_put(key, IfMatch=STALE_ETAG.strip('"'))
        return "unquoted" if stale_unquoted == "refused" else "ignored"

    def _probe_multipart(self, key: str) -> str:
        """A one-part multipart upload of a few bytes over the existing key, completed If-None-Match: *."""
        from botocore.exceptions import BotoCoreError, ClientError

        upload_id = ""
        try:
            upload_id = self._send("create_multipart_upload", Bucket=self.bucket, Key=self._key(key),
                                   ContentType="text/plain", CacheControl="no-store")["UploadId"]
            part = self._send("upload_part", Bucket=self.bucket, Key=self._key(key), UploadId=upload_id,
                              PartNumber=1, Body=PROBE_BODY)
            self._send("complete_multipart_upload", Bucket=self.bucket, Key=self._key(key), UploadId=upload_id,
                       MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}, IfNoneMatch="*")
            upload_id = ""
            return "ignored"
        except (ClientError, BotoCoreError, WireError) as exc:
            code = _client_error_code(exc)
            if code in NOT_SUPPORTED:
                return "unsupported"
            if isinstance(self._fail("probe", key, exc), PreconditionFailed):
                return "honoured"
            raise self._fail("probe (multipart upload)", key, exc) from None
        finally:
            if upload_id:
                with contextlib.suppress(Exception):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._key(key), UploadId=upload_id)

    def _probe_copy(self, key: str, copy_key: str) -> str:
        """CopyObject onto an existing key with If-None-Match: *, then with RGW's x-amz-copy-if-none-match.
        The tool makes no copy today: a store that refuses copies (a bucket policy) is just "ignored"."""
        try:
            self._probe_put(copy_key)
            for form, header in (("honoured", "If-None-Match"), ("copy-if-none-match", "x-amz-copy-if-none-match")):
                if self._copy_refused(key, copy_key, header):
                    return form
        except StoreError as exc:
            log.debug("copy probe: %s", exc)
        return "ignored"

    def _copy_refused(self, source: str, dest: str, header: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        def add_header(request: Any, **_: Any) -> None:
            request.headers[header] = "*"

        handler_id = f"ssb-s3-probe-{header}"
        self.client.meta.events.register_first("before-sign.s3.CopyObject", add_header, unique_id=handler_id)
        try:
            self._send("copy_object", Bucket=self.bucket, Key=self._key(dest),
                       CopySource={"Bucket": self.bucket, "Key": self._key(source)})
            return False
        except (ClientError, BotoCoreError, WireError) as exc:
            err = self._fail("probe (copy)", dest, exc)
            if isinstance(err, PreconditionFailed) or _client_error_code(exc) in NOT_SUPPORTED:
                return isinstance(err, PreconditionFailed)
            raise err from None
        finally:
            self.client.meta.events.unregister("before-sign.s3.CopyObject", unique_id=handler_id)

    def ensure_conditional_writes(self) -> None:
        """Raise StoreError naming storage.conditional_writes: false unless this store honours
        create-only and replace-if-match PUTs in some form (ssb_s3.storage.probe); with conditional
        writes off, nothing is asked of the store."""
        if not self.conditional_writes:
            return
        verdict = self.verdict()
        if not verdict.conditional_ok:
            raise StoreError(self._no_conditionals(verdict.why_not()))

    def _no_conditionals(self, what: str) -> str:
        return f"{self.url}: the store does not honour If-None-Match/If-Match ({what}), {CONDITIONAL_FIX}"

    def _probe_put(self, key: str, body: bytes = PROBE_BODY, **condition: str) -> tuple[str, str]:
        """One PUT of the probe object: ("applied", etag), ("refused", "") on 412, ("unsupported", "")
        on 501."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._ensure_bucket()
        try:
            resp = self._send("put_object", Bucket=self.bucket, Key=self._key(key), Body=body,
                              ContentType="text/plain", CacheControl="no-store", **condition)
            return "applied", str(resp.get("ETag", ""))
        except (ClientError, BotoCoreError, WireError) as exc:
            if _client_error_code(exc) in NOT_SUPPORTED:
                return "unsupported", ""
            err = self._fail("write", key, exc)
            if isinstance(err, PreconditionFailed):
                return "refused", ""
            raise err from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                for obj in page.get("Contents", ()):
                    yield ObjectInfo(obj["Key"][len(root) :], int(obj["Size"]), obj.get("ETag", ""))
        except (ClientError, BotoCoreError, WireError) as exc:
            raise self._fail("listing", prefix, exc) from None

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError, WireError) as exc:
            err = self._fail("head", key, exc)
            if isinstance(err, NotFound):
                return None
            raise err from None
        return ObjectInfo(key, int(resp["ContentLength"]), resp.get("ETag", ""),
                          resp.get("Metadata", {}).get("sha256", ""))

    def read_with_etag(self, key: str) -> tuple[bytes, str]:
        parts, etags = [], []
        for chunk, etag in self._read_from(key, CHUNK_SIZE):
            parts.append(chunk)
            etags.append(etag)
        return b"".join(parts), etags[-1]

    def read_limited(self, key: str, limit: int) -> tuple[bytes, str]:
        parts, etags, size = [], [""], 0
        reading = self._read_from(key, CHUNK_SIZE)
        try:
            for chunk, etag in reading:  # ends the GET early: close() below
                etags.append(etag)
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"{self.describe(key)}: more than {limit} bytes, over the limit")
                parts.append(chunk)
        finally:
            reading.close()
        return b"".join(parts), etags[-1]

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        for chunk, _ in self._read_from(key, chunk_size):
            if chunk:
                yield chunk

    def _read_from(self, key: str, chunk_size: int) -> Generator[tuple[bytes, str], None, None]:
        """(chunk, etag) pairs, the first chunk empty; a body cut mid-way is resumed with a Range
        whose answer must carry the same etag (the same object; no If-Match header, which a store
        without conditional requests may refuse), as botocore's own retries end once the headers
        arrived."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            IncompleteReadError,
            ReadTimeoutError,
            ResponseStreamingError,
        )

        etag, offset, failures = "", 0, 0
        while True:
            try:
                extra = {"Range": f"bytes={offset}-"} if offset else {}
                resp = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)
                if offset and resp.get("ETag", "") != etag:
                    resp["Body"].close()
                    raise PreconditionFailed(f"{self.describe(key)}: changed while it was read")
                if not offset:
                    etag = resp.get("ETag", "")
                    yield b"", etag
                for chunk in resp["Body"].iter_chunks(chunk_size):
                    offset += len(chunk)
                    yield chunk, etag
                return
            except (ResponseStreamingError, IncompleteReadError, ReadTimeoutError) as exc:
                failures += 1
                if failures >= READ_ATTEMPTS:
                    raise self._fail("read", key, exc) from None
            except (ClientError, BotoCoreError, WireError) as exc:
                raise self._fail("read", key, exc) from None

    def _write(self, key: str, data: bytes, *, content_type: str, cache_control: str,
               expect: Expect | None) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        if_match = expect.etag if expect is not None and expect.etag else None
        for attempt in (1, 2):  # a second only when a recorded verdict was wrong (_unpredicted)
            extra = self._conditions(key, expect)
            try:
                resp = self._send("put_object", Bucket=self.bucket, Key=self._key(key), Body=data,
                                  ContentType=content_type, CacheControl=cache_control, **extra)
                break
            except (ClientError, BotoCoreError, WireError) as exc:
                code = _client_error_code(exc)
                # A 501, or a 412 to If-Match (the ETag's form), may be a recorded verdict's mistake; a 412
                # to If-None-Match never is (a store that does not honour it answers 501 or writes).
                unpredicted = extra and (code in NOT_SUPPORTED or (if_match is not None and isinstance(
                    self._fail("write", key, exc), PreconditionFailed)))
                if attempt == 2 or not unpredicted or not self._unpredicted(key, code):
                    self._write_failed(key, exc, conditional=bool(extra), if_match=if_match)
        return str(resp.get("ETag", ""))

    def _write_failed(self, key: str, exc: Exception, *, conditional: bool, if_match: str | None) -> NoReturn:
        """Raise the one-line error of a failed PUT."""
        if conditional and _client_error_code(exc) in NOT_SUPPORTED:
            raise StoreError(self._no_conditionals(
                f"it answered {_client_error_code(exc)} to a conditional PUT of {key}")) from None
        err = self._fail("write", key, exc)
        if if_match is not None and isinstance(err, NotFound):
            # AWS answers 404 for IfMatch on a missing key; SeaweedFS and RGW 412. Same meaning.
            err = PreconditionFailed(f"{self.describe(key)}: disappeared since it was read")
        raise err from None

    def _conditions(self, key: str, expect: Expect | None) -> dict[str, str]:
        """The conditional headers of a PUT, in the form the store's verdict says it honours; a store
        that honours none is refused here, before the request (never retried: it cannot succeed)."""
        if expect is None:
            return {}
        if not self.conditional_writes:
            raise StoreError(f"{self.describe(key)}: a conditional write was asked of a store opened with "
                             "storage.conditional_writes: false")
        self.ensure_conditional_writes()
        verdict = self.verdict()
        return {"IfMatch": verdict.if_match(expect.etag)} if expect.etag else {"IfNoneMatch": "*"}

    def _upload(self, key: str, fileobj: BinaryIO, *, content_type: str, cache_control: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_fileobj(fileobj, self.bucket, self._key(key),
                                       ExtraArgs={"ContentType": content_type, "CacheControl": cache_control})
        except (ClientError, BotoCoreError, WireError) as exc:
            raise self._fail("upload", key, exc) from None

    def _ingest(self, key: str, src: BinaryIO, size: int, *, feed: Callable[[bytes], None],
                digest: Callable[[], str], content_type: str, cache_control: str, part_size: int,
                concurrency: int, progress: Callable[[int], None]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        conditional = self.conditional_writes
        try:
            if size <= part_size:
                data = src.read()
                feed(data)
                if not conditional:
                    self._refuse_existing(key)
                self._send("put_object", Bucket=self.bucket, Key=self._key(key), Body=data,
                           ContentType=content_type, CacheControl=cache_control, Metadata={"sha256": digest()},
                           **self._conditions(key, Expect() if conditional else None))
                progress(len(data))
                return
            self._multipart(key, src, feed, content_type, cache_control, part_size, concurrency, progress,
                            conditional)
        except (ClientError, BotoCoreError, WireError) as exc:
            if conditional and _client_error_code(exc) in NOT_SUPPORTED:
                raise StoreError(self._no_conditionals(
                    f"it answered {_client_error_code(exc)} to a create-only upload of {key}")) from None
            raise self._fail("upload", key, exc) from None

    def _multipart(
        self, key: str, src: BinaryIO, feed: Callable[[bytes], None], content_type: str, cache_control: str,
        part_size: int, concurrency: int, progress: Callable[[int], None], conditional: bool,
    ) -> None:
        """Parallel multipart upload of one sequential read: at most concurrency+1 parts in memory.
        Create-only: completed If-None-Match: * where the store honours it there; elsewhere (Ceph RGW
        16.2 overwrites) and without conditional writes, the key is checked absent by a HEAD before
        the upload starts and again just before it completes."""
        completed_if_none_match = conditional and self.verdict().multipart_create == "honoured"
        if not completed_if_none_match:
            self._refuse_existing(key)
        upload_id = self._send("create_multipart_upload", Bucket=self.bucket, Key=self._key(key),
                               ContentType=content_type, CacheControl=cache_control)["UploadId"]
        slots = threading.BoundedSemaphore(concurrency + 1)
        failed: list[BaseException] = []

        def send(number: int, chunk: bytes) -> dict[str, Any]:
            try:
                resp = self._send("upload_part", Bucket=self.bucket, Key=self._key(key), UploadId=upload_id,
                                  PartNumber=number, Body=chunk)
                progress(len(chunk))
                return {"PartNumber": number, "ETag": resp["ETag"]}
            except BaseException as exc:
                failed.append(exc)
                raise
            finally:
                slots.release()

        try:
            futures = []
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ssb-part") as pool:
                number = 0
                while not failed and (chunk := src.read(part_size)):
                    number += 1
                    slots.acquire()
                    futures.append(pool.submit(send, number, chunk))
                    feed(chunk)  # hashed while the part is on its way
                    del chunk
                parts = [f.result() for f in futures]
            if not completed_if_none_match:
                self._refuse_existing(key)
            self._send("complete_multipart_upload", Bucket=self.bucket, Key=self._key(key), UploadId=upload_id,
                       MultipartUpload={"Parts": parts}, **({"IfNoneMatch": "*"} if completed_if_none_match else {}))
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._key(key), UploadId=upload_id)
            raise

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._before_write(key)
        try:
            self._send("delete_object", Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError, WireError) as exc:
            err = self._fail("delete", key, exc)
            if not isinstance(err, NotFound):
                raise err from None


def make_s3_client(storage: StorageConfig) -> Any:
    """A boto3 S3 client honouring tree.yml's storage section and boto3's own env/profile chain,
    trusting the CA bundle of ssb_s3.storage.transport; a failure no retry can heal is not retried
    (errors.Unreachable at the first attempt)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    config = Config(
        s3={"addressing_style": storage.addressing_style},
        request_checksum_calculation=storage.checksum_mode,
        response_checksum_validation=storage.checksum_mode,
        retries={"mode": "standard", "max_attempts": 8},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=32,
    )
    problem = endpoint_url_problem(storage.endpoint_url) if storage.endpoint_url else None
    if problem:
        raise StoreError(f"S3 endpoint URL '{storage.endpoint_url}': {problem}")
    from_env = endpoint_from_env()
    if storage.endpoint_url is None and storage.endpoint_set_aside and from_env \
            and from_env[1].rstrip("/") != storage.endpoint_set_aside.rstrip("/"):
        _warn_once(f"using the S3 endpoint {from_env[1]} from {from_env[0]}, not tree.yml's storage.endpoint_url "
                   f"{storage.endpoint_set_aside} (the environment comes first, as for the AWS CLI)")
    try:
        session = boto3.session.Session(profile_name=storage.profile, region_name=storage.region)
        client = session.client("s3", endpoint_url=storage.endpoint_url, config=config, verify=transport.s3_verify())
        client.meta.events.register_first("needs-retry.s3", transport.no_retry_when_unreachable)
        return client
    except BotoCoreError as exc:
        raise StoreError(f"cannot set up the S3 client: {exc}") from None
    except ValueError as exc:  # botocore's "Invalid endpoint", e.g. from AWS_ENDPOINT_URL
        raise StoreError(f"cannot set up the S3 client: {exc}: {ENDPOINT_EXPECTED}") from None


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """A warning given once per process (a hook's stores are made again for each event)."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning("%s", message)


# botocore's own rule (legacy AWS buckets and Ceph/MinIO set-ups still use capitals and '_'); new
# AWS buckets follow the stricter 3-63 lowercase rule, which the server itself enforces.
BUCKET_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")
BUCKET_RULE = "expected 1-255 ASCII letters, digits, dots, hyphens or underscores"


def s3_url_problem(bucket: str, prefix: str) -> str | None:
    """Why s3://BUCKET/PREFIX is refused before any request: S3's bucket naming rule, and for the
    prefix the very rule of tree.yml's `prefix` (its schema is the one place it is written)."""
    if not BUCKET_NAME.fullmatch(bucket):
        return f"the bucket name '{bucket}' is not valid: {BUCKET_RULE}"
    rule = load_schema("tree")["properties"]["prefix"]
    if not re.search(rule["pattern"], prefix):
        return f"the prefix '{prefix}' is not valid: expected {rule['description']}"
    return None


S3_TYPO = re.compile(r"s3:|s3//", re.IGNORECASE)  # s3:/x, S3:x, S3://x, s3//x: not a folder anyone means


S3_TYPO = re.compile(r"s3:|s3//", re.IGNORECASE)  # s3:/x, S3:x, S3://x, s3//x: not a folder anyone means


def open_s3(url: str, storage: StorageConfig) -> S3Store:
    """The registry's opener of `s3://BUCKET[/PREFIX]` (ssb_s3.storage.backends): bad bucket names and
    prefixes are refused here, before any request."""
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise StoreError(f"'{url}': expected s3://BUCKET[/PREFIX]")
    problem = s3_url_problem(bucket, prefix)
    if problem:
        raise StoreError(f"'{url}': {problem}")
    required = None if storage.checksum_mode == "when_required" else functools.partial(
        make_s3_client, dataclasses.replace(storage, checksum_mode="when_required"))
    return S3Store(bucket, prefix, make_s3_client(storage), conditional_writes=storage.conditional_writes,
                   required_checksums=required)
