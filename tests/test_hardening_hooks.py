"""Issue 9, the hooks: the webhook cannot be tied up by strangers (point 4), malformed events and
hang-ups give an answer and one log line, never a traceback (point 6), one bad message does not
sink a batch in the SQS consumer, the Lambda handler or the webhook (point 21), and bad
`hooks` arguments give one clear line (points 7 and 14). Issue 20, point 17: every failure is one
JSON line with its reason at the default verbosity, a busy port says so, the hooks' own ssb.json
writes publish nothing, and the Lambda's wait for the lease ends before the function's timeout.

The webhook runs as a real `ssb-s3 hooks serve` process publishing to the real S3 server
(SeaweedFS); the SQS consumer reads a real queue fed by moto's server, as in test_hooks.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from helpers import SSB, ssb
from realparts import S3Server, free_port, wait_for_url
from test_hooks import TOKEN, minio_body, put_version, recorded, s3_storage, served, tree_doc

from ssb_s3.config import StorageConfig, parse_config
from ssb_s3.hooks import aws_lambda
from ssb_s3.hooks.events import BucketEvent, EventError, parse_events
from ssb_s3.hooks.republish import Republisher
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.lease import Lease

VERSION = "20260101_0000"
DEEP_TEXT = "[" * 5000 + "]" * 5000  # RecursionError in json.loads before the fix
SERVER_TIMEOUT = 5.0  # hooks serve's default --timeout


def deep_object(depth: int = 5000) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


# ----------------------------------------------------------------------------------------------
# Point 6: the parser returns events or raises EventError, whatever it is given

DEEP = "__deep__"  # stands for a structure nested 5,000 deep (text or object)
WRONG: list[Any] = [0, 7, 2.5, True, None, [], ["x"], [[1]], {}, {"name": 1}, "", "x", DEEP]


def shapes() -> dict[str, Any]:
    s3 = recorded("s3-put-ssb-json.json")
    return {
        "s3": s3,
        "sqs-body": json.dumps(s3),
        "sns-in-sqs": recorded("sns-in-sqs-put-ssb-json.json"),
        "lambda-sqs": recorded("lambda-sqs-batch.json"),
        "lambda-sns": {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
                                    "Sns": {"Type": "Notification", "Message": json.dumps(s3)}}]},
        "minio": recorded("minio-webhook-put-ssb-json.json"),
        "test-event": recorded("s3-test-event.json"),
    }


def encode(node: Any) -> str:
    return json.dumps(node).replace(json.dumps(DEEP), DEEP_TEXT)


def materialise(node: Any) -> Any:
    """The object a Lambda runtime would pass: DEEP becomes a deeply nested list."""
    if node == DEEP:
        return deep_object()
    if isinstance(node, dict):
        return {k: materialise(v) for k, v in node.items()}
    if isinstance(node, list):
        return [materialise(v) for v in node]
    return node


def variants(node: Any) -> Iterator[Any]:
    """`node` with one field (at any depth, JSON-in-string bodies included) replaced or removed."""
    yield from WRONG
    if isinstance(node, dict):
        for key, value in node.items():
            for changed in variants(value):
                yield {**node, key: changed}
            yield {k: v for k, v in node.items() if k != key}
    elif isinstance(node, list):
        for i, value in enumerate(node):
            for changed in variants(value):
                yield [*node[:i], changed, *node[i + 1:]]
    elif isinstance(node, str) and node[:1] in "{[":
        with contextlib.suppress(ValueError):
            for changed in variants(json.loads(node)):
                yield encode(changed)


def test_parser_fuzz_every_shape_with_wrong_types() -> None:
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    for shape, payload in shapes().items():
        for n, variant in enumerate(variants(payload)):
            for form in (materialise(variant), encode(variant) if not isinstance(variant, str) else variant):
                try:
                    events = parse_events(form)
                except EventError as exc:
                    assert "\n" not in str(exc)
                    outcomes["refused"] += 1
                except Exception as exc:
                    failures.append(f"{shape} #{n} ({type(form).__name__}): {type(exc).__name__}: {str(exc)[:100]}")
                else:
                    assert all(isinstance(e, BucketEvent) for e in events)
                    outcomes["events"] += 1
    assert not failures, f"{len(failures)} variant(s) raised something else than EventError:\n" + "\n".join(
        failures[:30])
    assert outcomes["refused"] > 1000 and outcomes["events"] > 100, outcomes
    print(f"parser fuzz: {dict(outcomes)}")


@pytest.mark.parametrize("payload", ['{"Records":[{"Sns":1}]}', DEEP_TEXT, '{"Records":' + DEEP_TEXT + "}",
                                     '{"Type": "Notification", "Message": "' + DEEP_TEXT + '"}'],
                         ids=["sns-not-an-object", "deep", "deep-records", "deep-sns-message"])
def test_parser_named_cases(payload: str) -> None:
    with pytest.raises(EventError):
        parse_events(payload)
    with pytest.raises(EventError, match="nested deeper"):
        parse_events({"Records": deep_object()})


# ----------------------------------------------------------------------------------------------
# A real `hooks serve`


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit (ulimit -Hn) is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))  # inherited by the server process


@contextlib.contextmanager
def serve(server: S3Server, bucket: str, tmp_path: Path, *args: str, debounce: str = "0",
          verbosity: tuple[str, ...] = ("-v",)) -> Iterator[tuple[str, int, Path]]:
    conf = tmp_path / "tree.yml"
    conf.write_text(json.dumps(tree_doc(server, 3)))
    port = free_port()
    env = {**os.environ, **server.credentials, "SSB_HOOK_TOKEN": TOKEN}
    log = tmp_path / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([*SSB, *verbosity, "-c", str(conf), "-t", f"s3://{bucket}",
                                 "hooks", "serve", "--listen", f"127.0.0.1:{port}", "--debounce", debounce, *args],
                                env=env, stderr=fh, stdout=fh)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(f"{url}/healthz", timeout=30, proc=proc, log=log)
        yield url, port, log
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url + "/", data=body, method="POST",
                                      headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def raw(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(data)
    return sock


def answer(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes (raises TimeoutError if it does not)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def hang_up(sock: socket.socket) -> None:
    """Close with a reset, as a client that goes away does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, (1).to_bytes(4, "little") + (0).to_bytes(4, "little"))
    sock.close()


