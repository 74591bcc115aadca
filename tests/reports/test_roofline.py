"""The roofline plot: no point hides another, and communication's cost is drawn."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from shardcost.formulas import evaluate, resolve_inputs
from shardcost.reports.roofline import (
    SPREAD,
    attained_tflops,
    spread,
    without_communication_tflops,
    write_roofline,
)


def test_coinciding_points_are_moved_apart_and_others_stay() -> None:
    points = [(10.0, 5.0), (10.0, 5.0), (10.0, 5.0), (100.0, 50.0)]
    placed = spread(points)
    xs = [x for x, _ in placed[:3]]
    assert len(set(xs)) == 3  # three distinct places
    # centred where they were: SPREAD decades either side of the middle one
    assert xs[1] == pytest.approx(10.0)
    assert math.log10(xs[2] / xs[0]) == pytest.approx(2 * SPREAD)
    assert placed[3] == (100.0, 50.0)
    assert [y for _, y in placed] == [y for _, y in points]


def test_throughput_without_communication() -> None:
    # tp prefill on seed-test (1 PFLOP/s, 1 TB/s, 100 GB/s): wall = compute + communication
    r = evaluate(resolve_inputs("tp", "prefill", hardware="seed-test"))
    t = r.timing
    assert t is not None and t.communication_time_ms > 0
    free = without_communication_tflops(r)
    assert free == pytest.approx(
        r.metrics.flops_per_chip / max(t.compute_time_ms, t.load_time_ms) / 1e9
    )
    assert free > attained_tflops(r)


def test_the_svg_numbers_every_point_and_marks_communication(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = [
        evaluate(resolve_inputs(name, phase, hardware="h100-sxm"))
        for name in ("tp", "cp-allgather", "ring")
        for phase in ("prefill", "decode")
    ]
    svg = tmp_path / "r.svg"
    write_roofline(results, svg)
    text = svg.read_text()
    for n in range(1, len(results) + 1):
        assert f"{n}. " in text  # each point's number in the legend
    assert "without communication (hollow)" in text
