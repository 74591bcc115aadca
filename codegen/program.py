"""A cost as a straight-line program: inputs, the relations among them, checks, one
assignment per derivation step, outputs. Every back end (in-process Python, numpy, numba,
C, Rust, JavaScript, Go) prints the same Program, so what runs is what the derivation
says, step for step, and what an input is when not given is what its layer and its
notation entry declare: derived by one of the layer's relations (``total = left ×
right``) from the other two, the value of the dimension its notation entry says it
defaults to, or its default.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import sympy

from shardcost.errors import InputError, InternalError
from shardcost.formulas import Conventions, Layout, Phase, timing_model
from shardcost.formulas.hardware import NUMERIC_FIELDS, HardwareField
from shardcost.formulas.inputs import describe
from shardcost.formulas.registry import relations_for
from shardcost.symbolic import METRICS, PER_CHIP, Cost, Derivation, Section, Step
from shardcost.symbolic.dimensions import BY_NAME, BY_SYMBOL, DIMENSIONS, Dimension
from shardcost.symbolic.divides import Divides
from shardcost.symbolic.relation import Product

from .exactness import Quotient


def default_source(dim: Dimension) -> Dimension | None:
    """The dimension whose value ``dim`` takes when not given, as its notation entry
    declares it; None when it has a number of its own."""
    if dim.default is not None:
        return None
    if dim.default_from is None:
        raise InternalError(f"{dim.name} has neither a default nor a dimension it defaults to")
    return BY_NAME[dim.default_from]


def default_of(
    dim: Dimension, inputs: Sequence[Dimension], relations: Sequence[Product]
) -> int | Dimension | None:
    """What input ``dim`` is when not given, among ``inputs`` under ``relations``: None
    when a relation derives it, another input when it defaults to that one's value, else
    a number (its own default, or that of the dimension it defaults to)."""
    if any(dim in r.dimensions for r in relations):
        return None
    source = default_source(dim)
    if source is None:
        return dim.default
    return source if source in inputs else default_of(source, (), ())


def equation(relation: Product) -> sympy.Equality:
    """The relation as an equation of its symbols (``total = left·right``), for printers."""
    ((lhs, rhs),) = relation.substitution().items()
    return sympy.Eq(lhs, rhs, evaluate=False)


Check = Divides  # a program's check is the one "parts divides total" record, named


@dataclass(frozen=True)
class Assignment:
    """One derivation step: ``symbol = expr`` (in inputs and earlier steps)."""

    symbol: sympy.Symbol
    expr: sympy.Expr
    comment: str
    exact: bool  # an integer count (False: a time or a ratio)


@dataclass(frozen=True)
class Given:
    """An input as given, else its default: a number, or another input's value."""

    dimension: Dimension
    default: int | Dimension


