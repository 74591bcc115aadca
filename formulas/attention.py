"""The attention layer under each layout, prefill and decode.

    Q = X Wq    K = X Wk    V = X Wv    O = softmax(Q Kᵀ / √dh) V    Y = O Wo

Wq and Wo are ``d × h·dh``; Wk and Wv are ``d × h_kv·dh`` (grouped-query attention
when ``h_kv < h``, multi-head when equal). Causal masking is not halved: every query
is charged for every key it may see, as the seeds count. Every layout describes one
chip's share as a ``Shard``; ``_attention_cost`` turns a shard into steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from shardcost.symbolic import Cost, Product, Trace, collective, finish
from shardcost.symbolic.dimensions import (
    CONTEXT_PARALLEL,
    HEAD_DIM,
    HIDDEN_SIZE,
    NUM_HEADS,
    TENSOR_PARALLEL,
    B,
    S,
    S_past,
    T,
    b,
    b_s,
    cp,
    d,
    dh,
    h,
    h_kv,
    tp,
)

from .conventions import Conventions, Phase
from .primitives import bmm_flops, matmul_flops, tensor_bytes
from .registry import Checks, Role, Send, layer, layout, ref

_DECODE = ("attention_keys_include_new_token", "kv_includes_new_token", "decode_projections")
LAYER = layer(
    "attention",
    role=Role.MIXER,
    conventions=(*_DECODE, "materialize_full_hidden_after_tp"),
    relations=(Product(HIDDEN_SIZE, NUM_HEADS, HEAD_DIM),),
    assumptions=(
        "A matrix product X[m, k] @ W[k, n] costs 2·m·k·n FLOPs (a multiply and an add).",
        "Causal masking is not halved: every query is charged for every key it may see.",
        "The B·h·S_q·S_k score matrix is streamed (tiled), not a resident activation.",
        "Resident activations are the input X, the projections computed, and the output Y.",
        "Weights, activations and the KV cache take bytes_per_elem bytes per element.",
        "Communication bytes are payload (logical tensor) bytes per chip, not ring-injected "
        "bytes; a collective over a one-chip group sends nothing.",
        "Aggregate metrics are per-chip values times the number of chips.",
    ),
)


@dataclass(frozen=True)
class Shard:
    """What one chip of a layout computes and holds (per sequence where it says so)."""

    tokens: sympy.Expr  # tokens whose projections this chip computes (whole batch)
    queries: sympy.Expr  # query positions per sequence attended on this chip
    keys: sympy.Expr  # key positions each query sees on this chip
    cached: sympy.Expr  # positions per sequence whose K/V this chip stores
    heads: sympy.Expr = h
    kv_heads: sympy.Expr = h_kv
    out_width: sympy.Expr = d  # width of the output Y resident on this chip


@dataclass(frozen=True)
class _Comm:
    name: str
    kind: str
    group: sympy.Symbol
    payload: sympy.Expr
    label: str
    description: str


def _trace() -> Trace:
    """A new trace with the layer's own requirement, checked before any layout's."""
    t = Trace()
    t.require_divisible(h, h_kv, "each KV head serves a whole group of query heads")
    return t


def _projections(phase: Phase, conv: Conventions) -> str:
    """Which of the Q, K, V, O projections this step computes."""
    return "qkvo" if phase is Phase.PREFILL else conv.decode_projections


def _sequence(t: Trace, phase: Phase, conv: Conventions) -> Shard:
    """The unsharded sequence: every token, key and cached position on one chip."""
    if phase is Phase.PREFILL:
        tokens = t.define(
            "tokens",
            "tokens in the batch",
            B * S,
            section="derived",
            unit="tokens",
            name="M",
            note="B × S",
        )
        return Shard(tokens=tokens, queries=S, keys=S, cached=S)
    tokens = t.define(
        "tokens",
        "new tokens in the batch",
        B * T,
        section="derived",
        unit="tokens",
        name="M_q",
        latex="M_{q}",
        note="B × T: one query per new token",
    )
    keys = t.define(
        "key_len",
        "keys each new token attends to",
        S_past + T if conv.attention_keys_include_new_token else S_past,
        section="derived",
        unit="positions",
        name="S_k",
        latex="S_{k}",
        note="past tokens and the new ones"
        if conv.attention_keys_include_new_token
        else "past tokens only",
    )
    cached = t.define(
        "kv_len",
        "positions per sequence in the KV cache",
        S_past + T if conv.kv_includes_new_token else S_past,
        section="derived",
        unit="positions",
        name="S_kv",
        latex="S_{kv}",
        note="including the new tokens" if conv.kv_includes_new_token else "past tokens only",
    )
    return Shard(tokens=tokens, queries=T, keys=keys, cached=cached)


def _heads_over_tp(t: Trace) -> tuple[sympy.Symbol, sympy.Symbol]:
    """Query heads per TP rank (whole), and KV heads per TP rank: whole, or, when
    tensor_parallel exceeds num_kv_heads, one replicated KV head per rank."""
    t.require_divisible(h, tp, "heads are sharded whole across tensor-parallel ranks")
    t.require_divisible(
        h_kv,
        tp,
        "KV heads are sharded whole across tensor-parallel ranks, or replicated whole when "
        "tensor_parallel exceeds num_kv_heads",
        either=True,
    )
    heads = t.define(
        "heads_local",
        "query heads per TP rank",
        h / tp,
        section="derived",
        unit="heads",
        name="h_local",
        latex=r"h_{\mathrm{local}}",
    )
    kv_heads = t.split(
        "kv_heads_local",
        "KV heads per TP rank",
        h_kv,
        tp,
        what="KV heads",
        name="h_kv_local",
        latex=r"h_{kv,\mathrm{local}}",
        unit="heads",
        note="one replicated head per rank when tensor_parallel exceeds num_kv_heads",
        replicates=True,
    )
    return heads, kv_heads


def _context_shard(t: Trace, phase: Phase, conv: Conventions, *, keys_sharded: bool) -> Shard:
    """The sequence split over CP ranks.

    Prefill: each rank owns ``⌈S/cp⌉`` positions (its queries and its KV slice) and its
    queries see all ``S`` keys (gathered, or accumulated shard by shard: the FLOPs are
    the same, seed CP-1). Decode: the new tokens cannot be split, so every rank holds
    them (Q is replicated, seed CP-3a); the cached positions are split, and the keys
    too when ``keys_sharded``.
    """
    if phase is Phase.PREFILL:
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
        tokens = t.define(
            "tokens_local",
            "tokens per CP rank",
            B * local,
            section="derived",
            unit="tokens",
            name="M_local",
            latex=r"M_{\mathrm{local}}",
            note="B × S_local",
        )
        return Shard(tokens=tokens, queries=local, keys=S, cached=local)
    full = _sequence(t, phase, conv)
    keys = full.keys
    if keys_sharded:
        keys = t.split(
            "key_len_local",
            "keys per CP rank",
            full.keys,
            cp,
            what="attended key positions",
            name="S_k_local",
            latex=r"S_{k,\mathrm{local}}",
            unit="positions",
        )
    cached = t.split(
        "kv_len_local",
        "cached positions per CP rank",
        full.cached,
        cp,
        what="cached positions",
        name="S_kv_local",
        latex=r"S_{kv,\mathrm{local}}",
        unit="positions",
    )
    return Shard(tokens=full.tokens, queries=T, keys=keys, cached=cached)


def _attention_cost(
    t: Trace,
    phase: Phase,
    conv: Conventions,
    shard: Shard,
    *,
    chips: sympy.Expr = sympy.S.One,
    comms: tuple[_Comm, ...] = (),
) -> Cost:
    """Steps for one chip's share of attention, then the Cost they add up to."""
    tokens, heads, kv_heads = shard.tokens, shard.heads, shard.kv_heads
    counted = _projections(phase, conv)
    proj_note = "" if counted == "qkvo" else f"decode_projections={counted}"

    # FLOPs
    flops = []
    if "q" in counted:
        flops.append(
            t.define(
                "q_proj",
                "Q projection",
                matmul_flops(tokens, d, heads * dh),
                section="flops",
                unit="FLOPs",
                name="F_q",
                latex="F_{Q}",
                note="X[M, d] @ Wq[d, h·dh]",
            )
        )
    if "k" in counted:
        for which in "kv":
            flops.append(
                t.define(
                    f"{which}_proj",
                    f"{which.upper()} projection",
                    matmul_flops(tokens, d, kv_heads * dh),
                    section="flops",
                    unit="FLOPs",
                    name=f"F_{which}",
                    latex=f"F_{{{which.upper()}}}",
                    note=f"X[M, d] @ W{which}[d, h_kv·dh]",
                )
            )
    flops.append(
        t.define(
            "scores",
            "attention scores Q·Kᵀ",
            bmm_flops(B * heads, shard.queries, dh, shard.keys),
            section="flops",
            unit="FLOPs",
            name="F_qk",
            latex="F_{QK}",
            note="q[B,h,Sq,dh] @ kᵀ[B,h,dh,Sk]; causal mask not halved",
        )
    )
    flops.append(
        t.define(
            "apply_v",
            "apply attention to V",
            bmm_flops(B * heads, shard.queries, shard.keys, dh),
            section="flops",
            unit="FLOPs",
            name="F_av",
            latex="F_{AV}",
            note="p[B,h,Sq,Sk] @ v[B,h,Sk,dh]",
        )
    )
    flops.append(
        t.define(
            "o_proj",
            "output projection",
            matmul_flops(tokens, heads * dh, d),
            section="flops",
            unit="FLOPs",
            name="F_o",
            latex="F_{O}",
            note="O[M, h·dh] @ Wo[h·dh, d]",
        )
    )
    total_flops = t.define(
        "flops",
        "FLOPs per chip",
        sympy.Add(*flops),
        section="flops",
        unit="FLOPs",
        name="F",
        note=proj_note,
    )

    # Weights: all four matrices stay resident whatever a decode step computes.
    weights_qo = t.define(
        "weights_qo",
        "Wq and Wo bytes",
        2 * d * heads * dh * b,
        section="weights",
        unit="bytes",
        name="W_qo",
        latex=r"W_{QO}",
        note="d × h·dh each",
    )
    weights_kv = t.define(
        "weights_kv",
        "Wk and Wv bytes",
        2 * d * kv_heads * dh * b,
        section="weights",
        unit="bytes",
        name="W_kv",
        latex=r"W_{KV}",
        note="d × h_kv·dh each",
    )
    weights = t.define(
        "weight_bytes",
        "weight bytes per chip",
        weights_qo + weights_kv,
        section="weights",
        unit="bytes",
        name="W",
    )

    # Activations: the input, the projections this step computes, the output.
    act_x = t.define(
        "act_input",
        "input X",
        tensor_bytes(tokens, d, bytes_per_elem=b),
        section="activations",
        unit="bytes",
        name="A_x",
        latex="A_{X}",
    )
    widths = {}
    if "q" in counted:
        widths["q"] = heads * dh
    if "k" in counted:
        widths["k"] = widths["v"] = kv_heads * dh
    acts = [act_x]
    if widths:
        names = "".join(widths).upper()
        acts.append(
            t.define(
                "act_projections",
                f"{names} outputs",
                tensor_bytes(tokens, sympy.Add(*widths.values()), bytes_per_elem=b),
                section="activations",
                unit="bytes",
                name="A_qkv",
                latex=f"A_{{{names}}}",
            )
        )
    acts.append(
        t.define(
            "act_output",
            "output Y",
            tensor_bytes(tokens, shard.out_width, bytes_per_elem=b),
            section="activations",
            unit="bytes",
            name="A_y",
            latex="A_{Y}",
        )
    )
    activations = t.define(
        "activation_bytes",
        "activation bytes per chip",
        sympy.Add(*acts),
        section="activations",
        unit="bytes",
        name="A",
        note="the B·h·S·S score matrix is streamed (tiled), not resident",
    )

    kv_cache = t.define(
        "kv_cache_bytes",
        "KV-cache bytes per chip",
        2 * tensor_bytes(B, shard.cached, kv_heads, dh, bytes_per_elem=b),
        section="kv_cache",
        unit="bytes",
        name="KV",
        note="K and V",
    )

    collectives = [
        collective(t, c.name, c.kind, c.group, c.payload, label=c.label, description=c.description)
        for c in comms
    ]
    return finish(
        t,
        chips=chips,
        flops=total_flops,
        weights=weights,
        activations=activations,
        kv_cache=kv_cache,
        collectives=collectives,
    )


