"""History does not cost per event (issue 24, ssb_s3.core.past): an incremental publish whose product
has expired versions reads one record of the older catalogs, not each catalog still within the grace,
and its purge decides exactly as from the catalogs themselves.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from realparts import S3Server
from test_hooks import put_version, tree_doc

from ssb_s3.commands.publish import PublishOptions, publish
from ssb_s3.config import TreeConfig, parse_config
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.backends.s3 import S3Store
from ssb_s3.vocabulary.layout import PAST_KEY


def grown_history(server: S3Server, bucket: str, older: int) -> tuple[TreeConfig, S3Store]:
    """A tree of 3 products (2 versions kept each) published once, then `older` incremental publishes
    of p1 (each a new catalog, the one before still within the grace), then a new version of p0
    that expires its oldest."""
    server.create_bucket(bucket)
    client = server.client()
    manifests = [put_version(client, bucket, i, "20260101_0000") for i in range(3)]
    put_version(client, bucket, 0, "20260102_0000", manifests[0])
    doc = tree_doc(server, 3)
    for product in doc["products"]:
        product["days"] = 2
    tree = parse_config(doc, "tree.yml")
    store = open_store(f"s3://{bucket}", tree.storage)
    assert isinstance(store, S3Store)
    publish(tree, store)
    for day in range(older):
        put_version(client, bucket, 1, f"202602{day + 1:02d}_0000", manifests[1])
        publish(tree, store, PublishOptions(), only={"p1:1:amd64:default"})
    put_version(client, bucket, 0, "20260103_0000", manifests[0])  # 20260101_0000 of p0 expires
    return tree, store


def gets_of_event(store: S3Store, tree: TreeConfig) -> tuple[Counter[str], dict[str, Any]]:
    counts: Counter[str] = Counter()
    store.client.meta.events.register("before-send.s3", lambda event_name, **_: counts.update(
        [event_name.rsplit(".", 1)[-1]]))
    report = publish(tree, store, PublishOptions(), only={"p0:1:amd64:default"})
    assert report.index_written
    return Counter(dict(counts)), report.purge.as_dict()


def test_an_incremental_publish_reads_no_older_catalog_whatever_the_history(
        s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    s3_server.use_credentials(monkeypatch)
    one_tree, one_store = grown_history(s3_server, "past-one", 1)
    five_tree, five_store = grown_history(s3_server, "past-five", 5)
    index = json.loads(five_store.read("streams/v1/index.json"))
    assert len(index["ssb_s3"]["catalogs"]) == 6  # the served catalog and 5 older ones, all within the grace
    one, one_purge = gets_of_event(one_store, one_tree)
    five, five_purge = gets_of_event(five_store, five_tree)
    assert one == five, (one, five)  # the same requests, GETs included, with 1 or 5 older catalogs
    # the served index, the served catalog, p0's ssb.json, the record of the older catalogs, the
    # lease read back before the flip: no older catalog
    assert five["GetObject"] == 5, five
    # the expired version is named by the catalogs within the grace: kept until the grace ends
    assert [i["version"] for i in five_purge["delete_later"]] == ["20260101_0000"] and not five_purge["delete_now"]
    assert all("kept until" in p["delete_later"][0]["reason"] for p in (one_purge, five_purge))


def test_the_record_decides_as_the_catalogs_do(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The purge plan of the same event, from the record and from the catalogs read one by one (the
    record deleted): the same, and with a grace of 0 the expired version goes at once either way."""
    s3_server.use_credentials(monkeypatch)
    tree, store = grown_history(s3_server, "past-same", 3)
    plans = []
    for grace in (None, 0):
        for with_record in (True, False):
            record = store.read(PAST_KEY)
            if not with_record:
                store.delete(PAST_KEY)
            report = publish(tree, store, PublishOptions(dry_run=True, grace=grace), only={"p0:1:amd64:default"})
            # (the served catalog is closed at each run's own time: the release time moves with it)
            plan = json.dumps(report.purge.as_dict())
            plans.append(json.loads(re.sub(r"until [0-9-]+ [0-9:]+ UTC", "until T", plan)))
            store.put(PAST_KEY, record, cache_control="no-store")
    assert plans[0] == plans[1] and plans[2] == plans[3], plans
    assert [i["version"] for i in plans[0]["delete_later"]] == ["20260101_0000"]
    assert [i["version"] for i in plans[2]["delete_now"]] == ["20260101_0000"]


def test_a_record_for_another_catalog_or_damaged_is_not_used(
        s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record that names another served catalog, or is not as written, means "read the catalogs":
    the purge still keeps the expired version within the grace."""
    s3_server.use_credentials(monkeypatch)
    tree, store = grown_history(s3_server, "past-bad", 2)
    good = json.loads(store.read(PAST_KEY))
    for bad in ({**good, "served": "streams/v1/images-00000000000000000000.json"}, {**good, "names": []},
                {**good, "names": {"p0:1:amd64:default": {"20260101_0000": {"x": [99]}}}}):
        store.put(PAST_KEY, json.dumps(bad).encode(), cache_control="no-store")
        report = publish(tree, store, PublishOptions(dry_run=True), only={"p0:1:amd64:default"})
        assert [i.version for i in report.purge.delete_later] == ["20260101_0000"], bad
    store.put(PAST_KEY, b"[" * 100_000, cache_control="no-store")  # nested too deeply: read the catalogs
    report = publish(tree, store, PublishOptions(dry_run=True), only={"p0:1:amd64:default"})
    assert [i.version for i in report.purge.delete_later] == ["20260101_0000"]


def test_the_chain_gives_each_older_catalog_as_it_was_and_drops_what_the_history_left() -> None:
    """Pure: a record carried along 6 publishes, each changing one product, then one that drops the two
    oldest catalogs: every catalog it offers is rebuilt exactly (the changed products' entries)."""
    from ssb_s3.core.past import Past, carry, partial_catalogs

    def catalog(step: int) -> dict[str, Any]:
        return {"products": {f"p{i}": {"versions": {f"v{v}": {"items": {"a": {"path": f"p{i}/v{v}/a"}}}
                                                    for v in range(step if i == step % 3 else 2)}}
                             for i in range(3)}}

    catalogs = {f"c{n}": catalog(n) for n in range(8)}
    past: Past | None = None
    for n in range(1, 8):  # c{n} replaces c{n-1}; the history keeps every earlier one, then only c4..
        keep = [f"c{k}" for k in range(n) if n < 7 or k >= 4]
        past = carry(f"c{n}", catalogs[f"c{n}"], keep, f"c{n - 1}", catalogs[f"c{n - 1}"], {},
                     [f"c{k}" for k in range(n, -1, -1)], past if n > 1 else Past("c0", ()))
        assert past is not None and past.catalogs == set(keep)
        past = Past.from_document(json.loads(past.to_bytes()))  # as the next publish reads it
        assert past is not None
    assert past.catalogs == {"c4", "c5", "c6"} and [s.catalog for s in past.steps] == ["c6", "c5", "c4"]
    rebuilt = partial_catalogs(past, catalogs["c7"], {"p0", "p1", "p2"})
    for key, partial in rebuilt.items():
        want = {name: sorted(v) for name, e in catalogs[key]["products"].items() for v in [e["versions"]]}
        assert {name: sorted(e["versions"]) for name, e in partial["products"].items()} == want, key
