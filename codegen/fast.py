"""The optional numba back end (``pip install 'shardcost[fast]'``) for large sweeps.

One parallel loop per layout, phase, conventions and call pattern, over caller-allocated
outputs:

    f = fast_layout(get_layout("tp"), "prefill")
    out = np.empty((9, n), dtype=np.int64); ok = np.empty(n, dtype=np.bool_)
    f(out=out, ok=ok, batch_size=b_array, seq_len=s_array)   # other inputs: defaults

``ok[i]`` is False where the inputs are not a valid configuration (not positive, a
relation of its layer broken, or a split that cannot be made), and that column is zero.

The loop is branch-free: each row reads its inputs (int64 or float64 arrays, as given;
inputs that do not vary are scalars), tests them, and computes the metrics' closed forms
and the bounds of every intermediate value in float64, where whole-number division form
(``codegen.exactness``) is exact below 2^53; validity is a mask selecting the value or 0.
Rows with a bound at or past 2^53 are rare: they are counted, and only when there are
some does a second loop recompute them in int64 (exact below 2^63). A row past that is
never wrapped: its ``ok`` is False and a PrecisionWarning says how many there are
(``exact=True`` on the numpy path takes them).

Kernels are written to files in the shardcost cache (``shardcost.cache``) and compiled
with ``cache=True``, so a new process loads numba's machine code instead of compiling for
seconds; with the cache off they are compiled in memory.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from typing import Any

import numpy as np
import sympy

from shardcost import cache as disk
from shardcost.errors import InputError, PrecisionWarning
from shardcost.formulas import Layout, Phase
from shardcost.formulas.conventions import phase as parse_phase
from shardcost.symbolic import METRICS

from . import runtime
from .blocked import EXACT_FLOAT, WIDE, forms
from .printers import PythonPrinter
from .program import Program, equation
from .program_printers import identifiers
from .python import Fixed, choices, load, merged, variants

KERNEL_VERSION = "2"  # bump when the shape of the generated module changes
_RESERVED = frozenset(
    {"i", "n", "m", "out", "ok", "wide", "big", "frac", "good", "fine", "holds", "numba", "np"}
    | {"ceil", "floor"}
)
_HEADER = "import numba\nimport numpy as np\nfrom numpy import ceil, floor\n\n\n"


def _numba() -> Any:
    try:
        import numba
    except ImportError:
        raise InputError(
            "the fast back end needs numba, an optional extra: pip install 'shardcost[fast]'"
        ) from None
    return numba


def kernel_source(
    prog: Program,
    name: str,
    varying: frozenset[sympy.Symbol],
    aliases: tuple[tuple[sympy.Symbol, sympy.Symbol], ...] = (),
) -> str:
    """A module with two loops over configurations for calls where ``varying`` inputs
    are arrays (the others int64 scalars; ``aliases``: (input, the input it is the same
    array as)).

    ``name(*arrays, *scalars, out, ok)``: branch-free, in float64; returns (rows with a
    bound at or past 2^53, left for the second loop; rows whose float input is not whole).
    ``name_wide(*arrays, *scalars, out, ok, wide)``: those rows in int64 where every
    bound stays below 2^62, else ``wide`` 1.
    """
    kernel = _Kernel(prog, varying, aliases)
    return "\n".join(kernel.main(name)) + "\n\n\n" + "\n".join(kernel.wide(name)) + "\n"


class _Kernel:
    """The parts of one kernel module: the float64 loop and the int64 loop, each a few
    lines of per-row reads, tests and outputs."""

    def __init__(
        self,
        prog: Program,
        varying: frozenset[sympy.Symbol],
        aliases: tuple[tuple[sympy.Symbol, sympy.Symbol], ...],
    ) -> None:
        self.substitution = dict(aliases)
        self.varying = varying
        self.inputs = [d.symbol for d in prog.inputs if d.symbol not in self.substitution]
        self.moving = [s for s in self.inputs if s in varying]
        self.fixed = [s for s in self.inputs if s not in varying]
        assert [n for n, _ in prog.outputs] == list(METRICS)  # no timing: counts only
        self._select(prog)
        self.names = identifiers(self.inputs, _RESERVED)
        arrays = [f"{self.names[s]}_in" for s in self.moving]
        scalars = [f"{self.names[s]}_k" for s in self.fixed]
        self.head = ", ".join([*arrays, *scalars])
        self.floats = {s: f"{self.names[s]}_s" for s in self.inputs}
        self.ints = {s: self.names[s] for s in self.inputs}
        self._float_forms()

    def _select(self, prog: Program) -> None:
        """The forms, bounds, relations and requirements, aliases substituted; tests
        among inputs that do not vary are the caller's, once (``_fixed_valid``)."""
        sub, varying = self.substitution, self.varying
        found, limits = forms(prog)
        self.exprs = [e.xreplace(sub) for e in found]
        self.bound = [b.xreplace(sub) for b in limits]
        relations = [equation(r).xreplace(sub) for r in prog.relations]
        relations = [r for r in relations if isinstance(r, sympy.Equality) and r.lhs != r.rhs]
        checks = [(c.total.xreplace(sub), c.parts.xreplace(sub), c.either) for c in prog.checks]
        checks = [c for c in checks if c[0] != c[1]]
        self.relations = [r for r in relations if r.free_symbols & varying]
        self.checks = [c for c in checks if (c[0].free_symbols | c[1].free_symbols) & varying]

    def _float_forms(self) -> None:
        """float64: every form, bound and tested side, common subexpressions shared."""
        sides = [side for r in self.relations for side in r.args]
        sides += [side for t, p, _ in self.checks for side in (t, p)]
        exprs, bound = self.exprs, self.bound
        temps = (sympy.Symbol(f"_f{i}") for i in itertools.count())
        self.pairs, reduced = sympy.cse(
            [*exprs, *bound, *sides], symbols=temps, optimizations="basic"
        )
        self.shadow = PythonPrinter(
            {**self.floats, **{t: t.name for t, _ in self.pairs}}, exact=False
        )
        self.values = reduced[: len(exprs)]
        self.largest = self._largest(reduced[len(exprs) : len(exprs) + len(bound)])
        self.tests = self._tests(iter(reduced[len(exprs) + len(bound) :]))
        self.good = " & ".join(f"{self.names[s]}_g" for s in self.moving) or "True"

    def _tests(self, tested: Iterator[sympy.Expr]) -> list[str]:
        """Each relation's and requirement's test, from its shared sides in order."""
        show = self.shadow.doprint
        tests = []
        for _ in self.relations:
            lhs, rhs = next(tested), next(tested)
            tests.append(f"({show(lhs)} == {show(rhs)})")
        for _, _, either in self.checks:
            t, p = next(tested), next(tested)
            test = _whole_quotient(show(t), show(p))
            if either:
                test = f"({test} | {_whole_quotient(show(p), show(t))})"
            tests.append(test)
        return tests

    def _largest(self, bounds: Sequence[sympy.Expr]) -> str:
        """The largest bound, as nested ``max`` calls."""
        maximum = [self.shadow.doprint(b) for b in bounds]
        m = maximum[0]
        for other in maximum[1:]:
            m = f"max({m}, {other})"
        return m

    def _read_floats(self, indent: str) -> list[str]:
        """Each input as a float; a varying one tested, and 1 where it is not valid (no
        division by zero in a row that is masked anyway)."""
        lines = []
        for s in self.moving:
            x = self.names[s]
            lines += [
                f"{indent}{x}_f = float({x}_in[i])",
                f"{indent}{x}_w = {x}_f == floor({x}_f)",
                f"{indent}{x}_g = ({x}_f >= 1.0) & {x}_w",
                f"{indent}{x}_s = {x}_f if {x}_g else 1.0",
            ]
        return lines

    def _shared(self) -> list[str]:
        """The float64 common subexpressions of a row."""
        return [f"        {t.name} = {self.shadow.doprint(e)}" for t, e in self.pairs]

    def main(self, name: str) -> list[str]:
        """``name``: every row in float64, branch-free; counts the rows left for ``wide``
        and the float inputs that are not whole."""
        names, limit = self.names, float(EXACT_FLOAT)
        lines = [f"def {name}({self.head}, out, ok):", "    n = ok.shape[0]"]
        lines += [f"    {self.floats[s]} = float({names[s]}_k)" for s in self.fixed]
        lines += ["    big = 0", "    frac = 0", "    for i in numba.prange(n):"]
        lines += self._read_floats("        ")
        lines += [f"        frac += 0 if {names[s]}_w else 1" for s in self.moving]
        lines += self._shared()
        lines += [
            f"        good = {self.good}",
            f"        m = {self.largest}",
            f"        holds = {' & '.join(self.tests) or 'True'}",
            f"        fine = good & holds & (m < {limit!r})",
            f"        big += 1 if good & (m >= {limit!r}) else 0",
        ]
        lines += [
            f"        out[{k}, i] = np.int64(({self.shadow.doprint(v)}) if fine else 0.0)"
            for k, v in enumerate(self.values)
        ]
        return [*lines, "        ok[i] = fine", "    return big, frac"]

    def wide(self, name: str) -> list[str]:
        """``name_wide``: the rows the float loop left, with exact integer division and
        ``%``; past 2^62 not computed, ``wide`` 1."""
        names = self.names
        lines = [f"def {name}_wide({self.head}, out, ok, wide):", "    n = ok.shape[0]"]
        lines += [f"    {self.floats[s]} = float({names[s]}_k)" for s in self.fixed]
        lines += [f"    {self.ints[s]} = np.int64({names[s]}_k)" for s in self.fixed]
        lines += ["    for i in numba.prange(n):", "        wide[i] = 0", "        if ok[i]:"]
        lines += ["            continue"]
        lines += self._read_floats("        ")
        lines += [f"        if not ({self.good}):", "            continue"]
        lines += self._shared()
        lines += [
            f"        m = {self.largest}",
            f"        if m < {float(EXACT_FLOAT)!r}:  # the float loop decided: not valid",
            "            continue",
            f"        if m >= {float(WIDE)!r}:  # past int64: not computed",
            "            wide[i] = 1",
            "            continue",
        ]
        lines += [f"        {self.ints[s]} = np.int64({names[s]}_in[i])" for s in self.moving]
        return [*lines, *self._exact_row()]

    def _exact_row(self) -> list[str]:
        """A row of ``wide`` in int64: its relations and requirements, then its outputs."""
        temps = (sympy.Symbol(f"_w{i}") for i in itertools.count())
        pairs, reduced = sympy.cse(self.exprs, symbols=temps, optimizations="basic")
        exact = PythonPrinter({**self.ints, **{t: t.name for t, _ in pairs}})
        holds = [f"({exact.doprint(r)})" for r in self.relations]
        holds += [f"({exact.holds(t, p, e)})" for t, p, e in self.checks]
        lines = [f"        if not ({' and '.join(holds) or 'True'}):", "            continue"]
        lines += [f"        {t.name} = {exact.doprint(e)}" for t, e in pairs]
        lines += [f"        out[{k}, i] = {exact.doprint(v)}" for k, v in enumerate(reduced)]
        return [*lines, "        ok[i] = True"]


