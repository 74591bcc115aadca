"""Run-time helpers of generated code that need no SymPy: what a cached sweep program
calls (``shardcost.numeric_sweep``), the errors a compiled function raises (which a
cached plan's functions raise too, ``shardcost.numeric_plan``), and what
``codegen.runtime`` re-exports for the engine, so that both run the same lines.

The preamble of a program (``Program.preamble``) as plain data: each node either
``("given", name, default, borrowed)`` (``borrowed``: the default is another input's
name) or ``("product", (total, left, right), (left_default, right_default))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shardcost.errors import ImpossibleSplitError, InputError, InvalidValueError

EXACT_FLOAT = 2**53  # float64 holds every integer below this, and not all above

Node = tuple[Any, ...]


def complete_product(
    total: Any, left: Any, right: Any, left_default: Any, right_default: Any
) -> tuple[Any, Any, Any]:
    """A relation ``total = left × right`` row by row, the third from any two (a missing
    factor taking its default), never raising: where the missing factor does not divide
    out, the derived one is the floor and the row breaks the relation (the compiled
    paths mask such rows)."""
    if total is None:
        left = left_default if left is None else left
        right = right_default if right is None else right
        return np.multiply(left, right), left, right
    if left is not None and right is not None:
        return total, left, right
    if left is None and right is None:
        right = right_default
    known = right if left is None else left
    derived = np.floor_divide(total, np.maximum(known, 1))  # a size below 1 is refused anyway
    return (total, derived, right) if left is None else (total, left, derived)


def complete(preamble: Sequence[Node], given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` with every input filled in row by row, never raising: each relation
    derives a missing dimension (``complete_product``), a dimension defaulting to another
    takes its value, and the rest take their defaults."""
    values = dict(given)
    for node in preamble:
        if node[0] == "given":
            _, name, default, borrowed = node
            if values.get(name) is None:
                values[name] = values[default] if borrowed else default
            continue
        _, names, defaults = node
        derived = complete_product(*(values.get(n) for n in names), *defaults)
        values.update(zip(names, derived, strict=True))
    return values


def valid(values: tuple[np.ndarray, ...]) -> np.ndarray:
    """Where every input is a positive whole number."""
    mask = np.ones(np.broadcast_shapes(*(np.shape(v) for v in values)), dtype=bool)
    for value in values:
        mask &= (value >= 1) & (value == np.floor(value)) if value.dtype != object else value >= 1
    return mask


def ceil_log2(n: Any) -> Any:
    """⌈log2 n⌉ of whole n ≥ 1 (``symbolic.functions.CeilLog2``): Python ints in integers,
    arrays by their binary exponent (``frexp``: exact, no logarithm rounds)."""
    if isinstance(n, int):
        return (n - 1).bit_length()
    array = np.asarray(n)
    if array.dtype == object:  # exact mode: Python ints of any size
        return np.vectorize(lambda x: (int(x) - 1).bit_length(), otypes=[object])(array)
    mantissa, exponent = np.frexp(array.astype(np.float64))
    return np.where(mantissa == 0.5, exponent - 1, exponent)  # n = 0.5·2^e: a power of 2


# ------------------------------------------------------------ the errors compiled functions raise


def not_divisible(
    total_name: str, total: object, parts_name: str, parts: object, why: str, either: bool = False
) -> ImpossibleSplitError:
    """The error for a split that cannot be made."""
    if either:
        if np.ndim(total) or np.ndim(parts):
            t, p = np.asarray(total), np.asarray(parts)
            bad = (t % p != 0) & (p % t != 0)
            return ImpossibleSplitError(
                f"{total_name} and {parts_name} do not divide one another in "
                f"{int(np.sum(bad))} of {bad.size} configurations: {why}"
            )
        return ImpossibleSplitError(
            f"{total_name}={total} and {parts_name}={parts} do not divide one another: {why}"
        )
    if np.ndim(total) or np.ndim(parts):
        bad = np.asarray(total) % np.asarray(parts) != 0
        return ImpossibleSplitError(
            f"{total_name} is not divisible by {parts_name} in {int(np.sum(bad))} of "
            f"{bad.size} configurations: {why}"
        )
    return ImpossibleSplitError(
        f"{total_name}={total} is not divisible by {parts_name}={parts}: {why}"
    )


def not_positive(names: tuple[str, ...], values: tuple[object, ...]) -> InvalidValueError:
    """The error naming the first input that is not a positive integer."""
    for name, value in zip(names, values, strict=True):
        bad = np.asarray(value)
        if bad.dtype == bool or not np.all(bad >= 1) or not np.all(bad == np.floor(bad)):
            return InvalidValueError(
                f"{name}={value!r} is not allowed; {name} takes a positive integer"
            )
    return InvalidValueError("an input is not a positive integer")


def bad_conventions(names: tuple[str, ...], values: tuple[object, ...], allowed: str) -> InputError:
    """The error for convention values no compiled variant has."""
    given = ", ".join(f"{n}={v!r}" for n, v in zip(names, values, strict=True))
    return InvalidValueError(f"conventions {given} are not allowed; {allowed}")
