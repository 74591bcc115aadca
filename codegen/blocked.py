"""Blocked numpy programs: a Program's closed forms as straight-line ufunc calls over
cache-sized blocks of configurations.

A whole-array numpy expression allocates a full-size temporary per operation: at 10^7
configurations every operation streams 80 MB through memory and faults in fresh pages.
A blocked program runs the same operations on blocks of ``BLOCK`` rows instead, each
writing into a scratch buffer allocated once (``out=``, ``codegen.lowering``), so the
working set stays in cache and only inputs and outputs travel to memory. In the same
pass it tests that each row is a valid configuration and bounds its intermediate values:

- Parts that do not vary are computed once per call, in Python scalars.
- Validity: float inputs whole; each relation; each requirement as an exact quotient
  test, ``q = t / p; q == floor(q)``: for whole t, p below 2^53 the rounded quotient is
  whole exactly when p divides t (``codegen.exactness``), two cheap operations where a
  float ``%`` is slow. Inputs positive: by the block's minimum, row by row only in a
  block where it fails.
- Bounds: by the block's maximum, row by row only in a block where one reaches 2^53.
- A conditional term is a value times a 0/1 mask, or one value copied over another where
  its condition holds; a branch decided by inputs that do not vary is decided once.
- ``integer``: the same forms in int64 (``//`` for each whole quotient, ``%`` for each
  requirement), exact below 2^63, for the rows a float pass marked.

``blocked_source`` returns the generated source and what the caller must allocate.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial

import sympy

from shardcost.symbolic import closed_form

from .exactness import bounds, division_form, maximal
from .lowering import CHOOSE, Hoisting, Instr, Lowering, Reg, allocate, printed
from .printers import ScalarPrinter
from .program import Program, equation
from .program_printers import identifiers
from .runtime import EXACT_FLOAT

BLOCK = 32768  # rows per block: 256 KiB a float64 buffer; a program's dozen stay in cache
WIDE = 2**62  # a float64 bound below this: every int64 value stays below 2^63


@cache
def forms(prog: Program) -> tuple[tuple[sympy.Expr, ...], tuple[sympy.Expr, ...]]:
    """The outputs' closed forms (the metrics' in whole-number division form) and what a
    float64 row must keep below 2^53 to be exact: the inputs, the forms' bounds, and the
    two sides of each relation and requirement (so that a row's validity is exact too).
    Once per program, whatever inputs vary."""
    found = [
        division_form(closed_form(prog.resolve(e))) if n in prog.counts else prog.resolve(e)
        for n, e in prog.outputs
    ]
    limits = [d.symbol for d in prog.inputs]
    for (name, _), form in zip(prog.outputs, found, strict=True):
        if name in prog.counts:
            limits += bounds(form)
    for relation in prog.relations:
        limits += bounds(equation(relation).rhs)
    for check in prog.checks:
        limits += bounds(check.total) + bounds(check.parts)
    return tuple(found), tuple(maximal(list(dict.fromkeys(limits))))


@dataclass(frozen=True)
class Blocked:
    """A generated blocked program: its source, which outputs vary, and its scratch."""

    name: str
    source: str
    varies: tuple[bool, ...]  # per output: written into the caller's array
    scratch: tuple[tuple[str, int], ...]  # (dtype, count) of buffers of ``block`` rows
    block: int


def blocked_source(
    prog: Program,
    name: str,
    varying: frozenset[sympy.Symbol],
    *,
    integer: bool = False,
    cast: frozenset[sympy.Symbol] = frozenset(),
    whole: frozenset[sympy.Symbol] = frozenset(),
    aliases: tuple[tuple[sympy.Symbol, sympy.Symbol], ...] = (),
    outputs: frozenset[str] | None = None,
    block: int = BLOCK,
) -> Blocked:
    """The blocked program of ``prog`` for calls where ``varying`` inputs are arrays.

    It is called ``name(*inputs, outs, ok, rough, wide, lo, hi, scratch)`` and computes
    rows ``lo:hi``: each output that varies into ``outs[k]``; into ``ok``, where the row is
    a valid configuration (inputs positive whole numbers, relations and requirements
    holding); float64 only: into ``rough``, where a count may be inexact (a bound reached
    2^53), and into ``wide``, unless None, where one reached 2^62 (past int64's exact
    range too). It returns the outputs that do not vary (None for the others). Inputs
    that do not vary are Python numbers; ``scratch`` holds the buffers ``scratch`` lists.

    ``integer``: int64 arithmetic, exact below 2^63, for rows the float pass marked.
    ``cast``: varying inputs given as integer arrays, converted block by block.
    ``whole``: varying float inputs that must be tested for whole numbers.
    ``aliases``: (input, the input it is the same array as): one is read for both, and
    what that makes hold trivially (num_heads divides num_kv_heads) is not computed.
    ``outputs``: the names to compute (the others come back None).
    """
    program = _BlockedProgram(prog, varying, aliases, outputs, integer, cast, whole)
    code = program.lower()
    count = allocate(code)
    lines = [
        *program.fixed_functions(name),
        *program.head(name),
        *program.blocks(code, count, block),
        program.returns(),
    ]
    scratch = (("int64" if integer else "float64", count["v"]), ("bool", count["b"]))
    return Blocked(name, "\n".join(lines) + "\n", program.written(), scratch, block)


class _BlockedProgram:
    """The parts of one blocked program: the block's sections, lowered into ``low``,
    and the lines around them (the fixed part, the call's head, the loop over blocks)."""

    def __init__(
        self,
        prog: Program,
        varying: frozenset[sympy.Symbol],
        aliases: tuple[tuple[sympy.Symbol, sympy.Symbol], ...],
        outputs: frozenset[str] | None,
        integer: bool,
        cast: frozenset[sympy.Symbol],
        whole: frozenset[sympy.Symbol],
    ) -> None:
        self.prog, self.integer, self.cast, self.whole = prog, integer, cast, whole
        self.substitution = dict(aliases)
        self.moving = frozenset(s for s in varying if s not in self.substitution)
        self.deferred: list[Instr] = []  # copies at the block's end (``_outputs``)
        self._select(outputs)
        self._share()
        self._inputs()

    def varies(self, expr: sympy.Basic) -> bool:
        """Whether ``expr`` reads an input that varies."""
        return bool(expr.free_symbols & self.moving)

    def _select(self, outputs: frozenset[str] | None) -> None:
        """The outputs asked for, relations, requirements and bounds, aliases substituted
        (and what that makes hold trivially dropped)."""
        sub, prog = self.substitution, self.prog
        found, limits = forms(prog)
        chosen = [outputs is None or n in outputs for n, _ in prog.outputs]
        relations = [equation(r).xreplace(sub) for r in prog.relations]
        self.relations = [r for r in relations if isinstance(r, sympy.Equality) and r.lhs != r.rhs]
        checks = [(c.total.xreplace(sub), c.parts.xreplace(sub), c.either) for c in prog.checks]
        self.checks = [c for c in checks if c[0] != c[1]]  # x divides x
        self.counts = [d.symbol for d in prog.inputs if d.symbol not in sub]
        self.bound = [] if self.integer else maximal([e.xreplace(sub) for e in limits])
        picked = zip(found, chosen, strict=True)
        self.exprs = [e.xreplace(sub) if keep else None for e, keep in picked]

    def _share(self) -> None:
        """Every expression the block computes, parts that do not vary hoisted, then
        shared: the outputs, each varying relation's and requirement's sides, the bounds."""
        moving_relations = [r for r in self.relations if self.varies(r)]
        moving_checks = [c for c in self.checks if self.varies(c[0]) or self.varies(c[1])]
        roots = [e for e in self.exprs if e is not None]
        roots += [side for r in moving_relations for side in (r.lhs, r.rhs)]
        roots += [side for c in moving_checks for side in c[:2]]
        roots += [b for b in self.bound if self.varies(b)]
        self.hoisting = Hoisting(self.moving)
        hoisted = [self.hoisting.hoist(e) for e in roots]
        temps = (sympy.Symbol(f"_x{i}") for i in itertools.count())
        self.pairs, reduced = sympy.cse(hoisted, symbols=temps, optimizations="basic")
        rest = iter(reduced)
        self.out_exprs = [next(rest) if e is not None else None for e in self.exprs]
        self.relation_sides = [(next(rest), next(rest)) for _ in moving_relations]
        self.check_sides = [(next(rest), next(rest), c[2]) for c in moving_checks]
        self.bound_exprs = list(rest)

    def _inputs(self) -> None:
        """Names, the scalar printer and the lowering; integer arrays in a float pass
        converted once per block."""
        self.names = identifiers(list(self.prog.symbols), _RESERVED)
        constants = {k: k.name for k in self.hoisting.constants.values()}
        self.local = {**self.names, **constants}
        self.scalar = ScalarPrinter(self.local, exact=self.integer)
        self.inputs = {s: Reg("v", home=f"_i_{self.names[s]}") for s in self.moving}
        self.values: dict[sympy.Symbol, Reg] = {}
        self.low = Lowering(self.integer, self.scalar.doprint, self.values, dict(self.pairs))
        for s in self.moving:
            given = self.inputs[s]
            cast = s in self.cast
            self.values[s] = self.low.emit("np.copyto({out}, {0})", [given]) if cast else given

    def lower(self) -> list[Instr]:
        """The block's instructions: outputs, validity, bounds, then the deferred copies;
        and what the fixed part computes (known once the block is lowered)."""
        self._outputs()
        self._validity()
        self._bounds()
        self._fixed()
        return self.low.code + self.deferred

    def _outputs(self) -> None:
        """Outputs, those that are a bare common subexpression first: computed in place
        (and a term that applies when a fixed condition holds, zeroed at the block's end)."""
        low, exprs = self.low, self.out_exprs
        self.order = sorted(
            (k for k, e in enumerate(exprs) if e is not None and low.varies(e)),
            key=lambda k: (not exprs[k].is_Symbol, not _chosen(exprs[k], low)),
        )
        for k in self.order:
            home, expr = Reg("v", home=f"_o{k}"), exprs[k]
            if _chosen(expr, low):
                condition, then, otherwise = expr.args  # type: ignore[union-attr]
                other = low.value(otherwise)
                low.value(then, home, bind=True)  # others may read ``then`` here until the end
                test = low.scalar(condition)
                copy = Instr("if not {0}: np.copyto({out}, {1})", (test, other), home, True)
                self.deferred.append(copy)
            else:
                low.value(expr, home, bind=True)

    def _validity(self) -> None:
        """The tests every row needs (float inputs whole, relations, requirements) into
        ``ok``; positivity by the block's minimum, and row by row only when it fails."""
        low, ok = self.low, Reg("b", home="_ok")
        positive = [self.values[s] for s in self.counts if s in self.moving]
        builders = self._tests()
        for k, build in enumerate(builders):
            if k == 0:
                build(ok)
            else:
                low.update("np.logical_and({out}, {0}, {out})", [build(None)], ok)
        if not builders:
            low.emit("np.copyto({out}, True)", [], ok)
        if positive:  # (a NaN minimum: not ≥ 1, so tested row by row too)
            least = " and ".join(f"{{{i}}}.min() >= 1" for i in range(len(positive)))
            low.begin(f"not ({least})", positive)
            for x in positive:
                low.update("np.logical_and({out}, {0}, {out})", [_at_least_one(low, x)], ok)
            low.end()

    def _tests(self) -> list[Callable[[Reg | None], Reg]]:
        """Each row's test, lowered into the register it is given (or a new one)."""
        low, moving = self.low, self.moving
        builders: list[Callable[[Reg | None], Reg]] = []
        if not self.integer:
            wholes = [s for s in self.counts if s in moving and s in self.whole]
            builders += [partial(_whole, low, self.values[s]) for s in wholes]
        builders += [partial(_equal, low, lhs, rhs) for lhs, rhs in self.relation_sides]
        for total, parts, either in self.check_sides:
            builders.append(partial(_divides_into, low, total, parts, either, self.integer))
        return builders

    def _bounds(self) -> None:
        """The bounds' block maximum against the limit (2^53, or 2^62 past it), and row
        by row only where it reaches it; only when no fixed bound decided every row."""
        if not self.bound_exprs:
            return
        low = self.low
        low.begin("_measure")
        regs = [low.value(b) for b in self.bound_exprs]
        # a NaN maximum (a row that is not valid) could hide a large one: row by row then
        tops = " and ".join(f"{{{i}}}.max() < _limit" for i in range(len(regs)))
        low.begin(f"not ({tops})", regs)
        largest = low.chain(regs[0], [("np.maximum", r) for r in regs[1:]], None)
        low.line(
            f"if not _big: np.greater_equal({{0}}, {float(EXACT_FLOAT)!r}, rough[_start:_stop])",
            [largest],
        )
        low.line(
            f"if wide is not None and not _huge: np.greater_equal({{0}}, {float(WIDE)!r}, "
            "wide[_start:_stop])",
            [largest],
        )
        low.end()
        low.end()

    def _fixed(self) -> None:
        """What the fixed part computes once per call: its tests, the hoisted constants,
        the outputs that do not vary (``_r{k}``) and the bounds that do not."""
        moving, sub = self.moving, self.substitution
        self.fixed = [s for s in self.prog.symbols if s not in moving and s not in sub]
        self.good = self._fixed_tests()
        self.constants = [(k.name, e) for e, k in self.hoisting.constants.items()]
        exprs, low = self.out_exprs, self.low
        self.results = [
            f"_r{k}" if e is not None and not low.varies(e) else None for k, e in enumerate(exprs)
        ]
        self.result_exprs = [(r, exprs[k]) for k, r in enumerate(self.results) if r is not None]
        self.fixed_bounds = [b for b in self.bound if not self.varies(b)]
        names = [n for n, _ in self.constants] + [r for r, _ in self.result_exprs]
        self.returned = [*names, "_big", "_huge"]

    def _fixed_tests(self) -> list[str]:
        """The inputs that do not vary positive and whole; relations and requirements
        among them alone."""
        names, doprint = self.names, self.scalar.doprint
        fixed_counts = [s for s in self.counts if s not in self.moving]
        good = [f"{names[s]} >= 1 and {names[s]} % 1 == 0" for s in fixed_counts]
        good += [doprint(r) for r in self.relations if not self.varies(r)]
        for total, parts, either in self.checks:
            if self.varies(total) or self.varies(parts):
                continue
            t, p = doprint(total), doprint(parts)
            text = f"({t}) % ({p}) == 0"
            good.append(f"({text} or ({p}) % ({t}) == 0)" if either else f"({text})")
        return good

    def fixed_functions(self, name: str) -> list[str]:
        """``name_fixed``, and in float64 ``name_fixed_np``: the same in numpy scalars,
        for where Python's raise (a zero divisor ...)."""
        lines = [*self._fixed_part(f"{name}_fixed", self.scalar), ""]
        if not self.integer:
            numpy_printer = ScalarPrinter(self.local, exact=False, numpy=True)
            lines += [*self._fixed_part(f"{name}_fixed_np", numpy_printer), ""]
        return lines

    def _fixed_part(self, fname: str, printer: ScalarPrinter) -> list[str]:
        """The fixed part as function ``fname``: None when its inputs are not valid."""
        lines = [f"def {fname}({', '.join(self.names[s] for s in self.fixed)}):"]
        lines.append(f"    if not ({' and '.join(f'({g})' for g in self.good) or 'True'}):")
        lines.append("        return None")
        lines += [f"    {n} = {printer.doprint(e)}" for n, e in self.constants]
        lines += [f"    {r} = {printer.doprint(e)}" for r, e in self.result_exprs]
        for flag, limit in (("_big", EXACT_FLOAT), ("_huge", WIDE)):
            tests = " or ".join(f"{printer.doprint(b)} >= {limit}" for b in self.fixed_bounds)
            lines.append(f"    {flag} = {tests or 'False'}")
        lines.append(f"    return ({', '.join(self.returned)},)")
        return lines

    def head(self, name: str) -> list[str]:
        """``name``'s signature and fixed part: no row valid when it is not, else the
        flags its bounds set for every row."""
        fixed = self.fixed
        params = [self.names[s] for s in self.prog.symbols]
        fixed_args = ", ".join(self.names[s] for s in fixed)
        as_floats = ", ".join(f"np.float64({self.names[s]})" for s in fixed)
        return [
            f"def {name}({', '.join(params)}, outs, ok, rough, wide, lo, hi, scratch):",
            "    try:",
            f"        _fixed = {name}_fixed({fixed_args})",
            "    except (ArithmeticError, ValueError):  # an unused branch divided by zero ...",
            "        with np.errstate(all='ignore'):",
            f"            _fixed = {name}_fixed_np({as_floats})"
            if not self.integer
            else "            raise",
            "    if _fixed is None:  # an input that does not vary is not valid: no row is",
            "        ok[lo:hi] = False",
            *(f"        outs[{k}][lo:hi] = 0" for k in self.order),
            "        if rough is not None: rough[lo:hi] = False",
            "        if wide is not None: wide[lo:hi] = False",
            f"        return ({''.join('0, ' if r else 'None, ' for r in self.results)})",
            f"    {', '.join(self.returned)}, = _fixed",
            "    if rough is not None: rough[lo:hi] = _big",
            "    if wide is not None: wide[lo:hi] = _huge",
            "    _measure = rough is not None and not (_big and (wide is None or _huge))",
            f"    _limit = {float(WIDE)!r} if _big else {float(EXACT_FLOAT)!r}",
        ]

    def blocks(self, code: list[Instr], count: dict[str, int], block: int) -> list[str]:
        """The loop over blocks of ``block`` rows, each running ``code`` on slices of the
        inputs, the outputs, ``ok`` and the scratch buffers; every row valid when no input
        varies."""
        if not self.moving:
            return ["    ok[lo:hi] = True"]
        buffers = [f"_v{i}" for i in range(count["v"])] + [f"_b{i}" for i in range(count["b"])]
        full = [f"_F{b}" for b in buffers]
        lines = []
        if buffers:
            lines.append(f"    {', '.join(full)}, = scratch")
            lines.append(f"    {', '.join(buffers)}, = {', '.join(full)},")
        lines += [f"    _out{k} = outs[{k}]" for k in self.order]
        lines += [
            f"    for _start in range(lo, hi, {block}):",
            f"        _stop = _start + {block}",
            "        if _stop > hi:",
            "            _stop = hi",
        ]
        if buffers:
            sliced = ", ".join(f"{f}[: hi - _start]" for f in full)
            lines.append(f"            {', '.join(buffers)}, = {sliced},")
        moving = sorted(self.moving, key=str)
        lines += [f"        {self.inputs[s].name} = {self.names[s]}[_start:_stop]" for s in moving]
        lines += [f"        _o{k} = _out{k}[_start:_stop]" for k in self.order]
        lines.append("        _ok = ok[_start:_stop]")
        return lines + [printed(instr, "        ") for instr in code]

    def written(self) -> tuple[bool, ...]:
        """Per output: whether it varies (written into the caller's array)."""
        pairs = zip(self.results, self.out_exprs, strict=True)
        return tuple(r is None and e is not None for r, e in pairs)

    def returns(self) -> str:
        """The outputs that do not vary (None for the others)."""
        return f"    return ({''.join(f'{r}, ' if r else 'None, ' for r in self.results)})"


_RESERVED = frozenset(
    {
        "np",
        "_rt",
        "_ceil",
        "_floor",
        "max",
        "min",
        "outs",
        "ok",
        "rough",
        "wide",
        "lo",
        "hi",
        "scratch",
    }
)


def _chosen(expr: sympy.Basic, low: Lowering) -> bool:
    """Whether ``expr`` is a varying value chosen by a condition that does not vary."""
    return isinstance(expr, sympy.Function) and expr.func == CHOOSE and low.varies(expr.args[1])


def _divides_into(
    low: Lowering,
    total: sympy.Expr,
    parts: sympy.Expr,
    either: bool,
    integer: bool,
    dest: Reg | None,
) -> Reg:
    """Where ``parts`` divides ``total`` (``either``: or the reverse), into ``dest``."""
    if not either:
        return _divisible(low, total, parts, integer, dest)
    one = _divisible(low, total, parts, integer, None)
    other = _divisible(low, parts, total, integer, None)
    return low.emit("np.logical_or({0}, {1}, {out})", [one, other], dest, "b")


def _divisible(
    low: Lowering, total: sympy.Expr, parts: sympy.Expr, integer: bool, dest: Reg | None
) -> Reg:
    """int64: ``total % parts == 0``; float64: the exact quotient test (whole operands
    below 2^53: the rounded quotient is whole exactly when the true one is)."""
    t, p = low.value(total), low.value(parts)
    if integer:
        rest = low.emit("np.remainder({0}, {1}, {out})", [t, p])
        return low.emit("np.equal({0}, 0, {out})", [rest], dest, "b")
    quotient = low.emit("np.divide({0}, {1}, {out})", [t, p])
    floored = low.emit("np.floor({0}, {out})", [quotient])
    return low.emit("np.equal({0}, {1}, {out})", [quotient, floored], dest, "b")


def _whole(low: Lowering, x: Reg, dest: Reg | None) -> Reg:
    """Where float input ``x`` is a whole number (NaN is not)."""
    floored = low.emit("np.floor({0}, {out})", [x])
    return low.emit("np.equal({0}, {1}, {out})", [floored, x], dest, "b")


def _at_least_one(low: Lowering, x: Reg) -> Reg:
    return low.emit("np.greater_equal({0}, 1, {out})", [x], None, "b")


def _equal(low: Lowering, lhs: sympy.Expr, rhs: sympy.Expr, dest: Reg | None) -> Reg:
    return low.emit("np.equal({0}, {1}, {out})", [low.value(lhs), low.value(rhs)], dest, "b")
