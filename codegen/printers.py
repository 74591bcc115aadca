"""Printers from SymPy expressions to code, one small subclass per target.

Counts are printed in exact integer arithmetic: a quotient is printed at the Mul that
holds its denominator (where the derivation guarantees it divides), ``ceiling(a/b)``
as a ceiling division, "no collective on one chip" as a conditional. Times are printed
in floating point. A node a target cannot express fails loudly, naming the target and
the node type: never a silently wrong line. SymPy's own printers are not used for
integer code: they divide in floating point (and SymPy 1.14's Rust printer drops the
parentheses of ``z*(x + y)`` inside a quotient).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import sympy
from sympy.logic.boolalg import BooleanFalse, BooleanTrue
from sympy.printing.printer import Printer

from shardcost.errors import InternalError

from .exactness import FloorDiv, division_form, remainder

_RELATIONS = {
    sympy.StrictGreaterThan: ">",
    sympy.GreaterThan: ">=",
    sympy.StrictLessThan: "<",
    sympy.LessThan: "<=",
    sympy.Equality: "==",
    sympy.Unequality: "!=",
}


class UnsupportedNode(InternalError):
    """An expression node a target language printer cannot express."""


class InfixPrinter(Printer):
    """Exact integer arithmetic with infix operators; Python syntax unless overridden."""

    language = "python"
    printmethod = "_shardcost_code"
    div = "//"
    true_div = "/"
    and_op, or_op, true, false = " and ", " or ", "True", "False"
    # The target's name for each function the printer calls: max and min of counts, ceil
    # and floor of times, ceil_div of counts where it is a helper. A name that is not
    # here cannot be printed; every name here is reserved in generated code.
    functions: ClassVar[Mapping[str, str]] = {
        "max": "max",
        "min": "min",
        "ceil": "ceil",
        "floor": "floor",
    }
    # A power with a symbolic exponent, in floating point only (an expected value that
    # feeds a time); None: the target cannot print one.
    float_power: ClassVar[str | None] = "{base}**{exp}"

    def __init__(
        self, names: Mapping[sympy.Symbol, str] | None = None, *, exact: bool = True
    ) -> None:
        super().__init__()
        self.names = dict(names or {})
        self.exact = exact

    # -- leaves
    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return self.names.get(expr, expr.name)

    def _print_Integer(self, expr: sympy.Integer) -> str:
        return self.literal(int(expr))

    def _print_Rational(self, expr: sympy.Rational) -> str:
        return self.quotient(self.literal(int(expr.p)), self.literal(int(expr.q)))

    def _print_Float(self, expr: sympy.Float) -> str:
        if self.exact:
            raise UnsupportedNode(f"{self.language}: a float {expr} in exact integer code")
        return repr(float(expr))

    def literal(self, n: int) -> str:
        """An integer constant."""
        return str(n)

    # -- arithmetic
    def _print_Add(self, expr: sympy.Add) -> str:
        terms = sorted(expr.args, key=sympy.default_sort_key)
        text = ""
        for i, term in enumerate(terms):
            coeff, _ = term.as_coeff_Mul()
            if i and coeff.is_negative:
                text += " - " + self._print(-term)
            else:
                text += (" + " if i else "") + self._print(term)
        return self.subtract_free(text)

    def subtract_free(self, text: str) -> str:
        """Hook for targets without infix + and -."""
        return text

    def _print_Mul(self, expr: sympy.Mul) -> str:
        num, den = sympy.fraction(expr)
        if den != 1:
            return self.quotient(self._factor(num), self._operand(den))
        coeff, rest = expr.as_coeff_Mul()
        if coeff == -1:
            return "-" + self._factor(rest)
        factors = [a for a in expr.as_ordered_factors()]
        return self.product([self._factor(f) for f in factors])

    def product(self, factors: list[str]) -> str:
        """Factors multiplied."""
        return " * ".join(factors)

    def quotient(self, num: str, den: str) -> str:
        """``num`` divided by ``den``: exact integer division, or true division for times."""
        return f"{num} {self.div if self.exact else self.true_div} {den}"

    def _factor(self, expr: sympy.Expr) -> str:
        text = self._print(expr)
        if isinstance(expr, (sympy.Add, sympy.floor, FloorDiv)) or (
            isinstance(expr, sympy.Mul) and sympy.fraction(expr)[1] != 1
        ):  # a floor prints as an infix quotient: x * (a // b), never (x * a) // b
            return f"({text})"
        return text

    def _operand(self, expr: sympy.Expr) -> str:
        text = self._print(expr)
        return text if expr.is_Atom else f"({text})"

    def _print_Pow(self, expr: sympy.Pow) -> str:
        base, exp = expr.args
        if exp.is_Integer and exp > 0:
            return self.power(self._operand(base), int(exp))
        if exp.is_Integer and exp < 0:
            return self.quotient(self.literal(1), self._operand(base**-exp))
        if not self.exact and self.float_power is not None:
            return self.float_power.format(base=self._operand(base), exp=self._operand(exp))
        raise UnsupportedNode(f"{self.language}: cannot print the power {expr}")

    def power(self, base: str, k: int) -> str:
        """``base`` to a small whole power."""
        return f"{base}**{k}"

    # -- integer functions
    def _print_ceiling(self, expr: sympy.ceiling) -> str:
        num, den = sympy.fraction(sympy.together(expr.args[0]))
        if not self.exact:
            return self.call("ceil", [self._print(num / den)])
        return self.ceil_div(self._print(num), self._print(den))

    def _print_floor(self, expr: sympy.floor) -> str:
        num, den = sympy.fraction(sympy.together(expr.args[0]))
        if not self.exact:
            return self.call("floor", [self._print(num / den)])
        return self.quotient(self._factor(num), self._operand(den))

    def ceil_div(self, num: str, den: str) -> str:
        """The ceiling of ``num / den`` for positive integers."""
        return f"-(-({num}) // ({den}))"

    def _print_CeilLog2(self, expr: sympy.Function) -> str:
        # only the in-process targets have one (timed functions are never exported)
        return self.call("ceil_log2", [self._print(expr.args[0])])

    # -- whole-number division form (codegen.exactness): one division of whole numbers
    def _print_Quotient(self, expr: sympy.Function) -> str:
        num, den = expr.args
        return self.quotient(self._factor(num), self._operand(den))

    def _print_CeilDiv(self, expr: sympy.Function) -> str:
        num, den = expr.args
        if not self.exact:
            return self.call("ceil", [self.quotient(self._factor(num), self._operand(den))])
        return self.ceil_div(self._print(num), self._print(den))

    def _print_FloorDiv(self, expr: sympy.Function) -> str:
        num, den = expr.args
        text = self.quotient(self._factor(num), self._operand(den))
        return text if self.exact else self.call("floor", [text])

    def _print_Mod(self, expr: sympy.Mod) -> str:
        # an uneven split's ranks with one more (Cost.totals): num − den·⌊num/den⌋
        num, den = (division_form(a) for a in expr.args)
        return f"({self._print(remainder(num, den))})"

    def _print_Rem(self, expr: sympy.Function) -> str:
        return f"({self._print(remainder(*expr.args))})"

    def _print_Max(self, expr: sympy.Max) -> str:
        return self.call(
            "max", [self._print(a) for a in sorted(expr.args, key=sympy.default_sort_key)]
        )

    def _print_Min(self, expr: sympy.Min) -> str:
        return self.call(
            "min", [self._print(a) for a in sorted(expr.args, key=sympy.default_sort_key)]
        )

    def function(self, name: str) -> str:
        """The target's name of function ``name``; UnsupportedNode when it has none."""
        try:
            return self.functions[name]
        except KeyError:
            raise UnsupportedNode(f"{self.language}: no function {name!r} to print") from None

    def call(self, function: str, args: list[str]) -> str:
        """A call of a library or helper function."""
        return f"{self.function(function)}({', '.join(args)})"

    # -- conditions
    def _print_Piecewise(self, expr: sympy.Piecewise) -> str:
        *branches, (last, cond) = expr.args
        if cond is not sympy.true:
            raise UnsupportedNode(f"{self.language}: a Piecewise without an otherwise branch")
        text = self._print(last)
        for value, condition in reversed(branches):
            text = self.select(self._print(condition), self._print(value), text)
        return text

    def select(self, condition: str, then: str, otherwise: str) -> str:
        """``then`` when ``condition`` holds, else ``otherwise``."""
        return f"({then} if {condition} else {otherwise})"

    def _print_Relational(self, expr: sympy.core.relational.Relational) -> str:
        op = _RELATIONS.get(type(expr))
        if op is None:
            raise UnsupportedNode(f"{self.language}: cannot print the relation {expr}")
        return self.compare(self._operand(expr.lhs), op, self._operand(expr.rhs))

    def compare(self, lhs: str, op: str, rhs: str) -> str:
        """A comparison."""
        return f"{lhs} {op} {rhs}"

    # -- divisibility checks: ``parts`` divides ``total`` (``either``: or the reverse)
    remainder_is_not_zero = "({a}) % ({b})"
    remainder_is_zero = "({a}) % ({b}) == 0"

    def fails(self, total: sympy.Expr, parts: sympy.Expr, either: bool = False) -> str:
        """A condition true when the check fails."""
        t, p = self._print(total), self._print(parts)
        text = self.remainder_is_not_zero.format(a=t, b=p)
        if either:
            text += self.and_op + self.remainder_is_not_zero.format(a=p, b=t)
        return text

    def holds(self, total: sympy.Expr, parts: sympy.Expr, either: bool = False) -> str:
        """A condition true when the check holds."""
        t, p = self._print(total), self._print(parts)
        text = self.remainder_is_zero.format(a=t, b=p)
        if either:
            text = f"({text}{self.or_op}{self.remainder_is_zero.format(a=p, b=t)})"
        return text

    def _print_And(self, expr: sympy.And) -> str:
        return "(" + self.and_op.join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr: sympy.Or) -> str:
        return "(" + self.or_op.join(self._print(a) for a in expr.args) + ")"

    def _print_BooleanTrue(self, expr: BooleanTrue) -> str:
        return self.true

    def _print_BooleanFalse(self, expr: BooleanFalse) -> str:
        return self.false

    def emptyPrinter(self, expr: object) -> str:
        raise UnsupportedNode(
            f"the {self.language} printer cannot print {type(expr).__name__}: {expr}"
        )


