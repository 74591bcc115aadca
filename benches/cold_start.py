"""Cold-start wall time of the command line, against the floor of importing SymPy.

Every shardcost command is a fresh Python process that imports SymPy; that import is
the baseline, measured in the same run. Prints the median of N runs of each command
and its ratio to the baseline. The first rows are imports: ``import shardcost`` loads
no SymPy, so it sits far below the baseline; ``import shardcost.symbolic`` is the
engine alone, no formulas.

    python benches/cold_start.py [N]
"""

from __future__ import annotations

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
}


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main(runs: int) -> None:
    medians = {}
    for label, argv in COMMANDS.items():
        wall(argv)  # warm the file cache; every timed run is still a fresh process
        medians[label] = statistics.median(wall(argv) for _ in range(runs))
    base = next(iter(medians.values()))
    if sys.flags.dont_write_bytecode:
        print("note: PYTHONDONTWRITEBYTECODE is set: every run compiles shardcost's sources")
    print(f"{'command':62} {'median s':>9} {'x sympy import':>15}")
    for label, seconds in medians.items():
        print(f"{label:62} {seconds:9.3f} {seconds / base:15.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
