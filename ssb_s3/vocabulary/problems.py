"""One problem type: what is wrong, where, and whose fault it is.

Every check (tree.yml, ssb.json, the client contract, the listing, item paths, purge) returns
Problems. Whoever needs to know which product is to blame (--keep-going, the hooks' failed-product
report, --json) reads `product`; nothing ever parses a message back. `str()` is the one-line
message users see: `where: field: text`, empty parts left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """product: the product to blame (None: the tree, or the whole catalog); where: the file or key
    (an ssb.json location, tree.yml, a catalog); field: what in it, as users name it (e.g.
    `products[2].arch`, `product P version V item K`); text: what is wrong and what was expected."""

    product: str | None
    where: str
    field: str
    text: str

    def __str__(self) -> str:
        return ": ".join(part for part in (self.where, self.field, self.text) if part)

    def as_dict(self) -> dict[str, Any]:
        return {"product": self.product, "where": self.where, "field": self.field, "text": self.text,
                "message": str(self)}

    def located(self, where: str) -> Problem:
        """The same problem, found in `where` (e.g. the ssb.json a catalog entry was built from)."""
        return Problem(self.product, where, self.field, self.text)


def as_problem(problem: Problem | str, product: str | None = None) -> Problem:
    """A Problem as it is; a plain message (from a check that has no structure yet) as its text."""
    return problem if isinstance(problem, Problem) else Problem(product, "", "", problem)


def blamed(problems: Iterable[Problem]) -> list[str]:
    """The products some problem blames, sorted."""
    return sorted({p.product for p in problems if p.product is not None})
