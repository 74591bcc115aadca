"""Communication that tells plans apart: each collective's algorithm, bytes on the wire and
α + β·n time, overlap by class, seed 000's payload model, and the numeric helper that
plan-level code times a collective with."""

from __future__ import annotations

import json
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest

import shardcost
from shardcost.cli import main
from shardcost.codegen import runtime
from shardcost.codegen.printers import PythonPrinter, UnsupportedNode
from shardcost.errors import InputError
from shardcost.formulas import CATALOG, Result, all_layouts, evaluate, resolve_inputs
from shardcost.formulas.communication import collective_time_ms, latency_steps, wire_bytes
from shardcost.symbolic.dimensions import BY_SYMBOL, tp
from shardcost.symbolic.functions import CeilLog2

H100 = CATALOG["h100-sxm"]  # 450 GB/s per direction, 1 µs latency, overlaps
LINK = 450 * 10**6  # h100-sxm: bytes per ms
SEED_LINK = 100 * 10**6  # seed-test: 100 GB/s in bytes per ms
LLAMA = {"hidden_size": 4096, "num_heads": 32, "head_dim": 128}
MHA = {"hidden_size": 1024, "num_heads": 16, "head_dim": 64, "batch_size": 2}


def run(layout: str, phase: str, *, layer: str = "attention", **params: object) -> Result:
    hardware = params.pop("hardware")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        inputs = resolve_inputs(layout, phase, layer=layer, hardware=str(hardware), params=params)
        return evaluate(inputs)


def comm(result: Result) -> Fraction:
    return result.step_value("communication_time")  # type: ignore[return-value]


# -- a TP = 8 decode all-reduce on h100-sxm, by hand -------------------------------------
# Y[1, 4096] in 2 bytes: the payload is 8,192 bytes.
TP8 = {**LLAMA, "tensor_parallel": 8, "hardware": "h100-sxm"}
BY_ALGORITHM = {
    # 2(8 − 1) = 14 steps · 1 µs; 2·7/8 · 8,192 = 14,336 bytes at 450 GB/s
    "ring": (14, 14_336, Fraction(14, 1000) + Fraction(14_336, LINK)),
    # 2⌈log2 8⌉ = 6 steps; 2 · 8,192 = 16,384 bytes (up the tree and down)
    "tree": (6, 16_384, Fraction(6, 1000) + Fraction(16_384, LINK)),
    # one shot: 1 step; 7 · 8,192 = 57,344 bytes (the whole tensor to each of 7 others)
    "direct": (1, 57_344, Fraction(1, 1000) + Fraction(57_344, LINK)),
}


@pytest.mark.parametrize("algorithm", BY_ALGORITHM)
def test_tp8_decode_allreduce_on_h100(algorithm: str) -> None:
    steps, wire, time = BY_ALGORITHM[algorithm]
    r = run("tp", "decode", **TP8, collective_algorithm=algorithm)
    assert r.collectives == {"output_allreduce": 8_192}
    assert r.step_value("wire_output_allreduce") == wire
    assert r.step_value("comm_time_output_allreduce") == time
    assert comm(r) == time
    # the TP class is exposed by default: the wall clock adds it to the busy time,
    # busy = load = (16,777,216 weights + 4,194,304 KV) bytes / (3350 · 10^6 B/ms)
    load = Fraction(16_777_216 + 4_194_304, 3350 * 10**6)
    assert r.step_value("wall_clock_time") == load + time
    # the numeric helper: the same rules, the same float
    assert latency_steps("all-reduce", 8, algorithm=algorithm) == steps
    assert wire_bytes("all-reduce", 8, 8_192, algorithm=algorithm) == wire
    assert collective_time_ms("all-reduce", 8, 8_192, H100, algorithm=algorithm) == float(time)


