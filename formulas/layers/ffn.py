"""The feed-forward (FFN) layer under each layout, prefill and decode.

    gated (SwiGLU): Y = (act(X Wg) ⊙ (X Wu)) Wd       plain: Y = act(X Wu) Wd

Wg and Wu are ``d × d_ff``, Wd is ``d_ff × d``. Elementwise work (the activation, the
gating product) is not counted: no matrix product, a few FLOPs per element. Every
layout describes one chip's share (its tokens and its slice of d_ff); ``_ffn`` turns a
share into steps, each a ``StepSpec`` declared once below or in ``steps``.
"""

from __future__ import annotations

import sympy

from shardcost.symbolic import (
    CollectiveKind,
    CollectiveSpec,
    Cost,
    Section,
    StepSpec,
    Trace,
)
from shardcost.symbolic.dimensions import CONTEXT_PARALLEL, TENSOR_PARALLEL, cp, d, d_ff, tp

from ..conventions import Conventions, Phase
from ..dtypes import element_bytes
from ..primitives import matmul_flops, tensor_bytes
from ..registry import Checks, Role, Send, layer, layout, ref
from ..sharding import columns_over_tp, finish_share, token_share
from ..steps import (
    ACT_INPUT,
    ACT_OUTPUT,
    ACTIVATION_BYTES,
    FLOPS,
    MATMUL_ASSUMED,
    TOTALS_ASSUMED,
    WEIGHT_BYTES,
    hidden_bytes,
    no_kv_cache,
)

_CONVENTIONS = ("ffn_gated", "weight_dtype", "activation_dtype")
LAYER = layer(
    "ffn",
    role=Role.CHANNEL_MIXER,
    conventions=_CONVENTIONS,
    assumptions=(
        MATMUL_ASSUMED,
        "Elementwise work (the activation, the gating product) is not counted: a few FLOPs "
        "per element and no matrix product.",
        "Resident activations are the input X, the d_ff-wide outputs of the up (and gate) "
        "projections, and the output Y.",
        "Weights and activations take the bytes per element of their types (weight_dtype, "
        "activation_dtype; bytes_per_elem unless named); an FFN has no KV cache.",
        *TOTALS_ASSUMED,
    ),
)


# Steps, declared once: key, words, section, unit, symbol, LaTeX, shape note.
_F = Section.FLOPS
GATE_PROJ = StepSpec(
    "gate_proj",
    "gate projection",
    _F,
    "FLOPs",
    "F_gate",
    r"F_{\mathrm{gate}}",
    "X[M, d] @ Wg[d, d_ff]",
)
UP_PROJ = StepSpec(
    "up_proj", "up projection", _F, "FLOPs", "F_up", r"F_{\mathrm{up}}", "X[M, d] @ Wu[d, d_ff]"
)
DOWN_PROJ = StepSpec(
    "down_proj",
    "down projection",
    _F,
    "FLOPs",
    "F_down",
    r"F_{\mathrm{down}}",
    "H[M, d_ff] @ Wd[d_ff, d]",
)
ACT_HIDDEN = StepSpec(
    "act_hidden", "gate and up outputs", Section.ACTIVATIONS, "bytes", "A_h", "A_{H}"
)
# What gating changes, by ffn_gated: the matrices held, and the d_ff-wide outputs' words.
_MATRICES = {True: "Wg, Wu, Wd", False: "Wu, Wd"}
_OUTPUTS = {True: ACT_HIDDEN.label, False: "up output"}

OUTPUT_ALLREDUCE = CollectiveSpec(
    "output_allreduce",
    CollectiveKind.ALL_REDUCE,
    "output all-reduce",
    "sum of the row-parallel down projection's partial Y[M, d]",
)


def _flops(t: Trace, tokens: sympy.Expr, width: sympy.Expr, *, gated: bool) -> sympy.Symbol:
    """The gate (when gated), up and down products, and their sum."""
    gate = [GATE_PROJ(t, matmul_flops(tokens, d, width))] if gated else []
    up = UP_PROJ(t, matmul_flops(tokens, d, width))
    down = DOWN_PROJ(t, matmul_flops(tokens, width, d))
    return FLOPS(t, sympy.Add(*gate, up, down))


def _weights(t: Trace, width: sympy.Expr, wb: sympy.Expr, *, gated: bool) -> sympy.Symbol:
    """Wg (when gated), Wu and Wd: d × d_ff each (this chip's columns)."""
    matrices = 3 if gated else 2
    return WEIGHT_BYTES(
        t, matrices * tensor_bytes(d, width, bytes_per_elem=wb), note=_MATRICES[gated]
    )


def _activations(
    t: Trace, tokens: sympy.Expr, width: sympy.Expr, ab: sympy.Expr, *, gated: bool
) -> sympy.Symbol:
    """The input X, the d_ff-wide outputs of the up (and gate) projections, the output Y."""
    x = ACT_INPUT(t, hidden_bytes(tokens, bytes_per_elem=ab))
    outputs = ACT_HIDDEN(
        t,
        (2 if gated else 1) * hidden_bytes(tokens, width, bytes_per_elem=ab),
        label=_OUTPUTS[gated],
    )
    y = ACT_OUTPUT(t, hidden_bytes(tokens, bytes_per_elem=ab))
    return ACTIVATION_BYTES(t, x + outputs + y)


def _ffn(phase: Phase, conv: Conventions, *, over_tp: bool, over_cp: bool) -> Cost:
    """One chip's share of the FFN: d_ff columns over TP ranks, tokens over CP ranks."""
    t = Trace()
    width = columns_over_tp(t) if over_tp else d_ff
    tokens = token_share(t, phase, over_cp=over_cp)
    flops = _flops(t, tokens, width, gated=conv.ffn_gated)
    wb, ab = element_bytes(conv, "weight"), element_bytes(conv, "activation")
    weights = _weights(t, width, wb, gated=conv.ffn_gated)
    activations = _activations(t, tokens, width, ab, gated=conv.ffn_gated)
    kv_cache = no_kv_cache(t, "an FFN has none")
    sends = [OUTPUT_ALLREDUCE(t, tp, hidden_bytes(tokens, bytes_per_elem=ab))] if over_tp else []
    return finish_share(
        t, flops, weights, activations, kv_cache, sends, over_tp=over_tp, over_cp=over_cp
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
    return _ffn(phase, conv, over_tp=False, over_cp=False)


@layout(
    "tp",
    layer=LAYER,
    summary="d_ff sharded over tensor_parallel ranks (column- then "
    "row-parallel); output all-reduced",
    degrees=(TENSOR_PARALLEL,),
    conventions=_CONVENTIONS,
    checks=Checks(sends=(Send(OUTPUT_ALLREDUCE.name, tp, ref("act_output"), _PARTIAL_SUMS),)),
)
def tensor_parallel(phase: Phase, conv: Conventions) -> Cost:
    """Megatron-style: Wg and Wu column-parallel, Wd row-parallel, one all-reduce of Y."""
    return _ffn(phase, conv, over_tp=True, over_cp=False)


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
    return _ffn(phase, conv, over_tp=False, over_cp=True)


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
            Send(
                OUTPUT_ALLREDUCE.name,
                tp,
                ref("act_output") / cp,
                _PARTIAL_SUMS + " for its tokens",
            ),
        ),
    ),
)
def tp_sp(phase: Phase, conv: Conventions) -> Cost:
    """TP shards d_ff within each CP rank's tokens."""
    return _ffn(phase, conv, over_tp=True, over_cp=True)
