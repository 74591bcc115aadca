"""The verification engine: prove a claim by simplification, or check it exactly at points.

A claim is a list of terms that must all hold, by its ``ClaimKind``: ``lhs == rhs``
(equal), ``lhs >= rhs`` (atleast), ``lhs >= 0`` (nonnegative), ``lhs`` a whole number of at
least ``rhs`` (whole: a chip count, a group size) or ``lhs`` non-increasing in a parallel
degree (nonincreasing). The engine first tries to decide a claim symbolically under the
dimensions' assumptions (positive integers), after replacing each split assumed even
(``⌈S/cp⌉``) by its exact quotient. What SymPy cannot decide (Max, ceil, Piecewise
left over) is checked with exact rational arithmetic at points spread on a log scale
that satisfy the domain's divisibility requirements: such a verdict says "checked at
N points", never "proved". A failing claim carries its simplified, factored residual
and the smallest concrete counterexample found.

Points are evaluated by a small exact evaluator built once per expression (Python ints
and Fractions, the same values SymPy's substitution gives); an expression it does not
know, or a value it cannot give (a division by zero, a symbol without a value), is
evaluated by SymPy instead.
"""

from __future__ import annotations

import heapq
import itertools
import math
import operator
import random
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from functools import lru_cache

import sympy
from sympy.logic.boolalg import BooleanAtom

from shardcost.errors import InternalError

from .divides import Divides
from .functions import COMPARISONS, CeilLog2

LADDER = (1, 2, 3, 4, 7, 8, 16, 31, 64, 100, 128, 257, 1000, 1024, 4096, 10007, 65536)
DEGREE_LADDER = (1, 2, 3, 4, 8, 16)
SMALL = (1, 2, 3, 4, 6, 8)
SMALL_POINTS = 64  # smallest points a sign or a whole-number claim is also checked at
UNDECIDABLE = (sympy.ceiling, sympy.floor, sympy.Max, sympy.Min, sympy.Piecewise)
MAX_EXPANDED_TERMS = 2000  # a "whole" proof expands a polynomial only up to this size


@dataclass(frozen=True)
class Domain:
    """Where claims live: the symbols, the relations applied first, what must divide what."""

    symbols: tuple[sympy.Symbol, ...]
    degrees: frozenset[sympy.Symbol] = frozenset()
    requirements: tuple[Divides, ...] = ()
    substitutions: Mapping[sympy.Symbol, sympy.Expr] = field(default_factory=dict)

    def fix(self, point: dict[sympy.Symbol, int], rules: tuple[Divides, ...]) -> bool:
        """Nudge ``point`` up until every rule holds; False when it cannot."""
        for _ in range(6):
            broken = [r for r in rules if not r.holds_at(point)]
            if not broken:
                return True
            for rule in broken:
                if rule.holds_at(point):
                    continue
                total, parts = _value(rule.total, point), _value(rule.parts, point)
                knob = _linear_knob(rule, self.symbols)
                if knob is None:
                    return False
                point[knob] += (-total) % parts
        return all(r.holds_at(point) for r in rules)

    def sample(
        self, n: int, rules: tuple[Divides, ...], seed: str
    ) -> list[dict[sympy.Symbol, int]]:
        """``n`` points on a log scale (deterministic for a seed) where every rule holds."""
        rng = random.Random(zlib.crc32(seed.encode()))
        found: list[dict[sympy.Symbol, int]] = []
        for _ in range(n * 20):
            point = {
                s: rng.choice(DEGREE_LADDER if s in self.degrees else LADDER) for s in self.symbols
            }
            if self.fix(point, rules):
                found.append(point)
                if len(found) == n:
                    break
        return found

    def smallest(
        self, rules: tuple[Divides, ...], limit: int = 4000
    ) -> Iterator[dict[sympy.Symbol, int]]:
        """Valid points in increasing size, from all ones upward."""
        start = (0,) * len(self.symbols)
        heap = [(0, start)]
        seen = {start}
        while heap and limit:
            _, index = heapq.heappop(heap)
            limit -= 1
            point = {s: SMALL[i] for s, i in zip(self.symbols, index, strict=True)}
            if self.fix(point, rules):
                yield point
            for k in range(len(index)):
                if index[k] + 1 < len(SMALL):
                    nxt = (*index[:k], index[k] + 1, *index[k + 1 :])
                    if nxt not in seen:
                        seen.add(nxt)
                        heapq.heappush(heap, (sum(nxt), nxt))


