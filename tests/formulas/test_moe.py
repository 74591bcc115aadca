"""The MoE layer: a Mixtral block by hand in every layout, DeepSeek-V3, Qwen2-MoE and
gpt-oss against Hugging Face's counts (tests/fidelity/expected.json), the experts a
decode step reads, an independent count, and verify."""

from __future__ import annotations

import json
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shardcost
from shardcost.formulas import Conventions, all_layouts, evaluate, resolve_inputs
from shardcost.formulas.evaluate import Result

FIDELITY = Path(__file__).parent.parent / "fidelity" / "expected.json"
EXPECTED = json.loads(FIDELITY.read_text())["families"]

# Mixtral-8x7B's block: d = 4096, 8 experts, top 2, each expert d_e = 14336, gated
# (SwiGLU), no shared expert; bf16 (2 bytes).
MIXTRAL = {
    "hidden_size": 4096,
    "num_experts": 8,
    "experts_per_token": 2,
    "moe_intermediate_size": 14336,
}
PREFILL = {"batch_size": 2, "seq_len": 512}  # M = 1024 tokens, 2048 (token, expert) pairs
DECODE = {"batch_size": 8}  # M = 8 new tokens, 16 pairs


def run(layout: str, phase: str, hardware: str | None = None, **params: object) -> Result:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        inputs = resolve_inputs(layout, phase, layer="moe", hardware=hardware, params=params)
        return evaluate(inputs)


def moe(layout: str, phase: str = "prefill", **params: object) -> dict[str, int]:
    m = run(layout, phase, **params).metrics
    return {k: getattr(m, k) for k in m.__dataclass_fields__}


# -- a Mixtral block by hand ---------------------------------------------------------------
# One pair through one expert matrix: 2 · 4096 · 14336 = 117,440,512 FLOPs; one expert's
# three matrices: 3 · 4096 · 14336 · 2 B = 352,321,536 bytes; the router 4096 · 8 · 2 B
# = 65,536 bytes.


def test_single_prefill_by_hand() -> None:
    m = moe("single", **MIXTRAL, **PREFILL)
    # router 2 · 1024 · 4096 · 8 = 67,108,864; experts 2048 pairs · 3 · 117,440,512
    # = 721,554,505,728; total 721,621,614,592
    assert m["flops_per_chip"] == 721_621_614_592
    # 65,536 + 8 · 352,321,536 = 2,818,637,824: every expert is stored
    assert m["weight_memory_per_chip"] == 2_818_637_824
    # X and Y 2 · 1024 · 4096 · 2 = 16,777,216; gate and up outputs of every pair
    # 2 · 2048 · 14336 · 2 = 117,440,512; total 134,217,728
    assert m["activation_memory_per_chip"] == 134_217_728
    assert m["kv_cache_per_chip"] == 0 and m["communication_bytes"] == 0


def test_tp_prefill_by_hand() -> None:
    m = moe("tp", **MIXTRAL, **PREFILL, tensor_parallel=2)
    # each expert's 14336 columns over 2 ranks: 721,554,505,728 / 2 = 360,777,252,864,
    # plus the whole router on every rank 67,108,864: 360,844,361,728
    assert m["flops_per_chip"] == 360_844_361_728
    assert m["flops_total"] == 721_621_614_592 + 67_108_864  # the router once more
    # 65,536 + 8 · 3 · 4096 · 7168 · 2 = 65,536 + 1,409,286,144
    assert m["weight_memory_per_chip"] == 1_409_351_680
    # X, Y 16,777,216 + gate/up outputs 2 · 2048 · 7168 · 2 = 58,720,256
    assert m["activation_memory_per_chip"] == 75_497_472
    assert m["communication_bytes"] == 1024 * 4096 * 2  # all-reduce of Y: 8,388,608


def test_ep_prefill_by_hand() -> None:
    m = moe("ep", **MIXTRAL, **PREFILL, expert_parallel=4)
    # 1024 / 4 = 256 tokens routed per rank: 2 · 256 · 4096 · 8 = 16,777,216; its 2
    # experts run 2048 / 4 = 512 pairs: 512 · 3 · 117,440,512 = 180,388,626,432
    assert m["flops_per_chip"] == 180_405_403_648
    assert m["flops_total"] == 721_621_614_592  # no work repeated
    assert m["weight_memory_per_chip"] == 65_536 + 2 * 352_321_536  # 704,708,608
    # X, Y 2 · 256 · 4096 · 2 = 4,194,304; gate/up 2 · 512 · 14336 · 2 = 29,360,128
    assert m["activation_memory_per_chip"] == 33_554_432
    # dispatch and combine: 256 tokens · 2 copies · 4096 · 2 B = 4,194,304 each way
    assert m["communication_bytes"] == 8_388_608


