"""How a scalar of tree.yml (or of a CLI option) becomes the typed value the model holds.

The seed read tree.yml with viper, which decodes into its Go struct with mapstructure's weak typing:
a scalar of another type is converted rather than refused. Those conversions are its meaning of a
tree.yml, so they are ours for the seed's own keys (SEED_STRING_KEYS, SEED_TOP_STRING_KEYS, days,
hidden, aliases); our newer keys stay strictly typed and are left for the schema. Every function
here is pure: a value in, a value out (or ValueError naming what was expected), no file, no schema.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Mapping
from typing import Any

_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNIT_SECONDS = (7 * 86400, 86400, 3600, 60, 1)


def parse_duration(text: str | int) -> int:
    """'90m', '6h', '7d', '1h30m', '45s', '0' (or a number of seconds) -> seconds.

    ValueError names what was expected.
    """
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    value = str(text).strip()
    if value.isdigit():
        return int(value)
    match = _DURATION.match(value)
    if not value or not match or not any(match.groups()):
        raise ValueError(f"'{text}' is not a duration (expected e.g. 90m, 6h, 7d, 1h30m or 0)")
    return sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_SECONDS, strict=True) if n)


def duration(value: str | int | None) -> int | None:
    """An optional duration (max_age): None stays None."""
    return None if value is None else parse_duration(value)


def clean_relative(value: str) -> str:
    """A tree.yml path ('/prefix/', 'a//b') as the model keeps it: no doubled or surrounding slashes."""
    return re.sub(r"/+", "/", value).strip("/")


SEED_OPTIONAL = ("release_title", "version", "prefix_path")  # the seed's optional strings: '' or null is "not set"


def seed_optional(raw: Mapping[str, Any], key: str) -> str:
    """One of the seed's optional string keys (SEED_OPTIONAL): '' or null (`version:`) means not set,
    as in simplestreams-builder, where a missing key and an empty one are the same Go zero value."""
    return raw.get(key) or ""


SEED_STRING_KEYS = ("name", "arch", "release", "release_title", "os", "directory", "version", "prefix_path")
SEED_TOP_STRING_KEYS = ("prefix", "images_path", "datatype", "format")
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # strconv.ParseBool
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _go_string(value: Any) -> Any:
    """mapstructure's weak string: bool -> "1"/"0", int -> decimal, float -> Go's shortest 'f'
    format (so `release: 12.10` is "12.1", as the seed read it). Anything else is left for the schema."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return format(decimal.Decimal(repr(value)), "f")
    return value


def _go_int(value: Any) -> Any:
    """mapstructure's weak int: bool -> 1/0, float -> truncated, string -> strconv.ParseInt(s, 0, 64)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?(0[xX][0-9a-fA-F_]+|0[oObB]?[0-9_]+|[1-9][0-9_]*|0)", value):
        text = value.replace("_", "")
        octal = re.fullmatch(r"([+-]?)0([0-7]+)", text)  # Go's base 0: a leading 0 is octal
        try:
            return int(octal[1] + octal[2], 8) if octal else int(text, 0)
        except ValueError:
            return value
    return value


def _go_bool(value: Any) -> Any:
    """mapstructure's weak bool: a number is true unless 0, a string as strconv.ParseBool ('' is false)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, str) and value in _GO_TRUE + _GO_FALSE + ("",):
        return value in _GO_TRUE
    return value


def seed_weak_types(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """tree.yml with the seed's keys converted as the seed converted them (a copy; the rest as is):
    `release: 12` is "12", `days: "2"` is 2, `hidden: "true"` is true, `aliases: a` is [a]."""
    converted = dict(data)
    for key in SEED_TOP_STRING_KEYS:
        if key in converted:
            converted[key] = _go_string(converted[key])
    products = converted.get("products")
    if not isinstance(products, list):
        return converted
    converted["products"] = [_seed_weak_product(raw) if isinstance(raw, Mapping) else raw for raw in products]
    return converted


def _seed_weak_product(raw: Mapping[str, Any]) -> dict[str, Any]:
    product = dict(raw)
    for key in SEED_STRING_KEYS:
        if key in product and product[key] is not None:
            product[key] = _go_string(product[key])
    if "days" in product:
        product["days"] = _go_int(product["days"])
    if "hidden" in product:
        product["hidden"] = _go_bool(product["hidden"])
    aliases = product.get("aliases")
    if isinstance(aliases, (str, int, float)):
        aliases = [aliases]  # a single value where a list is expected
    if isinstance(aliases, list):
        product["aliases"] = [_go_string(alias) for alias in aliases]
    return product
