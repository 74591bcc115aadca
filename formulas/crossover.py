"""Crossovers: the value of one dimension at which two costs tie, in closed form.

A side is a layout's metric or timing (``tp``) or a sum of its derivation steps
(``single:scores``, ``single:q_proj+k_proj``); a ridge point compares one layout's compute
time with its load time. Every other dimension takes its given value or its default, as
``metrics`` would, and A − B = 0 is solved for the dimension over positive values:

- a ceiling or floor of the unknown (an uneven split) is taken as its argument: even splits;
- max, min and piecewise terms of the unknown (the busy time's max(compute, load), a
  window's min, a collective that sends nothing on one chip) are solved branch by branch,
  and a root is kept only where its branches are the ones in force: its regime;
- each root is exact (rational or algebraic), with its closed form in the remaining
  symbols, the first whole value at or after which the order flips, and the library's own
  evaluation of both sides there and just before.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any

import sympy

from shardcost.errors import InputError, UnknownNameError
from shardcost.symbolic import METRICS, Section
from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS_BY_NAME
from shardcost.symbolic.dimensions import BY_SYMBOL, DIMENSIONS, Dimension
from shardcost.symbolic.regimes import (
    Branch,
    branches,
    closed_root,
    decided,
    even_splits,
    positive_roots,
    relation_text,
    signed,
)
from shardcost.symbolic.simplify import closed_form
from shardcost.symbolic.text import one_line

from .conventions import Phase, phase
from .evaluate import Result, evaluate
from .hardware import NUMERIC_FIELDS
from .inputs import (
    DEFAULT_FROM,
    KEYS,
    Inputs,
    applicable_params,
    request_lengths,
    resolve_inputs,
    unknown_key,
)
from .registry import Layout, get_layout, relations_for
from .timing import TIMINGS, timing_model

Number = int | Fraction


def _unknown_symbol(dim: Dimension) -> sympy.Symbol:
    """The dimension solved for, as a positive real: solve() keeps real roots, not whole ones."""
    return sympy.Symbol(dim.short, positive=True)


Values = Mapping[sympy.Symbol, sympy.Expr]
_LATEX = {dim.symbol: dim.latex for dim in DIMENSIONS}
_LATEX |= {_unknown_symbol(dim): dim.latex for dim in DIMENSIONS}
_LATEX |= {f.symbol: f.latex for f in NUMERIC_FIELDS if f.symbol is not None}
# The branches of the wall clock's max, in words.
_BOUND = {
    "compute_time_ms": "compute-bound",
    "load_time_ms": "load-bound",
    "communication_time_ms": "communication-bound",
}
RIDGE = ("compute_time_ms", "load_time_ms")


class Verdict(StrEnum):
    """What the two sides do as the dimension varies."""

    TIE = "tie"  # equal at one or more values (or throughout a regime)
    NEVER = "never"  # never equal at a positive value
    INDEPENDENT = "independent"  # A − B does not depend on the dimension, and is not zero
    IDENTICAL = "identical"  # A − B is zero at every value


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a layout's metric (or timing), or a sum of its steps."""

    layout: Layout
    steps: tuple[str, ...]  # empty: ``metric``
    metric: str | None
    unit: str
    expression: sympy.Expr  # in dimensions (and hardware fields), before any value
    labels: tuple[str, ...]  # the steps' words, or the metric's name
    # a timed side's timing steps, each with its words as a branch of the wall clock's max
    bounds: tuple[tuple[sympy.Expr, str], ...] = ()

    @property
    def name(self) -> str:
        """As the command line writes it: ``single:scores`` or ``tp``."""
        return f"{self.layout.name}:{'+'.join(self.steps)}" if self.steps else self.layout.name

    def value(self, result: Result) -> Number:
        """This side's exact value in an evaluated result."""
        if self.steps:
            return sum((result.step_value(key) for key in self.steps), start=0)
        if self.metric in METRICS:
            return getattr(result.metrics, self.metric)  # type: ignore[arg-type]
        assert result.model is not None and self.metric is not None
        return result.step_value(result.derivation.step_of(result.model.times[self.metric]).key)


