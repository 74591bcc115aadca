"""Plain-text and Markdown tables of evaluated results (presentation only)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from shardcost.formulas import Result

FORMATS = ("table", "markdown")


@dataclass(frozen=True)
class Table:
    """Headers, rows of text, and each column's alignment ('l' or 'r')."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: str

    def render(self, fmt: str) -> str:
        """The table as aligned plain text (``table``) or as Markdown (``markdown``)."""
        if fmt == "markdown":
            rule = tuple("---:" if a == "r" else "---" for a in self.align)
            lines = [self.headers, rule, *self.rows]
            return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
        widths = [
            max(len(row[i]) for row in (self.headers, *self.rows)) for i in range(len(self.headers))
        ]

        def line(cells: Sequence[str]) -> str:
            padded = (
                cell.rjust(w) if a == "r" else cell.ljust(w)
                for cell, w, a in zip(cells, widths, self.align, strict=True)
            )
            return "  ".join(padded).rstrip()

        return "\n".join([line(self.headers), *(line(row) for row in self.rows)])


def count(n: int) -> str:
    """An exact count with thousands separators, as the seeds write them."""
    return f"{n:,}"


def milliseconds(x: float) -> str:
    """A time in ms with four significant digits and no exponent."""
    if x == 0:
        return "0"
    digits = max(0, 3 - math.floor(math.log10(abs(x))))
    return f"{x:.{digits}f}"


def value(v: object) -> str:
    """A parameter value as the CLI takes it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def heading(text: str, fmt: str, level: int = 2) -> str:
    """A section heading: Markdown ``##`` or an underlined line."""
    return f"{'#' * level} {text}" if fmt == "markdown" else text


def item(text: str, fmt: str) -> str:
    """A line of a list: a Markdown bullet, or the plain line."""
    return f"- {text}" if fmt == "markdown" else text


def note_line(text: str, fmt: str) -> str:
    """A note: a Markdown quote, or a plain ``note:`` line."""
    return f"> **Note:** {text}" if fmt == "markdown" else f"note: {text}"


_PER_CHIP_ROWS = (
    ("FLOPs", "flops"),
    ("weight bytes", "weight_memory"),
    ("activation bytes", "activation_memory"),
    ("KV-cache bytes", "kv_cache"),
)


def result_text(result: Result, fmt: str) -> str:
    """One evaluated layout: parameters, metrics, collectives, timing, notes."""
    inputs = result.inputs
    lay = inputs.layout
    params = inputs.params()
    dims = "  ".join(f"{k}={value(v)}" for k, v in params.items() if k in inputs.dims)
    convs = "  ".join(
        f"{k}={value(v)}" for k, v in params.items() if k in lay.conventions_for(inputs.phase)
    )
    parts = [
        heading(f"{lay.name} — {lay.layer}, {inputs.phase}: {lay.summary}", fmt, 1),
        "",
        item(f"parameters: {dims}", fmt),
    ]
    if convs:
        parts.append(item(f"conventions: {convs}", fmt))
    parts.append(item(f"chips: {result.chips}", fmt))
    metrics = result.to_dict()["metrics"]
    rows = tuple(
        (label, count(metrics[f"{key}_per_chip"]), count(metrics[f"{key}_total"]))
        for label, key in _PER_CHIP_ROWS
    )
    parts += ["", Table(("metric", "per chip", "total"), rows, "lrr").render(fmt)]
    comm_rows = tuple(
        (c.name, c.kind, str(c.group), count(result.collectives[c.name]))
        for c in inputs.cost.collectives
    )
    comm_rows += (("communication bytes", "", "", count(metrics["communication_bytes"])),)
    parts += [
        "",
        Table(("collective", "kind", "group", "bytes per chip"), comm_rows, "lllr").render(fmt),
    ]
    if result.timing is not None and inputs.hardware is not None:
        t = result.to_dict()["timing"]
        rows = tuple((name, milliseconds(ms)) for name, ms in t.items())
        rows += (
            ("arithmetic intensity (FLOPs/byte)", f"{float(result.arithmetic_intensity):.4g}"),
        )
        parts += [
            "",
            heading(f"timing on {inputs.hardware.name}", fmt, 3),
            "",
            Table(("timing", "ms"), rows, "lr").render(fmt),
        ]
    if result.ragged is not None:
        parts += ["", *_ragged_lines(result, fmt)]
    parts += [""] + [note_line(note, fmt) for note in result.notes]
    return "\n".join(parts).rstrip() + "\n"


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


def comparison_text(results: Sequence[Result], fmt: str) -> str:
    """Every layout side by side for one phase: chips, per-chip metrics, communication, time."""
    first = results[0].inputs
    headers = ("per chip", *(r.inputs.layout.name for r in results))
    metric_rows = [("chips", *(count(r.chips) for r in results))]
    for label, key in _PER_CHIP_ROWS:
        metric_rows.append(
            (label, *(count(r.to_dict()["metrics"][f"{key}_per_chip"]) for r in results))
        )
    metric_rows.append(
        ("communication bytes", *(count(r.metrics.communication_bytes) for r in results))
    )
    if all(r.timing is not None for r in results):
        for name in (
            "compute_time_ms",
            "load_time_ms",
            "communication_time_ms",
            "wall_clock_time_ms",
        ):
            metric_rows.append((name, *(milliseconds(getattr(r.timing, name)) for r in results)))
    table = Table(headers, tuple(metric_rows), "l" + "r" * len(results))
    notes = sorted({f"{r.inputs.layout.name}: {n}" for r in results for n in r.notes})
    return (
        "\n".join(
            [heading(f"{first.layout.layer}, {first.phase}", fmt, 2), "", table.render(fmt), ""]
            + [note_line(n, fmt) for n in notes]
        ).rstrip()
        + "\n"
    )
