"""Sweeps: the cartesian product of parameter lists, evaluated and written in chunks.

Values are lists (``seq_len=1024,2048``), inclusive ranges (``seq_len=1024:8192:1024``)
or geometric ranges (``batch_size=1:64:*2``). A range is counted, never built: the row
limit is checked before anything is allocated, and each chunk computes its own values.
Invalid combinations (heads not divisible by TP, say) are dropped and counted by reason.
A row holds the inputs, the switches, the nine metrics, ``chips`` and each collective's
payload bytes per chip (``<name>_bytes``; 0 in a combination of switches without it),
then the timings when timed.

Each chunk holds as many rows as fit in ``chunk_bytes`` and takes three steps::

    Grid ──evaluate──▶ Block (a numpy array per column) ──format──▶ CSV | JSON lines | Parquet

Counts are exact without a cliff: int64 where they fit; float64 results at or above 2^53
recomputed with Python ints for those rows only; values past int64 kept beside their
column, row by row (CSV and JSON lines write their digits; Parquet turns that column into
decimal strings and warns, ``WideCountWarning``). CSV goes through pyarrow's writer when
pyarrow is installed, else through numpy byte assembly; both write the bytes Python's
``csv`` module would (and JSON lines, ``json.dumps``'s).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import numpy as np

from shardcost.errors import InputError, InternalError, InvalidValueError, WideCountWarning
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
from .compiled import ArrayPaths, array_paths, broken, parse_phase
from .program import Program
from .python import OVERLAP, Fixed, choices, fixed_conventions

MAX_ROWS = 50_000_000
INT64_MAX = 2**63 - 1
CHUNK_BYTES = 64 << 20  # working memory of one chunk: evaluation, columns and text
FORMATS = ("csv", "jsonl", "parquet")
PYARROW: bool | None = None  # None: use pyarrow when it imports; False: never (tests)
_HARDWARE = {f.symbol: f.name for f in HARDWARE_FIELDS if f.symbol is not None}
_RANGE = re.compile(r"([^:,]+):([^:,]+)(?::(\*?)([^:,]+))?")
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


# ---------------------------------------------------------------- values


class Range(Sequence[Any]):
    """An inclusive arithmetic range, counted and indexed without being built.

    Value ``i`` is ``start + i·step``, computed exactly: Python ints for dimensions; for
    hardware fields the float nearest the exact decimal (0.1:1:0.1 gives 0.3, not the
    0.30000000000000004 that repeated addition reaches).
    """

    def __init__(self, start: int | Fraction, step: int | Fraction, length: int) -> None:
        self.start, self.step, self.length = start, step, length
        self.whole = isinstance(start, int) and isinstance(step, int)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.length))]
        i = index + self.length if index < 0 else index
        if not 0 <= i < self.length:
            raise IndexError(f"range index {index} out of range")
        value = self.start + i * self.step
        return value if self.whole else float(value)

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(self.length))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(other) == self.length and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # like a list

    def __repr__(self) -> str:
        return f"Range(start={self.start}, step={self.step}, length={self.length})"

    def take(self, picks: np.ndarray) -> np.ndarray:
        """Values ``picks`` as an array (int64, or float64 for hardware fields)."""
        if self.whole:
            return self.start + picks.astype(np.int64) * self.step
        # start + i·step = (p + i·q) / r in integers: exact while they stay below 2^53,
        # then one correctly rounded division gives the float nearest the decimal
        start, step = Fraction(self.start), Fraction(self.step)
        r = start.denominator * step.denominator
        p = start.numerator * step.denominator
        q = step.numerator * start.denominator
        if max(abs(p) + abs(q) * self.length, r) < runtime.EXACT_FLOAT:
            return (p + picks.astype(np.int64) * q) / float(r)
        return np.array([self[int(i)] for i in picks], dtype=np.float64)  # rare: huge terms


def parse_values(key: str, text: str) -> Sequence[Any]:
    """The values of one KEY=... argument: a list, a range, or a geometric range (*STEP).

    Ranges are counted before they are built (an arithmetic one never is: a ``Range``);
    more than one value past int64 is refused, as sweeps compute counts in int64.
    """
    check_keys({key: text})
    if key in CONVENTIONS_BY_NAME:
        return list(dict.fromkeys(CONVENTIONS_BY_NAME[key].parse(v) for v in text.split(",")))
    if key == SUPPORTS_OVERLAP.name:
        return list(dict.fromkeys(parse_bool(key, v) for v in text.split(",")))
    whole = key in DIMENSIONS_BY_NAME

    def number(raw: str) -> Any:
        return parse_count(key, raw) if whole else parse_number(key, raw)

    def plain(value: Any) -> Any:
        return value if whole else float(value)

    match = _RANGE.fullmatch(text.strip())
    if match is None:
        values: Sequence[Any] = list(dict.fromkeys(plain(number(v)) for v in text.split(",")))
    else:
        values = _range(key, text, *(number(g) if g else None for g in match.group(1, 2, 4)),
                        geometric=bool(match.group(3)), whole=whole)  # fmt: skip
    top = values[-1] if isinstance(values, Range) else max(values)  # ranges ascend
    if whole and len(values) > 1 and top > INT64_MAX:
        raise InputError(
            f"{key}={text}: {top:,} is past int64 (at most {INT64_MAX:,}); a sweep computes "
            f"in int64, so give a value that large as the only value of {key}"
        )
    return values


def _range(
    key: str, text: str, start: Any, stop: Any, step: Any, *, geometric: bool, whole: bool
) -> Sequence[Any]:
    """An inclusive range of ``key``'s values, counted arithmetically first."""
    step = 1 if step is None else step
    if stop < start:
        raise InputError(f"{key}={text}: the range ends ({stop}) before it starts ({start})")
    if geometric and step <= 1:
        raise InputError(f"{key}={text}: a geometric step must be above 1")
    if geometric and start <= 0:
        raise InputError(f"{key}={text}: a geometric range must start above 0")
    if step <= 0:
        raise InputError(f"{key}={text}: a step must be above 0")
    if geometric:  # at most log(stop/start)/log(step) + 1 values: counted, then built
        if (math.log(stop) - math.log(start)) / math.log(step) >= MAX_ROWS:
            raise InputError(f"{key}={text}: more than {MAX_ROWS:,} values")
        values, value = [], start
        while value <= stop:
            values.append(value if whole else float(value))
            value *= step
        return values
    length = math.floor((stop - start) / step) + 1  # exact: ints or Fractions
    if length > MAX_ROWS:  # counted, never built
        raise InputError(f"{key}={text}: more than {MAX_ROWS:,} values")
    return Range(start, step, length)


