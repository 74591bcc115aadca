"""Relations among dimensions: ``total = left × right``, any two given, the third follows.

A layer declares its relations once, in its own file; inputs, validation, code
generation, sweeps and verification read them from there and never spell them again.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from shardcost.errors import ImpossibleSplitError

from .dimensions import Dimension


@dataclass(frozen=True)
class Product:
    """``total = left × right``: give any two, the third is derived (and checked)."""

    total: Dimension
    left: Dimension
    right: Dimension

    @property
    def dimensions(self) -> tuple[Dimension, Dimension, Dimension]:
        """The three dimensions, total first."""
        return (self.total, self.left, self.right)

    @property
    def words(self) -> str:
        """The relation in words: ``total = left × right`` in the dimensions' names."""
        return f"{self.total.name} = {self.left.name} × {self.right.name}"

    @property
    def ascii(self) -> str:
        """The relation in ASCII, for generated code's messages."""
        return f"{self.total.name} = {self.left.name} x {self.right.name}"

    def substitution(self) -> dict[sympy.Symbol, sympy.Expr]:
        """The total in terms of its factors, for proofs."""
        return {self.total.symbol: self.left.symbol * self.right.symbol}

    def applies(self, symbols: set[sympy.Symbol] | frozenset[sympy.Symbol]) -> bool:
        """Whether a cost reading ``symbols`` reads all three (only then does it hold)."""
        return all(dim.symbol in symbols for dim in self.dimensions)

    def complete(self, given: dict[str, int | None]) -> dict[str, int]:
        """The three values from any two given (defaults for what is missing, the right
        factor's first); ImpossibleSplitError naming the values when they disagree."""
        total, left, right = (given.get(dim.name) for dim in self.dimensions)
        if total is None:
            left = self.left.default if left is None else left
            right = self.right.default if right is None else right
            total = left * right  # type: ignore[operator]
        elif left is None or right is None:
            known, other = (right, self.left) if left is None else (left, self.right)
            if known is None:  # only the total: the right factor takes its default
                known, other = self.right.default, self.left
            by = self.right if other is self.left else self.left
            if total % known:
                raise ImpossibleSplitError(
                    f"{self.total.name}={total} is not divisible by {by.name}={known}; "
                    f"{self.words} (give any two to derive the third)"
                )
            derived = total // known
            left, right = (derived, known) if other is self.left else (known, derived)
        elif total != left * right:
            raise ImpossibleSplitError(
                f"{self.total.name}={total} but {self.left.name} × {self.right.name} = "
                f"{left} × {right} = {left * right}; {self.words} (give any two to derive "
                "the third)"
            )
        return {self.total.name: total, self.left.name: left, self.right.name: right}
