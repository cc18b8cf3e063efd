"""Differential test of the schema fast paths (issue 10, "Schema fast paths").

`ssb_s3.schemas` checks ssb.json manifests and catalogs with hand-written fast paths
(`_fast_ssb`, `_fast_ssb_version`, `_fast_products`) that may only say "surely valid";
jsonschema, run on ssb.schema.json / products.schema.json, is the reference. Every document
here -- the ssb.json cases of the bad-input corpus (tests/test_bad_inputs.py, replayed on
in-memory manifests), and thousands of seeded mutations of valid manifests and catalogs (wrong
types at every field, missing and extra keys, bad hashes, floats and bools for sizes, huge
ints, unicode, empty strings, nested wrong types) -- goes through both, and:

* whenever a fast path says valid, jsonschema finds no error in the document (or version);
* `schema_problems` reports exactly the field paths jsonschema reports, in order, with and
  without a `limit` (the limited path picks bad versions with `_fast_ssb_version`).

No server: the corpus mutations only touch the manifests, so they run on dicts.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import re
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from test_bad_inputs import ARM, ARM_DIR, SQ, SQ_DIR, SSB_CASES, V1, V2, VA, VX, XZ, XZ_DIR

from ssb_s3.schemas import (
    _fast_products,
    _fast_ssb,
    _fast_ssb_version,
    ecma_regex,
    field_path,
    load_schema,
    schema_problems,
)
from ssb_s3.vocabulary import text

SEED = 20261130
SOURCE = "doc.json"



def _ecma_pattern(validator: Any, pattern: str, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    """ECMA-262 `$` (what JSON Schema specifies) for these schemas' patterns, all of the form ^...$."""
    assert pattern.startswith("^") and pattern.endswith("$") and "$" not in pattern[:-1], pattern
    if isinstance(instance, str) and not re.search(pattern[:-1] + r"\Z", instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# The reference: the shipped schema, with the project's one documented deviation from plain JSON
# Schema (an integer is an int, never a bool nor an integral float: Go's int64 refuses them), and
# patterns read as ECMA-262 says (Python's `$` would also match before a final newline).
_Strict = validators.extend(
    Draft202012Validator, validators={"pattern": _ecma_pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)))
REFERENCE = {name: _Strict(load_schema(name)) for name in ("ssb", "products")}
FAST = {"ssb": _fast_ssb, "products": _fast_products}


def reference_paths(document: Any, name: str) -> list[str]:
    """The field path of every error jsonschema finds, in schema_problems' order (by path)."""
    errors = sorted(REFERENCE[name].iter_errors(document), key=lambda e: list(e.absolute_path))
    return [field_path(e.absolute_path) for e in errors]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def version_entry(folder: str, root: str) -> dict[str, Any]:
    ftype = "squashfs" if root == "root.squashfs" else "root.tar.xz"
    combined = "combined_squashfs_sha256" if root == "root.squashfs" else "combined_rootxz_sha256"
    return {"items": {
        "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": f"{folder}/lxd.tar.xz", "size": 404, "sha256": sha(folder),
                       combined: sha(folder + "c"), "md5": hashlib.md5(folder.encode()).hexdigest()},
        root: {"ftype": ftype, "path": f"{folder}/{root.replace('root.', 'rootfs.')}", "size": 1040384,
               "sha256": sha(folder + "r")}}}


def good_manifests() -> dict[str, dict[str, Any]]:
    """The three ssb.json of the bad-input corpus's good tree (same directories, versions and items)."""
    return {
        SQ_DIR: {"name": SQ, "support_eol": "2030-01-01",
                 "versions": {v: version_entry(f"{SQ_DIR}/{v}", "root.squashfs") for v in (V1, V2)}},
        XZ_DIR: {"name": XZ, "versions": {VX: version_entry(f"{XZ_DIR}/{VX}", "root.tar.xz")}},
        ARM_DIR: {"name": ARM, "expiry": 1893456000,
                  "versions": {VA: {**version_entry(f"{ARM_DIR}/{VA}", "root.squashfs"), "label": "release",
                                    "pubname": "busybox-arm64"}}},
    }


