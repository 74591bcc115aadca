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

This module is what needs the formulas (SymPy): the grid's inputs, switches and checks,
its compiled paths, Parquet. The loop, the values, the blocks and the text writers import
no SymPy (``codegen.sweep_rows``, ``codegen.sweep_text``), so that a sweep whose programs
are cached runs them without it (``shardcost.numeric_sweep``); their names are
re-exported here.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any

import numpy as np

from shardcost.errors import InputError, InvalidValueError, WideCountWarning
from shardcost.formulas import TIMINGS, Layout, Phase
from shardcost.formulas.conventions import BY_NAME as CONVENTIONS_BY_NAME
from shardcost.formulas.conventions import parse_bool
from shardcost.formulas.hardware import FIELDS as HARDWARE_FIELDS
from shardcost.formulas.hardware import SUPPORTS_OVERLAP, hardware, kernel_class
from shardcost.formulas.hardware import number as parse_number
from shardcost.formulas.inputs import check_keys, parse_count
from shardcost.symbolic import METRICS
from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS_BY_NAME

from . import runtime, sweep_text
from .compiled import ArrayPaths, array_paths, parse_phase
from .printers import NumpyPrinter
from .program import equation
from .python import OVERLAP, Fixed, choices, fixed_conventions, load
from .sweep_rows import (
    CHUNK_BYTES,
    FORMATS,
    INT64_MAX,
    MAX_ROWS,
    Progress,
    Range,
    Rows,
    Rule,
    SweepResult,
    fixed_inputs,
    numbers,
    output_format,
    reason,
    write_rows,
)
from .sweep_text import (
    Block,
    Column,
    _bools,
    _counts,
    _numbers,
    _repeat,
    replacing,
    text,
    text_sink,
)

__all__ = [  # the sweep's names, wherever they are defined
    "CHUNK_BYTES",
    "FORMATS",
    "MAX_ROWS",
    "Block",
    "Column",
    "Grid",
    "ParquetSink",
    "Progress",
    "Range",
    "SweepResult",
    "TextWriter",
    "WideCountWarning",
    "arrow",
    "grid",
    "need_arrow",
    "output_format",
    "parse_values",
    "replacing",
    "sweep",
    "text",
    "warn_wide",
    "widened",
]

PYARROW: bool | None = None  # None: use pyarrow when it imports; False: never (tests)
_HARDWARE = {f.symbol: f.name for f in HARDWARE_FIELDS if f.symbol is not None}


# ---------------------------------------------------------------- values


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

    return numbers(key, text, number, whole=whole)


def arrow() -> Any:
    """pyarrow, or None when it is missing or turned off (``PYARROW = False``)."""
    return sweep_text.arrow(PYARROW)


def need_arrow(what: str, extra: str = "parquet") -> Any:
    """pyarrow, or the InputError saying how to install it."""
    pa = arrow()
    if pa is None:
        raise InputError(f"{what} needs pyarrow: pip install 'shardcost[{extra}]'")
    return pa


