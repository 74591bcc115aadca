"""Placing a whole model on chips: a plan, what it costs per chip, and serving figures.

A plan is the parallel degrees of a deployment:

    chips = tensor_parallel × context_parallel × pipeline_parallel × data_parallel

Within a pipeline stage each layer takes the layout the plan implies: attention over
heads (``tp``), over the sequence (``cp``, with the context-parallel layout named) or both
(``tp-cp``); MLA over heads only; the dense FFN, the embedding and the LM head follow
the mixer (``companion``). Experts are sharded over ``expert_parallel`` ranks drawn from
the stage's tensor- and data-parallel chips (DeepSeek-V3's deployment: data-parallel
attention feeding expert-parallel MoE), each expert's columns over the rest:
``moe_tp = tp · dp / ep``. Stages hold contiguous layers, the first the embedding, the
last the final norm and the LM head.

A stage's components are its part of the model's walk (``model.walk``), each evaluated
through its layer's compiled function (``model.layer_call``: ``shardcost.compile`` with
timing), once per distinct input; a stage's time is the sum of its components' (the
layers run one after another), as ``shardcost model`` sums them.

This module is the arithmetic of plans, without SymPy: the engine (``formulas.plan``)
places a plan through the model's walk and calls the compiled functions; the cache
(``shardcost.numeric_plan``) replays the placements the engine made and runs the
functions' stored programs. Both go through the same lines below (``Model``), so they
cannot differ.

Serving figures for a workload of ``concurrency`` requests, each a prompt of S_in tokens
and S_out output tokens, split evenly over the data-parallel replicas (⌈C/dp⌉ each, the
busiest), and within a replica into ``microbatches`` groups that flow through the stages:

    TTFT  = max(Σ_s t_s, m·T + (pp − 1)·T/v) + (v·pp − 1)·t_p2p,  T = max_s t_s
            (a replica's batch prefilled: the first microbatch's path through every
            stage, or m microbatches at the slowest stage's pace plus the fill)
    TPOT  = mean over the S_out − 1 later tokens of one decode cycle,
            cycle = max(Σ_s t_s + (pp − 1)·t_p2p, m · max_s t_s)     (m microbatches in flight)
    E2E   = TTFT + (S_out − 1)·TPOT
    tokens/s (system) = concurrency · S_out / E2E;  per chip: that / chips
    decode tokens/s   = concurrency / TPOT

where t_s is stage s's time for one microbatch (v = chunks per stage under the
interleaved schedule, else 1).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np

from shardcost.errors import InputError

PREFILL, DECODE = "prefill", "decode"

CP_LAYOUTS = {
    "kv-sharded": "cp-kv-sharded",
    "allgather": "cp-allgather",
    "ring": "ring",
    "ulysses": "ulysses",
}
SCHEDULES = ("1f1b", "gpipe", "interleaved")
_DEGREES = {
    "tp": "tensor_parallel",
    "cp": "context_parallel",
    "ep": "expert_parallel",
    "pp": "pipeline_parallel",
    "dp": "data_parallel",
}
_ALIASES = (
    {short: short for short in _DEGREES}
    | {long: short for short, long in _DEGREES.items()}
    | {k: k for k in ("cp_layout", "schedule", "microbatches", "chunks")}
    | {"mb": "microbatches"}
)
# A runtime reserve: what the framework, the CUDA context, communication buffers and the
# allocator's fragmentation take besides weights, cache and activations (vLLM's default
# gpu_memory_utilization of 0.9 leaves the same tenth).
DEFAULT_RESERVE = Fraction(1, 10)
GIB = 2**30

DEFINITIONS = (
    "TTFT: time to first token of the last request of a replica's batch: its prompts "
    "prefilled in microbatches through the pipeline.",
    "TPOT: time per output token after the first, the mean of the S_out − 1 decode steps "
    "(each at its own past length); with pipeline stages, one decode cycle of a microbatch.",
    "E2E: TTFT + (S_out − 1) × TPOT. Throughput: concurrency × S_out / E2E output tokens "
    "per second (system), divided by chips (per chip); decode throughput: concurrency / TPOT.",
    "Memory per chip: the busiest stage's weights, KV cache at the longest context "
    "(S_in + S_out − 1 past positions) for every request of its replica, its largest "
    "activation, and a runtime reserve (a fraction of capacity); usable = capacity × "
    "(1 − reserve).",
    "Pipeline schedules are forward-only in inference: GPipe and 1F1B run alike and differ "
    "in the activations a training step would hold (m vs min(m, pp) microbatches, "
    "reported); interleaved 1F1B with v chunks per stage cuts the bubble to "
    "(pp − 1)/(v·m + pp − 1) and sends v times as many stage-to-stage activations.",
    "Stage-to-stage sends: each microbatch's hidden state X[M, d] in the activation type, "
    "sent whole by every tensor-parallel rank to its peer (no scatter-gather), timed as a "
    "send-recv over two chips (one latency step and the bytes at the link's rate), on the "
    "microbatch's critical path.",
    "Experts span the stage's tensor- and data-parallel chips; data-parallel replicas step "
    "together so that their tokens meet at the experts.",
)
# the collectives (the JSON, and the text of one plan; a search lists none)
COLLECTIVES = (
    "Collectives: each layer's, per stage and phase (name, kind, group, payload bytes per "
    "chip, and how many layers of the stage issue it): a prefill microbatch at the prompt's "
    "length, a decode microbatch at the last step's past length; the stage-to-stage send "
    "once per boundary a microbatch crosses (v·pp − 1)."
)
# What the numbers of a plan's JSON are in
UNITS = {
    "memory": "bytes (the *_gb figures: decimal GB, 10^9 bytes; *_gib: binary GiB, 2^30)",
    "communication": "payload bytes per chip",
    "timing": "milliseconds",
    "throughput": "tokens per second",
}


# -- plans ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Parallel degrees and the pipeline's schedule."""

    tp: int = 1
    cp: int = 1
    ep: int = 1
    pp: int = 1
    dp: int = 1
    cp_layout: str = "cp-kv-sharded"
    schedule: str = "1f1b"
    microbatches: int = 0  # 0: as many as stages (the fewest that fill the pipeline)
    chunks: int = 1  # model chunks per stage, interleaved only

    @property
    def chips(self) -> int:
        """tp × cp × pp × dp (experts reuse the tp × dp chips of a stage)."""
        return self.tp * self.cp * self.pp * self.dp

    @property
    def label(self) -> str:
        """tp=8,pp=2,ep=8 — the degrees above 1 (``single`` when none), then the rest."""
        parts = [f"{k}={getattr(self, k)}" for k in _DEGREES if getattr(self, k) > 1]
        if self.cp > 1 and self.tp == 1:
            short = {v: k for k, v in CP_LAYOUTS.items()}[self.cp_layout]
            parts.append(f"cp_layout={short}")
        if self.pp > 1 and self.schedule != "1f1b":
            parts.append(f"schedule={self.schedule}")
        if self.chunks > 1:
            parts.append(f"chunks={self.chunks}")
        if self.microbatches:
            parts.append(f"microbatches={self.microbatches}")
        return ",".join(parts) or "single"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the chips."""
        return asdict(self) | {"chips": self.chips, "label": self.label}


def parse_plan(text: str) -> Plan:
    """``tp=8,pp=2,ep=8`` (or the long names, ``cp=4,cp_layout=ring``,
    ``schedule=interleaved,chunks=2``, ``microbatches=8``) as a Plan; InputError naming
    the first bad item."""
    values: dict[str, Any] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in _ALIASES:
            known = ", ".join([*_DEGREES, "cp_layout", "schedule", "microbatches", "chunks"])
            raise InputError(f"--plan: {item!r} is not KEY=VALUE with KEY one of {known}")
        name = _ALIASES[key]
        raw = raw.strip()
        if name == "cp_layout":
            found = CP_LAYOUTS.get(raw, raw if raw in CP_LAYOUTS.values() else None)
            if found is None:
                raise InputError(
                    f"--plan: cp_layout={raw!r} is unknown; give {', '.join(CP_LAYOUTS)}"
                )
            values[name] = found
        elif name == "schedule":
            if raw not in SCHEDULES:
                raise InputError(
                    f"--plan: schedule={raw!r} is unknown; give {', '.join(SCHEDULES)}"
                )
            values[name] = raw
        else:
            if not re.fullmatch(r"[0-9]{1,7}", raw) or int(raw) < (
                0 if name == "microbatches" else 1
            ):
                raise InputError(f"--plan: {key}={raw!r} is not a whole number of at least 1")
            values[name] = int(raw)
    plan = Plan(**values)
    if plan.chunks > 1 and plan.schedule != "interleaved":
        raise InputError("--plan: chunks applies to schedule=interleaved only")
    return plan


# -- workload ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Requests served together: prompt and output lengths, and how many at once."""

    prompt: int = 2048
    output: int = 256
    concurrency: int = 1

    def __post_init__(self) -> None:
        for name in ("prompt", "output", "concurrency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**7:
                raise InputError(f"{name}={value!r}: give a whole number from 1 to 10,000,000")


# -- evaluating a plan ---------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its layers (block index → count), whether it holds the
    embedding and the head."""

    index: int
    layers: tuple[tuple[int, int], ...]
    first: bool
    last: bool

    @property
    def num_layers(self) -> int:
        return sum(n for _, n in self.layers)


def stages(order: Sequence[int], pp: int) -> tuple[Stage, ...]:
    """Contiguous layers per stage (``order``: each layer's block, in depth order), as
    even as whole layers allow (the first L mod pp stages one more)."""
    base, extra = divmod(len(order), pp)
    out, start = [], 0
    for s in range(pp):
        n = base + (1 if s < extra else 0)
        counts: dict[int, int] = {}
        for blk in order[start : start + n]:
            counts[blk] = counts.get(blk, 0) + 1
        out.append(Stage(s, tuple(counts.items()), s == 0, s == pp - 1))
        start += n
    return tuple(out)


@dataclass(frozen=True)
class Memory:
    """Bytes per chip on the busiest stage, against the chip's capacity."""

    weights: int
    kv_cache: int
    activations: int
    capacity: int | None
    reserve: Fraction

    @property
    def used(self) -> int:
        return self.weights + self.kv_cache + self.activations

    @property
    def usable(self) -> int | None:
        if self.capacity is None:
            return None
        return math.floor(self.capacity * (1 - self.reserve))

    @property
    def fits(self) -> bool | None:
        return None if self.usable is None else self.used <= self.usable

    def to_dict(self) -> dict[str, Any]:
        out = {
            "weights": self.weights,
            "kv_cache": self.kv_cache,
            "activations": self.activations,
            "total": self.used,
            "capacity": self.capacity,
            "reserve_fraction": float(self.reserve),
            "usable": self.usable,
            "fits": self.fits,
        }
        out |= {f"{k}_gb": v / 1e9 for k, v in out.items() if isinstance(v, int) and k != "fits"}
        out["total_gib"] = self.used / GIB
        return out


@dataclass(frozen=True)
class Pipeline:
    """The pipeline's figures: stages, microbatches and what flows between them."""

    stages: int
    layers_per_stage: tuple[int, ...]
    schedule: str
    microbatches: int
    chunks: int
    microbatch_requests: int
    bubble_fraction: float
    in_flight_training: float  # microbatches' activations a training step would hold
    p2p_bytes_prefill: int  # one microbatch's hidden state sent between two stages
    p2p_bytes_decode: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Serving:
    """Serving figures for the workload (times in ms, rates per second)."""

    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    tokens_per_s: float
    tokens_per_s_per_chip: float
    decode_tokens_per_s: float
    requests_fit: int | None  # requests of this shape the KV cache can hold (system)
    bottleneck: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PlanResult:
    """One plan evaluated for a model, hardware and workload."""

    plan: Plan
    layouts: dict[str, str]
    memory: Memory
    pipeline: Pipeline
    serving: Serving
    notes: tuple[str, ...] = ()
    # every stage's collectives in each phase, and the stage-to-stage send (DEFINITIONS)
    collectives: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_dict(),
            "layouts": dict(self.layouts),
            "memory": self.memory.to_dict(),
            "pipeline": self.pipeline.to_dict(),
            "serving": self.serving.to_dict(),
            "collectives": [dict(c) for c in self.collectives],
            "notes": list(self.notes),
        }


# -- what a plan reads of the model and the chip ---------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the planner reads of a model's config besides its layers' calls: its name, the
    hidden size (stage-to-stage sends), each layer's block in depth order (the stages),
    tied embeddings, the experts and whether a mixer is MLA (the candidates), and the
    bytes of one activation element."""

    name: str
    hidden_size: int
    layer_blocks: tuple[int, ...]
    tie_word_embeddings: bool
    experts: int
    mla: bool
    act_bytes: Fraction


@dataclass(frozen=True)
class Chip:
    """What the planner reads of a chip: its name and capacity; the rate weight vectors
    load at (memory bandwidth × efficiency, GB/s) and a kernel's overhead (µs), as floats;
    and one stage-to-stage send (a send-recv over two chips under the collective
    conventions given) as latency steps · α (ms) plus ms per payload byte, exact."""

    name: str
    capacity_bytes: int | None
    vector_gb_s: float
    kernel_overhead_us: float
    send_fixed_ms: Fraction
    send_ms_per_byte: Fraction

    def send_ms(self, payload: int) -> float:
        """One stage-to-stage send of ``payload`` bytes, rounded once to a float (as
        ``communication.collective_time_ms`` rounds)."""
        if payload <= 0:
            return 0.0
        return float(self.send_fixed_ms + self.send_ms_per_byte * payload)


# -- a plan placed: what each stage runs --------------------------------------------------------


@dataclass(frozen=True)
class Vectors:
    """Weight vectors of a stage (norms, biases): bytes per chip, kernels, read once per
    pass, ``count`` times."""

    weight_bytes: int
    kernels: int
    count: int


@dataclass(frozen=True)
class Call:
    """A layer of a stage: its compiled function (a name among the model's), the inputs
    the config, the plan and the user fix, which of a microbatch's it reads
    (``batch_size``, the length), and what it is in the report."""

    function: str
    kwargs: tuple[tuple[str, Any], ...]
    reads: tuple[str, ...]  # of WORKLOAD_INPUTS
    scale: int  # requests at the layer per request of the microbatch (dp at the experts)
    count: int  # layers alike
    name: str  # the component (``model.piece_name``)
    layer: str
    layout: str
    tied: bool  # an LM head whose matrix is the embedding's: its weights are counted there
    said: str  # where its collectives come from (the model's name for it)


Piece = Vectors | Call
WORKLOAD_INPUTS = ("batch_size", "seq_len", "past_seq_len")
LENGTH = {PREFILL: "seq_len", DECODE: "past_seq_len"}


def degrees(plan: Plan, layer: str) -> tuple[dict[str, int], int]:
    """The degrees a layer of ``plan`` is called with, and its requests per request of a
    microbatch: experts over ``moe_tp`` columns and ``ep`` ranks, every replica's tokens
    meeting at them."""
    out = {"tensor_parallel": plan.tp, "context_parallel": plan.cp}
    scale = 1
    if layer == "moe":
        out["tensor_parallel"] = _moe_tp(plan)
        if plan.ep > 1:
            out["expert_parallel"] = plan.ep
            scale = plan.dp  # every replica's tokens meet at the experts
    return out, scale


def _moe_tp(plan: Plan) -> int:
    return plan.tp * plan.dp // plan.ep if plan.ep > 1 else plan.tp


@dataclass(frozen=True)
class Placement:
    """A model's stages under one plan: each layer's layout, and each stage's pieces in
    each phase."""

    plan: Plan
    layouts: dict[str, str]
    stages: tuple[Stage, ...]
    pieces: Mapping[tuple[int, str], tuple[Piece, ...]]  # (stage, phase) -> its pieces


class Model:
    """A model on a chip as the planner sees it: facts, placements and calls. The engine
    (``formulas.plan``) places plans through the model's walk and calls the compiled
    functions; the cache (``shardcost.numeric_plan``) replays what the engine placed and
    runs the functions' stored programs. Each distinct call is made once."""

    def __init__(self, config: Any, hardware: Any, facts: Facts, chip: Chip) -> None:
        self.config, self.hardware = config, hardware  # what reports name (``.name``)
        self.facts, self.chip = facts, chip
        self.calls: dict[tuple[Any, ...], Mapping[str, Any]] = {}
        self.placements: dict[Plan, Placement | InputError] = {}

    def place(self, plan: Plan) -> Placement:
        """Each layer's layout and each stage's pieces; InputError when the plan cannot
        run the model (placed once per plan)."""
        found = self.placements.get(plan)
        if found is None:
            try:
                found = self.placement(plan)
            except InputError as exc:
                found = exc
            self.placements[plan] = found
        if isinstance(found, InputError):
            raise found
        return found

    def placement(self, plan: Plan) -> Placement:
        raise NotImplementedError

    def run(self, function: str, kwargs: dict[str, Any]) -> Mapping[str, Any]:
        """The compiled function's nine metrics and four timings."""
        raise NotImplementedError

    def said(self, piece: Call, phase: str, values: Mapping[str, int]) -> list[dict[str, Any]]:
        """Each collective of ``piece`` at the microbatch's ``values``: name, kind, group
        and payload bytes per chip, as ``metrics --format json`` gives them."""
        raise NotImplementedError

    def call(self, piece: Call, batch: int, length: Any, phase: str) -> Mapping[str, Any]:
        """``piece``'s outputs for ``batch`` requests at ``length`` (an array of past
        lengths gives arrays)."""
        kwargs = dict(piece.kwargs)
        if "batch_size" in piece.reads:
            kwargs["batch_size"] = batch * piece.scale
        if LENGTH[phase] in piece.reads:
            kwargs[LENGTH[phase]] = length
        key = (piece.function, tuple(sorted((k, _hashable(v)) for k, v in kwargs.items())))
        found = self.calls.get(key)
        if found is None:
            found = self.calls[key] = self.run(piece.function, kwargs)
        return found


def _hashable(value: object) -> object:
    return value.tobytes() if isinstance(value, np.ndarray) else value


# -- one stage, one phase ------------------------------------------------------------------


@dataclass
class _StageCost:
    """A stage's sums for one microbatch in one phase (arrays over past lengths in decode)."""

    wall: Any = 0.0
    compute: Any = 0.0
    load: Any = 0.0
    communication: Any = 0.0
    weights: int = 0
    kv_cache: int = 0
    activations: int = 0

    def add(self, out: Mapping[str, Any], count: int) -> None:
        self.wall = self.wall + count * out["wall_clock_time_ms"]
        self.compute = self.compute + count * out["compute_time_ms"]
        self.load = self.load + count * out["load_time_ms"]
        self.communication = self.communication + count * out["communication_time_ms"]
        self.weights += count * _whole(out["weight_memory_per_chip"])
        self.kv_cache += count * _whole(out["kv_cache_per_chip"])
        self.activations = max(self.activations, _whole(out["activation_memory_per_chip"]))

    def add_bytes(self, weights: int, kernels: int, chip: Chip, count: int) -> None:
        """Vectors: weight bytes, read once per pass (their load time), no FLOPs."""
        ms = weights / (chip.vector_gb_s * 1e6)
        ms += kernels * chip.kernel_overhead_us / 1e3
        self.wall = self.wall + count * ms
        self.load = self.load + count * ms
        self.weights += count * weights


def _whole(value: Any) -> int:
    """A count from a compiled call: an exact int, or the largest of an array's."""
    if isinstance(value, np.ndarray):
        return int(value.max())
    return int(value)


def cost(
    model: Model, place: Placement, stage: Stage, phase: str, batch: int, length: Any
) -> _StageCost:
    """Stage ``stage``'s sums for ``batch`` requests at ``length``."""
    found = _StageCost()
    for piece in place.pieces[stage.index, phase]:
        if isinstance(piece, Vectors):
            found.add_bytes(piece.weight_bytes, piece.kernels, model.chip, piece.count)
            continue
        out = model.call(piece, batch, length, phase)
        if piece.tied:
            out = dict(out) | {"weight_memory_per_chip": 0}  # counted with the embedding
        found.add(out, piece.count)
    return found


def stage_collectives(
    model: Model, place: Placement, stage: Stage, phase: str, batch: int, length: int
) -> list[dict[str, Any]]:
    """Stage ``stage``'s collectives for ``batch`` requests at ``length``, one entry per
    component and collective, ``count`` its layers on the stage."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for piece in place.pieces[stage.index, phase]:
        if isinstance(piece, Vectors):
            continue
        values = {"batch_size": batch * piece.scale, LENGTH[phase]: length}
        for c in model.said(piece, phase, values):
            key = (piece.name, c["name"])
            if key in found:
                found[key]["count"] += piece.count
                continue
            found[key] = {
                "phase": phase,
                "stage": stage.index,
                "component": piece.name,
                "layer": piece.layer,
                "layout": piece.layout,
                "count": piece.count,
                **c,
            }
    return list(found.values())


# -- a plan, evaluated ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Batches:
    """How a workload splits: the busiest replica's requests, microbatches, their size."""

    replica: int
    microbatches: int
    micro: int

    @classmethod
    def of(cls, plan: Plan, workload: Workload) -> _Batches:
        replica = -(-workload.concurrency // plan.dp)  # the busiest replica's requests
        m = plan.microbatches or min(plan.pp, replica)
        if m > replica:
            raise InputError(f"microbatches={m} exceeds the {replica} requests of a replica")
        return cls(replica, m, -(-replica // m))


@dataclass(frozen=True)
class _Costs:
    """Each stage's sums: a prefill microbatch, a decode microbatch over the output's past
    lengths, the replica's cache at the longest context, and one request's."""

    prefill: list[_StageCost]
    decode: list[_StageCost]
    memory: list[_StageCost]
    one: list[_StageCost]
    steps: np.ndarray

    def activations(self, s: int) -> int:
        return max(self.prefill[s].activations, self.memory[s].activations)


def _costs(model: Model, place: Placement, w: Workload, b: _Batches, longest: int) -> _Costs:
    steps = np.arange(w.prompt, w.prompt + w.output - 1, dtype=np.int64)
    found = _Costs([], [], [], [], steps)
    for stage in place.stages:
        found.prefill.append(cost(model, place, stage, PREFILL, b.micro, w.prompt))
        if len(steps):
            found.decode.append(cost(model, place, stage, DECODE, b.micro, steps))
        found.memory.append(cost(model, place, stage, DECODE, b.replica, longest))
        found.one.append(cost(model, place, stage, DECODE, 1, longest))
    return found


def _memory(
    costs: _Costs, capacity: int | None, reserve: Fraction, dp: int
) -> tuple[Memory, int | None]:
    """The busiest stage's memory, and the requests of this shape the cache can hold."""
    mem = costs.memory
    busiest = max(
        range(len(mem)),
        key=lambda s: mem[s].weights + mem[s].kv_cache + costs.activations(s),
    )
    memory = Memory(
        mem[busiest].weights, mem[busiest].kv_cache, costs.activations(busiest), capacity, reserve
    )
    if memory.usable is None:
        return memory, None
    per_stage = []
    for s in range(len(mem)):
        free = memory.usable - mem[s].weights - costs.activations(s)
        per_stage.append(max(0, free) // costs.one[s].kv_cache if costs.one[s].kv_cache else 10**12)
    return memory, min(per_stage) * dp


def _pipeline(plan: Plan, place: Placement, b: _Batches, sends: tuple[int, int]) -> Pipeline:
    """The pipeline's figures; stage-to-stage bytes only when there are stages."""
    m, v, pp = b.microbatches, plan.chunks, plan.pp
    in_flight = {"gpipe": m, "1f1b": min(m, pp)}.get(
        plan.schedule, min(m, pp) * (1 + (pp - 1) / (pp * v))
    )
    return Pipeline(
        pp,
        tuple(st.num_layers for st in place.stages),
        plan.schedule,
        m,
        v,
        b.micro,
        (pp - 1) / (v * m + pp - 1),
        float(in_flight),
        sends[0] if pp > 1 else 0,
        sends[1] if pp > 1 else 0,
    )


def _serving(
    plan: Plan,
    w: Workload,
    b: _Batches,
    costs: _Costs,
    sends_ms: tuple[float, float],
    fit: int | None,
) -> Serving:
    """TTFT, TPOT and the rates (the module's docstring gives each formula)."""
    m, v, pp = b.microbatches, plan.chunks, plan.pp
    hops = v * pp - 1
    t_pre = [c.wall for c in costs.prefill]
    slowest = max(t_pre)
    ttft = max(sum(t_pre), m * slowest + (pp - 1) * slowest / v) + hops * sends_ms[0]
    tpot = 0.0
    if costs.decode:
        shape = costs.steps.shape
        t_dec = np.array([np.broadcast_to(c.wall, shape) for c in costs.decode], dtype=float)
        path = t_dec.sum(axis=0) + hops * sends_ms[1]
        tpot = float(np.maximum(path, m * t_dec.max(axis=0)).mean())
    e2e = ttft + (w.output - 1) * tpot
    tokens = w.concurrency * w.output / (e2e / 1e3)
    bottleneck = (
        _bottleneck(costs.decode, tpot, hops * sends_ms[1]) if costs.decode else "no decode steps"
    )
    decode_rate = w.concurrency / (tpot / 1e3) if tpot else 0.0
    return Serving(ttft, tpot, e2e, tokens, tokens / plan.chips, decode_rate, fit, bottleneck)


def evaluate(
    model: Model,
    plan: Plan,
    workload: Workload,
    *,
    reserve: Fraction = DEFAULT_RESERVE,
    min_context: int = 0,
    collectives: bool = True,
) -> PlanResult:
    """Memory, pipeline and serving figures of ``plan``; InputError when the plan cannot
    run the model (from the plan, or from a layer's validation). ``collectives``: with
    each stage's collectives (``with_collectives``; a search adds them to the plans it
    reports only)."""
    place = model.place(plan)
    w, facts = workload, model.facts
    batches = _Batches.of(plan, w)
    costs = _costs(model, place, w, batches, max(w.prompt + w.output - 1, min_context))
    act = facts.act_bytes
    sends = (
        math.ceil(batches.micro * w.prompt * facts.hidden_size * act),
        math.ceil(batches.micro * facts.hidden_size * act),
    )
    sends_ms = (model.chip.send_ms(sends[0]), model.chip.send_ms(sends[1]))
    memory, fit = _memory(costs, model.chip.capacity_bytes, reserve, plan.dp)
    notes = []
    if facts.tie_word_embeddings and plan.pp > 1:
        notes.append(
            "tied embeddings: the last stage holds its own copy of the matrix for the LM head"
        )
    if w.concurrency % plan.dp:
        notes.append(
            f"{w.concurrency} requests over dp={plan.dp}: the busiest replica serves "
            f"{batches.replica}"
        )
    result = PlanResult(
        plan,
        dict(place.layouts),
        memory,
        _pipeline(plan, place, batches, sends),
        _serving(plan, w, batches, costs, sends_ms, fit),
        tuple(notes),
    )
    return with_collectives(model, result, w) if collectives else result


def with_collectives(model: Model, result: PlanResult, w: Workload) -> PlanResult:
    """``result`` with every stage's collectives: a prefill microbatch at the prompt's
    length, a decode microbatch at the last step's past length (none without decode
    steps); then, with stages, the stage-to-stage send of each phase, once per boundary
    a microbatch crosses."""
    plan, out = result.plan, []
    place = model.place(plan)
    b = _Batches.of(plan, w)
    sends = (result.pipeline.p2p_bytes_prefill, result.pipeline.p2p_bytes_decode)
    phases = [(PREFILL, w.prompt, sends[0])]
    if w.output > 1:
        phases.append((DECODE, w.prompt + w.output - 2, sends[1]))
    for ph, length, _ in phases:
        for stage in place.stages:
            out += stage_collectives(model, place, stage, ph, b.micro, length)
    if plan.pp > 1:
        out += [
            {
                "phase": ph,
                "stage": None,
                "component": "stage_send",
                "layer": None,
                "layout": None,
                "count": plan.chunks * plan.pp - 1,
                "name": "stage_send",
                "kind": "send-recv",
                "group": "2",
                "bytes_per_chip": payload,
            }
            for ph, _, payload in phases
        ]
    return replace(result, collectives=tuple(out))


def _bottleneck(dec: list[_StageCost], tpot: float, sends: float) -> str:
    """What a decode cycle spends most of its time on, over every stage."""
    compute = sum(float(np.mean(c.compute)) for c in dec)
    load = sum(float(np.mean(c.load)) for c in dec)
    comm = sum(float(np.mean(c.communication)) for c in dec) + sends
    busy = sum(float(np.mean(c.wall)) for c in dec)
    parts = {
        "compute": compute,
        "memory": load,
        "communication": comm,
        "pipeline wait": max(0.0, tpot - busy),
    }
    name = max(parts, key=lambda k: parts[k])
    return f"{name} ({parts[name] / tpot:.0%} of TPOT)" if tpot else name


# -- the planner ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What a plan must meet to be chosen (None: no limit)."""

    max_tpot_ms: float | None = None
    max_ttft_ms: float | None = None
    min_context: int = 0


OBJECTIVES = {
    "throughput": ("tokens/s per chip", lambda r: -r.serving.tokens_per_s_per_chip),
    "tpot": ("lowest TPOT", lambda r: r.serving.tpot_ms),
    "ttft": ("lowest TTFT", lambda r: r.serving.ttft_ms),
}


@dataclass(frozen=True)
class PlanSearch:
    """Every plan for ``chips`` chips: how many were tried, why some were dropped, the
    ones that fit, the Pareto front and the best per objective."""

    config: Any  # what names the model (``.name``): its ModelConfig, or plain facts
    hardware: Any  # the chip (``.name``, ``.capacity_bytes``)
    workload: Workload
    chips: int
    limits: Limits
    reserve: Fraction
    tried: int
    invalid: dict[str, int]  # reason -> plans
    too_big: dict[str, int]  # reason -> plans
    too_big_plans: dict[str, tuple[tuple[str, int], ...]]  # reason -> (plan, bytes per chip)
    over_limits: dict[str, int]
    results: tuple[PlanResult, ...]  # every plan that fits and meets the limits
    front: tuple[PlanResult, ...]  # TPOT ascending, throughput per chip descending
    best: dict[str, PlanResult]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.config.name,
            "hardware": self.hardware.name,
            "chips": self.chips,
            "workload": asdict(self.workload),
            "limits": asdict(self.limits),
            "reserve_fraction": float(self.reserve),
            "tried": self.tried,
            "invalid": self.invalid,
            "do_not_fit": self.too_big,
            "do_not_fit_plans": {
                k: [{"plan": p, "bytes_per_chip": n} for p, n in v]
                for k, v in self.too_big_plans.items()
            },
            "over_limits": self.over_limits,
            "evaluated": len(self.results),
            "front": [r.to_dict() for r in self.front],
            "best": {k: r.to_dict() for k, r in self.best.items()},
            "seconds": self.seconds,
            "definitions": [*DEFINITIONS, COLLECTIVES],
            "units": dict(UNITS),
        }


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


def candidates(facts: Facts, chips: int, *, interleaved: bool = False) -> Iterator[Plan]:
    """Every plan whose degrees multiply to ``chips``: tp, cp, pp and dp; ep over the
    divisors of tp × dp that divide the experts; each context-parallel layout when cp > 1."""
    experts = facts.experts
    for tp in _divisors(chips):
        for cp in _divisors(chips // tp):
            if cp > 1 and facts.mla:
                continue  # MLA has no context-parallel layout: not a plan
            for pp in _divisors(chips // (tp * cp)):
                dp = chips // (tp * cp * pp)
                eps = [e for e in _divisors(tp * dp) if experts and experts % e == 0] or [1]
                layouts = list(CP_LAYOUTS.values()) if cp > 1 and tp == 1 else ["cp-kv-sharded"]
                for ep in eps:
                    for cp_layout in layouts:
                        plan = Plan(tp, cp, ep, pp, dp, cp_layout)
                        yield plan
                        if interleaved and pp > 1:
                            yield replace(plan, schedule="interleaved", chunks=2)


def _reason(exc: Exception) -> str:
    """A reason to group plans by: the message's first clause, each degree's value left
    out (plans that fail alike, at any degree, count together)."""
    text = str(exc).split("; ")[0]
    return re.sub(r"\b(" + "|".join(_DEGREES.values()) + r")=\d+", r"\1", text)


def pareto(results: list[PlanResult]) -> list[PlanResult]:
    """The plans no other beats on both TPOT (lower) and tokens/s per chip (higher),
    TPOT ascending."""
    ordered = sorted(results, key=lambda r: (r.serving.tpot_ms, -r.serving.tokens_per_s_per_chip))
    front: list[PlanResult] = []
    for r in ordered:
        if not front or r.serving.tokens_per_s_per_chip > front[-1].serving.tokens_per_s_per_chip:
            front.append(r)
    return front


def search(
    model: Model,
    chips: int,
    workload: Workload,
    *,
    limits: Limits | None = None,
    reserve: Fraction = DEFAULT_RESERVE,
    interleaved: bool = False,
    started: float | None = None,
) -> PlanSearch:
    """Every plan for ``chips`` chips, evaluated; see PlanSearch. ``started``: when the
    search began (``time.perf_counter``), if before this call."""
    start = time.perf_counter() if started is None else started
    limits = limits or Limits()
    invalid: dict[str, int] = {}
    too_big: dict[str, int] = {}
    big_plans: dict[str, list[tuple[str, int]]] = {}
    over: dict[str, int] = {}
    results: list[PlanResult] = []
    tried = 0
    for plan in candidates(model.facts, chips, interleaved=interleaved):
        tried += 1
        try:
            result = evaluate(
                model,
                plan,
                workload,
                reserve=reserve,
                min_context=limits.min_context,
                collectives=False,
            )
        except InputError as exc:
            invalid[_reason(exc)] = invalid.get(_reason(exc), 0) + 1
            continue
        if result.memory.fits is False:
            key = _too_big(result)
            too_big[key] = too_big.get(key, 0) + 1
            big_plans.setdefault(key, []).append((plan.label, result.memory.used))
            continue
        why = _over_limits(result, limits)
        if why:
            over[why] = over.get(why, 0) + 1
            continue
        results.append(result)
    best = (
        {name: min(results, key=rank) for name, (_, rank) in OBJECTIVES.items()} if results else {}
    )
    front = pareto(results)
    # what the search reports gets its collectives (the engine's, a few ms a plan)
    told = {id(r): with_collectives(model, r, workload) for r in (*front, *best.values())}
    results = [told.get(id(r), r) for r in results]
    front = [told[id(r)] for r in front]
    best = {k: told[id(r)] for k, r in best.items()}
    return PlanSearch(
        model.config,
        model.hardware,
        workload,
        chips,
        limits,
        reserve,
        tried,
        invalid,
        too_big,
        {k: tuple(v) for k, v in big_plans.items()},
        over,
        tuple(results),
        tuple(front),
        best,
        time.perf_counter() - start,
    )


@dataclass(frozen=True)
class PlannedModel:
    """One plan of one model, evaluated (``shardcost model --plan``)."""

    config: Any  # what names the model (``.name``)
    hardware: Any  # the chip (``.name``, ``.capacity_bytes``)
    workload: Workload
    result: PlanResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.config.name,
            "hardware": self.hardware.name,
            "workload": asdict(self.workload),
            **self.result.to_dict(),
            "definitions": [*DEFINITIONS, COLLECTIVES],
            "units": dict(UNITS),
        }


def _too_big(result: PlanResult) -> str:
    m = result.memory
    what = (
        "weights alone exceed"
        if m.weights > (m.usable or 0)
        else "weights, KV cache and activations exceed"
    )
    usable = m.usable or 0
    return f"{what} the {usable / 1e9:.1f} GB ({usable / 2**30:.1f} GiB) usable per chip"


def _over_limits(result: PlanResult, limits: Limits) -> str:
    s = result.serving
    if limits.max_tpot_ms is not None and s.tpot_ms > limits.max_tpot_ms:
        return f"TPOT above {limits.max_tpot_ms:g} ms"
    if limits.max_ttft_ms is not None and s.ttft_ms > limits.max_ttft_ms:
        return f"TTFT above {limits.max_ttft_ms:g} ms"
    return ""


def reserve_fraction(raw: object) -> Fraction:
    """A runtime reserve from 0 to below 1; InputError otherwise."""
    try:
        value = Fraction(str(raw))
    except (ValueError, ZeroDivisionError):
        raise InputError(f"reserve={raw!r} is not a number (give a fraction such as 0.1)") from None
    if not 0 <= value < 1:
        raise InputError(f"reserve={raw!r}: give a fraction from 0 to below 1 (0.1 is 10 %)")
    return value
