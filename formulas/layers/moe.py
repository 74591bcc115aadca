"""The mixture-of-experts (MoE) FFN layer under each layout, prefill and decode.

    router:  logits[M, E] = X[M, d] @ Wr[d, E]; each token keeps its top k experts
    experts: each (token, expert) pair runs that expert's FFN, gated (SwiGLU: gate and up
             d → d_e, down d_e → d) or plain (up and down)
    shared:  a dense FFN of width d_sh on every token (DeepSeek, Llama 4; Qwen2-MoE scales
             it by a sigmoid gate, X[M, d] @ w[d, 1])
    Y = Σ over its k experts of gate weight · expert(X) (+ shared(X))

Every expert is stored; a token runs k of them, so the FLOPs are M·k pairs times one
expert. A decode step reads the router, the shared experts and only the experts its tokens
pick (``expert_routing``): the ``weight_reads`` the timing model loads. Under expert
parallelism each rank routes its own ⌈M/ep⌉ tokens (data-parallel attention feeding the
experts, DeepSeek-V3's deployment) and sends each token to the ranks holding its experts
and back (all-to-all dispatch and combine).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    EXPERT_PARALLEL,
    TENSOR_PARALLEL,
    B,
    E,
    d,
    d_e,
    d_sh,
    ep,
    k,
    tp,
)
from shardcost.symbolic.verify import Claim, ClaimKind, Term

from ..conventions import Conventions, Phase
from ..dtypes import DTYPES, element_bytes
from ..primitives import matmul_flops, tensor_bytes
from ..registry import Checks, Layout, Role, Send, layer, layout, ref
from ..sharding import token_share
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

# Tokens a decode step counts toward the experts it reads under uniform routing. Beyond
# this many, (1 − k/E)^M < e^(−4096·k/E): under 2·10^−14 for E/k ≤ 128, every open MoE
# but Switch Transformer's. The exact power costs time in its exponent (65,536 tokens at
# E = 3·10^8: 0.6 s), and verify and the code generators' tests reach 10^9 tokens and more.
ROUTED_TOKENS_CAP = 2**12

_CONVENTIONS = (
    "ffn_gated",
    "expert_routing",
    "shared_experts",
    "expert_bias",
    "weight_dtype",
    "activation_dtype",
)
_EP_CONVENTIONS = (*_CONVENTIONS, "moe_dispatch_dtype")


def _claims(lay: Layout, phase: Phase, conv: Conventions, cost: Cost) -> list[Claim]:
    """In decode, the experts a chip reads lie between top-k and all of its experts (both
    over ep under expert parallelism), and a larger batch never reads fewer."""
    if not cost.derivation.has(EXPERTS_READ.key):
        return []
    read = cost.derivation.resolve(cost.derivation.step(EXPERTS_READ.key).symbol)
    share = ep if EXPERT_PARALLEL in lay.degrees else sympy.S.One
    words = f"expert_routing={conv.expert_routing}"
    return [
        Claim(
            "experts read between top-k and all",
            f"{words}: min(k, E)/ep ≤ experts read ≤ E/ep per chip (ep = 1 without expert "
            "parallelism): every token reads its k experts, and no chip reads more than it holds",
            ClaimKind.ATLEAST,
            (
                Term("experts read ≥ min(k, E)/ep", read, sympy.Min(k, E) / share),
                Term("experts read ≤ E/ep", E / share, read),
            ),
        ),
        Claim(
            "experts read grow with the batch",
            f"{words}: one more sequence in the batch never reads fewer experts",
            ClaimKind.ATLEAST,
            (Term("experts read at B + 1 ≥ at B", read.xreplace({B: B + 1}), read),),
        ),
    ]


LAYER = layer(
    "moe",
    role=Role.CHANNEL_MIXER,
    conventions=_EP_CONVENTIONS,
    assumptions=(
        MATMUL_ASSUMED,
        "Every routed expert is stored; a token runs its top k, so the experts cost M·k "
        "(token, expert) pairs times one expert's products (Hugging Face's batched_mm "
        "counts the same), whatever the router picks.",
        "Elementwise work (the activations, the gating product, softmax and top-k over the "
        "router logits, the weighted sum of the experts' outputs) is not counted.",
        "Resident activations are the input X, the routed experts' gate and up outputs "
        "(M·k·d_e each), the shared experts' (M·d_sh each) and the output Y; the router "
        "logits[M, E] and the dispatched token copies are not counted.",
        "Shared experts (shared_experts=plain or gated) are one dense FFN of width d_sh, "
        "gated or plain as ffn_gated says; under expert_bias the router and every routed "
        "expert carry biases (gpt-oss), the shared experts none.",
        "Under tensor parallelism each expert's columns (and the shared experts') are split, "
        "gate and up column-parallel, down row-parallel (Megatron, vLLM); the router, the "
        "shared-expert gate and each expert's down bias sit whole on every rank.",
        "Under expert parallelism each rank routes its own ⌈M/ep⌉ tokens (data-parallel "
        "attention feeding the experts, DeepSeek-V3's deployment) and its experts run "
        "⌈M·k/ep⌉ pairs: the busiest rank when routing is perfectly balanced; a real "
        "router's busiest rank runs more. Dispatch and combine carry every one of a rank's "
        "⌈M/ep⌉·k token copies, those bound for its own experts included, and a token "
        "whose experts share a rank once per expert (DeepEP sends it once per rank).",
        "A decode step reads the router, the shared experts and the routed experts its tokens "
        "pick (expert_routing; under expert parallelism any of the step's M tokens may pick "
        "a rank's experts); prefill reads every weight. Under uniform routing the tokens "
        f"counted are capped at {ROUTED_TOKENS_CAP}: beyond that every expert but a fraction "
        f"below e^(−{ROUTED_TOKENS_CAP}·k/E) is read.",
        "Weights and activations take the bytes per element of their types (weight_dtype, "
        "activation_dtype; bytes_per_elem unless named); a dispatch under expert parallelism "
        "takes moe_dispatch_dtype's. An MoE block has no KV cache.",
        *TOTALS_ASSUMED,
    ),
    claims=_claims,
)


# Steps, declared once: key, words, section, unit, symbol, LaTeX, shape note.
_D, _F, _W, _A = Section.DERIVED, Section.FLOPS, Section.WEIGHTS, Section.ACTIVATIONS
TOKENS_EP = StepSpec(
    "tokens_ep", "tokens per EP rank", _D, "tokens", "M_ep", r"M_{\mathrm{ep}}", "⌈M/ep⌉"
)
PAIRS = StepSpec(
    "pairs", "token-expert pairs", _D, "pairs", "P", "P", "each token goes to k experts: M·k"
)
PAIRS_EP = StepSpec(
    "pairs",
    "token-expert pairs per EP rank",
    _D,
    "pairs",
    "P",
    "P",
    "⌈M·k/ep⌉: the busiest rank when routing is perfectly balanced; a real router's "
    "busiest rank gets more",
)
EXPERTS_LOCAL = StepSpec(
    "experts_local", "routed experts per EP rank", _D, "experts", "E_local", r"E_{\mathrm{local}}"
)
EXPERT_WIDTH = StepSpec(
    "expert_width_local",
    "expert columns per TP rank",
    _D,
    "elements",
    "d_e_local",
    r"d_{e,\mathrm{local}}",
)
SHARED_WIDTH = StepSpec(
    "shared_width_local",
    "shared-expert columns per TP rank",
    _D,
    "elements",
    "d_sh_local",
    r"d_{\mathrm{sh},\mathrm{local}}",
)
ROUTER = StepSpec(
    "router", "router logits", _F, "FLOPs", "F_router", r"F_{\mathrm{router}}", "X[M, d] @ Wr[d, E]"
)
EXPERT_GATE = StepSpec(
    "expert_gate_proj",
    "experts' gate projections",
    _F,
    "FLOPs",
    "F_e_gate",
    r"F_{e,\mathrm{gate}}",
    "X_pairs[P, d] @ Wg[d, d_e], each pair through its expert",
)
EXPERT_UP = StepSpec(
    "expert_up_proj",
    "experts' up projections",
    _F,
    "FLOPs",
    "F_e_up",
    r"F_{e,\mathrm{up}}",
    "X_pairs[P, d] @ Wu[d, d_e], each pair through its expert",
)
EXPERT_DOWN = StepSpec(
    "expert_down_proj",
    "experts' down projections",
    _F,
    "FLOPs",
    "F_e_down",
    r"F_{e,\mathrm{down}}",
    "H[P, d_e] @ Wd[d_e, d], each pair through its expert",
)
SHARED_GATE = StepSpec(
    "shared_gate_proj",
    "shared experts' gate projection",
    _F,
    "FLOPs",
    "F_sh_gate",
    r"F_{\mathrm{sh},\mathrm{gate}}",
    "X[M, d] @ Wg_sh[d, d_sh]",
)
SHARED_UP = StepSpec(
    "shared_up_proj",
    "shared experts' up projection",
    _F,
    "FLOPs",
    "F_sh_up",
    r"F_{\mathrm{sh},\mathrm{up}}",
    "X[M, d] @ Wu_sh[d, d_sh]",
)
SHARED_DOWN = StepSpec(
    "shared_down_proj",
    "shared experts' down projection",
    _F,
    "FLOPs",
    "F_sh_down",
    r"F_{\mathrm{sh},\mathrm{down}}",
    "H_sh[M, d_sh] @ Wd_sh[d_sh, d]",
)
SHARED_SCALE = StepSpec(
    "shared_expert_gate",
    "shared-expert sigmoid gate",
    _F,
    "FLOPs",
    "F_sh_scale",
    r"F_{\mathrm{sh},\sigma}",
    "X[M, d] @ w[d, 1]",
)
ROUTER_WEIGHTS = StepSpec(
    "router_weights",
    "router weights",
    _W,
    "bytes",
    "W_router",
    r"W_{\mathrm{router}}",
    "Wr[d, E], on every chip",
)
EXPERT_MATRICES = StepSpec(
    "expert_matrices",
    "one expert's matrices",
    _W,
    "bytes",
    "W_e_mat",
    r"W_{e,\mathrm{mat}}",
)
EXPERT_IN_BIAS = StepSpec(
    "expert_in_bias",
    "one expert's gate and up biases",
    _W,
    "bytes",
    "W_e_bin",
    r"W_{e,\mathrm{b,in}}",
    "one per column of this chip's slice",
)
EXPERT_OUT_BIAS = StepSpec(
    "expert_out_bias",
    "one expert's down bias",
    _W,
    "bytes",
    "W_e_bout",
    r"W_{e,\mathrm{b,out}}",
    "b[d], whole on every TP rank (added once after the row-parallel sum)",
)
EXPERT_BYTES = StepSpec("expert_bytes", "one expert's weights", _W, "bytes", "W_e", "W_{e}")
EXPERTS_WEIGHTS = StepSpec(
    "experts_weights",
    "routed experts' weights",
    _W,
    "bytes",
    "W_experts",
    r"W_{\mathrm{experts}}",
    "every expert this chip holds",
)
SHARED_WEIGHTS = StepSpec(
    "shared_weights",
    "shared experts' weights",
    _W,
    "bytes",
    "W_shared",
    r"W_{\mathrm{shared}}",
)
SHARED_SCALE_WEIGHTS = StepSpec(
    "shared_gate_weights",
    "shared-expert gate weights",
    _W,
    "bytes",
    "W_sh_scale",
    r"W_{\mathrm{sh},\sigma}",
    "w[d, 1], on every chip",
)
EXPERTS_READ = StepSpec(
    "experts_read",
    "experts read per step",
    _D,
    "experts",
    "E_read",
    r"E_{\mathrm{read}}",
)
WEIGHT_READS = StepSpec(
    "weight_reads",
    "weight bytes read",
    _W,
    "bytes",
    "W_read",
    r"W_{\mathrm{read}}",
    "the router, the shared experts and the routed experts the step's tokens pick",
)
ACT_EXPERTS = StepSpec("act_experts", "experts' gate and up outputs", _A, "bytes", "A_e", r"A_{e}")
ACT_SHARED = StepSpec(
    "act_shared", "shared experts' gate and up outputs", _A, "bytes", "A_sh", r"A_{\mathrm{sh}}"
)
# What gating changes, by ffn_gated: the matrices per FFN, and the d_e-wide outputs' words.
_MATRICES = {True: 3, False: 2}
_EXPERT_OUTPUTS = {True: ACT_EXPERTS.label, False: "experts' up outputs"}
_SHARED_OUTPUTS = {True: ACT_SHARED.label, False: "shared experts' up outputs"}
_EXPERTS_READ_NOTE = {
    "uniform": "each of the step's M tokens picks k of the E experts uniformly: "
    f"E_local·(1 − (1 − k/E)^M), M capped at {ROUTED_TOKENS_CAP}",
    "all": "every expert this chip holds",
    "balanced": "min(E, M·k); under expert parallelism spread evenly over the ranks, "
    "⌈min(E, M·k)/ep⌉ on the busiest",
}

# Collectives, declared once: used by the builders and by the checks that hold them.
_PARTIAL_SUMS = "the row-parallel down projections leave partial sums of Y"
_DISPATCH = "each token's k copies go to the ranks holding their experts"
_COMBINE = "each expert's outputs come back to their token's rank"
OUTPUT_ALLREDUCE = CollectiveSpec(
    "output_allreduce",
    CollectiveKind.ALL_REDUCE,
    "output all-reduce",
    "sum of the row-parallel down projections' partial Y[M, d] (routed and shared experts)",
)
DISPATCH_ALLTOALL = CollectiveSpec(
    "dispatch_alltoall",
    CollectiveKind.ALL_TO_ALL,
    "dispatch all-to-all",
    _DISPATCH + ", at moe_dispatch_dtype",
)
COMBINE_ALLTOALL = CollectiveSpec(
    "combine_alltoall",
    CollectiveKind.ALL_TO_ALL,
    "combine all-to-all",
    _COMBINE + ", at the activation type",
)


@dataclass(frozen=True)
class _Shard:
    """One chip's share: its tokens' rank (over ep), its experts' columns (over tp)."""

    over_tp: bool
    over_ep: bool

    @property
    def chips(self) -> sympy.Expr:
        return sympy.sympify((tp if self.over_tp else 1) * (ep if self.over_ep else 1))