def _softmax_and_output(tokens: sympy.Expr, heads: sympy.Expr) -> tuple[_Comm, _Comm]:
    """The two CP all-reduces of KV-sharded attention, for these queries and heads."""
    stats = _Comm(
        "softmax_stats_allreduce",
        "all-reduce",
        cp,
        tokens * heads * 2 * b_s,
        "softmax statistics all-reduce",
        "running max and sum per query and head, in softmax_stat_bytes each",
    )
    output = _Comm(
        "output_allreduce",
        "all-reduce",
        cp,
        tensor_bytes(tokens, heads, dh, bytes_per_elem=b),
        "partial-output all-reduce",
        "sum of each KV shard's partial attention output",
    )
    return stats, output


_MATERIALIZE = "materialize_full_hidden_after_tp"


def _cp_sends(heads_over: sympy.Expr) -> tuple[Send, ...]:
    """What KV-sharded attention must send over CP: per query and head, the softmax
    statistics and the partial output. Prefill splits the queries over cp; decode
    replicates them. (Y's bytes are the queries' h·dh-wide outputs: d = h·dh.)"""
    tokens, y = ref("tokens"), ref("act_output")
    stats = "running max and sum for each of its queries and heads"
    outputs = "its KV shard's partial attention output for each of its queries"
    return (
        Send(
            "softmax_stats_allreduce",
            cp,
            2 * b_s * h / heads_over * tokens / cp,
            stats,
            Phase.PREFILL,
        ),
        Send("softmax_stats_allreduce", cp, 2 * b_s * h / heads_over * tokens, stats, Phase.DECODE),
        Send("output_allreduce", cp, y / heads_over / cp, outputs, Phase.PREFILL),
        Send("output_allreduce", cp, y / heads_over, outputs, Phase.DECODE),
    )


