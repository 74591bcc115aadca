"""A safe parser for user formula text: the notation's names and arithmetic, nothing else.

    expr  := term (("+" | "-") term)*
    term  := unary (("*" | "/") unary)*
    unary := ("+" | "-") unary | power
    power := atom ("**" unary)?              right-associative
    atom  := NUMBER | NAME | FUNC "(" expr ("," expr)* ")" | "(" expr ")"

NAME is a dimension's CLI name or short symbol (``seq_len`` or ``S``); FUNC is one of
ceil, floor, max, min. The text is tokenised and built into SymPy objects directly:
it never reaches ``eval``, ``sympify`` or ``parse_expr`` (which evaluate Python).
Sizes are bounded so hostile input fails at once: the text's length, its nesting,
literal digits, exponents (whole numbers from -16 to 16) and constant magnitudes.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sympy

from shardcost.errors import InputError

MAX_LENGTH = 10_000
MAX_DEPTH = 64
MAX_DIGITS = 30
MAX_EXPONENT = 16
MAX_CONSTANT_DIGITS = 100
MAX_POWER = 64

FUNCTIONS: dict[str, tuple[Callable[..., sympy.Expr], int | None]] = {
    "ceil": (sympy.ceiling, 1),
    "floor": (sympy.floor, 1),
    "max": (sympy.Max, None),
    "min": (sympy.Min, None),
}

_TOKEN = re.compile(
    r"(?P<space>[ \t\r\n]+)"
    r"|(?P<number>[0-9]+(?:\.[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|[-+*/(),])"
)


class ExpressionError(InputError):
    """Formula text that is not allowed; ``column`` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.reason = message
        self.column = column


@dataclass(frozen=True)
class _Token:
    kind: str  # "number" | "name" | "op" | "end"
    text: str
    column: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ExpressionError(
                f"unexpected character {text[pos]!r}; allowed: numbers, names, "
                "+ - * / ** ( ) , and ceil floor max min",
                pos + 1,
            )
        kind = match.lastgroup or ""
        if kind != "space":
            out.append(_Token(kind, match.group(), pos + 1))
        pos = match.end()
    out.append(_Token("end", "", len(text) + 1))
    return out


class _Parser:
    def __init__(self, text: str, names: Mapping[str, sympy.Symbol]) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.names = names
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.i]

    def take(self, text: str | None = None) -> _Token:
        token = self.token
        if text is not None and token.text != text:
            found = "the end" if token.kind == "end" else repr(token.text)
            raise ExpressionError(f"expected {text!r}, found {found}", token.column)
        self.i += 1
        return token

    def nested(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"nested more than {MAX_DEPTH} deep", column)

    def expr(self) -> sympy.Expr:
        self.nested(self.token.column)
        value = self.term()
        while self.token.text in ("+", "-"):
            op = self.take().text
            right = self.term()
            value = value + right if op == "+" else value - right
        self.depth -= 1
        return value

    def term(self) -> sympy.Expr:
        value = self.unary()
        while self.token.text in ("*", "/"):
            op = self.take()
            right = self.unary()
            if op.text == "/" and right == 0:
                raise ExpressionError("division by zero", op.column)
            value = value * right if op.text == "*" else value / right
        return value

    def unary(self) -> sympy.Expr:
        if self.token.text in ("+", "-"):
            op = self.take()
            self.nested(op.column)
            value = self.unary()
            self.depth -= 1
            return -value if op.text == "-" else value
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.atom()
        if self.token.text != "**":
            return base
        op = self.take()
        self.nested(op.column)
        exponent = self.unary()
        self.depth -= 1
        if not (exponent.is_Integer and abs(int(exponent)) <= MAX_EXPONENT):
            raise ExpressionError(
                f"exponent must be a whole number from -{MAX_EXPONENT} to {MAX_EXPONENT}",
                op.column,
            )
        if base == 0 and exponent < 0:
            raise ExpressionError("division by zero", op.column)
        if base.is_Number and _digits(base) * abs(int(exponent)) > MAX_CONSTANT_DIGITS:
            raise ExpressionError(
                f"constant too large (over {MAX_CONSTANT_DIGITS} digits)", op.column
            )
        value = base**exponent
        if any(abs(int(p.exp)) > MAX_POWER for p in value.atoms(sympy.Pow) if p.exp.is_Integer):
            raise ExpressionError(f"power above {MAX_POWER}", op.column)
        return value

    def atom(self) -> sympy.Expr:
        token = self.token
        if token.kind == "number":
            self.take()
            if len(token.text.replace(".", "")) > MAX_DIGITS:
                raise ExpressionError(f"number longer than {MAX_DIGITS} digits", token.column)
            whole, _, fraction = token.text.partition(".")  # digits only, checked above
            return sympy.Rational(int(whole + fraction), 10 ** len(fraction))
        if token.kind == "name":
            self.take()
            if self.token.text == "(":
                return self.call(token)
            if token.text in self.names:
                return self.names[token.text]
            raise ExpressionError(_unknown(token.text, self.names), token.column)
        if token.text == "(":
            self.take()
            value = self.expr()
            self.take(")")
            return value
        found = "the end of the text" if token.kind == "end" else repr(token.text)
        raise ExpressionError(f"expected a number, a name or '(', found {found}", token.column)

    def call(self, name: _Token) -> sympy.Expr:
        if name.text not in FUNCTIONS:
            raise ExpressionError(
                f"{name.text!r} is not a function here; functions: {', '.join(FUNCTIONS)}",
                name.column,
            )
        function, arity = FUNCTIONS[name.text]
        self.take("(")
        self.nested(name.column)
        args = [self.expr()]
        while self.token.text == ",":
            self.take()
            args.append(self.expr())
        self.take(")")
        self.depth -= 1
        if arity is not None and len(args) != arity:
            raise ExpressionError(f"{name.text} takes {arity} argument", name.column)
        return function(*args)