def _widths(t: Trace, conv: Conventions, shard: _Shard) -> tuple[sympy.Expr, sympy.Expr]:
    """Each expert's columns and the shared experts' on this chip: whole, over TP ranks."""
    if not shard.over_tp:
        return d_e, d_sh
    t.require_divisible(d_e, tp, "each expert's columns are sharded whole across TP ranks")
    expert = EXPERT_WIDTH(t, d_e / tp)
    if conv.shared_experts == "none":
        return expert, d_sh
    t.require_divisible(d_sh, tp, "the shared experts' columns are sharded whole across TP ranks")
    return expert, SHARED_WIDTH(t, d_sh / tp)


def _ffn_flops(
    t: Trace,
    specs: tuple[StepSpec, StepSpec, StepSpec],
    rows: sympy.Expr,
    width: sympy.Expr,
    *,
    gated: bool,
) -> list[sympy.Symbol]:
    """The gate (when gated), up and down products of ``rows`` through an FFN of ``width``."""
    gate, up, down = specs
    found = [gate(t, matmul_flops(rows, d, width))] if gated else []
    return [*found, up(t, matmul_flops(rows, d, width)), down(t, matmul_flops(rows, width, d))]


def _flops(
    t: Trace,
    conv: Conventions,
    tokens: sympy.Expr,
    pairs: sympy.Expr,
    widths: tuple[sympy.Expr, sympy.Expr],
) -> sympy.Symbol:
    """The router, each pair through its expert, the shared experts and their gate."""
    gated, (expert, shared) = conv.ffn_gated, widths
    found = [ROUTER(t, matmul_flops(tokens, d, E))]
    found += _ffn_flops(t, (EXPERT_GATE, EXPERT_UP, EXPERT_DOWN), pairs, expert, gated=gated)
    if conv.shared_experts != "none":
        specs = (SHARED_GATE, SHARED_UP, SHARED_DOWN)
        found += _ffn_flops(t, specs, tokens, shared, gated=gated)
    if conv.shared_experts == "gated":
        found.append(SHARED_SCALE(t, matmul_flops(tokens, d, 1)))
    return FLOPS(t, sympy.Add(*found))


