"""Whole models from a Hugging Face ``config.json``: parameters, metrics and timing.

A decoder-only model is

    embedding → L × [norm → mixer → norm → channel mixer] → final norm → LM head

where the mixer is ``attention`` (full, sliding-window or chunked) or ``mla`` and the
channel mixer ``ffn`` or ``moe``, as the model's family says (``families``). Decoder
layers that are alike are evaluated once and counted (a ``Block``). Each matrix-bearing
component is a registered layer, evaluated under a layout: the mixer's as chosen, each
other layer's the one that shards over the same parallel degrees (``companion``), so its
numbers are exactly what ``shardcost metrics --layer ...`` gives for the same inputs.
Norm weights, biases and attention sinks carry no matrix product; they add weight bytes
(and their load time), never FLOPs. A model's per-chip metrics are the sums of its
components' over every layer; its timing is the sum of theirs (the layers run one after
another).

Parameters are the layers' own weights, counted by their derivations (each layer's
``single`` layout at one byte per element), plus the vectors: what
``sum(p.numel() for p in model.parameters())`` gives, a tied LM head counted once.
Everything is read from a local file: nothing is fetched.

The components come from one walk of the model (``walk``), which the planner takes
stage by stage too. ``model_metrics`` evaluates each with SymPy (derivations, notes,
exact times); ``compile_model`` builds the same sums from the layers' compiled functions
(``layer_call``, as the planner calls them) once, to evaluate in microseconds a call.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, astuple, dataclass, field
from enum import StrEnum
from fractions import Fraction
from functools import cache, partial
from pathlib import Path
from typing import Any

import sympy

from shardcost.errors import InputError
from shardcost.numeric_model import (
    assemble,
    component_json,
    layer_piece,
    model_json,
    model_sums,
    shown_params,
    vector_elements,
    vector_piece,
    vector_row,
)
from shardcost.numeric_model import memory as memory_of
from shardcost.symbolic.dimensions import (
    BATCH_SIZE,
    BYTES_PER_ELEM,
    HIDDEN_SIZE,
    TENSOR_PARALLEL,
    VOCAB_SIZE,
)
from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS_BY_NAME

from .conventions import BY_NAME as CONVENTIONS_BY_NAME
from .conventions import Conventions, Phase, phase, static_default
from .dtypes import compute_bytes
from .evaluate import Metrics, Result, Timing, evaluate
from .families import FAMILIES, ModelConfig, Part, Vector, load_config, parse_config
from .hardware import FIELDS_BY_NAME as HARDWARE_BY_NAME
from .hardware import NUMERIC_FIELDS, Hardware, kernel_class
from .inputs import (
    applicable_params,
    check_keys,
    idle_degree,
    parse_count,
    request_lengths,
    resolve_inputs,
)
from .registry import Layer, Layout, Role, all_layers, all_layouts, get_layer, get_layout

__all__ = [
    "FAMILIES",
    "CompiledModel",
    "Component",
    "LayerCall",
    "ModelConfig",
    "ModelResult",
    "Piece",
    "Slot",
    "companion",
    "compile_model",
    "layer_call",
    "layer_of",
    "load_config",
    "model_keys",
    "model_metrics",
    "parse_config",
    "walk",
]

# Keys a block's layers take from the config; a user may not override them.
FROM_CONFIG = frozenset(
    {
        HIDDEN_SIZE.name,
        VOCAB_SIZE.name,
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "intermediate_size",
        "ffn_gated",
        "num_experts",
        "experts_per_token",
        "moe_intermediate_size",
        "shared_intermediate_size",
        "shared_experts",
        "expert_bias",
        "q_lora_rank",
        "kv_lora_rank",
        "qk_nope_head_dim",
        "qk_rope_head_dim",
        "v_head_dim",
        "mla_q_compressed",
        "attention_window",
        "sliding_window",
    }
)
_VECTOR_GROUPS = ("norms", "biases", "sinks")


@dataclass(frozen=True)
class Component:
    """One component of the model, evaluated per chip: how many there are, the layer and
    layout (None for norms and biases, which are counted here), metrics and timing."""

    name: str
    count: int
    layer: str | None
    layout: str | None
    metrics: Metrics
    timing: Timing | None
    result: Result | None = field(default=None, repr=False)
    block: int = -1  # the decoder block it belongs to; -1 outside the decoder layers
    chips: int = 1  # the chips it spans (a row of vectors: those of the layer it follows)
    collectives: tuple[dict[str, Any], ...] = ()  # as the metrics JSON gives them

    def row(self) -> dict[str, Any]:
        """The component as plain data (``numeric_model``: what the sums and renderers read)."""
        return {
            "name": self.name,
            "count": self.count,
            "layer": self.layer,
            "layout": self.layout,
            "metrics": asdict(self.metrics),
            "timing": None if self.timing is None else asdict(self.timing),
            "block": self.block,
            "chips": self.chips,
            "collectives": list(self.collectives),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return component_json(self.row())


@dataclass(frozen=True)
class ModelResult:
    """A whole model evaluated: parameters, components, totals, timing, memory."""

    config: ModelConfig
    phase: Phase
    layout: str
    chips: int
    params: dict[str, Any]
    components: tuple[Component, ...]
    metrics: Metrics  # every component, every layer
    per_layer: Metrics  # one decoder layer of the first block (mixer, channel, vectors)
    timing: Timing | None
    hardware: Hardware | None
    notes: tuple[str, ...]
    parameters: dict[str, Any] = field(default_factory=dict)  # exact counts (see parameters)

    @property
    def peak_activation_per_chip(self) -> int:
        """The largest one component holds at once: inference frees activations layer by
        layer, so this, not the sum, is what must fit."""
        return max(c.metrics.activation_memory_per_chip for c in self.components)

    @property
    def memory_per_chip(self) -> int:
        """Weights, the whole KV cache and the peak activation, per chip."""
        m = self.metrics
        return m.weight_memory_per_chip + m.kv_cache_per_chip + self.peak_activation_per_chip

    @property
    def capacity_bytes(self) -> int | None:
        """The chip's memory capacity in bytes (``Hardware.capacity_bytes``), when the
        hardware gives it."""
        hw = self.hardware
        return None if hw is None else hw.capacity_bytes

    def view(self) -> dict[str, Any]:
        """The model as plain data: what ``numeric_model.model_json`` and
        ``reports.text.render_model`` read, as the fast path builds it from cached programs
        (``numeric_model.model_view``) too. Its ``STATIC`` keys depend on the config, phase,
        layout and chip only."""
        c = self.config
        rows = [comp.row() for comp in self.components]
        metrics = asdict(self.metrics)
        hw = self.hardware
        return {
            "model": c.to_dict(),
            "summary": {
                "name": c.name,
                "family": c.family,
                "num_layers": c.num_layers,
                "hidden_size": c.hidden_size,
                "vocab_size": c.vocab_size,
                "dtype": c.dtype,
                "tie_word_embeddings": c.tie_word_embeddings,
                "shape": [list(pair) for pair in c.shape],
                "blocks": [[b.kind, b.count] for b in c.blocks],
            },
            "phase": str(self.phase),
            "layout": self.layout,
            "parameters": self.parameters,
            "hardware": None if hw is None else hw.name,
            "capacity": self.capacity_bytes,
            "hardware_fields": list(HARDWARE_BY_NAME),
            "chips": self.chips,
            "params": self.params,
            "components": rows,
            "metrics": metrics,
            "per_layer": asdict(self.per_layer),
            "memory": memory_of(metrics, rows, self.capacity_bytes),
            "timing": None if self.timing is None else asdict(self.timing),
            "notes": list(self.notes),
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``shardcost model``."""
        return model_json(self.view())


