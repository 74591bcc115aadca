"""KV-cache tiers without SymPy: the arithmetic of ``formulas.kv_tier`` over plain values,
and its JSON and text, which the engine and the cache's path (``shardcost.numeric_kv``)
both go through.

The engine evaluates the decode batch and a fresh prefill as whole models, and each
request's cache alone (``formulas.kv_tier``); the cache's path gets the same numbers
from stored programs. Either hands them here: the pace of the work a copy may hide
behind (``pace``), each request's copy against its attention (``request``), and the
view that ``tier_json`` and ``tier_text`` print.

Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

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

# A mixer's chip as its kernel class sees it, for decode attention over one cache (all
# exact): peak TFLOP/s at its compute type, compute efficiency, memory bandwidth (GB/s),
# memory efficiency, fixed latency (µs)
Figures = tuple[Fraction, Fraction, Fraction, Fraction, Fraction]


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
class Pace:
    """How long the work a copy may hide behind takes, in ms."""

    layer: float  # one layer of the batch's decode step
    step: float  # the whole decode step
    token: float  # one token of a fresh prefill


def pace(decode: Mapping[str, Any], prefill: Mapping[str, Any], num_layers: int) -> Pace:
    """One decoder layer of the decode step (on average), the whole step, and one prefill
    token, from the two models' views (``ModelResult.view``, ``numeric_model.model_view``)."""
    params = prefill["params"]
    tokens = int(params["seq_len"]) * int(params["batch_size"])
    layers = sum(
        r["timing"]["wall_clock_time_ms"] * r["count"]
        for r in decode["components"]
        if r["block"] >= 0 and r["timing"] is not None
    )
    return Pace(
        layers / num_layers,
        decode["timing"]["wall_clock_time_ms"],
        prefill["timing"]["wall_clock_time_ms"] / tokens,
    )


def attention_ms(core: int | Fraction, kv: int, figures: Figures) -> Fraction:
    """Decode attention over one request's cache, one layer: its core (Q·Kᵀ and P·V) at
    the compute peak or its cache at the memory bandwidth, whichever takes longer."""
    peak, compute, bandwidth, memory, fixed_us = figures
    roofline = max(
        Fraction(core) / (peak * compute * 10**9),
        Fraction(kv) / (bandwidth * memory * 10**6),
    )
    return roofline + fixed_us / 1000


def request(
    past: int,
    alone: Sequence[tuple[int, int | Fraction, Figures, int]],
    latency_ms: Fraction,
    host: Fraction,
    p: Pace,
) -> RequestTransfer:
    """One request's cache over a host link of ``host`` GB/s, against ``p``. ``alone``:
    each kind of mixer layer with the request alone (its KV bytes per chip, its attention
    core, its chip's figures, how many layers); the layer with the largest cache is the
    one whose copy must hide. ``latency_ms``: one copy's latency (one copy per layer)."""
    total = sum(kv * n for kv, _, _, n in alone)
    kv, core, figures, _ = max(alone, key=lambda a: a[0])
    layers = sum(n for *_, n in alone)
    x_layer = latency_ms + Fraction(kv) / (host * 10**6)  # GB/s to bytes per ms
    x_total = layers * latency_ms + Fraction(total) / (host * 10**6)
    attend = attention_ms(core, kv, figures)
    return RequestTransfer(
        past_seq_len=past,
        kv_bytes_per_chip=total,
        kv_bytes_per_layer_per_chip=kv,
        transfer_ms=float(x_total),
        transfer_ms_per_layer=float(x_layer),
        attention_ms_per_layer=float(attend),
        ratio=float(x_layer / attend),
        hides_behind_decode=float(x_layer) <= p.layer,
        layers_to_hide_one_layer=math.ceil(float(x_layer) / p.layer),
        decode_steps_to_hide=math.ceil(float(x_total) / p.step),
        prefill_tokens_to_hide=math.ceil(float(x_total) / p.token),
    )


