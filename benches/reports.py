"""How long rendering the spec documents takes, against evaluating the same cases.

In one process, after a warm-up: the baseline recomputes and checks every spec case
(what `shardcost spec check` does); then the same plus rendering every document (what
`shardcost spec render` does); then a derivation report per layout and phase.

    python benches/reports.py [N]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from shardcost.formulas import all_layouts, evaluate, resolve_inputs
from shardcost.formulas.cases import check_all
from shardcost.reports.render import derivation_report, spec_documents


def seconds(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm: SymPy's caches and the cost builders
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def every_report() -> None:
    for lay in all_layouts("attention"):
        for phase in ("prefill", "decode"):
            derivation_report(evaluate(resolve_inputs(lay.name, phase, hardware="seed-test")))


def main(runs: int) -> None:
    base = seconds(check_all, runs)
    rows = {
        "baseline: check all 14 spec cases": base,
        "render all 14 spec documents + index": seconds(spec_documents, runs),
        "derivation report, 5 layouts x 2 phases": seconds(every_report, runs),
    }
    title = f"work (median of {runs}, warm)"
    print(f"{title:44} {'seconds':>8} {'x baseline':>11}")
    for label, value in rows.items():
        print(f"{label:44} {value:8.3f} {value / base:11.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
