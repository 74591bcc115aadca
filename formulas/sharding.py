"""Shares of a dimension: what one chip holds of the tokens, the sequence, the heads, the
d_ff columns or the vocabulary when a parallel degree splits it.

Each share is a step declared once and applied by a small function that states what
must divide what. A share that may be uneven is a split (``⌈total / parts⌉``): per-chip
metrics then describe the busiest chip.
"""

from __future__ import annotations

import sympy

from shardcost.symbolic import Collective, Cost, Dimension, Section, StepSpec, Trace, finish
from shardcost.symbolic.dimensions import (
    BY_SYMBOL,
    CONTEXT_PARALLEL,
    TENSOR_PARALLEL,
    B,
    S,
    T,
    V,
    cp,
    d_ff,
    h,
    h_kv,
    tp,
)

from .conventions import Phase
from .steps import NEW_TOKENS, TOKENS

_D = Section.DERIVED

# The sequence over CP ranks (prefill), and what a rank attends of it (decode).
SEQ_LOCAL = StepSpec(
    "seq_local", "sequence positions per CP rank", _D, "positions", "S_local", r"S_{\mathrm{local}}"
)
TOKENS_LOCAL = StepSpec(
    "tokens_local",
    "tokens per CP rank",
    _D,
    "tokens",
    "M_local",
    r"M_{\mathrm{local}}",
    "B × S_local",
)
NEW_TOKENS_LOCAL = StepSpec(
    "tokens_local", "new tokens per CP rank", _D, "tokens", "M_local", r"M_{\mathrm{local}}"
)
KEY_LEN_LOCAL = StepSpec(
    "key_len_local", "keys per CP rank", _D, "positions", "S_k_local", r"S_{k,\mathrm{local}}"
)
KV_LEN_LOCAL = StepSpec(
    "kv_len_local",
    "cached positions per CP rank",
    _D,
    "positions",
    "S_kv_local",
    r"S_{kv,\mathrm{local}}",
)


def _heads(rank: str, degree: Dimension) -> tuple[StepSpec, StepSpec]:
    """Query heads and KV heads per rank of ``degree`` (``rank``: its short name)."""
    return (
        StepSpec(
            "heads_local",
            f"query heads per {rank} rank",
            _D,
            "heads",
            "h_local",
            r"h_{\mathrm{local}}",
        ),
        StepSpec(
            "kv_heads_local",
            f"KV heads per {rank} rank",
            _D,
            "heads",
            "h_kv_local",
            r"h_{kv,\mathrm{local}}",
            f"one replicated head per rank when {degree.name} exceeds num_kv_heads",
        ),
    )


# Heads over the ranks of a degree: Megatron's TP, or Ulysses' CP.
HEADS_OVER: dict[sympy.Symbol, tuple[StepSpec, StepSpec]] = {
    tp: _heads("TP", TENSOR_PARALLEL),
    cp: _heads("CP", CONTEXT_PARALLEL),
}
# Columns and rows over TP ranks.
WIDTH_LOCAL = StepSpec(
    "width_local", "FFN columns per TP rank", _D, "elements", "d_ff_local", r"d_{ff,\mathrm{local}}"
)
VOCAB_LOCAL = StepSpec(
    "vocab_local", "vocabulary rows per TP rank", _D, "tokens", "V_local", r"V_{\mathrm{local}}"
)


def sequence_over_cp(t: Trace) -> tuple[sympy.Symbol, sympy.Symbol]:
    """Prefill's sequence over CP ranks: a rank's positions ⌈S/cp⌉, and its tokens."""
    local = SEQ_LOCAL.split(t, S, cp, what="sequence positions")
    return local, TOKENS_LOCAL(t, B * local)


def keys_over_cp(t: Trace, keys: sympy.Expr) -> sympy.Symbol:
    """The key positions a CP rank attends when the keys are sharded: ⌈keys/cp⌉."""
    return KEY_LEN_LOCAL.split(t, keys, cp, what="attended key positions")


def cached_over_cp(t: Trace, cached: sympy.Expr) -> sympy.Symbol:
    """The cached positions per sequence a CP rank stores: ⌈cached/cp⌉."""
    return KV_LEN_LOCAL.split(t, cached, cp, what="cached positions")


def token_share(t: Trace, phase: Phase, *, over_cp: bool) -> sympy.Symbol:
    """The tokens this chip runs through a per-token layer: all of the batch's, or its CP
    rank's share (prefill: its sequence slice; decode: its share of the new tokens)."""
    if phase is Phase.PREFILL:
        return sequence_over_cp(t)[1] if over_cp else TOKENS(t, B * S)
    if over_cp:
        return NEW_TOKENS_LOCAL.split(t, B * T, cp, what="new tokens")
    return NEW_TOKENS(t, B * T)


def heads_over(t: Trace, degree: sympy.Symbol, ranks: str) -> tuple[sympy.Symbol, sympy.Symbol]:
    """Query heads per rank of ``degree`` (whole), and KV heads per rank: whole, or, when
    the degree exceeds num_kv_heads, one replicated KV head per rank (``ranks``: their
    name in words, e.g. tensor-parallel)."""
    t.require_divisible(h, degree, f"heads are sharded whole across {ranks} ranks")
    t.require_divisible(
        h_kv,
        degree,
        f"KV heads are sharded whole across {ranks} ranks, or replicated whole when "
        f"{BY_SYMBOL[degree].name} exceeds num_kv_heads",
        either=True,
    )
    heads, kv_heads = HEADS_OVER[degree]
    return heads(t, h / degree), kv_heads.split(t, h_kv, degree, what="KV heads", replicates=True)


def columns_over_tp(t: Trace) -> sympy.Symbol:
    """A TP rank's d_ff columns: whole, so tensor_parallel must divide them."""
    t.require_divisible(d_ff, tp, "FFN columns are sharded whole across tensor-parallel ranks")
    return WIDTH_LOCAL(t, d_ff / tp)


def vocab_over_tp(t: Trace) -> sympy.Symbol:
    """A TP rank's vocabulary rows, ⌈V/tp⌉: the busiest rank's when tp does not divide V."""
    return VOCAB_LOCAL.split(t, V, tp, what="vocabulary rows")


def chip_count(*, over_tp: bool, over_cp: bool) -> sympy.Expr:
    """The chips a layout spans when it splits over TP ranks, CP ranks, both or neither."""
    return sympy.sympify((tp if over_tp else 1) * (cp if over_cp else 1))


def finish_share(
    t: Trace,
    flops: sympy.Symbol,
    weights: sympy.Symbol,
    activations: sympy.Symbol,
    kv_cache: sympy.Symbol,
    sends: list[Collective],
    *,
    over_tp: bool,
    over_cp: bool,
    weight_reads: sympy.Symbol | None = None,
) -> Cost:
    """Close the trace of one chip's share of a layer split over TP ranks, CP ranks, both
    or neither: its chips, then the Cost of its totals."""
    return finish(
        t,
        chips=chip_count(over_tp=over_tp, over_cp=over_cp),
        flops=flops,
        weights=weights,
        activations=activations,
        kv_cache=kv_cache,
        collectives=sends,
        weight_reads=weight_reads,
    )
