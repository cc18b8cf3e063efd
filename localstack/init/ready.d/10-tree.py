"""LocalStack ready hook (also run by hand against any S3+SQS endpoint): the bucket for the tree,
anonymous read of its objects, the event queue, and S3 -> SQS notifications for creates and
deletes. Idempotent. Endpoint from AWS_ENDPOINT_URL (default http://127.0.0.1:4566). The queue URL it
prints is on that endpoint (LocalStack answers with a *.localstack.cloud name that needs DNS)."""

from __future__ import annotations

import json
import os
import urllib.parse

import boto3

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
BUCKET = os.environ.get("SSB_BUCKET", "images")
QUEUE = os.environ.get("SSB_QUEUE", "images-events")


def main() -> None:
    common = {"endpoint_url": ENDPOINT, "region_name": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
              "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
              "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "test")}
    s3, sqs = boto3.client("s3", **common), boto3.client("sqs", **common)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if BUCKET not in existing:
        s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "ReadTheTreeAnonymously", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/*"}]}))
    queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
    local_url = ENDPOINT.rstrip("/") + urllib.parse.urlsplit(queue_url).path  # /ACCOUNT/QUEUE on any host
    print(f"bucket {BUCKET} -> queue {local_url}")


if __name__ == "__main__":
    main()