@dataclass(frozen=True)
class Check:
    """Both sides evaluated by the library at one whole value of the dimension."""

    at: int
    a: Number | None
    b: Number | None
    error: str = ""  # why the library refuses this value, when it does
    notes: tuple[str, ...] = ()  # uneven splits there

    @property
    def order(self) -> str:
        """``<``, ``=`` or ``>``: A against B; ``?`` when the value is refused."""
        if self.a is None or self.b is None:
            return "?"
        return "<" if self.a < self.b else ">" if self.a > self.b else "="


@dataclass(frozen=True)
class Root:
    """One value of the dimension where A = B, in one regime."""

    regime: str  # the branches in force, in words ("" when there are none)
    exact: sympy.Expr  # at the values given: rational or algebraic
    closed_form: sympy.Expr | None  # in the remaining symbols; None when SymPy finds none
    whole: int  # the first whole value at or after the root
    holds: bool  # A = B exactly at the root, in its regime's expressions
    checks: tuple[Check, ...]  # the library at whole − 1, whole (and whole + 1 at a whole root)


@dataclass(frozen=True)
class Interval:
    """A regime throughout which A and B are equal."""

    regime: str
    where: sympy.Basic  # the values of the dimension in it, as relations (True: all)


@dataclass(frozen=True)
class Crossover:
    """Where two sides tie as one dimension varies, every other at its value."""

    a: Side
    b: Side
    phase: Phase
    hardware: str | None
    key: Dimension
    params: Mapping[str, object]  # the values in force; the dimension and what follows it out
    given: tuple[str, ...]  # the keys given (the rest are defaults)
    assumptions: tuple[str, ...]
    difference: sympy.Expr  # A − B in the remaining symbols (even splits)
    at_values: sympy.Expr  # A − B at the values given, in the dimension alone
    verdict: Verdict
    ratio: sympy.Expr | None  # A / B when it is a constant
    roots: tuple[Root, ...]
    intervals: tuple[Interval, ...]
    default_order: str  # A against B at the dimension's default: <, = or >
    ridge: bool = False

    @property
    def names(self) -> tuple[str, str]:
        """What the sides are called in words."""
        if self.ridge:
            return f"{self.a.layout.name} compute time", "load time"
        return self.a.name, self.b.name

    @property
    def summary(self) -> str:
        """The finding in one sentence."""
        (a, b), key = self.names, self.key.name
        ratio = _ratio_words(a, b, self.ratio)
        if self.verdict is Verdict.IDENTICAL:
            return f"{a} and {b} are identical at every {key}"
        if self.verdict is Verdict.INDEPENDENT:
            return f"{a} − {b} does not depend on {key}" + (f": {ratio}" if ratio else "")
        if self.verdict is Verdict.NEVER and self.ridge:
            bound = "load-bound" if self.default_order == "<" else "compute-bound"
            return f"{self.a.layout.name} is {bound} at every positive {key}: {a} and {b} never tie"
        if self.verdict is Verdict.NEVER:
            order = {"<": "below", ">": "above"}[self.default_order]
            return f"{a} and {b} never tie at a positive {key}: " + (
                ratio or f"{a} stays {order} {b}"
            )
        found = [f"{key} = {number_text(r.exact)}" for r in self.roots]
        found = [f"at {', '.join(found)}"] if found else []
        found += [f"where {relation_text(i.where)}" for i in self.intervals]
        return f"{a} and {b} tie {' and '.join(found)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the sides, their difference, the verdict, each root and its checks."""
        return {
            "a": _side_dict(self.a),
            "b": _side_dict(self.b),
            "ridge": self.ridge,
            "layer": self.a.layout.layer,
            "phase": str(self.phase),
            "hardware": self.hardware,
            "solve_for": self.key.name,
            "symbol": self.key.short,
            "params": dict(self.params),
            "assumptions": list(self.assumptions),
            "difference": {
                "expression": one_line(self.difference),
                "latex": latex(self.difference),
                "at_values": one_line(self.at_values),
                "at_values_latex": latex(self.at_values),
            },
            "verdict": str(self.verdict),
            "summary": self.summary,
            "ratio": None if self.ratio is None else str(self.ratio),
            "roots": [_root_dict(r) for r in self.roots],
            "intervals": [
                {"regime": i.regime, "where": relation_text(i.where)} for i in self.intervals
            ],
        }


