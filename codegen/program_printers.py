"""Programs as functions of each target: one program printer per language.

A program printer prints a ``Program`` in its target's syntax: the function's comment,
its signature, how each input gets its value (given, else its default: a number, or
another input's value; relation members through the frame's ``product`` helper, which
derives the missing one from the other two, or checks all three), the checks, one
assignment per derivation step, and the outputs. Each node is printed by the
``_print_<Class>`` method found along its class's MRO; a node a target has no method for
fails naming the target and the node. Expressions go through the target's expression
printer (``codegen.printers``); text (summaries, labels, names, messages) only through
the target's literals (``codegen.literals``). The templates hold the module frame: the
helpers (``product``, ``split`` ...), the dispatcher, main and run.sh.
"""

from __future__ import annotations

import itertools
import json
import keyword
import re
from collections.abc import Mapping, Sequence
from typing import ClassVar

import sympy

from shardcost.symbolic import METRICS
from shardcost.symbolic.dimensions import Dimension
from shardcost.symbolic.relation import Product

from .literals import LITERALS
from .printers import (
    CPrinter,
    GoPrinter,
    InfixPrinter,
    JavascriptPrinter,
    PythonPrinter,
    RuntimePythonPrinter,
    RustPrinter,
    UnsupportedNode,
)
from .program import Assignment, Check, Given, Program, equation

Node = Given | Product | Check | Assignment


def identifiers(
    symbols: Sequence[sympy.Symbol], reserved: set[str] | frozenset[str]
) -> dict[sympy.Symbol, str]:
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


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


