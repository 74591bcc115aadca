"""Compiled paths against baselines measured in the same run, as ratios.

For attention TP prefill (the nine metrics), at 10^3, 10^6 and 10^7 configurations:

1. numpy path: ``shardcost.compile("tp", "prefill")`` called with float64 arrays, against
   a hand-written numpy function with the same checks (every input a positive whole
   number, hidden_size = num_heads × head_dim, the head splits). Speed-up: hand time /
   shardcost time. Target ≥ 1.2 at 10^6 and 10^7.
2. numba back end: bytes it reads and writes per second, against a large array copy
   (read + write) of the same bytes. Target ≥ 0.8 at 10^7.
3. scalar path (one configuration per call, every input given, then none): a
   hand-written Python function with the same defaults and checks. Speed-up: hand time /
   shardcost time. Target ≥ 1.0.

Every baseline is checked to give the same numbers before it is timed. Each figure is
timed in rounds, baseline and shardcost alternating, and reported as min, median and
spread (max / min); ratios are of the minimums (the least disturbed run), with the
ratio of medians beside them. On a shared machine the spread says how noisy a row was.

    python benches/compile.py            # all three sizes
    python benches/compile.py 1000000    # chosen sizes
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import shardcost
from shardcost.symbolic import METRICS

SIZES = (10**3, 10**6, 10**7)
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
SWEPT = ("batch_size", "seq_len")


def by_hand(
    hidden_size=None,
    num_heads=None,
    num_kv_heads=None,
    head_dim=None,
    batch_size=1,
    seq_len=2048,
    bytes_per_elem=2,
    tensor_parallel=4,
):
    """Attention under TP, prefill, in Python ints, with the compiled function's defaults
    and checks, the algebra done by hand (the fewest operations a person would write)."""
    if hidden_size is None:
        hidden_size = (num_heads or 32) * (head_dim or 128)
    if num_heads is None:
        num_heads = hidden_size // (head_dim or 128)
    if head_dim is None:
        head_dim = hidden_size // num_heads
    if num_kv_heads is None:
        num_kv_heads = num_heads
    d, h, hkv, dh = hidden_size, num_heads, num_kv_heads, head_dim
    B, S, b, tp = batch_size, seq_len, bytes_per_elem, tensor_parallel
    if min(d, h, hkv, dh, B, S, b, tp) < 1:
        raise ValueError("every size is a positive integer")
    if d != h * dh:
        raise ValueError("hidden_size is num_heads × head_dim")
    if h % hkv or h % tp or (hkv % tp and tp % hkv):
        raise ValueError("the heads do not split")
    hl, hkvl = h // tp, -(-hkv // tp)
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
    """The same on float64 arrays (B, S) and scalars, as a person would write it with
    numpy, checks included (raising where the compiled function raises)."""
    for x in (d, h, hkv, dh, b, tp):
        if x < 1 or x % 1:
            raise ValueError("every size is a positive integer")
    if d != h * dh or h % hkv or h % tp or (hkv % tp and tp % hkv):
        raise ValueError("the split cannot be made")
    ok = (B >= 1) & (np.floor(B) == B) & (S >= 1) & (np.floor(S) == S)
    if not ok.all():
        raise ValueError("every size is a positive integer")
    hl, hkvl = h // tp, -(-hkv // tp)
    M = B * S
    flops = 4 * M * dh * (d * hl + d * hkvl + S * hl)
    weights = 2 * d * dh * (hl + hkvl) * b
    acts = M * b * (2 * d + dh * hl + 2 * dh * hkvl)
    kv = 2 * M * hkvl * dh * b
    comm = M * (d * b) if tp > 1 else np.zeros_like(M)
    return (flops, weights, acts, kv, flops * tp, weights * tp, acts * tp, kv * tp, comm)


@dataclass(frozen=True)
class Row:
    """One figure: the baseline's and shardcost's samples (seconds, or GB/s when
    ``rate``), and the target for their ratio."""

    path: str
    configurations: int
    baseline: str
    base: list[float]
    ours: list[float]
    target: float | None
    rate: bool = False  # samples are rates (higher is better), not times

    def ratio(self, pick: Callable[[list[float]], float]) -> float:
        if self.rate:
            return pick(self.ours) / pick(self.base)
        return pick(self.base) / pick(self.ours)

    def cells(self) -> list[str]:
        best = max if self.rate else min
        ratio = self.ratio(best)
        verdict = "" if self.target is None else ("met" if ratio >= self.target else "MISSED")
        return [
            self.path,
            f"{self.configurations:,}",
            self.baseline,
            _figure(self.base, self.rate),
            _figure(self.ours, self.rate),
            f"{ratio:.2f}x",
            f"{self.ratio(statistics.median):.2f}x",
            "" if self.target is None else f">= {self.target}",
            verdict,
        ]


def _figure(samples: list[float], rate: bool) -> str:
    best = max(samples) if rate else min(samples)
    spread = max(samples) / min(samples)
    median = statistics.median(samples)
    if rate:
        return f"{best:6.1f} / {median:6.1f} GB/s  x{spread:.2f}"
    unit, scale = ("µs", 1e6) if best < 1e-3 else ("ms", 1e3)
    return f"{best * scale:8.2f} / {median * scale:8.2f} {unit}  x{spread:.2f}"


def _rounds(
    baseline: Callable[[], object], ours: Callable[[], object], number: int, repeat: int
) -> tuple[list[float], list[float]]:
    """Seconds per call of each: ``repeat`` rounds, baseline and shardcost alternating,
    of ``number`` calls each. Large calls are timed one by one (the first call after the
    other function ran may find memory in another state: its time is a sample like any);
    small ones in a loop, as the average of the round."""
    base: list[float] = []
    mine: list[float] = []
    single = number <= 10
    for _ in range(repeat):
        for fn, samples in ((baseline, base), (ours, mine)):
            gc.collect()
            if single:
                for _ in range(number):
                    start = time.perf_counter()
                    fn()
                    samples.append(time.perf_counter() - start)
                continue
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - start) / number)
    return base, mine


def _counts(n: int) -> tuple[int, int]:
    """(calls per round, rounds) for ``n`` configurations per call."""
    if n <= 10**4:
        return 2000, 9
    return (5, 7) if n <= 10**6 else (3, 5)


def scalar(defaults: bool) -> Row:
    """One configuration per call: every input given, or none (the defaults, and the
    relation deriving hidden_size from num_heads × head_dim)."""
    f = shardcost.compile("tp", "prefill")
    given = {} if defaults else KW
    assert f(**given) == by_hand(**given)
    base, ours = _rounds(lambda: by_hand(**given), lambda: f(**given), 100_000, 9)
    label = "hand Python, defaults" if defaults else "hand Python"
    return Row("scalar", 1, label, base, ours, 1.0)


def numpy_path(n: int) -> Row:
    f = shardcost.compile("tp", "prefill")
    rng = np.random.default_rng(0)
    batch = rng.integers(1, 16, n).astype(np.float64)
    seq = (rng.integers(1, 64, n) * 64).astype(np.float64)
    scalars = {k: float(v) for k, v in KW.items() if k not in SWEPT}
    hand_args = (
        *(scalars[k] for k in ("hidden_size", "num_heads", "num_kv_heads", "head_dim")),
        batch,
        seq,
        scalars["bytes_per_elem"],
        scalars["tensor_parallel"],
    )
    got = f(batch_size=batch, seq_len=seq, **scalars)
    want = numpy_by_hand(*hand_args)
    for name, value in zip(METRICS, want, strict=True):
        assert np.array_equal(np.broadcast_to(value, (n,)), got[name]), name
    del got, want
    number, repeat = _counts(n)
    base, ours = _rounds(
        lambda: numpy_by_hand(*hand_args),
        lambda: f(batch_size=batch, seq_len=seq, **scalars),
        number,
        repeat,
    )
    target = 1.2 if n >= 10**6 else None
    return Row("numpy", n, "hand numpy", base, ours, target)


def numba_path(n: int) -> Row:
    f = shardcost.compile("tp", "prefill", backend="numba")
    rng = np.random.default_rng(1)
    batch = rng.integers(1, 16, n)
    seq = rng.integers(1, 64, n) * 64
    fixed = {k: v for k, v in KW.items() if k not in SWEPT}
    out = np.empty((len(METRICS), n), dtype=np.int64)
    ok = np.empty(n, dtype=np.bool_)
    f(out=out, ok=ok, batch_size=batch, seq_len=seq, **fixed)  # compiled, or loaded
    assert ok.all()
    for i in (0, n // 2, n - 1):
        want = by_hand(**KW | {"batch_size": int(batch[i]), "seq_len": int(seq[i])})
        assert out[:, i].tolist() == [want[m] for m in METRICS]
    moved = batch.nbytes + seq.nbytes + out.nbytes + ok.nbytes
    src = np.ones(moved // 16, dtype=np.int64)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    number, repeat = _counts(n)
    copies, kernel = _rounds(
        lambda: np.copyto(dst, src),
        lambda: f(out=out, ok=ok, batch_size=batch, seq_len=seq, **fixed),
        number,
        repeat,
    )
    copy_rates = [2 * src.nbytes / t / 1e9 for t in copies]
    kernel_rates = [moved / t / 1e9 for t in kernel]
    target = 0.8 if n >= 10**7 else None
    return Row("numba", n, "array copy", copy_rates, kernel_rates, target, rate=True)


def table(rows: list[Row]) -> str:
    head = [
        "path",
        "configs",
        "baseline",
        "baseline: best / median  spread",
        "shardcost: best / median  spread",
        "ratio",
        "ratio (medians)",
        "target",
        "",
    ]
    cells = [head, *(r.cells() for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def main(sizes: tuple[int, ...]) -> None:
    print(
        f"attention TP prefill, nine metrics; {os.cpu_count()} CPUs "
        f"(load average {os.getloadavg()[0]:.1f} at the start: other work may share them)"
    )
    print(
        "ratio: speed-up over the baseline (numpy, scalar: its time / ours; numba: our "
        "bytes per second / the copy's), of the best runs\n"
    )
    rows = [numpy_path(n) for n in sizes]
    rows += [numba_path(n) for n in sizes]
    rows += [scalar(defaults=False), scalar(defaults=True)]
    print(table(rows))
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        main(tuple(int(a) for a in sys.argv[1:]) or SIZES)
