"""The vocabulary layers: the input embedding and the LM head, prefill and decode.

    embedding: X[M, d] = E[ids]              (a row gather: no matrix product)
    LM head:   logits[M_logits, V] = H[M_logits, d] @ W[d, V]

Under tensor parallelism both are vocabulary-parallel (Megatron's VocabParallelEmbedding
and a column-parallel LM head): each rank holds ⌈V/tp⌉ rows. A rank's embedding output
is zero for the tokens outside its rows, so the outputs are all-reduced; the LM head's
logit slices are all-gathered. Under the token-parallel layouts (``sp``) each CP rank
embeds its own tokens with a full copy of the table.

The LM head of a serving prefill computes logits for each sequence's last position only
(``logits_for_all_tokens=false``, the default); a plain forward pass computes them for
every position. With tokens sharded over CP ranks, every sequence's last position sits
on the last rank, so that rank is the busiest chip and the others compute no logits.
"""

from __future__ import annotations

import sympy

from shardcost.symbolic import Collective, Cost, Trace, collective, finish
from shardcost.symbolic.dimensions import (
    CONTEXT_PARALLEL,
    TENSOR_PARALLEL,
    B,
    V,
    b,
    cp,
    d,
    tp,
)

from .conventions import Conventions, Phase
from .ffn import token_share
from .primitives import matmul_flops, tensor_bytes
from .registry import REF_FLOPS, Checks, Role, Send, layer, layout, ref

_COMMON = (
    "Weights and activations take bytes_per_elem bytes per element; the vocabulary "
    "layers have no KV cache.",
    "Under tensor parallelism the vocabulary is sharded: each rank holds ⌈V/tp⌉ rows "
    "(the busiest rank's share when tp does not divide V).",
    "Communication bytes are payload (logical tensor) bytes per chip, not ring-injected "
    "bytes; a collective over a one-chip group sends nothing.",
    "Aggregate metrics are per-chip values times the number of chips.",
)
EMBEDDING = layer(
    "embedding",
    role=Role.EMBEDDING,
    assumptions=(
        "The embedding is a row gather: no matrix product, no FLOPs counted.",
        "Resident activations are the embedded rows X[M, d]; the token ids (integers) are "
        "not counted.",
        *_COMMON,
    ),
)
LM_HEAD = layer(
    "lm_head",
    role=Role.HEAD,
    conventions=("logits_for_all_tokens",),
    assumptions=(
        "A matrix product X[m, k] @ W[k, n] costs 2·m·k·n FLOPs (a multiply and an add).",
        "Resident activations are the final hidden rows H[M_logits, d] and the logits.",
        "The final norm before the LM head is a model component of its own, not part of "
        "this layer.",
        *_COMMON,
    ),
)


def _vocab_rows(t: Trace, *, over_tp: bool) -> sympy.Expr:
    """This chip's vocabulary rows: all of them, or a TP rank's share (rounded up)."""
    if not over_tp:
        return V
    return t.split(
        "vocab_local",
        "vocabulary rows per TP rank",
        V,
        tp,
        what="vocabulary rows",
        name="V_local",
        latex=r"V_{\mathrm{local}}",
        unit="tokens",
    )


def _common_tail(
    t: Trace,
    chips: sympy.Expr,
    flops: sympy.Symbol,
    weights: sympy.Symbol,
    activations: sympy.Symbol,
    collectives: list[Collective],
    weight_reads: sympy.Symbol | None = None,
) -> Cost:
    kv_cache = t.define(
        "kv_cache_bytes",
        "KV-cache bytes per chip",
        sympy.S.Zero,
        section="kv_cache",
        unit="bytes",
        name="KV",
        note="a vocabulary layer has none",
    )
    return finish(
        t,
        chips=chips,
        flops=flops,
        weights=weights,
        activations=activations,
        kv_cache=kv_cache,
        collectives=collectives,
        weight_reads=weight_reads,
    )