@dataclass(frozen=True)
class Program:
    """Inputs, checks, assignments and outputs of one layout, phase and conventions."""

    name: str  # e.g. "attention_tp_prefill"
    layout: Layout
    phase: Phase
    conventions: Conventions
    inputs: tuple[Dimension, ...]
    hardware: tuple[HardwareField, ...]  # numeric hardware inputs (timing programs)
    checks: tuple[Check, ...]
    steps: tuple[Assignment, ...]
    outputs: tuple[tuple[str, sympy.Expr], ...]  # metric name -> expression
    overlap: bool | None = None  # timing programs: whether communication overlaps
    relations: tuple[Product, ...] = ()  # the layer's relations among the inputs
    # counts output beside the nine metrics, after them (``program(extras=True)``):
    # ``chips``, then ``<collective>_bytes`` for each collective
    extras: tuple[str, ...] = ()

    @property
    def counts(self) -> tuple[str, ...]:
        """The names of the outputs that are whole counts (the others are times)."""
        return (*METRICS, *self.extras)

    def default(self, dim: Dimension) -> int | Dimension | None:
        """What input ``dim`` is when not given (``default_of``)."""
        return default_of(dim, self.inputs, self.relations)

    @property
    def preamble(self) -> tuple[Given | Product, ...]:
        """How every input gets its value, in order: those with a number for a default;
        the relations, each deriving a missing dimension from the other two (or checking
        all three); then those that default to another input's value, sources first."""
        defaults = [(d, self.default(d)) for d in self.inputs]
        given = [Given(d, default) for d, default in defaults if default is not None]
        plain = [g for g in given if isinstance(g.default, int)]
        sources = {g.dimension: g.default for g in given if isinstance(g.default, Dimension)}
        borrowed = sorted(
            (g for g in given if g.dimension in sources), key=lambda g: _depth(g.dimension, sources)
        )
        return (*plain, *self.relations, *borrowed)

    @property
    def symbols(self) -> tuple[sympy.Symbol, ...]:
        """The input symbols, in notation order, then the hardware symbols."""
        return (*(d.symbol for d in self.inputs), *(f.symbol for f in self.hardware))

    def resolve(self, expr: sympy.Expr) -> sympy.Expr:
        """``expr`` in inputs only: every step it reads substituted."""
        expansions: dict[sympy.Symbol, sympy.Expr] = {}
        for step in self.steps:
            expansions[step.symbol] = step.expr.xreplace(expansions)
        return sympy.sympify(expr).xreplace(expansions)


def _depth(dim: Dimension, sources: dict[Dimension, int | Dimension]) -> int:
    """How many borrowed defaults ``dim``'s default goes through."""
    source = sources.get(dim)
    return 1 + _depth(source, sources) if isinstance(source, Dimension) else 0