def model_metrics(
    source: str | Path | Mapping[str, Any],
    phase_name: str = "prefill",
    *,
    layout: str = "single",
    hardware: str | None = None,
    params: Mapping[str, object] | None = None,
) -> ModelResult:
    """Evaluate a whole model under ``layout`` (the mixers' layout; the other layers
    follow it) in one phase."""
    config = load_config(source)
    ph = phase(phase_name)
    params = dict(params or {})
    given = _given(config, ph, params)
    stack = _Stack(config, ph, layout, hardware, given)
    components = stack.components()
    unused = [k for k in params if k not in stack.read and not idle_degree(k, params[k])]
    if unused:
        raise InputError(
            f"{', '.join(unused)} is read by no component of the model with layout "
            f"{layout!r} in {ph}"
        )
    first = stack.results[0]
    # the chip as given, before a layer's kernel class folds its fitted figures in
    hw = _chip(hardware, given) if first.inputs.hardware is not None else None
    total, per_layer, timing = model_sums(stack.rows, hw is not None)
    shown = shown_params(stack.records, lambda _, k, v: _hidden(k, v))
    return ModelResult(
        config,
        ph,
        layout,
        first.chips,
        shown,
        tuple(components),
        Metrics(**total),
        Metrics(**per_layer),
        None if timing is None else Timing(**timing),
        hw,
        tuple(dict.fromkeys(stack.notes)),
        parameters(config),
    )


def _hidden(key: str, value: object) -> bool:
    """A parameter not shown among those in force: the config's own, or a static
    convention at its default."""
    return key in FROM_CONFIG or static_default(key, value)