class ProgramPrinter:
    """A Program as one function of a target language (subclasses: one per target)."""

    language: ClassVar[str]  # the export's name of the target (LITERALS, PRINTERS)
    expressions: ClassVar[type[InfixPrinter]]
    # the target's keywords and the names its module frame defines
    keywords: ClassVar[frozenset[str]] = frozenset()
    indent: ClassVar[str] = "    "

    @classmethod
    def reserved(cls) -> frozenset[str]:
        """Names no input or step may take: keywords, the frame's, the functions'."""
        return cls.keywords | frozenset(cls.expressions.functions.values())

    def __init__(self, prog: Program, names: Mapping[sympy.Symbol, str] | None = None) -> None:
        self.prog = prog
        symbols = [*(d.symbol for d in prog.inputs), *(s.symbol for s in prog.steps)]
        self.names = dict(names) if names is not None else identifiers(symbols, self.reserved())
        self.exact = self.expressions(self.names)
        self.inexact = self.expressions(self.names, exact=False)
        self.string = LITERALS[self.language].string
        self.comment = LITERALS[self.language].comment

    def function(self, name: str) -> str:
        """The whole function, called ``name`` (a valid identifier of the target)."""
        lines = [*self.head(name), *self.nested(self.body()), *self.tail()]
        return "\n".join(lines) + "\n"

    def body(self) -> list[str]:
        """Inputs, checks, steps and outputs, unindented."""
        prog = self.prog
        return self.lines([*prog.preamble, *prog.checks, *prog.steps]) + self.outputs()

    def lines(self, nodes: Sequence[Node]) -> list[str]:
        """The lines of each node, in order."""
        return [line for node in nodes for line in self.print(node)]

    def print(self, node: Node) -> list[str]:
        """The lines of one node, by the ``_print_<Class>`` method along its MRO."""
        for cls in type(node).__mro__:
            method = getattr(self, f"_print_{cls.__name__}", None)
            if method is not None:
                return method(node)
        raise UnsupportedNode(f"the {self.language} program printer cannot print {node!r}")

    def nested(self, lines: list[str], depth: int = 1) -> list[str]:
        """``lines`` indented ``depth`` levels (blank lines stay blank)."""
        return [self.indent * depth + line if line else line for line in lines]

    def var(self, dim: Dimension) -> str:
        """The identifier of input ``dim``."""
        return self.names[dim.symbol]

    def value(self, default: int | Dimension) -> str:
        """A default as an expression: a number, or another input's value."""
        if isinstance(default, Dimension):
            return self.var(default)
        return self.exact.literal(default)

    def holds(self, node: Product | Check) -> str:
        """A condition true when a relation or a check holds."""
        if isinstance(node, Check):
            return self.exact.holds(node.total, node.parts, node.either)
        return self.exact.doprint(self.condition(node))

    def fails(self, node: Product | Check) -> str:
        """A condition true when a relation or a check fails."""
        if isinstance(node, Check):
            return self.exact.fails(node.total, node.parts, node.either)
        return self.exact.doprint(sympy.Not(self.condition(node)))

    def condition(self, node: Product) -> sympy.Equality:
        """A relation as an equation; UnsupportedNode for any other node."""
        if not isinstance(node, Product):
            raise UnsupportedNode(f"the {self.language} program printer cannot test {node!r}")
        return equation(node)

    def expression(self, step: Assignment) -> str:
        """A step's expression: exact for counts, floating point for times."""
        return (self.exact if step.exact else self.inexact).doprint(step.expr)

    def output(self, name: str, expr: sympy.Expr) -> str:
        """An output's expression: exact for the metrics, floating point for times."""
        return (self.exact if name in METRICS else self.inexact).doprint(expr)

    def summary(self) -> list[str]:
        """What the function computes, in words (for its comment): two lines."""
        prog = self.prog
        layout, values = prog.layout, prog.conventions.as_dict()
        applicable = layout.conventions_for(prog.phase, timed=prog.overlap is not None)
        chosen = ", ".join(f"{n}={json.dumps(values[n])}" for n in applicable) or "none apply"
        what = f"{layout.layer} layout {layout.name}, {prog.phase}: {layout.summary}."
        return [self.comment(what), f"Conventions: {self.comment(chosen)}."]

    @classmethod
    def callable_name(cls, name: str) -> str:
        """The name the function is defined under (Go exports capitalised names)."""
        return name

    def relation_args(self, rel: Product) -> tuple[str, str, str]:
        """The relation's dimension names, its factors' defaults and its words, as the
        target's literals (names and words as string literals)."""
        names = ", ".join(self.string(d.name) for d in rel.dimensions)
        defaults = ", ".join(self.exact.literal(d.default) for d in (rel.left, rel.right))
        return names, defaults, self.string(rel.ascii)

    def prototype(self, name: str) -> str:
        """The declaration a header file needs (C's; no other target has one)."""
        return ""

    # -- per target
    def head(self, name: str) -> list[str]:
        """The comment and signature."""
        raise NotImplementedError

    def tail(self) -> list[str]:
        """What closes the function."""
        return ["}"]

    def outputs(self) -> list[str]:
        """The return of the nine metrics."""
        raise NotImplementedError


