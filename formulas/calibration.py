"""Fitting the timing model to measured times (``shardcost calibrate``).

Per kernel class the model of one measured row is

    layer rows (gemm, attention):  t = L + max(c₀ / η_c, l₀ / η_m) + comm₀
    host copies (pinned, pageable): t = L + bytes / (host link · η)
    collectives:                    t = steps · L + wire bytes / (interconnect · η)

where c₀, l₀ and comm₀ are the row's compute, load and communication times on the base
hardware (``shardcost metrics``' figures at that chip's own efficiencies), and the
fitted coefficients are the class's achieved fractions η_c, η_m (of what the base chip
achieves) and its fixed latency L (a collective's: per latency step, and its η the
link_efficiency). A copy or a collective is linear in (L, 1/η): non-negative least
squares on relative errors (SciPy's ``nnls``). A layer row is not, because of the max:
a bounded least-squares fit of the relative errors (SciPy's ``least_squares``, fractions
in [0.001, 1], latency ≥ 0) from three starting points, the best kept.

Errors are relative, (predicted − measured) / measured: before calibration (the base
hardware), in the fit, and under k-fold cross-validation (each fold predicted by a fit
on the others); with ``hold_out_half`` the fit uses every other row of each class and
the rest are predicted, never seen.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from shardcost.errors import InputError

from .evaluate import evaluate
from .hardware import FIELDS, KERNEL_CLASSES, Hardware, kernel_class
from .hardware import hardware as hardware_entry
from .inputs import resolve_inputs
from .measurements import (
    COLLECTIVE,
    HOST_COPY,
    Measurement,
    collective_us,
    host_copy_us,
    read_measurements,
)

MIN_ROWS = {"layer": 3, "copy": 2}


@dataclass(frozen=True)
class _Row:
    """A measured row reduced to what the fit needs (times in µs)."""

    m: Measurement
    group: str  # a kernel class, or "pinned" / "pageable"
    compute: float = 0.0
    load: float = 0.0
    comm: float = 0.0
    nbytes: int = 0
    base: float = 0.0  # the prediction before calibration
    steps: int = 0  # a collective's latency steps (its wire bytes are ``nbytes``)


def _rows(rows: tuple[Measurement, ...], hardware: str, hw: Hardware) -> list[_Row]:
    out = []
    for m in rows:
        if m.layer == COLLECTIVE:
            from .communication import latency_steps, wire_bytes

            wire = wire_bytes(m.kind, m.group, m.bytes, algorithm=m.algorithm)
            steps = latency_steps(m.kind, m.group, algorithm=m.algorithm)
            base = collective_us(hw, m)
            out.append(_Row(m, COLLECTIVE, nbytes=int(wire), steps=int(steps), base=base))
            continue
        if m.layer == HOST_COPY:
            base = host_copy_us(hw, m.bytes, m.host_memory)
            out.append(_Row(m, m.host_memory, nbytes=m.bytes, base=base))
            continue
        try:
            inputs = resolve_inputs(
                m.layout, m.phase, layer=m.layer, hardware=hardware, params=dict(m.params)
            )
        except InputError as exc:
            raise InputError(f"line {m.line}: {exc}") from None
        if inputs.hardware is None:  # pragma: no cover - hardware is always given
            raise InputError(f"line {m.line}: no hardware")
        t = evaluate(inputs).timing
        assert t is not None
        out.append(
            _Row(
                m,
                kernel_class(m.layer),
                compute=t.compute_time_ms * 1e3,
                load=t.load_time_ms * 1e3,
                comm=t.communication_time_ms * 1e3,
                base=t.wall_clock_time_ms * 1e3,
            )
        )
    return out


@dataclass(frozen=True)
class Coefficients:
    """One class's fitted figures: achieved fractions (layer classes) or the link's
    (copies), and the fixed latency in µs."""

    group: str
    compute_efficiency: float | None
    memory_efficiency: float | None
    latency_us: float
    rows: int
    note: str = ""  # a figure the rows cannot tell, left at the base chip's


def _predict(c: Coefficients, r: _Row, link: float) -> float:
    if r.group == COLLECTIVE:
        assert c.memory_efficiency is not None
        return r.steps * c.latency_us + r.nbytes / (link * c.memory_efficiency * 1e3)
    if r.group in ("pinned", "pageable"):
        assert c.memory_efficiency is not None
        return c.latency_us + r.nbytes / (link * c.memory_efficiency * 1e3)
    assert c.compute_efficiency is not None and c.memory_efficiency is not None
    return (
        c.latency_us + max(r.compute / c.compute_efficiency, r.load / c.memory_efficiency) + r.comm
    )


def _optimize() -> Any:
    """SciPy's optimizers: the fit is theirs, never a home-made one."""
    try:
        from scipy import optimize
    except ImportError:
        raise InputError("calibrate fits with SciPy: pip install 'shardcost[fit]'") from None
    return optimize


