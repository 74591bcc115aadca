"""Whole models from config.json: exact parameter counts, matmul FLOPs, composition."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import shardcost
from shardcost.formulas.model import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"
LLAMA_8B = CONFIGS / "llama-3.1-8b.json"
MISTRAL_7B = CONFIGS / "mistral-7b.json"
LLAMA_1B = CONFIGS / "llama-3.2-1b.json"
QWEN_7B = CONFIGS / "qwen2.5-7b.json"


# Parameter counts by hand from each config's shapes (d, L, h, h_kv, dh, d_ff, V):
#
# Llama-3.1-8B (4096, 32, 32, 8, 128, 14336, 128256), untied:
#   embedding 128256·4096 = 525,336,576; per layer: Wq, Wo 4096·4096 = 16,777,216 each,
#   Wk, Wv 4096·1024 = 4,194,304 each -> 41,943,040; MLP 3·4096·14336 = 176,160,768;
#   2 norms 8,192 -> 218,112,000; × 32 = 6,979,584,000; final norm 4,096; LM head
#   525,336,576. Total 8,030,261,248.
# Mistral-7B (4096, 32, 32, 8, 128, 14336, 32000), untied: embedding and LM head
#   131,072,000 each; layers as Llama-8B: 6,979,584,000; final 4,096 -> 7,241,732,096.
# Llama-3.2-1B (2048, 16, 32, 8, 64, 8192, 128256), tied: embedding 262,668,288;
#   per layer: Wq, Wo 2048·2048 = 4,194,304 each, Wk, Wv 2048·512 = 1,048,576 each ->
#   10,485,760; MLP 3·2048·8192 = 50,331,648; norms 4,096 -> 60,821,504; × 16 =
#   973,144,064; final 2,048; no LM head of its own -> 1,235,814,400.
# Qwen2.5-7B (3584, 28, 28, 4, 128, 18944, 152064), untied, Q/K/V biases:
#   embedding 152064·3584 = 544,997,376; per layer: Wq, Wo 3584·3584 = 12,845,056 each,
#   Wk, Wv 3584·512 = 1,835,008 each, biases 3584 + 512 + 512 = 4,608 -> 29,364,736;
#   MLP 3·3584·18944 = 203,685,888; norms 7,168 -> 233,057,792; × 28 = 6,525,618,176;
#   final 3,584; LM head 544,997,376 -> 7,615,616,512.
PARAMETERS = {
    LLAMA_8B: 8_030_261_248,
    MISTRAL_7B: 7_241_732_096,
    LLAMA_1B: 1_235_814_400,
    QWEN_7B: 7_615_616_512,
}
SHAPES = {  # (d, L, h, h_kv, dh, d_ff, V)
    LLAMA_8B: (4096, 32, 32, 8, 128, 14336, 128256),
    MISTRAL_7B: (4096, 32, 32, 8, 128, 14336, 32000),
    LLAMA_1B: (2048, 16, 32, 8, 64, 8192, 128256),
    QWEN_7B: (3584, 28, 28, 4, 128, 18944, 152064),
}


@pytest.mark.parametrize("path", list(PARAMETERS), ids=lambda p: p.stem)
def test_parameter_counts_are_exact(path: Path) -> None:
    got = shardcost.model_metrics(path)
    assert got["parameters"]["total"] == PARAMETERS[path]
    assert type(got["parameters"]["total"]) is int
    # Every parameter is stored once on one chip: 2 bytes each (bfloat16 configs).
    assert got["metrics"]["weight_memory_total"] == 2 * PARAMETERS[path]


def prefill_matmul_flops(shape: tuple[int, ...], B: int, S: int, all_logits: bool) -> int:
    """Every matrix product of a prefill, written out from the shapes alone."""
    d, L, h, hkv, dh, ff, V = shape
    M = B * S
    q_and_o = 2 * (2 * M * d * h * dh)
    k_and_v = 2 * (2 * M * d * hkv * dh)
    attention = 2 * (2 * B * h * S * S * dh)  # Q·Kᵀ and P·V, causal mask not halved
    mlp = 3 * (2 * M * d * ff)
    logits = 2 * (M if all_logits else B) * d * V
    return L * (q_and_o + k_and_v + attention + mlp) + logits


@pytest.mark.parametrize("path", list(PARAMETERS), ids=lambda p: p.stem)
@pytest.mark.parametrize("all_logits", [False, True])
def test_prefill_flops_are_the_sum_of_the_matmuls(path: Path, all_logits: bool) -> None:
    got = shardcost.model_metrics(path, batch_size=2, seq_len=512, logits_for_all_tokens=all_logits)
    want = prefill_matmul_flops(SHAPES[path], 2, 512, all_logits)
    assert got["metrics"]["flops_total"] == want


def test_llama_8b_prefill_flops_by_hand() -> None:
    # B = 1, S = 2048 (defaults). Per layer: Q and O 2·68,719,476,736; K and V
    # 2·17,179,869,184; Q·Kᵀ and P·V 2·(2·32·2048·2048·128) = 68,719,476,736; MLP
    # 6·2048·4096·14336 = 721,554,505,728 -> 962,072,674,304; × 32 = 30,786,325,577,728;
    # last-token logits 2·4096·128256 = 1,050,673,152. Total 30,787,376,250,880.
    got = shardcost.model_metrics(LLAMA_8B)
    assert got["metrics"]["flops_per_chip"] == 30_787_376_250_880


@pytest.mark.parametrize("path", list(PARAMETERS), ids=lambda p: p.stem)
def test_decode_flops_and_kv_from_the_shapes(path: Path) -> None:
    d, L, h, hkv, dh, ff, V = SHAPES[path]
    lengths = [4096, 64, 64]
    got = shardcost.model_metrics(path, "decode", past_seq_len=lengths)
    B = len(lengths)
    # Mistral-7B slides a 4096 window: its cache keeps the last 4095 positions (Hugging
    # Face's sliding-window cache), and the new token attends those and itself.
    kept = [min(n, 4095) if path == MISTRAL_7B else n for n in lengths]
    per_layer = (
        2 * (2 * B * d * h * dh)  # Q and O projections of the new tokens
        + 2 * (2 * B * d * hkv * dh)  # K and V
        + sum(2 * 2 * h * (n + 1) * dh for n in kept)  # keys include the new token
        + 3 * (2 * B * d * ff)
    )
    assert got["metrics"]["flops_total"] == L * per_layer + 2 * B * d * V
    # the cache holds the past: 2 (K and V) · h_kv · dh · 2 bytes per position per layer
    assert got["metrics"]["kv_cache_total"] == L * 2 * hkv * dh * 2 * sum(kept)
    assert got["params"]["batch_size"] == 3


def test_tied_embeddings_are_counted_once() -> None:
    got = shardcost.model_metrics(LLAMA_1B)
    head = next(c for c in got["components"] if c["name"] == "lm_head")
    assert head["metrics"]["weight_memory_per_chip"] == 0
    assert got["parameters"]["lm_head"] == 0
    assert any("tie_word_embeddings" in n for n in got["notes"])
    # The LM head still costs its FLOPs: 2 · 2048 · 128256 for the last token.
    assert head["metrics"]["flops_per_chip"] == 525_336_576
    # ... and still reads the whole shared matrix: 128256 · 2048 · 2 B at 3350 GB/s,
    # while the embedding reads only the 2048 rows it gathers (2048 · 2048 · 2 B).
    timed = shardcost.model_metrics(LLAMA_1B, hardware="h100-sxm")
    parts = {c["name"]: c["timing"]["load_time_ms"] for c in timed["components"]}
    assert parts["lm_head"] == pytest.approx(525_336_576 / 3350e6)
    assert parts["embedding"] == pytest.approx(2048 * 2048 * 2 / 3350e6)


def test_qwen_biases_shard_with_their_heads() -> None:
    # tp = 4: 7 query heads and 1 KV head per rank; biases (7·128 + 2·128) · 2 bytes
    # = 2,304 bytes per chip per layer.
    got = shardcost.model_metrics(QWEN_7B, layout="tp", tensor_parallel=4)
    biases = next(c for c in got["components"] if c["name"] == "biases")
    assert biases["count"] == 28
    assert biases["metrics"]["weight_memory_per_chip"] == 2_304
    # The attention layer's matrices (29,364,736 less the 4,608 biases); the biases and
    # the two norms (2·3584) are the layer's vectors.
    (block,) = got["parameters"]["blocks"]
    assert (block["mixer"], block["vectors"]) == (29_360_128, 4_608 + 7_168)


def test_tensor_parallel_weights_per_chip_by_hand() -> None:
    # Llama-3.1-8B, tp = 8: embedding and LM head 128256/8·4096 = 65,667,072 params
    # each; per layer 41,943,040/8 + 176,160,768/8 + 8,192 (norms, replicated) =
    # 27,271,168; × 32 = 872,677,376; final norm 4,096. Sum 1,004,015,616 params,
    # 2,008,031,232 bytes per chip.
    got = shardcost.model_metrics(LLAMA_8B, layout="tp", tensor_parallel=8)
    assert got["chips"] == 8
    assert got["metrics"]["weight_memory_per_chip"] == 2_008_031_232
    assert got["layouts"] == {"embedding": "tp", "attention": "tp", "ffn": "tp", "lm_head": "tp"}


@pytest.mark.parametrize(
    ("layout", "companion"),
    [("single", "single"), ("tp", "tp"), ("cp-kv-sharded", "sp"), ("tp-cp", "tp-sp")],
)
def test_the_model_is_the_sum_of_its_layers(layout: str, companion: str) -> None:
    # Each layer evaluated on its own through the public API, then added up by hand.
    params = {"batch_size": 2, "seq_len": 1024, "hardware": "h100-sxm"}
    if layout in ("tp", "tp-cp"):
        params["tensor_parallel"] = 4
    if layout in ("cp-kv-sharded", "tp-cp"):
        params["context_parallel"] = 2
    got = shardcost.model_metrics(LLAMA_8B, layout=layout, **params)
    d, L, h, hkv, dh, ff, V = SHAPES[LLAMA_8B]
    shape = {"hidden_size": d}
    parts = [
        (1, "embedding", companion, {**shape, "vocab_size": V}),
        (L, "attention", layout, {**shape, "num_heads": h, "num_kv_heads": hkv, "head_dim": dh}),
        (L, "ffn", companion, {**shape, "intermediate_size": ff}),
        (1, "lm_head", companion, {**shape, "vocab_size": V}),
    ]
    flops, wall = 0, 0.0
    for n, layer, lay, dims in parts:
        mine = dict(params)
        if layer == "lm_head":
            del mine["seq_len"]  # serving prefill: logits for the last position only
        with warnings.catch_warnings():  # sp: the last positions' logits on one CP rank
            warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
            one = shardcost.metrics(lay, "prefill", layer=layer, **dims, **mine)
        flops += n * one["metrics"]["flops_per_chip"]
        wall += n * one["timing"]["wall_clock_time_ms"]
    # norms: (2 per layer + 1 final) · d · 2 bytes, read at 3350 GB/s
    wall += (2 * L + 1) * d * 2 / 3350e6
    assert got["metrics"]["flops_per_chip"] == flops
    assert got["timing"]["wall_clock_time_ms"] == pytest.approx(wall, rel=1e-12)


def test_memory_fits_or_not() -> None:
    seventy = json.loads(LLAMA_8B.read_text())
    seventy |= {
        "hidden_size": 8192,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "intermediate_size": 28672,
    }
    # 70B-shaped: 2·128256·8192 + 80·(2·8192² + 2·8192·1024 + 3·8192·28672 + 2·8192)
    # + 8192 = 70,553,706,496 parameters: 141 GB in bfloat16, more than one H100's 80 GB.
    got = shardcost.model_metrics(seventy, hardware="h100-sxm")
    assert got["parameters"]["total"] == 70_553_706_496
    assert got["memory"]["fits"] is False
    assert got["memory"]["capacity_per_chip"] == 80 * 2**30  # "80GB" of HBM3 is binary
    split = shardcost.model_metrics(seventy, layout="tp", tensor_parallel=8, hardware="h100-sxm")
    assert split["memory"]["fits"] is True
    assert shardcost.model_metrics(seventy)["memory"]["fits"] is None  # no hardware, no verdict


def test_head_dim_apart_from_hidden_size() -> None:
    # Mistral-Nemo-shaped: d = 5120 but 32 heads of 128 (4096 wide). Wq and Wo are
    # 5120 × 4096: per layer 2·5120·4096 + 2·5120·1024 + 3·5120·14336 + 2·5120 =
    # 41,943,040 + 10,485,760 + 220,200,960 + 10,240 = 272,640,000.
    nemo = json.loads(MISTRAL_7B.read_text()) | {
        "hidden_size": 5120,
        "head_dim": 128,
        "num_hidden_layers": 40,
        "vocab_size": 131072,
        "sliding_window": None,
    }
    got = shardcost.model_metrics(nemo)
    assert got["parameters"]["per_layer"] == 272_640_000
    assert got["metrics"]["weight_memory_total"] == 2 * got["parameters"]["total"]
    assert got["notes"] == []


def test_the_sliding_window_is_modelled() -> None:
    # Mistral-7B slides over 4096 positions: past 4095 cached positions a layer caches no
    # more (Hugging Face keeps W − 1). 32 layers · 8 KV heads · 128 · 2 (K, V) · 2 bytes
    # = 131,072 bytes per position: 4095 · 131,072 = 536,739,840 at any longer past.
    for past in (4095, 8192, 100_000):
        got = shardcost.model_metrics(MISTRAL_7B, "decode", past_seq_len=past)
        assert got["metrics"]["kv_cache_per_chip"] == 536_739_840
    shorter = shardcost.model_metrics(MISTRAL_7B, "decode", past_seq_len=1000)
    assert shorter["metrics"]["kv_cache_per_chip"] == 1000 * 131_072


def test_config_fields_and_families() -> None:
    config = load_config(QWEN_7B)
    names = {v.name for v in config.blocks[0].vectors}
    assert config.family == "qwen2" and names == {"norms", "q bias", "k, v biases"}
    assert config.name == "qwen2.5-7b"
    llama = load_config(LLAMA_8B)
    assert {v.name for v in llama.blocks[0].vectors} == {"norms"}
    assert not llama.tie_word_embeddings
    biased = json.loads(LLAMA_8B.read_text()) | {"attention_bias": True, "mlp_bias": True}
    # Llama's attention_bias adds Q, K, V and O biases (4096 + 1024 + 1024 + 4096 = 10,240
    # per layer); mlp_bias adds gate, up and down (14336 + 14336 + 4096 = 32,768).
    got = shardcost.model_metrics(biased)
    assert got["parameters"]["total"] == 8_030_261_248 + 32 * (10_240 + 32_768)


@pytest.mark.parametrize(
    ("source", "params", "message"),
    [
        ("missing.json", {}, "no such file"),
        ({"model_type": "t5"}, {}, "model_type='t5'; supported families: llama, mistral"),
        ({"model_type": "gpt2"}, {}, "n_embd is missing; a gpt2 config needs it"),
        ({"model_type": "llama", "hidden_size": 64}, {}, "num_attention_heads is missing"),
        (LLAMA_8B, {"hidden_size": 1024}, "hidden_size comes from the model's config.json"),
        (LLAMA_8B, {"context_parallel": 2}, "context_parallel is read by no component"),
        (LLAMA_8B, {"seq_len": 0}, "seq_len=0"),
        (QWEN_7B, {"tensor_parallel": 8}, "num_heads=28 is not divisible by tensor_parallel=8"),
    ],
)
def test_bad_input_is_one_clear_error(source: object, params: dict, message: str) -> None:
    layout = "tp" if "tensor_parallel" in params else "single"
    with pytest.raises(shardcost.InputError, match=message):
        shardcost.model_metrics(source, layout=layout, **params)


def test_bad_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(shardcost.InputError, match=r"config.json: not valid JSON \(line 1"):
        shardcost.model_metrics(path)


def test_model_json_components_carry_chips_collectives_and_units() -> None:
    # Llama 3.2 1B, prefill, tp = 2, defaults batch_size = 1, seq_len = 2048: each layer's
    # output all-reduce moves its tokens' hidden rows, 2048 · 2048 · 2 bytes = 8,388,608
    got = shardcost.model_metrics(LLAMA_1B, layout="tp", tensor_parallel=2)
    assert got["chips"] == 2
    assert got["units"]["memory"] == "bytes"
    by_name = {c["name"]: c for c in got["components"]}
    allreduce = {
        "name": "output_allreduce",
        "kind": "all-reduce",
        "group": "tp",
        "bytes_per_chip": 2048 * 2048 * 2,
    }
    assert by_name["attention"]["collectives"] == [allreduce]
    assert by_name["ffn"]["collectives"] == [allreduce]
    assert by_name["norms"]["collectives"] == []  # vectors send nothing
    assert all(c["chips"] == 2 for c in got["components"])