class PythonProgram(ProgramPrinter):
    """Python: the export's ``def f(p)`` over a dict of given values, or, ``runtime``,
    the pieces of the in-process compiled function (keyword inputs, ``_rt`` errors)."""

    language = "python"
    expressions = PythonPrinter
    keywords = _words(
        """p json sys int type print dict SplitError split product KEYS METRICS FUNCTIONS
        metrics main"""
    )

    def __init__(
        self,
        prog: Program,
        names: Mapping[sympy.Symbol, str] | None = None,
        *,
        runtime: bool = False,
    ) -> None:
        super().__init__(prog, names)
        self.runtime = runtime
        if runtime:  # in process: the run-time helpers are there to call
            self.exact = RuntimePythonPrinter(self.names)
            self.inexact = RuntimePythonPrinter(self.names, exact=False)

    def head(self, name: str) -> list[str]:
        first, second = self.summary()
        return [f"def {name}(p):", f'    """{first}', "", f"    {second}", '    """']

    def tail(self) -> list[str]:
        return []

    def parameter(self, dim: Dimension) -> str:
        """A keyword parameter of the in-process function: None when derived."""
        default = self.prog.default(dim)
        return f"{dim.name}={default if isinstance(default, int) else None!r}"

    def _print_Given(self, given: Given) -> list[str]:
        name, default = self.var(given.dimension), self.value(given.default)
        if not self.runtime:
            return [f"{name} = p.get({self.string(given.dimension.name)}, {default})"]
        if isinstance(given.default, Dimension):  # a keyword's default is a number
            return [f"if {name} is None: {name} = {default}"]
        return []

    def _print_Product(self, rel: Product) -> list[str]:
        names = ", ".join(self.var(d) for d in rel.dimensions)
        if self.runtime:  # given, all three, they are checked with the others
            missing = " or ".join(f"{self.var(d)} is None" for d in rel.dimensions)
            which = self.prog.relations.index(rel)
            derive = f"{names} = _rt.product(_relations[{which}], {names})"
            return [f"if {missing}:", f"    {derive}"]
        given = ", ".join(f"p.get({self.string(d.name)})" for d in rel.dimensions)
        labels, defaults, words = self.relation_args(rel)
        return [f"{names} = product({given}, ({labels}), ({defaults}), {words})"]

    def mismatch(self, rel: Product) -> str:
        """In-process: raise when all three are given and the relation fails."""
        which = self.prog.relations.index(rel)
        names = ", ".join(self.var(d) for d in rel.dimensions)
        return f"if {self.fails(rel)}: raise _rt.mismatch(_relations[{which}], {names})"

    def _print_Divides(self, c: Check) -> list[str]:
        total, parts = self.exact.doprint(c.total), self.exact.doprint(c.parts)
        texts = [self.string(t) for t in (c.total_name, c.parts_name, c.why)]
        if self.runtime:
            return [
                f"if {self.fails(c)}: raise _rt.not_divisible({texts[0]}, {total}, "
                f"{texts[1]}, {parts}, {texts[2]}, {c.either!r})"
            ]
        return [
            f"if {self.fails(c)}:",
            f"    raise split({texts[0]}, {total}, {texts[1]}, {parts}, {texts[2]})",
        ]

    def _print_Assignment(self, step: Assignment) -> list[str]:
        name, comment = self.names[step.symbol], self.comment(step.comment)
        return [f"{name} = {self.expression(step)}  # {comment}"]

    def returned(self) -> str:
        """The outputs as one dict display (keys as string literals)."""
        items = ", ".join(f"{self.string(n)}: {self.output(n, e)}" for n, e in self.prog.outputs)
        return f"{{{items}}}"

    def outputs(self) -> list[str]:
        items = [f"    {self.string(n)}: {self.output(n, e)}," for n, e in self.prog.outputs]
        return ["return {", *items, "}"]


class CProgram(ProgramPrinter):
    """C: ``int f(const sc_params *p, sc_metrics *out, char *err, size_t errlen)``, a
    parameter left 0 not given; 0, or 2 with a one-line message in ``err``."""

    language = "c"
    expressions = CPrinter
    keywords = _words(
        """auto break case char const continue default do double else enum extern float for
        goto if inline int long register restrict return short signed sizeof static struct
        switch typedef union unsigned void volatile while size_t NULL
        p out err errlen sc_int sc_params sc_metrics sc_split sc_product sc_format"""
    )

    def prototype(self, name: str) -> str:
        """The declaration, for the header."""
        return f"int {name}(const sc_params *p, sc_metrics *out, char *err, size_t errlen)"

    def head(self, name: str) -> list[str]:
        return [*(f"// {line}" for line in self.summary()), f"{self.prototype(name)} {{"]

    def body(self) -> list[str]:
        if self.prog.relations or self.prog.checks:
            return super().body()
        return ["(void)err, (void)errlen;  // nothing here can fail", *super().body()]

    def _print_Given(self, given: Given) -> list[str]:
        name, field = self.var(given.dimension), f"p->{given.dimension.name}"
        return [f"const sc_int {name} = {field} ? {field} : {self.value(given.default)};"]

    def _print_Product(self, rel: Product) -> list[str]:
        declared = ", ".join(f"{self.var(d)} = p->{d.name}" for d in rel.dimensions)
        pointers = ", ".join(f"&{self.var(d)}" for d in rel.dimensions)
        labels, defaults, words = self.relation_args(rel)
        return [
            f"sc_int {declared};",
            f"if (sc_product({pointers}, {defaults}, (const char *const[]){{{labels}}}, "
            f"{words}, err, errlen))",
            "    return 2;",
        ]

    def _print_Divides(self, c: Check) -> list[str]:
        total, parts = self.exact.doprint(c.total), self.exact.doprint(c.parts)
        texts = [self.string(t) for t in (c.total_name, c.parts_name, c.why)]
        return [
            f"if ({self.fails(c)})",
            f"    return sc_split(err, errlen, {texts[0]}, {total}, {texts[1]}, {parts}, "
            f"{texts[2]});",
        ]

    def _print_Assignment(self, step: Assignment) -> list[str]:
        name, comment = self.names[step.symbol], self.comment(step.comment)
        return [f"const sc_int {name} = {self.expression(step)};  // {comment}"]

    def outputs(self) -> list[str]:
        return [*(f"out->{n} = {self.output(n, e)};" for n, e in self.prog.outputs), "return 0;"]


