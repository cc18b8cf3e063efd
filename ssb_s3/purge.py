"""Purge: what retention expired and no catalog within the grace names, deleted in an order that
converges after a crash (files, then the manifest entry, then old catalogs).

The decisions (retention, grace, history) are pure, in ssb_s3.retention; the deletions are
ssb_s3.tree's (Tree.purge), which owns the tree's keys. This module keeps the names other code and
tests import.
"""

from __future__ import annotations

from .retention import (
    CATALOG_NAME,
    HISTORY_FIELD,
    History,
    PurgeItem,
    PurgePlan,
    catalog_paths,
    plan_purge,
    select_versions,
    shape_problem,
)
from .tree import read_catalog

__all__ = ["CATALOG_NAME", "HISTORY_FIELD", "History", "PurgeItem", "PurgePlan", "catalog_paths", "plan_purge",
           "read_catalog", "select_versions", "shape_problem"]
