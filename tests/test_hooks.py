"""Event hooks: the parser on recorded bodies, routing, incremental publishes whose request count
does not grow with the tree, the Lambda handler, the MinIO webhook receiver and the SQS consumer
driven by a real server's S3 -> SQS notifications (moto server)."""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import signal
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from helpers import SSB, ssb
from realparts import S3Server, free_port, wait_for_url

from ssb_s3.commands.publish import PublishOptions, publish
from ssb_s3.config import StorageConfig, parse_config
from ssb_s3.hooks import aws_lambda
from ssb_s3.hooks.events import BucketEvent, EventError, parse_events, route
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.backends.s3 import S3Store

EVENTS = Path(__file__).resolve().parent / "data" / "events"


def recorded(name: str, bucket: str = "images") -> Any:
    """A recorded body, its bucket ("images", also inside JSON-in-JSON bodies) renamed to `bucket`."""
    return json.loads((EVENTS / name).read_text().replace("images", bucket))


# ----------------------------------------------------------------------------------------------
# Parsing and routing


def test_parser_reads_every_recorded_shape() -> None:
    assert parse_events(recorded("s3-test-event.json")) == []
    assert parse_events(recorded("s3-put-ssb-json.json")) == [BucketEvent("images", "busybox/amd64/ssb.json", True)]
    key = "busybox/amd64/20260101_10:00/rootfs.squashfs"  # %2F, %3A decoded
    assert parse_events(recorded("s3-put-artifact.json")) == [BucketEvent("images", key, True)]
    assert parse_events(recorded("s3-delete-artifact.json")) == [BucketEvent("images", key, False)]
    assert parse_events(recorded("sns-in-sqs-put-ssb-json.json")) == [
        BucketEvent("images", "busybox/amd64/ssb.json", True)]
    assert parse_events(recorded("minio-webhook-put-ssb-json.json")) == [
        BucketEvent("images", "busybox/amd64/ssb.json", True)]
    batch = recorded("lambda-sqs-batch.json")
    assert len(parse_events(batch)) == 3  # the test event gives nothing
    body = json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": "images"}, "object": {"key": "a+b/c%2Bd"}}}]})
    assert parse_events(body) == [BucketEvent("images", "a b/c+d", True)]


@pytest.mark.parametrize("payload", ["not json", "[]", '{"Records": 3}', '{"Records": [{"eventName": "x"}]}',
                                     '{"Records": [{"s3": {"bucket": {}}}]}', '{"foo": 1}'])
def test_parser_refuses_what_is_not_an_event(payload: str) -> None:
    with pytest.raises(EventError):
        parse_events(payload)


def test_routing_by_folder() -> None:
    tree = parse_config({"products": [
        {"name": "a", "arch": "amd64", "release": "1", "os": "A", "directory": "busybox/amd64"},
        {"name": "b", "arch": "amd64", "release": "1", "os": "B", "directory": "busybox/amd64/cloud"},
        {"name": "c", "arch": "amd64", "release": "1", "os": "C", "directory": "c", "source": "s3://builds/ci"},
    ], "hooks": {"manifest_on_upload": True}}, "tree.yml")
    events = [
        BucketEvent("images", "tree/busybox/amd64/ssb.json", True),
        BucketEvent("images", "tree/busybox/amd64/cloud/20260101_0000/rootfs.squashfs", True),
        BucketEvent("images", "tree/busybox/amd64/cloud/20260101_0000/build.log", True),  # not an artifact
        BucketEvent("images", "tree/streams/v1/index.json", True),  # our own write: no loop
        BucketEvent("images", "tree/.ssb-s3/lease.json", True),
        BucketEvent("images", "elsewhere/busybox/amd64/ssb.json", True),  # outside the tree
        BucketEvent("other", "tree/busybox/amd64/ssb.json", True),  # another bucket
        BucketEvent("builds", "ci/c/ssb.json", True),  # a product living in its source bucket
    ]
    changes = route(tree, "s3://images/tree", events)
    assert sorted(changes) == ["a", "b", "c"]
    assert changes["a"].manifest and not changes["a"].artifacts
    assert changes["b"].artifacts and not changes["b"].manifest
    assert changes["c"].manifest


# ----------------------------------------------------------------------------------------------
# A tree of P products on the real S3 server


def s3_storage(server: S3Server) -> StorageConfig:
    return StorageConfig(endpoint_url=server.endpoint, region="us-east-1", addressing_style="path",
                         checksum_mode="when_required")


