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

from dataclasses import replace

import sympy

from shardcost.symbolic import (
    Collective,
    CollectiveKind,
    CollectiveSpec,
    Cost,
    Section,
    StepSpec,
    Trace,
    collective,
)
from shardcost.symbolic.dimensions import CONTEXT_PARALLEL, TENSOR_PARALLEL, B, V, cp, d, tp

from ..conventions import Conventions, Phase
from ..dtypes import element_bytes
from ..primitives import matmul_flops, tensor_bytes
from ..registry import Checks, Role, Send, layer, layout, ref
from ..sharding import finish_share, token_share, vocab_over_tp
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

_LOGITS = "logits_for_all_tokens"
_DTYPES = ("weight_dtype", "activation_dtype")  # no KV cache
_COMMON = (
    "Weights and activations take the bytes per element of their types (weight_dtype, "
    "activation_dtype; bytes_per_elem unless named); the vocabulary layers have no KV cache.",
    "Under tensor parallelism the vocabulary is sharded: each rank holds ⌈V/tp⌉ rows "
    "(the busiest rank's share when tp does not divide V).",
    *TOTALS_ASSUMED,
)
EMBEDDING = layer(
    "embedding",
    role=Role.EMBEDDING,
    conventions=_DTYPES,
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
    conventions=(_LOGITS, *_DTYPES),
    assumptions=(
        MATMUL_ASSUMED,
        "Resident activations are the final hidden rows H[M_logits, d] and the logits.",
        "The final norm before the LM head is a model component of its own, not part of "
        "this layer.",
        *_COMMON,
    ),
)


# Steps, declared once: key, words, section, unit, symbol, LaTeX, shape note; the shared
# ones in the words of these layers.
_F, _A = Section.FLOPS, Section.ACTIVATIONS
LOOKUP = StepSpec(
    "lookup",
    "row gather",
    _F,
    "FLOPs",
    "F_lookup",
    r"F_{\mathrm{lookup}}",
    "X = E[ids]: a gather, no arithmetic",
)
TABLE = replace(WEIGHT_BYTES, note="the embedding table E[V, d] (this chip's rows)")
TABLE_READS = StepSpec(
    "weight_reads",
    "table bytes read",
    Section.WEIGHTS,
    "bytes",
    "W_read",
    r"W_{\mathrm{read}}",
    "a gather reads at most one row per token, never more than the table",
)
EMBEDDED = replace(ACT_OUTPUT, label="embedded rows X", latex="A_{X}")
LOGIT_ROWS = StepSpec(
    "logit_rows",
    "rows with logits",
    Section.DERIVED,
    "tokens",
    "M_logits",
    r"M_{\mathrm{logits}}",
    "each sequence's last position only",
)
LOGITS = StepSpec(
    "logits",
    "logits projection",
    _F,
    "FLOPs",
    "F_logits",
    r"F_{\mathrm{logits}}",
    "H[M, d] @ W[d, V]",
)
HEAD_WEIGHTS = replace(
    WEIGHT_BYTES,
    note="W[d, V] (this chip's columns); a tied model shares it with the embedding",
)
HIDDEN_ROWS = replace(ACT_INPUT, label="final hidden rows H", latex="A_{H}")
ACT_LOGITS = StepSpec("act_logits", "logits", _A, "bytes", "A_logits", r"A_{\mathrm{logits}}")

# Collectives, declared once: used by the builders and by the checks that hold them.
_ROWS = "each rank's X is zero outside its vocabulary rows"
_SLICES = "each rank holds the logits of its vocabulary slice"
EMBEDDING_ALLREDUCE = CollectiveSpec(
    "output_allreduce",
    CollectiveKind.ALL_REDUCE,
    "embedding all-reduce",
    _ROWS + "; the sum is the embedding",
)
LOGITS_ALLGATHER = CollectiveSpec(
    "logits_allgather", CollectiveKind.ALL_GATHER, "logits all-gather", _SLICES
)
_GATHER_NOTE = "all-gather over the tp group of the full logits[M, V]; none on one chip"
_NO_KV = "a vocabulary layer has none"


