"""Multi-head latent attention (MLA, DeepSeek-V2/V3) under each layout, prefill and decode.

    c_q = norm(X W_qa)   q = c_q W_qb            (mla_q_compressed; else q = X W_q)
    [c_kv, k_r] = X W_kva    c_kv = norm(c_kv)    the latent: what the cache holds
    [k_n, v] = c_kv W_kvb                         per head: the key/value up-projection
    O = softmax([q_n, q_r]·[k_n, k_r]ᵀ) v         Y = O W_o

W_qa is ``d × r_q``, W_qb ``r_q × h·(dh_n + dh_r)`` (W_q ``d × h·(dh_n + dh_r)``), W_kva
``d × (r_kv + dh_r)``, W_kvb ``r_kv × h·(dh_n + dh_v)``, W_o ``h·dh_v × d``; the two norms
hold r_q and r_kv weights. The rotary key k_r is shared by every head. No relation ties
d to h: MLA declares none.

Decode runs one of two ways (``mla_decode``). Decompressed, as Hugging Face does: every
cached latent, and the new tokens', goes through W_kvb again, then attention runs per
head. Absorbed, as serving engines do: W_kvb's key half is folded into the query
(q_n·W_ukᵀ) and its value half applied after attention, so the scores and P·V run over
the r_kv-wide latent. Every layout describes one chip's heads (``_mla``); each step is a
``StepSpec`` declared once below.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sympy

from shardcost.symbolic import (
    CollectiveKind,
    CollectiveSpec,
    Cost,
    Section,
    StepSpec,
    Trace,
    finish,
)
from shardcost.symbolic.dimensions import (
    TENSOR_PARALLEL,
    B,
    S,
    S_past,
    T,
    d,
    dh_n,
    dh_r,
    dh_v,
    h,
    r_kv,
    r_q,
    tp,
)
from shardcost.symbolic.verify import Claim, ClaimKind, Term

from ..conventions import Conventions, Phase
from ..dtypes import DTYPE_CONVENTIONS, element_bytes
from ..primitives import bmm_flops, matmul_flops, tensor_bytes
from ..registry import Checks, Layout, Role, Send, get_layout, layer, layout, ref
from ..sharding import HEADS_OVER
from ..steps import (
    ACT_INPUT,
    ACT_OUTPUT,
    ACTIVATION_BYTES,
    FLOPS,
    KV_CACHE_BYTES,
    MATMUL_ASSUMED,
    NEW_TOKENS,
    TOKENS,
    TOTALS_ASSUMED,
    WEIGHT_BYTES,
    hidden_bytes,
)
from .attention import KEY_LEN, KV_LEN

_CONVENTIONS = (
    "mla_kv_cache",
    "mla_decode",
    "mla_q_compressed",
    "attention_keys_include_new_token",
    "kv_includes_new_token",
    *DTYPE_CONVENTIONS,
)


def _claims(lay: Layout, phase: Phase, conv: Conventions, cost: Cost) -> list[Claim]:
    """Under a latent cache, a chip of any layout holds single's whole cache: the latent
    is shared by every head, so sharding heads cannot split it."""
    if conv.mla_kv_cache != "latent" or not lay.degrees:
        return []
    single = get_layout("single", lay.layer).cost(phase, conv).metrics["kv_cache_per_chip"]
    degrees = ", ".join(dim.name for dim in lay.degrees)
    return [
        Claim(
            "latent cache on every chip",
            f"mla_kv_cache=latent: KV bytes per chip equal single's, whatever {degrees}",
            ClaimKind.EQUAL,
            (Term("kv_cache_per_chip", cost.metrics["kv_cache_per_chip"], single),),
        )
    ]


LAYER = layer(
    "mla",
    role=Role.MIXER,
    conventions=_CONVENTIONS,
    assumptions=(
        MATMUL_ASSUMED,
        "Causal masking is not halved: every query is charged for every key it may see "
        "(a masked kernel runs the full product).",
        "The two RMSNorms (q_a_layernorm, kv_a_layernorm) count their weights, r_q and "
        "r_kv, and no FLOPs; rotary embedding and softmax count none either. No biases "
        "(attention_bias false, as in DeepSeek-V2 and V3).",
        "Prefill re-expands the whole prompt's latent through the key/value "
        "up-projection and attends per head, in every implementation.",
        "Under mla_kv_cache=decompressed the cache holds every head's keys and values: a "
        "decode step expands only the new tokens' latent and attends the cached heads, "
        "whatever mla_decode says (there is no cached latent to re-expand or absorb into).",
        "The score matrix is streamed (tiled), not a resident activation. Resident "
        "activations are the input X, the outputs of the projections that feed attention "
        "(the latents, the query, the expanded keys and values or the absorbed query), "
        "and the output Y.",
        "Weights, activations and the KV cache take the bytes per element of their types "
        "(weight_dtype, activation_dtype, kv_cache_dtype; bytes_per_elem unless named).",
        *TOTALS_ASSUMED,
    ),
    claims=_claims,
)


# Steps, declared once: key, words, section, unit, symbol, LaTeX, shape note.
_D, _F, _W, _A = Section.DERIVED, Section.FLOPS, Section.WEIGHTS, Section.ACTIVATIONS
EXPANDED_LEN = StepSpec(
    "expanded_len",
    "positions expanded through the key/value up-projection",
    _D,
    "positions",
    "S_e",
    "S_{e}",
)
Q_A_PROJ = StepSpec(
    "q_a_proj", "query down-projection", _F, "FLOPs", "F_qa", "F_{Qa}", "X[M, d] @ W_qa[d, r_q]"
)
Q_B_PROJ = StepSpec(
    "q_b_proj",
    "query up-projection",
    _F,
    "FLOPs",
    "F_qb",
    "F_{Qb}",
    "c_q[M, r_q] @ W_qb[r_q, h·(dh_n+dh_r)]",
)
Q_PROJ = StepSpec(
    "q_proj", "Q projection", _F, "FLOPs", "F_q", "F_{Q}", "X[M, d] @ W_q[d, h·(dh_n+dh_r)]"
)
KV_A_PROJ = StepSpec(
    "kv_a_proj",
    "key/value down-projection (latent and rotary key)",
    _F,
    "FLOPs",
    "F_kva",
    "F_{KVa}",
    "X[M, d] @ W_kva[d, r_kv+dh_r]",
)
KV_B_PROJ = StepSpec(
    "kv_b_proj",
    "key/value up-projection",
    _F,
    "FLOPs",
    "F_kvb",
    "F_{KVb}",
    "c_kv[B·S_e, r_kv] @ W_kvb[r_kv, h·(dh_n+dh_v)]",
)
SCORES = StepSpec(
    "scores",
    "attention scores Q·Kᵀ",
    _F,
    "FLOPs",
    "F_qk",
    "F_{QK}",
    "q[B,h,Sq,dh_n+dh_r] @ kᵀ[B,h,dh_n+dh_r,Sk]; causal mask not halved",
)
APPLY_V = StepSpec(
    "apply_v",
    "apply attention to V",
    _F,
    "FLOPs",
    "F_av",
    "F_{AV}",
    "p[B,h,Sq,Sk] @ v[B,h,Sk,dh_v]",
)
Q_ABSORB = StepSpec(
    "q_absorb",
    "query folded into the latent (W_uk absorbed)",
    _F,
    "FLOPs",
    "F_uk",
    "F_{UK}",
    "q_n[h, M, dh_n] @ W_uk[h, dh_n, r_kv]",
)
V_ABSORB = StepSpec(
    "v_absorb",
    "latent output up-projected to values (W_uv absorbed)",
    _F,
    "FLOPs",
    "F_uv",
    "F_{UV}",
    "o_c[h, M, r_kv] @ W_uv[h, r_kv, dh_v]",
)
O_PROJ = StepSpec(
    "o_proj", "output projection", _F, "FLOPs", "F_o", "F_{O}", "O[M, h·dh_v] @ W_o[h·dh_v, d]"
)
# In the absorbed form the scores and P·V run over the latent: other shapes, same steps.
_LATENT_SCORES = "q_c[B,h,T,r_kv+dh_r] @ [c_kv, k_r]ᵀ[B,1,r_kv+dh_r,Sk]; over the latent"
_LATENT_APPLY = "p[B,h,T,Sk] @ c_kv[B,1,Sk,r_kv]; over the latent"
WEIGHTS_Q_A = StepSpec(
    "weights_q_a", "W_qa and q_a_layernorm bytes", _W, "bytes", "W_qa", "W_{Qa}", "d·r_q + r_q"
)
WEIGHTS_Q = StepSpec(
    "weights_q", "query projection bytes", _W, "bytes", "W_qb", "W_{Q}", "W_qb or W_q"
)
WEIGHTS_KV_A = StepSpec(
    "weights_kv_a",
    "W_kva and kv_a_layernorm bytes",
    _W,
    "bytes",
    "W_kva",
    "W_{KVa}",
    "d·(r_kv+dh_r) + r_kv",
)
WEIGHTS_KV_B = StepSpec(
    "weights_kv_b", "W_kvb bytes", _W, "bytes", "W_kvb", "W_{KVb}", "r_kv × h·(dh_n+dh_v)"
)
WEIGHTS_O = StepSpec("weights_o", "W_o bytes", _W, "bytes", "W_o", "W_{O}", "h·dh_v × d")
ACT_LATENTS = StepSpec("act_latents", "latent outputs", _A, "bytes", "A_c", "A_{c}")
ACT_QUERY = StepSpec("act_query", "query", _A, "bytes", "A_q", "A_{Q}", "[M, h·(dh_n+dh_r)]")
ACT_KV = StepSpec(
    "act_kv", "expanded keys and values", _A, "bytes", "A_kv", "A_{KV}", "[B·S_e, h·(dh_n+dh_v)]"
)
ACT_Q_ABSORBED = StepSpec(
    "act_q_absorbed", "absorbed query", _A, "bytes", "A_qc", "A_{Qc}", "[M, h·r_kv]"
)
KV_LATENT = StepSpec(
    "kv_latent",
    "latent cache bytes",
    Section.KV_CACHE,
    "bytes",
    "KV_c",
    "KV_{c}",
    "c_kv and k_r: B × S_kv × (r_kv + dh_r)",
)
KV_HEADS = StepSpec(
    "kv_heads",
    "per-head key and value cache bytes",
    Section.KV_CACHE,
    "bytes",
    "KV_h",
    "KV_{h}",
    "B × S_kv × h × (dh_n + dh_r + dh_v)",
)
ACTIVATIONS = replace(
    ACTIVATION_BYTES, note="the B·h·Sq·Sk score matrix is streamed (tiled), not resident"
)

OUTPUT_ALLREDUCE = CollectiveSpec(
    "output_allreduce",
    CollectiveKind.ALL_REDUCE,
    "output all-reduce",
    "sum of the row-parallel output projection's partial Y[M, d]",
)


@dataclass(frozen=True)
class _Share:
    """What one chip computes and holds: its heads, and the positions of the step."""

    heads: sympy.Expr  # heads of W_qb (W_q), W_kvb and W_o it holds
    tokens: sympy.Expr  # tokens whose projections it computes (whole batch)
    queries: sympy.Expr  # query positions per sequence
    keys: sympy.Expr  # keys each query attends
    cached: sympy.Expr  # positions per sequence in the KV cache
    expanded: sympy.Expr  # positions per sequence expanded through W_kvb
    absorbed: bool  # attends over the latent (decode, absorbed, latent cache)
    compressed: bool  # the query goes through W_qa and W_qb


def _share(t: Trace, phase: Phase, conv: Conventions, heads: sympy.Expr) -> _Share:
    """The positions of this step, for a chip holding ``heads``."""
    compressed = conv.mla_q_compressed
    if phase is Phase.PREFILL:
        expanded = EXPANDED_LEN(t, S, note="the whole prompt")
        return _Share(heads, TOKENS(t, B * S), S, S, S, expanded, False, compressed)
    tokens = NEW_TOKENS(t, B * T, note="B × T: one query per new token")
    with_new = conv.attention_keys_include_new_token
    keys = KEY_LEN(
        t,
        S_past + T if with_new else S_past,
        note="past tokens and the new ones" if with_new else "past tokens only",
    )
    cached_new = conv.kv_includes_new_token
    cached = KV_LEN(
        t,
        S_past + T if cached_new else S_past,
        note="including the new tokens" if cached_new else "past tokens only",
    )
    absorbed = conv.mla_kv_cache == "latent" and conv.mla_decode == "absorbed"
    if conv.mla_kv_cache == "decompressed":
        expanded = EXPANDED_LEN(t, T, note="the new tokens; the past is cached per head")
    elif not absorbed:
        note = "the whole cache after the new tokens are written (Hugging Face)"
        expanded = EXPANDED_LEN(t, S_past + T, note=note)
    else:
        expanded = sympy.S.Zero  # nothing is re-expanded
    return _Share(heads, tokens, T, keys, cached, expanded, absorbed, compressed)


def _flops(t: Trace, s: _Share) -> sympy.Symbol:
    """The query path, the latent, then per-head attention (re-expanded, or absorbed
    over the latent), and the output projection."""
    qk, m = dh_n + dh_r, s.tokens
    if s.compressed:
        flops = [
            Q_A_PROJ(t, matmul_flops(m, d, r_q)),
            Q_B_PROJ(t, matmul_flops(m, r_q, s.heads * qk)),
        ]
    else:
        flops = [Q_PROJ(t, matmul_flops(m, d, s.heads * qk))]
    flops.append(KV_A_PROJ(t, matmul_flops(m, d, r_kv + dh_r)))
    batch = B * s.heads
    if s.absorbed:
        flops += [
            Q_ABSORB(t, bmm_flops(s.heads, m, dh_n, r_kv)),
            SCORES(t, bmm_flops(batch, s.queries, r_kv + dh_r, s.keys), note=_LATENT_SCORES),
            APPLY_V(t, bmm_flops(batch, s.queries, s.keys, r_kv), note=_LATENT_APPLY),
            V_ABSORB(t, bmm_flops(s.heads, m, r_kv, dh_v)),
        ]
    else:
        flops += [
            KV_B_PROJ(t, matmul_flops(B * s.expanded, r_kv, s.heads * (dh_n + dh_v))),
            SCORES(t, bmm_flops(batch, s.queries, qk, s.keys)),
            APPLY_V(t, bmm_flops(batch, s.queries, s.keys, dh_v)),
        ]
    flops.append(O_PROJ(t, matmul_flops(m, s.heads * dh_v, d)))
    note = "attention over the latent (mla_decode=absorbed)" if s.absorbed else ""
    return FLOPS(t, sympy.Add(*flops), note=note)


def _weights(t: Trace, conv: Conventions, s: _Share) -> sympy.Symbol:
    """Every matrix and both norms stay resident, whichever way decode runs."""
    wb, qk = element_bytes(conv, "weight"), dh_n + dh_r
    if s.compressed:
        weights = [
            WEIGHTS_Q_A(t, (d * r_q + r_q) * wb),
            WEIGHTS_Q(t, r_q * s.heads * qk * wb, note="W_qb: r_q × h·(dh_n+dh_r)"),
        ]
    else:
        weights = [WEIGHTS_Q(t, d * s.heads * qk * wb, note="W_q: d × h·(dh_n+dh_r)")]
    weights += [
        WEIGHTS_KV_A(t, (d * (r_kv + dh_r) + r_kv) * wb),
        WEIGHTS_KV_B(t, r_kv * s.heads * (dh_n + dh_v) * wb),
        WEIGHTS_O(t, s.heads * dh_v * d * wb),
    ]
    return WEIGHT_BYTES(t, sympy.Add(*weights))


def _activations(t: Trace, conv: Conventions, s: _Share) -> sympy.Symbol:
    """X, the latents, the query, the expanded keys and values (or the absorbed query), Y."""
    ab, m = element_bytes(conv, "activation"), s.tokens
    latents = (r_q if s.compressed else 0) + r_kv + dh_r
    acts = [
        ACT_INPUT(t, hidden_bytes(m, bytes_per_elem=ab)),
        ACT_LATENTS(
            t,
            hidden_bytes(m, latents, bytes_per_elem=ab),
            note="c_q, c_kv and k_r" if s.compressed else "c_kv and k_r",
        ),
        ACT_QUERY(t, hidden_bytes(m, s.heads * (dh_n + dh_r), bytes_per_elem=ab)),
    ]
    if s.absorbed:
        acts.append(ACT_Q_ABSORBED(t, hidden_bytes(m, s.heads * r_kv, bytes_per_elem=ab)))
    else:
        width = s.heads * (dh_n + dh_v)
        acts.append(ACT_KV(t, hidden_bytes(B * s.expanded, width, bytes_per_elem=ab)))
    acts.append(ACT_OUTPUT(t, hidden_bytes(m, bytes_per_elem=ab)))
    return ACTIVATIONS(t, sympy.Add(*acts))


def _kv_cache(t: Trace, conv: Conventions, s: _Share, *, over_tp: bool) -> sympy.Symbol:
    """The latent and rotary key (one copy per chip), or every held head's K and V."""
    kvb = element_bytes(conv, "kv_cache")
    if conv.mla_kv_cache == "latent":
        note = "shared by every head: a full copy on every TP rank" if over_tp else ""
        kv = KV_LATENT(t, tensor_bytes(B, s.cached, r_kv + dh_r, bytes_per_elem=kvb), note=note)
    else:
        width = dh_n + dh_r + dh_v
        kv = KV_HEADS(t, tensor_bytes(B, s.cached, s.heads, width, bytes_per_elem=kvb))
    return KV_CACHE_BYTES(t, kv, note=f"mla_kv_cache={conv.mla_kv_cache}")