def good_catalog() -> dict[str, Any]:
    """A catalog of the good tree, shaped as the publisher serves it."""
    names = {SQ_DIR: (SQ, "amd64", "busybox/1.36,busybox"), XZ_DIR: (XZ, "amd64", "busybox/1.36/tarxz"),
             ARM_DIR: (ARM, "arm64", "busybox/1.36,busybox")}
    products = {}
    for directory, manifest in good_manifests().items():
        name, arch, aliases = names[directory]
        products[name] = {"aliases": aliases, "arch": arch, "os": "Busybox", "release": "1.36",
                          "release_title": "1.36", "variant": "default", "supported": True,
                          "support_eol": "2030-01-01", "requirements": {"secureboot": "false"},
                          "versions": manifest["versions"]}
    return {"content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
            "license": "", "updated": "Mon, 30 Nov 2026 22:00:00 +0000", "products": products}


class FakeTree:
    """Just enough of test_bad_inputs.Tree for its ssb.json mutations: the bucket is a dict."""

    def __init__(self) -> None:
        self.objects = {f"{d}/ssb.json": json.dumps(m, indent=2).encode() for d, m in good_manifests().items()}

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def put(self, key: str, data: bytes) -> None:
        self.objects[key] = data

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def get_json(self, key: str) -> Any:
        return json.loads(self.get(key))

    def put_json(self, key: str, document: Any) -> None:
        self.put(key, json.dumps(document, indent=2).encode())


def corpus_documents() -> Iterator[tuple[str, Any]]:
    """Every ssb.json the bad-input corpus's ssb cases leave behind (the JSON ones)."""
    for case in SSB_CASES:
        fake = FakeTree()
        before = dict(fake.objects)
        case.mutate(fake)  # type: ignore[arg-type]
        for key, data in fake.objects.items():
            if data == before.get(key):
                continue
            try:
                yield f"{case.id}:{key}", json.loads(data)
            except ValueError:  # not JSON (or not UTF-8): refused before any schema
                continue


# --------------------------------------------------------------------------------------------
# Seeded mutations

WRONG_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 4096, 4096.0, 1.5, -0.0, 2**53 - 1, 2**53, 2**63, 2**70, -(2**70),
    float("nan"), float("inf"), "", " ", "x", "4096", "true", "é", "\u200b", "日本", "\x00", "2030-01-01",
    "2030-01-01\n", "2030-1-1", "20260101", "20260101_10:00", "20260101 10:00", "latest",
    "a" * 64, "A" * 64, "a" * 63, "g" * 64, "a" * 32, "z" * 32, "a" * 65, "squashfs", "/abs/path",
    "image-downloads", "products:1.0", [], [1], ["a"], {}, {"a": 1}, {"a": "b"}, {"items": {}},
    {"ftype": "squashfs", "path": "p", "size": 1, "sha256": "a" * 64}, [{"items": {}}],
]
EXTRA_KEYS = ["extra", "", "é", "size", "items", "20260101", "20260101_x", "x" * 200, "sha256", "versions"]


