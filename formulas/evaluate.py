"""Evaluating a cost at checked inputs: exact integer metrics, float timings, notes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from fractions import Fraction
from functools import cache, cached_property
from typing import Any

import sympy

from shardcost.errors import InputError, InternalError
from shardcost.reports.text import UNITS
from shardcost.symbolic import METRICS, Derivation
from shardcost.symbolic.cost import PER_CHIP, Cost
from shardcost.symbolic.dimensions import PAST_SEQ_LEN
from shardcost.symbolic.numbers import count, ratio
from shardcost.symbolic.trace import Section, Split, Step

from . import ragged
from .conventions import Phase
from .inputs import Inputs, describe
from .timing import TIMINGS, TimingModel, timing_model

Values = Mapping[sympy.Symbol, sympy.Expr | None]  # each step's; None: one per request
Requests = Sequence[Mapping[sympy.Symbol, sympy.Expr]]  # each request's, as a batch of one


# What the numbers of ``Result.to_dict`` count (stated in every JSON object).


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
class RaggedBatch:
    """A decode batch whose requests have their own past lengths, and what a batch × longest
    model would charge for it instead."""

    lengths: tuple[int, ...]
    kinds: Mapping[sympy.Symbol, ragged.StepKind]  # how each step adds up over the requests
    # each request as a batch of one: a ragged.Requests computes them when first read
    requests: Sequence[Mapping[sympy.Symbol, sympy.Expr]]
    at_longest: Metrics  # every request charged the longest past length
    at_longest_timing: Timing | None

    @property
    def mean(self) -> Fraction:
        """The mean past length."""
        return ragged.mean(self.lengths)

    @property
    def longest(self) -> int:
        """The longest past length."""
        return max(self.lengths)

    @property
    def max_over_mean(self) -> Fraction:
        """How much a batch × longest model over-counts the lengths: max / mean."""
        return self.longest / self.mean

    def request_values(self, key: str, derivation: Derivation) -> tuple[int | Fraction, ...]:
        """One step's exact value for each request on its own."""
        symbol = derivation.step(key).symbol
        if isinstance(self.requests, ragged.Requests):
            return self.requests.column(symbol)
        return tuple(_exact(r[symbol]) for r in self.requests)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the lengths, their mean and max, and the batch × longest metrics."""
        out: dict[str, Any] = {
            "lengths": list(self.lengths),
            "mean": float(self.mean),
            "max": self.longest,
            "max_over_mean": float(self.max_over_mean),
            "metrics_at_max": asdict(self.at_longest),
        }
        if self.at_longest_timing is not None:
            out["timing_at_max"] = asdict(self.at_longest_timing)
        return out


def _exact(value: sympy.Expr) -> int | Fraction:
    exact = ratio(value, {})
    return int(exact) if exact.denominator == 1 else exact


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
    # each step's exact value; None for a step with one value per request (a ragged batch)
    values: Mapping[sympy.Symbol, sympy.Expr | None]
    model: TimingModel | None  # the timing steps' names, when hardware is given
    ragged: RaggedBatch | None = None  # a decode batch with one past length per request

    def step_value(self, key: str) -> int | Fraction:
        """The exact value of one derivation step: an int for counts, else a Fraction."""
        value = self.values[self.derivation.step(key).symbol]
        if value is None:
            raise InputError(
                f"step {key} has one value per request in this ragged batch; "
                "result.ragged.request_values(key, result.derivation) gives them"
            )
        return _exact(value)

    @property
    def loaded_bytes_per_chip(self) -> int:
        """Bytes a chip loads from memory: its weights, and its KV cache in decode."""
        m = self.metrics
        decode = self.inputs.phase is Phase.DECODE
        reads = self.inputs.cost.weight_reads
        weights = m.weight_memory_per_chip if reads is None else int(self.values[reads])  # type: ignore[arg-type]
        return weights + (m.kv_cache_per_chip if decode else 0)

    @cached_property
    def arithmetic_intensity(self) -> Fraction:
        """FLOPs per byte loaded (weights, plus the KV cache in decode)."""
        return Fraction(self.metrics.flops_per_chip, self.loaded_bytes_per_chip)

    def collective_list(self) -> list[dict[str, Any]]:
        """Each collective as the JSON gives it: name, kind, group, bytes per chip."""
        return [
            {
                "name": c.name,
                "kind": str(c.kind),
                "group": str(c.group),
                "bytes_per_chip": self.collectives[c.name],
            }
            for c in self.inputs.cost.collectives
        ]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of DESIGN.md: layout, phase, params, metrics, timing (with hardware)
        and, for a ragged batch, ``ragged``."""
        out: dict[str, Any] = {
            "layout": self.inputs.layout.name,
            "layer": self.inputs.layout.layer,
            "phase": str(self.inputs.phase),
            "params": self.inputs.params(),
            "chips": self.chips,
            "metrics": asdict(self.metrics),
            "collectives": self.collective_list(),
            "notes": list(self.notes),
        }
        if self.timing is not None:
            out["timing"] = asdict(self.timing)
        if self.ragged is not None:
            out["ragged"] = self.ragged.to_dict()
        out["units"] = UNITS
        return out


