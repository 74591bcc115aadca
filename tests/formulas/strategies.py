"""Hypothesis strategies shared by the formula tests: valid configurations and conventions."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from tests.formulas.reference import CP_LAYOUTS, TP_LAYOUTS


@st.composite
def configs(draw: st.DrawFn, phase: str) -> dict:
    """A valid attention configuration: heads divisible by KV heads, both by tp."""
    tp = draw(st.sampled_from([1, 2, 4, 8]))
    if draw(st.booleans()):  # KV heads sharded whole: tp divides them
        kv_heads = tp * draw(st.integers(1, 4))
    else:  # fewer KV heads than TP ranks (GQA, MQA): each replicated
        kv_heads = draw(st.sampled_from([k for k in (1, 2, 4, 8) if tp % k == 0]))
    heads = math.lcm(kv_heads, tp) * draw(st.sampled_from([1, 2, 4]))
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
        "context_parallel": draw(st.integers(1, 8)),
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
    """The keys ``layout`` reads: the library rejects keys a layout does not use."""
    p = dict(p)
    if layout not in TP_LAYOUTS:
        p.pop("tensor_parallel")
    if layout not in CP_LAYOUTS:
        p.pop("context_parallel")
    if layout not in ("cp-kv-sharded", "tp-cp"):
        p.pop("softmax_stat_bytes")
    if layout != "tp-cp":
        conv = {k: v for k, v in conv.items() if k != "materialize_full_hidden_after_tp"}
    return p | conv
