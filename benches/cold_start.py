"""Cold-start wall time of the command line, against the floor of importing SymPy.

Every shardcost command is a fresh Python process. The baseline is a process that only
imports SymPy, measured in the same run (round-robin with the commands, so load on the
machine hits all alike); the floor is a process that does nothing. Prints min, median
and spread (max/min) of N runs of each command and its ratios to the baseline.
``metrics``, ``model``, ``plan``, ``kv-tier`` and ``sweep`` run twice: from the program
cache (``shardcost.numeric``, ``numeric_model``, ``numeric_plan``, ``numeric_kv``,
``numeric_sweep``; no SymPy: what a user sees from the second run on) and with the cache
off (the engine every time). The
first rows are imports: ``import shardcost`` loads no SymPy; ``import shardcost.symbolic``
is the engine alone, no formulas.

    python benches/cold_start.py [N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
OUT = tempfile.mkdtemp(prefix="shardcost-bench-")

COMMANDS = {
    "baseline: python -c 'import sympy'": [PY, "-c", "import sympy"],
    "python -c 'import shardcost'": [PY, "-c", "import shardcost"],
    "python -c 'import shardcost.symbolic'": [PY, "-c", "import shardcost.symbolic"],
    "shardcost metrics tp --format json": [
        PY,
        "-m",
        "shardcost",
        "metrics",
        "tp",
        "--format",
        "json",
    ],
    "shardcost metrics tp-cp --phase decode --hardware seed-test": [
        PY,
        "-m",
        "shardcost",
        "metrics",
        "tp-cp",
        "--phase",
        "decode",
        "--hardware",
        "seed-test",
    ],
    "shardcost (every layout, both phases)": [PY, "-m", "shardcost"],
    "shardcost spec check (14 cases)": [PY, "-m", "shardcost", "spec", "check"],
    "shardcost model llama-3.1-8b --hardware h100-sxm": [
        PY,
        "-m",
        "shardcost",
        "model",
        "examples/configs/llama-3.1-8b.json",
        "--hardware",
        "h100-sxm",
    ],
    "shardcost plan llama-3.1-8b --chips 8 --hardware h100-sxm": [
        PY,
        "-m",
        "shardcost",
        "plan",
        "examples/configs/llama-3.1-8b.json",
        "--chips",
        "8",
        "--hardware",
        "h100-sxm",
    ],
    "shardcost kv-tier llama-3.1-8b (3 requests)": [
        PY,
        "-m",
        "shardcost",
        "kv-tier",
        "examples/configs/llama-3.1-8b.json",
        "--hardware",
        "h100-sxm",
        "past_seq_len=32768,4096,64",
    ],
    "shardcost spec render (15 documents)": [PY, "-m", "shardcost", "spec", "render", OUT],
    "shardcost sweep tp batch_size=1:64 seq_len=1024,2048": [
        PY,
        "-m",
        "shardcost",
        "sweep",
        "tp",
        "batch_size=1:64",
        "seq_len=1024,2048",
    ],
    "shardcost sweep tp batch_size=1:1000 seq_len=1:1000 -o FILE": [
        PY,
        "-m",
        "shardcost",
        "sweep",
        "tp",
        "batch_size=1:1000",
        "seq_len=1:1000",
        "-o",
        str(Path(OUT) / "sweep.csv"),
    ],
}


NO_CACHE = {"SHARDCOST_NO_CACHE": "1"}
# commands also timed with the program cache off: the engine (SymPy) every time
ENGINE_ALSO = (
    "shardcost metrics tp --format json",
    "shardcost metrics tp-cp --phase decode --hardware seed-test",
    "shardcost model llama-3.1-8b --hardware h100-sxm",
    "shardcost plan llama-3.1-8b --chips 8 --hardware h100-sxm",
    "shardcost kv-tier llama-3.1-8b (3 requests)",
    "shardcost sweep tp batch_size=1:64 seq_len=1024,2048",
    "shardcost sweep tp batch_size=1:1000 seq_len=1:1000 -o FILE",
)


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main(runs: int) -> None:
    cache_dir = tempfile.mkdtemp(prefix="shardcost-bench-cache-")
    env = {**os.environ, "SHARDCOST_CACHE_DIR": cache_dir}
    rows: dict[str, tuple[list[str], dict[str, str]]] = {
        "floor: python -c pass": ([PY, "-c", "pass"], env)
    }
    for label, argv in COMMANDS.items():
        rows[label + (" (cached program)" if label in ENGINE_ALSO else "")] = (argv, env)
        if label in ENGINE_ALSO:
            rows[label + " (engine: SHARDCOST_NO_CACHE=1)"] = (argv, {**env, **NO_CACHE})
    for argv, e in rows.values():
        wall(argv, e)  # warm the file and program caches; every timed run is a fresh process
    times: dict[str, list[float]] = {label: [] for label in rows}
    for _ in range(runs):  # round-robin: a burst of load on the machine hits every row alike
        for label, (argv, e) in rows.items():
            times[label].append(wall(argv, e))
    base = times["baseline: python -c 'import sympy'"]
    base_min, base_med = min(base), statistics.median(base)
    if sys.flags.dont_write_bytecode:
        print("note: PYTHONDONTWRITEBYTECODE is set: every run compiles shardcost's sources")
    print(f"{runs} runs each, round-robin; ratios to the SymPy import measured in the same run")
    print(
        f"{'command':90} {'min s':>7} {'median s':>9} {'spread':>7} "
        f"{'x sympy (min)':>14} {'x sympy (median)':>17}"
    )
    for label, values in times.items():
        lo, med = min(values), statistics.median(values)
        print(
            f"{label:90} {lo:7.3f} {med:9.3f} {max(values) / lo:7.2f} "
            f"{lo / base_min:14.2f} {med / base_med:17.2f}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
