"""The verification engine on small claims whose answers are known by hand."""

from __future__ import annotations

import sympy

from shardcost.symbolic.dimensions import B, S, cp, tp
from shardcost.symbolic.verify import Claim, Divides, Domain, Term, decide

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
