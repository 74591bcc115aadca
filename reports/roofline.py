"""A roofline picture (SVG) of evaluated layouts: needs the optional matplotlib extra.

x: arithmetic intensity (FLOPs per byte loaded); y: throughput (TFLOP/s). The roof is
min(peak, bandwidth × intensity); each layout and phase is a numbered point at the
throughput its wall-clock time attains. Points that would sit on one another (layouts
with the same intensity and time) are spread apart along x, each keeping its number, so
none hides another. Communication is drawn too: a hollow marker above a point, joined by
a dashed line, is the throughput the layout would attain if its communication were free
(its time the larger of compute and load); the gap is what communication costs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from shardcost.errors import InputError
from shardcost.formulas import Result

from .tables import result_label


def attained_tflops(result: Result) -> float:
    """FLOPs per chip over the wall-clock time, in TFLOP/s."""
    assert result.timing is not None
    seconds = result.timing.wall_clock_time_ms / 1e3
    return result.metrics.flops_per_chip / seconds / 1e12 if seconds else 0.0


def without_communication_tflops(result: Result) -> float:
    """FLOPs per chip over the larger of compute and load time, in TFLOP/s: the throughput
    if communication cost nothing."""
    assert result.timing is not None
    seconds = max(result.timing.compute_time_ms, result.timing.load_time_ms) / 1e3
    return result.metrics.flops_per_chip / seconds / 1e12 if seconds else 0.0


SPREAD = 0.04  # decades along x between points that would coincide


def spread(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """``points`` (x, y > 0, on log axes) with those that coincide to within 1 % of a
    decade moved apart along x, SPREAD decades each, centred on where they were."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (x, y) in enumerate(points):
        key = (round(math.log10(max(x, 1e-30)) * 100), round(math.log10(max(y, 1e-30)) * 100))
        groups.setdefault(key, []).append(i)
    out = list(points)
    for members in groups.values():
        for k, i in enumerate(members):
            x, y = points[i]
            out[i] = (x * 10 ** (SPREAD * (k - (len(members) - 1) / 2)), y)
    return out


def write_roofline(results: Sequence[Result], path: Path) -> None:
    """Write the roofline of ``results`` (all on one hardware) to ``path`` as SVG."""
    if any(r.inputs.hardware is None or r.timing is None for r in results):
        raise InputError("--plot draws a roofline, which needs hardware: give --hardware NAME")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError(
            "--plot needs matplotlib, an optional extra: pip install 'shardcost[plots]'"
        ) from None

    hw = results[0].inputs.hardware
    assert hw is not None
    peak = float(hw.peak_tflops)
    bandwidth = float(hw.memory_bandwidth_gb_s)
    ridge = peak * 1000 / bandwidth  # FLOPs/byte where the roof turns flat
    points = [(float(r.arithmetic_intensity), attained_tflops(r), r) for r in results]
    lo = min([ridge / 100, *(x / 4 for x, _, _ in points if x > 0)])
    hi = max([ridge * 100, *(x * 4 for x, _, _ in points)])

    plt.rcParams["svg.hashsalt"] = "shardcost"  # stable element ids: same input, same bytes
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    xs = [lo, ridge, hi]
    ax.plot(
        xs,
        [min(peak, bandwidth * x / 1000) for x in xs],
        color="black",
        lw=1.5,
        label=f"roof: {hw.name}",
    )
    labels = [result_label(r) for r in results]  # tp-cp at each split of a chip budget apart
    layouts = list(dict.fromkeys(labels))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = {"prefill": "o", "decode": "s"}
    placed = spread([(x, max(y, 1e-9)) for x, y, _ in points])
    free_label = "without communication (hollow)"
    for n, ((px, py), (_, _, r), name) in enumerate(zip(placed, points, labels, strict=True), 1):
        # colour: layout; marker: phase; a number beside each point, named in the legend
        color = colors[layouts.index(name) % len(colors)]
        marker = markers.get(str(r.inputs.phase), "o")
        ax.scatter(
            [px],
            [py],
            zorder=3,
            color=color,
            marker=marker,
            label=f"{n}. {name} ({r.inputs.phase})",
        )
        ax.annotate(
            str(n), (px, py), textcoords="offset points", xytext=(5, 3), fontsize=7, color=color
        )
        free = without_communication_tflops(r)
        if free > py * 1.01:  # communication costs this layout more than 1 %
            ax.plot([px, px], [py, free], color=color, lw=0.8, ls="--", zorder=2)
            ax.scatter(
                [px],
                [free],
                zorder=3,
                facecolors="none",
                edgecolors=color,
                marker=marker,
                label=free_label,
            )
            free_label = "_nolegend_"  # one legend entry says what hollow markers are
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte loaded)")
    ax.set_ylabel("throughput (TFLOP/s per chip)")
    ax.set_title(f"Roofline on {hw.name} (ridge at {ridge:.4g} FLOPs/byte)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