def output_format(fmt: str | None, target: str | os.PathLike[str] | None) -> str:
    """The format to write: ``fmt`` when given, else by the output file's suffix (.parquet,
    .pq: Parquet; .jsonl, .ndjson: JSON lines; anything else: CSV)."""
    if fmt is None:
        fmt = _SUFFIXES.get(Path(target).suffix.lower(), "csv") if target else "csv"
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r} is unknown; formats: {', '.join(FORMATS)}")
    if fmt == "parquet" and target is None:
        raise InputError("Parquet is written to a file: give -o FILE.parquet")
    return fmt


def arrow() -> Any:
    """pyarrow, or None when it is missing or turned off (``PYARROW = False``)."""
    if PYARROW is False:
        return None
    try:
        import pyarrow
    except ImportError:
        return None
    return pyarrow


def need_arrow(what: str, extra: str = "parquet") -> Any:
    """pyarrow, or the InputError saying how to install it."""
    pa = arrow()
    if pa is None:
        raise InputError(f"{what} needs pyarrow: pip install 'shardcost[{extra}]'")
    return pa


# ---------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Grid:
    """What a sweep evaluates: the layout's compiled function, the inputs given once and
    those swept, and the convention switches (each combination of them a pass of its own).
    Picklable: a distributed worker rebuilds the compiled function from it."""

    layout: Layout
    phase: Phase
    timed: bool
    static: Fixed
    inputs: tuple[str, ...]
    fixed: Mapping[str, Any]
    swept: Mapping[str, Sequence[Any]]
    switches: Mapping[str, Sequence[Any]]
    combos: tuple[tuple[Any, ...], ...]
    # after the metrics: chips, then each collective's payload bytes (those of every
    # combination of switches; a combination without one moves 0 bytes in it)
    extras: tuple[str, ...] = ()

    @property
    def paths(self) -> ArrayPaths:
        """The compiled numpy paths (built once per process: ``array_paths`` caches)."""
        return array_paths(self.layout, self.phase, self.timed, self.static)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.swept.values())

    @property
    def per_combo(self) -> int:
        """Rows per combination of switches (a Python int: it never wraps)."""
        return math.prod(self.sizes)

    @property
    def total(self) -> int:
        return self.per_combo * len(self.combos)

    @property
    def columns(self) -> list[str]:
        timings = TIMINGS if self.timed else ()
        return [*self.inputs, *self.switches, *METRICS, *self.extras, *timings]

    def chunk_rows(self, chunk_bytes: int = CHUNK_BYTES) -> int:
        """Rows per chunk so that one chunk's working memory stays near ``chunk_bytes``:
        per row, the swept inputs, the evaluation's float64 outputs and temporaries, the
        int64 columns and the text of a line (numpy's assembly holds it twice over)."""
        outputs = len(METRICS) + len(self.extras) + (len(TIMINGS) if self.timed else 0)
        per_row = 8 * (2 * len(self.inputs) + 4 * outputs + 16) + 64 * len(self.columns)
        return max(256, chunk_bytes // per_row)

    def spans(self, rows: int) -> Iterator[tuple[int, int, int]]:
        """(switch combination, first row, end row) of each block of at most ``rows``."""
        for combo in range(len(self.combos)):
            for lo in range(0, self.per_combo, rows):
                yield combo, lo, min(lo + rows, self.per_combo)

    @cached_property
    def _arrays(self) -> dict[str, np.ndarray]:
        """The swept lists as arrays (ranges compute their values chunk by chunk)."""
        out = {}
        for name, values in self.swept.items():
            if isinstance(values, Range):
                continue
            try:
                out[name] = np.asarray(values, dtype=_dtype(name))
            except OverflowError:
                raise InputError(
                    f"{name}: a value is past int64 (at most {INT64_MAX:,}); a sweep computes "
                    f"in int64, so give a value that large as the only value of {name}"
                ) from None
        return out

    def evaluate(self, combo: int, lo: int, hi: int) -> Block:
        """Rows ``lo:hi`` of switch combination ``combo``: the valid ones as columns, the
        others counted by reason."""
        key = self.combos[combo]
        paths = self.paths
        rows = np.arange(lo, hi, dtype=np.int64)
        given = dict(self.fixed)
        if self.swept:
            picks = np.unravel_index(rows, self.sizes)
            for (name, values), pick in zip(self.swept.items(), picks, strict=True):
                given[name] = values.take(pick) if isinstance(values, Range) else (
                    self._arrays[name][pick])  # fmt: skip
        try:
            args = runtime.complete(paths.head, given)
        except OverflowError:  # a derived dimension past int64
            raise InputError(
                "a dimension derived from the swept ones is past int64; a sweep computes in "
                "int64: give it too, or sweep smaller values"
            ) from None
        inputs = tuple(args[n] for n in self.inputs)
        n = hi - lo
        try:
            outputs, ok, inexact = paths.evaluate(key, inputs, exact=False, strict=False)
        except InvalidValueError:  # a fixed input past int64: every row exactly, below
            if self.timed:  # times come from the float64 pass only
                raise InputError(
                    "a fixed input past int64 leaves a timed sweep without its float64 "
                    "pass; sweep without --hardware for exact counts"
                ) from None
            outputs, ok, _ = paths.evaluate(key, inputs, exact=True, strict=False)
            counted = paths.program(key).counts
            outputs = {k: np.zeros(n) if k in counted else v for k, v in outputs.items()}
            inexact = np.ones(n, dtype=bool)
        ok = np.broadcast_to(ok, (n,))
        dropped: dict[str, int] = {}
        everything = bool(ok.all())
        if not everything:
            _count_drops(paths, key, args, self.inputs, ok, dropped)
        keep = None if everything else np.flatnonzero(ok)
        count = n if keep is None else keep.size
        # valid rows whose counts may be inexact in float64: recomputed with Python ints
        big = np.flatnonzero(np.broadcast_to(inexact, (n,)) & ok)
        exact: dict[str, Any] = {}
        if big.size:
            pick = tuple(np.broadcast_to(v, (n,))[big] if np.ndim(v) else v for v in inputs)
            exact, _, _ = paths.evaluate(key, pick, exact=True, strict=False)
        at = big if keep is None else np.searchsorted(keep, big)  # their places in the block
        columns = [_input_column(args[name], n, keep) for name in self.inputs]
        columns += [Column(None, value) for value in key]
        columns += [_count_column(outputs[m], n, keep, at, exact.get(m)) for m in METRICS]
        own = paths.program(key).extras
        columns += [
            _count_column(outputs[m], n, keep, at, exact.get(m)) if m in own else Column(None, 0)
            for m in self.extras
        ]
        if self.timed:
            columns += [_input_column(outputs[t], n, keep) for t in TIMINGS]
        return Block(count, columns, dropped)


def grid(
    layout: Layout,
    phase: Phase | str,
    values: Mapping[str, Sequence[Any]],
    hardware_name: str | None = None,
) -> Grid:
    """The grid of a sweep, checked: every key a parameter, at most ``MAX_ROWS`` rows."""
    timed = hardware_name is not None or any(k in _HARDWARE.values() for k in values)
    ph = parse_phase(phase)
    static = _static(layout, ph, values, timed)
    values = {k: v for k, v in values.items() if k not in dict(static)}
    paths: ArrayPaths = array_paths(layout, ph, timed, static)
    inputs = [*paths.names, *(_HARDWARE[s] for s in paths.params[paths.counts :])]
    switches = _switches(paths, values, hardware_name, timed)
    stray = [k for k in values if k not in inputs and k not in switches]
    if stray:
        raise InputError(
            f"{stray[0]} is not a parameter of {layout.layer} layout {layout.name!r} in "
            f"{paths.phase}; parameters: {', '.join([*inputs, *switches])}"
        )
    for name, options in values.items():
        if not len(options):
            raise InputError(f"{name} is given no values")
    fixed = _fixed(inputs, values, hardware_name, layout.layer)
    swept = {n: values[n] for n in inputs if len(values.get(n, ())) > 1}
    total = math.prod(len(v) for v in (*swept.values(), *switches.values()))
    if total > MAX_ROWS:
        raise InputError(f"{total:,} combinations: a sweep is limited to {MAX_ROWS:,}")
    combos = tuple(itertools.product(*switches.values()))
    extras = tuple(dict.fromkeys(n for key in combos for n in paths.program(key).extras))
    columns = [*inputs, *switches, *METRICS, *extras]
    repeated = next((c for c in columns if columns.count(c) > 1), None)
    if repeated is not None:
        raise InputError(
            f"{layout.layer} layout {layout.name!r}: a collective's payload column would be "
            f"named {repeated}, as another column is: rename the collective"
        )
    return Grid(
        layout=layout,
        phase=ph,
        timed=timed,
        static=static,
        inputs=tuple(inputs),
        fixed=fixed,
        swept=swept,
        switches=switches,
        combos=combos,
        extras=extras,
    )


@dataclass
class Column:
    """One column of a block: ``data`` (int64, float64 or bool, a value per row), or one
    ``value`` for every row when ``data`` is None. Counts past int64 sit at rows ``wide``
    (0 in ``data``) with their Python ints in ``wide_values``."""

    data: np.ndarray | None
    value: Any = None
    wide: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    wide_values: list[int] = field(default_factory=list)


@dataclass
class Block:
    """The valid rows of one chunk, as columns, and the rows dropped, by reason."""

    rows: int
    columns: list[Column]
    dropped: dict[str, int]


@dataclass
class SweepResult:
    """What a sweep did: rows written, combinations dropped (by reason), seconds."""

    rows: int = 0
    total: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, rows: int, dropped: Mapping[str, int]) -> None:
        self.rows += rows
        for reason, n in dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def check(self) -> None:
        """InputError when no combination was valid, with why they were dropped."""
        if self.total and not self.rows:
            why = "; ".join(f"{reason}: {n:,}" for reason, n in self.dropped.items())
            raise InputError(f"no valid combinations: all {self.total:,} dropped ({why})")