def _gather_logits(t: Trace, tokens: sympy.Expr, ab: sympy.Expr) -> Collective:
    """The logits all-gather over TP: every rank ends with logits[M, V]."""
    spec = LOGITS_ALLGATHER
    return collective(
        t,
        spec.name,
        spec.kind,
        tp,
        hidden_bytes(tokens, V, bytes_per_elem=ab),
        label=spec.label,
        description=spec.description,
        note=_GATHER_NOTE,
    )


def _embedding(phase: Phase, conv: Conventions, *, over_tp: bool, over_cp: bool) -> Cost:
    """One chip's share of the embedding: vocabulary rows over TP, tokens over CP."""
    t = Trace()
    rows = vocab_over_tp(t) if over_tp else V
    tokens = token_share(t, phase, over_cp=over_cp)
    flops = FLOPS(t, LOOKUP(t, sympy.S.Zero))
    wb, ab = element_bytes(conv, "weight"), element_bytes(conv, "activation")
    weights = TABLE(t, tensor_bytes(rows, d, bytes_per_elem=wb))
    reads = TABLE_READS(t, tensor_bytes(sympy.Min(tokens, rows), d, bytes_per_elem=wb))
    activations = ACTIVATION_BYTES(t, EMBEDDED(t, hidden_bytes(tokens, bytes_per_elem=ab)))
    sends = [EMBEDDING_ALLREDUCE(t, tp, hidden_bytes(tokens, bytes_per_elem=ab))] if over_tp else []
    kv_cache = no_kv_cache(t, _NO_KV)
    return finish_share(
        t,
        flops,
        weights,
        activations,
        kv_cache,
        sends,
        over_tp=over_tp,
        over_cp=over_cp,
        weight_reads=reads,
    )


def _logit_rows(t: Trace, phase: Phase, conv: Conventions, *, over_cp: bool) -> sympy.Expr:
    """The rows this chip computes logits for."""
    if phase is Phase.DECODE or conv.logits_for_all_tokens:
        return token_share(t, phase, over_cp=over_cp)
    if not over_cp:
        return LOGIT_ROWS(t, B)
    rows = LOGIT_ROWS(t, B, note=LOGIT_ROWS.note + ": all on the last CP rank, the busiest chip")
    t.held_by_one(rows, cp, what="every sequence's last-position logits")
    return rows


def _lm_head(phase: Phase, conv: Conventions, *, over_tp: bool, over_cp: bool) -> Cost:
    """One chip's share of the LM head: vocabulary columns over TP, rows over CP."""
    t = Trace()
    rows = vocab_over_tp(t) if over_tp else V
    tokens = _logit_rows(t, phase, conv, over_cp=over_cp)
    flops = FLOPS(t, LOGITS(t, matmul_flops(tokens, d, rows)))
    wb, ab = element_bytes(conv, "weight"), element_bytes(conv, "activation")
    weights = HEAD_WEIGHTS(t, tensor_bytes(d, rows, bytes_per_elem=wb))
    hidden = HIDDEN_ROWS(t, hidden_bytes(tokens, bytes_per_elem=ab))
    logits = ACT_LOGITS(t, hidden_bytes(tokens, rows, bytes_per_elem=ab))
    activations = ACTIVATION_BYTES(t, hidden + logits)
    sends = [_gather_logits(t, tokens, ab)] if over_tp else []
    kv_cache = no_kv_cache(t, _NO_KV)
    return finish_share(
        t, flops, weights, activations, kv_cache, sends, over_tp=over_tp, over_cp=over_cp
    )


# -- the embedding ------------------------------------------------------------------------


@layout(
    "single",
    layer=EMBEDDING,
    conventions=_DTYPES,
    summary="one chip holds the whole table",
    checks=Checks(reference=None, sends=()),
)
def embedding_single(phase: Phase, conv: Conventions) -> Cost:
    """The embedding on one chip."""
    return _embedding(phase, conv, over_tp=False, over_cp=False)


