"""Python source for compiled layouts: a keyword function with the notation's defaults.

Scalars take a pure-Python path: the derivation's steps, one line each, in exact
integers. Arrays take numpy paths: in float64 the metrics' closed forms after
common-subexpression elimination (fewest operations), or, in exact mode, the same
steps on object arrays of Python ints. What an input is when not given, and the
relations that tie inputs together, come from the Program (its layer's declarations),
printed by the same Python program printer as the export's. The source is kept
(``__source__``, and in ``linecache`` so tracebacks show it).
"""

from __future__ import annotations

import dataclasses
import itertools
import linecache
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import sympy

from shardcost.errors import InputError, lookup
from shardcost.formulas import Conventions, Layout, Phase
from shardcost.formulas.conventions import BY_NAME as CONVENTIONS_BY_NAME
from shardcost.formulas.hardware import DEFAULTS as HARDWARE_DEFAULTS
from shardcost.formulas.hardware import FRACTIONS, ZERO_ALLOWED, HardwareField
from shardcost.symbolic import METRICS, closed_form
from shardcost.symbolic.relation import Product

from . import runtime
from .exactness import bounds, division_form, maximal
from .literals import python_comment, python_string
from .printers import InfixPrinter, NumpyPrinter
from .program import Check, Program, equation, inlined, program
from .program_printers import PythonProgram, identifiers

_counter = itertools.count()
CHOOSE = sympy.Function("choose")  # choose(c, a, b): a if c else b, decided once
# Names the in-process function's own code takes (its inputs' names are taken too).
_SCALAR_RESERVED = frozenset({"np", "_rt", "_arrays", "_inf", "_relations", "exact", "bad"})


def step_lines(
    prog: Program,
    names: dict[sympy.Symbol, str],
    exact: InfixPrinter,
    inexact: InfixPrinter,
    indent: str,
) -> list[str]:
    """One line per derivation step, counts with ``exact`` and times with ``inexact``."""
    lines = []
    for step in prog.steps:
        printer = exact if step.exact else inexact
        lines.append(
            f"{indent}{names[step.symbol]} = {printer.doprint(step.expr)}"
            f"  # {python_comment(step.comment)}"
        )
    return lines


@dataclass(frozen=True)
class Variant:
    """One combination of convention values and its Program."""

    values: tuple[Any, ...]
    program: Program


OVERLAP = "supports_overlap"


Fixed = tuple[tuple[str, Any], ...]  # static conventions, fixed when compiled


def choices(
    layout: Layout, phase: Phase, timing: bool, pinned: Fixed = ()
) -> dict[str, tuple[Any, ...]]:
    """Each switch a compiled function takes (its conventions, less the static ones that
    are fixed when it is compiled; supports_overlap when timed), with its values, the
    default first; a switch in ``pinned`` takes only its pinned value (one variant, for
    callers such as the planner that know every switch up front)."""
    out = {}
    for name in layout.conventions_for(phase):
        convention = CONVENTIONS_BY_NAME[name]
        if convention.static:
            continue
        out[name] = (
            convention.default,
            *(c for c in convention.choices if c != convention.default),
        )
    if timing:
        out[OVERLAP] = (False, True)
    for name, value in pinned:
        if name in out:
            out[name] = (value,)
    return out


def fixed_conventions(
    layout: Layout, phase: Phase, given: Mapping[str, Any], timing: bool = False
) -> Fixed:
    """The static conventions in ``given``, checked and parsed, in declaration order;
    InputError for one that is a switch of the compiled function or does not apply (a
    timing convention applies to every layout, when ``timing``)."""
    applicable = layout.conventions_for(phase, timed=timing)
    out = {}
    for name, raw in given.items():
        convention = lookup(CONVENTIONS_BY_NAME, name, "convention")
        if convention.timing and not timing:
            raise InputError(
                f"{name} is a timing convention: it fixes a timed function (timing=True)"
            )
        if name not in applicable:
            raise InputError(
                f"{name} does not apply to {layout.layer} layout {layout.name!r} in {phase}; "
                f"conventions that do: {', '.join(applicable) or 'none'}"
            )
        if not convention.static:
            raise InputError(
                f"{name} is a switch of the compiled function: pass {name}=... when calling it"
            )
        out[name] = convention.parse(raw)
    return tuple((name, out[name]) for name in applicable if name in out)


