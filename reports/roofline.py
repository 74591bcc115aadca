"""A roofline picture (SVG) of evaluated layouts: needs the optional matplotlib extra.

x: arithmetic intensity (FLOPs per byte loaded); y: throughput (TFLOP/s). The roof is
min(peak, bandwidth × intensity); each layout and phase is a point at the throughput
its wall-clock time attains.
"""

from __future__ import annotations

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
    for (x, y, r), name in zip(points, labels, strict=True):
        # colour: layout; marker: phase (labels would overlap)
        color = colors[layouts.index(name) % len(colors)]
        ax.scatter(
            [x],
            [max(y, 1e-9)],
            zorder=3,
            color=color,
            marker=markers.get(str(r.inputs.phase), "o"),
            label=f"{name} ({r.inputs.phase})",
        )
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
