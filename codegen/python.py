"""Python source for compiled layouts: a keyword function with the notation's defaults.

Scalars take a pure-Python path: the derivation's steps, one line each, in exact
integers. Arrays take numpy paths (``codegen.compiled``): blocked float64 and int64
programs of the metrics' closed forms (``codegen.blocked``), or, for the few rows whose
values pass int64, the same steps on object arrays of Python ints
(``exact_array_source``). What an input is when not given, and the relations that tie
inputs together, come from the Program (its layer's declarations), printed by the same
Python program printer as the export's. The source is kept (``__source__``, and in
``linecache`` so tracebacks show it).
"""

from __future__ import annotations

import dataclasses
import itertools
import linecache
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from shardcost.errors import InputError, lookup
from shardcost.formulas import Conventions, Layout, Phase
from shardcost.formulas.conventions import BY_NAME as CONVENTIONS_BY_NAME
from shardcost.formulas.hardware import DEFAULTS as HARDWARE_DEFAULTS
from shardcost.formulas.hardware import FRACTIONS, ZERO_ALLOWED, HardwareField
from shardcost.symbolic import METRICS
from shardcost.symbolic.relation import Product

from . import runtime
from .literals import python_comment, python_string
from .printers import InfixPrinter, NumpyPrinter
from .program import Check, Program, equation, inlined, program
from .program_printers import PythonProgram, identifiers

_counter = itertools.count()
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
    extras: bool = False,
) -> list[Variant]:
    """Every combination of the switches, each with its Program (the static conventions
    at ``fixed``, else their defaults); the defaults first. ``decoupled``: programs
    without the layer's relations; ``extras``: with chips and each collective's payload
    among their outputs (``program``)."""
    switches = choices(layout, phase, timing, pinned)
    out = []
    for combo in itertools.product(*switches.values()):
        chosen = dict(fixed) | dict(zip(switches, combo, strict=True))
        overlap = chosen.pop(OVERLAP, None)
        conv = Conventions(**chosen)
        out.append(Variant(combo, program(layout, phase, conv, overlap, decoupled, extras)))
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
    found: list[Variant] | None = None,
) -> tuple[str, str, tuple[Product, ...]]:
    """(function name, Python source, the relations the source reads as ``_relations``)
    of the compiled function for ``layout`` in ``phase``; ``found``: its ``variants``,
    when the caller has them.

    Scalar Python ints take the derivation's steps in exact integers; anything else
    (arrays, numpy scalars, floats) is handed to the numpy paths.
    """
    if found is None:
        found = variants(layout, phase, timing, fixed, decoupled, pinned)
    head = merged(found)
    switches = choices(layout, phase, timing, pinned)
    optimized = [inlined(v.program) for v in found]
    names = _scalar_names(head, optimized, switches)
    printer = PythonProgram(head, names, runtime=True)
    call = _Call.of(head, switches)
    name = head.name + ("_timed" if timing else "")
    lines = _signature(printer, name, switches, timing)
    lines += printer.nested(_preamble(printer))
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


def _preamble(printer: PythonProgram) -> list[str]:
    """How each input gets its value (``Program.preamble``); a relation with a missing
    member derives it inline when the others are positive Python ints and divide, and
    through ``_rt.product`` otherwise (arrays; its errors, in the relation's words)."""
    head = printer.prog
    lines = []
    for node in head.preamble:
        if not isinstance(node, Product):
            lines += printer.print(node)
            continue
        total, left, right = (printer.var(d) for d in node.dimensions)
        names = f"{total}, {left}, {right}"
        call = f"{names} = _rt.product(_relations[{head.relations.index(node)}], {names})"
        one, other = node.left.default, node.right.default
        if not (isinstance(one, int) and isinstance(other, int)):
            lines += [f"if {total} is None or {left} is None or {right} is None:", f"    {call}"]
            continue

        def whole(x: str) -> str:
            return f"(type({x}) is int and {x} > 0)"

        lines += [
            f"if {total} is None or {left} is None or {right} is None:",
            f"    if {total} is None and ({left} is None or {whole(left)}) and "
            f"({right} is None or {whole(right)}):",
            f"        {total} = ({one} if {left} is None else {left}) * "
            f"({other} if {right} is None else {right})",
            f"        {left} = {one} if {left} is None else {left}",
            f"        {right} = {other} if {right} is None else {right}",
            f"    elif {whole(total)} and {left} is None and ({right} is None or {whole(right)})"
            f" and {total} % ({other} if {right} is None else {right}) == 0:",
            f"        {right} = {other} if {right} is None else {right}",
            f"        {left} = {total} // {right}",
            f"    elif {whole(total)} and {right} is None and {whole(left)} and "
            f"{total} % {left} == 0:",
            f"        {right} = {total} // {left}",
            "    else:",
            f"        {call}",
        ]
    return lines


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
    tests += [f"{c} is True" for c in counts]  # counts as 1 in arithmetic: refused here
    tests += [printer.fails(r) for r in head.relations]
    tests += [f"not ({_admissible(f.name)})" for f in head.hardware]
    tests += [f"({printer.fails(c)})" for c in head.checks]
    lines = [
        "try:",
        f"    bad = {' or '.join(tests)}",
        "except (TypeError, ValueError):  # arrays, lists, text: the numpy paths decide",
        f"    {call.arrays()}",
        "if bad:",
        f"    if {' or '.join(f'{c} < 1 or {c} is True' for c in counts)}:",
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
