"""Array inputs as the blocked programs take them, and the loop that runs those programs.

An input that varies (more than one value) is a flat array of the broadcast size, in the
number type of the pass: float64 (integer arrays stay integer and are converted block by
block), int64, or Python ints in object arrays. An input that does not vary is a Python
number, so that what depends only on such inputs is computed once, in Python, exactly
where it can be. Two inputs given as the same array are one input (``aliases``): a
default borrowed from another dimension (num_kv_heads = num_heads when not given).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from shardcost.errors import InvalidValueError

if TYPE_CHECKING:  # a cached sweep runs these programs without importing SymPy
    from .blocked import Blocked

PARALLEL_MIN = 1 << 16  # rows below which one thread is quicker
SPARE_BYTES = 64 << 20  # output memory kept for the next call, once nothing reads it
_POOL: list[ThreadPoolExecutor] = []
_LOCAL = threading.local()  # each thread's scratch buffers, allocated once
_SPARE: dict[tuple[str, int], list[np.ndarray]] = {}  # released output memory, by size
_SPARE_LOCK = threading.RLock()  # a release may run inside (garbage collection)


Pattern = tuple[tuple[bool, ...], tuple[bool, ...], tuple[bool, ...], tuple[tuple[int, int], ...]]


@dataclass(frozen=True)
class Inputs:
    """A call's inputs, flattened: each varying one an array of ``n`` values, the others
    Python numbers; ``shape`` is the broadcast shape the results take. The first
    ``counts`` are counts, the rest hardware fields (floats)."""

    values: tuple[Any, ...]  # flat arrays (their own dtype) or Python numbers
    shape: tuple[int, ...]
    n: int
    counts: int
    aliases: tuple[tuple[int, int], ...] = ()  # (j, i): input j is the same array as i

    @classmethod
    def of(cls, raw: Sequence[Any], names: Sequence[str], counts: int, *, exact: bool) -> Inputs:
        """Inputs as given (scalars, arrays, lists); InvalidValueError for counts that are
        not numbers, or (``exact``) not whole numbers."""
        arrays: list[Any] = []
        for k, value in enumerate(raw):
            if type(value) is int or type(value) is float:  # the common case, quickly
                if exact and k < counts and not float(value).is_integer():
                    raise InvalidValueError(f"{names[k]} must be whole numbers")
                arrays.append(value if k < counts else float(value))
                continue
            if k >= counts:  # a hardware field: a float
                arrays.append(np.asarray(value, dtype=np.float64))
                continue
            array = np.asarray(value)
            kind = array.dtype.kind
            if kind not in "iufO":
                raise InvalidValueError(
                    f"{names[k]} must be whole numbers, got {array.dtype} values"
                )
            if exact and kind == "f" and not _whole(array):
                raise InvalidValueError(f"{names[k]} must be whole numbers")
            arrays.append(array)
        given = [a for a in arrays if isinstance(a, np.ndarray)]
        shapes = {a.shape for a in given if a.size != 1}
        if len(shapes) == 1 and all(a.size != 1 or not a.ndim for a in given):
            shape = shapes.pop()
        else:
            shape = np.broadcast_shapes(*(a.shape for a in given))
        n = math.prod(shape)
        values = []
        aliases = []
        for j, a in enumerate(arrays):
            if not isinstance(a, np.ndarray):
                values.append(a)
            elif a.size == 1:
                values.append(_scalar(a))
            else:
                values.append(_flat(a, shape, n))
                same = (i for i in range(j) if raw[i] is raw[j] and j < counts)
                aliases += [(j, i) for i in itertools.islice(same, 1)]
        return cls(tuple(values), tuple(shape), n, counts, tuple(aliases))

    def select(self, picks: Sequence[int], counts: int) -> Inputs:
        """Only the inputs at ``picks`` (a variant's, counts first), over the same rows."""
        aliases: tuple[tuple[int, int], ...] = ()
        if self.aliases:
            at = {p: k for k, p in enumerate(picks)}
            aliases = tuple((at[j], at[i]) for j, i in self.aliases if j in at and i in at)
        values = tuple(self.values[p] for p in picks)
        return Inputs(values, self.shape, self.n, counts, aliases)

    def pattern(self, integer: bool) -> Pattern:
        """What a blocked program is specialised on: which inputs vary; which are
        integer arrays (a float pass converts them block by block) and which float arrays
        (tested whole); which are the same array as another."""
        varying, cast, whole = [], [], []
        for k, v in enumerate(self.values):
            moving = isinstance(v, np.ndarray)
            counted = moving and k < self.counts and not integer
            varying.append(moving)
            cast.append(counted and v.dtype.kind in "iu")
            whole.append(counted and v.dtype.kind not in "iu")
        return tuple(varying), tuple(cast), tuple(whole), self.aliases

    def gather(self, rows: np.ndarray) -> Inputs:
        """The rows ``rows`` only (inputs that do not vary stay as they are)."""
        values = tuple(v[rows] if isinstance(v, np.ndarray) else v for v in self.values)
        return Inputs(values, (len(rows),), len(rows), self.counts, self.aliases)

    def whole(self) -> np.ndarray:
        """Where every count is a whole number (an int64 or Python-int pass would
        truncate the others)."""
        found = np.ones(self.n, dtype=bool)
        for v in self.values[: self.counts]:
            if isinstance(v, np.ndarray) and v.dtype.kind in "fO":
                with np.errstate(invalid="ignore"):
                    x = np.asarray(v, dtype=np.float64)
                    found &= np.floor(x) == x
        return found

    def floats(self) -> tuple[Any, ...]:
        """Arguments of a float64 pass: integer arrays as they are (converted block by
        block), object arrays as float64. OverflowError past float64's range."""
        return tuple(
            np.asarray(v, dtype=np.float64)
            if isinstance(v, np.ndarray) and v.dtype.kind == "O"
            else v
            for v in self.values
        )

    def ints(self) -> tuple[Any, ...]:
        """Arguments of an int64 pass (rows whose values all stay below 2^62): counts as
        int64 arrays or Python ints; hardware as it is."""
        out = []
        for k, v in enumerate(self.values):
            if k >= self.counts:
                out.append(v)
            elif isinstance(v, np.ndarray):
                out.append(v.astype(np.int64))
            else:
                out.append(_python_int(v))
        return tuple(out)

    def python(self) -> tuple[Any, ...]:
        """Arguments of the exact object path: counts as object arrays of Python ints
        (0-d for those that do not vary); hardware as arrays."""
        out = []
        for k, v in enumerate(self.values):
            if k >= self.counts:
                out.append(np.asarray(v))
            elif not isinstance(v, np.ndarray):
                out.append(np.asarray(_python_int(v), dtype=object))
            elif v.dtype.kind in "iu":
                out.append(v.astype(object))
            else:
                out.append(np.array([_python_int(x) for x in v.tolist()], dtype=object))
        return tuple(out)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """Each input as an array over the rows (for error messages)."""
        return tuple(np.asarray(v) for v in self.values)


def _varies(value: Any) -> bool:
    return isinstance(value, np.ndarray)


def _whole(array: np.ndarray) -> bool:
    with np.errstate(invalid="ignore"):
        return bool(np.all(array == np.floor(array)))


def _flat(array: np.ndarray, shape: tuple[int, ...], n: int) -> np.ndarray:
    """``array`` broadcast to ``shape`` as n values in a row (a view where it can be)."""
    if array.dtype.kind == "f" and array.dtype != np.float64:
        array = array.astype(np.float64)
    if array.shape != shape:
        array = np.broadcast_to(array, shape)
    return np.ascontiguousarray(array).reshape(n)


def _scalar(array: np.ndarray) -> Any:
    """A one-value array as a Python number (int, float, or the object it holds)."""
    value = array.reshape(()).item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValueError(f"{value!r} is not a number")
    return value


def _python_int(value: Any) -> int:
    """A whole number as a Python int (a value that is not finite as 0: never valid)."""
    if isinstance(value, int):
        return value
    value = float(value)
    return int(value) if math.isfinite(value) else 0


def workers() -> int:
    return os.cpu_count() or 1


def _pool() -> ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="shardcost"))
    return _POOL[0]


