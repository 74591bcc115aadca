"""Measured times against the model's predictions (``shardcost validate``).

A measurements CSV has one measured time per row and the configuration in columns:

    layer, layout, phase, KEY ..., measured_us

``layer`` is a registered layer (``attention_core`` for a bare attention kernel),
``host_copy`` for a host-to-device copy with columns ``bytes`` and ``host_memory``
(``pinned`` or ``pageable``), or ``collective`` with ``kind`` (all-reduce, all-gather,
all-to-all, send-recv), ``group`` (chips), ``bytes`` (the payload as the layers declare
it) and optionally ``collective_algorithm``. KEY columns are dimensions, conventions and hardware
fields, as ``shardcost metrics`` takes them; an empty cell is a value not given (its
default applies). Columns the rows do not read (a ``source`` note) are ignored only when
named in ``IGNORED``; any other unknown column is an error, so that a misspelt key is
never dropped silently.

Each row's prediction is what ``shardcost metrics`` gives for its configuration on the
hardware (the wall-clock time), or for a copy bytes / (host link × its efficiency):
the same formula ``kv-tier`` uses (with the copy latency a calibration fits).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shardcost.errors import InputError
from shardcost.files import read_text

from .conventions import BY_NAME as CONVENTIONS_BY_NAME
from .evaluate import evaluate
from .hardware import FIELDS_BY_NAME as HARDWARE_BY_NAME
from .hardware import Hardware
from .hardware import hardware as hardware_entry
from .inputs import resolve_inputs
from .registry import layers

HOST_COPY = "host_copy"
COLLECTIVE = "collective"
HOST_MEMORY = ("pinned", "pageable")
IGNORED = frozenset({"source", "note", "notes", "comment"})
_SHAPE = frozenset(
    {"layer", "layout", "phase", "measured_us", "bytes", "host_memory", "kind", "group"}
)
MAX_BYTES = 16 * 2**20  # a measurements file larger than this is refused, unread
MAX_ROWS = 100_000


@dataclass(frozen=True)
class Measurement:
    """One row: what was measured and how long it took."""

    line: int  # in the file, the header being line 1
    layer: str
    layout: str
    phase: str
    params: tuple[tuple[str, str], ...]
    measured_us: float
    host_memory: str = ""
    bytes: int = 0
    kind: str = ""  # a collective's
    group: int = 0
    algorithm: str = "ring"

    @property
    def kernel_class(self) -> str:
        """What the row times: its layer, or a host copy of its kind of memory."""
        if self.layer == HOST_COPY:
            return f"host copy ({self.host_memory})"
        if self.layer == COLLECTIVE:
            return "collective"
        return self.layer

    @property
    def label(self) -> str:
        """The row in a few words."""
        if self.layer == HOST_COPY:
            return f"{self.host_memory} copy of {self.bytes:,} bytes"
        if self.layer == COLLECTIVE:
            return f"{self.algorithm} {self.kind} of {self.bytes:,} bytes over {self.group}"
        given = " ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.layer} {self.layout} {self.phase} {given}".strip()


def _read_text(path: Path) -> str:
    return read_text(path, "a measurements CSV", MAX_BYTES)


def read_measurements(path: str | Path) -> tuple[Measurement, ...]:
    """The rows of a measurements CSV, checked; InputError naming the line and column of
    the first problem."""
    path = Path(path)
    reader = csv.DictReader(io.StringIO(_read_text(path)))
    columns = [c.strip() for c in reader.fieldnames or []]
    if "layer" not in columns or "measured_us" not in columns:
        raise InputError(f"{path}: the header needs the columns layer and measured_us")
    for column in columns:
        known = column in _SHAPE or column in IGNORED or column in HARDWARE_BY_NAME
        if not known and column not in CONVENTIONS_BY_NAME:
            from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS

            if column not in DIMENSIONS:
                raise InputError(
                    f"{path}: column {column!r} is not a dimension, convention or hardware "
                    f"field (other columns allowed: {', '.join(sorted(IGNORED))})"
                )
    rows = []
    for index, raw in enumerate(reader, start=2):
        if index > MAX_ROWS + 1:
            raise InputError(f"{path}: more than {MAX_ROWS:,} rows")
        cells = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if None in raw:
            raise InputError(f"{path}:{index}: more cells than the header has columns")
        rows.append(_row(path, index, cells))
    if not rows:
        raise InputError(f"{path}: no rows under the header")
    return tuple(rows)


def _row(path: Path, line: int, cells: Mapping[str, str]) -> Measurement:
    where = f"{path}:{line}"
    layer = cells.get("layer", "")
    try:
        measured = float(cells.get("measured_us", ""))
    except ValueError:
        raise InputError(
            f"{where}: measured_us={cells.get('measured_us')!r} is not a number"
        ) from None
    if not math.isfinite(measured) or measured <= 0:
        raise InputError(f"{where}: measured_us={cells.get('measured_us')!r}: give a positive time")
    params = tuple((k, v) for k, v in cells.items() if v and k not in _SHAPE and k not in IGNORED)
    if layer == HOST_COPY:
        memory = cells.get("host_memory", "")
        if memory not in HOST_MEMORY:
            raise InputError(f"{where}: host_memory={memory!r}: give pinned or pageable")
        text = cells.get("bytes", "")
        if not text.isdigit() or int(text) < 1 or len(text) > 18:
            raise InputError(f"{where}: bytes={text!r}: give a whole number of bytes")
        if params:
            raise InputError(
                f"{where}: a host copy reads bytes and host_memory only, not {params[0][0]}"
            )
        return Measurement(line, layer, "", "", (), measured, memory, int(text))
    if layer == COLLECTIVE:
        return _collective(where, line, cells, params, measured)
    if layer not in layers():
        raise InputError(
            f"{where}: layer={layer!r} is unknown; layers: {', '.join(layers())}, "
            f"{HOST_COPY}, {COLLECTIVE}"
        )
    layout = cells.get("layout") or "single"
    phase = cells.get("phase") or "prefill"
    return Measurement(line, layer, layout, phase, params, measured)


def _collective(
    where: str, line: int, cells: Mapping[str, str], params: tuple, measured: float
) -> Measurement:
    """A collective's row: its kind, group and payload (bytes), and its algorithm."""
    from shardcost.symbolic import CollectiveKind

    kind = cells.get("kind", "")
    kinds = [k.value for k in CollectiveKind if k is not CollectiveKind.USER]
    if kind not in kinds:
        raise InputError(f"{where}: kind={kind!r}: give {', '.join(kinds)}")
    group, text = cells.get("group", ""), cells.get("bytes", "")
    if not group.isdigit() or not 2 <= int(group) <= 10**6:
        raise InputError(f"{where}: group={group!r}: give the chips in the group, 2 or more")
    if not text.isdigit() or int(text) < 1 or len(text) > 18:
        raise InputError(f"{where}: bytes={text!r}: give the payload in whole bytes")
    rest = dict(params)
    algorithm = rest.pop("collective_algorithm", "ring")
    if algorithm not in ("ring", "tree", "direct"):
        raise InputError(f"{where}: collective_algorithm={algorithm!r}: give ring, tree or direct")
    if rest:
        raise InputError(
            f"{where}: a collective reads kind, group, bytes and collective_algorithm only, "
            f"not {next(iter(rest))}"
        )
    return Measurement(
        line,
        COLLECTIVE,
        "",
        "",
        (),
        measured,
        bytes=int(text),
        kind=kind,
        group=int(group),
        algorithm=algorithm,
    )