def _embedding(phase: Phase, *, over_tp: bool, over_cp: bool) -> Cost:
    t = Trace()
    rows = _vocab_rows(t, over_tp=over_tp)
    tokens = token_share(t, phase, over_cp=over_cp)
    lookup = t.define(
        "lookup",
        "row gather",
        sympy.S.Zero,
        section="flops",
        unit="FLOPs",
        name="F_lookup",
        latex=r"F_{\mathrm{lookup}}",
        note="X = E[ids]: a gather, no arithmetic",
    )
    flops = t.define("flops", "FLOPs per chip", lookup, section="flops", unit="FLOPs", name="F")
    weights = t.define(
        "weight_bytes",
        "weight bytes per chip",
        tensor_bytes(rows, d, bytes_per_elem=b),
        section="weights",
        unit="bytes",
        name="W",
        note="the embedding table E[V, d] (this chip's rows)",
    )
    reads = t.define(
        "weight_reads",
        "table bytes read",
        tensor_bytes(sympy.Min(tokens, rows), d, bytes_per_elem=b),
        section="weights",
        unit="bytes",
        name="W_read",
        latex=r"W_{\mathrm{read}}",
        note="a gather reads at most one row per token, never more than the table",
    )
    act_output = t.define(
        "act_output",
        "embedded rows X",
        tensor_bytes(tokens, d, bytes_per_elem=b),
        section="activations",
        unit="bytes",
        name="A_y",
        latex="A_{X}",
    )
    activations = t.define(
        "activation_bytes",
        "activation bytes per chip",
        act_output,
        section="activations",
        unit="bytes",
        name="A",
    )
    collectives = []
    if over_tp:
        collectives.append(
            collective(
                t,
                "output_allreduce",
                "all-reduce",
                tp,
                tensor_bytes(tokens, d, bytes_per_elem=b),
                label="embedding all-reduce",
                description="each rank's X is zero outside its vocabulary rows; the sum is "
                "the embedding",
            )
        )
    chips = (tp if over_tp else 1) * (cp if over_cp else 1)
    return _common_tail(t, chips, flops, weights, activations, collectives, reads)


def _logit_rows(t: Trace, phase: Phase, conv: Conventions, *, over_cp: bool) -> sympy.Expr:
    """The rows this chip computes logits for."""
    if phase is Phase.DECODE or conv.logits_for_all_tokens:
        return token_share(t, phase, over_cp=over_cp)
    return t.define(
        "logit_rows",
        "rows with logits",
        B,
        section="derived",
        unit="tokens",
        name="M_logits",
        latex=r"M_{\mathrm{logits}}",
        note="each sequence's last position only"
        + (": all on the last CP rank, the busiest chip" if over_cp else ""),
    )


def _lm_head(phase: Phase, conv: Conventions, *, over_tp: bool, over_cp: bool) -> Cost:
    t = Trace()
    rows = _vocab_rows(t, over_tp=over_tp)
    tokens = _logit_rows(t, phase, conv, over_cp=over_cp)
    logits = t.define(
        "logits",
        "logits projection",
        matmul_flops(tokens, d, rows),
        section="flops",
        unit="FLOPs",
        name="F_logits",
        latex=r"F_{\mathrm{logits}}",
        note="H[M, d] @ W[d, V]",
    )
    flops = t.define("flops", "FLOPs per chip", logits, section="flops", unit="FLOPs", name="F")
    weights = t.define(
        "weight_bytes",
        "weight bytes per chip",
        tensor_bytes(d, rows, bytes_per_elem=b),
        section="weights",
        unit="bytes",
        name="W",
        note="W[d, V] (this chip's columns); a tied model shares it with the embedding",
    )
    act_input = t.define(
        "act_input",
        "final hidden rows H",
        tensor_bytes(tokens, d, bytes_per_elem=b),
        section="activations",
        unit="bytes",
        name="A_x",
        latex="A_{H}",
    )
    act_logits = t.define(
        "act_logits",
        "logits",
        tensor_bytes(tokens, rows, bytes_per_elem=b),
        section="activations",
        unit="bytes",
        name="A_logits",
        latex=r"A_{\mathrm{logits}}",
    )
    activations = t.define(
        "activation_bytes",
        "activation bytes per chip",
        act_input + act_logits,
        section="activations",
        unit="bytes",
        name="A",
    )
    collectives = []
    if over_tp:
        collectives.append(
            collective(
                t,
                "logits_allgather",
                "all-gather",
                tp,
                tensor_bytes(tokens, V, bytes_per_elem=b),
                label="logits all-gather",
                description="each rank holds the logits of its vocabulary slice",
                note="all-gather over the tp group of the full logits[M, V]; none on one chip",
            )
        )
    chips = (tp if over_tp else 1) * (cp if over_cp else 1)
    return _common_tail(t, chips, flops, weights, activations, collectives)


# -- the embedding ------------------------------------------------------------------------

_ROWS = "each rank's X is zero outside its vocabulary rows"


@layout(
    "single",
    layer=EMBEDDING,
    summary="one chip holds the whole table",
    checks=Checks(reference=None, sends=()),
)
def embedding_single(phase: Phase, conv: Conventions) -> Cost:
    """The embedding on one chip."""
    return _embedding(phase, over_tp=False, over_cp=False)


