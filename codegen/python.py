"""Python source for compiled layouts: a keyword function with the notation's defaults.

Scalars take a pure-Python path: the derivation's steps, one line each, in exact
integers. Arrays take numpy paths: in float64 the metrics' closed forms after
common-subexpression elimination (fewest operations), or, in exact mode, the same
steps on object arrays of Python ints. The source is kept (``__source__``, and in
``linecache`` so tracebacks show it).
"""

from __future__ import annotations

import dataclasses
import itertools
import keyword
import linecache
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import sympy

from shardcost.formulas import Conventions, Layout, Phase
from shardcost.formulas.conventions import BY_NAME as CONVENTIONS_BY_NAME
from shardcost.formulas.hardware import DEFAULTS as HARDWARE_DEFAULTS
from shardcost.formulas.hardware import FRACTIONS, ZERO_ALLOWED
from shardcost.symbolic import METRICS, closed_form
from shardcost.symbolic.dimensions import HEAD_DIM, HIDDEN_SIZE, NUM_HEADS, NUM_KV_HEADS

from . import runtime
from .exactness import bounds, division_form, maximal
from .literals import python_comment
from .printers import InfixPrinter, NumpyPrinter, PythonPrinter
from .program import Program, inlined, program

_counter = itertools.count()
CHOOSE = sympy.Function("choose")  # choose(c, a, b): a if c else b, decided once


def identifiers(symbols: Sequence[sympy.Symbol], reserved: set[str]) -> dict[sympy.Symbol, str]:
    """A valid, unique identifier for each symbol (its own name where it can be)."""
    names: dict[sympy.Symbol, str] = {}
    taken = set(reserved)
    for symbol in symbols:
        base = re.sub(r"\W", "_", symbol.name)
        if not base or base[0].isdigit() or keyword.iskeyword(base):
            base = f"v_{base}"
        name = base
        for n in itertools.count(2):
            if name not in taken:
                break
            name = f"{base}_{n}"
        taken.add(name)
        names[symbol] = name
    return names


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


def check_lines(prog: Program, printer: InfixPrinter, indent: str) -> list[str]:
    """``raise`` when a requirement fails."""
    lines = []
    for c in prog.checks:
        total, parts = printer.doprint(c.total), printer.doprint(c.parts)
        lines.append(
            f"{indent}if {printer.fails(c.total, c.parts, c.either)}: raise _rt.not_divisible("
            f"{c.total_name!r}, {total}, {c.parts_name!r}, {parts}, {c.why!r}, {c.either!r})"
        )
    return lines


@dataclass(frozen=True)
class Variant:
    """One combination of convention values and its Program."""

    values: tuple[Any, ...]
    program: Program


OVERLAP = "supports_overlap"


def choices(layout: Layout, phase: Phase, timing: bool) -> dict[str, tuple[Any, ...]]:
    """Each switch a compiled function takes (conventions; supports_overlap when timed),
    with its values, the default first."""
    out = {}
    for name in layout.conventions_for(phase):
        convention = CONVENTIONS_BY_NAME[name]
        out[name] = (
            convention.default,
            *(c for c in convention.choices if c != convention.default),
        )
    if timing:
        out[OVERLAP] = (False, True)
    return out


def variants(layout: Layout, phase: Phase, timing: bool) -> list[Variant]:
    """Every combination of the switches, each with its Program; the defaults first."""
    switches = choices(layout, phase, timing)
    out = []
    for combo in itertools.product(*switches.values()):
        chosen = dict(zip(switches, combo, strict=True))
        overlap = chosen.pop(OVERLAP, None)
        out.append(Variant(combo, program(layout, phase, Conventions(**chosen), overlap)))
    return out


