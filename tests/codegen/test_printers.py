"""Each target printer keeps structure (parentheses, exact division) and refuses what it
cannot express, naming the target and the node type."""

from __future__ import annotations

import pytest
import sympy

from shardcost.codegen.printers import PRINTERS, UnsupportedNode

x, y, z, w = sympy.symbols("x y z w", positive=True, integer=True)

# What each printer must print for z*(x + y) / w: the sum stays in parentheses and the
# division is the target's exact integer division, applied to the whole product.
QUOTIENT = {
    "python": "z * (x + y) // w",
    "c": "z * (x + y) / w",
    "rust": "z * (x + y) / w",
    "js": "z * (x + y) / w",
    "go": "quo(mul(z, add(x, y)), w)",
}


@pytest.mark.parametrize("language", list(PRINTERS))
def test_sum_inside_a_product_keeps_its_parentheses(language: str) -> None:
    printer = PRINTERS[language]()
    assert printer.doprint(z * (x + y) / w) == QUOTIENT[language]
    product = printer.doprint(z * (x + y))
    assert "(x + y)" in product or "add(x, y)" in product


@pytest.mark.parametrize("language", list(PRINTERS))
def test_ceiling_and_gates(language: str) -> None:
    printer = PRINTERS[language]()
    ceil = printer.doprint(sympy.ceiling(x / y))
    assert {
        "python": "-(-(x) // (y))",
        "c": "sc_ceil_div(x, y)",
        "rust": "ceil_div(x, y)",
        "js": "ceilDiv(x, y)",
        "go": "ceilDiv(x, y)",
    }[language] == ceil
    gate = printer.doprint(sympy.Piecewise((x * y, y > 1), (0, True)))
    assert "y" in gate and ("if" in gate or "?" in gate or "pick" in gate or "where" in gate)


@pytest.mark.parametrize("language", list(PRINTERS))
def test_unknown_nodes_fail_loudly(language: str) -> None:
    with pytest.raises(UnsupportedNode, match=f"{PRINTERS[language].language}.*sin"):
        PRINTERS[language]().doprint(sympy.sin(x))
