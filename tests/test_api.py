"""The Python API: the same contract as the CLI's JSON, exact ints, one public surface."""

from __future__ import annotations

import pytest

import shardcost
from shardcost.formulas.cases import spec_case

INTENDED = {
    "Cost",
    "ImpossibleSplitError",
    "InputError",
    "InternalError",
    "InvalidValueError",
    "Layout",
    "LayoutVerification",
    "ShardcostError",
    "SpecCase",
    "UnevenSplitWarning",
    "UnknownNameError",
    "__version__",
    "compile",
    "cost",
    "define_layout",
    "export",
    "kv_tier",
    "layouts",
    "load_layout",
    "metrics",
    "model_metrics",
    "spec_cases",
    "verify",
}


def test_public_surface_is_exactly_the_intended_names() -> None:
    assert set(shardcost.__all__) == INTENDED
    assert all(hasattr(shardcost, name) for name in shardcost.__all__)


def test_design_example() -> None:
    # DESIGN.md's example is seed 001 Test 3 (MHA-3).
    out = shardcost.metrics(
        "tp",
        phase="decode",
        hidden_size=1024,
        num_heads=16,
        head_dim=64,
        batch_size=2,
        past_seq_len=128,
        tensor_parallel=4,
        kv_includes_new_token=True,
    )
    assert set(out) == {"layout", "phase", "params", "metrics"}
    assert out["metrics"] == spec_case("MHA-3").metrics
    assert list(out["metrics"]) == list(shardcost.symbolic.METRICS)


def test_timing_appears_with_hardware() -> None:
    out = shardcost.metrics(
        "single", "decode", hardware="seed-test", batch_size=1, past_seq_len=2048
    )
    assert list(out["timing"]) == [
        "compute_time_ms",
        "load_time_ms",
        "communication_time_ms",
        "wall_clock_time_ms",
    ]
    assert all(type(v) is float for v in out["timing"].values())


def test_counts_stay_exact_past_two_to_the_53() -> None:
    # 2 * (B*S) * d * d with B*S = 2^20 tokens, d = 2^15: Q alone is 2^51 FLOPs; the total
    # 2^53+ must not be rounded through a float.
    out = shardcost.metrics(
        "single", hidden_size=2**15, num_heads=2**8, batch_size=2**10, seq_len=2**10
    )
    flops = out["metrics"]["flops_per_chip"]
    # 4 projections: 4 * 2 * 2^20 * 2^30 = 2^53; scores + apply-V: 2 * 2 * 2^10 * 2^8
    # * 2^10 * 2^10 * 2^7 = 2^47
    assert flops == 2**53 + 2**47
    assert type(flops) is int


@pytest.mark.filterwarnings("ignore::shardcost.UnevenSplitWarning")  # 2049 keys over 8 ranks
def test_params_round_trip() -> None:
    first = shardcost.metrics(
        "tp-cp",
        "decode",
        hardware="seed-test",
        tensor_parallel=2,
        context_parallel=8,
        decode_projections="qo",
    )
    again = shardcost.metrics("tp-cp", "decode", **first["params"])
    assert again == first


def test_symbolic_cost_is_available() -> None:
    cost = shardcost.cost("tp", "prefill")
    from shardcost.symbolic.dimensions import B, S, b, d, tp

    assert cost.metrics["communication_bytes"].subs({tp: 4, B: 2, S: 128, d: 1024, b: 2}) == 524_288
    with pytest.raises(shardcost.UnknownNameError):
        shardcost.cost("tp", "prefill", hidden_size=3)
    with pytest.raises(shardcost.InputError, match="does not apply"):
        shardcost.cost("tp", "prefill", decode_projections="qo")


def test_layouts_are_listed() -> None:
    assert [lay.name for lay in shardcost.layouts("attention")] == [
        "single",
        "tp",
        "cp-allgather",
        "cp-kv-sharded",
        "tp-cp",
    ]
