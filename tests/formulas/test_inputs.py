"""Parameter parsing and every kind of bad input: one clear error naming key and value."""

from __future__ import annotations

import pytest

from shardcost.errors import (
    ImpossibleSplitError,
    InputError,
    InvalidValueError,
    UnknownNameError,
)
from shardcost.formulas import resolve_inputs
from shardcost.formulas.hardware import number as parse_number
from shardcost.formulas.inputs import parse_count


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
