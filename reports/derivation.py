"""What a derivation report shows, computed from a Result: the templates only lay it out.

Every number here comes from the same derivation steps that metrics() evaluates, so a
report cannot disagree with the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

import sympy

from shardcost.errors import InternalError
from shardcost.formulas import Result
from shardcost.formulas.conventions import BY_NAME as CONVENTIONS_BY_NAME
from shardcost.formulas.hardware import NUMERIC_FIELDS, SUPPORTS_OVERLAP
from shardcost.formulas.ragged import LENGTHS, REQUEST, ragged_expression
from shardcost.formulas.registry import assumptions
from shardcost.formulas.timing import ASSUMPTIONS as TIMING_ASSUMPTIONS
from shardcost.formulas.timing import OVERLAP
from shardcost.symbolic import PER_CHIP, Derivation, closed_form
from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS_BY_NAME
from shardcost.symbolic.dimensions import B, S_past

from .latex import formula, latex_names, significant, with_numbers
from .text import inline_math

SECTION_TITLES = {
    "derived": "Derived values",
    "flops": "FLOPs",
    "weights": "Weight memory",
    "activations": "Activation memory",
    "kv_cache": "KV cache",
    "communication": "Communication",
    "timing": "Timing",
}

METRIC_LABELS = {
    "flops": "FLOPs",
    "weight_memory": "weight memory (bytes)",
    "activation_memory": "activation memory (bytes)",
    "kv_cache": "KV cache (bytes)",
}


def text_value(value: object) -> str:
    """A value as the seeds write it: integers with thousands separators."""
    if isinstance(value, sympy.Basic):
        value = Fraction(int(value.p), int(value.q)) if value.is_Rational else float(value)
    if isinstance(value, Fraction) and value.denominator == 1:
        value = int(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (float, Fraction)):
        return significant(float(value))
    return str(value)


def cell(text: object) -> str:
    """Text safe inside a Markdown table cell: no pipe splits it, no newline ends it."""
    return str(text).replace("|", r"\|").replace("\n", " ")


@dataclass(frozen=True)
class Line:
    """One derivation step as a report shows it."""

    key: str
    label: str
    symbol: str  # LaTeX
    formula: str  # LaTeX, in symbols
    numbers: str  # LaTeX, the same formula with values in ("" when it is just a number)
    result: str  # the value with thousands separators
    unit: str
    note: str


@dataclass(frozen=True)
class Section:
    """A titled group of derivation lines."""

    title: str
    lines: tuple[Line, ...]


def sections(result: Result) -> tuple[Section, ...]:
    """Every derivation step, grouped by section, with formula, numbers and result.

    In a ragged batch a step with one value per request lists them, and a step summed over
    the requests is written as the sum it is.
    """
    derivation, values = result.derivation, result.values
    known = {s: v for s, v in values.items() if v is not None}
    marks = _request_marks(result)
    grouped: dict[str, list[Line]] = {}
    for step in derivation.steps:
        if step.section == "timing" and step.key == "arithmetic_intensity":
            continue  # stated in the results, not a step of the time
        value = values[step.symbol]
        shown = formula(step.expr, derivation, {})
        if value is None:  # one value per request
            numbers = with_numbers(step.expr, derivation, known, marks)
            result_text = "per request: " + _listed(
                result.ragged.request_values(step.key, derivation)  # type: ignore[union-attr]
            )
        elif marks and step.expr.free_symbols & marks.keys():
            shown, numbers = _summed(
                step.expr, derivation, known, marks, len(result.ragged.lengths)
            )  # type: ignore[union-attr]
            result_text = text_value(value)
        else:
            numbers = with_numbers(step.expr, derivation, known) if step.expr.free_symbols else ""
            result_text = text_value(value)
        grouped.setdefault(step.section, []).append(
            Line(
                step.key,
                step.label,
                derivation.latex_names[step.symbol],
                shown,
                numbers,
                result_text,
                step.unit,
                step.note,
            )
        )
    return tuple(
        Section(SECTION_TITLES[name], tuple(lines))
        for name in SECTION_TITLES
        if (lines := grouped.get(name))
    )


def _request_marks(result: Result) -> dict[sympy.Symbol, str]:
    """LaTeX for each value that differs per request in a ragged batch: request i's own."""
    if result.ragged is None:
        return {}
    names = latex_names(result.derivation)
    per_request = [s for s, v in result.values.items() if v is None] + [S_past]
    return {s: f"{{{names[s]}}}^{{(i)}}" for s in per_request}