# What the CP layouts repeat in decode, where the new tokens cannot be split (seed CP-5).
# What verify expects, over all chips, in terms of single's steps (see Checks).
_COPIES = tp * sympy.ceiling(h_kv / tp) / h_kv  # each KV head is held by this many TP ranks
_KV_PROJ = ref("k_proj") + ref("v_proj")
_PROJ = ref("q_proj") + _KV_PROJ + ref("o_proj")
_KV_REPLICATED = (
    "when tensor_parallel exceeds num_kv_heads, each KV head (Wk, Wv, its projections "
    "and cache) lives on tensor_parallel / num_kv_heads ranks"
)
_Q_REPLICATED = "Q is replicated: every CP rank repeats the new tokens' projections"
_TP_CHECKS = {
    "flops": ref("flops") + (_COPIES - 1) * _KV_PROJ,
    "weights": ref("weights_qo") + ref("weights_kv") * _COPIES,
    "kv_cache": ref("kv_cache_bytes") * _COPIES,
}


@layout(
    "single",
    layer=LAYER,
    summary="one chip holds the whole layer",
    conventions=_DECODE,
    checks=Checks(reference=None, sends=()),
)
def single(phase: Phase, conv: Conventions) -> Cost:
    """Attention on one chip."""
    t = _trace()
    return _attention_cost(t, phase, conv, _sequence(t, phase, conv))