def test_all_to_all_by_hand() -> None:
    # Ulysses prefill over cp = 4 (d = 1024, h = 16, dh = 64, B = 2, S = 128, 2 bytes):
    # Q/K/V of its 2·128/4 = 64 tokens, 3·1024 wide: 64 · 3072 · 2 = 393,216 bytes;
    # the output of its 16/4 = 4 heads for 2·128 tokens: 256 · 4 · 64 · 2 = 131,072 bytes.
    p = {**MHA, "seq_len": 128, "context_parallel": 4, "hardware": "seed-test"}
    ring = run("ulysses", "prefill", **p)
    assert ring.collectives == {"qkv_alltoall": 393_216, "output_alltoall": 131_072}
    # pairwise exchange: 3 steps each; 3/4 of each buffer leaves: 294,912 and 98,304 bytes
    assert ring.step_value("wire_qkv_alltoall") == 294_912
    assert ring.step_value("comm_time_qkv_alltoall") == Fraction(3, 1000) + Fraction(
        294_912, SEED_LINK
    )  # 0.003 + 0.00294912
    assert comm(ring) == Fraction(6, 1000) + Fraction(294_912 + 98_304, SEED_LINK)  # 0.00993216
    # Bruck: ⌈log2 4⌉ = 2 rounds of half the buffer: 2/2 · n = n on the wire
    bruck = run("ulysses", "prefill", **p, collective_algorithm="tree")
    assert comm(bruck) == Fraction(4, 1000) + Fraction(524_288, SEED_LINK)  # 0.00924288
    # direct: 1 step each, the same 3/4 of each buffer
    direct = run("ulysses", "prefill", **p, collective_algorithm="direct")
    assert comm(direct) == Fraction(2, 1000) + Fraction(393_216, SEED_LINK)  # 0.00593216


def test_moe_dispatch_and_combine_by_hand() -> None:
    # ep = 4, batch 8: 8/4 = 2 tokens per rank, each to k = 2 experts: 4 rows of 4096 in
    # 2 bytes = 32,768 bytes dispatched and as many combined; ring: 3 steps, 3/4 of 32,768
    # = 24,576 bytes each way.
    p = {"batch_size": 8, "expert_parallel": 4, "hardware": "h100-sxm"}
    r = run("ep", "decode", layer="moe", **p)
    assert r.collectives == {"dispatch_alltoall": 32_768, "combine_alltoall": 32_768}
    each = Fraction(3, 1000) + Fraction(24_576, LINK)
    assert comm(r) == 2 * each
    busy = max(r.step_value("compute_time"), r.step_value("load_time"))
    assert r.step_value("wall_clock_time") == busy + 2 * each  # expert class: exposed
    overlapped = run("ep", "decode", layer="moe", **p, expert_parallel_comm="hidden")
    assert overlapped.step_value("wall_clock_time") == max(busy, 2 * each)  # DeepEP's overlap


# -- seed 000's payload model --------------------------------------------------------------

LAYOUT_PHASES = [(lay, ph) for lay in all_layouts() for ph in lay.phases]
IDS = [f"{lay.layer}/{lay.name}-{ph}" for lay, ph in LAYOUT_PHASES]


@pytest.mark.parametrize(("layout", "phase"), LAYOUT_PHASES, ids=IDS)
def test_payload_mode_is_seed_000s_formula(layout, phase) -> None:
    # one latency (1 µs) when anything is sent, plus the payload at 100 GB/s
    r = run(
        layout.name,
        str(phase),
        layer=layout.layer,
        hardware="seed-test",
        collective_bytes="payload",
    )
    sent = r.metrics.communication_bytes
    want = Fraction(1, 1000) + Fraction(sent, SEED_LINK) if sent else Fraction(0)
    assert comm(r) == want
    busy = max(r.step_value("compute_time"), r.step_value("load_time"))
    assert r.step_value("wall_clock_time") == busy + want  # seed-test does not overlap


def test_att_time_4_hides_only_when_the_tensor_class_does() -> None:
    # Seed 000 ATT-TIME-4: payload 16,777,216 bytes; 0.001 + 16,777,216 / 10^8 = 0.16877216
    p = {**LLAMA, "batch_size": 2, "seq_len": 1024, "tensor_parallel": 4}
    seed = {"hardware": "seed-test", "supports_overlap": True, "collective_bytes": "payload"}
    hidden = run("tp", "prefill", **p, **seed, tensor_parallel_comm="hidden")
    exposed = run("tp", "prefill", **p, **seed)
    assert comm(hidden) == comm(exposed) == Fraction("0.16877216")
    assert hidden.step_value("wall_clock_time") == Fraction("0.16877216")  # max(0.0773, ...)
    # 0.077309411328 + 0.16877216: the seed's no-overlap figure
    assert exposed.step_value("wall_clock_time") == Fraction("0.246081571328")


# -- overlap classes -------------------------------------------------------------------------

RING = {**MHA, "seq_len": 128, "context_parallel": 4, "hardware": "seed-test"}
# ring prefill: each rank passes its K/V block, 2·2·32·16·64·2 = 262,144 bytes, cp − 1 = 3
# times: 786,432 bytes in 3 hops of 1 µs: 0.003 + 786,432 / 10^8 = 0.01086432 ms
RING_COMM = Fraction(3, 1000) + Fraction(786_432, SEED_LINK)