def test_ep_tp_prefill_by_hand() -> None:
    m = moe("ep-tp", **MIXTRAL, **PREFILL, expert_parallel=2, tensor_parallel=2)
    # 512 tokens per EP rank: router 2 · 512 · 4096 · 8 = 33,554,432; 1024 pairs through
    # 7168 of each expert's columns: 1024 · 3 · 2 · 4096 · 7168 = 180,388,626,432
    assert m["flops_per_chip"] == 180_422_180_864
    assert m["flops_total"] == 721_621_614_592 + 67_108_864  # the router twice over TP
    # 4 experts of 3 · 4096 · 7168 · 2 = 176,160,768 each, plus the router
    assert m["weight_memory_per_chip"] == 65_536 + 4 * 176_160_768
    # X, Y 2 · 512 · 4096 · 2 = 8,388,608; gate/up 2 · 1024 · 7168 · 2 = 29,360,128
    assert m["activation_memory_per_chip"] == 37_748_736
    # dispatch, combine 512 · 2 · 4096 · 2 = 8,388,608 each; all-reduce 512 · 4096 · 2
    assert m["communication_bytes"] == 2 * 8_388_608 + 4_194_304


# Decode, 8 new tokens under uniform routing: a step reads 8 · (1 − (3/4)^8) experts
# = 8 · 58975/65536 = 58975/8192 in expectation (about 7.2 of the 8).
READ = Fraction(58975, 8192)


def test_single_decode_by_hand() -> None:
    r = run("single", "decode", **MIXTRAL, **DECODE)
    m = r.metrics
    # router 2 · 8 · 4096 · 8 = 524,288; 16 pairs · 3 · 117,440,512 = 5,637,144,576
    assert m.flops_per_chip == 5_637_668_864
    assert m.weight_memory_per_chip == 2_818_637_824  # stored: every expert
    # X, Y 2 · 8 · 4096 · 2 = 131,072; gate/up 2 · 16 · 14336 · 2 = 917,504
    assert m.activation_memory_per_chip == 1_048_576
    assert r.step_value("experts_read") == READ
    # read: the router and 58975/8192 experts: 65,536 + 58975 · 43,008 = 2,536,462,336
    assert r.step_value("weight_reads") == 2_536_462_336
    assert r.loaded_bytes_per_chip == 2_536_462_336


def test_tp_decode_by_hand() -> None:
    r = run("tp", "decode", **MIXTRAL, **DECODE, tensor_parallel=2)
    m = r.metrics
    # router 524,288 on each rank; experts 5,637,144,576 / 2 = 2,818,572,288
    assert m.flops_per_chip == 2_819_096_576
    assert m.weight_memory_per_chip == 1_409_351_680
    # X, Y 131,072; gate/up 2 · 16 · 7168 · 2 = 458,752
    assert m.activation_memory_per_chip == 589_824
    assert m.communication_bytes == 8 * 4096 * 2  # all-reduce of Y: 65,536
    # the same experts, half of each: 65,536 + 58975/8192 · 176,160,768 = 65,536
    # + 58975 · 21,504 = 1,268,263,936
    assert r.step_value("experts_read") == READ
    assert r.step_value("weight_reads") == 1_268_263_936


def test_ep_decode_by_hand() -> None:
    r = run("ep", "decode", **MIXTRAL, **DECODE, expert_parallel=4)
    m = r.metrics
    # 8 tokens over 4 ranks: 2 each; router 2 · 2 · 4096 · 8 = 131,072; 16 / 4 = 4 pairs
    # per rank: 4 · 3 · 117,440,512 = 1,409,286,144
    assert m.flops_per_chip == 1_409_417_216
    assert m.flops_total == 5_637_668_864
    assert m.weight_memory_per_chip == 704_708_608  # router + 2 experts
    # X, Y 2 · 2 · 4096 · 2 = 32,768; gate/up 2 · 4 · 14336 · 2 = 229,376
    assert m.activation_memory_per_chip == 262_144
    # 2 tokens · 2 copies · 4096 · 2 B = 32,768 each way
    assert r.collectives == {"dispatch_alltoall": 32_768, "combine_alltoall": 32_768}
    # the step's 8 tokens may pick any of this rank's 2 experts: 2 · (1 − (3/4)^8)
    # = 58975/32768; 65,536 + 58975/32768 · 352,321,536 = 65,536 + 58975 · 10,752
    assert r.step_value("experts_read") == READ / 4
    assert r.step_value("weight_reads") == 634_164_736


