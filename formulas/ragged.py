"""Ragged decode batches: every request has its own past length.

A decode step's cost is a sum over requests, never batch × longest. Each derivation
step is of one ``StepKind``:

- constant: independent of the batch (weights, head counts);
- affine:   ``m0 + B · m1(S_past)``, with ``m0`` free of the lengths (FLOPs, KV bytes,
            activations, payloads, most times): for lengths L_1 .. L_n it is
            ``m0 + Σ_i m1(L_i)``, a sum over the request lengths;
- per request: a length (S_k = S_past + T), which has one value per request;
- derived:  anything else (the wall clock's max), computed from the steps before it.

Symbolically the affine steps are ``m0 + Sum(m1(S_past[i]), (i, 1, B))``.

``evaluate`` computes each step once per *distinct* length, on numpy arrays of exact
integers (``Column``: int64 numerators over one common denominator, Python ints where a
value may pass 2^62), and each sum as counts · values: a batch of 100,000 requests costs a
few array operations per step, not 100,000 SymPy evaluations. ``evaluate_each`` is the
plain definition, one SymPy evaluation per request; the two agree exactly (the tests hold
them to it), and a step the array path cannot evaluate falls back to it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from functools import cache, reduce
from typing import Any, overload

import sympy

from shardcost.errors import InputError
from shardcost.symbolic import Derivation
from shardcost.symbolic.dimensions import B, S_past
from shardcost.symbolic.functions import COMPARISONS
from shardcost.symbolic.trace import Step

REQUEST = sympy.Idx("i")
LENGTHS = sympy.IndexedBase("S_past")
LIMIT = 1 << 62  # a value that may reach this leaves int64: its column holds Python ints


class StepKind(StrEnum):
    """How a step adds up over a ragged batch (see the module's docstring)."""

    CONSTANT = "constant"
    AFFINE = "affine"
    PER_REQUEST = "per request"
    DERIVED = "derived"


@cache
def step_kinds(derivation: Derivation) -> dict[sympy.Symbol, StepKind]:
    """How each step of ``derivation`` adds up over a ragged batch.

    Deciding it differentiates every step (a tenth of a second for a timed layer, each new
    process); the kinds are kept on disk (``codegen.stored``) under a digest of the steps'
    expressions themselves, so an entry can only ever be read for the same expressions."""
    import hashlib

    from shardcost.codegen.stored import stored

    exprs = [derivation.resolve(step.symbol) for step in derivation.steps]
    digest = hashlib.sha256("\n".join(map(sympy.srepr, exprs)).encode()).hexdigest()
    kinds = stored("ragged-kinds", (digest,), lambda: [_kind(e) for e in exprs])
    return dict(zip((step.symbol for step in derivation.steps), kinds, strict=True))


def _kind(expr: sympy.Expr) -> StepKind:
    free = expr.free_symbols
    if B not in free:
        return StepKind.PER_REQUEST if S_past in free else StepKind.CONSTANT
    return StepKind.AFFINE if _affine(expr) else StepKind.DERIVED


def summable(expr: sympy.Expr) -> bool:
    """Whether a ragged batch has one value for ``expr`` (in dimensions): it is the same
    for every request, adds up request by request, or reads no per-request length."""
    return _kind(expr) is not StepKind.DERIVED or S_past not in expr.free_symbols


def _affine(expr: sympy.Expr) -> bool:
    """``expr`` is m0 + B·m1(S_past) with m0 free of S_past."""
    try:
        second = sympy.diff(expr, B, 2)
        offset = expr.xreplace({B: sympy.S.Zero})
    except (TypeError, ValueError):
        return False
    return second == 0 and S_past not in offset.free_symbols


def ragged_expression(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` (affine in B) as ``m0 + Σ_{i=1}^{B} m1(S_past_i)``."""
    offset = expr.xreplace({B: sympy.S.Zero})
    slope = sympy.simplify(sympy.diff(expr, B))
    return offset + sympy.Sum(slope.xreplace({S_past: LENGTHS[REQUEST]}), (REQUEST, 1, B))


@dataclass(frozen=True)
class RaggedValues:
    """Each step's value for the whole batch (None for a per-request length), and each
    request's own values."""

    values: dict[sympy.Symbol, sympy.Expr | None]
    requests: Sequence[Mapping[sympy.Symbol, sympy.Expr]]


def evaluate(
    derivation: Derivation, subs: Mapping[sympy.Symbol, sympy.Expr], lengths: Sequence[int]
) -> RaggedValues:
    """Every step of ``derivation`` for requests of these past lengths, exactly: each
    length-dependent step once per distinct length on arrays, each sum as counts ·
    values (``evaluate_each`` gives the same numbers one request at a time)."""
    base = {k: v for k, v in subs.items() if k not in (B, S_past)}
    distinct = Distinct.of(lengths)
    try:
        same, columns = _per_request(derivation, base, distinct)
    except NotImplementedError:
        return evaluate_each(derivation, subs, lengths)
    n = len(lengths)

    def excess(symbol: sympy.Symbol, offset: sympy.Expr) -> sympy.Expr:
        column = columns.get(symbol)
        if column is None:  # the same for every request
            return n * (same[symbol] - offset)
        return _rational(column.total(distinct.counts)) - n * offset

    values = _add_up(derivation, base, lengths, same.__getitem__, excess)
    kinds = step_kinds(derivation)
    kept = {s for s, k in kinds.items() if k is StepKind.PER_REQUEST} | {S_past}
    requests = Requests(
        derivation,
        base,
        tuple(lengths),
        distinct,
        {s: v for s, v in same.items() if s in kept},
        {s: c for s, c in columns.items() if s in kept},
    )
    return RaggedValues(values, requests)


def evaluate_each(
    derivation: Derivation, subs: Mapping[sympy.Symbol, sympy.Expr], lengths: Sequence[int]
) -> RaggedValues:
    """Every step of ``derivation`` for requests of these past lengths by the definition:
    each request evaluated alone (B = 1) with SymPy, each affine step's per-request
    amounts added up. Slow (one derivation per request); the reference for ``evaluate``."""
    base = {k: v for k, v in subs.items() if k not in (B, S_past)}
    one = [derivation.values(base | {B: sympy.S.One, S_past: sympy.Integer(n)}) for n in lengths]

    def excess(symbol: sympy.Symbol, offset: sympy.Expr) -> sympy.Expr:
        return sum((r[symbol] - offset for r in one), sympy.S.Zero)

    values = _add_up(derivation, base, lengths, one[0].__getitem__, excess)
    return RaggedValues(values, tuple(one))


def _add_up(
    derivation: Derivation,
    base: Mapping[sympy.Symbol, sympy.Expr],
    lengths: Sequence[int],
    constant: Callable[[sympy.Symbol], sympy.Expr],
    excess: Callable[[sympy.Symbol, sympy.Expr], sympy.Expr],
) -> dict[sympy.Symbol, sympy.Expr | None]:
    """Each step's value for the batch: a constant step's ``constant``; an affine step's
    m0 (its value at B = 0) plus ``excess``, what the requests add to it together; a
    derived step from the values before it; None for a per-request length."""
    kinds = step_kinds(derivation)
    zero = derivation.values(base | {B: sympy.S.Zero, S_past: sympy.Integer(lengths[0])})
    known: dict[sympy.Symbol, sympy.Expr] = dict(base) | {B: sympy.Integer(len(lengths))}
    values: dict[sympy.Symbol, sympy.Expr | None] = dict(known)
    for step in derivation.steps:
        kind = kinds[step.symbol]
        value: sympy.Expr | None
        if kind is StepKind.CONSTANT:
            value = constant(step.symbol)
        elif kind is StepKind.AFFINE:
            offset = zero[step.symbol]
            value = offset + excess(step.symbol, offset)
        elif kind is StepKind.PER_REQUEST:
            value = None
        else:
            value = _derived(step, values, known)
        values[step.symbol] = value
        if value is not None:
            known[step.symbol] = value
    return values


def _derived(
    step: Step,
    values: Mapping[sympy.Symbol, sympy.Expr | None],
    known: Mapping[sympy.Symbol, sympy.Expr],
) -> sympy.Expr:
    """A derived step from the batch's values before it; InputError when it needs a value
    that differs per request (it is no sum over the requests)."""
    value = step.expr.xreplace(dict(known))
    if any(values.get(s, 0) is None for s in step.expr.free_symbols) or value.free_symbols:
        raise InputError(
            f"{step.label} ({step.key}) is not a sum over requests, so a ragged "
            "batch has no single value for it; give one past_seq_len for the batch"
        )
    return value


def mean(lengths: Sequence[int]) -> Fraction:
    """The mean past length."""
    return Fraction(sum(lengths), len(lengths))


# -- each distinct length at once ----------------------------------------------------------


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class Distinct:
    """A batch's distinct past lengths: how many requests have each, and which one each
    request has (``index``); ``rank`` orders them by their first request."""

    column: Column
    counts: Any  # np.ndarray of int64, one per distinct length
    index: Any  # np.ndarray: request -> its distinct length
    first: Any  # np.ndarray: distinct length -> its first request
    rank: Any  # np.ndarray: distinct length -> its place in the order of first requests

    @classmethod
    def of(cls, lengths: Sequence[int]) -> Distinct:
        """The distinct lengths of ``lengths`` (ints > 0)."""
        import numpy as np

        try:
            array = np.fromiter(lengths, dtype=np.int64, count=len(lengths))
        except OverflowError:
            array = np.array(list(lengths), dtype=object)
        found, first, index, counts = np.unique(
            array, return_index=True, return_inverse=True, return_counts=True
        )
        rank = np.empty(len(found), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(found))
        bound = int(found.max())
        if bound >= LIMIT:
            found = found.astype(object)
        return cls(Column(found, 1, bound), counts.astype(np.int64), index.reshape(-1), first, rank)


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class Column:
    """Exact values, one per distinct length: ``num / den``, with ``num`` an int64 array (an
    object array of Python ints once a value may pass 2^62) or one int for all, ``den`` a
    positive int and ``bound`` at least every ``|num|``."""

    num: Any
    den: int
    bound: int

    def total(self, counts: Any) -> Fraction:
        """Σ counts · values, exactly."""
        import numpy as np

        num = self.num
        if not isinstance(num, np.ndarray):
            return Fraction(num * int(counts.sum()), self.den)
        if num.dtype == object or self.bound * int(counts.sum()) >= LIMIT:
            return Fraction(sum(map(operator.mul, counts.tolist(), num.tolist())), self.den)
        return Fraction(int(np.dot(counts, num)), self.den)

    def exact(self, rows: int) -> list[int | Fraction]:
        """Each distinct length's value as an int (a whole number) or a Fraction."""
        import numpy as np

        nums = self.num.tolist() if isinstance(self.num, np.ndarray) else [self.num] * rows
        if self.den == 1:
            return [int(v) for v in nums]
        return [_whole(Fraction(v, self.den)) for v in nums]


class Requests(Sequence[Mapping[sympy.Symbol, sympy.Expr]]):
    """Each request's step values as a batch of one (B = 1 at its own past length).

    A request's full dict is computed on first use, once per distinct length; ``column``
    gives one step over every request, from arrays for the per-request steps."""

    def __init__(
        self,
        derivation: Derivation,
        base: Mapping[sympy.Symbol, sympy.Expr],
        lengths: tuple[int, ...],
        distinct: Distinct,
        same: Mapping[sympy.Symbol, sympy.Expr],
        columns: Mapping[sympy.Symbol, Column],
    ) -> None:
        self.lengths, self.distinct = lengths, distinct
        self._derivation, self._base = derivation, dict(base)
        self._same, self._columns = dict(same), dict(columns)
        self._done: dict[int, dict[sympy.Symbol, sympy.Expr]] = {}

    def __len__(self) -> int:
        return len(self.lengths)

    @overload
    def __getitem__(self, index: int) -> Mapping[sympy.Symbol, sympy.Expr]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Mapping[sympy.Symbol, sympy.Expr]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        length = self.lengths[index]
        found = self._done.get(length)
        if found is None:
            subs = self._base | {B: sympy.S.One, S_past: sympy.Integer(length)}
            found = self._done[length] = self._derivation.values(subs)
        return found

    def column(self, symbol: sympy.Symbol) -> tuple[int | Fraction, ...]:
        """``symbol``'s exact value for each request, in order."""
        rows = len(self.distinct.counts)
        if symbol in self._same:
            return (_whole(_fraction(self._same[symbol])),) * len(self)
        column = self._columns.get(symbol)
        if column is not None:
            per = column.exact(rows)
        else:  # not kept as an array: by SymPy, once per distinct length
            per = [_whole(_fraction(self[i][symbol])) for i in self.distinct.first.tolist()]
        return tuple(per[i] for i in self.distinct.index.tolist())

    def counts(self, expr: sympy.Expr, known: Mapping[sympy.Symbol, sympy.Expr]) -> Any:
        """``expr`` as whole numbers, one per distinct length (an int where it is the same
        for all): the batch's ``known`` values, each request's own per-request steps.
        NotImplementedError where the array path cannot say."""
        value = expr.xreplace(self._same).xreplace(dict(known))
        if not value.free_symbols & self._columns.keys():
            if not value.is_Integer:
                raise NotImplementedError(str(value))
            return int(value)
        column = _value(value, self._columns)
        if column.den != 1:
            raise NotImplementedError(str(value))
        return column.num


def _per_request(
    derivation: Derivation,
    base: Mapping[sympy.Symbol, sympy.Expr],
    distinct: Distinct,
) -> tuple[dict[sympy.Symbol, sympy.Expr], dict[sympy.Symbol, Column]]:
    """Each step a request has alone (B = 1): one SymPy number where it is the same at
    every length, else a Column over the distinct lengths. Derived steps only where a
    later step reads them."""
    same: dict[sympy.Symbol, sympy.Expr] = dict(base) | {B: sympy.S.One}
    columns: dict[sympy.Symbol, Column] = {S_past: distinct.column}
    needed = _needed(derivation)
    for step in derivation.steps:
        if step.symbol not in needed:
            continue
        expr = step.expr.xreplace(same)
        if expr.free_symbols & columns.keys():
            columns[step.symbol] = _value(expr, columns)
        else:
            same[step.symbol] = expr
    return same, columns


@cache
def _needed(derivation: Derivation) -> frozenset[sympy.Symbol]:
    """The steps a request's sums read: every step but the derived ones no other step
    reads."""
    kinds = step_kinds(derivation)
    needed: set[sympy.Symbol] = set()
    for step in reversed(derivation.steps):
        if kinds[step.symbol] is not StepKind.DERIVED or step.symbol in needed:
            needed.add(step.symbol)
            needed |= step.expr.free_symbols
    return frozenset(needed)


# -- exact arithmetic on columns -----------------------------------------------------------


def _value(expr: sympy.Expr, columns: Mapping[sympy.Symbol, Column]) -> Column:
    """``expr`` at each distinct length, exactly: its symbols are ``columns``.
    NotImplementedError for a node it does not know (the caller falls back to SymPy)."""
    if expr.is_Rational:
        return Column(int(expr.p), int(expr.q), abs(int(expr.p)))
    if expr.is_Symbol:
        if expr not in columns:
            raise NotImplementedError(f"no value for {expr}")
        return columns[expr]
    args = [_value(a, columns) for a in expr.args] if not expr.is_Piecewise else []
    if expr.is_Add:
        return reduce(_add, args)
    if expr.is_Mul:
        return reduce(_mul, args)
    if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
        return reduce(_mul, [args[0]] * int(expr.exp))
    if isinstance(expr, sympy.ceiling | sympy.floor):
        return _rounded(args[0], up=isinstance(expr, sympy.ceiling))
    if isinstance(expr, sympy.Min | sympy.Max):
        return _extreme(args, minimum=isinstance(expr, sympy.Min))
    if isinstance(expr, sympy.Mod):  # an uneven split's ranks with one more (totals)
        (num, parts), den, bound = _common(args)
        return Column(num % parts, den, bound)
    if expr.is_Piecewise:
        return _piecewise(expr, columns)
    raise NotImplementedError(type(expr).__name__)


def _add(a: Column, b: Column) -> Column:
    den = math.lcm(a.den, b.den)
    fa, fb = den // a.den, den // b.den
    bound = a.bound * fa + b.bound * fb
    na, nb = _wide(max(bound, fa, fb), a.num, b.num)
    return Column(na * fa + nb * fb, den, bound)


def _mul(a: Column, b: Column) -> Column:
    bound = a.bound * b.bound
    na, nb = _wide(max(bound, a.bound, b.bound), a.num, b.num)
    return Column(na * nb, a.den * b.den, bound)


def _rounded(a: Column, *, up: bool) -> Column:
    if a.den == 1:
        return a
    num = -((-a.num) // a.den) if up else a.num // a.den
    return Column(num, 1, a.bound // a.den + 1)


def _common(args: Sequence[Column]) -> tuple[list[Any], int, int]:
    """The columns' numerators over one denominator, that denominator and a bound."""
    den = math.lcm(*(a.den for a in args))
    bound = max(a.bound * (den // a.den) for a in args)
    nums = _wide(max(bound, den), *(a.num for a in args))
    return [n * (den // a.den) for n, a in zip(nums, args, strict=True)], den, bound


def _extreme(args: Sequence[Column], *, minimum: bool) -> Column:
    import numpy as np

    nums, den, bound = _common(args)
    if not any(isinstance(n, np.ndarray) for n in nums):
        return Column(min(nums) if minimum else max(nums), den, bound)
    pick: Callable[[Any, Any], Any] = np.minimum if minimum else np.maximum
    return Column(reduce(pick, nums), den, bound)


def _truth(cond: Any, columns: Mapping[sympy.Symbol, Column]) -> Any:
    """A condition at each distinct length: a bool, or an array of them."""
    import numpy as np

    if cond is sympy.true or cond is sympy.false:
        return bool(cond)
    compare = COMPARISONS.get(type(cond))
    if compare is not None:
        left, right = (_value(side, columns) for side in cond.args)
        (a, b), _, _ = _common([left, right])
        return compare(a, b)
    parts = [_truth(c, columns) for c in cond.args]
    if isinstance(cond, sympy.And):
        return reduce(np.logical_and, parts)
    if isinstance(cond, sympy.Or):
        return reduce(np.logical_or, parts)
    if isinstance(cond, sympy.Not):
        return np.logical_not(parts[0])
    raise NotImplementedError(type(cond).__name__)


def _piecewise(expr: sympy.Piecewise, columns: Mapping[sympy.Symbol, Column]) -> Column:
    import numpy as np

    pieces: list[tuple[Column, Any]] = []
    covered: Any = False
    for piece, cond in expr.args:
        truth = _truth(cond, columns)
        if truth is False:
            continue
        pieces.append((_value(piece, columns), truth))
        covered = np.logical_or(covered, truth)
        if truth is True:
            break
    if not pieces or not np.all(covered):
        raise NotImplementedError("a Piecewise undefined at some length")
    nums, den, bound = _common([c for c, _ in pieces])
    num = nums[-1]
    for other, (_, truth) in zip(nums[-2::-1], pieces[-2::-1], strict=True):
        num = np.where(truth, other, num)
    return Column(num, den, bound)


def _wide(bound: int, *nums: Any) -> list[Any]:
    """``nums`` as they are, or as Python ints (object arrays) when ``bound`` may leave
    int64."""
    import numpy as np

    if bound < LIMIT:
        return list(nums)
    return [
        n.astype(object) if isinstance(n, np.ndarray) and n.dtype != object else n for n in nums
    ]


def _fraction(value: sympy.Expr) -> Fraction:
    return Fraction(int(value.p), int(value.q))  # type: ignore[attr-defined]


def _rational(value: Fraction) -> sympy.Rational:
    return sympy.Rational(value.numerator, value.denominator)


def _whole(value: Fraction) -> int | Fraction:
    return int(value) if value.denominator == 1 else value
