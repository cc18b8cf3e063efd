"""The core's seams (issue 10): one Problem type whose fields say whom to blame, the pure plan
(retention, grace, keep-going, contract, incremental rules) tested without any server, the
tree's keys owned by one module, and the views written before the index flip."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import ssb

from ssb_s3.config import parse_config
from ssb_s3.core.catalog import contract_problems_by_product
from ssb_s3.errors import ProblemsFound
from ssb_s3.vocabulary.problems import Problem

ROOT = Path(__file__).resolve().parent.parent
# sha256 of the catalog the unchanged code (before issue 10) published from examples/local.
EXAMPLE_CATALOG_SHA256 = "fffccd244b8775cd601c9a75042711caea2a8b6f9ab6d8d10a83b2d61db54108"


def test_example_tree_publishes_the_same_catalog_bytes(tmp_path: Path) -> None:
    out = ssb("-q", "-c", str(ROOT / "examples/local/tree.yml"), "-t", str(tmp_path), "publish")
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


# ----------------------------------------------------------------------------------------------
# The pure plan: no server, no store


DAY = 86400.0
NOW = 1767225600.0 + 10 * DAY  # 2026-01-11 00:00 UTC


def a_tree(**a: Any) -> Any:
    products = [{"name": "a", "arch": "amd64", "release": "1", "os": "A", "directory": "a", **a},
                {"name": "b", "arch": "arm64", "release": "1", "os": "B", "directory": "b"}]
    return parse_config({"products": products}, "tree.yml")


def item(product: str, version: str, size: int = 10) -> dict[str, Any]:
    return {"ftype": "lxd_combined.tar.gz", "path": f"{product}/{version}/lxd_combined.tar.gz", "size": size,
            "sha256": hashlib.sha256(f"{product}{version}".encode()).hexdigest()}


def manifest(product: str, versions: list[str], size: int = 10) -> dict[str, Any]:
    return {"name": product, "versions": {v: {"items": {"lxd_combined.tar.gz": item(product, v, size)}}
                                          for v in versions}}


def read(product: str, versions: list[str], size: int = 10, listed: bool = True) -> Any:
    from ssb_s3.core.plan import ProductRead

    found = manifest(product, versions, size)
    listing = {i["path"]: i["size"] for v in found["versions"].values() for i in v["items"].values()} if listed else {}
    return ProductRead(location=f"mem://tree/{product}/ssb.json", store_url="mem://tree", manifest=found,
                       listing=listing)


def served(tree: Any, reads: dict[str, Any], now: float = NOW - DAY) -> Any:
    """The snapshot a later publish reads (the same products) after publishing `reads` at `now`."""
    from ssb_s3.core.plan import PlanOptions, Snapshot, plan_publish

    first = plan_publish(tree, Snapshot(now=now, products=reads), PlanOptions())
    assert not first.problems, first.problems
    listing = {k: v for r in reads.values() for k, v in (r.listing or {}).items()}
    return Snapshot(now=NOW, index=first.index.data, etag="e1", served_key=first.catalog_key, served=first.catalog,
                    tree_listing=listing, products=reads)


def test_the_core_imports_no_store_and_no_boto3() -> None:
    """ssb_s3/core is pure: no module of it imports the storage layer, the commands, ingest, hooks, boto3, or
    runs a program (subprocess, ssb_s3.gpg: signing is an effect)."""
    import ast

    for path in sorted((ROOT / "ssb_s3/core").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {("." * n.level) + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        outside = {m for m in imported if m.lstrip(".").split(".")[0] in
                   ("storage", "commands", "ingest", "hooks", "boto3", "botocore", "cli", "subprocess", "gpg")}
        assert not outside, (path.name, outside)
    modules = ", ".join(f"ssb_s3.core.{p.stem}" for p in (ROOT / "ssb_s3/core").glob("*.py") if p.stem != "__init__")
    code = f"import sys, {modules}; assert not {{'boto3', 'botocore'}} & set(sys.modules), 'boto3 loaded'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert out.returncode == 0, out.stderr


def test_retention_keeps_the_newest_days_and_purges_after_the_grace() -> None:
    from dataclasses import replace

    from ssb_s3.core.plan import PlanOptions, plan_publish

    versions = ["20260101_0000", "20260102_0000", "20260103_0000"]
    tree = a_tree(days=3)
    before = served(tree, {"a": read("a", versions), "b": read("b", ["20260101_0000"])})
    snap = replace(before, products={"a": read("a", versions), "b": read("b", ["20260101_0000"])})
    tree = a_tree(days=2)
    plan = plan_publish(tree, snap, PlanOptions(grace=3600))
    assert sorted(plan.catalog["products"]["a"]["versions"]) == versions[1:]
    assert plan.report.changes["a"]["removed"] == ["20260101_0000"]
    assert [i.version for i in plan.purge.delete_later] == ["20260101_0000"]  # the replaced catalog names it
    assert plan.purge.delete_now == []
    plan = plan_publish(tree, snap, PlanOptions(grace=0))
    assert [i.folder for i in plan.purge.delete_now] == ["a/20260101_0000"]


def test_max_age_drops_old_versions_and_never_empties_a_product_without_force() -> None:
    from dataclasses import replace

    from ssb_s3.core.plan import PlanOptions, plan_publish

    reads = {"a": read("a", ["20260101_0000", "20260110_0000"]), "b": read("b", ["20260101_0000"])}
    plan = plan_publish(a_tree(days=5, max_age="3d"), served(a_tree(days=5), reads), PlanOptions())
    assert sorted(plan.catalog["products"]["a"]["versions"]) == ["20260110_0000"]
    assert not plan.refused
    old = {"a": read("a", ["20260101_0000"]), "b": read("b", ["20260101_0000"])}
    snap = replace(served(a_tree(), old), products=old)
    plan = plan_publish(a_tree(max_age="3d"), snap, PlanOptions())
    assert plan.refused
    assert [str(p) for p in plan.problems] == [
        "product a: max_age would remove every version; refusing to empty a product without --force"]
    assert plan.problems[0].product == "a"
    forced = plan_publish(a_tree(max_age="3d"), snap, PlanOptions(force=True))
    assert not forced.refused and "a" not in forced.catalog["products"]


def test_keep_going_keeps_the_previous_entry_of_an_invalid_product() -> None:
    from dataclasses import replace

    from ssb_s3.core.plan import PlanOptions, plan_publish

    before = served(a_tree(), {"a": read("a", ["20260101_0000"]), "b": read("b", ["20260101_0000"])})
    broken_b = read("b", ["20260101_0000", "20260102_0000"], listed=False)  # files missing
    snap = replace(before, products={"a": read("a", ["20260101_0000", "20260102_0000"]), "b": broken_b})
    refused = plan_publish(a_tree(), snap, PlanOptions())
    assert refused.refused and refused.report.failed_products == ["b"]
    assert str(refused.problems[0]) == ("product b version 20260102_0000 item lxd_combined.tar.gz: "  # days: 1
                                        "mem://tree/b/20260102_0000/lxd_combined.tar.gz does not exist")
    plan = plan_publish(a_tree(), snap, PlanOptions(keep_going=True))
    assert not plan.refused
    assert plan.catalog["products"]["b"] == before.served["products"]["b"]
    assert sorted(plan.catalog["products"]["a"]["versions"]) == ["20260102_0000"]
    assert plan.report.kept_previous == ["b"] and plan.report.failed_products == ["b"]


def test_contract_refusal_names_the_ssb_json_it_comes_from() -> None:
    from ssb_s3.core.plan import PlanOptions, Snapshot, plan_publish

    bad = read("a", ["20260101_0000"])
    bad.manifest["versions"]["20260101_0000"]["items"]["lxd_combined.tar.gz"]["sha256"] = "not-hex"
    plan = plan_publish(a_tree(), Snapshot(now=NOW, products={"a": bad, "b": read("b", ["20260101_0000"])}),
                        PlanOptions(keep_going=True))
    problem = plan.problems[-1]  # (and the same for its Incus mirror)
    assert {(p.product, p.where) for p in plan.problems} == {("a", "mem://tree/a/ssb.json")}
    assert str(problem) == ("mem://tree/a/ssb.json: product a version 20260101_0000 item lxd_combined.tar.gz: "
                            "sha256 missing or not 64 hex digits")
    assert sorted(plan.catalog["products"]) == ["b"]  # keep-going, nothing published before: left out


def test_incremental_publish_keeps_other_products_entries_unread() -> None:
    from dataclasses import replace

    from ssb_s3.core.plan import PlanOptions, plan_publish

    before = served(a_tree(), {"a": read("a", ["20260101_0000"]), "b": read("b", ["20260101_0000"])})
    snap = replace(before, products={"a": read("a", ["20260101_0000", "20260102_0000"])})  # b not even read
    plan = plan_publish(a_tree(), snap, PlanOptions(), only={"a"})
    assert not plan.problems
    assert plan.catalog["products"]["b"] == before.served["products"]["b"]
    assert list(plan.report.changes) == ["a"]


def test_refuses_to_empty_the_tree_without_force() -> None:
    from dataclasses import replace

    from ssb_s3.core.plan import PlanOptions, plan_publish

    before = served(a_tree(), {"a": read("a", ["20260101_0000"]), "b": read("b", ["20260101_0000"])})
    snap = replace(before, products={"a": read("a", []), "b": read("b", [])})  # no complete version left
    plan = plan_publish(a_tree(), snap, PlanOptions(keep_going=True))
    assert plan.refused  # a problem that blames no product refuses even with --keep-going
    assert [(p.product, str(p)) for p in plan.problems] == [
        (None, "catalog built from the manifests: no product has a published version: nothing for clients to list")]
    assert not plan_publish(a_tree(), snap, PlanOptions(force=True)).refused


def test_a_published_file_that_changed_is_refused() -> None:
    from dataclasses import replace

    from ssb_s3.core.plan import PlanOptions, plan_publish

    before = served(a_tree(), {"a": read("a", ["20260101_0000"]), "b": read("b", ["20260101_0000"])})
    snap = replace(before, products={"a": read("a", ["20260101_0000"], size=11), "b": read("b", ["20260101_0000"])})
    plan = plan_publish(a_tree(), snap, PlanOptions())
    assert plan.refused
    problem = plan.problems[-1]  # (and its Incus mirror)
    assert problem.product == "a" and problem.where == "mem://tree/a/20260101_0000/lxd_combined.tar.gz"
    assert "item lxd_combined.tar.gz of version 20260101_0000 changed since it was published (10 -> 11 bytes)" \
        in problem.text


# ----------------------------------------------------------------------------------------------
# The tree's keys, conditional writes and views, against a local folder


def local_tree(tmp_path: Path, conditional: bool = True) -> tuple[Any, Any]:
    """examples/local's products copied into a target folder (no `source`), with its tree.yml."""
    import shutil

    import yaml

    from ssb_s3.config import load_config
    from ssb_s3.storage.backends import open_store

    target = tmp_path / "target"
    shutil.copytree(ROOT / "examples/local/images", target)
    raw = yaml.safe_load((ROOT / "examples/local/tree.yml").read_text())
    for product in raw["products"]:
        product.pop("source", None)
    raw["storage"] = {"conditional_writes": conditional}
    (tmp_path / "tree.yml").write_text(yaml.safe_dump(raw))
    tree = load_config(tmp_path / "tree.yml")
    return tree, open_store(str(target), tree.storage)


