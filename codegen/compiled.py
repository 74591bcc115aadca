"""``shardcost.compile``: a layout and phase as one fast function, built once and cached.

    f = compile_layout(get_layout("tp"), "prefill")
    f(hidden_size=4096, seq_len=2048)            # scalars: exact ints, pure Python
    f(seq_len=np.arange(1, 10**6) * 16)          # arrays: float64 numpy, broadcast
    f(seq_len=big, exact=True)                   # arrays of exact Python ints

Arrays go through a blocked float64 program (``codegen.blocked``): one pass over
cache-sized blocks computes the outputs, where each row is a valid configuration, and
where a count may be inexact (a bound of an intermediate value reached 2^53). Each count
is in whole-number division form (``codegen.exactness``), so every row below 2^53 is
exact. The rows a pass marks are settled exactly: their validity always; with
``exact=True`` their counts too, in int64 where every value stays below 2^62 and with
Python ints only for the rows past that (object arrays come back). Without
``exact=True`` a PrecisionWarning says when a valid row's counts may be rounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

import numpy as np
import sympy

from shardcost.errors import InternalError, InvalidValueError
from shardcost.formulas import Layout, Phase
from shardcost.formulas.conventions import phase as parse_phase
from shardcost.formulas.hardware import NUMERIC_FIELDS
from shardcost.symbolic import Product
from shardcost.symbolic.dimensions import BY_SYMBOL

from . import blocked as generator
from . import runtime
from .arrays import Inputs, Pattern, float_outputs, run
from .blocked import Blocked, blocked_source
from .printers import NumpyPrinter, UnsupportedNode
from .program import Check, Program, equation
from .python import (
    Fixed,
    Variant,
    choices,
    exact_array_source,
    load,
    merged,
    module_source,
    variants,
)
from .stored import ident, stored

HARDWARE_NAMES = {f.symbol: f.name for f in NUMERIC_FIELDS}


@dataclass(frozen=True)
class _Plan:
    """How one variant reads a call's inputs."""

    prog: Program
    picks: tuple[int, ...]  # the indices of its inputs among the compiled function's
    counts: int
    unread: tuple[int, ...]  # count inputs it does not read (still checked positive)


