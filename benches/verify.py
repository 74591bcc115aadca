"""How long verify takes over every built-in layout, and how many invariants it proves.

Cold: a fresh `shardcost verify` process, against the floor of a fresh process that only
imports SymPy (measured in the same run). Warm, in process: every built-in under the
default conventions, then under every convention combination (240 layout-phase checks).

    python benches/verify.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from shardcost.formulas.verification import verify

ROOT = Path(__file__).resolve().parent.parent


def cold(argv: list[str], runs: int) -> float:
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(runs: int) -> None:
    base = cold([sys.executable, "-c", "import sympy"], runs)
    whole = cold([sys.executable, "-m", "shardcost", "verify"], runs)
    print(f"cold, median of {runs}:")
    print(f"  baseline: python -c 'import sympy'   {base:6.3f} s   1.00x")
    print(f"  shardcost verify (all built-ins)     {whole:6.3f} s   {whole / base:.2f}x")

    for label, every in (("default conventions", False), ("every convention", True)):
        start = time.perf_counter()
        results = verify(every_convention=every)
        seconds = time.perf_counter() - start
        statuses = [v.status for r in results for v in r.verdicts]
        print(
            f"in process, {label}: {len(results)} layout-phase checks, {len(statuses)} "
            f"invariants: {statuses.count('proved')} proved, {statuses.count('checked')} "
            f"checked at points, {statuses.count('failed')} failed, {seconds:.3f} s"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
