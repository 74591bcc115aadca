"""Expressions as ufunc calls on blocks of rows: registers, instructions, and the
buffers they share.

``Lowering`` turns an expression into numpy ufunc calls, each writing into a register
(``out=``): a scratch buffer of one block, or the slice of an input or output it lives
in. Parts that do not vary are Python text computed once per call (``Hoisting``). A
linear list of instructions (some under an ``if``) is then given buffers by
``allocate``: a register's buffer goes back to the pool after its last read, so an
operation may write over its own operand and a program needs a handful of buffers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sympy

from shardcost.symbolic.functions import CeilLog2

from .exactness import CeilDiv, FloorDiv, Quotient, remainder
from .printers import NumpyPrinter, UnsupportedNode

CHOOSE = sympy.Function("choose")  # choose(c, a, b): a if c else b, c decided once per call

_UFUNCS = {
    sympy.StrictGreaterThan: "np.greater",
    sympy.GreaterThan: "np.greater_equal",
    sympy.StrictLessThan: "np.less",
    sympy.LessThan: "np.less_equal",
    sympy.Equality: "np.equal",
    sympy.Unequality: "np.not_equal",
}


class Hoisting:
    """Expressions rewritten so that every part that does not vary is computed once, as
    a numbered constant (``_k0``, ``_k1`` ...): a product then costs one array operation
    per varying factor."""

    def __init__(self, varying: frozenset[sympy.Symbol]) -> None:
        self.varying = varying
        self.constants: dict[sympy.Expr, sympy.Symbol] = {}

    def constant(self, expr: sympy.Basic) -> sympy.Basic:
        """``expr`` (which does not vary) as a number, a symbol or a named constant."""
        if expr.is_Number or expr.is_Symbol:
            return expr
        if expr not in self.constants:
            self.constants[expr] = sympy.Symbol(f"_k{len(self.constants)}")
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


class Reg:
    """A value of one block: a scratch buffer, or a slice of an input or an output."""

    __slots__ = ("home", "kind", "name")

    def __init__(self, kind: str, home: str | None = None) -> None:
        self.kind = kind  # "v": the pass's number type; "b": bool
        self.home = home
        self.name = home or ""


Operand = str | Reg


@dataclass
class Instr:
    template: str  # "np.multiply({0}, {1}, {out})"
    args: tuple[Operand, ...]
    out: Reg | None  # None: a line that writes no register (an ``if``, a store)
    update: bool = False  # ``out`` is read and written: it is defined already
    depth: int = 0  # how many ``if`` lines it is under


@dataclass
class Lowering:
    """Expressions as ufunc calls on block values, in the order they are needed."""

    integer: bool  # int64 arithmetic (exact quotients) instead of float64
    scalar: Callable[[sympy.Expr], str]  # a part that does not vary, as Python text
    values: dict[sympy.Symbol, Reg]  # varying inputs and computed temporaries
    temps: dict[sympy.Symbol, sympy.Expr]  # common subexpressions, computed on first use
    code: list[Instr] = field(default_factory=list)
    depth: int = 0

    def varies(self, expr: sympy.Basic) -> bool:
        return any(s in self.values or s in self.temps for s in expr.free_symbols)

    def emit(
        self, template: str, args: Sequence[Operand], dest: Reg | None = None, kind: str = "v"
    ) -> Reg:
        out = dest if dest is not None else Reg(kind)
        self.code.append(Instr(template, tuple(args), out, depth=self.depth))
        return out

    def update(self, template: str, args: Sequence[Operand], target: Reg) -> None:
        self.code.append(Instr(template, tuple(args), target, update=True, depth=self.depth))

    def line(self, template: str, args: Sequence[Operand] = ()) -> None:
        """A line that reads registers and writes none (a store into a caller's array)."""
        self.code.append(Instr(template, tuple(args), None, depth=self.depth))

    def begin(self, condition: str, args: Sequence[Operand] = ()) -> None:
        """``if condition:``; what follows runs under it until ``end``. A register first
        written under it is never read after it."""
        self.line(f"if {condition}:", args)
        self.depth += 1

    def end(self) -> None:
        self.depth -= 1

    def value(self, expr: sympy.Basic, dest: Reg | None = None, bind: bool = False) -> Operand:
        """``expr`` as an operand (into ``dest`` when given). ``bind``: ``dest`` is the
        final home of ``expr``, so a temporary computed into it may be read from there."""
        if not self.varies(expr):
            text = self.scalar(expr)
            return text if dest is None else self.emit("np.copyto({out}, {0})", [text], dest)
        if expr.is_Symbol:
            if expr not in self.values:
                # an output's own value is computed in place: others read it from there
                into = dest if bind else None
                self.values[expr] = self.node(self.temps[expr], into)
                if into is not None:
                    return into
            reg = self.values[expr]
            return reg if dest is None else self.emit("np.copyto({out}, {0})", [reg], dest)
        return self.node(expr, dest)

    def node(self, expr: sympy.Basic, dest: Reg | None) -> Reg:
        if isinstance(expr, sympy.core.relational.Relational):
            return self.relational(expr, dest)
        if isinstance(expr, sympy.Function) and expr.func == CHOOSE:
            return self.choose(expr, dest)
        method = getattr(self, f"_{type(expr).__name__}", None)
        if method is None:
            return self.fallback(expr, dest)
        return method(expr, dest)

    def chain(
        self,
        first: Operand,
        rest: Sequence[tuple[str, sympy.Expr | Operand]],
        dest: Reg | None,
    ) -> Reg:
        """``first`` combined with each of ``rest`` in turn by its ufunc; the last
        operation writes into ``dest``."""
        acc = first
        for k, (ufunc, operand) in enumerate(rest):
            other = operand if isinstance(operand, str | Reg) else self.value(operand)
            last = k == len(rest) - 1
            # np.maximum and np.minimum take their output by keyword only
            out = "out={out}" if ufunc in ("np.maximum", "np.minimum") else "{out}"
            acc = self.emit(f"{ufunc}({{0}}, {{1}}, {out})", [acc, other], dest if last else None)
        if isinstance(acc, str) or (dest is not None and acc is not dest):
            return self.emit("np.copyto({out}, {0})", [acc], dest)
        return acc

    # -- arithmetic
    def _Add(self, expr: sympy.Add, dest: Reg | None) -> Reg:
        plus, minus, fixed = [], [], []
        for term in expr.args:
            if not self.varies(term):
                fixed.append(term)
            elif term.as_coeff_Mul()[0].is_negative:
                minus.append(-term)
            else:
                plus.append(term)
        rest: list[tuple[str, sympy.Expr | str]] = [("np.add", t) for t in plus[1:]]
        if fixed:
            rest.append(("np.add", self.scalar(sympy.Add(*fixed))))
        rest += [("np.subtract", t) for t in minus]
        if plus:
            return self.chain(self.value(plus[0]), rest, dest)
        if fixed:  # constant - a - b
            return self.chain(rest.pop(0)[1], rest, dest)  # type: ignore[arg-type]
        first = self.emit("np.negative({0}, {out})", [self.value(minus[0])])
        return self.chain(first, rest[1:], dest)

    def _Mul(self, expr: sympy.Mul, dest: Reg | None) -> Reg:
        num, den = [], []
        for factor in expr.args:
            if factor.is_Rational and not factor.is_Integer:
                num.append(sympy.Integer(factor.p))
                den.append(sympy.Integer(factor.q))
            elif factor.is_Pow and factor.exp.is_Integer and factor.exp.is_negative:
                den.append(factor.base ** (-factor.exp))
            else:
                num.append(factor)
        moving = [f for f in num if self.varies(f)]
        fixed = sympy.Mul(*(f for f in num if not self.varies(f)))
        rest: list[tuple[str, sympy.Expr | str]] = [("np.multiply", f) for f in moving[1:]]
        if fixed != 1:
            rest.append(("np.multiply", self.scalar(fixed)))
        if den:
            if self.integer:
                raise UnsupportedNode(f"int64 blocks: a product with a denominator: {expr}")
            rest.append(("np.divide", sympy.Mul(*den)))
        if moving:
            return self.chain(self.value(moving[0]), rest, dest)
        return self.chain(self.scalar(fixed), rest[-1:], dest)  # constant / varying

    def _Pow(self, expr: sympy.Pow, dest: Reg | None) -> Reg:
        base, exp = expr.args
        if exp.is_Integer and exp > 0:
            operand = self.value(base)
            return self.chain(operand, [("np.multiply", base)] * (int(exp) - 1), dest)
        if self.integer:
            raise UnsupportedNode(f"int64 blocks: the power {expr}")
        if exp.is_Integer:
            return self.chain("1.0", [("np.divide", base ** (-exp))], dest)
        return self.emit("np.power({0}, {1}, {out})", [self.value(base), self.value(exp)], dest)

    def divide(self, num: sympy.Expr, den: sympy.Expr, dest: Reg | None) -> Reg:
        ufunc = "np.floor_divide" if self.integer else "np.divide"
        return self.emit(
            f"{ufunc}({{0}}, {{1}}, {{out}})", [self.value(num), self.value(den)], dest
        )

    def _Quotient(self, expr: sympy.Function, dest: Reg | None) -> Reg:
        return self.divide(*expr.args, dest)

    def _CeilDiv(self, expr: sympy.Function, dest: Reg | None) -> Reg:
        num, den = expr.args
        if self.integer:  # ⌈n / d⌉ = -(-n // d)
            negated = self.emit("np.negative({0}, {out})", [self.value(num)])
            quotient = self.emit("np.floor_divide({0}, {1}, {out})", [negated, self.value(den)])
            return self.emit("np.negative({0}, {out})", [quotient], dest)
        return self.emit("np.ceil({0}, {out})", [self.divide(num, den, None)], dest)

    def _FloorDiv(self, expr: sympy.Function, dest: Reg | None) -> Reg:
        if self.integer:
            return self.divide(*expr.args, dest)
        return self.emit("np.floor({0}, {out})", [self.divide(*expr.args, None)], dest)

    def _ceiling(self, expr: sympy.ceiling, dest: Reg | None) -> Reg:
        return self._CeilDiv(CeilDiv(*sympy.fraction(sympy.together(expr.args[0]))), dest)

    def _floor(self, expr: sympy.floor, dest: Reg | None) -> Reg:
        return self._FloorDiv(FloorDiv(*sympy.fraction(sympy.together(expr.args[0]))), dest)

    def _Rem(self, expr: sympy.Function, dest: Reg | None) -> Reg:
        return self.node(remainder(*expr.args), dest)

    def _Max(self, expr: sympy.Max, dest: Reg | None) -> Reg:
        return self.extreme("np.maximum", expr, dest)

    def _Min(self, expr: sympy.Min, dest: Reg | None) -> Reg:
        return self.extreme("np.minimum", expr, dest)

    def extreme(self, ufunc: str, expr: sympy.Expr, dest: Reg | None) -> Reg:
        args = sorted(expr.args, key=lambda a: (not self.varies(a), sympy.default_sort_key(a)))
        return self.chain(self.value(args[0]), [(ufunc, a) for a in args[1:]], dest)

    # -- conditions
    def relational(self, expr: sympy.Basic, dest: Reg | None) -> Reg:
        ufunc = _UFUNCS.get(type(expr))
        if ufunc is None:
            return self.fallback(expr, dest)
        lhs, rhs = self.value(expr.lhs), self.value(expr.rhs)
        return self.emit(f"{ufunc}({{0}}, {{1}}, {{out}})", [lhs, rhs], dest, kind="b")

    def _And(self, expr: sympy.And, dest: Reg | None) -> Reg:
        return self.logical("np.logical_and", expr, dest)

    def _Or(self, expr: sympy.Or, dest: Reg | None) -> Reg:
        return self.logical("np.logical_or", expr, dest)

    def logical(self, ufunc: str, expr: sympy.Basic, dest: Reg | None) -> Reg:
        args = sorted(expr.args, key=lambda a: not self.varies(a))
        first = self.value(args[0])
        acc = first
        for k, arg in enumerate(args[1:]):
            last = k == len(args) - 2
            target = dest if last else None
            acc = self.emit(f"{ufunc}({{0}}, {{1}}, {{out}})", [acc, self.value(arg)], target, "b")
        return acc  # type: ignore[return-value]

    def _Not(self, expr: sympy.Not, dest: Reg | None) -> Reg:
        return self.emit("np.logical_not({0}, {out})", [self.value(expr.args[0])], dest, "b")

    def _Piecewise(self, expr: sympy.Piecewise, dest: Reg | None) -> Reg:
        *branches, (otherwise, cond) = expr.args
        if cond is not sympy.true:
            raise UnsupportedNode(f"numpy blocks: a Piecewise without an otherwise branch: {expr}")
        if len(branches) == 1 and otherwise == 0 and not _divides(branches[0][0]):
            # a term that applies only where its condition holds: the value times a 0/1
            # mask (no division: finite wherever the condition fails, so never 0·inf)
            value, condition = branches[0]
            mask = self.value(condition)
            return self.emit("np.multiply({0}, {1}, {out})", [self.value(value), mask], dest)
        target = dest if dest is not None else Reg("v")
        self.value(otherwise, target)
        for value, condition in reversed(branches):  # the first that holds wins
            mask, chosen = self.value(condition), self.value(value)
            self.update("np.copyto({out}, {0}, where={1})", [chosen, mask], target)
        return target

    def choose(self, expr: sympy.Function, dest: Reg | None) -> Reg:
        """A branch decided once per call (its condition does not vary)."""
        condition, then, otherwise = expr.args
        test = self.scalar(condition)
        target = dest if dest is not None else Reg("v")
        if self.varies(then):
            other = self.value(otherwise)
            self.value(then, target)
            self.update("if not {0}: np.copyto({out}, {1})", [test, other], target)
        else:
            other = self.value(then)
            self.value(otherwise, target)
            self.update("if {0}: np.copyto({out}, {1})", [test, other], target)
        return target

    def _CeilLog2(self, expr: CeilLog2, dest: Reg | None) -> Reg:
        if self.integer:
            raise UnsupportedNode(f"int64 blocks: {expr}")
        return self.emit("np.copyto({out}, _rt.ceil_log2({0}))", [self.value(expr.args[0])], dest)

    def fallback(self, expr: sympy.Basic, dest: Reg | None) -> Reg:
        """A node with no ufunc of its own: numpy's whole-block expression (float only)."""
        if self.integer:
            raise UnsupportedNode(f"int64 blocks cannot compute {type(expr).__name__}: {expr}")
        moving = sorted((s for s in expr.free_symbols if self.varies(s)), key=str)
        operands = [self.value(s) for s in moving]
        names = {s: f"{{{i}}}" for i, s in enumerate(moving)}
        text = _FallbackPrinter(names, self.scalar).doprint(expr)
        return self.emit(f"np.copyto({{out}}, {text})", operands, dest)


class _FallbackPrinter(NumpyPrinter):
    """numpy's printer, with varying symbols as format fields and the rest as scalars."""

    def __init__(self, names: dict[sympy.Symbol, str], scalar: Callable[[sympy.Expr], str]):
        super().__init__(names, exact=False)
        self.fixed = scalar

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return self.names[expr] if expr in self.names else self.fixed(expr)


def _divides(expr: sympy.Expr) -> bool:
    """Whether ``expr`` has a division (which may be infinite where a branch is unused)."""
    return expr.has(Quotient, CeilDiv, FloorDiv, sympy.ceiling, sympy.floor) or any(
        p.exp.is_negative for p in expr.atoms(sympy.Pow)
    )


def allocate(code: list[Instr]) -> dict[str, int]:
    """Scratch buffers for the registers without a home, reused once a register is read
    for the last time (an operation may write over its own operand); how many of each
    kind."""
    last: dict[Reg, int] = {}
    for i, instr in enumerate(code):
        for reg in (*instr.args, instr.out):
            if isinstance(reg, Reg):
                last[reg] = i  # a register under an ``if`` is never read after it
    free: dict[str, list[str]] = {"v": [], "b": []}
    count = {"v": 0, "b": 0}
    for i, instr in enumerate(code):
        done = {r for r in instr.args if isinstance(r, Reg) and not r.home and last[r] == i}
        for reg in sorted(done - {instr.out}, key=lambda r: r.name):
            free[reg.kind].append(reg.name)
        out = instr.out
        if out is None:
            continue
        if not instr.update and not out.home:
            if free[out.kind]:
                out.name = free[out.kind].pop()
            else:
                out.name = f"_{out.kind}{count[out.kind]}"
                count[out.kind] += 1
        if not out.home and last[out] == i and out.name not in free[out.kind]:
            free[out.kind].append(out.name)  # written and never read: free again
    return count


def printed(instr: Instr, indent: str) -> str:
    """The instruction as a line of Python, under ``indent`` and its ``if`` lines."""
    names = [a if isinstance(a, str) else a.name for a in instr.args]
    out = instr.out.name if instr.out is not None else ""
    return indent + "    " * instr.depth + instr.template.format(*names, out=out)
