"""What a family's config.json says beyond its shapes: quantized weights, hybrid windows,
latent attention; each figure worked out by hand beside it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import shardcost
from shardcost.errors import InputError
from shardcost.formulas.families import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"
GPT_OSS = CONFIGS / "gpt-oss-20b.json"
DEEPSEEK_V3 = CONFIGS / "deepseek-v3.json"
FIDELITY = Path(__file__).resolve().parents[1] / "fidelity"


def _model(path: Path, phase: str = "decode", **params: object) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        return shardcost.model_metrics(path, phase, **params)


def _component(result: dict, name: str) -> dict:
    return next(c for c in result["components"] if c["name"] == name)


def test_quantized_weights_change_bytes_not_the_parameter_count() -> None:
    got = _model(GPT_OSS, past_seq_len=8192)
    # the Hugging Face count of the same shapes (tests/fidelity/expected.json)
    expected = json.loads((FIDELITY / "expected.json").read_text(encoding="utf-8"))
    assert got["parameters"]["total"] == expected["families"]["gpt_oss"]["parameters"]["total"]
    assert got["parameters"]["total"] == 20_914_757_184
    # One MoE layer: router 2880·32 + 32 bias = 92,192; each of 32 experts 3·2880·2880
    # matrices + 3·2880 biases = 24,891,840, so 796,538,880; 796,631,072 elements in all,
    # at MXFP4's 17/32 byte: 423,210,257 bytes.
    moe = _component(got, "moe [sliding attention + MoE]")
    assert moe["metrics"]["weight_memory_per_chip"] == 423_210_257
    # attention stays bf16 (modules_to_not_convert): Wq, Wo 2880·4096 each, Wk, Wv
    # 2880·512 each: 26,542,080 elements, 2 bytes each; its biases, 4096 + 512 + 512 +
    # 2880 = 8,000, are the block's "biases" row
    attention = _component(got, "attention [attention + MoE]")
    assert attention["metrics"]["weight_memory_per_chip"] == 2 * 26_542_080
    assert _component(got, "biases [attention + MoE]")["metrics"]["weight_memory_per_chip"] == (
        2 * 8_000
    )
    assert any("mxfp4" in n and "parameter counts are elements" in n for n in got["notes"])


def test_hybrid_layers_cache_their_window_or_the_whole_past() -> None:
    got = _model(GPT_OSS, past_seq_len=8192, kv_cache_dtype="fp8")
    # sliding_window 128: Hugging Face's cache keeps 127 past positions; 8 KV heads of 64,
    # K and V, 1 byte each: 127·8·64·2 = 130,048. A full layer keeps 8192: 8,388,608.
    sliding = _component(got, "attention [sliding attention + MoE]")
    full = _component(got, "attention [attention + MoE]")
    assert sliding["metrics"]["kv_cache_per_chip"] == 130_048
    assert full["metrics"]["kv_cache_per_chip"] == 8_388_608
    # 12 of each kind
    assert got["metrics"]["kv_cache_total"] == 12 * (130_048 + 8_388_608)
    rolling = _model(GPT_OSS, past_seq_len=8192, kv_cache_dtype="fp8", sliding_window_kv="full")
    assert rolling["metrics"]["kv_cache_total"] == 24 * 8_388_608


def test_latent_attention_caches_the_latent_per_layer() -> None:
    got = _model(DEEPSEEK_V3, past_seq_len=4096, batch_size=64)
    # kv_lora_rank 512 + qk_rope_head_dim 64 = 576 elements per position and layer, bf16:
    # 576·2·4096·64 = 301,989,888 per layer, 61 layers: 18,421,383,168
    assert got["metrics"]["kv_cache_total"] == 18_421_383_168
    decompressed = _model(
        DEEPSEEK_V3, past_seq_len=4096, batch_size=64, mla_kv_cache="decompressed"
    )
    # every head's K (128 + 64) and V (128): 128·(192 + 128) = 40,960 elements per position
    assert decompressed["metrics"]["kv_cache_total"] == 18_421_383_168 // 576 * 40_960


def test_an_unknown_quantization_is_refused_in_one_line() -> None:
    raw = json.loads(GPT_OSS.read_text(encoding="utf-8"))
    raw["quantization_config"] = {"quant_method": "bitsandbytes"}
    with pytest.raises(InputError, match="quant_method='bitsandbytes' is not a type") as err:
        load_config(raw)
    assert "\n" not in str(err.value)
