"""KV-cache tiers: bringing a request's cache back from host memory over the host link.

For each request of a decode batch (one past length each), per chip:

    transfer   t_x     = KV bytes / (BW_host · η_host · 10^9) · 10^3          ms
    attention  t_attn  = max(F_core / (P · η_c · 10^12), KV / (BW_mem · η_m · 10^9)) · 10^3
    ratio              = t_x / t_attn           (per layer; the same for the whole request)

where F_core is the attention core (Q·Kᵀ and P·V) for that request's cache alone and
η_host is the pinned or pageable efficiency. The copy hides behind decode when one
layer's transfer is no longer than one layer's share of the batch's decode step
(prefetch layer ℓ+1 while layer ℓ runs); otherwise ⌈t_x,layer / t_layer⌉ layers of
compute cover one layer's copy, ⌈T_x / t_step⌉ decode steps cover the whole request, and
⌈T_x / t_token⌉ prefill tokens cover it at a seq_len-token prefill's time per token.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from shardcost.errors import InputError, InvalidValueError

from .conventions import BY_NAME as CONVENTIONS_BY_NAME
from .conventions import TIMING_CONVENTIONS, Phase
from .dtypes import compute_bytes
from .evaluate import Result, evaluate
from .hardware import FIELDS_BY_NAME as HARDWARE_FIELDS
from .hardware import Hardware, kernel_class
from .inputs import Inputs, applicable_params, resolve_inputs
from .model import ModelConfig, ModelResult, load_config, model_metrics
from .registry import Role, get_layer

HOST_MEMORY = ("pinned", "pageable")
ASSUMPTIONS = (
    "Each chip copies its own shard of the cache over its own host link, all chips at once.",
    "A copy runs at host_link_bandwidth_gb_s × the pinned or pageable efficiency; no "
    "latency is charged.",
    "Decode attention for a cache takes max(attention-core FLOPs / peak, cache bytes / "
    "memory bandwidth), with the timing model's efficiencies.",
    "A copy hides behind decode when one layer's transfer takes no longer than one layer "
    "of the batch's decode step: prefetching layer ℓ+1 while layer ℓ runs keeps pace.",
    "Prefill overlap is counted in tokens of a fresh seq_len-token prefill, at its "
    "wall-clock time per token.",
)
# the JSON's collectives (the text report does not list them)
COLLECTIVES = (
    "Collectives: the decode step's, per component (count: its layers), payload bytes per "
    "chip for the whole batch; the host copies are no collective."
)
# What the numbers of the JSON are in
UNITS = {
    "memory": "bytes",
    "communication": "payload bytes per chip",
    "timing": "milliseconds",
    "bandwidth": "GB/s (10^9 bytes per second) per direction",
}
_DECODE_ONLY = {"past_seq_len", "new_tokens"} | {
    name for name, c in CONVENTIONS_BY_NAME.items() if c.phases == (Phase.DECODE,)
}
_PREFILL_ONLY = {"seq_len"} | {
    name for name, c in CONVENTIONS_BY_NAME.items() if c.phases == (Phase.PREFILL,)
}
# What a phase does not read: the other phase's parameters (a fresh prefill: the batch too)
_NOT_READ = {Phase.DECODE: _PREFILL_ONLY, Phase.PREFILL: _DECODE_ONLY | {"batch_size"}}


@dataclass(frozen=True)
class RequestTransfer:
    """One request's cache: its bytes per chip, the copy against decode attention."""

    past_seq_len: int
    kv_bytes_per_chip: int  # every layer
    kv_bytes_per_layer_per_chip: int
    transfer_ms: float  # every layer
    transfer_ms_per_layer: float
    attention_ms_per_layer: float  # decode attention over this cache, one layer
    ratio: float  # transfer / attention
    hides_behind_decode: bool
    layers_to_hide_one_layer: int
    decode_steps_to_hide: int
    prefill_tokens_to_hide: int


