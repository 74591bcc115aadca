"""The one record of "parts divides total": in a derivation's requirements and assumed
even splits, in verify's domains, in compiled programs' checks and in every export."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sympy


@dataclass(frozen=True)
class Divides:
    """``parts`` divides ``total`` (``either``: or ``total`` divides ``parts``), or the
    configuration cannot be. ``why`` says so in words; ``total_name`` and ``parts_name``
    are how messages name the two sides (a program fills them in the user's words)."""

    total: sympy.Expr
    parts: sympy.Expr
    why: str = ""  # e.g. "heads are sharded whole across tensor-parallel ranks"
    either: bool = False
    total_name: str = ""
    parts_name: str = ""

    def holds(self, total: int, parts: int) -> bool:
        """Whether it holds for these values of its two sides."""
        return total % parts == 0 or (self.either and parts % total == 0)

    def holds_at(self, point: Mapping[sympy.Symbol, int]) -> bool:
        """Whether it holds at ``point`` (a value for every symbol of its sides)."""
        values = {s: sympy.Integer(v) for s, v in point.items()}
        total, parts = (int(sympy.sympify(e).xreplace(values)) for e in (self.total, self.parts))
        return self.holds(total, parts)