def _whole_quotient(total: str, parts: str) -> str:
    """Whether ``parts`` divides ``total`` (whole, below 2^53): the quotient is whole."""
    return f"(({total}) / ({parts}) == floor(({total}) / ({parts})))"


class FastLayout:
    """A layout and phase compiled with numba; call with arrays and caller-allocated outputs."""

    def __init__(self, layout: Layout, phase: Phase, fixed: Fixed = ()) -> None:
        self.layout, self.phase = layout, phase
        self.switches = choices(layout, phase, False)
        found = variants(layout, phase, False, fixed)
        self.variants = {v.values: v.program for v in found}
        self.inputs = list(merged(found).inputs)
        self._kernels: dict[tuple[Any, ...], tuple[Callable[..., Any], Callable[..., Any]]] = {}

    def program(self, key: tuple[Any, ...]) -> Program:
        """The Program of one combination of conventions."""
        if key not in self.variants:
            allowed = "; ".join(f"{n}: {' | '.join(map(str, v))}" for n, v in self.switches.items())
            raise InputError(f"conventions {key} are not allowed; {allowed}")
        return self.variants[key]

    def kernel(
        self,
        key: tuple[Any, ...],
        varying: tuple[bool, ...],
        aliases: tuple[tuple[int, int], ...] = (),
    ) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """The two compiled loops for one combination of conventions and one call pattern
        (which inputs vary, which are the same array); built on first use, from the disk
        cache when a process built them before."""
        cache_key = (key, varying, aliases)
        if cache_key not in self._kernels:
            prog = self.program(key)
            symbols = [d.symbol for d in prog.inputs]
            moving = frozenset(s for s, v in zip(symbols, varying, strict=True) if v)
            pairs = tuple((symbols[j], symbols[i]) for j, i in aliases)
            self._kernels[cache_key] = _compiled(prog, moving, pairs)
        return self._kernels[cache_key]

    def __call__(
        self, *, out: np.ndarray | None = None, ok: np.ndarray | None = None, **params: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fill ``out`` (9 × n int64, rows in DESIGN.md's metric order) and ``ok`` (n bool).

        ``params``: dimensions (arrays or scalars, broadcast to one dimension) and
        convention values; missing ones take their defaults.
        """
        key = tuple(params.pop(n, values[0]) for n, values in self.switches.items())
        prog = self.program(key)
        known = {d.name for d in self.inputs}
        stray = [k for k in params if k not in known]
        if stray:
            raise InputError(f"{stray[0]} is not a parameter here; parameters: {', '.join(known)}")
        given = runtime.complete(prog, params)
        raw = [given[d.name] for d in prog.inputs]
        arrays = [_checked(d.name, v) for d, v in zip(prog.inputs, raw, strict=True)]
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        n = math.prod(shape)
        if out is None:
            out = np.empty((len(METRICS), n), dtype=np.int64)
        if ok is None:
            ok = np.empty(n, dtype=np.bool_)
        if out.shape != (len(METRICS), n) or out.dtype != np.int64:
            raise InputError(f"out must be an int64 array of shape ({len(METRICS)}, {n})")
        if ok.shape != (n,) or ok.dtype != np.bool_:
            raise InputError(f"ok must be a bool array of shape ({n},)")
        varying = tuple(a.size != 1 for a in arrays)
        aliases = _aliases(raw, varying)
        aliased = {j for j, _ in aliases}
        columns = [
            _column(a, shape, n) for k, a in enumerate(arrays) if varying[k] and k not in aliased
        ]
        names = [d.name for d in prog.inputs]
        scalars = [_whole(names[k], a) for k, a in enumerate(arrays) if not varying[k]]
        if not _fixed_valid(prog, scalars, varying):
            out[...] = 0
            ok[...] = False
            return out, ok
        if any(s >= WIDE for s in scalars):  # a fixed value past int64's exact range
            out[...] = 0
            ok[...] = False
            _warn_wide(n)
            return out, ok
        main, second = self.kernel(key, varying, aliases)
        big, frac = main(*columns, *scalars, out, ok)
        if frac:  # a float input that is not whole: found here, only when there is one
            bad = (
                name
                for name, a, v in zip(names, arrays, varying, strict=True)
                if v and not _all_whole(a)
            )
            raise InputError(f"{next(bad)} must be whole numbers")
        if big:
            wide = np.zeros(n, dtype=np.int8)
            second(*columns, *scalars, out, ok, wide)
            past = int(np.count_nonzero(wide))
            if past:
                _warn_wide(past)
        return out, ok


def _warn_wide(count: int) -> None:
    warnings.warn(
        f"{count:,} configurations have a value at or past 2^63, beyond int64: their ok "
        "is False; compile without backend='numba' and call with exact=True for them",
        PrecisionWarning,
        stacklevel=3,
    )


def _checked(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == bool or array.dtype.kind not in "iuf":
        raise InputError(f"{name} must be whole numbers, got {array.dtype} values")
    return array


def _all_whole(array: np.ndarray) -> bool:
    return array.dtype.kind != "f" or bool(np.all(array == np.floor(array)))


def _whole(name: str, array: np.ndarray) -> int:
    """A one-value input as a Python int; InputError when it is not a whole number."""
    value = array.reshape(()).item()
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0  # never a valid size
        if not value.is_integer():
            raise InputError(f"{name} must be whole numbers")
        value = int(value)
    return value


def _aliases(raw: Sequence[Any], varying: tuple[bool, ...]) -> tuple[tuple[int, int], ...]:
    """(j, i): varying input j is the very array given for input i (a borrowed default)."""
    found = []
    for j in range(len(raw)):
        if varying[j]:
            i = next((i for i in range(j) if varying[i] and raw[i] is raw[j]), None)
            if i is not None:
                found.append((j, i))
    return tuple(found)


def _fixed_valid(prog: Program, scalars: list[int], varying: tuple[bool, ...]) -> bool:
    """Whether the inputs that do not vary are positive, and the relations and
    requirements among them alone hold (Python ints: exact)."""
    fixed = [d.symbol for d, v in zip(prog.inputs, varying, strict=True) if not v]
    values = dict(zip(fixed, scalars, strict=True))
    if any(v < 1 for v in scalars):
        return False
    known = set(values)
    for relation in prog.relations:
        eq = equation(relation)
        if eq.free_symbols <= known and eq.lhs.xreplace(values) != eq.rhs.xreplace(values):
            return False
    for check in prog.checks:
        if not (check.total.free_symbols | check.parts.free_symbols) <= known:
            continue
        total, parts = int(check.total.xreplace(values)), int(check.parts.xreplace(values))
        if total % parts and not (check.either and parts % total == 0):
            return False
    return True


def _column(array: np.ndarray, shape: tuple[int, ...], n: int) -> np.ndarray:
    """One varying input as n values, int64 or float64 as given (a view where it can be)."""
    if array.dtype.kind == "f" and array.dtype != np.float64:
        array = array.astype(np.float64)
    elif array.dtype.kind in "iu" and array.dtype != np.int64:
        array = array.astype(np.float64 if array.dtype == np.uint64 else np.int64)
    if array.shape != shape:
        array = np.broadcast_to(array, shape)
    return np.ascontiguousarray(array).reshape(n)


def _compiled(
    prog: Program,
    varying: frozenset[sympy.Symbol],
    aliases: tuple[tuple[sympy.Symbol, sympy.Symbol], ...],
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The two loops of ``kernel_source``, njit-compiled: from a module file in the
    shardcost cache (numba caches its machine code beside it), else in memory."""
    numba = _numba()
    symbols = [d.symbol for d in prog.inputs]
    pattern = "".join("v" if s in varying else "k" for s in symbols)
    pattern += "".join(f";{symbols.index(a)}={symbols.index(b)}" for a, b in aliases)
    what = repr((prog.name, prog.inputs, prog.relations, prog.checks, prog.steps, prog.outputs))
    entry = disk.key("numba kernel", KERNEL_VERSION, numba.__version__, what, pattern)
    name = f"k_{prog.name}"
    module = None
    path = disk.directory() / "numba" / f"{entry}.py"
    if disk.read("numba", entry, ".py") is not None or disk.write(
        "numba", entry, _HEADER + kernel_source(prog, name, varying, aliases), ".py"
    ):
        module = _import(f"_shardcost_kernel_{entry}", str(path))
    options = {"parallel": True, "nogil": True}
    if module is not None:
        main, wide = getattr(module, name), getattr(module, f"{name}_wide")
        options["cache"] = True
    else:  # no cache: in memory, compiled in this process
        source = kernel_source(prog, name, varying, aliases)
        scope = {"numba": numba, "ceil": np.ceil, "floor": np.floor}
        main = load(source, name, scope)
        wide = main.__globals__[f"{name}_wide"]
    return numba.njit(**options)(main), numba.njit(**options)(wide)


def _import(module_name: str, path: str) -> Any:
    """The module in file ``path`` (a kernel in the cache), or None if it cannot load."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (OSError, SyntaxError):  # a damaged entry: compile in memory instead
        return None
    sys.modules[module_name] = module
    return module


@cache
def fast_layout(layout: Layout, phase: str | Phase, fixed: Fixed = ()) -> FastLayout:
    """The numba back end of ``layout`` in ``phase`` (each conventions' loop compiled lazily)."""
    ph = parse_phase(phase)
    layout.cost(ph)
    _numba()
    return FastLayout(layout, ph, fixed)
