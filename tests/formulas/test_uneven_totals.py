"""Totals on uneven splits add up every chip's own share (``Cost.totals``): the first
``total mod parts`` ranks hold ⌈total/parts⌉ and the others ⌊total/parts⌋, as
torch.tensor_split cuts. Per-chip figures stay the busiest chip's. Every path that gives a
total (the engine, compiled scalars and arrays, exact arrays, numba, the cached numeric
program, sweeps) gives the same one."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import shardcost
from shardcost.cli import main as engine
from shardcost.codegen.sweep import sweep
from shardcost.formulas import get_layout
from shardcost.numeric import run_metrics
from shardcost.symbolic import METRICS

ROOT = Path(__file__).resolve().parents[2]
TOTALS = ("flops_total", "weight_memory_total", "activation_memory_total", "kv_cache_total")


def metrics(layout: str, phase: str, layer: str = "attention", **params: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        return shardcost.metrics(layout, phase, layer=layer, **params)


def test_two_tokens_over_four_ranks_count_twice_not_four_times() -> None:
    # LM head, decode, defaults d = 4096, V = 32,000, b = 2: B·T = 2 tokens over cp = 4.
    # Ranks 0 and 1 hold a token each, ranks 2 and 3 none (2 = 2 × 1 + 2 × 0).
    got = metrics("sp", "decode", "lm_head", batch_size=2, context_parallel=4)
    m = got["metrics"]
    assert m["flops_per_chip"] == 2 * 4096 * 32_000 == 262_144_000  # the busiest: one token
    assert m["flops_total"] == 2 * 2 * 4096 * 32_000 == 524_288_000  # two tokens, not 4 × 1
    # logits V per token and the hidden row d, b bytes each: (32,000 + 4096) · 2 = 72,192
    assert m["activation_memory_per_chip"] == 72_192
    assert m["activation_memory_total"] == 2 * 72_192
    assert m["weight_memory_total"] == 4 * 4096 * 32_000 * 2  # replicated on every rank
    assert any("(2 × 1 and 2 × 0, as torch.tensor_split cuts)" in n for n in got["notes"])
    alone = metrics("single", "decode", "lm_head", batch_size=2)["metrics"]
    assert m["flops_total"] == alone["flops_total"]


def test_the_last_positions_logits_count_once() -> None:
    # The issue's `metrics sp --layer lm_head batch_size=2 context_parallel=4` (prefill,
    # logits for each sequence's last position): both last positions sit on the last of 4
    # CP ranks, which computes 2·2·d·V = 2·2·4096·32,000 FLOPs; the other three none.
    got = metrics("sp", "prefill", "lm_head", batch_size=2, context_parallel=4)
    m = got["metrics"]
    assert m["flops_per_chip"] == m["flops_total"] == 524_288_000  # was 4 × 524,288,000
    assert m["activation_memory_total"] == m["activation_memory_per_chip"]
    assert m["weight_memory_total"] == 4 * m["weight_memory_per_chip"]  # a head per rank
    assert got["notes"] == [
        "every sequence's last-position logits sit on one rank of context_parallel=4: "
        "per-chip metrics describe it; the other 3 compute none, and totals count them once"
    ]
    assert metrics("sp", "prefill", "lm_head", batch_size=2, context_parallel=1)["notes"] == []


def test_an_uneven_sequence_adds_up_to_the_single_chip_ffn() -> None:
    # FFN prefill, 10 positions over cp = 4: ranks hold 3, 3, 2, 2. An FFN's FLOPs and
    # activations are per token, so all ranks together do exactly the single chip's work:
    # 2·B·S·(3·d·d_ff) FLOPs with the defaults d = 4096, d_ff = 11,008 (gated: 3 matrices).
    got = metrics("sp", "prefill", "ffn", seq_len=10, context_parallel=4)["metrics"]
    alone = metrics("single", "prefill", "ffn", seq_len=10)["metrics"]
    assert got["flops_total"] == alone["flops_total"] == 2 * 10 * 3 * 4096 * 11_008
    assert got["flops_per_chip"] == 2 * 3 * 3 * 4096 * 11_008  # the busiest rank: 3 tokens
    assert got["activation_memory_total"] == alone["activation_memory_total"]


def test_the_issue_model_is_no_longer_seven_and_a_half_times_one_chip() -> None:
    # Llama 3.1 8B, decode, one request, past 2048, cp-kv-sharded over 8 ranks. The new
    # token's projections run on every rank (8 × 2·4096·(4096 + 2·1024 + 4096) = 8 ×
    # 83,886,080 per layer); its 2049 keys split 1 × 257 + 7 × 256, attended at 2·2·h·dh =
    # 16,384 FLOPs a key: 16,384 · 2049 = 33,570,816; the FFN (2·3·4096·14,336 =
    # 352,321,536) and the LM head (2·4096·128,256 = 1,050,673,152) on the one rank that
    # holds the token. 32 · (671,088,640 + 33,570,816 + 352,321,536) + 1,050,673,152.
    config = ROOT / "examples/configs/llama-3.1-8b.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        model = shardcost.model_metrics(
            config, "decode", layout="cp-kv-sharded", context_parallel=8, batch_size=1
        )
    total = model["metrics"]["flops_total"]
    assert total == 32 * 1_056_980_992 + 1_050_673_152 == 34_874_064_896
    single = shardcost.model_metrics(config, "decode", batch_size=1)
    assert total / single["metrics"]["flops_total"] < 2.2  # was 7.5


# (layer, layout, phase, an uneven point): one of each kind of split
UNEVEN = [
    ("attention", "cp-kv-sharded", "decode", {"past_seq_len": 1000, "context_parallel": 3}),
    ("attention", "tp-cp", "prefill", {"seq_len": 1001, "context_parallel": 4}),
    ("attention", "ulysses", "decode", {"batch_size": 5, "context_parallel": 4}),
    ("ffn", "tp-sp", "decode", {"batch_size": 3, "context_parallel": 2}),
    ("moe", "ep", "prefill", {"batch_size": 1, "seq_len": 7, "expert_parallel": 4}),
    ("embedding", "tp-sp", "decode", {"batch_size": 3, "context_parallel": 2}),
    ("lm_head", "tp", "prefill", {"vocab_size": 32_001, "tensor_parallel": 4}),
    ("lm_head", "tp-sp", "prefill", {"tensor_parallel": 2, "context_parallel": 3}),
]


@pytest.mark.parametrize(("layer", "layout", "phase", "point"), UNEVEN)
def test_every_path_gives_the_same_totals(layer: str, layout: str, phase: str, point) -> None:
    want = metrics(layout, phase, layer, **point)
    assert want["notes"], "the point must be uneven"
    m = want["metrics"]
    busiest = {k: m[k.replace("_total", "_per_chip")] * want["chips"] for k in TOTALS}
    assert any(m[k] < busiest[k] for k in TOTALS)  # somewhere below busiest × chips
    assert all(m[k] <= busiest[k] for k in TOTALS)
    f = shardcost.compile(layout, phase, layer=layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        scalar = f(**point)
        arrays = f(**{k: np.array([v, v]) for k, v in point.items()})
        exact = f(**{k: np.array([v]) for k, v in point.items()}, exact=True)
    for key in TOTALS:
        assert scalar[key] == m[key], key
        assert arrays[key].tolist() == [m[key], m[key]], key
        assert exact[key].tolist() == [m[key]], key
    text = io.StringIO()
    sweep(get_layout(layout, layer), phase, {k: [v] for k, v in point.items()}, text)
    (row,) = csv.DictReader(io.StringIO(text.getvalue()))
    assert {k: int(row[k]) for k in TOTALS} == {k: m[k] for k in TOTALS}


@pytest.mark.parametrize(("layer", "layout", "phase", "point"), UNEVEN[:3])
def test_numba_gives_the_same_totals(layer: str, layout: str, phase: str, point) -> None:
    pytest.importorskip("numba")  # an optional extra; the test extra installs it
    want = metrics(layout, phase, layer, **point)["metrics"]
    f = shardcost.compile(layout, phase, layer=layer, backend="numba")
    out, ok = f(**{k: np.array([v], dtype=np.int64) for k, v in point.items()})
    assert ok.tolist() == [True]
    got = dict(zip(METRICS, (int(v) for v in out[:, 0]), strict=True))
    assert {k: got[k] for k in TOTALS} == {k: want[k] for k in TOTALS}


def test_the_cached_program_gives_the_same_totals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARDCOST_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SHARDCOST_DEBUG", "1")
    argv = ["metrics", "ep", "--layer", "moe", "--format", "json", "expert_parallel=4"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert engine([*argv, "batch_size=2"]) == 0  # stores the program
    done = run_metrics([*argv, "batch_size=1", "seq_len=7"])
    assert done is not None
    want = metrics("ep", "prefill", "moe", batch_size=1, seq_len=7, expert_parallel=4)
    assert f'"flops_total": {want["metrics"]["flops_total"]}' in done[0]
    assert want["metrics"]["flops_total"] < want["metrics"]["flops_per_chip"] * 4


def test_a_compiled_model_gives_the_same_totals_and_chips() -> None:
    # A vocabulary of 32,001 rows over tp = 8: the embedding's ranks hold 1 × 4001 and
    # 7 × 4000 rows, so its weight total is no multiple of its busiest chip's (a chip count
    # read off the two would be 7); the chips are 8.
    config = json.loads((ROOT / "examples/configs/llama-3.1-8b.json").read_text())
    config["vocab_size"] = 32_001
    f = shardcost.compile_model(config, "decode", layout="tp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        want = shardcost.model_metrics(config, "decode", layout="tp", tensor_parallel=8)
    got = f(tensor_parallel=8)
    assert got["chips"] == want["chips"] == 8
    assert got["metrics"] == want["metrics"]
    # weights over all chips: the 32,001-row table and head once each, 4096 wide, 2 bytes
    embedding = next(c for c in want["components"] if c["name"] == "embedding")
    assert embedding["metrics"]["weight_memory_total"] == 32_001 * 4096 * 2
