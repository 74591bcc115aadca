"""Inputs that used to crash or hang the tool (issue 15's fuzzing), each now one clear
line: files that are not regular files, nesting, sizes, numbers and text."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import pytest

from shardcost.errors import InputError
from shardcost.files import printable, read_text
from shardcost.formulas.families import load_config
from shardcost.formulas.hardware import load_hardware
from shardcost.formulas.measurements import read_measurements
from shardcost.formulas.user import load_layout

READERS = [load_config, load_hardware, load_layout, read_measurements]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)  # opening it for reading would block until a writer came
    return path


@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__)
def test_a_pipe_is_refused_without_blocking(reader, fifo: Path) -> None:
    with pytest.raises(InputError, match="not a regular file"):
        reader(fifo)


@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__)
def test_an_endless_device_is_refused_unread(reader) -> None:
    with pytest.raises(InputError, match="not a regular file"):
        reader(Path("/dev/zero"))


@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__)
def test_a_huge_file_is_refused_unread(reader, tmp_path: Path) -> None:
    path = tmp_path / "big"
    with path.open("wb") as f:
        f.truncate(64 * 2**20)  # 64 MiB of (sparse) zeros
    with pytest.raises(InputError, match="at most"):
        reader(path)


def test_deep_nesting_is_one_line(tmp_path: Path) -> None:
    deep_json = tmp_path / "config.json"
    deep_json.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nested too deeply"):
        load_config(deep_json)
    for reader, name in ((load_hardware, "hw.toml"), (load_layout, "layout.toml")):
        deep_toml = tmp_path / name
        deep_toml.write_text("a = " + "[" * 30_000 + "]" * 30_000 + "\n")
        with pytest.raises(InputError, match="nested too deeply"):
            reader(deep_toml)


def test_read_text_bounds_what_it_reads(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x" * 11)
    with pytest.raises(InputError, match="11 bytes; a thing is at most 10"):
        read_text(path, "a thing", 10)
    assert read_text(path, "a thing", 11) == "x" * 11
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="not UTF-8"):
        read_text(path, "a thing", 10)


def test_control_characters_are_escaped_in_messages() -> None:
    assert printable("a\nb\x1b[31mc\u2028") == "a\\nb\\x1b[31mc\\u2028"
    assert printable("tensor_parallel=4 ok") == "tensor_parallel=4 ok"


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("1e-400", "out of range"),  # underflowed to 0.0 and then overflowed a time
        ("1e-320", "out of range"),  # a denormal float
        ("1e999999999", "out of range"),  # Fraction built 10^999999999: a hang
        ("١", "not a number"),  # an Arabic-Indic digit: dimensions refuse it too
        ("1_000", "not a number"),
        ("inf", "not a number"),
        ("nan", "not a number"),
        ("1/3", "not a number"),
    ],
)
def test_hardware_numbers_are_plain_finite_decimals_in_range(raw: str, message: str) -> None:
    from shardcost.formulas.hardware import number

    with pytest.raises(InputError, match=message):
        number("peak_tflops", raw)


def test_hardware_numbers_from_the_api_are_checked_alike() -> None:
    from shardcost.formulas.hardware import number

    assert number("peak_tflops", 989.4) == Fraction(4947, 5)  # 989.4 as written
    assert number("peak_tflops", "1.5e3") == 1500
    for raw in (float("inf"), float("nan"), 1e-320, True, None, [1]):
        with pytest.raises(InputError):
            number("peak_tflops", raw)


def test_a_count_of_thousands_of_digits_is_refused_before_conversion() -> None:
    from shardcost.formulas.inputs import parse_count

    with pytest.raises(InputError, match="5,000 characters"):
        parse_count("seq_len", "9" * 5000)  # int() would raise past 4,300 digits
    with pytest.raises(InputError, match="larger than any model"):
        parse_count("seq_len", 10**30)
    assert parse_count("seq_len", 10**24) == 10**24


def test_a_ragged_batch_is_bounded() -> None:
    from shardcost.formulas.inputs import request_lengths

    with pytest.raises(InputError, match="at most 1,000,000"):
        request_lengths({"past_seq_len": [1] * 1_000_001})
    with pytest.raises(InputError, match="more than 1,000,000"):
        request_lengths({"past_seq_len": ",".join(["1"] * 1_000_001)})


# ---------------------------------------------------------------- formulas and the API


def _per_chip(flops: object) -> dict[str, object]:
    return {"flops": flops, "weight_bytes": "1", "activation_bytes": "1", "kv_cache_bytes": "1"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # 40 thirty-digit constants: a 1,200-digit product (verify took 73 s on it)
        ({"per_chip": _per_chip("*".join(["123456789012345678901234567890"] * 40))}, "too large"),
        ({"per_chip": _per_chip(10**500)}, "too large"),
        ({"per_chip": _per_chip("S/(seq_len-hidden_size)")}, "not positive at every"),
        ({"per_chip": _per_chip("S"), "comm": {5: "S"}}, r"\[comm\] 5"),
        ({"per_chip": _per_chip("S"), "comm": {f"c{i}": "S" for i in range(500)}}, "at most 32"),
        ({"per_chip": ["S"]}, "a table"),
    ],
)
def test_define_layout_refuses_with_one_line(kwargs: dict[str, object], message: str) -> None:
    from shardcost import define_layout

    with pytest.raises(InputError, match=message):
        define_layout("hostile", phase="prefill", chips="context_parallel", **kwargs)  # type: ignore[arg-type]


def test_sympy_objects_meet_the_parsers_limits() -> None:
    import sympy

    from shardcost import define_layout
    from shardcost.symbolic.dimensions import BY_NAME

    s = BY_NAME["seq_len"].symbol
    huge = sympy.Pow(s, 10**6, evaluate=False)  # expanded, it would never finish
    with pytest.raises(InputError, match="power"):
        define_layout(
            "hostile", phase="prefill", chips="context_parallel", per_chip=_per_chip(huge)
        )
    with pytest.raises(InputError, match="not allowed"):
        define_layout(
            "hostile", phase="prefill", chips="context_parallel", per_chip=_per_chip(sympy.sin(s))
        )


@pytest.mark.parametrize("bad", [None, 5, ["a.toml"]])
def test_load_layout_takes_a_path(bad: object) -> None:
    from shardcost import load_layout

    with pytest.raises(InputError, match="is a path"):
        load_layout(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("architectures", [5, True, [["LlamaForCausalLM"]], [{"a": 1}], "Llama"])
def test_architectures_must_be_a_list_of_names(architectures: object) -> None:
    from shardcost.formulas.families import parse_config

    with pytest.raises(InputError, match=r"architectures=.* is not a list of names"):
        parse_config({"architectures": architectures, "hidden_size": 64})
