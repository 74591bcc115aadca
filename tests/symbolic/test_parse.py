"""The safe formula parser: what it accepts, what it refuses, and that it never executes."""

from __future__ import annotations

import builtins
import re
from pathlib import Path
from unittest import mock

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from shardcost.formulas.user import NAMES
from shardcost.symbolic import parse
from shardcost.symbolic.dimensions import B, S, cp, d, dh, h
from shardcost.symbolic.parse import ExpressionError, parse_formula


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "(8*batch_size*seq_len*hidden_size**2 + 4*batch_size*num_heads*seq_len**2*head_dim)"
            " / context_parallel",
            (8 * B * S * d**2 + 4 * B * h * S**2 * dh) / cp,
        ),
        ("8*B*S*d**2/cp", 8 * B * S * d**2 / cp),  # short symbols too
        ("2**3**2", sympy.Integer(512)),  # right-associative: 2**(3**2)
        ("-2**2", sympy.Integer(-4)),  # unary minus binds looser than **
        ("0.5*S", S / 2),  # decimals are exact rationals
        (
            "ceil(S/cp) + floor(S/cp) + max(S, cp, 2) + min(S, cp)",
            sympy.ceiling(S / cp) + sympy.floor(S / cp) + sympy.Max(S, cp, 2) + sympy.Min(S, cp),
        ),
        (" ( S ) ", S),
    ],
)
def test_accepts_arithmetic_over_the_notation(text: str, expected: sympy.Expr) -> None:
    assert parse_formula(text, NAMES) == expected


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("__import__('os').system('ls')", 12, 'unexpected character "\'"'),  # 10 + "(" + 1
        ("S.__class__", 2, "unexpected character '.'"),
        ("S[0]", 2, "unexpected character '['"),
        ("lambda: 1", 7, "unexpected character ':'"),
        ("open(S)", 1, "'open' is not a function here"),
        ("eval(S)", 1, "'eval' is not a function here"),
        ("sq_len * 2", 1, "unknown name 'sq_len' (did you mean seq_len?)"),
        ("9**9**9**9", 5, "exponent must be a whole number from -16 to 16"),
        ("S**S", 2, "exponent must be a whole number"),
        ("(S**16)**16", 8, "power above 64"),
        ("9999999**16", 8, "constant too large"),  # 7 digits * 16 = 112 > 100
        ("1" * 31, 1, "number longer than 30 digits"),
        ("(" * 80 + "S" + ")" * 80, 65, "nested more than 64 deep"),
        ("-" * 100 + "S", 64, "nested more than 64 deep"),  # the 64th minus, after expr()
        ("S/0", 2, "division by zero"),
        ("S/(cp-cp)", 2, "division by zero"),
        ("", 1, "empty formula"),
        ("S +", 4, "found the end of the text"),
        ("S)", 2, "unexpected ')'"),
        ("ceil(S, cp)", 1, "ceil takes 1 argument"),
        ("1e3", 2, "unexpected 'e3'"),
        ("S\x00", 2, "unexpected character '\\x00'"),
    ],
)
def test_refuses_with_column(text: str, column: int, reason: str) -> None:
    with pytest.raises(ExpressionError) as exc:
        parse_formula(text, NAMES)
    assert exc.value.column == column
    assert reason in str(exc.value)


def test_refuses_long_text_at_once() -> None:
    with pytest.raises(ExpressionError, match="longer than 10000 characters"):
        parse_formula("S+" * 6000 + "S", NAMES)


def test_source_never_calls_an_evaluator() -> None:
    source = Path(parse.__file__).read_text()
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    body = code.split('"""', 2)[2]  # past the module docstring, which names them
    for forbidden in ("eval", "exec", "sympify", "parse_expr", "compile", "__import__"):
        assert not re.search(rf"(?<![\w.]){forbidden}\s*\(", body), forbidden


TOKENS = [
    "S",
    "seq_len",
    "cp",
    "d",
    "(",
    ")",
    "+",
    "-",
    "*",
    "/",
    "**",
    "ceil",
    "max",
    "min",
    "floor",
    ",",
    "0",
    "1",
    "2",
    "16",
    "9",
    "1.5",
    ".",
    "__import__",
    "os",
    "'",
    '"',
    "[",
    "]",
    "lambda",
    ":",
    "\x00",
    " ",
    "\n",
    "open",
    "__class__",
    "e",
    "é",
    "{",
    "}",
    ";",
]


def _no_execution() -> mock._patch:  # type: ignore[name-defined]
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the parser executed text")

    return mock.patch.multiple(builtins, eval=refuse, exec=refuse, compile=refuse)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)))
def test_fuzz_only_our_error_never_execution(text: str) -> None:
    with _no_execution():
        try:
            value = parse_formula(text, NAMES)
        except ExpressionError as exc:
            assert exc.column >= 1
        else:
            assert isinstance(value, sympy.Expr)
            assert value.free_symbols <= set(NAMES.values())