def _name(layout: Layout, phase: Phase) -> str:
    """An ASCII identifier for the program (a layout's name is text, never code)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{layout.layer}_{layout.name}_{phase}")


def _live(steps: list[Assignment], roots: list[sympy.Expr]) -> tuple[Assignment, ...]:
    """The steps the outputs depend on, in order."""
    needed: set[sympy.Symbol] = set()
    for root in roots:
        needed |= root.free_symbols
    kept = []
    for step in reversed(steps):
        if step.symbol in needed:
            kept.append(step)
            needed |= step.expr.free_symbols
    return tuple(reversed(kept))


def _whole_steps(
    steps: tuple[Assignment, ...], derivation: Derivation, known: tuple[Check, ...]
) -> tuple[Check, ...]:
    """Checks that each count's division is exact where no requirement already says so
    (a user layout's ``S / cp``): compiled code divides in integers and must not floor."""
    seen = {(c.total, c.parts) for c in known}
    extra = []
    for step in steps:
        if not step.exact:
            continue
        num, den = sympy.fraction(sympy.together(step.expr))
        if den == 1:
            continue
        total, parts = derivation.resolve(num), derivation.resolve(den)
        if (total, parts) not in seen:
            seen.add((total, parts))
            extra.append(
                Check(
                    total,
                    parts,
                    "a count must be a whole number",
                    total_name=f"the numerator of {step.comment}",
                    parts_name=describe(parts, derivation),
                )
            )
    return tuple(extra)


@cache
def program(
    layout: Layout,
    phase: Phase,
    conventions: Conventions | None = None,
    overlap: bool | None = None,
    decoupled: bool = False,
    extras: bool = False,
) -> Program:
    """The Program of ``layout`` in ``phase``; with ``overlap`` set, timing outputs too.
    ``decoupled``: without the layer's relations, so every dimension of one is an input
    of its own (a model whose config sets head_dim apart from hidden_size / num_heads).
    ``extras``: after the nine metrics, the counts a sweep writes beside them
    (``extra_outputs``): the chips the layout spans and each collective's payload bytes."""
    phase = Phase(phase)
    conventions = conventions or Conventions()
    cost = layout.cost(phase, conventions)
    derivation = cost.derivation
    outputs: list[tuple[str, sympy.Expr]] = []
    per_chip = (cost.flops, cost.weight_bytes, cost.activation_bytes, cost.kv_cache_bytes)
    outputs += [(f"{n}_per_chip", s) for n, s in zip(PER_CHIP, per_chip, strict=True)]
    outputs += [(f"{n}_total", total) for n, total in cost.totals.items()]
    outputs.append(("communication_bytes", cost.communication_bytes))
    assert tuple(n for n, _ in outputs) == METRICS
    counted = extra_outputs(cost) if extras else ()
    outputs += counted
    hardware: tuple[HardwareField, ...] = ()
    if overlap is not None:
        model = timing_model(cost, phase, overlap, conventions)
        derivation = model.derivation
        outputs += list(model.times.items())
        hardware = NUMERIC_FIELDS
    steps = [Assignment(s.symbol, s.expr, s.label, _count(s)) for s in derivation.steps]
    live = _live(steps, [e for _, e in outputs])
    used = set(cost.dimensions)
    for _, expr in counted:
        used |= derivation.resolve(expr).free_symbols
    checks = tuple(
        dataclasses.replace(
            r,
            total=derivation.resolve(r.total),
            parts=derivation.resolve(r.parts),
            total_name=describe(r.total, derivation),
            parts_name=describe(r.parts, derivation),
        )
        for r in derivation.requirements
    )
    checks += _whole_steps(live, derivation, checks)
    for check in checks:
        used |= check.total.free_symbols | check.parts.free_symbols
    inputs = tuple(dim for dim in DIMENSIONS if dim.symbol in used and dim.symbol in BY_SYMBOL)
    return Program(
        _name(layout, phase),
        layout,
        phase,
        conventions,
        inputs,
        hardware,
        checks,
        live,
        tuple(outputs),
        overlap,
        () if decoupled else relations_for(layout, {d.symbol for d in inputs}),
        tuple(n for n, _ in counted),
    )


CHIPS = "chips"


def extra_outputs(cost: Cost) -> list[tuple[str, sympy.Expr]]:
    """The counts beside the nine metrics: ``chips`` (``Cost.chips``), then
    ``<name>_bytes`` for each collective, its payload bytes per chip (the derivation step
    ``Cost.collective_bytes`` resolves; zero on a group of one chip). InputError for a
    collective whose name would repeat a metric's (a user layout's ``communication``)."""
    out = [(CHIPS, cost.chips)]
    out += [(collective_column(c.name), c.symbol) for c in cost.collectives]
    taken = set(METRICS)
    for name, _ in out:
        if name in taken:
            raise InputError(
                f"the payload of collective {name.removesuffix('_bytes')!r} would be named "
                f"{name}, which is taken: rename the collective"
            )
        taken.add(name)
    return out


def collective_column(name: str) -> str:
    """The output (and sweep column) holding collective ``name``'s payload bytes."""
    return f"{name}_bytes"


def _count(step: Step) -> bool:
    """Whether a step is a whole count, computed in integers: not a time or a ratio, nor
    anything else that feeds a time (a collective's bytes on the wire are a fraction of its
    payload), nor a value with a power of symbolic exponent (an expected value), which no
    integer holds."""
    if step.unit in ("ms", "FLOPs/byte") or step.section == Section.TIMING:
        return False
    return all(p.exp.is_Integer for p in step.expr.atoms(sympy.Pow))


def _polynomial(expr: sympy.Expr) -> bool:
    """Sums and products of symbols with whole, non-negative powers: safe to rearrange
    in integer arithmetic."""
    if expr.has(sympy.ceiling, sympy.floor, sympy.Piecewise, sympy.Max, sympy.Min):
        return False
    return all(p.exp.is_Integer and p.exp > 0 for p in expr.atoms(sympy.Pow)) and all(
        n.is_Integer for n in expr.atoms(sympy.Rational)
    )


def inlined(prog: Program) -> Program:
    """``prog`` with its polynomial steps folded into their users, each count factored
    where that saves operations, and common products shared: the same values in fewer
    operations, for the in-process scalar path. Divisions and ceilings stay steps of
    their own, so every integer division stays exact."""
    roots = set().union(*(e.free_symbols for _, e in prog.outputs))
    folded: dict[sympy.Symbol, sympy.Expr] = {}
    kept: list[Assignment] = []
    for step in prog.steps:
        expr = step.expr.xreplace(folded)
        if expr.is_Symbol or (step.exact and step.symbol not in roots and _polynomial(expr)):
            folded[step.symbol] = expr  # an alias, or a polynomial its users absorb
            continue
        if step.exact and _fractional(expr) and not expr.has(sympy.Piecewise):
            # a sum of halves (n·(n + 1)/2 + ...) is whole, its regrouped parts may not be:
            # one division of the whole numerator
            num, den = sympy.fraction(sympy.together(expr))
            expr = Quotient(sympy.expand(num), den)
        elif step.exact and not expr.has(sympy.Piecewise):
            for rewritten in (sympy.factor(expr), _collected(expr)):
                if sympy.count_ops(rewritten) < sympy.count_ops(expr):
                    expr = rewritten
            expr = _collected(expr)
        kept.append(Assignment(step.symbol, expr, step.comment, step.exact))
    outputs = tuple((n, e.xreplace(folded)) for n, e in prog.outputs)
    # Share common products among the steps without a division (a shared 1/tp would
    # floor to zero in integers); the shared ones go right after the last division step.
    safe = [a.exact and not _divides(a.expr) for a in kept]
    temps = (sympy.Symbol(f"_t{i}") for i in itertools.count())
    pairs, reduced = sympy.cse(
        [a.expr for a, ok in zip(kept, safe, strict=True) if ok],
        symbols=temps,
        optimizations="basic",
    )
    if pairs and all(_polynomial(e) for _, e in pairs):
        rewritten = iter(reduced)
        kept = [
            Assignment(a.symbol, next(rewritten), a.comment, True) if ok else a
            for a, ok in zip(kept, safe, strict=True)
        ]
        first = next((i for i, ok in enumerate(safe) if ok), len(kept))
        shared = [Assignment(t, e, "shared subexpression", True) for t, e in pairs]
        kept = kept[:first] + shared + kept[first:]
    return dataclasses.replace(prog, steps=tuple(kept), outputs=outputs)


def _collected(expr: sympy.Expr) -> sympy.Expr:
    """Sums rewritten by pulling out, greedily, the factor most of their terms share:
    a·x + a·y + z becomes a·(x + y) + z. Fewer multiplications, and common sums for CSE."""
    if expr.is_Atom:
        return expr
    args = [_collected(a) for a in expr.args]
    if not isinstance(expr, sympy.Add):
        return expr.func(*args)
    terms = list(args)
    counts: dict[sympy.Expr, int] = {}
    for term in terms:
        for factor in set(sympy.Mul.make_args(term)):
            if not factor.is_Number:
                counts[factor] = counts.get(factor, 0) + 1
    if not counts or max(counts.values()) < 2:
        return sympy.Add(*terms)
    common = max(counts, key=lambda f: (counts[f], sympy.default_sort_key(f)))
    inside = [t for t in terms if common in sympy.Mul.make_args(t)]
    outside = [t for t in terms if common not in sympy.Mul.make_args(t)]
    grouped = common * _collected(sympy.Add(*(t / common for t in inside)))
    return sympy.Add(grouped, _collected(sympy.Add(*outside))) if outside else grouped


def _fractional(expr: sympy.Expr) -> bool:
    """Whether ``expr`` has a coefficient that is not whole (a half, 17/32)."""
    return any(not n.is_Integer for n in expr.atoms(sympy.Rational))


def _divides(expr: sympy.Expr) -> bool:
    return (
        expr.has(Quotient)
        or any(p.exp.is_negative for p in expr.atoms(sympy.Pow))
        or any(not n.is_Integer for n in expr.atoms(sympy.Rational))
    )
