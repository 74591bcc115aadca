"""Every compiled path gives shardcost.metrics' exact numbers, or says it cannot.

The reference is ``shardcost.metrics`` (exact SymPy evaluation). The paths: the scalar
compiled function (Python ints), float64 arrays (each row exact unless marked inexact,
and a PrecisionWarning when any valid row is), exact object arrays, the sweep's CSV
(always exact: inexact rows are recomputed with Python ints) and the numba kernel (exact
in int64, or ok False with a PrecisionWarning past 2^63). Configurations are random and
adversarial (``tests/codegen/configurations.py``, over every registered layout): parallel
degrees whose reciprocals round badly in float64 (49, 91, 97 ...), and sizes that carry
counts across 2^53 and 2^63.
"""

from __future__ import annotations

import csv
import inspect
import io
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shardcost
from shardcost.codegen.sweep import parse_values, sweep
from shardcost.errors import InputError, PrecisionWarning
from shardcost.formulas import Layout, Phase
from shardcost.symbolic import METRICS
from tests.codegen.configurations import layout_phases, one_per_layer, valid_configs

LAYOUT_PHASES = layout_phases()
PER_LAYOUT = 300  # x every layout-phase (38 today): over 10,000 configurations per path
# numba compiles each kernel in seconds: one layout per layer, default conventions
NUMBA = [(lay, lay.phases[0]) for lay in one_per_layer()]
NUMBA_PER_LAYOUT = -(-10_200 // len(NUMBA))  # 10,200 through the numba kernel


@pytest.fixture(scope="module")
def cases() -> dict[tuple[str, str, str], list[tuple[dict, dict, dict]]]:
    return {
        (lay.layer, lay.name, str(ph)): valid_configs(lay, ph, PER_LAYOUT, seed=i)
        for i, (lay, ph) in enumerate(LAYOUT_PHASES)
    }


def _grouped(found: list[tuple[dict, dict, dict]]) -> dict[tuple, list[tuple[dict, dict]]]:
    """Configurations grouped by conventions (one array call each)."""
    groups: dict[tuple, list[tuple[dict, dict]]] = {}
    for p, conv, ref in found:
        groups.setdefault(tuple(sorted(conv.items())), []).append((p, ref))
    return groups


def test_the_configurations_are_adversarial(cases) -> None:
    found = [ref for group in cases.values() for _, _, ref in group]
    assert len(found) == PER_LAYOUT * len(LAYOUT_PHASES) >= 10_000
    # a good share of counts cross 2^53 and 2^63, and plenty stay below
    past53 = sum(ref["flops_total"] >= 2**53 for ref in found)
    past63 = sum(ref["flops_total"] >= 2**63 for ref in found)
    assert len(found) // 10 < past53 < len(found) - len(found) // 10
    assert past63 > len(found) // 20


def test_scalar_path_is_exact(cases) -> None:
    for (layer, name, phase), found in cases.items():
        f = shardcost.compile(name, phase, layer=layer)
        for p, conv, ref in found:
            got = f(**p, **conv)
            assert {m: got[m] for m in METRICS} == ref, (name, phase, p, conv)
            assert all(type(got[m]) is int for m in METRICS)


def test_float_arrays_are_exact_or_marked(cases) -> None:
    marked = 0
    for (layer, name, phase), found in cases.items():
        f = shardcost.compile(name, phase, layer=layer)
        for conv, rows in _grouped(found).items():
            arrays = {k: np.array([p[k] for p, _ in rows]) for k in rows[0][0]}
            key = tuple(dict(conv).get(c, values[0]) for c, values in _switches(f).items())
            # an input these conventions do not read takes the keyword's default
            defaults = inspect.signature(f).parameters
            values = tuple(arrays.get(n, defaults[n].default) for n in f.arrays.names)
            out, ok, inexact = f.arrays.evaluate(key, values, exact=False, strict=False)
            assert ok.all()
            for m in METRICS:
                column = np.broadcast_to(out[m], ok.shape).astype(object)
                expected = np.array([ref[m] for _, ref in rows], dtype=object)
                wrong = column != expected  # float vs int: compared exactly
                assert not (wrong & ~inexact).any(), (name, phase, m, conv)
            marked += int(inexact.sum())
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                f(**arrays, **dict(conv))
            warned = any(issubclass(w.category, PrecisionWarning) for w in caught)
            assert warned == bool(inexact.any()), (name, phase, conv)
    assert marked  # the large sizes do reach 2^53


def test_exact_arrays_are_exact(cases) -> None:
    for (layer, name, phase), found in cases.items():
        f = shardcost.compile(name, phase, layer=layer)
        for conv, rows in _grouped(found).items():
            arrays = {k: np.array([p[k] for p, _ in rows]) for k in rows[0][0]}
            out = f(**arrays, **dict(conv), exact=True)
            for m in METRICS:
                assert list(out[m]) == [ref[m] for _, ref in rows], (name, phase, m, conv)


def test_exact_arrays_take_python_ints_only_past_int64(cases, monkeypatch) -> None:
    # No cliff at 2^53: rows the float64 pass marks are recomputed in int64 where every
    # value stays below 2^62; only rows past that take Python ints.
    taken = 0
    for (layer, name, phase), found in cases.items():
        f = shardcost.compile(name, phase, layer=layer)
        real = f.arrays._python

        def counted(key, inputs, real=real):
            nonlocal taken
            taken += inputs.n
            return real(key, inputs)

        monkeypatch.setattr(f.arrays, "_python", counted)
        for conv, rows in _grouped(found).items():
            arrays = {k: np.array([p[k] for p, _ in rows]) for k in rows[0][0]}
            f(**arrays, **dict(conv), exact=True)
    refs = [ref for group in cases.values() for _, _, ref in group]
    past53 = sum(max(ref.values()) >= 2**53 for ref in refs)
    past63 = sum(max(ref.values()) >= 2**63 for ref in refs)
    assert past63 <= taken < past53 - past53 // 10


def test_sweep_csv_is_exact(cases) -> None:
    for (layer, name, phase), found in cases.items():
        lay = shardcost.formulas.get_layout(name, layer)
        for p, conv, ref in found[::3]:  # a third of them: one sweep call each
            text = io.StringIO()
            values = {k: [v] for k, v in {**p, **conv}.items()}
            sweep(lay, phase, values, text, progress=False)
            (row,) = csv.DictReader(io.StringIO(text.getvalue()))
            assert {m: int(row[m]) for m in METRICS} == ref, (name, phase, p, conv)


@pytest.mark.parametrize(
    ("layout", "phase"), NUMBA, ids=[f"{lay.layer}/{lay.name}-{ph}" for lay, ph in NUMBA]
)
def test_numba_is_exact_or_refuses(layout: Layout, phase: Phase) -> None:
    found = valid_configs(
        layout, phase, NUMBA_PER_LAYOUT, seed=1000 + NUMBA.index((layout, phase)), conventions=False
    )
    f = shardcost.compile(layout.name, phase, layer=layout.layer, backend="numba")
    refused = 0
    for conv, rows in _grouped(found).items():
        arrays = {k: np.array([p[k] for p, _ in rows], dtype=np.int64) for k in rows[0][0]}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out, ok = f(**arrays, **dict(conv))
        wide = [i for i, (_, ref) in enumerate(rows) if max(ref.values()) >= 2**63]
        for i, (_, ref) in enumerate(rows):
            if ok[i]:
                assert [int(v) for v in out[:, i]] == [ref[m] for m in METRICS], (conv, i)
            else:  # refused: only where some value is (or nearly is) past int64. A total
                # over uneven splits adds its rank classes (up to four: two splits of one
                # degree), whose partial sums reach about three times it: 2^62 / 4 = 2^60
                assert max(ref.values()) >= 2**60, (conv, rows[i])
        assert set(wide) <= {i for i in range(len(rows)) if not ok[i]}
        refused += int((~ok).sum())
        assert any(issubclass(w.category, PrecisionWarning) for w in caught) == (not ok.all())
    assert refused  # the large sizes do pass 2^63


def _switches(f) -> dict:
    from shardcost.codegen.python import choices

    return choices(f.arrays.layout, f.arrays.phase, False)


# Hypothesis searches beyond the fixed draws: one layout and phase, any sizes.
@settings(max_examples=150, deadline=None)
@given(
    tp=st.integers(1, 2048),
    k=st.integers(1, 4),
    dh=st.integers(1, 256),
    batch=st.integers(1, 10**4),
    seq=st.integers(1, 10**8),
    b=st.sampled_from([1, 2, 4]),
)
def test_tp_kv_heads_over_any_degree(
    tp: int, k: int, dh: int, batch: int, seq: int, b: int
) -> None:
    p = dict(
        hidden_size=tp * k * dh,
        num_heads=tp * k,
        num_kv_heads=tp * k,
        head_dim=dh,
        batch_size=batch,
        seq_len=seq,
        bytes_per_elem=b,
        tensor_parallel=tp,
    )
    ref = shardcost.metrics("tp", "prefill", **p)["metrics"]
    f = shardcost.compile("tp", "prefill")
    arrays = {key: np.array([v]) for key, v in p.items()}
    key = tuple(v[0] for v in _switches(f).values())
    values = tuple(arrays.get(n) for n in f.arrays.names)
    out, _, inexact = f.arrays.evaluate(key, values, exact=False, strict=False)
    for m in METRICS:
        assert out[m][0] == ref[m] or inexact[0], (m, p)


# The examples, one regression test each.


def _sweep_rows(capsys, *argv: str) -> list[dict]:
    from shardcost.cli import main

    assert main(["sweep", *argv]) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_kv_heads_per_chip_never_round_up(capsys) -> None:
    # h = h_kv = 273, tp = 91: 3 heads and 3 KV heads per chip (not ⌈273·(1/91)⌉ = 4).
    # FLOPs: Q,O 4·B·S·d·dh·3 = 4·1024·17472·64·3 = 13,740,539,904; K,V the same;
    # scores and P·V 4·B·S²·dh·3 = 4·1024²·64·3 = 805,306,368; sum 28,286,386,176.
    # Weights 4·b·d·dh·3 = 4·2·17472·64·3 = 26,836,992; KV 2·B·S·b·dh·3 = 786,432.
    rows = _sweep_rows(
        capsys,
        "tp",
        "num_heads=273",
        "num_kv_heads=273",
        "head_dim=64",
        "tensor_parallel=1,91",
        "seq_len=1024",
    )
    row = rows[1]
    assert row["tensor_parallel"] == "91"
    assert int(row["flops_per_chip"]) == 28_286_386_176
    assert int(row["weight_memory_per_chip"]) == 26_836_992
    assert int(row["kv_cache_per_chip"]) == 786_432
    f = shardcost.compile("tp", "prefill")
    out = f(
        num_heads=273,
        num_kv_heads=273,
        head_dim=64,
        seq_len=1024,
        tensor_parallel=np.array([1, 91]),
    )
    assert out["flops_per_chip"][1] == 28_286_386_176
    assert out["kv_cache_per_chip"][1] == 786_432


def test_sweep_rounds_to_nearest_never_truncates(capsys) -> None:
    # d = h = 49, dh = 1, b = 1, tp = 49: one head per chip. At S = 1: Q,O 4·49 = 196,
    # K,V 196, scores 4·1·1 = 4: 396 (the float path gave 395.99999999999994 → 395).
    # At S = 2: 2·392 + 4·4 = 800.
    rows = _sweep_rows(
        capsys,
        "tp",
        "num_heads=49",
        "head_dim=1",
        "bytes_per_elem=1",
        "tensor_parallel=49",
        "seq_len=1,2",
    )
    assert [int(r["flops_per_chip"]) for r in rows] == [396, 800]


def test_numba_never_wraps_past_2_to_the_63() -> None:
    # single prefill: 8·B·S·d² + 4·B·S²·d with d = 10^6, B = 10^3, S = 10^7:
    # 8·10^22 + 4·10^23 = 480,000,000,000,000,000,000,000, past int64.
    f = shardcost.compile("single", backend="numba")
    p = dict(hidden_size=10**6, num_heads=1000, head_dim=1000, batch_size=1000)
    with pytest.warns(PrecisionWarning, match="1 configurations have a value at or past 2"):
        out, ok = f(**p, seq_len=np.array([10**7, 1]))
    assert list(ok) == [False, True]
    assert list(out[:, 0]) == [0] * len(METRICS)
    exact = shardcost.compile("single")(**p, seq_len=np.array([10**7]), exact=True)
    assert exact["flops_total"][0] == 480_000_000_000_000_000_000_000


def test_a_one_combination_sweep_past_2_to_the_53(capsys) -> None:
    rows = _sweep_rows(capsys, "tp", "seq_len=10000000", "batch_size=1000")
    (row,) = rows
    ref = shardcost.metrics("tp", seq_len=10**7, batch_size=1000)["metrics"]
    assert {m: int(row[m]) for m in METRICS} == ref
    assert ref["flops_total"] > 2**63  # the case: exact Python ints, not float64


def test_the_sweep_count_is_a_python_int(capsys) -> None:
    from shardcost.cli import main

    # 2^16 · 2^16 · 2^16 · 2^15 = 2^63 combinations: refused, not wrapped to a negative
    argv = [
        "sweep",
        "tp",
        "batch_size=1:65536",
        "seq_len=1:65536",
        "bytes_per_elem=1:65536",
        "num_heads=1:32768",
    ]
    assert main(argv) == 2
    assert "9,223,372,036,854,775,808 combinations" in capsys.readouterr().err


def test_a_range_is_counted_before_it_is_built() -> None:
    with pytest.raises(InputError, match="more than 50,000,000 values"):
        parse_values("seq_len", "1:10000000000")
    with pytest.raises(InputError, match="must start above 0"):
        parse_values("interconnect_latency_us", "0:4:*2")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("peak_tflops", -1, "peak_tflops=-1 is not allowed; .* greater than zero"),
        ("peak_tflops", float("nan"), "peak_tflops=nan is not a number"),
        ("peak_tflops", 0, "peak_tflops=0 is not allowed"),
        ("compute_efficiency", 7, "compute_efficiency=7 is not allowed; .* at most 1"),
        ("memory_bandwidth_gb_s", float("inf"), "memory_bandwidth_gb_s=inf is not a number"),
    ],
)
def test_compiled_timing_checks_hardware_as_metrics_does(field, value, message) -> None:
    hw = dict(peak_tflops=989, memory_bandwidth_gb_s=3350, interconnect_bandwidth_gb_s=450)
    with pytest.raises(InputError, match=message):
        shardcost.metrics("tp", **{**hw, field: value})
    f = shardcost.compile("tp", timing=True)
    with pytest.raises(InputError, match=message):
        f(**{**hw, field: value})
    with pytest.raises(
        InputError,
        match=message.replace("=-1 ", "=-1.0 ").replace("=0 ", "=0.0 ").replace("=7 ", "=7.0 "),
    ):
        f(**{**hw, field: np.array([value, 1.0])})
