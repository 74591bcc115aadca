"""The attention kernel alone (layer attention_core): hand arithmetic for seed 002's
decode benchmark (Llama-3.1-8B: 32 heads, 8 KV heads, head_dim 128, bf16), GQA under
tensor parallelism, ragged batches, and its relation to the attention layer."""

from __future__ import annotations

import contextlib

import pytest

import shardcost
from shardcost.formulas import all_layouts
from shardcost.formulas.model import layer_of
from shardcost.formulas.registry import Role, get_layer
from tests.helpers import run

LAYER = "attention_core"
LLAMA = {"num_heads": 32, "num_kv_heads": 8, "head_dim": 128, "bytes_per_elem": 2}
A100 = "a100-sxm-80gb"  # memory bandwidth 2,039 GB/s


def core(layout: str, phase: str, **params: object) -> dict:
    return shardcost.metrics(layout, phase, layer=LAYER, **params)


def test_decode_of_seed_002() -> None:
    got = core("single", "decode", past_seq_len=2048, **LLAMA)["metrics"]
    # scores and P·V, 2·B·h·(S_past + 1)·dh each: 2 * 2 * 1 * 32 * 2049 * 128 = 33,570,816
    assert got["flops_per_chip"] == 33_570_816
    # K and V, 2·B·h_kv·dh·S_past·b: 2 * 1 * 8 * 128 * 2048 * 2 = 8,388,608 (8192 KB)
    assert got["kv_cache_per_chip"] == 8_388_608
    # Q in and O out, B·T·h·dh·b each: 2 * 1 * 1 * 32 * 128 * 2 = 16,384
    assert got["activation_memory_per_chip"] == 16_384
    assert got["weight_memory_per_chip"] == got["communication_bytes"] == 0


@pytest.mark.parametrize(
    ("past", "kib"),
    # 2 * 8 * 128 * L * 2 bytes = 4096·L bytes = 4·L KiB: the seed's KV sizes
    [(512, 2048), (1024, 4096), (2048, 8192), (4096, 16384)],
)
def test_the_seeds_kv_sizes(past: int, kib: int) -> None:
    got = core("single", "decode", past_seq_len=past, **LLAMA)["metrics"]
    assert got["kv_cache_per_chip"] == kib * 1024


def test_decode_time_is_the_cache_at_memory_bandwidth() -> None:
    got = core("single", "decode", past_seq_len=2048, hardware=A100, **LLAMA)["timing"]
    # 8,388,608 bytes / 2,039 GB/s = 4.114 µs; no weights to load (seed 002: 24.84 µs
    # measured, the fixed costs calibration fits)
    assert got["load_time_ms"] == pytest.approx(8_388_608 / 2039e6)
    # 33,570,816 FLOPs / 312 TFLOP/s = 0.108 µs: the cache bounds it
    assert got["compute_time_ms"] == pytest.approx(33_570_816 / 312e9)
    assert got["wall_clock_time_ms"] == got["load_time_ms"]


def test_prefill() -> None:
    got = core("single", "prefill", batch_size=2, seq_len=1024, hardware=A100, **LLAMA)
    m = got["metrics"]
    # dense: 2 * 2·B·h·S·S·dh = 4 * 2 * 32 * 1024 * 1024 * 128 = 34,359,738,368
    assert m["flops_per_chip"] == 34_359_738_368
    # K and V of the prompt: 2 * 2 * 8 * 128 * 1024 * 2 = 8,388,608
    assert m["kv_cache_per_chip"] == 8_388_608
    # Q and O: 2 * 2 * 1024 * 32 * 128 * 2 = 33,554,432
    assert m["activation_memory_per_chip"] == 33_554_432
    # the timing model loads the prompt's K and V (no weights): a finite intensity
    assert got["timing"]["load_time_ms"] == pytest.approx(8_388_608 / 2039e6)


def test_exact_pairs_in_prefill() -> None:
    params = {"batch_size": 1, "seq_len": 8, **LLAMA}
    exact = core("single", "prefill", attention_flops="exact", **params)["metrics"]
    # Σ i for i = 1..8 = 36 pairs per head, 2 * 2·dh FLOPs each: 4 * 32 * 36 * 128 = 589,824
    assert exact["flops_per_chip"] == 589_824


