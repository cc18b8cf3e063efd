"""The store's verdict cached in the tree (issue 24, ssb_s3.storage.probe), on SeaweedFS and Ceph RGW:
a later run reads .ssb-s3/store.json and sends no probe request; a changed setting that could change
the verdict (storage.checksum_mode) probes again; a forged record costs at most one probe, never a
write in a form the store does not honour.

Each "later run" is a new process as far as the verdict goes: this process's copies are dropped.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest
from realparts import S3Server
from test_hooks import put_version, served, tree_doc

from ssb_s3.commands.publish import PublishOptions, publish
from ssb_s3.config import TreeConfig, parse_config
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.backends import s3 as store_module
from ssb_s3.storage.backends.s3 import S3Store
from ssb_s3.vocabulary.layout import PROBE_KEY_PREFIX, STORE_VERDICT_KEY

PRODUCT = "p0:1:amd64:default"
# What each server answers to If-Match (tests/test_stores.py EXPECTED), and the form it refuses
REPLACE = {"seaweedfs": "quoted", "rgw": "unquoted"}


def new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget this process's verdicts, as a new run starts without them."""
    monkeypatch.setattr(store_module, "_VERDICTS", {})
    monkeypatch.setattr(store_module, "_RECORDED", set(), raising=False)


def counted(tree: TreeConfig, bucket: str) -> tuple[S3Store, list[tuple[str, str]]]:
    """A store of `tree` whose requests are recorded as (operation, key), the way
    test_hooks.incremental_requests counts them (botocore's before-send)."""
    store = open_store(f"s3://{bucket}", tree.storage)
    assert isinstance(store, S3Store)
    sent: list[tuple[str, str]] = []

    def before_send(event_name: str, request: Any, **_: Any) -> None:
        key = urlsplit(request.url).path.lstrip("/").partition("/")[2]
        sent.append((event_name.rsplit(".", 1)[-1], key))

    store.client.meta.events.register("before-send.s3", before_send)
    return store, sent


def probes(sent: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [r for r in sent if r[1].startswith(PROBE_KEY_PREFIX)]


def recorded(server: S3Server, bucket: str) -> dict[str, Any]:
    return dict(json.loads(server.client().get_object(Bucket=bucket, Key=STORE_VERDICT_KEY)["Body"].read()))


def first_publish(server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch, **storage: Any) -> TreeConfig:
    server.use_credentials(monkeypatch)
    new_process(monkeypatch)
    put_version(server.client(), bucket, 0, "20260101_0000")
    doc = tree_doc(server, 1)
    doc["storage"].update(storage)
    tree = parse_config(doc, "tree.yml")
    store, sent = counted(tree, bucket)
    assert publish(tree, store).index_written
    assert probes(sent), "the first run probes"
    return tree


def next_event(server: S3Server, bucket: str, serial: str) -> None:
    client = server.client()
    manifest = json.loads(client.get_object(Bucket=bucket, Key="p/0/ssb.json")["Body"].read())
    put_version(client, bucket, 0, serial, manifest)


def test_a_later_run_reads_the_verdict_and_sends_no_probe(
        store_server: S3Server, store_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = first_publish(store_server, store_bucket, monkeypatch)
    verdict = recorded(store_server, store_bucket)
    next_event(store_server, store_bucket, "20260102_0000")
    new_process(monkeypatch)
    store, sent = counted(tree, store_bucket)
    report = publish(tree, store, PublishOptions(), only={PRODUCT})
    assert report.index_written
    assert probes(sent) == [], probes(sent)
    # the verdict costs one GET (its record), no probe and no write of it
    internal = Counter(r for r in sent if r[1] == STORE_VERDICT_KEY or r[1].startswith(PROBE_KEY_PREFIX))
    assert internal == Counter({("GetObject", STORE_VERDICT_KEY): 1}), internal
    assert recorded(store_server, store_bucket) == verdict  # not written again
    assert sorted(served(store)["products"][PRODUCT]["versions"]) == ["20260101_0000", "20260102_0000"]


def test_a_changed_checksum_setting_probes_again(
        store_server: S3Server, store_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = first_publish(store_server, store_bucket, monkeypatch)
    before = recorded(store_server, store_bucket)
    assert "checksum_mode when_required" in before["settings"]
    changed = dataclasses.replace(tree, storage=dataclasses.replace(tree.storage, checksum_mode="when_supported"))
    next_event(store_server, store_bucket, "20260102_0000")
    new_process(monkeypatch)
    store, sent = counted(changed, store_bucket)
    assert publish(changed, store, PublishOptions(), only={PRODUCT}).index_written
    assert probes(sent), "a verdict recorded under another checksum_mode is not trusted"
    after = recorded(store_server, store_bucket)
    assert "checksum_mode when_supported" in after["settings"] and after["identity"] == before["identity"]
    assert after["replace"] == REPLACE[store_server.kind]
    # and the run after that trusts the new record
    next_event(store_server, store_bucket, "20260103_0000")
    new_process(monkeypatch)
    store, sent = counted(changed, store_bucket)
    assert publish(changed, store, PublishOptions(), only={PRODUCT}).index_written
    assert probes(sent) == []


def test_a_forged_verdict_costs_one_probe_never_a_lost_write(
        store_server: S3Server, store_bucket: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A co-tenant who can write .ssb-s3/ records the If-Match form this store refuses (RGW wants the
    ETag unquoted): the flip's If-Match fails as the verdict did not predict, the store is probed again
    once, the flip is sent again in the probed form and the record is corrected."""
    tree = first_publish(store_server, store_bucket, monkeypatch)
    forged = recorded(store_server, store_bucket)
    truth = forged["replace"]
    forged["replace"] = {"quoted": "unquoted", "unquoted": "quoted"}[truth]
    store_server.client().put_object(Bucket=store_bucket, Key=STORE_VERDICT_KEY, Body=json.dumps(forged).encode())
    next_event(store_server, store_bucket, "20260102_0000")
    new_process(monkeypatch)
    store, sent = counted(tree, store_bucket)
    report = publish(tree, store, PublishOptions(), only={PRODUCT})
    assert report.index_written
    assert sorted(served(store)["products"][PRODUCT]["versions"]) == ["20260101_0000", "20260102_0000"]
    flips = [r for r in sent if r == ("PutObject", "streams/v1/index.json")]
    if store_server.kind == "rgw":  # RGW refuses the quoted form: one probe, and the flip sent again
        assert probes(sent) and "did not predict" in caplog.text
        assert recorded(store_server, store_bucket)["replace"] == truth
        assert len(flips) == 3, flips  # the refused flip, the flip again, the settle
    else:  # SeaweedFS takes the ETag in either form: the forged form is honoured, nothing to correct
        assert len(flips) == 2, flips