@layout(
    "tp",
    layer=LAYER,
    summary="heads sharded over tensor_parallel ranks; output all-reduced",
    degrees=(TENSOR_PARALLEL,),
    conventions=_DECODE,
    checks=Checks(
        **_TP_CHECKS,
        repeated=_KV_REPLICATED,
        sends=(
            Send(
                "output_allreduce",
                tp,
                ref("act_output"),
                "the row-parallel output projection leaves partial sums of all of Y",
            ),
        ),
    ),
)
def tensor_parallel(phase: Phase, conv: Conventions) -> Cost:
    """Megatron-style: Wq/Wk/Wv column-parallel, Wo row-parallel, one all-reduce of Y."""
    t = _trace()
    heads, kv_heads = _heads_over_tp(t)
    seq = _sequence(t, phase, conv)
    shard = Shard(seq.tokens, seq.queries, seq.keys, seq.cached, heads, kv_heads)
    allreduce = _Comm(
        "output_allreduce",
        "all-reduce",
        tp,
        tensor_bytes(seq.tokens, d, bytes_per_elem=b),
        "output all-reduce",
        "sum of the row-parallel output projection's partial Y[M, d]",
    )
    return _attention_cost(t, phase, conv, shard, chips=tp, comms=(allreduce,))


@layout(
    "cp-allgather",
    layer=LAYER,
    summary="sequence sharded over context_parallel ranks; K and V all-gathered",
    degrees=(CONTEXT_PARALLEL,),
    conventions=_DECODE,
    checks=Checks(
        weights=ref("weight_bytes") * cp,
        decode_flops=cp * ref("flops"),
        decode_repeated="with K/V gathered, every CP rank computes the whole decode step "
        "for the same new tokens",
        sends=(
            Send("kv_allgather", cp, ref("kv_cache_bytes"), "every rank gathers all of K and V"),
        ),
    ),
)
def cp_allgather(phase: Phase, conv: Conventions) -> Cost:
    """Each rank gathers the full K and V, then attends its own queries locally."""
    t = _trace()
    shard = _context_shard(t, phase, conv, keys_sharded=False)
    full_len = S if phase is Phase.PREFILL else t.symbol("kv_len")
    gather = _Comm(
        "kv_allgather",
        "all-gather",
        cp,
        2 * tensor_bytes(B, full_len, h_kv, dh, bytes_per_elem=b),
        "K/V all-gather",
        "the full K and V tensors, gathered from every rank's slice",
    )
    return _attention_cost(t, phase, conv, shard, chips=cp, comms=(gather,))


