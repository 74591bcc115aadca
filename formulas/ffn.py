"""The feed-forward (FFN) layer under each layout, prefill and decode.

    gated (SwiGLU): Y = (act(X Wg) ⊙ (X Wu)) Wd       plain: Y = act(X Wu) Wd

Wg and Wu are ``d × d_ff``, Wd is ``d_ff × d``. Elementwise work (the activation, the
gating product) is not counted: no matrix product, a few FLOPs per element. Every
layout describes one chip's share (its tokens and its slice of d_ff); ``_ffn_cost``
turns a share into steps.
"""

from __future__ import annotations

import sympy

from shardcost.symbolic import Cost, Trace, collective, finish
from shardcost.symbolic.dimensions import (
    CONTEXT_PARALLEL,
    TENSOR_PARALLEL,
    B,
    S,
    T,
    b,
    cp,
    d,
    d_ff,
    tp,
)

from .conventions import Conventions, Phase
from .primitives import matmul_flops, tensor_bytes
from .registry import Checks, Role, Send, layer, layout, ref

_CONVENTIONS = ("ffn_gated",)
LAYER = layer(
    "ffn",
    role=Role.CHANNEL_MIXER,
    conventions=_CONVENTIONS,
    assumptions=(
        "A matrix product X[m, k] @ W[k, n] costs 2·m·k·n FLOPs (a multiply and an add).",
        "Elementwise work (the activation, the gating product) is not counted: a few FLOPs "
        "per element and no matrix product.",
        "Resident activations are the input X, the d_ff-wide outputs of the up (and gate) "
        "projections, and the output Y.",
        "Weights and activations take bytes_per_elem bytes per element; an FFN has no KV cache.",
        "Communication bytes are payload (logical tensor) bytes per chip, not ring-injected "
        "bytes; a collective over a one-chip group sends nothing.",
        "Aggregate metrics are per-chip values times the number of chips.",
    ),
)


def token_share(t: Trace, phase: Phase, *, over_cp: bool) -> sympy.Symbol:
    """The tokens this chip runs through the FFN: all of them, or its CP rank's share
    (prefill: its sequence slice; decode: its share of the new tokens)."""
    if phase is Phase.PREFILL:
        if not over_cp:
            return t.define(
                "tokens",
                "tokens in the batch",
                B * S,
                section="derived",
                unit="tokens",
                name="M",
                note="B × S",
            )
        local = t.split(
            "seq_local",
            "sequence positions per CP rank",
            S,
            cp,
            what="sequence positions",
            name="S_local",
            latex=r"S_{\mathrm{local}}",
            unit="positions",
        )
        return t.define(
            "tokens_local",
            "tokens per CP rank",
            B * local,
            section="derived",
            unit="tokens",
            name="M_local",
            latex=r"M_{\mathrm{local}}",
            note="B × S_local",
        )
    if not over_cp:
        return t.define(
            "tokens",
            "new tokens in the batch",
            B * T,
            section="derived",
            unit="tokens",
            name="M_q",
            latex="M_{q}",
            note="B × T",
        )
    return t.split(
        "tokens_local",
        "new tokens per CP rank",
        B * T,
        cp,
        what="new tokens",
        name="M_local",
        latex=r"M_{\mathrm{local}}",
        unit="tokens",
    )


def _width(t: Trace, *, over_tp: bool) -> sympy.Expr:
    """This chip's slice of d_ff: all of it, or a TP rank's columns (whole)."""
    if not over_tp:
        return d_ff
    t.require_divisible(d_ff, tp, "FFN columns are sharded whole across tensor-parallel ranks")
    return t.define(
        "width_local",
        "FFN columns per TP rank",
        d_ff / tp,
        section="derived",
        unit="elements",
        name="d_ff_local",
        latex=r"d_{ff,\mathrm{local}}",
    )