def test_ep_tp_decode_by_hand() -> None:
    r = run("ep-tp", "decode", **MIXTRAL, **DECODE, expert_parallel=2, tensor_parallel=2)
    m = r.metrics
    # 4 tokens per EP rank: router 2 · 4 · 4096 · 8 = 262,144; 8 pairs through 7168
    # columns: 8 · 3 · 2 · 4096 · 7168 = 1,409,286,144
    assert m.flops_per_chip == 1_409_548_288
    assert m.weight_memory_per_chip == 704_708_608  # router + 4 half experts
    # X, Y 2 · 4 · 4096 · 2 = 65,536; gate/up 2 · 8 · 7168 · 2 = 229,376
    assert m.activation_memory_per_chip == 294_912
    # dispatch, combine 4 · 2 · 4096 · 2 = 65,536 each; all-reduce of Y 4 · 4096 · 2
    assert r.collectives == {
        "dispatch_alltoall": 65_536,
        "combine_alltoall": 65_536,
        "output_allreduce": 32_768,
    }
    # 4 · (1 − (3/4)^8) = 58975/16384 experts of 176,160,768 bytes on this chip
    assert r.step_value("experts_read") == READ / 2
    assert r.step_value("weight_reads") == 65_536 + 58975 * 10_752


def test_the_reads_feed_the_load_time() -> None:
    # 2,536,462,336 bytes at the H100's 3350 GB/s, not the 2,818,637,824 stored
    r = run("single", "decode", hardware="h100-sxm", **MIXTRAL, **DECODE)
    assert r.timing is not None
    assert r.timing.load_time_ms == pytest.approx(2_536_462_336 / 3.35e9)
    assert r.arithmetic_intensity == Fraction(5_637_668_864, 2_536_462_336)
    # prefill reads every weight
    p = run("single", "prefill", hardware="h100-sxm", **MIXTRAL, **PREFILL)
    assert p.loaded_bytes_per_chip == 2_818_637_824


def test_the_compiled_timing_reads_the_same_bytes() -> None:
    """The expected reads are a power of a symbolic exponent: compiled code computes them in
    floating point, scalars and arrays alike, and agrees with the exact evaluation."""
    hw = {"peak_tflops": 1000, "memory_bandwidth_gb_s": 1000, "interconnect_bandwidth_gb_s": 100}
    f = shardcost.compile("ep", "decode", layer="moe", timing=True)
    batches = [1, 8, 37, 5000]
    arrays = f(**MIXTRAL, batch_size=np.array(batches), expert_parallel=4, **hw)
    for i, batch in enumerate(batches):
        want = run("ep", "decode", **MIXTRAL, **hw, batch_size=batch, expert_parallel=4).timing
        assert want is not None
        got = f(**MIXTRAL, **hw, batch_size=batch, expert_parallel=4)["load_time_ms"]
        assert got == pytest.approx(want.load_time_ms, rel=1e-12)
        assert arrays["load_time_ms"][i] == pytest.approx(want.load_time_ms, rel=1e-12)


# -- the experts a decode step reads, by routing ------------------------------------------


@pytest.mark.parametrize(
    ("routing", "layout", "ep", "tokens", "read"),
    [
        ("uniform", "single", 1, 1, Fraction(2)),  # 8 · (1 − 3/4): its own 2
        ("uniform", "single", 1, 2, Fraction(7, 2)),  # 8 · (1 − (3/4)^2) = 8 · 7/16
        ("uniform", "ep", 2, 2, Fraction(7, 4)),  # 4 · 7/16: half of them on each rank
        ("balanced", "single", 1, 3, Fraction(6)),  # min(8, 3 · 2)
        ("balanced", "single", 1, 5, Fraction(8)),  # min(8, 5 · 2)
        ("balanced", "ep", 2, 3, Fraction(3)),  # ⌈6 / 2⌉
        ("balanced", "ep", 4, 1, Fraction(1)),  # ⌈2 / 4⌉: the busiest rank reads one
        ("all", "single", 1, 1, Fraction(8)),
        ("all", "ep", 4, 1, Fraction(2)),  # 8 / 4
    ],
)
def test_experts_read_by_hand(
    routing: str, layout: str, ep: int, tokens: int, read: Fraction
) -> None:
    params = {"expert_routing": routing, "batch_size": tokens}
    if layout == "ep":
        params["expert_parallel"] = ep
    assert run(layout, "decode", **MIXTRAL, **params).step_value("experts_read") == read


