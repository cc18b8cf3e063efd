"""Benchmark workers, each run in its own process (peak memory is then its own).

  python bench/worker.py publish-ours CONFIG TARGET
  python bench/worker.py publish-baseline ENDPOINT BUCKET CONCURRENCY
  python bench/worker.py incremental-ours CONFIG TARGET PRODUCT [PROFILE_FILE]
  python bench/worker.py catalog-floor ENDPOINT BUCKET ROUNDS
  python bench/worker.py schema PRODUCTS VERSIONS MANIFEST_VERSIONS
  python bench/worker.py catalog PRODUCTS VERSIONS
  python bench/worker.py selection PRODUCTS
  python bench/worker.py page PRODUCTS VERSIONS
  python bench/worker.py ingest-ours|ingest-boto3 FILE ENDPOINT BUCKET KEY PART_MIB CONCURRENCY
Prints one JSON object: seconds, peak_mib, requests (by S3 operation, counted with botocore's
event hooks on every HTTP attempt), plus what the worker measured.
"""

from __future__ import annotations

import cProfile
import gc
import hashlib
import io
import json
import pstats
import resource
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from ssb_s3.commands.publish import PublishOptions, publish
from ssb_s3.config import load_config, parse_config
from ssb_s3.core.catalog import build_catalog, contract_problems, no_gc, to_bytes
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.backends.s3 import S3Store

REQUESTS: Counter[str] = Counter()


def best_of_3(run: Any, clock: Any) -> float:
    """The shortest of three runs of `run`, timed by `clock` (wall or CPU)."""
    best = float("inf")
    for _ in range(3):
        start = clock()
        run()
        best = min(best, clock() - start)
    return best


def count_requests(client: Any) -> None:
    def on_send(event_name: str, **_: Any) -> None:
        REQUESTS[event_name.rsplit(".", 1)[-1]] += 1

    client.meta.events.register("before-send.s3", on_send)


def peak_mib() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ingest(mode: str, file: str, endpoint: str, bucket: str, key: str, part_mib: int, concurrency: int
           ) -> dict[str, Any]:
    """One upload: ours (sha256 and the fingerprint computed in the same pass) or plain boto3."""
    from boto3.s3.transfer import TransferConfig

    from ssb_s3.config import StorageConfig
    from ssb_s3.storage.backends.s3 import make_s3_client
    from ssb_s3.vocabulary.imagefiles import VersionHasher

    path, part = Path(file), part_mib * 1024 * 1024
    started = time.perf_counter()
    if mode == "boto3":
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(
            s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
            response_checksum_validation="when_required", max_pool_connections=32))
        client.upload_file(str(path), bucket, key, Config=TransferConfig(
            multipart_threshold=part, multipart_chunksize=part, max_concurrency=concurrency, use_threads=True))
    else:
        store = S3Store(bucket, "", make_s3_client(StorageConfig(
            endpoint_url=endpoint, region="us-east-1", addressing_style="path", checksum_mode="when_required")))
        hasher = VersionHasher()
        meta = hasher.start("lxd.tar.xz")  # a metadata file first, so the root also gets its fingerprint
        meta(b"metadata")
        hasher.finish("lxd.tar.xz")
        feed = hasher.start("rootfs.squashfs")
        store.put_new(key, path, feed=feed, digest=lambda: hasher.digest("rootfs.squashfs"),
                      content_type="application/octet-stream", cache_control="no-cache",
                      part_size=part, concurrency=concurrency)
        hasher.finish("rootfs.squashfs")
    return {"seconds": time.perf_counter() - started, "bytes": path.stat().st_size}


def publish_ours(config: str, target: str) -> dict[str, Any]:
    tree = load_config(config)
    store = open_store(target, tree.storage)
    assert isinstance(store, S3Store)
    count_requests(store.client)
    started = time.perf_counter()
    report = publish(tree, store, PublishOptions(skip_purge=True))
    return {"seconds": time.perf_counter() - started, "products": len(report.products), "versions": report.versions}