def nodes(document: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) of a JSON document, the root included."""
    yield path, document
    if isinstance(document, dict):
        for key, value in document.items():
            yield from nodes(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from nodes(value, (*path, index))


def mutate(document: Any, rng: random.Random) -> Any:
    """One random change somewhere in `document` (a deep copy): replace, delete, add or rename a key."""
    document = copy.deepcopy(document)
    path, value = rng.choice(list(nodes(document)))
    wrong = copy.deepcopy(rng.choice(WRONG_VALUES))
    if not path:
        return wrong if rng.random() < 0.3 else document
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    key = path[-1]
    action = rng.randrange(5)
    if action == 0 or not isinstance(parent, dict):
        parent[key] = wrong
    elif action == 1:
        del parent[key]
    elif action == 2:
        parent[rng.choice(EXTRA_KEYS)] = wrong
    elif action == 3:  # a renamed key: a bad version name, a misspelled field
        parent[rng.choice([*EXTRA_KEYS, str(key).upper(), str(key)[:-1], f"{key}\n", f"{key} "])] = parent.pop(key)
    elif isinstance(value, dict | list) and value:  # nested: one level deeper gets the wrong value
        inner = rng.choice(list(value)) if isinstance(value, dict) else rng.randrange(len(value))
        value[inner] = wrong
    else:
        parent[key] = wrong
    return document


def generated(name: str, bases: list[Any], count: int) -> Iterator[tuple[str, Any]]:
    rng = random.Random(f"{SEED}-{name}")
    for i in range(count):
        document = rng.choice(bases)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            document = mutate(document, rng)
        yield f"{name}-{i}", document


def ssb_documents() -> list[tuple[str, Any]]:
    bases = list(good_manifests().values())
    return [*corpus_documents(), *((f"good:{m['name']}", m) for m in bases), *generated("ssb", bases, 4000)]


def catalog_documents() -> list[tuple[str, Any]]:
    base = good_catalog()
    # the manifests' mutations, seen through the catalog (a product's versions come from its ssb.json)
    from_manifests = [
        (f"catalog-of:{cid}", {**base, "products": {**base["products"], SQ: {**base["products"][SQ], "versions": d}}})
        for cid, d in ((c, m.get("versions")) for c, m in ssb_documents()[:300] if isinstance(m, dict))]
    return [("good", base), *from_manifests, *generated("products", [base], 3000)]


# --------------------------------------------------------------------------------------------
# The differential checks


def check_same_verdict(name: str, document: Any) -> tuple[bool, bool]:
    """Assert the fast path is sound and schema_problems reports jsonschema's fields; (fast, valid)."""
    expected = reference_paths(document, name)
    fast = FAST[name](document)
    assert not (fast and expected), f"fast path says valid, jsonschema finds {expected}"
    # vocabulary/text's check of every string (ssb.json) comes on top of jsonschema's: one more line, left out here
    typed = [p for p in schema_problems(document, name, SOURCE) if not p.text.endswith(text.EXPECTED)]
    assert all(p.where == SOURCE and p.product is None for p in typed), typed
    problems = [str(p) for p in typed]
    assert len(problems) == len(expected), (problems, expected)
    for problem, where in zip(problems, expected, strict=True):
        assert problem.startswith(f"{SOURCE}: {where}"), (problem, where)
    return fast, not expected


def check_ssb_versions(document: Any) -> None:
    """The limited path trusts `_fast_ssb_version` to skip good versions: it must be sound too."""
    if not (isinstance(document, dict) and isinstance(document.get("versions"), dict)):
        return
    for vname, version in document["versions"].items():
        if _fast_ssb_version(vname, version):
            alone = reference_paths({"name": "n", "versions": {vname: version}}, "ssb")
            assert not alone, f"_fast_ssb_version says {vname!r} is valid, jsonschema finds {alone}"
    unlimited = sorted(map(str, schema_problems(document, "ssb", SOURCE)))
    # the same problems (the limited path puts bad versions in key order: ties at one path may swap)
    assert sorted(map(str, schema_problems(document, "ssb", SOURCE, limit=10**6))) == unlimited
    limited = sorted(map(str, schema_problems(document, "ssb", SOURCE, limit=2)))
    if len(unlimited) <= 2:
        assert sorted(limited) == sorted(unlimited)