@dataclass
class ArrayPaths:
    """The numpy paths of one compiled layout: per variant, blocked float64 and int64
    programs (``codegen.blocked``) and the exact object-array function."""

    layout: Layout
    phase: Phase
    variants: dict[tuple[Any, ...], Variant]
    head: Program  # every variant's inputs and relations (``python.merged``)
    _plans: dict[tuple[Any, ...], _Plan] = field(default_factory=dict)
    # (conventions, call pattern, int64) -> the generated program and its function
    built: dict[tuple[Any, ...], tuple[Blocked, Callable[..., tuple]]] = field(default_factory=dict)
    _exact: dict[tuple[Any, ...], Callable[..., tuple]] = field(default_factory=dict)
    # what names these paths across processes (``stored.ident``): blocked programs are
    # kept on disk under it; None: never
    ident: tuple[Any, ...] | None = None

    @cached_property
    def params(self) -> tuple[sympy.Symbol, ...]:
        """Count inputs, then hardware inputs, in call order."""
        return self.head.symbols

    @cached_property
    def counts(self) -> int:
        """How many of ``params`` are counts."""
        return len(self.head.inputs)

    @cached_property
    def names(self) -> tuple[str, ...]:
        """The CLI names of the count inputs."""
        return tuple(BY_SYMBOL[p].name for p in self.params[: self.counts])

    @cached_property
    def all_names(self) -> tuple[str, ...]:
        """The names of every input, counts then hardware fields."""
        return (*self.names, *self.hardware_names)

    @cached_property
    def hardware_names(self) -> tuple[str, ...]:
        """The names of the hardware inputs (timing functions)."""
        return tuple(HARDWARE_NAMES[p] for p in self.params[self.counts :])

    def program(self, key: tuple[Any, ...]) -> Program:
        """The variant's Program; InvalidValueError for conventions no variant has."""
        variant = self.variants.get(key)
        if variant is None:
            switches = choices(self.layout, self.phase, len(self.params) > self.counts)
            allowed = "; ".join(f"{n}: {' | '.join(map(str, v))}" for n, v in switches.items())
            raise runtime.bad_conventions(tuple(switches), key, allowed)
        return variant.program

    def plan(self, key: tuple[Any, ...]) -> _Plan:
        """How one variant reads the call's inputs (built once per variant)."""
        found = self._plans.get(key)
        if found is None:
            prog = self.program(key)
            at = {p: k for k, p in enumerate(self.params)}
            picks = tuple(at[s] for s in prog.symbols)
            unread = tuple(k for k in range(self.counts) if k not in picks)
            found = self._plans[key] = _Plan(prog, picks, len(prog.inputs), unread)
        return found

    def function(
        self, key: tuple[Any, ...], exact: bool, varying: frozenset[sympy.Symbol] = frozenset()
    ) -> tuple[Program, Callable[..., tuple]]:
        """The variant's Program and its exact object-array function, or its blocked
        float64 program for calls where ``varying`` inputs are float64 arrays."""
        prog = self.program(key)
        if exact:
            return prog, self._exact_function(key)
        moving = tuple(s in varying for s in prog.symbols)
        whole = tuple(m and k < len(prog.inputs) for k, m in enumerate(moving))
        none = (False,) * len(moving)
        return prog, self.blocked(key, (moving, none, whole, ()), False)[1]

    def blocked(
        self, key: tuple[Any, ...], pattern: Pattern, integer: bool
    ) -> tuple[Blocked, Callable[..., tuple]]:
        """The blocked program of one variant for one call pattern, generated once."""
        cache_key = (key, pattern, integer)
        found = self.built.get(cache_key)
        if found is None:
            prog = self.program(key)
            symbols = prog.symbols
            varying, cast, whole, aliases = pattern
            name = f"{prog.name}_{'int64' if integer else 'float64'}"
            generated = stored(
                "blocked",
                # the limits the generator reads (tests lower them) are part of the name
                None
                if self.ident is None
                else (*self.ident, cache_key, generator.EXACT_FLOAT, generator.WIDE),
                lambda: blocked_source(
                    prog,
                    name,
                    frozenset(s for s, v in zip(symbols, varying, strict=True) if v),
                    integer=integer,
                    cast=frozenset(s for s, v in zip(symbols, cast, strict=True) if v),
                    whole=frozenset(s for s, v in zip(symbols, whole, strict=True) if v),
                    aliases=tuple((symbols[j], symbols[i]) for j, i in aliases),
                    outputs=frozenset(prog.counts) if integer else None,
                ),
            )
            function = load(generated.source, name, {"_ceil": math.ceil, "_floor": math.floor})
            found = self.built[cache_key] = (generated, function)
        return found

    def _exact_function(self, key: tuple[Any, ...]) -> Callable[..., tuple]:
        found = self._exact.get(key)
        if found is None:
            prog = self.program(key)
            name = f"{prog.name}_exact"
            found = self._exact[key] = load(exact_array_source(prog, name), name, {})
        return found

    def evaluate(
        self, key: tuple[Any, ...], values: tuple[Any, ...], *, exact: bool, strict: bool
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Outputs over the broadcast inputs, where the inputs are a valid configuration,
        and where a count may be inexact (float64 only: a value reached 2^53).

        float64: one blocked pass; rows it marks (a bound reached 2^53) have their
        validity settled exactly. ``exact``: those rows' counts are recomputed too, in
        int64 where every value stays below 2^62, with Python ints only where one does
        not; counts come back as object arrays of Python ints.
        ``strict``: raise at the first kind of invalid configuration instead of masking,
        and warn (PrecisionWarning) when any count may be inexact.
        """
        plan = self.plan(key)
        if strict and len(values) > self.counts:
            error = runtime.hardware_error(self.hardware_names, values[self.counts :])
            if error is not None:
                raise error
        given = Inputs.of(values, self.all_names, self.counts, exact=exact)
        inputs = given.select(plan.picks, len(plan.prog.inputs))
        try:
            result, ok, rough = self._float(key, plan.prog, inputs)
        except OverflowError:  # an input past float64's range: Python ints throughout
            if not exact:
                raise InvalidValueError(
                    "an input is too large for float64 arrays; call with exact=True"
                ) from None
            result, ok, rough = {}, np.zeros(inputs.n, dtype=bool), np.ones(inputs.n, dtype=bool)
        if plan.unread:  # inputs this variant does not read must be valid all the same
            unread = tuple(np.asarray(given.values[k]) for k in plan.unread)
            ok &= np.broadcast_to(runtime.valid(unread), ok.shape)
        settled: dict[str, np.ndarray] = {}
        marked = bool(rough.any())
        if marked:  # settle these rows exactly: their validity, and (exact) their counts
            rows = np.flatnonzero(rough)
            settled, ok[rows] = self._settle(key, inputs.gather(rows))
        if exact:
            result = self._exact_result(plan.prog, inputs, result, ok, rough, settled)
            rough[...] = marked = False
        shape = inputs.shape
        if ok.shape != shape:
            ok, rough = ok.reshape(shape), rough.reshape(shape)
        if strict and not ok.all():
            arrays = dict(zip(self.params, given.arrays(), strict=True))
            if not runtime.all_valid(given.arrays()[: self.counts]):
                raise runtime.not_positive(self.names, values[: self.counts])
            raise _first_failure(plan.prog, arrays)
        if strict and marked and (rough & ok).any():
            runtime.warn_precision()
        return result, ok, rough

    def _float(
        self, key: tuple[Any, ...], prog: Program, inputs: Inputs
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """The float64 pass: outputs (shaped), ok and rough (flat)."""
        blocked, function = self.blocked(key, inputs.pattern(False), False)
        return float_outputs([name for name, _ in prog.outputs], blocked, function, inputs)

    def _settle(
        self, key: tuple[Any, ...], inputs: Inputs
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Exact counts (object arrays of Python ints) and validity of rows a float64 pass
        marked: in int64 where every bound stays below 2^62, else with Python ints."""
        n = inputs.n
        blocked, function = self.blocked(key, inputs.pattern(False), False)
        prog = self.program(key)
        try:
            _, _, _, wide = run(blocked, function, inputs.floats(), n, np.float64, wide=True)
            assert wide is not None
        except OverflowError:
            wide = np.ones(n, dtype=bool)
        counts = {m: np.empty(n, dtype=object) for m in prog.counts}
        ok = np.empty(n, dtype=bool)
        narrow = np.flatnonzero(~wide)
        if narrow.size:
            try:
                found, ok_narrow = self._int64(key, inputs.gather(narrow))
            except (ArithmeticError, UnsupportedNode):  # a constant past int64: Python ints
                wide[narrow] = True
            else:
                for m in prog.counts:
                    counts[m][narrow] = found[m]
                ok[narrow] = ok_narrow
        rest = np.flatnonzero(wide)
        if rest.size:
            found, ok_rest = self._python(key, inputs.gather(rest))
            for m in prog.counts:
                counts[m][rest] = found[m]
            ok[rest] = ok_rest
        return counts, ok & inputs.whole()

    def _int64(self, key: tuple[Any, ...], inputs: Inputs) -> tuple[dict[str, Any], np.ndarray]:
        """The counts in int64 (exact: every value of these rows stays below 2^62)."""
        prog = self.program(key)
        blocked, function = self.blocked(key, inputs.pattern(True), True)
        values, ok, _, _ = run(blocked, function, inputs.ints(), inputs.n, np.int64, rough=False)
        found = {
            name: v.astype(object) if isinstance(v, np.ndarray) else v
            for (name, _), v in zip(prog.outputs, values, strict=True)
            if name in prog.counts
        }
        return found, ok

    def _python(self, key: tuple[Any, ...], inputs: Inputs) -> tuple[dict[str, Any], np.ndarray]:
        """The counts with Python ints, for the rows that need them: exact at any size."""
        prog = self.program(key)
        function = self._exact_function(key)
        args = list(inputs.python())
        counted = args[: inputs.counts]
        positive = np.broadcast_to(runtime.valid(tuple(counted)), (inputs.n,))
        for k in range(inputs.counts):  # invalid rows would divide by zero: compute on ones
            args[k] = np.where(positive, args[k], 1)
        *out, fine = function(*args)
        found = {
            name: np.broadcast_to(v, (inputs.n,))
            for (name, _), v in zip(prog.outputs, out, strict=True)
            if name in prog.counts
        }
        return found, positive & np.broadcast_to(fine, (inputs.n,))

    def _exact_result(
        self,
        prog: Program,
        inputs: Inputs,
        floats: dict[str, np.ndarray],
        ok: np.ndarray,
        rough: np.ndarray,
        settled: dict[str, np.ndarray],
    ) -> dict[str, np.ndarray]:
        """Object arrays of Python ints for the counts: the float64 pass's values where
        they are exact, the settled rows' elsewhere; times as object arrays of floats."""
        shape, n = inputs.shape, inputs.n
        rows = np.flatnonzero(rough)
        result = {}
        for name, _ in prog.outputs:
            if name not in prog.counts:  # a time: floats, as the exact steps give them
                result[name] = np.full(shape, np.nan, dtype=object)
                if floats:
                    result[name][...] = floats[name]
                continue
            column = np.zeros(n, dtype=np.int64)
            if floats:  # exact below 2^53; invalid rows (maybe not finite) stay 0
                value = np.broadcast_to(floats[name], shape).reshape(n)
                with np.errstate(invalid="ignore"):
                    np.copyto(column, value, casting="unsafe", where=ok & ~rough)
            column = column.astype(object)
            if rows.size:
                column[rows] = settled[name]
            result[name] = column.reshape(shape)
        return result

    def __call__(
        self, key: tuple[Any, ...], exact: bool, values: tuple[Any, ...]
    ) -> dict[str, np.ndarray]:
        return self.evaluate(key, values, exact=exact, strict=True)[0]


def broken(
    prog: Program, arrays: dict[Any, np.ndarray]
) -> Iterator[tuple[Product | Check, np.ndarray, np.ndarray, np.ndarray]]:
    """Each relation and requirement of ``prog``, with its two sides evaluated on the
    arrays and where it fails (a relation: its sides differ; a check: parts does not
    divide total, nor, with ``either``, total parts)."""
    for relation in prog.relations:
        lhs, rhs = (requirement_side(side, arrays) for side in equation(relation).args)
        yield relation, lhs, rhs, lhs != rhs
    for check in prog.checks:
        total = requirement_side(check.total, arrays)
        parts = requirement_side(check.parts, arrays)
        bad = total % parts != 0
        if check.either:
            bad = bad & (parts % total != 0)
        yield check, total, parts, bad


def _first_failure(prog: Program, arrays: dict[sympy.Symbol, np.ndarray]) -> Exception:
    """The error for the first relation, else the first requirement, that fails."""
    for rule, total, parts, bad in broken(prog, arrays):
        if not np.any(bad):
            continue
        if isinstance(rule, Product):
            return runtime.mismatch(rule, *(arrays[d.symbol] for d in rule.dimensions))
        return runtime.not_divisible(
            rule.total_name, total, rule.parts_name, parts, rule.why, rule.either
        )
    return InternalError("a configuration failed no relation and no requirement")


def requirement_side(expr: sympy.Expr, arrays: dict[sympy.Symbol, np.ndarray]) -> np.ndarray:
    """A requirement's side evaluated on the arrays, for an error message."""
    names = {s: f"a{i}" for i, s in enumerate(arrays)}
    source = (
        f"def side({', '.join(names.values())}):\n    return {NumpyPrinter(names).doprint(expr)}\n"
    )
    return load(source, "side", {})(*arrays.values())


def _exists(layout: Layout, ph: Phase) -> None:
    """InputError unless ``layout`` is defined in ``ph`` (without building its cost)."""
    if ph not in layout.phases:
        layout.cost(ph)  # says which phases it has


@cache
def array_paths(
    layout: Layout, phase: str | Phase, timing: bool = False, fixed: Fixed = ()
) -> ArrayPaths:
    """The numpy paths a sweep evaluates (``codegen.sweep``): those of ``compile_layout``
    (no scalar function), their programs with the extra counts (``program(extras=True)``:
    chips and each collective's payload bytes) after the nine metrics."""
    ph = parse_phase(phase)
    _exists(layout, ph)
    name = ident(layout, str(ph), timing, fixed, False, (), True)
    found = stored("variants", name, lambda: variants(layout, ph, timing, fixed, extras=True))
    return ArrayPaths(layout, ph, {v.values: v for v in found}, merged(found), ident=name)


@cache
def compile_layout(
    layout: Layout,
    phase: str | Phase,
    timing: bool = False,
    fixed: Fixed = (),
    decoupled: bool = False,
    pinned: Fixed = (),
) -> Callable[..., dict]:
    """The compiled function of ``layout`` in ``phase`` (with the four timings when ``timing``).

    It takes the layout's dimensions, conventions (and, with timing, hardware fields and
    supports_overlap) as keywords with the notation's defaults, plus ``exact`` for arrays.
    ``decoupled``: the layer's relations neither derive nor check (whole models pass
    every dimension, and a config may set head_dim apart from hidden_size / num_heads).
    ``pinned``: switches (and supports_overlap) that take one value only, so one variant is
    generated instead of every combination.
    """
    ph = parse_phase(phase)
    _exists(layout, ph)
    what = ident(layout, str(ph), timing, fixed, decoupled, pinned, False)
    found = stored("variants", what, lambda: variants(layout, ph, timing, fixed, decoupled, pinned))
    paths = ArrayPaths(layout, ph, {v.values: v for v in found}, merged(found), ident=what)
    name, source, relations = stored(
        "module",
        what,
        lambda: module_source(layout, ph, timing, fixed, decoupled, pinned, found),
    )
    function = load(source, name, {"_arrays": paths, "_inf": math.inf, "_relations": relations})
    function.layout = layout
    function.phase = ph
    function.arrays = paths
    function.fixed = dict(fixed)
    return function