def test_uniform_routing_reads_almost_every_expert_of_a_large_batch() -> None:
    # DeepSeek-V3: 256 experts, top 8: 256 · (1 − (31/32)^M); at 64 tokens (31/32)^64
    # ≈ e^(−2.03) ≈ 0.131, about 222.4 experts; past the 4096-token cap every expert but
    # 256 · (31/32)^4096 ≈ 8.5 · 10^−55
    for tokens, low, high in ((1, 8, 8), (64, 222, 223), (100_000, 255, 256)):
        read = run(
            "single", "decode", num_experts=256, experts_per_token=8, batch_size=tokens
        ).step_value("experts_read")
        assert low <= read <= high
        assert tokens < 100_000 or 0 < 256 - read < Fraction(1, 10**54)


# -- Hugging Face's counts: parameters and FLOPs of the first MoE layer ---------------------

DEEPSEEK_V3 = {
    "hidden_size": 7168,
    "num_experts": 256,
    "experts_per_token": 8,
    "moe_intermediate_size": 2048,
    "shared_experts": "plain",
    "shared_intermediate_size": 2048,  # one shared expert
}
QWEN2_MOE = {
    "hidden_size": 2048,
    "num_experts": 60,
    "experts_per_token": 4,
    "moe_intermediate_size": 1408,
    "shared_experts": "gated",
    "shared_intermediate_size": 5632,
}
GPT_OSS = {
    "hidden_size": 2880,
    "num_experts": 32,
    "experts_per_token": 4,
    "moe_intermediate_size": 2880,
    "expert_bias": True,
}
# family -> (block, its first MoE layer, the module under it)
FAMILIES = {
    "mixtral": (MIXTRAL, "0", "mlp"),
    "deepseek_v3": (DEEPSEEK_V3, "3", "mlp"),
    "qwen2_moe": (QWEN2_MOE, "0", "mlp"),
    "gpt_oss": (GPT_OSS, "0", "mlp"),
}


def parameters(block: dict) -> int:
    """The block's parameters: its weight bytes on one chip at one byte per element."""
    return moe("single", **block, bytes_per_elem=1)["weight_memory_per_chip"]


def test_the_blocks_by_hand() -> None:
    """The parameter counts expected.json holds, written out."""
    # DeepSeek-V3: router 7168 · 256 = 1,835,008 (e_score_correction_bias is a buffer);
    # 256 experts · 3 · 7168 · 2048 = 11,274,289,152; one shared 3 · 7168 · 2048
    # = 44,040,192: 11,320,164,352
    assert parameters(DEEPSEEK_V3) == 11_320_164_352
    # Qwen2-MoE: router 2048 · 60 = 122,880; experts 60 · 3 · 2048 · 1408 = 519,045,120;
    # shared 3 · 2048 · 5632 = 34,603,008; its gate 2048: 553,773,056
    assert parameters(QWEN2_MOE) == 553_773_056
    # gpt-oss-20b: router 2880 · 32 + 32 = 92,192; each expert 3 · 2880 · 2880 + biases
    # 2 · 2880 + 2880 = 24,891,840, times 32 = 796,538,880: 796,631,072
    assert parameters(GPT_OSS) == 796_631_072


@pytest.mark.parametrize("family", list(FAMILIES))
def test_parameters_equal_hugging_faces(family: str) -> None:
    block, index, module = FAMILIES[family]
    layer = EXPECTED[family]["parameters"]["representative_layers"][index]
    assert parameters(block) == layer["children"][module]


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize(
    ("run_name", "phase", "tokens"),
    [("prefill_logits_to_keep_1", "prefill", {"seq_len": 128}), ("decode_step", "decode", {})],
)
def test_flops_equal_the_flop_counters(
    family: str, run_name: str, phase: str, tokens: dict
) -> None:
    """Hugging Face's batched_mm counts tokens × top-k × one expert, plus the router, the
    shared experts and their gate: the same products, at batch 1."""
    block, index, module = FAMILIES[family]
    counted = EXPECTED[family]["flops"]["modules"][run_name][f"model.layers.{index}.{module}"]
    got = moe("single", phase, **block, batch_size=1, **tokens)["flops_per_chip"]
    assert got == counted["total"]