def variants(
    layout: Layout,
    phase: Phase,
    timing: bool,
    fixed: Fixed = (),
    decoupled: bool = False,
    pinned: Fixed = (),
) -> list[Variant]:
    """Every combination of the switches, each with its Program (the static conventions
    at ``fixed``, else their defaults); the defaults first. ``decoupled``: programs
    without the layer's relations (``program``)."""
    switches = choices(layout, phase, timing, pinned)
    out = []
    for combo in itertools.product(*switches.values()):
        chosen = dict(fixed) | dict(zip(switches, combo, strict=True))
        overlap = chosen.pop(OVERLAP, None)
        conv = Conventions(**chosen)
        out.append(Variant(combo, program(layout, phase, conv, overlap, decoupled)))
    return out


def merged(found: list[Variant]) -> Program:
    """The first variant's Program over every variant's inputs and relations, with only
    the checks they all share: what a compiled function settles before it picks one."""
    first = found[0].program
    return dataclasses.replace(
        first,
        inputs=tuple(dict.fromkeys(d for v in found for d in v.program.inputs)),
        relations=tuple(dict.fromkeys(r for v in found for r in v.program.relations)),
        checks=tuple(c for c in first.checks if all(c in v.program.checks for v in found)),
    )


def module_source(
    layout: Layout,
    phase: Phase,
    timing: bool,
    fixed: Fixed = (),
    decoupled: bool = False,
    pinned: Fixed = (),
) -> tuple[str, str, tuple[Product, ...]]:
    """(function name, Python source, the relations the source reads as ``_relations``)
    of the compiled function for ``layout`` in ``phase``.

    Scalar Python ints take the derivation's steps in exact integers; anything else
    (arrays, numpy scalars, floats) is handed to the numpy paths.
    """
    found = variants(layout, phase, timing, fixed, decoupled, pinned)
    head = merged(found)
    switches = choices(layout, phase, timing, pinned)
    optimized = [inlined(v.program) for v in found]
    names = _scalar_names(head, optimized, switches)
    printer = PythonProgram(head, names, runtime=True)
    call = _Call.of(head, switches)
    name = head.name + ("_timed" if timing else "")
    lines = _signature(printer, name, switches, timing)
    lines += printer.nested(printer.lines(head.preamble))
    lines += printer.nested(_validation(printer, call))
    for variant, prog in zip(found, optimized, strict=True):
        own = PythonProgram(prog, names, runtime=True)
        lines += printer.nested(_variant(own, variant, call, head.checks))
    if switches:
        allowed = "; ".join(f"{n}: {' | '.join(map(str, v))}" for n, v in switches.items())
        lines.append(
            f"    raise _rt.bad_conventions({_strings(switches)}, {call.key}, "
            f"{python_string(allowed)})"
        )
    return name, "\n".join(lines) + "\n", head.relations


@dataclass(frozen=True)
class _Call:
    """How the in-process function hands its arguments to the numpy paths."""

    switches: tuple[str, ...]  # the convention (and overlap) keywords
    key: str  # their values, as a tuple display
    values: str  # every input and hardware value, as a tuple display

    @classmethod
    def of(cls, head: Program, switches: Mapping[str, tuple[Any, ...]]) -> _Call:
        key = f"({', '.join(switches)},)" if switches else "()"
        values = ", ".join(p.name for p in (*head.inputs, *head.hardware))
        return cls(tuple(switches), key, f"({values},)")

    def arrays(self) -> str:
        """The call of the numpy paths."""
        return f"return _arrays({self.key}, exact, {self.values})"


def _scalar_names(
    head: Program, optimized: list[Program], switches: Mapping[str, object]
) -> dict[sympy.Symbol, str]:
    """Inputs by their keyword names; steps (of every variant) by identifiers that take
    none of the function's own names."""
    params = [*head.inputs, *head.hardware]
    reserved = _SCALAR_RESERVED | PythonProgram.reserved() | {p.name for p in params}
    steps = dict.fromkeys(s.symbol for prog in optimized for s in prog.steps)
    return {p.symbol: p.name for p in params} | identifiers(list(steps), reserved | set(switches))