def _mla(phase: Phase, conv: Conventions, *, over_tp: bool) -> Cost:
    """One chip's share of MLA: its heads (all, or h/tp), with the latent projections
    (W_qa, W_kva and their norms) and the latent cache on every chip."""
    t = Trace()
    heads: sympy.Expr = h
    if over_tp:
        t.require_divisible(h, tp, "heads are sharded whole across tensor-parallel ranks")
        heads = HEADS_OVER[tp][0](t, h / tp)
    s = _share(t, phase, conv, heads)
    flops, weights = _flops(t, s), _weights(t, conv, s)
    activations, kv_cache = _activations(t, conv, s), _kv_cache(t, conv, s, over_tp=over_tp)
    ab = element_bytes(conv, "activation")
    sends = [OUTPUT_ALLREDUCE(t, tp, hidden_bytes(s.tokens, bytes_per_elem=ab))] if over_tp else []
    return finish(
        t,
        chips=tp if over_tp else 1,
        flops=flops,
        weights=weights,
        activations=activations,
        kv_cache=kv_cache,
        collectives=sends,
    )


@layout(
    "single",
    layer=LAYER,
    summary="one chip holds the whole layer",
    conventions=_CONVENTIONS,
    checks=Checks(reference=None, sends=()),
)
def single(phase: Phase, conv: Conventions) -> Cost:
    """MLA on one chip."""
    return _mla(phase, conv, over_tp=False)