def test_ring_kv_passes_hide_behind_attention() -> None:
    hidden = run("ring", "prefill", **RING, supports_overlap=True)
    assert hidden.collectives == {"kv_ring": 786_432}
    assert comm(hidden) == RING_COMM
    busy = max(hidden.step_value("compute_time"), hidden.step_value("load_time"))
    assert busy == Fraction(8_388_608, 10**9)  # weights 8,388,608 bytes at 1 TB/s
    assert hidden.step_value("wall_clock_time") == max(busy, RING_COMM)  # 0.01086432
    exposed = run("ring", "prefill", **RING, supports_overlap=True, context_parallel_comm="exposed")
    assert exposed.step_value("wall_clock_time") == busy + RING_COMM  # 0.019252928


def test_without_hardware_overlap_everything_is_exposed() -> None:
    r = run("ring", "prefill", **RING)  # seed-test: supports_overlap false
    busy = max(r.step_value("compute_time"), r.step_value("load_time"))
    assert r.step_value("wall_clock_time") == busy + RING_COMM


def test_partial_outputs_and_all_to_alls_are_waited_for_kv_passes_are_not() -> None:
    """Over context_parallel only the K/V exchange hides: tp-cp's softmax-stat and output
    all-reduces, like its TP gather, are on the critical path unless tensor_parallel_comm
    says hidden; Ulysses' all-to-alls too."""
    p = {**MHA, "seq_len": 128, "tensor_parallel": 2, "context_parallel": 2}
    r = run("tp-cp", "prefill", **p, hardware="h100-sxm")
    t = {name: r.step_value(f"comm_time_{name}") for name in r.collectives}
    every = t["softmax_stats_allreduce"] + t["output_allreduce"] + t["tp_allgather"]
    assert comm(r) == every
    busy = max(r.step_value("compute_time"), r.step_value("load_time"))
    assert r.step_value("wall_clock_time") == busy + every
    hid = run("tp-cp", "prefill", **p, hardware="h100-sxm", tensor_parallel_comm="hidden")
    assert hid.step_value("wall_clock_time") == max(busy, every)
    # TP all-gather of Y[2·128/2, 1024] in 2 bytes = 262,144 bytes over tp = 2: ring,
    # 1 step and 1/2 of it on the wire: 0.001 + 131,072 / (450 · 10^6)
    assert r.collectives["tp_allgather"] == 262_144
    assert t["tp_allgather"] == Fraction(1, 1000) + Fraction(131_072, LINK)
    u = run(
        "ulysses", "prefill", **{**MHA, "seq_len": 128, "context_parallel": 2}, hardware="h100-sxm"
    )
    ubusy = max(u.step_value("compute_time"), u.step_value("load_time"))
    assert u.step_value("wall_clock_time") == ubusy + comm(u)


def test_every_collective_of_every_layout_times_as_the_helper_does() -> None:
    for layout, phase in LAYOUT_PHASES:
        for algorithm in BY_ALGORITHM:
            r = run(
                layout.name,
                str(phase),
                layer=layout.layer,
                hardware="h100-sxm",
                collective_algorithm=algorithm,
            )
            total = Fraction(0)
            for c in r.inputs.cost.collectives:
                group = r.inputs.dims[BY_SYMBOL[c.group].name]
                payload = r.collectives[c.name]
                time = r.step_value(f"comm_time_{c.name}")
                helper = collective_time_ms(c.kind, group, payload, H100, algorithm=algorithm)
                assert helper == float(time), (layout.name, phase, c.name, algorithm)
                assert r.step_value(f"wire_{c.name}") == wire_bytes(
                    c.kind, group, payload, algorithm=algorithm
                )
                total += time
            assert comm(r) == total


def test_helper_in_payload_mode_is_one_latency_and_the_payload() -> None:
    # 0.001 + 8,192 / (450 · 10^6): seed 000's formula for one collective
    want = Fraction(1, 1000) + Fraction(8_192, LINK)
    assert collective_time_ms("all-reduce", 8, 8_192, H100, bytes_mode="payload") == float(want)
    assert collective_time_ms("all-reduce", 1, 8_192, H100) == 0.0  # one chip: nothing
    # a pipeline stage boundary: a send-recv over 2 chips, 1 hop and the payload itself
    assert latency_steps("send-recv", 2) == 1
    assert wire_bytes("send-recv", 2, 1000, algorithm="tree") == 1000
    with pytest.raises(shardcost.InvalidValueError, match="kinds: all-reduce"):
        collective_time_ms("broadcast", 8, 8_192, H100)
    with pytest.raises(shardcost.InvalidValueError, match="collective_algorithm takes"):
        wire_bytes("all-reduce", 8, 8_192, algorithm="mesh")


# -- compiled functions and the command line ---------------------------------------------