def _input_column(value: Any, n: int, keep: np.ndarray | None) -> Column:
    """An input or a timing over the block's ``n`` rows, the ``keep`` ones (None: all);
    one value when it does not vary."""
    if np.ndim(value) == 0:
        return Column(None, value.item() if isinstance(value, np.ndarray | np.generic) else value)
    array = np.broadcast_to(np.asarray(value), (n,))
    array = array if keep is None else array[keep]
    if array.dtype == object:  # Python ints past int64 (derived from a big fixed input)
        return _wide_column(array)
    return Column(np.ascontiguousarray(array))


def _count_column(
    value: Any, n: int, keep: np.ndarray | None, at: np.ndarray, exact: Any
) -> Column:
    """A count as int64; the rows recomputed exactly (``at``, places among the kept rows)
    put in: into the int64 array where they fit, beside it where they do not."""
    array = np.asarray(value)
    if array.ndim == 0 and not at.size:
        return Column(None, int(_whole(array.reshape(1))[0]))
    array = np.broadcast_to(array, (n,))
    array = array if keep is None else array[keep]
    if at.size:
        array = array.copy()
        array[at] = 0  # at or past 2^53 in float64, maybe past int64: filled in below
    ints = _whole(array)  # a new array: astype copies
    if not at.size:
        return Column(ints)
    values = np.broadcast_to(np.asarray(exact, dtype=object), at.shape)
    fits = (values <= INT64_MAX) & (values >= -INT64_MAX - 1)
    ints[at[fits]] = values[fits].astype(np.int64)
    return Column(ints, None, at[~fits], values[~fits].tolist())