def _ffn_cost(
    t: Trace,
    conv: Conventions,
    tokens: sympy.Expr,
    width: sympy.Expr,
    *,
    chips: sympy.Expr = sympy.S.One,
    allreduce_over: sympy.Symbol | None = None,
) -> Cost:
    """Steps for one chip's share of the FFN, then the Cost they add up to."""
    gated = conv.ffn_gated
    flops = []
    if gated:
        flops.append(
            t.define(
                "gate_proj",
                "gate projection",
                matmul_flops(tokens, d, width),
                section="flops",
                unit="FLOPs",
                name="F_gate",
                latex=r"F_{\mathrm{gate}}",
                note="X[M, d] @ Wg[d, d_ff]",
            )
        )
    flops.append(
        t.define(
            "up_proj",
            "up projection",
            matmul_flops(tokens, d, width),
            section="flops",
            unit="FLOPs",
            name="F_up",
            latex=r"F_{\mathrm{up}}",
            note="X[M, d] @ Wu[d, d_ff]",
        )
    )
    flops.append(
        t.define(
            "down_proj",
            "down projection",
            matmul_flops(tokens, width, d),
            section="flops",
            unit="FLOPs",
            name="F_down",
            latex=r"F_{\mathrm{down}}",
            note="H[M, d_ff] @ Wd[d_ff, d]",
        )
    )
    total_flops = t.define(
        "flops", "FLOPs per chip", sympy.Add(*flops), section="flops", unit="FLOPs", name="F"
    )
    matrices = 3 if gated else 2
    weights = t.define(
        "weight_bytes",
        "weight bytes per chip",
        matrices * tensor_bytes(d, width, bytes_per_elem=b),
        section="weights",
        unit="bytes",
        name="W",
        note="Wg, Wu, Wd" if gated else "Wu, Wd",
    )
    act_x = t.define(
        "act_input",
        "input X",
        tensor_bytes(tokens, d, bytes_per_elem=b),
        section="activations",
        unit="bytes",
        name="A_x",
        latex="A_{X}",
    )
    act_h = t.define(
        "act_hidden",
        "gate and up outputs" if gated else "up output",
        (2 if gated else 1) * tensor_bytes(tokens, width, bytes_per_elem=b),
        section="activations",
        unit="bytes",
        name="A_h",
        latex="A_{H}",
    )
    act_y = t.define(
        "act_output",
        "output Y",
        tensor_bytes(tokens, d, bytes_per_elem=b),
        section="activations",
        unit="bytes",
        name="A_y",
        latex="A_{Y}",
    )
    activations = t.define(
        "activation_bytes",
        "activation bytes per chip",
        act_x + act_h + act_y,
        section="activations",
        unit="bytes",
        name="A",
    )
    kv_cache = t.define(
        "kv_cache_bytes",
        "KV-cache bytes per chip",
        sympy.S.Zero,
        section="kv_cache",
        unit="bytes",
        name="KV",
        note="an FFN has none",
    )
    collectives = []
    if allreduce_over is not None:
        collectives.append(
            collective(
                t,
                "output_allreduce",
                "all-reduce",
                allreduce_over,
                tensor_bytes(tokens, d, bytes_per_elem=b),
                label="output all-reduce",
                description="sum of the row-parallel down projection's partial Y[M, d]",
            )
        )
    return finish(
        t,
        chips=chips,
        flops=total_flops,
        weights=weights,
        activations=activations,
        kv_cache=kv_cache,
        collectives=collectives,
    )


_PARTIAL_SUMS = "the row-parallel down projection leaves partial sums of Y"


@layout(
    "single",
    layer=LAYER,
    summary="one chip holds the whole FFN",
    conventions=_CONVENTIONS,
    checks=Checks(reference=None, sends=()),
)
def single(phase: Phase, conv: Conventions) -> Cost:
    """The FFN on one chip."""
    t = Trace()
    return _ffn_cost(t, conv, token_share(t, phase, over_cp=False), d_ff)


@layout(
    "tp",
    layer=LAYER,
    summary="d_ff sharded over tensor_parallel ranks (column- then "
    "row-parallel); output all-reduced",
    degrees=(TENSOR_PARALLEL,),
    conventions=_CONVENTIONS,
    checks=Checks(sends=(Send("output_allreduce", tp, ref("act_output"), _PARTIAL_SUMS),)),
)
def tensor_parallel(phase: Phase, conv: Conventions) -> Cost:
    """Megatron-style: Wg and Wu column-parallel, Wd row-parallel, one all-reduce of Y."""
    t = Trace()
    width = _width(t, over_tp=True)
    tokens = token_share(t, phase, over_cp=False)
    return _ffn_cost(t, conv, tokens, width, chips=tp, allreduce_over=tp)


@layout(
    "sp",
    layer=LAYER,
    summary="tokens sharded over context_parallel ranks; no communication",
    degrees=(CONTEXT_PARALLEL,),
    conventions=_CONVENTIONS,
    checks=Checks(weights=ref("weight_bytes") * cp, sends=()),
)
def sequence_parallel(phase: Phase, conv: Conventions) -> Cost:
    """Each CP rank runs its own tokens through a full copy of the FFN."""
    t = Trace()
    return _ffn_cost(t, conv, token_share(t, phase, over_cp=True), d_ff, chips=cp)


@layout(
    "tp-sp",
    layer=LAYER,
    summary="d_ff over tensor_parallel x tokens over "
    "context_parallel ranks; output all-reduced over TP",
    degrees=(TENSOR_PARALLEL, CONTEXT_PARALLEL),
    conventions=_CONVENTIONS,
    checks=Checks(
        weights=ref("weight_bytes") * cp,
        sends=(
            Send("output_allreduce", tp, ref("act_output") / cp, _PARTIAL_SUMS + " for its tokens"),
        ),
    ),
)
def tp_sp(phase: Phase, conv: Conventions) -> Cost:
    """TP shards d_ff within each CP rank's tokens."""
    t = Trace()
    width = _width(t, over_tp=True)
    tokens = token_share(t, phase, over_cp=True)
    return _ffn_cost(t, conv, tokens, width, chips=tp * cp, allreduce_over=tp)