def _value(expr: sympy.Expr, point: Mapping[sympy.Symbol, int]) -> int:
    value = sympy.sympify(expr).xreplace({s: sympy.Integer(v) for s, v in point.items()})
    return int(value)


def _linear_knob(rule: Divides, symbols: tuple[sympy.Symbol, ...]) -> sympy.Symbol | None:
    """A symbol of ``total`` with coefficient 1 and absent from ``parts``: raising it by
    the remainder makes the division exact."""
    total = sympy.sympify(rule.total)
    for symbol in sorted(total.free_symbols, key=str):
        if (
            symbol in symbols
            and symbol not in sympy.sympify(rule.parts).free_symbols
            and sympy.diff(total, symbol) == 1
        ):
            return symbol
    return None


@dataclass(frozen=True)
class Term:
    """One relation of a claim: ``lhs == rhs``, ``lhs >= rhs``, ``lhs >= 0``, ``lhs`` a
    whole number ``>= rhs``, or ``lhs`` non-increasing."""

    label: str
    lhs: sympy.Expr
    rhs: sympy.Expr = sympy.S.Zero


class ClaimKind(StrEnum):
    """How each term of a claim must hold."""

    EQUAL = "equal"  # lhs == rhs
    ATLEAST = "atleast"  # lhs >= rhs
    NONNEGATIVE = "nonnegative"  # lhs >= 0
    WHOLE = "whole"  # lhs a whole number, at least rhs
    NONINCREASING = "nonincreasing"  # lhs never grows with the claim's variable


class VerdictStatus(StrEnum):
    """What became of a claim."""

    PROVED = "proved"  # symbolically, for every value of the symbols
    CHECKED = "checked"  # exactly, at every one of some points
    FAILED = "failed"  # a term does not hold: residual and counterexample


