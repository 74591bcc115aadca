"""The optional numba back end (``pip install 'shardcost[fast]'``) for large sweeps.

One parallel loop per layout, phase and conventions, over caller-allocated outputs:

    f = fast_layout(get_layout("tp"), "prefill")
    out = np.empty((9, n), dtype=np.int64); ok = np.empty(n, dtype=np.bool_)
    f(out=out, ok=ok, batch_size=b_array, seq_len=s_array)   # other inputs: defaults

Each configuration runs the metrics' closed forms in int64, exact while every value stays
below 2^63 (about 9.2e18); ``ok[i]`` is False where the inputs are not a valid
configuration (not positive, a relation of its layer broken, or a split that cannot be
made), and that column is zero.
A configuration with a value at or past 2^63 is never wrapped: its ``ok`` is False too,
and a PrecisionWarning says how many there are (``exact=True`` on the numpy path takes
them).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import sympy

from shardcost.errors import InputError, PrecisionWarning
from shardcost.formulas import Layout, Phase
from shardcost.formulas.conventions import phase as parse_phase
from shardcost.symbolic import METRICS, closed_form

from . import runtime
from .exactness import bounds, division_form, maximal
from .program import Program
from .program_printers import PythonProgram, identifiers
from .python import Fixed, choices, load, merged, variants


def _numba() -> Any:
    try:
        import numba
    except ImportError:
        raise InputError(
            "the fast back end needs numba, an optional extra: pip install 'shardcost[fast]'"
        ) from None
    return numba


WIDE = 2**62  # a float64 bound at or above this may mean an int64 value past 2^63


_KERNEL_RESERVED = frozenset({"i", "n", "m", "out", "ok", "wide", "numba", "ceil", "floor"})


def kernel_source(prog: Program, name: str) -> str:
    """A loop over configurations: the metrics of ``prog`` in whole-number division form
    (``codegen.exactness``), one column each.

    Each row tests its inputs (positive, the relations and requirements hold), then
    evaluates the closed forms and the bounds of every intermediate value in float64.
    Below 2^53 those values are exact and are stored as they are; below 2^62 the row is
    recomputed in int64 (exact below 2^63); past that it would wrap, so it is not
    computed: ``ok`` is False and ``wide`` is 1."""
    inputs = [d.symbol for d in prog.inputs]
    forms = [division_form(closed_form(prog.resolve(e))) for _, e in prog.outputs]
    limits = maximal(list(dict.fromkeys([*inputs, *(b for e in forms for b in bounds(e))])))
    temps = (sympy.Symbol(f"_w{i}") for i in itertools.count())
    pairs, reduced = sympy.cse(forms, symbols=temps, optimizations="basic")
    floats = (sympy.Symbol(f"_f{i}") for i in itertools.count())
    float_pairs, float_all = sympy.cse([*forms, *limits], symbols=floats, optimizations="basic")
    floated, float_limits = float_all[: len(forms)], float_all[len(forms) :]
    names = identifiers(
        [*inputs, *(t for t, _ in pairs), *(t for t, _ in float_pairs)],
        _KERNEL_RESERVED | PythonProgram.reserved(),
    )
    as_float = {s: f"{names[s]}_f" for s in inputs}
    tester = PythonProgram(prog, names)
    printer = tester.exact
    shadow = type(printer)({**names, **as_float}, exact=False)
    arrays = [f"{names[s]}_in" for s in inputs]
    tests = [f"{names[s]} >= 1" for s in inputs]
    tests += [tester.holds(node) for node in (*prog.relations, *prog.checks)]
    zero = [f"            out[{k}, i] = 0" for k in range(len(METRICS))]
    body = [f"        {names[s]} = {a}[i]" for s, a in zip(inputs, arrays, strict=True)]
    body += ["        wide[i] = 0", f"        if not ({' and '.join(tests)}):"]
    body += ["            ok[i] = False", *zero, "            continue"]
    body += ["        ok[i] = True"]
    body += [f"        {as_float[s]} = float({names[s]})" for s in inputs]
    body += [f"        {names[t]} = {shadow.doprint(e)}" for t, e in float_pairs]
    largest = [shadow.doprint(e) for e in dict.fromkeys(float_limits)]
    body += [f"        m = {largest[0]}"] + [f"        m = max(m, {x})" for x in largest[1:]]
    body += [f"        if m < {runtime.EXACT_FLOAT}.0:  # exact in float64"]
    body += [f"            out[{k}, i] = int({shadow.doprint(e)})" for k, e in enumerate(floated)]
    body += [f"        elif m < {WIDE}.0:  # exact in int64"]
    body += [f"            {names[t]} = {printer.doprint(e)}" for t, e in pairs]
    body += [f"            out[{k}, i] = {printer.doprint(e)}" for k, e in enumerate(reduced)]
    body += ["        else:", "            ok[i] = False", "            wide[i] = 1", *zero]
    lines = [
        f"def {name}({', '.join(arrays)}, out, ok, wide):",
        "    n = out.shape[1]",
        "    for i in numba.prange(n):",
        *body,
    ]
    return "\n".join(lines) + "\n"


class FastLayout:
    """A layout and phase compiled with numba; call with arrays and caller-allocated outputs."""

    def __init__(self, layout: Layout, phase: Phase, fixed: Fixed = ()) -> None:
        self.layout, self.phase = layout, phase
        self.switches = choices(layout, phase, False)
        found = variants(layout, phase, False, fixed)
        self.variants = {v.values: v.program for v in found}
        self.inputs = list(merged(found).inputs)
        self._kernels: dict[tuple[Any, ...], Callable[..., None]] = {}

    def kernel(self, key: tuple[Any, ...]) -> tuple[Program, Callable[..., None]]:
        """The compiled loop for one combination of conventions (built on first use)."""
        if key not in self.variants:
            allowed = "; ".join(f"{n}: {' | '.join(map(str, v))}" for n, v in self.switches.items())
            raise InputError(f"conventions {key} are not allowed; {allowed}")
        prog = self.variants[key]
        if key not in self._kernels:
            numba = _numba()
            name = f"{prog.name}_kernel"
            floats = {"ceil": np.ceil, "floor": np.floor}
            loop = load(kernel_source(prog, name), name, {"numba": numba, **floats})
            self._kernels[key] = numba.njit(parallel=True, nogil=True)(loop)
        return prog, self._kernels[key]

    def __call__(
        self, *, out: np.ndarray | None = None, ok: np.ndarray | None = None, **params: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fill ``out`` (9 × n int64, rows in DESIGN.md's metric order) and ``ok`` (n bool).

        ``params``: dimensions (arrays or scalars, broadcast to one dimension) and
        convention values; missing ones take their defaults.
        """
        key = tuple(params.pop(n, values[0]) for n, values in self.switches.items())
        prog, kernel = self.kernel(key)
        known = {d.name for d in self.inputs}
        stray = [k for k in params if k not in known]
        if stray:
            raise InputError(f"{stray[0]} is not a parameter here; parameters: {', '.join(known)}")
        values = runtime.complete(prog, params)
        shape = np.broadcast_shapes(*(np.shape(v) for v in values.values()))
        n = int(np.prod(shape))
        columns = [_column(d.name, values[d.name], shape, n) for d in prog.inputs]
        if out is None:
            out = np.empty((len(METRICS), n), dtype=np.int64)
        if ok is None:
            ok = np.empty(n, dtype=np.bool_)
        if out.shape != (len(METRICS), n) or out.dtype != np.int64:
            raise InputError(f"out must be an int64 array of shape ({len(METRICS)}, {n})")
        if ok.shape != (n,) or ok.dtype != np.bool_:
            raise InputError(f"ok must be a bool array of shape ({n},)")
        wide = np.empty(n, dtype=np.int8)
        kernel(*columns, out, ok, wide)
        past = int(np.count_nonzero(wide))
        if past:
            warnings.warn(
                f"{past:,} configurations have a value at or past 2^63, beyond int64: their ok "
                "is False; compile without backend='numba' and call with exact=True for them",
                PrecisionWarning,
                stacklevel=2,
            )
        return out, ok


def _column(name: str, value: Any, shape: tuple[int, ...], n: int) -> np.ndarray:
    """One input as n int64 values (a zero-stride view when it does not vary)."""
    array = np.asarray(value)
    if array.dtype == bool or array.dtype.kind not in "iuf":
        raise InputError(f"{name} must be whole numbers, got {array.dtype} values")
    if array.dtype.kind == "f" and not np.all(array == np.floor(array)):
        raise InputError(f"{name} must be whole numbers")
    array = array.astype(np.int64, copy=False)
    if array.ndim == 0:
        return np.broadcast_to(array, (n,))
    return np.broadcast_to(array, shape).reshape(n)


@cache
def fast_layout(layout: Layout, phase: str | Phase, fixed: Fixed = ()) -> FastLayout:
    """The numba back end of ``layout`` in ``phase`` (each conventions' loop compiled lazily)."""
    ph = parse_phase(phase)
    layout.cost(ph)
    _numba()
    return FastLayout(layout, ph, fixed)