def number_text(value: sympy.Expr) -> str:
    """An exact value as text, with its decimal value when it is not whole."""
    if value.is_Integer:
        return f"{int(value):,}"
    return f"{one_line(value)} ≈ {float(value):,.6g}"


def latex(expr: sympy.Basic) -> str:
    """``expr`` in LaTeX, each dimension and hardware field by its notation."""
    return sympy.latex(expr, symbol_names=_LATEX, mul_symbol="dot")


def _ratio_words(a: str, b: str, ratio: sympy.Expr | None) -> str:
    if ratio is None or ratio == 1:
        return ""
    big, small, times = (a, b, ratio) if ratio > 1 else (b, a, 1 / ratio)
    shown = one_line(times) if times.is_Integer else f"{one_line(times)} ≈ {float(times):.4g}"
    return f"{big} is always {shown}× {small}"


def _json_number(value: Number | None) -> int | float | None:
    if value is None or isinstance(value, int):
        return value
    return int(value) if value.denominator == 1 else float(value)


def _side_dict(side: Side) -> dict[str, Any]:
    return {
        "name": side.name,
        "layout": side.layout.name,
        "steps": list(side.steps),
        "metric": side.metric,
        "unit": side.unit,
        "expression": one_line(side.expression),
        "latex": latex(side.expression),
    }


def _root_dict(root: Root) -> dict[str, Any]:
    closed = root.closed_form
    checks = []
    for c in root.checks:
        check: dict[str, Any] = {"at": c.at, "a": _json_number(c.a), "b": _json_number(c.b)}
        check["order"] = c.order
        if c.error:
            check["error"] = c.error
        if c.notes:
            check["notes"] = list(c.notes)
        checks.append(check)
    return {
        "regime": root.regime,
        "exact": str(root.exact),
        "latex": latex(root.exact),
        "value": float(root.exact),
        "closed_form": None if closed is None else one_line(closed),
        "closed_form_latex": None if closed is None else latex(closed),
        "whole": root.whole,
        "holds": root.holds,
        "checks": checks,
    }


# ---------------------------------------------------------------- inputs


def crossover(
    a: str,
    b: str | None = None,
    *,
    metric: str | None = None,
    solve_for: str,
    layer: str = "attention",
    phase_name: str = "prefill",
    hardware: str | None = None,
    params: Mapping[str, object] | None = None,
) -> Crossover:
    """Where ``a`` and ``b`` tie as ``solve_for`` varies; ``b`` None: ``a``'s ridge point,
    where its compute time equals its load time."""
    params = dict(params or {})
    ph = phase(phase_name)
    key = _solve_for(solve_for, params)
    texts, metrics = _operands(a, b, metric)
    if request_lengths(params) is not None:
        raise InputError("a crossover takes one past_seq_len, not one per request")
    layouts = [get_layout(t.partition(":")[0], layer) for t in texts]
    mine = [applicable_params(lay, ph, params) for lay in layouts]
    unused = [k for k in params if not any(k in m for m in mine)]
    if unused:
        raise InputError(
            f"{', '.join(unused)} applies to neither {layer} layout {texts[0]!r} nor "
            f"{texts[1]!r} in {ph}"
        )
    inputs = [
        resolve_inputs(lay.name, ph, layer=layer, hardware=hardware, params=m)
        for lay, m in zip(layouts, mine, strict=True)
    ]
    hw = inputs[0].hardware
    if any(m in TIMINGS for m in metrics):
        if hw is None:
            raise InputError(
                "a time needs hardware: --hardware NAME (or peak_tflops=… "
                "memory_bandwidth_gb_s=… interconnect_bandwidth_gb_s=… interconnect_latency_us=…)"
            )
        if key.name == "bytes_per_elem":
            raise InputError(
                "bytes_per_elem picks the compute peak (FP8 or BF16): solve for it on a "
                "count, not on a time"
            )
    if not any(key.symbol in i.cost.dimensions for i in inputs):
        raise InputError(
            f"{key.name} is not a parameter of {layer} layout {texts[0]!r} nor {texts[1]!r} in {ph}"
        )
    overlap = hw is None or hw.supports_overlap
    sides = [_side(t, i, m, overlap) for t, i, m in zip(texts, inputs, metrics, strict=True)]
    if sides[0].unit != sides[1].unit:
        raise InputError(
            f"{sides[0].name} is in {sides[0].unit} and {sides[1].name} in {sides[1].unit}: "
            "a crossover compares like with like"
        )
    unknown = _unknown(key, layouts, ph, params)
    return _solve(sides, unknown, inputs, hardware, params, ridge=b is None)


