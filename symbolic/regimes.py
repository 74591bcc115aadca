"""Solving piecewise expressions regime by regime: the branches of max, min and piecewise
terms of one unknown, even splits for its ceilings and floors, and positive roots."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import sympy

from shardcost.errors import InternalError

from .text import one_line

_KINDS = (sympy.Max, sympy.Min, sympy.Piecewise)
_WORDS = 80  # the longest branch described by its formula


def relation_text(expr: sympy.Basic) -> str:
    """A condition as one line: ``tp ≤ 1 and S ≥ 8``."""
    text = one_line(expr).replace("<=", "≤").replace(">=", "≥")
    return text.replace(" & ", " and ").replace(" | ", " or ")


def even_splits(
    expr: sympy.Expr, x: sympy.Symbol, replaced: dict[sympy.Expr, sympy.Expr]
) -> sympy.Expr:
    """``expr`` with each ceiling or floor of ``x`` taken as its argument (even splits),
    each recorded in ``replaced``."""

    def even(node: sympy.Expr) -> sympy.Expr:
        if x not in node.free_symbols:
            return node
        replaced[node] = node.args[0]
        return node.args[0]

    return expr.replace(lambda n: isinstance(n, (sympy.ceiling, sympy.floor)), even)


@dataclass(frozen=True)
class Branch:
    """One branch of a max, min or piecewise term: its words and its condition."""

    words: str
    condition: sympy.Basic
    named: bool  # the words are the caller's name for the branch ("compute-bound")


def _choices(atom: sympy.Expr, names: Mapping[sympy.Expr, str]) -> list[tuple[sympy.Expr, Branch]]:
    """Each branch of a max, min or piecewise term, with its value."""
    if isinstance(atom, sympy.Piecewise):
        out, before = [], sympy.false
        for value, cond in atom.args:
            mine = sympy.simplify(sympy.And(cond, sympy.Not(before)))
            out.append((value, Branch(relation_text(mine), mine, False)))
            before = sympy.Or(before, cond)
        return out
    wins, kind = (sympy.Ge, "max") if isinstance(atom, sympy.Max) else (sympy.Le, "min")
    out = []
    for i, arg in enumerate(atom.args, 1):
        cond = sympy.And(*(wins(arg, other) for other in atom.args if other is not arg))
        if arg in names:
            out.append((arg, Branch(names[arg], cond, True)))
            continue
        words = f"{one_line(atom)} = {one_line(arg)}"
        if len(words) > _WORDS:  # too long to read: which argument it is
            words = f"{kind} of {len(atom.args)} terms = term {i}"
        out.append((arg, Branch(words, cond, False)))
    return out


def branches(
    expr: sympy.Expr, x: sympy.Symbol, names: Mapping[sympy.Expr, str]
) -> list[tuple[sympy.Expr, tuple[Branch, ...]]]:
    """Every choice of branches of the max, min and piecewise terms of ``x`` in ``expr``,
    outermost first: the expression with them chosen, and the branches. ``names`` words a
    max's or min's argument ("compute-bound")."""
    atom = next(
        (
            n
            for n in sympy.preorder_traversal(expr)
            if isinstance(n, _KINDS) and x in n.free_symbols
        ),
        None,
    )
    if atom is None:
        return [(expr, ())]
    out = []
    for value, branch in _choices(atom, names):
        for rest, chosen in branches(expr.xreplace({atom: value}), x, names):
            out.append((rest, (branch, *chosen)))
    return out


def decided(cond: sympy.Basic) -> bool | None:
    """A condition's truth when SymPy can tell: exactly, else at 60 digits; None if not."""
    if cond in (sympy.true, sympy.false):
        return bool(cond)
    with contextlib.suppress(TypeError):
        return bool(sympy.simplify(cond))
    if isinstance(cond, sympy.core.relational.Relational):
        gap = sympy.N(cond.lhs - cond.rhs, 60)
        if gap.is_number:
            return bool(cond.func(gap, 0))
    return None


def positive_roots(expr: sympy.Expr, x: sympy.Symbol) -> list[sympy.Expr]:
    """The positive real solutions of ``expr = 0``, exact (rational or algebraic)."""
    numerator = sympy.numer(sympy.together(expr))
    try:
        found = sympy.solve(numerator, x)
    except NotImplementedError:
        raise InternalError(f"SymPy cannot solve {one_line(numerator)} = 0 for {x}") from None
    return [sympy.radsimp(r) for r in found if r.is_real and r.is_positive]


def closed_root(
    expr: sympy.Expr,
    x: sympy.Symbol,
    values: Mapping[sympy.Symbol, sympy.Expr],
    root: sympy.Expr,
) -> sympy.Expr | None:
    """The solution of ``expr = 0`` in its other symbols that takes ``root`` at ``values``;
    None when SymPy finds none."""
    try:
        candidates = sympy.solve(sympy.numer(sympy.together(expr)), x)
    except (NotImplementedError, TypeError, ValueError):
        return None
    for candidate in candidates:
        if sympy.simplify(candidate.xreplace(values) - root) == 0:
            return sympy.factor(candidate)
    return None


def signed(expr: sympy.Expr) -> sympy.Expr:
    """``-2·B·(-S + d)`` as ``2·B·(S − d)``: a product's one sum with its leading sign
    taken out, for reading (the same value, left unevaluated)."""
    if not isinstance(expr, sympy.Mul):
        return expr
    sums = [arg for arg in expr.args if isinstance(arg, sympy.Add)]
    if len(sums) != 1 or not sums[0].could_extract_minus_sign():
        return expr
    rest = -sympy.Mul(*(arg for arg in expr.args if arg is not sums[0]))
    return sympy.Mul(*sympy.Mul.make_args(rest), -sums[0], evaluate=False)