@dataclass(frozen=True)
class _Weights:
    """The weight steps a chip holds, and those a decode step reads whatever it routes."""

    total: sympy.Symbol
    expert: sympy.Symbol  # one expert's bytes on this chip
    always: sympy.Expr  # the router and the shared experts


def _weights(
    t: Trace,
    conv: Conventions,
    experts: sympy.Expr,
    widths: tuple[sympy.Expr, sympy.Expr],
    wb: sympy.Expr,
) -> _Weights:
    """The router (and its bias), ``experts`` experts' matrices (and biases), the shared
    experts and their gate, at ``wb`` bytes per element."""
    (expert, shared), n = widths, _MATRICES[conv.ffn_gated]
    bias = [E] if conv.expert_bias else []
    router = ROUTER_WEIGHTS(t, tensor_bytes(sympy.Add(d * E, *bias), bytes_per_elem=wb))
    parts = [EXPERT_MATRICES(t, n * tensor_bytes(d, expert, bytes_per_elem=wb))]
    if conv.expert_bias:
        parts.append(EXPERT_IN_BIAS(t, (n - 1) * tensor_bytes(expert, bytes_per_elem=wb)))
        parts.append(EXPERT_OUT_BIAS(t, tensor_bytes(d, bytes_per_elem=wb)))
    one = EXPERT_BYTES(t, sympy.Add(*parts))
    always = [router]
    if conv.shared_experts != "none":
        always.append(SHARED_WEIGHTS(t, n * tensor_bytes(d, shared, bytes_per_elem=wb)))
    if conv.shared_experts == "gated":
        always.append(SHARED_SCALE_WEIGHTS(t, tensor_bytes(d, 1, bytes_per_elem=wb)))
    held = EXPERTS_WEIGHTS(t, experts * one)
    return _Weights(WEIGHT_BYTES(t, sympy.Add(*always, held)), one, sympy.Add(*always))


