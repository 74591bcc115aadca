"""Integer functions the formulas need beyond SymPy's own, exact at whole numbers."""

from __future__ import annotations

import operator
from collections.abc import Callable

import sympy


class CeilLog2(sympy.Function):
    """⌈log2 n⌉ for a whole n ≥ 1: the rounds of a tree or a doubling over n members
    (0 for n = 1). It evaluates to an Integer at a whole number, and stays a function of
    a symbol, so no floating-point logarithm ever decides a count."""

    nargs = 1
    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, n: sympy.Expr) -> sympy.Integer | None:
        if n.is_Integer and n >= 1:
            return sympy.Integer((int(n) - 1).bit_length())  # bits of n − 1: ⌈log2 n⌉
        return None

    def _latex(self, printer: sympy.printing.latex.LatexPrinter) -> str:
        return rf"\left\lceil \log_{{2}} {printer._print(self.args[0])} \right\rceil"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        """A step function: flat wherever it is defined."""
        return sympy.S.Zero


def ceil_log2(n: int) -> int:
    """⌈log2 n⌉ of a whole n ≥ 1, in integers (CeilLog2's value, without SymPy)."""
    return (n - 1).bit_length()


# Each SymPy relation as the Python comparison that decides it on numbers: what the
# exact evaluators (verify's points, ragged columns) apply to a Piecewise's conditions.
COMPARISONS: dict[type, Callable[[object, object], bool]] = {
    sympy.StrictGreaterThan: operator.gt,
    sympy.GreaterThan: operator.ge,
    sympy.StrictLessThan: operator.lt,
    sympy.LessThan: operator.le,
    sympy.Equality: operator.eq,
    sympy.Unequality: operator.ne,
}