def _whole(array: np.ndarray) -> np.ndarray:
    """float64 counts as int64: whole numbers below 2^53, so exact."""
    ints = array.astype(np.int64)
    if not np.array_equal(ints, array):  # the float path is exact below 2^53: never here
        raise InternalError("a count from the float64 path is not a whole number")
    return ints


def _wide_column(values: np.ndarray) -> Column:
    """Python ints (an object array) as int64 with the ones past it beside."""
    fits = (values <= INT64_MAX) & (values >= -INT64_MAX - 1)
    ints = np.zeros(values.size, dtype=np.int64)
    ints[fits] = values[fits].astype(np.int64)
    wide = np.flatnonzero(~fits)
    return Column(ints, None, wide, values[wide].tolist())


def _static(
    layout: Layout, phase: Phase, values: Mapping[str, Sequence[Any]], timed: bool
) -> Fixed:
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
    paths: ArrayPaths, values: Mapping[str, Sequence[Any]], hardware_name: str | None, timed: bool
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
    inputs: list[str],
    values: Mapping[str, Sequence[Any]],
    hardware_name: str | None,
    layer: str,
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


def _count_drops(
    paths: ArrayPaths,
    key: tuple[Any, ...],
    args: dict[str, Any],
    inputs: Sequence[str],
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


# ---------------------------------------------------------------- the sweep


def sweep(
    layout: Layout,
    phase: Phase | str,
    values: Mapping[str, Sequence[Any]],
    out: IO[Any] | str | os.PathLike[str],
    *,
    hardware_name: str | None = None,
    fmt: str = "csv",
    progress: bool | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    stream: IO[str] | None = None,
) -> SweepResult:
    """Evaluate every combination of ``values`` and write a row for each valid one.

    ``out``: a text or binary stream, or a path, written through a temporary file beside
    it that replaces it only once the sweep succeeds (Parquet needs a path). ``progress``:
    a bar on ``stream`` (default stderr); None shows it on a terminal for long sweeps.
    InputError when no combination is valid, naming why they were dropped.
    """
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r} is unknown; formats: {', '.join(FORMATS)}")
    started = time.perf_counter()
    g = grid(layout, phase, values, hardware_name)
    result = SweepResult(total=g.total)
    rows = g.chunk_rows(chunk_bytes)
    bar = Progress(g.total, stream or sys.stderr, progress)
    done = 0
    with _writer(out, fmt, g.columns) as write:
        try:
            for combo, lo, hi in g.spans(rows):
                block = g.evaluate(combo, lo, hi)
                write(block)
                result.add(block.rows, block.dropped)
                done += hi - lo
                bar.update(done)
        finally:
            bar.close(done)
        result.check()
    result.seconds = time.perf_counter() - started
    return result


