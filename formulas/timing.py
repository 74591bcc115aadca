"""The timing model, as expressions over the hardware fields.

compute      = F / (P · η_c · 10^12) · 10^3 + kernels · t_k / 10^3       ms
load         = (W [+ KV in decode]) / (BW_mem · η_m · 10^9) · 10^3
busy         = max(compute, load) + t_f / 10^3       (t_f: a fixed latency per layer pass)

Communication, by ``collective_bytes``:

- ``wire`` (default): each collective c over p chips costs its algorithm's latency steps
  and the bytes each chip sends (``communication``: ring, tree or direct), nothing on one
  chip: t_c = steps · L_ic / 10^3 + wire_c / (BW_ic · η_l · 10^9) · 10^3. The collective
  hides or shows by its class, the degree its group runs over (``tensor_parallel_comm``,
  ``context_parallel_comm``, ``expert_parallel_comm``); with overlap,
  wall = max(busy, Σ hidden t_c) + Σ exposed t_c.
- ``payload`` (seed 000): comm = L_ic / 10^3 + C / (BW_ic · η_l · 10^9) · 10^3 when C > 0,
  else 0, one block per layer, hidden only when every collective's class is.

communication = every collective's time; without overlap, wall = busy + communication.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy

from shardcost.symbolic import Collective, Cost, Derivation, Section, StepSpec, Trace

from .communication import BytesMode, hidden, overlap_class, rule, symbolic_terms
from .conventions import Conventions, Phase
from .hardware import NUMERIC_FIELDS

ASSUMPTIONS = (
    "Decimal units: 1 TFLOP/s = 10^12 FLOP/s, 1 GB/s = 10^9 B/s.",
    "Prefill loads the weights (the KV cache it writes overlaps compute); decode also reads "
    "the whole KV cache.",
    "Memory loads overlap compute: the busy time is max(compute, load), plus a fixed "
    "latency per layer pass (fixed_latency_us and the layer's kernel class's, 0 unless "
    "fitted).",
    "A collective over a group of one chip costs nothing; a point-to-point pass (send-recv) "
    "over p chips takes p − 1 hops, one latency each, whatever the algorithm.",
    "A collective's overlap class is the parallel degree its group runs over: tensor, "
    "context or expert parallel; any other group counts as tensor parallel.",
    "Achieved fractions of peak compute, memory and link bandwidth scale the peaks; a fixed "
    "overhead is charged per kernel, one kernel per matrix-product step (defaults: 1, 1, 1 "
    "and 0 µs, the peaks as printed).",
    "The compute peak is FP8's when weights and activations both take one byte or less "
    "(bytes_per_elem = 1, or fp8/int8 types) and the chip has FP8, else BF16's.",
)
OVERLAP = {
    True: "The hardware overlaps communication with compute: hidden collectives run under the "
    "busy time, exposed ones follow it: wall clock = max(busy, hidden) + exposed.",
    False: "The hardware does not overlap communication: wall clock = busy + communication, "
    "whatever each collective's class.",
}

TIMINGS = ("compute_time_ms", "load_time_ms", "communication_time_ms", "wall_clock_time_ms")

# The hardware fields, in NUMERIC_FIELDS' order: peak TFLOP/s, memory and link GB/s,
# link latency (µs), the three efficiencies, kernel overhead (µs).
_P, _BW, _BW_IC, _L, _ETA_C, _ETA_M, _ETA_L, _T_K, _T_F = (f.symbol for f in NUMERIC_FIELDS)

# Steps, declared once: key, words, section, unit, symbol, LaTeX, note.
_T = Section.TIMING
LOAD_BYTES = StepSpec(
    "load_bytes",
    "bytes loaded from memory",
    _T,
    "bytes",
    "L_bytes",
    r"\mathrm{Bytes}_{\mathrm{load}}",
)
_LOADED = {
    Phase.PREFILL: "weights only: prefill writes the KV cache, it does not read it",
    Phase.DECODE: "weights and the KV cache read in decode",
}
INTENSITY = StepSpec(
    "arithmetic_intensity",
    "arithmetic intensity",
    _T,
    "FLOPs/byte",
    "I",
    note="FLOPs per byte loaded",
)
COMPUTE = StepSpec(
    "compute_time",
    "compute time",
    _T,
    "ms",
    "t_compute",
    r"t_{\mathrm{compute}}",
    "F / (P · η_c · 10^12 FLOP/s) · 10^3 ms/s, plus each kernel's overhead",
)
WEIGHT_LOAD = StepSpec(
    "weight_load_time",
    "weight load time",
    _T,
    "ms",
    "t_weights",
    r"t_{\mathrm{weights}}",
    "W / (BW_mem · η_m · 10^9 B/s) · 10^3",
)
KV_LOAD = StepSpec(
    "kv_load_time",
    "KV-cache load time",
    _T,
    "ms",
    "t_kv",
    r"t_{\mathrm{KV}}",
    "decode reads the whole KV cache",
)
LOAD = StepSpec("load_time", "load time", _T, "ms", "t_load", r"t_{\mathrm{load}}")
LATENCY = StepSpec(
    "comm_latency",
    "collective latency",
    _T,
    "ms",
    "t_latency",
    r"t_{\mathrm{latency}}",
    "µs to ms; charged once when anything is sent",
)
TRANSFER = StepSpec(
    "comm_transfer_time",
    "communication transfer time",
    _T,
    "ms",
    "t_transfer",
    r"t_{\mathrm{transfer}}",
    "C / (BW_ic · η_l · 10^9 B/s) · 10^3",
)
COMMUNICATION = StepSpec(
    "communication_time",
    "communication time",
    _T,
    "ms",
    "t_comm",
    r"t_{\mathrm{comm}}",
    "zero when nothing is sent",
)
HIDDEN = StepSpec(
    "comm_hidden_time",
    "hidden communication time",
    _T,
    "ms",
    "t_hidden",
    r"t_{\mathrm{hidden}}",
    "the collectives whose class hides: they run under the busy time",
)
EXPOSED = StepSpec(
    "comm_exposed_time",
    "exposed communication time",
    _T,
    "ms",
    "t_exposed",
    r"t_{\mathrm{exposed}}",
    "the collectives whose class is exposed: they follow the busy time",
)
FIXED = StepSpec(
    "fixed_latency",
    "fixed latency",
    _T,
    "ms",
    "t_fixed",
    r"t_{\mathrm{fixed}}",
    "µs to ms: a layer pass's fixed time (its kernel class's, fitted by shardcost calibrate), "
    "after the roofline max",
)
WALL = StepSpec("wall_clock_time", "wall-clock time", _T, "ms", "t_wall", r"t_{\mathrm{wall}}")
_WALL = {
    "follows": "loads overlap compute; communication follows",
    "hidden": "loads overlap compute; communication overlaps both",
    "mixed": "loads overlap compute; hidden communication overlaps both, exposed follows",
}


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
    steps = [s for s in cost.derivation.section(Section.FLOPS) if s.symbol != cost.flops]
    return max(1, len(steps))


def _weights_read(cost: Cost) -> sympy.Symbol:
    """The weight bytes a pass reads: all of them, unless the cost says fewer."""
    return cost.weight_reads if cost.weight_reads is not None else cost.weight_bytes


def _intensity(t: Trace, cost: Cost, phase: Phase) -> sympy.Symbol:
    """The bytes loaded from memory (the KV cache too in decode), and FLOPs per byte."""
    cache = [cost.kv_cache_bytes] if phase is Phase.DECODE else []
    loaded = LOAD_BYTES(t, sympy.Add(_weights_read(cost), *cache), note=_LOADED[phase])
    return INTENSITY(t, cost.flops / loaded)


def _compute(t: Trace, cost: Cost) -> sympy.Symbol:
    """FLOPs at the achieved peak, TFLOP/s to ms, plus each kernel's launch overhead."""
    return COMPUTE(t, cost.flops / (_P * _ETA_C * 10**9) + _kernels(cost) * _T_K / 10**3)