# ---------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Grid(Rows):
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
    def names(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        return tuple(self.switches), METRICS, TIMINGS

    @property
    def counts(self) -> tuple[str, ...]:
        return self.paths.names

    def complete(self, given: dict[str, Any]) -> dict[str, Any]:
        return runtime.complete(self.paths.head, given)

    def floats(
        self, key: tuple[Any, ...], inputs: tuple[Any, ...], n: int
    ) -> tuple[Mapping[str, Any], Any, Any]:
        paths = self.paths
        try:
            return paths.evaluate(key, inputs, exact=False, strict=False)
        except InvalidValueError:  # a fixed input past int64: every row exactly, below
            if self.timed:  # times come from the float64 pass only
                raise InputError(
                    "a fixed input past int64 leaves a timed sweep without its float64 "
                    "pass; sweep without --hardware for exact counts"
                ) from None
        outputs, ok, _ = paths.evaluate(key, inputs, exact=True, strict=False)
        counted = paths.program(key).counts
        outputs = {k: np.zeros(n) if k in counted else v for k, v in outputs.items()}
        return outputs, ok, np.ones(n, dtype=bool)

    def exactly(self, key: tuple[Any, ...], inputs: tuple[Any, ...]) -> Mapping[str, Any]:
        return self.paths.evaluate(key, inputs, exact=True, strict=False)[0]

    def rules(self, key: tuple[Any, ...]) -> Sequence[Rule]:
        return rules(self.layout, self.phase, self.timed, self.static, key)

    def own(self, key: tuple[Any, ...]) -> Sequence[str]:
        return self.paths.program(key).extras


@cache
def rules(
    layout: Layout, phase: Phase, timed: bool, static: Fixed, key: tuple[Any, ...]
) -> tuple[Rule, ...]:
    """The relations and requirements a sweep drops rows by, for one combination of the
    switches (``rule_sources``, loaded)."""
    scope = {"_ceil": math.ceil, "_floor": math.floor}
    found = rule_sources(array_paths(layout, phase, timed, static), key)
    return tuple(
        Rule(why, relation, either, *(load(side, "side", scope) for side in sides))
        for why, relation, either, sides in found
    )


def rule_sources(
    paths: ArrayPaths, key: tuple[Any, ...]
) -> list[tuple[str, bool, bool, tuple[str, str]]]:
    """Each relation and requirement of combination ``key`` in words, whether it is a
    relation, whether either side may divide the other, and the source of each side: a
    function ``side`` of every input, in the grid's order."""
    names = {p: f"a{i}" for i, p in enumerate(paths.params)}
    printer = NumpyPrinter(names)
    head = f"def side({', '.join(names.values())}):\n    return "

    def source(expr: Any) -> str:
        return f"{head}{printer.doprint(expr)}\n"

    prog = paths.program(key)
    found = []
    for relation in prog.relations:
        lhs, rhs = equation(relation).args
        why = reason(True, relation.words, "", "", False)
        found.append((why, True, False, (source(lhs), source(rhs))))
    for check in prog.checks:
        why = reason(False, "", check.total_name, check.parts_name, check.either)
        found.append((why, False, check.either, (source(check.total), source(check.parts))))
    return found


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

    def missing(name: str) -> None:
        if name in _HARDWARE.values():
            raise InputError(f"timing needs {name}: give --hardware NAME or {name}=VALUE")

    return fixed_inputs(inputs, values, catalog, missing)


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
    bar = Progress(g.total, stream or sys.stderr, progress)
    with _writer(out, fmt, g.columns) as write:
        result = write_rows(g, write, bar, chunk_bytes)
    result.seconds = time.perf_counter() - started
    return result


@contextlib.contextmanager
def _writer(
    out: IO[Any] | str | os.PathLike[str], fmt: str, columns: list[str]
) -> Iterator[Callable[[Block], None]]:
    """A function writing each block to ``out`` in ``fmt``."""
    if fmt != "parquet":
        with text_sink(out, fmt, columns, arrow() if fmt == "csv" else None) as write:
            yield write
        return
    if not isinstance(out, str | os.PathLike):
        raise InputError("Parquet is written to a file: give a path, not a stream")
    pa = need_arrow("Parquet output")
    with replacing(out) as temporary:
        sink = ParquetSink(pa, temporary, columns)
        try:
            yield sink.write
        except BaseException:
            sink.close(ok=False)
            raise
        sink.close()


class TextWriter(sweep_text.TextWriter):
    """``sweep_text.TextWriter`` through pyarrow unless ``PYARROW`` is False."""

    def __init__(
        self,
        sink: Callable[[Any], Any],
        fmt: str,
        columns: list[str],
        file: IO[bytes] | None = None,
    ) -> None:
        super().__init__(sink, fmt, columns, file, arrow() if fmt == "csv" else None)


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
