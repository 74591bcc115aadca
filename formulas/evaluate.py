"""Evaluating a cost at checked inputs: exact integer metrics, float timings, notes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from functools import cached_property
from typing import Any

import sympy

from shardcost.errors import InputError
from shardcost.symbolic import METRICS, Derivation
from shardcost.symbolic.numbers import count, ratio

from .inputs import Inputs, describe
from .timing import TIMINGS, TimingModel, timing_model


@dataclass(frozen=True)
class Metrics:
    """The nine metrics of DESIGN.md, exact integers."""

    flops_per_chip: int
    weight_memory_per_chip: int
    activation_memory_per_chip: int
    kv_cache_per_chip: int
    flops_total: int
    weight_memory_total: int
    activation_memory_total: int
    kv_cache_total: int
    communication_bytes: int


@dataclass(frozen=True)
class Timing:
    """The four timings of seed 000, in milliseconds."""

    compute_time_ms: float
    load_time_ms: float
    communication_time_ms: float
    wall_clock_time_ms: float


assert tuple(f.name for f in fields(Metrics)) == METRICS
assert tuple(f.name for f in fields(Timing)) == TIMINGS


@dataclass(frozen=True)
class Result:
    """One layout evaluated at one set of inputs."""

    inputs: Inputs
    chips: int
    metrics: Metrics
    collectives: dict[str, int]  # payload bytes per collective
    timing: Timing | None
    notes: tuple[str, ...]  # e.g. uneven splits: per-chip metrics describe the busiest chip
    derivation: Derivation  # every step behind it (with timing steps when hardware is given)
    values: Mapping[sympy.Symbol, sympy.Expr]  # each step's exact value
    model: TimingModel | None  # the timing steps' names, when hardware is given

    def step_value(self, key: str) -> int | Fraction:
        """The exact value of one derivation step: an int for counts, else a Fraction."""
        value = ratio(self.values[self.derivation.step(key).symbol], {})
        return int(value) if value.denominator == 1 else value

    @cached_property
    def arithmetic_intensity(self) -> Fraction:
        """FLOPs per byte loaded (weights, plus the KV cache in decode)."""
        model = timing_model(self.inputs.cost, self.inputs.phase, False)
        values = model.derivation.values(self.values, until="arithmetic_intensity")
        return ratio(values[model.arithmetic_intensity], {})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of DESIGN.md: layout, phase, params, metrics, timing (with hardware)."""
        out: dict[str, Any] = {
            "layout": self.inputs.layout.name,
            "phase": str(self.inputs.phase),
            "params": self.inputs.params(),
            "metrics": asdict(self.metrics),
        }
        if self.timing is not None:
            out["timing"] = asdict(self.timing)
        return out


def evaluate(inputs: Inputs) -> Result:
    """Evaluate ``inputs.cost`` exactly at ``inputs``, one derivation step at a time."""
    cost = inputs.cost
    subs = inputs.substitution()
    hw = inputs.hardware
    model = timing_model(cost, inputs.phase, hw.supports_overlap) if hw is not None else None
    derivation = model.derivation if model else cost.derivation
    values = derivation.values(subs)
    chips = count(cost.chips, subs)
    per_chip = (cost.flops, cost.weight_bytes, cost.activation_bytes, cost.kv_cache_bytes)

    def whole(symbol: sympy.Symbol) -> int:
        value = values[symbol]
        if not value.is_Integer:
            step = cost.derivation.step_of(symbol)
            raise InputError(
                f"{step.label} of layout {inputs.layout.name!r} is {value} here, not a whole "
                "number: its formula divides unevenly (ceil() or floor() make it whole)"
            )
        return int(value)

    per_chip_values = [whole(symbol) for symbol in per_chip]
    metrics = Metrics(
        *per_chip_values,
        *(v * chips for v in per_chip_values),
        whole(cost.communication_bytes),
    )
    collectives = {c.name: whole(c.symbol) for c in cost.collectives}
    timing = None
    if model is not None:
        timing = Timing(*(float(ratio(values[symbol], {})) for symbol in model.times.values()))
    notes = _uneven_notes(cost.derivation, values)
    return Result(inputs, chips, metrics, collectives, timing, notes, derivation, values, model)


def _uneven_notes(
    derivation: Derivation, values: Mapping[sympy.Symbol, sympy.Expr]
) -> tuple[str, ...]:
    notes = []
    for split in derivation.splits:
        total = count(split.total, values)
        parts = count(split.parts, values)
        if split.replicates and total < parts:
            notes.append(
                f"{describe(split.total, derivation)}={total} is less than "
                f"{describe(split.parts, derivation)}={parts}: each of the {total} "
                f"{split.what} is replicated on {parts // total} ranks (one per chip)"
            )
        elif total % parts:
            notes.append(
                f"{describe(split.total, derivation)}={total} does not divide evenly by "
                f"{describe(split.parts, derivation)}={parts}: per-chip metrics describe the "
                f"busiest chip ({split.what}: ceil({total}/{parts}) = {-(-total // parts)})"
            )
    return tuple(notes)