def _scratch(blocked: Blocked) -> list[np.ndarray]:
    """This thread's scratch buffers for ``blocked`` (allocated on first use, then kept)."""
    pool: dict[tuple[str, int], list[np.ndarray]] = _LOCAL.__dict__.setdefault("pool", {})
    out: list[np.ndarray] = []
    for dtype, count in blocked.scratch:
        buffers = pool.setdefault((dtype, blocked.block), [])
        while len(buffers) < count:
            buffers.append(np.empty(blocked.block, dtype=dtype))
        out += buffers[:count]
    return out


def constant(value: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``value`` over ``shape``: a read-only view of one number (cheaper than
    ``np.broadcast_to``)."""
    one = np.array(value, dtype=dtype)
    view = np.ndarray(shape, dtype, buffer=one, strides=(0,) * len(shape))
    view.flags.writeable = False
    return view


def outputs(shape: tuple[int, int], dtype: Any) -> np.ndarray:
    """Memory for a call's results. Fresh memory costs a page fault and zeroing per page
    on first touch (as much as computing the block, at a million rows); so memory of up
    to ``SPARE_BYTES`` is handed back when the last array viewing it is gone (every view
    keeps alive the memoryview its chain of bases ends at) and reused by a later call of
    the same size. Memory someone still reads is never reused."""
    size = math.prod(shape)
    key = (np.dtype(dtype).str, size)
    with _SPARE_LOCK:
        spare = _SPARE.get(key)
        raw = spare.pop() if spare else None
    if raw is None:
        raw = np.empty(size, dtype=dtype)
    if not 1 << 20 <= raw.nbytes <= SPARE_BYTES:  # small: malloc reuses it; large: not kept
        return raw.reshape(shape)
    flat = np.frombuffer(memoryview(raw), dtype=dtype)
    # numpy keeps its own memoryview of ours as the base every view leads to
    weakref.finalize(flat.base, _release, key, raw).atexit = False
    return flat.reshape(shape)


def _release(key: tuple[str, int], raw: np.ndarray) -> None:
    with _SPARE_LOCK:
        kept = sum(a.nbytes for found in _SPARE.values() for a in found)
        if kept + raw.nbytes <= SPARE_BYTES:
            _SPARE.setdefault(key, []).append(raw)


def run(
    blocked: Blocked,
    function: Callable[..., tuple],
    args: tuple[Any, ...],
    n: int,
    dtype: Any,
    *,
    rough: bool = True,
    wide: bool = False,
) -> tuple[list[Any], np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Run a blocked program over ``n`` rows: (each output, an array of n values where it
    varies, else its one value; ok; rough; wide), large calls split over the cores in
    whole blocks (numpy releases the GIL)."""
    # one allocation for every output: fewer page faults (huge pages) than one each
    rows = iter(outputs((sum(blocked.varies), n), dtype))
    outs = [next(rows) if varies else None for varies in blocked.varies]
    flags = iter(outputs((1 + rough + wide, n), bool))
    ok = next(flags)
    rough_ = next(flags) if rough else None
    wide_ = next(flags) if wide else None
    blocks = -(-n // blocked.block)
    parts = min(workers(), blocks) if n >= PARALLEL_MIN else 1
    if parts <= 1:
        with np.errstate(all="ignore"):  # invalid rows may divide by zero: masked
            fixed = function(*args, outs, ok, rough_, wide_, 0, n, _scratch(blocked))
    else:
        edges = [blocked.block * (blocks * i // parts) for i in range(parts)] + [n]

        def part(i: int) -> tuple:
            with np.errstate(all="ignore"):
                return function(
                    *args, outs, ok, rough_, wide_, edges[i], edges[i + 1], _scratch(blocked)
                )

        done = list(_pool().map(part, range(parts)))  # every part, finished
        fixed = done[0]
    values = [o if o is not None else v for o, v in zip(outs, fixed, strict=True)]
    return values, ok, rough_, wide_


def float_outputs(
    names: Sequence[str], blocked: Blocked, function: Callable[..., tuple], inputs: Inputs
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A float64 pass of a blocked program over ``inputs``: each output by name, shaped
    as the inputs broadcast (a read-only view where it does not vary), and where rows
    are valid and where a count may be inexact (flat). OverflowError for an input past
    float64's range."""
    values, ok, rough, _ = run(blocked, function, inputs.floats(), inputs.n, np.float64)
    shape = inputs.shape
    reshape = shape != (inputs.n,)
    result = {
        name: (v.reshape(shape) if reshape else v)
        if isinstance(v, np.ndarray)
        else constant(v, shape, np.float64)
        for name, v in zip(names, values, strict=True)
    }
    assert rough is not None
    return result, ok, rough