HW = {
    "peak_tflops": 989.4,
    "memory_bandwidth_gb_s": 3350,
    "interconnect_bandwidth_gb_s": 450,
    "interconnect_latency_us": 1.0,
    "supports_overlap": True,
}
COMPILED = [
    ("tp", "attention", "decode", {"collective_algorithm": "tree"}, {"tensor_parallel": 8}),
    ("tp", "attention", "decode", {"collective_algorithm": "direct"}, {"tensor_parallel": 8}),
    ("tp", "attention", "decode", {"collective_bytes": "payload"}, {"tensor_parallel": 8}),
    ("ring", "attention", "prefill", {"context_parallel_comm": "exposed"}, {"seq_len": 512}),
    ("tp-cp", "attention", "prefill", {"tensor_parallel_comm": "hidden"}, {"seq_len": 512}),
    (
        "ep",
        "moe",
        "decode",
        {"expert_parallel_comm": "hidden", "collective_algorithm": "tree"},
        {"batch_size": 8, "expert_parallel": 8},
    ),
]


@pytest.mark.parametrize(("layout", "layer", "phase", "fixed", "dims"), COMPILED)
def test_compiled_timing_agrees_under_each_convention(layout, layer, phase, fixed, dims) -> None:
    f = shardcost.compile(layout, phase, layer=layer, timing=True, conventions=fixed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        want = shardcost.metrics(layout, phase, layer=layer, **dims, **HW, **fixed)["timing"]
    got = f(**dims, **HW)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-12), name


def test_compiled_tree_steps_on_arrays_are_exact() -> None:
    f = shardcost.compile("tp", "decode", timing=True, conventions={"collective_algorithm": "tree"})
    degrees = [1, 2, 4, 8, 16, 32]
    want = [f(tensor_parallel=d, **HW)["communication_time_ms"] for d in degrees]
    floats = f(tensor_parallel=np.array(degrees), **HW)["communication_time_ms"]
    exact = f(tensor_parallel=np.array(degrees, dtype=object), exact=True, **HW)
    assert list(floats) == pytest.approx(want, rel=1e-12)
    assert list(exact["communication_time_ms"]) == pytest.approx(want, rel=1e-12)
    assert want[0] == 0  # one chip sends nothing
    # 2⌈log2 32⌉ = 10 steps and 2 · 8,192 bytes: 0.010 + 16,384 / (450 · 10^6)
    assert want[-1] == pytest.approx(0.010 + 16_384 / LINK, rel=1e-15)


def test_timing_conventions_need_timing() -> None:
    with pytest.raises(InputError, match="collective_algorithm is a timing convention"):
        shardcost.metrics("tp", collective_algorithm="tree")
    with pytest.raises(InputError, match="timing=True"):
        shardcost.compile("tp", conventions={"collective_algorithm": "tree"})
    f = shardcost.compile("tp", timing=True)
    with pytest.raises(TypeError):  # fixed when compiled, not a keyword of the function
        f(collective_algorithm="tree", **HW)


def test_cli_metrics_takes_the_algorithm(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["metrics", "tp", "--phase", "decode", "--hardware", "h100-sxm", "tensor_parallel=8"]
    assert main([*argv, "collective_algorithm=tree", "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["params"]["collective_algorithm"] == "tree"
    assert got["timing"]["communication_time_ms"] == float(BY_ALGORITHM["tree"][2])
    assert main(["metrics", "tp", "collective_algorithm=tree"]) == 2  # no hardware
    assert "timing convention" in capsys.readouterr().err


# -- ⌈log2 p⌉ ------------------------------------------------------------------------------


def test_ceil_log2_is_exact_everywhere() -> None:
    # small n against the float logarithm (exact there); past it, by hand: 2^40 is 40
    # doublings, one more member needs a 41st, 2^60 − 1 needs 60
    ns = [*range(1, 70), 2**40, 2**40 + 1, 2**60 - 1]
    want = [math.ceil(math.log2(n)) for n in range(1, 70)] + [40, 41, 60]
    assert [CeilLog2(n) for n in ns] == want
    assert [runtime.ceil_log2(n) for n in ns] == want
    assert list(runtime.ceil_log2(np.array(ns, dtype=object))) == want
    small = [n for n in ns if n < 2**53]
    assert list(runtime.ceil_log2(np.array(small, dtype=np.float64))) == want[: len(small)]
    assert CeilLog2(tp).subs(tp, 16) == 4


def test_an_export_printer_refuses_ceil_log2() -> None:
    # timed functions are never exported; a target without the helper fails loudly
    with pytest.raises(UnsupportedNode, match="ceil_log2"):
        PythonPrinter().doprint(CeilLog2(tp))
