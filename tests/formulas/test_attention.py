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
    assert split["flops_total"] == alone["flops_total"]
    assert split["kv_cache_total"] == alone["kv_cache_total"]


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
    base = lay.cost(Phase(phase))
    for conv in CONVENTIONS:
        for choice in conv.choices:
            changed = lay.cost(Phase(phase), Conventions(**{conv.name: choice}))
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
