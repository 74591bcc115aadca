"""Sweep rows as text: CSV and JSON lines, written from blocks of numpy columns.

A block's columns are int64, float64 or bool arrays, or one value for every row; counts
past int64 sit beside their column. Each column becomes its cells (characters in a
(width, rows) array beside a mask of those kept), and one gather writes the lines: the
bytes Python's ``csv`` module (and ``json.dumps``) would write, at numpy's speed. CSV
goes through pyarrow's writer instead when the caller passes pyarrow (faster; the same
bytes, but where a cell needs quotes).

numpy and the standard library only (pyarrow when passed in): ``shardcost sweep``'s fast
path (``shardcost.numeric_sweep``) writes through this module without importing SymPy.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from shardcost.errors import InternalError


def arrow(setting: bool | None = None) -> Any:
    """pyarrow, or None when it is missing or ``setting`` is False."""
    if setting is False:
        return None
    try:
        import pyarrow
    except ImportError:
        return None
    return pyarrow


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
def text_sink(
    out: IO[Any] | str | os.PathLike[str], fmt: str, columns: list[str], pa: Any = None
) -> Iterator[Callable[[Block], None]]:
    """A function writing each block to ``out`` (a stream, or a path written through
    ``replacing``) as CSV or JSON lines; ``pa``: pyarrow, for CSV."""
    if isinstance(out, str | os.PathLike):
        with replacing(out) as temporary, temporary.open("wb") as file:
            yield TextWriter(file.write, fmt, columns, file, pa).write
        return
    yield TextWriter(_byte_sink(out), fmt, columns, pa=pa).write
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


class TextWriter:
    """Blocks as CSV (through pyarrow's writer when ``pa`` is pyarrow, else numpy) or
    JSON lines (numpy), the header with the first row. ``file``: a binary file pyarrow may
    write to directly (else its text goes through ``sink``)."""

    def __init__(
        self,
        sink: Callable[[Any], Any],
        fmt: str,
        columns: list[str],
        file: IO[bytes] | None = None,
        pa: Any = None,
    ) -> None:
        self.sink, self.fmt, self.file = sink, fmt, file
        self.arrow = pa if fmt == "csv" else None
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