class PythonPrinter(InfixPrinter):
    """Python: integers are exact, ceiling is -(-a // b); small powers multiply out
    (``x * x`` is faster than ``x**2`` on ints)."""

    def power(self, base: str, k: int) -> str:
        return " * ".join([base] * k) if k <= 4 else f"{base}**{k}"


class RuntimePythonPrinter(PythonPrinter):
    """Python inside shardcost's own process: the run-time helpers (``_rt``) too."""

    functions: ClassVar[Mapping[str, str]] = {
        **PythonPrinter.functions,
        "ceil_log2": "_rt.ceil_log2",
    }


class ScalarPrinter(PythonPrinter):
    """Python scalars inside shardcost's process: what a blocked numpy program computes
    once per call (the parts that do not vary). Whole counts as Python ints when
    ``exact``, else float64 arithmetic as the arrays have it (true division, ceilings by
    ``math``); ``numpy``: numpy's functions, for float64 scalars that may be infinite."""

    functions: ClassVar[Mapping[str, str]] = {
        "max": "max",
        "min": "min",
        "ceil": "_ceil",
        "floor": "_floor",
        "ceil_log2": "_rt.ceil_log2",
    }

    def __init__(
        self,
        names: Mapping[sympy.Symbol, str] | None = None,
        *,
        exact: bool = True,
        numpy: bool = False,
    ) -> None:
        super().__init__(names, exact=exact)
        if numpy:
            self.functions = {**self.functions, "ceil": "np.ceil", "floor": "np.floor"}

    def _print_Function(self, expr: sympy.Function) -> str:
        if expr.func.__name__ == "choose":  # a branch decided once
            condition, then, otherwise = (self._print(a) for a in expr.args)
            return f"({then} if {condition} else {otherwise})"
        raise UnsupportedNode(f"the {self.language} printer cannot print {expr.func.__name__}")