def tree_doc(server: S3Server, products: int, **extra: Any) -> dict[str, Any]:
    return {
        "storage": {"endpoint_url": server.endpoint, "region": "us-east-1", "addressing_style": "path",
                    "checksum_mode": "when_required"},
        "products": [{"name": f"p{i}:1:amd64:default", "arch": "amd64", "release": "1", "os": "P",
                      "directory": f"p/{i}", "days": 5, "aliases": [f"p{i}"]} for i in range(products)],
        **extra,
    }


def metadata_tarball(tag: bytes) -> bytes:
    """A small lxd.tar.xz that passes the artifact checks (metadata.yaml for amd64), distinct per tag."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("metadata.yaml", b"architecture: x86_64\ncreation_date: 1767225600\n"
                                             b"properties: {os: P, release: '1'}\n"), ("tag", tag)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buf.getvalue())


def put_version(client: Any, bucket: str, product: int, version: str, manifest: dict[str, Any] | None = None,
                *, write_manifest: bool = True) -> dict[str, Any]:
    meta = metadata_tarball(f"meta {product} {version}".encode())  # refresh checks it as build-product does
    root = b"hsqs" + bytes(44) + f"root {product} {version}".encode() * 20
    folder = f"p/{product}/{version}"
    client.put_object(Bucket=bucket, Key=f"{folder}/lxd.tar.xz", Body=meta)
    client.put_object(Bucket=bucket, Key=f"{folder}/rootfs.squashfs", Body=root)
    manifest = manifest or {"name": f"p{product}:1:amd64:default", "versions": {}}
    manifest["versions"][version] = {"items": {
        "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": f"{folder}/lxd.tar.xz", "size": len(meta),
                       "sha256": hashlib.sha256(meta).hexdigest(),
                       "combined_squashfs_sha256": hashlib.sha256(meta + root).hexdigest()},
        "root.squashfs": {"ftype": "squashfs", "path": f"{folder}/rootfs.squashfs", "size": len(root),
                          "sha256": hashlib.sha256(root).hexdigest()}}}
    if write_manifest:
        client.put_object(Bucket=bucket, Key=f"p/{product}/ssb.json", Body=json.dumps(manifest).encode())
    return manifest


def served(store: Any) -> dict[str, Any]:
    index = json.loads(store.read("streams/v1/index.json"))
    return json.loads(store.read(index["index"]["images"]["path"]))  # type: ignore[no-any-return]


def incremental_requests(server: S3Server, bucket: str, products: int,
                         put_keys: list[str] | None = None) -> tuple[Counter[str], dict[str, Any]]:
    """Publish a tree of `products`, change one product, count the requests of its republish (and
    record the keys it PUT in `put_keys`)."""
    server.create_bucket(bucket)
    client = server.client()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: put_version(client, bucket, i, "20260101_0000"), range(products)))
    tree = parse_config(tree_doc(server, products), "tree.yml")
    store = open_store(f"s3://{bucket}", tree.storage)
    publish(tree, store)
    manifest = json.loads(store.read("p/0/ssb.json"))
    put_version(client, bucket, 0, "20260102_0000", manifest)
    assert isinstance(store, S3Store)
    counts: Counter[str] = Counter()
    store.client.meta.events.register("before-send.s3", lambda event_name, **_: counts.update(
        [event_name.rsplit(".", 1)[-1]]))
    keys: list[str] = []
    store.client.meta.events.register("before-parameter-build.s3.PutObject",
                                      lambda params, **_: keys.append(params["Key"]))
    report = publish(tree, store, PublishOptions(), only={"p0:1:amd64:default"})
    sent = Counter(dict(counts))  # what the publish sent, not the reads below
    if put_keys is not None:
        put_keys.extend(keys)
    assert report.index_written and report.changes == {
        "p0:1:amd64:default": {"added": ["20260102_0000"], "removed": [], "versions": 2}}
    return sent, served(store)


def test_incremental_publish_request_count_does_not_grow_with_the_tree(
        s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    s3_server.use_credentials(monkeypatch)
    small, small_catalog = incremental_requests(s3_server, "incr-10", 10)
    large, large_catalog = incremental_requests(s3_server, "incr-300", 300)
    assert small == large, (small, large)
    # lease create, read back before the flip, and delete; index read, flip (its history rides along)
    # and settle (recording the fixed-name views written after the flip); catalog read and write,
    # images.json, the page (index.html) and that product's page, that product's ssb.json and one
    # listing of its folder, one HEAD of streams/v1/index.sjson (no signing key: is the tree signed?),
    # and the record of the older catalogs read and written (.ssb-s3/history.json, core.past):
    # nothing per product
    assert large == Counter({"PutObject": 8, "GetObject": 5, "ListObjectsV2": 1, "DeleteObject": 1,
                             "HeadObject": 1})
    assert len(large_catalog["products"]) == 300 and len(small_catalog["products"]) == 10
    assert sorted(large_catalog["products"]["p0:1:amd64:default"]["versions"]) == ["20260101_0000", "20260102_0000"]
    print(f"requests of one incremental publish, P=10 and P=300: {dict(large)} = {sum(large.values())}")


def test_incremental_publish_writes_that_products_page_and_the_index(
        s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24: of the 50 product pages, an incremental publish of one product writes that
    product's page, then the index (index.html) that links to it, nothing else of the page's."""
    s3_server.use_credentials(monkeypatch)
    keys: list[str] = []
    sent, catalog = incremental_requests(s3_server, "incr-pages", 50, keys)
    assert len(catalog["products"]) == 50
    pages = sorted(k for k in keys if k.endswith(".html"))
    assert pages == ["index.html", "products/p0:1:amd64:default.html"], keys
    assert [k for k in keys if not k.endswith(".html") and not k.startswith((".ssb-s3/", "streams/v1/"))] == [], keys
    assert keys.index("products/p0:1:amd64:default.html") < keys.index("index.html")  # the page before its link
    page = s3_server.client().get_object(Bucket="incr-pages", Key="products/p0:1:amd64:default.html")
    assert b"20260102_0000" in page["Body"].read()  # the new version is on it
    assert sent["DeleteObject"] == 1  # the lease: no page deleted