class _Stack:
    """The model's components evaluated in one phase under one layout."""

    def __init__(
        self,
        config: ModelConfig,
        ph: Phase,
        layout: str,
        hardware: str | None,
        given: dict[str, object],
    ) -> None:
        self.config, self.phase, self.layout, self.hardware = config, ph, layout, hardware
        self.given = given
        self.read: set[str] = set()
        self.results: list[Result] = []
        self.notes: list[str] = list(config.notes)
        self.rows: list[dict[str, Any]] = []  # numeric_model.assemble's
        self.records: list[Mapping[str, Any]] = []
        self._done: dict[tuple[str, str, tuple], Result] = {}

    def evaluate(self, lay: Layout, part: Part, *, user: bool = True) -> Result:
        """``lay`` at the config's shapes for ``part`` and the user's parameters (each
        distinct evaluation done once)."""
        key = (lay.layer, lay.name, part.params)
        if key in self._done:
            return self._done[key]
        # a parameter count is one element per weight, whatever the type stores
        candidates = (
            part_params(self.config, lay.layer, part, self.given)
            if user
            else part_params(self.config, lay.layer, part, {BYTES_PER_ELEM.name: 1}, typed=False)
        )
        mine = applicable_params(lay, self.phase, candidates)
        self.read |= set(mine)
        inputs = resolve_inputs(
            lay.name,
            self.phase,
            layer=lay.layer,
            hardware=self.hardware if user else None,
            params=mine,
            decoupled_heads=True,
        )
        result = evaluate(inputs)
        self._done[key] = result
        if user:
            self.results.append(result)
        return result

    def plan(self) -> tuple[list[dict[str, Any]], list[tuple[Layout, Part]]]:
        """The walk as ``numeric_model.assemble`` takes it: each piece as plain data (a
        block's norms, biases and sinks each a row of their own), and each distinct
        evaluation's layout and part, first met first."""
        pieces: list[dict[str, Any]] = []
        evals: list[tuple[Layout, Part]] = []
        index: dict[tuple[str, str, tuple], int] = {}
        for piece in walk(self.config):
            if piece.part is None:
                pieces += [
                    vector_piece(
                        name,
                        piece.count,
                        piece.block,
                        str(piece.like),
                        [(v.size, v.shard, v.kernels) for v in vectors],
                    )
                    for name, vectors in piece_rows(piece)
                ]
                continue
            lay = piece_layout(self.config, self.layout, piece)
            key = (lay.layer, lay.name, piece.part.params)
            if key not in index:
                index[key] = len(evals)
                evals.append((lay, piece.part))
            tied = piece.slot is Slot.HEAD and self.config.tie_word_embeddings
            name = piece_name(piece, lay)
            pieces.append(
                layer_piece(
                    name,
                    piece.count,
                    piece.block,
                    str(piece.slot),
                    lay.layer,
                    lay.name,
                    index[key],
                    tied,
                )
            )
        return pieces, evals

    def components(self) -> list[Component]:
        """One row per component, in the model's order (``walk``): the embedding, each
        block's mixer, channel mixer and vectors, the final norm, the LM head (a tied one
        without weights)."""
        pieces, evals = self.plan()
        results: dict[int, Result] = {}

        def evaluate(i: int) -> dict[str, Any]:
            result = results[i] = self.evaluate(*evals[i])
            return record(result)

        built = assemble(
            pieces,
            evaluate,
            notes=self.config.notes,
            num_kv_heads=dict(self.config.shape).get("num_kv_heads", 1),
            bytes_per_elem=int(self.given.get(BYTES_PER_ELEM.name, self.config.bytes_per_elem)),  # type: ignore[call-overload]
        )
        assert built is not None  # the engine's evaluations always give a record
        self.rows, self.notes, self.records = built
        return [
            Component(
                r["name"],
                r["count"],
                r["layer"],
                r["layout"],
                Metrics(**r["metrics"]),
                None if r["timing"] is None else Timing(**r["timing"]),
                None if r["eval"] is None else results[r["eval"]],
                r["block"],
                r["chips"],
                tuple(r["collectives"]),
            )
            for r in self.rows
        ]


def record(result: Result) -> dict[str, Any]:
    """What ``numeric_model.assemble`` reads of one layer's evaluation."""
    inputs = result.inputs
    over_tp = TENSOR_PARALLEL in inputs.layout.degrees
    return {
        "metrics": asdict(result.metrics),
        "timing": None if result.timing is None else asdict(result.timing),
        "notes": result.notes,
        "chips": result.chips,
        "collectives": result.collective_list(),
        "tp": int(inputs.dims.get(TENSOR_PARALLEL.name, 1)) if over_tp else 1,  # type: ignore[arg-type]
        "chip": chip_figures(inputs.hardware),
        "params": inputs.params(),
    }


def chip_figures(hw: Hardware | None) -> tuple[Fraction, Fraction, Fraction] | None:
    """What a vector's load time reads of ``hw`` (``numeric_model.vector_row``)."""
    if hw is None:
        return None
    return (hw.memory_bandwidth_gb_s, hw.memory_efficiency, hw.kernel_overhead_us)


def _chip(name: str | None, given: Mapping[str, object]) -> Hardware | None:
    from .inputs import _hardware

    return _hardware(name, {k: v for k, v in given.items() if k in HARDWARE_BY_NAME})


def part_params(
    config: ModelConfig,
    layer: str,
    part: Part,
    given: Mapping[str, object],
    *,
    typed: bool = True,
) -> dict[str, object]:
    """What a block's ``part`` of ``layer`` is evaluated with: the config's widths, the
    part's own shapes, the user's ``given`` and (``typed``) the weight type a
    quantization_config sets for the layer, unless given."""
    out = {HIDDEN_SIZE.name: config.hidden_size, VOCAB_SIZE.name: config.vocab_size}
    out |= dict(part.params) | dict(given)
    quantized = dict(config.weight_dtypes).get(layer)
    if typed and quantized is not None and "weight_dtype" not in given:
        out["weight_dtype"] = quantized
    return out


