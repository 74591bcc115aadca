"""The timing model of seed 000, as expressions over the hardware fields.

compute      = F / (P · η_c · 10^12) · 10^3 + kernels · t_k / 10^3       ms
load         = (W [+ KV in decode]) / (BW_mem · η_m · 10^9) · 10^3
comm         = L_ic / 10^3 + C / (BW_ic · η_l · 10^9) · 10^3   when C > 0, else 0
wall (overlap)    = max(max(compute, load), comm)
wall (no overlap) = max(compute, load) + comm
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy

from shardcost.symbolic import Cost, Derivation, Trace

from .conventions import Phase
from .hardware import (
    COMPUTE_EFFICIENCY,
    INTERCONNECT_BANDWIDTH,
    INTERCONNECT_LATENCY,
    KERNEL_OVERHEAD,
    LINK_EFFICIENCY,
    MEMORY_BANDWIDTH,
    MEMORY_EFFICIENCY,
    PEAK_TFLOPS,
)

ASSUMPTIONS = (
    "Decimal units: 1 TFLOP/s = 10^12 FLOP/s, 1 GB/s = 10^9 B/s.",
    "Prefill loads the weights (the KV cache it writes overlaps compute); decode also reads "
    "the whole KV cache.",
    "Memory loads overlap compute: the busy time is max(compute, load).",
    "One interconnect latency is charged per layer when anything is sent.",
    "Achieved fractions of peak compute, memory and link bandwidth scale the peaks; a fixed "
    "overhead is charged per kernel, one kernel per matrix-product step (defaults: 1, 1, 1 "
    "and 0 µs, the peaks as printed).",
    "The compute peak is FP8's when bytes_per_elem = 1 and the chip has FP8, else BF16's.",
)
OVERLAP = {
    True: "Communication overlaps the busy time: wall clock = max(busy, communication).",
    False: "Communication follows the busy time: wall clock = busy + communication.",
}

TIMINGS = ("compute_time_ms", "load_time_ms", "communication_time_ms", "wall_clock_time_ms")

_P, _BW, _BW_IC, _L, _ETA_C, _ETA_M, _ETA_L, _T_K = (
    f.symbol
    for f in (
        PEAK_TFLOPS,
        MEMORY_BANDWIDTH,
        INTERCONNECT_BANDWIDTH,
        INTERCONNECT_LATENCY,
        COMPUTE_EFFICIENCY,
        MEMORY_EFFICIENCY,
        LINK_EFFICIENCY,
        KERNEL_OVERHEAD,
    )
)


@dataclass(frozen=True)
class TimingModel:
    """The cost's derivation extended with timing steps; ``times`` names the four results."""

    derivation: Derivation
    times: dict[str, sympy.Symbol]
    arithmetic_intensity: sympy.Symbol

    def expressions(self) -> dict[str, sympy.Expr]:
        """The four timings in dimensions and hardware fields."""
        return {name: self.derivation.resolve(sym) for name, sym in self.times.items()}


def _kernels(cost: Cost) -> int:
    """Kernels a chip launches: one per matrix-product step (at least one)."""
    steps = [s for s in cost.derivation.section("flops") if s.symbol != cost.flops]
    return max(1, len(steps))


@cache
def timing_model(cost: Cost, phase: Phase, overlap: bool) -> TimingModel:
    """Timing steps for ``cost`` in ``phase``, with or without communication overlap."""
    base = cost.derivation
    t = Trace(list(base.steps), list(base.splits), list(base.requirements))
    decode = Phase(phase) is Phase.DECODE
    ms = {"section": "timing", "unit": "ms"}
    weights_read = cost.weight_reads if cost.weight_reads is not None else cost.weight_bytes
    load_terms = [weights_read] + ([cost.kv_cache_bytes] if decode else [])
    load_bytes = t.define(
        "load_bytes",
        "bytes loaded from memory",
        sympy.Add(*load_terms),
        section="timing",
        unit="bytes",
        name="L_bytes",
        latex=r"\mathrm{Bytes}_{\mathrm{load}}",
        note="weights and the KV cache read in decode"
        if decode
        else "weights only: prefill writes the KV cache, it does not read it",
    )
    intensity = t.define(
        "arithmetic_intensity",
        "arithmetic intensity",
        cost.flops / load_bytes,
        section="timing",
        unit="FLOPs/byte",
        name="I",
        note="FLOPs per byte loaded",
    )
    compute = t.define(
        "compute_time",
        "compute time",
        cost.flops / (_P * _ETA_C * 10**9) + _kernels(cost) * _T_K / 10**3,
        **ms,
        name="t_compute",
        latex=r"t_{\mathrm{compute}}",
        note="F / (P · η_c · 10^12 FLOP/s) · 10^3 ms/s, plus each kernel's overhead",
    )
    weight_load = t.define(
        "weight_load_time",
        "weight load time",
        weights_read / (_BW * _ETA_M * 10**6),
        **ms,
        name="t_weights",
        latex=r"t_{\mathrm{weights}}",
        note="W / (BW_mem · η_m · 10^9 B/s) · 10^3",
    )
    loads = [weight_load]
    if decode:
        loads.append(
            t.define(
                "kv_load_time",
                "KV-cache load time",
                cost.kv_cache_bytes / (_BW * _ETA_M * 10**6),
                **ms,
                name="t_kv",
                latex=r"t_{\mathrm{KV}}",
                note="decode reads the whole KV cache",
            )
        )
    load = t.define(
        "load_time",
        "load time",
        sympy.Add(*loads),
        **ms,
        name="t_load",
        latex=r"t_{\mathrm{load}}",
    )
    latency = t.define(
        "comm_latency",
        "collective latency",
        _L / 10**3,
        **ms,
        name="t_latency",
        latex=r"t_{\mathrm{latency}}",
        note="µs to ms; charged once when anything is sent",
    )
    transfer = t.define(
        "comm_transfer_time",
        "communication transfer time",
        cost.communication_bytes / (_BW_IC * _ETA_L * 10**6),
        **ms,
        name="t_transfer",
        latex=r"t_{\mathrm{transfer}}",
        note="C / (BW_ic · η_l · 10^9 B/s) · 10^3",
    )
    # Every payload is a product of positive sizes, so bytes are sent exactly when some
    # collective's group has more than one chip; saying so keeps Piecewise out of the test.
    sends = sympy.Or(*(sympy.Gt(c.group, 1) for c in cost.collectives))
    comm = t.define(
        "communication_time",
        "communication time",
        sympy.Piecewise((latency + transfer, sends), (0, True)),
        **ms,
        name="t_comm",
        latex=r"t_{\mathrm{comm}}",
        note="zero when nothing is sent",
    )
    busy = sympy.Max(compute, load)
    wall = t.define(
        "wall_clock_time",
        "wall-clock time",
        sympy.Max(busy, comm) if overlap else busy + comm,
        **ms,
        name="t_wall",
        latex=r"t_{\mathrm{wall}}",
        note="loads overlap compute; communication overlaps both"
        if overlap
        else "loads overlap compute; communication follows",
    )
    times = dict(zip(TIMINGS, (compute, load, comm, wall), strict=True))
    return TimingModel(t.freeze(), times, intensity)