def _load(t: Trace, cost: Cost, phase: Phase) -> sympy.Symbol:
    """The weights' load time, and in decode the KV cache's, at the achieved bandwidth."""
    memory = _BW * _ETA_M * 10**6  # GB/s to bytes per ms
    loads = [WEIGHT_LOAD(t, _weights_read(cost) / memory)]
    if phase is Phase.DECODE:
        loads.append(KV_LOAD(t, cost.kv_cache_bytes / memory))
    return LOAD(t, sympy.Add(*loads))


def _payload(t: Trace, cost: Cost) -> sympy.Symbol:
    """Seed 000's: one latency plus the payload at the achieved link bandwidth; zero when
    nothing is sent."""
    latency = LATENCY(t, _L / 10**3)
    transfer = TRANSFER(t, cost.communication_bytes / (_BW_IC * _ETA_L * 10**6))
    # Every payload is a product of positive sizes, so bytes are sent exactly when some
    # collective's group has more than one chip; saying so keeps Piecewise out of the test.
    sends = sympy.Or(*(sympy.Gt(c.group, 1) for c in cost.collectives))
    return COMMUNICATION(t, sympy.Piecewise((latency + transfer, sends), (0, True)))


def _escaped(name: str) -> str:
    return name.replace("_", r"\_")