# ----------------------------------------------------------------------------------------------
# Lambda


def test_lambda_handler_on_recorded_bodies_with_partial_batch_failure(
        store_server: S3Server, store_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store_server.use_credentials(monkeypatch)
    doc = tree_doc(store_server, 0)
    doc["products"] = [
        {"name": "busybox:amd64", "arch": "amd64", "release": "1", "os": "Busybox", "directory": "busybox/amd64"},
        {"name": "busybox:arm64", "arch": "arm64", "release": "1", "os": "Busybox", "directory": "busybox/arm64"},
    ]
    conf = tmp_path / "tree.yml"
    conf.write_text(json.dumps(doc))  # JSON is YAML
    monkeypatch.setenv("SSB_CONFIG", str(conf))
    monkeypatch.setenv("SSB_TARGET", f"s3://{store_bucket}")
    aws_lambda._cache.clear()
    client = store_server.client()
    for arch in ("amd64", "arm64"):
        meta, root = f"meta {arch}".encode(), f"root {arch}".encode()
        client.put_object(Bucket=store_bucket, Key=f"busybox/{arch}/20260101_10:00/lxd.tar.xz", Body=meta)
        client.put_object(Bucket=store_bucket, Key=f"busybox/{arch}/20260101_10:00/rootfs.squashfs", Body=root)
        manifest = {"name": f"busybox:{arch}", "versions": {"20260101_10:00": {"items": {
            "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": f"busybox/{arch}/20260101_10:00/lxd.tar.xz",
                           "size": len(meta), "sha256": hashlib.sha256(meta).hexdigest(),
                           "combined_squashfs_sha256": hashlib.sha256(meta + root).hexdigest()},
            "root.squashfs": {"ftype": "squashfs", "path": f"busybox/{arch}/20260101_10:00/rootfs.squashfs",
                              "size": len(root), "sha256": hashlib.sha256(root).hexdigest()}}}}}
        body = json.dumps(manifest) if arch == "amd64" else '{"name": "busybox:arm64", "versions": "oops"}'
        client.put_object(Bucket=store_bucket, Key=f"busybox/{arch}/ssb.json", Body=body.encode())

    # straight from S3 (and the test event S3 sends when the notification is set up)
    assert aws_lambda.handler(recorded("s3-test-event.json", store_bucket)) == {"published": []}
    assert aws_lambda.handler(recorded("s3-put-ssb-json.json", store_bucket)) == {"published": ["busybox:amd64"]}
    store = open_store(f"s3://{store_bucket}", s3_storage(store_server))
    assert list(served(store)["products"]) == ["busybox:amd64"]

    # an SQS batch: amd64 is fine, arm64's manifest is broken, one body is not an event
    batch = recorded("lambda-sqs-batch.json", store_bucket)
    records = [r for r in batch["Records"] if "ssb.json" in r["body"]]
    good = records[0]
    bad = {**good, "messageId": "bad-product", "body": good["body"].replace("amd64", "arm64")}
    junk = {**good, "messageId": "junk", "body": "this is not an event"}
    result = aws_lambda.handler({"Records": [good, bad, junk]})
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == ["bad-product", "junk"]
    assert list(served(store)["products"]) == ["busybox:amd64"]
    # redelivery of the good message is harmless
    assert aws_lambda.handler({"Records": [good]}) == {"batchItemFailures": []}


