"""Ragged decode batches: one past length per request, charged request by request."""

from __future__ import annotations

import warnings
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shardcost
from shardcost.formulas import all_layouts, evaluate, resolve_inputs
from shardcost.formulas.ragged import StepKind
from tests.formulas.reference import reference
from tests.formulas.strategies import configs, conventions, for_layout

LAYOUTS = [lay.name for lay in all_layouts("attention")]


def run(layout: str, **params: object) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        return shardcost.metrics(layout, "decode", **params)


def test_single_charges_each_request_its_own_length() -> None:
    # Defaults: d = 4096, h = h_kv = 32, dh = 128, b = 2, T = 1; keys include the new
    # token, the cache holds the past only. Lengths 4096, 64, 64: sum 4224, mean 1408.
    got = run("single", past_seq_len=[4096, 64, 64])
    m = got["metrics"]
    # projections: 4 matrices x 2·d·d per token x 3 tokens = 8·4096²·3 = 402,653,184
    # attention: 2·2·h·dh·(S_past + 1) per request = 16,384 · (4097 + 65 + 65) = 69,255,168
    assert m["flops_per_chip"] == 402_653_184 + 69_255_168 == 471_908_352
    # KV: 2·b·h_kv·dh per position = 16,384 · 4224 = 69,206,016
    assert m["kv_cache_per_chip"] == 69_206_016
    assert got["params"]["batch_size"] == 3
    assert got["params"]["past_seq_len"] == [4096, 64, 64]
    ragged = got["ragged"]
    assert ragged["lengths"] == [4096, 64, 64]
    assert ragged["max"] == 4096
    assert ragged["mean"] == 1408.0
    assert ragged["max_over_mean"] == pytest.approx(32 / 11)  # 4096 / 1408
    # batch × longest: every request at 4096 -> KV 16,384 · 3 · 4096 = 201,326,592;
    # attention 16,384 · 3 · 4097 = 201,375,744, plus the same projections
    assert ragged["metrics_at_max"]["kv_cache_per_chip"] == 201_326_592
    assert ragged["metrics_at_max"]["flops_per_chip"] == 402_653_184 + 201_375_744


@pytest.mark.parametrize("layout", LAYOUTS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_matches_independent_reference(layout: str, data: st.DataObject) -> None:
    p = data.draw(configs("decode"))
    conv = data.draw(conventions("decode"))
    lengths = data.draw(st.lists(st.integers(1, 100_000), min_size=1, max_size=12))
    p |= {"past_seq_len": lengths, "batch_size": len(lengths)}
    got = run(layout, **for_layout(layout, p, conv))
    want = reference(layout, "decode", p, conv)
    assert got["metrics"] == want["metrics"]
    assert all(type(v) is int for v in got["metrics"].values())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_equal_lengths_are_the_uniform_batch(layout: str) -> None:
    uniform = run(layout, past_seq_len=1000, batch_size=3, hardware="h100-sxm")
    ragged = run(layout, past_seq_len=[1000, 1000, 1000], hardware="h100-sxm")
    assert ragged["metrics"] == uniform["metrics"]
    assert ragged["timing"] == uniform["timing"]
    assert ragged["ragged"]["max_over_mean"] == 1.0


def test_timing_reads_the_summed_cache() -> None:
    # One H100 (3350 GB/s): weights 134,217,728 B, KV 69,206,016 B -> load
    # 203,423,744 / 3.35e12 s = 0.0607235 ms; at the longest, KV 201,326,592 -> 0.100163 ms.
    got = run("single", past_seq_len=[4096, 64, 64], hardware="h100-sxm")
    assert got["timing"]["load_time_ms"] == pytest.approx(203_423_744 / 3.35e9)
    assert got["ragged"]["timing_at_max"]["load_time_ms"] == pytest.approx(335_544_320 / 3.35e9)


def test_requests_keep_their_own_values() -> None:
    result = evaluate(
        resolve_inputs("cp-kv-sharded", "decode", params={"past_seq_len": [4096, 63]})
    )
    batch = result.ragged
    assert batch is not None
    assert batch.request_values("key_len", result.derivation) == (4097, 64)
    assert batch.request_values("key_len_local", result.derivation) == (1025, 16)  # ceil(/4)
    assert batch.mean == Fraction(4159, 2)
    with pytest.raises(shardcost.InputError, match="one value per request"):
        result.step_value("key_len")
    # Over 4 ranks: keys 4097 (uneven) and 64 (even); cache 4096 (even) and 63 (uneven).
    assert [n for n in result.notes if "does not divide" in n] == [
        "keys each new token attends to (S_k)=4097 does not divide evenly by "
        "context_parallel=4: per-chip metrics describe the busiest chip (attended key "
        "positions: ceil(4097/4) = 1025)",
        "positions per sequence in the KV cache (S_kv)=63 does not divide evenly by "
        "context_parallel=4: per-chip metrics describe the busiest chip (cached positions: "
        "ceil(63/4) = 16)",
    ]


def test_gqa_replication_with_a_ragged_batch() -> None:
    # tp = 4 > h_kv = 2: one KV head per rank. KV per chip = 2·b·1·dh·Σ S_past
    # = 2·2·128·(100 + 300) = 204,800.
    got = run("tp", past_seq_len=[100, 300], num_kv_heads=2)
    assert got["metrics"]["kv_cache_per_chip"] == 204_800


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"past_seq_len": [10, 20], "batch_size": 3}, "batch_size=3 but past_seq_len gives 2"),
        ({"past_seq_len": []}, "empty"),
        ({"past_seq_len": [10, 0]}, "past_seq_len"),
        ({"past_seq_len": "10,x"}, "'x' is not a whole number"),
        ({"past_seq_len": [10, 2.5]}, "past_seq_len"),
    ],
)
def test_bad_ragged_input_is_one_clear_error(params: dict, message: str) -> None:
    with pytest.raises(shardcost.InputError, match=message):
        shardcost.metrics("single", "decode", **params)


