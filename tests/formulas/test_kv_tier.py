"""KV-cache tiers: a request's cache over the host link, against decode and prefill."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import shardcost

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"
LLAMA_8B = CONFIGS / "llama-3.1-8b.json"


def test_one_request_by_hand() -> None:
    # Llama-3.1-8B, one H100 (host link 64 GB/s per direction, HBM 3350 GB/s), pinned.
    # One layer's cache at 4096 past positions: 2 (K, V) · 4096 · 8 KV heads · 128 · 2 B
    # = 16,777,216 B -> 16,777,216 / 64e9 s = 0.262144 ms; × 32 layers = 8.388608 ms.
    # Decode attention over it is memory-bound: 16,777,216 / 3350e9 s = 0.0050081 ms
    # (its core, 2·2·32·4097·128 = 67,125,248 FLOPs, takes 0.0000678 ms at 989.4 TFLOP/s).
    # Ratio: 3350 / 64 = 52.34375.
    got = shardcost.kv_tier(LLAMA_8B, hardware="h100-sxm", past_seq_len=4096)
    (r,) = got["requests"]
    assert r["kv_bytes_per_layer_per_chip"] == 16_777_216
    assert r["kv_bytes_per_chip"] == 32 * 16_777_216
    assert r["transfer_ms_per_layer"] == pytest.approx(0.262144)
    assert r["transfer_ms"] == pytest.approx(8.388608)
    assert r["attention_ms_per_layer"] == pytest.approx(16_777_216 / 3350e6)
    assert r["ratio"] == pytest.approx(52.34375)
    assert got["host_link"] == {"bandwidth_gb_s": 64.0, "efficiency": 1.0, "effective_gb_s": 64.0}


def test_pageable_memory_halves_the_link() -> None:
    got = shardcost.kv_tier(
        LLAMA_8B, hardware="h100-sxm", host_memory="pageable", past_seq_len=4096
    )
    assert got["host_link"]["effective_gb_s"] == 32.0
    assert got["requests"][0]["ratio"] == pytest.approx(2 * 52.34375)


def test_tensor_parallel_chips_copy_their_own_shards() -> None:
    # tp = 8: one KV head per chip -> 2 · 4096 · 1 · 128 · 2 = 2,097,152 B per layer,
    # 0.032768 ms over each chip's own 64 GB/s link.
    got = shardcost.kv_tier(
        LLAMA_8B, hardware="h100-sxm", layout="tp", tensor_parallel=8, past_seq_len=4096
    )
    (r,) = got["requests"]
    assert r["kv_bytes_per_layer_per_chip"] == 2_097_152
    assert r["transfer_ms_per_layer"] == pytest.approx(0.032768)
    assert got["chips"] == 8


def test_hiding_is_measured_against_decode_and_prefill_work() -> None:
    lengths = [32768, 4096, 64]
    got = shardcost.kv_tier(LLAMA_8B, hardware="h100-sxm", past_seq_len=lengths, seq_len=1024)
    # The work that could hide a copy, from the model on its own:
    decode = shardcost.model_metrics(LLAMA_8B, "decode", hardware="h100-sxm", past_seq_len=lengths)
    prefill = shardcost.model_metrics(LLAMA_8B, "prefill", hardware="h100-sxm", seq_len=1024)
    step = decode["timing"]["wall_clock_time_ms"]
    layer = sum(
        c["timing"]["wall_clock_time_ms"]
        for c in decode["components"]
        if c["name"] in ("attention", "ffn", "norms")
    )
    per_token = prefill["timing"]["wall_clock_time_ms"] / 1024
    assert got["decode_step_ms"] == pytest.approx(step)
    assert got["decode_layer_ms"] == pytest.approx(layer)
    assert got["prefill_ms_per_token"] == pytest.approx(per_token)
    by_length = {r["past_seq_len"]: r for r in got["requests"]}
    assert sorted(by_length) == sorted(lengths)
    for n, r in by_length.items():
        copy = 2 * n * 8 * 128 * 2 / 64e6  # ms per layer
        assert r["hides_behind_decode"] is (copy <= layer)
        assert r["layers_to_hide_one_layer"] == math.ceil(copy / layer)
        assert r["decode_steps_to_hide"] == math.ceil(32 * copy / step)
        assert r["prefill_tokens_to_hide"] == math.ceil(32 * copy / per_token)
    # A short cache hides behind one layer; a 32k one does not.
    assert by_length[64]["hides_behind_decode"] and not by_length[32768]["hides_behind_decode"]


def test_hardware_without_a_host_link_must_be_given_one() -> None:
    with pytest.raises(shardcost.InputError, match="gives no host_link_bandwidth_gb_s"):
        shardcost.kv_tier(LLAMA_8B, hardware="b200")
    got = shardcost.kv_tier(LLAMA_8B, hardware="b200", host_link_bandwidth_gb_s=128)
    # default past 2048: 2 · 2048 · 8 · 128 · 2 = 8,388,608 B per layer / 128e9 B/s
    assert got["requests"][0]["transfer_ms_per_layer"] == pytest.approx(8_388_608 / 128e6)


def test_bad_host_memory_is_refused() -> None:
    with pytest.raises(shardcost.InputError, match="host_memory='disk'"):
        shardcost.kv_tier(LLAMA_8B, hardware="h100-sxm", host_memory="disk")
