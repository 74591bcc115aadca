"""Each target printer keeps structure (parentheses, exact division) and refuses what it
cannot express, naming the target and the node type."""

from __future__ import annotations

from pathlib import Path

import pytest
import sympy

from shardcost import codegen
from shardcost.codegen.printers import PRINTERS, UnsupportedNode
from shardcost.codegen.program import program
from shardcost.codegen.program_printers import PROGRAM_PRINTERS, identifiers
from shardcost.formulas import all_layouts
from shardcost.formulas.registry import get_layer, layers

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


class Mystery:
    """A node no program printer knows."""


@pytest.mark.parametrize("language", list(PROGRAM_PRINTERS))
def test_program_printers_refuse_unknown_nodes(language: str) -> None:
    layout = all_layouts()[0]
    printer = PROGRAM_PRINTERS[language](program(layout, layout.phases[0]))
    with pytest.raises(UnsupportedNode, match=f"the {language} program printer .*Mystery"):
        printer.print(Mystery())  # type: ignore[arg-type]


@pytest.mark.parametrize("language", list(PROGRAM_PRINTERS))
def test_reserved_names_cover_the_function_table(language: str) -> None:
    kind = PROGRAM_PRINTERS[language]
    assert set(kind.expressions.functions.values()) <= kind.reserved()
    # a step named like a helper is renamed, never shadows it
    helper = sorted(kind.expressions.functions.values())[0]
    clash = sympy.Symbol(helper)
    names = identifiers([clash], kind.reserved())
    assert names[clash] != helper


def test_no_relation_is_spelled_in_codegen() -> None:
    # A layer's shape rule lives in its file alone: codegen and its templates print the
    # relations they are given, and name none of their dimensions.
    root = Path(codegen.__file__).parent
    templates = "\n".join(p.read_text() for p in (root / "templates").rglob("*.j2"))
    sources = "\n".join(p.read_text() for p in root.glob("*.py"))
    relations = [r for name in layers() for r in get_layer(name).relations]
    assert relations
    for relation in relations:
        for dim in relation.dimensions:
            assert dim.name not in templates, dim.name
            assert f"{dim.name.upper()}" not in sources, dim.name
        left, right = relation.left.name, relation.right.name
        for text in (relation.words, relation.ascii, f"{left} * {right}", f"{left}, {right}"):
            assert text not in sources, text
