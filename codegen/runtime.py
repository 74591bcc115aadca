"""What compiled functions call at run time: input shaping, checks and their errors.

Kept apart from the generated code so that code stays one line per step.
"""

from __future__ import annotations

import warnings

import numpy as np

from shardcost.errors import (
    ImpossibleSplitError,
    InputError,
    InvalidValueError,
    PrecisionWarning,
)
from shardcost.formulas.hardware import FRACTIONS, ZERO_ALLOWED, number
from shardcost.symbolic.dimensions import HEAD_DIM, NUM_HEADS

EXACT_FLOAT = 2**53  # float64 holds every integer below this, and not all above


def shape(d: object, h: object, dh: object) -> tuple[object, object, object]:
    """hidden_size, num_heads, head_dim from any two (defaults: 32 heads of 128)."""
    if d is None:
        h = NUM_HEADS.default if h is None else h
        dh = HEAD_DIM.default if dh is None else dh
        return h * dh, h, dh  # type: ignore[operator]
    if h is None and dh is None:
        dh = HEAD_DIM.default
    if h is None:
        _divisible("hidden_size", d, "head_dim", dh, "hidden_size = num_heads × head_dim")
        return d, d // dh, dh  # type: ignore[operator]
    if dh is None:
        _divisible("hidden_size", d, "num_heads", h, "hidden_size = num_heads × head_dim")
        return d, h, d // h  # type: ignore[operator]
    return d, h, dh


def _divisible(total_name: str, total: object, parts_name: str, parts: object, why: str) -> None:
    if np.any(np.asarray(total) % np.asarray(parts)):
        raise not_divisible(total_name, total, parts_name, parts, why)


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


def shape_mismatch(d: object, h: object, dh: object) -> ImpossibleSplitError:
    """The error for hidden_size != num_heads × head_dim."""
    return ImpossibleSplitError(
        f"hidden_size={d} but num_heads × head_dim = {h} × {dh}; "
        "hidden_size must equal num_heads × head_dim"
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


def bad_conventions(names: tuple[str, ...], values: tuple[object, ...], allowed: str) -> InputError:
    """The error for convention values no compiled variant has."""
    given = ", ".join(f"{n}={v!r}" for n, v in zip(names, values, strict=True))
    return InvalidValueError(f"conventions {given} are not allowed; {allowed}")


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


def valid(values: tuple[np.ndarray, ...]) -> np.ndarray:
    """Where every input is a positive whole number."""
    mask = np.ones(np.broadcast_shapes(*(np.shape(v) for v in values)), dtype=bool)
    for value in values:
        mask &= (value >= 1) & (value == np.floor(value)) if value.dtype != object else value >= 1
    return mask


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
        stacklevel=5,  # warn_precision < _float < evaluate < __call__ < compiled function
    )