@layout(
    "tp",
    layer=EMBEDDING,
    conventions=_DTYPES,
    summary="vocabulary rows sharded over tensor_parallel ranks; output all-reduced",
    degrees=(TENSOR_PARALLEL,),
    checks=Checks(sends=(Send(EMBEDDING_ALLREDUCE.name, tp, ref("act_output"), _ROWS),)),
)
def embedding_tp(phase: Phase, conv: Conventions) -> Cost:
    """Vocabulary-parallel: each rank gathers its rows, the partial outputs are summed."""
    return _embedding(phase, conv, over_tp=True, over_cp=False)


@layout(
    "sp",
    layer=EMBEDDING,
    conventions=_DTYPES,
    summary="tokens sharded over context_parallel ranks; a full table on each",
    degrees=(CONTEXT_PARALLEL,),
    checks=Checks(weights=ref("weight_bytes") * cp, sends=()),
)
def embedding_sp(phase: Phase, conv: Conventions) -> Cost:
    """Each CP rank embeds its own tokens."""
    return _embedding(phase, conv, over_tp=False, over_cp=True)


@layout(
    "tp-sp",
    layer=EMBEDDING,
    conventions=_DTYPES,
    summary="vocabulary over tensor_parallel x tokens over context_parallel "
    "ranks; output all-reduced over TP",
    degrees=(TENSOR_PARALLEL, CONTEXT_PARALLEL),
    checks=Checks(
        weights=ref("weight_bytes") * cp,
        sends=(
            Send(EMBEDDING_ALLREDUCE.name, tp, ref("act_output") / cp, _ROWS + ", for its tokens"),
        ),
    ),
)
def embedding_tp_sp(phase: Phase, conv: Conventions) -> Cost:
    """Vocabulary-parallel within each CP rank's tokens."""
    return _embedding(phase, conv, over_tp=True, over_cp=True)


# -- the LM head --------------------------------------------------------------------------

_OWN = _SLICES + ", for its tokens"


@layout(
    "single",
    layer=LM_HEAD,
    summary="one chip holds the whole LM head",
    conventions=(_LOGITS, *_DTYPES),
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
    conventions=(_LOGITS, *_DTYPES),
    checks=Checks(sends=(Send(LOGITS_ALLGATHER.name, tp, ref("act_logits"), _SLICES),)),
)
def lm_head_tp(phase: Phase, conv: Conventions) -> Cost:
    """Column-parallel over the vocabulary: one all-gather of the logits."""
    return _lm_head(phase, conv, over_tp=True, over_cp=False)


@layout(
    "sp",
    layer=LM_HEAD,
    summary="tokens sharded over context_parallel ranks; a full LM head on each",
    degrees=(CONTEXT_PARALLEL,),
    conventions=(_LOGITS, *_DTYPES),
    checks=Checks(
        weights=ref("weight_bytes") * cp,
        sends=(),
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
    conventions=(_LOGITS, *_DTYPES),
    checks=Checks(
        weights=ref("weight_bytes") * cp,
        sends=(
            Send(LOGITS_ALLGATHER.name, tp, ref("act_logits") / cp, _OWN, phase=Phase.DECODE),
            Send(LOGITS_ALLGATHER.name, tp, ref("act_logits") / cp, _OWN, Phase.PREFILL, _LOGITS),
            Send(
                LOGITS_ALLGATHER.name,
                tp,
                ref("act_logits"),
                _SLICES + ", for every sequence's last position (on the last CP rank)",
                Phase.PREFILL,
                unless=_LOGITS,
            ),
        ),
    ),
)
def lm_head_tp_sp(phase: Phase, conv: Conventions) -> Cost:
    """Vocabulary-parallel within each CP rank's tokens."""
    return _lm_head(phase, conv, over_tp=True, over_cp=True)