def _signature(
    printer: PythonProgram, name: str, switches: Mapping[str, tuple[Any, ...]], timing: bool
) -> list[str]:
    """The comment, ``def`` line and docstring: every input a keyword with its default."""
    head = printer.prog
    sig = [printer.parameter(d) for d in head.inputs]
    sig += [_hardware_parameter(f) for f in head.hardware]
    sig += [f"{n}={_value(values[0])}" for n, values in switches.items()]
    sig.append("exact=False")
    title = python_comment(f"{head.layout.layer} layout {head.layout.name}")  # text, never code
    return [
        f"# Compiled by shardcost: {title}, {head.phase}" + (", with timing" if timing else ""),
        f"def {name}(*, {', '.join(sig)}):",
        f'    """The metrics of {title} in {head.phase}; scalars exact, arrays numpy."""',
    ]


def _hardware_parameter(field: HardwareField) -> str:
    default = HARDWARE_DEFAULTS.get(field.name)
    return field.name if default is None else f"{field.name}={float(default)!r}"  # type: ignore[arg-type]


def _value(value: object) -> str:
    """A convention's value as a literal (text as a string literal)."""
    return python_string(value) if isinstance(value, str) else repr(value)


def _strings(names: Mapping[str, object] | list[str]) -> str:
    """Names as a tuple display of string literals."""
    return f"({''.join(f'{python_string(n)}, ' for n in names)})"


def _validation(printer: PythonProgram, call: _Call) -> list[str]:
    """Every test the variants share, as one short-circuit test; only a failure pays for
    finding out which one failed (and raising its error)."""
    head = printer.prog
    counts = [d.name for d in head.inputs]
    tests = [f"{c} < 1" for c in counts]
    tests += [printer.fails(r) for r in head.relations]
    tests += [f"not ({_admissible(f.name)})" for f in head.hardware]
    tests += [f"({printer.fails(c)})" for c in head.checks]
    lines = [
        "try:",
        f"    bad = {' or '.join(tests)}",
        "except (TypeError, ValueError):  # arrays, lists, text: the numpy paths decide",
        f"    {call.arrays()}",
        "if bad:",
        f"    if {' or '.join(f'{c} < 1' for c in counts)}:",
        f"        raise _rt.not_positive({_strings(counts)}, ({', '.join(counts)},))",
        *(f"    {printer.mismatch(r)}" for r in head.relations),
    ]
    if head.hardware:
        fields = [f.name for f in head.hardware]
        lines += [
            f"    error = _rt.hardware_error({_strings(fields)}, ({', '.join(fields)},))",
            "    if error is not None: raise error",
        ]
    return lines + printer.nested(printer.lines(head.checks))


def _variant(
    printer: PythonProgram, variant: Variant, call: _Call, common: tuple[Check, ...]
) -> list[str]:
    """One variant: the checks the others lack, its steps, and its outputs when every
    input was a Python int (else the numpy paths take the call)."""
    prog = printer.prog
    witnesses = [printer.exact.doprint(e) for e in _covering(prog)]
    body = printer.lines([c for c in prog.checks if c not in common])
    body += printer.lines(prog.steps)
    body += [
        f"if not ({' is '.join(f'type({x})' for x in witnesses)} is int):",
        f"    {call.arrays()}  # not Python ints",
        f"return {printer.returned()}",
    ]
    if not call.switches:
        return body
    test = " and ".join(
        f"{n} == {_value(v)}" for n, v in zip(call.switches, variant.values, strict=True)
    )
    return [f"if {test}:", *printer.nested(body)]


def _admissible(field: str) -> str:
    """A test that a scalar hardware value is one ``metrics`` accepts (False for NaN)."""
    low = "0 <=" if field in ZERO_ALLOWED else "0 <"
    return f"{low} {field} <= 1" if field in FRACTIONS else f"{low} {field} < _inf"


def _covering(prog: Program) -> list[sympy.Expr]:
    """Outputs whose types together reveal every input's: if any input is not a Python
    int, one of these is not either. As few as possible, for a cheap check."""
    depends: dict[sympy.Symbol, set[sympy.Symbol]] = {}
    for step in prog.steps:
        found: set[sympy.Symbol] = set()
        for s in step.expr.free_symbols:
            found |= depends.get(s, {s})
        depends[step.symbol] = found
    inputs = {d.symbol for d in prog.inputs}
    candidates = []
    for name, expr in prog.outputs:
        if name in METRICS and not name.endswith("_total"):
            reach: set[sympy.Symbol] = set()
            for s in expr.free_symbols:
                reach |= depends.get(s, {s})
            candidates.append((expr, reach & inputs))
    chosen, covered = [], set()
    while covered != inputs and candidates:
        expr, reach = max(candidates, key=lambda c: len(c[1] - covered))
        if not reach - covered:
            break
        chosen.append(expr)
        covered |= reach
        candidates.remove((expr, reach))
    return chosen


