"""Compiled functions against hand-written code of the same formulas, in the same run.

1. A scalar call of shardcost.compile("tp", "prefill") against two hand-written Python
   functions: one transcribed step by step as seed 001 writes them, one fused by hand.
2. 10^6 configurations through the numpy path against a hand-written numpy function.
3. The numba back end against the memory-bandwidth limit: bytes it reads and writes per
   second, against a large array copy (read + write) measured in the same run.

Every hand-written function is checked to give the same numbers before it is timed.

    python benches/compile.py
"""

from __future__ import annotations

import statistics
import sys
import time
import timeit
import warnings
from collections.abc import Callable

import numpy as np

import shardcost

KW = {
    "hidden_size": 4096,
    "num_heads": 32,
    "num_kv_heads": 8,
    "head_dim": 128,
    "batch_size": 4,
    "seq_len": 2048,
    "bytes_per_elem": 2,
    "tensor_parallel": 4,
}


def by_steps(
    hidden_size=4096,
    num_heads=32,
    num_kv_heads=32,
    head_dim=128,
    batch_size=1,
    seq_len=2048,
    bytes_per_elem=2,
    tensor_parallel=4,
):
    """Attention under TP, prefill, written out term by term as seed 001 does."""
    d, h, hkv, dh = hidden_size, num_heads, num_kv_heads, head_dim
    B, S, b, tp = batch_size, seq_len, bytes_per_elem, tensor_parallel
    h_local, hkv_local = h // tp, hkv // tp
    M = B * S
    q = 2 * M * d * (h_local * dh)
    k = 2 * M * d * (hkv_local * dh)
    v = 2 * M * d * (hkv_local * dh)
    scores = 2 * B * h_local * S * S * dh
    apply_v = 2 * B * h_local * S * S * dh
    o = 2 * M * (h_local * dh) * d
    flops = q + k + v + scores + apply_v + o
    weights = (2 * d * h_local * dh + 2 * d * hkv_local * dh) * b
    acts = (M * d + M * h_local * dh + 2 * M * hkv_local * dh + M * d) * b
    kv = 2 * B * S * hkv_local * dh * b
    comm = M * d * b if tp > 1 else 0
    return {
        "flops_per_chip": flops,
        "weight_memory_per_chip": weights,
        "activation_memory_per_chip": acts,
        "kv_cache_per_chip": kv,
        "flops_total": flops * tp,
        "weight_memory_total": weights * tp,
        "activation_memory_total": acts * tp,
        "kv_cache_total": kv * tp,
        "communication_bytes": comm,
    }


def fused(
    hidden_size=4096,
    num_heads=32,
    num_kv_heads=32,
    head_dim=128,
    batch_size=1,
    seq_len=2048,
    bytes_per_elem=2,
    tensor_parallel=4,
):
    """The same, with the algebra done by hand (fewest operations a person would write)."""
    d, h, hkv, dh = hidden_size, num_heads, num_kv_heads, head_dim
    B, S, b, tp = batch_size, seq_len, bytes_per_elem, tensor_parallel
    hl, hkvl = h // tp, hkv // tp
    M = B * S
    flops = 4 * M * dh * (d * hl + d * hkvl + S * hl)
    weights = 2 * d * dh * (hl + hkvl) * b
    acts = M * b * (2 * d + dh * hl + 2 * dh * hkvl)
    kv = 2 * M * hkvl * dh * b
    comm = M * d * b if tp > 1 else 0
    return {
        "flops_per_chip": flops,
        "weight_memory_per_chip": weights,
        "activation_memory_per_chip": acts,
        "kv_cache_per_chip": kv,
        "flops_total": flops * tp,
        "weight_memory_total": weights * tp,
        "activation_memory_total": acts * tp,
        "kv_cache_total": kv * tp,
        "communication_bytes": comm,
    }


def numpy_by_hand(d, h, hkv, dh, B, S, b, tp):
    """The fused formulas on float64 arrays, as a person would write them with numpy."""
    hl, hkvl = h / tp, hkv / tp
    M = B * S
    flops = 4 * M * dh * (d * hl + d * hkvl + S * hl)
    weights = 2 * d * dh * (hl + hkvl) * b
    acts = M * b * (2 * d + dh * hl + 2 * dh * hkvl)
    kv = 2 * M * hkvl * dh * b
    comm = np.where(tp > 1, M * d * b, 0)
    return (flops, weights, acts, kv, flops * tp, weights * tp, acts * tp, kv * tp, comm)