class NumpyPrinter(InfixPrinter):
    """numpy arrays: elementwise where, maximum and minimum; exact on object arrays, or
    floating point (true division, ceil) on float64 arrays."""

    language = "numpy"
    and_op, or_op = " & ", " | "
    remainder_is_not_zero = "(({a}) % ({b}) != 0)"
    remainder_is_zero = "(({a}) % ({b}) == 0)"

    def select(self, condition: str, then: str, otherwise: str) -> str:
        # exact: on object arrays (a Python int past int64 would overflow np.where)
        where = "_rt.where" if self.exact else "np.where"
        return f"{where}({condition}, {then}, {otherwise})"

    def compare(self, lhs: str, op: str, rhs: str) -> str:
        return f"({lhs} {op} {rhs})"

    functions: ClassVar[Mapping[str, str]] = {
        "max": "np.maximum",
        "min": "np.minimum",
        "ceil": "np.ceil",
        "floor": "np.floor",
        # exact: on object arrays, Python ints of any size
        "exact_max": "_rt.maximum",
        "exact_min": "_rt.minimum",
        "ceil_log2": "_rt.ceil_log2",
    }

    def call(self, function: str, args: list[str]) -> str:
        exact = self.exact and f"exact_{function}" in self.functions
        name = self.function(f"exact_{function}" if exact else function)
        text = args[0]
        for arg in args[1:]:  # np.maximum takes two arguments
            text = f"{name}({text}, {arg})"
        return text if len(args) > 1 else f"{name}({text})"

    def ceil_div(self, num: str, den: str) -> str:
        return f"-(-({num}) // ({den}))"

    def _print_Function(self, expr: sympy.Function) -> str:
        if expr.func.__name__ == "choose":  # a branch decided once for the whole array
            condition, then, otherwise = (self._print(a) for a in expr.args)
            return f"({then} if {condition} else {otherwise})"
        raise UnsupportedNode(f"the {self.language} printer cannot print {expr.func.__name__}")


