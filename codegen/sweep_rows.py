"""The sweep's loop, without SymPy: values, the grid's rows, blocks of columns, progress.

``codegen.sweep`` builds a ``Grid`` from the formulas (SymPy) and ``shardcost.cached_sweep``
its rows from a cache entry (no SymPy); both are ``Rows``: the same chunks, the same
evaluation of a chunk into a ``Block`` (its inputs completed, the rows that are not valid
configurations dropped and counted by reason, the counts as int64 columns), the same
writers (``codegen.sweep_text``) and the same summary line. Only what a chunk's numbers
come from differs: the engine's compiled paths, or the blocked programs they generated,
read back from the cache.

numpy and the standard library only.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import numpy as np

from shardcost.errors import InputError, InternalError

from .plain import EXACT_FLOAT
from .sweep_text import Block, Column

MAX_ROWS = 50_000_000
INT64_MAX = 2**63 - 1
CHUNK_BYTES = 64 << 20  # working memory of one chunk: evaluation, columns and text
FORMATS = ("csv", "jsonl", "parquet")
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
        if max(abs(p) + abs(q) * self.length, r) < EXACT_FLOAT:
            return (p + picks.astype(np.int64) * q) / float(r)
        return np.array([self[int(i)] for i in picks], dtype=np.float64)  # rare: huge terms


def numbers(key: str, text: str, number: Callable[[str], Any], *, whole: bool) -> Sequence[Any]:
    """The values of ``key=text`` read by ``number``: a list, a range, or a geometric
    range (*STEP); counts (``whole``) as ints, the rest as floats.

    Ranges are counted before they are built (an arithmetic one never is: a ``Range``);
    more than one value past int64 is refused, as sweeps compute counts in int64.
    """

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


def fixed_inputs(
    inputs: Sequence[str],
    values: Mapping[str, Sequence[Any]],
    catalog: Mapping[str, Any],
    missing: Callable[[str], None],
) -> dict[str, Any]:
    """Inputs given once, hardware figures from ``catalog``, None where a default
    applies; ``missing(name)`` first for an input that has none of those (it raises where
    the input needs a value)."""
    fixed: dict[str, Any] = {}
    for name in inputs:
        if name in values and len(values[name]) == 1:
            fixed[name] = values[name][0]
        elif name in values:
            continue
        elif name in catalog:
            fixed[name] = float(catalog[name])
        else:
            missing(name)
            fixed[name] = None
    return fixed


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


# ---------------------------------------------------------------- rows


@dataclass(frozen=True)
class Rule:
    """A relation or a requirement of a program, as a sweep drops rows by it: its reason
    in words and its two sides, each a function of every input (in the grid's order)."""

    reason: str
    relation: bool  # the sides are equal; else a requirement: ``rhs`` divides ``lhs``
    either: bool  # a requirement met also where ``lhs`` divides ``rhs``
    lhs: Callable[..., Any]
    rhs: Callable[..., Any]

    def fails(self, values: Sequence[np.ndarray]) -> Any:
        """Where it does not hold."""
        total, parts = self.lhs(*values), self.rhs(*values)
        if self.relation:
            return total != parts
        bad = total % parts != 0
        if self.either:
            bad = bad & (parts % total != 0)
        return bad


def reason(relation: bool, words: str, total: str, parts: str, either: bool) -> str:
    """Why a row is dropped, in words: a relation (``words``) or a requirement."""
    if relation:
        return f"{words} does not hold"
    if either:
        return f"{total} and {parts} do not divide one another"
    return f"{total} not divisible by {parts}"


class Rows:
    """A sweep's rows: the inputs given once (``fixed``, None where a default applies)
    and those swept, each combination of the switches (``combos``) a pass of its own, in
    chunks of whole rows. What a chunk's numbers come from is the subclass's: its inputs
    completed (``complete``), its float64 pass (``floats``), the rows recomputed exactly
    (``exactly``), the rules rows are dropped by (``rules``) and the extra columns a
    combination has (``own``)."""

    timed: bool
    inputs: tuple[str, ...]  # every input, counts (``counts`` of them) then hardware fields
    fixed: Mapping[str, Any]
    swept: Mapping[str, Sequence[Any]]
    combos: tuple[tuple[Any, ...], ...]
    extras: tuple[str, ...]  # after the metrics: chips, then each collective's bytes

    @property
    def names(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """The switches, the metrics and the timings, by name."""
        raise NotImplementedError

    @property
    def counts(self) -> tuple[str, ...]:
        """The count inputs (a row with one below 1 is dropped as such)."""
        raise NotImplementedError

    def dtype(self, name: str) -> Any:
        """A swept input's array type: int64 for counts, float64 for hardware fields."""
        return np.int64 if name in self.counts else np.float64

    def complete(self, given: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def floats(
        self, key: tuple[Any, ...], inputs: tuple[Any, ...], n: int
    ) -> tuple[Mapping[str, Any], Any, Any]:
        """The float64 pass: outputs by name, where a row is valid, where a count may be
        inexact."""
        raise NotImplementedError

    def exactly(self, key: tuple[Any, ...], inputs: tuple[Any, ...]) -> Mapping[str, Any]:
        """The counts of these rows as Python ints."""
        raise NotImplementedError

    def rules(self, key: tuple[Any, ...]) -> Sequence[Rule]:
        raise NotImplementedError

    def own(self, key: tuple[Any, ...]) -> Sequence[str]:
        """The extra columns combination ``key`` computes (the others hold 0)."""
        raise NotImplementedError

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
        switches, metrics, timings = self.names
        return [*self.inputs, *switches, *metrics, *self.extras, *(timings if self.timed else ())]

    def chunk_rows(self, chunk_bytes: int = CHUNK_BYTES) -> int:
        """Rows per chunk so that one chunk's working memory stays near ``chunk_bytes``:
        per row, the swept inputs, the evaluation's float64 outputs and temporaries, the
        int64 columns and the text of a line (numpy's assembly holds it twice over)."""
        _, metrics, timings = self.names
        outputs = len(metrics) + len(self.extras) + (len(timings) if self.timed else 0)
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
                out[name] = np.asarray(values, dtype=self.dtype(name))
            except OverflowError:
                raise InputError(
                    f"{name}: a value is past int64 (at most {INT64_MAX:,}); a sweep computes "
                    f"in int64, so give a value that large as the only value of {name}"
                ) from None
        return out

    def chunk(
        self, combo: int, lo: int, hi: int
    ) -> tuple[tuple[Any, ...], dict[str, Any], tuple[Any, ...]]:
        """Rows ``lo:hi`` of switch combination ``combo``: its switches, every input
        completed (by name), and the inputs in order."""
        key = self.combos[combo]
        rows = np.arange(lo, hi, dtype=np.int64)
        given = dict(self.fixed)
        if self.swept:
            picks = np.unravel_index(rows, self.sizes)
            for (name, values), pick in zip(self.swept.items(), picks, strict=True):
                given[name] = values.take(pick) if isinstance(values, Range) else (
                    self._arrays[name][pick])  # fmt: skip
        try:
            args = self.complete(given)
        except OverflowError:  # a derived dimension past int64
            raise InputError(
                "a dimension derived from the swept ones is past int64; a sweep computes in "
                "int64: give it too, or sweep smaller values"
            ) from None
        return key, args, tuple(args[n] for n in self.inputs)

    def evaluate(self, combo: int, lo: int, hi: int) -> Block:
        """Rows ``lo:hi`` of switch combination ``combo``: the valid ones as columns, the
        others counted by reason."""
        key, args, inputs = self.chunk(combo, lo, hi)
        n = hi - lo
        outputs, ok, inexact = self.floats(key, inputs, n)
        ok = np.broadcast_to(ok, (n,))
        dropped: dict[str, int] = {}
        everything = bool(ok.all())
        if not everything:
            self._count_drops(key, args, ok, dropped)
        keep = None if everything else np.flatnonzero(ok)
        count = n if keep is None else keep.size
        # valid rows whose counts may be inexact in float64: recomputed with Python ints
        big = np.flatnonzero(np.broadcast_to(inexact, (n,)) & ok)
        exact: Mapping[str, Any] = {}
        if big.size:
            pick = tuple(np.broadcast_to(v, (n,))[big] if np.ndim(v) else v for v in inputs)
            exact = self.exactly(key, pick)
        at = big if keep is None else np.searchsorted(keep, big)  # their places in the block
        _, metrics, timings = self.names
        columns = [_input_column(args[name], n, keep) for name in self.inputs]
        columns += [Column(None, value) for value in key]
        columns += [_count_column(outputs[m], n, keep, at, exact.get(m)) for m in metrics]
        own = self.own(key)
        columns += [
            _count_column(outputs[m], n, keep, at, exact.get(m)) if m in own else Column(None, 0)
            for m in self.extras
        ]
        if self.timed:
            columns += [_input_column(outputs[t], n, keep) for t in timings]
        return Block(count, columns, dropped)

    def _count_drops(
        self, key: tuple[Any, ...], args: dict[str, Any], ok: np.ndarray, dropped: dict[str, int]
    ) -> None:
        """Add each dropped row to the first reason that explains it: a size below 1, a
        relation of the layer that does not hold, a requirement that fails."""
        bad = ~ok
        if not bad.any():
            return
        values = [np.asarray(args[n]) for n in self.inputs]
        small = np.logical_or.reduce(
            [np.broadcast_to(np.asarray(args[n]) < 1, bad.shape) for n in self.counts]
        )
        failures = [(rule.reason, rule.fails(values)) for rule in self.rules(key)]
        left = bad.copy()
        for why, fails in (("a size below 1", small), *failures):
            hit = left & np.broadcast_to(fails, bad.shape)
            if hit.any():
                dropped[why] = dropped.get(why, 0) + int(hit.sum())
                left &= ~hit


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


# ---------------------------------------------------------------- the loop


def write_rows(
    rows: Rows,
    write: Callable[[Block], None],
    bar: Progress,
    chunk_bytes: int = CHUNK_BYTES,
) -> SweepResult:
    """Evaluate ``rows`` chunk by chunk, each block to ``write``; InputError when no
    combination was valid, naming why they were dropped."""
    result = SweepResult(total=rows.total)
    size = rows.chunk_rows(chunk_bytes)
    done = 0
    try:
        for combo, lo, hi in rows.spans(size):
            block = rows.evaluate(combo, lo, hi)
            write(block)
            result.add(block.rows, block.dropped)
            done += hi - lo
            bar.update(done)
    finally:
        bar.close(done)
    result.check()
    return result


def summary(result: SweepResult, target: object) -> str:
    """The line ``shardcost sweep`` ends with on standard error."""
    dropped = "; ".join(f"{why}: {n:,}" for why, n in result.dropped.items())
    where = f" to {target}" if target else ""
    return (
        f"wrote {result.rows:,} rows{where} in {result.seconds:.2f} s; dropped "
        f"{result.total - result.rows:,} of {result.total:,} combinations"
        + (f" ({dropped})" if dropped else "")
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