def _solve_for(solve_for: str, params: Mapping[str, object]) -> Dimension:
    """The dimension to solve for: a dimension, and not one of the values given."""
    if solve_for not in DIMENSIONS_BY_NAME:
        if solve_for in KEYS:
            raise InputError(
                f"solve_for={solve_for!r} is not a dimension; a crossover solves for one of: "
                f"{', '.join(DIMENSIONS_BY_NAME)}"
            )
        raise unknown_key(solve_for)
    if solve_for in params:
        raise InputError(
            f"{solve_for} is both solved for and given ({solve_for}={params[solve_for]}); "
            "leave one out"
        )
    return DIMENSIONS_BY_NAME[solve_for]


def _operands(
    a: str, b: str | None, metric: str | None
) -> tuple[tuple[str, str], tuple[str | None, str | None]]:
    """The two sides and their metrics: ``a`` and ``b``, or ``a``'s compute and load times."""
    if metric is not None and metric not in (*METRICS, *TIMINGS):
        raise UnknownNameError(
            f"metric {metric!r} is unknown; metrics: {', '.join((*METRICS, *TIMINGS))}"
        )
    if b is None:
        if ":" in a:
            raise InputError(f"a ridge point is a layout's, not a step's: {a!r}")
        if metric is not None:
            raise InputError("a ridge point compares compute time with load time: no metric")
        return (a, a), RIDGE
    if metric is not None and ":" in a and ":" in b:
        raise InputError(f"metric {metric} is for a side without :STEP, and both name steps")
    return (a, b), (metric, metric)


def _unit(metric: str) -> str:
    if metric in TIMINGS:
        return "ms"
    return "FLOPs" if metric.startswith("flops") else "bytes"


def _side(text: str, inputs: Inputs, metric: str | None, overlap: bool) -> Side:
    """``LAYOUT`` (its metric) or ``LAYOUT:STEP[+STEP...]``, under the conventions of
    ``inputs``."""
    lay, cost, ph = inputs.layout, inputs.cost, inputs.phase
    _, colon, steps_text = text.partition(":")
    if not colon:
        if metric is None:
            raise InputError(
                f"{text!r} names no step, so it needs a metric: {', '.join((*METRICS, *TIMINGS))}"
            )
        if metric not in TIMINGS:
            return Side(lay, (), metric, _unit(metric), cost.metrics[metric], (metric,))
        model = timing_model(cost, ph, overlap, inputs.conventions)
        steps = (s for s in model.derivation.section(Section.TIMING) if s.unit == "ms")
        named = {model.derivation.resolve(s.symbol): f"{s.label}-bound" for s in steps}
        times = model.expressions()
        named |= {times[name]: words for name, words in _BOUND.items()}
        return Side(lay, (), metric, "ms", times[metric], (metric,), tuple(named.items()))
    keys = tuple(steps_text.split("+"))
    derivation = cost.derivation
    for key in keys:
        if not derivation.has(key):
            known = ", ".join(s.key for s in derivation.steps)
            raise UnknownNameError(
                f"step {key!r} is not a step of {lay.layer} layout {lay.name!r} in {ph}; "
                f"steps: {known}"
            )
    units = {derivation.step(key).unit for key in keys}
    if len(units) > 1:
        raise InputError(f"{text!r} adds steps of different units ({', '.join(sorted(units))})")
    expr = sympy.Add(*(derivation.resolve(derivation.step(key).symbol) for key in keys))
    labels = tuple(derivation.step(key).label for key in keys)
    return Side(lay, keys, None, units.pop(), expr, labels)


@dataclass(frozen=True)
class _Unknown:
    """The dimension solved for, as a positive real, and the dimensions that follow it."""

    key: Dimension
    x: sympy.Symbol
    tied: dict[sympy.Symbol, sympy.Expr]  # dimension -> its expression in x
    words: tuple[str, ...]