def _experts_read(
    t: Trace, conv: Conventions, experts: sympy.Expr, tokens: sympy.Expr, shard: _Shard
) -> sympy.Symbol:
    """The distinct experts of this chip a decode step's ``tokens`` (the whole step's)
    pick, in expectation (uniform), all of them, or as many as they can (balanced)."""
    note = _EXPERTS_READ_NOTE[conv.expert_routing]
    if conv.expert_routing == "all":
        return EXPERTS_READ(t, experts, note=note)
    if conv.expert_routing == "balanced":
        spread = sympy.Min(E, tokens * k)
        return EXPERTS_READ(t, sympy.ceiling(spread / ep) if shard.over_ep else spread, note=note)
    missed = 1 - sympy.Min(k, E) / E  # an expert one token leaves out
    counted = sympy.Min(tokens, ROUTED_TOKENS_CAP)
    return EXPERTS_READ(t, experts * (1 - missed**counted), note=note)


def _activations(
    t: Trace,
    conv: Conventions,
    tokens: sympy.Expr,
    pairs: sympy.Expr,
    widths: tuple[sympy.Expr, sympy.Expr],
    ab: sympy.Expr,
) -> sympy.Symbol:
    """X, the experts' d_e-wide outputs of each pair, the shared experts' of each token, Y."""
    (expert, shared), outputs = widths, _MATRICES[conv.ffn_gated] - 1
    found = [ACT_INPUT(t, hidden_bytes(tokens, bytes_per_elem=ab))]
    found.append(
        ACT_EXPERTS(
            t,
            outputs * hidden_bytes(pairs, expert, bytes_per_elem=ab),
            label=_EXPERT_OUTPUTS[conv.ffn_gated],
        )
    )
    if conv.shared_experts != "none":
        found.append(
            ACT_SHARED(
                t,
                outputs * hidden_bytes(tokens, shared, bytes_per_elem=ab),
                label=_SHARED_OUTPUTS[conv.ffn_gated],
            )
        )
    found.append(ACT_OUTPUT(t, hidden_bytes(tokens, bytes_per_elem=ab)))
    return ACTIVATION_BYTES(t, sympy.Add(*found))


