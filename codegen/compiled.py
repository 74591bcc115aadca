"""``shardcost.compile``: a layout and phase as one fast function, built once and cached.

    f = compile_layout(get_layout("tp"), "prefill")
    f(hidden_size=4096, seq_len=2048)            # scalars: exact ints, pure Python
    f(seq_len=np.arange(1, 10**6) * 16)          # arrays: float64 numpy, broadcast
    f(seq_len=big, exact=True)                   # arrays of exact Python ints

float64 arrays compute each count in whole-number division form (``codegen.exactness``):
exact while every intermediate value stays below 2^53; a call bounds those values and a
PrecisionWarning says when one reaches 2^53. ``exact=True`` computes on object arrays of
Python ints instead: exact at any size, slower.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import sympy

from shardcost.errors import InternalError
from shardcost.formulas import Layout, Phase
from shardcost.formulas.conventions import phase as parse_phase
from shardcost.formulas.hardware import NUMERIC_FIELDS
from shardcost.symbolic import Product
from shardcost.symbolic.dimensions import BY_SYMBOL

from . import runtime
from .printers import NumpyPrinter
from .program import Check, Program, equation
from .python import (
    Fixed,
    Variant,
    choices,
    exact_array_source,
    float_source,
    load,
    merged,
    module_source,
    variants,
)

HARDWARE_NAMES = {f.symbol: f.name for f in NUMERIC_FIELDS}


@dataclass
class ArrayPaths:
    """The numpy paths of one compiled layout: per variant, float64 and exact functions."""

    layout: Layout
    phase: Phase
    variants: dict[tuple[Any, ...], Variant]
    head: Program  # every variant's inputs and relations (``python.merged``)
    _built: dict[tuple[Any, ...], Callable[..., tuple]] = field(default_factory=dict)

    @property
    def params(self) -> tuple[sympy.Symbol, ...]:
        """Count inputs, then hardware inputs, in call order."""
        return self.head.symbols

    @property
    def counts(self) -> int:
        """How many of ``params`` are counts."""
        return len(self.head.inputs)

    @property
    def names(self) -> tuple[str, ...]:
        """The CLI names of the count inputs."""
        return tuple(BY_SYMBOL[p].name for p in self.params[: self.counts])

    @property
    def hardware_names(self) -> tuple[str, ...]:
        """The names of the hardware inputs (timing functions)."""
        return tuple(HARDWARE_NAMES[p] for p in self.params[self.counts :])

    def function(
        self, key: tuple[Any, ...], exact: bool, varying: frozenset[sympy.Symbol] = frozenset()
    ) -> tuple[Program, Callable[..., tuple]]:
        """The variant's Program and its exact numpy function, or its float64 one for
        calls where ``varying`` inputs are arrays; each built once."""
        variant = self.variants.get(key)
        if variant is None:
            switches = choices(self.layout, self.phase, len(self.params) > self.counts)
            allowed = "; ".join(f"{n}: {' | '.join(map(str, v))}" for n, v in switches.items())
            raise runtime.bad_conventions(tuple(switches), key, allowed)
        cache_key = (key, exact, frozenset() if exact else varying)
        if cache_key not in self._built:
            prog = variant.program
            if exact:
                name = f"{prog.name}_exact"
                source = exact_array_source(prog, name)
            else:
                name = f"{prog.name}_float"
                source = float_source(prog, name, varying & frozenset(prog.symbols))
            self._built[cache_key] = load(source, name, {})
        return variant.program, self._built[cache_key]

    def evaluate(
        self, key: tuple[Any, ...], values: tuple[Any, ...], *, exact: bool, strict: bool
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Outputs over the broadcast inputs, where the inputs are a valid configuration,
        and where a count may be inexact (float64 only: a value reached 2^53).

        ``strict``: raise at the first kind of invalid configuration instead of masking,
        and warn (PrecisionWarning) when any count may be inexact.
        """
        counts = runtime.as_arrays(values[: self.counts], exact, self.names)
        if strict and len(values) > self.counts:
            error = runtime.hardware_error(self.hardware_names, values[self.counts :])
            if error is not None:
                raise error
        hardware = tuple(np.asarray(v, dtype=np.float64) for v in values[self.counts :])
        arrays = dict(zip(self.params, counts + hardware, strict=True))
        varying = frozenset(s for s, a in arrays.items() if a.ndim)
        prog, function = self.function(key, exact, varying)
        shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
        if exact:
            result, ok, fine = self._exact(prog, function, arrays, counts, shape, strict)
            inexact = np.zeros(shape, dtype=bool)
        else:
            result, ok, fine, inexact = self._float(prog, function, arrays, counts, shape, strict)
        if strict and not ok.all():
            raise runtime.not_positive(self.names, values[: self.counts])
        if strict and not fine.all():
            raise _first_failure(prog, arrays)
        return result, (ok if strict else ok & fine), inexact

    def _valid(self, counts: tuple[np.ndarray, ...], strict: bool) -> np.ndarray:
        """Where the inputs are positive whole numbers (strict: one bool for all of them);
        relations and requirements are the generated functions' to test."""
        return np.asarray(runtime.all_valid(counts) if strict else runtime.valid(counts))

    def _exact(
        self,
        prog: Program,
        function: Callable[..., tuple],
        arrays: dict[sympy.Symbol, np.ndarray],
        counts: tuple[np.ndarray, ...],
        shape: tuple[int, ...],
        strict: bool,
    ) -> tuple[dict, np.ndarray, np.ndarray]:
        ok = np.broadcast_to(self._valid(counts, strict=False), shape)
        # invalid rows would divide by zero on object arrays: compute them on ones
        args = [np.where(ok, arrays[s], 1) for s in prog.symbols]
        *out, fine = function(*args)
        result = {n: runtime.full(v, shape) for (n, _), v in zip(prog.outputs, out, strict=True)}
        return result, (np.asarray(ok.all()) if strict else ok), np.broadcast_to(fine, shape)

    def _float(
        self,
        prog: Program,
        function: Callable[..., tuple],
        arrays: dict[sympy.Symbol, np.ndarray],
        counts: tuple[np.ndarray, ...],
        shape: tuple[int, ...],
        strict: bool,
    ) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
        """float64, large inputs split along their first axis over the cores: each thread
        checks and computes its rows (numpy releases the GIL), writing into shared outputs.
        Rows whose counts may be inexact are marked (and, when ``strict``, warned about)."""
        outs = [np.empty(shape) if varies else None for varies in function.varies]
        oks = np.empty(shape, dtype=bool) if not strict else None
        fines = np.empty(shape, dtype=bool)
        inexact = np.empty(shape, dtype=bool)
        rows = shape[0] if shape else 1
        parts = min(_workers(), rows) if math.prod(shape) >= PARALLEL_MIN else 1
        bounds = [(rows * i // parts, rows * (i + 1) // parts) for i in range(parts)]

        def run(lo: int, hi: int) -> tuple[Any, ...]:
            rows_ = slice(lo, hi) if shape else ...  # 0-d: the one element
            part = {s: _rows(a, lo, hi, shape) for s, a in arrays.items()}
            ok = self._valid(tuple(part[p] for p in self.params[: self.counts]), strict)
            with np.errstate(all="ignore"):  # invalid rows may divide by zero; masked
                *values, fine, rough = function(
                    *(part[s] for s in prog.symbols),
                    out=[o[rows_] if o is not None else None for o in outs],
                )
            fines[rows_] = fine
            inexact[rows_] = rough
            if oks is not None:
                oks[rows_] = ok
            # only valid rows count: an invalid one is masked out (or raised) anyway
            big = strict and bool(np.any(rough & ok & fine))
            return bool(np.all(ok)), values, big

        done = (
            [run(*b) for b in bounds]
            if parts == 1
            else list(_pool().map(lambda b: run(*b), bounds))
        )
        values = done[0][1]
        result = {
            n: o if o is not None else runtime.full(v, shape)
            for (n, _), o, v in zip(prog.outputs, outs, values, strict=True)
        }
        if any(big for _, _, big in done):
            runtime.warn_precision()
        ok = np.asarray(all(flag for flag, _, _ in done)) if strict else oks
        return result, ok, fines, inexact

    def __call__(
        self, key: tuple[Any, ...], exact: bool, values: tuple[Any, ...]
    ) -> dict[str, np.ndarray]:
        return self.evaluate(key, values, exact=exact, strict=True)[0]


PARALLEL_MIN = 1 << 16  # elements below which one thread is quicker
_POOL: list[ThreadPoolExecutor] = []


def _workers() -> int:
    return os.cpu_count() or 1


def _pool() -> ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="shardcost"))
    return _POOL[0]


def _rows(array: np.ndarray, lo: int, hi: int, shape: tuple[int, ...]) -> np.ndarray:
    """Rows lo:hi of ``array`` as it broadcasts to ``shape`` (a view; itself when it does
    not extend along the first axis)."""
    if shape and array.ndim == len(shape) and array.shape[0] == shape[0] and shape[0] > 1:
        return array[lo:hi]
    return array


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
    layout.cost(ph)  # the phase must exist for this layout
    found = variants(layout, ph, timing, fixed, decoupled, pinned)
    paths = ArrayPaths(layout, ph, {v.values: v for v in found}, merged(found))
    name, source, relations = module_source(layout, ph, timing, fixed, decoupled, pinned)
    function = load(source, name, {"_arrays": paths, "_inf": math.inf, "_relations": relations})
    function.layout = layout
    function.phase = ph
    function.arrays = paths
    function.fixed = dict(fixed)
    return function