@pytest.mark.parametrize("name", ["ssb", "products"])
def test_fast_path_and_jsonschema_agree(name: str) -> None:
    documents = ssb_documents() if name == "ssb" else catalog_documents()
    verdicts = {(True, True): 0, (False, True): 0, (False, False): 0}
    for case_id, document in documents:
        try:
            verdict = check_same_verdict(name, document)
            if name == "ssb":
                check_ssb_versions(document)
        except AssertionError as error:
            raise AssertionError(f"{name} case {case_id}: {json.dumps(document, default=str)[:400]}\n{error}") from None
        verdicts[verdict] += 1
    # The corpus is large and exercises all three outcomes; valid documents mostly take the fast path.
    assert len(documents) >= 3000
    assert verdicts[(True, True)] >= 100 and verdicts[(False, False)] >= 1000, verdicts
    # ... and only valid documents: here the two verdicts agree exactly.
    assert verdicts[(False, True)] == 0, f"fast path unsure of valid documents: {verdicts}"


def test_corpus_cases_are_replayed() -> None:
    """Every ssb.json-editing case of the bad-input corpus yields a document here."""
    ids = {cid.split(":")[0] for cid, _ in corpus_documents()}
    assert {"ssb-size-float", "ssb-size-bool", "ssb-size-nan", "ssb-sha256-uppercase", "ssb-items-empty",
            "ssb-top-level-list", "ssb-version-named-latest"} <= ids, ids
    assert len(ids) >= 20


@pytest.mark.parametrize(("name", "document", "field"), [
    pytest.param("ssb", {"name": "n", "versions": {"20260101": {"items": {"i": {
        "ftype": "f", "path": "p", "size": 4096.0, "sha256": "a" * 64}}}}}, "versions.20260101.items.i.size",
        id="ssb-size-integral-float"),
    pytest.param("ssb", {"name": "n", "versions": {"20260101": {"items": {"i": {
        "ftype": "f", "path": "p", "size": False, "sha256": "a" * 64}}}}}, "versions.20260101.items.i.size",
        id="ssb-size-bool"),
    # JSON Schema patterns are ECMA-262: `$` is the end of the string. Plain jsonschema (Python's `$`)
    # accepted these, and publish served support_eol "2030-01-01\n" in the catalog.
    pytest.param("ssb", {**good_manifests()[SQ_DIR], "support_eol": "2030-01-01\n"}, "support_eol",
                 id="ssb-support-eol-trailing-newline"),
    pytest.param("ssb", {**good_manifests()[XZ_DIR], "versions": {f"{VX}\n": version_entry(f"{XZ_DIR}/{VX}",
                                                                                          "root.tar.xz")}},
                 "versions", id="ssb-version-name-trailing-newline"),
    pytest.param("products", {**good_catalog(), "products": {SQ: {**good_catalog()["products"][SQ],
                                                                  "support_eol": "2030-01-01\n"}}},
                 f"products.{SQ}.support_eol", id="catalog-support-eol-trailing-newline"),
    pytest.param("products", {**good_catalog(), "updated": math.pi}, "updated", id="catalog-updated-float"),
    pytest.param("products", {**good_catalog(), "products": {SQ: {**good_catalog()["products"][SQ],
                                                                  "supported": "true"}}},
                 f"products.{SQ}.supported", id="catalog-supported-string"),
])
def test_known_traps_are_refused_by_both(name: str, document: Any, field: str) -> None:
    assert not FAST[name](document)
    assert reference_paths(document, name)[:1] == [field]
    problems = schema_problems(document, name, SOURCE)
    assert problems and (problems[0].where, problems[0].field) == (SOURCE, field), problems


@pytest.mark.parametrize(("pattern", "value", "matches"), [
    ("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "2030-01-01", True),
    ("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "2030-01-01\n", False),
    ("^(?!(.*/)?\\.\\.?(/|$))[^\\\\\\s]*$", "a/..", False),
    ("^(?!(.*/)?\\.\\.?(/|$))[^\\\\\\s]*$", "a/..b", True),
    ("^[$]x$", "$x", True),
    ("^a\\$$", "a$", True),
    ("^https?://", "https://x\n", True),
])
def test_ecma_regex_dollar_is_the_end(pattern: str, value: str, matches: bool) -> None:
    assert bool(re.search(ecma_regex(pattern), value)) is matches
