"""Every attention layout × phase against the independent reference, and the relations
between layouts that must hold whatever the numbers (degree 1 = single, conservation)."""

from __future__ import annotations

import itertools
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shardcost
from shardcost.formulas import CONVENTIONS, Conventions, Phase, all_layouts
from tests.formulas.reference import reference
from tests.formulas.strategies import configs, conventions, for_layout

LAYOUTS = [lay.name for lay in all_layouts("attention")]
PHASES = ["prefill", "decode"]


def run(layout: str, phase: str, params: dict) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        return shardcost.metrics(layout, phase, **params)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("phase", PHASES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_matches_independent_reference(layout: str, phase: str, data: st.DataObject) -> None:
    p = data.draw(configs(phase))
    conv = data.draw(conventions(phase))
    got = run(layout, phase, for_layout(layout, p, conv))
    want = reference(layout, phase, p, conv)
    assert got["metrics"] == want["metrics"]
    assert all(type(v) is int for v in got["metrics"].values())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("phase", PHASES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_degree_one_equals_single(layout: str, phase: str, data: st.DataObject) -> None:
    p = data.draw(configs(phase)) | {"tensor_parallel": 1, "context_parallel": 1}
    conv = {
        k: v
        for k, v in data.draw(conventions(phase)).items()
        if k != "materialize_full_hidden_after_tp"
    }
    one = run(layout, phase, for_layout(layout, p, conv))["metrics"]
    alone = run("single", phase, for_layout("single", p, conv))["metrics"]
    assert one == alone
    assert one["communication_bytes"] == 0


@pytest.mark.parametrize("layout", LAYOUTS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_prefill_conserves_flops_and_kv(layout: str, data: st.DataObject) -> None:
    p = data.draw(configs("prefill"))
    p["seq_len"] = p["context_parallel"] * data.draw(st.integers(1, 512))  # even split
    split = run(layout, "prefill", for_layout(layout, p, {}))["metrics"]
    alone = run("single", "prefill", for_layout("single", p, {}))["metrics"]
    # KV heads the TP ranks hold beyond the model's own: tp*ceil(h_kv/tp) - h_kv (zero
    # unless tensor_parallel exceeds num_kv_heads); each costs its K and V projections,
    # 2 * (2*B*S*d*dh) FLOPs, and its K and V cache, 2*B*S*dh*b bytes.
    tp, kv = (p["tensor_parallel"], p["num_kv_heads"]) if "tp" in layout else (1, 1)
    extra = tp * -(-kv // tp) - kv
    # Ulysses shards the attended heads over cp the same way, for the cache alone: its
    # projections run on a share of the tokens with every head
    cp, kv = (p["context_parallel"], p["num_kv_heads"]) if layout == "ulysses" else (1, 1)
    cached_extra = extra + cp * -(-kv // cp) - kv
    b_s_d_dh = p["batch_size"] * p["seq_len"] * p["hidden_size"] * p["head_dim"]
    assert split["flops_total"] == alone["flops_total"] + extra * 4 * b_s_d_dh
    per_head_kv = 2 * p["batch_size"] * p["seq_len"] * p["head_dim"] * p["bytes_per_elem"]
    assert split["kv_cache_total"] == alone["kv_cache_total"] + cached_extra * per_head_kv


@pytest.mark.parametrize("layout", ["cp-kv-sharded", "tp-cp"])
def test_decode_repeats_projections_on_every_cp_rank(layout: str) -> None:
    # CP-5's redundancy: Q and O are computed on each of the cp ranks. With
    # qo projections, one rank's Q+O FLOPs = 2·(2·M·d·d/tp), whatever cp is.
    base = {
        "hidden_size": 1024,
        "num_heads": 16,
        "head_dim": 64,
        "batch_size": 2,
        "past_seq_len": 128,
        "decode_projections": "qo",
        "attention_keys_include_new_token": False,
    }
    if layout == "tp-cp":
        base["tensor_parallel"] = 4
    totals = {}
    for cp in (1, 2, 4, 8):
        m = run(layout, "decode", base | {"context_parallel": cp})["metrics"]
        totals[cp] = m["flops_total"]
    tp = base.get("tensor_parallel", 1)
    qo_per_rank = 2 * (2 * 2 * 1024 * 1024 // tp)  # Q and O for M_q = 2 tokens
    attention = totals[1] - qo_per_rank * tp  # the attention core, conserved across cp
    for cp, total in totals.items():
        assert total == attention + cp * tp * qo_per_rank


@pytest.mark.parametrize(("layout", "phase"), list(itertools.product(LAYOUTS, PHASES)))
def test_conventions_change_the_cost_exactly_where_they_apply(layout: str, phase: str) -> None:
    lay = next(lay for lay in all_layouts("attention") if lay.name == layout)
    applicable = set(lay.conventions_for(Phase(phase)))
    for conv in CONVENTIONS:
        # what a windowed layer's cache keeps matters only with a window
        context = {"attention_window": "sliding"} if conv.name == "sliding_window_kv" else {}
        base = lay.cost(Phase(phase), Conventions(**context))
        for choice in conv.choices:
            changed = lay.cost(Phase(phase), Conventions(**context, **{conv.name: choice}))
            if choice == conv.default:
                continue
            differs = changed.metrics != base.metrics
            assert differs == (conv.name in applicable), (conv.name, choice)


def test_gqa_sizes_kv_by_kv_heads() -> None:
    # Llama-3-8B-like layer, 8 KV heads of 32: K/V weights and cache shrink 4x.
    p = {"hidden_size": 4096, "num_heads": 32, "head_dim": 128, "batch_size": 1, "seq_len": 1024}
    mha = run("single", "prefill", p)["metrics"]
    gqa = run("single", "prefill", p | {"num_kv_heads": 8})["metrics"]
    # KV: 2 * 1 * 1024 * 8 * 128 * 2 = 4,194,304 bytes (MHA: 16,777,216)
    assert gqa["kv_cache_per_chip"] == 4_194_304
    assert mha["kv_cache_per_chip"] == 16_777_216
    # weights: (2*4096*4096 + 2*4096*1024) * 2 = 83,886,080 bytes
    assert gqa["weight_memory_per_chip"] == 83_886_080


def test_uneven_split_describes_the_busiest_chip_and_says_so() -> None:
    p = {
        "hidden_size": 1024,
        "num_heads": 16,
        "head_dim": 64,
        "batch_size": 2,
        "seq_len": 130,
        "context_parallel": 4,
    }
    with pytest.warns(shardcost.UnevenSplitWarning, match=r"ceil\(130/4\) = 33"):
        m = shardcost.metrics("cp-allgather", "prefill", **p)["metrics"]
    # busiest chip: 33 positions; KV = 2 * 2 * 33 * 1024 * 2 = 270,336 bytes
    assert m["kv_cache_per_chip"] == 270_336


LLAMA3 = {"hidden_size": 4096, "num_heads": 32, "num_kv_heads": 8, "head_dim": 128}


def test_more_tp_ranks_than_kv_heads_replicates_them() -> None:
    # Llama-3-8B-like layer on 16 TP ranks: 8 KV heads, so each rank holds one, each
    # head on 2 ranks. Decode, B=1, S_past=1024, bf16:
    m = run(
        "tp", "decode", LLAMA3 | {"batch_size": 1, "past_seq_len": 1024, "tensor_parallel": 16}
    )["metrics"]
    # KV per chip: 2 (K,V) * 1 seq * 1024 pos * 1 head * 128 * 2 B = 524,288
    assert m["kv_cache_per_chip"] == 524_288
    # ... 16 chips hold 8,388,608 B: twice the model's 2*1024*8*128*2 = 4,194,304
    assert m["kv_cache_total"] == 2 * 4_194_304
    # weights per chip: Wq+Wo 2*4096*(32/16=2 heads)*128*2 = 4,194,304;
    # Wk+Wv 2*4096*1*128*2 = 2,097,152
    assert m["weight_memory_per_chip"] == 4_194_304 + 2_097_152


def test_mqa_replicates_the_one_kv_head_everywhere() -> None:
    # MQA: one KV head on 4 TP ranks; prefill B=2, S=512: KV per chip
    # 2 * 2 * 512 * 1 * 128 * 2 = 524,288, the same on every rank
    m = run(
        "tp",
        "prefill",
        LLAMA3 | {"num_kv_heads": 1, "batch_size": 2, "seq_len": 512, "tensor_parallel": 4},
    )["metrics"]
    assert m["kv_cache_per_chip"] == 524_288
    assert m["kv_cache_total"] == 4 * 524_288


def test_replication_is_said() -> None:
    with pytest.warns(
        shardcost.UnevenSplitWarning, match="each of the 8 KV heads is replicated on 2 ranks"
    ):
        shardcost.metrics("tp", "decode", **LLAMA3, tensor_parallel=16)


def test_kv_heads_and_tp_must_divide_one_another() -> None:
    with pytest.raises(
        shardcost.ImpossibleSplitError,
        match="num_kv_heads=6 and tensor_parallel=4 do not divide one another",
    ):
        shardcost.metrics("tp", hidden_size=3072, num_heads=24, num_kv_heads=6, tensor_parallel=4)
