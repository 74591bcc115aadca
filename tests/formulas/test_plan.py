"""Plans: memory per chip and pipeline figures worked out by hand, serving times against
``model_metrics`` (the SymPy path), and the planner against an exhaustive search written
here."""

from __future__ import annotations

import itertools
import warnings
from fractions import Fraction
from pathlib import Path

import pytest

import shardcost
from shardcost.errors import InputError
from shardcost.formulas.families import load_config
from shardcost.formulas.plan import (
    CP_LAYOUTS,
    Plan,
    Workload,
    parse_plan,
    plan_model,
    search,
    stages,
)

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"
LLAMA_70B = CONFIGS / "llama-3.1-70b.json"
LLAMA_1B = CONFIGS / "llama-3.2-1b.json"
DEEPSEEK_V3 = CONFIGS / "deepseek-v3.json"


def test_a_plan_reads_back_as_written() -> None:
    plan = parse_plan("tp=8,pp=2,ep=8")
    assert (plan.tp, plan.pp, plan.ep, plan.cp, plan.dp, plan.chips) == (8, 2, 8, 1, 1, 16)
    assert plan.label == "tp=8,ep=8,pp=2"
    assert parse_plan(plan.label) == plan
    long = parse_plan("tensor_parallel=2,context_parallel=4,cp_layout=ring")
    assert (long.tp, long.cp, long.cp_layout, long.chips) == (2, 4, "ring", 8)
    assert parse_plan("").label == "single"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tp=0", "tp='0' is not a whole number of at least 1"),
        ("tp=x", "tp='x' is not a whole number"),
        ("zz=2", "'zz=2' is not KEY=VALUE"),
        ("tp", "'tp' is not KEY=VALUE"),
        ("cp=2,cp_layout=spiral", "cp_layout='spiral' is unknown"),
        ("pp=2,schedule=zigzag", "schedule='zigzag' is unknown"),
        ("pp=2,chunks=2", "chunks applies to schedule=interleaved only"),
    ],
)
def test_a_bad_plan_is_one_line(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        parse_plan(text)
    assert "\n" not in str(err.value)


def test_stages_hold_whole_contiguous_layers() -> None:
    config = load_config(LLAMA_70B)
    # 80 layers over 3 stages: 27, 27, 26 (the first 80 mod 3 = 2 stages one more)
    found = stages(config, 3)
    assert [s.num_layers for s in found] == [27, 27, 26]
    assert (found[0].first, found[0].last, found[2].first, found[2].last) == (
        True,
        False,
        False,
        True,
    )
    # gpt-oss alternates sliding and full layers: 24 over 4 stages, 3 of each kind per stage
    hybrid = stages(load_config(CONFIGS / "gpt-oss-20b.json"), 4)
    assert all(dict(s.layers) == {0: 3, 1: 3} for s in hybrid)


def test_memory_per_chip_of_a_pipelined_tensor_parallel_plan() -> None:
    planned = plan_model(LLAMA_70B, "tp=4,pp=2", "h100-sxm", Workload(8192, 256, 8))
    m = planned.result.memory
    # One layer on one of 4 TP ranks, bf16: Wq, Wo 8192·8192 and Wk, Wv 8192·1024, over
    # 4: (134,217,728 + 16,777,216)·2/4 = 75,497,472; gate, up, down 3·8192·28672·2/4 =
    # 352,321,536; two norms 2·8192·2 = 32,768 (whole on every rank): 427,851,776.
    # The last stage: 40 layers 17,114,071,040 + final norm 16,384 + LM head
    # 128256·8192·2/4 = 525,336,576: 17,639,424,000 (the first stage's embedding is as big
    # as the head, without the final norm).
    assert m.weights == 17_639_424_000
    # KV: 40 layers · 8 requests · 8447 positions (8192 + 256 − 1) · K and V · 2 KV heads
    # per rank · 128 · 2 bytes = 2,767,912,960
    assert m.kv_cache == 40 * 8 * 8447 * 2 * 2 * 128 * 2 == 2_767_912_960
    # h100-sxm's "80GB" of HBM3 is 80 GiB = 85,899,345,920 bytes; 90 % usable (the
    # default 0.1 reserve): int(0.9 · 85,899,345,920) = 77,309,411,328
    assert m.capacity == 85_899_345_920 and m.usable == 77_309_411_328 and m.fits
    p = planned.result.pipeline
    # 2 stages, 2 microbatches of 4: bubble (pp − 1)/(m + pp − 1) = 1/3; a prefill
    # microbatch sends 4·8192·8192·2 = 536,870,912 bytes between stages, a decode step
    # 4·8192·2 = 65,536
    assert (p.stages, p.layers_per_stage, p.microbatches, p.microbatch_requests) == (
        2,
        (40, 40),
        2,
        4,
    )
    assert Fraction(p.bubble_fraction).limit_denominator(100) == Fraction(1, 3)
    assert (p.p2p_bytes_prefill, p.p2p_bytes_decode) == (536_870_912, 65_536)


@pytest.mark.parametrize(
    ("text", "bubble", "held"),
    [
        # (pp − 1)/(m + pp − 1) = 3/7; GPipe holds all m = 4 microbatches, 1F1B min(m, pp) = 4
        ("pp=4,microbatches=4,schedule=gpipe", Fraction(3, 7), 4),
        ("pp=4,microbatches=4", Fraction(3, 7), 4),
        # m = 8: 3/11; GPipe 8, 1F1B min(8, 4) = 4
        ("pp=4,microbatches=8,schedule=gpipe", Fraction(3, 11), 8),
        ("pp=4,microbatches=8", Fraction(3, 11), 4),
        # interleaved, v = 2: (pp − 1)/(v·m + pp − 1) = 3/11 at m = 4; Megatron's first
        # stage holds pp·(1 + (pp − 1)/(pp·v)) = 4·(1 + 3/8) = 5.5
        ("pp=4,microbatches=4,schedule=interleaved,chunks=2", Fraction(3, 11), 5.5),
    ],
)
def test_pipeline_bubbles_by_hand(text: str, bubble: Fraction, held: float) -> None:
    planned = plan_model(LLAMA_1B, text, "h100-sxm", Workload(512, 8, 8))
    p = planned.result.pipeline
    assert Fraction(p.bubble_fraction).limit_denominator(1000) == bubble
    assert p.in_flight_training == held


def test_without_a_pipeline_times_are_the_models_own() -> None:
    """TTFT is one prefill of the batch; TPOT the mean decode step over the output, each
    at its own past length: the same as model_metrics (the SymPy path) gives."""
    workload = Workload(prompt=1024, output=4, concurrency=2)
    planned = plan_model(LLAMA_70B, "tp=8", "h100-sxm", workload)
    kw = {"layout": "tp", "hardware": "h100-sxm", "tensor_parallel": 8, "batch_size": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prefill = shardcost.model_metrics(LLAMA_70B, "prefill", seq_len=1024, **kw)
        steps = [
            shardcost.model_metrics(LLAMA_70B, "decode", past_seq_len=p, **kw)
            for p in (1024, 1025, 1026)  # the 2nd, 3rd and 4th output tokens
        ]
    s = planned.result.serving
    assert s.ttft_ms == pytest.approx(prefill["timing"]["wall_clock_time_ms"], rel=1e-9)
    mean = sum(x["timing"]["wall_clock_time_ms"] for x in steps) / 3
    assert s.tpot_ms == pytest.approx(mean, rel=1e-9)
    assert s.e2e_ms == pytest.approx(s.ttft_ms + 3 * s.tpot_ms)
    # 2 requests · 4 tokens over E2E, on 8 chips
    assert s.tokens_per_s_per_chip == pytest.approx(2 * 4 / (s.e2e_ms / 1e3) / 8)


def _independent_best(path: Path, chips: int, workload: Workload) -> tuple[float, set[str]]:
    """Every factorisation of ``chips`` into tp·cp·pp·dp, each CP layout, evaluated one by
    one; the most tokens/s per chip among those that fit, and the plans that fit."""
    best, fitting = 0.0, set()
    sizes = [k for k in range(1, chips + 1) if chips % k == 0]
    for tp, cp, pp in itertools.product(sizes, sizes, sizes):
        if chips % (tp * cp * pp):
            continue
        dp = chips // (tp * cp * pp)
        for layout in CP_LAYOUTS.values() if cp > 1 and tp == 1 else ["cp-kv-sharded"]:
            plan = Plan(tp=tp, cp=cp, pp=pp, dp=dp, cp_layout=layout)
            try:
                r = plan_model(path, plan, "h100-sxm", workload).result
            except InputError:
                continue
            if r.memory.fits:
                fitting.add(plan.label)
                best = max(best, r.serving.tokens_per_s_per_chip)
    return best, fitting


def test_the_planner_finds_what_an_exhaustive_search_finds() -> None:
    workload = Workload(prompt=8192, output=64, concurrency=8)
    found = search(LLAMA_70B, 8, "h100-sxm", workload)
    best, fitting = _independent_best(LLAMA_70B, 8, workload)
    assert {r.plan.label for r in found.results} == fitting
    assert found.best["throughput"].serving.tokens_per_s_per_chip == pytest.approx(best)
    for r in found.results:  # every plan returned is whole and fits
        assert r.plan.chips == 8 and r.memory.used <= r.memory.usable
    # every front plan is beaten by none on both axes
    for f in found.front:
        assert not any(
            r.serving.tpot_ms < f.serving.tpot_ms
            and r.serving.tokens_per_s_per_chip > f.serving.tokens_per_s_per_chip
            for r in found.results
        )


def test_context_parallel_alone_does_not_fit_a_70b_model_on_8_chips() -> None:
    found = search(LLAMA_70B, 8, "h100-sxm", Workload(8192, 256, 8))
    dropped = {p for plans in found.too_big_plans.values() for p, _ in plans}
    # 70.6 B parameters in bf16 on every CP rank: 141 GB of weights alone
    for layout in ("kv-sharded", "allgather", "ring", "ulysses"):
        assert f"cp=8,cp_layout={layout}" in dropped
    weights_only = next(k for k in found.too_big if k.startswith("weights alone"))
    assert any(p == "cp=8,cp_layout=ring" for p, _ in found.too_big_plans[weights_only])
    assert "tp=8" in {r.plan.label for r in found.results}


def test_deepseek_v3_on_64_chips_uses_expert_parallelism() -> None:
    found = search(DEEPSEEK_V3, 64, "h200", Workload(4096, 64, 256))
    assert found.results
    assert any(r.plan.ep > 1 for r in found.front)
    assert found.best["throughput"].plan.ep > 1
    # MLA has no context-parallel layout: no plan with cp is even tried
    assert all(r.plan.cp == 1 for r in found.results)


def test_tied_embeddings_are_copied_to_the_last_stage() -> None:
    one = plan_model(LLAMA_1B, "pp=1", "h100-sxm").result
    two = plan_model(LLAMA_1B, "pp=2", "h100-sxm").result
    assert not one.notes
    assert any("own copy" in n for n in two.notes)
    # One chip holds the embedding (128256 × 2048 in bf16: 525,336,576 bytes), 16 layers of
    # 60,821,504 parameters and the final norm. The last of two stages holds 8 layers, the
    # final norm and the LM head's own copy of the embedding's matrix: one chip's weights
    # less 8 layers, 2,471,628,800 − 8·60,821,504·2 = 1,498,484,736.
    assert one.memory.weights == 525_336_576 + 16 * 60_821_504 * 2 + 2048 * 2
    assert two.memory.weights == one.memory.weights - 8 * 60_821_504 * 2 == 1_498_484_736


def test_a_plan_the_model_cannot_take_is_refused_in_one_line() -> None:
    with pytest.raises(InputError, match="MoE layer has no context-parallel layout"):
        plan_model(CONFIGS / "gpt-oss-20b.json", "cp=2", "h100-sxm")
    with pytest.raises(InputError, match="ep=3 does not divide"):
        plan_model(DEEPSEEK_V3, "tp=2,ep=3", "h200")
    with pytest.raises(InputError, match="pipeline stages"):
        plan_model(LLAMA_1B, "pp=32", "h100-sxm")
    with pytest.raises(InputError, match="batch_size is set by the plan or the workload"):
        plan_model(LLAMA_1B, "tp=2", "h100-sxm", params={"batch_size": 4})


def test_the_api_searches_or_evaluates_one_plan() -> None:
    one = shardcost.plan(LLAMA_70B, hardware="h100-sxm", plan="tp=8", prompt=1024, concurrency=4)
    assert one["plan"]["label"] == "tp=8" and one["memory"]["fits"]
    found = shardcost.plan(LLAMA_70B, hardware="h100-sxm", chips=8, prompt=1024, concurrency=4)
    assert found["chips"] == 8 and found["best"]["throughput"]["plan"]["chips"] == 8
    with pytest.raises(InputError, match="give chips=N to search every plan"):
        shardcost.plan(LLAMA_70B, hardware="h100-sxm", chips=8, plan="tp=8")
    with pytest.raises(InputError, match="reserve="):
        shardcost.plan(LLAMA_70B, hardware="h100-sxm", plan="tp=8", reserve=-0.5)


def test_min_context_sizes_the_cache_for_every_request() -> None:
    from shardcost.formulas.plan import Limits

    workload = Workload(prompt=8192, output=64, concurrency=8)
    # tp=8: one KV head per rank; per request and position 80 layers · K and V · 128 · 2
    # bytes = 40,960 bytes. At 262,144 positions, 8 requests hold 85.9 GB per chip: more
    # than the 72 GB usable, whatever the weights; at 131,072, 42.9 GB, which fits
    # beside the 17.6 GB of weights.
    long = search(LLAMA_70B, 8, "h100-sxm", workload, limits=Limits(min_context=262_144))
    assert "tp=8" not in {r.plan.label for r in long.results}
    fits = search(LLAMA_70B, 8, "h100-sxm", workload, limits=Limits(min_context=131_072))
    r = next(r for r in fits.results if r.plan.label == "tp=8")
    assert r.memory.kv_cache == 8 * 131_072 * 40_960