def module_source(layout: Layout, phase: Phase, timing: bool) -> tuple[str, str]:
    """(function name, Python source) of the compiled function for ``layout`` in ``phase``.

    Scalar Python ints take the derivation's steps in exact integers; anything else
    (arrays, numpy scalars, floats) is handed to the numpy paths.
    """
    switches = choices(layout, phase, timing)
    convention_names = tuple(switches)
    found = variants(layout, phase, timing)
    inputs = list(dict.fromkeys(d for v in found for d in v.program.inputs))
    hardware = found[0].program.hardware
    params = [*inputs, *hardware]
    reserved = {"np", "_rt", "_arrays", "_inf", "exact", "bad", *(p.name for p in params)}
    reserved |= set(switches)
    optimized = [inlined(v.program) for v in found]
    steps = [s.symbol for prog in optimized for s in prog.steps]
    names = {p.symbol: p.name for p in params}
    names |= identifiers(list(dict.fromkeys(steps)), reserved)
    name = found[0].program.name + ("_timed" if timing else "")
    shaped = {HIDDEN_SIZE, NUM_HEADS, HEAD_DIM} <= set(inputs)

    sig = []
    for dim in inputs:
        derived = (shaped and dim in (HIDDEN_SIZE, NUM_HEADS, HEAD_DIM)) or dim is NUM_KV_HEADS
        default = None if derived else dim.default
        sig.append(f"{dim.name}={default!r}")
    sig += [
        f.name
        if HARDWARE_DEFAULTS.get(f.name) is None
        else f"{f.name}={float(HARDWARE_DEFAULTS[f.name])!r}"  # type: ignore[arg-type]
        for f in hardware
    ]
    sig += [f"{n}={values[0]!r}" for n, values in switches.items()]
    sig.append("exact=False")
    everything = ", ".join(p.name for p in params)
    counts = [d.name for d in inputs]
    key = f"({', '.join(convention_names)},)" if convention_names else "()"
    title = python_comment(f"{layout.layer} layout {layout.name}")  # text, never code
    lines = [
        f"# Compiled by shardcost: {title}, {phase}" + (", with timing" if timing else ""),
        f"def {name}(*, {', '.join(sig)}):",
        f'    """The metrics of {title} in {phase}; scalars exact, arrays numpy."""',
    ]
    if shaped:
        lines += [
            "    if hidden_size is None or num_heads is None or head_dim is None:",
            "        hidden_size, num_heads, head_dim = "
            "_rt.shape(hidden_size, num_heads, head_dim)",
        ]
    if NUM_KV_HEADS in inputs:
        lines.append("    if num_kv_heads is None: num_kv_heads = num_heads")
    exact, inexact = PythonPrinter(names), PythonPrinter(names, exact=False)
    # Checks every variant shares run as one short-circuit test; only a failure pays for
    # finding out which one failed.
    common = [c for c in found[0].program.checks if all(c in v.program.checks for v in found)]
    tests = [f"{c} < 1" for c in counts]
    if shaped:
        tests.append("hidden_size != num_heads * head_dim")
    tests += [f"not ({_admissible(f.name)})" for f in hardware]
    tests += [f"({exact.fails(c.total, c.parts, c.either)})" for c in common]
    lines += [
        "    try:",
        f"        bad = {' or '.join(tests)}",
        "    except (TypeError, ValueError):  # arrays, lists, text: the numpy paths decide",
        f"        return _arrays({key}, exact, ({everything},))",
        "    if bad:",
        f"        if {' or '.join(f'{c} < 1' for c in counts)}:",
        f"            raise _rt.not_positive({tuple(counts)!r}, ({', '.join(counts)},))",
    ]
    if shaped:
        lines.append(
            "        if hidden_size != num_heads * head_dim: "
            "raise _rt.shape_mismatch(hidden_size, num_heads, head_dim)"
        )
    if hardware:
        fields = ", ".join(f.name for f in hardware)
        lines += [
            f"        error = _rt.hardware_error({tuple(f.name for f in hardware)!r}, ({fields},))",
            "        if error is not None: raise error",
        ]
    lines += check_lines(_only(found[0].program, common), exact, "        ")
    for variant, prog in zip(found, optimized, strict=True):
        body = "    "
        if convention_names:
            test = " and ".join(
                f"{n} == {v!r}" for n, v in zip(convention_names, variant.values, strict=True)
            )
            lines.append(f"    if {test}:")
            body = "        "
        lines += check_lines(_only(prog, [c for c in prog.checks if c not in common]), exact, body)
        lines += step_lines(prog, names, exact, inexact, body)
        witnesses = [exact.doprint(e) for e in _covering(prog)]
        lines.append(f"{body}if not ({' is '.join(f'type({x})' for x in witnesses)} is int):")
        lines.append(f"{body}    return _arrays({key}, exact, ({everything},))  # not Python ints")
        outputs = ", ".join(
            f"{n!r}: {(exact if n in METRICS else inexact).doprint(e)}" for n, e in prog.outputs
        )
        lines.append(f"{body}return {{{outputs}}}")
    if convention_names:
        allowed = "; ".join(
            f"{n}: {' | '.join(str(c) for c in values)}" for n, values in switches.items()
        )
        lines.append(f"    raise _rt.bad_conventions({convention_names!r}, {key}, {allowed!r})")
    return name, "\n".join(lines) + "\n"


