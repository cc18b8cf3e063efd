"""What users copy must work: sample trees validate, the AWS template lints, the LocalStack hook
sets up a bucket whose notifications reach the queue (run against moto's server here)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import yaml
from realparts import need

from ssb_s3.config import load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", ["examples/local/tree.yml", "examples/minio/tree.yml", "localstack/tree.yml"])
def test_sample_trees_are_valid(path: str) -> None:
    tree = load_config(ROOT / path)
    assert tree.products


def test_minio_policies_are_valid_json_scoped_to_the_bucket() -> None:
    anonymous = json.loads((ROOT / "examples/minio/anonymous-read.json").read_text())
    assert anonymous["Statement"][0]["Action"] == ["s3:GetObject"]
    publisher = json.loads((ROOT / "examples/minio/publisher-policy.json").read_text())
    resources = {r for s in publisher["Statement"] for r in s["Resource"]}
    assert resources == {"arn:aws:s3:::images", "arn:aws:s3:::images/*"}


class _AnyTag(yaml.SafeLoader):
    pass


_AnyTag.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node)))


def test_aws_template_lints_and_wires_the_handler() -> None:
    lint = need("cfn-lint")
    out = subprocess.run([lint, str(ROOT / "examples/aws/template.yaml")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    template = yaml.load((ROOT / "examples/aws/template.yaml").read_text(), Loader=_AnyTag)
    function = template["Resources"]["Republisher"]["Properties"]
    module, _, name = function["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
    assert function["Events"]["BucketEvents"]["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    actions = {a for s in function["Policies"][0]["Statement"] for a in
               ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"}


def test_localstack_ready_hook_against_a_real_s3_sqs_server(moto_server: str, monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    bucket, queue = f"ls-{time.time_ns()}", f"ls-events-{time.time_ns()}"
    for key, value in {"AWS_ENDPOINT_URL": moto_server, "SSB_BUCKET": bucket, "SSB_QUEUE": queue,
                       "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(key, value)
    hook = ROOT / "localstack/init/ready.d/10-tree.py"
    for _ in range(2):  # idempotent
        out = subprocess.run(["python3", str(hook)], check=True, env=os.environ.copy(), capture_output=True,
                             text=True, timeout=60)
        assert f"bucket {bucket} -> queue {moto_server}/" in out.stdout and out.stdout.rstrip().endswith(queue)
    kw = {"endpoint_url": moto_server, "region_name": "us-east-1"}
    s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
    assert s3.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]
    s3.put_object(Bucket=bucket, Key="busybox/amd64/ssb.json", Body=b"{}")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    bodies = []
    for _ in range(5):
        bodies += [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                           WaitTimeSeconds=1).get("Messages", [])]
    assert any("ssb.json" in b for b in bodies)