def _collective_time(t: Trace, cost: Cost, c: Collective, conv: Conventions) -> sympy.Symbol:
    """One collective: the bytes each chip sends under ``conv``'s algorithm, then its
    latency steps and those bytes at the achieved link bandwidth; nothing on one chip."""
    found = rule(c.kind, conv.collective_algorithm)
    steps, wire = symbolic_terms(c.kind, c.group, conv.collective_algorithm)
    label = cost.derivation.step_of(c.symbol).label
    sent = t.define(
        f"wire_{c.name}",
        f"{label} bytes on the wire",
        wire * c.symbol,
        section=_T,
        unit="bytes",
        name=f"C_wire_{c.name}",
        latex=rf"C^{{\mathrm{{wire}}}}_{{\mathrm{{{_escaped(c.name)}}}}}",
        note=f"{c.kind} over {c.group}, {found.words}",
    )
    time = steps * _L / 10**3 + sent / (_BW_IC * _ETA_L * 10**6)
    return t.define(
        f"comm_time_{c.name}",
        f"{label} time",
        sympy.Piecewise((time, sympy.Gt(c.group, 1)), (0, True)),
        section=_T,
        unit="ms",
        name=f"t_{c.name}",
        latex=rf"t_{{\mathrm{{{_escaped(c.name)}}}}}",
        note="latency steps · L_ic / 10^3 + wire bytes / (BW_ic · η_l · 10^6), none on one "
        f"chip; {overlap_class(c.group, c.kind)}={getattr(conv, overlap_class(c.group, c.kind))}",
    )


def _wall(
    t: Trace,
    busy: sympy.Expr,
    hidden_times: list[sympy.Symbol],
    exposed_times: list[sympy.Symbol],
) -> tuple[sympy.Symbol, sympy.Symbol]:
    """The communication total and the wall clock: hidden collectives under the busy
    time, exposed ones after it (the sums named only when there are both)."""
    every = "every collective's time, hidden or exposed"
    if not hidden_times:
        comm = COMMUNICATION(t, sympy.Add(*exposed_times), note=every)
        return comm, WALL(t, busy + comm, note=_WALL["follows"])
    if not exposed_times:
        comm = COMMUNICATION(t, sympy.Add(*hidden_times), note=every)
        return comm, WALL(t, sympy.Max(busy, comm), note=_WALL["hidden"])
    under = HIDDEN(t, sympy.Add(*hidden_times))
    after = EXPOSED(t, sympy.Add(*exposed_times))
    comm = COMMUNICATION(t, under + after, note=every)
    return comm, WALL(t, sympy.Max(busy, under) + after, note=_WALL["mixed"])


@cache
def timing_model(
    cost: Cost, phase: Phase, overlap: bool, conventions: Conventions | None = None
) -> TimingModel:
    """Timing steps for ``cost`` in ``phase`` on hardware that does (``overlap``) or does
    not overlap communication, under the timing ``conventions`` (default: the defaults)."""
    conv = conventions or Conventions()
    base = cost.derivation
    t = Trace(list(base.steps), list(base.splits), list(base.requirements))
    phase = Phase(phase)
    intensity = _intensity(t, cost, phase)
    compute = _compute(t, cost)
    load = _load(t, cost, phase)
    fixed = FIXED(t, _T_F / 10**3)
    busy = sympy.Max(compute, load) + fixed
    hides = [overlap and hidden(c.group, conv, c.kind) for c in cost.collectives]
    if BytesMode(conv.collective_bytes) is BytesMode.PAYLOAD:
        block = _payload(t, cost)
        if overlap and cost.collectives and all(hides):
            wall = WALL(t, sympy.Max(busy, block), note=_WALL["hidden"])
        else:
            wall = WALL(t, busy + block, note=_WALL["follows"])
        comm = block
    else:
        each = [_collective_time(t, cost, c, conv) for c in cost.collectives]
        comm, wall = _wall(
            t,
            busy,
            [s for s, h in zip(each, hides, strict=True) if h],
            [s for s, h in zip(each, hides, strict=True) if not h],
        )
    times = dict(zip(TIMINGS, (compute, load, comm, wall), strict=True))
    return TimingModel(t.freeze(), times, intensity)
