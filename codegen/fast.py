"""The optional numba back end (``pip install 'shardcost[fast]'``) for large sweeps.

One parallel loop per layout, phase and conventions, over caller-allocated outputs:

    f = fast_layout(get_layout("tp"), "prefill")
    out = np.empty((9, n), dtype=np.int64); ok = np.empty(n, dtype=np.bool_)
    f(out=out, ok=ok, batch_size=b_array, seq_len=s_array)   # other inputs: defaults

Each configuration runs the derivation's steps in int64 (exact while every value stays
below 2^63, about 9.2e18); ``ok[i]`` is False where the inputs are not a valid
configuration (not positive, or a split that cannot be made), and that column is zero.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from shardcost.errors import InputError
from shardcost.formulas import Layout, Phase
from shardcost.formulas.conventions import phase as parse_phase
from shardcost.symbolic import METRICS
from shardcost.symbolic.dimensions import HEAD_DIM, HIDDEN_SIZE, NUM_HEADS, NUM_KV_HEADS

from . import runtime
from .printers import PythonPrinter
from .program import Program
from .python import choices, identifiers, load, variants


def _numba() -> Any:
    try:
        import numba
    except ImportError:
        raise InputError(
            "the fast back end needs numba, an optional extra: pip install 'shardcost[fast]'"
        ) from None
    return numba


def kernel_source(prog: Program, name: str) -> str:
    """A loop over configurations: the steps of ``prog`` in int64, one column each."""
    inputs = [d.symbol for d in prog.inputs]
    names = identifiers(
        [*inputs, *(s.symbol for s in prog.steps)], {"i", "n", "out", "ok", "numba"}
    )
    printer = PythonPrinter(names)
    arrays = [f"{names[s]}_in" for s in inputs]
    tests = [f"{names[s]} >= 1" for s in inputs]
    shape = [HIDDEN_SIZE.symbol, NUM_HEADS.symbol, HEAD_DIM.symbol]
    if set(shape) <= set(inputs):
        d, h, dh = (names[x] for x in shape)
        tests.append(f"{d} == {h} * {dh}")
    tests += [printer.holds(c.total, c.parts, c.either) for c in prog.checks]
    body = [f"        {names[s]} = {a}[i]" for s, a in zip(inputs, arrays, strict=True)]
    body += [f"        if not ({' and '.join(tests)}):", "            ok[i] = False"]
    body += [f"            out[{k}, i] = 0" for k in range(len(METRICS))]
    body += ["            continue", "        ok[i] = True"]
    body += [
        f"        {names[s.symbol]} = {printer.doprint(s.expr)}  # {s.comment}" for s in prog.steps
    ]
    body += [f"        out[{k}, i] = {printer.doprint(e)}" for k, (_, e) in enumerate(prog.outputs)]
    lines = [
        f"def {name}({', '.join(arrays)}, out, ok):",
        "    n = out.shape[1]",
        "    for i in numba.prange(n):",
        *body,
    ]
    return "\n".join(lines) + "\n"


class FastLayout:
    """A layout and phase compiled with numba; call with arrays and caller-allocated outputs."""

    def __init__(self, layout: Layout, phase: Phase) -> None:
        self.layout, self.phase = layout, phase
        self.switches = choices(layout, phase, False)
        found = variants(layout, phase, False)
        self.variants = {v.values: v.program for v in found}
        self.inputs = list(dict.fromkeys(d for v in found for d in v.program.inputs))
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
            loop = load(kernel_source(prog, name), name, {"numba": numba})
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
        values = _defaults(params, self.inputs)
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
        kernel(*columns, out, ok)
        return out, ok


def _defaults(params: dict[str, Any], inputs: list) -> dict[str, Any]:
    """Every input's value: given, derived (hidden_size from any two; num_kv_heads), or
    the notation's default."""
    values = dict(params)
    names = {d.name for d in inputs}
    if {HIDDEN_SIZE.name, NUM_HEADS.name, HEAD_DIM.name} <= names:
        shaped = runtime.shape(*(values.get(d.name) for d in (HIDDEN_SIZE, NUM_HEADS, HEAD_DIM)))
        values.update(zip((HIDDEN_SIZE.name, NUM_HEADS.name, HEAD_DIM.name), shaped, strict=True))
    if NUM_KV_HEADS.name in names:
        values.setdefault(NUM_KV_HEADS.name, values[NUM_HEADS.name])
    for dim in inputs:
        values.setdefault(dim.name, dim.default)
    return {d.name: values[d.name] for d in inputs}


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
def fast_layout(layout: Layout, phase: str | Phase) -> FastLayout:
    """The numba back end of ``layout`` in ``phase`` (each conventions' loop compiled lazily)."""
    ph = parse_phase(phase)
    layout.cost(ph)
    _numba()
    return FastLayout(layout, ph)
