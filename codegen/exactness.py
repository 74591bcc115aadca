"""Whole-number arithmetic in float64 and int64 that is exact, or knows where it may not be.

A count's closed form is rewritten (``division_form``) so that no array operation can
round a count the wrong way: every quotient is one division of a whole numerator by a
whole denominator (``Quotient(n, d)``, never a product with a reciprocal), and a ceiling
or floor of a quotient is ``CeilDiv(n, d)`` / ``FloorDiv(n, d)`` of whole numbers.

Why that is exact in float64: + - * on whole numbers below 2^53 are exact; the correctly
rounded quotient of two such numbers is the exact quotient when that is whole, and lies
strictly between the same two whole numbers as the exact quotient otherwise (a quotient
within half an ulp of a whole number ``q`` would need ``n ≥ 2^53``), so ceilings and
floors land right too.

What is left is to know when a value reached 2^53 (int64: 2^63). ``bounds`` lists the
expressions whose magnitudes bound every intermediate value: each input, each numerator
and denominator, each product, and each sum by its positive and its negative part. The
first operation whose exact result reaches the limit yields a computed value at or past
it (rounding is monotone and the limit is representable); later products of non-zero
whole numbers and sums of like-signed terms only grow, so the bound that contains it
reaches the limit too. A product that a zero factor brings to 0 is exactly 0 anyway.
"""

from __future__ import annotations

import sympy


class Quotient(sympy.Function):
    """``n / d`` for whole ``n`` and ``d``, printed as one division."""

    nargs = 2


class CeilDiv(sympy.Function):
    """``⌈n / d⌉`` for whole ``n`` and positive whole ``d``."""

    nargs = 2


class FloorDiv(sympy.Function):
    """``⌊n / d⌋`` for whole ``n`` and positive whole ``d``."""

    nargs = 2


class Rem(sympy.Function):
    """``n mod d`` for whole ``n`` and positive whole ``d``: one atom, so that expanding a
    product never multiplies ``n`` out (an uneven split's ranks with one more)."""

    nargs = 2


def remainder(num: sympy.Expr, den: sympy.Expr) -> sympy.Expr:
    """``num mod den`` as printed: ``num − den·⌊num / den⌋``, no intermediate above num."""
    return sympy.Add(num, sympy.Mul(-1, den, FloorDiv(num, den), evaluate=False), evaluate=False)


def division_form(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` as whole-number arithmetic: one ``Quotient`` outermost where it has a
    denominator, ``CeilDiv``/``FloorDiv`` for ceilings and floors, the same inside every
    Max, Min and Piecewise branch."""
    expr = sympy.sympify(expr)
    inner = _atoms_rewritten(expr)
    num, den = sympy.fraction(sympy.together(inner))
    num, den = sympy.expand(num), sympy.expand(den)
    return num if den == 1 else Quotient(num, den)


def _atoms_rewritten(expr: sympy.Expr) -> sympy.Expr:
    """Every ceiling, floor, Max, Min and Piecewise in ``expr`` (outermost first) rewritten."""

    def whole(e: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
        num, den = sympy.fraction(sympy.together(_atoms_rewritten(e)))
        return sympy.expand(num), sympy.expand(den)

    if expr.is_Atom:
        return expr
    if isinstance(expr, (sympy.ceiling, sympy.floor)):
        num, den = whole(expr.args[0])
        if den == 1:
            return num
        return (CeilDiv if isinstance(expr, sympy.ceiling) else FloorDiv)(num, den)
    if isinstance(expr, sympy.Mod):
        return Rem(*(division_form(a) for a in expr.args))
    if isinstance(expr, (sympy.Max, sympy.Min)):
        return expr.func(*(division_form(a) for a in expr.args), evaluate=False)
    if isinstance(expr, sympy.Piecewise):
        return sympy.Piecewise(*((division_form(v), c) for v, c in expr.args), evaluate=False)
    if isinstance(expr, (sympy.Add, sympy.Mul, sympy.Pow)):
        return expr.func(*(_atoms_rewritten(a) for a in expr.args))
    return expr


def bounds(expr: sympy.Expr) -> list[sympy.Expr]:
    """Expressions bounding every intermediate value of ``expr`` (in division form) as
    printed: a row is exact when all of them are below the limit. Each is non-negative
    (a sum or product of inputs ≥ 1, quotients and payloads ≥ 0)."""
    found: dict[sympy.Expr, None] = {}
    _collect(sympy.sympify(expr), found)
    return list(found)


def maximal(candidates: list[sympy.Expr]) -> list[sympy.Expr]:
    """``candidates`` less each product that another product provably exceeds: the same
    factors, to no higher powers, times inputs (each ≥ 1) and a coefficient no smaller.
    Sums are kept: they are never compared."""
    kept = []
    for i, small in enumerate(candidates):
        if not any(j != i and _at_least(big, small) for j, big in enumerate(candidates)):
            kept.append(small)
    return kept


def _factors(expr: sympy.Expr) -> tuple[sympy.Expr, dict[sympy.Expr, sympy.Expr]] | None:
    """A product as (coefficient, {factor: power}); None for anything else."""
    if not isinstance(expr, (sympy.Mul, sympy.Pow, sympy.Symbol)):
        return None
    coeff, rest = expr.as_coeff_Mul()
    return coeff, rest.as_powers_dict()


def _at_least(big: sympy.Expr, small: sympy.Expr) -> bool:
    if big == small:
        return False
    b, s = _factors(big), _factors(small)
    if b is None or s is None or b[0] < s[0]:
        return False
    (_, big_powers), (_, small_powers) = b, s
    for factor, power in small_powers.items():
        if not (power.is_Integer and big_powers.get(factor, 0) >= power):
            return False
    extra = {f for f, p in big_powers.items() if p != small_powers.get(f, 0)}
    return all(f.is_Symbol for f in extra)  # an input: ≥ 1


def _collect(expr: sympy.Basic, found: dict[sympy.Expr, None]) -> None:
    if expr.is_Number:
        return
    if expr.is_Symbol:
        found[expr] = None
        return
    if isinstance(expr, sympy.Piecewise):
        for value, _ in expr.args:
            _collect(value, found)
        return
    if isinstance(expr, sympy.Add):
        plus = [t for t in expr.args if not t.as_coeff_Mul()[0].is_negative]
        minus = [-t for t in expr.args if t.as_coeff_Mul()[0].is_negative]
        for part in (plus, minus):
            if part:
                found[sympy.Add(*part)] = None
        for term in expr.args:
            for factor in sympy.Mul.make_args(term):
                _collect_inside(factor, found)
        return
    if isinstance(expr, (sympy.Mul, sympy.Pow)):
        coeff, rest = expr.as_coeff_Mul()
        found[abs(coeff) * rest] = None
        for factor in sympy.Mul.make_args(rest):
            _collect_inside(factor, found)
        return
    for arg in expr.args:  # Quotient, CeilDiv, FloorDiv, Max, Min: their operands
        _collect(arg, found)


def _collect_inside(factor: sympy.Basic, found: dict[sympy.Expr, None]) -> None:
    """The bounds a factor of a product or a term of a sum adds beyond the product's own."""
    if factor.is_Number or factor.is_Symbol:
        if factor.is_Symbol:
            found[factor] = None
        return
    if isinstance(factor, sympy.Pow):
        _collect_inside(factor.base, found)
        return
    _collect(factor, found)