def record_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    from ssb_s3.storage.backends.local import LocalStore

    writes: list[tuple[str, dict[str, Any]]] = []
    original = LocalStore._write

    def write(self: LocalStore, key: str, data: bytes, **kwargs: Any) -> str:
        writes.append((key, kwargs))
        return original(self, key, data, **kwargs)

    monkeypatch.setattr(LocalStore, "_write", write)
    return writes


def test_the_plan_is_given_its_own_options_only() -> None:
    """Run-only settings (credentials, lease timeout, CDN, progress, local files, the key itself)
    never reach the core: a publish gives its plan PublishOptions.planned."""
    from dataclasses import fields

    from ssb_s3.commands.publish import PublishOptions
    from ssb_s3.core.plan import PlanOptions
    from ssb_s3.storage.tree import RunOptions

    run_only = {"apikey", "storage", "lock_timeout", "cloudfront_distribution", "quiet", "local_files", "sign_key"}
    assert run_only <= {f.name for f in fields(RunOptions)}
    assert not run_only & {f.name for f in fields(PlanOptions)}
    opts = PublishOptions(apikey="secret", sign_key="KEY", lock_timeout=5, force=True, grace=0)
    assert opts.planned == PlanOptions(force=True, grace=0, signing=True)
    assert type(opts.planned) is PlanOptions


