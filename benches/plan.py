"""The planner against one whole-model evaluation measured in the same run.

Baseline: ``shardcost.model_metrics`` of the same model in decode under ``tp`` on an H100
(the SymPy path, derivations cached): one plan's worth of numbers. Then
``shardcost.plan`` searches every plan of 8 and 1,024 chips for a Llama-3.1-70B-shaped
model and of 64 and 1,024 chips for a DeepSeek-V3-shaped one: the first search in the
process (the layers' compiled functions built) and repeated ones. Each figure: seconds,
and the ratio to the baseline (min, median, spread over the repeats).

Then the command in a new process, as a user runs it (``shardcost plan llama-3.1-8b
--chips 8``): with the cache off (every program derived), and with a warm cache (the
programs loaded from disk, ``codegen.stored``), against ``python -c "import sympy"``.

    python benches/plan.py [REPEATS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
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


def _process(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def new_processes(repeats: int) -> None:
    """The plan command in fresh processes: cache off, warm cache; against importing SymPy."""
    root = Path(__file__).resolve().parents[1]
    config = str(CONFIGS / "llama-3.1-8b.json")
    plan = [sys.executable, "-m", "shardcost", "plan", config, "--chips", "8"]
    plan += ["--hardware", "h100-sxm", "--format", "json"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(root), "SHARDCOST_CACHE_DIR": tmp}
        env.pop("SHARDCOST_NO_CACHE", None)
        sympy = [_process([sys.executable, "-c", "import sympy"], env) for _ in range(repeats)]
        base = min(sympy)
        off = [_process(plan, {**env, "SHARDCOST_NO_CACHE": "1"}) for _ in range(repeats)]
        _process(plan, env)  # fills the cache
        warm = [_process(plan, env) for _ in range(repeats)]
    print(f"\nbaseline: python -c 'import sympy' {base:.3f} s (min of {repeats})")
    heads = ("min s", "median s", "min x", "median x", "spread x")
    print(f"{'plan llama-3.1-8b, 8 chips':28} " + " ".join(f"{h:>8}" for h in heads))
    for label, runs in (("new process, cache off", off), ("new process, warm cache", warm)):
        ratios = [t / base for t in runs]
        print(
            f"{label:28} {min(runs):8.2f} {statistics.median(runs):8.2f} {min(ratios):8.2f} "
            f"{statistics.median(ratios):8.2f} {max(ratios) - min(ratios):8.2f}"
        )


if __name__ == "__main__":
    main()
    new_processes(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