def test_deepseek_v3_prefill_flops_by_hand() -> None:
    # 128 tokens: router 2 · 128 · 7168 · 256 = 469,762,048; 1024 pairs · 3 · 2 · 7168
    # · 2048 = 90,194,313,216 (HF's bmm); shared 128 · 3 · 2 · 7168 · 2048
    # = 11,274,289,152; total 101,938,364,416
    got = moe("single", **DEEPSEEK_V3, batch_size=1, seq_len=128)["flops_per_chip"]
    assert got == 469_762_048 + 90_194_313_216 + 11_274_289_152 == 101_938_364_416


# -- what each layout repeats and sends ----------------------------------------------------


def test_each_layout_performs_the_collectives_its_checks_declare() -> None:
    for dispatch in ("activation", "fp8"):
        conv = Conventions(moe_dispatch_dtype=dispatch)
        for lay in all_layouts("moe"):
            for phase in lay.phases:
                built = {c.name for c in lay.cost(phase, conv).collectives}
                declared = lay.checks.sent(phase, conv)
                assert declared is not None and built == {s.collective for s in declared}


def test_an_fp8_dispatch_halves_the_dispatch_only() -> None:
    params = {**MIXTRAL, **DECODE, "expert_parallel": 4}
    r = run("ep", "decode", **params, moe_dispatch_dtype="fp8")
    # 2 tokens · 2 copies · 4096 · 1 byte out; the combine stays at 2 bytes
    assert r.collectives == {"dispatch_alltoall": 16_384, "combine_alltoall": 32_768}


def test_the_shared_gate_and_the_router_are_replicated_over_tp() -> None:
    m = moe("tp", **QWEN2_MOE, bytes_per_elem=1, tensor_parallel=4)
    # on each of 4 ranks: router 122,880 + gate 2048 whole; experts and shared expert
    # split: (519,045,120 + 34,603,008) / 4 = 138,412,032
    assert m["weight_memory_per_chip"] == 122_880 + 2048 + 138_412_032
    m = moe("ep", **QWEN2_MOE, bytes_per_elem=1, expert_parallel=4)
    # 60 / 4 = 15 experts of 8,650,752 each; router, shared expert and gate whole
    assert m["weight_memory_per_chip"] == 122_880 + 15 * 8_650_752 + 34_603_008 + 2048


def test_gpt_oss_down_biases_sit_on_every_tp_rank() -> None:
    m = moe("tp", **GPT_OSS, bytes_per_elem=1, tensor_parallel=2)
    # router 92,192 whole; each expert 3 · 2880 · 1440 + 2 · 1440 + 2880 (its down bias
    # whole) = 12,447,360, times 32 = 398,315,520
    assert m["weight_memory_per_chip"] == 92_192 + 398_315_520


@pytest.mark.parametrize(
    ("layout", "param", "message"),
    [
        ("tp", {"tensor_parallel": 3}, "moe_intermediate_size=14336 is not divisible by"),
        ("ep", {"expert_parallel": 3}, "num_experts=8 is not divisible by expert_parallel=3"),
        (
            "tp",
            {"tensor_parallel": 4, "shared_experts": "plain", "shared_intermediate_size": 6},
            "shared_intermediate_size=6 is not divisible by tensor_parallel=4",
        ),
    ],
)
def test_what_must_divide(layout: str, param: dict, message: str) -> None:
    with pytest.raises(shardcost.ImpossibleSplitError, match=message):
        moe(layout, **MIXTRAL, **param)


# -- an independent count ------------------------------------------------------------------