def _per_chip(vector: Vector, tp: int, shape: Mapping[str, object]) -> int:
    """A vector's elements on one chip of ``tp`` ranks."""
    return vector_elements(vector.size, vector.shard, tp, shape.get("num_kv_heads", 1))


@cache
def _parameters(config: ModelConfig) -> dict[str, int]:
    out = {"embedding": 0, "layers": 0, "final_norm": 0, "lm_head": 0}
    stack = _Stack(config, Phase.PREFILL, "single", None, {})

    def weights(layer: str, part: Part) -> int:
        lay = get_layout("single", layer)
        return stack.evaluate(lay, part, user=False).metrics.weight_memory_per_chip

    out["embedding"] = (
        weights("embedding", Part("embedding")) + config.positions * config.hidden_size
    )
    per_block = []
    for block in config.blocks:
        mixer = weights(block.mixer.layer, block.mixer)
        channel = weights(block.channel.layer, block.channel)
        vectors = sum(v.size for v in block.vectors)
        per_block.append(
            {
                "kind": block.kind,
                "count": block.count,
                "mixer": mixer,
                "channel": channel,
                "vectors": vectors,
                "per_layer": mixer + channel + vectors,
            }
        )
        out["layers"] += block.count * (mixer + channel + vectors)
    out["final_norm"] = sum(v.size for v in config.final if v.group == "norms")
    head = weights("lm_head", Part("lm_head")) + sum(
        v.size for v in config.final if v.group != "norms"
    )
    out["lm_head"] = 0 if config.tie_word_embeddings else head
    out["total"] = out["embedding"] + out["layers"] + out["final_norm"] + out["lm_head"]
    first = per_block[0]
    out["per_layer"] = first["per_layer"]
    return out | {"blocks": per_block}  # type: ignore[dict-item]


def parameters(config: ModelConfig) -> dict[str, Any]:
    """Exact parameter counts: the embedding, the decoder layers (each kind's one layer
    and count), the final norm, the LM head (0 when tied) and the total."""
    return dict(_parameters(config))


def _given(config: ModelConfig, ph: Phase, params: dict[str, object]) -> dict[str, object]:
    """The user's parameters, checked (none of the config's own), with the config's bytes
    per element as the default and a ragged batch's size from its lengths."""
    check_keys(params)
    fixed = [k for k in params if k in FROM_CONFIG]
    if fixed:
        raise InputError(
            f"{', '.join(fixed)} comes from the model's config.json; edit the config to "
            "change the model's shape"
        )
    given = {BYTES_PER_ELEM.name: config.bytes_per_elem} | params
    lengths = request_lengths(given) if ph is Phase.DECODE else None
    if lengths is not None and BATCH_SIZE.name not in given:
        given[BATCH_SIZE.name] = len(lengths)  # a ragged batch: every layer sees its requests
    return given


def layer_of(role: Role) -> Layer:
    """The first declared layer that plays ``role`` in a model (a dense model's: the
    others of the role, e.g. MoE, are chosen by a family)."""
    found = [lay for lay in all_layers() if lay.role is role]
    if not found:
        raise InputError(f"a model needs a {role} layer; none is registered")
    return found[0]


def companion(mixer: Layout, target: Role | Layer) -> Layout:
    """The layout of the ``target`` layer (a role's first layer, or a layer) that goes
    with ``mixer``: the one it names (its ``companions``), else the one sharding over the
    same parallel degrees."""
    if isinstance(target, Role):
        target = layer_of(target)
    if target.name == mixer.layer:
        return mixer
    named = dict(mixer.companions).get(target.name)
    if named is not None:
        return get_layout(named, target.name)
    degrees = set(mixer.degrees)
    found = [lay for lay in all_layouts(target.name) if set(lay.degrees) == degrees]
    if len(found) != 1:
        over = ", ".join(sorted(dim.name for dim in degrees)) or "no degree"
        raise InputError(
            f"layout {mixer.name!r} has no matching {target.name} layout (one sharding over "
            f"{over}; found {len(found)}): name one in its companions"
        )
    return found[0]


def _vector_component(
    name: str,
    number: int,
    weight_bytes: int,
    kernels: int,
    chips: int,
    hw: Hardware | None,
    block: int,
) -> Component:
    """Weight vectors without a matrix product (norm weights, biases): their bytes on
    every chip, their load time, and a kernel overhead per norm."""
    metrics, timing = vector_row(weight_bytes, kernels, chips, chip_figures(hw))
    return Component(
        name,
        number,
        None,
        None,
        Metrics(**metrics),
        None if timing is None else Timing(**timing),
        None,
        block,
    )


def model_keys() -> tuple[str, ...]:
    """The keys ``shardcost model`` takes: dimensions and conventions the config does not
    fix, and the hardware fields."""
    dims = [k for k in DIMENSIONS_BY_NAME if k not in FROM_CONFIG]
    conventions = [k for k in CONVENTIONS_BY_NAME if k not in FROM_CONFIG]
    return (*dims, *conventions, *HARDWARE_BY_NAME)


