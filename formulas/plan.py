"""Plans through the engine: a model's walk placed on a plan's chips, each layer through
its compiled function (``model.layer_call``: ``shardcost.compile`` with timing), each
collective through the engine's evaluation. The arithmetic of plans (stages, memory,
pipeline, serving figures, the search) is ``shardcost.planning``'s, which the cache's
path (``shardcost.numeric_plan``) runs too; its names are this module's as well.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from shardcost.errors import InputError, ShardcostError
from shardcost.planning import (  # noqa: F401  (this module's names, as before)
    _DEGREES,
    COLLECTIVES,
    CP_LAYOUTS,
    DEFAULT_RESERVE,
    DEFINITIONS,
    GIB,
    LENGTH,
    OBJECTIVES,
    SCHEDULES,
    UNITS,
    Call,
    Chip,
    Facts,
    Limits,
    Memory,
    Model,
    Pipeline,
    Placement,
    Plan,
    PlannedModel,
    PlanResult,
    PlanSearch,
    Serving,
    Stage,
    Vectors,
    Workload,
    candidates,
    degrees,
    evaluate,
    pareto,
    parse_plan,
    reserve_fraction,
)
from shardcost.planning import search as search_plans
from shardcost.planning import stages as stages_of

from .conventions import TIMING_CONVENTIONS, Phase
from .families import ModelConfig, load_config
from .hardware import FIELDS_BY_NAME as HARDWARE_BY_NAME
from .hardware import Hardware
from .model import (
    FROM_CONFIG,
    Slot,
    _given,
    _per_chip,
    layer_call,
    part_params,
    piece_name,
    walk,
)
from .registry import Layout, Role, get_layer, get_layout


def stages(config: ModelConfig, pp: int) -> tuple[Stage, ...]:
    """``config``'s layers in ``pp`` contiguous stages (``planning.stages``)."""
    return stages_of(config.layer_blocks(), pp)


def _layouts(config: ModelConfig, plan: Plan) -> dict[str, Layout]:
    """The layout of each layer of ``config`` under ``plan``; InputError if one has none."""
    out: dict[str, Layout] = {}
    mixers = {blk.mixer.layer for blk in config.blocks}
    channels = {blk.channel.layer for blk in config.blocks}
    if plan.tp > 1 and plan.cp > 1:
        name = "tp-cp"
    elif plan.cp > 1:
        name = plan.cp_layout
    elif plan.tp > 1:
        name = "tp"
    else:
        name = "single"
    for mixer in sorted(mixers):
        try:
            out[mixer] = get_layout(name, mixer)
        except ShardcostError:
            raise InputError(f"{mixer} has no layout {name!r} (context parallelism)") from None
    first = out[sorted(mixers)[0]]
    from .model import companion

    for role in (Role.EMBEDDING, Role.HEAD):
        lay = companion(first, role)
        out[lay.layer] = lay
    for channel in sorted(channels):
        if channel == "moe":
            out[channel] = _moe_layout(config, plan)
        else:
            out[channel] = companion(first, get_layer(channel))
    return out


def _moe_layout(config: ModelConfig, plan: Plan) -> Layout:
    if plan.cp > 1:
        raise InputError("the MoE layer has no context-parallel layout")
    if plan.ep == 1:
        return get_layout("tp" if plan.tp > 1 else "single", "moe")
    if (plan.tp * plan.dp) % plan.ep:
        raise InputError(
            f"ep={plan.ep} does not divide the tp × dp = {plan.tp * plan.dp} chips experts span"
        )
    return get_layout("ep-tp" if plan.tp * plan.dp > plan.ep else "ep", "moe")