class _Hoisting:
    """Expressions rewritten so that every part that does not vary is computed once, as
    a numbered constant (``k0``, ``k1`` ...): a product then costs one array operation
    per varying factor."""

    def __init__(self, varying: frozenset[sympy.Symbol]) -> None:
        self.varying = varying
        self.constants: dict[sympy.Expr, sympy.Symbol] = {}

    def constant(self, expr: sympy.Basic) -> sympy.Basic:
        """``expr`` (which does not vary) as a number, a symbol or a named constant."""
        if expr.is_Number or expr.is_Symbol:
            return expr
        if expr not in self.constants:
            self.constants[expr] = sympy.Symbol(f"k{len(self.constants)}")
        return self.constants[expr]

    def hoist(self, expr: sympy.Basic) -> sympy.Basic:
        """``expr`` with its parts that do not vary replaced by constants."""
        if expr.is_Atom:
            return expr
        if not expr.has(*self.varying):
            return self.constant(expr) if isinstance(expr, sympy.Expr) else expr
        if isinstance(expr, (sympy.Mul, sympy.Add)):
            fixed = [a for a in expr.args if not a.has(*self.varying)]
            moving = [self.hoist(a) for a in expr.args if a.has(*self.varying)]
            rest = [self.constant(expr.func(*fixed))] if fixed else []
            return expr.func(*rest, *moving)
        if isinstance(expr, sympy.Piecewise) and not any(
            c.has(*self.varying) for _, c in expr.args
        ):
            # the branch is the same for every element: choose it once, not per element
            *branches, (chosen, _) = expr.args
            chosen = self.hoist(chosen)
            for value, condition in reversed(branches):
                chosen = CHOOSE(self.constant(condition), self.hoist(value), chosen)
            return chosen
        return expr.func(*(self.hoist(a) for a in expr.args))


def float_source(prog: Program, name: str, varying: frozenset[sympy.Symbol]) -> str:
    """A numpy float64 function of ``prog`` for calls where only ``varying`` inputs are arrays.

    The metrics' closed forms in whole-number division form (``codegen.exactness``: no
    count rounds the wrong way below 2^53), with every part that does not vary computed
    once as a number (``_Hoisting``) and common subexpressions shared. It returns the
    outputs, where the configuration is valid (its relations and checks hold), and where
    a count may be inexact (a bound of an intermediate reached 2^53).
    """
    names = identifiers(list(prog.symbols), {"np", "_rt"})
    simplified, checked = _forms(prog)
    hoisting = _Hoisting(varying)
    hoisted = [hoisting.hoist(e) for e in [*simplified, *checked]]
    temps = (sympy.Symbol(f"x{i}") for i in itertools.count())
    pairs, reduced_all = sympy.cse(hoisted, symbols=temps, optimizations="basic")
    reduced, limits = reduced_all[: len(simplified)], reduced_all[len(simplified) :]
    constants = hoisting.constants
    local = {**names, **{k: k.name for k in constants.values()}, **{t: t.name for t, _ in pairs}}
    printer = NumpyPrinter(local, exact=False)
    moving = set(varying)
    for temp, expr in pairs:
        if expr.free_symbols & moving:
            moving.add(temp)
    lines = [f"def {name}({', '.join(names[s] for s in prog.symbols)}, out):"]
    lines.append(f"    ok = {mask(prog, NumpyPrinter(names))}")
    lines += [f"    {k.name} = {printer.doprint(e)}" for e, k in constants.items()]
    lines += [f"    {t.name} = {printer.doprint(e)}" for t, e in pairs]
    stores, results, varies = _results(reduced, moving, printer)
    lines += stores
    lines.append(f"    inexact = {_reaches(list(dict.fromkeys(limits)), moving, printer)}")
    lines.append(f"    return ({', '.join(results)}, ok, inexact)")
    lines.append(f"{name}.varies = {tuple(varies)!r}")
    return "\n".join(lines) + "\n"