def _fit_copies(group: str, rows: list[_Row], link: float) -> Coefficients:
    """Copies (t = L + bytes / (link · η)) and collectives (t = steps · L + wire / (link ·
    η)): linear in (L, 1/η), non-negative least squares on relative errors."""
    nnls = _optimize().nnls

    measured = np.array([r.m.measured_us for r in rows])
    design = (
        np.array([[r.steps if group == COLLECTIVE else 1.0, r.nbytes / (link * 1e3)] for r in rows])
        / measured[:, None]
    )
    (latency, inverse), _ = nnls(design, np.ones(len(rows)))
    efficiency = 1.0 if inverse <= 1.0 else 1.0 / inverse  # at most the link's rate
    return Coefficients(group, None, efficiency, float(latency), len(rows))


def _fit_layers(group: str, rows: list[_Row]) -> Coefficients:
    least_squares = _optimize().least_squares

    compute = np.array([r.compute for r in rows])
    load = np.array([r.load for r in rows])
    comm = np.array([r.comm for r in rows])
    measured = np.array([r.m.measured_us for r in rows])

    def residuals(x: np.ndarray) -> np.ndarray:
        eta_c, eta_m, latency = x
        return (latency + np.maximum(compute / eta_c, load / eta_m) + comm - measured) / measured

    best = None
    for start in ((0.5, 0.5, 0.5 * measured.min()), (1.0, 1.0, 0.0), (0.1, 0.1, 0.0)):
        found = least_squares(residuals, start, bounds=([1e-3, 1e-3, 0.0], [1.0, 1.0, np.inf]))
        if best is None or found.cost < best.cost:
            best = found
    assert best is not None
    eta_c, eta_m, latency = (float(v) for v in best.x)
    # A fraction no row is bound by is not measured: left at the base chip's (1), so a
    # fit of memory-bound kernels never slows compute-bound ones elsewhere.
    notes = []
    if not np.any(compute / eta_c >= load / eta_m):
        eta_c = 1.0
        notes.append("compute fraction not identified (no row compute-bound): left at 1")
    elif not np.any(load / eta_m >= compute / eta_c):
        eta_m = 1.0
        notes.append("bandwidth fraction not identified (no row load-bound): left at 1")
    return Coefficients(group, eta_c, eta_m, latency, len(rows), "; ".join(notes))


def _linear(group: str) -> bool:
    return group in ("pinned", "pageable", COLLECTIVE)


def _fit(group: str, rows: list[_Row], link: float) -> Coefficients:
    kind = "copy" if _linear(group) else "layer"
    if len(rows) < MIN_ROWS[kind]:
        raise InputError(
            f"{_words(group)}: {len(rows)} row{'s' if len(rows) != 1 else ''}; a fit needs at "
            f"least {MIN_ROWS[kind]}"
        )
    return _fit_copies(group, rows, link) if kind == "copy" else _fit_layers(group, rows)


def _words(group: str) -> str:
    if group == COLLECTIVE:
        return "collectives"
    return f"host copy ({group})" if group in ("pinned", "pageable") else f"{group} kernels"