def _unknown(
    key: Dimension, layouts: Sequence[Layout], ph: Phase, params: Mapping[str, object]
) -> _Unknown:
    """``x`` for the dimension, and what follows it as ``metrics`` derives it: the member
    of a relation that is not given (the right factor keeps its default when neither is),
    and the dimensions whose default is its value."""
    x = _unknown_symbol(key)
    tied: dict[sympy.Symbol, sympy.Expr] = {key.symbol: x}
    words: list[str] = []
    relations = {r for lay in layouts for r in relations_for(lay, lay.cost(ph).dimensions)}
    for rel in relations:
        if key not in rel.dimensions:
            continue
        others = [d for d in rel.dimensions if d is not key]
        given = [d for d in others if d.name in params]
        if len(given) == 2:
            raise InputError(
                f"{key.name} is tied to {given[0].name} and {given[1].name} ({rel.words}); "
                f"give at most one of them when solving for {key.name}"
            )
        if given:
            derived = next(d for d in others if d not in given)
        else:
            derived = rel.left if key is rel.total else rel.total
        kept = next(d for d in others if d is not derived).symbol
        if derived is rel.total:
            tied[derived.symbol] = x * kept
        else:
            tied[derived.symbol] = x / kept if key is rel.total else kept / x
        words.append(f"{derived.name} follows {key.name} ({rel.words})")
    for name, source in DEFAULT_FROM.items():
        follows = DIMENSIONS_BY_NAME[source].symbol
        if name not in params and follows in tied:
            tied[DIMENSIONS_BY_NAME[name].symbol] = tied[follows]
            words.append(f"{name} follows {source}, its default")
    return _Unknown(key, x, tied, tuple(words))


# ---------------------------------------------------------------- regimes


def _regime(names: Sequence[str], chosen: Sequence[Sequence[Branch]]) -> str:
    """The branches in force in words: "both compute-bound", "tp load-bound; S ≤ 4095"."""
    bounds = [[b.words for b in mine if b.named] for mine in chosen]
    if bounds[0] and bounds[0] == bounds[1]:
        parts = ["both " + ", ".join(bounds[0])]
    else:
        parts = [f"{n} {', '.join(w)}" for n, w in zip(names, bounds, strict=True) if w]
    parts += dict.fromkeys(b.words for mine in chosen for b in mine if not b.named)
    return "; ".join(parts)


# ---------------------------------------------------------------- solving


def _solve(
    sides: list[Side],
    unknown: _Unknown,
    inputs: list[Inputs],
    hardware: str | None,
    params: Mapping[str, object],
    *,
    ridge: bool,
) -> Crossover:
    x, key = unknown.x, unknown.key
    values: dict[sympy.Symbol, sympy.Expr] = {}
    for i in inputs:
        values |= i.substitution()
    for symbol in unknown.tied:
        values.pop(symbol, None)
    replaced: dict[sympy.Expr, sympy.Expr] = {}
    exact = [s.expression.xreplace(unknown.tied) for s in sides]  # ceilings kept
    even = [even_splits(e, x, replaced) for e in exact]
    difference = signed(closed_form(even[0] - even[1]))
    gap = sympy.piecewise_fold((even[0] - even[1]).xreplace(values))
    at_values = signed(sympy.factor(sympy.expand(gap)))
    assumptions = list(unknown.words)
    if replaced:
        shown = ", ".join(f"{one_line(k)} as {one_line(v)}" for k, v in replaced.items())
        assumptions.append(f"even splits where {key.name} is split: {shown}")
    roots, intervals = _roots(sides, even, unknown, values)
    default = next(i.dims[key.name] for i in inputs if key.name in i.dims)
    there = (exact[0] - exact[1]).xreplace(values).xreplace({x: default})
    default_order = "<" if decided(there < 0) else ">" if decided(there > 0) else "="
    if decided(sympy.Eq(sympy.simplify(at_values), 0)):
        verdict, intervals = Verdict.IDENTICAL, []
    elif x not in at_values.free_symbols:
        verdict = Verdict.INDEPENDENT
    else:
        verdict = Verdict.TIE if roots or intervals else Verdict.NEVER
    checked = tuple(_checked(r, sides, key, inputs, hardware, params) for r in roots)
    follows = {BY_SYMBOL[s].name for s in unknown.tied if s in BY_SYMBOL}
    in_force = {k: v for i in inputs for k, v in i.params().items() if k not in follows}
    return Crossover(
        sides[0],
        sides[1],
        inputs[0].phase,
        hardware,
        key,
        in_force,
        tuple(params),
        tuple(assumptions),
        difference,
        at_values,
        verdict,
        _constant_ratio(even, values, x),
        checked,
        tuple(intervals),
        default_order,
        ridge,
    )