def evaluate(inputs: Inputs, *, each_request: bool = False) -> Result:
    """Evaluate ``inputs.cost`` exactly at ``inputs``, one derivation step at a time.

    A ragged decode batch (one past length per request) is charged per request: every
    step that grows with the batch is the sum of its value for each request alone,
    computed once per distinct length on exact integer arrays (``ragged.evaluate``).
    ``each_request``: evaluate every request alone with SymPy instead, the definition
    (slow; the reference the tests and benches/model.py hold the array path to).
    """
    cost, subs, hw = inputs.cost, inputs.substitution(), inputs.hardware
    model = (
        timing_model(cost, inputs.phase, hw.supports_overlap, inputs.conventions)
        if hw is not None
        else None
    )
    derivation = model.derivation if model else cost.derivation
    lengths = inputs.ragged
    values: Values
    requests: Requests = ()
    again: Callable[[Mapping[sympy.Symbol, sympy.Expr]], Values] | None = None
    if lengths is None:
        values = derivation.values(subs)
    else:
        ragged_values = ragged.evaluate_each if each_request else ragged.evaluate
        batch = ragged_values(_with_totals(derivation, cost), subs, lengths)
        values, requests = batch.values, batch.requests

        def again(pinned: Mapping[sympy.Symbol, sympy.Expr]) -> Values:
            return ragged_values(_pinned(derivation, pinned), subs, lengths).values

    chips = count(cost.chips, subs)
    metrics, collectives, rough = _metrics(inputs, values, chips, again)
    timing = None
    if model is not None:
        timing = Timing(*(float(ratio(values[symbol], {})) for symbol in model.times.values()))
    batch_info = None
    if lengths is None:
        notes = _uneven_notes(cost.derivation, values)  # type: ignore[arg-type]
    else:
        notes = _ragged_notes(cost.derivation, values, requests)
        if notes and rough:
            notes += (RAGGED_TOTALS,)
        batch_info = _ragged_batch(inputs, derivation, requests, lengths)
    return Result(
        inputs, chips, metrics, collectives, timing, notes, derivation, values, model, batch_info
    )


def _metrics(
    inputs: Inputs, values: Values, chips: int, again: Again | None
) -> tuple[Metrics, dict[str, int], bool]:
    """The nine metrics and each collective's payload, each a whole number of at least 0,
    and whether a total had to be the busiest chip × chips (``_totals``)."""
    cost = inputs.cost
    per_chip = (cost.flops, cost.weight_bytes, cost.activation_bytes, cost.kv_cache_bytes)
    per_chip_values = [_whole(inputs, values, symbol) for symbol in per_chip]
    totals, rough = _totals(inputs, values, per_chip_values, chips, again)
    metrics = Metrics(*per_chip_values, *totals, _whole(inputs, values, cost.communication_bytes))
    return metrics, {c.name: _whole(inputs, values, c.symbol) for c in cost.collectives}, rough


