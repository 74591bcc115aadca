"""The embedding and LM-head layers against an independent count, every layout."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shardcost
from shardcost.formulas import Conventions, all_layouts, get_layout

LAYOUTS = ["single", "tp", "sp", "tp-sp"]


def share(n: int, parts: int, rank: int) -> int:
    """Rank ``rank``'s share of ``n`` over ``parts``, as torch.tensor_split cuts: the
    first ``n mod parts`` ranks hold one more."""
    return n // parts + (1 if rank < n % parts else 0)


def reference(layer: str, layout: str, phase: str, p: dict, all_logits: bool) -> dict:
    """The nine metrics written from the layer's definition, chip by chip, plain integers:
    per chip the busiest chip's, totals every chip's added up."""
    tp = p["tensor_parallel"] if "tp" in layout else 1
    cp = p["context_parallel"] if "sp" in layout else 1
    chips = [_chip(layer, phase, p, all_logits, tp, cp, i, j) for i in range(tp) for j in range(cp)]
    out = {f"{k}_per_chip": max(c[k] for c in chips) for k in KEYS}
    out |= {f"{k}_total": sum(c[k] for c in chips) for k in KEYS}
    out["communication_bytes"] = max(c["comm"] for c in chips)
    return out


KEYS = ("flops", "weight_memory", "activation_memory", "kv_cache")


def _chip(
    layer: str, phase: str, p: dict, all_logits: bool, tp: int, cp: int, i: int, j: int
) -> dict:
    """TP rank ``i``, CP rank ``j``: its four quantities and its collective's bytes."""
    d, V, B, b = p["hidden_size"], p["vocab_size"], p["batch_size"], p["bytes_per_elem"]
    rows = share(V, tp, i)
    if phase == "prefill":
        tokens = B * share(p["seq_len"], cp, j)  # the rank's positions of each sequence
    else:
        tokens = share(B * p["new_tokens"], cp, j)  # the new tokens, shared out
    if layer == "embedding":
        flops, acts = 0, tokens * d * b
        comm = tokens * d * b if tp > 1 else 0  # all-reduce of X
    else:
        if phase == "prefill" and not all_logits:
            tokens = B if j == cp - 1 else 0  # last positions, all on the last CP rank
        flops = 2 * tokens * d * rows
        acts = tokens * d * b + tokens * rows * b
        comm = tokens * V * b if tp > 1 else 0  # all-gather of the logits
    weights = rows * d * b
    return {
        "flops": flops,
        "weight_memory": weights,
        "activation_memory": acts,
        "kv_cache": 0,
        "comm": comm,
    }


@st.composite
def configs(draw: st.DrawFn, layout: str, phase: str) -> dict:
    p = {
        "hidden_size": draw(st.integers(1, 8192)),
        "vocab_size": draw(st.integers(1, 200_000)),
        "batch_size": draw(st.integers(1, 64)),
        "bytes_per_elem": draw(st.sampled_from([1, 2, 4])),
    }
    if "tp" in layout:
        p["tensor_parallel"] = draw(st.integers(1, 16))
    if "sp" in layout:
        p["context_parallel"] = draw(st.integers(1, 16))
    if phase == "prefill":
        p["seq_len"] = draw(st.integers(1, 32768))
    else:
        p["new_tokens"] = draw(st.integers(1, 8))
    return p


@pytest.mark.parametrize("layer", ["embedding", "lm_head"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("phase", ["prefill", "decode"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_matches_independent_count(
    layer: str, layout: str, phase: str, data: st.DataObject
) -> None:
    p = data.draw(configs(layout, phase))
    all_logits = layer == "lm_head" and phase == "prefill" and data.draw(st.booleans())
    params = dict(p)
    if layer == "lm_head" and phase == "prefill":
        params["logits_for_all_tokens"] = all_logits
        if not all_logits:
            del params["seq_len"]  # not read: logits for the last position only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        got = shardcost.metrics(layout, phase, layer=layer, **params)
    assert got["metrics"] == reference(layer, layout, phase, p, all_logits)


def test_llama_sized_lm_head_by_hand() -> None:
    # d = 4096, V = 128256, tp = 8: 16,032 columns per rank. Prefill of B = 2 sequences,
    # last positions only: 2·2·4096·16032 = 262,668,288 FLOPs per chip; the logits
    # all-gather moves 2·128256·2 = 513,024 bytes.
    got = shardcost.metrics(
        "tp", layer="lm_head", hidden_size=4096, vocab_size=128256, batch_size=2, tensor_parallel=8
    )
    assert got["metrics"]["flops_per_chip"] == 262_668_288
    assert got["metrics"]["communication_bytes"] == 513_024


def test_the_embedding_reads_only_the_rows_it_gathers() -> None:
    # Decode, 3 tokens: 3 rows of 4096 · 2 bytes = 24,576 bytes read, at 3350 GB/s
    # 24576 / 3.35e9 ms; the whole table (32000 rows) would take 32000/3 times longer.
    got = shardcost.metrics(
        "single", "decode", layer="embedding", batch_size=3, hardware="h100-sxm"
    )
    assert got["timing"]["load_time_ms"] == pytest.approx(24_576 / 3.35e9)
    assert got["metrics"]["weight_memory_per_chip"] == 32000 * 4096 * 2
    # More tokens than rows: the table is read once, not once per token.
    many = shardcost.metrics(
        "single", layer="embedding", vocab_size=1000, seq_len=5000, hardware="h100-sxm"
    )
    assert many["timing"]["load_time_ms"] == pytest.approx(1000 * 4096 * 2 / 3.35e9)


def test_vocab_layers_verify() -> None:
    for layer in ("embedding", "lm_head"):
        results = shardcost.verify(layer=layer)
        assert len(results) == 8  # four layouts, two phases
        assert all(r.ok for r in results)


def test_seq_len_unread_with_last_token_logits_says_why() -> None:
    with pytest.raises(shardcost.InputError, match=r"read with logits_for_all_tokens=true"):
        shardcost.metrics("single", layer="lm_head", seq_len=100)


@pytest.mark.parametrize("layer", ["embedding", "lm_head"])
@pytest.mark.parametrize("all_logits", [False, True])
def test_each_layout_performs_the_collectives_its_checks_declare(
    layer: str, all_logits: bool
) -> None:
    conv = Conventions(logits_for_all_tokens=all_logits)
    for lay in all_layouts(layer):
        for phase in lay.phases:
            built = {c.name for c in lay.cost(phase, conv).collectives}
            declared = lay.checks.sent(phase, conv)
            assert declared is not None and built == {s.collective for s in declared}, lay.name


def test_the_lm_head_shares_the_embeddings_vocabulary_rows() -> None:
    # V = 32001 over tp = 2: both hold the busiest rank's 16,001 rows, from one share
    for phase in ("prefill", "decode"):
        rows = [
            get_layout("tp", layer).cost(phase).derivation.step("vocab_local")
            for layer in ("embedding", "lm_head")
        ]
        assert rows[0] == rows[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        got = shardcost.metrics(
            "tp", "decode", layer="lm_head", hidden_size=8, vocab_size=32001, tensor_parallel=2
        )
    assert got["metrics"]["weight_memory_per_chip"] == 8 * 16_001 * 2