def _dispatch_bytes(conv: Conventions) -> sympy.Expr:
    """Bytes per dispatched element: the activations' unless moe_dispatch_dtype names one."""
    if conv.moe_dispatch_dtype == "activation":
        return element_bytes(conv, "activation")
    size = DTYPES[conv.moe_dispatch_dtype].bytes
    return sympy.Rational(size.numerator, size.denominator)


def _moe(phase: Phase, conv: Conventions, shard: _Shard) -> Cost:
    """One chip's share of the MoE block: its EP rank's tokens and experts, its TP slice
    of every expert's (and the shared experts') columns."""
    t = Trace()
    tokens = token_share(t, phase, over_cp=False)
    routed = TOKENS_EP.split(t, tokens, ep, what="tokens") if shard.over_ep else tokens
    if shard.over_ep:
        pairs = PAIRS_EP.split(t, tokens * k, ep, what="token-expert pairs")
        t.require_divisible(E, ep, "routed experts are sharded whole across EP ranks")
        experts = EXPERTS_LOCAL(t, E / ep)
    else:
        pairs, experts = PAIRS(t, tokens * k), E
    widths = _widths(t, conv, shard)
    flops = _flops(t, conv, routed, pairs, widths)
    wb, ab = element_bytes(conv, "weight"), element_bytes(conv, "activation")
    weights = _weights(t, conv, experts, widths, wb)
    reads = None
    if phase is Phase.DECODE:
        read = _experts_read(t, conv, experts, tokens, shard)
        reads = WEIGHT_READS(t, weights.always + read * weights.expert)
    activations = _activations(t, conv, routed, pairs, widths, ab)
    kv_cache = no_kv_cache(t, "an MoE block has none")
    sends = []
    if shard.over_ep:
        copies = routed * k  # each of this rank's tokens, once per expert it picks
        sends.append(
            DISPATCH_ALLTOALL(t, ep, hidden_bytes(copies, bytes_per_elem=_dispatch_bytes(conv)))
        )
        sends.append(COMBINE_ALLTOALL(t, ep, hidden_bytes(copies, bytes_per_elem=ab)))
    if shard.over_tp:
        sends.append(OUTPUT_ALLREDUCE(t, tp, hidden_bytes(routed, bytes_per_elem=ab)))
    return finish(
        t,
        chips=shard.chips,
        flops=flops,
        weights=weights.total,
        activations=activations,
        kv_cache=kv_cache,
        collectives=sends,
        weight_reads=reads,
    )