def _totals(
    inputs: Inputs, values: Values, per_chip: list[int], chips: int, again: Again | None
) -> tuple[list[int], bool]:
    """The four totals over every chip (``Cost.totals``: uneven splits counted rank class
    by rank class). A ragged batch adds them up request by request where they are such
    sums (``_with_totals``), else evaluates each rank class as a batch of its own
    (``_by_class``: a split of the batch's tokens); where neither can, it keeps the
    busiest chip × chips (``RAGGED_TOTALS``, in its notes when a split is uneven)."""
    cost = inputs.cost
    steps = (cost.flops, cost.weight_bytes, cost.activation_bytes, cost.kv_cache_bytes)
    out, rough = [], False
    for (name, expr), step, busiest in zip(cost.totals.items(), steps, per_chip, strict=True):
        if again is None:  # one batch, not ragged
            value = sympy.sympify(expr).xreplace(values)  # type: ignore[arg-type]
        else:
            value = values.get(_TOTAL_SYMBOLS[name])
            if value is None:
                value = _by_class(cost, step, values, again)
            if value is None:
                out.append(busiest * chips)
                rough = True
                continue
        if not (value.is_Integer and 0 <= value <= busiest * chips):
            raise InternalError(f"{name} over all chips is {value} here, not a whole number")
        out.append(int(value))
    return out, rough


_TOTAL_SYMBOLS = {name: sympy.Symbol(f"{name}_over_chips") for name in PER_CHIP}
Again = Callable[[Mapping[sympy.Symbol, sympy.Expr]], Values]  # the batch, steps pinned


def _by_class(cost: Cost, step: sympy.Symbol, values: Values, again: Again) -> sympy.Expr | None:
    """``step`` over every chip of a ragged batch, each rank class (``Cost.rank_classes``)
    evaluated as the batch with its smaller shares pinned; None where a class's size
    differs request by request (a split of a per-request length) or a pass has no value."""
    found = cost.rank_classes(step)
    if found is None:
        return None
    alike, classes = found
    known = {s: v for s, v in values.items() if v is not None}
    total = sympy.S.Zero
    for ranks, pinned in classes:
        n = sympy.sympify(ranks).xreplace(known)
        if not n.is_Integer:
            return None
        if n == 0:
            continue
        try:
            share = values[step] if not pinned else again(pinned).get(step)
        except InputError:  # the pinned batch has no single value for a step
            return None
        if share is None:
            return None
        total += n * share
    value = sympy.sympify(alike).xreplace(known) * total
    return value if value.is_Integer else None


def _pinned(derivation: Derivation, pinned: Mapping[sympy.Symbol, sympy.Expr]) -> Derivation:
    """``derivation`` with the steps in ``pinned`` defined as given instead."""
    steps = tuple(
        replace(step, expr=pinned[step.symbol]) if step.symbol in pinned else step
        for step in derivation.steps
    )
    return replace(derivation, steps=steps)


@cache
def _with_totals(derivation: Derivation, cost: Cost) -> Derivation:
    """``derivation`` with a last step for each total a ragged batch adds up request by
    request (``ragged.summable``), so that it is evaluated with the rest."""
    steps = tuple(
        Step(_TOTAL_SYMBOLS[name], f"{name}_total", Section.DERIVED, name, expr, name, "")
        for name, expr in cost.totals.items()
        if ragged.summable(derivation.resolve(expr))
    )
    return replace(derivation, steps=(*derivation.steps, *steps))


# In a ragged batch a split of a per-request length falls on other ranks request by request.
RAGGED_TOTALS = (
    "totals in this ragged batch are the busiest chip × chips (at most that much over) where "
    "a per-request length splits unevenly; per-chip figures are exact"
)


def _whole(inputs: Inputs, values: Values, symbol: sympy.Symbol) -> int:
    """A step's value as an int; InputError when it is not a whole number of at least 0."""
    value = values[symbol]
    if value is not None and value.is_Integer and value >= 0:
        return int(value)
    step = inputs.cost.derivation.step_of(symbol)
    where = f"{step.label} of layout {inputs.layout.name!r} is {value} here"
    if value is None or not value.is_Integer:
        raise InputError(
            f"{where}, not a whole number: its formula divides unevenly (ceil() or floor() "
            "make it whole)"
        )
    # a user layout checked only at points may still go below zero
    raise InputError(f"{where}, below zero: a count or a payload is zero or more")