class CPrinter(InfixPrinter):
    """C with ``sc_int`` (a 128-bit integer): helpers sc_ceil_div, sc_max, sc_min."""

    language = "c"
    div = "/"
    float_power = None
    and_op, or_op, true, false = " && ", " || ", "1", "0"
    remainder_is_not_zero = "({a}) % ({b}) != 0"
    functions: ClassVar[Mapping[str, str]] = {
        "max": "sc_max",
        "min": "sc_min",
        "ceil_div": "sc_ceil_div",
    }

    def power(self, base: str, k: int) -> str:
        return " * ".join([base] * k)

    def ceil_div(self, num: str, den: str) -> str:
        return f"{self.function('ceil_div')}({num}, {den})"

    def call(self, function: str, args: list[str]) -> str:
        text = args[0]
        for arg in args[1:]:  # the helpers take two arguments
            text = f"{self.function(function)}({text}, {arg})"
        return text

    def select(self, condition: str, then: str, otherwise: str) -> str:
        return f"({condition} ? {then} : {otherwise})"


class RustPrinter(CPrinter):
    """Rust with i128: integer literals take their type from the variables."""

    language = "rust"
    true, false = "true", "false"
    functions: ClassVar[Mapping[str, str]] = {
        "max": "max",  # methods of i128
        "min": "min",
        "ceil_div": "ceil_div",
    }

    def call(self, function: str, args: list[str]) -> str:
        text = args[0]
        for arg in args[1:]:
            text = f"({text}).{self.function(function)}({arg})"
        return text

    def select(self, condition: str, then: str, otherwise: str) -> str:
        return f"(if {condition} {{ {then} }} else {{ {otherwise} }})"


class JavascriptPrinter(CPrinter):
    """JavaScript with BigInt: literals carry an ``n``; integer division truncates."""

    language = "javascript"
    true, false = "true", "false"
    remainder_is_not_zero = "({a}) % ({b}) !== 0n"
    functions: ClassVar[Mapping[str, str]] = {
        "max": "maxBig",
        "min": "minBig",
        "ceil_div": "ceilDiv",
    }

    def literal(self, n: int) -> str:
        return f"{n}n"

    def call(self, function: str, args: list[str]) -> str:
        return f"{self.function(function)}({', '.join(args)})"


class GoPrinter(InfixPrinter):
    """Go with math/big: arithmetic as helper calls (add, sub, mul, quo, ceilDiv ...)."""

    language = "go"
    float_power = None
    and_op, or_op, true, false = " && ", " || ", "true", "false"
    remainder_is_not_zero = "rem({a}, {b}).Sign() != 0"
    functions: ClassVar[Mapping[str, str]] = {
        name: name for name in ("lit", "add", "sub", "neg", "mul", "quo", "rem", "pick")
    } | {"max": "maxOf", "min": "minOf", "ceil_div": "ceilDiv"}

    def literal(self, n: int) -> str:
        return self.call("lit", [str(n)])

    def _print_Add(self, expr: sympy.Add) -> str:
        plus, minus = [], []
        for term in sorted(expr.args, key=sympy.default_sort_key):
            coeff, _ = term.as_coeff_Mul()
            (minus if coeff.is_negative else plus).append(
                self._print(-term if coeff.is_negative else term)
            )
        text = plus[0] if len(plus) == 1 else self.call("add", plus)
        for term in minus:
            text = self.call("sub", [text, term])
        return text

    def product(self, factors: list[str]) -> str:
        return factors[0] if len(factors) == 1 else self.call("mul", factors)

    def _print_Mul(self, expr: sympy.Mul) -> str:
        num, den = sympy.fraction(expr)
        if den != 1:
            return self.quotient(self._print(num), self._print(den))
        coeff, rest = expr.as_coeff_Mul()
        if coeff == -1:
            return self.call("neg", [self._print(rest)])
        return self.product([self._print(f) for f in expr.as_ordered_factors()])

    def _factor(self, expr: sympy.Expr) -> str:
        return self._print(expr)

    def _operand(self, expr: sympy.Expr) -> str:
        return self._print(expr)

    def quotient(self, num: str, den: str) -> str:
        return self.call("quo", [num, den])

    def power(self, base: str, k: int) -> str:
        return self.call("mul", [base] * k)

    def ceil_div(self, num: str, den: str) -> str:
        return self.call("ceil_div", [num, den])

    def compare(self, lhs: str, op: str, rhs: str) -> str:
        return f"({lhs}.Cmp({rhs}) {op} 0)"

    def select(self, condition: str, then: str, otherwise: str) -> str:
        return self.call("pick", [condition, then, otherwise])


PRINTERS: dict[str, type[InfixPrinter]] = {
    "python": PythonPrinter,
    "c": CPrinter,
    "rust": RustPrinter,
    "js": JavascriptPrinter,
    "go": GoPrinter,
}