class EngineModel(Model):
    """A model on a chip through the engine: plans placed through the model's walk, each
    layer's compiled function called (each distinct call once), collectives evaluated.

    What it placed and called is kept (``functions``, ``sayers``) so that the cache can
    store it (``shardcost.numeric_plan``); ``said_results`` keeps, when ``keep_results``
    is set, the inputs and engine result of each call's collectives."""

    def __init__(self, config: ModelConfig, hw: Hardware, given: Mapping[str, object]) -> None:
        super().__init__(config, hw, facts(config, given), chip(hw, given))
        self.given = dict(given)
        self.read: set[str] = set()
        self.functions: dict[str, Callable[..., Any]] = {}
        self._names: dict[int, str] = {}
        # a call's collectives: its layout, part, phase and fixed inputs
        self.sayers: dict[str, tuple[Layout, Any, Phase, dict[str, object]]] = {}
        self._said: dict[tuple[Any, ...], tuple[dict[str, object], Any]] = {}
        self.keep_results = False
        self.said_results: dict[str, tuple[dict[str, object], Any]] = {}

    def placement(self, plan: Plan) -> Placement:
        config = self.config
        layouts = _layouts(config, plan)
        num_layers = len(config.layer_blocks())
        if plan.pp * plan.chunks > num_layers:
            raise InputError(
                f"more pipeline stages (× chunks) than the model's {num_layers} layers"
            )
        found = stages(config, plan.pp)
        b = int(self.given.get("bytes_per_elem", config.bytes_per_elem))  # type: ignore[call-overload]
        shape = dict(config.shape)
        pieces: dict[tuple[int, str], tuple[Vectors | Call, ...]] = {}
        for stage in found:
            for ph in (Phase.PREFILL, Phase.DECODE):
                out: list[Vectors | Call] = []
                for piece in walk(config, stage.layers, first=stage.first, last=stage.last):
                    if piece.part is None:
                        elements = sum(_per_chip(v, plan.tp, shape) for v in piece.vectors)
                        kernels = sum(v.kernels for v in piece.vectors)
                        out.append(Vectors(elements * b, kernels, piece.count))
                        continue
                    lay = layouts[piece.part.layer]
                    tied = piece.slot is Slot.HEAD and config.tie_word_embeddings and plan.pp == 1
                    out.append(self._call(plan, lay, piece, ph, tied))
                pieces[stage.index, str(ph)] = tuple(out)
        return Placement(plan, {k: lay.name for k, lay in layouts.items()}, found, pieces)

    def _call(self, plan: Plan, lay: Layout, piece: Any, ph: Phase, tied: bool) -> Call:
        """A layer piece as its compiled call: the inputs fixed, and which of a
        microbatch's (batch, length) it reads."""
        fixed, scale = degrees(plan, lay.layer)
        length = LENGTH[str(ph)]
        offered = part_params(self.config, lay.layer, piece.part, self.given) | fixed
        call = layer_call(self.config, lay, ph, offered | {"batch_size": 1, length: 1}, self.hw)
        self.read |= call.reads & self.given.keys()
        reads = tuple(k for k in ("batch_size", length) if k in call.kwargs)
        kwargs = tuple(sorted((k, v) for k, v in call.kwargs.items() if k not in reads))
        said = repr((lay.layer, lay.name, str(ph), piece.part, sorted(fixed.items())))
        self.sayers.setdefault(said, (lay, piece.part, ph, fixed))
        return Call(
            self._name(call.function),
            kwargs,
            reads,
            scale,
            piece.count,
            piece_name(piece, lay),
            lay.layer,
            lay.name,
            tied,
            said,
        )

    @property
    def hw(self) -> Hardware:
        return self.hardware  # type: ignore[no-any-return]

    def _name(self, function: Callable[..., Any]) -> str:
        """A compiled function's name among the model's: its generated source's digest
        (the same function in every process)."""
        found = self._names.get(id(function))
        if found is None:
            import hashlib

            digest = hashlib.sha256(function.__source__.encode()).hexdigest()[:20]  # type: ignore[attr-defined]
            found = self._names[id(function)] = f"{function.__name__}_{digest}"
            self.functions[found] = function
        return found

    def run(self, function: str, kwargs: dict[str, Any]) -> Mapping[str, Any]:
        return self.functions[function](**kwargs)  # type: ignore[no-any-return]

    def said(self, piece: Call, phase: str, values: Mapping[str, int]) -> list[dict[str, Any]]:
        """The engine's evaluation (a compiled call gives only the collectives' sum),
        without the chip: bytes do not depend on it."""
        from .evaluate import evaluate as evaluate_layer
        from .inputs import applicable_params, resolve_inputs

        lay, part, ph, fixed = self.sayers[piece.said]
        offered = part_params(self.config, lay.layer, part, self.given) | fixed | dict(values)
        counted = {
            k: v
            for k, v in offered.items()
            if k not in HARDWARE_BY_NAME and k not in TIMING_CONVENTIONS
        }
        mine = applicable_params(lay, ph, counted)
        key = (lay.layer, lay.name, ph, tuple(sorted((k, str(v)) for k, v in mine.items())))
        found = self._said.get(key)
        if found is None:
            inputs = resolve_inputs(
                lay.name, str(ph), layer=lay.layer, params=mine, decoupled_heads=True
            )
            found = self._said[key] = (mine, evaluate_layer(inputs))
        if self.keep_results:
            self.said_results.setdefault(piece.said, found)
        return found[1].collective_list()  # type: ignore[no-any-return]


def facts(config: ModelConfig, given: Mapping[str, object]) -> Facts:
    """What the planner reads of ``config`` besides its layers' calls."""
    from .dtypes import DTYPES

    experts = 0
    for block in config.blocks:
        if block.channel.layer == "moe":
            experts = int(block.channel.get("num_experts", 0))  # type: ignore[call-overload]
            break
    name = given.get("activation_dtype")
    if isinstance(name, str) and name in DTYPES:
        act = Fraction(DTYPES[name].bytes)
    else:
        act = Fraction(int(given.get("bytes_per_elem", config.bytes_per_elem)))  # type: ignore[call-overload]
    return Facts(
        config.name,
        config.hidden_size,
        tuple(config.layer_blocks()),
        bool(config.tie_word_embeddings),
        experts,
        any(b.mixer.layer == "mla" for b in config.blocks),
        act,
    )


