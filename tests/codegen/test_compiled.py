"""shardcost.compile: scalars exact and equal to metrics(); arrays vectorised and
broadcast; exact mode past 2^53; errors as clear as metrics()'s."""

from __future__ import annotations

import linecache
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shardcost
from shardcost.codegen.program import Given
from shardcost.errors import ImpossibleSplitError, InvalidValueError, PrecisionWarning
from shardcost.formulas import Layout, Phase
from shardcost.symbolic.dimensions import Dimension
from tests.codegen.configurations import compiled, layout_phases, reference, valid_configs
from tests.helpers import MHA3

CASES = layout_phases()
IDS = [f"{lay.layer}/{lay.name}-{ph}" for lay, ph in CASES]
SEED_HW = {
    "peak_tflops": 1000,
    "memory_bandwidth_gb_s": 1000,
    "interconnect_bandwidth_gb_s": 100,
    "interconnect_latency_us": 1,
}


@pytest.mark.parametrize(("layout", "phase"), CASES, ids=IDS)
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), overlap=st.booleans())
def test_scalar_calls_equal_metrics_exactly_with_timing(
    layout: Layout, phase: Phase, seed: int, overlap: bool
) -> None:
    ((params, conv, want),) = valid_configs(layout, phase, 1, seed, large=False)
    got = compiled(layout, phase)(**params, **conv)
    assert got == want
    assert all(type(v) is int for v in got.values())
    hw = {**SEED_HW, "supports_overlap": overlap}
    timed = shardcost.compile(layout.name, str(phase), layer=layout.layer, timing=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        full = shardcost.metrics(
            layout.name, str(phase), layer=layout.layer, **params, **conv, **hw
        )
    got = timed(**params, **conv, **hw)
    for name, value in full["timing"].items():
        assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize(("layout", "phase"), CASES, ids=IDS)
def test_defaults_are_the_notations(layout: Layout, phase: Phase) -> None:
    assert compiled(layout, phase)() == reference(layout, phase, {})


def _required(layout: Layout, phase: Phase) -> set:
    """The dimensions a requirement of the layout names (what must divide what)."""
    derivation = layout.cost(phase).derivation
    found: set = set()
    for r in derivation.requirements:
        found |= derivation.resolve(r.total).free_symbols | derivation.resolve(r.parts).free_symbols
    return found


def _sizes(layout: Layout, phase: Phase) -> list[Dimension]:
    """The inputs with a number for a default that are not parallel degrees."""
    head = compiled(layout, phase).arrays.head
    given = [g for g in head.preamble if isinstance(g, Given) and isinstance(g.default, int)]
    return [g.dimension for g in given if g.dimension not in layout.degrees]


@pytest.mark.parametrize(("layout", "phase"), CASES, ids=IDS)
def test_arrays_equal_scalars_and_broadcast(layout: Layout, phase: Phase) -> None:
    f = compiled(layout, phase)
    sizes = _sizes(layout, phase)
    # the first free of any requirement takes 1 and 3 (attention_core's heads must split)
    first = next(dim for dim in sizes if dim.symbol not in _required(layout, phase))
    second = next(dim for dim in sizes if dim != first)
    lengths = np.array([128, 132, 4096, 65_540])  # multiples of the default degrees (4)
    column = np.array([[1], [3]])  # broadcasts against lengths: shape (2, 4)
    out = f(**{first.name: column, second.name: lengths})
    for name, array in out.items():
        assert array.shape == (2, 4), name
    for i, a in enumerate((1, 3)):
        for j, length in enumerate(lengths):
            want = f(**{first.name: a, second.name: int(length)})
            for name, value in want.items():
                assert out[name][i, j] == value, (name, a, length)
    head = f.arrays.head
    for name, expr in head.outputs:  # what does not vary is a read-only view
        if not head.resolve(expr).free_symbols & {first.symbol, second.symbol}:
            assert not out[name].flags.writeable, name


def test_float64_warns_at_2_to_the_53_and_exact_mode_is_exact() -> None:
    f = shardcost.compile("single", "prefill")
    seq = np.array([2**20, 2**24])  # 2^24 tokens: attention FLOPs far beyond 2^53
    with pytest.warns(PrecisionWarning, match="2\\^53"):
        rounded = f(seq_len=seq)
    exact = f(seq_len=seq, exact=True)
    want = [f(seq_len=int(s)) for s in seq]
    assert [int(x) for x in exact["flops_total"]] == [w["flops_total"] for w in want]
    assert exact["flops_total"].dtype == object
    assert float(rounded["flops_total"][1]) == pytest.approx(want[1]["flops_total"], rel=1e-15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f(seq_len=np.array([128, 256]))  # small: no warning


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"num_heads": 30, "head_dim": 128},
            ImpossibleSplitError,
            "num_heads=30 is not divisible by tensor_parallel=4",
        ),
        ({"batch_size": 0}, InvalidValueError, "batch_size=0 is not allowed"),
        (
            {"hidden_size": 1000, "num_heads": 16, "head_dim": 64},
            ImpossibleSplitError,
            "hidden_size=1000 but num_heads × head_dim",
        ),
        (
            {"num_heads": np.array([32, 30]), "head_dim": 128},
            ImpossibleSplitError,
            "num_heads is not divisible by tensor_parallel in 1 of 2 configurations",
        ),
        ({"seq_len": np.array([1.5, 2.0])}, InvalidValueError, "seq_len=.* is not allowed"),
        ({"seq_len": "many"}, InvalidValueError, "seq_len must be whole numbers"),
    ],
)
def test_errors(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        shardcost.compile("tp", "prefill")(**kwargs)


def test_conventions_are_arguments() -> None:
    f = shardcost.compile("tp-cp", "decode")
    # seed 001 CP-5: flops_per_chip 2,162,688 with qo projections, keys exclude the new token
    out = f(
        **MHA3,
        context_parallel=4,
        decode_projections="qo",
        attention_keys_include_new_token=False,
    )
    assert out["flops_per_chip"] == 2_162_688
    with pytest.raises(InvalidValueError, match="decode_projections: qkvo \\| qo \\| o"):
        f(decode_projections="kv")
    with pytest.raises(TypeError):
        f(not_a_parameter=1)


def test_source_is_kept_and_traceable() -> None:
    f = shardcost.compile("cp-kv-sharded", "decode")
    assert f.__source__.startswith("# Compiled by shardcost")
    assert "ceil" in f.__source__ or "//" in f.__source__
    filename = f.__code__.co_filename
    assert linecache.getline(filename, 2).startswith("def attention_cp_kv_sharded_decode")
    assert shardcost.compile("cp-kv-sharded", "decode") is f  # compiled once


@pytest.mark.parametrize("layout", ["single", "tp", "cp-allgather", "cp-kv-sharded", "tp-cp"])
def test_a_ragged_batch_is_the_sum_of_its_requests(layout: str) -> None:
    # The README's recipe for ragged batches with compiled functions: evaluate each
    # request as a batch of one and add up everything but the weights.
    lengths = [4096, 64, 63, 1]
    f = shardcost.compile(layout, "decode")
    one = f(batch_size=1, past_seq_len=np.array(lengths), exact=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        want = shardcost.metrics(layout, "decode", past_seq_len=lengths)["metrics"]
    for name, value in want.items():
        got = one[name][0] if name.startswith("weight") else sum(one[name])
        assert got == value, name


# One value of each static convention besides its default; element types by one
# representative each (their effect is a constant in place of b).
_STATIC_TRIED = {
    "weight_dtype": ("mxfp4",),
    "activation_dtype": ("fp8",),
    "kv_cache_dtype": ("fp8",),
}


def _static_cases() -> list[tuple[Layout, Phase, str, object]]:
    from shardcost.formulas.conventions import BY_NAME

    out = []
    for lay, ph in CASES:
        for name in lay.conventions_for(ph):
            convention = BY_NAME[name]
            if not convention.static or name == "moe_dispatch_dtype":
                continue
            tried = _STATIC_TRIED.get(name, convention.choices)
            out += [(lay, ph, name, v) for v in tried if v != convention.default]
    return out


STATIC = _static_cases()


@pytest.mark.parametrize(
    ("layout", "phase", "name", "value"),
    STATIC,
    ids=[f"{lay.layer}/{lay.name}-{ph}-{n}={v}" for lay, ph, n, v in STATIC],
)
def test_static_conventions_are_fixed_when_compiled(
    layout: Layout, phase: Phase, name: str, value: object
) -> None:
    f = shardcost.compile(layout.name, str(phase), layer=layout.layer, conventions={name: value})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        want = shardcost.metrics(layout.name, str(phase), layer=layout.layer, **{name: value})
    assert f() == want["metrics"]


def test_a_switch_is_not_fixed_at_compile_time() -> None:
    with pytest.raises(shardcost.InputError, match="is a switch of the compiled function"):
        shardcost.compile("single", "decode", conventions={"kv_includes_new_token": True})


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"hidden_size": 8192},  # num_heads = 8192 / 128 (head_dim's default)
        {"num_heads": 16},  # hidden_size = 16 · 128
        {"head_dim": 64},  # hidden_size = 32 · 64
        {"hidden_size": 6144, "num_heads": 48},  # head_dim = 128
        {"hidden_size": 6144, "head_dim": 96},  # num_heads = 64
        {"hidden_size": np.int64(8192)},  # not a Python int: the run-time helper derives
    ],
)
def test_a_scalar_call_derives_a_missing_member_as_metrics(given: dict) -> None:
    f = shardcost.compile("tp", "prefill")
    plain = {k: int(v) for k, v in given.items()}
    assert f(**given) == shardcost.metrics("tp", "prefill", **plain)["metrics"]


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ({"hidden_size": 4100}, ImpossibleSplitError, "hidden_size=4100 is not divisible by"),
        ({"num_heads": 0}, InvalidValueError, "num_heads=0 is not allowed"),
        ({"hidden_size": 4096, "num_heads": 30}, ImpossibleSplitError, "is not divisible by"),
    ],
)
def test_a_scalar_call_refuses_a_member_as_metrics(given: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        shardcost.metrics("tp", "prefill", **given)
    with pytest.raises(error, match=message):
        shardcost.compile("tp", "prefill")(**given)
