"""One upload, in its own process so that its peak memory is its own: ours or plain boto3.

Usage: python bench/ingest_worker.py ours|boto3 FILE ENDPOINT BUCKET KEY PART_MIB CONCURRENCY
Prints one JSON object: seconds, peak RSS (MiB), bytes.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from ssb_s3.config import StorageConfig
from ssb_s3.manifest import VersionHasher
from ssb_s3.store import S3Store, make_s3_client


def main() -> None:
    mode, file, endpoint, bucket, key = sys.argv[1:6]
    part, concurrency = int(sys.argv[6]) * 1024 * 1024, int(sys.argv[7])
    path = Path(file)
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
        store.ingest_file(key, path, feed=feed, digest=lambda: hasher.digest("rootfs.squashfs"),
                          content_type="application/octet-stream", cache_control="no-cache",
                          part_size=part, concurrency=concurrency)
        hasher.finish("rootfs.squashfs")
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "bytes": path.stat().st_size}))


if __name__ == "__main__":
    main()