# -- a model's walk: its components in order ---------------------------------------------------


class Slot(StrEnum):
    """What a piece of a model's walk is."""

    EMBEDDING = "embedding"
    POSITIONS = "positions"  # a learned position table (GPT-2)
    MIXER = "mixer"
    CHANNEL = "channel"
    VECTORS = "vectors"  # a decoder block's norms, biases and sinks
    FINAL_NORM = "final_norm"
    HEAD = "lm_head"
    HEAD_BIAS = "lm_head bias"


@dataclass(frozen=True)
class Piece:
    """One piece of a model's walk: a layer at ``part``'s shapes, or (``part`` None)
    weight vectors on the chips of the latest layer of slot ``like``."""

    slot: Slot
    count: int  # layers alike
    block: int  # the decoder block it belongs to; -1 outside the decoder layers
    part: Part | None = None
    vectors: tuple[Vector, ...] = ()
    like: Slot = Slot.EMBEDDING
    suffix: str = ""  # " [kind]" where the model has several kinds of block


def walk(
    config: ModelConfig,
    layers: Iterable[tuple[int, int]] | None = None,
    *,
    first: bool = True,
    last: bool = True,
) -> Iterator[Piece]:
    """The model's pieces in order: the embedding (and a position table), each decoder
    block's mixer, channel mixer and vectors, the final norm, the LM head (and its bias).

    ``layers``: (block index, count) pairs, every block by default; a pipeline stage gives
    its own, ``first`` and ``last`` saying whether it holds the embedding and the head."""
    blocks = config.blocks
    suffix = len(blocks) > 1
    if first:
        yield Piece(Slot.EMBEDDING, 1, -1, Part(layer_of(Role.EMBEDDING).name))
        if config.positions:
            table = Vector("positions", config.positions * config.hidden_size)
            yield Piece(Slot.POSITIONS, 1, -1, vectors=(table,))
    for i, count in ((i, b.count) for i, b in enumerate(blocks)) if layers is None else layers:
        block = blocks[i]
        kind = f" [{block.kind}]" if suffix else ""
        yield Piece(Slot.MIXER, count, i, block.mixer, suffix=kind)
        yield Piece(Slot.CHANNEL, count, i, block.channel, suffix=kind)
        yield Piece(Slot.VECTORS, count, i, vectors=block.vectors, like=Slot.CHANNEL, suffix=kind)
    if last:
        norms = tuple(v for v in config.final if v.group == "norms")
        yield Piece(Slot.FINAL_NORM, 1, -1, vectors=norms)
        yield Piece(Slot.HEAD, 1, -1, Part(layer_of(Role.HEAD).name))
        bias = tuple(v for v in config.final if v.group != "norms")
        if bias:
            yield Piece(Slot.HEAD_BIAS, 1, -1, vectors=bias, like=Slot.HEAD)


def piece_layout(config: ModelConfig, layout: str, piece: Piece) -> Layout:
    """The layout of a layer piece when the mixers take ``layout``: each other layer's
    the one that goes with its mixer (``companion``)."""
    assert piece.part is not None
    if piece.slot is Slot.MIXER:
        return get_layout(layout, piece.part.layer)
    if piece.slot is Slot.CHANNEL:
        mixer = get_layout(layout, config.blocks[piece.block].mixer.layer)
        return companion(mixer, get_layer(piece.part.layer))
    first = get_layout(layout, config.blocks[0].mixer.layer)
    return companion(first, Role.EMBEDDING if piece.slot is Slot.EMBEDDING else Role.HEAD)


def piece_name(piece: Piece, lay: Layout) -> str:
    """A layer piece's row name: ``embedding``, ``attention [full]``, ``lm_head`` ..."""
    if piece.slot is Slot.EMBEDDING:
        return "embedding"
    return lay.layer + piece.suffix


def piece_rows(piece: Piece) -> list[tuple[str, list[Vector]]]:
    """A vector piece's rows: a block's norms, biases and sinks each a row of its own."""
    if piece.slot is not Slot.VECTORS:
        return [(str(piece.slot), list(piece.vectors))]
    grouped = ((g, [v for v in piece.vectors if v.group == g]) for g in _VECTOR_GROUPS)
    return [(group + piece.suffix, vectors) for group, vectors in grouped if vectors]


# -- whole models through the compiled functions ------------------------------------------------


@dataclass(frozen=True)
class LayerCall:
    """One layer of a model as a call of its layout's compiled function (``shardcost.compile``
    with its static conventions fixed and its switches pinned, one variant): the keywords
    it takes, and what it reads of the parameters it was offered."""

    function: Callable[..., dict[str, Any]]
    kwargs: dict[str, Any]  # dimensions, switches and (timed) hardware fields
    dimensions: frozenset[str]  # the dimensions it reads
    reads: frozenset[str]  # the offered keys it reads: dimensions and conventions
    peak: Callable[[int], float] | None = None  # timed: peak TFLOP/s at bytes_per_elem


