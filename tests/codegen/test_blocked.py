"""The blocked numpy path (``codegen.blocked``): every row exact at block edges and across
threads, validity fused into the same pass, and exact counts past 2^53 without a cliff
(int64 rows, Python ints only where int64 would overflow).

References are shardcost.metrics (exact SymPy evaluation) and, for whole arrays, the
attention TP prefill formulas written out by hand (checked against metrics first):

    h_l = h / tp, h_kv_l = ⌈h_kv / tp⌉, M = B·S
    F = 4·M·dh·(d·h_l + d·h_kv_l + S·h_l)
    W = 2·d·dh·(h_l + h_kv_l)·b
    A = M·b·(2·d + dh·h_l + 2·dh·h_kv_l)
    KV = 2·M·h_kv_l·dh·b
    C = M·d·b when tp > 1, else 0; totals are the per-chip values times tp
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import shardcost
from shardcost.codegen import arrays
from shardcost.codegen.blocked import BLOCK
from shardcost.errors import ImpossibleSplitError, InvalidValueError, PrecisionWarning
from shardcost.symbolic import METRICS

TP = dict(hidden_size=4096, num_heads=32, num_kv_heads=8, head_dim=128, bytes_per_elem=2)


def by_hand(d, h, hkv, dh, B, S, b, tp) -> dict[str, int]:
    """Attention TP prefill in Python ints (the module docstring's formulas)."""
    hl, hkvl = h // tp, -(-hkv // tp)
    M = B * S
    per_chip = {
        "flops_per_chip": 4 * M * dh * (d * hl + d * hkvl + S * hl),
        "weight_memory_per_chip": 2 * d * dh * (hl + hkvl) * b,
        "activation_memory_per_chip": M * b * (2 * d + dh * hl + 2 * dh * hkvl),
        "kv_cache_per_chip": 2 * M * hkvl * dh * b,
    }
    totals = {k.replace("per_chip", "total"): v * tp for k, v in per_chip.items()}
    return {**per_chip, **totals, "communication_bytes": M * d * b if tp > 1 else 0}


def metrics(**p: int) -> dict[str, int] | None:
    """shardcost.metrics of tp prefill, or None where it refuses the configuration."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
            return shardcost.metrics("tp", "prefill", **p)["metrics"]
    except shardcost.InputError:
        return None


def test_the_hand_formulas_are_metrics() -> None:
    for p in (
        dict(TP, batch_size=3, seq_len=100, tensor_parallel=4),
        dict(TP, num_kv_heads=2, batch_size=1, seq_len=7, tensor_parallel=8),  # replicated KV
        dict(TP, batch_size=5, seq_len=33, tensor_parallel=1),
    ):
        args = [p[k] for k in ("hidden_size", "num_heads", "num_kv_heads", "head_dim")]
        args += [p["batch_size"], p["seq_len"], p["bytes_per_elem"], p["tensor_parallel"]]
        assert by_hand(*args) == metrics(**p)
    # 4·300·128·(4096·8 + 4096·2 + 100·8) = 6,414,336,000
    assert by_hand(4096, 32, 8, 128, 3, 100, 2, 4)["flops_per_chip"] == 6_414_336_000


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 17, n), rng.integers(1, 5000, n)


@pytest.mark.parametrize("n", [1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 3])
@pytest.mark.parametrize("dtype", [np.int64, np.float64])
def test_every_row_is_exact_at_block_edges(n: int, dtype: type) -> None:
    f = shardcost.compile("tp", "prefill")
    batch, seq = _rows(n, n)
    out = f(**TP, batch_size=batch.astype(dtype), seq_len=seq.astype(dtype), tensor_parallel=4)
    want = by_hand(4096, 32, 8, 128, batch, seq, 2, 4)  # numpy int64: exact here
    for m in METRICS:
        assert np.array_equal(np.broadcast_to(out[m], (n,)), np.broadcast_to(want[m], (n,))), m


def test_threads_split_on_block_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arrays, "PARALLEL_MIN", 1)
    monkeypatch.setattr(arrays, "workers", lambda: 3)
    f = shardcost.compile("tp", "prefill")
    n = 3 * BLOCK + 5
    batch, seq = _rows(n, 1)
    seq[BLOCK - 1 : BLOCK + 2] = 0  # invalid rows across the first edge
    out, ok, _ = f.arrays.evaluate(
        (), (4096, 32, 8, 128, batch, seq, 2, 4), exact=False, strict=False
    )
    assert ok.tolist() == (seq > 0).tolist()
    want = by_hand(4096, 32, 8, 128, batch, seq, 2, 4)
    for m in METRICS:
        got = np.broadcast_to(out[m], (n,))
        assert np.array_equal(got[ok], np.broadcast_to(want[m], (n,))[ok]), m


def test_invalid_rows_are_masked_not_fatal() -> None:
    f = shardcost.compile("tp", "prefill")
    heads = np.array([32, 30, 32, 32, 32, 32, 64, 32])
    hidden = np.array([4096, 3840, 4096, 4000, 4096, 4096, 8192, 4096])
    batch = np.array([1.0, 1, 0, 1, 2.5, -3, 2, np.nan])
    values = (hidden, heads, 8, 128, batch, 512, 2, 4)
    out, ok, inexact = f.arrays.evaluate((), values, exact=False, strict=False)
    # 30 heads over tp=4; batch 0; hidden_size 4000 ≠ 32·128; batch 2.5, -3 and NaN
    assert ok.tolist() == [True, False, False, False, False, False, True, False]
    assert not inexact.any()
    for i in np.flatnonzero(ok):
        p = dict(TP, hidden_size=int(hidden[i]), num_heads=int(heads[i]))
        want = metrics(**p, batch_size=int(batch[i]), seq_len=512, tensor_parallel=4)
        assert {m: out[m][i] for m in METRICS} == want
    with pytest.raises(ImpossibleSplitError, match="num_heads is not divisible by tensor"):
        f(hidden_size=hidden[:2], num_heads=heads[:2], head_dim=128)
    with pytest.raises(InvalidValueError, match=r"batch_size=.* is not allowed"):
        f(batch_size=batch)


def test_the_float_pass_tests_divisibility_exactly_below_2_to_the_53() -> None:
    # The float pass alone (before rows it marks are settled): a product with a
    # reciprocal goes wrong up here, the quotient test does not. 3·(2^51 - 1) is
    # divisible by 3, 3·(2^51 - 1) + 1 and + 2 are not; 2^52 is by 2^26.
    f = shardcost.compile("tp", "prefill")
    paths = f.arrays
    prog = paths.program(())
    base = 3 * (2**51 - 1)
    heads = np.array([base, base + 1, base + 2, 2**52])
    tp = np.array([3, 3, 3, 2**26])
    inputs = arrays.Inputs.of((heads, heads, 1, 1, 1, 1, 1, tp), paths.names, 8, exact=False)
    _, ok, _ = paths._float((), prog, inputs)
    assert ok.tolist() == [True, False, False, True]


def test_validity_past_2_to_the_53_is_settled_exactly() -> None:
    # 2^60 + 256 is a float64; its quotient by 3 rounds to a whole float, but
    # 2^60 + 256 ≡ 1 + 1 = 2 (mod 3): not divisible
    f = shardcost.compile("tp", "prefill")
    heads = np.array([2**60 + 256, 2**60 + 257, 3 * 2**58])
    _, ok, inexact = f.arrays.evaluate(
        (), (heads, heads, 1, 1, 1, 1, 1, 3), exact=False, strict=False
    )
    assert ok.tolist() == [False, True, True]  # 2^60 + 257 ≡ 1 + 2 ≡ 0 (mod 3)
    assert inexact.tolist() == [True, True, True]
    with pytest.raises(ImpossibleSplitError):
        f(hidden_size=heads[:1], num_heads=heads[:1], head_dim=1, tensor_parallel=3)


def test_a_fraction_stays_invalid_past_2_to_the_53() -> None:
    # rows the float pass marks are settled in integers, which would truncate 2^40 + 0.5
    f = shardcost.compile("tp", "prefill")
    seq = np.array([2.0**40 + 0.5, 2.0**40, 2.0**44 + 0.5])
    _, ok, inexact = f.arrays.evaluate(
        (), (4096, 32, 8, 128, 1000.0, seq, 2, 4), exact=False, strict=False
    )
    assert inexact.all()
    assert ok.tolist() == [False, True, False]


def test_exact_arrays_split_between_float_int64_and_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    f = shardcost.compile("tp", "prefill")
    paths = f.arrays
    seen = {"int64": 0, "python": 0}
    for name in ("_int64", "_python"):
        real = getattr(paths, name)

        def counted(key, inputs, real=real, name=name):
            seen[name.strip("_")] += inputs.n
            return real(key, inputs)

        monkeypatch.setattr(paths, name, counted)
    # FLOPs total ≈ 4·B·S·d·(d + d/4 + S): S = 2^20 is below 2^53 at B = 1; S = 2^24 is
    # about 2^63 (int64 exactly, the bound below 2^62 or not); B = 10^3, S = 10^7 is 4·10^23
    seq = np.array([2**10, 2**20, 2**21, 2**22, 2**24, 10**7, 2**23])
    batch = np.array([1, 1, 1, 1, 1, 1000, 3])
    out = f(**TP, batch_size=batch, seq_len=seq, tensor_parallel=4, exact=True)
    for i in range(len(seq)):
        want = metrics(**TP, batch_size=int(batch[i]), seq_len=int(seq[i]), tensor_parallel=4)
        got = {m: out[m][i] for m in METRICS}
        assert got == want, i
        assert all(type(v) is int for v in got.values())
    big = [metrics(**TP, batch_size=int(b), seq_len=int(s), tensor_parallel=4) for b, s in
           zip(batch, seq, strict=True)]  # fmt: skip
    past53 = sum(max(m.values()) >= 2**53 for m in big)
    past63 = sum(max(m.values()) >= 2**63 for m in big)
    assert past53 > past63 >= 1
    assert seen["int64"] >= 1  # rows between 2^53 and 2^62 never take Python ints
    assert past63 <= seen["python"] < past53


def test_float_arrays_warn_and_mark_rows_past_2_to_the_53() -> None:
    f = shardcost.compile("tp", "prefill")
    seq = np.array([1024, 2**24])
    with pytest.warns(PrecisionWarning, match="2\\^53"):
        f(**TP, seq_len=seq)
    _, ok, inexact = f.arrays.evaluate(
        (), (4096, 32, 8, 128, 1, seq, 2, 4), exact=False, strict=False
    )
    assert ok.tolist() == [True, True] and inexact.tolist() == [False, True]


def test_an_input_defaulting_to_another_is_read_once() -> None:
    f = shardcost.compile("tp", "prefill")
    heads = np.array([8, 16, 32, 12, 10])
    aliased = f(num_heads=heads, head_dim=64, tensor_parallel=2)  # num_kv_heads = num_heads
    separate = f(num_heads=heads, num_kv_heads=heads.copy(), head_dim=64, tensor_parallel=2)
    for m in METRICS:
        assert np.array_equal(aliased[m], separate[m]), m
    for i, h in enumerate(heads.tolist()):
        want = metrics(num_heads=h, head_dim=64, tensor_parallel=2)
        assert {m: aliased[m][i] for m in METRICS} == want
    sources = [fn.__source__ for _, fn in f.arrays.built.values()]
    assert any("_i_h_kv" in s for s in sources)  # the copy: read and tested
    assert any("_i_h" in s and "_i_h_kv" not in s for s in sources)  # the same array


@pytest.mark.parametrize("shape", [(), (1,), (0,), (2, 3)])
def test_shapes(shape: tuple[int, ...]) -> None:
    f = shardcost.compile("tp", "prefill")
    seq = np.full(shape, 256)
    out = f(**TP, seq_len=seq, tensor_parallel=4)
    want = metrics(**TP, seq_len=256, tensor_parallel=4)
    for m in METRICS:
        assert out[m].shape == shape, m
        assert (out[m] == want[m]).all(), m


def test_small_calls_pay_a_small_fixed_cost() -> None:
    f = shardcost.compile("tp", "prefill")
    batch, seq = _rows(1000, 3)
    f(**TP, batch_size=batch, seq_len=seq)
    generated = [b for b, _ in f.arrays.built.values()]
    # buffers of at most one block each, allocated once per thread and reused
    assert all(b.block == BLOCK for b in generated)
    assert sum(count for _, count in generated[0].scratch) < 16


@pytest.mark.parametrize("layout", ["tp", "ring", "ulysses"])
def test_timed_arrays_equal_timed_scalars(layout: str) -> None:
    # times are floats: any order of operations agrees to rounding; counts exactly
    f = shardcost.compile(layout, "prefill", timing=True)
    seq = np.array([512, 4096, 32768])
    bandwidth = np.array([100.0, 450.0, 900.0])
    hw = dict(peak_tflops=989.0, memory_bandwidth_gb_s=3350.0)
    out = f(seq_len=seq, interconnect_bandwidth_gb_s=bandwidth, **hw)
    for i in range(len(seq)):
        one = f(seq_len=int(seq[i]), interconnect_bandwidth_gb_s=float(bandwidth[i]), **hw)
        for name, value in one.items():
            got = np.broadcast_to(out[name], seq.shape)[i]
            if name in METRICS:
                assert got == value, (name, i)
            else:
                assert got == pytest.approx(value, rel=1e-12), (name, i)


def test_output_memory_is_reused_only_once_nothing_reads_it() -> None:
    f = shardcost.compile("tp", "prefill")
    n = 100_000  # 0.8 MB an output: their memory is kept for the next call
    batch, seq = _rows(n, 4)
    first = f(**TP, batch_size=batch, seq_len=seq)
    kept = first["flops_total"][::3]  # a view of a view: it keeps the memory alive
    start = first["flops_total"].ctypes.data
    del first
    second = f(**TP, batch_size=batch + 1, seq_len=seq)
    want = by_hand(4096, 32, 8, 128, batch, seq, 2, 4)["flops_total"]
    assert np.array_equal(kept, want[::3])  # untouched by the second call
    assert not np.shares_memory(kept, second["flops_total"])
    starts = {start, second["flops_total"].ctypes.data}
    del kept, second
    third = f(**TP, batch_size=batch, seq_len=seq)
    reused = {third[m].ctypes.data for m in METRICS if third[m].flags.writeable}
    assert starts & reused  # nothing read them any more: the third call wrote there
    assert np.array_equal(third["flops_total"], want)
