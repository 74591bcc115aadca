"""Expressions as one line of plain text for terminals: 4·B·S²·dh·h·(cp − 1)."""

from __future__ import annotations

import re

import sympy

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def one_line(expr: sympy.Expr) -> str:
    """``expr`` as compact Unicode text: · for products, superscript powers, − for minus."""
    text = sympy.sstr(expr)
    text = re.sub(r"\*\*(-?\d+)", lambda m: m.group(1).translate(_SUPERSCRIPT), text)
    text = text.replace("**", "^").replace("*", "·").replace(" - ", " − ")
    return text.replace("ceiling(", "ceil(").replace("Max(", "max(").replace("Min(", "min(")
