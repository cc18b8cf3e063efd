"""CloudFront: after a publish, invalidate the fixed keys it rewrote so edges fetch them anew:
index.json, images.json, the page, the classic LXC index, the signed index and plain copies.

Everything else is immutable (content-addressed catalogs and their companions, versioned
artifacts) and never needs invalidating.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..config import StorageConfig
from ..errors import StoreError
from ..storage.backends.s3 import S3Store
from ..storage.store import Store
from ..vocabulary.layout import INDEX_KEY


def invalidation_paths(keys: Iterable[str], target: Store) -> list[str]:
    """CDN paths of the rewritten fixed keys, index.json among them; an S3 key prefix is part of
    the served path."""
    prefix = f"/{target.prefix}" if isinstance(target, S3Store) and target.prefix else ""
    return sorted({f"{prefix}/{key}" for key in (*keys, INDEX_KEY)})


def cloudfront_client(storage: StorageConfig | None) -> Any:
    import boto3

    profile = storage.profile if storage else None
    region = (storage.region if storage else None) or "us-east-1"
    # CloudFront is global: never send it to the S3 endpoint (MinIO, Ceph...). Its own endpoint
    # can be set with AWS_ENDPOINT_URL_CLOUDFRONT, which boto3 reads by itself.
    return boto3.session.Session(profile_name=profile, region_name=region).client("cloudfront")


def invalidate_index(distribution: str, keys: Iterable[str], target: Store, storage: StorageConfig | None) -> str:
    """Create the invalidation of the fixed keys `keys` (and index.json) and return its id."""
    from botocore.exceptions import BotoCoreError, ClientError

    paths = invalidation_paths(keys, target)
    try:
        resp = cloudfront_client(storage).create_invalidation(
            DistributionId=distribution,
            InvalidationBatch={
                "Paths": {"Quantity": len(paths), "Items": paths},
                "CallerReference": f"ssb-s3-{time.time_ns()}",
            },
        )
    except (ClientError, BotoCoreError) as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "") or str(exc)
        raise StoreError(
            f"CloudFront distribution {distribution}: invalidation of {', '.join(paths)} failed: {code} "
            "(the new tree is published; edges serve the old index until their TTL ends)"
        ) from None
    return str(resp["Invalidation"]["Id"])
