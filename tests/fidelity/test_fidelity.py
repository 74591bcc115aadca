"""Every family against the Hugging Face model built from the same config.json.

The expected figures are in expected.json, measured by ``python
tests/fidelity/regenerate.py`` (torch 2.14.1, transformers 5.25.0; see README.md):
``sum(p.numel() for p in model.parameters())``, PyTorch's FlopCounterMode on a B=1,
S=128 prefill (logits for the last position, and for all) and on one decode step after
it, and the bytes of every key and value tensor the cache holds after each. shardcost
must give the same integers, under the conventions that describe what those kernels do:
the dense (masked) attention product, every key of the decode step including the new
token's, the cache after the step including it, and for DeepSeek's MLA the re-expanded
latent that the Hugging Face implementation computes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import shardcost

HERE = Path(__file__).parent
EXPECTED = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))["families"]
FAMILIES = sorted(EXPECTED)

# The conventions under which each family's figures describe the reference's kernels.
MATCHING: dict[str, dict[str, object]] = {
    "deepseek_v2": {"mla_decode": "decompressed"},
    "deepseek_v3": {"mla_decode": "decompressed"},
}


def model(family: str, phase: str, **params: object) -> dict:
    config = HERE / EXPECTED[family]["config"]
    params |= MATCHING.get(family, {}) if phase == "decode" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        return shardcost.model_metrics(config, phase, batch_size=1, **params)


def test_every_family_is_measured() -> None:
    assert len(FAMILIES) == 23
    assert not [f for f in FAMILIES if "error" in EXPECTED[f]]


@pytest.mark.parametrize("family", FAMILIES)
def test_parameters_equal_the_hugging_face_count(family: str) -> None:
    got = model(family, "prefill", seq_len=128)["parameters"]
    assert got["total"] == EXPECTED[family]["parameters"]["total"]


def _every_expert_on_every_token(family: str, phase: str) -> int:
    """What Llama 4's Hugging Face implementation adds: it runs every routed expert on
    every token, tokens × (E − k) expert products more than tokens × top-k."""
    if family != "llama4_text":
        return 0
    config = json.loads((HERE / EXPECTED[family]["config"]).read_text(encoding="utf-8"))
    d, d_e = config["hidden_size"], config["intermediate_size"]
    extra = config["num_local_experts"] - config["num_experts_per_tok"]
    tokens = 128 if phase == "prefill" else 1
    moe_layers = config["num_hidden_layers"]  # interleave_moe_layer_step = 1: every layer
    return moe_layers * tokens * extra * 3 * 2 * d * d_e  # gate, up, down: 2·d·d_e each


@pytest.mark.parametrize("family", FAMILIES)
def test_prefill_flops_equal_the_flop_counter(family: str) -> None:
    flops = EXPECTED[family]["flops"]
    extra = _every_expert_on_every_token(family, "prefill")
    last = model(family, "prefill", seq_len=128)["metrics"]["flops_total"]
    every = model(family, "prefill", seq_len=128, logits_for_all_tokens=True)
    assert last + extra == flops["prefill_logits_to_keep_1"]
    assert every["metrics"]["flops_total"] + extra == flops["prefill_logits_to_keep_0"]


@pytest.mark.parametrize("family", FAMILIES)
def test_decode_flops_equal_the_flop_counter(family: str) -> None:
    got = model(family, "decode", past_seq_len=128)["metrics"]["flops_total"]
    extra = _every_expert_on_every_token(family, "decode")
    assert got + extra == EXPECTED[family]["flops"]["decode_step"]


@pytest.mark.parametrize("family", FAMILIES)
def test_kv_bytes_equal_the_cache_tensors(family: str) -> None:
    kv = EXPECTED[family]["kv_bytes"]
    prefill = model(family, "prefill", seq_len=128)["metrics"]["kv_cache_total"]
    after = model(family, "decode", past_seq_len=128, kv_includes_new_token=True)
    assert prefill == kv["after_prefill"]
    assert after["metrics"]["kv_cache_total"] == kv["after_decode"]


def test_deepseek_v3_by_hand() -> None:
    # 671,026,404,352 parameters as the Hugging Face model counts them (its routing
    # bias e_score_correction_bias is a buffer, and the MTP module is not built), and
    # an MLA cache of kv_lora_rank + qk_rope_head_dim = 512 + 64 = 576 elements per
    # token per layer: 61 layers · 128 tokens · 576 · 2 bytes = 8,994,816.
    got = model("deepseek_v3", "prefill", seq_len=128)
    assert got["parameters"]["total"] == 671_026_404_352
    assert got["metrics"]["kv_cache_total"] == 61 * 128 * 576 * 2 == 8_994_816


def test_fp8_kv_is_one_flag_that_halves_the_cache_and_its_read_time() -> None:
    bf16 = model("llama", "decode", past_seq_len=4096, hardware="h100-sxm")
    fp8 = model("llama", "decode", past_seq_len=4096, hardware="h100-sxm", kv_cache_dtype="fp8")
    # 32 layers · 8 KV heads · 128 · 2 (K, V) · 4096 positions = 268,435,456 elements
    assert bf16["metrics"]["kv_cache_total"] == 2 * 268_435_456
    assert fp8["metrics"]["kv_cache_total"] == 268_435_456
    assert fp8["metrics"]["weight_memory_total"] == bf16["metrics"]["weight_memory_total"]
    # the KV read: 536,870,912 bytes at 3,350 GB/s = 0.16026 ms, halved
    saved = bf16["timing"]["load_time_ms"] - fp8["timing"]["load_time_ms"]
    assert saved == pytest.approx(268_435_456 / 3.35e12 * 1e3)  # 0.08013 ms
