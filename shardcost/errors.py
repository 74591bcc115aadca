"""Errors raised by shardcost.

One tree, so callers can catch what they mean::

    ShardcostError                 anything shardcost raises on purpose
    ├── InputError (ValueError)    bad user input; the CLI prints it and exits 2
    │   ├── UnknownNameError       an unknown layout, layer, phase, key or hardware name
    │   ├── InvalidValueError      a value of the wrong type or out of range
    │   ├── ImpossibleSplitError   a split that no chip layout can realise
    │   └── ExpressionError        formula text the safe parser refuses (with its column)
    └── InternalError              a broken promise inside shardcost (a bug: please report)
        └── UnsupportedNode        an expression a code printer cannot express

    UnevenSplitWarning (UserWarning)   a dimension does not divide evenly by a parallel
                                       degree: per-chip metrics describe the busiest chip
    PrecisionWarning (UserWarning)     float64 array results at or above 2^53 may be rounded
    WideCountWarning (UserWarning)     a Parquet count column holds values past int64: it
                                       is written as exact decimal strings

Every message is one line that names the key, the value and what is allowed.

ExpressionError (``symbolic/parse.py``) and UnsupportedNode (``codegen/printers.py``)
are defined beside the code that raises them and re-exported here on first access, so
that importing this module never imports SymPy.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from shardcost.codegen.printers import UnsupportedNode
    from shardcost.symbolic.parse import ExpressionError

_T = TypeVar("_T")

__all__ = [
    "ExpressionError",
    "ImpossibleSplitError",
    "InputError",
    "InternalError",
    "InvalidValueError",
    "PrecisionWarning",
    "ShardcostError",
    "UnevenSplitWarning",
    "UnknownNameError",
    "UnsupportedNode",
    "WideCountWarning",
    "lookup",
]


class ShardcostError(Exception):
    """Base of every error shardcost raises on purpose."""


class InputError(ShardcostError, ValueError):
    """Bad user input: the message says which key, which value and what is allowed."""


class UnknownNameError(InputError):
    """A name (layout, layer, phase, key, hardware, spec case) that shardcost does not know."""


class InvalidValueError(InputError):
    """A value of the wrong type or outside the allowed range."""


class ImpossibleSplitError(InputError):
    """Parameters that no chip layout can realise (e.g. heads not divisible by TP)."""


class InternalError(ShardcostError):
    """A promise inside shardcost was broken (for example, a count that is not an integer)."""


class PrecisionWarning(UserWarning):
    """float64 array results at or above 2^53 may have been rounded: use exact mode."""


class WideCountWarning(UserWarning):
    """A Parquet count column holds values past int64: written as decimal strings, exact."""


class UnevenSplitWarning(UserWarning):
    """A split is uneven: per-chip metrics describe the busiest chip (ceiling)."""


# The tree's classes defined elsewhere: name -> the module that defines it.
_ELSEWHERE = {
    "ExpressionError": "shardcost.symbolic.parse",
    "UnsupportedNode": "shardcost.codegen.printers",
}


def __getattr__(name: str) -> type[ShardcostError]:
    if name in _ELSEWHERE:
        cls: type[ShardcostError] = getattr(importlib.import_module(_ELSEWHERE[name]), name)
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def lookup(table: Mapping[str, _T], name: str, kind: str) -> _T:
    """``table[name]``, or an UnknownNameError that names the choices."""
    try:
        return table[name]
    except KeyError:
        allowed = ", ".join(table)
        raise UnknownNameError(f"{kind} {name!r} is unknown; choices: {allowed}") from None
