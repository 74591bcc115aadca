"""Ragged decode batches: one past length per request, charged request by request."""

from __future__ import annotations

import random
import warnings
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shardcost
from shardcost.formulas import Result, all_layouts, evaluate, resolve_inputs
from shardcost.formulas.evaluate import RAGGED_TOTALS
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
    assert got["metrics"] == want["metrics"]  # totals: every chip's share added up
    assert RAGGED_TOTALS not in got["notes"]
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
    # 4097 = 1 × 1025 + 3 × 1024 and 63 = 3 × 16 + 1 × 15, as torch.tensor_split cuts.
    assert [n for n in result.notes if "does not divide" in n] == [
        "keys each new token attends to (S_k)=4097 does not divide evenly by "
        "context_parallel=4: per-chip metrics describe the busiest chip (attended key "
        "positions: ceil(4097/4) = 1025); totals add up every rank's share (1 × 1025 and "
        "3 × 1024, as torch.tensor_split cuts)",
        "positions per sequence in the KV cache (S_kv)=63 does not divide evenly by "
        "context_parallel=4: per-chip metrics describe the busiest chip (cached positions: "
        "ceil(63/4) = 16); totals add up every rank's share (3 × 16 and 1 × 15, as "
        "torch.tensor_split cuts)",
    ]
    # KV bytes per position and sequence: 2·b·h_kv·dh = 2·2·32·128 = 16,384. Over the 4
    # ranks the cache holds every position once: (4096 + 63) · 16,384 = 68,141,056.
    assert result.metrics.kv_cache_total == 68_141_056


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


# -- the array path (one evaluation per distinct length) against the definition ---------------

WINDOWS = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {
            "attention_window": st.sampled_from(["sliding", "chunked"]),
            "sliding_window": st.integers(1, 600),
            "sliding_window_kv": st.sampled_from(["window", "rolling"]),
        }
    ),
)


def same_result(fast: Result, slow: Result) -> None:
    """Every field the CLI, the JSON and the reports read is the same."""
    assert fast.to_dict() == slow.to_dict()
    assert fast.notes == slow.notes
    assert fast.collectives == slow.collectives
    assert dict(fast.values) == dict(slow.values)
    assert fast.ragged is not None and slow.ragged is not None
    for step in fast.derivation.steps:
        if fast.values[step.symbol] is None:
            mine = fast.ragged.request_values(step.key, fast.derivation)
            assert mine == slow.ragged.request_values(step.key, slow.derivation)