def layer_call(
    config: ModelConfig,
    lay: Layout,
    ph: Phase,
    offered: Mapping[str, object],
    hw: Hardware | None,
) -> LayerCall:
    """``lay`` in ``ph`` called with what it reads of ``offered`` (the config's shapes for
    the part and the user's parameters), timed on ``hw`` (the chip as ``lay``'s kernel
    class sees it) when given. Relations are neither derived nor checked: a config gives
    hidden_size, num_heads and head_dim each, and they need not agree."""
    from shardcost.codegen.compiled import compile_layout

    timed = hw is not None
    conventions = set(lay.conventions_for(ph, timed=timed))
    static = tuple(
        (k, CONVENTIONS_BY_NAME[k].parse(v))
        for k, v in offered.items()
        if k in conventions and _static(k)
    )
    used = _used(lay, ph, static)
    dims = {k: v for k, v in offered.items() if k in used}
    switches = [n for n in lay.conventions_for(ph) if not _static(n)]
    pinned: tuple[tuple[str, Any], ...] = tuple((n, _convention(n, offered)) for n in switches)
    reads = frozenset(dims) | {k for k in offered if k in conventions}
    if hw is None:
        function = compile_layout(lay, ph, False, static, True, pinned)
        return LayerCall(function, dims | dict(pinned), used, reads)
    pinned += (("supports_overlap", hw.supports_overlap),)
    b = int(dims.get(BYTES_PER_ELEM.name, config.bytes_per_elem))  # type: ignore[call-overload]
    kwargs = dims | _fields(hw, lay.layer) | {"peak_tflops": _peak(hw, static, b)} | dict(pinned)
    function = compile_layout(lay, ph, True, static, True, pinned)
    return LayerCall(function, kwargs, used, reads, partial(_peak, hw, static))


@cache
def _fields(hw: Hardware, layer: str) -> dict[str, float]:
    """The hardware fields a compiled call takes, as ``layer``'s kernel class sees the chip
    (its fitted figures folded in)."""
    chip = hw.for_class(kernel_class(layer))
    return {f.name: float(getattr(chip, f.name)) for f in NUMERIC_FIELDS}


@cache
def _peak(hw: Hardware, static: tuple[tuple[str, Any], ...], b: int) -> float:
    """The chip's peak TFLOP/s for the compute type of these conventions at ``b`` bytes."""
    return float(hw.peak_for(compute_bytes(_Conv(dict(static)), b)))  # type: ignore[arg-type]


@cache
def _used(lay: Layout, ph: Phase, static: tuple[tuple[str, Any], ...]) -> frozenset[str]:
    """The dimensions ``lay`` reads in ``ph`` under the static conventions given (kept on
    disk between runs, ``codegen.stored``: deriving them builds the layer's cost)."""
    from shardcost.codegen.stored import ident, stored
    from shardcost.symbolic.dimensions import BY_SYMBOL

    from .inputs import choose_conventions

    def derive() -> frozenset[str]:
        chosen = choose_conventions(lay, ph, dict(static), timed=True)
        cost = lay.cost(ph, chosen)
        return frozenset(BY_SYMBOL[s].name for s in cost.dimensions if s in BY_SYMBOL)

    return stored("used", ident(lay, str(ph), static), derive)


def _convention(name: str, given: Mapping[str, object]) -> Any:
    """A switch's value: given (parsed), else its default."""
    convention = CONVENTIONS_BY_NAME[name]
    return convention.parse(given[name]) if name in given else convention.default


def _static(name: str) -> bool:
    convention = CONVENTIONS_BY_NAME.get(name)
    return convention is not None and convention.static