_Found = tuple[sympy.Expr, str, sympy.Expr | None, bool]  # root, regime, closed form, holds


def _roots(
    sides: list[Side], even: list[sympy.Expr], unknown: _Unknown, values: Values
) -> tuple[list[_Found], list[Interval]]:
    """Each regime's positive roots, kept where its branches hold, and the regimes in
    which the sides are equal throughout."""
    x = unknown.x
    words = [
        {even_splits(e.xreplace(unknown.tied), x, {}): w for e, w in side.bounds} for side in sides
    ]
    names = [s.name for s in sides]
    found: dict[sympy.Expr, tuple[str, sympy.Expr]] = {}
    intervals: list[Interval] = []
    regimes = itertools.product(*(branches(e, x, w) for e, w in zip(even, words, strict=True)))
    for (ea, ca), (eb, cb) in regimes:
        conditions = [b.condition.xreplace(values) for b in (*ca, *cb)]
        if any(c == sympy.false for c in conditions):
            continue
        live = [
            [b for b in mine if b.condition.xreplace(values) != sympy.true] for mine in (ca, cb)
        ]
        regime = _regime(names, live)
        relations = [c for c in conditions if c != sympy.true]
        gap = sympy.piecewise_fold((ea - eb).xreplace(values))
        if sympy.simplify(gap) == 0:
            where: sympy.Basic = sympy.And(*relations)
            with contextlib.suppress(NotImplementedError, TypeError, ValueError):
                where = sympy.reduce_inequalities([*relations, x > 0], x)
            if where != sympy.false:
                intervals.append(Interval(regime, where))
            continue
        for root in positive_roots(gap, x):
            at_root = (decided(c.xreplace({x: root})) for c in relations)
            if root not in found and all(d is not False for d in at_root):
                found[root] = (regime, ea - eb)
    out = []
    for root in sorted(found, key=float):
        regime, symbolic = found[root]
        holds = sympy.simplify(symbolic.xreplace(values).xreplace({x: root})) == 0
        out.append((root, regime, closed_root(symbolic, x, values, root), bool(holds)))
    return out, intervals


def _constant_ratio(even: list[sympy.Expr], values: Values, x: sympy.Symbol) -> sympy.Expr | None:
    a, b = (e.xreplace(values) for e in even)
    if a == 0 or b == 0:
        return None
    ratio = sympy.simplify(a / b)
    return ratio if ratio.is_number and x not in ratio.free_symbols else None


# ---------------------------------------------------------------- checks


def _checked(
    found: _Found,
    sides: list[Side],
    key: Dimension,
    inputs: list[Inputs],
    hardware: str | None,
    params: Mapping[str, object],
) -> Root:
    """A root with the library's evaluation at the whole values around it."""
    root, regime, closed, holds = found
    whole = int(sympy.ceiling(root))
    points = [whole - 1, whole, *([whole + 1] if root.is_Integer else [])]
    checks = tuple(_check(at, sides, key, inputs, hardware, params) for at in points if at >= 1)
    return Root(regime, root, closed, whole, holds, checks)


def _check(
    at: int,
    sides: list[Side],
    key: Dimension,
    inputs: list[Inputs],
    hardware: str | None,
    params: Mapping[str, object],
) -> Check:
    """Both sides evaluated by the library with the dimension at ``at``."""
    got: list[Number] = []
    notes: list[str] = []
    for side, i in zip(sides, inputs, strict=True):
        lay = side.layout
        given = applicable_params(lay, i.phase, {**params, key.name: at})
        try:
            chosen = resolve_inputs(
                lay.name, i.phase, layer=lay.layer, hardware=hardware, params=given
            )
            result = evaluate(chosen)
        except InputError as exc:
            return Check(at, None, None, str(exc))
        got.append(side.value(result))
        notes += result.notes
    return Check(at, got[0], got[1], notes=tuple(dict.fromkeys(notes)))
