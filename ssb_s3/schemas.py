"""JSON schemas shipped in the package, and validation that reports every problem by field path."""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

SCHEMA_NAMES = ("tree", "ssb", "products", "index")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Return the named schema (tree, ssb, products, index) from the package data."""
    text = resources.files("ssb_s3").joinpath("schemas").joinpath(f"{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name))


def field_path(parts: Any) -> str:
    """Render a jsonschema path as `products[0].arch` so users find the field in their file."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(error: ValidationError) -> str:
    where = field_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        msgs = []
        for key in sorted(k for k in error.instance if k not in known):
            near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (valid keys: {', '.join(known)})"
            at = f"{where}." if error.absolute_path else ""
            msgs.append(f"{at}{key}: unknown key{hint}")
        return "; ".join(msgs)
    if error.validator == "required":
        return f"{where}: {error.message.replace(' is a required property', '')} is required"
    if error.validator == "type":
        return f"{where}: expected {error.validator_value}, got {json.dumps(error.instance)[:60]}"
    if error.validator in ("anyOf", "oneOf") and "description" in error.schema:
        return f"{where}: {json.dumps(error.instance)[:80]} is not valid, expected {error.schema['description']}"
    if error.validator == "pattern":
        expected = error.schema.get("description", f"a string matching {error.validator_value}")
        return f"{where}: {json.dumps(error.instance)[:80]} is not valid, expected {expected}"
    if error.validator == "propertyNames":
        return f"{where}: key {json.dumps(error.instance)[:80]} is not allowed here ({error.message})"
    return f"{where}: {error.message}"


def schema_problems(instance: Any, name: str, source: str) -> list[str]:
    """Validate `instance` against schema `name`; return one message per problem, prefixed by source."""
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    problems: list[str] = []
    for error in errors:
        # For anyOf/oneOf-free schemas the best match is the error itself; descend into context anyway.
        leaf = error
        while leaf.context and "description" not in leaf.schema:
            leaf = leaf.context[0]
        problems.append(f"{source}: {_describe(leaf)}")
    return problems
