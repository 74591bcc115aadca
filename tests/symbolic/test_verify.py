"""The verification engine on small claims whose answers are known by hand."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction

import pytest
import sympy

from shardcost.errors import InternalError
from shardcost.symbolic.dimensions import B, S, cp, tp
from shardcost.symbolic.functions import CeilLog2
from shardcost.symbolic.verify import (
    Claim,
    ClaimKind,
    Divides,
    Domain,
    Term,
    VerdictStatus,
    _evaluator,
    _exact,
    decide,
    verdict_counts,
)

DOMAIN = Domain((B, S, cp), frozenset({cp}))
EVEN = (Divides(S, cp, "context_parallel divides seq_len"),)


def test_an_identity_is_proved() -> None:
    # cp * (B*S/cp) = B*S for every positive B, S, cp
    claim = Claim("c", "", "equal", (Term("x", cp * (B * S / cp), B * S),))
    assert decide(claim, DOMAIN).status == "proved"


def test_an_even_split_is_proved_under_its_assumption() -> None:
    claim = Claim("c", "", "equal", (Term("x", cp * B * sympy.ceiling(S / cp), B * S),), even=EVEN)
    assert decide(claim, DOMAIN).status == "proved"


def test_a_false_identity_fails_with_residual_and_smallest_counterexample() -> None:
    # forgot to divide: cp * (B*S) - B*S = B*S*(cp - 1); smallest failure at B=S=1, cp=2
    verdict = decide(Claim("c", "", "equal", (Term("x", cp * B * S, B * S),)), DOMAIN)
    assert verdict.status == "failed"
    assert verdict.residual == B * S * (cp - 1)
    assert verdict.counterexample == {B: 1, S: 1, cp: 2}
    assert verdict.sides == (2, 1)


def test_what_sympy_cannot_decide_is_checked_at_points_not_proved() -> None:
    # cp * ceil(S/cp) >= S holds for all positive integers, but SymPy cannot prove it
    claim = Claim("c", "", "atleast", (Term("x", cp * sympy.ceiling(S / cp), S),))
    verdict = decide(claim, DOMAIN, points=40)
    assert verdict.status == "checked"
    assert verdict.points == 40


def test_a_false_inequality_is_caught_at_points() -> None:
    # cp * floor(S/cp) >= S is false whenever cp does not divide S: S=1, cp=2 gives 0 < 1
    claim = Claim("c", "", "atleast", (Term("x", cp * sympy.floor(S / cp), S),))
    verdict = decide(claim, DOMAIN)
    assert verdict.status == "failed"
    assert verdict.counterexample == {S: 1, cp: 2}


def test_monotonicity() -> None:
    down = Claim("c", "", "nonincreasing", (Term("x", B * S / cp + B),), variable=cp)
    assert decide(down, DOMAIN).status == "proved"
    up = Claim("c", "", "nonincreasing", (Term("x", B * S * cp),), variable=cp)
    assert decide(up, DOMAIN).status == "failed"


def test_points_respect_divisibility_requirements() -> None:
    domain = Domain((S, cp, tp), frozenset({cp, tp}), (Divides(S, cp * tp),))
    points = domain.sample(30, domain.requirements, "seed")
    assert len(points) == 30
    assert all(p[S] % (p[cp] * p[tp]) == 0 for p in points)
    assert points == domain.sample(30, domain.requirements, "seed")  # deterministic


def test_a_product_of_dimensions_is_whole_and_proved() -> None:
    # cp*tp, 2*cp and cp + tp - 1 (= 1 + (cp - 1) + (tp - 1)) are whole numbers >= 1
    domain = Domain((cp, tp), frozenset({cp, tp}))
    for expr in (cp * tp, 2 * cp, cp + tp - 1, sympy.Integer(1)):
        claim = Claim("w", "", "whole", (Term("chips", expr, sympy.S.One),))
        assert decide(claim, domain).status == "proved", expr


def test_what_is_not_a_whole_number_is_refuted() -> None:
    # constants: no point needed; S/2 is 1/2 at S = 1; cp - 1 is 0 at cp = 1; cp*tp - 2 is
    # -1 at cp = tp = 1
    domain = Domain((S, cp, tp), frozenset({cp, tp}))
    cases = [
        (sympy.Integer(0), {}, 0),
        (sympy.Integer(-1), {}, -1),
        (sympy.Rational(1, 2), {}, sympy.Rational(1, 2)),
        (S / 2, {S: 1}, sympy.Rational(1, 2)),
        (cp - 1, {cp: 1}, 0),
        (cp * tp - 2, {cp: 1, tp: 1}, -1),
    ]
    for expr, point, value in cases:
        verdict = decide(Claim("w", "", "whole", (Term("g", expr, sympy.S.One),)), domain)
        assert verdict.status == "failed", expr
        assert (verdict.counterexample, verdict.sides) == (point, (value, 1)), expr


def test_a_whole_number_sympy_cannot_prove_is_checked() -> None:
    # ceil(S/cp) >= 1 for every positive S, cp: whole, but not a polynomial; 64 smallest
    # points and 40 on the log scale
    claim = Claim("w", "", "whole", (Term("g", sympy.ceiling(S / cp), sympy.S.One),))
    verdict = decide(claim, DOMAIN, points=40)
    assert (verdict.status, verdict.points) == ("checked", 64 + 40)


def test_a_sign_that_breaks_at_a_small_point_is_found() -> None:
    # (S - 2*B)^2 - 1 is -1 only where S = 2*B: the smallest such point is B = 1, S = 2
    claim = Claim("n", "", "nonnegative", (Term("x", (S - 2 * B) ** 2 - 1),))
    verdict = decide(claim, DOMAIN)
    assert verdict.status == "failed"
    assert (verdict.counterexample, verdict.sides) == ({B: 1, S: 2}, (-1, 0))


def test_a_failure_only_at_large_points_still_shows_one() -> None:
    # 1000 - S < 0 needs S > 1000: no small point fails, a sampled one (S >= 1024) does
    claim = Claim("n", "", "nonnegative", (Term("x", 1000 - S),))
    verdict = decide(claim, DOMAIN)
    assert verdict.status == "failed" and verdict.counterexample is not None
    s = verdict.counterexample[S]
    assert s > 1000 and verdict.sides == (1000 - s, 0)


def test_kinds_and_statuses_are_enums_that_read_as_their_words() -> None:
    claim = Claim("c", "", "equal", (Term("x", cp * (B * S / cp), B * S),))
    assert claim.kind is ClaimKind.EQUAL
    verdict = decide(claim, DOMAIN)
    assert verdict.status is VerdictStatus.PROVED
    # a StrEnum is its word: text and JSON output do not change
    assert verdict.status == "proved" and f"{verdict.status}" == "proved"
    assert json.dumps({"status": verdict.status}) == '{"status": "proved"}'
    assert verdict_counts([verdict]) == {"proved": 1, "checked": 0, "failed": 0}
    with pytest.raises(ValueError, match="'equals' is not a valid ClaimKind"):
        Claim("c", "", "equals", ())


# Every node the exact evaluator knows, alone and nested: at each point it must give what
# SymPy's substitution gives.
EVALUATED = [
    B * S / cp + sympy.Rational(3, 2),  # sums, products, a division, a fraction
    cp * sympy.ceiling(S / cp) - S,
    sympy.floor(S / cp) - sympy.floor(-S / 3),  # rounding of negatives
    sympy.Max(B, S / 2) - sympy.Min(cp, 3),
    sympy.Piecewise((S / cp, sympy.Gt(cp, 1)), (0, True)),
    sympy.Piecewise(
        (B, sympy.And(sympy.Ge(S, 4), sympy.Ne(cp, 2))),
        (S, sympy.Or(sympy.Lt(B, 2), sympy.Eq(cp, 3))),
        (2, sympy.Not(sympy.Le(S, B))),
        (1, True),
    ),
    CeilLog2(cp * B),
    (1 - sympy.Min(B, cp) / S) ** sympy.Min(4, B * S),  # an exponent whole only at points
    (S - 2 * B) ** 2 - 1,
    cp**-2,
]


@pytest.mark.parametrize("expr", EVALUATED, ids=[str(e) for e in EVALUATED])
def test_points_are_evaluated_as_sympy_substitutes(expr: sympy.Expr) -> None:
    assert _evaluator(expr) is not None  # no fallback: the evaluator itself is checked
    points = [*itertools.islice(DOMAIN.smallest(()), 40), *DOMAIN.sample(20, (), "values")]
    for point in points:
        value = expr.xreplace({s: sympy.Integer(v) for s, v in point.items()})
        assert _exact(expr, point) == Fraction(int(value.p), int(value.q)), point


def test_what_the_evaluator_cannot_give_sympy_gives_or_refuses() -> None:
    # sqrt(S): the exponent 1/2 is left to SymPy, which gives 2 at S = 4 and no rational
    # number at S = 2; B/(S - 1) at S = 1 divides by zero; Abs is not a node it knows
    assert _exact(sympy.sqrt(S), {S: 4}) == 2
    with pytest.raises(InternalError, match="is not a number"):
        _exact(sympy.sqrt(S), {S: 2})
    with pytest.raises(InternalError, match="is not a number"):
        _exact(B / (S - 1), {B: 1, S: 1})
    with pytest.raises(InternalError, match="a symbol has no value"):
        _exact(B + S, {B: 1})
    assert _evaluator(sympy.Abs(B - S)) is None
    assert _exact(sympy.Abs(B - S), {B: 1, S: 3}) == 2
