"""Every spec case reproduces its seed, and the seeds' stated variants hold too."""

from __future__ import annotations

import pytest

import shardcost
from shardcost.formulas.cases import SPEC_CASES, SpecCase, _approx_ok, check_case

EXPECTED_CASES = {
    "MHA-1",
    "MHA-2",
    "MHA-3",
    "CP-1",
    "CP-2",
    "CP-3a",
    "CP-4",
    "CP-5",
    "ATT-TIME-1",
    "ATT-TIME-2",
    "ATT-TIME-3",
    "ATT-TIME-4",
    "ATT-TIME-4-no-overlap",
    "ATT-TIME-5",
}


def test_every_seed_case_is_present() -> None:
    assert {case.name for case in SPEC_CASES} == EXPECTED_CASES


@pytest.mark.parametrize("case", SPEC_CASES, ids=lambda c: c.name)
def test_case_matches_its_seed(case: SpecCase) -> None:
    check = check_case(case)
    assert check.ok, check.mismatches
    assert check.checked >= len(case.metrics)


@pytest.mark.parametrize(
    "case", [c for c in SPEC_CASES if c.seed.startswith("001")], ids=lambda c: c.name
)
def test_seed_001_cases_check_all_nine_metrics(case: SpecCase) -> None:
    assert len(case.metrics) == 9


def test_a_wrong_expectation_is_reported() -> None:
    case = SPEC_CASES[0]
    broken = SpecCase(**{**case.__dict__, "metrics": {**case.metrics, "flops_per_chip": 1}})
    check = check_case(broken)
    assert not check.ok
    assert [(m.quantity, m.expected) for m in check.mismatches] == [("flops_per_chip", 1)]


def test_seed_rounding_rule() -> None:
    # The seed's "0.0431" is within one unit of its last digit of the exact 0.04302496 ...
    assert _approx_ok("0.0431", 0.04302496)
    # ... but a 0.0433 would not be.
    assert not _approx_ok("0.0431", 0.0433)
    assert _approx_ok("0", 0.0)
    assert not _approx_ok("0", 1.5)


MHA = {"hidden_size": 1024, "num_heads": 16, "head_dim": 64, "batch_size": 2}


def test_mha3_variant_without_the_new_token_in_the_cache() -> None:
    # Seed 001 Test 3: "use S_past=128 -> total 1,048,576 and per chip 262,144".
    m = shardcost.metrics("tp", "decode", **MHA, past_seq_len=128, tensor_parallel=4)["metrics"]
    assert m["kv_cache_total"] == 1_048_576
    assert m["kv_cache_per_chip"] == 262_144


def test_cp4_variant_without_materialising_the_full_hidden() -> None:
    # Seed 001 CP-4: activations drop by 98,304 bytes (360,448 -> 262,144) and the TP
    # communication is eliminated (165,888 - 131,072 = 34,816).
    m = shardcost.metrics(
        "tp-cp",
        "prefill",
        **MHA,
        seq_len=128,
        tensor_parallel=4,
        context_parallel=4,
        materialize_full_hidden_after_tp=False,
    )["metrics"]
    assert m["activation_memory_per_chip"] == 360_448 - 98_304
    assert m["communication_bytes"] == 34_816


def test_cp5_variant_without_materialising_the_full_hidden() -> None:
    # Seed 001 CP-5: Y_new becomes [M_q, d_local] = 1,024 B (9,216 - 4,096 + 1,024 = 6,144)
    # and the TP term (4,096) is dropped: 5,184 - 4,096 = 1,088.
    m = shardcost.metrics(
        "tp-cp",
        "decode",
        **MHA,
        past_seq_len=128,
        tensor_parallel=4,
        context_parallel=4,
        decode_projections="qo",
        attention_keys_include_new_token=False,
        materialize_full_hidden_after_tp=False,
    )["metrics"]
    assert m["activation_memory_per_chip"] == 6_144
    assert m["communication_bytes"] == 1_088


def test_cp1_and_cp2_differ_only_in_communication() -> None:
    # Seed 001: CP-1 "same per-chip compute split as CP-2"; comm 139,264 vs 1,048,576.
    p = {**MHA, "seq_len": 128, "context_parallel": 4}
    a = shardcost.metrics("cp-kv-sharded", **p)["metrics"]
    g = shardcost.metrics("cp-allgather", **p)["metrics"]
    assert {k: v for k, v in a.items() if k != "communication_bytes"} == {
        k: v for k, v in g.items() if k != "communication_bytes"
    }
    assert (a["communication_bytes"], g["communication_bytes"]) == (139_264, 1_048_576)


def test_att_time_4_overlap_saves_31_percent() -> None:
    # Seed 000: "Overlap provides 31% improvement (0.169 vs 0.246 ms)", under its model:
    # one latency plus the payload, the TP all-reduce hidden where the hardware overlaps.
    p = {
        "batch_size": 2,
        "seq_len": 1024,
        "tensor_parallel": 4,
        "collective_bytes": "payload",
        "tensor_parallel_comm": "hidden",
    }
    on = shardcost.metrics("tp", hardware="seed-test", supports_overlap=True, **p)["timing"]
    off = shardcost.metrics("tp", hardware="seed-test", **p)["timing"]
    saving = 1 - on["wall_clock_time_ms"] / off["wall_clock_time_ms"]
    assert round(saving * 100) == 31
