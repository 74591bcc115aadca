"""Sweeps: the cartesian product of parameter lists, evaluated in vectorised chunks.

Values are lists (``seq_len=1024,2048``), inclusive ranges (``seq_len=1024:8192:1024``)
or geometric ranges (``batch_size=1:64:*2``). Invalid combinations (heads not divisible
by TP, say) are dropped and counted by reason, never fatal. Counts are written exactly:
float64 results at or above 2^53 are recomputed with Python ints.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from shardcost.errors import InputError, InternalError
from shardcost.formulas import TIMINGS, Layout, Phase
from shardcost.formulas.conventions import BY_NAME as CONVENTIONS_BY_NAME
from shardcost.formulas.conventions import parse_bool
from shardcost.formulas.hardware import FIELDS as HARDWARE_FIELDS
from shardcost.formulas.hardware import SUPPORTS_OVERLAP, hardware, kernel_class
from shardcost.formulas.hardware import number as parse_number
from shardcost.formulas.inputs import check_keys, parse_count
from shardcost.symbolic import METRICS, Product
from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS_BY_NAME

from . import runtime
from .compiled import ArrayPaths, broken, compile_layout, parse_phase
from .program import Program
from .python import OVERLAP, Fixed, choices, fixed_conventions

MAX_ROWS = 50_000_000
CHUNK = 1_000_000
_HARDWARE = {f.symbol: f.name for f in HARDWARE_FIELDS if f.symbol is not None}
_RANGE = re.compile(r"([^:,]+):([^:,]+)(?::(\*?)([^:,]+))?")


def parse_values(key: str, text: str) -> list[Any]:
    """The values of one KEY=... argument: a list, a range, or a geometric range (*STEP)."""
    check_keys({key: text})
    if key in CONVENTIONS_BY_NAME:
        return list(dict.fromkeys(CONVENTIONS_BY_NAME[key].parse(v) for v in text.split(",")))
    if key == SUPPORTS_OVERLAP.name:
        return list(dict.fromkeys(parse_bool(key, v) for v in text.split(",")))

    def number(raw: str) -> Any:
        if key in DIMENSIONS_BY_NAME:
            return parse_count(key, raw)
        return float(parse_number(key, raw))

    match = _RANGE.fullmatch(text.strip())
    if match is None:
        return list(dict.fromkeys(number(v) for v in text.split(",")))
    start, stop = number(match.group(1)), number(match.group(2))
    geometric = bool(match.group(3))
    step = number(match.group(4)) if match.group(4) else 1
    if stop < start:
        raise InputError(f"{key}={text}: the range ends ({stop}) before it starts ({start})")
    if geometric and step <= 1:
        raise InputError(f"{key}={text}: a geometric step must be above 1")
    if geometric and start <= 0:
        raise InputError(f"{key}={text}: a geometric range must start above 0")
    if step <= 0:
        raise InputError(f"{key}={text}: a step must be above 0")
    if not geometric and (stop - start) // step + 1 > MAX_ROWS:  # counted before built
        raise InputError(f"{key}={text}: more than {MAX_ROWS:,} values")
    values = []
    value = start
    while value <= stop:
        values.append(value)
        value = value * step if geometric else value + step
    return values


@dataclass
class SweepResult:
    """What a sweep did: rows written, combinations dropped (by reason), seconds."""

    rows: int = 0
    total: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def sweep(
    layout: Layout,
    phase: Phase | str,
    values: Mapping[str, list[Any]],
    out: TextIO,
    *,
    hardware_name: str | None = None,
    fmt: str = "csv",
    progress: bool | None = None,
    chunk: int = CHUNK,
    stream: TextIO | None = None,
) -> SweepResult:
    """Evaluate every combination of ``values`` and write a row for each valid one."""
    if fmt not in ("csv", "jsonl"):
        raise InputError(f"--format {fmt!r} is unknown; formats: csv, jsonl")
    stream = stream or sys.stderr
    timed = hardware_name is not None or any(k in _HARDWARE.values() for k in values)
    static = _static(layout, parse_phase(phase), values, timed)
    values = {k: v for k, v in values.items() if k not in dict(static)}
    paths: ArrayPaths = compile_layout(layout, phase, timed, static).arrays
    inputs = [*paths.names, *(_HARDWARE[s] for s in paths.params[paths.counts :])]
    switches = _switches(paths, values, hardware_name, timed)
    stray = [k for k in values if k not in inputs and k not in switches]
    if stray:
        raise InputError(
            f"{stray[0]} is not a parameter of {layout.layer} layout {layout.name!r} in "
            f"{paths.phase}; parameters: {', '.join([*inputs, *switches])}"
        )
    fixed = _fixed(inputs, values, hardware_name, layout.layer)
    swept = [n for n in inputs if len(values.get(n, ())) > 1]
    sizes = [len(values[n]) for n in swept]
    per_combo = math.prod(sizes)  # Python ints: the count never wraps
    total = per_combo * math.prod(len(v) for v in switches.values())
    if total > MAX_ROWS:
        raise InputError(f"{total:,} combinations: a sweep is limited to {MAX_ROWS:,}")
    combos = list(itertools.product(*switches.values()))
    result = SweepResult(total=total)
    shown = [*inputs, *switches]
    columns = [*shown, *METRICS, *(TIMINGS if timed else ())]
    write = _writer(out, fmt, columns)
    started = time.perf_counter()

    def due() -> bool:  # forced on, or a terminal and a sweep running for over a second
        if progress is not None:
            return progress
        return stream.isatty() and time.perf_counter() - started > 1.0

    done = 0
    for combo in combos:
        for lo in range(0, per_combo, chunk):
            rows = np.arange(lo, min(lo + chunk, per_combo))
            index = np.unravel_index(rows, sizes) if swept else ()
            given = dict(fixed)
            for name, picks in zip(swept, index, strict=True):
                given[name] = np.asarray(values[name], dtype=_dtype(name))[picks]
            args = runtime.complete(paths.head, given)
            outputs, ok = _evaluate(paths, combo, tuple(args[n] for n in inputs), rows.shape)
            _count_drops(paths, combo, args, inputs, ok, result.dropped)
            keep = np.nonzero(ok)[0]
            data = [_column(args[n], keep) for n in inputs]
            data += [[c] * keep.size for c in combo]
            data += [_column(outputs[m], keep, exact=True) for m in METRICS]
            data += [_column(outputs[t], keep) for t in TIMINGS if timed]
            write(data)
            result.rows += int(keep.size)
            done += int(rows.size)
            if due():
                _progress(done, result.total, started, stream)
    if due():
        stream.write("\n")
    result.seconds = time.perf_counter() - started
    return result


def _static(layout: Layout, phase: Phase, values: Mapping[str, list[Any]], timed: bool) -> Fixed:
    """The static conventions a sweep is given, one value each (they fix the compiled
    function; sweep each value in a sweep of its own); the timing ones when ``timed``."""
    given = {}
    for name, options in values.items():
        convention = CONVENTIONS_BY_NAME.get(name)
        if convention is None or not convention.static:
            continue
        if len(options) != 1:
            raise InputError(
                f"{name} takes one value per sweep (it fixes the compiled function); "
                f"run one sweep for each of {', '.join(map(str, options))}"
            )
        given[name] = options[0]
    return fixed_conventions(layout, phase, given, timed)


def _dtype(name: str) -> Any:
    return np.int64 if name in DIMENSIONS_BY_NAME else np.float64


def _switches(
    paths: ArrayPaths, values: Mapping[str, list[Any]], hardware_name: str | None, timed: bool
) -> dict[str, list[Any]]:
    """Each convention's values (and supports_overlap's when timed): swept or default."""
    out = {}
    for name, options in choices(paths.layout, paths.phase, timed).items():
        if name in values:
            out[name] = list(values[name])
        elif name == OVERLAP and hardware_name is not None:
            out[name] = [hardware(hardware_name).supports_overlap]
        else:
            out[name] = [options[0]]
    return out


def _fixed(
    inputs: list[str], values: Mapping[str, list[Any]], hardware_name: str | None, layer: str
) -> dict[str, Any]:
    """Inputs given once, hardware from the catalog (as ``layer``'s kernel class sees
    it), None where a default applies."""
    chip = hardware(hardware_name).for_class(kernel_class(layer)) if hardware_name else None
    catalog = chip.fields() if chip is not None else {}
    fixed: dict[str, Any] = {}
    for name in inputs:
        if name in values and len(values[name]) == 1:
            fixed[name] = values[name][0]
        elif name in values:
            continue
        elif name in catalog:
            fixed[name] = float(catalog[name])
        elif name in _HARDWARE.values():
            raise InputError(f"timing needs {name}: give --hardware NAME or {name}=VALUE")
        else:
            fixed[name] = None
    return fixed


def _evaluate(
    paths: ArrayPaths, key: tuple[Any, ...], values: tuple[Any, ...], shape: tuple[int, ...]
) -> tuple[dict[str, Any], np.ndarray]:
    """Outputs over ``shape`` (one dimension): float64, with every valid row whose counts
    may be inexact in float64 (a value reached 2^53) recomputed with Python ints."""
    outputs, ok, inexact = paths.evaluate(key, values, exact=False, strict=False)
    ok = np.broadcast_to(ok, shape)
    big = np.broadcast_to(inexact, shape) & ok
    if big.any():
        rows = np.nonzero(big)
        pick = tuple(np.broadcast_to(v, shape)[rows] if np.ndim(v) else v for v in values)
        exact, _, _ = paths.evaluate(key, pick, exact=True, strict=False)
        for name in METRICS:
            column = np.array(np.broadcast_to(outputs[name], shape), dtype=object)
            column[rows] = exact[name]
            outputs[name] = column
    return outputs, ok


def _count_drops(
    paths: ArrayPaths,
    key: tuple[Any, ...],
    args: dict[str, Any],
    inputs: list[str],
    ok: np.ndarray,
    dropped: dict[str, int],
) -> None:
    """Add each dropped row to the first reason that explains it: a size below 1, a
    relation of the layer that does not hold, a requirement that fails."""
    bad = ~ok
    if not bad.any():
        return
    prog, _ = paths.function(key, False)
    arrays = {p: np.asarray(args[n]) for p, n in zip(paths.params, inputs, strict=True)}
    small = np.logical_or.reduce(
        [np.broadcast_to(np.asarray(args[n]) < 1, bad.shape) for n in paths.names]
    )
    left = bad.copy()
    for reason, fails in (("a size below 1", small), *_failures(prog, arrays)):
        hit = left & np.broadcast_to(fails, bad.shape)
        if hit.any():
            dropped[reason] = dropped.get(reason, 0) + int(hit.sum())
            left &= ~hit


def _failures(prog: Program, arrays: dict[Any, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """Each relation and requirement of ``prog`` in words, with where it fails."""
    found = []
    for rule, _, _, fails in broken(prog, arrays):
        if isinstance(rule, Product):
            reason = f"{rule.words} does not hold"
        elif rule.either:
            reason = f"{rule.total_name} and {rule.parts_name} do not divide one another"
        else:
            reason = f"{rule.total_name} not divisible by {rule.parts_name}"
        found.append((reason, fails))
    return found


def _column(value: Any, keep: np.ndarray, *, exact: bool = False) -> list[Any]:
    """The kept rows of one column as Python values (whole numbers for counts)."""
    array = np.asarray(value)
    array = array[keep] if array.ndim else np.repeat(array, keep.size)
    if not exact:
        return array.tolist()
    if array.dtype == object:  # exact rows mixed in: every value to a Python int
        return [int(x) for x in array.tolist()]
    whole = np.rint(array)
    if not np.array_equal(whole, array):  # the float path is exact below 2^53: never here
        raise InternalError("a count from the float64 path is not a whole number")
    return whole.astype(np.int64).tolist()


def _writer(out: TextIO, fmt: str, columns: list[str]) -> Callable[[list[list[Any]]], None]:
    if fmt == "csv":
        rows = csv.writer(out, lineterminator="\n")
        rows.writerow(columns)

        def write_csv(data: list[list[Any]]) -> None:
            text = [
                [("true" if v else "false") if isinstance(v, bool) else v for v in col]
                for col in data
            ]
            rows.writerows(zip(*text, strict=True))

        return write_csv

    def write_jsonl(data: list[list[Any]]) -> None:
        for row in zip(*data, strict=True):
            out.write(json.dumps(dict(zip(columns, row, strict=True))) + "\n")

    return write_jsonl


def _progress(done: int, total: int, started: float, stream: TextIO) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    stream.write(
        f"\rsweep [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} "
        f"configurations, {time.perf_counter() - started:.1f} s"
    )
    stream.flush()
