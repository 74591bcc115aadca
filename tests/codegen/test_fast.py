"""The numba back end: the same numbers as metrics() and as the numpy path, into
caller-allocated outputs; kernels cached on disk for the next process."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import shardcost
from shardcost.errors import InputError, PrecisionWarning
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


def _max_count(values: dict[str, np.ndarray], i: int) -> int:
    return max(int(values[m][i]) for m in METRICS)


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
def test_agrees_with_the_numpy_path_row_by_row(dtype: type) -> None:
    # Valid and invalid rows mixed (batch 0, 30 heads over tp 4, hidden_size off by one),
    # counts from small to past 2^53 (the float loop's limit) and 2^63 (int64's).
    rng = np.random.default_rng(5)
    n = 4000
    heads = rng.choice([8, 30, 32, 64, 96], n)
    head_dim = rng.choice([64, 128], n)
    hidden = heads * head_dim
    hidden[::97] += 1
    p = dict(
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=rng.choice([1, 2, 8, 32], n),
        head_dim=head_dim,
        batch_size=rng.choice([0, 1, 7, 1000], n).astype(dtype),
        seq_len=rng.choice([1, 4096, 2**20, 10**7], n).astype(dtype),
        tensor_parallel=rng.choice([1, 2, 3, 4, 8], n),
    )
    fast = shardcost.compile("tp", "prefill", backend="numba")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, ok = fast(**p)
    numpy_path = shardcost.compile("tp", "prefill").arrays
    names = numpy_path.names
    values = tuple(p.get(name, 2) for name in names)  # bytes_per_elem: its default, 2
    want, valid, _ = numpy_path.evaluate((), values, exact=True, strict=False)
    assert not (ok & ~valid).any()  # never valid where the exact path says it is not
    assert (out[:, ~ok] == 0).all()
    refused = 0
    for i in np.flatnonzero(valid):
        if ok[i]:
            assert out[:, i].tolist() == [int(want[m][i]) for m in METRICS], i
        else:  # refused: only where a value is (or nearly is) past int64
            assert _max_count(want, i) >= 2**61, i
            refused += 1
    assert 0 < refused < valid.sum() // 2
    assert any(issubclass(w.category, PrecisionWarning) for w in caught)
    # the rows between 2^53 and 2^61 take the second, int64 loop
    assert any(2**53 <= _max_count(want, i) < 2**61 for i in np.flatnonzero(ok))


def test_inputs_that_do_not_vary_and_borrowed_defaults() -> None:
    f = shardcost.compile("tp", "prefill", backend="numba")
    heads = np.array([8, 16, 32, 12])
    out, ok = f(num_heads=heads, head_dim=64, tensor_parallel=4)  # num_kv_heads: the same
    assert ok.tolist() == [True, True, True, True]
    for i, h in enumerate(heads.tolist()):
        want = shardcost.metrics("tp", num_heads=h, head_dim=64, tensor_parallel=4)["metrics"]
        assert out[:, i].tolist() == [want[m] for m in METRICS]
    out, ok = f(num_heads=30, head_dim=64, seq_len=np.array([1, 2]))  # 30 over tp=4: none
    assert ok.tolist() == [False, False] and (out == 0).all()
    with pytest.raises(InputError, match="seq_len must be whole numbers"):
        f(seq_len=np.array([1.0, 2.5]))


def test_a_new_process_loads_the_compiled_kernel(tmp_path: Path) -> None:
    # numba's machine code is cached beside the kernel's file in the shardcost cache
    code = (
        "import numpy as np, shardcost\n"
        "f = shardcost.compile('single', 'decode', backend='numba')\n"
        "f(past_seq_len=np.array([1, 2, 3]))\n"
        "(main, _), = f._kernels.values()\n"
        "print(sum(main.stats.cache_hits.values()), sum(main.stats.cache_misses.values()))\n"
    )
    env = {**os.environ, "SHARDCOST_CACHE_DIR": str(tmp_path)}
    env.pop("SHARDCOST_NO_CACHE", None)
    root = Path(__file__).resolve().parents[2]
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    (first,), (second,) = ([line.split() for line in r.stdout.splitlines()] for r in runs)
    assert first == ["0", "1"]  # compiled, and written to the cache
    assert second == ["1", "0"]  # loaded: no compilation
    assert list((tmp_path / "numba").glob("*.py"))


def test_with_the_cache_off_kernels_compile_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shardcost.codegen.fast import FastLayout
    from shardcost.formulas import get_layout

    monkeypatch.setenv("SHARDCOST_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SHARDCOST_NO_CACHE", "1")
    f = FastLayout(get_layout("single"), Phase.DECODE)
    out, ok = f(past_seq_len=np.array([7, 8]))
    assert ok.all()
    want = shardcost.metrics("single", "decode", past_seq_len=8)["metrics"]
    assert out[:, 1].tolist() == [want[m] for m in METRICS]
    assert not any(tmp_path.iterdir())  # nothing written
