"""The FFN layer: gated and plain, four layouts, against hand arithmetic and an
independent model; verify proves them; exports carry them."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shardcost
from shardcost.formulas import Conventions, Phase, get_layout
from shardcost.formulas.sharding import (
    cached_over_cp,
    heads_over,
    keys_over_cp,
    sequence_over_cp,
    token_share,
)
from shardcost.symbolic import Trace
from shardcost.symbolic.dimensions import tp

# Llama-2-7B's FFN: d = 4096, d_ff = 11008, gated (SwiGLU); prefill B = 2, S = 1024.
LLAMA2 = {"hidden_size": 4096, "intermediate_size": 11008, "batch_size": 2, "seq_len": 1024}


def ffn(layout: str, phase: str = "prefill", **params: object) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        return shardcost.metrics(layout, phase, layer="ffn", **params)["metrics"]


def test_single_gated_prefill_by_hand() -> None:
    m = ffn("single", **LLAMA2)
    # M = 2 * 1024 = 2048 tokens; three products of 2 * M * d * d_ff:
    # 2048 * 4096 = 8,388,608; * 11008 = 92,341,796,864; * 6 = 554,050,781,184 FLOPs
    assert m["flops_per_chip"] == 554_050_781_184
    # weights 3 * 4096 * 11008 * 2 B = 270,532,608
    assert m["weight_memory_per_chip"] == 270_532_608
    # X and Y: 2 * 2048 * 4096 * 2 = 33,554,432; gate and up outputs 2 * 2048 * 11008 * 2
    # = 90,177,536; total 123,731,968
    assert m["activation_memory_per_chip"] == 123_731_968
    assert m["kv_cache_per_chip"] == 0 and m["communication_bytes"] == 0


def test_plain_mlp_has_two_matrices() -> None:
    m = ffn("single", **LLAMA2, ffn_gated=False)
    assert m["flops_per_chip"] == 369_367_187_456  # two products: 4 * 92,341,796,864
    assert m["weight_memory_per_chip"] == 2 * 4096 * 11008 * 2


def test_tp_shards_columns_and_all_reduces_the_output() -> None:
    m = ffn("tp", **LLAMA2, tensor_parallel=4)
    assert m["flops_per_chip"] == 554_050_781_184 // 4
    assert m["weight_memory_per_chip"] == 270_532_608 // 4
    # X, Y full (33,554,432) + gate/up of 11008/4 = 2752 columns: 2 * 2048 * 2752 * 2
    assert m["activation_memory_per_chip"] == 33_554_432 + 22_544_384
    # all-reduce of Y[2048, 4096] in bf16: 16,777,216 bytes
    assert m["communication_bytes"] == 16_777_216


def test_sp_shards_tokens_with_no_communication() -> None:
    m = ffn("sp", **LLAMA2, context_parallel=4)
    assert m["flops_per_chip"] == 554_050_781_184 // 4
    assert m["weight_memory_per_chip"] == 270_532_608  # a full copy on every rank
    assert m["weight_memory_total"] == 4 * 270_532_608
    assert m["communication_bytes"] == 0


def test_decode_runs_the_new_tokens() -> None:
    m = ffn(
        "tp-sp",
        "decode",
        hidden_size=4096,
        intermediate_size=11008,
        batch_size=8,
        tensor_parallel=2,
        context_parallel=4,
    )
    # 8 new tokens over 4 CP ranks: 2 each; columns 11008 / 2 = 5504;
    # 3 * 2 * 2 * 4096 * 5504 = 270,532,608 FLOPs; all-reduce 2 * 4096 * 2 = 16,384 B
    assert m["flops_per_chip"] == 270_532_608
    assert m["communication_bytes"] == 16_384


def test_columns_must_divide() -> None:
    with pytest.raises(
        shardcost.ImpossibleSplitError,
        match="intermediate_size=11008 is not divisible by tensor_parallel=3",
    ):
        ffn("tp", **LLAMA2, tensor_parallel=3)


def reference(layout: str, phase: str, p: dict, gated: bool) -> dict:
    """An independent count: tokens and columns per chip, then the products."""
    tp = p.get("tensor_parallel", 1) if "tp" in layout else 1
    cp = p.get("context_parallel", 1) if "sp" in layout else 1
    d, ff, batch, b = p["hidden_size"], p["intermediate_size"], p["batch_size"], 2
    if phase == "prefill":
        tokens = batch * -(-p["seq_len"] // cp)
    else:
        tokens = -(-(batch * p.get("new_tokens", 1)) // cp)
    cols = ff // tp
    n = 3 if gated else 2
    flops = n * 2 * tokens * d * cols
    weights = n * d * cols * b
    acts = (2 * tokens * d + (n - 1) * tokens * cols) * b
    comm = tokens * d * b if tp > 1 else 0
    return {
        "flops_per_chip": flops,
        "weight_memory_per_chip": weights,
        "activation_memory_per_chip": acts,
        "communication_bytes": comm,
    }


@pytest.mark.parametrize("layout", ["single", "tp", "sp", "tp-sp"])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
@settings(max_examples=30, deadline=None)
@given(
    tp=st.sampled_from([1, 2, 4]),
    cp=st.integers(1, 5),
    batch=st.integers(1, 9),
    length=st.integers(1, 5000),
    ff=st.sampled_from([64, 96, 11008, 14336]),
    gated=st.booleans(),
)
def test_matches_an_independent_count(
    layout: str, phase: str, tp: int, cp: int, batch: int, length: int, ff: int, gated: bool
) -> None:
    p = {"hidden_size": 256, "intermediate_size": ff, "batch_size": batch}
    p |= {"seq_len": length} if phase == "prefill" else {"new_tokens": length % 4 + 1}
    if "tp" in layout:
        p["tensor_parallel"] = tp
    if "sp" in layout:
        p["context_parallel"] = cp
    got = ffn(layout, phase, **p, ffn_gated=gated)
    for name, value in reference(layout, phase, p, gated).items():
        assert got[name] == value, name


def test_verify_proves_every_ffn_layout() -> None:
    results = shardcost.verify(layer="ffn", every_convention=True)
    assert len(results) == 4 * 2 * 2  # layouts x phases x ffn_gated
    assert all(r.ok for r in results)


def test_each_layout_performs_the_collectives_its_checks_declare() -> None:
    for lay in shardcost.formulas.all_layouts("ffn"):
        for phase in lay.phases:
            built = {c.name for c in lay.cost(phase).collectives}
            declared = lay.checks.sent(phase, Conventions())
            assert declared is not None and built == {s.collective for s in declared}, lay.name


# -- the shares of a dimension (formulas/sharding.py) that token_share moved into

CP_LAYOUTS = {False: "single", True: "sp"}


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("over_cp", [False, True])
def test_every_per_token_layer_runs_the_same_token_share(phase: Phase, over_cp: bool) -> None:
    """The FFN and the embedding take their tokens from one share: the same steps."""

    def derived(layer: str) -> tuple:
        cost = get_layout(CP_LAYOUTS[over_cp], layer).cost(phase)
        return (cost.derivation.section("derived"), cost.derivation.splits)

    t = Trace()
    token_share(t, phase, over_cp=over_cp)
    assert derived("ffn") == derived("embedding") == (tuple(t.steps), tuple(t.splits))


def attention_keeps(t: Trace, layout: str, phase: Phase) -> bool:
    """Whether attention's ``layout`` has the steps, splits and requirements of ``t``."""
    d = get_layout(layout).cost(phase).derivation
    return (
        all(d.step(s.key) == s for s in t.steps)
        and set(t.splits) <= set(d.splits)
        and set(t.requirements) <= set(d.requirements)
    )


def test_the_shares_write_attentions_steps_to_the_letter() -> None:
    """The shared shares are attention's own (keys, words, symbols, LaTeX, notes), so the
    attention layer can take them up without a byte of its reports changing."""
    prefill, decode = Phase.PREFILL, Phase.DECODE
    t = Trace()
    token_share(t, prefill, over_cp=False)
    assert attention_keeps(t, "single", prefill)
    t = Trace()
    sequence_over_cp(t)
    assert attention_keeps(t, "cp-kv-sharded", prefill)
    t = Trace()
    heads_over(t, tp, "tensor-parallel")
    assert attention_keeps(t, "tp", prefill)
    d = get_layout("cp-kv-sharded").cost(decode).derivation
    t = Trace()
    keys_over_cp(t, d.step("key_len").symbol)
    cached_over_cp(t, d.step("kv_len").symbol)
    assert attention_keeps(t, "cp-kv-sharded", decode)
