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


# ---------------------------------------------------------------- the command line's files


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from shardcost.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code  # type: ignore[assignment]
    return code, capsys.readouterr().err


def test_an_output_never_overwrites_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.json"
    config.write_text(Path("examples/configs/llama-3.2-1b.json").read_text())
    before = config.read_text()
    code, err = _cli(["model", str(config), "-o", str(config)], capsys)
    assert code == 2 and "own input" in err
    assert config.read_text() == before


def test_an_output_folder_is_never_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "typo" / "r.md"
    code, err = _cli(["report", "tp", "-o", str(target)], capsys)
    assert code == 2 and "no folder" in err
    assert not target.parent.exists()


def test_a_failed_report_leaves_no_picture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    import shardcost.cli as cli

    def full(target: Path, text: str) -> None:
        raise InputError(f"cannot write {target}: No space left on device")

    monkeypatch.setattr(cli, "write_atomically", full)
    report = tmp_path / "r.md"
    code, err = _cli(
        ["report", "tp", "--hardware", "h100-sxm", "--plot", "-o", str(report)], capsys
    )
    assert code == 2 and "No space left" in err
    assert list(tmp_path.iterdir()) == []  # neither the report nor its roofline


def test_a_rewritten_output_is_whole_or_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "r.json"
    target.write_text("what was there\n")
    code, _ = _cli(["validate", "nope.csv", "--hardware", "h100-sxm", "-o", str(target)], capsys)
    assert code == 2 and target.read_text() == "what was there\n"  # bad input: untouched
    code, _ = _cli(["report", "tp", "-o", str(target)], capsys)
    assert code == 0 and target.read_text().startswith("# tp attention")
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left


def test_a_full_disk_is_one_line_not_an_internal_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    env = {**os.environ, "SHARDCOST_CACHE_DIR": str(tmp_path)}
    for _ in range(2):  # the engine, then the cached program
        with Path("/dev/full").open("w") as full:
            done = subprocess.run(
                [sys.executable, "-m", "shardcost", "metrics", "tp"],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        assert done.returncode == 2
        assert (
            done.stderr.strip()
            == "shardcost: error: cannot write the output: No space left on device"
        )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "--plot"], "--format markdown"),
        (["metrics", "tp", "seq_len=1\n2"], "seq_len="),
        (["metrics", "tp\x1b[31m"], "tp\\x1b[31m"),
        ([""], "invalid choice"),
    ],
)
def test_small_ones_are_one_clear_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _cli(argv, capsys)
    assert code == 2 and message in err
    assert err.count("\n") == 1 and "\x1b" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from shardcost.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("shardcost ")


# ---------------------------------------------------------------- the API's types


def test_hardware_must_be_a_name() -> None:
    import shardcost

    with pytest.raises(InputError, match=r"catalog name or a FILE\.toml path, not int"):
        shardcost.metrics("tp", hardware=5)  # type: ignore[arg-type]


def test_compile_takes_a_chip_by_name() -> None:
    import shardcost

    f = shardcost.compile("tp", "decode", hardware="h100-sxm")
    kw = {"batch_size": 4, "past_seq_len": 4096, "num_kv_heads": 8}
    ref = shardcost.metrics("tp", "decode", hardware="h100-sxm", **kw)["timing"]
    got = f(**kw)
    for name, ms in ref.items():
        assert got[name] == pytest.approx(ms, rel=1e-12)
    # FP8 operands take the chip's FP8 peak, as metrics does
    fp8 = {"weight_dtype": "fp8", "activation_dtype": "fp8"}
    f8 = shardcost.compile("tp", hardware="h100-sxm", conventions=fp8)
    ref8 = shardcost.metrics("tp", hardware="h100-sxm", **fp8)["timing"]
    assert f8()["compute_time_ms"] == pytest.approx(ref8["compute_time_ms"], rel=1e-12)
    assert f(peak_tflops=1.0, **kw)["compute_time_ms"] > got["compute_time_ms"]  # yours win


def test_a_compiled_function_refuses_a_bool_count() -> None:
    # True is 1 in Python arithmetic; a count given as True is a mistake, not one token
    import numpy as np

    import shardcost

    f = shardcost.compile("tp", "prefill")
    for bad in (True, False, np.array([True, False])):
        with pytest.raises(shardcost.InvalidValueError, match=r"seq_len.*(positive|bool)"):
            f(seq_len=bad, tensor_parallel=2)
    assert f(seq_len=1, tensor_parallel=2)["flops_per_chip"] > 0