# -- what each layout repeats, and what it must send ---------------------------------------

_REPLICATED = ref("router_weights") + ref("shared_gate_weights")  # on every chip
_ON_TP_RANKS = "the router and the shared-expert gate run on every TP rank"


@dataclass(frozen=True)
class _DispatchSend(Send):
    """A dispatch all-to-all, expected when moe_dispatch_dtype is ``dispatch``."""

    dispatch: str = "activation"

    def applies(self, phase: Phase, conventions: Conventions) -> bool:
        """Whether this dispatch is expected in ``phase`` under ``conventions``."""
        chosen = conventions.moe_dispatch_dtype == self.dispatch
        return chosen and super().applies(phase, conventions)


def _all_to_alls() -> tuple[Send, ...]:
    """The dispatch (one Send per moe_dispatch_dtype) and the combine of an EP rank's
    tokens: ⌈M/ep⌉·k copies of X's rows each way."""
    copies = ref("act_input") * k / ep  # M/ep tokens × k copies, at the activation type
    sends: list[Send] = [
        _DispatchSend(DISPATCH_ALLTOALL.name, ep, copies, _DISPATCH, dispatch="activation")
    ]
    for name, dtype in DTYPES.items():
        size = sympy.Rational(dtype.bytes.numerator, dtype.bytes.denominator)
        payload = ref("tokens") * k * d * size / ep
        sends.append(_DispatchSend(DISPATCH_ALLTOALL.name, ep, payload, _DISPATCH, dispatch=name))
    return (*sends, Send(COMBINE_ALLTOALL.name, ep, copies, _COMBINE))


