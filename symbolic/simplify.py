"""Simplification helpers: readable closed forms of cost expressions."""

from __future__ import annotations

import sympy


def closed_form(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` expanded, then factored: the readable form reports show.

    Piecewise branches (e.g. "no collective on one chip") are tidied one by one.
    """
    expr = sympy.piecewise_fold(sympy.sympify(expr))
    if isinstance(expr, sympy.Piecewise):
        return sympy.Piecewise(*((closed_form(e), cond) for e, cond in expr.args))
    if isinstance(expr, sympy.Add):
        pieces = [term for term in expr.args if isinstance(term, sympy.Piecewise)]
        if pieces:
            rest = expr - sympy.Add(*pieces)
            return sympy.Add(closed_form(rest), *(closed_form(p) for p in pieces))
    return sympy.factor(sympy.expand(expr))
