"""Crash safety: a publish stopped dead after each of its storage writes, in turn.

The publish under test adds a version and, with retention and grace 0, purges the oldest one and
the replaced catalog in the same run, so every kind of write is a crash point. After each stop
the served tree must pass `verify --hashes`, and a re-run must converge to the tree an
uninterrupted publish gives. On SeaweedFS it stops after every write; on Ceph RGW after each
conditional write and every other write (`crash_points`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import s3_storage, tree_product, write_tree_yml
from realparts import S3Server, make_image

from ssb_s3.commands.publish import PublishOptions, publish
from ssb_s3.commands.verify import verify
from ssb_s3.config import load_config
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.store import Store
from ssb_s3.storage.tree import refresh_manifest

HERE = Path(__file__).resolve().parent
PRODUCT = tree_product(directory="busybox/amd64", days=2, aliases=["busybox"])


def snapshot(store: Store) -> dict[str, bytes]:
    return {o.key: store.read(o.key) for o in store.list()}


def served(store: Store) -> tuple[dict[str, object], bytes, set[str]]:
    """What clients see (index without the publisher's own history, catalog) and every key outside
    the publisher's .ssb-s3/ (the lease)."""
    index = json.loads(store.read("streams/v1/index.json"))
    index.pop("ssb_s3", None)  # timestamps of this run: not part of what clients read
    catalog = store.read(index["index"]["images"]["path"])
    return index, catalog, {o.key for o in store.list() if not o.key.startswith(".ssb-s3/")}


def restore(store: Store, state: dict[str, bytes]) -> None:
    for obj in list(store.list()):
        if obj.key not in state:
            store.delete(obj.key)
    for key, data in state.items():
        store.put(key, data)


@pytest.fixture
def before_publish(store_server: S3Server, store_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                   ) -> tuple[Path, str, Store, dict[str, bytes]]:
    """v1 and v2 published; v3 uploaded and in ssb.json, not yet published."""
    store_server.use_credentials(monkeypatch)
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, PRODUCT, storage=s3_storage(store_server, checksum_mode="when_required"), grace="0",
                   lease_ttl="2s")
    tree = load_config(conf)
    target = f"s3://{store_bucket}"
    store = open_store(target, tree.storage)
    client = store_server.client()
    for n, serial in enumerate(("20260101_0000", "20260102_0000", "20260103_0000"), start=1):
        folder = tmp_path / "images" / serial
        for path in make_image(folder, kind="squashfs", serial=serial, description=f"v{n}"):
            client.upload_file(str(path), store_bucket, f"busybox/amd64/{serial}/{path.name}")
        refresh_manifest(store, tree, tree.products[0])
        if n < 3:
            publish(tree, store, PublishOptions())
    return conf, target, store, snapshot(store)


def run_crashing(conf: Path, target: str, crash_after: int, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(HERE / "crash_publish.py"), str(conf), target, str(crash_after)],
                          env=env, capture_output=True, text=True, timeout=120)


# The writes whose request forms differ between stores (conditional writes: the flip, ssb.json, the
# lease): on a store other than SeaweedFS, a crash after each of these, and after every other write
# (the create-only uploads, views and deletes send the same requests on every store), keeps the
# test's two-store half within CI's budget; SeaweedFS stops after every single write.
CONDITIONAL_WRITES = ("write streams/v1/index.json", "write busybox/amd64/ssb.json", "write .ssb-s3/lease.json")


def crash_points(writes: list[str], kind: str) -> list[int]:
    """The 1-based crash points to try: every write on SeaweedFS; elsewhere the conditional writes and
    every other write (always the last)."""
    every = range(1, len(writes) + 1)
    if kind == "seaweedfs":
        return list(every)
    return [n for n in every if n % 2 or n == len(writes) or writes[n - 1] in CONDITIONAL_WRITES]


def test_crash_after_every_write_keeps_tree_valid_and_converges(
    before_publish: tuple[Path, str, Store, dict[str, bytes]], store_server: S3Server,
) -> None:
    conf, target, store, initial = before_publish
    tree = load_config(conf)
    env = {**os.environ, "PYTHONPATH": f"{HERE.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    # The reference: an uninterrupted publish, and the list of its writes.
    reference_run = run_crashing(conf, target, 10_000, env)
    assert reference_run.returncode == 0, reference_run.stderr
    writes = [line for line in reference_run.stdout.splitlines() if line != "completed"]
    reference = served(store)
    assert any(w.startswith("delete busybox/amd64/20260101_0000/") for w in writes)  # the purge ran
    assert any(w.startswith("delete streams/v1/images-") for w in writes)  # the old catalog went
    assert writes[-1] == "delete .ssb-s3/lease.json"
    assert "write streams/v1/index.json" in writes and "write busybox/amd64/ssb.json" in writes
    assert len(writes) >= 9
    points = crash_points(writes, store_server.kind)
    print(f"{len(writes)} writes, crash after {points}: {writes}")

    for crash_after in points:
        restore(store, initial)
        stopped = run_crashing(conf, target, crash_after, env)
        assert stopped.returncode == 99, (crash_after, stopped.stderr)
        report = verify(store, hashes=True)
        assert report.problems == [], (crash_after, writes[crash_after - 1], report.problems)
        assert report.versions >= 2
        # The stopped publisher left its lease: the re-run waits for it to expire, then converges.
        publish(tree, store, PublishOptions(lock_timeout=30))
        assert served(store) == reference, (crash_after, writes[crash_after - 1])
        assert verify(store, hashes=True).problems == []
