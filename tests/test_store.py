"""The storage interface, on a local folder and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from realparts import S3Server

from ssb_s3.config import StorageConfig
from ssb_s3.errors import NotFound, PreconditionFailed, StoreError, Unreachable
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.backends.local import LocalStore
from ssb_s3.storage.backends.s3 import S3Store, make_s3_client
from ssb_s3.storage.store import Store


def s3_storage(server: S3Server) -> StorageConfig:
    return StorageConfig(endpoint_url=server.endpoint, region="us-east-1", addressing_style="path",
                         checksum_mode="when_required")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "local":
        yield LocalStore(tmp_path / "tree")
        return
    server = request.getfixturevalue("s3_env")
    bucket = request.getfixturevalue("bucket")
    yield open_store(f"s3://{bucket}/some/prefix", s3_storage(server))


def test_write_read_list_head_delete(store: Store) -> None:
    store.put("a/b/one.json", b'{"x":1}')
    store.put("a/two.bin", b"\x00" * 10, content_type="application/octet-stream")
    store.put("z.json", b"{}")
    assert store.read("a/b/one.json") == b'{"x":1}'
    assert [(o.key, o.size) for o in store.list("a/")] == [("a/b/one.json", 7), ("a/two.bin", 10)]
    assert [o.key for o in store.list()] == ["a/b/one.json", "a/two.bin", "z.json"]
    head = store.head("a/two.bin")
    assert head is not None and head.size == 10
    assert store.head("missing") is None
    assert b"".join(store.iter_chunks("a/two.bin", 3)) == b"\x00" * 10
    store.delete("a/two.bin")
    store.delete("a/two.bin")  # deleting twice is fine
    assert store.head("a/two.bin") is None
    with pytest.raises(NotFound):
        store.read("a/two.bin")
    with pytest.raises(NotFound):
        list(store.iter_chunks("a/two.bin"))


def test_conditional_writes(store: Store) -> None:
    etag = store.put_new("index.json", b"1")
    with pytest.raises(PreconditionFailed):
        store.put_new("index.json", b"2")
    newer = store.replace("index.json", b"2", etag)
    with pytest.raises(PreconditionFailed):
        store.replace("index.json", b"3", etag)  # stale etag: someone else won
    assert store.read_with_etag("index.json") == (b"2", newer)
    with pytest.raises(PreconditionFailed):
        store.replace("never-written.json", b"x", newer)


def test_upload_streams_a_large_object(store: Store, tmp_path: Path) -> None:
    data = os.urandom(9 * 1024 * 1024)  # over the 8 MiB multipart threshold on S3
    store.put("big/rootfs.squashfs", io.BytesIO(data), content_type="application/octet-stream",
                 cache_control="public, max-age=31536000, immutable")
    assert b"".join(store.iter_chunks("big/rootfs.squashfs")) == data
    with store.open_reader("big/rootfs.squashfs") as reader:
        assert reader.read() == data


def test_local_writes_are_atomic_renames(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("streams/v1/index.json", b"old")
    path = tmp_path / "streams/v1/index.json"
    inode = path.stat().st_ino
    store.put("streams/v1/index.json", b"new")
    assert path.read_bytes() == b"new"
    assert path.stat().st_ino != inode  # replaced by rename, never truncated in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.json"]
    with pytest.raises(StoreError, match="not a plain relative path"):
        store.put("../escape.json", b"x")


def test_s3_json_headers(s3_env: S3Server, bucket: str) -> None:
    store = open_store(f"s3://{bucket}", s3_storage(s3_env))
    store.put("streams/v1/index.json", b"{}", cache_control="no-cache")
    head = s3_env.client().head_object(Bucket=bucket, Key="streams/v1/index.json")
    assert head["ContentType"] == "application/json"
    assert head["CacheControl"] == "no-cache"
    # anonymous HTTPS read, as the LXD client will do it
    assert json.loads(s3_env.anonymous_get(f"{s3_env.public_url(bucket)}/streams/v1/index.json")) == {}


def test_s3_errors_are_clear_and_hold_no_secret(s3_server: S3Server, bucket: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-123")
    store = open_store(f"s3://{bucket}", s3_storage(s3_server))
    with pytest.raises(StoreError) as info:
        store.put("x.json", b"{}")
    assert "check the credentials" in str(info.value)
    assert "wrong-secret-value-123" not in str(info.value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    missing = open_store("s3://no-such-bucket-here", s3_storage(s3_server))
    with pytest.raises(StoreError, match="does not exist"):
        list(missing.list())
    unreachable = open_store("s3://unreachable", StorageConfig(endpoint_url="http://127.0.0.1:9", region="us-east-1"))
    assert isinstance(unreachable, S3Store)
    unreachable.client = make_s3_client(StorageConfig(endpoint_url="http://127.0.0.1:9", region="us-east-1"))
    with pytest.raises(Unreachable, match=r"^http://127\.0\.0\.1:9: connection refused"):  # at once, no retries
        unreachable.head("x")


def test_listing_paginates(s3_env: S3Server, bucket: str) -> None:
    client = s3_env.client()
    for i in range(1005):
        client.put_object(Bucket=bucket, Key=f"many/{i:05d}", Body=b"")
    store = open_store(f"s3://{bucket}", s3_storage(s3_env))
    assert len(list(store.list("many/"))) == 1005
