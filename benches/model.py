"""Ragged decode batches and whole models: the fast paths against the slow ones, in the
same run.

1. A ragged decode batch of 10^3, 10^4 and 10^5 requests (past lengths drawn from
   1..100,000) under ``tp`` on an H100, through ``shardcost.metrics`` (inputs checked,
   then each step once per distinct length on exact integer arrays) and through the
   command line in-process. Against: the old per-request path (SymPy for every request,
   ``evaluate(..., each_request=True)``; 10^3 only, it is slow) and two exact compiled
   calls (``shardcost.compile``: every request at batch_size=1 over an array of lengths,
   then the weights at one length), the README's recipe. Each is checked to give the
   same metrics before it is timed ("x": its time over ours; below 1 it is quicker).
   Columns "inputs" and "evaluate" split ``metrics`` into checking the inputs
   (``resolve_inputs``) and evaluating; "peak MB" is the memory traced during one
   ``metrics`` call (a separate run).
2. ``model_metrics`` per configuration: ``compile_model`` (each layer one compiled
   call) against ``model_metrics`` (the SymPy path) on Llama-3.1-8B and DeepSeek-V3,
   calls varying batch_size and seq_len / past_seq_len. Min, median and spread over the
   repeats, each repeat a loop of calls.

    python benches/model.py [REPEATS]
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ["SHARDCOST_NO_CACHE"] = "1"  # the command line stores programs; not here

import numpy as np

import shardcost
from shardcost.cli import main as cli
from shardcost.formulas import evaluate, resolve_inputs

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"
LAYOUT, HARDWARE = "tp", "h100-sxm"
SIZES = (10**3, 10**4, 10**5)


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Min and median seconds of ``repeats`` runs."""
    runs = [seconds(fn) for _ in range(repeats)]
    return min(runs), statistics.median(runs)


def compiled_batch(lengths: list[int]) -> dict[str, int]:
    """The README's recipe: each request alone over an array of lengths, summed, and the
    weights once (two exact compiled calls)."""
    f = shardcost.compile(LAYOUT, "decode")
    each = f(batch_size=1, past_seq_len=np.asarray(lengths), exact=True)
    one = f(batch_size=1, past_seq_len=lengths[0])
    out = {k: int(v.sum()) for k, v in each.items()}
    for key in ("weight_memory_per_chip", "weight_memory_total"):
        out[key] = one[key]
    return out


def peak_mb(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1e6


def ragged(repeats: int) -> None:
    print(f"ragged decode batch, {LAYOUT} on {HARDWARE} (seconds, min of the repeats)")
    heads = ("metrics", "CLI", "inputs", "evaluate", "old path", "x old", "compiled", "x comp")
    print(f"{'requests':>9} " + " ".join(f"{h:>9}" for h in heads) + f" {'peak MB':>8}")
    rng = random.Random(0)
    for n in SIZES:
        lengths = [rng.randint(1, 100_000) for _ in range(n)]
        params = {"past_seq_len": lengths}

        def api(params: dict = params) -> dict:
            return shardcost.metrics(LAYOUT, "decode", hardware=HARDWARE, **params)

        text = "past_seq_len=" + ",".join(map(str, lengths))
        argv = ["metrics", LAYOUT, "--phase", "decode", "--hardware", HARDWARE, text]

        def command(argv: list[str] = argv) -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                assert cli([*argv, "--format", "json"]) == 0

        got = api()
        assert compiled_batch(lengths) == got["metrics"]
        inputs = resolve_inputs(LAYOUT, "decode", hardware=HARDWARE, params=params)
        ours, _ = best(api, repeats)
        line, _ = best(command, repeats)
        checking, _ = best(
            lambda p=params: resolve_inputs(LAYOUT, "decode", hardware=HARDWARE, params=p),
            repeats,
        )
        evaluating, _ = best(lambda i=inputs: evaluate(i), repeats)
        old = old_x = "—"
        if n <= 10**3:
            slow = evaluate(inputs, each_request=True)
            assert slow.to_dict() == evaluate(inputs).to_dict()
            t = seconds(lambda i=inputs: evaluate(i, each_request=True)) + checking
            old, old_x = f"{t:9.4f}", f"{t / ours:9.0f}"
        comp, _ = best(lambda ls=lengths: compiled_batch(ls), repeats)
        mb = peak_mb(api)
        print(
            f"{n:>9,} {ours:9.4f} {line:9.4f} {checking:9.4f} {evaluating:9.4f} {old:>9} "
            f"{old_x:>9} {comp:9.4f} {comp / ours:9.2f} {mb:8.1f}"
        )


def models(repeats: int) -> None:
    print()
    print(f"model per configuration on {HARDWARE} (ms per call; x: SymPy over compiled)")
    heads = ("build ms", "min", "median", "spread", "sympy", "x min", "x median")
    print(f"{'model':34} " + " ".join(f"{h:>9}" for h in heads))
    for name, phase, layout, fixed in (
        ("llama-3.1-8b", "prefill", "single", {}),
        ("llama-3.1-8b", "decode", "tp", {"tensor_parallel": 8}),
        ("deepseek-v3", "prefill", "tp", {"tensor_parallel": 8}),
        ("deepseek-v3", "decode", "tp", {"tensor_parallel": 8}),
    ):
        model_row(CONFIGS / f"{name}.json", phase, layout, fixed, repeats)


def model_row(path: Path, phase: str, layout: str, fixed: dict, repeats: int) -> None:
    """One model: compile_model's calls against model_metrics', varying the batch and the
    lengths call by call."""
    length = "seq_len" if phase == "prefill" else "past_seq_len"
    calls = [{"batch_size": 1 + i % 64, length: 1 + 97 * i} for i in range(2_000)]
    few = calls[:: len(calls) // 20]

    def build() -> Any:
        return shardcost.compile_model(path, phase, layout=layout, hardware=HARDWARE, **fixed)

    def sympy(kw: dict) -> dict:
        return shardcost.model_metrics(path, phase, layout=layout, hardware=HARDWARE, **fixed, **kw)

    built = seconds(build)
    f = build()
    for kw in calls[:3]:
        assert f(**kw)["metrics"] == sympy(kw)["metrics"]
    per_call = [seconds(lambda: [f(**kw) for kw in calls]) / len(calls) for _ in range(repeats)]
    slow = statistics.median(
        seconds(lambda: [sympy(kw) for kw in few]) / len(few) for _ in range(repeats)
    )
    lo, mid = min(per_call), statistics.median(per_call)
    label = f"{path.stem} {phase} {layout}"
    print(
        f"{label:34} {built * 1e3:9.1f} {lo * 1e3:9.4f} {mid * 1e3:9.4f} "
        f"{(max(per_call) - lo) * 1e3:9.4f} {slow * 1e3:9.3f} {slow / lo:9.0f} "
        f"{slow / mid:9.0f}"
    )


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    warnings.simplefilter("ignore")
    ragged(repeats)
    models(repeats)


if __name__ == "__main__":
    main()