def test_prefill_takes_no_past_lengths() -> None:
    with pytest.raises(shardcost.InputError, match="past_seq_len is not a parameter"):
        shardcost.metrics("single", "prefill", past_seq_len=[10, 20])


def test_every_request_length_must_split_when_a_layout_requires_it() -> None:
    # No built-in layout requires a length to split evenly yet; one that does is checked
    # request by request, since every request's cache is split on its own.
    from types import SimpleNamespace

    from shardcost.formulas.inputs import _check_requirements
    from shardcost.symbolic import Trace
    from shardcost.symbolic.dimensions import S_past, cp

    t = Trace()
    t.require_divisible(S_past, cp, "each rank holds an equal slice of every cache")
    cost = SimpleNamespace(derivation=t.freeze())
    _check_requirements(cost, {"past_seq_len": (8, 16), "context_parallel": 4})
    with pytest.raises(shardcost.ImpossibleSplitError, match=r"past_seq_len.*=18"):
        _check_requirements(cost, {"past_seq_len": (8, 18), "context_parallel": 4})


def test_a_user_layout_that_is_not_a_sum_over_requests_is_refused() -> None:
    affine = shardcost.define_layout(
        "ragged-affine",
        phase="decode",
        chips="1",
        per_chip={
            "flops": "4*B*S_past*d",
            "weight_bytes": "2*d*d*b",
            "activation_bytes": "B*d*b",
            "kv_cache_bytes": "2*B*S_past*d*b",
        },
    )
    quadratic = shardcost.define_layout(
        "ragged-quadratic",
        phase="decode",
        chips="1",
        per_chip={
            "flops": "4*B*B*S_past*d",
            "weight_bytes": "2*d*d*b",
            "activation_bytes": "B*d*b",
            "kv_cache_bytes": "2*B*S_past*d*b",
        },
    )
    # 4·(10 + 30)·4096 = 655,360 FLOPs; 2·40·4096·2 = 655,360 KV bytes
    m = run(affine.name, past_seq_len=[10, 30])["metrics"]
    assert m["flops_per_chip"] == 655_360
    assert m["kv_cache_per_chip"] == 655_360
    with pytest.raises(shardcost.InputError, match="not a sum over requests"):
        run(quadratic.name, past_seq_len=[10, 30])


def test_each_step_says_how_it_adds_up_over_the_requests() -> None:
    result = evaluate(resolve_inputs("single", "decode", params={"past_seq_len": [64, 8]}))
    assert result.ragged is not None
    kinds = {result.derivation.step_of(s).key: k for s, k in result.ragged.kinds.items()}
    assert kinds["weight_bytes"] is StepKind.CONSTANT  # no B, no S_past
    assert kinds["key_len"] is StepKind.PER_REQUEST  # S_past + T: one per request
    assert kinds["kv_cache_bytes"] is StepKind.AFFINE  # B · (one request's cache)
    assert kinds["key_len"] == "per request"  # a StrEnum reads as its words
