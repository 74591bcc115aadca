"""The planner against one whole-model evaluation measured in the same run.

Baseline: ``shardcost.model_metrics`` of the same model in decode under ``tp`` on an H100
(the SymPy path, derivations cached): one plan's worth of numbers. Then
``shardcost.plan`` searches every plan of 8 and 1,024 chips for a Llama-3.1-70B-shaped
model and of 64 and 1,024 chips for a DeepSeek-V3-shaped one: the first search in the
process (the layers' compiled functions built) and repeated ones. Each figure: seconds,
and the ratio to the baseline (min, median, spread over the repeats).

Then the command in a new process, as a user runs it (``shardcost plan llama-3.1-8b
--chips 8``, ``deepseek-v3 --chips 64``), against ``python -c "import sympy"``: with the
cache off (every program derived); with the layers' programs on disk (``codegen.stored``)
but no plan entry, the engine's path; and answered from the plan entry the engine stored
(``shardcost.numeric_plan``: no SymPy), at other concurrencies.

    python benches/plan.py [REPEATS]
"""

from __future__ import annotations

import os
import shutil
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
    """The plan command in fresh processes, as a user runs it, against importing SymPy:
    with the cache off; with the layers' programs on disk but no plan entry (the engine,
    which then stores the entry); and answered from the entry (``shardcost.numeric_plan``,
    no SymPy), each repeat at another concurrency."""
    root = Path(__file__).resolve().parents[1]
    cases = (("llama-3.1-8b", 8, "h100-sxm"), ("deepseek-v3", 64, "h200"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(root), "SHARDCOST_CACHE_DIR": tmp}
        env.pop("SHARDCOST_NO_CACHE", None)
        sympy = [_process([sys.executable, "-c", "import sympy"], env) for _ in range(repeats)]
        base = min(sympy)
        print(f"\nbaseline: python -c 'import sympy' {base:.3f} s (min of {repeats})")
        heads = ("min s", "median s", "min x", "median x", "spread x")
        for name, chips, hw in cases:
            config = str(CONFIGS / f"{name}.json")
            plan = [sys.executable, "-m", "shardcost", "plan", config, "--chips", str(chips)]
            plan += ["--hardware", hw, "--format", "json"]
            off = [_process(plan, {**env, "SHARDCOST_NO_CACHE": "1"}) for _ in range(repeats)]
            _process(plan, env)  # the layers' programs to disk
            engine = []
            for _ in range(repeats):
                shutil.rmtree(Path(tmp) / "plan", ignore_errors=True)
                engine.append(_process(plan, env))  # stores the entry
            entry = sum(f.stat().st_size for f in (Path(tmp) / "plan").iterdir())
            warm = [_process([*plan, "--concurrency", str(3 + k)], env) for k in range(repeats)]
            label = f"plan {name}, {chips} chips"
            print(f"\n{label:34} " + " ".join(f"{h:>8}" for h in heads))
            for what, runs in (
                ("cache off", off),
                ("engine, programs on disk", engine),
                ("from the entry (no SymPy)", warm),
            ):
                ratios = [t / base for t in runs]
                print(
                    f"{what:34} {min(runs):8.2f} {statistics.median(runs):8.2f} "
                    f"{min(ratios):8.2f} {statistics.median(ratios):8.2f} "
                    f"{max(ratios) - min(ratios):8.2f}"
                )
            print(f"{'entry size':34} {entry / 1e6:8.2f} MB")


if __name__ == "__main__":
    main()
    new_processes(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
