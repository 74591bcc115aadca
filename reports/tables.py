"""Plain-text and Markdown tables of evaluated results (presentation only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from shardcost.formulas import Layout, Result
from shardcost.formulas.comparison import Comparison, chips_text
from shardcost.formulas.conventions import static_default
from shardcost.formulas.kv_tier import KVTier
from shardcost.formulas.model import ModelResult
from shardcost.kv_tiers import tier_text

from .text import (
    Table,
    chip_groups_text,
    count,
    heading,
    milliseconds,
    render_comparison,
    render_model,
    render_result,
    value,  # noqa: F401 - the CLI's
)


def result_view(result: Result, fmt: str) -> dict[str, Any]:
    """What ``render_result`` shows of one evaluated layout (``reports.text``)."""
    inputs = result.inputs
    lay = inputs.layout
    params = inputs.params()
    timed = result.timing is not None and inputs.hardware is not None
    return {
        "title": f"{lay.name} — {lay.layer}, {inputs.phase}: {lay.summary}",
        "dims": [(k, v) for k, v in params.items() if k in inputs.dims],
        "convs": [
            (k, v) for k, v in params.items() if k in inputs.applicable and not static_default(k, v)
        ],
        "chips": result.chips,
        "metrics": asdict(result.metrics),
        "collectives": [
            (c.name, str(c.kind), str(c.group), result.collectives[c.name])
            for c in inputs.cost.collectives
        ],
        "timing": asdict(result.timing) if timed else None,  # type: ignore[arg-type]
        "hardware": inputs.hardware.name if timed else None,  # type: ignore[union-attr]
        "intensity": float(result.arithmetic_intensity) if timed else None,
        "extra": _ragged_lines(result, fmt) if result.ragged is not None else [],
        "notes": list(result.notes),
    }


def result_text(result: Result, fmt: str) -> str:
    """One evaluated layout: parameters, metrics, collectives, timing, notes."""
    return render_result(result_view(result, fmt), fmt)


def _ragged_lines(result: Result, fmt: str) -> list[str]:
    """A ragged batch against what a batch × longest model would charge for it."""
    batch = result.ragged
    assert batch is not None
    mean = batch.mean
    mean_text = count(int(mean)) if mean.denominator == 1 else f"{float(mean):.6g}"
    rows = [
        (
            label,
            count(getattr(result.metrics, key)),
            count(getattr(batch.at_longest, key)),
            _times(getattr(batch.at_longest, key), getattr(result.metrics, key)),
        )
        for label, key in (
            ("FLOPs per chip", "flops_per_chip"),
            ("KV-cache bytes per chip", "kv_cache_per_chip"),
            ("communication bytes", "communication_bytes"),
        )
    ]
    if result.timing is not None and batch.at_longest_timing is not None:
        ours, longest = result.timing.wall_clock_time_ms, batch.at_longest_timing.wall_clock_time_ms
        rows.append(
            ("wall_clock_time_ms", milliseconds(ours), milliseconds(longest), _times(longest, ours))
        )
    return [
        heading(
            f"ragged batch: {len(batch.lengths)} requests, mean past length {mean_text}, "
            f"longest {count(batch.longest)} (max/mean {float(batch.max_over_mean):.4g})",
            fmt,
            3,
        ),
        "",
        Table(("charged", "per request", "batch × longest", "ratio"), tuple(rows), "lrrr").render(
            fmt
        ),
    ]


def _times(longest: float, ours: float) -> str:
    if longest == ours:
        return "1"
    return "—" if ours == 0 else f"{longest / ours:.4g}×"


def layout_label(layout: Layout, degrees: Mapping[str, object]) -> str:
    """A layout's name, with its degrees when it has several: ``tp-cp (tp=2, cp=2)``."""
    if len(layout.degrees) < 2 or not all(d.name in degrees for d in layout.degrees):
        return layout.name
    split = ", ".join(f"{d.short}={degrees[d.name]}" for d in layout.degrees)
    return f"{layout.name} ({split})"


def result_label(result: Result) -> str:
    """``layout_label`` of an evaluated layout, at the degrees it was evaluated at."""
    return layout_label(result.inputs.layout, result.inputs.dims)


def comparison_title(layer: str, names: Sequence[str], chips: int | None) -> str:
    """What a comparison shows: every layout of ``layer`` or the ones named, and the budget."""
    what = f"{layer} layouts {', '.join(names)}" if names else f"every {layer} layout"
    return what + " side by side" + (f" on {chips_text(chips)} each" if chips else "")


def chip_groups_line(results: Sequence[Result], fmt: str) -> str | None:
    """The sentence that says layouts on different numbers of chips are not ranked together."""
    return chip_groups_text([r.chips for r in results], fmt)


def excluded(comparison: Comparison) -> list[tuple[str, str]]:
    """Each layout (or split) that cannot run on the budget's chips, and why."""
    return [(layout_label(e.layout, dict(e.degrees)), e.reason) for e in comparison.excluded]


def comparison_view(comparison: Comparison) -> dict[str, Any]:
    """What ``render_comparison`` shows of one phase's comparison (``reports.text``)."""
    results = comparison.results
    first = results[0].inputs
    budget = f" on {chips_text(comparison.chips)}" if comparison.chips else ""
    return {
        "heading": f"{first.layout.layer}, {first.phase}{budget}",
        "columns": [
            {
                "label": result_label(r),
                "chips": r.chips,
                "metrics": asdict(r.metrics),
                "timing": asdict(r.timing) if r.timing is not None else None,
                "notes": list(r.notes),
            }
            for r in results
        ],
        "excluded": excluded(comparison),
    }


def comparison_text(comparison: Comparison, fmt: str) -> str:
    """Every layout side by side for one phase, grouped by chip count: chips, per-chip
    metrics, communication, time; then what cannot run on the budget, and notes."""
    return render_comparison(comparison_view(comparison), fmt)


def model_text(result: ModelResult, fmt: str) -> str:
    """A whole model: its shape and parameters, each component, totals, memory, timing
    (``reports.text.render_model``, which the fast path renders with too)."""
    return render_model(result.view(), fmt)


def kv_tier_text(tier: KVTier, fmt: str) -> str:
    """Each request's cache from host memory against decode and prefill work
    (``kv_tiers.tier_text``, which the cache's path renders with too)."""
    return tier_text(tier.view(), fmt)