class _Conv:
    """Attribute access to a dict of conventions (what ``compute_bytes`` reads)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)


class CompiledModel:
    """A whole model in one phase, its layers' compiled functions built once
    (``compile_model``); call it with the dimensions that vary.

        f = compile_model("llama-3.1-8b.json", "decode", hardware="h100-sxm")
        f(batch_size=8, past_seq_len=4096)["timing"]["wall_clock_time_ms"]

    A call returns what ``model_metrics(...).to_dict()`` holds under ``chips``,
    ``metrics``, ``per_layer``, ``memory`` and (with hardware) ``timing``, for Python ints
    in. Metrics are exact ints, equal to the SymPy path's; timings are float64 (the
    compiled functions' arithmetic), within a few ulps of its exactly rounded ones. Each
    distinct layer is one compiled call, weighted by how many layers it stands for; the
    vectors (norms, biases) are plain arithmetic, kept per sharding.
    """

    def __init__(
        self,
        config: ModelConfig,
        ph: Phase,
        layout: str,
        hardware: str | None,
        params: Mapping[str, object],
    ) -> None:
        if ph is Phase.DECODE and request_lengths(params) is not None:
            raise InputError(
                "compile_model takes one past_seq_len per call; a ragged batch (one length "
                "per request) goes through model_metrics"
            )
        self.config, self.phase, self.layout = config, ph, layout
        given = {
            k: parse_count(k, v) if k in DIMENSIONS_BY_NAME else v
            for k, v in _given(config, ph, dict(params)).items()
        }
        self.hardware = _chip(hardware, given)
        self._bytes = int(given[BYTES_PER_ELEM.name])  # type: ignore[call-overload]
        self._calls: list[tuple[LayerCall, Layout]] = []
        # per call: the layers it stands for (all, weights, in the first block)
        self._weights: list[list[int]] = []
        self._vector_pieces: list[tuple[Piece, int]] = []  # and the call they shard like
        found: dict[tuple[Any, ...], int] = {}
        read: set[str] = set()
        latest: dict[Slot, int] = {}
        for piece in walk(config):
            if piece.part is None:
                self._vector_pieces.append((piece, latest[piece.like]))
                continue
            lay = piece_layout(config, layout, piece)
            offered = part_params(config, lay.layer, piece.part, given)
            call = layer_call(config, lay, ph, offered, self.hardware)
            read |= call.reads
            key = (call.function, tuple(sorted(call.kwargs.items(), key=lambda kv: kv[0])))
            if key not in found:
                found[key] = len(self._calls)
                self._calls.append((call, lay))
                self._weights.append([0, 0, 0])
            index = latest[piece.slot] = found[key]
            tied = piece.slot is Slot.HEAD and config.tie_word_embeddings
            weights = self._weights[index]
            weights[0] += piece.count
            weights[1] += 0 if tied else piece.count  # a tied head's matrix is the embedding's
            weights[2] += piece.block == 0
        unused = [
            k
            for k in params
            if k not in read
            and not (k in HARDWARE_BY_NAME and self.hardware)
            and not idle_degree(k, params[k])
        ]
        if unused:
            raise InputError(
                f"{', '.join(unused)} is read by no component of the model with layout "
                f"{layout!r} in {ph}"
            )
        self.dimensions = frozenset().union(*(c.dimensions for c, _ in self._calls)) - FROM_CONFIG
        self._layers, weights, self._first = (tuple(w[k] for w in self._weights) for k in range(3))
        self._counts = tuple(weights if n in _WEIGHTS else self._layers for n in METRIC_NAMES)
        self._likes = tuple(sorted({index for _, index in self._vector_pieces}))
        self._shared: dict[tuple[Any, ...], tuple[tuple[int, ...], ...]] = {}

    def __call__(self, **dims: int) -> dict[str, Any]:
        """The model at these dimensions (the others as fixed when built, or defaults)."""
        if not dims.keys() <= self.dimensions:
            unknown = ", ".join(sorted(dims.keys() - self.dimensions))
            raise InputError(
                f"{unknown}: a compiled model takes the dimensions its layers read: "
                f"{', '.join(sorted(self.dimensions))}"
            )
        if not all(type(v) is int for v in dims.values()):
            dims = {k: _whole_number(k, v) for k, v in dims.items()}
        outs = [self._run(call, dims) for call, _ in self._calls]
        extra_metrics, extra_first, extra_timing = self._vectors(outs, dims)
        columns = list(zip(*map(_METRICS_OF, outs), strict=True))
        metrics = {
            name: sum(map(operator.mul, column, weights)) + extra
            for name, column, weights, extra in zip(
                METRIC_NAMES, columns, self._counts, extra_metrics, strict=True
            )
        }
        per_layer = {
            name: sum(map(operator.mul, column, self._first)) + extra
            for name, column, extra in zip(METRIC_NAMES, columns, extra_first, strict=True)
        }
        timing = None
        if self.hardware is not None:
            times = zip(*map(_TIMING_OF, outs), strict=True)
            timing = {
                name: sum(map(operator.mul, column, self._layers)) + extra
                for name, column, extra in zip(TIMING_NAMES, times, extra_timing, strict=True)
            }
        peak = max(o["activation_memory_per_chip"] for o in outs)
        return self._result(self._chips(0, outs[0], dims), metrics, per_layer, peak, timing)

    def _run(self, call: LayerCall, dims: Mapping[str, int]) -> dict[str, Any]:
        mine = {k: v for k, v in dims.items() if k in call.dimensions}
        if not mine:
            return call.function(**call.kwargs)
        if call.peak is not None and BYTES_PER_ELEM.name in mine:
            mine["peak_tflops"] = call.peak(mine[BYTES_PER_ELEM.name])  # type: ignore[assignment]
        return call.function(**(call.kwargs | mine))

    def _vectors(
        self, outs: list[dict[str, Any]], dims: Mapping[str, int]
    ) -> tuple[tuple[int, ...], ...]:
        """What the vectors (norms, biases, a position table) add: metrics, metrics of the
        first block's, timings; each on the chips of the layer it follows, as
        ``model_metrics`` counts them (``numeric_model.vector_row``), kept per sharding."""
        b = dims.get(BYTES_PER_ELEM.name, self._bytes)
        key = (b, *((self._tp(i, dims), self._chips(i, outs[i], dims)) for i in self._likes))
        found = self._shared.get(key)
        if found is None:
            shards = dict(zip(self._likes, key[1:], strict=True))
            found = self._shared[key] = self._vector_sums(b, shards)
        return found

    def _vector_sums(
        self, b: int, shards: Mapping[int, tuple[int, int]]
    ) -> tuple[tuple[int, ...], ...]:
        heads = dict(self.config.shape)
        metrics, first, timing = [0] * 9, [0] * 9, [0.0] * 4
        for piece, index in self._vector_pieces:
            tp, chips = shards[index]
            lay = self._calls[index][1]
            hw = self.hardware.for_class(kernel_class(lay.layer)) if self.hardware else None
            for _, vectors in piece_rows(piece):
                elements = sum(_per_chip(v, tp, heads) for v in vectors)
                kernels = sum(v.kernels for v in vectors)
                row = _vector_component("", 1, elements * b, kernels, chips, hw, -1)
                values = astuple(row.metrics)
                metrics = [m + v * piece.count for m, v in zip(metrics, values, strict=True)]
                if piece.block == 0:
                    first = [m + v for m, v in zip(first, values, strict=True)]
                if row.timing is not None:
                    times = astuple(row.timing)
                    timing = [t + v * piece.count for t, v in zip(timing, times, strict=True)]
        return tuple(metrics), tuple(first), tuple(timing)  # type: ignore[return-value]

    def _chips(self, index: int, out: Mapping[str, Any], dims: Mapping[str, int]) -> int:
        """The chips call ``index``'s layout spans: the product of its degrees."""
        call, lay = self._calls[index]
        if not _chips_are_degrees(lay, self.phase):  # a user layout's own chip count
            return _chips(out)
        given = call.kwargs | dict(dims)
        return math.prod(int(given.get(d.name, d.default)) for d in lay.degrees)  # type: ignore[call-overload]

    def _tp(self, index: int, dims: Mapping[str, int]) -> int:
        """The tensor-parallel degree of call ``index``'s layout (1 when it has none)."""
        call, lay = self._calls[index]
        if TENSOR_PARALLEL not in lay.degrees:
            return 1
        name = TENSOR_PARALLEL.name
        if name in dims:
            return dims[name]
        return int(call.kwargs.get(name, TENSOR_PARALLEL.default))  # type: ignore[call-overload]

    def _result(
        self,
        chips: int,
        metrics: dict[str, int],
        per_layer: dict[str, int],
        peak_activation: int,
        timing: dict[str, float] | None,
    ) -> dict[str, Any]:
        used = metrics["weight_memory_per_chip"] + metrics["kv_cache_per_chip"] + peak_activation
        hw = self.hardware
        capacity = None
        if hw is not None and hw.capacity_bytes is not None:
            capacity = hw.capacity_bytes
        out: dict[str, Any] = {
            "chips": chips,
            "metrics": metrics,
            "per_layer": per_layer,
            "memory": {
                "weights_per_chip": metrics["weight_memory_per_chip"],
                "kv_cache_per_chip": metrics["kv_cache_per_chip"],
                "peak_activation_per_chip": peak_activation,
                "total_per_chip": used,
                "capacity_per_chip": capacity,
                "fits": None if capacity is None else used <= capacity,
            },
        }
        if timing is not None:
            out["timing"] = timing
        return out