@pytest.mark.parametrize(
    ("tp", "kv_heads", "copies"),
    [
        (4, 2, 1),  # 8 KV heads over 4 ranks: 2 each, none repeated
        (16, 1, 2),  # 16 ranks > 8 KV heads: 1 each, every KV head on 2 ranks
    ],
)
def test_gqa_under_tensor_parallelism(tp: int, kv_heads: int, copies: int) -> None:
    params = {"past_seq_len": 2048, **LLAMA}
    said = pytest.warns(shardcost.UnevenSplitWarning, match="replicated on 2 ranks")
    with said if copies > 1 else contextlib.nullcontext():
        got = core("tp", "decode", tensor_parallel=tp, **params)["metrics"]
    alone = core("single", "decode", **params)["metrics"]
    # K and V of this rank's KV heads: 2 * kv_heads * 128 * 2048 * 2 = 1,048,576·kv_heads
    assert got["kv_cache_per_chip"] == 1_048_576 * kv_heads
    assert got["kv_cache_total"] == copies * alone["kv_cache_total"]
    # the 32 query heads split evenly: 4 * (32 / tp) * 2049 * 128
    assert got["flops_per_chip"] == 4 * (32 // tp) * 2049 * 128
    assert got["flops_total"] == alone["flops_total"]
    assert got["communication_bytes"] == 0


def test_a_ragged_batch_sums_its_requests() -> None:
    got = core("single", "decode", past_seq_len="4096,64,64", **LLAMA)
    m = got["metrics"]
    # 4 * 32 * 128 * ((4096 + 1) + (64 + 1) + (64 + 1)) = 16,384 * 4,227 = 69,255,168
    assert m["flops_per_chip"] == 69_255_168
    # 4,096 bytes per position: 4,096 * (4,096 + 64 + 64) = 17,301,504
    assert m["kv_cache_per_chip"] == 17_301_504
    # batch × longest would charge 3 * 16,384 * 4,097 = 201,375,744 FLOPs
    assert got["ragged"]["metrics_at_max"]["flops_per_chip"] == 201_375_744


def test_the_command_line_times_a_ragged_batch(capsys: pytest.CaptureFixture[str]) -> None:
    command = ["metrics", "single", "--layer", LAYER, "--phase", "decode", "--hardware", A100]
    args = ["past_seq_len=512,1024", "num_heads=32", "num_kv_heads=8", "head_dim=128"]
    code, out, _ = run(capsys, *command, *args)
    assert code == 0
    # KV: 4,096 * (512 + 1024) = 6,291,456; FLOPs: 16,384 * (513 + 1025) = 25,198,592
    assert "6,291,456" in out
    assert "25,198,592" in out
    assert "ragged batch: 2 requests" in out


@pytest.mark.parametrize("layout", ["single", "tp"])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_attention_less_its_projections(layout: str, phase: str) -> None:
    shape = {"num_heads": 8, "num_kv_heads": 4, "head_dim": 16, "batch_size": 3}
    shape |= {"seq_len": 40} if phase == "prefill" else {"past_seq_len": 40}
    tp = 2 if layout == "tp" else 1
    if layout == "tp":
        shape["tensor_parallel"] = tp
    d = 8 * 16  # attention's relation: hidden_size = num_heads × head_dim
    full = shardcost.metrics(layout, phase, layer="attention", hidden_size=d, **shape)["metrics"]
    mine = core(layout, phase, **shape)["metrics"]
    tokens = 3 * (40 if phase == "prefill" else 1)
    # Q and O over h/tp heads, K and V over h_kv/tp: 2·M·d·dh·(2·h + 2·h_kv)/tp per chip
    projections = 2 * tokens * d * 16 * (2 * 8 + 2 * 4) // tp
    assert full["flops_per_chip"] - mine["flops_per_chip"] == projections
    assert mine["kv_cache_per_chip"] == full["kv_cache_per_chip"]


def test_no_model_width() -> None:
    # h·dh = 3 * 100 is no model's width: nothing relates them
    got = core("single", "decode", num_heads=3, num_kv_heads=1, head_dim=100, past_seq_len=9)
    # 4 * 3 * (9 + 1) * 100 = 12,000
    assert got["metrics"]["flops_per_chip"] == 12_000
    with pytest.raises(shardcost.InputError, match="hidden_size is not a parameter"):
        core("single", "decode", hidden_size=4096)


def test_no_weights_in_any_layout() -> None:
    for lay in all_layouts(LAYER):
        for phase in lay.phases:
            got = core(lay.name, str(phase))["metrics"]
            assert got["weight_memory_per_chip"] == got["communication_bytes"] == 0


def test_it_is_no_models_mixer() -> None:
    assert get_layer(LAYER).role is Role.KERNEL
    assert layer_of(Role.MIXER).name == "attention"
