"""Hypothesis strategies shared by the formula tests: valid configurations and conventions."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from shardcost.formulas import Phase, get_layout
from shardcost.formulas.inputs import applicable_params


@st.composite
def configs(draw: st.DrawFn, phase: str) -> dict:
    """A valid attention configuration: heads divisible by KV heads, both by tp."""
    tp = draw(st.sampled_from([1, 2, 4, 8]))
    if draw(st.booleans()):  # KV heads sharded whole: tp divides them
        kv_heads = tp * draw(st.integers(1, 4))
    else:  # fewer KV heads than TP ranks (GQA, MQA): each replicated
        kv_heads = draw(st.sampled_from([k for k in (1, 2, 4, 8) if tp % k == 0]))
    cp = draw(st.integers(1, 8))
    if kv_heads % cp and cp % kv_heads:  # Ulysses shards heads over cp as TP does over tp
        kv_heads = math.lcm(kv_heads, cp, tp)
    heads = math.lcm(kv_heads, tp, cp) * draw(st.sampled_from([1, 2, 4]))
    dh = draw(st.sampled_from([16, 64, 128]))
    p = {
        "hidden_size": heads * dh,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": dh,
        "batch_size": draw(st.integers(1, 16)),
        "bytes_per_elem": draw(st.sampled_from([1, 2, 4])),
        "softmax_stat_bytes": draw(st.sampled_from([2, 4])),
        "tensor_parallel": tp,
        "context_parallel": cp,
    }
    if phase == "prefill":
        p["seq_len"] = draw(st.integers(1, 8192))
    else:
        p["past_seq_len"] = draw(st.integers(1, 200_000))
        p["new_tokens"] = draw(st.integers(1, 4))
    return p


def conventions(phase: str) -> st.SearchStrategy[dict]:
    if phase == "prefill":
        return st.fixed_dictionaries({"materialize_full_hidden_after_tp": st.booleans()})
    return st.fixed_dictionaries(
        {
            "attention_keys_include_new_token": st.booleans(),
            "kv_includes_new_token": st.booleans(),
            "decode_projections": st.sampled_from(["qkvo", "qo", "o"]),
            "materialize_full_hidden_after_tp": st.booleans(),
        }
    )


def for_layout(layout: str, p: dict, conv: dict) -> dict:
    """The keys ``layout`` reads (the library rejects keys a layout does not use), as the
    registry says: the dimensions its cost reads and the conventions that apply."""
    phase = Phase.PREFILL if "seq_len" in p else Phase.DECODE
    return applicable_params(get_layout(layout), phase, p | conv)