METRIC_NAMES = tuple(Metrics.__dataclass_fields__)
TIMING_NAMES = tuple(Timing.__dataclass_fields__)
_WEIGHTS = frozenset({"weight_memory_per_chip", "weight_memory_total"})
_METRICS_OF = operator.itemgetter(*METRIC_NAMES)
_TIMING_OF = operator.itemgetter(*TIMING_NAMES)


def _whole_number(key: str, value: object) -> int:
    """A call's dimension as a Python int (numpy's integers too); InputError otherwise."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise InputError(f"{key}={value!r}: a compiled model takes one whole number per key")
    return operator.index(value)  # type: ignore[arg-type]


@cache
def _chips_are_degrees(lay: Layout, ph: Phase) -> bool:
    """Whether ``lay`` spans the product of its parallel degrees (every built-in does)."""
    product = sympy.Mul(*(d.symbol for d in lay.degrees))
    return bool(sympy.simplify(lay.cost(ph, Conventions()).chips - product) == 0)


def _chips(out: Mapping[str, Any]) -> int:
    """The chips a user layer runs on, from its compiled output: a total over its per-chip
    value (weights, else FLOPs: a layer without either runs nowhere to speak of). Exact
    where no split is uneven (totals then add unequal shares)."""
    for name in ("weight_memory", "flops"):
        if out[f"{name}_per_chip"]:
            return int(out[f"{name}_total"] // out[f"{name}_per_chip"])
    return 1


def compile_model(
    source: str | Path | Mapping[str, Any] | ModelConfig,
    phase_name: str = "prefill",
    *,
    layout: str = "single",
    hardware: str | None = None,
    params: Mapping[str, object] | None = None,
) -> CompiledModel:
    """The model in ``source`` in one phase under ``layout``, compiled once: a
    ``CompiledModel`` to call with the dimensions that vary. ``params`` fix the rest
    (dimensions, conventions, hardware fields), as ``model_metrics`` takes them."""
    config = source if isinstance(source, ModelConfig) else load_config(source)
    return CompiledModel(config, phase(phase_name), layout, hardware, params or {})
