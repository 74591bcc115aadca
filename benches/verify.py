"""How long verify takes over every built-in layout, and how many invariants it proves.

Fresh processes, each against the floor of a fresh process that only imports SymPy (the
same rounds, interleaved, so load on the machine hits them alike): ``shardcost verify``
with the cache off (the engine proves everything; once more with every point check
evaluated by SymPy's substitution instead of the exact evaluator, as before it), with a
cold cache (an empty cache directory: the engine, then storing the output) and with a warm
cache (the stored output replayed by ``shardcost.fastverify``, no SymPy), through
``python -m shardcost`` and through the console script's entry point
(``shardcost.entry:main``). Then in process: every built-in under the default conventions
(and, with --every-convention, under every combination of them: minutes).

    python benches/verify.py [N] [--every-convention]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ("shardcost", "symbolic", "formulas", "codegen", "reports")
SYMPY = [sys.executable, "-c", "import sympy"]
MODULE = [sys.executable, "-m", "shardcost", "verify"]
ENTRY = [sys.executable, "-c", "from shardcost.entry import main; raise SystemExit(main())"]
# the cache off and every point evaluated by SymPy's substitution, as before the evaluator
SUBSTITUTION = [
    sys.executable,
    "-c",
    "import shardcost.symbolic.verify as v; v._evaluator = lambda expr: None; "
    "from shardcost.cli import main; raise SystemExit(main(['verify']))",
]


def once(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds for one run of ``argv`` (which must exit 0)."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def row(label: str, times: list[float], base: list[float]) -> str:
    lo, mid, spread = min(times), statistics.median(times), max(times) - min(times)
    ratio_lo, ratio_mid = lo / min(base), mid / statistics.median(base)
    return f"  {label:48} {lo:6.3f} {mid:7.3f} {spread:7.3f}   {ratio_lo:5.2f}x {ratio_mid:6.2f}x"


def snapshot(into: Path) -> Path:
    """The package's folders copied: run from there (``python -m`` puts the working
    directory first on the path), a source file edited meanwhile changes no cache key."""
    for folder in PACKAGE:
        shutil.copytree(ROOT / folder, into / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return into


def processes(runs: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SHARDCOST_NO_CACHE"}
    off = {**env, "SHARDCOST_NO_CACHE": "1"}
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="shardcost-bench-") as tmp:
        src = snapshot(Path(tmp) / "src")
        warm = {**env, "SHARDCOST_CACHE_DIR": str(Path(tmp) / "warm")}
        stored = Path(tmp) / "warm" / "verify"
        once(MODULE, warm, src)  # fills the warm cache
        once(SYMPY, env, src)  # and the file system's
        entries = len(list(stored.iterdir()))
        for i in range(runs):
            cold = {**env, "SHARDCOST_CACHE_DIR": str(Path(tmp) / f"cold-{i}")}
            for label, argv, where in (
                ("baseline: python -c 'import sympy'", SYMPY, env),
                ("verify, cache off, points by SymPy substitution", SUBSTITUTION, off),
                ("verify, cache off (SHARDCOST_NO_CACHE=1)", MODULE, off),
                ("verify, cold cache (empty directory)", MODULE, cold),
                ("verify, warm cache: python -m shardcost", MODULE, warm),
                ("verify, warm cache: shardcost.entry:main", [*ENTRY, "verify"], warm),
            ):
                times.setdefault(label, []).append(once(argv, where, src))
        misses = len(list(stored.iterdir())) - entries  # a miss stores a new entry
    base = times["baseline: python -c 'import sympy'"]
    print(f"fresh processes, every built-in layout, {runs} rounds (seconds; x: / baseline):")
    print(f"  {'':48} {'min':>6} {'median':>7} {'spread':>7}   {'min':>6} {'median':>7}")
    for label, found in times.items():
        print(row(label, found, base))
    print(f"  warm runs that missed the cache: {misses} of {2 * runs}")


def in_process(every: bool) -> None:
    from shardcost.formulas.verification import verify

    for label, each in (("default conventions", False), ("every convention", True)):
        if each and not every:
            continue
        start = time.perf_counter()
        results = verify(every_convention=each)
        seconds = time.perf_counter() - start
        statuses = [v.status for r in results for v in r.verdicts]
        print(
            f"in process, {label}: {len(results)} layout-phase checks, {len(statuses)} "
            f"invariants: {statuses.count('proved')} proved, {statuses.count('checked')} "
            f"checked at points, {statuses.count('failed')} failed, {seconds:.3f} s"
        )


def main(argv: list[str]) -> None:
    every = "--every-convention" in argv
    numbers = [a for a in argv if not a.startswith("--")]
    processes(int(numbers[0]) if numbers else 5)
    in_process(every)


if __name__ == "__main__":
    main(sys.argv[1:])
