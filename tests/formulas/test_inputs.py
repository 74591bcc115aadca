"""Parameter parsing and every kind of bad input: one clear error naming key and value."""

from __future__ import annotations

import pytest
import sympy

import shardcost
from shardcost.errors import (
    ImpossibleSplitError,
    InputError,
    InvalidValueError,
    UnknownNameError,
)
from shardcost.formulas import Conventions, Phase, evaluate, registry, resolve_inputs
from shardcost.formulas.hardware import number as parse_number
from shardcost.formulas.inputs import parse_count
from shardcost.formulas.registry import Checks, Role
from shardcost.symbolic import Cost, Product, Trace, finish
from shardcost.symbolic.dimensions import (
    BATCH_SIZE,
    INTERMEDIATE_SIZE,
    SEQ_LEN,
    TENSOR_PARALLEL,
    B,
    S,
    b,
    d,
    d_ff,
    tp,
)


@pytest.mark.parametrize(("raw", "value"), [("4096", 4096), (" 12 ", 12), ("4_096", 4096), (7, 7)])
def test_counts_parse(raw: object, value: int) -> None:
    assert parse_count("hidden_size", raw) == value


@pytest.mark.parametrize("raw", ["4096.5", "1e3", "abc", "", True, 2.0, None, "0x10"])
def test_non_integers_are_refused(raw: object) -> None:
    with pytest.raises(InvalidValueError, match=r"hidden_size=.* is not a whole number"):
        parse_count("hidden_size", raw)


@pytest.mark.parametrize("raw", ["0", 0, "-3", -3])
def test_zero_and_negative_sizes_are_refused(raw: object) -> None:
    with pytest.raises(InvalidValueError, match="takes a positive integer"):
        parse_count("batch_size", raw)


def test_numbers_stay_exact() -> None:
    assert parse_number("peak_tflops", "989.4").denominator == 5  # 4947/5
    with pytest.raises(InvalidValueError, match="not a number"):
        parse_number("peak_tflops", "inf")
    with pytest.raises(InvalidValueError, match="greater than zero"):
        parse_number("peak_tflops", "0")
    assert parse_number("interconnect_latency_us", "0", allow_zero=True) == 0


def test_shape_derives_the_missing_one_of_three() -> None:
    dims = resolve_inputs("single", params={"hidden_size": 1024, "num_heads": 16}).dims
    assert (dims["head_dim"], dims["num_kv_heads"]) == (64, 16)
    dims = resolve_inputs("single", params={"num_heads": 8, "head_dim": 64}).dims
    assert dims["hidden_size"] == 512