class RustProgram(ProgramPrinter):
    """Rust: ``fn f(p: &Params) -> Result<Metrics, String>`` over ``Option<i128>`` fields."""

    language = "rust"
    expressions = RustPrinter
    keywords = _words(
        """as async await break const continue crate dyn else enum extern false fn for if impl
        in let loop match mod move mut pub ref return self Self static struct super trait
        true type unsafe use where while abstract become box do final macro override priv
        try typeof unsized virtual yield
        p product split Params Metrics Ok Err Some None Option Result String i128"""
    )

    def head(self, name: str) -> list[str]:
        lines = [f"/// {line}" for line in self.summary()]
        return [*lines, f"fn {name}(p: &Params) -> Result<Metrics, String> {{"]

    def _print_Given(self, given: Given) -> list[str]:
        name, field = self.var(given.dimension), given.dimension.name
        return [f"let {name}: i128 = p.{field}.unwrap_or({self.value(given.default)});"]

    def _print_Product(self, rel: Product) -> list[str]:
        names = ", ".join(self.var(d) for d in rel.dimensions)
        given = ", ".join(f"p.{d.name}" for d in rel.dimensions)
        labels, defaults, words = self.relation_args(rel)
        return [f"let ({names}) = product({given}, ({defaults}), [{labels}], {words})?;"]

    def _print_Divides(self, c: Check) -> list[str]:
        total, parts = self.exact.doprint(c.total), self.exact.doprint(c.parts)
        texts = [self.string(t) for t in (c.total_name, c.parts_name, c.why)]
        return [
            f"if {self.fails(c)} {{",
            f"    return Err(split({texts[0]}, {total}, {texts[1]}, {parts}, {texts[2]}));",
            "}",
        ]

    def _print_Assignment(self, step: Assignment) -> list[str]:
        name, comment = self.names[step.symbol], self.comment(step.comment)
        return [f"let {name}: i128 = {self.expression(step)}; // {comment}"]

    def outputs(self) -> list[str]:
        items = [f"    {n}: {self.output(n, e)}," for n, e in self.prog.outputs]
        return ["Ok(Metrics {", *items, "})"]