def _admissible(field: str) -> str:
    """A test that a scalar hardware value is one ``metrics`` accepts (False for NaN)."""
    low = "0 <=" if field in ZERO_ALLOWED else "0 <"
    return f"{low} {field} <= 1" if field in FRACTIONS else f"{low} {field} < _inf"


def _only(prog: Program, checks: list) -> Program:
    """``prog`` with just these checks."""
    return dataclasses.replace(prog, checks=tuple(checks))


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


def float_source(prog: Program, name: str, varying: frozenset[sympy.Symbol]) -> str:
    """A numpy float64 function of ``prog`` for calls where only ``varying`` inputs are arrays.

    The metrics' closed forms in whole-number division form (``codegen.exactness``: no
    count rounds the wrong way below 2^53), with every part that does not vary computed
    once as a number (so a product costs one array operation per varying factor) and
    common subexpressions shared. It returns the outputs, where the configuration is
    valid, and where a count may be inexact (a bound of an intermediate reached 2^53).
    """
    names = identifiers(list(prog.symbols), {"np", "_rt"})
    simplified, checked = _forms(prog)
    constants: dict[sympy.Expr, sympy.Symbol] = {}
    counter = itertools.count()

    def constant(expr: sympy.Basic) -> sympy.Basic:
        if expr.is_Number or expr.is_Symbol:
            return expr
        if expr not in constants:
            constants[expr] = sympy.Symbol(f"k{next(counter)}")
        return constants[expr]

    def hoist(expr: sympy.Basic) -> sympy.Basic:
        if expr.is_Atom:
            return expr
        if not expr.has(*varying):
            return constant(expr) if isinstance(expr, sympy.Expr) else expr
        if isinstance(expr, (sympy.Mul, sympy.Add)):
            fixed = [a for a in expr.args if not a.has(*varying)]
            moving = [hoist(a) for a in expr.args if a.has(*varying)]
            rest = [constant(expr.func(*fixed))] if fixed else []
            return expr.func(*rest, *moving)
        if isinstance(expr, sympy.Piecewise) and not any(c.has(*varying) for _, c in expr.args):
            # the branch is the same for every element: choose it once, not per element
            *branches, (chosen, _) = expr.args
            chosen = hoist(chosen)
            for value, condition in reversed(branches):
                chosen = CHOOSE(constant(condition), hoist(value), chosen)
            return chosen
        return expr.func(*(hoist(a) for a in expr.args))

    hoisted = [hoist(e) for e in [*simplified, *checked]]
    temps = (sympy.Symbol(f"x{i}") for i in itertools.count())
    pairs, reduced_all = sympy.cse(hoisted, symbols=temps, optimizations="basic")
    reduced, limits = reduced_all[: len(simplified)], reduced_all[len(simplified) :]
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
    results = []
    varies = []
    for k, expr in enumerate(reduced):
        if expr.free_symbols & moving:  # written straight into the caller's array
            lines.append(f"    {_store(expr, f'out[{k}]', printer)}")
            results.append(f"out[{k}]")
            varies.append(True)
        else:
            results.append(printer.doprint(expr))
            varies.append(False)
    lines.append(f"    inexact = {_reaches(list(dict.fromkeys(limits)), moving, printer)}")
    lines.append(f"    return ({', '.join(results)}, ok, inexact)")
    lines.append(f"{name}.varies = {tuple(varies)!r}")
    return "\n".join(lines) + "\n"


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
    """Where every requirement of ``prog`` holds (an expression)."""
    tests = [f"({printer.holds(c.total, c.parts, c.either)})" for c in prog.checks]
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
