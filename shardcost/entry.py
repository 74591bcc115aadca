"""The ``shardcost`` command's entry point: answers from the cache first, then the engine.

A numeric command whose program is cached (``shardcost.numeric``, ``numeric_model``,
``numeric_plan``, ``numeric_kv``, ``numeric_sweep``) and a ``verify`` whose verdicts are
(``shardcost.fastverify``) are answered without importing SymPy or the formulas;
anything else goes to ``shardcost.cli``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    from shardcost.fastverify import try_cached
    from shardcost.numeric import try_compare, try_metrics
    from shardcost.numeric_model import try_model
    from shardcost.numeric_sweep import try_sweep

    for fast in (try_metrics, try_compare, try_model, try_plan, try_kv, try_sweep, try_cached):
        done = fast(args)
        if done is not None:
            return done
    from shardcost.cli import main as engine

    return engine(args)


def try_plan(argv: Sequence[str]) -> int | None:
    """``plan`` and ``model --plan`` from a cached entry (``shardcost.numeric_plan``,
    which loads numpy: only for these commands)."""
    if not argv or argv[0] not in ("plan", "model"):
        return None
    from shardcost.numeric_plan import try_plan as answered

    return answered(argv)


def try_kv(argv: Sequence[str]) -> int | None:
    """``kv-tier`` from a cached entry (``shardcost.numeric_kv``)."""
    if not argv or argv[0] != "kv-tier":
        return None
    from shardcost.numeric_kv import try_kv as answered

    return answered(argv)
