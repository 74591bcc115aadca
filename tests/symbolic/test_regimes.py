"""Regimes: branches of max, min and piecewise terms, even splits, positive roots."""

from __future__ import annotations

import sympy

from shardcost.symbolic.regimes import (
    branches,
    closed_root,
    decided,
    even_splits,
    positive_roots,
    signed,
)

x = sympy.Symbol("x", positive=True)
a = sympy.Symbol("a", positive=True)


def test_every_branch_with_its_condition() -> None:
    found = branches(sympy.Max(x, 3) + sympy.Min(x, 5), x, {x: "x wins"})
    assert len(found) == 4  # 2 × 2
    exprs = {expr for expr, _ in found}
    assert exprs == {2 * x, x + 5, 3 + x, 8}
    (chosen,) = [c for expr, c in found if expr == 2 * x]
    assert [b.words for b in chosen] == ["x wins", "x wins"]
    assert [b.named for b in chosen] == [True, True]


def test_a_piecewise_branch_excludes_the_ones_before() -> None:
    (first, _), (second, rest) = branches(sympy.Piecewise((x, x > 1), (0, True)), x, {})
    assert first == x and second == 0
    assert rest[0].words == "x ≤ 1" and not rest[0].named


def test_even_splits_and_roots() -> None:
    replaced: dict = {}
    assert even_splits(sympy.ceiling(a / x) + sympy.ceiling(a / 3), x, replaced) == (
        a / x + sympy.ceiling(a / 3)
    )
    assert replaced == {sympy.ceiling(a / x): a / x}
    # x² − 2x − 5 = 0: x = 1 ± √6, of which 1 + √6 is positive
    assert positive_roots(x**2 - 2 * x - 5, x) == [1 + sympy.sqrt(6)]
    assert closed_root(x - a / 2, x, {a: sympy.Integer(8)}, sympy.Integer(4)) == a / 2


def test_decided_and_signed() -> None:
    assert decided(sympy.sqrt(2) > sympy.Rational(141, 100)) is True
    assert decided(x > 1) is None
    expr = sympy.factor(-2 * a * (x - a))  # -2·a·(x - a), printed as 2·a·(a − x)
    assert sympy.simplify(signed(expr) - expr) == 0