def chip(hw: Hardware, given: Mapping[str, object]) -> Chip:
    """What the planner reads of ``hw``: capacity, the vectors' load rate and overhead,
    and a stage-to-stage send (a send-recv over two chips) under the collective
    conventions given, timed as ``communication.collective_time_ms`` times it."""
    from .communication import latency_steps, wire_bytes

    algorithm = str(given.get("collective_algorithm", "ring"))
    bytes_mode = str(given.get("collective_bytes", "wire"))
    steps = latency_steps("send-recv", 2, algorithm=algorithm, bytes_mode=bytes_mode)
    per_byte = wire_bytes("send-recv", 2, 1, algorithm=algorithm, bytes_mode=bytes_mode)
    link = hw.interconnect_bandwidth_gb_s * hw.link_efficiency * 10**6  # B/ms
    return Chip(
        hw.name,
        hw.capacity_bytes,
        float(hw.memory_bandwidth_gb_s * hw.memory_efficiency),
        float(hw.kernel_overhead_us),
        Fraction(steps * hw.interconnect_latency_us) / 1000,
        Fraction(per_byte) / link,
    )


def engine_model(
    source: str | Path | Mapping[str, Any] | ModelConfig,
    hardware: str | Hardware,
    params: Mapping[str, object] | None = None,
) -> EngineModel:
    """The model in ``source`` on ``hardware`` (fields in ``params`` override it) with the
    rest of ``params`` (conventions, element types: ``check_given``)."""
    config = source if isinstance(source, ModelConfig) else load_config(source)
    hw, given = plan_inputs(config, hardware, params or {})
    return EngineModel(config, hw, given)


def search(
    source: str | Path | Mapping[str, Any] | ModelConfig,
    chips: int,
    hardware: str | Hardware,
    workload: Workload | None = None,
    *,
    limits: Limits | None = None,
    reserve: Fraction = DEFAULT_RESERVE,
    params: Mapping[str, object] | None = None,
    interleaved: bool = False,
    model: EngineModel | None = None,
) -> PlanSearch:
    """Every plan for ``chips`` chips, evaluated; see ``planning.PlanSearch``.
    ``model``: the engine's model of ``source`` already (``engine_model``)."""
    if isinstance(chips, bool) or not isinstance(chips, int) or not 1 <= chips <= 65536:
        raise InputError(f"chips={chips!r}: give a whole number from 1 to 65,536")
    start = time.perf_counter()
    model = model or engine_model(source, hardware, params)
    return search_plans(
        model,
        chips,
        workload or Workload(),
        limits=limits,
        reserve=reserve,
        interleaved=interleaved,
        started=start,
    )


def plan_inputs(
    config: ModelConfig, hardware: str | Hardware, params: Mapping[str, object]
) -> tuple[Hardware, dict[str, object]]:
    """The hardware (a name or an entry, with any fields in ``params`` overriding it) and
    the rest of ``params`` checked (see ``check_given``)."""
    from .inputs import _hardware

    fields = {k: v for k, v in params.items() if k in HARDWARE_BY_NAME}
    if isinstance(hardware, Hardware):
        known = {k: v for k, v in hardware.fields().items() if v is not None}
        hw = hardware if not fields else _hardware(None, known | fields)
    else:
        hw = _hardware(hardware, fields)
    assert hw is not None
    rest = {k: v for k, v in params.items() if k not in HARDWARE_BY_NAME}
    return hw, check_given(config, rest)


def check_given(config: ModelConfig, params: Mapping[str, object]) -> dict[str, object]:
    """The user's parameters for a plan: conventions and element types (the plan sets
    the degrees, the workload the batch and lengths, the config the shapes)."""
    taken = {"batch_size", "seq_len", "past_seq_len", "new_tokens", *(_DEGREES.values())}
    clash = [k for k in params if k in taken]
    if clash:
        raise InputError(
            f"{clash[0]} is set by the plan or the workload (--plan, --prompt, --output-tokens, "
            "--concurrency); give it there"
        )
    fixed = [k for k in params if k in FROM_CONFIG]
    if fixed:
        raise InputError(f"{fixed[0]} comes from the model's config.json")
    return _given(config, Phase.PREFILL, dict(params))


def plan_model(
    source: str | Path | Mapping[str, Any] | ModelConfig,
    plan: Plan | str,
    hardware: str | Hardware,
    workload: Workload | None = None,
    *,
    reserve: Fraction = DEFAULT_RESERVE,
    params: Mapping[str, object] | None = None,
    model: EngineModel | None = None,
) -> PlannedModel:
    """``plan`` (a Plan or ``"tp=8,pp=2"``) for the model in ``source``: memory per chip,
    the pipeline and the serving figures of ``workload``; InputError when it cannot run.
    ``model``: the engine's model of ``source`` already (``engine_model``)."""
    chosen = parse_plan(plan) if isinstance(plan, str) else plan
    model = model or engine_model(source, hardware, params)
    workload = workload or Workload()
    result = evaluate(model, chosen, workload, reserve=reserve)
    unused = [k for k in model.given if k not in model.read and k != "bytes_per_elem"]
    if unused:
        raise InputError(f"{unused[0]} is read by no component of the model under {chosen.label}")
    return PlannedModel(model.config, model.hardware, workload, result)
