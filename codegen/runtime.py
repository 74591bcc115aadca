"""What compiled functions call at run time: derived inputs, checks and their errors.

Kept apart from the generated code so that code stays one line per step.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from shardcost.errors import (
    ImpossibleSplitError,
    InputError,
    InvalidValueError,
    PrecisionWarning,
)
from shardcost.formulas.hardware import FRACTIONS, ZERO_ALLOWED, number
from shardcost.symbolic.dimensions import Dimension
from shardcost.symbolic.relation import Product

from . import plain
from .plain import (  # noqa: F401  (generated code: _rt.*)
    EXACT_FLOAT,
    bad_conventions,
    ceil_log2,
    not_divisible,
    not_positive,
    valid,
)
from .program import Given, Program


def product(relation: Product, total: Any, left: Any, right: Any) -> tuple[Any, Any, Any]:
    """``relation``'s three values, scalars or arrays, from those given (None: not given)
    as ``Product.complete`` derives them: the third from any two, a missing factor taking
    its default. InvalidValueError for a given value that is not a positive integer;
    ImpossibleSplitError, in the relation's words, where the missing factor does not
    divide out."""
    dims = relation.dimensions
    given = [(d.name, v) for d, v in zip(dims, (total, left, right), strict=True) if v is not None]
    names, values = tuple(n for n, _ in given), tuple(v for _, v in given)
    if not all_valid(as_arrays(values, False, names)):
        raise not_positive(names, values)
    if not any(np.ndim(v) for v in values):  # scalars: the relation's own arithmetic
        done = relation.complete(
            {d.name: v for d, v in zip(dims, (total, left, right), strict=True)}
        )
        return done[relation.total.name], done[relation.left.name], done[relation.right.name]
    out = complete_rows(relation, total, left, right)
    if total is not None and (left is None or right is None):
        by, known = (relation.right, out[2]) if left is None else (relation.left, out[1])
        if np.any(np.asarray(total) % np.asarray(known)):
            rule = f"{relation.words} (give any two to derive the third)"
            raise not_divisible(relation.total.name, total, by.name, known, rule)
    return out


def complete_rows(relation: Product, total: Any, left: Any, right: Any) -> tuple[Any, Any, Any]:
    """``relation``'s three values row by row, derived as ``product`` does, but never
    raising: where the missing factor does not divide out, the derived one is the floor
    and the row breaks the relation (the compiled paths mask such rows)."""
    defaults = (relation.left.default, relation.right.default)
    return plain.complete_product(total, left, right, *defaults)


def mismatch(relation: Product, total: Any, left: Any, right: Any) -> ImpossibleSplitError:
    """The error for three given values that break ``relation``, in its words."""
    values = (total, left, right)
    if not any(np.ndim(v) for v in values):
        try:
            relation.complete({d.name: v for d, v in zip(relation.dimensions, values, strict=True)})
        except ImpossibleSplitError as exc:
            return exc
    bad = np.asarray(total) != np.multiply(left, right)
    total_name, left_name, right_name = (d.name for d in relation.dimensions)
    return ImpossibleSplitError(
        f"{total_name} is not {left_name} × {right_name} in {int(np.sum(bad))} of {bad.size} "
        "configurations; "
        f"{relation.words} (give any two to derive the third)"
    )


def complete(prog: Program, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` with every input of ``prog`` filled in row by row, never raising: each
    relation derives a missing dimension (``complete_rows``), a dimension defaulting to
    another takes its value, and the rest take their defaults."""
    return plain.complete(preamble(prog), given)


def preamble(prog: Program) -> tuple[plain.Node, ...]:
    """``prog``'s preamble as plain data (``codegen.plain``): what a cached sweep
    program keeps of it."""
    nodes: list[plain.Node] = []
    for node in prog.preamble:
        if isinstance(node, Given):
            source = node.default
            borrowed = isinstance(source, Dimension)
            nodes.append(
                ("given", node.dimension.name, source.name if borrowed else source, borrowed)
            )
        else:
            names = tuple(d.name for d in node.dimensions)
            nodes.append(("product", names, (node.left.default, node.right.default)))
    return tuple(nodes)


def hardware_error(names: tuple[str, ...], values: tuple[object, ...]) -> InputError | None:
    """The error ``metrics`` would give for the first hardware value it refuses (not a
    finite number; zero or less, or below zero where zero is allowed; an efficiency
    above 1), or None when every value is fine. Scalars or arrays."""
    for name, value in zip(names, values, strict=True):
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return InvalidValueError(f"{name}={value!r} is not a number; {name} takes a number")
        good = np.isfinite(array) & (array >= 0 if name in ZERO_ALLOWED else array > 0)
        if name in FRACTIONS:
            good &= array <= 1
        if not np.all(good):
            try:
                number(name, value if np.ndim(value) == 0 else float(array[~good].flat[0]))
            except InputError as exc:
                return exc
    return None


def as_arrays(
    values: tuple[object, ...], exact: bool, names: tuple[str, ...]
) -> tuple[np.ndarray, ...]:
    """Inputs as arrays: their own integer or float64 values, or, when ``exact``, object
    arrays of Python ints."""
    out = []
    for name, value in zip(names, values, strict=True):
        array = np.asarray(value)
        if array.dtype == bool or (array.dtype.kind not in "iuf" and array.dtype != object):
            raise InvalidValueError(f"{name} must be whole numbers, got {array.dtype} values")
        if exact and array.dtype != object:
            if array.dtype.kind == "f" and not np.all(array == np.floor(array)):
                raise InvalidValueError(f"{name} must be whole numbers")
            array = array.astype(np.int64).astype(object)
        elif not exact and array.dtype.kind == "i":
            array = array.astype(np.float64)
        out.append(array)
    return tuple(out)


def all_valid(values: tuple[np.ndarray, ...]) -> bool:
    """Whether every input is a positive whole number (cheaper than ``valid``)."""
    for value in values:
        if value.size == 0:
            continue
        if value.dtype == object:
            if not all(v >= 1 for v in value.flat):
                return False
        elif np.min(value) < 1 or (
            value.dtype.kind == "f" and not np.all(value == np.floor(value))
        ):
            return False
    return True


def where(condition: object, then: object, otherwise: object) -> np.ndarray:
    """``np.where`` on object arrays: exact for Python ints of any size."""
    return np.where(condition, np.asarray(then, dtype=object), np.asarray(otherwise, dtype=object))


def maximum(a: object, b: object) -> np.ndarray:
    """``np.maximum`` on object arrays: exact for Python ints of any size."""
    return np.maximum(np.asarray(a, dtype=object), np.asarray(b, dtype=object))


def minimum(a: object, b: object) -> np.ndarray:
    """``np.minimum`` on object arrays: exact for Python ints of any size."""
    return np.minimum(np.asarray(a, dtype=object), np.asarray(b, dtype=object))


def full(value: object, shape_: tuple[int, ...]) -> np.ndarray:
    """``value`` over ``shape_``: itself when it varies, else a read-only broadcast view."""
    array = np.asarray(value)
    return array if array.shape == shape_ else np.broadcast_to(array, shape_)


def warn_precision() -> None:
    """Warn that a float64 result may have been rounded (it is at or above 2^53)."""
    warnings.warn(
        "results at or above 2^53 cannot all be represented exactly in float64 arrays; "
        "call with exact=True for exact integers",
        PrecisionWarning,
        stacklevel=5,  # warn_precision < evaluate < __call__ < compiled function < caller
    )
