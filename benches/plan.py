"""The planner against one whole-model evaluation measured in the same run.

Baseline: ``shardcost.model_metrics`` of the same model in decode under ``tp`` on an H100
(the SymPy path, derivations cached): one plan's worth of numbers. Then
``shardcost.plan`` searches every plan of 8 and 1,024 chips for a Llama-3.1-70B-shaped
model and of 64 and 1,024 chips for a DeepSeek-V3-shaped one: the first search in the
process (the layers' compiled functions built) and repeated ones. Each figure: seconds,
and the ratio to the baseline (min, median, spread over the repeats).

    python benches/plan.py [REPEATS]
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

import shardcost

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"
CASES = (
    ("llama-3.1-70b", 8, "h100-sxm", {"prompt": 8192, "output": 256, "concurrency": 8}),
    ("llama-3.1-70b", 1024, "h100-sxm", {"prompt": 8192, "output": 256, "concurrency": 1024}),
    ("deepseek-v3", 64, "h200", {"prompt": 4096, "output": 512, "concurrency": 256}),
    ("deepseek-v3", 1024, "h200", {"prompt": 4096, "output": 512, "concurrency": 4096}),
)


def seconds(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    warnings.simplefilter("ignore")
    config = CONFIGS / "llama-3.1-70b.json"

    def baseline_call(i: int = 0) -> None:
        shardcost.model_metrics(
            config,
            "decode",
            layout="tp",
            hardware="h100-sxm",
            tensor_parallel=8,
            past_seq_len=8192 + i,
        )

    baseline_call()
    base = statistics.median(seconds(lambda i=i: baseline_call(i + 1)) for i in range(5))
    print(f"baseline: one model_metrics (decode, tp=8) {base * 1e3:.2f} ms")
    heads = ("plans", "first s", "min s", "min x", "median x", "spread x")
    print(f"{'search':28} " + " ".join(f"{h:>8}" for h in heads))
    for name, chips, hw, work in CASES:
        path = CONFIGS / f"{name}.json"
        first_result: dict = {}

        def search(
            out: dict = first_result,
            path: Path = path,
            hw: str = hw,
            chips: int = chips,
            work: dict = work,
        ) -> None:
            out.update(shardcost.plan(path, hardware=hw, chips=chips, **work))

        first = seconds(search)
        runs = [seconds(search) for _ in range(repeats)]
        ratios = [t / base for t in runs]
        label = f"{name} on {chips} x {hw}"
        print(
            f"{label:28} {first_result['tried']:8} {first:8.2f} {min(runs):8.3f} "
            f"{min(ratios):8.1f} {statistics.median(ratios):8.1f} {max(ratios) - min(ratios):8.1f}"
        )


if __name__ == "__main__":
    main()