@dataclass(frozen=True)
class KVTier:
    """The KV-tier analysis of one decode batch on one layout and accelerator."""

    config: ModelConfig
    layout: str
    chips: int
    hardware: Hardware
    host_memory: str
    efficiency: Fraction
    decode: ModelResult
    decode_step_ms: float
    decode_layer_ms: float
    prefill_seq_len: int
    prefill_ms_per_token: float
    requests: tuple[RequestTransfer, ...]

    @property
    def effective_gb_s(self) -> Fraction:
        """The host link's achieved bandwidth, GB/s per direction."""
        assert self.hardware.host_link_bandwidth_gb_s is not None
        return self.hardware.host_link_bandwidth_gb_s * self.efficiency

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "model": self.config.name,
            "layout": self.layout,
            "chips": self.chips,
            "hardware": self.hardware.name,
            "host_memory": self.host_memory,
            "host_link": {
                "bandwidth_gb_s": float(self.hardware.host_link_bandwidth_gb_s or 0),
                "efficiency": float(self.efficiency),
                "effective_gb_s": float(self.effective_gb_s),
            },
            "params": self.decode.params,
            "decode_step_ms": self.decode_step_ms,
            "decode_layer_ms": self.decode_layer_ms,
            "prefill_seq_len": self.prefill_seq_len,
            "prefill_ms_per_token": self.prefill_ms_per_token,
            "requests": [asdict(r) for r in self.requests],
            "collectives": [
                {
                    "component": c.name,
                    "layer": c.layer,
                    "layout": c.layout,
                    "count": c.count,
                    **collective,
                }
                for c in self.decode.components
                for collective in c.collectives
            ],
            "notes": list(self.decode.notes),
            "assumptions": [*ASSUMPTIONS, COLLECTIVES],
            "units": dict(UNITS),
        }


@dataclass(frozen=True)
class _Pace:
    """How long the work a copy may hide behind takes, in ms."""

    layer: float  # one layer of the batch's decode step
    step: float  # the whole decode step
    token: float  # one token of a fresh prefill


def kv_tier(
    source: str | Path | Mapping[str, Any],
    *,
    hardware: str,
    host_memory: str = "pinned",
    layout: str = "single",
    params: Mapping[str, object] | None = None,
) -> KVTier:
    """Each request's cache brought from host memory, against decode (and prefill) work."""
    if host_memory not in HOST_MEMORY:
        raise InvalidValueError(
            f"host_memory={host_memory!r} is not allowed; host_memory takes pinned | pageable"
        )
    config = load_config(source)
    params = dict(params or {})
    decode = _model(source, Phase.DECODE, hardware, layout, params)
    hw = _host_link(decode.hardware)
    prefill = _model(source, Phase.PREFILL, hardware, layout, params)
    pace = _pace(decode, prefill)
    assert hw.host_link_bandwidth_gb_s is not None
    efficiency = hw.pinned_efficiency if host_memory == "pinned" else hw.pageable_efficiency
    host = hw.host_link_bandwidth_gb_s * efficiency
    mixers, lengths = _past_lengths(decode)
    requests = tuple(
        _request(mixers, n, hw, host, host_memory, pace) for n in dict.fromkeys(lengths)
    )
    seq_len = int(prefill.params["seq_len"])
    return KVTier(
        config,
        layout,
        decode.chips,
        hw,
        host_memory,
        efficiency,
        decode,
        pace.step,
        pace.layer,
        seq_len,
        pace.token,
        requests,
    )


def _model(
    source: str | Path | Mapping[str, Any],
    phase: Phase,
    hardware: str,
    layout: str,
    params: Mapping[str, object],
) -> ModelResult:
    """The model in ``phase``, given the parameters it reads: decode's batch, or a fresh
    prefill."""
    mine = {k: v for k, v in params.items() if k not in _NOT_READ[phase]}
    return model_metrics(source, phase, layout=layout, hardware=hardware, params=mine)


def _host_link(hw: Hardware | None) -> Hardware:
    """``hw``, which must give a host link bandwidth; InputError naming it otherwise."""
    assert hw is not None
    if hw.host_link_bandwidth_gb_s is None:
        raise InputError(
            f"hardware {hw.name!r} gives no host_link_bandwidth_gb_s; pass "
            "host_link_bandwidth_gb_s=GB/s (per direction) for KV tiers"
        )
    return hw