def _ragged_notes(derivation: Derivation, values: Values, requests: Requests) -> tuple[str, ...]:
    """The uneven splits of a ragged batch, one note per split: its numbers where every
    request that splits unevenly splits alike, else how many requests do (a batch of
    10,000 lengths gives a few notes, not thousands); in the order of their first
    requests."""
    known = {k: v for k, v in values.items() if v is not None}
    lone = _lone_notes(derivation, {**requests[0], **known}) if len(requests) else ()
    if isinstance(requests, ragged.Requests):
        try:
            found = _distinct_splits(derivation, known, requests)
            return (*_summarised(derivation, found, len(requests)), *lone)
        except NotImplementedError:
            pass  # request by request below
    found: list[_Uneven] = []
    for i, request in enumerate(requests):
        given = {**request, **known}
        for k, split in enumerate(derivation.splits):
            total, parts = count(split.total, given), count(split.parts, given)
            if (split.replicates and total < parts) or total % parts:
                found.append((i, k, total, parts, 1))
    return (*_summarised(derivation, found, len(requests)), *lone)


# An uneven split in a ragged batch: (its first request's place, the split's index,
# total, parts, how many requests have these numbers)
_Uneven = tuple[int, int, int, int, int]


def _distinct_splits(
    derivation: Derivation, known: Mapping[sympy.Symbol, sympy.Expr], requests: ragged.Requests
) -> list[_Uneven]:
    """Each split's two sides evaluated over the distinct lengths at once: where they
    split unevenly."""
    import numpy as np

    rank, counts = requests.distinct.rank, requests.distinct.counts
    found: list[_Uneven] = []
    for k, split in enumerate(derivation.splits):
        total, parts = (requests.counts(side, known) for side in (split.total, split.parts))
        same = not (np.ndim(total) or np.ndim(parts))  # one value for every request
        total, parts = np.broadcast_arrays(np.atleast_1d(total), np.atleast_1d(parts))
        flagged = np.asarray(total % parts != 0, dtype=bool)
        if split.replicates:
            flagged |= np.asarray(total < parts, dtype=bool)
        for row in np.flatnonzero(flagged).tolist():
            place, n = (0, len(requests)) if same else (int(rank[row]), int(counts[row]))
            found.append((place, k, int(total[row]), int(parts[row]), n))
    return found


def _summarised(derivation: Derivation, found: list[_Uneven], batch: int) -> list[str]:
    """One note per split and kind (``reports.text.ragged_split_notes``, which cached
    programs call too)."""
    from shardcost.reports.text import ragged_split_notes

    splits = [(*_names(s, derivation), s.what, s.replicates) for s in derivation.splits]
    return ragged_split_notes(found, splits, batch)


def _ragged_batch(
    inputs: Inputs, derivation: Derivation, requests: Requests, lengths: tuple[int, ...]
) -> RaggedBatch:
    """The batch's lengths and requests, and what batch × longest would charge for it."""
    longest = evaluate(replace(inputs, dims={**inputs.dims, PAST_SEQ_LEN.name: max(lengths)}))
    kinds = ragged.step_kinds(derivation)
    return RaggedBatch(lengths, kinds, requests, longest.metrics, longest.timing)


def _uneven_notes(
    derivation: Derivation, values: Mapping[sympy.Symbol, sympy.Expr]
) -> tuple[str, ...]:

    notes = []
    for split in derivation.splits:
        total, parts = count(split.total, values), count(split.parts, values)
        if (split.replicates and total < parts) or total % parts:
            notes.append(_split_note(split, _names(split, derivation), total, parts))
    return (*notes, *_lone_notes(derivation, values))


def _lone_notes(
    derivation: Derivation, values: Mapping[sympy.Symbol, sympy.Expr]
) -> tuple[str, ...]:
    """The notes of the steps one rank holds (``symbolic.trace.Lone``)."""
    from shardcost.reports.text import lone_note

    notes = []
    for lone in derivation.lone:
        note = lone_note(lone.what, describe(lone.parts, derivation), count(lone.parts, values))
        if note is not None:
            notes.append(note)
    return tuple(notes)


def _names(split: Split, derivation: Derivation) -> tuple[str, str]:
    """How a note names a split's two sides."""
    return describe(split.total, derivation), describe(split.parts, derivation)


def _split_note(split: Split, names: tuple[str, str], total: int, parts: int) -> str | None:
    """What a note says of ``split`` at these numbers (``names``: its two sides'), or None
    when it divides evenly."""
    from shardcost.reports.text import uneven_note

    return uneven_note(names[0], total, names[1], parts, split.what, split.replicates)