@pytest.mark.parametrize(
    ("layout", "phase", "params", "error", "message"),
    [
        ("nope", "prefill", {}, UnknownNameError, "layout 'nope' is unknown"),
        ("tp", "sideways", {}, UnknownNameError, "phase='sideways' is unknown"),
        ("tp", "prefill", {"hiden_size": 1}, UnknownNameError, "did you mean hidden_size"),
        (
            "tp",
            "decode",
            {"decode_projections": "kv"},
            InvalidValueError,
            "decode_projections='kv' is not allowed; decode_projections takes qkvo | qo | o",
        ),
        (
            "tp",
            "decode",
            {"kv_includes_new_token": "maybe"},
            InvalidValueError,
            "kv_includes_new_token='maybe' is not a boolean",
        ),
        (
            "tp",
            "prefill",
            {"num_heads": 30, "head_dim": 128, "tensor_parallel": 4},
            ImpossibleSplitError,
            "num_heads=30 is not divisible by tensor_parallel=4",
        ),
        (
            "single",
            "prefill",
            {"hidden_size": 1000, "num_heads": 16, "head_dim": 64},
            ImpossibleSplitError,
            r"hidden_size=1000 but num_heads × head_dim = 16 × 64 = 1024",
        ),
        (
            "single",
            "prefill",
            {"num_heads": 32, "num_kv_heads": 6},
            ImpossibleSplitError,
            "num_heads=32 is not divisible by num_kv_heads=6",
        ),
        (
            "single",
            "prefill",
            {"tensor_parallel": 2},
            InputError,
            "tensor_parallel is not a parameter of attention layout 'single'",
        ),
        ("tp", "decode", {"seq_len": 2048}, InputError, "decode reads past_seq_len"),
        (
            "tp",
            "prefill",
            {"kv_includes_new_token": True},
            InputError,
            "kv_includes_new_token does not apply",
        ),
        ("tp", "prefill", {"peak_tflops": 100}, InputError, "timing needs memory_bandwidth_gb_s"),
    ],
)
def test_bad_input_names_key_value_and_what_is_allowed(
    layout: str, phase: str, params: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        resolve_inputs(layout, phase, params=params)


def test_unknown_hardware_lists_the_catalog() -> None:
    with pytest.raises(UnknownNameError, match=r"hardware .h9000. is unknown; choices: seed-test"):
        resolve_inputs("tp", hardware="h9000")


def test_hardware_fields_override_the_catalog() -> None:
    hw = resolve_inputs("tp", hardware="seed-test", params={"peak_tflops": "500"}).hardware
    assert hw is not None and hw.peak_tflops == 500 and hw.memory_bandwidth_gb_s == 1000


# A layer declared here, with a relation over dimensions no built-in relates: its width
# is seq_len × batch_size (a toy: one weight column per token of the batch). Nothing
# outside this file names it; inputs, metrics and verify must apply the relation all the
# same. The registry is restored after each test (tests/conftest.py).
TOY_RELATION = Product(INTERMEDIATE_SIZE, SEQ_LEN, BATCH_SIZE)


def register_toy_layer(name: str = "toy", relations: tuple[Product, ...] = (TOY_RELATION,)) -> None:
    """Declare layer ``name`` (relation d_ff = S·B) with layouts "single" and "tp": FLOPs
    written in d_ff on one chip and in S·B over tp chips, equal only through the relation;
    each reads all three dimensions (the input X is S·B × d)."""
    toy = registry.layer(name, role=Role.CHANNEL_MIXER, relations=relations)

    def step(t: Trace, key: str, expr: sympy.Expr, section: str, name: str) -> sympy.Symbol:
        return t.define(key, key.replace("_", " "), expr, section=section, unit="", name=name)

    def cost(t: Trace, flops: sympy.Expr, weights: sympy.Expr, chips: sympy.Expr) -> Cost:
        x = S * B * d * b / chips
        return finish(
            t,
            chips=chips,
            flops=step(t, "flops", flops, "flops", "F"),
            weights=step(t, "weight_bytes", weights, "weights", "W"),
            activations=step(t, "activation_bytes", x, "activations", "A"),
            kv_cache=step(t, "kv_cache_bytes", 0, "kv_cache", "K"),
            collectives=[],
        )

    @registry.layout("single", layer=toy, summary="one chip", checks=Checks(reference=None))
    def single(phase: Phase, conventions: Conventions) -> Cost:
        return cost(Trace(), 2 * d_ff * d, d_ff * d * b, sympy.S.One)

    @registry.layout("tp", layer=toy, summary="tokens over tp", degrees=(TENSOR_PARALLEL,))
    def over_tp(phase: Phase, conventions: Conventions) -> Cost:
        t = Trace()
        t.require_divisible(d_ff, tp, "each rank takes whole columns")  # S·B, by the relation
        return cost(t, 2 * S * B * d / tp, d_ff * d * b / tp, tp)


@pytest.mark.parametrize(
    ("given", "derived"),
    [
        ({"seq_len": 8, "batch_size": 4}, {"intermediate_size": 32}),  # 8 × 4 = 32
        ({"intermediate_size": 96, "batch_size": 4}, {"seq_len": 24}),  # 96 / 4 = 24
        ({"intermediate_size": 96, "seq_len": 8}, {"batch_size": 12}),  # 96 / 8 = 12
        ({"intermediate_size": 96}, {"seq_len": 96, "batch_size": 1}),  # batch_size's default
        ({}, {"intermediate_size": 2048, "seq_len": 2048, "batch_size": 1}),  # the defaults
    ],
)
def test_a_new_layers_relation_completes_its_inputs(given: dict, derived: dict) -> None:
    register_toy_layer()
    dims = resolve_inputs("single", layer="toy", params=given).dims
    assert {k: dims[k] for k in (*given, *derived)} == given | derived


def test_a_new_layers_relation_reaches_the_metrics() -> None:
    register_toy_layer()
    params = {"seq_len": 8, "batch_size": 4, "hidden_size": 16, "tensor_parallel": 2}
    tp_result = evaluate(resolve_inputs("tp", layer="toy", params=params))
    # 2·S·B·d / tp = 2 × 8 × 4 × 16 / 2 = 512 per chip; 1024 over 2 chips
    assert (tp_result.metrics.flops_per_chip, tp_result.metrics.flops_total) == (512, 1024)
    one = {k: v for k, v in params.items() if k != "tensor_parallel"}
    single = shardcost.metrics("single", layer="toy", **one)
    # 2·d_ff·d with d_ff = 8 × 4 = 32: 2 × 32 × 16 = 1024, what tp's chips do together
    assert single["params"]["intermediate_size"] == 32
    assert single["metrics"]["flops_per_chip"] == 1024


def test_a_new_layers_relation_is_checked_and_names_its_values() -> None:
    register_toy_layer()
    bad = {"intermediate_size": 100, "seq_len": 8, "batch_size": 4}
    message = (
        "intermediate_size=100 but seq_len × batch_size = 8 × 4 = 32; intermediate_size "
        "must equal seq_len × batch_size"
    )
    with pytest.raises(ImpossibleSplitError, match=message):
        resolve_inputs("single", layer="toy", params=bad)
    with pytest.raises(ImpossibleSplitError, match="intermediate_size=100 is not divisible by"):
        resolve_inputs("single", layer="toy", params={"intermediate_size": 100, "seq_len": 8})
    # decoupled: all three given may disagree (as a model's config may); two still derive
    dims = resolve_inputs("single", layer="toy", params=bad, decoupled_heads=True).dims
    assert dims["intermediate_size"] == 100
    two = {"seq_len": 8, "batch_size": 4}
    dims = resolve_inputs("single", layer="toy", params=two, decoupled_heads=True).dims
    assert dims["intermediate_size"] == 32
    # the relation's requirement, in its own terms: tp divides d_ff = 8 × 4 = 32, not 3
    params = {**two, "tensor_parallel": 3}
    with pytest.raises(ImpossibleSplitError, match="intermediate_size=32 is not divisible by"):
        resolve_inputs("tp", layer="toy", params=params)


def test_a_degree_of_one_is_accepted_where_it_is_not_sharded() -> None:
    """One settings dictionary fits every layout: a degree a layout does not shard over
    is 1 there, so 1 is accepted (and changes nothing); above 1 it stays an error."""
    import shardcost

    base = shardcost.metrics("cp-kv-sharded", context_parallel=4)
    same = shardcost.metrics("cp-kv-sharded", context_parallel=4, tensor_parallel=1)
    assert same["metrics"] == base["metrics"]
    assert "tensor_parallel" not in same["params"]
    one = shardcost.metrics("single", tensor_parallel=1, context_parallel="1", expert_parallel=1)
    assert one["metrics"] == shardcost.metrics("single")["metrics"]
    with pytest.raises(InputError, match="tensor_parallel is not a parameter"):
        shardcost.metrics("cp-kv-sharded", tensor_parallel=2)
    with pytest.raises(InputError, match="seq_len is not a parameter"):
        shardcost.metrics("single", phase="decode", seq_len=1)  # only degrees are exempt


def test_a_model_takes_a_degree_of_one_it_does_not_use() -> None:
    from shardcost.formulas.model import model_metrics

    config = "examples/configs/llama-3.2-1b.json"
    base = model_metrics(config, "decode")
    same = model_metrics(config, "decode", params={"tensor_parallel": 1, "context_parallel": 1})
    assert same.metrics == base.metrics