@dataclass(frozen=True)
class Prediction:
    """One row predicted: the model's time and its error relative to the measurement."""

    measurement: Measurement
    predicted_us: float

    @property
    def error(self) -> float:
        """(predicted − measured) / measured: negative when the model is too fast."""
        m = self.measurement.measured_us
        return (self.predicted_us - m) / m

    def to_dict(self) -> dict[str, Any]:
        m = self.measurement
        return {
            "line": m.line,
            "class": m.kernel_class,
            "row": m.label,
            "measured_us": m.measured_us,
            "predicted_us": self.predicted_us,
            "error": self.error,
        }


def host_copy_us(hw: Hardware, nbytes: int, memory: str) -> float:
    """A host-to-device copy: its fixed latency (0 unless fitted) and bytes / (host link ×
    the pinned or pageable efficiency), as kv-tier times a layer's copy."""
    if hw.host_link_bandwidth_gb_s is None:
        raise InputError(
            f"hardware {hw.name!r} gives no host_link_bandwidth_gb_s: a host copy needs it "
            "(add it to the hardware file)"
        )
    efficiency = hw.pinned_efficiency if memory == "pinned" else hw.pageable_efficiency
    rate = hw.host_link_bandwidth_gb_s * efficiency * 10**3  # bytes per µs
    return float(hw.copy_latency_us(memory) + nbytes / rate)