def _summed(
    expr: sympy.Expr,
    derivation: Derivation,
    known: dict[sympy.Symbol, sympy.Expr],
    marks: dict[sympy.Symbol, str],
    requests: int,
) -> tuple[str, str]:
    """A step of a ragged batch as a sum over its requests: formula and numbers."""
    slope = sympy.diff(expr, B)
    if expr.xreplace({B: sympy.S.Zero}) != 0 or B in slope.free_symbols:
        raise InternalError(f"{expr} is not B times a per-request amount")
    head = r"\sum_{i=1}^{%s} "
    shown = head % latex_names(derivation)[B] + formula(slope, derivation, marks)
    numbers = head % requests + with_numbers(slope, derivation, known, marks)
    return shown, numbers


def _listed(values: tuple[object, ...], limit: int = 8) -> str:
    """Up to ``limit`` values, then how many more."""
    shown = ", ".join(str(v) if isinstance(v, int) else text_value(v) for v in values[:limit])
    more = len(values) - limit
    return shown + (f", … ({more} more)" if more > 0 else "")


def ragged_batch(result: Result) -> dict[str, object] | None:
    """The ragged-batch section: the lengths, the sums over requests as formulas, and what
    a batch × longest model would charge instead."""
    batch = result.ragged
    if batch is None:
        return None
    cost = result.inputs.cost
    derivation = cost.derivation
    own = sympy.Symbol("S_past_i", positive=True, integer=True)  # request i's past length
    names = latex_names(derivation) | {own: r"{S_{\mathrm{past}}}^{(i)}"}
    sums = []
    for label, expr in (
        ("flops_per_chip", cost.per_chip["flops"]),
        ("kv_cache_per_chip", cost.per_chip["kv_cache"]),
        ("communication_bytes", cost.metrics["communication_bytes"]),
    ):
        summed = ragged_expression(closed_form(expr)).xreplace({LENGTHS[REQUEST]: own})
        if summed.has(own):
            sums.append((label, formula(summed, derivation, names)))
    ours, longest = asdict(result.metrics), asdict(batch.at_longest)
    rows = [
        (name, text_value(ours[name]), text_value(longest[name]), _times(longest[name], ours[name]))
        for name in ("flops_per_chip", "kv_cache_per_chip", "communication_bytes")
    ]
    if result.timing is not None and batch.at_longest_timing is not None:
        for name in ("load_time_ms", "wall_clock_time_ms"):
            a, b = getattr(result.timing, name), getattr(batch.at_longest_timing, name)
            rows.append((name, significant(a), significant(b), _times(b, a)))
    return {
        "layer": result.inputs.layout.layer,
        "requests": text_value(len(batch.lengths)),
        "lengths": _listed(batch.lengths, 16),
        "mean": text_value(batch.mean),
        "longest": text_value(batch.longest),
        "ratio": significant(float(batch.max_over_mean), 4),
        "sums": tuple(sums),
        "rows": tuple(rows),
    }


def _times(longest: float, ours: float) -> str:
    if ours == longest:
        return "1"
    return "—" if ours == 0 else significant(longest / ours, 4) + "×"


def parameters(result: Result) -> tuple[tuple[str, str, str, str, str], ...]:
    """(key, symbol, value, unit, meaning) for every dimension and hardware field in force."""
    rows = []
    for name, value in result.inputs.dims.items():
        dim = DIMENSIONS_BY_NAME[name]
        shown = (
            "[" + _listed(tuple(str(n) for n in value), 16) + "]"
            if isinstance(value, tuple)
            else text_value(value)
        )
        rows.append((name, inline_math(dim.latex), shown, dim.unit, dim.meaning))
    hw = result.inputs.hardware
    if hw is not None:
        for field in (*NUMERIC_FIELDS, SUPPORTS_OVERLAP):
            symbol = inline_math(field.latex) if field.latex else ""
            rows.append(
                (field.name, symbol, text_value(getattr(hw, field.name)), field.unit, field.meaning)
            )
    return tuple(rows)


def notation(result: Result) -> tuple[tuple[str, str, str, str], ...]:
    """(symbol, name, meaning, unit) for every dimension, derived value and hardware field used."""
    rows = [
        (inline_math(DIMENSIONS_BY_NAME[name].latex), name, dim.meaning, dim.unit)
        for name in result.inputs.dims
        if (dim := DIMENSIONS_BY_NAME[name])
    ]
    derivation = result.derivation
    rows += [
        (inline_math(derivation.latex_names[s.symbol]), s.key, s.label, s.unit)
        for s in derivation.steps
        if s.section == "derived"
    ]
    if result.inputs.hardware is not None:
        rows += [(inline_math(f.latex), f.name, f.meaning, f.unit) for f in NUMERIC_FIELDS]
    return tuple(rows)


