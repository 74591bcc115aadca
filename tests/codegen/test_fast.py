"""The numba back end: the same numbers as metrics(), into caller-allocated outputs."""

from __future__ import annotations

import numpy as np
import pytest

import shardcost
from shardcost.errors import InputError
from shardcost.formulas import Layout, Phase
from shardcost.symbolic import METRICS
from tests.codegen.configurations import one_per_layer, valid_configs

# numba compiles each kernel in seconds: of each layer, the layout reading the most inputs
CASES = [(lay, ph) for lay in one_per_layer() for ph in lay.phases]


@pytest.mark.parametrize(
    ("layout", "phase"), CASES, ids=[f"{lay.layer}/{lay.name}-{ph}" for lay, ph in CASES]
)
def test_equals_metrics(layout: Layout, phase: Phase) -> None:
    f = shardcost.compile(layout.name, str(phase), layer=layout.layer, backend="numba")
    drawn = valid_configs(layout, phase, 80, seed=7, conventions=False, large=False)
    found = [c for c in drawn if max(c[2].values()) < 2**60]  # within int64 (see test_exact_paths)
    n = len(found)
    out = np.empty((len(METRICS), n), dtype=np.int64)
    ok = np.empty(n, dtype=np.bool_)
    arrays = {k: np.array([p[k] for p, _, _ in found]) for k in found[0][0]}
    got, valid = f(out=out, ok=ok, **arrays)
    assert got is out and valid is ok  # filled in place
    assert ok.all()
    for i, (_, _, want) in enumerate(found):
        assert out[:, i].tolist() == [want[m] for m in METRICS], i


def test_invalid_columns_are_flagged_not_fatal() -> None:
    f = shardcost.compile("tp", "prefill", backend="numba")
    out, ok = f(num_heads=np.array([32, 30, 32]), head_dim=128, batch_size=np.array([1, 1, 0]))
    assert ok.tolist() == [True, False, False]  # 30 heads over tp=4; batch_size 0
    assert out[:, 1].tolist() == [0] * 9


def test_wrong_output_buffers_are_refused() -> None:
    f = shardcost.compile("tp", "prefill", backend="numba")
    with pytest.raises(InputError, match="out must be an int64 array of shape \\(9, 3\\)"):
        f(out=np.empty((9, 2), np.int64), seq_len=np.array([1, 2, 3]))
    with pytest.raises(InputError, match="timing=True needs backend='python'"):
        shardcost.compile("tp", "prefill", timing=True, backend="numba")
    with pytest.raises(shardcost.UnknownNameError, match="backend='gpu' is unknown"):
        shardcost.compile("tp", backend="gpu")