def headers(length: int | str, token: str | None = TOKEN) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"POST / HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {length}\r\n\r\n".encode()


# ----------------------------------------------------------------------------------------------
# Point 4: idle and stalled connections


def test_webhook_idle_and_stalled_connections_do_not_hold_it(s3_server: S3Server, bucket: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    raise_fd_limit(2048)
    s3_server.use_credentials(monkeypatch)
    client = s3_server.client()
    for product in range(2):
        put_version(client, bucket, product, VERSION)
    store = open_store(f"s3://{bucket}", s3_storage(s3_server))
    with serve(s3_server, bucket, tmp_path) as (url, port, _log):  # the defaults: --timeout 5, --max-connections 64
        started = time.monotonic()
        assert post(url, minio_body(bucket, "p/0/ssb.json"))[0] == 200
        normal = time.monotonic() - started

        attack = time.monotonic()
        idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(500)]
        opened = time.monotonic() - attack
        mid_headers = raw(port, f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Le".encode())
        short_body = raw(port, headers(1000) + b'{"Records"')
        started = time.monotonic()
        status, _ = post(url, minio_body(bucket, "p/1/ssb.json"))
        took = time.monotonic() - started
        assert status == 200 and "p1:1:amd64:default" in served(store)["products"]
        assert took < normal + 2 and took < SERVER_TIMEOUT, (took, normal)

        # the stalled requests and every idle socket are let go by the timeout, not held forever
        assert answer(short_body, SERVER_TIMEOUT + 5).startswith(b"HTTP/1.0 408 ")
        answer(mid_headers, SERVER_TIMEOUT + 5)
        closed = 0
        for sock in idle:
            with contextlib.suppress(ConnectionResetError):
                answer(sock, max(0.1, attack + opened + SERVER_TIMEOUT + 3 - time.monotonic()))
            closed += 1
            sock.close()
        released = time.monotonic() - attack
        assert closed == 500
        assert urllib.request.urlopen(f"{url}/healthz", timeout=5).status == 200
    print(f"webhook: one event {normal:.2f}s alone, {took:.2f}s beside 500 idle and 2 stalled connections "
          f"(opened in {opened:.1f}s); all of them closed by the server {released:.1f}s after the first opened")


def test_webhook_refuses_at_once_when_every_slot_is_publishing(s3_server: S3Server, bucket: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    s3_server.use_credentials(monkeypatch)
    put_version(s3_server.client(), bucket, 0, VERSION)
    with serve(s3_server, bucket, tmp_path, "--max-connections", "2", debounce="3") as (url, port, log):
        # two authenticated events hold both slots while they wait for the debounce (3 s)
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(post(url, minio_body(
            bucket, "p/0/ssb.json"))[0])) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        # both requests are read, so a new connection cannot take their slot: it is refused at once
        started = time.monotonic()
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        refused = answer(sock, 5)
        quick = time.monotonic() - started
        sock.close()
        for thread in threads:
            thread.join(timeout=60)
        assert results == [200, 200]
        assert refused.startswith(b"HTTP/1.0 503 "), refused
        assert quick < 1.0, quick
        assert '"status": 503' in log.read_text()


# ----------------------------------------------------------------------------------------------
# Points 6 and 21 in the webhook: a 400 for every malformed event, one line for a hang-up

EVENT = {"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}
MALFORMED = [
    b'{"Records":[{"Sns":1}]}',
    b'{"Records":[{"Sns":{"Message":1}}]}',
    DEEP_TEXT.encode(),
    b'{"Records":' + DEEP_TEXT.encode() + b"}",
    json.dumps({"Records": [{**EVENT, "eventName": ["s3:ObjectCreated:Put"]}]}).encode(),
    json.dumps({"Records": [{**EVENT, "s3": {"bucket": {"name": 1}, "object": {"key": "k"}}}]}).encode(),
    json.dumps({"Records": [{**EVENT, "s3": {"bucket": {"name": "b"}, "object": {"key": None}}}]}).encode(),
    json.dumps({"Records": [{**EVENT, "s3": {"bucket": "b", "object": []}}]}).encode(),
    json.dumps({"Records": {"0": EVENT}}).encode(),
    json.dumps({"Type": "Notification", "Message": 3}).encode(),
    json.dumps({"Type": "Notification", "Message": DEEP_TEXT}).encode(),
    b"\xff\xfe not utf-8",
]


def test_webhook_answers_400_to_every_malformed_event(s3_server: S3Server, bucket: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    s3_server.use_credentials(monkeypatch)
    put_version(s3_server.client(), bucket, 0, VERSION)
    store = open_store(f"s3://{bucket}", s3_storage(s3_server))
    with serve(s3_server, bucket, tmp_path) as (url, port, _log):
        for body in MALFORMED:
            status, answered = post(url, body)
            assert status == 400, (body[:60], status, answered)
            assert answered["error"].startswith("not a bucket event: ") and "\n" not in answered["error"]
        # a Content-Length that str.isdigit() takes but int() does not, or one of 5,000 digits
        for length in ("\u00b2", "9" * 5000):
            sock = raw(port, headers(length))
            assert answer(sock, 10).startswith(b"HTTP/1.0 411 "), length
            sock.close()
        assert post(url, minio_body(bucket, "p/0/ssb.json"))[0] == 200  # still serving
        assert list(served(store)["products"]) == ["p0:1:amd64:default"]


def test_webhook_logs_a_hang_up_as_one_line(s3_server: S3Server, bucket: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    s3_server.use_credentials(monkeypatch)
    put_version(s3_server.client(), bucket, 0, VERSION)
    store = open_store(f"s3://{bucket}", s3_storage(s3_server))
    with serve(s3_server, bucket, tmp_path) as (url, port, log):
        # clients going away: before the body is complete (with the token), or before the 401
        for _ in range(5):
            sock = raw(port, headers(100) + b'{"Records"')
            time.sleep(0.05)
            hang_up(sock)
            hang_up(raw(port, headers(5, token=None) + b"hello"))
        time.sleep(0.5)
        assert post(url, minio_body(bucket, "p/0/ssb.json"))[0] == 200  # still serving
        assert list(served(store)["products"]) == ["p0:1:amd64:default"]
        text = log.read_text()
    lines = [line for line in text.splitlines() if "hung up" in line]
    assert len(lines) >= 5, text[-3000:]
    assert all(json.loads(line.split("INFO: ", 1)[1])["error"] for line in lines)
    assert "Traceback" not in text and "Exception occurred" not in text, text[-3000:]


# ----------------------------------------------------------------------------------------------
# Point 21: the Lambda handler and the SQS consumer


def test_lambda_batch_fails_only_its_malformed_messages(s3_server: S3Server, bucket: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    s3_server.use_credentials(monkeypatch)
    conf = tmp_path / "tree.yml"
    conf.write_text(json.dumps(tree_doc(s3_server, 1)))
    monkeypatch.setenv("SSB_CONFIG", str(conf))
    monkeypatch.setenv("SSB_TARGET", f"s3://{bucket}")
    aws_lambda._cache.clear()
    put_version(s3_server.client(), bucket, 0, VERSION)
    batch = recorded("lambda-sqs-batch.json", bucket)
    good = {**batch["Records"][1], "messageId": "good",
            "body": json.dumps(json.loads(minio_body(bucket, "p/0/ssb.json")))}
    bad = {f"bad-{i}": {**good, "messageId": f"bad-{i}", "body": body.decode("utf-8", "replace")}
           for i, body in enumerate(MALFORMED)}
    result = aws_lambda.handler({"Records": [*bad.values(), good]})
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == sorted(bad)
    store = open_store(f"s3://{bucket}", s3_storage(s3_server))
    assert list(served(store)["products"]) == ["p0:1:amd64:default"]


def test_sqs_consumer_leaves_malformed_messages_and_keeps_running(moto_server: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    kw = {"endpoint_url": moto_server, "region_name": "us-east-1", "aws_access_key_id": "testing",
          "aws_secret_access_key": "testing"}
    s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
    bucket = f"hardening-{time.time_ns()}"
    s3.create_bucket(Bucket=bucket)
    queue = sqs.create_queue(QueueName=bucket, Attributes={"VisibilityTimeout": "600"})["QueueUrl"]
    doc = {"storage": {"endpoint_url": moto_server, "region": "us-east-1", "addressing_style": "path"},
           "hooks": {"debounce": 1},
           "products": [{"name": f"p{i}:1:amd64:default", "arch": "amd64", "release": "1", "os": "P",
                         "directory": f"p/{i}", "days": 5} for i in range(2)]}
    conf = tmp_path / "tree.yml"
    conf.write_text(json.dumps(doc))
    for product in range(2):
        put_version(s3, bucket, product, VERSION)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    bad = [body.decode("utf-8", "replace") for body in MALFORMED]
    for body in [*bad, minio_body(bucket, "p/0/ssb.json").decode()]:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    store = open_store(f"s3://{bucket}", StorageConfig(endpoint_url=moto_server, region="us-east-1",
                                                       addressing_style="path"))
    log = tmp_path / "consumer.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([*SSB, "-v", "-c", str(conf), "-t", f"s3://{bucket}",
                                 "hooks", "sqs", "--queue-url", queue, "--wait", "1",
                                 "--sqs-endpoint-url", moto_server], env=env, stderr=fh, stdout=fh)

    def wait_for(what: str, check: Any) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.5)
        raise AssertionError(f"{what} (consumer exit code {proc.poll()}):\n{log.read_text()[-3000:]}")

    def in_queue() -> int:
        attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return sum(int(v) for v in attrs.values())

    try:
        wait_for("the good message published", lambda: list(served(store)["products"]) == ["p0:1:amd64:default"])
        wait_for("only the malformed messages left", lambda: in_queue() == len(bad))
        # it goes on: a later event is published too
        sqs.send_message(QueueUrl=queue, MessageBody=minio_body(bucket, "p/1/ssb.json").decode())
        wait_for("a later event published", lambda: len(served(store)["products"]) == 2)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert text.count("left in the queue") == len(bad), text[-3000:]
    assert "Traceback" not in text


# ----------------------------------------------------------------------------------------------
# Points 7 and 14: bad `hooks` arguments


@pytest.mark.parametrize(("args", "code", "expected"), [
    (["hooks", "serve", "--debounce", "xx"], 2, "Invalid value for --debounce"),
    (["hooks", "sqs", "--queue-url", "http://127.0.0.1:9/q", "--debounce", "xx"], 2, "Invalid value for --debounce"),
    (["hooks", "serve", "--token-file", "/nonexistent"], 1,
     "error: --token-file /nonexistent: cannot read it: No such file or directory"),
    (["hooks", "serve", "--listen", ":99999"], 2, "the port must be 1-65535"),
    (["hooks", "serve", "--listen", "127.0.0.1:http"], 2, "expected HOST:PORT"),
    (["hooks", "serve", "--timeout", "0"], 2, "Invalid value for '--timeout'"),
    (["hooks", "serve", "--max-connections", "0"], 2, "Invalid value for '--max-connections'"),
])
def test_bad_hooks_arguments_say_which(tmp_path: Path, args: list[str], code: int, expected: str) -> None:
    conf = tmp_path / "tree.yml"
    conf.write_text(json.dumps({"products": [{"name": "p", "arch": "amd64", "release": "1", "os": "P",
                                              "directory": "p"}]}))
    env = {**os.environ, "SSB_HOOK_TOKEN": TOKEN, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_DEFAULT_REGION": "us-east-1"}
    out = ssb("-c", str(conf), "-t", "s3://bucket", *args, env=env, timeout=60)
    assert out.returncode == code, out.stderr
    assert expected in out.stderr, out.stderr
    assert "--grace" not in out.stderr and "unexpected" not in out.stderr and "Traceback" not in out.stderr
    if code == 1:
        assert out.stderr.strip().count("\n") == 0, out.stderr


# ----------------------------------------------------------------------------------------------
# Issue 20, point 17: the hooks say what failed and why


def json_lines(text: str, level: str) -> list[dict[str, Any]]:
    prefix = f"{level}: {{"
    return [json.loads(line[len(level) + 2:]) for line in text.splitlines() if line.startswith(prefix)]


def test_webhook_logs_each_failure_once_with_its_reason_by_default(s3_server: S3Server, bucket: str,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    s3_server.use_credentials(monkeypatch)
    client = s3_server.client()
    put_version(client, bucket, 0, VERSION)
    client.put_object(Bucket=bucket, Key="p/1/ssb.json", Body=b'{"name": "p1:1:amd64:default", "versions": "oops"}')
    with serve(s3_server, bucket, tmp_path, verbosity=()) as (url, _port, log):  # the default verbosity
        status, answered = post(url, minio_body(bucket, "p/1/ssb.json"))
        assert status == 500 and list(answered["failed"]) == ["p1:1:amd64:default"]
        assert post(url, b"{not json")[0] == 400
        assert post(url, minio_body(bucket, "p/0/ssb.json"))[0] == 200
        text = log.read_text()
    reason = answered["failed"]["p1:1:amd64:default"]
    assert "versions" in reason, reason
    failures = json_lines(text, "ERROR")
    assert failures == [{"events": 1, "republished": [], "failed": {"p1:1:amd64:default": reason}}], text
    assert text.count(json.dumps(reason)[1:-1]) == 1, text  # logged once
    requests = {line["status"]: line for line in json_lines(text, "INFO") if "status" in line}
    assert requests[500]["failed"] == ["p1:1:amd64:default"]
    assert requests[400]["error"].startswith("not a bucket event: message body is not JSON")
    assert {"events": 1, "republished": ["p0:1:amd64:default"]} in json_lines(text, "INFO")


def test_webhook_on_a_busy_port_says_address_in_use(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    conf.write_text(json.dumps(tree_doc(s3_server, 1)))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = ssb("-c", str(conf), "-t", f"s3://{bucket}", "hooks", "serve", "--listen", f"127.0.0.1:{port}",
                  env={**s3_server.credentials, "SSB_HOOK_TOKEN": TOKEN}, timeout=60)
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use", out.stderr


def s3_event(bucket: str, key: str, etag: str) -> dict[str, Any]:
    """The body S3 sends for a PUT (the recorded one, for this key and ETag)."""
    body = recorded("s3-put-ssb-json.json", bucket)
    body["Records"][0]["s3"]["object"].update(key=key, eTag=etag)
    return body  # type: ignore[no-any-return]


def test_own_manifest_write_does_not_publish_again(s3_server: S3Server, bucket: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    s3_server.use_credentials(monkeypatch)
    client = s3_server.client()
    tree = parse_config(tree_doc(s3_server, 1, hooks={"manifest_on_upload": True}), "tree.yml")
    republisher = Republisher(tree, f"s3://{bucket}")
    put_version(client, bucket, 0, VERSION, write_manifest=False)  # files only: the hook writes ssb.json
    uploads = [e for key in ("lxd.tar.xz", "rootfs.squashfs")
               for e in parse_events(s3_event(bucket, f"p/0/{VERSION}/{key}", "0" * 32))]
    assert republisher.handle(uploads).products == ["p0:1:amd64:default"] and republisher.publishes == 1
    written = client.head_object(Bucket=bucket, Key="p/0/ssb.json")["ETag"].strip('"')
    # the notification of that ssb.json write comes back: nothing to publish
    outcome = republisher.handle(parse_events(s3_event(bucket, "p/0/ssb.json", written)))
    assert outcome.ok and outcome.products == [] and republisher.publishes == 1
    # someone else's write of it is published
    client.put_object(Bucket=bucket, Key="p/0/ssb.json", Body=client.get_object(
        Bucket=bucket, Key="p/0/ssb.json")["Body"].read() + b"\n")
    theirs = client.head_object(Bucket=bucket, Key="p/0/ssb.json")["ETag"].strip('"')
    assert republisher.handle(parse_events(s3_event(bucket, "p/0/ssb.json", theirs))).products == [
        "p0:1:amd64:default"] and republisher.publishes == 2


def test_manifest_on_upload_writes_ssb_json_under_the_lease(s3_server: S3Server, bucket: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The ssb.json a hook rebuilds on upload is written by its publish, under the tree's lease:
    while another job holds it, nothing is written (the upload is published once it is free)."""
    s3_server.use_credentials(monkeypatch)
    client = s3_server.client()
    tree = parse_config(tree_doc(s3_server, 1, hooks={"manifest_on_upload": True}), "tree.yml")
    republisher = Republisher(tree, f"s3://{bucket}")
    put_version(client, bucket, 0, VERSION, write_manifest=False)
    uploads = [e for key in ("lxd.tar.xz", "rootfs.squashfs")
               for e in parse_events(s3_event(bucket, f"p/0/{VERSION}/{key}", "0" * 32))]
    with Lease(republisher.store, ttl=300, timeout=5, purpose="another publisher"):
        outcome = republisher.handle(uploads, lock_timeout=0.5)
        assert "another publisher" in outcome.failed["p0:1:amd64:default"], outcome.failed
        assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="p/0/ssb.json")
    assert republisher.handle(uploads).products == ["p0:1:amd64:default"]
    assert VERSION in json.loads(client.get_object(Bucket=bucket, Key="p/0/ssb.json")["Body"].read())["versions"]
    assert list(served(republisher.store)["products"]) == ["p0:1:amd64:default"]


class LambdaContext:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(1000 * (self.deadline - time.monotonic()))


def test_lambda_waits_for_the_lease_only_as_long_as_it_has(s3_server: S3Server, bucket: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    s3_server.use_credentials(monkeypatch)
    conf = tmp_path / "tree.yml"
    conf.write_text(json.dumps(tree_doc(s3_server, 1)))
    monkeypatch.setenv("SSB_CONFIG", str(conf))
    monkeypatch.setenv("SSB_TARGET", f"s3://{bucket}")
    aws_lambda._cache.clear()
    put_version(s3_server.client(), bucket, 0, VERSION)
    message = {**recorded("lambda-sqs-batch.json", bucket)["Records"][1], "messageId": "m1",
               "body": json.dumps(json.loads(minio_body(bucket, "p/0/ssb.json")))}
    store = open_store(f"s3://{bucket}", s3_storage(s3_server))
    with Lease(store, ttl=300, timeout=5, purpose="another publisher"):
        started = time.monotonic()
        result = aws_lambda.handler({"Records": [message]}, LambdaContext(aws_lambda.LEASE_MARGIN + 3))
        took = time.monotonic() - started
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert took < 3 + 5, took  # the default wait is 600 s, longer than the function's 160 s
    failed = [json.loads(r.getMessage()) for r in caplog.records if r.levelname == "ERROR"]
    assert len(failed) == 1 and "another publisher" in failed[0]["failed"]["p0:1:amd64:default"], failed
    # with the lease free, the redelivered message is published
    assert aws_lambda.handler({"Records": [message]}, LambdaContext(160)) == {"batchItemFailures": []}
    assert list(served(store)["products"]) == ["p0:1:amd64:default"]