def _pace(decode: ModelResult, prefill: ModelResult) -> _Pace:
    """One decoder layer of the decode step, the whole step, and one prefill token."""
    assert prefill.timing is not None and decode.timing is not None
    tokens = int(prefill.params["seq_len"]) * int(prefill.params["batch_size"])
    layers = sum(
        c.timing.wall_clock_time_ms * c.count
        for c in decode.components
        if c.block >= 0 and c.timing is not None
    )
    layer = layers / decode.config.num_layers  # one decoder layer, on average
    return _Pace(
        layer, decode.timing.wall_clock_time_ms, prefill.timing.wall_clock_time_ms / tokens
    )


def _past_lengths(decode: ModelResult) -> tuple[list[tuple[Inputs, int]], tuple[int, ...]]:
    """Each kind of mixer layer's inputs with its count (full and sliding attention
    layers cache differently), and the past length of each request in the batch."""
    mixers = [
        (c.result.inputs, c.count)
        for c in decode.components
        if c.block >= 0
        and c.result is not None
        and get_layer(c.result.inputs.layout.layer).role is Role.MIXER
    ]
    lengths = mixers[0][0].dims["past_seq_len"]
    return mixers, lengths if isinstance(lengths, tuple) else (int(lengths),)


def _request(
    mixers: list[tuple[Inputs, int]],
    past: int,
    hw: Hardware,
    host: Fraction,
    memory: str,
    pace: _Pace,
) -> RequestTransfer:
    """One request's cache over a host link of ``host`` GB/s, against ``pace``: the
    layer with the largest cache is the one whose copy must hide."""
    alone = [(_one_request(inputs, past), n) for inputs, n in mixers]
    total = sum(r.metrics.kv_cache_per_chip * n for r, n in alone)
    largest = max((r for r, _ in alone), key=lambda r: r.metrics.kv_cache_per_chip)
    kv = largest.metrics.kv_cache_per_chip
    latency = hw.copy_latency_us(memory) / 1000  # one copy per layer, each with its latency
    layers = sum(n for _, n in alone)
    x_layer = latency + Fraction(kv) / (host * 10**6)  # GB/s to bytes per ms
    x_total = layers * latency + Fraction(total) / (host * 10**6)
    attend = _attention_ms(largest, hw)
    return RequestTransfer(
        past_seq_len=past,
        kv_bytes_per_chip=total,
        kv_bytes_per_layer_per_chip=kv,
        transfer_ms=float(x_total),
        transfer_ms_per_layer=float(x_layer),
        attention_ms_per_layer=float(attend),
        ratio=float(x_layer / attend),
        hides_behind_decode=float(x_layer) <= pace.layer,
        layers_to_hide_one_layer=math.ceil(float(x_layer) / pace.layer),
        decode_steps_to_hide=math.ceil(float(x_total) / pace.step),
        prefill_tokens_to_hide=math.ceil(float(x_total) / pace.token),
    )


def _attention_ms(alone: Result, hw: Hardware) -> Fraction:
    """Decode attention over one request's cache, one layer: its core (Q·Kᵀ and P·V) at
    the compute peak or its cache at the memory bandwidth, whichever takes longer."""
    core = sum(
        alone.step_value(key)
        for key in ("scores", "apply_v")
        if key in {s.key for s in alone.derivation.steps}
    )
    hw = hw.for_class(kernel_class(alone.inputs.layout.layer))  # its fitted figures
    peak = hw.peak_for(compute_bytes(alone.inputs.conventions, alone.inputs.dims["bytes_per_elem"]))
    roofline = max(
        Fraction(core) / (peak * hw.compute_efficiency * 10**9),
        Fraction(alone.metrics.kv_cache_per_chip)
        / (hw.memory_bandwidth_gb_s * hw.memory_efficiency * 10**6),
    )
    return roofline + hw.fixed_latency_us / 1000


def _one_request(inputs: Inputs, past: int) -> Result:
    """The attention layer for one request of this past length, alone in its batch."""
    lay = inputs.layout
    untimed = {*HARDWARE_FIELDS, *TIMING_CONVENTIONS}  # its own timing is computed here
    params = {k: v for k, v in inputs.params().items() if k not in untimed}
    params |= {"batch_size": 1, "past_seq_len": past}
    mine = applicable_params(lay, Phase.DECODE, params)
    return evaluate(
        resolve_inputs(lay.name, Phase.DECODE, layer=lay.layer, params=mine, decoupled_heads=True)
    )
