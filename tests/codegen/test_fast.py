"""The numba back end: the same numbers as metrics(), into caller-allocated outputs."""

from __future__ import annotations

import numpy as np
import pytest

import shardcost
from shardcost.errors import InputError
from shardcost.symbolic import METRICS


@pytest.mark.filterwarnings("ignore::shardcost.UnevenSplitWarning")  # random lengths over cp
@pytest.mark.parametrize("layout", ["single", "tp", "cp-allgather", "cp-kv-sharded", "tp-cp"])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_equals_metrics(layout: str, phase: str) -> None:
    f = shardcost.compile(layout, phase, backend="numba")
    rng = np.random.default_rng(7)
    n = 50
    key = "seq_len" if phase == "prefill" else "past_seq_len"
    lengths = rng.integers(1, 100_000, n)
    batch = rng.integers(1, 9, n)
    out = np.empty((len(METRICS), n), dtype=np.int64)
    ok = np.empty(n, dtype=np.bool_)
    params = {"hidden_size": 4096, "num_heads": 32, "head_dim": 128, "num_kv_heads": 8}
    got, valid = f(out=out, ok=ok, batch_size=batch, **{key: lengths}, **params)
    assert got is out and valid is ok  # filled in place
    assert ok.all()
    for i in range(0, n, 7):
        extra = {"tensor_parallel": 4} if "tp" in layout else {}
        extra |= {"context_parallel": 4} if "cp" in layout else {}
        want = shardcost.metrics(
            layout, phase, batch_size=int(batch[i]), **{key: int(lengths[i])}, **params, **extra
        )
        assert out[:, i].tolist() == list(want["metrics"].values())


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
