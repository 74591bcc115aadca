"""Multi-head latent attention (DeepSeek-V2/V3): hand arithmetic, and the figures measured
on Hugging Face's DeepseekV3Attention / DeepseekV2Attention (tests/fidelity/expected.json:
B = 1, a 128-token prefill, then one decode step)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import shardcost
from shardcost.formulas import Conventions, Phase, get_layout
from shardcost.formulas.invariants import verify_layout
from shardcost.symbolic.dimensions import BY_NAME

FIDELITY = Path(__file__).parent.parent / "fidelity"
EXPECTED = json.loads((FIDELITY / "expected.json").read_text())["families"]


def shapes(family: str) -> dict:
    """The MLA dimensions of a published config, and whether its query is compressed."""
    config = json.loads((FIDELITY / "configs" / f"{family}.json").read_text())
    p = {
        "hidden_size": config["hidden_size"],
        "num_heads": config["num_attention_heads"],
        "kv_lora_rank": config["kv_lora_rank"],
        "qk_nope_head_dim": config["qk_nope_head_dim"],
        "qk_rope_head_dim": config["qk_rope_head_dim"],
        "v_head_dim": config["v_head_dim"],
        "batch_size": 1,
    }
    if config["q_lora_rank"] is not None:
        return p | {"q_lora_rank": config["q_lora_rank"]}
    return p | {"mla_q_compressed": False}


V3 = shapes("deepseek_v3")  # d 7168, h 128, r_q 1536, r_kv 512, dh_n 128, dh_r 64, dh_v 128
V2_LITE = shapes("deepseek_v2")  # d 2048, h 16, no r_q, r_kv 512, dh_n 128, dh_r 64, dh_v 128
PREFILL = {"seq_len": 128}
# One token after a 128-token prefill, as Hugging Face runs it: the new token attends to
# itself (129 keys) and the cache it reads afterwards holds 129 positions.
HF_DECODE = {
    "past_seq_len": 128,
    "new_tokens": 1,
    "mla_decode": "decompressed",
    "attention_keys_include_new_token": True,
    "kv_includes_new_token": True,
}


def mla(layout: str, phase: str, **params: object) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        return shardcost.metrics(layout, phase, layer="mla", **params)["metrics"]


def steps(layout: str, phase: str, conv: Conventions, **params: int) -> dict[str, int]:
    """Every step of the derivation at ``params`` (dimension names), by key."""
    cost = get_layout(layout, "mla").cost(Phase(phase), conv)
    subs = {BY_NAME[k].symbol: v for k, v in params.items()}
    values = cost.derivation.values(subs)
    return {s.key: int(values[s.symbol]) for s in cost.derivation}


def measured(family: str, run: str) -> dict:
    """Hugging Face's FLOP count of layer 0's self_attn in ``run``."""
    return EXPECTED[family]["flops"]["modules"][run]["model.layers.0.self_attn"]


def self_attn_parameters(family: str) -> int:
    return EXPECTED[family]["parameters"]["representative_layers"]["0"]["children"]["self_attn"]


def test_v3_weights_are_hugging_faces_parameters() -> None:
    m = mla("single", "prefill", **V3, **PREFILL, bytes_per_elem=1)
    # q_a_proj 7168·1536 = 11,010,048; q_a_layernorm 1536; q_b_proj 1536·128·192 =
    # 37,748,736; kv_a_proj_with_mqa 7168·576 = 4,128,768; kv_a_layernorm 512;
    # kv_b_proj 512·128·256 = 16,777,216; o_proj 128·128·7168 = 117,440,512;
    # sum 187,107,328
    assert m["weight_memory_per_chip"] == 187_107_328 == self_attn_parameters("deepseek_v3")


def test_v2_lite_weights_are_hugging_faces_parameters() -> None:
    m = mla("single", "prefill", **V2_LITE, **PREFILL, bytes_per_elem=1)
    # q_proj 2048·16·192 = 6,291,456; kv_a_proj_with_mqa 2048·576 = 1,179,648;
    # kv_a_layernorm 512; kv_b_proj 512·16·256 = 2,097,152; o_proj 16·128·2048 =
    # 4,194,304; sum 13,763,072
    assert m["weight_memory_per_chip"] == 13_763_072 == self_attn_parameters("deepseek_v2")


def test_v3_prefill_flops_are_hugging_faces() -> None:
    got = steps("single", "prefill", Conventions(), **V3, **PREFILL, bytes_per_elem=2)
    hf = measured("deepseek_v3", "prefill_logits_to_keep_1")
    # M = 128 tokens; projections 2·128·(11,010,048 + 37,748,736 + 4,128,768 + 16,777,216
    # + 117,440,512) = 256·187,105,280 = 47,898,951,680 (aten.mm)
    projections = ("q_a_proj", "q_b_proj", "kv_a_proj", "kv_b_proj", "o_proj")
    assert sum(got[k] for k in projections) == 47_898_951_680 == hf["by_op"]["aten.mm"]
    # scores 2·128·128·128·192 = 805,306,368; P·V 2·128·128·128·128 = 536,870,912;
    # sum 1,342,177,280 (aten.bmm: a masked kernel, no causal halving)
    assert got["scores"] == 805_306_368 and got["apply_v"] == 536_870_912
    assert got["scores"] + got["apply_v"] == 1_342_177_280 == hf["by_op"]["aten.bmm"]
    assert got["flops"] == 49_241_128_960 == hf["total"]


def test_v3_prefill_activations_by_hand() -> None:
    m = mla("single", "prefill", **V3, **PREFILL, bytes_per_elem=2)
    # per token: X 7168 + latents 1536 + 576 + query 128·192 = 24,576 + expanded keys and
    # values 128·256 = 32,768 + Y 7168 = 73,792; · 128 tokens · 2 B = 18,890,752
    assert m["activation_memory_per_chip"] == 18_890_752


def test_v3_decode_flops_are_hugging_faces() -> None:
    got = steps(
        "single",
        "decode",
        Conventions(mla_decode="decompressed", kv_includes_new_token=True),
        **V3,
        past_seq_len=128,
        new_tokens=1,
        bytes_per_elem=2,
    )
    hf = measured("deepseek_v3", "decode_step")
    # one token: q path 2·(11,010,048 + 37,748,736) = 97,517,568; kv_a 2·4,128,768 =
    # 8,257,536; o_proj 2·117,440,512 = 234,881,024; kv_b_proj re-expands the whole
    # cache after the new token is written, 129 positions: 2·129·16,777,216 =
    # 4,328,521,728. Sum 4,669,177,856 (aten.mm)
    assert got["expanded_len"] == 129
    assert got["kv_b_proj"] == 4_328_521_728
    projections = ("q_a_proj", "q_b_proj", "kv_a_proj", "kv_b_proj", "o_proj")
    assert sum(got[k] for k in projections) == 4_669_177_856 == hf["by_op"]["aten.mm"]
    # 129 keys (itself included): scores 2·128·129·192 = 6,340,608; P·V 2·128·129·128 =
    # 4,227,072; sum 10,567,680 (aten.bmm)
    assert got["scores"] + got["apply_v"] == 10_567_680 == hf["by_op"]["aten.bmm"]
    assert got["flops"] == 4_679_745_536 == hf["total"]


def test_v2_lite_flops_are_hugging_faces() -> None:
    prefill = mla("single", "prefill", **V2_LITE, **PREFILL)
    # projections 2·128·(6,291,456 + 1,179,648 + 2,097,152 + 4,194,304) = 3,523,215,360;
    # scores and P·V 2·16·128·128·(192 + 128) = 167,772,160; sum 3,690,987,520
    assert prefill["flops_per_chip"] == 3_690_987_520
    assert prefill["flops_per_chip"] == measured("deepseek_v2", "prefill_logits_to_keep_1")["total"]
    decode = mla("single", "decode", **V2_LITE, **HF_DECODE)
    # 2·(6,291,456 + 1,179,648 + 4,194,304) = 23,330,816; kv_b 2·129·2,097,152 =
    # 541,065,216; scores and P·V 2·16·129·320 = 1,320,960; sum 565,716,992
    assert decode["flops_per_chip"] == 565_716_992
    assert decode["flops_per_chip"] == measured("deepseek_v2", "decode_step")["total"]


def test_latent_cache_is_hugging_faces() -> None:
    kv = EXPECTED["deepseek_v3"]["kv_bytes"]
    layers = kv["prefill"]["num_layers"]  # 61
    # after a 128-token prefill: 128 positions · (512 + 64) = 576 elements · 2 B = 147,456
    prefill = mla("single", "prefill", **V3, **PREFILL, kv_cache_dtype="bf16")
    assert prefill["kv_cache_per_chip"] == 147_456 == kv["after_prefill"] // layers
    assert kv["after_prefill"] == 61 * 147_456
    # after one decode step the cache holds the new token too: 129 · 576 · 2 = 148,608
    decode = mla("single", "decode", **V3, **HF_DECODE, kv_cache_dtype="bf16")
    assert decode["kv_cache_per_chip"] == 148_608 == kv["after_decode"] // layers
    # fp8 halves it: 128 · 576 · 1 = 73,728
    fp8 = mla("single", "prefill", **V3, **PREFILL, kv_cache_dtype="fp8")
    assert fp8["kv_cache_per_chip"] == 73_728
    # the latent does not depend on the heads: DeepSeek-V2-Lite's is the same size
    lite = mla("single", "prefill", **V2_LITE, **PREFILL, kv_cache_dtype="bf16")
    assert (
        lite["kv_cache_per_chip"]
        == 147_456
        == EXPECTED["deepseek_v2"]["kv_bytes"]["after_prefill"] // 27
    )


def test_decompressed_cache_holds_every_head() -> None:
    m = mla("single", "prefill", **V3, **PREFILL, mla_kv_cache="decompressed", bytes_per_elem=2)
    # 128 positions · 128 heads · (128 + 64 + 128) = 320 · 2 B = 10,485,760
    assert m["kv_cache_per_chip"] == 10_485_760
    # decode then expands only the new token's latent: kv_b 2·1·512·32,768 = 33,554,432,
    # and attends per head, whatever mla_decode says
    for decode in ("absorbed", "decompressed"):
        got = steps(
            "single",
            "decode",
            Conventions(mla_kv_cache="decompressed", mla_decode=decode),
            **V3,
            past_seq_len=128,
            new_tokens=1,
            bytes_per_elem=2,
        )
        assert got["expanded_len"] == 1 and got["kv_b_proj"] == 33_554_432
        # 128 cached positions (the new token's not counted by default): 10,485,760 B
        assert got["kv_cache_bytes"] == 10_485_760


def test_v3_absorbed_decode_by_hand() -> None:
    got = steps(
        "single", "decode", Conventions(), **V3, past_seq_len=128, new_tokens=1, bytes_per_elem=2
    )
    # q path 97,517,568 and kv_a 8,257,536 as decompressed; then over S_k = 129 keys:
    # W_uk folded into q_n: 2·1·128·128·512 = 16,777,216
    assert got["q_absorb"] == 16_777_216
    # scores over the latent: 2·128·1·129·(512 + 64) = 19,021,824
    assert got["scores"] == 19_021_824
    # P·V over the latent: 2·128·1·129·512 = 16,908,288
    assert got["apply_v"] == 16_908_288
    # W_uv: 2·1·128·512·128 = 16,777,216; o_proj 234,881,024
    assert got["v_absorb"] == 16_777_216 and got["o_proj"] == 234_881_024
    assert "kv_b_proj" not in got  # nothing is re-expanded
    # 97,517,568 + 8,257,536 + 16,777,216 + 19,021,824 + 16,908,288 + 16,777,216
    # + 234,881,024 = 410,140,672
    assert got["flops"] == 410_140_672
    # resident: X 7168 + latents 2112 + query 24,576 + absorbed query 128·512 = 65,536
    # + Y 7168 = 106,560 elements · 2 B = 213,120
    assert got["activation_bytes"] == 213_120


def test_neither_decode_form_is_always_cheaper() -> None:
    short = {"past_seq_len": 128, "new_tokens": 1}
    absorbed = mla("single", "decode", **V3, **short)["flops_per_chip"]
    decompressed = mla("single", "decode", **V3, **short, mla_decode="decompressed")
    assert absorbed == 410_140_672 < decompressed["flops_per_chip"] == 4_679_745_536
    # many new tokens on a short past: the latent's 2·r_kv + dh_r = 1088 per key and head
    # outweighs re-expanding: per head, absorbed pays 2·T·S_k·1088 against
    # decompressed's 2·T·S_k·320 + 2·(S_past + T)·512·256
    many = {"past_seq_len": 1, "new_tokens": 4096}
    absorbed = mla("single", "decode", **V3, **many)["flops_per_chip"]
    decompressed = mla("single", "decode", **V3, **many, mla_decode="decompressed")
    assert absorbed > decompressed["flops_per_chip"]


def test_tp_by_hand() -> None:
    m = mla("tp", "prefill", **V3, **PREFILL, tensor_parallel=8, bytes_per_elem=2)
    # 16 heads per chip; M = 128. Replicated: q_a 2·128·7168·1536 = 2,818,572,288 and
    # kv_a 2·128·7168·576 = 1,056,964,608. Sharded: q_b 2·128·1536·3072 = 1,207,959,552;
    # kv_b 2·128·512·4096 = 536,870,912; scores 2·16·128·128·192 = 100,663,296; P·V
    # 2·16·128·128·128 = 67,108,864; o_proj 2·128·2048·7168 = 3,758,096,384.
    # Sum 9,546,235,904
    assert m["flops_per_chip"] == 9_546_235_904
    # over 8 chips: single's 49,241,128,960 + 7·(2,818,572,288 + 1,056,964,608)
    # = 49,241,128,960 + 27,128,758,272 = 76,369,887,232
    assert m["flops_total"] == 76_369_887_232 == 8 * 9_546_235_904
    # weights: q_a 11,010,048 + 1536; q_b 1536·3072 = 4,718,592; kv_a 4,128,768 + 512;
    # kv_b 512·4096 = 2,097,152; o 2048·7168 = 14,680,064; 36,636,672 elements · 2 B
    assert m["weight_memory_per_chip"] == 73_273_344
    # the latent cache on every chip: 147,456 per chip, 8 copies
    assert m["kv_cache_per_chip"] == 147_456 and m["kv_cache_total"] == 8 * 147_456
    # all-reduce of Y[128, 7168] at 2 B: 1,835,008
    assert m["communication_bytes"] == 1_835_008


def test_tp_splits_a_decompressed_cache() -> None:
    m = mla("tp", "prefill", **V3, **PREFILL, tensor_parallel=8, mla_kv_cache="decompressed")
    # 128 positions · 16 heads · 320 · 2 B = 1,310,720 = 10,485,760 / 8
    assert m["kv_cache_per_chip"] == 1_310_720 and m["kv_cache_total"] == 10_485_760


def test_tp_decode_absorbed_by_hand() -> None:
    m = mla("tp", "decode", **V3, past_seq_len=128, tensor_parallel=8)
    # one token, 16 heads per chip, 129 keys: q_a 2·7168·1536 = 22,020,096; q_b
    # 2·1536·3072 = 9,437,184; kv_a 2·7168·576 = 8,257,536; W_uk 2·16·128·512 = 2,097,152;
    # scores 2·16·129·576 = 2,377,728; P·V 2·16·129·512 = 2,113,536; W_uv 2·16·512·128 =
    # 2,097,152; o 2·2048·7168 = 29,360,128; sum 77,760,512
    assert m["flops_per_chip"] == 77_760_512
    # the cache holds the 128 past positions (kv_includes_new_token false): 147,456
    assert m["kv_cache_per_chip"] == 147_456
    assert m["communication_bytes"] == 7168 * 2  # Y[1, 7168]


def test_heads_must_divide() -> None:
    with pytest.raises(shardcost.ImpossibleSplitError, match="num_heads=128"):
        mla("tp", "prefill", **V3, **PREFILL, tensor_parallel=3)


@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize("cache", ["latent", "decompressed"])
@pytest.mark.parametrize("q_compressed", [True, False])
def test_verify_holds_tp(phase: str, cache: str, q_compressed: bool) -> None:
    conv = Conventions(mla_kv_cache=cache, mla_decode="decompressed", mla_q_compressed=q_compressed)
    found = verify_layout(get_layout("tp", "mla"), Phase(phase), conv)
    assert found.ok
    names = {v.claim.name for v in found.verdicts}
    assert ("latent cache on every chip" in names) is (cache == "latent")