@contextlib.contextmanager
def replacing(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``target``, renamed over it when the block succeeds and
    removed when it fails: a sweep that stops early never truncates ``target``."""
    target = Path(target)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        temporary.chmod(_mode(target))
        temporary.replace(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _mode(target: Path) -> int:
    """The permissions a new file gets (the umask applied), or those ``target`` has."""
    with contextlib.suppress(OSError):
        return target.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def _writer(
    out: IO[Any] | str | os.PathLike[str], fmt: str, columns: list[str]
) -> Iterator[Callable[[Block], None]]:
    """A function writing each block to ``out`` in ``fmt``."""
    path = out if isinstance(out, str | os.PathLike) else None
    if fmt == "parquet":
        if path is None:
            raise InputError("Parquet is written to a file: give a path, not a stream")
        pa = need_arrow("Parquet output")
        with replacing(path) as temporary:
            sink = ParquetSink(pa, temporary, columns)
            try:
                yield sink.write
            except BaseException:
                sink.close(ok=False)
                raise
            sink.close()
        return
    if path is not None:
        with replacing(path) as temporary, temporary.open("wb") as file:
            yield TextWriter(file.write, fmt, columns, file).write
        return
    yield TextWriter(_byte_sink(out), fmt, columns).write
    out.flush()  # here, so a reader that went away (`| head`) is seen by the caller


def _byte_sink(out: IO[Any]) -> Callable[[Any], Any]:
    """Write bytes to ``out``: a binary stream, or a text stream (its buffer if it has one)."""
    if isinstance(out, io.TextIOBase):
        buffer = getattr(out, "buffer", None)
        if buffer is None:
            return lambda data: out.write(bytes(data).decode("utf-8"))
        out.flush()
        return buffer.write
    return out.write


# ---------------------------------------------------------------- CSV and JSON lines


class TextWriter:
    """Blocks as CSV (through pyarrow's writer when it imports, else numpy) or JSON lines
    (numpy), the header with the first row. ``file``: a binary file pyarrow may write to
    directly (else its text goes through ``sink``)."""

    def __init__(
        self,
        sink: Callable[[Any], Any],
        fmt: str,
        columns: list[str],
        file: IO[bytes] | None = None,
    ) -> None:
        self.sink, self.fmt, self.file = sink, fmt, file
        self.arrow = arrow() if fmt == "csv" else None
        self.header: bytes | None = _csv_line(columns) if fmt == "csv" else None
        self.keys = [json.dumps(c).encode() + b": " for c in columns]
        self.scratch: dict[str, np.ndarray] = {}  # numpy's buffers, kept from chunk to chunk
        self.constants: dict[tuple[bytes, int], Any] = {}  # pyarrow's, likewise

    def write(self, block: Block) -> None:
        if not block.rows:
            return
        if self.header is not None:
            self.sink(self.header)
            self.header = None
        if self.arrow is not None and _arrow_csv(
            self.arrow, block, self.sink, self.file, self.constants
        ):
            return
        self.sink(_text(block, self.fmt, self.keys, self.scratch))


def text(block: Block, fmt: str, keys: Sequence[bytes] = ()) -> bytes:
    """A block as CSV or JSON lines (``keys``: each column's ``"name": ``), formatted by
    numpy: each column's characters written into a (width, rows) array beside a mask of
    those that are kept, then one gather, row by row."""
    return bytes(_text(block, fmt, keys, {}))


def _text(
    block: Block, fmt: str, keys: Sequence[bytes], scratch: dict[str, np.ndarray]
) -> bytes | np.ndarray:
    pieces: list[bytes | _Cells] = []
    last = len(block.columns) - 1
    for i, column in enumerate(block.columns):
        if fmt == "jsonl":
            pieces.append((b"{" if i == 0 else b", ") + keys[i])
        pieces.append(_cells(column, fmt == "jsonl"))
        pieces.append((b"}\n" if fmt == "jsonl" else b"\n") if i == last else b"")
        if fmt == "csv" and i < last:
            pieces.append(b",")
    return _assemble(block.rows, pieces, scratch)


@dataclass
class _Cells:
    """A column's text: ``width`` characters a row, written by ``fill(chars, kept)``."""

    width: int
    fill: Callable[[np.ndarray, np.ndarray], None]


def _assemble(
    n: int, pieces: Sequence[bytes | _Cells], scratch: dict[str, np.ndarray]
) -> bytes | np.ndarray:
    merged: list[bytes | _Cells] = []
    for piece in pieces:
        if isinstance(piece, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += piece
        elif isinstance(piece, _Cells) or piece:
            merged.append(piece)
    if len(merged) == 1 and isinstance(merged[0], bytes):
        return merged[0] * n  # every column constant
    width = sum(len(p) if isinstance(p, bytes) else p.width for p in merged)
    chars = _buffer(scratch, "chars", np.uint8, (width, n))
    kept = _buffer(scratch, "kept", np.bool_, (width, n))
    at = 0
    for piece in merged:
        if isinstance(piece, bytes):
            chars[at : at + len(piece)] = np.frombuffer(piece, dtype=np.uint8)[:, None]
            kept[at : at + len(piece)] = True
            at += len(piece)
        else:
            piece.fill(chars[at : at + piece.width], kept[at : at + piece.width])
            at += piece.width
    return chars.T[kept.T]  # row by row: the lines in order


def _buffer(
    scratch: dict[str, np.ndarray], name: str, dtype: Any, shape: tuple[int, int]
) -> np.ndarray:
    """A (width, rows) array on memory kept in ``scratch`` (grown when too small): chunk
    after chunk, the same pages, not fresh ones the kernel has to fault in."""
    size = shape[0] * shape[1]
    if name not in scratch or scratch[name].size < size:
        scratch[name] = np.empty(size, dtype=dtype)
    return scratch[name][:size].reshape(shape)


def _cells(column: Column, json_: bool) -> bytes | _Cells:
    """The text of one column: bytes when it is one value, else its cells."""
    data = column.data
    if data is None:
        return _json_value(column.value) if json_ else _csv_value(column.value)
    if data.dtype == np.int64:
        return _digits(data, column.wide, column.wide_values)
    if data.dtype == np.float64:
        bits = data.view(np.int64)
        if data.size and (bits == bits[0]).all():  # bitwise: -0.0 is not 0.0
            value = float(data[0])
            return _json_value(value) if json_ else _csv_value(value)
        strings = data.astype("S32")  # Python's repr (shortest round trip), in C
        if json_ and not np.isfinite(data).all():
            strings[np.isnan(data)] = b"NaN"
            strings[data == np.inf] = b"Infinity"
            strings[data == -np.inf] = b"-Infinity"
        return _strings(strings)
    if data.dtype == bool:
        return _strings(np.where(data, b"true", b"false"))
    raise InternalError(f"a sweep column of {data.dtype} values")


_POW10 = np.array([10**k for k in range(1, 20)], dtype=np.uint64)
_TEN = np.uint64(10)


def _digits(data: np.ndarray, wide: np.ndarray, wide_values: Sequence[int]) -> bytes | _Cells:
    """int64 as decimal digits, right-aligned (those past int64 from ``wide_values``)."""
    n = data.size
    if not wide.size and n and (data == data[0]).all():
        return str(int(data[0])).encode()
    negative = data < 0
    size = np.abs(data).view(np.uint64)  # |-2^63| wraps to -2^63: 2^63 as uint64
    digits = len(str(int(size.max()))) if n else 1
    sign = int(negative.any())
    width = max(digits + sign, *(len(str(v)) for v in wide_values), 1)

    def fill(chars: np.ndarray, kept: np.ndarray) -> None:
        x = size
        for j in range(width - 1, width - 1 - digits, -1):
            quotient = x // _TEN
            np.subtract(x, quotient * _TEN, out=chars[j], casting="unsafe")
            x = quotient
        chars[width - digits :] += ord("0")
        first = width - (np.searchsorted(_POW10[: digits - 1], size, side="right") + 1)
        first -= negative
        np.greater_equal(np.arange(width)[:, None], first[None, :], out=kept)
        if sign:
            rows = np.flatnonzero(negative)
            chars[first[rows], rows] = ord("-")
        for row, value in zip(wide.tolist(), wide_values, strict=True):  # the rare rows
            cell = str(value).encode()
            chars[width - len(cell) :, row] = np.frombuffer(cell, dtype=np.uint8)
            kept[:, row] = np.arange(width) >= width - len(cell)

    return _Cells(width, fill)


def _strings(strings: np.ndarray) -> _Cells:
    """Fixed-width byte strings (NUL-padded) as cells."""
    n = strings.size
    chars = strings.view(np.uint8).reshape(n, strings.itemsize)
    used = chars != 0
    columns = np.flatnonzero(used.any(axis=0))
    width = int(columns[-1]) + 1 if columns.size else 0

    def fill(out: np.ndarray, kept: np.ndarray) -> None:
        out[...] = chars[:, :width].T
        kept[...] = used[:, :width].T

    return _Cells(width, fill)


def _csv_line(values: Sequence[Any]) -> bytes:
    """One CSV line as Python's csv module writes it."""
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(values)
    return line.getvalue().encode()


def _csv_value(value: Any) -> bytes:
    if isinstance(value, bool | np.bool_):
        return b"true" if value else b"false"
    return _csv_line([value])[:-1]


def _json_value(value: Any) -> bytes:
    return json.dumps(value.item() if isinstance(value, np.generic) else value).encode()


def _arrow_csv(
    pa: Any,
    block: Block,
    sink: Callable[[Any], Any],
    file: IO[bytes] | None,
    constants: dict[tuple[bytes, int], Any],
) -> bool:
    """Write a block as CSV with pyarrow's writer (into ``file`` when given, else through
    ``sink``); False when a value would need quotes, as numpy's assembly writes them.
    ``constants``: the columns of one value built so far, by text and length."""
    from pyarrow import csv as pa_csv

    n = block.rows
    arrays = []
    for column in block.columns:
        data = column.data
        if data is None:
            cell = _csv_value(column.value)
            if b'"' in cell:
                return False
            if (cell, n) not in constants:
                if len(constants) > 64:  # a few per switch combination; keep it small
                    constants.clear()
                constants[cell, n] = _repeat(pa, cell, n)
            arrays.append(constants[cell, n])
        elif data.dtype == np.int64:
            arrays.append(_counts(pa, column))
        elif data.dtype == np.float64:  # repr's text (numpy's), written as it is
            chars = data.astype("S32")
            chars = chars.view(np.uint8).reshape(n, chars.itemsize)
            used = chars != 0
            arrays.append(_utf8(pa, chars[used], used.sum(axis=1)))
        else:
            arrays.append(_bools(pa, data))
    table = pa.Table.from_arrays(arrays, names=[str(i) for i in range(len(arrays))])
    options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
    if file is not None:
        pa_csv.write_csv(table, file, options)
        return True
    buffer = pa.BufferOutputStream()
    pa_csv.write_csv(table, buffer, options)
    sink(memoryview(buffer.getvalue()))
    return True


# Arrow arrays straight from numpy buffers (no copy for numbers): ``pyarrow.array`` and
# ``pyarrow.scalar`` would first probe for pandas, importing it (a quarter of a second).


def _numbers(pa: Any, data: np.ndarray) -> Any:
    kind = pa.int64() if data.dtype == np.int64 else pa.float64()
    return pa.Array.from_buffers(kind, data.size, [None, pa.py_buffer(np.ascontiguousarray(data))])


def _bools(pa: Any, data: np.ndarray) -> Any:
    bits = np.packbits(data, bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), data.size, [None, pa.py_buffer(bits)])


def _utf8(pa: Any, data: np.ndarray | bytes, lengths: np.ndarray) -> Any:
    """Strings: their bytes one after another, and each one's length."""
    offsets = np.zeros(lengths.size + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), lengths.size, buffers)


def _repeat(pa: Any, cell: bytes, n: int) -> Any:
    return _utf8(pa, cell * n, np.full(n, len(cell), dtype=np.int32))


def _counts(pa: Any, column: Column) -> Any:
    """An int64 column, or its decimal strings when some of its values are past int64."""
    assert column.data is not None
    array = _numbers(pa, column.data)
    if not column.wide.size:
        return array
    from pyarrow import compute

    mask = np.zeros(column.data.size, dtype=bool)
    mask[column.wide] = True
    cells = [str(v).encode() for v in column.wide_values]  # the rare rows, one by one
    wide = _utf8(pa, b"".join(cells), np.array([len(c) for c in cells]))
    return compute.replace_with_mask(compute.cast(array, pa.string()), _bools(pa, mask), wide)


# ---------------------------------------------------------------- Parquet


class ParquetSink:
    """Blocks into one Parquet file: counts int64; a count column that meets a value past
    int64 becomes decimal strings (exact; the rows already written are rewritten once).
    ``wide`` lists those columns; each gets a WideCountWarning unless ``quiet``."""

    def __init__(
        self, pa: Any, path: str | os.PathLike[str], columns: list[str], *, quiet: bool = False
    ) -> None:
        self.pa, self.path, self.columns, self.quiet = pa, Path(path), columns, quiet
        self.at = self.path  # the file being written (another one after a rewrite)
        self.writer: Any = None
        self.schema: Any = None
        self.wide: list[str] = []

    def write(self, block: Block) -> None:
        import pyarrow.parquet as pq

        if not block.rows:
            return
        table = arrow_table(self.pa, block, self.columns)
        if self.writer is None:
            self.schema = table.schema
            self._note([f.name for f in table.schema if _widened(self.pa, f)])
            self.writer = pq.ParquetWriter(self.at, self.schema)
        else:
            grown = [
                f.name
                for f in table.schema
                if f.type == self.pa.string() and self.schema.field(f.name).type != f.type
            ]
            if grown:
                self._widen(grown)
            if table.schema != self.schema:
                table = table.cast(self.schema)
        self.writer.write_table(table)

    def _note(self, names: list[str]) -> None:
        self.wide += names
        if not self.quiet:
            warn_wide(names)

    def _widen(self, names: list[str]) -> None:
        """Rewrite what is written with ``names`` as strings, into a new file."""
        import pyarrow.parquet as pq

        self._note(names)
        self.schema = widened(self.pa, self.schema, names)
        self.writer.close()
        old = self.at
        self.at = self.path.with_name(f"{self.path.name}.{len(self.wide)}")
        self.writer = pq.ParquetWriter(self.at, self.schema)
        for batch in pq.ParquetFile(old).iter_batches(batch_size=1 << 16):
            self.writer.write_table(self.pa.Table.from_batches([batch]).cast(self.schema))
        if old != self.path:
            old.unlink()

    def close(self, ok: bool = True) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.at != self.path:
            if ok:
                self.at.replace(self.path)
            else:
                self.at.unlink(missing_ok=True)


def widened(pa: Any, schema: Any, names: Sequence[str]) -> Any:
    """``schema`` with the columns ``names`` as strings."""
    return pa.schema([pa.field(f.name, pa.string()) if f.name in names else f for f in schema])


def arrow_table(pa: Any, block: Block, names: Sequence[str]) -> Any:
    """A block as an Arrow table: counts int64 (decimal strings when a value is past
    int64), timings and hardware fields float64, switches bool or string."""
    n = block.rows
    arrays = []
    for column in block.columns:
        data, value = column.data, column.value
        if data is not None and data.dtype == np.int64:
            arrays.append(_counts(pa, column))
        elif data is not None:
            arrays.append(_numbers(pa, data) if data.dtype == np.float64 else _bools(pa, data))
        elif isinstance(value, bool):
            arrays.append(_bools(pa, np.full(n, value)))
        elif isinstance(value, int) and abs(value) <= INT64_MAX:
            arrays.append(_numbers(pa, np.full(n, value, dtype=np.int64)))
        elif isinstance(value, int | str):
            arrays.append(_repeat(pa, str(value).encode(), n))
        else:
            arrays.append(_numbers(pa, np.full(n, value, dtype=np.float64)))
    return pa.Table.from_arrays(arrays, names=list(names))


def _widened(pa: Any, f: Any) -> bool:
    """Whether a field is a count written as strings (switches are strings too)."""
    return f.type == pa.string() and f.name not in CONVENTIONS_BY_NAME


def warn_wide(names: Sequence[str]) -> None:
    """A WideCountWarning for each column in ``names``."""
    for name in names:
        warnings.warn(
            f"{name} has values past int64: its Parquet column holds them as decimal "
            "strings, exact",
            WideCountWarning,
            stacklevel=2,
        )


# ---------------------------------------------------------------- progress


class Progress:
    """A progress bar on ``stream``: percent, combinations done, rate, time left; redrawn
    at most every ``every`` seconds. ``show``: True always, False never, None on a
    terminal once the sweep has run ``after`` seconds."""

    def __init__(
        self,
        total: int,
        stream: IO[str],
        show: bool | None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        every: float = 0.1,
        after: float = 1.0,
    ) -> None:
        self.total, self.stream, self.clock = total, stream, clock
        self.every, self.after = every, after
        self.on = show if show is not None else _isatty(stream)
        self.wait = show is None
        self.started = clock()
        self.drawn: float | None = None
        self.length = 0

    def update(self, done: int) -> None:
        if not self.on:
            return
        now = self.clock()
        if self.wait and now - self.started < self.after:
            return
        if self.drawn is not None and now - self.drawn < self.every and done < self.total:
            return
        self._draw(done, now)

    def close(self, done: int) -> None:
        """The last state, and a new line, if the bar was shown (or asked for)."""
        if self.drawn is not None or (self.on and not self.wait):
            self._draw(done, self.clock())
            self.stream.write("\n")
            self.stream.flush()

    def line(self, done: int, now: float) -> str:
        elapsed = now - self.started
        share = done / self.total if self.total else 1.0
        rate = done / elapsed if elapsed > 0 else 0.0
        stats = f" {done:,}/{self.total:,} combinations, {_count(rate)}/s, {_clock(elapsed)}"
        if done < self.total and rate > 0:
            stats += f", {_clock((self.total - done) / rate)} left"
        head = f"sweep {share:4.0%} "
        width = max(10, min(40, _columns(self.stream) - len(head) - len(stats) - 3))
        filled = int(width * share)
        return f"{head}[{'#' * filled}{'.' * (width - filled)}]{stats}"

    def _draw(self, done: int, now: float) -> None:
        text = self.line(done, now)
        self.stream.write("\r" + text + " " * max(0, self.length - len(text)))
        self.stream.flush()
        self.length = len(text)
        self.drawn = now


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _columns(stream: IO[str]) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size().columns


def _count(rate: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if rate >= scale:
            return f"{rate / scale:.1f}{unit}"
    return f"{rate:.0f}"


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"