def ceil_div(a: int, n: int) -> int:
    return -(-a // n)


def reference(layout: str, phase: str, p: dict, c: dict) -> dict[str, int]:
    """The per-chip metrics written from the block's definition, plain integers."""
    d, E, k, b = p["hidden_size"], p["num_experts"], p["experts_per_token"], p["bytes_per_elem"]
    dsh = p["shared_intermediate_size"] if c["shared_experts"] != "none" else 0
    tp = p.get("tensor_parallel", 1)
    ep = p.get("expert_parallel", 1)
    tokens = p["batch_size"] * (p["seq_len"] if phase == "prefill" else p["new_tokens"])
    mine, pairs = ceil_div(tokens, ep), ceil_div(tokens * k, ep)
    n = 3 if c["ffn_gated"] else 2
    de, dsh = p["moe_intermediate_size"] // tp, dsh // tp
    gate = 1 if c["shared_experts"] == "gated" else 0
    flops = 2 * mine * d * E + n * 2 * pairs * d * de + n * 2 * mine * d * dsh
    flops += 2 * mine * d * gate
    bias = c["expert_bias"]
    expert = n * d * de + (((n - 1) * de + d) if bias else 0)
    weights = (d * E + (E if bias else 0) + E // ep * expert + n * d * dsh + d * gate) * b
    acts = (2 * mine * d + (n - 1) * (pairs * de + mine * dsh)) * b
    dispatch = {"activation": b, "fp8": 1, "bf16": 2}[c["moe_dispatch_dtype"]]
    comm = (mine * k * d * (dispatch + b)) if ep > 1 else 0
    comm += mine * d * b if tp > 1 else 0
    return {
        "flops_per_chip": flops,
        "weight_memory_per_chip": weights,
        "activation_memory_per_chip": acts,
        "communication_bytes": comm,
    }


@pytest.mark.parametrize("layout", ["single", "tp", "ep", "ep-tp"])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
@settings(max_examples=15, deadline=None)
@given(
    degree=st.sampled_from([1, 2, 4]),
    experts=st.sampled_from([4, 8, 60, 64]),
    top_k=st.integers(1, 8),
    batch=st.integers(1, 9),
    length=st.integers(1, 300),
    c=st.fixed_dictionaries(
        {
            "ffn_gated": st.booleans(),
            "shared_experts": st.sampled_from(["none", "plain", "gated"]),
            "expert_bias": st.booleans(),
            "moe_dispatch_dtype": st.sampled_from(["activation", "fp8", "bf16"]),
        }
    ),
)
def test_matches_an_independent_count(
    layout: str,
    phase: str,
    degree: int,
    experts: int,
    top_k: int,
    batch: int,
    length: int,
    c: dict,
) -> None:
    p = {
        "hidden_size": 64,
        "num_experts": experts,
        "experts_per_token": top_k,
        "moe_intermediate_size": 96,
        "shared_intermediate_size": 128,
        "bytes_per_elem": 2,
        "batch_size": batch,
    }
    p |= {"seq_len": length} if phase == "prefill" else {"new_tokens": length % 4 + 1}
    if "tp" in layout:
        p["tensor_parallel"] = degree
    if "ep" in layout:
        p["expert_parallel"] = degree
    conv = dict(c)
    if "ep" not in layout:
        conv.pop("moe_dispatch_dtype")
    params = {k: v for k, v in p.items() if k != "shared_intermediate_size"}
    if c["shared_experts"] != "none":
        params["shared_intermediate_size"] = p["shared_intermediate_size"]
    got = moe(layout, phase, **params, **conv)
    for name, value in reference(layout, phase, p, c).items():
        assert got[name] == value, name


# -- verify --------------------------------------------------------------------------------


def test_verify_holds_every_layout_in_both_phases() -> None:
    results = shardcost.verify(layer="moe")
    assert len(results) == 4 * 2  # layouts × phases
    assert all(r.ok for r in results)
    decode = [r for r in results if str(r.phase) == "decode"]
    claims = {v.claim.name for r in decode for v in r.verdicts}
    assert {"experts read between top-k and all", "experts read grow with the batch"} <= claims


@pytest.mark.parametrize(
    "conventions",
    [
        {"shared_experts": "gated", "expert_bias": True, "expert_routing": "balanced"},
        {"shared_experts": "plain", "ffn_gated": False, "expert_routing": "all"},
    ],
)
def test_verify_holds_under_other_conventions(conventions: dict) -> None:
    results = shardcost.verify(layer="moe", **conventions)
    assert all(r.ok for r in results)


def test_verify_holds_an_fp8_dispatch() -> None:
    results = shardcost.verify("ep", "ep-tp", layer="moe", moe_dispatch_dtype="fp8")
    assert len(results) == 4 and all(r.ok for r in results)
