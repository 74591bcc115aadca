"""Crossovers: where two costs tie as one dimension varies, against hand arithmetic and
against the library's own evaluation at the roots."""

from __future__ import annotations

import warnings
from fractions import Fraction

import pytest
import sympy

import shardcost
from shardcost.formulas import Phase, evaluate, get_layout, resolve_inputs
from shardcost.formulas.inputs import applicable_params


def crossover(*args, **kwargs) -> dict:
    return shardcost.crossover(*args, **kwargs)


def metric_at(layout: str, phase: str, metric: str, values: dict) -> int:
    """``shardcost.metrics`` of ``layout`` at those of ``values`` it reads."""
    mine = applicable_params(get_layout(layout), Phase(phase), values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        return shardcost.metrics(layout, phase, **mine)["metrics"][metric]


def orders(root: dict) -> list[tuple[int, str]]:
    return [(c["at"], c["order"]) for c in root["checks"]]


def test_scores_overtake_the_q_projection_at_seq_len_equal_to_hidden_size() -> None:
    # single prefill: scores 2·B·h·S²·dh against the Q projection 2·B·S·d·h·dh:
    # 2·B·h·dh·S·(S − d) = 0 -> S = d = 4096 (the default hidden_size).
    got = crossover("single:scores", "single:q_proj", solve_for="seq_len")
    assert got["verdict"] == "tie"
    (root,) = got["roots"]
    assert (root["exact"], root["closed_form"], root["whole"]) == ("4096", "d", 4096)
    assert root["holds"] and root["regime"] == ""
    assert got["difference"]["expression"] == "2·B·S·dh·h·(S − d)"
    assert got["difference"]["at_values"] == "8192·S·(S − 4096)"  # 2·1·32·128 = 8192
    assert orders(root) == [(4095, "<"), (4096, "="), (4097, ">")]
    at = next(c for c in root["checks"] if c["at"] == 4096)
    assert at["a"] == at["b"] == 2 * 32 * 4096**2 * 128  # 137,438,953,472
    assert got["summary"] == "single:scores and single:q_proj tie at seq_len = 4,096"


def test_the_given_values_move_the_root() -> None:
    # S = d again, now d = 1024
    got = crossover("single:scores", "single:q_proj", solve_for="seq_len", hidden_size=1024)
    assert [r["exact"] for r in got["roots"]] == ["1024"]


def test_summed_steps_attention_core_against_every_projection() -> None:
    # scores + P·V: 4·B·h·S²·dh; Q, K, V, O: 4·B·S·d·dh·(h + h_kv)
    # -> S = d·(h + h_kv)/h: 2·4096 = 8192 (MHA); 4096·(32 + 8)/32 = 5120 with 8 KV heads
    attention, projections = "single:scores+apply_v", "single:q_proj+k_proj+v_proj+o_proj"
    got = crossover(attention, projections, solve_for="seq_len")
    assert [(r["exact"], r["closed_form"]) for r in got["roots"]] == [("8192", "d·(h + h_kv)/h")]
    got = crossover(attention, projections, solve_for="seq_len", num_kv_heads=8)
    assert [r["exact"] for r in got["roots"]] == ["5120"]


def test_ffn_decode_ridge_batch_size_on_an_h100() -> None:
    # ffn single decode, gated (gate, up, down): FLOPs 3·2·B·d·d_ff, weights 3·d·d_ff·b.
    # compute = 6·B·d·d_ff / (989.4e12) s, load = 3·d·d_ff·2 / (3350e9) s;
    # equal at B = 2·989.4e12 / (2·3350e9) = 989.4 / 3.35 = 19788/67 ≈ 295.34 -> 296.
    got = crossover(
        "single", layer="ffn", phase="decode", solve_for="batch_size", hardware="h100-sxm"
    )
    assert got["ridge"] and got["verdict"] == "tie"
    (root,) = got["roots"]
    assert sympy.sympify(root["exact"]) == sympy.Rational(19788, 67)
    assert root["whole"] == 296
    assert orders(root) == [(295, "<"), (296, ">")]  # compute below load, then above
    assert "P" in root["closed_form"] and "BW_mem" in root["closed_form"]


def test_attention_decode_ridge_batch_size_on_an_h100() -> None:
    # single decode, MHA at the defaults: per sequence 4·(d·dh·(h + h_kv) + dh·h·(S_past + 1))
    # = 4·(33,554,432 + 8,392,704) = 167,788,544 FLOPs take 167,788,544 / 989.4e12 s =
    # 0.17 µs, while its KV cache, 2·2048·2·128·32 = 33,554,432 bytes, takes 10.0 µs to read:
    # every added sequence adds more load than compute, so decode never turns compute-bound.
    got = crossover("single", phase="decode", solve_for="batch_size", hardware="h100-sxm")
    assert got["verdict"] == "never" and got["roots"] == []
    assert got["summary"].startswith("single is load-bound at every positive batch_size")
    # 8 KV heads, 64 past positions: per sequence F = 4·(4096·128·40 + 128·32·65) =
    # 84,951,040 FLOPs and KV = 2·64·2·128·8 = 262,144 bytes; weights W = 2·2·4096·128·40 =
    # 83,886,080 bytes. B·F/P = (W + B·KV)/BW -> B = (W/BW) / (F/P − KV/BW).
    weights, kv, flops = 83_886_080, 262_144, 84_951_040
    peak, bandwidth = Fraction(9894, 10) * 10**12, 3350 * 10**9
    ridge = (weights / Fraction(bandwidth)) / (flops / peak - kv / Fraction(bandwidth))
    assert ridge == Fraction(5959680, 1811)  # ≈ 3290.8
    got = crossover(
        "single",
        phase="decode",
        solve_for="batch_size",
        hardware="h100-sxm",
        num_kv_heads=8,
        past_seq_len=64,
    )
    (root,) = got["roots"]
    assert sympy.sympify(root["exact"]) == sympy.Rational(ridge.numerator, ridge.denominator)
    assert root["whole"] == 3291 and orders(root) == [(3290, "<"), (3291, ">")]


def test_weights_of_single_and_tp_never_tie_and_do_not_depend_on_seq_len() -> None:
    # weights 2·b·d·dh·(h + h_kv) = 2·2·4096·128·64 = 134,217,728 on one chip, a quarter
    # (33,554,432) per chip under tp=4: A − B = 100,663,296, whatever the sequence length.
    got = crossover(
        "single", "tp", metric="weight_memory_per_chip", solve_for="seq_len", tensor_parallel=4
    )
    assert got["verdict"] == "independent" and got["ratio"] == "4"
    assert got["difference"]["at_values"] == "100663296"
    assert got["summary"] == ("single − tp does not depend on seq_len: single is always 4× tp")


def test_payloads_that_both_grow_with_seq_len_never_tie_at_a_constant_ratio() -> None:
    # tp: output all-reduce B·S·d·b = 8192·S; cp-kv-sharded (cp = 4): (S/4)·h·2·b_s +
    # (S/4)·d·b = S/4·(256 + 8192) = 2112·S. Ratio 8192 / 2112 = 128/33, never equal for S > 0.
    got = crossover("tp", "cp-kv-sharded", metric="communication_bytes", solve_for="seq_len")
    assert got["verdict"] == "never" and got["ratio"] == "128/33"
    assert got["difference"]["at_values"] == "6080·S"  # 8192 − 2112
    assert "tp is always 128/33 ≈ 3.879× cp-kv-sharded" in got["summary"]
    assert any("ceil(S/cp) as S/cp" in a for a in got["assumptions"])  # even splits


def test_a_layout_against_itself_is_identical() -> None:
    got = crossover("tp", "tp", metric="flops_total", solve_for="seq_len")
    assert got["verdict"] == "identical" and got["roots"] == [] and got["intervals"] == []
    assert got["summary"] == "tp and tp are identical at every seq_len"


def test_a_window_min_is_solved_in_its_regime() -> None:
    # decode, sliding window W = 8192: scores 2·B·h·dh·(min(S_past, W − 1) + 1) against
    # 2·B·d·h·dh: S_past + 1 = d while S_past ≤ W − 1 -> S_past = 4095.
    window = {"attention_window": "sliding", "sliding_window": 8192}
    args = ("single:scores", "single:q_proj")
    got = crossover(*args, phase="decode", solve_for="past_seq_len", **window)
    (root,) = got["roots"]
    assert root["exact"] == "4095" and root["regime"] == "min(S_past, S_w − 1) = S_past"
    # W = 1024: at most min(·) + 1 = 1024 keys, never d = 4096
    window["sliding_window"] = 1024
    got = crossover(*args, phase="decode", solve_for="past_seq_len", **window)
    assert got["verdict"] == "never"


def test_a_dimension_in_a_relation_carries_its_partner() -> None:
    # hidden_size = num_heads × head_dim: solving for d at dh = 128 moves h = d/128, and
    # scores 2·B·h·S²·dh = 2·B·d·S² against 2·B·S·d·h·dh = 2·B·S·d² tie at d = S = 2048.
    got = crossover("single:scores", "single:q_proj", solve_for="hidden_size", seq_len=2048)
    (root,) = got["roots"]
    assert root["exact"] == "2048" and root["closed_form"] == "S"
    assert (
        "num_heads follows hidden_size (hidden_size = num_heads × head_dim)" in got["assumptions"]
    )
    assert "num_heads" not in got["params"] and "num_kv_heads" not in got["params"]
    at = {c["at"]: c for c in root["checks"]}
    assert at[2048]["order"] == "=" and "not divisible by head_dim=128" in at[2047]["error"]


def test_an_uneven_split_of_the_unknown_is_taken_as_even() -> None:
    # flops per chip: tp = F/4; cp-kv-sharded = F/cp with ⌈S/cp⌉ taken as S/cp -> cp = 4
    got = crossover("tp", "cp-kv-sharded", metric="flops_per_chip", solve_for="context_parallel")
    (root,) = got["roots"]
    assert root["exact"] == "4" and orders(root) == [(3, "<"), (4, "="), (5, ">")]
    assert any("ceil(S/cp) as S/cp" in a for a in got["assumptions"])


def test_timing_regimes_are_named_and_hold_at_the_root() -> None:
    got = crossover(
        "tp", "cp-kv-sharded", metric="wall_clock_time_ms", solve_for="seq_len", hardware="h100-sxm"
    )
    assert got["roots"]
    for root in got["roots"]:
        assert root["holds"]
        # the regime's words are each side's bound at the first whole value, as metrics says
        for name in ("tp", "cp-kv-sharded"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
                timing = shardcost.metrics(name, hardware="h100-sxm", seq_len=root["whole"])
            timing = timing["timing"]
            bound = "compute" if timing["compute_time_ms"] >= timing["load_time_ms"] else "load"
            assert f"{name} {bound}-bound" in root["regime"] or f"both {bound}" in root["regime"]


# Crossovers on a metric with whole roots: (a, b, metric, phase, dimension, values, roots).
WHOLE_ROOTS = [
    ("tp", "cp-kv-sharded", "flops_per_chip", "prefill", "context_parallel", {}, [4]),
    (
        "tp",
        "cp-kv-sharded",
        "kv_cache_per_chip",
        "prefill",
        "tensor_parallel",
        {"context_parallel": 8},
        [8],
    ),
    ("tp", "ulysses", "flops_per_chip", "prefill", "context_parallel", {}, [4]),
    ("single", "tp", "activation_memory_per_chip", "prefill", "tensor_parallel", {}, [1]),
]


@pytest.mark.parametrize(("a", "b", "metric", "phase", "key", "values", "roots"), WHOLE_ROOTS)
def test_every_whole_root_makes_both_sides_equal_in_metrics(
    a: str, b: str, metric: str, phase: str, key: str, values: dict, roots: list[int]
) -> None:
    got = crossover(a, b, metric=metric, phase=phase, solve_for=key, **values)
    assert [int(r["exact"]) for r in got["roots"]] == roots
    for root in got["roots"]:
        at = {**values, key: int(root["exact"])}
        assert metric_at(a, phase, metric, at) == metric_at(b, phase, metric, at)


def test_a_steps_root_is_equal_in_the_evaluated_steps() -> None:
    got = crossover("single:scores", "single:q_proj", solve_for="seq_len", num_heads=8)
    root = int(got["roots"][0]["exact"])
    result = evaluate(resolve_inputs("single", params={"num_heads": 8, "seq_len": root}))
    assert result.step_value("scores") == result.step_value("q_proj")


BAD = [
    (("single", "tp"), {"solve_for": "seq_len"}, "needs a metric"),
    (("single", "tp"), {"metric": "flops", "solve_for": "seq_len"}, "metric 'flops' is unknown"),
    (("single:nope", "tp"), {"metric": "flops_per_chip", "solve_for": "seq_len"}, "step 'nope'"),
    (("nope", "tp"), {"metric": "flops_per_chip", "solve_for": "seq_len"}, "layout 'nope'"),
    (("single", "tp"), {"metric": "flops_per_chip", "solve_for": "sek_len"}, "did you mean"),
    (("single", "tp"), {"metric": "flops_per_chip", "solve_for": "peak_tflops"}, "a dimension"),
    (
        ("single", "tp"),
        {"metric": "flops_per_chip", "solve_for": "seq_len", "seq_len": 5},
        "both solved for and given",
    ),
    (("single", "tp"), {"metric": "wall_clock_time_ms", "solve_for": "seq_len"}, "needs hardware"),
    (("single", "tp"), {"metric": "flops_per_chip", "solve_for": "past_seq_len"}, "not a param"),
    (("single:scores", "single:weights_qo"), {"solve_for": "seq_len"}, "like with like"),
    (("single:scores", "single:q_proj"), {"solve_for": "seq_len", "metric": "flops_total"}, "both"),
    (("single:scores", None), {"solve_for": "seq_len"}, "not a step's"),
    (
        ("single", "tp"),
        {"metric": "flops_per_chip", "solve_for": "hidden_size", "num_heads": 8, "head_dim": 64},
        "give at most one",
    ),
    (
        ("single", "tp"),
        {"metric": "flops_per_chip", "solve_for": "seq_len", "intermediate_size": 5},
        "applies to neither",
    ),
]


@pytest.mark.parametrize(("sides", "kwargs", "message"), BAD)
def test_bad_input_is_one_input_error(sides: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(shardcost.InputError, match=message):
        crossover(*sides, **kwargs)