@dataclass(frozen=True)
class Claim:
    """Something a layout must satisfy, in words and as terms."""

    name: str
    statement: str
    kind: ClaimKind  # a plain string naming one is accepted
    terms: tuple[Term, ...]
    variable: sympy.Symbol | None = None  # the degree, for "nonincreasing"
    even: tuple[Divides, ...] = ()  # splits assumed even
    assumptions: tuple[str, ...] = ()
    shown: sympy.Expr | None = None  # an expression to print with the verdict (a redundancy)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ClaimKind(self.kind))


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim."""

    claim: Claim
    status: VerdictStatus  # a plain string naming one is accepted
    points: int = 0
    term: str = ""  # the failing term's label
    residual: sympy.Expr | None = None
    counterexample: Mapping[sympy.Symbol, int] | None = None
    sides: tuple[Fraction, Fraction] | None = None  # lhs, rhs at the counterexample
    assumed: tuple[str, ...] = ()  # the assumptions the verdict rests on

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", VerdictStatus(self.status))

    @property
    def ok(self) -> bool:
        """Whether the claim holds (proved, or checked at every point)."""
        return self.status is not VerdictStatus.FAILED


def _even(expr: sympy.Expr, even: tuple[Divides, ...]) -> sympy.Expr:
    """``expr`` with each split assumed even replaced by its exact quotient (the busiest
    rank's ceiling and the other ranks' floor, ``Cost.totals``)."""
    exact = {}
    for d in even:
        quotient = sympy.sympify(d.total) / d.parts
        exact |= {sympy.ceiling(quotient): quotient, sympy.floor(quotient): quotient}
        exact[sympy.Mod(d.total, d.parts)] = sympy.S.Zero
    return sympy.sympify(expr).xreplace(exact)


def _undecidable(expr: sympy.Expr) -> bool:
    return any(expr.has(f) for f in UNDECIDABLE)


def _exact(expr: sympy.Expr, point: Mapping[sympy.Symbol, int]) -> Fraction:
    fast = _evaluator(sympy.sympify(expr))
    if fast is not None:
        try:
            return Fraction(fast(point))
        except (ValueError, KeyError, ZeroDivisionError):
            pass  # SymPy says what is wrong (or gives the value)
    value = sympy.sympify(expr).xreplace({s: sympy.Integer(v) for s, v in point.items()})
    if not value.is_Rational:
        raise InternalError(f"{expr} is not a number at {point}: a symbol has no value")
    return Fraction(int(value.p), int(value.q))


# ---------------------------------------------------------------- exact values at points

Evaluator = Callable[[Mapping[sympy.Symbol, int]], object]


_ROUNDING: dict[type, Callable[[Fraction], int]] = {
    sympy.ceiling: math.ceil,
    sympy.floor: math.floor,
}
_EXTREMES: dict[type, Callable[..., object]] = {sympy.Max: max, sympy.Min: min}
_CONNECTIVES: dict[type, Callable[..., bool]] = {sympy.And: all, sympy.Or: any}


@lru_cache(maxsize=8192)
def _evaluator(expr: sympy.Basic) -> Evaluator | None:
    """``expr`` as a function of a point giving its exact value (an int or a Fraction, as
    SymPy's substitution would), built once; None when ``expr`` holds a node it does not
    know. At a point it raises ValueError, KeyError or ZeroDivisionError where SymPy
    would give no rational number (or a value this evaluator does not model)."""
    try:
        return _build(expr)
    except (TypeError, ValueError):  # a node it does not know (or of an unexpected shape)
        return None


def _build(expr: sympy.Basic) -> Evaluator:
    """The evaluator of one node, from its arguments'; TypeError for an unknown node."""
    if expr.is_Integer:
        whole = int(expr)
        return lambda _: whole
    if expr.is_Rational:
        fraction = Fraction(int(expr.p), int(expr.q))
        return lambda _: fraction
    if expr.is_Symbol:
        return operator.itemgetter(expr)
    if isinstance(expr, BooleanAtom):
        truth = bool(expr)
        return lambda _: truth
    kind = type(expr)
    parts = [_build(a) for a in expr.args] if kind is not sympy.Piecewise else []
    if kind is sympy.Add:
        return lambda p: sum(f(p) for f in parts)
    if kind is sympy.Mul:
        return lambda p: math.prod(f(p) for f in parts)
    if kind is sympy.Pow:
        return _power(*parts)
    if kind in _ROUNDING:
        (inner,), rounding = parts, _ROUNDING[kind]
        return lambda p: rounding(inner(p))
    if kind in _EXTREMES:
        pick = _EXTREMES[kind]
        return lambda p: pick(f(p) for f in parts)
    if kind in COMPARISONS:
        (lhs, rhs), compare = parts, COMPARISONS[kind]
        return lambda p: compare(lhs(p), rhs(p))
    if kind in _CONNECTIVES:
        join = _CONNECTIVES[kind]
        return lambda p: join(f(p) for f in parts)
    if kind is sympy.Not:
        (inner,) = parts
        return lambda p: not inner(p)
    if kind is CeilLog2:
        (inner,) = parts
        return lambda p: _ceil_log2(inner(p))
    if kind is sympy.Piecewise:
        return _piecewise([(_build(e), _build(c)) for e, c in expr.args])
    raise TypeError(f"no exact evaluator for {kind.__name__}")


def _power(base: Evaluator, exponent: Evaluator) -> Evaluator:
    """base ** n where n is whole at the point: exact, a Fraction when n < 0
    (ZeroDivisionError at 0); any other exponent is left to SymPy."""

    def value(p: Mapping[sympy.Symbol, int]) -> object:
        n = _integer(exponent(p))
        return base(p) ** n if n >= 0 else Fraction(1) / base(p) ** -n

    return value


def _ceil_log2(value: object) -> int:
    """CeilLog2 where it evaluates: at a whole number of at least 1."""
    n = _integer(value)
    if n < 1:
        raise ValueError("ceil_log2 below 1")
    return (n - 1).bit_length()


def _integer(value: object) -> int:
    """``value`` as an int when it is a whole number; ValueError otherwise."""
    if isinstance(value, Fraction) and value.denominator == 1:
        return value.numerator
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("not a whole number")


def _piecewise(pieces: list[tuple[Evaluator, Evaluator]]) -> Evaluator:
    """The value of the first piece whose condition holds."""

    def value(p: Mapping[sympy.Symbol, int]) -> object:
        for piece, condition in pieces:
            if condition(p):
                return piece(p)
        raise ValueError("no piece applies")

    return value


def _zero(expr: sympy.Expr) -> bool | None:
    """True/False when SymPy decides ``expr == 0``; None when it cannot."""
    if _undecidable(expr):
        expr = sympy.expand(expr)  # what cancels with ceilings, max ... as atoms, first
        simplified = 0 if expr == 0 else sympy.simplify(sympy.piecewise_fold(expr))
        return True if simplified == 0 else None
    return sympy.cancel(sympy.expand(expr)) == 0


def residual(expr: sympy.Expr) -> sympy.Expr:
    """A difference simplified and factored for people to read."""
    expr = sympy.cancel(sympy.expand(expr)) if not _undecidable(expr) else sympy.simplify(expr)
    return sympy.factor(expr)


def decide(claim: Claim, domain: Domain, points: int = 48) -> Verdict:
    """Prove ``claim`` symbolically, or check it at ``points`` valid points."""
    subs = dict(domain.substitutions)
    rules = (*domain.requirements, *claim.even)
    terms = [
        Term(t.label, sympy.sympify(t.lhs).xreplace(subs), sympy.sympify(t.rhs).xreplace(subs))
        for t in claim.terms
    ]
    # First with every ceiling an opaque atom: a proof then needs no split to be even.
    even_words = {d.why for d in claim.even}
    general = tuple(a for a in claim.assumptions if a not in even_words)
    if claim.even and all(_prove(claim, term, even=False) for term in terms):
        return Verdict(claim, VerdictStatus.PROVED, assumed=general)
    if all(_prove(claim, term) for term in terms):
        return Verdict(claim, VerdictStatus.PROVED, assumed=claim.assumptions)
    sample = domain.sample(points, rules, claim.name)
    if claim.kind in (ClaimKind.NONNEGATIVE, ClaimKind.WHOLE):
        # a sign or a whole number tends to break at small values (S = 2·B): try those too
        sample = [*itertools.islice(domain.smallest(rules), SMALL_POINTS), *sample]
    for term in terms:
        bad = next((p for p in sample if not _holds(claim, term, p, domain)), None)
        if bad is not None:
            return _failure(claim, term, domain, rules, bad)
    return Verdict(claim, VerdictStatus.CHECKED, points=len(sample), assumed=claim.assumptions)


def _prove(claim: Claim, term: Term, *, even: bool = True) -> bool:
    lhs, rhs = (
        (term.lhs, term.rhs)
        if not even
        else (_even(term.lhs, claim.even), _even(term.rhs, claim.even))
    )
    if claim.kind is ClaimKind.EQUAL:
        return _zero(lhs - rhs) is True
    if claim.kind is ClaimKind.ATLEAST:
        return bool(sympy.piecewise_fold(lhs - rhs).is_nonnegative)
    if claim.kind is ClaimKind.NONNEGATIVE:
        return bool(sympy.piecewise_fold(lhs).is_nonnegative)
    if claim.kind is ClaimKind.WHOLE:
        return _whole(sympy.sympify(lhs), sympy.sympify(rhs))
    assert claim.variable is not None
    if _undecidable(lhs):
        return False
    return bool(sympy.diff(lhs, claim.variable).is_nonpositive)


def _holds(claim: Claim, term: Term, point: dict[sympy.Symbol, int], domain: Domain) -> bool:
    if claim.kind is ClaimKind.EQUAL:
        return _exact(term.lhs, point) == _exact(term.rhs, point)
    if claim.kind is ClaimKind.ATLEAST:
        return _exact(term.lhs, point) >= _exact(term.rhs, point)
    if claim.kind is ClaimKind.NONNEGATIVE:
        return _exact(term.lhs, point) >= 0
    if claim.kind is ClaimKind.WHOLE:
        value = _exact(term.lhs, point)
        return value.denominator == 1 and value >= _exact(term.rhs, point)
    assert claim.variable is not None
    bigger = dict(point)
    bigger[claim.variable] = point[claim.variable] * 2
    rules = (*domain.requirements, *claim.even)
    if not all(r.holds_at(bigger) for r in rules):
        return True  # the doubled degree is not a valid layout here: nothing to compare
    return _exact(term.lhs, bigger) <= _exact(term.lhs, point)


def _whole(expr: sympy.Expr, least: sympy.Expr) -> bool:
    """Whether ``expr`` is provably a whole number of at least ``least`` (a constant) for
    every positive integer value of its symbols.

    Proved when ``expr`` is a polynomial with integer coefficients (so a whole number) whose
    every coefficient is non-negative once each symbol x is written 1 + y (y >= 0): it then
    grows with each symbol, and its least value is at all ones. A product of dimensions and
    positive whole constants is such a polynomial; so is ``cp + tp - 1``. Anything else
    (a division, ceil, max ...) is left to the points.
    """
    if not least.is_Integer:
        return False
    if not expr.free_symbols:
        return bool(expr.is_Integer and expr >= least)
    symbols = sorted(expr.free_symbols, key=str)
    if _undecidable(expr) or not expr.is_polynomial(*symbols):
        return False
    if _terms(expr, 2) > MAX_EXPANDED_TERMS:
        return False  # too large to expand here: the points decide
    shifted = sympy.Poly(sympy.expand(expr.xreplace({s: s + 1 for s in symbols})), *symbols)
    if not shifted.domain.is_ZZ:
        return False
    return (
        all(c >= 0 for c in shifted.coeffs()) and shifted.eval(dict.fromkeys(symbols, 0)) >= least
    )


def _terms(expr: sympy.Expr, per_symbol: int) -> int:
    """An upper bound on the number of terms of ``expr`` expanded, where each symbol stands
    for ``per_symbol`` terms; stops counting past MAX_EXPANDED_TERMS."""
    cap = MAX_EXPANDED_TERMS + 1
    if expr.is_Symbol:
        return per_symbol
    if expr.is_Add:
        return min(cap, sum(_terms(a, per_symbol) for a in expr.args))
    if expr.is_Mul:
        count = 1
        for a in expr.args:
            count = min(cap, count * _terms(a, per_symbol))
        return count
    if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
        base, count = _terms(expr.base, per_symbol), 1
        for _ in range(int(expr.exp)):
            if count >= cap or base == 1:
                break
            count = min(cap, count * base)
        return count
    return 1


def _parallel(expr: sympy.Expr, degrees: frozenset[sympy.Symbol]) -> sympy.Expr:
    """``expr`` with every "only when the group has more than one chip" branch taken."""

    def branch(*args: tuple[sympy.Expr, sympy.Basic]) -> sympy.Expr:
        (value, condition), *_ = args
        if isinstance(condition, sympy.Gt) and condition.lhs in degrees and condition.rhs == 1:
            return value
        return sympy.Piecewise(*args)

    return sympy.sympify(expr).replace(sympy.Piecewise, branch)


def _failure(
    claim: Claim,
    term: Term,
    domain: Domain,
    rules: tuple[Divides, ...],
    found: dict[sympy.Symbol, int] | None = None,
) -> Verdict:
    """A failed verdict with the residual and the smallest counterexample (else ``found``,
    a failing point of the sample, when no small point fails)."""
    diff = _even(term.lhs, claim.even) - _even(term.rhs, claim.even)
    signed = claim.kind in (ClaimKind.EQUAL, ClaimKind.ATLEAST)
    shown = residual(_parallel(diff, domain.degrees)) if signed else None
    relevant = (sympy.sympify(term.lhs) - term.rhs).free_symbols
    small = (p for p in domain.smallest(rules) if not _holds(claim, term, p, domain))
    point = next(small, found)
    if point is None:
        return Verdict(claim, VerdictStatus.FAILED, 0, term.label, shown, assumed=claim.assumptions)
    sides = (_exact(term.lhs, point), _exact(term.rhs, point))
    shown_point = {s: v for s, v in point.items() if s in relevant}
    return Verdict(
        claim, VerdictStatus.FAILED, 0, term.label, shown, shown_point, sides, claim.assumptions
    )


def verdict_counts(verdicts: list[Verdict]) -> dict[VerdictStatus, int]:
    """How many verdicts are proved, checked at points, and failed."""
    counts = dict.fromkeys(VerdictStatus, 0)
    for v in verdicts:
        counts[v.status] += 1
    return counts