def tier_view(
    *,
    model: str,
    layout: str,
    hardware: str,
    host_memory: str,
    bandwidth: Fraction,
    efficiency: Fraction,
    decode: Mapping[str, Any],
    seq_len: int,
    p: Pace,
    requests: Sequence[RequestTransfer],
) -> dict[str, Any]:
    """What ``tier_json`` and ``tier_text`` print: the decode model's view gives the
    chips, the parameters in force, each component's collectives and the notes."""
    return {
        "model": model,
        "layout": layout,
        "chips": decode["chips"],
        "hardware": hardware,
        "host_memory": host_memory,
        "bandwidth": bandwidth,
        "efficiency": efficiency,
        "params": decode["params"],
        "decode_step_ms": p.step,
        "decode_layer_ms": p.layer,
        "prefill_seq_len": seq_len,
        "prefill_ms_per_token": p.token,
        "requests": list(requests),
        "collectives": [
            {
                "component": r["name"],
                "layer": r["layer"],
                "layout": r["layout"],
                "count": r["count"],
                **collective,
            }
            for r in decode["components"]
            for collective in r["collectives"]
        ],
        "notes": list(decode["notes"]),
    }


def tier_json(v: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON of a KV-tier analysis (``kv-tier --format json``)."""
    return {
        "model": v["model"],
        "layout": v["layout"],
        "chips": v["chips"],
        "hardware": v["hardware"],
        "host_memory": v["host_memory"],
        "host_link": {
            "bandwidth_gb_s": float(v["bandwidth"]),
            "efficiency": float(v["efficiency"]),
            "effective_gb_s": float(v["bandwidth"] * v["efficiency"]),
        },
        "params": v["params"],
        "decode_step_ms": v["decode_step_ms"],
        "decode_layer_ms": v["decode_layer_ms"],
        "prefill_seq_len": v["prefill_seq_len"],
        "prefill_ms_per_token": v["prefill_ms_per_token"],
        "requests": [asdict(r) for r in v["requests"]],
        "collectives": [dict(c) for c in v["collectives"]],
        "notes": list(v["notes"]),
        "assumptions": [*ASSUMPTIONS, COLLECTIVES],
        "units": dict(UNITS),
    }


_HEADERS = (
    "past_seq_len",
    "KV bytes/chip",
    "copy ms",
    "copy ms/layer",
    "attention ms/layer",
    "copy ÷ attention",
    "hides",
    "layers",
    "decode steps",
    "prefill tokens",
)


def tier_text(v: Mapping[str, Any], fmt: str) -> str:
    """Each request's cache from host memory against decode and prefill work."""
    from shardcost.reports.text import Table, chips_text, count, heading, item, milliseconds

    def row(r: RequestTransfer) -> tuple[str, ...]:
        return (
            str(r.past_seq_len),
            count(r.kv_bytes_per_chip),
            milliseconds(r.transfer_ms),
            milliseconds(r.transfer_ms_per_layer),
            milliseconds(r.attention_ms_per_layer),
            f"{r.ratio:.4g}",
            "yes" if r.hides_behind_decode else "no",
            str(r.layers_to_hide_one_layer),
            str(r.decode_steps_to_hide),
            count(r.prefill_tokens_to_hide),
        )

    batch = v["params"].get("batch_size")
    parts = [
        heading(
            f"KV-cache tiers: {v['model']} on {v['hardware']}, {v['layout']} "
            f"({chips_text(v['chips'])}), {v['host_memory']} host memory",
            fmt,
            1,
        ),
        "",
        item(
            f"host link: {float(v['bandwidth']):g} GB/s per direction × "
            f"{float(v['efficiency']):g} ({v['host_memory']}) = "
            f"{float(v['bandwidth'] * v['efficiency']):g} GB/s per chip",
            fmt,
        ),
        item(
            f"decode step (batch of {batch}): {milliseconds(v['decode_step_ms'])} ms, "
            f"{milliseconds(v['decode_layer_ms'])} ms per layer; prefill of "
            f"{v['prefill_seq_len']} tokens: {milliseconds(v['prefill_ms_per_token'])} ms per "
            "token",
            fmt,
        ),
        "",
        Table(_HEADERS, tuple(row(r) for r in v["requests"]), "rrrrrrlrrr").render(fmt),
        "",
        item(
            "hides: one layer's copy fits behind one layer of the decode step; layers: "
            "layers of decode that cover one layer's copy; decode steps and prefill tokens: "
            "the work that covers the whole request's copy",
            fmt,
        ),
        "",
        heading("assumptions", fmt, 3),
        "",
        *(f"- {line}" for line in ASSUMPTIONS),
    ]
    return "\n".join(parts).rstrip() + "\n"