MAX_NODES = 20_000  # nodes of an expression given as a SymPy object
_ALLOWED = (sympy.Add, sympy.Mul, sympy.Pow, sympy.ceiling, sympy.floor, sympy.Max, sympy.Min)


def check_expression(expr: sympy.Basic, names: Mapping[str, sympy.Symbol]) -> sympy.Expr:
    """``expr`` (a SymPy object a caller built, or the parser's result) held to the
    parser's limits: the notation's symbols, arithmetic and ceil/floor/max/min only,
    constants of at most MAX_CONSTANT_DIGITS digits, whole powers up to MAX_POWER, at
    most MAX_NODES nodes and MAX_DEPTH × 4 levels; ExpressionError otherwise. Checked
    before anything else touches it: ``S**(10**6)`` is refused, not expanded."""
    symbols = frozenset(names.values())
    stack: list[tuple[sympy.Basic, int]] = [(expr, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES or depth > MAX_DEPTH * 4:
            raise ExpressionError(
                f"expression too large (over {MAX_NODES:,} terms or {MAX_DEPTH * 4} levels)", 1
            )
        if node.is_Symbol:
            if node not in symbols:
                raise ExpressionError(_unknown(str(node), names), 1)
            continue
        if node.is_Number:
            if not node.is_Rational:
                raise ExpressionError(f"{type(node).__name__} {node}: only exact numbers", 1)
            if _bits(node) > MAX_CONSTANT_DIGITS * 3.33:
                raise ExpressionError(f"constant too large (over {MAX_CONSTANT_DIGITS} digits)", 1)
            continue
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(
                f"{type(node).__name__} is not allowed; formulas take + - * / **, "
                "ceil, floor, max and min",
                1,
            )
        if isinstance(node, sympy.Pow) and not (
            node.exp.is_Integer and abs(int(node.exp)) <= MAX_POWER
        ):
            raise ExpressionError(f"a power must be a whole number up to {MAX_POWER}", 1)
        stack.extend((arg, depth + 1) for arg in node.args)
    return expr  # type: ignore[return-value]


def _bits(number: sympy.Rational) -> int:
    """Bits of the larger of a rational's numerator and denominator (no decimal
    conversion: Python refuses to print an int of 4,300 digits)."""
    return max(abs(int(number.p)).bit_length(), abs(int(number.q)).bit_length())


def _digits(number: sympy.Expr) -> int:
    p, q = sympy.fraction(number)
    return max(len(str(abs(int(p)))), len(str(abs(int(q)))))


def _unknown(name: str, names: Mapping[str, sympy.Symbol]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown name {name!r}{hint}; names are the notation's (e.g. seq_len or S)"


def parse_formula(text: str, names: Mapping[str, sympy.Symbol]) -> sympy.Expr:
    """``text`` as a SymPy expression over ``names``; ExpressionError when not allowed."""
    if not isinstance(text, str):
        raise ExpressionError(f"expected formula text, got {type(text).__name__}", 1)
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"formula longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
    parser = _Parser(text, names)
    if parser.token.kind == "end":
        raise ExpressionError("empty formula", 1)
    value = parser.expr()
    if parser.token.kind != "end":
        raise ExpressionError(f"unexpected {parser.token.text!r}", parser.token.column)
    if value.has(sympy.zoo, sympy.nan, sympy.oo):
        raise ExpressionError("the formula divides by zero", 1)
    return check_expression(value, names)
