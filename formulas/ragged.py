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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from functools import cache

import sympy

from shardcost.errors import InputError
from shardcost.symbolic import Derivation
from shardcost.symbolic.dimensions import B, S_past

REQUEST = sympy.Idx("i")
LENGTHS = sympy.IndexedBase("S_past")


class StepKind(StrEnum):
    """How a step adds up over a ragged batch (see the module's docstring)."""

    CONSTANT = "constant"
    AFFINE = "affine"
    PER_REQUEST = "per request"
    DERIVED = "derived"


@cache
def step_kinds(derivation: Derivation) -> dict[sympy.Symbol, StepKind]:
    """How each step of ``derivation`` adds up over a ragged batch."""
    return {step.symbol: _kind(derivation.resolve(step.symbol)) for step in derivation.steps}


def _kind(expr: sympy.Expr) -> StepKind:
    free = expr.free_symbols
    if B not in free:
        return StepKind.PER_REQUEST if S_past in free else StepKind.CONSTANT
    return StepKind.AFFINE if _affine(expr) else StepKind.DERIVED


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
    requests: tuple[dict[sympy.Symbol, sympy.Expr], ...]


def evaluate(
    derivation: Derivation, subs: Mapping[sympy.Symbol, sympy.Expr], lengths: Sequence[int]
) -> RaggedValues:
    """Every step of ``derivation`` for requests of these past lengths, exactly."""
    kinds = step_kinds(derivation)
    base = {k: v for k, v in subs.items() if k not in (B, S_past)}
    one = [derivation.values(base | {B: sympy.S.One, S_past: sympy.Integer(n)}) for n in lengths]
    zero = derivation.values(base | {B: sympy.S.Zero, S_past: sympy.Integer(lengths[0])})
    known: dict[sympy.Symbol, sympy.Expr] = dict(base) | {B: sympy.Integer(len(lengths))}
    values: dict[sympy.Symbol, sympy.Expr | None] = dict(known)
    for step in derivation.steps:
        kind = kinds[step.symbol]
        value: sympy.Expr | None
        if kind is StepKind.CONSTANT:
            value = one[0][step.symbol]
        elif kind is StepKind.AFFINE:
            offset = zero[step.symbol]
            value = offset + sum((r[step.symbol] - offset for r in one), sympy.S.Zero)
        elif kind is StepKind.PER_REQUEST:
            value = None
        else:
            value = step.expr.xreplace(known)
            if any(values.get(s, 0) is None for s in step.expr.free_symbols) or (
                value.free_symbols
            ):
                raise InputError(
                    f"{step.label} ({step.key}) is not a sum over requests, so a ragged "
                    "batch has no single value for it; give one past_seq_len for the batch"
                )
        values[step.symbol] = value
        if value is not None:
            known[step.symbol] = value
    return RaggedValues(values, tuple(one))


def mean(lengths: Sequence[int]) -> Fraction:
    """The mean past length."""
    return Fraction(sum(lengths), len(lengths))