# ----------------------------------------------------------------------------------------------
# MinIO webhook receiver (a real `ssb-s3 hooks serve` process)

TOKEN = "t0k3n-for-the-webhook-tests-1234"


def minio_body(bucket: str, key: str) -> bytes:
    body = recorded("minio-webhook-put-ssb-json.json", bucket)
    body["Key"] = f"{bucket}/{key}"
    body["Records"][0]["s3"]["object"]["key"] = urllib.request.quote(key, safe="")
    return json.dumps(body).encode()


def post(url: str, body: bytes, token: str | None = TOKEN, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def webhook(s3_server: S3Server, bucket: str, tmp_path: Path) -> Any:
    conf = tmp_path / "tree.yml"
    conf.write_text(json.dumps(tree_doc(s3_server, 20, hooks={"debounce": 1})))
    port = free_port()
    env = {**os.environ, **s3_server.credentials, "SSB_HOOK_TOKEN": TOKEN}
    log = tmp_path / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([*SSB, "-v", "-c", str(conf), "-t", f"s3://{bucket}",
                                 "hooks", "serve", "--listen", f"127.0.0.1:{port}", "--max-body", "65536"],
                                env=env, stderr=fh, stdout=fh)
    url = f"http://127.0.0.1:{port}"
    wait_for_url(f"{url}/healthz", timeout=30, proc=proc, log=log)
    yield url, log
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text()


def test_webhook_refuses_to_start_without_a_token(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    conf.write_text(json.dumps(tree_doc(s3_server, 1)))
    env = {k: v for k, v in os.environ.items() if k != "SSB_HOOK_TOKEN"}
    out = subprocess.run([*SSB, "-c", str(conf), "-t", f"s3://{bucket}", "hooks", "serve",
                          "--listen", f"127.0.0.1:{free_port()}"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "a token of at least 16 characters is required" in out.stderr


def test_webhook_token_limits_and_a_burst(s3_server: S3Server, bucket: str, webhook: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    s3_server.use_credentials(monkeypatch)
    url, log = webhook
    client = s3_server.client()
    store = open_store(f"s3://{bucket}", s3_storage(s3_server))
    for i in range(20):
        put_version(client, bucket, i, "20260101_0000")
    event = minio_body(bucket, "p/0/ssb.json")
    assert post(url + "/", event, token=None) == 401
    assert post(url + "/", event, token="wrong-token-wrong-token") == 401
    assert store.head("streams/v1/index.json") is None  # nothing happened
    assert post(url + "/", b"x" * 70000) == 413
    assert post(url + "/", b"{not json") == 400
    assert post(url + "/", b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}') == 400
    assert urllib.request.urlopen(f"{url}/healthz", timeout=5).status == 200  # still up
    assert post(url + "/", event) == 200
    assert list(served(store)["products"]) == ["p0:1:amd64:default"]

    # 100 events for 20 products, at once: the catalog ends right, with far fewer publishes
    bodies = [minio_body(bucket, f"p/{i % 20}/ssb.json") for i in range(100)]
    with ThreadPoolExecutor(25) as pool:
        statuses = list(pool.map(lambda b: post(url + "/", b), bodies))
    assert statuses == [200] * 100
    assert sorted(served(store)["products"]) == sorted(f"p{i}:1:amd64:default" for i in range(20))
    publishes = sum(1 for line in log.read_text().splitlines()
                    if line.startswith("INFO: {") and json.loads(line[6:]).get("republished"))
    assert 2 <= publishes <= 20, publishes  # one for the first event, then a handful for the burst
    lines = [json.loads(line.split("INFO: ", 1)[1]) for line in log.read_text().splitlines()
             if line.startswith("INFO: {")]
    assert {line["status"] for line in lines if "status" in line} >= {200, 400, 401, 413}
    assert all(TOKEN not in json.dumps(line) for line in lines)
    print(f"webhook burst: 100 events -> {publishes - 1} publishes")


# ----------------------------------------------------------------------------------------------
# SQS consumer, fed by a real server's bucket notifications (moto server: S3 + SQS)


def test_sqs_consumer_follows_uploads_and_deletes(moto_server: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    kw = {"endpoint_url": moto_server, "region_name": "us-east-1", "aws_access_key_id": "testing",
          "aws_secret_access_key": "testing"}
    s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
    bucket = f"hooks-{time.time_ns()}"
    s3.create_bucket(Bucket=bucket)
    queue = sqs.create_queue(QueueName=bucket)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
    doc = {"storage": {"endpoint_url": moto_server, "region": "us-east-1", "addressing_style": "path"},
           "hooks": {"manifest_on_upload": True, "debounce": 1},
           "products": [{"name": f"p{i}:1:amd64:default", "arch": "amd64", "release": "1", "os": "P",
                         "directory": f"p/{i}", "days": 5, "aliases": [f"p{i}"]} for i in range(3)]}
    conf = tmp_path / "tree.yml"
    conf.write_text(json.dumps(doc))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    log = tmp_path / "consumer.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([*SSB, "-c", str(conf), "-t", f"s3://{bucket}",
                                 "hooks", "sqs", "--queue-url", queue, "--wait", "1",
                                 "--sqs-endpoint-url", moto_server], env=env, stderr=fh, stdout=fh)
    store = open_store(f"s3://{bucket}", StorageConfig(endpoint_url=moto_server, region="us-east-1",
                                                       addressing_style="path"))

    def wait_for(check: Any, what: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except Exception:
                pass
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")

    try:
        # a builder uploading with another tool: files only, no ssb.json (manifest_on_upload)
        for i in range(3):
            put_version(s3, bucket, i, "20260101_0000", write_manifest=False)
        wait_for(lambda: len(served(store)["products"]) == 3, "three products")
        put_version(s3, bucket, 1, "20260102_0000", write_manifest=False)
        wait_for(lambda: len(served(store)["products"]["p1:1:amd64:default"]["versions"]) == 2, "a second version")
        for key in ("p/1/20260101_0000/lxd.tar.xz", "p/1/20260101_0000/rootfs.squashfs"):
            s3.delete_object(Bucket=bucket, Key=key)
        wait_for(lambda: list(served(store)["products"]["p1:1:amd64:default"]["versions"]) == ["20260102_0000"],
                 "the deleted version to leave")
        # every message handled was deleted: the queue drains
        wait_for(lambda: sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"] == {
            "ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}, "an empty queue")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    text = log.read_text()
    assert code == 0, text
    # at the default verbosity: the start, each publish and batch, the stop, as JSON lines; the
    # ssb.json the hook wrote came back as events that published nothing
    lines = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("INFO: {")]
    assert lines[0] == {"consuming": queue} and lines[-1]["stopped"].startswith("after ")
    assert any(line.get("republished") == ["p1:1:amd64:default"] for line in lines), text
    assert sum(line.get("own_writes_ignored", 0) for line in lines) >= 3, text
    assert all(line.get("own_writes_ignored", 0) < line["events"] or line["republished"] == []
               for line in lines if "events" in line), text


def test_lambda_without_a_tree_yml_republishes_a_product_that_add_recorded(
        s3_server: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tree made with `ssb-s3 add` only (no tree.yml anywhere): the Lambda reads the tree's own
    product record, so an event for that product republishes it (before: 'tree.yml: not found')."""
    import urllib.parse

    from realparts import make_image

    s3_server.use_credentials(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("SSB_CONFIG", raising=False)
    monkeypatch.setenv("SSB_TARGET", f"s3://{bucket}")
    monkeypatch.chdir(tmp_path)  # no tree.yml here either
    aws_lambda._cache.clear()
    files = {p.name: p for p in make_image(tmp_path / "img", kind="squashfs", serial="20260101_1000",
                                           description="added")}
    added = ssb("-t", f"s3://{bucket}", "add", str(files["lxd.tar.xz"]), str(files["rootfs.squashfs"]), "--json")
    assert added.returncode == 0, added.stderr
    record = json.loads(s3_server.client().get_object(Bucket=bucket, Key=".ssb-s3/products.json")["Body"].read())
    (product,) = record["products"]
    event = recorded("s3-put-ssb-json.json", bucket)
    event["Records"][0]["s3"]["object"]["key"] = urllib.parse.quote(f"{product['directory']}/ssb.json", safe="")
    assert aws_lambda.handler(event) == {"published": [product["name"]]}