_REPLICATED = "the latent projections (W_qa, W_kva) run on every TP rank, for the same tokens"


@layout(
    "tp",
    layer=LAYER,
    summary="heads sharded over tensor_parallel ranks (W_qb or W_q and W_kvb column-, W_o "
    "row-parallel); W_qa, W_kva, their norms and the latent cache replicated on every rank "
    "(engines avoid the cache copies with data-parallel attention, which TP cannot "
    "express); output all-reduced",
    degrees=(TENSOR_PARALLEL,),
    conventions=_CONVENTIONS,
    checks=Checks(
        flops=ref("flops") + (tp - 1) * (ref("q_a_proj") + ref("kv_a_proj")),
        repeated=_REPLICATED,
        weights=ref("weight_bytes") + (tp - 1) * (ref("weights_q_a") + ref("weights_kv_a")),
        # the latent is copied on every rank; per-head keys and values are split
        kv_cache=tp * ref("kv_latent") + ref("kv_heads"),
        sends=(
            Send(
                OUTPUT_ALLREDUCE.name,
                tp,
                ref("act_output"),
                "the row-parallel output projection leaves partial sums of all of Y",
            ),
        ),
    ),
)
def tensor_parallel(phase: Phase, conv: Conventions) -> Cost:
    """Megatron-style over heads: the query and key/value up-projections column-parallel,
    W_o row-parallel, one all-reduce of Y; the latent path is replicated."""
    return _mla(phase, conv, over_tp=True)
