"""Whole models from a Hugging Face ``config.json``: parameters, metrics and timing.

A decoder-only model (Llama, Mistral, Qwen2 families) is

    embedding → L × [norm → attention → norm → FFN] → final norm → LM head

Each matrix-bearing component is a registered layer, found by its role in a model, and
evaluated under a layout: the mixer's (attention) as chosen, each other layer's the one
that shards over the same parallel degrees (``companion``), so its numbers
are exactly what ``shardcost metrics --layer ...`` gives for the same inputs. The
RMSNorm weights and any bias vectors carry no matrix product; they add weight bytes
(and their load time), never FLOPs. A model's per-chip metrics are the sums of its
components' over every layer; its timing is the sum of theirs (the layers run one
after another).

Parameters are counted from the config's shapes, as ``sum(p.numel() for p in
model.parameters())`` gives them: a tied LM head shares the embedding's matrix and is
counted once. Everything is read from a local file: nothing is fetched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from shardcost.errors import InputError
from shardcost.symbolic.dimensions import (
    BATCH_SIZE,
    BYTES_PER_ELEM,
    HEAD_DIM,
    HIDDEN_SIZE,
    INTERMEDIATE_SIZE,
    NUM_HEADS,
    NUM_KV_HEADS,
    TENSOR_PARALLEL,
    VOCAB_SIZE,
)
from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS_BY_NAME

from .conventions import BY_NAME as CONVENTIONS_BY_NAME
from .conventions import Phase, phase
from .evaluate import Metrics, Result, Timing, evaluate
from .hardware import FIELDS_BY_NAME as HARDWARE_BY_NAME
from .hardware import Hardware
from .inputs import applicable_params, check_keys, request_lengths, resolve_inputs
from .registry import Layer, Layout, Role, all_layers, all_layouts, get_layout

FAMILIES = ("llama", "mistral", "qwen2")
_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
}
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}

# The model's layers in order, by role: how many of each a model holds is the config's.
_STACK = (Role.EMBEDDING, Role.MIXER, Role.CHANNEL_MIXER, Role.HEAD)
_REPEATED = (Role.MIXER, Role.CHANNEL_MIXER)  # once per decoder layer
_VECTORS = ("norms", "biases")  # per decoder layer, counted here: no matrix product

# Keys the config fixes; a user may not override them.
FROM_CONFIG = (
    HIDDEN_SIZE.name,
    NUM_HEADS.name,
    NUM_KV_HEADS.name,
    HEAD_DIM.name,
    INTERMEDIATE_SIZE.name,
    VOCAB_SIZE.name,
    "ffn_gated",
)


@dataclass(frozen=True)
class ModelConfig:
    """The shapes of one decoder-only model, as its config.json states them."""

    name: str
    family: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    qkv_bias: bool  # Q, K and V projections carry biases (Qwen2; Llama's attention_bias)
    o_bias: bool  # the output projection does too (Llama's attention_bias)
    mlp_bias: bool  # gate, up and down projections do (Llama's mlp_bias)
    bytes_per_elem: int  # from torch_dtype, 2 when the config does not say
    notes: tuple[str, ...] = ()

    def dims(self) -> dict[str, int]:
        """The layer dimensions this model fixes, by key."""
        return {
            HIDDEN_SIZE.name: self.hidden_size,
            NUM_HEADS.name: self.num_heads,
            NUM_KV_HEADS.name: self.num_kv_heads,
            HEAD_DIM.name: self.head_dim,
            INTERMEDIATE_SIZE.name: self.intermediate_size,
            VOCAB_SIZE.name: self.vocab_size,
        }

    def parameters(self) -> dict[str, int]:
        """Exact parameter counts: each component, one decoder layer, and the total."""
        d, ff, v = self.hidden_size, self.intermediate_size, self.vocab_size
        q, kv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        attention = d * q + 2 * d * kv + q * d  # Wq, Wk, Wv, Wo
        attention += (q + 2 * kv if self.qkv_bias else 0) + (d if self.o_bias else 0)
        mlp = 3 * d * ff + (2 * ff + d if self.mlp_bias else 0)  # gate, up, down
        norms = 2 * d  # input and post-attention RMSNorm weights
        layer = attention + mlp + norms
        embedding = v * d
        lm_head = 0 if self.tie_word_embeddings else v * d
        total = embedding + self.num_layers * layer + d + lm_head
        return {
            "total": total,
            "embedding": embedding,
            "per_layer": layer,
            "attention_per_layer": attention,
            "mlp_per_layer": mlp,
            "norms_per_layer": norms,
            "layers": self.num_layers * layer,
            "final_norm": d,
            "lm_head": lm_head,
        }

    def to_dict(self) -> dict[str, Any]:
        """The shapes, JSON-ready."""
        out = asdict(self)
        out.pop("notes")
        return out


def load_config(source: str | Path | Mapping[str, Any]) -> ModelConfig:
    """A ModelConfig from a config.json path or an already-parsed dict; InputError
    naming the problem for anything else."""
    if isinstance(source, Mapping):
        return parse_config(source, "config")
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (give a local config.json)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    name = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
    return parse_config(raw, str(path), default_name=name)


@dataclass(frozen=True)
class _Fields:
    """Typed reads of one config.json, each error naming the file and the key."""

    raw: Mapping[str, Any]
    where: str
    family: str

    def count(self, key: str, default: int | None = None) -> int:
        """A positive integer (``default`` when absent; required when that is None)."""
        value = self.raw.get(key)
        if value is None:
            if default is None:
                raise InputError(f"{self.where}: {key} is missing; a {self.family} config needs it")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{self.where}: {key}={value!r} is not a positive integer")
        return value

    def flag(self, key: str, default: bool) -> bool:
        """True or false (``default`` when absent or null)."""
        value = self.raw.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InputError(f"{self.where}: {key}={value!r} is not true or false")
        return value


def _config_notes(raw: Mapping[str, Any], family: str) -> tuple[str, ...]:
    """What the config sets that the model does not follow, in words."""
    notes = []
    window = raw.get("sliding_window")
    if (family == "mistral" and window) or (family == "qwen2" and raw.get("use_sliding_window")):
        notes.append(
            f"the config sets a sliding window ({window} positions); it is not modelled: "
            "attention and the KV cache are charged for every past position"
        )
    dtype = raw.get("torch_dtype", raw.get("dtype"))
    if isinstance(dtype, str) and dtype not in _DTYPE_BYTES:
        notes.append(f"torch_dtype={dtype!r} is not one of {', '.join(_DTYPE_BYTES)}: 2 bytes")
    return tuple(notes)


def parse_config(
    raw: Mapping[str, Any], where: str = "config", *, default_name: str = "model"
) -> ModelConfig:
    """Check a parsed config.json and read the shapes that cost anything."""
    family = _family(raw, where)
    fields = _Fields(raw, where, family)
    count, flag = fields.count, fields.flag
    d = count("hidden_size")
    heads = count("num_attention_heads")
    kv_heads = count("num_key_value_heads", heads)
    if heads % kv_heads:
        raise InputError(
            f"{where}: num_attention_heads={heads} is not a multiple of "
            f"num_key_value_heads={kv_heads}"
        )
    if raw.get("head_dim") is None and d % heads:
        raise InputError(
            f"{where}: hidden_size={d} is not divisible by num_attention_heads={heads} "
            "and head_dim is not given"
        )
    head_dim = count("head_dim", d // heads if d % heads == 0 else None)
    llama = family == "llama"
    attention_bias = flag("attention_bias", False) if llama else False
    dtype = raw.get("torch_dtype", raw.get("dtype"))
    return ModelConfig(
        name=str(raw.get("_name_or_path") or default_name),
        family=family,
        hidden_size=d,
        intermediate_size=count("intermediate_size"),
        num_layers=count("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=count("vocab_size"),
        tie_word_embeddings=flag("tie_word_embeddings", False),
        qkv_bias=family == "qwen2" or attention_bias,
        o_bias=attention_bias,
        mlp_bias=flag("mlp_bias", False) if llama else False,
        bytes_per_elem=_DTYPE_BYTES.get(dtype, 2) if isinstance(dtype, str) else 2,
        notes=_config_notes(raw, family),
    )


def _family(raw: Mapping[str, Any], where: str) -> str:
    model_type = raw.get("model_type")
    if model_type in FAMILIES:
        return str(model_type)
    for arch in raw.get("architectures") or ():
        if arch in _ARCHITECTURES:
            return _ARCHITECTURES[arch]
    shown = f"model_type={model_type!r}" if model_type is not None else "no model_type"
    raise InputError(
        f"{where}: {shown}; supported families: {', '.join(FAMILIES)} "
        "(model_type, or architectures naming LlamaForCausalLM, MistralForCausalLM or "
        "Qwen2ForCausalLM)"
    )


# -- evaluation ---------------------------------------------------------------------------


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
    per_layer: Metrics  # one decoder layer (attention, FFN, norms, biases)
    timing: Timing | None
    hardware: Hardware | None
    notes: tuple[str, ...]

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
            "parameters": self.config.parameters(),
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
    """Evaluate a whole model under ``layout`` (the attention layout; the other layers
    follow it) in one phase."""
    config = load_config(source)
    ph = phase(phase_name)
    params = dict(params or {})
    mixer = get_layout(layout, layer_of(Role.MIXER).name)
    plan = tuple((role, companion(mixer, role)) for role in _STACK)
    given = _given(config, ph, params)
    results = _evaluate_stack(plan, ph, config.dims() | given, hardware, params, layout)
    attention_result = results[mixer.layer]
    hw = attention_result.inputs.hardware
    chips = attention_result.chips
    b = int(attention_result.inputs.dims[BYTES_PER_ELEM.name])
    tp = int(attention_result.inputs.dims.get(TENSOR_PARALLEL.name, 1))

    notes = list(config.notes)
    components = _components(config, plan, results, notes, tp, b)
    repeated = {chosen.layer for role, chosen in plan if role in _REPEATED}
    layer_parts = [c for c in components if c.name in repeated or c.name in _VECTORS]
    per_layer = _sum_metrics([(c.metrics, 1) for c in layer_parts])
    total = _sum_metrics([(c.metrics, c.count) for c in components])
    timing = None
    if hw is not None:
        timing = Timing(
            *(
                sum(getattr(c.timing, f) * c.count for c in components if c.timing is not None)
                for f in Timing.__dataclass_fields__
            )
        )
    shown = {k: v for k, v in attention_result.inputs.params().items() if k not in FROM_CONFIG}
    for result in results.values():
        shown |= {k: v for k, v in result.inputs.params().items() if k not in FROM_CONFIG}
    return ModelResult(
        config,
        ph,
        layout,
        chips,
        shown,
        tuple(components),
        total,
        per_layer,
        timing,
        hw,
        tuple(dict.fromkeys(notes)),
    )


def _components(
    config: ModelConfig,
    plan: tuple[tuple[Role, Layout], ...],
    results: dict[str, Result],
    notes: list[str],
    tp: int,
    b: int,
) -> list[Component]:
    """One row per component, in the model's order: each layer's result (a tied LM head
    without weights), then the norms, biases and final norm counted here."""
    any_result = next(iter(results.values()))
    chips, hw = any_result.chips, any_result.inputs.hardware
    components: list[Component] = []
    for role, chosen in plan:
        name = chosen.layer
        result = results[name]
        metrics, timing = result.metrics, result.timing
        number = config.num_layers if role in _REPEATED else 1
        if role is Role.HEAD and config.tie_word_embeddings:
            metrics = _without_weights(metrics)
            notes.append(
                "tie_word_embeddings: the LM head uses the embedding's matrix; its weight "
                "bytes are counted once, with the embedding (the LM head still reads all "
                "of it, the embedding only the rows it gathers)"
            )
        notes += [f"{name}: {n}" for n in result.notes]
        components.append(Component(name, number, name, chosen.name, metrics, timing, result))
    weights_norms = 2 * config.hidden_size * b
    components.insert(3, _vector_component("norms", config.num_layers, weights_norms, 2, chips, hw))
    bias_bytes = _bias_bytes(config, tp, b)
    if bias_bytes:
        components.insert(
            4, _vector_component("biases", config.num_layers, bias_bytes, 0, chips, hw)
        )
    components.insert(
        len(components) - 1,
        _vector_component("final_norm", 1, config.hidden_size * b, 1, chips, hw),
    )
    return components


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
    """The one registered layer that plays ``role`` in a model."""
    found = [lay for lay in all_layers() if lay.role is role]
    if len(found) != 1:
        names = ", ".join(lay.name for lay in found) or "none"
        raise InputError(f"a model needs exactly one {role} layer; registered: {names}")
    return found[0]


def companion(mixer: Layout, role: Role) -> Layout:
    """The layout of the ``role`` layer that goes with ``mixer``: the one it names (its
    ``companions``), else the one sharding over the same parallel degrees."""
    target = layer_of(role)
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


def _evaluate_stack(
    plan: tuple[tuple[Role, Layout], ...],
    ph: Phase,
    shared: dict[str, object],
    hardware: str | None,
    params: Mapping[str, object],
    layout: str,
) -> dict[str, Result]:
    """Each layer of ``plan`` evaluated on the parameters it reads (the config's shapes
    and the user's); an InputError for a user parameter no layer reads."""
    results: dict[str, Result] = {}
    read: set[str] = set()
    for _, chosen in plan:
        mine = applicable_params(chosen, ph, shared)
        read |= set(mine)
        inputs = resolve_inputs(
            chosen.name,
            ph,
            layer=chosen.layer,
            hardware=hardware,
            params=mine,
            decoupled_heads=True,
        )
        results[chosen.layer] = evaluate(inputs)
    unused = [k for k in params if k not in read]
    if unused:
        raise InputError(
            f"{', '.join(unused)} is read by no component of the model with layout "
            f"{layout!r} in {ph}"
        )
    return results


def _bias_bytes(config: ModelConfig, tp: int, b: int) -> int:
    """Bias bytes per chip in one decoder layer: Q, K, V biases shard with their heads
    (a replicated KV head keeps its bias), the O and down biases are added once, after
    the reduction, on every chip; the gate and up biases shard with d_ff."""
    dh = config.head_dim
    out = 0
    if config.qkv_bias:
        out += (config.num_heads // tp) * dh + 2 * -(-config.num_kv_heads // tp) * dh
    if config.o_bias:
        out += config.hidden_size
    if config.mlp_bias:
        out += 2 * (config.intermediate_size // tp) + config.hidden_size
    return out * b


def _vector_component(
    name: str, number: int, weight_bytes: int, kernels: int, chips: int, hw: Hardware | None
) -> Component:
    """Weight vectors without a matrix product (norm weights, biases): their bytes on
    every chip, their load time, and a kernel overhead per norm."""
    metrics = Metrics(0, weight_bytes, 0, 0, 0, weight_bytes * chips, 0, 0, 0)
    timing = None
    if hw is not None:
        load = Fraction(weight_bytes) / (hw.memory_bandwidth_gb_s * hw.memory_efficiency * 10**6)
        compute = kernels * hw.kernel_overhead_us / 10**3
        timing = Timing(float(compute), float(load), 0.0, float(max(compute, load)))
    return Component(name, number, None, None, metrics, timing)


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
