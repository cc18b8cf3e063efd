"""tree.yml, read into a frozen model (floor 2: imports only the vocabulary, errors, schemas, filters).

A newcomer reads it in this order:
- model.py: the frozen dataclasses every other module reads (TreeConfig, ProductConfig, ...), the
  architecture table and the alias-collision rule;
- coerce.py: the seed's weak typing (Go's mapstructure: `release: 12` is "12") and durations;
- load.py: the bounded YAML reader, the schema and the checks it cannot make, building the model;
- show.py: the effective configuration printed back as tree.yml (`ssb-s3 print`).

The names below are the package's public surface: `from ..config import TreeConfig` is how every
other module imports them.
"""

from __future__ import annotations

from ..errors import ConfigError
from .coerce import parse_duration
from .load import (
    ENDPOINT_ENV,
    ENDPOINT_EXPECTED,
    MAX_TREE_BYTES,
    MAX_TREE_NODES,
    MAX_YAML_ALIASES,
    base_url_problem,
    config_from_text,
    endpoint_from_env,
    endpoint_url_problem,
    load_config,
    load_yaml,
    parse_config,
    tree_endpoint,
    yaml_problem,
)
from .model import (
    CANONICAL_ARCH,
    DEFAULT_DELTA_MAX_RATIO,
    IMMUTABLE,
    KNOWN_ARCHES,
    CachePolicy,
    HooksConfig,
    MirrorConfig,
    PageConfig,
    ProductConfig,
    SigningConfig,
    StorageConfig,
    TreeConfig,
    claim_alias,
)
from .show import config_as_dict

__all__ = [
    "CANONICAL_ARCH", "DEFAULT_DELTA_MAX_RATIO", "ENDPOINT_ENV", "ENDPOINT_EXPECTED", "IMMUTABLE", "KNOWN_ARCHES",
    "MAX_TREE_BYTES", "MAX_TREE_NODES", "MAX_YAML_ALIASES", "CachePolicy", "ConfigError", "HooksConfig", "MirrorConfig",
    "PageConfig", "ProductConfig", "SigningConfig", "StorageConfig", "TreeConfig", "base_url_problem",
    "claim_alias", "config_as_dict", "config_from_text", "endpoint_from_env", "endpoint_url_problem",
    "load_config", "load_yaml", "parse_config", "parse_duration", "tree_endpoint", "yaml_problem",
]