def stated_assumptions(result: Result) -> tuple[str, ...]:
    """Every convention in force in words, then the layer's and the timing model's choices."""
    inputs = result.inputs
    conventions = inputs.conventions.as_dict()
    lines = [
        f"`{name}={text_value(conventions[name])}`: "
        f"{CONVENTIONS_BY_NAME[name].describe(conventions[name])}."
        for name in inputs.applicable
    ]
    lines += list(assumptions(inputs.layout.layer))
    if "softmax_stat_bytes" in inputs.dims:
        lines.append(
            f"Softmax statistics (running max and sum) take softmax_stat_bytes = "
            f"{inputs.dims['softmax_stat_bytes']} bytes each."
        )
    lines += [f"{note[0].upper()}{note[1:]}." for note in result.notes]
    if inputs.hardware is not None:
        lines += [*TIMING_ASSUMPTIONS, OVERLAP[inputs.hardware.supports_overlap]]
    return tuple(lines)


def closed_forms(result: Result) -> tuple[tuple[str, str], ...]:
    """(quantity, LaTeX) of each per-chip metric and collective, simplified and factored."""
    cost = result.inputs.cost
    derivation = cost.derivation
    rows = [("chips", formula(cost.chips, derivation, {}))]
    for name in PER_CHIP:
        rows.append((f"{name}_per_chip", formula(closed_form(cost.per_chip[name]), derivation, {})))
    for name, expr in cost.collective_bytes.items():
        rows.append((name, formula(closed_form(expr), derivation, {})))
    rows.append(
        (
            "communication_bytes",
            formula(closed_form(cost.metrics["communication_bytes"]), derivation, {}),
        )
    )
    return tuple(rows)


def expected_results(result: Result) -> dict[str, tuple[tuple[str, str], ...]]:
    """The results block: per-chip, aggregate, communication and (with hardware) timing."""
    metrics = result.to_dict()["metrics"]
    out = {
        "Per-chip metrics": tuple(
            (f"{name}_per_chip", text_value(metrics[f"{name}_per_chip"])) for name in PER_CHIP
        ),
        "Aggregate metrics": (
            ("chips", text_value(result.chips)),
            *((f"{name}_total", text_value(metrics[f"{name}_total"])) for name in PER_CHIP),
        ),
        "Communication (payload bytes per chip)": (
            *((name, text_value(v)) for name, v in result.collectives.items()),
            ("communication_bytes", text_value(metrics["communication_bytes"])),
        ),
    }
    if result.timing is not None:
        out["Timing (ms)"] = (
            *((name, text_value(v)) for name, v in result.to_dict()["timing"].items()),
            ("arithmetic_intensity (FLOPs/byte)", text_value(result.arithmetic_intensity)),
        )
    return out


def _ratio(a: float, b: float) -> str:
    r = a / b
    return f"{round(r):,}" if r >= 100 else significant(r, 3)


def takeaway(result: Result) -> str:
    """One sentence, computed from the numbers: what bounds this case and by how much."""
    if result.timing is None or result.model is None:
        return _intensity_takeaway(result)
    values = result.values
    times = result.model.times
    derivation = result.derivation
    compute = float(values[times["compute_time_ms"]])
    load = float(values[times["load_time_ms"]])
    comm = float(values[times["communication_time_ms"]])
    wall = float(values[times["wall_clock_time_ms"]])
    kv = (
        float(values[derivation.step("kv_load_time").symbol])
        if derivation.has("kv_load_time")
        else 0.0
    )
    terms = sorted(
        [("compute", compute), ("memory", load), ("communication", comm)],
        key=lambda t: -t[1],
    )
    (bound, top), (second, runner_up) = terms[0], terms[1]
    what = {
        "compute": "compute",
        "communication": "communication",
        "memory": "memory, mostly reading the KV cache"
        if kv > load / 2
        else "memory, mostly loading weights",
    }[bound]
    if bound == "memory" and kv > 0:
        what += f" ({significant(100 * kv / load, 3)}% of the load time is the KV cache)"
    if runner_up == 0:
        tail = "nothing else takes time"
    else:
        ratio = _ratio(top, runner_up)
        tail = f"{ratio}× the next largest term ({second}, {significant(runner_up)} ms)"
    return (
        f"Bound by {what}: {significant(top)} ms, {tail}; "
        f"wall clock {significant(wall)} ms on {result.inputs.hardware.name}."  # type: ignore[union-attr]
    )


def _intensity_takeaway(result: Result) -> str:
    loaded = result.loaded_bytes_per_chip
    intensity = result.arithmetic_intensity
    comm = result.metrics.communication_bytes
    sentence = (
        f"Arithmetic intensity {text_value(intensity)} FLOPs per byte loaded "
        f"({text_value(result.metrics.flops_per_chip)} FLOPs over {text_value(loaded)} bytes): "
        f"compute-bound where peak FLOP/s ÷ memory bandwidth is below {text_value(intensity)}, "
        "memory-bound above it"
    )
    if comm:
        share = significant(100 * comm / loaded, 3)
        sentence += (
            f"; each chip also sends {text_value(comm)} bytes, {share}% of the bytes it loads"
        )
    return sentence + "."