@layout(
    "cp-kv-sharded",
    layer=LAYER,
    summary="sequence/KV sharded over context_parallel ranks; softmax stats and "
    "partial outputs all-reduced",
    degrees=(CONTEXT_PARALLEL,),
    conventions=_DECODE,
    checks=Checks(
        weights=ref("weight_bytes") * cp,
        decode_flops=ref("flops") + (cp - 1) * _PROJ,
        decode_repeated=_Q_REPLICATED,
        sends=_cp_sends(1),
    ),
)
def cp_kv_sharded(phase: Phase, conv: Conventions) -> Cost:
    """Ring/KV-sharded attention: no K/V moves; softmax statistics and outputs do."""
    t = _trace()
    shard = _context_shard(t, phase, conv, keys_sharded=True)
    comms = _softmax_and_output(shard.tokens, h)
    return _attention_cost(t, phase, conv, shard, chips=cp, comms=comms)


@layout(
    "tp-cp",
    layer=LAYER,
    summary="heads over tensor_parallel x sequence/KV over context_parallel ranks",
    degrees=(TENSOR_PARALLEL, CONTEXT_PARALLEL),
    conventions=(*_DECODE, "materialize_full_hidden_after_tp"),
    checks=Checks(
        flops=_TP_CHECKS["flops"],
        decode_flops=ref("flops") + (cp - 1) * _PROJ + cp * (_COPIES - 1) * _KV_PROJ,
        repeated=_KV_REPLICATED,
        decode_repeated=f"{_Q_REPLICATED}; {_KV_REPLICATED}",
        weights=_TP_CHECKS["weights"] * cp,
        kv_cache=_TP_CHECKS["kv_cache"],
        sends=(
            *_cp_sends(tp),
            Send(
                "tp_allgather",
                tp,
                ref("act_output") / cp,
                "each chip gathers the other head slices of Y for its queries",
                Phase.PREFILL,
                _MATERIALIZE,
            ),
            Send(
                "tp_allgather",
                tp,
                ref("act_output"),
                "each chip gathers the other head slices of Y for the new tokens",
                Phase.DECODE,
                _MATERIALIZE,
            ),
        ),
    ),
)
def tp_cp(phase: Phase, conv: Conventions) -> Cost:
    """TP shards heads, CP shards KV positions; CP all-reduces, then an optional TP gather."""
    t = _trace()
    heads, kv_heads = _heads_over_tp(t)
    seq = _context_shard(t, phase, conv, keys_sharded=True)
    materialize = conv.materialize_full_hidden_after_tp
    shard = Shard(
        seq.tokens,
        seq.queries,
        seq.keys,
        seq.cached,
        heads,
        kv_heads,
        out_width=d if materialize else heads * dh,
    )
    comms = _softmax_and_output(seq.tokens, heads)
    if materialize:
        comms += (
            _Comm(
                "tp_allgather",
                "all-gather",
                tp,
                tensor_bytes(seq.tokens, d, bytes_per_elem=b),
                "TP output gather",
                "every chip gathers the other head slices of Y[M_local, d]",
            ),
        )
    return _attention_cost(t, phase, conv, shard, chips=tp * cp, comms=comms)
