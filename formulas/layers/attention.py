"""The attention layer under each layout, prefill and decode.

    Q = X Wq    K = X Wk    V = X Wv    O = softmax(Q Kᵀ / √dh) V    Y = O Wo

Wq and Wo are ``d × h·dh``; Wk and Wv are ``d × h_kv·dh`` (grouped-query attention
when ``h_kv < h``, multi-head when equal). Causal masking is not halved: every query
is charged for every key it may see, as the seeds count (``attention_flops=dense``);
``attention_flops=exact`` charges only the query-key pairs attended. A sliding or
chunked window (``attention_window``) bounds what the cache keeps
(``sliding_window_kv``) and so the keys a new token is multiplied with. Every layout
describes one chip's share as a ``Shard``; ``_attention_cost`` turns a shard into
steps, each a ``StepSpec`` declared once below, and each collective a ``CollectiveSpec``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sympy

from shardcost.symbolic import (
    CollectiveKind,
    CollectiveSpec,
    Cost,
    Product,
    Section,
    StepSpec,
    Trace,
    finish,
)
from shardcost.symbolic.dimensions import (
    CONTEXT_PARALLEL,
    HEAD_DIM,
    HIDDEN_SIZE,
    NUM_HEADS,
    TENSOR_PARALLEL,
    B,
    S,
    S_past,
    S_w,
    T,
    b_s,
    cp,
    d,
    dh,
    h,
    h_kv,
    tp,
)
from shardcost.symbolic.verify import Claim, ClaimKind, Term

from ..conventions import Conventions, Phase
from ..dtypes import DTYPE_CONVENTIONS, element_bytes
from ..primitives import bmm_flops, matmul_flops, tensor_bytes
from ..registry import Checks, Layout, Role, Send, layer, layout, ref
from ..sharding import cached_over_cp, heads_over, keys_over_cp, sequence_over_cp, token_share
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
)

_DECODE = (
    "attention_keys_include_new_token",
    "kv_includes_new_token",
    "decode_projections",
    *DTYPE_CONVENTIONS,
)
# Every layout takes a window; only those whose chips attend every position of their
# heads (single, tp, ulysses) count exact pairs: a CP rank's share of the causal pairs
# depends on which positions it holds, which these layouts do not model.
_WINDOWED = (*_DECODE, "attention_window", "sliding_window_kv")
_EXACT = (*_WINDOWED, "attention_flops")


def _claims(lay: Layout, phase: Phase, conv: Conventions, cost: Cost) -> list[Claim]:
    """A window never adds KV bytes or FLOPs per chip to the same layout without one, and
    exact pairs never cost more than the dense product."""
    mine = cost.metrics
    claims = []
    if conv.attention_window != "none":
        plain = lay.cost(phase, replace(conv, attention_window="none")).metrics
        claims.append(
            Claim(
                "a window adds nothing",
                f"attention_window={conv.attention_window}: KV bytes and FLOPs per chip are "
                "at most the same layout's without a window",
                ClaimKind.ATLEAST,
                tuple(Term(m, plain[m], mine[m]) for m in ("kv_cache_per_chip", "flops_per_chip")),
            )
        )
    if conv.attention_flops == "exact":
        dense = lay.cost(phase, replace(conv, attention_flops="dense")).metrics
        claims.append(
            Claim(
                "exact pairs within the dense product",
                "attention_flops=exact: FLOPs per chip are at most attention_flops=dense's",
                ClaimKind.ATLEAST,
                (Term("flops_per_chip", dense["flops_per_chip"], mine["flops_per_chip"]),),
            )
        )
    return claims


LAYER = layer(
    "attention",
    role=Role.MIXER,
    conventions=(*_EXACT, "materialize_full_hidden_after_tp"),
    claims=_claims,
    relations=(Product(HIDDEN_SIZE, NUM_HEADS, HEAD_DIM),),
    assumptions=(
        MATMUL_ASSUMED,
        "Under attention_flops=dense causal masking is not halved: every query is charged for "
        "every key of the product, as a masked kernel computes them; attention_flops=exact "
        "charges only the query-key pairs attended.",
        "The B·h·S_q·S_k score matrix is streamed (tiled), not a resident activation.",
        "Resident activations are the input X, the projections computed, and the output Y.",
        "Weights, activations and the KV cache take the bytes per element of their types "
        "(weight_dtype, activation_dtype, kv_cache_dtype; bytes_per_elem unless named).",
        *TOTALS_ASSUMED,
    ),
)


# Steps, declared once: key, words, section, unit, symbol, LaTeX, shape note.
_D, _F, _W, _A = Section.DERIVED, Section.FLOPS, Section.WEIGHTS, Section.ACTIVATIONS
KEY_LEN = StepSpec("key_len", "keys each new token attends to", _D, "positions", "S_k", "S_{k}")
KV_LEN = StepSpec(
    "kv_len", "positions per sequence in the KV cache", _D, "positions", "S_kv", "S_{kv}"
)
PAIRS = StepSpec("pairs", "query-key pairs attended per sequence and head", _D, "pairs", "P", "P")
# The counts exact pairs are summed from, per window (each a closed form of what it says).
PARTIAL_CHUNK = StepSpec(
    "partial_chunk", "positions in the last, partial chunk", _D, "positions", "S_r", "S_{r}"
)
OPEN_CHUNK = StepSpec(
    "open_chunk",
    "past positions in the chunk the new tokens start in",
    _D,
    "positions",
    "S_o",
    "S_{o}",
    "S_past mod S_w",
)
FILLING = StepSpec(
    "filling_tokens", "new tokens that complete that chunk", _D, "tokens", "T_f", "T_{f}"
)
EARLY = StepSpec(
    "early_tokens", "new tokens whose window starts at position 1", _D, "tokens", "T_e", "T_{e}"
)
REACHING = StepSpec(
    "reaching_tokens",
    "new tokens whose window reaches a past position",
    _D,
    "tokens",
    "T_r",
    "T_{r}",
)
KV_POSITION = StepSpec(
    "kv_position_bytes",
    "K/V bytes per cached position",
    Section.KV_CACHE,
    "bytes",
    "KV_pos",
    r"KV_{\mathrm{pos}}",
    "K and V of each KV head cached",
)
Q_PROJ = StepSpec("q_proj", "Q projection", _F, "FLOPs", "F_q", "F_{Q}", "X[M, d] @ Wq[d, h·dh]")
K_PROJ = StepSpec("k_proj", "K projection", _F, "FLOPs", "F_k", "F_{K}", "X[M, d] @ Wk[d, h_kv·dh]")
V_PROJ = StepSpec("v_proj", "V projection", _F, "FLOPs", "F_v", "F_{V}", "X[M, d] @ Wv[d, h_kv·dh]")
SCORES = StepSpec(
    "scores",
    "attention scores Q·Kᵀ",
    _F,
    "FLOPs",
    "F_qk",
    "F_{QK}",
    "q[B,h,Sq,dh] @ kᵀ[B,h,dh,Sk]; causal mask not halved",
)
APPLY_V = StepSpec(
    "apply_v", "apply attention to V", _F, "FLOPs", "F_av", "F_{AV}", "p[B,h,Sq,Sk] @ v[B,h,Sk,dh]"
)
O_PROJ = StepSpec(
    "o_proj", "output projection", _F, "FLOPs", "F_o", "F_{O}", "O[M, h·dh] @ Wo[h·dh, d]"
)
WEIGHTS_QO = StepSpec(
    "weights_qo", "Wq and Wo bytes", _W, "bytes", "W_qo", r"W_{QO}", "d × h·dh each"
)
WEIGHTS_KV = StepSpec(
    "weights_kv", "Wk and Wv bytes", _W, "bytes", "W_kv", r"W_{KV}", "d × h_kv·dh each"
)
ACT_PROJECTIONS = StepSpec("act_projections", "QKV outputs", _A, "bytes", "A_qkv", "A_{QKV}")

ACTIVATIONS = replace(
    ACTIVATION_BYTES, note="the B·h·S·S score matrix is streamed (tiled), not resident"
)
KV_BYTES = replace(KV_CACHE_BYTES, note="K and V")

# Collectives, declared once: used by the builders and by the checks that hold them.
_AR, _AG = CollectiveKind.ALL_REDUCE, CollectiveKind.ALL_GATHER
_A2A, _P2P = CollectiveKind.ALL_TO_ALL, CollectiveKind.SEND_RECV
OUTPUT_ALLREDUCE = CollectiveSpec(
    "output_allreduce",
    _AR,
    "output all-reduce",
    "sum of the row-parallel output projection's partial Y[M, d]",
)
SOFTMAX_STATS = CollectiveSpec(
    "softmax_stats_allreduce",
    _AR,
    "softmax statistics all-reduce",
    "running max and sum per query and head, in softmax_stat_bytes each",
)
PARTIAL_OUTPUT = CollectiveSpec(
    "output_allreduce",
    _AR,
    "partial-output all-reduce",
    "sum of each KV shard's partial attention output",
)
KV_ALLGATHER = CollectiveSpec(
    "kv_allgather",
    _AG,
    "K/V all-gather",
    "the full K and V tensors, gathered from every rank's slice",
)
TP_ALLGATHER = CollectiveSpec(
    "tp_allgather",
    _AG,
    "TP output gather",
    "every chip gathers the other head slices of Y[M_local, d]",
)
QKV_ALLTOALL = CollectiveSpec(
    "qkv_alltoall",
    _A2A,
    "Q/K/V all-to-all",
    "each rank's tokens' Q, K and V, sent to the ranks that attend their heads",
)
OUTPUT_ALLTOALL = CollectiveSpec(
    "output_alltoall",
    _A2A,
    "output all-to-all",
    "each rank's heads' attention output, sent back to the ranks that hold their tokens",
)
KV_RING = CollectiveSpec(
    "kv_ring",
    _P2P,
    "K/V ring pass",
    "each rank passes the K/V block it holds to the next rank, context_parallel − 1 times "
    "(overlappable with the attention on the block it has)",
)
PARTIAL_RING = CollectiveSpec(
    "partial_ring",
    _P2P,
    "partial-output ring pass",
    "each rank passes its running softmax statistics and partial output to the next rank, "
    "context_parallel − 1 times",
)


@dataclass(frozen=True)
class Shard:
    """What one chip of a layout computes and holds (per sequence where it says so)."""

    tokens: sympy.Expr  # tokens whose projections this chip computes (whole batch)
    queries: sympy.Expr  # query positions per sequence attended on this chip
    keys: sympy.Expr | None  # key positions each query sees on this chip (None: see pairs)
    cached: sympy.Expr  # positions per sequence whose K/V this chip stores
    heads: sympy.Expr = h  # query heads of the projections (Wq, Wo columns) it holds
    kv_heads: sympy.Expr = h_kv  # KV heads of the projections (Wk, Wv) it holds
    out_width: sympy.Expr = d  # width of the output Y resident on this chip
    core_heads: sympy.Expr | None = None  # heads it attends (default: ``heads``)
    core_kv_heads: sympy.Expr | None = None  # KV heads it caches (default: ``kv_heads``)
    # query-key pairs per sequence and head it attends (attention_flops=exact); None:
    # every query with every key, queries × keys
    pairs: sympy.Expr | None = None

    @property
    def attended(self) -> tuple[sympy.Expr, sympy.Expr]:
        """The query heads this chip attends and the KV heads it caches."""
        return (
            self.heads if self.core_heads is None else self.core_heads,
            self.kv_heads if self.core_kv_heads is None else self.core_kv_heads,
        )


def _ab(conv: Conventions) -> sympy.Expr:
    """Bytes per activation element (and per element of a payload)."""
    return element_bytes(conv, "activation")


def _trace() -> Trace:
    """A new trace with the layer's own requirement, checked before any layout's."""
    t = Trace()
    t.require_divisible(h, h_kv, "each KV head serves a whole group of query heads")
    return t


def _projections(phase: Phase, conv: Conventions) -> str:
    """Which of the Q, K, V, O projections this step computes."""
    return "qkvo" if phase is Phase.PREFILL else conv.decode_projections


def _cache_limit(conv: Conventions) -> tuple[sympy.Expr, str] | None:
    """The most positions per sequence a windowed layer's cache keeps, and its words;
    None when it keeps every one (no window, or sliding_window_kv=full)."""
    if conv.attention_window == "none" or conv.sliding_window_kv == "full":
        return None
    if conv.sliding_window_kv == "window":
        return S_w - 1, "its last S_w − 1"
    return S_w, "its last S_w"


def _kept(conv: Conventions, positions: sympy.Expr) -> sympy.Expr:
    """Of ``positions`` written to the cache, those it keeps."""
    limit = _cache_limit(conv)
    return positions if limit is None else sympy.Min(positions, limit[0])


def _mod_window(n: sympy.Expr) -> sympy.Expr:
    """``n mod S_w``, as max(0, n − S_w·⌊n/S_w⌋): the max is an atom to compiled code,
    which then bounds r·r by its value, not by the n² its expansion would hold."""
    return sympy.Max(0, n - sympy.floor(n / S_w) * S_w)


def _chunks(n: sympy.Expr, rest: sympy.Expr) -> sympy.Expr:
    """Pairs among ``n`` positions from a chunk's start: ⌊n/S_w⌋ whole chunks, then
    ``rest`` = n mod S_w positions of the last."""
    return sympy.floor(n / S_w) * S_w * (S_w + 1) / 2 + rest * (rest + 1) / 2


# What position i (from 1) attends, itself included, under each window.
_ATTENDS = {"none": "i", "sliding": "min(i, S_w)", "chunked": "(i − 1) mod S_w + 1"}


def _prompt_pairs(t: Trace, conv: Conventions) -> sympy.Expr | None:
    """The pairs a prompt of S attends per sequence and head (attention_flops=exact)."""
    if conv.attention_flops != "exact":
        return None
    window = conv.attention_window
    if window == "sliding":  # a triangle, then whole windows
        m = sympy.Min(S, S_w)
        pairs = m * (m + 1) / 2 + sympy.Max(0, S - S_w) * S_w
    elif window == "chunked":
        pairs = _chunks(S, PARTIAL_CHUNK(t, _mod_window(S), note="S mod S_w"))
    else:
        pairs = S * (S + 1) / 2
    words = f"Σ of {_ATTENDS[window]} over i = 1 .. S, not the S × S product"
    return PAIRS(t, pairs, note=words)


def _decode_pairs(t: Trace, conv: Conventions) -> sympy.Symbol:
    """The pairs the T new tokens (positions S_past + j, j = 1..T) attend per sequence
    and head: every key in their windows, or the past ones only
    (attention_keys_include_new_token=false). Each sum over j in closed form, with no
    large terms that cancel (each at most T·S_past or T·S_w)."""
    window = conv.attention_window
    with_new = conv.attention_keys_include_new_token
    if with_new:
        words = f"Σ of {_ATTENDS[window]} over i = S_past + 1 .. S_past + T"
    else:
        words = "the past positions in each new token's window, summed over the new tokens"
    if window == "none":
        return PAIRS(t, T * S_past + T * (T + 1) / 2 if with_new else T * S_past, note=words)
    if window == "sliding":
        early = EARLY(t, sympy.Min(T, sympy.Max(0, S_w - S_past)), note="S_past + j ≤ S_w")
        if with_new:  # min(S_past + j, S_w): S_past + j for the early ones, then S_w
            pairs = early * S_past + early * (early + 1) / 2 + (T - early) * S_w
            return PAIRS(t, pairs, note=words)
        # min(S_past, S_w − j): all the past for the early ones, then S_w − j, then none
        reach = REACHING(t, sympy.Min(T, S_w - 1), note="j < S_w")
        halves = (reach * (reach + 1) - early * (early + 1)) / 2
        return PAIRS(t, early * S_past + (reach - early) * S_w - halves, note=words)
    # chunked: the past ends S_o positions into a chunk, which the first new tokens fill
    offset = OPEN_CHUNK(t, _mod_window(S_past))
    filling = FILLING(t, sympy.Min(T, S_w - offset), note="at most S_w − S_o")
    if not with_new:  # each of them attends the S_o past positions of its chunk
        return PAIRS(t, filling * offset, note=words)
    # S_o + 1, S_o + 2 ... in that chunk, then whole chunks of their own
    rest = T - filling
    pairs = filling * offset + filling * (filling + 1) / 2 + _chunks(rest, _mod_window(rest))
    return PAIRS(t, pairs, note=words)


def _prompt_cache(t: Trace, conv: Conventions) -> sympy.Expr:
    """Positions per sequence the cache keeps after a prompt of S."""
    limit = _cache_limit(conv)
    if limit is None:
        return S
    return KV_LEN(t, sympy.Min(S, limit[0]), note=f"the prompt's positions, at most {limit[1]}")


def _decode_keys(t: Trace, conv: Conventions) -> tuple[sympy.Expr | None, sympy.Expr | None]:
    """(keys, pairs) of a decode step: the keys each new token is multiplied with, or,
    under attention_flops=exact, the pairs it attends."""
    with_new = conv.attention_keys_include_new_token
    if conv.attention_flops == "exact":
        return None, _decode_pairs(t, conv)
    limit = _cache_limit(conv)
    past = _kept(conv, S_past)
    if limit is None:
        note = "past tokens and the new ones" if with_new else "past tokens only"
    else:  # what Hugging Face multiplies: the cache as it stands, then the new tokens
        note = f"the cache's past tokens, at most {limit[1]}" + (
            ", and the new ones" if with_new else ""
        )
    return KEY_LEN(t, past + T if with_new else past, note=note), None


def _sequence(t: Trace, phase: Phase, conv: Conventions) -> Shard:
    """The unsharded sequence: every token, key and cached position on one chip."""
    if phase is Phase.PREFILL:
        tokens = TOKENS(t, B * S)
        cached = _prompt_cache(t, conv)
        return Shard(tokens, S, S, cached, pairs=_prompt_pairs(t, conv))
    tokens = NEW_TOKENS(t, B * T, note="B × T: one query per new token")
    keys, pairs = _decode_keys(t, conv)
    cached_new = conv.kv_includes_new_token
    limit = _cache_limit(conv)
    note = "including the new tokens" if cached_new else "past tokens only"
    if limit is not None:
        note += f", at most {limit[1]}"
    cached = KV_LEN(t, _kept(conv, S_past + T if cached_new else S_past), note=note)
    return Shard(tokens=tokens, queries=T, keys=keys, cached=cached, pairs=pairs)


def _context_shard(t: Trace, phase: Phase, conv: Conventions, *, keys_sharded: bool) -> Shard:
    """The sequence split over CP ranks.

    Prefill: each rank owns ``⌈S/cp⌉`` positions (its queries and its KV slice) and its
    queries see all ``S`` keys (gathered, or accumulated shard by shard: the FLOPs are
    the same, seed CP-1). Decode: the new tokens cannot be split, so every rank holds
    them (Q is replicated, seed CP-3a); the cached positions are split, and the keys
    too when ``keys_sharded``.
    """
    conv = replace(conv, attention_flops="dense")  # these layouts do not read it (_WINDOWED)
    if phase is Phase.PREFILL:
        local, tokens = sequence_over_cp(t)
        cached = local
        if _cache_limit(conv) is not None:  # the window first, then its share
            cached = cached_over_cp(t, _prompt_cache(t, conv))
        return Shard(tokens=tokens, queries=local, keys=S, cached=cached)
    full = _sequence(t, phase, conv)
    keys = full.keys
    if keys_sharded:
        keys = keys_over_cp(t, full.keys)
    cached = cached_over_cp(t, full.cached)
    return Shard(tokens=full.tokens, queries=T, keys=keys, cached=cached)


def attention_products(t: Trace, shard: Shard) -> list[sympy.Symbol]:
    """The scores Q·Kᵀ and P·V of the heads ``shard`` attends: every query with every
    key, or (``shard.pairs``) one dh-long dot product and one dh-wide weighted sum per
    pair attended."""
    attended, _ = shard.attended
    if shard.pairs is None:
        return [
            SCORES(t, bmm_flops(B * attended, shard.queries, dh, shard.keys)),
            APPLY_V(t, bmm_flops(B * attended, shard.queries, shard.keys, dh)),
        ]
    each = "for each of the B·h·P pairs attended"
    return [
        SCORES(t, bmm_flops(B * attended, shard.pairs, dh, 1), note=f"q·k {each}"),
        APPLY_V(t, bmm_flops(B * attended, shard.pairs, 1, dh), note=f"p·v {each}"),
    ]


def _flops(t: Trace, phase: Phase, conv: Conventions, shard: Shard) -> sympy.Symbol:
    """The projections this step computes, the scores and P·V, and their sum."""
    tokens, heads, kv_heads = shard.tokens, shard.heads, shard.kv_heads
    counted = _projections(phase, conv)
    flops = []
    if "q" in counted:
        flops.append(Q_PROJ(t, matmul_flops(tokens, d, heads * dh)))
    if "k" in counted:
        flops.append(K_PROJ(t, matmul_flops(tokens, d, kv_heads * dh)))
        flops.append(V_PROJ(t, matmul_flops(tokens, d, kv_heads * dh)))
    flops += attention_products(t, shard)
    flops.append(O_PROJ(t, matmul_flops(tokens, heads * dh, d)))
    note = "" if counted == "qkvo" else f"decode_projections={counted}"
    return FLOPS(t, sympy.Add(*flops), note=note)


def _weights(t: Trace, conv: Conventions, shard: Shard) -> sympy.Symbol:
    """All four matrices stay resident, whatever a decode step computes."""
    wb = element_bytes(conv, "weight")
    qo = WEIGHTS_QO(t, 2 * d * shard.heads * dh * wb)
    kv = WEIGHTS_KV(t, 2 * d * shard.kv_heads * dh * wb)
    return WEIGHT_BYTES(t, qo + kv)


def _projection_widths(shard: Shard, counted: str) -> dict[str, sympy.Expr]:
    """The width of each projection output this step computes, by letter."""
    widths = {}
    if "q" in counted:
        widths["q"] = shard.heads * dh
    if "k" in counted:
        widths["k"] = widths["v"] = shard.kv_heads * dh
    return widths


def _activations(t: Trace, phase: Phase, conv: Conventions, shard: Shard) -> sympy.Symbol:
    """The input, the projections this step computes, the output."""
    ab = element_bytes(conv, "activation")
    acts = [ACT_INPUT(t, tensor_bytes(shard.tokens, d, bytes_per_elem=ab))]
    widths = _projection_widths(shard, _projections(phase, conv))
    if widths:
        names = "".join(widths).upper()
        width = sympy.Add(*widths.values())
        out = tensor_bytes(shard.tokens, width, bytes_per_elem=ab)
        acts.append(ACT_PROJECTIONS(t, out, label=f"{names} outputs", latex=f"A_{{{names}}}"))
    acts.append(ACT_OUTPUT(t, tensor_bytes(shard.tokens, shard.out_width, bytes_per_elem=ab)))
    return ACTIVATIONS(t, sympy.Add(*acts))


def kv_cache(t: Trace, conv: Conventions, shard: Shard) -> sympy.Symbol:
    """K and V of the positions ``shard`` caches, for the KV heads it attends; under a
    window per position, which the checks of the layouts that move K/V read."""
    _, kv_heads = shard.attended
    kv_bytes = element_bytes(conv, "kv_cache")
    if _cache_limit(conv) is None:
        return KV_BYTES(t, 2 * tensor_bytes(B, shard.cached, kv_heads, dh, bytes_per_elem=kv_bytes))
    position = KV_POSITION(t, 2 * tensor_bytes(kv_heads, dh, bytes_per_elem=kv_bytes))
    return KV_BYTES(t, B * shard.cached * position)


def _attention_cost(
    t: Trace,
    phase: Phase,
    conv: Conventions,
    shard: Shard,
    *,
    chips: sympy.Expr = sympy.S.One,
    comms: tuple[tuple[CollectiveSpec, sympy.Expr, sympy.Expr], ...] = (),
) -> Cost:
    """Steps for one chip's share of attention, then the Cost they add up to. ``comms``:
    (collective, group, payload) for each collective the layout performs."""
    flops = _flops(t, phase, conv, shard)
    weights = _weights(t, conv, shard)
    activations = _activations(t, phase, conv, shard)
    kv = kv_cache(t, conv, shard)
    collectives = [spec(t, group, payload) for spec, group, payload in comms]
    return finish(
        t,
        chips=chips,
        flops=flops,
        weights=weights,
        activations=activations,
        kv_cache=kv,
        collectives=collectives,
    )


def _softmax_and_output(
    conv: Conventions, tokens: sympy.Expr, heads: sympy.Expr
) -> tuple[tuple[CollectiveSpec, sympy.Expr, sympy.Expr], ...]:
    """The two CP all-reduces of KV-sharded attention, for these queries and heads."""
    return (
        (SOFTMAX_STATS, cp, tokens * heads * 2 * b_s),
        (PARTIAL_OUTPUT, cp, tensor_bytes(tokens, heads, dh, bytes_per_elem=_ab(conv))),
    )


_MATERIALIZE = "materialize_full_hidden_after_tp"


def _cp_sends(heads_over: sympy.Expr) -> tuple[Send, ...]:
    """What KV-sharded attention must send over CP: per query and head, the softmax
    statistics and the partial output. Prefill splits the queries over cp; decode
    replicates them. (Y's bytes are the queries' h·dh-wide outputs: d = h·dh.)"""
    tokens, y = ref("tokens"), ref("act_output")
    stats = "running max and sum for each of its queries and heads"
    outputs = "its KV shard's partial attention output for each of its queries"
    name, out = SOFTMAX_STATS.name, PARTIAL_OUTPUT.name
    return (
        Send(name, cp, 2 * b_s * h / heads_over * tokens / cp, stats, Phase.PREFILL),
        Send(name, cp, 2 * b_s * h / heads_over * tokens, stats, Phase.DECODE),
        Send(out, cp, y / heads_over / cp, outputs, Phase.PREFILL),
        Send(out, cp, y / heads_over, outputs, Phase.DECODE),
    )


# What the CP layouts repeat in decode, where the new tokens cannot be split (seed CP-5).
# What verify expects, over all chips, in terms of single's steps (see Checks).
def _copies(degree: sympy.Symbol) -> sympy.Expr:
    """How many ranks of ``degree`` hold each KV head (1 unless it exceeds h_kv)."""
    return degree * sympy.ceiling(h_kv / degree) / h_kv


_COPIES = _copies(tp)
_KV_PROJ = ref("k_proj") + ref("v_proj")
_PROJ = ref("q_proj") + _KV_PROJ + ref("o_proj")
_KV_REPLICATED = (
    "when tensor_parallel exceeds num_kv_heads, each KV head (Wk, Wv, its projections "
    "and cache) lives on tensor_parallel / num_kv_heads ranks"
)
_Q_REPLICATED = "Q is replicated: every CP rank repeats the new tokens' projections"
# Sequence sharded over CP with Q replicated in decode (KV-sharded and ring): a full copy
# of the weights on every rank, and the new tokens' projections repeated on each.
_CP_SHARDED_CHECKS = {
    "weights": ref("weight_bytes") * cp,
    "decode_flops": ref("flops") + (cp - 1) * _PROJ,
    "decode_repeated": _Q_REPLICATED,
}
_TP_CHECKS = {
    "flops": ref("flops") + (_COPIES - 1) * _KV_PROJ,
    "weights": ref("weights_qo") + ref("weights_kv") * _COPIES,
    "kv_cache": ref("kv_cache_bytes") * _COPIES,
}


@layout(
    "single",
    layer=LAYER,
    summary="one chip holds the whole layer",
    conventions=_EXACT,
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
    conventions=_EXACT,
    checks=Checks(
        **_TP_CHECKS,
        repeated=_KV_REPLICATED,
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
    """Megatron-style: Wq/Wk/Wv column-parallel, Wo row-parallel, one all-reduce of Y."""
    t = _trace()
    heads, kv_heads = heads_over(t, tp, "tensor-parallel")
    seq = _sequence(t, phase, conv)
    shard = replace(seq, heads=heads, kv_heads=kv_heads)
    allreduce = (OUTPUT_ALLREDUCE, tp, tensor_bytes(seq.tokens, d, bytes_per_elem=_ab(conv)))
    return _attention_cost(t, phase, conv, shard, chips=tp, comms=(allreduce,))


# K and V of every prompt position (single's): those its cache keeps, and those a window
# drops (steps single has only under a window, each zero without one). Prefill moves them
# all: every query is multiplied with every key.
_PROMPT_KV = ref("kv_cache_bytes") + B * (S - ref("kv_len")) * ref("kv_position_bytes")
_GATHERS = "every rank gathers all of K and V"


@layout(
    "cp-allgather",
    layer=LAYER,
    summary="sequence sharded over context_parallel ranks; K and V all-gathered",
    degrees=(CONTEXT_PARALLEL,),
    conventions=_WINDOWED,
    checks=Checks(
        weights=ref("weight_bytes") * cp,
        decode_flops=cp * ref("flops"),
        decode_repeated="with K/V gathered, every CP rank computes the whole decode step "
        "for the same new tokens",
        sends=(
            Send(KV_ALLGATHER.name, cp, _PROMPT_KV, _GATHERS, Phase.PREFILL),
            Send(KV_ALLGATHER.name, cp, ref("kv_cache_bytes"), _GATHERS, Phase.DECODE),
        ),
    ),
)
def cp_allgather(phase: Phase, conv: Conventions) -> Cost:
    """Each rank gathers the full K and V, then attends its own queries locally."""
    t = _trace()
    shard = _context_shard(t, phase, conv, keys_sharded=False)
    full_len = S if phase is Phase.PREFILL else t.symbol("kv_len")
    kv_bytes = element_bytes(conv, "kv_cache")
    gather = (KV_ALLGATHER, cp, 2 * tensor_bytes(B, full_len, h_kv, dh, bytes_per_elem=kv_bytes))
    return _attention_cost(t, phase, conv, shard, chips=cp, comms=(gather,))


@layout(
    "cp-kv-sharded",
    layer=LAYER,
    summary="sequence/KV sharded over context_parallel ranks; softmax stats and "
    "partial outputs all-reduced",
    degrees=(CONTEXT_PARALLEL,),
    conventions=_WINDOWED,
    checks=Checks(**_CP_SHARDED_CHECKS, sends=_cp_sends(1)),
)
def cp_kv_sharded(phase: Phase, conv: Conventions) -> Cost:
    """Ring/KV-sharded attention: no K/V moves; softmax statistics and outputs do."""
    t = _trace()
    shard = _context_shard(t, phase, conv, keys_sharded=True)
    comms = _softmax_and_output(conv, shard.tokens, h)
    return _attention_cost(t, phase, conv, shard, chips=cp, comms=comms)


@layout(
    "tp-cp",
    layer=LAYER,
    summary="heads over tensor_parallel x sequence/KV over context_parallel ranks",
    degrees=(TENSOR_PARALLEL, CONTEXT_PARALLEL),
    conventions=(*_WINDOWED, "materialize_full_hidden_after_tp"),
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
                TP_ALLGATHER.name,
                tp,
                ref("act_output") / cp,
                "each chip gathers the other head slices of Y for its queries",
                Phase.PREFILL,
                _MATERIALIZE,
            ),
            Send(
                TP_ALLGATHER.name,
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
    heads, kv_heads = heads_over(t, tp, "tensor-parallel")
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
    comms = _softmax_and_output(conv, seq.tokens, heads)
    if materialize:
        comms += ((TP_ALLGATHER, tp, tensor_bytes(seq.tokens, d, bytes_per_elem=_ab(conv))),)
    return _attention_cost(t, phase, conv, shard, chips=tp * cp, comms=comms)


_CP_COPIES = _copies(cp)
_KV_OVER_CP = (
    "when context_parallel exceeds num_kv_heads, each KV head (its cache) lives on "
    "context_parallel / num_kv_heads ranks"
)


@layout(
    "ulysses",
    layer=LAYER,
    summary="DeepSpeed-Ulysses: tokens sharded over context_parallel ranks; all-to-all to "
    "heads-sharded before attention and back after",
    degrees=(CONTEXT_PARALLEL,),
    conventions=_EXACT,
    checks=Checks(
        weights=ref("weight_bytes") * cp,
        kv_cache=ref("kv_cache_bytes") * _CP_COPIES,
        repeated=_KV_OVER_CP,
        sends=(
            Send(
                QKV_ALLTOALL.name,
                cp,
                ref("act_projections") / cp,
                "its tokens' Q, K and V, for the ranks that attend their heads",
            ),
            Send(
                OUTPUT_ALLTOALL.name,
                cp,
                ref("act_output") / cp,
                "its heads' output for every token, back to the ranks that hold them",
            ),
        ),
    ),
)
def ulysses(phase: Phase, conv: Conventions) -> Cost:
    """Sequence parallel for the projections, head parallel for attention: an all-to-all
    of Q, K, V turns a rank's tokens × all heads into all tokens × its heads, and one of
    the output turns it back. Decode splits the new tokens (one rank busy when T < cp)."""
    t = _trace()
    heads, kv_heads = heads_over(t, cp, "context-parallel (Ulysses)")
    tokens = token_share(t, phase, over_cp=True)
    if phase is Phase.DECODE:
        seq = _sequence(t, phase, conv)
    else:
        seq = Shard(B * S, S, S, _prompt_cache(t, conv), pairs=_prompt_pairs(t, conv))
    shard = replace(seq, tokens=tokens, core_heads=heads, core_kv_heads=kv_heads)
    width = sympy.Add(*_projection_widths(shard, _projections(phase, conv)).values())
    comms = (
        (QKV_ALLTOALL, cp, tensor_bytes(tokens, width, bytes_per_elem=_ab(conv))),
        (OUTPUT_ALLTOALL, cp, tensor_bytes(B * seq.queries, heads, dh, bytes_per_elem=_ab(conv))),
    )
    return _attention_cost(t, phase, conv, shard, chips=cp, comms=comms)


@layout(
    "ring",
    layer=LAYER,
    summary="ring attention: sequence sharded over context_parallel ranks; K/V blocks passed "
    "point to point around the ring (decode: partial outputs)",
    degrees=(CONTEXT_PARALLEL,),
    conventions=_WINDOWED,
    checks=Checks(
        **_CP_SHARDED_CHECKS,
        sends=(
            Send(
                KV_RING.name,
                cp,
                (cp - 1) * _PROMPT_KV / cp,
                "its K/V block, on to the next rank, once per other rank",
                Phase.PREFILL,
            ),
            Send(
                PARTIAL_RING.name,
                cp,
                (cp - 1) * (2 * b_s * h * ref("tokens") + ref("act_output")),
                "its running statistics and partial output, on to the next rank, once per "
                "other rank",
                Phase.DECODE,
            ),
        ),
    ),
)
def ring(phase: Phase, conv: Conventions) -> Cost:
    """Each rank keeps its queries and passes K/V blocks around the ring, attending each
    block as it arrives (prefill); in decode the new tokens' Q is on every rank and the
    partial outputs travel the ring instead of the cache."""
    t = _trace()
    shard = _context_shard(t, phase, conv, keys_sharded=True)
    if phase is Phase.PREFILL:  # its positions' K/V, whatever a window will keep
        kv_bytes = element_bytes(conv, "kv_cache")
        block = 2 * tensor_bytes(B, shard.queries, h_kv, dh, bytes_per_elem=kv_bytes)
        comms = ((KV_RING, cp, (cp - 1) * block),)
    else:
        partial = shard.tokens * h * 2 * b_s + tensor_bytes(
            shard.tokens, h, dh, bytes_per_elem=_ab(conv)
        )
        comms = ((PARTIAL_RING, cp, (cp - 1) * partial),)
    return _attention_cost(t, phase, conv, shard, chips=cp, comms=comms)