def both_paths(
    layout: str, layer: str = "attention", hardware: str | None = None, **params: object
) -> tuple[Result, Result]:
    inputs = resolve_inputs(layout, "decode", layer=layer, hardware=hardware, params=params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        return evaluate(inputs), evaluate(inputs, each_request=True)


@pytest.mark.parametrize("layout", LAYOUTS)
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_the_array_path_is_the_per_request_path(layout: str, data: st.DataObject) -> None:
    p = data.draw(configs("decode"))
    conv = data.draw(conventions("decode")) | data.draw(WINDOWS)
    lengths = data.draw(st.lists(st.integers(1, 5000), min_size=1, max_size=8))
    lengths += lengths[:2]  # repeated lengths: one evaluation each, weighted by its count
    p |= {"past_seq_len": lengths, "batch_size": len(lengths)}
    params = for_layout(layout, p, conv)
    hardware = None
    if data.draw(st.booleans()):  # timed: the summed times and the wall clock's max
        hardware = "h100-sxm"
        params["supports_overlap"] = data.draw(st.booleans())
    same_result(*both_paths(layout, hardware=hardware, **params))


@pytest.mark.parametrize(
    ("layer", "layout", "params"),
    [
        ("mla", "single", {"mla_decode": "decompressed"}),
        ("mla", "tp", {"mla_kv_cache": "decompressed", "tensor_parallel": 4}),
        ("attention_core", "tp", {"tensor_parallel": 2, "attention_flops": "exact"}),
        ("attention", "ring", {"context_parallel": 3, "kv_cache_dtype": "int4"}),
        ("attention", "tp-cp", {"context_parallel": 3, "kv_cache_dtype": "nvfp4"}),
    ],
)
@pytest.mark.parametrize("hardware", [None, "h100-sxm"])
def test_every_layer_with_a_cache_takes_the_array_path(
    layer: str, layout: str, params: dict, hardware: str | None
) -> None:
    lengths = [4096, 63, 1, 300, 63, 2049, 4096]
    fast, slow = both_paths(layout, layer, hardware, past_seq_len=lengths, **params)
    same_result(fast, slow)


def test_lengths_past_int64_stay_exact() -> None:
    # 2^62-long caches: every count passes 2^63, so the arrays hold Python ints
    lengths = [2**62 + 5, 3, 2**62 + 5, 2**61]
    fast, slow = both_paths("cp-kv-sharded", past_seq_len=lengths, hardware="h100-sxm")
    same_result(fast, slow)
    # KV per chip: 16,384 B per position (2·32·128·2) · ⌈S_past / 4⌉ per request
    # (cp-kv-sharded defaults to context_parallel = 4)
    per_rank = 2 * -(-(2**62 + 5) // 4) + 1 + 2**59
    assert fast.metrics.kv_cache_per_chip == 16_384 * per_rank


def test_a_step_the_arrays_cannot_take_falls_back_to_each_request() -> None:
    # 1/S_past inside a ceiling: no whole-number array form, so SymPy evaluates each
    # request; the sums are the same either way.
    lay = shardcost.define_layout(
        "ragged-reciprocal",
        phase="decode",
        chips="1",
        per_chip={
            "flops": "B*ceil(d/S_past)",
            "weight_bytes": "2*d*d*b",
            "activation_bytes": "B*d*b",
            "kv_cache_bytes": "2*B*S_past*d*b",
        },
    )
    fast, slow = both_paths(lay.name, past_seq_len=[3, 4096, 5000])
    same_result(fast, slow)
    # ⌈4096/3⌉ + ⌈4096/4096⌉ + ⌈4096/5000⌉ = 1366 + 1 + 1
    assert fast.metrics.flops_per_chip == 1_368


LONG, SHORT, ONE = 4096, 64, 1


def test_ten_thousand_requests_by_hand() -> None:
    # 5,000 requests at 4096, 3,000 at 64, 2,000 at 1; defaults as in the first test:
    # d = 4096, h = h_kv = 32, dh = 128, b = 2, T = 1, keys include the new token.
    lengths = [LONG] * 5_000 + [SHORT] * 3_000 + [ONE] * 2_000
    random.Random(0).shuffle(lengths)
    got = run("single", past_seq_len=lengths, hardware="h100-sxm")
    m = got["metrics"]
    # projections 8·d²·B = 8·16,777,216·10,000 = 1,342,177,280,000; attention
    # 16,384 · Σ(S_past + 1) = 16,384 · (5000·4097 + 3000·65 + 2000·2) = 16,384 · 20,684,000
    # = 338,886,656,000
    assert m["flops_per_chip"] == 1_342_177_280_000 + 338_886_656_000
    # KV: 16,384 · Σ S_past = 16,384 · (5000·4096 + 3000·64 + 2000·1) = 338,722,816,000
    assert m["kv_cache_per_chip"] == 338_722_816_000
    # load: weights 4·d²·b = 134,217,728 B plus the KV bytes, at 3350 GB/s
    assert got["timing"]["load_time_ms"] == pytest.approx((134_217_728 + 338_722_816_000) / 3.35e9)
    assert got["ragged"]["max"] == LONG
    assert got["ragged"]["mean"] == (5_000 * LONG + 3_000 * SHORT + 2_000 * ONE) / 10_000


def test_a_large_batch_is_its_requests_added_up() -> None:
    # 100,000 requests of three lengths: counts × each length alone (batch_size = 1), the
    # weights once; every per-chip metric here is B × a per-request amount.
    counts = {LONG: 50_000, SHORT: 30_000, ONE: 20_000}
    lengths = [n for n, c in counts.items() for _ in range(c)]
    random.Random(1).shuffle(lengths)
    params = {"tensor_parallel": 4, "num_kv_heads": 8}
    got = run("tp", past_seq_len=lengths, **params)["metrics"]
    alone = {n: run("tp", past_seq_len=n, batch_size=1, **params)["metrics"] for n in counts}
    for key in ("flops_per_chip", "activation_memory_per_chip", "kv_cache_per_chip"):
        assert got[key] == sum(c * alone[n][key] for n, c in counts.items())
    assert got["communication_bytes"] == sum(
        c * alone[n]["communication_bytes"] for n, c in counts.items()
    )
    assert got["weight_memory_per_chip"] == alone[LONG]["weight_memory_per_chip"]


def test_requests_are_computed_when_read() -> None:
    result = evaluate(resolve_inputs("single", "decode", params={"past_seq_len": [64, 8, 64]}))
    assert result.ragged is not None
    requests = result.ragged.requests
    assert len(requests) == 3
    key_len = result.derivation.step("key_len").symbol
    assert [r[key_len] for r in requests] == [65, 9, 65]  # S_past + 1 each
    assert requests[0] is requests[2]  # one length, one evaluation


def test_many_uneven_requests_make_one_note_per_split() -> None:
    """Past lengths 4096, 63, 64, 17, 4098 and 1 over 4 ranks. Keys (past + 1): 4097, 64,
    65, 18, 4099, 2 — all but 64 split unevenly, 5 of 6. Cache: 4096, 63, 64, 17, 4098, 1
    — 63, 17, 4098 and 1 do, 4 of 6. One note each, not one per request; and the same from
    the request-by-request definition."""
    lengths = [4096, 63, 64, 17, 4098, 1]
    inputs = resolve_inputs("cp-kv-sharded", "decode", params={"past_seq_len": lengths})
    notes = [n for n in evaluate(inputs).notes if "divide" in n]
    assert notes == [
        "keys each new token attends to (S_k) does not divide evenly by context_parallel=4 "
        "in 5 of the 6 requests (the first: 4097): per-chip metrics describe each request's "
        "busiest chip (attended key positions: the ceiling of its share); totals add up every "
        "rank's share, as torch.tensor_split cuts",
        "positions per sequence in the KV cache (S_kv) does not divide evenly by "
        "context_parallel=4 in 4 of the 6 requests (the first: 63): per-chip metrics describe "
        "each request's busiest chip (cached positions: the ceiling of its share); totals add "
        "up every rank's share, as torch.tensor_split cuts",
    ]
    assert evaluate(inputs, each_request=True).notes == evaluate(inputs).notes
    many = resolve_inputs(
        "cp-kv-sharded", "decode", params={"past_seq_len": list(range(1, 10_001))}
    )
    # keys 2..10,001: all but the 2,500 multiples of 4 are uneven, 7,500; the cache
    # (1..10,000) likewise
    found = [n.split(" (the first")[0] for n in evaluate(many).notes]
    assert len(found) == 2
    assert all(n.endswith("=4 in 7,500 of the 10,000 requests") for n in found)
