"""Sweeps to CSV against pyarrow writing the same table, in the same run.

For each size (10^6 and 10^7 rows by default) of a decode grid, ``tp`` with
batch_size × past_seq_len (every count below 2^53, so no row takes the exact path):

1. ``shardcost sweep ... -o FILE.csv`` in a subprocess, as a user runs it (interpreter
   start and imports included): CPU seconds (user + system) and wall seconds; peak RSS
   (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``, read by a small runner process
   that starts the sweep). Once through pyarrow's writer, once through numpy's
   (``PYARROW = False``).
2. pyarrow alone: the sweep's CSV read back into a table (int64 and bool columns), then
   ``pyarrow.csv.write_csv`` of that table to a file beside it, timed alone (process time:
   every thread's CPU). Its bytes are checked to be the sweep's bytes.

Ratio: the sweep's CPU over pyarrow's; "net" first takes off the CPU of a two-row
sweep of the same layout (interpreter start, imports, compiling the layout: about a
second, whatever the size). min / median / spread (max - min) over repeats.
A last line shows a prefill grid where half the rows pass 2^53 and are recomputed with
Python ints (the exact path), at 10^6 rows.

    python benches/sweep.py [--rows 1000000 10000000] [--repeats 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "subprocess.run(sys.argv[1:], check=True); "
    "t = time.perf_counter() - t; r = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(r.ru_utime + r.ru_stime, t, r.ru_maxrss)"
)
NUMPY_WRITER = (
    "import sys; import shardcost.codegen.sweep as s; s.PYARROW = False; "
    "from shardcost.cli import main; sys.exit(main(sys.argv[1:]))"
)


@dataclass
class Run:
    cpu: float
    wall: float
    rss_mb: float


def decode_grid(rows: int) -> list[str]:
    """batch_size 1..100 × past_seq_len 1..rows/100: ``rows`` combinations."""
    return ["tp", "--phase", "decode", "batch_size=1:100", f"past_seq_len=1:{rows // 100}"]


def prefill_grid(rows: int) -> list[str]:
    """batch_size 1..4 × seq_len 4..rows step 4: at 10^6 rows, 49% of them past 2^53."""
    return ["tp", "batch_size=1:4", f"seq_len=4:{rows}:4"]


def sweep(grid: list[str], target: Path, numpy: bool = False) -> Run:
    """One sweep in a subprocess of a small runner process: the sweep's CPU, wall time and
    peak RSS. (A child's ru_maxrss starts at its parent's RSS when it is spawned, and this
    process holds a table of 10^7 rows at times: the runner keeps the figure the sweep's.)"""
    code = ["-c", NUMPY_WRITER] if numpy else ["-m", "shardcost"]
    argv = [sys.executable, *code, "sweep", *grid, "--no-progress", "-o", str(target)]
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *argv], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"sweep failed ({done.returncode}): {done.stderr}")
    cpu, wall, kib = done.stdout.split()  # Linux: ru_maxrss in KiB
    return Run(float(cpu), float(wall), int(kib) / 1024)


def arrow_write(source: Path, target: Path, repeats: int) -> list[Run]:
    """pyarrow.csv.write_csv of the sweep's rows, timed alone; its bytes checked."""
    import pyarrow.csv as pa_csv

    table = pa_csv.read_csv(source)
    with source.open("rb") as file:
        header = file.readline()  # pyarrow quotes every name of its own header: ours
    options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
    runs = []
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        with target.open("wb") as file:
            file.write(header)
            pa_csv.write_csv(table, file, options)
        runs.append(Run(time.process_time() - cpu, time.perf_counter() - wall, 0.0))
    if not filecmp.cmp(source, target, shallow=False):
        raise SystemExit("pyarrow's CSV differs from the sweep's: not the same bytes")
    del table
    return runs


def spread(values: list[float]) -> str:
    return f"{min(values):7.2f} {statistics.median(values):7.2f} {max(values) - min(values):6.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10**6, 10**7])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the CSV files go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        here = Path(scratch)
        out, ref = here / "sweep.csv", here / "arrow.csv"
        print(
            "sweep to CSV: CPU s (user+sys, interpreter start included) and wall s as "
            "min / median / spread over repeats; ratio = sweep CPU / pyarrow write_csv CPU "
            "(min over min); peak RSS of the sweep process"
        )
        header = (
            f"{'rows':>11}  {'writer':8} {'CPU min   med  spread':>22} "
            f"{'wall min   med  spread':>23} {'pyarrow CPU':>12} {'ratio':>6} {'net':>6} "
            f"{'peak RSS':>9}"
        )
        print(header)
        lines = [(rows, decode_grid(rows), False) for rows in args.rows]
        lines.append((10**6, prefill_grid(10**6), True))
        for rows, grid, exact in lines:
            runs = {w: [sweep(grid, out, w == "numpy") for _ in range(args.repeats)] for w in
                    ("pyarrow", "numpy")}  # fmt: skip
            arrow = arrow_write(out, ref, args.repeats)
            base = min(r.cpu for r in arrow)
            tiny = [*grid[:-2], "batch_size=1,2"]  # each grid ends with its two swept keys
            start = min(sweep(tiny, here / "tiny.csv").cpu for _ in range(args.repeats))
            for writer, done in runs.items():
                cpu = [r.cpu for r in done]
                print(
                    f"{rows:>11,}  {writer:8} {spread(cpu):>22} "
                    f"{spread([r.wall for r in done]):>23} {base:12.2f} "
                    f"{min(cpu) / base:5.2f}x {(min(cpu) - start) / base:5.2f}x "
                    f"{max(r.rss_mb for r in done):6.0f} MB"
                    + ("  (prefill: exact path)" if exact else "")
                )
            print(
                f"{'':>11}  pyarrow write_csv alone: CPU {spread([r.cpu for r in arrow])}, "
                f"wall {spread([r.wall for r in arrow])}, {out.stat().st_size / 1e9:.2f} GB; "
                f"two-row sweep (start): CPU {start:.2f}"
            )
    print(f"machine: {os.cpu_count()} CPUs; RUSAGE_SELF peak {_self_rss():.0f} MB (bench)")


def _self_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