class JavascriptProgram(ProgramPrinter):
    """JavaScript: ``export function f(p)`` over BigInt properties (absent: not given)."""

    language = "js"
    expressions = JavascriptPrinter
    indent = "  "
    keywords = _words(
        """await break case catch class const continue debugger default delete do else enum
        export extends false finally for function if implements import in instanceof
        interface let new null package private protected public return static super switch
        this throw true try typeof var void while with yield arguments eval undefined NaN
        Infinity BigInt Object
        p product split SplitError KEYS METRICS FUNCTIONS metrics"""
    )

    def head(self, name: str) -> list[str]:
        first, second = self.summary()
        return [f"/** {first}", f" *  {second} */", f"export function {name}(p) {{"]

    def _print_Given(self, given: Given) -> list[str]:
        name, field = self.var(given.dimension), given.dimension.name
        return [f"const {name} = p.{field} ?? {self.value(given.default)};"]

    def _print_Product(self, rel: Product) -> list[str]:
        names = ", ".join(self.var(d) for d in rel.dimensions)
        given = ", ".join(f"p.{d.name}" for d in rel.dimensions)
        labels, defaults, words = self.relation_args(rel)
        return [f"const [{names}] = product({given}, [{defaults}], [{labels}], {words});"]

    def _print_Divides(self, c: Check) -> list[str]:
        total, parts = self.exact.doprint(c.total), self.exact.doprint(c.parts)
        texts = [self.string(t) for t in (c.total_name, c.parts_name, c.why)]
        return [
            f"if ({self.fails(c)}) throw split({texts[0]}, {total}, {texts[1]}, {parts}, "
            f"{texts[2]});"
        ]

    def _print_Assignment(self, step: Assignment) -> list[str]:
        name, comment = self.names[step.symbol], self.comment(step.comment)
        return [f"const {name} = {self.expression(step)}; // {comment}"]

    def outputs(self) -> list[str]:
        items = [f"  {n}: {self.output(n, e)}," for n, e in self.prog.outputs]
        return ["return {", *items, "};"]


class GoProgram(ProgramPrinter):
    """Go: ``func F(p Params) (Metrics, error)`` over a map of *big.Int (nil: not given)."""

    language = "go"
    expressions = GoPrinter
    indent = "\t"
    keywords = _words(
        """break case chan const continue default defer else fallthrough for func go goto if
        import interface map package range return select struct switch type var nil true
        false append cap len make new panic print println copy delete close complex real
        imag int string error bool byte rune any iota
        p err big fmt split product orElse Params Metrics Names MetricNames"""
    )

    @classmethod
    def callable_name(cls, name: str) -> str:
        return "".join(part.capitalize() for part in name.split("_"))

    def head(self, name: str) -> list[str]:
        first, second = self.summary()
        go = self.callable_name(name)
        return [f"// {go}: {first}", f"// {second}", f"func {go}(p Params) (Metrics, error) {{"]

    def _print_Given(self, given: Given) -> list[str]:
        name, field = self.var(given.dimension), self.string(given.dimension.name)
        return [f"{name} := orElse(p[{field}], {self.value(given.default)})"]

    def _print_Product(self, rel: Product) -> list[str]:
        names = ", ".join(self.var(d) for d in rel.dimensions)
        given = ", ".join(f"p[{self.string(d.name)}]" for d in rel.dimensions)
        labels, defaults, words = self.relation_args(rel)
        return [
            f"{names}, err := product({given}, {defaults}, [3]string{{{labels}}}, {words})",
            "if err != nil {",
            "\treturn nil, err",
            "}",
        ]

    def _print_Divides(self, c: Check) -> list[str]:
        total, parts = self.exact.doprint(c.total), self.exact.doprint(c.parts)
        texts = [self.string(t) for t in (c.total_name, c.parts_name, c.why)]
        return [
            f"if {self.fails(c)} {{",
            f"\treturn nil, split({texts[0]}, {total}, {texts[1]}, {parts}, {texts[2]})",
            "}",
        ]

    def _print_Assignment(self, step: Assignment) -> list[str]:
        name, comment = self.names[step.symbol], self.comment(step.comment)
        return [f"{name} := {self.expression(step)} // {comment}"]

    def outputs(self) -> list[str]:
        items = [f"\t{self.string(n)}: {self.output(n, e)}," for n, e in self.prog.outputs]
        return ["return Metrics{", *items, "}, nil"]


PROGRAM_PRINTERS: dict[str, type[ProgramPrinter]] = {
    p.language: p for p in (PythonProgram, CProgram, RustProgram, JavascriptProgram, GoProgram)
}
