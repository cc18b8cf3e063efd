"""JSON schemas shipped in the package, and validation that reports every problem by field path.

The shipped JSON holds everything but the combined fields (sha256(meta ‖ root) on a metadata item):
`load_schema` adds one property per combined field of the image-file table (imagefiles.COMBINED_FIELDS)
where COMBINED_FIELD_SCHEMAS says, so a new root's field is typed with no edit here. A schema is loaded
once per state of the table (tests register made-up kinds).
"""

from __future__ import annotations

import difflib
import heapq
import json
import re
from collections.abc import Iterable, Iterator
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from .vocabulary.imagefiles import COMBINED_FIELDS
from .vocabulary.problems import Problem
from .vocabulary.text import UNSAFE, document_problem

SCHEMA_NAMES = ("tree", "ssb", "products", "index")
# Documents whose every string is outside text checked where it enters (vocabulary/text): a product's
# ssb.json (ours, a `source:` one, a prefix_path URL's, a mirrored one) and tree.yml. A served
# catalog is not: `list` shows a foreign tree's text escaped rather than refusing the tree.
TEXT_CHECKED = ("ssb", "tree")


# schema -> (the path of the item properties that get the combined fields, each one's schema)
COMBINED_FIELD_SCHEMAS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "ssb": (("$defs", "item", "properties"), {"$ref": "#/$defs/sha256"}),
    "products": (("properties", "products", "additionalProperties", "properties", "versions",
                  "additionalProperties", "properties", "items", "additionalProperties", "properties"),
                 {"type": "string"}),
}


def load_schema(name: str) -> dict[str, Any]:
    """Return the named schema (tree, ssb, products, index) from the package data, with the
    combined fields of the image-file table (module docstring). Shared: do not change it."""
    return _load_schema(name, tuple(COMBINED_FIELDS))