@dataclass(frozen=True)
class Errors:
    """Relative errors of one set of predictions: mean of the absolute, and the largest."""

    rows: int
    mean: float
    max: float

    @classmethod
    def of(cls, errors: list[float]) -> Errors:
        absolute = [abs(e) for e in errors] or [math.nan]
        return cls(len(errors), sum(absolute) / len(absolute), max(absolute))


@dataclass(frozen=True)
class ClassReport:
    """One class: its coefficients and its errors before, in the fit, cross-validated
    and (with a held-out half) on the rows the fit did not see."""

    coefficients: Coefficients
    before: Errors
    fit: Errors
    cross_validated: Errors
    held_out: Errors | None
    points: tuple[tuple[float, float, float, bool], ...]  # measured, before, after, held out


@dataclass(frozen=True)
class Calibration:
    """The fit of every class, the fitted hardware, and how well it predicts."""

    base: Hardware
    fitted: Hardware
    source: str
    classes: tuple[ClassReport, ...]
    folds: int
    hold_out_half: bool
    notes: tuple[str, ...] = field(default=())

    def overall(self, which: str) -> Errors:
        """Every row's errors together: ``before``, ``fit``, ``cross_validated`` or
        ``held_out`` (rows the fit did not see)."""
        errors: list[float] = []
        for c in self.classes:
            for measured, before, after, held in c.points:
                if which == "before":
                    errors.append((before - measured) / measured)
                elif (which == "fit") != held:  # fit: the rows it saw; held_out: the rest
                    errors.append((after - measured) / measured)
        if which == "cross_validated":
            return _pooled([c.cross_validated for c in self.classes])
        return Errors.of(errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hardware": self.base.name,
            "fitted": self.fitted.name,
            "source": self.source,
            "folds": self.folds,
            "hold_out_half": self.hold_out_half,
            "classes": [
                {
                    "class": _words(c.coefficients.group),
                    "coefficients": asdict(c.coefficients),
                    "before": asdict(c.before),
                    "fit": asdict(c.fit),
                    "cross_validated": asdict(c.cross_validated),
                    "held_out": None if c.held_out is None else asdict(c.held_out),
                }
                for c in self.classes
            ],
            "overall": {
                k: asdict(self.overall(k))
                for k in ("before", "fit", "cross_validated")
                + (("held_out",) if self.hold_out_half else ())
            },
            "notes": list(self.notes),
            "units": {
                "latency_us": "microseconds",
                "efficiencies": "fractions of the peak (compute) and of the bandwidth (memory)",
                "errors": "relative, |predicted - measured| / measured: mean and max",
            },
        }


def _pooled(parts: list[Errors]) -> Errors:
    rows = sum(p.rows for p in parts)
    return Errors(rows, sum(p.mean * p.rows for p in parts) / rows, max(p.max for p in parts))


def _cross_validated(group: str, rows: list[_Row], link: float, folds: int) -> Errors:
    """Each of ``folds`` folds (every folds-th row) predicted by a fit on the others."""
    k = min(folds, len(rows))
    errors = []
    for fold in range(k):
        train = [r for i, r in enumerate(rows) if i % k != fold]
        test = [r for i, r in enumerate(rows) if i % k == fold]
        try:
            c = _fit(group, train, link)
        except InputError:
            continue  # too few rows left to fit: this fold is not scored
        errors += [(_predict(c, r, link) - r.m.measured_us) / r.m.measured_us for r in test]
    return Errors.of(errors)


