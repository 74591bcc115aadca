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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

from shardcost.errors import InputError
from shardcost.symbolic.dimensions import (
    BATCH_SIZE,
    BYTES_PER_ELEM,
    HIDDEN_SIZE,
    TENSOR_PARALLEL,
    VOCAB_SIZE,
)
from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS_BY_NAME

from .conventions import BY_NAME as CONVENTIONS_BY_NAME
from .conventions import Phase, phase, static_default
from .evaluate import Metrics, Result, Timing, evaluate
from .families import FAMILIES, Block, ModelConfig, Part, Vector, load_config, parse_config
from .hardware import FIELDS_BY_NAME as HARDWARE_BY_NAME
from .hardware import Hardware
from .inputs import applicable_params, check_keys, request_lengths, resolve_inputs
from .registry import Layer, Layout, Role, all_layers, all_layouts, get_layer, get_layout

__all__ = [
    "FAMILIES",
    "Component",
    "ModelConfig",
    "ModelResult",
    "companion",
    "layer_of",
    "load_config",
    "model_keys",
    "model_metrics",
    "parse_config",
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out: dict[str, Any] = {
            "name": self.name,
            "count": self.count,
            "layer": self.layer,
            "layout": self.layout,
            "metrics": asdict(self.metrics),
        }
        if self.timing is not None:
            out["timing"] = asdict(self.timing)
        return out


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
        """The chip's memory capacity in bytes (decimal GB), when the hardware gives it."""
        hw = self.hardware
        if hw is None or hw.memory_capacity_gb is None:
            return None
        return int(hw.memory_capacity_gb * 10**9)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``shardcost model``."""
        layouts = {c.layer: c.layout for c in self.components if c.layer is not None}
        out: dict[str, Any] = {
            "model": self.config.to_dict(),
            "phase": str(self.phase),
            "layout": self.layout,
            "layouts": layouts,
            "chips": self.chips,
            "params": self.params,
            "parameters": self.parameters,
            "metrics": asdict(self.metrics),
            "per_layer": asdict(self.per_layer),
            "components": [c.to_dict() for c in self.components],
            "memory": {
                "weights_per_chip": self.metrics.weight_memory_per_chip,
                "kv_cache_per_chip": self.metrics.kv_cache_per_chip,
                "peak_activation_per_chip": self.peak_activation_per_chip,
                "total_per_chip": self.memory_per_chip,
                "capacity_per_chip": self.capacity_bytes,
                "fits": None
                if self.capacity_bytes is None
                else self.memory_per_chip <= self.capacity_bytes,
            },
            "notes": list(self.notes),
        }
        if self.timing is not None:
            out["timing"] = asdict(self.timing)
        return out


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
    unused = [k for k in params if k not in stack.read]
    if unused:
        raise InputError(
            f"{', '.join(unused)} is read by no component of the model with layout "
            f"{layout!r} in {ph}"
        )
    first = stack.results[0]
    # the chip as given, before a layer's kernel class folds its fitted figures in
    hw = _chip(hardware, given) if first.inputs.hardware is not None else None
    per_layer = _sum_metrics(
        [(c.metrics, 1) for c in components if c.block == 0 and c.name != "final_norm"]
    )
    total = _sum_metrics([(c.metrics, c.count) for c in components])
    timing = None
    if hw is not None:
        timing = Timing(
            *(
                sum(getattr(c.timing, f) * c.count for c in components if c.timing is not None)
                for f in Timing.__dataclass_fields__
            )
        )
    shown: dict[str, object] = {}
    for result in stack.results:
        shown |= {
            k: v
            for k, v in result.inputs.params().items()
            if k not in FROM_CONFIG and not static_default(k, v)
        }
    return ModelResult(
        config,
        ph,
        layout,
        first.chips,
        shown,
        tuple(components),
        total,
        per_layer,
        timing,
        hw,
        tuple(dict.fromkeys(stack.notes)),
        parameters(config),
    )


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
        self._done: dict[tuple[str, str, tuple], Result] = {}

    def mixer(self, block: Block) -> Layout:
        """The user's layout, for this block's mixer."""
        return get_layout(self.layout, block.mixer.layer)

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
            self.notes.extend(f"{lay.layer}: {n}" for n in result.notes)
        return result

    def components(self) -> list[Component]:
        """One row per component, in the model's order: the embedding, each block's mixer,
        channel mixer and vectors, the final norm, the LM head (a tied one without
        weights)."""
        config, blocks = self.config, self.config.blocks
        mixer0 = self.mixer(blocks[0])
        rows: list[Component] = []
        embedding = companion(mixer0, Role.EMBEDDING)
        result = self.evaluate(embedding, Part(embedding.layer))
        rows.append(_row("embedding", 1, embedding, result, -1))
        if config.positions:
            rows.append(
                self._vectors(
                    "positions",
                    1,
                    [Vector("positions", config.positions * config.hidden_size)],
                    result,
                    -1,
                )
            )
        many = len(blocks) > 1
        for i, block in enumerate(blocks):
            mixer = self.mixer(block)
            channel = companion(mixer, get_layer(block.channel.layer))
            suffix = f" [{block.kind}]" if many else ""
            for lay, part in ((mixer, block.mixer), (channel, block.channel)):
                res = self.evaluate(lay, part)
                rows.append(_row(lay.layer + suffix, block.count, lay, res, i))
            for group in _VECTOR_GROUPS:
                vectors = [v for v in block.vectors if v.group == group]
                if vectors:
                    rows.append(self._vectors(group + suffix, block.count, vectors, res, i))
        rows.append(
            self._vectors(
                "final_norm", 1, [v for v in config.final if v.group == "norms"], result, -1
            )
        )
        head = companion(mixer0, Role.HEAD)
        res = self.evaluate(head, Part(head.layer))
        metrics = res.metrics
        if config.tie_word_embeddings:
            metrics = _without_weights(metrics)
            self.notes.append(
                "tie_word_embeddings: the LM head uses the embedding's matrix; its weight "
                "bytes are counted once, with the embedding (the LM head still reads all "
                "of it, the embedding only the rows it gathers)"
            )
        rows.append(Component(head.layer, 1, head.layer, head.name, metrics, res.timing, res, -1))
        head_bias = [v for v in config.final if v.group != "norms"]
        if head_bias:
            rows.append(self._vectors("lm_head bias", 1, head_bias, res, -1))
        return rows

    def _vectors(
        self, name: str, number: int, vectors: list[Vector], like: Result, block: int
    ) -> Component:
        """Vectors on every chip of ``like``'s layout, sharded over its TP ranks where
        they split with heads, FFN columns or the vocabulary."""
        inputs = like.inputs
        dims = inputs.dims
        over_tp = TENSOR_PARALLEL in inputs.layout.degrees
        tp = int(dims.get(TENSOR_PARALLEL.name, 1)) if over_tp else 1  # type: ignore[arg-type]
        heads = dict(self.config.shape)
        elements = sum(_per_chip(v, tp, heads) for v in vectors)
        b = int(self.given.get(BYTES_PER_ELEM.name, self.config.bytes_per_elem))  # type: ignore[arg-type]
        kernels = sum(v.kernels for v in vectors)
        return _vector_component(
            name, number, elements * b, kernels, like.chips, inputs.hardware, block
        )


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
    if tp == 1 or not vector.shard:
        return vector.size
    if vector.shard == "kv_heads":
        h_kv = int(shape.get("num_kv_heads", 1))  # type: ignore[call-overload]
        per_head = vector.size // h_kv
        return per_head * -(-h_kv // tp)
    return -(-vector.size // tp)


def _row(name: str, number: int, lay: Layout, result: Result, block: int) -> Component:
    return Component(
        name, number, lay.layer, lay.name, result.metrics, result.timing, result, block
    )


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
    metrics = Metrics(0, weight_bytes, 0, 0, 0, weight_bytes * chips, 0, 0, 0)
    timing = None
    if hw is not None:
        load = Fraction(weight_bytes) / (hw.memory_bandwidth_gb_s * hw.memory_efficiency * 10**6)
        compute = kernels * hw.kernel_overhead_us / 10**3
        timing = Timing(float(compute), float(load), 0.0, float(max(compute, load)))
    return Component(name, number, None, None, metrics, timing, None, block)


def _without_weights(metrics: Metrics) -> Metrics:
    values = asdict(metrics)
    values["weight_memory_per_chip"] = 0
    values["weight_memory_total"] = 0
    return Metrics(**values)


def _sum_metrics(parts: list[tuple[Metrics, int]]) -> Metrics:
    names = list(Metrics.__dataclass_fields__)
    return Metrics(*(sum(getattr(m, n) * k for m, k in parts) for n in names))


def model_keys() -> tuple[str, ...]:
    """The keys ``shardcost model`` takes: dimensions and conventions the config does not
    fix, and the hardware fields."""
    dims = [k for k in DIMENSIONS_BY_NAME if k not in FROM_CONFIG]
    conventions = [k for k in CONVENTIONS_BY_NAME if k not in FROM_CONFIG]
    return (*dims, *conventions, *HARDWARE_BY_NAME)
