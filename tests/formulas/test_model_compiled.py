"""Whole models through the compiled functions (``compile_model``) against
``model_metrics``, the SymPy path: the same metrics exactly, timings within float64's
rounding."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

import shardcost
from shardcost.formulas.model import compile_model, load_config, walk
from shardcost.formulas.plan import stages

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"
EXACT = ("chips", "metrics", "per_layer", "memory")
# dense, tied (Llama-3.2-1B), biases sharded with heads (Qwen2.5), a sliding window
# (Mistral), sinks and sliding + full blocks of MoE (gpt-oss), MLA + dense and MoE blocks
# (DeepSeek-V3)
FAMILIES = [
    "llama-3.1-8b",
    "llama-3.2-1b",
    "qwen2.5-7b",
    "mistral-7b",
    "gpt-oss-20b",
    "deepseek-v3",
]
# the dimensions that vary, call by call
PREFILL = [{"batch_size": 2, "seq_len": 512}, {"batch_size": 1, "seq_len": 3}]
DECODE = [{"batch_size": 3, "past_seq_len": 5000}, {"batch_size": 16, "past_seq_len": 1}]


def model_metrics(name: str, phase: str, layout: str, hardware: str | None, **kw: Any) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        return shardcost.model_metrics(
            CONFIGS / f"{name}.json", phase, layout=layout, hardware=hardware, **kw
        )


def assert_same(got: dict, want: dict) -> None:
    for key in EXACT:
        assert got[key] == want[key], key
    assert ("timing" in got) == ("timing" in want)
    if "timing" in want:
        assert got["timing"] == pytest.approx(want["timing"], rel=1e-12)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize("hardware", [None, "h100-sxm"])
def test_a_compiled_model_is_model_metrics(name: str, phase: str, hardware: str | None) -> None:
    f = shardcost.compile_model(CONFIGS / f"{name}.json", phase, layout="tp", hardware=hardware)
    for call in PREFILL if phase == "prefill" else DECODE:
        for tp in (1, 2):  # varied per call, as a planner does
            got = f(**call, tensor_parallel=tp)
            assert_same(got, model_metrics(name, phase, "tp", hardware, tensor_parallel=tp, **call))


@pytest.mark.parametrize(
    ("name", "layout", "fixed"),
    [
        ("llama-3.1-8b", "single", {}),
        ("llama-3.1-8b", "cp-kv-sharded", {"context_parallel": 2}),
        ("llama-3.2-1b", "tp-cp", {"context_parallel": 2, "tensor_parallel": 2}),
        ("qwen2.5-7b", "ring", {"context_parallel": 4, "kv_cache_dtype": "fp8"}),
        ("deepseek-v3", "tp", {"tensor_parallel": 8, "weight_dtype": "fp8"}),
    ],
)
def test_layouts_and_fixed_parameters(name: str, layout: str, fixed: dict) -> None:
    for phase, calls in (("prefill", PREFILL), ("decode", DECODE)):
        f = compile_model(CONFIGS / f"{name}.json", phase, layout=layout, params=fixed)
        timed = compile_model(
            CONFIGS / f"{name}.json", phase, layout=layout, hardware="h200", params=fixed
        )
        for call in calls:
            assert_same(f(**call), model_metrics(name, phase, layout, None, **fixed, **call))
            want = model_metrics(name, phase, layout, "h200", **fixed, **call)
            assert_same(timed(**call), want)


def test_element_size_per_call_moves_the_peak() -> None:
    # bytes_per_elem=1 computes at the FP8 peak: the compute time follows it per call
    f = shardcost.compile_model(CONFIGS / "llama-3.1-8b.json", hardware="h100-sxm")
    for b in (1, 2):
        want = model_metrics("llama-3.1-8b", "prefill", "single", "h100-sxm", bytes_per_elem=b)
        assert_same(f(bytes_per_elem=b), want)


def test_by_hand() -> None:
    # Llama-3.1-8B decode, one request, no hardware: FLOPs 2 · parameters touched per token
    # plus attention. Per layer: projections 2·(2·4096·4096 + 2·4096·1024) = 83,886,080,
    # MLP 2·3·4096·14336 = 352,321,536, Q·Kᵀ and P·V 2·2·32·128·(100 + 1) = 1,654,784:
    # 437,862,400; × 32 = 14,011,596,800; LM head 2·4096·128256 = 1,050,673,152.
    f = shardcost.compile_model(CONFIGS / "llama-3.1-8b.json", "decode")
    got = f(batch_size=1, past_seq_len=100)
    assert got["metrics"]["flops_per_chip"] == 14_011_596_800 + 1_050_673_152
    # KV: 32 layers · 2 · 8 heads · 128 · 2 bytes · 100 positions
    assert got["metrics"]["kv_cache_per_chip"] == 32 * 2 * 8 * 128 * 2 * 100
    assert got["chips"] == 1 and "timing" not in got


def test_what_a_compiled_model_refuses() -> None:
    llama = CONFIGS / "llama-3.1-8b.json"
    f = compile_model(llama, "decode")
    with pytest.raises(shardcost.InputError, match="seq_len: a compiled model takes"):
        f(seq_len=4)
    with pytest.raises(shardcost.InputError, match="one whole number"):
        f(past_seq_len=[4, 5])
    with pytest.raises(shardcost.InputError, match="ragged batch"):
        compile_model(llama, "decode", params={"past_seq_len": [4, 5]})
    with pytest.raises(shardcost.InputError, match=r"comes from the model's config\.json"):
        compile_model(llama, params={"hidden_size": 1024})
    with pytest.raises(shardcost.InputError, match="context_parallel is read by no component"):
        compile_model(llama, params={"context_parallel": 2})
    with pytest.raises(shardcost.InputError, match="not divisible by tensor_parallel"):
        compile_model(llama, layout="tp")(tensor_parallel=3)


@pytest.mark.parametrize("name", ["llama-3.2-1b", "deepseek-v3", "gpt-oss-20b"])
@pytest.mark.parametrize("pp", [2, 3])
def test_the_stages_walk_the_model_once(name: str, pp: int) -> None:
    # The planner walks each pipeline stage's pieces; together they are the model's walk.
    config = load_config(CONFIGS / f"{name}.json")
    whole = [(p.slot, p.block, p.part, p.vectors) for p in walk(config) for _ in range(p.count)]
    staged = [
        (p.slot, p.block, p.part, p.vectors)
        for s in stages(config, pp)
        for p in walk(config, s.layers, first=s.first, last=s.last)
        for _ in range(p.count)
    ]
    assert sorted(staged, key=repr) == sorted(whole, key=repr)