def calibrate(
    path: str | Path,
    hardware: str,
    *,
    folds: int = 5,
    hold_out_half: bool = False,
    name: str | None = None,
) -> Calibration:
    """Fit the timing model to the measurements CSV at ``path`` on ``hardware``."""
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= 100:
        raise InputError(f"folds={folds!r}: give a whole number from 2 to 100")
    base = hardware_entry(hardware)
    measured = read_measurements(path)
    rows = _rows(measured, hardware, base)
    groups: dict[str, list[_Row]] = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    reports, fitted = [], base
    for group, members in groups.items():
        train = members[0::2] if hold_out_half else members
        held = members[1::2] if hold_out_half else []
        link = _link(base, group)
        c = _fit(group, train, link)
        fitted = _apply(fitted, c)
        points = tuple((r.m.measured_us, r.base, _predict(c, r, link), r in held) for r in members)
        reports.append(
            ClassReport(
                c,
                Errors.of([(r.base - r.m.measured_us) / r.m.measured_us for r in members]),
                Errors.of(
                    [(_predict(c, r, link) - r.m.measured_us) / r.m.measured_us for r in train]
                ),
                _cross_validated(group, members, link, folds),
                Errors.of(
                    [(_predict(c, r, link) - r.m.measured_us) / r.m.measured_us for r in held]
                )
                if hold_out_half
                else None,
                points,
            )
        )
    fitted = replace(
        fitted,
        name=name or f"{base.name}-fitted",
        description=f"{base.description or base.name}, fitted by shardcost calibrate",
        source=f"shardcost calibrate {Path(path).name} on {base.name}: "
        + "; ".join(_summary(r.coefficients) for r in reports),
    )
    return Calibration(base, fitted, str(path), tuple(reports), folds, hold_out_half)


def _link(hw: Hardware, group: str) -> float:
    """GB/s of the link a linear class runs over: the interconnect, or the host link."""
    if group == COLLECTIVE:
        return float(hw.interconnect_bandwidth_gb_s)
    return float(hw.host_link_bandwidth_gb_s or 0)


def _summary(c: Coefficients) -> str:
    parts = []
    if c.compute_efficiency is not None:
        parts.append(f"compute {c.compute_efficiency:.3g}")
    if c.memory_efficiency is not None:
        parts.append(
            f"{'link' if c.compute_efficiency is None else 'memory'} {c.memory_efficiency:.3g}"
        )
    parts.append(f"latency {c.latency_us:.3g} µs")
    return f"{_words(c.group)} from {c.rows} rows: " + ", ".join(parts)


def _fraction(x: float) -> Fraction:
    return Fraction(x).limit_denominator(10**9)


def _apply(hw: Hardware, c: Coefficients) -> Hardware:
    """``hw`` with a class's fitted figures in place."""
    if c.group == COLLECTIVE:
        assert c.memory_efficiency is not None
        return replace(
            hw,
            interconnect_latency_us=_fraction(c.latency_us),
            link_efficiency=min(Fraction(1), _fraction(c.memory_efficiency)),
        )
    if c.group in ("pinned", "pageable"):
        assert c.memory_efficiency is not None
        return replace(
            hw,
            **{
                f"{c.group}_efficiency": min(Fraction(1), _fraction(c.memory_efficiency)),
                f"{c.group}_latency_us": _fraction(c.latency_us),
            },
        )
    assert c.group in KERNEL_CLASSES
    assert c.compute_efficiency is not None and c.memory_efficiency is not None
    return replace(
        hw,
        **{
            f"{c.group}_compute_efficiency": min(Fraction(1), _fraction(c.compute_efficiency)),
            f"{c.group}_memory_efficiency": min(Fraction(1), _fraction(c.memory_efficiency)),
            f"{c.group}_latency_us": _fraction(c.latency_us),
        },
    )


def hardware_toml(hw: Hardware) -> str:
    """``hw`` as a hardware TOML file that ``--hardware FILE.toml`` reads back."""
    lines = [
        "# Written by shardcost calibrate: the base chip's figures and the fitted ones.",
        "[[accelerator]]",
        f"name = {json.dumps(hw.name)}",
    ]
    for f in FIELDS:
        value = getattr(hw, f.name)
        if value is None:
            continue
        if isinstance(value, bool):
            lines.append(f"{f.name} = {'true' if value else 'false'}")
        else:
            lines.append(
                f"{f.name} = {repr(float(value)) if not float(value).is_integer() else int(value)}"
            )
    lines.append(f"description = {json.dumps(hw.description)}")
    lines.append(f"source = {json.dumps(hw.source)}")
    return "\n".join(lines) + "\n"
