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

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from shardcost.errors import InputError, InvalidValueError
from shardcost.kv_tiers import (  # noqa: F401  (this module's names, as before)
    ASSUMPTIONS,
    COLLECTIVES,
    HOST_MEMORY,
    UNITS,
    Figures,
    Pace,
    RequestTransfer,
    request,
    tier_json,
    tier_view,
)
from shardcost.kv_tiers import pace as kv_pace

from .conventions import BY_NAME as CONVENTIONS_BY_NAME
from .conventions import TIMING_CONVENTIONS, Phase
from .dtypes import compute_bytes
from .evaluate import Result, evaluate
from .hardware import FIELDS_BY_NAME as HARDWARE_FIELDS
from .hardware import Hardware, kernel_class
from .inputs import Inputs, applicable_params, resolve_inputs
from .model import ModelConfig, ModelResult, load_config, model_metrics
from .registry import Role, get_layer

_DECODE_ONLY = {"past_seq_len", "new_tokens"} | {
    name for name, c in CONVENTIONS_BY_NAME.items() if c.phases == (Phase.DECODE,)
}
_PREFILL_ONLY = {"seq_len"} | {
    name for name, c in CONVENTIONS_BY_NAME.items() if c.phases == (Phase.PREFILL,)
}
# What a phase does not read: the other phase's parameters (a fresh prefill: the batch too)
_NOT_READ = {Phase.DECODE: _PREFILL_ONLY, Phase.PREFILL: _DECODE_ONLY | {"batch_size"}}


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
    prefill: ModelResult | None = None  # the fresh prefill the pace per token is from

    @property
    def effective_gb_s(self) -> Fraction:
        """The host link's achieved bandwidth, GB/s per direction."""
        assert self.hardware.host_link_bandwidth_gb_s is not None
        return self.hardware.host_link_bandwidth_gb_s * self.efficiency

    def view(self) -> dict[str, Any]:
        """What ``kv_tiers.tier_json`` and ``tier_text`` print."""
        assert self.hardware.host_link_bandwidth_gb_s is not None
        return tier_view(
            model=self.config.name,
            layout=self.layout,
            hardware=self.hardware.name,
            host_memory=self.host_memory,
            bandwidth=self.hardware.host_link_bandwidth_gb_s,
            efficiency=self.efficiency,
            decode=self.decode.view(),
            seq_len=self.prefill_seq_len,
            p=Pace(self.decode_layer_ms, self.decode_step_ms, self.prefill_ms_per_token),
            requests=self.requests,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return tier_json(self.view())


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
    pace = kv_pace(decode.view(), prefill.view(), decode.config.num_layers)
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
        prefill,
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
    pace: Pace,
) -> RequestTransfer:
    """One request's cache over a host link of ``host`` GB/s, against ``pace``
    (``kv_tiers.request``): each kind of mixer layer evaluated with the request alone."""
    alone = []
    for inputs, n in mixers:
        one = _one_request(inputs, past)
        keys = {s.key for s in one.derivation.steps}
        core = sum(one.step_value(key) for key in ("scores", "apply_v") if key in keys)
        alone.append((one.metrics.kv_cache_per_chip, core, figures(one, hw), n))
    latency = hw.copy_latency_us(memory) / 1000  # one copy per layer, each with its latency
    return request(past, alone, latency, host, pace)


def figures(alone: Result, hw: Hardware) -> Figures:
    """The chip as decode attention over ``alone``'s cache sees it: its kernel class's
    fitted figures, the peak of its compute type (``kv_tiers.attention_ms``)."""
    hw = hw.for_class(kernel_class(alone.inputs.layout.layer))
    bytes_per_elem = alone.inputs.dims["bytes_per_elem"]
    peak = hw.peak_for(compute_bytes(alone.inputs.conventions, bytes_per_elem))
    return (
        Fraction(peak),
        Fraction(hw.compute_efficiency),
        Fraction(hw.memory_bandwidth_gb_s),
        Fraction(hw.memory_efficiency),
        Fraction(hw.fixed_latency_us),
    )


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