def collective_us(hw: Hardware, m: Measurement) -> float:
    """A collective timed by the layers' own rules (``communication``), in µs."""
    from .communication import collective_time_ms

    return 1e3 * collective_time_ms(m.kind, m.group, m.bytes, hw, algorithm=m.algorithm)


def predict(m: Measurement, hardware: str) -> Prediction:
    """The model's time for one measured row on ``hardware`` (a catalog name or a
    hardware TOML; the row's own hardware columns override it)."""
    if m.layer == HOST_COPY:
        return Prediction(m, host_copy_us(hardware_entry(hardware), m.bytes, m.host_memory))
    if m.layer == COLLECTIVE:
        return Prediction(m, collective_us(hardware_entry(hardware), m))
    try:
        inputs = resolve_inputs(
            m.layout, m.phase, layer=m.layer, hardware=hardware, params=dict(m.params)
        )
    except InputError as exc:
        raise InputError(f"line {m.line}: {exc}") from None
    result = evaluate(inputs)
    assert result.timing is not None
    return Prediction(m, result.timing.wall_clock_time_ms * 1e3)


@dataclass(frozen=True)
class ClassError:
    """The errors of one kernel class: mean absolute and largest relative error."""

    name: str
    rows: int
    mean_abs: float
    max_abs: float
    mean_signed: float


@dataclass(frozen=True)
class Validation:
    """Every row predicted, and the errors by class and overall."""

    hardware: Hardware
    predictions: tuple[Prediction, ...]

    def classes(self) -> tuple[ClassError, ...]:
        """Errors per kernel class, in order of first appearance."""
        groups: dict[str, list[float]] = {}
        for p in self.predictions:
            groups.setdefault(p.measurement.kernel_class, []).append(p.error)
        return tuple(_errors(name, errors) for name, errors in groups.items())

    def overall(self) -> ClassError:
        return _errors("all rows", [p.error for p in self.predictions])

    def worst(self, n: int = 5) -> tuple[Prediction, ...]:
        return tuple(sorted(self.predictions, key=lambda p: -abs(p.error))[:n])

    def to_dict(self) -> dict[str, Any]:
        return {
            "hardware": self.hardware.name,
            "rows": [p.to_dict() for p in self.predictions],
            "classes": [asdict(c) for c in self.classes()],
            "overall": asdict(self.overall()),
            "worst": [p.to_dict() for p in self.worst()],
            "units": dict(UNITS),
        }


# What the numbers of the JSON are in
UNITS = {
    "time": "microseconds (measured_us, predicted_us)",
    "error": "relative: (predicted - measured) / measured; mean_abs and max_abs of its size",
}


def _errors(name: str, errors: list[float]) -> ClassError:
    absolute = [abs(e) for e in errors]
    return ClassError(
        name, len(errors), sum(absolute) / len(errors), max(absolute), sum(errors) / len(errors)
    )


def validate(path: str | Path, hardware: str) -> Validation:
    """Every row of the measurements CSV at ``path`` against its prediction on
    ``hardware`` (a catalog name or a hardware TOML)."""
    rows = read_measurements(path)
    return Validation(hardware_entry(hardware), tuple(predict(m, hardware) for m in rows))
