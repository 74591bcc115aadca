"""Measured against predicted times, as text and Markdown (``shardcost validate``)."""

from __future__ import annotations

from pathlib import Path

from shardcost.errors import InputError
from shardcost.formulas.calibration import Calibration, Errors
from shardcost.formulas.measurements import Prediction, Validation

from .text import Table, heading, item


def _percent(x: float) -> str:
    return f"{x:+.1%}"


def _rows(predictions: tuple[Prediction, ...], fmt: str) -> str:
    rows = tuple(
        (
            str(p.measurement.line),
            p.measurement.label,
            f"{p.measurement.measured_us:,.2f}",
            f"{p.predicted_us:,.2f}",
            _percent(p.error),
        )
        for p in predictions
    )
    return Table(("line", "row", "measured µs", "predicted µs", "error"), rows, "llrrr").render(fmt)


def validation_text(v: Validation, fmt: str) -> str:
    """Each row, the errors per class and overall, and the worst rows."""
    overall = v.overall()
    lines = [
        heading(f"Measured against predicted on {v.hardware.name}", fmt, 1),
        "",
        item(
            f"{overall.rows} rows: mean absolute error {overall.mean_abs:.1%}, largest "
            f"{overall.max_abs:.1%}, mean signed {overall.mean_signed:+.1%} (negative: the "
            "model is faster than measured)",
            fmt,
        ),
        "",
        _rows(v.predictions, fmt),
        "",
        heading("By kernel class", fmt, 2),
        "",
    ]
    classes = tuple(
        (c.name, str(c.rows), f"{c.mean_abs:.1%}", f"{c.max_abs:.1%}", f"{c.mean_signed:+.1%}")
        for c in v.classes()
    )
    lines.append(
        Table(
            ("class", "rows", "mean |error|", "max |error|", "mean error"), classes, "lrrrr"
        ).render(fmt)
    )
    lines += ["", heading("Worst rows", fmt, 2), "", _rows(v.worst(), fmt), ""]
    lines.append(
        "error = (predicted − measured) / measured; each prediction is what `shardcost metrics` "
        "gives for the row (its wall-clock time), or for a host copy bytes / (host link × "
        "its efficiency)."
    )
    return "\n".join(lines) + "\n"


def calibration_text(c: Calibration, fmt: str, *, written: str | None = None) -> str:
    """The fitted coefficients per class and the errors before, in the fit, under
    cross-validation and (with a held-out half) on the rows the fit did not see."""
    lines = [heading(f"Calibration of {c.base.name} from {c.source}", fmt, 1), ""]
    if written:
        lines += [item(f"wrote {written}: use it as --hardware {written}", fmt), ""]
    coefficients = []
    for r in c.classes:
        k = r.coefficients
        coefficients.append(
            (
                _class_words(k.group),
                str(k.rows),
                "—" if k.compute_efficiency is None else f"{k.compute_efficiency:.4g}",
                f"{k.memory_efficiency:.4g}" if k.memory_efficiency is not None else "—",
                f"{k.latency_us:.4g}",
            )
        )
    lines.append(
        Table(
            ("class", "rows fitted", "compute fraction", "bandwidth fraction", "latency µs"),
            tuple(coefficients),
            "lrrrr",
        ).render(fmt)
    )
    lines += [
        item(f"{_class_words(r.coefficients.group)}: {r.coefficients.note}", fmt)
        for r in c.classes
        if r.coefficients.note
    ]
    lines += ["", heading("Relative error (mean |error| / largest)", fmt, 2), ""]
    held = c.hold_out_half
    headers = ("class", "before", "fit", f"{c.folds}-fold cross-validated")
    headers += ("held-out half",) if held else ()

    def cell(e: Errors | None) -> str:
        return "—" if e is None or e.rows == 0 else f"{e.mean:.1%} / {e.max:.1%}"

    rows = [
        (_class_words(r.coefficients.group), cell(r.before), cell(r.fit), cell(r.cross_validated))
        + ((cell(r.held_out),) if held else ())
        for r in c.classes
    ]
    rows.append(
        (
            "all rows",
            cell(c.overall("before")),
            cell(c.overall("fit")),
            cell(c.overall("cross_validated")),
        )
        + ((cell(c.overall("held_out")),) if held else ())
    )
    lines.append(Table(headers, tuple(rows), "l" + "r" * (len(headers) - 1)).render(fmt))
    lines += [
        "",
        "Layer rows: t = latency + max(compute / compute fraction, load / bandwidth fraction) + "
        "communication, the fractions of what the base chip achieves; copies: t = latency + "
        "bytes / (host link × bandwidth fraction). error = (predicted − measured) / measured."
        + (
            " The fit saw every other row of each class; the held-out half it did not see."
            if held
            else ""
        ),
    ]
    return "\n".join(lines) + "\n"


def _class_words(group: str) -> str:
    return f"host copy ({group})" if group in ("pinned", "pageable") else f"{group} kernels"


def write_calibration_plot(c: Calibration, path: Path) -> None:
    """Predicted against measured, before and after the fit, one colour per class."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise InputError("--plot needs matplotlib: pip install 'shardcost[plots]'") from exc
    fig, ax = plt.subplots(figsize=(6, 6))
    everything = [v for r in c.classes for p in r.points for v in p[:3]]
    lo, hi = min(everything) / 1.5, max(everything) * 1.5
    ax.plot([lo, hi], [lo, hi], color="#999999", linewidth=1, label="predicted = measured")
    for i, r in enumerate(c.classes):
        colour = f"C{i}"
        words = _class_words(r.coefficients.group)
        measured = [p[0] for p in r.points]
        ax.scatter(
            measured,
            [p[1] for p in r.points],
            marker="x",
            color=colour,
            alpha=0.5,
            label=f"{words}, before",
        )
        ax.scatter(
            measured, [p[2] for p in r.points], marker="o", color=colour, label=f"{words}, fitted"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured (µs)")
    ax.set_ylabel("predicted (µs)")
    ax.set_title(f"{c.base.name}: predicted against measured")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg")
    plt.close(fig)
