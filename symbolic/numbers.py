"""Exact evaluation of expressions at numbers: counts as ints, times as floats."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

import sympy

from shardcost.errors import InternalError

Number = int | Fraction


def substitution(values: Mapping[sympy.Symbol, Number]) -> dict[sympy.Symbol, sympy.Expr]:
    """Values as exact SymPy numbers, ready for ``xreplace``."""
    return {
        symbol: sympy.Rational(v.numerator, v.denominator)
        if isinstance(v, Fraction)
        else sympy.Integer(v)
        for symbol, v in values.items()
    }


def exact(expr: sympy.Expr, subs: Mapping[sympy.Symbol, sympy.Expr]) -> sympy.Expr:
    """``expr`` evaluated exactly; InternalError when a symbol is left over."""
    value = sympy.sympify(expr).xreplace(dict(subs))
    if value.free_symbols or not value.is_number:
        missing = ", ".join(sorted(str(s) for s in value.free_symbols))
        raise InternalError(f"cannot evaluate {expr}: no value for {missing}")
    return value


def count(expr: sympy.Expr, subs: Mapping[sympy.Symbol, sympy.Expr]) -> int:
    """``expr`` evaluated as an exact Python int; InternalError if it is not whole."""
    value = exact(expr, subs)
    if not value.is_Integer:
        raise InternalError(f"count {expr} evaluated to {value}, which is not a whole number")
    return int(value)


def ratio(expr: sympy.Expr, subs: Mapping[sympy.Symbol, sympy.Expr]) -> Fraction:
    """``expr`` evaluated as an exact Fraction (times, ratios)."""
    value = exact(expr, subs)
    if not value.is_Rational:
        raise InternalError(f"{expr} evaluated to {value}, which is not rational")
    return Fraction(int(value.p), int(value.q))
