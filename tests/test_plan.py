"""The core's seams (issue 10): one Problem type whose fields say whom to blame, the pure plan
(retention, grace, keep-going, contract, incremental rules) tested without any server, the
tree's keys owned by one module, and the views written before the index flip."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ssb_s3.catalog import contract_problems_by_product
from ssb_s3.config import parse_config
from ssb_s3.errors import ProblemsFound
from ssb_s3.problems import Problem

ROOT = Path(__file__).resolve().parent.parent
# sha256 of the catalog the unchanged code (before issue 10) published from examples/local.
EXAMPLE_CATALOG_SHA256 = "fffccd244b8775cd601c9a75042711caea2a8b6f9ab6d8d10a83b2d61db54108"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ssb_s3", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_example_tree_publishes_the_same_catalog_bytes(tmp_path: Path) -> None:
    out = run_cli("-q", "-c", str(ROOT / "examples/local/tree.yml"), "-t", str(tmp_path), "publish")
    assert out.returncode == 0, out.stderr
    catalog = tmp_path / "streams/v1/images-fffccd244b8775cd601c.json"
    assert hashlib.sha256(catalog.read_bytes()).hexdigest() == EXAMPLE_CATALOG_SHA256
    assert (tmp_path / "streams/v1/images.json").read_bytes() == catalog.read_bytes()


# ----------------------------------------------------------------------------------------------
# One problem type


def test_problem_is_one_line_where_field_text() -> None:
    problem = Problem("p", "s3://b/p/ssb.json", "product p version 20260101_0000", "no image that LXD can use")
    assert str(problem) == "s3://b/p/ssb.json: product p version 20260101_0000: no image that LXD can use"
    assert str(Problem(None, "", "", "alone")) == "alone"
    assert problem.as_dict()["product"] == "p"


def _entry(arch: str = "amd64", aliases: str = "") -> dict[str, Any]:
    return {"aliases": aliases, "arch": arch, "os": "A", "release": "1", "release_title": "1", "versions": {
        "20260101_0000": {"items": {"lxd_combined.tar.gz": {
            "ftype": "lxd_combined.tar.gz", "path": "a/20260101_0000/lxd_combined.tar.gz", "size": 1,
            "sha256": "a" * 64}}}}}


def test_contract_problems_name_their_product_in_a_field_not_in_the_text() -> None:
    # a product whose name is a prefix of another's: blame goes by the field, never by the message
    catalog = {"content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
               "updated": "Thu, 01 Jan 2026 00:00:00 +0000",
               "products": {"a": _entry(arch="vax"), "a:b": _entry(aliases="x")}}
    catalog["products"]["a:b"]["versions"]["20260101_0000"]["items"]["lxd_combined.tar.gz"]["sha256"] = "b" * 64
    found = contract_problems_by_product(catalog, "catalog")
    assert set(found) == {"a", "a:b"}  # (neither has an Incus image: no mirrored item in this raw catalog)
    assert all(p.product == name for name, problems in found.items() for p in problems)
    problem = found["a"][0]
    assert (problem.product, problem.where, problem.field) == ("a", "catalog", "product a")
    assert str(problem) == "catalog: product a: arch 'vax' is unknown to LXD (the product would be hidden)"


def test_tree_yml_problems_say_file_and_field() -> None:
    raw = {"products": [{"name": "a", "arch": "vax", "release": "1", "os": "A", "directory": "a"}]}
    with pytest.raises(ProblemsFound) as refused:
        parse_config(raw, "tree.yml")
    [problem] = refused.value.problems
    assert (problem.product, problem.where, problem.field) == (None, "tree.yml", "products[0].arch")
    assert str(problem).startswith("tree.yml: products[0].arch: 'vax' is not an architecture LXD knows")