@layout(
    "tp",
    layer=EMBEDDING,
    summary="vocabulary rows sharded over tensor_parallel ranks; output all-reduced",
    degrees=(TENSOR_PARALLEL,),
    checks=Checks(sends=(Send("output_allreduce", tp, ref("act_output"), _ROWS),)),
)
def embedding_tp(phase: Phase, conv: Conventions) -> Cost:
    """Vocabulary-parallel: each rank gathers its rows, the partial outputs are summed."""
    return _embedding(phase, over_tp=True, over_cp=False)


@layout(
    "sp",
    layer=EMBEDDING,
    summary="tokens sharded over context_parallel ranks; a full table on each",
    degrees=(CONTEXT_PARALLEL,),
    checks=Checks(weights=ref("weight_bytes") * cp, sends=()),
)
def embedding_sp(phase: Phase, conv: Conventions) -> Cost:
    """Each CP rank embeds its own tokens."""
    return _embedding(phase, over_tp=False, over_cp=True)


@layout(
    "tp-sp",
    layer=EMBEDDING,
    summary="vocabulary over tensor_parallel x tokens over context_parallel "
    "ranks; output all-reduced over TP",
    degrees=(TENSOR_PARALLEL, CONTEXT_PARALLEL),
    checks=Checks(
        weights=ref("weight_bytes") * cp,
        sends=(Send("output_allreduce", tp, ref("act_output") / cp, _ROWS + ", for its tokens"),),
    ),
)
def embedding_tp_sp(phase: Phase, conv: Conventions) -> Cost:
    """Vocabulary-parallel within each CP rank's tokens."""
    return _embedding(phase, over_tp=True, over_cp=True)


# -- the LM head --------------------------------------------------------------------------

_SLICES = "each rank holds the logits of its vocabulary slice"
_LAST_RANK = (
    "per-chip metrics describe the busiest chip, the last CP rank, which computes every "
    "sequence's last-position logits; the other ranks compute none"
)
_LOGITS = "logits_for_all_tokens"
_OWN = _SLICES + ", for its tokens"


@layout(
    "single",
    layer=LM_HEAD,
    summary="one chip holds the whole LM head",
    conventions=(_LOGITS,),
    checks=Checks(reference=None, sends=()),
)
def lm_head_single(phase: Phase, conv: Conventions) -> Cost:
    """The LM head on one chip."""
    return _lm_head(phase, conv, over_tp=False, over_cp=False)


@layout(
    "tp",
    layer=LM_HEAD,
    summary="vocabulary columns sharded over tensor_parallel ranks; logits all-gathered",
    degrees=(TENSOR_PARALLEL,),
    conventions=(_LOGITS,),
    checks=Checks(sends=(Send("logits_allgather", tp, ref("act_logits"), _SLICES),)),
)
def lm_head_tp(phase: Phase, conv: Conventions) -> Cost:
    """Column-parallel over the vocabulary: one all-gather of the logits."""
    return _lm_head(phase, conv, over_tp=True, over_cp=False)


@layout(
    "sp",
    layer=LM_HEAD,
    summary="tokens sharded over context_parallel ranks; a full LM head on each",
    degrees=(CONTEXT_PARALLEL,),
    conventions=(_LOGITS,),
    checks=Checks(
        weights=ref("weight_bytes") * cp,
        sends=(),
        flops_under=((Phase.PREFILL, _LOGITS, False, REF_FLOPS * cp, _LAST_RANK),),
    ),
)
def lm_head_sp(phase: Phase, conv: Conventions) -> Cost:
    """Each CP rank computes the logits of its own tokens."""
    return _lm_head(phase, conv, over_tp=False, over_cp=True)


@layout(
    "tp-sp",
    layer=LM_HEAD,
    summary="vocabulary over tensor_parallel x tokens over context_parallel "
    "ranks; logits all-gathered over TP",
    degrees=(TENSOR_PARALLEL, CONTEXT_PARALLEL),
    conventions=(_LOGITS,),
    checks=Checks(
        weights=ref("weight_bytes") * cp,
        sends=(
            Send("logits_allgather", tp, ref("act_logits") / cp, _OWN, phase=Phase.DECODE),
            Send("logits_allgather", tp, ref("act_logits") / cp, _OWN, Phase.PREFILL, _LOGITS),
            Send(
                "logits_allgather",
                tp,
                ref("act_logits"),
                _SLICES + ", for every sequence's last position (on the last CP rank)",
                Phase.PREFILL,
                unless=_LOGITS,
            ),
        ),
        flops_under=((Phase.PREFILL, _LOGITS, False, REF_FLOPS * cp, _LAST_RANK),),
    ),
)
def lm_head_tp_sp(phase: Phase, conv: Conventions) -> Cost:
    """Vocabulary-parallel within each CP rank's tokens."""
    return _lm_head(phase, conv, over_tp=True, over_cp=True)