def _results(
    reduced: list[sympy.Expr], moving: set[sympy.Symbol], printer: NumpyPrinter
) -> tuple[list[str], list[str], list[bool]]:
    """(statements, each output's value, whether it varies): an output that varies is
    written straight into the caller's array ``out[k]``; one that does not is a value."""
    stores, results, varies = [], [], []
    for k, expr in enumerate(reduced):
        if expr.free_symbols & moving:
            stores.append(f"    {_store(expr, f'out[{k}]', printer)}")
            results.append(f"out[{k}]")
            varies.append(True)
        else:
            results.append(printer.doprint(expr))
            varies.append(False)
    return stores, results, varies


@cache
def _forms(prog: Program) -> tuple[list[sympy.Expr], list[sympy.Expr]]:
    """The outputs' closed forms (the metrics' in division form) and what a float64 call
    must keep below 2^53: the inputs and the forms' bounds. Once per program, whatever
    inputs vary."""
    forms = [
        division_form(closed_form(prog.resolve(e))) if n in METRICS else prog.resolve(e)
        for n, e in prog.outputs
    ]
    found = [d.symbol for d in prog.inputs]
    for (name, _), form in zip(prog.outputs, forms, strict=True):
        if name in METRICS:
            found += bounds(form)
    return forms, maximal(list(dict.fromkeys(found)))


def _reaches(limits: list[sympy.Expr], moving: set[sympy.Symbol], printer: NumpyPrinter) -> str:
    """Where any of ``limits`` (bounds, non-negative) reaches 2^53: the fixed ones tested
    once, the varying ones as one running maximum and one comparison."""
    fixed = [printer.doprint(e) for e in limits if not e.free_symbols & moving]
    varying = [printer.doprint(e) for e in limits if e.free_symbols & moving]
    tests = [f"({' or '.join(f'{x} >= _rt.EXACT_FLOAT' for x in fixed)})"] if fixed else []
    if varying:
        largest = varying[0]
        for other in varying[1:]:
            largest = f"np.maximum({largest}, {other})"
        tests.append(f"({largest} >= _rt.EXACT_FLOAT)")
    return " | ".join(tests) or "False"


def _store(expr: sympy.Expr, target: str, printer: NumpyPrinter) -> str:
    """A statement computing ``expr`` into ``target``, its last operation writing in place."""
    ufunc = {sympy.Mul: "np.multiply", sympy.Add: "np.add"}.get(type(expr))
    if ufunc is not None:
        *rest, last = expr.args
        return (
            f"{ufunc}({printer.doprint(expr.func(*rest))}, {printer.doprint(last)}, out={target})"
        )
    return f"{target}[...] = {printer.doprint(expr)}"


def mask(prog: Program, printer: InfixPrinter) -> str:
    """Where every relation and requirement of ``prog`` holds (an expression)."""
    tests = [printer.doprint(equation(r)) for r in prog.relations]
    tests += [f"({printer.holds(c.total, c.parts, c.either)})" for c in prog.checks]
    return " & ".join(tests) or "True"


def exact_array_source(prog: Program, name: str) -> str:
    """A numpy function of ``prog`` on object arrays of Python ints: exact, step by step."""
    names = identifiers([*prog.symbols, *(s.symbol for s in prog.steps)], {"np", "_rt"})
    exact = NumpyPrinter(names)
    args = ", ".join(names[s] for s in prog.symbols)
    lines = [f"def {name}({args}):"]
    lines.append(f"    ok = {mask(prog, exact)}")
    # invalid configurations compute on ones (no division by zero); callers mask them out
    for s in prog.symbols:
        lines.append(f"    {names[s]} = np.where(ok, {names[s]}, 1)" if prog.checks else "")
    lines += step_lines(prog, names, exact, NumpyPrinter(names, exact=False), "    ")
    lines.append(f"    return ({', '.join(exact.doprint(e) for _, e in prog.outputs)}, ok)")
    return "\n".join(line for line in lines if line) + "\n"


def load(source: str, name: str, namespace: dict[str, Any]) -> Callable[..., Any]:
    """Compile our own generated ``source`` (never user text) and return ``name`` from it.

    The source is registered in ``linecache`` so tracebacks show the generated lines.
    """
    filename = f"<shardcost:{name}:{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    scope = {"np": np, "_rt": runtime, **namespace}
    exec(compile(source, filename, "exec"), scope)
    function = scope[name]
    function.__source__ = source
    return function
