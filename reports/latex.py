"""LaTeX for derivation reports: formulas, and the same formulas with numbers in.

A small subclass of SymPy's LaTeX printer: powers of ten print as ``10^{k}``, sums of
derivation steps keep the order the steps were written in, and "with numbers"
printing names every symbol by its value, so the structure of the formula stays
exactly the structure that was evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

import sympy
from sympy.printing.latex import LatexPrinter

from shardcost.formulas.hardware import NUMERIC_FIELDS
from shardcost.symbolic import DIMENSIONS, Derivation


class _Printer(LatexPrinter):
    def __init__(self, order: Mapping[sympy.Symbol, int], **settings: object) -> None:
        super().__init__(settings)
        self._step_order = order

    def _print_Integer(self, expr: sympy.Integer) -> str:
        n = int(expr)
        text = str(abs(n))
        if abs(n) >= 1000 and text.rstrip("0") == "1":
            return ("-" if n < 0 else "") + f"10^{{{len(text) - 1}}}"
        return self._print_Rational(expr)  # LatexPrinter prints integers as rationals

    def _print_Add(self, expr: sympy.Add, order: str | None = None) -> str:
        if all(arg in self._step_order for arg in expr.args):
            terms = sorted(expr.args, key=self._step_order.__getitem__)
            return " + ".join(self._print(term) for term in terms)
        return super()._print_Add(expr, order)


def latex_names(derivation: Derivation) -> dict[sympy.Symbol, str]:
    """How every dimension, hardware field and step is written in LaTeX."""
    names = {dim.symbol: dim.latex for dim in DIMENSIONS}
    names |= {field.symbol: field.latex for field in NUMERIC_FIELDS}
    names |= dict(derivation.latex_names)
    return names


def _order(derivation: Derivation) -> dict[sympy.Symbol, int]:
    return {step.symbol: i for i, step in enumerate(derivation.steps)}


def formula(expr: sympy.Expr, derivation: Derivation, extra: Mapping[sympy.Symbol, str]) -> str:
    """``expr`` as LaTeX, in the derivation's symbols."""
    names = latex_names(derivation) | dict(extra)
    return _Printer(_order(derivation), symbol_names=names, mul_symbol="dot").doprint(expr)


def number(value: sympy.Expr | Fraction | int) -> str:
    """A value as LaTeX: integers as the seeds write them in arithmetic (separators from
    six digits up), others to 4 significant digits."""
    if isinstance(value, sympy.Basic):
        value = Fraction(int(value.p), int(value.q)) if value.is_Rational else float(value)
    if isinstance(value, Fraction) and value.denominator == 1:
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}".replace(",", "{,}") if abs(value) >= 100_000 else str(value)
    return significant(float(value))


def significant(x: float, digits: int = 4) -> str:
    """``x`` with ``digits`` significant digits and no exponent (1.000, 0.0003566, 1234)."""
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if math.floor(math.log10(abs(round(x, digits - 1 - magnitude)))) > magnitude:
        magnitude += 1  # rounding carried into the next digit (999.97 -> 1000)
    return f"{x:.{max(0, digits - 1 - magnitude)}f}"


def with_numbers(
    expr: sympy.Expr,
    derivation: Derivation,
    values: Mapping[sympy.Symbol, sympy.Expr],
    unknown: Mapping[sympy.Symbol, str] | None = None,
) -> str:
    """``expr`` as LaTeX with every symbol replaced by its value, structure unchanged;
    symbols without a value are written as ``unknown`` names them.

    A Piecewise (e.g. "no collective on one chip") is shown as the branch in force.
    """
    expr = _active_branches(expr, values)
    names = dict(unknown or {})
    names |= {symbol: number(values[symbol]) for symbol in expr.free_symbols if symbol in values}
    return _Printer(_order(derivation), symbol_names=names, mul_symbol="times").doprint(expr)


def _active_branches(expr: sympy.Expr, values: Mapping[sympy.Symbol, sympy.Expr]) -> sympy.Expr:
    if not expr.has(sympy.Piecewise):
        return expr
    replacements = {}
    for piece in expr.atoms(sympy.Piecewise):
        for branch, condition in piece.args:
            if bool(sympy.sympify(condition).xreplace(dict(values))):
                replacements[piece] = branch
                break
    return expr.xreplace(replacements)