@layout(
    "single",
    layer=LAYER,
    summary="one chip holds the router and every expert",
    conventions=_CONVENTIONS,
    checks=Checks(reference=None, sends=()),
)
def single(phase: Phase, conv: Conventions) -> Cost:
    """The MoE block on one chip."""
    return _moe(phase, conv, _Shard(over_tp=False, over_ep=False))


@layout(
    "tp",
    layer=LAYER,
    summary="each expert's d_e columns (and the shared experts') sharded over "
    "tensor_parallel ranks; router on every rank; output all-reduced",
    degrees=(TENSOR_PARALLEL,),
    conventions=_CONVENTIONS,
    checks=Checks(
        flops=ref("flops") + (tp - 1) * (ref("router") + ref("shared_expert_gate")),
        repeated=_ON_TP_RANKS,
        weights=ref("weight_bytes") + (tp - 1) * (_REPLICATED + E * ref("expert_out_bias")),
        sends=(Send(OUTPUT_ALLREDUCE.name, tp, ref("act_output"), _PARTIAL_SUMS),),
    ),
)
def tensor_parallel(phase: Phase, conv: Conventions) -> Cost:
    """Megatron-style within every expert: gate and up column-parallel, down row-parallel."""
    return _moe(phase, conv, _Shard(over_tp=True, over_ep=False))


@layout(
    "ep",
    layer=LAYER,
    summary="routed experts sharded over expert_parallel ranks, tokens spread over them; "
    "all-to-all dispatch and combine",
    degrees=(EXPERT_PARALLEL,),
    conventions=_EP_CONVENTIONS,
    checks=Checks(
        weights=ref("weight_bytes") + (ep - 1) * (_REPLICATED + ref("shared_weights")),
        sends=_all_to_alls(),
    ),
)
def expert_parallel(phase: Phase, conv: Conventions) -> Cost:
    """Each rank routes its own tokens, holds E/ep experts and runs the shared experts."""
    return _moe(phase, conv, _Shard(over_tp=False, over_ep=True))


@layout(
    "ep-tp",
    layer=LAYER,
    summary="experts over expert_parallel x each expert's columns over tensor_parallel "
    "ranks; tokens over EP; all-to-alls over EP, output all-reduced over TP",
    degrees=(TENSOR_PARALLEL, EXPERT_PARALLEL),
    conventions=_EP_CONVENTIONS,
    checks=Checks(
        flops=ref("flops") + (tp - 1) * (ref("router") + ref("shared_expert_gate")),
        repeated=_ON_TP_RANKS,
        weights=ref("weight_bytes")
        + (ep * tp - 1) * _REPLICATED
        + (ep - 1) * ref("shared_weights")
        + (tp - 1) * E * ref("expert_out_bias"),
        sends=(
            *_all_to_alls(),
            Send(OUTPUT_ALLREDUCE.name, tp, ref("act_output") / ep, _PARTIAL_SUMS),
        ),
    ),
)
def ep_tp(phase: Phase, conv: Conventions) -> Cost:
    """TP shards every expert (and the shared experts) within each EP rank's tokens."""
    return _moe(phase, conv, _Shard(over_tp=True, over_ep=True))
