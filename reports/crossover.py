"""A crossover as text or Markdown: the sides, their difference, each root and its checks."""

from __future__ import annotations

from fractions import Fraction

import sympy

from shardcost.formulas.crossover import (
    Crossover,
    Root,
    Side,
    latex,
    number_text,
)
from shardcost.formulas.hardware import NUMERIC_FIELDS
from shardcost.symbolic import DIMENSIONS
from shardcost.symbolic.regimes import relation_text
from shardcost.symbolic.text import one_line

from .text import Table, count, heading, inline_math, item, note_line, value

_HARDWARE = tuple(f.name for f in NUMERIC_FIELDS)
_LONG = 160  # longer expressions are left to --format json


def _expr(expr: sympy.Basic, fmt: str) -> str:
    """An expression on one line (LaTeX in Markdown), or where to find a long one."""
    text = one_line(expr)
    if len(text) > _LONG:
        return f"({len(text):,} characters: see --format json)"
    return inline_math(latex(expr)) if fmt == "markdown" else text


def _number(v: int | Fraction | None) -> str:
    if v is None:
        return "—"
    if isinstance(v, int) or v.denominator == 1:
        return count(int(v))
    return f"{float(v):.6g}"


def _side_line(side: Side, name: str, fmt: str) -> str:
    words = ", ".join((*side.labels, side.unit))
    return item(f"{name} = {_expr(side.expression, fmt)}  ({words})", fmt)


def _root_row(result: Crossover, root: Root, regimes: bool, fmt: str) -> tuple[str, ...]:
    closed = "—" if root.closed_form is None else _expr(root.closed_form, fmt)
    if root.closed_form is not None and fmt == "markdown" and closed.startswith("$`"):
        closed = inline_math(f"{result.key.latex} = {closed[2:-2]}")
    elif root.closed_form is not None:
        closed = f"{result.key.short} = {closed}"
    regime = (root.regime or "—",) if regimes else ()
    equal = "yes" if root.holds else "no"
    return (closed, number_text(root.exact), count(root.whole), *regime, equal)


def _root_lines(result: Crossover, a: str, b: str, fmt: str) -> list[str]:
    """Each root in a table, then the library's values around it and where the order flips."""
    regimes = any(r.regime for r in result.roots)
    headers = ("root", "at the values given", "first whole value")
    headers += ("regime",) * regimes + ("A = B at the root",)
    rows = tuple(_root_row(result, r, regimes, fmt) for r in result.roots)
    checks = tuple(
        (count(c.at), _number(c.a), c.order, _number(c.b)) for r in result.roots for c in r.checks
    )
    parts = [
        "",
        Table(headers, rows, "lrr" + "l" * regimes + "l").render(fmt),
        "",
        heading("checked by the library's evaluation", fmt, 2),
        "",
        Table((result.key.name, a, "", b), checks, "rrlr").render(fmt),
        "",
    ]
    parts += [item(text, fmt) for r in result.roots if (text := _flip(result, r, a, b))]
    errors = (
        f"{result.key.name}={c.at}: {c.error}" for r in result.roots for c in r.checks if c.error
    )
    return parts + [note_line(text, fmt) for text in dict.fromkeys(errors)]


def _flip(result: Crossover, root: Root, a: str, b: str) -> str:
    """Where the order flips, as the checks found it: "a < b below 4,096, a ≥ b from it on"."""
    orders = {c.at: c.order for c in root.checks}
    below, at, above = (orders.get(root.whole + i, "?") for i in (-1, 0, 1))
    if at == "=" and above != "?":
        at = {"<": "≤", ">": "≥"}[above] if above != "=" else "="
    if "?" in (below, at) or below == at:
        return ""
    where = f"{result.key.name} = {count(root.whole)}"
    return f"{a} {below} {b} below {where}, {a} {at} {b} from it on"


def crossover_text(result: Crossover, fmt: str) -> str:
    """The crossover as aligned text (``table``) or Markdown (``markdown``)."""
    a, b = result.names
    key = result.key
    hardware = f" on {result.hardware}" if result.hardware else ""
    title = (
        f"{a} against {b} — {result.a.layout.layer}, {result.phase}{hardware}: "
        f"solved for {key.name} ({key.short})"
    )
    dims = {d.name for d in DIMENSIONS}
    shown = [f"{k}={value(v)}" for k, v in result.params.items() if k in dims]
    shown += [f"{k}={value(result.params[k])}" for k in result.given if k not in dims]
    parts = [heading(title, fmt, 1), "", item(f"parameters: {'  '.join(shown)}", fmt)]
    if result.hardware is not None:
        fields = "  ".join(
            f"{k}={value(result.params[k])}" for k in _HARDWARE if k in result.params
        )
        parts.append(item(f"hardware: {result.hardware}: {fields}", fmt))
    parts += [item(f"assuming {text}", fmt) for text in result.assumptions]
    parts += [
        "",
        _side_line(result.a, a, fmt),
        _side_line(result.b, b, fmt),
        item(f"difference: {_expr(result.difference, fmt)}", fmt),
        item(f"at the values given: {_expr(result.at_values, fmt)}", fmt),
    ]
    if result.roots:
        parts += _root_lines(result, a, b, fmt)
    for interval in result.intervals:
        where = relation_text(interval.where)
        regime = f" ({interval.regime})" if interval.regime and interval.regime != where else ""
        parts += ["", item(f"equal wherever {where}{regime}", fmt)]
    parts += ["", result.summary]
    return "\n".join(parts).rstrip() + "\n"