def best(fn: Callable[[], object], number: int, repeat: int = 7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def scalar() -> None:
    f = shardcost.compile("tp", "prefill")
    assert f(**KW) == by_steps(**KW) == fused(**KW)
    n = 200_000
    times = {
        "hand-written, term by term (seed 001)": best(lambda: by_steps(**KW), n),
        "hand-written, fused by hand": best(lambda: fused(**KW), n),
        "shardcost.compile (validates its inputs)": best(lambda: f(**KW), n),
    }
    base = times["hand-written, fused by hand"]
    print("1. scalar call, tp prefill (µs per call; ratio: time / fused hand-written)")
    for label, t in times.items():
        print(f"   {label:44} {t * 1e6:7.3f} µs   {t / base:5.2f}x")


def arrays(n: int) -> None:
    f = shardcost.compile("tp", "prefill")
    rng = np.random.default_rng(0)
    batch = rng.integers(1, 16, n).astype(np.float64)
    seq = (rng.integers(1, 64, n) * 64).astype(np.float64)
    scalars = {k: float(v) for k, v in KW.items() if k not in ("batch_size", "seq_len")}
    hand_args = (
        scalars["hidden_size"],
        scalars["num_heads"],
        scalars["num_kv_heads"],
        scalars["head_dim"],
        batch,
        seq,
        scalars["bytes_per_elem"],
        scalars["tensor_parallel"],
    )
    got = f(batch_size=batch, seq_len=seq, **scalars)
    want = numpy_by_hand(*hand_args)
    for name, value in zip(shardcost.symbolic.METRICS, want, strict=True):
        assert np.array_equal(np.broadcast_to(value, (n,)), got[name]), name
    hand = best(lambda: numpy_by_hand(*hand_args), 3, 5)
    ours = best(lambda: f(batch_size=batch, seq_len=seq, **scalars), 3, 5)
    print(f"2. {n:,} configurations, float64 numpy (ratio: shardcost time / hand time)")
    print(f"   hand-written numpy (no input checks)        {hand * 1e3:7.1f} ms")
    print(
        f"   shardcost.compile (checks every input)      {ours * 1e3:7.1f} ms   "
        f"{ours / hand:5.2f}x  ({n / ours / 1e6:.0f} M configurations/s)"
    )


def fast(n: int) -> None:
    f = shardcost.compile("tp", "prefill", backend="numba")
    rng = np.random.default_rng(1)
    batch = rng.integers(1, 16, n)
    seq = rng.integers(1, 64, n) * 64
    out = np.empty((9, n), dtype=np.int64)
    ok = np.empty(n, dtype=np.bool_)
    f(out=out[:, :16].copy(), ok=ok[:16].copy(), batch_size=batch[:16], seq_len=seq[:16])  # JIT
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        f(
            out=out,
            ok=ok,
            batch_size=batch,
            seq_len=seq,
            **{k: v for k, v in KW.items() if k not in ("batch_size", "seq_len")},
        )
        runs.append(time.perf_counter() - start)
    assert ok.all()
    check = shardcost.compile("tp", "prefill")(
        **KW | {"batch_size": int(batch[5]), "seq_len": int(seq[5])}
    )
    assert out[:, 5].tolist() == list(check.values())
    moved = batch.nbytes + seq.nbytes + out.nbytes + ok.nbytes
    src = np.ones(moved // 16, dtype=np.int64)
    dst = np.empty_like(src)
    copies = []
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(dst, src)
        copies.append(time.perf_counter() - start)
    kernel_bw = moved / min(runs) / 1e9
    copy_bw = 2 * src.nbytes / min(copies) / 1e9
    print(f"3. numba back end, {n:,} configurations, {moved / 1e9:.2f} GB read and written")
    print(f"   array copy (read + write), same run          {copy_bw:6.1f} GB/s")
    print(
        f"   shardcost numba kernel                       {kernel_bw:6.1f} GB/s   "
        f"{kernel_bw / copy_bw:5.2f}x of the copy  ({n / min(runs) / 1e6:.0f} M configurations/s, "
        f"median {statistics.median(runs) * 1e3:.0f} ms)"
    )


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scalar()
        arrays(int(sys.argv[1]) if len(sys.argv) > 1 else 10**6)
        fast(int(sys.argv[2]) if len(sys.argv) > 2 else 2 * 10**7)