@cache
def _load_schema(name: str, combined: tuple[str, ...]) -> dict[str, Any]:
    text = resources.files("ssb_s3").joinpath("schemas").joinpath(f"{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    if name in COMBINED_FIELD_SCHEMAS:
        path, field_schema = COMBINED_FIELD_SCHEMAS[name]
        properties = schema
        for step in path:
            properties = properties[step]
        properties.update({field: dict(field_schema) for field in combined})
    return schema


def _validator(name: str) -> Draft202012Validator:
    return _validator_for(name, tuple(COMBINED_FIELDS))


@cache
def _validator_for(name: str, combined: tuple[str, ...]) -> Draft202012Validator:
    return _StrictValidator(_load_schema(name, combined))


def ecma_regex(pattern: str) -> str:
    """A JSON Schema (ECMA-262) pattern as a Python regex: `$` is the end of the string.

    Python's `$` also matches before a final newline, so plain jsonschema accepts "2030-01-01\n"
    for `^[0-9]{4}-[0-9]{2}-[0-9]{2}$`; ECMA-262 (what JSON Schema specifies) and the fast
    paths below (`fullmatch`) do not. Every `$` outside a character class becomes `\\Z`.
    """
    out, in_class, escaped = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            char = r"\Z"
        out.append(char)
    return "".join(out)


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(ecma_regex(pattern))


def _pattern(validator: Any, pattern: str, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# JSON Schema counts 4096.0 as an integer; Go's encoding/json (LXD, Incus) refuses it for an int64.
# Patterns follow ECMA-262 as JSON Schema says (see ecma_regex), not Python's `$`.
_StrictValidator = validators.extend(
    Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


def field_path(parts: Any) -> str:
    """Render a jsonschema path as `products[0].arch` so users find the field in their file."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(error: ValidationError) -> list[tuple[str, str]]:
    """(field, what is wrong) of one jsonschema error: one pair per unknown key of an object."""
    where = field_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        found = []
        for key in sorted(k for k in error.instance if k not in known):
            near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (valid keys: {', '.join(known)})"
            at = f"{where}." if error.absolute_path else ""
            found.append((f"{at}{key}", f"unknown key{hint}"))
        return found
    if error.validator == "required":
        return [(where, f"{error.message.replace(' is a required property', '')} is required")]
    if error.validator == "type":
        return [(where, f"expected {error.validator_value}, got {json.dumps(error.instance)[:60]}")]
    if error.validator in ("anyOf", "oneOf") and "description" in error.schema:
        return [(where, f"{json.dumps(error.instance)[:80]} is not valid, expected {error.schema['description']}")]
    if error.validator == "pattern":
        expected = error.schema.get("description", f"a string matching {error.validator_value}")
        return [(where, f"{json.dumps(error.instance)[:80]} is not valid, expected {expected}")]
    if error.validator == "propertyNames":
        return [(where, f"key {json.dumps(error.instance)[:80]} is not allowed here ({error.message})")]
    return [(where, error.message)]


_SHA256 = re.compile(r"[0-9a-f]{64}")
_MD5 = re.compile(r"[0-9a-f]{32}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_VERSION = re.compile(r"[0-9]{8}[0-9A-Za-z_:.+-]*")
_UTC_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_MAX_SIZE = 9007199254740991
_COMBINED = COMBINED_FIELDS  # from the one table of image files


def _is_size(value: Any) -> bool:
    return type(value) is int and 0 <= value <= _MAX_SIZE


def _str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(type(v) is str for v in value.values())


def _fast_ssb(doc: Any) -> bool:
    """True only if `doc` surely matches ssb.schema.json (a fast path; jsonschema explains failures)."""
    if not (isinstance(doc, dict) and type(doc.get("name")) is str and doc["name"]
            and isinstance(doc.get("versions"), dict)):
        return False
    if "expiry" in doc and type(doc["expiry"]) not in (str, int):
        return False
    if "support_eol" in doc and not (type(doc["support_eol"]) is str and _DATE.fullmatch(doc["support_eol"])):
        return False
    if "withdrawn" in doc and not _fast_withdrawn(doc["withdrawn"]):
        return False
    return all(_fast_ssb_version(vname, version) for vname, version in doc["versions"].items())


@cache
def _max_reason() -> int:
    """ssb.schema.json's bound on a withdrawal's reason."""
    bound: int = load_schema("ssb")["properties"]["withdrawn"]["additionalProperties"]["properties"]["reason"][
        "maxLength"]
    return bound


def _fast_withdrawn(withdrawn: Any) -> bool:
    """True only if ssb.json's `withdrawn` section surely matches the schema."""
    if not isinstance(withdrawn, dict):
        return False
    for vname, record in withdrawn.items():
        if not (isinstance(record, dict) and type(record.get("withdrawn_at")) is str
                and _UTC_TIME.fullmatch(record["withdrawn_at"]) and _fast_ssb_version(vname, record.get("entry"))):
            return False
        reason = record.get("reason", "")
        if not (type(reason) is str and len(reason) <= _max_reason() and not UNSAFE.search(reason)):
            return False
    return True


def _fast_ssb_version(vname: Any, version: Any) -> bool:
    """True only if one version of an ssb.json surely matches the schema."""
    if not (isinstance(vname, str) and _VERSION.fullmatch(vname)) or not isinstance(version, dict):
        return False
    items = version.get("items")
    if not isinstance(items, dict) or not items:
        return False
    if ("label" in version and type(version["label"]) is not str) or (
            "pubname" in version and type(version["pubname"]) is not str):
        return False
    for item in items.values():  # plain loops, no generators: this runs for every item of every version
        if not (isinstance(item, dict) and type(item.get("ftype")) is str and item["ftype"]
                and type(item.get("path")) is str and item["path"] and _is_size(item.get("size"))
                and type(item.get("sha256")) is str and _SHA256.fullmatch(item["sha256"])):
            return False
        if "md5" in item and not (type(item["md5"]) is str and _MD5.fullmatch(item["md5"])):
            return False
        for key in item.keys() & _COMBINED:  # a view of the current table (imagefiles.register)
            if not (type(item[key]) is str and _SHA256.fullmatch(item[key])):
                return False
        if "delta_base" in item and type(item["delta_base"]) is not str:
            return False
    return True


def _fast_products(doc: Any) -> bool:
    """True only if `doc` surely matches products.schema.json (the catalog's JSON types)."""
    if not (isinstance(doc, dict) and type(doc.get("content_id")) is str and doc.get("datatype") == "image-downloads"
            and doc.get("format") == "products:1.0" and isinstance(doc.get("products"), dict)):
        return False
    if any(k in doc and type(doc[k]) is not str for k in ("license", "updated")):
        return False
    for product in doc["products"].values():
        if not isinstance(product, dict) or not isinstance(product.get("versions"), dict):
            return False
        if any(type(product.get(k)) is not str for k in ("aliases", "arch", "os", "release", "release_title")):
            return False
        if any(k in product and type(product[k]) is not str for k in ("release_codename", "version", "variant")):
            return False
        if "supported" in product and type(product["supported"]) is not bool:
            return False
        if "support_eol" in product and not (type(product["support_eol"]) is str
                                             and _DATE.fullmatch(product["support_eol"])):
            return False
        if any(k in product and not _str_map(product[k]) for k in ("requirements", "lxd_requirements")):
            return False
        for version in product["versions"].values():
            if not isinstance(version, dict) or not isinstance(version.get("items"), dict):
                return False
            if any(k in version and type(version[k]) is not str for k in ("label", "pubname")):
                return False
            for item in version["items"].values():
                if not (isinstance(item, dict) and type(item.get("ftype")) is str and type(item.get("path")) is str
                        and item["path"] and _is_size(item.get("size"))):
                    return False
                if any(k in item and type(item[k]) is not str
                       for k in ("sha256", "md5", "delta_base", *_COMBINED)):
                    return False
    return True


_FAST_PATHS = {"ssb": _fast_ssb, "products": _fast_products}


def schema_problems(instance: Any, name: str, source: str, limit: int | None = None, *,
                    text: bool = True, product: str | None = None) -> list[Problem]:
    """Validate `instance` against schema `name`: one Problem per problem, located in `source` (the
    file or key), its field named as users find it (field_path), blaming `product` if given.
    For the TEXT_CHECKED documents, the first string vocabulary/text refuses is one more problem (`text`
    False: the caller found no refused string in a document holding every string of `instance`).

    Manifests and catalogs of thousands of products are checked by a hand-written fast path
    that accepts only what the schema accepts; jsonschema runs only to explain a failure.
    With `limit`, only the first `limit` problems (by field path) are described, then one
    '… and N more' problem: time and memory stay bounded however many problems there are (for an
    ssb.json, jsonschema sees only the first `limit` failing versions; the others are counted).
    """
    problems = [Problem(product, source, field, what) for field, what in _schema_only(instance, name, limit)]
    found = document_problem(instance) if text and name in TEXT_CHECKED else None
    return problems if found is None else [*problems, Problem(product, source, *found)]


def _schema_only(instance: Any, name: str, limit: int | None) -> list[tuple[str, str]]:
    """(field, what is wrong) of each problem, in field order ('' field: the '… and N more' lines)."""
    fast = _FAST_PATHS.get(name)
    if fast is not None and fast(instance):
        return []
    more = ""
    if limit is not None and name == "ssb" and isinstance(instance, dict) and isinstance(instance.get("versions"),
                                                                                      dict):
        # Only the first `limit` bad versions go to jsonschema (slow: ~0.1 ms a version); the others are counted.
        versions = instance["versions"]
        bad = [v for v, version in versions.items() if not _fast_ssb_version(v, version)]
        if len(bad) > limit:
            more = f"… and {len(bad) - limit} more versions with problems"
        instance = {**instance, "versions": {v: versions[v] for v in sorted(bad, key=str)[:limit]}}
    total = 0

    def counted(errors: Iterable[ValidationError]) -> Iterator[ValidationError]:
        nonlocal total
        for error in errors:
            total += 1
            yield error

    found = _validator(name).iter_errors(instance)
    if limit is None:
        errors = sorted(found, key=lambda e: list(e.absolute_path))
    else:
        errors = heapq.nsmallest(limit, counted(found), key=lambda e: list(e.absolute_path))
    problems: list[tuple[str, str]] = []
    for error in errors:
        # For anyOf/oneOf-free schemas the best match is the error itself; descend into context anyway.
        leaf = error
        while leaf.context and "description" not in leaf.schema:
            leaf = leaf.context[0]
        problems.extend(_describe(leaf))
    if limit is not None and total > limit:
        problems.append(("", f"… and {total - limit} more"))
    return problems + ([("", more)] if more else [])