def rendered(plan: Any) -> Any:
    """The plan with every lazy view rendered (a lazy view's renderer compares by identity)."""
    from dataclasses import replace

    def done(view: Any) -> Any:
        return None if view is None else replace(view, data=view.body(), lazy=None)

    return replace(plan, views=tuple(map(done, plan.views)), flip_index=done(plan.flip_index))


def test_the_same_snapshot_gives_the_same_plan_and_a_local_reason_reaches_the_user(tmp_path: Path) -> None:
    """The snapshot holds facts only: why a local file is left out (a symlink out of the folder's
    bounds) is read with it, so the plan never asks the store; the same snapshot, planned twice,
    and once more after the folder changed, gives the same plan."""
    from ssb_s3.core.plan import PlanOptions, plan_publish
    from ssb_s3.storage.tree import Tree

    config, store = local_tree(tmp_path)
    root = tmp_path / "target"
    rootfs = root / "sample/amd64/20260102_00:00/rootfs.tar.xz"
    outside = tmp_path / "outside.tar.xz"
    rootfs.rename(outside)
    rootfs.symlink_to(outside)
    snap = Tree(config, store).snapshot(NOW)
    first = plan_publish(config, snap, PlanOptions())
    reason = f"{rootfs} is a symlink to {outside}, outside the folder {root}: refused"
    assert first.refused and any(reason in p.text for p in first.problems), first.problems
    rootfs.unlink()  # the folder changes after the read: the plan does not look again
    assert rendered(plan_publish(config, snap, PlanOptions())) == rendered(first)
    again = Tree(config, store).snapshot(NOW)
    assert again != snap and not any(reason in p.text for p in plan_publish(config, again, PlanOptions()).problems)