def publish_baseline(endpoint: str, bucket: str, concurrency: int) -> dict[str, Any]:
    """Only what a publish cannot avoid: list, read each manifest, write a catalog and the index."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(
        s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
        response_checksum_validation="when_required", max_pool_connections=32))
    count_requests(client)
    started = time.perf_counter()
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", []) if o["Key"].endswith("/ssb.json")]

    def get(key: str) -> Any:
        return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    with ThreadPoolExecutor(concurrency) as pool:
        manifests = list(pool.map(get, keys))
    catalog = json.dumps({m["name"]: m["versions"] for m in manifests}, sort_keys=True).encode()
    name = f"streams/v1/images-{hashlib.sha256(catalog).hexdigest()[:20]}.json"
    client.put_object(Bucket=bucket, Key=name, Body=catalog, ContentType="application/json")
    index = json.dumps({"format": "index:1.0", "index": {"images": {"path": name}}}).encode()
    client.put_object(Bucket=bucket, Key="streams/v1/index.json", Body=index, ContentType="application/json")
    return {"seconds": time.perf_counter() - started, "products": len(manifests)}


def incremental_ours(config: str, target: str, product: str, profile: str = "") -> dict[str, Any]:
    """One incremental publish; with `profile`, under cProfile, the top 10 cumulative entries written there."""
    tree = load_config(config)
    store = open_store(target, tree.storage)
    assert isinstance(store, S3Store)
    count_requests(store.client)
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    publish(tree, store, PublishOptions(skip_purge=True), only={product})
    seconds = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(10)
        Path(profile).write_text(out.getvalue())
    return {"seconds": seconds}


def catalog_floor(endpoint: str, bucket: str, rounds: int) -> dict[str, Any]:
    """The floor of the single-catalog design: one GET and two PUTs of the served catalog's bytes.

    What an incremental publish cannot avoid while the catalog is one document: read the served
    catalog, write it back under its content-addressed key and as images.json (the index and
    the manifest are a few hundred bytes and left out). Best of `rounds`, a fresh client each.
    """
    config = Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                    response_checksum_validation="when_required", max_pool_connections=32)
    lookup = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)
    index = json.loads(lookup.get_object(Bucket=bucket, Key="streams/v1/index.json")["Body"].read())
    key = index["index"]["images"]["path"]
    best, size = float("inf"), 0
    for round_ in range(rounds):
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)
        count_requests(client)
        started = time.perf_counter()
        data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        for copy in ("a", "b"):
            client.put_object(Bucket=bucket, Key=f"bench-floor/{round_}-{copy}.json", Body=data,
                              ContentType="application/json")
        best, size = min(best, time.perf_counter() - started), len(data)
    for round_ in range(rounds):
        for copy in ("a", "b"):
            lookup.delete_object(Bucket=bucket, Key=f"bench-floor/{round_}-{copy}.json")
    return {"seconds": best, "bytes": size}


def schema_check(products: int, versions: int, manifest_versions: int) -> dict[str, Any]:
    """schema_problems on a valid catalog and a valid ssb.json: the fast path vs jsonschema alone (best of 3)."""
    from ssb_s3 import schemas

    tree, manifests = synthetic_manifests(products, versions)
    documents = {"products": json.loads(to_bytes(build_catalog(tree, manifests))),
                 "ssb": synthetic_manifests(1, manifest_versions)[1]["p0:1:amd64:default"]}

    def timed(check: Any) -> float:
        return best_of_3(check, time.perf_counter)

    result: dict[str, Any] = {}
    for name, document in documents.items():
        assert schemas.schema_problems(document, name, "bench") == []
        result[f"{name}_fast"] = timed(lambda: schemas.schema_problems(document, name, "bench"))  # noqa: B023
        result[f"{name}_jsonschema"] = timed(lambda: list(schemas._validator(name).iter_errors(document)))  # noqa: B023
    result["seconds"] = result["products_fast"]
    return result


def synthetic_manifests(products: int, versions: int) -> tuple[Any, dict[str, Any]]:
    def h(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    tree = parse_config({"products": [
        {"name": f"p{i}:1:amd64:default", "arch": "amd64", "release": "1", "os": "P", "directory": f"p{i}",
         "aliases": [f"p{i}"], "days": versions} for i in range(products)]}, "bench")
    manifests = {}
    for i in range(products):
        entry = {}
        for v in range(versions):
            name = f"2026{1 + v // 28:02d}{1 + v % 28:02d}_0000"
            entry[name] = {"items": {
                "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": f"p{i}/{name}/lxd.tar.xz", "size": 100,
                               "sha256": h(f"m{i}.{v}"), "combined_squashfs_sha256": h(f"c{i}.{v}")},
                "root.squashfs": {"ftype": "squashfs", "path": f"p{i}/{name}/rootfs.squashfs", "size": 1000,
                                  "sha256": h(f"r{i}.{v}")}}}
        manifests[f"p{i}:1:amd64:default"] = {"name": f"p{i}:1:amd64:default", "versions": entry}
    return tree, manifests


def catalog(products: int, versions: int) -> dict[str, Any]:
    """Catalog generation alone: manifests in memory -> catalog bytes (best of 3), then the check."""
    tree, manifests = synthetic_manifests(products, versions)
    gc.collect()
    before = peak_mib()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        with no_gc():  # as publish does
            data = to_bytes(build_catalog(tree, manifests))
        best = min(best, time.perf_counter() - started)
    document = json.loads(data)
    started = time.perf_counter()
    problems = contract_problems(document)
    check = time.perf_counter() - started
    assert not problems, problems[:3]
    return {"seconds": best, "check_seconds": check, "bytes": len(data), "input_mib": before}


def page(products: int, versions: int) -> dict[str, Any]:
    """The catalog page (index.html) of a synthetic catalog of P x V, against json.dumps of the same
    catalog: wall seconds, the best of 3 each."""
    from ssb_s3.core.page import render_page

    tree, manifests = synthetic_manifests(products, versions)
    document = json.loads(to_bytes(build_catalog(tree, manifests)))
    now = time.time()
    html = render_page(document, tree.page, now=now)
    text = json.dumps(document)
    return {"render_seconds": best_of_3(lambda: render_page(document, tree.page, now=now), time.perf_counter),
            "json_dumps_seconds": best_of_3(lambda: json.dumps(document), time.perf_counter),
            "page_bytes": len(html), "catalog_bytes": len(text)}


def selection(products: int) -> dict[str, Any]:
    """Mirror selection (core.mirror.select) of an upstream catalog of `products` products in
    images.linuxcontainers.org's layout (tests/test_mirror_scale.py's), against json.loads of the same
    catalog: CPU seconds of this process (time.process_time: other work on the machine counts less
    than in wall time), the best of 3."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_mirror_scale import _catalog

    from ssb_s3.core.mirror import select
    from ssb_s3.vocabulary.text import json_strings_clean

    text = json.dumps(_catalog(products))
    catalog = json.loads(text)
    clean = json_strings_clean(text.encode())  # as `mirror` learns it from the catalog's bytes

    def timed(run: Any) -> float:
        return best_of_3(run, time.process_time)

    chosen = select(catalog, [], text_clean=clean)
    assert len(chosen.products) == products and not chosen.drops, chosen.drops[:3]
    return {"select_cpu_s": timed(lambda: select(catalog, [], text_clean=clean)),
            "json_loads_cpu_s": timed(lambda: json.loads(text)), "catalog_mib": len(text) / (1 << 20)}


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "publish-ours":
        result = publish_ours(args[0], args[1])
    elif command == "publish-baseline":
        result = publish_baseline(args[0], args[1], int(args[2]))
    elif command == "incremental-ours":
        result = incremental_ours(*args[:4])
    elif command == "catalog-floor":
        result = catalog_floor(args[0], args[1], int(args[2]))
    elif command == "schema":
        result = schema_check(int(args[0]), int(args[1]), int(args[2]))
    elif command == "catalog":
        result = catalog(int(args[0]), int(args[1]))
    elif command == "page":
        result = page(int(args[0]), int(args[1]))
    elif command == "selection":
        result = selection(int(args[0]))
    elif command in ("ingest-ours", "ingest-boto3"):
        result = ingest(command.removeprefix("ingest-"), *args[:4], int(args[4]), int(args[5]))
    else:
        raise SystemExit(f"unknown command {command}")
    result["peak_mib"] = peak_mib()
    result["requests"] = dict(REQUESTS)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
