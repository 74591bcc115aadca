"""Whole models of every family, against a dense Llama measured in the same run.

For each config in tests/fidelity/configs: ``shardcost.model_metrics`` in decode on an
H100, repeated; each figure is the ratio of its time to the Llama-3-8B-shaped config's
(the dense family shardcost modelled first), with min, median and spread over the runs.
A block of alike layers is evaluated once, so a 61-layer MoE model with two kinds of
layers should cost about what a dense one does.

    python benches/families.py [REPEATS]
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

import shardcost

CONFIGS = Path(__file__).resolve().parents[1] / "tests" / "fidelity" / "configs"
BASELINE = "llama"


def once(path: Path, past: int) -> float:
    """Seconds for one whole-model evaluation (a new past length: nothing reused but the
    cached derivations)."""
    start = time.perf_counter()
    shardcost.model_metrics(path, "decode", hardware="h100-sxm", past_seq_len=past)
    return time.perf_counter() - start


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    warnings.simplefilter("ignore")
    paths = sorted(CONFIGS.glob("*.json"))
    first = {p.stem: once(p, 4096) for p in paths}  # derivations built and cached
    runs = {p.stem: [once(p, 4097 + i) for i in range(repeats)] for p in paths}
    base = statistics.median(runs[BASELINE])
    print(f"baseline: {BASELINE} median {base * 1e3:.2f} ms per model evaluation")
    print(f"{'family':14} {'first ms':>9} {'min x':>7} {'median x':>9} {'spread x':>9}")
    for name, times in runs.items():
        ratios = [t / base for t in times]
        print(
            f"{name:14} {first[name] * 1e3:9.1f} {min(ratios):7.2f} "
            f"{statistics.median(ratios):9.2f} {max(ratios) - min(ratios):9.2f}"
        )


if __name__ == "__main__":
    main()