def test_a_registered_view_with_a_fixed_name_is_written_after_the_flip_and_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One module, one registry line: a fixed-name view is written after the flip (it never shows a catalog
    index.json does not serve), then index.json is written again recording it."""
    from ssb_s3.commands.publish import publish
    from ssb_s3.core import views

    def products_txt(content: views.Content) -> views.View:  # a made-up view: one module, one registry line
        body = "\n".join(sorted(content.catalog["products"])).encode()
        return views.View("streams/v1/products.txt", body, content_type="text/plain", cache="images_json")

    monkeypatch.setattr(views, "VIEWS", (*views.VIEWS, products_txt))
    tree, store = local_tree(tmp_path)
    writes = record_writes(monkeypatch)
    report = publish(tree, store)
    assert report.published and report.index_written
    keys = [key for key, _ in writes]
    flip = keys.index("streams/v1/index.json")
    assert keys.index(report.catalog_key) < flip < keys.index("streams/v1/products.txt")
    assert keys[-1] == "streams/v1/index.json" and keys.count("streams/v1/index.json") == 2
    assert (tmp_path / "target/streams/v1/products.txt").read_text() == \
        "sample:1.0:amd64:default\nsample:1.0:arm64:default"
    assert "streams/v1/products.txt" in (tmp_path / "target/streams/v1/index.json").read_text()


def test_a_new_view_brings_its_own_cache_control_and_signing_policy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a view touches its module only: a cache class tree.yml does not name is served with the
    view's own default, and `signed` alone decides whether a signed tree gives it a clearsigned twin."""
    from ssb_s3.commands.publish import publish
    from ssb_s3.core import views
    from ssb_s3.core.signed import signing_requests

    def aliases_json(content: views.Content) -> views.View:  # made up: a class and a policy of its own
        body = json.dumps(sorted(content.catalog["products"])).encode()
        return views.View("streams/v1/aliases.json", body, cache="aliases", cache_default="public, max-age=7",
                          signed=True)

    monkeypatch.setattr(views, "VIEWS", (*views.VIEWS, aliases_json))
    tree, store = local_tree(tmp_path)
    writes = record_writes(monkeypatch)
    report = publish(tree, store)
    assert report.published
    cache = {key: kwargs.get("cache_control") for key, kwargs in writes}
    assert cache["streams/v1/aliases.json"] == "public, max-age=7"
    assert cache["streams/v1/index.json"] == tree.cache_control.index == "no-cache"  # a class tree.yml names
    catalog = json.loads((tmp_path / "target" / report.catalog_key).read_bytes())
    rendered = views.render(views.Content(tree, catalog, (tmp_path / "target" / report.catalog_key).read_bytes(),
                                          report.catalog_key, {}))
    signed = [request.view.key for request in signing_requests(tree, catalog, rendered[0].data, report.catalog_key,
                                                                rendered)]
    assert "streams/v1/aliases.sjson" in signed and "streams/v1/images.sjson" in signed
    unsigned = [replace(view, signed=False) if view.key == "streams/v1/aliases.json" else view for view in rendered]
    assert "streams/v1/aliases.sjson" not in [request.view.key for request in signing_requests(
        tree, catalog, rendered[0].data, report.catalog_key, unsigned)]


def test_no_conditional_header_anywhere_with_conditional_writes_false(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """ssb.json writes (publish --refresh-manifests, purge, refresh_manifest) used to send If-Match /
    If-None-Match whatever storage.conditional_writes said."""
    from ssb_s3.commands.publish import PublishOptions, publish
    from ssb_s3.storage.lease import LEASE_KEY
    from ssb_s3.storage.tree import refresh_manifest

    tree, store = local_tree(tmp_path, conditional=False)
    for product in tree.products:
        (tmp_path / "target" / product.directory / "ssb.json").unlink()
    writes = record_writes(monkeypatch)
    report = publish(tree, store, PublishOptions(refresh_manifests=True))
    assert report.published
    (tmp_path / "target/sample/amd64/20260101_00:00/lxd.tar.xz").unlink()  # refresh drops this version
    (tmp_path / "target/sample/amd64/20260101_00:00/rootfs.tar.xz").unlink()
    refresh_manifest(store, tree, tree.products[0])
    keys = {key for key, _ in writes}
    assert {"sample/amd64/ssb.json", "sample/arm64/ssb.json", "streams/v1/index.json"} <= keys
    conditional = [(key, kw) for key, kw in writes if key != LEASE_KEY and kw.get("expect") is not None]
    assert conditional == []


def test_hooks_report_each_failed_product_with_its_own_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Names matched as substrings used to blame 'a' for a problem of 'a:b'."""
    from ssb_s3.core.plan import PublishReport
    from ssb_s3.core.retention import PurgePlan
    from ssb_s3.hooks import republish
    from ssb_s3.hooks.events import ProductChange

    tree = parse_config({"products": [
        {"name": "a", "arch": "amd64", "release": "1", "os": "A", "directory": "a"},
        {"name": "a:b", "arch": "arm64", "release": "1", "os": "A", "directory": "ab"}]}, "tree.yml")
    problems = [Problem("a:b", "", "product a:b", "broken b"), Problem("a", "", "product a", "broken a")]
    report = PublishReport("k", False, False, {}, 0, [], 0, PurgePlan(), problems=problems,
                           failed_products=["a", "a:b"])
    monkeypatch.setattr(republish, "publish", lambda *args, **kwargs: report)
    monkeypatch.setattr(republish, "route", lambda *args: {
        "a": ProductChange("a", manifest=True, artifacts=False),
        "a:b": ProductChange("a:b", manifest=True, artifacts=False)})
    outcome = republish.Republisher(tree, str(tmp_path)).handle([])
    assert outcome.failed == {"a": "product a: broken a", "a:b": "product a:b: broken b"}


def test_json_report_gives_each_problem_its_product_where_and_field(tmp_path: Path) -> None:
    import json

    local_tree(tmp_path)
    (tmp_path / "target/sample/arm64/20260101_0000/lxd_combined.tar.gz").unlink()
    out = ssb("-q", "-c", str(tmp_path / "tree.yml"), "-t", str(tmp_path / "target"), "publish", "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["published"] is False and report["failed_products"] == ["sample:1.0:arm64:default"]
    [detail] = report["problem_details"]
    assert detail["product"] == "sample:1.0:arm64:default"
    assert detail["field"] == "product sample:1.0:arm64:default version 20260101_0000 item lxd_combined.tar.gz"
    assert detail["message"] == report["problems"][0]
    assert f"  - {detail['message']}" in out.stderr  # the CLI's lines are the same messages


def test_a_content_addressed_companion_view_is_purged_with_its_catalog(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A create-only view keyed `<catalog key><suffix>` (a signature, say) goes when its catalog goes:
    after the grace, and at once when no index ever named its catalog (a publish that died before its flip)."""
    import hashlib

    import yaml

    from ssb_s3.commands.publish import PublishOptions, publish
    from ssb_s3.config import load_config
    from ssb_s3.core import views

    def digest(content: views.Content) -> views.View:
        body = hashlib.sha256(content.catalog_bytes).hexdigest().encode()
        return views.View(content.catalog_key + ".sha256", body, content_type="text/plain", create_only=True)

    monkeypatch.setattr(views, "VIEWS", (*views.VIEWS, digest))
    tree, store = local_tree(tmp_path)
    first = publish(tree, store, PublishOptions(grace=0))
    target = tmp_path / "target"
    old_sig = target / (first.catalog_key + ".sha256")
    assert old_sig.read_text() == hashlib.sha256((target / first.catalog_key).read_bytes()).hexdigest()
    orphan = target / "streams/v1/images-0123456789abcdef0123.json.sha256"  # its catalog was never flipped to
    orphan.write_text("x")
    bystander = target / "streams/v1/notes.txt"  # not ours: never deleted
    bystander.write_text("keep")

    raw = yaml.safe_load((tmp_path / "tree.yml").read_text())
    raw["products"][0]["release_title"] = "a new title, so a new catalog"
    (tmp_path / "tree.yml").write_text(yaml.safe_dump(raw))
    second = publish(load_config(tmp_path / "tree.yml"), store, PublishOptions(grace=0))
    assert second.catalog_key != first.catalog_key
    assert not (target / first.catalog_key).exists() and not old_sig.exists() and not orphan.exists()
    assert (target / (second.catalog_key + ".sha256")).exists() and bystander.read_text() == "keep"
    assert set(second.purge.old_catalogs) == {first.catalog_key, first.catalog_key + ".sha256",
                                              "streams/v1/images-0123456789abcdef0123.json.sha256"}


def test_a_content_addressed_view_not_keyed_after_its_catalog_is_refused(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from ssb_s3.commands.publish import publish
    from ssb_s3.core import views

    def stray(content: views.Content) -> views.View:
        return views.View("streams/v1/signature.asc", b"x", create_only=True)

    monkeypatch.setattr(views, "VIEWS", (*views.VIEWS, stray))
    tree, store = local_tree(tmp_path)
    with pytest.raises(views.ViewError, match="must be keyed after its catalog"):
        publish(tree, store)
    assert not (tmp_path / "target/streams").exists()
