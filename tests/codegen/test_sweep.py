"""Sweeps: value syntax, the product evaluated exactly, invalid rows dropped and counted."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

import shardcost
from shardcost.cli import main
from shardcost.codegen.sweep import parse_values, sweep
from shardcost.errors import InputError
from shardcost.formulas import get_layout


@pytest.mark.parametrize(
    ("key", "text", "values"),
    [
        ("seq_len", "1024,2048", [1024, 2048]),
        ("seq_len", "1024:4096:1024", [1024, 2048, 3072, 4096]),  # inclusive
        ("batch_size", "1:64:*2", [1, 2, 4, 8, 16, 32, 64]),
        ("tensor_parallel", "3:5", [3, 4, 5]),
        ("decode_projections", "qkvo,o", ["qkvo", "o"]),
        ("peak_tflops", "989.5,1000", [989.5, 1000.0]),
    ],
)
def test_value_syntax(key: str, text: str, values: list) -> None:
    assert parse_values(key, text) == values


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("seq_len", "8:4", "ends \\(4\\) before it starts \\(8\\)"),
        ("seq_len", "1:8:*1", "geometric step must be above 1"),
        ("seq_len", "0,4", "seq_len=0 is not allowed"),
        ("seq_lenn", "4", "unknown key 'seq_lenn'"),
    ],
)
def test_bad_values(key: str, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_values(key, text)


def test_rows_equal_metrics_and_invalid_ones_are_dropped_and_counted() -> None:
    values = {
        "tensor_parallel": [1, 2, 3, 4, 8],
        "num_heads": [24, 32],
        "seq_len": [128, 2048],
        "head_dim": [128],
    }
    out = io.StringIO()
    result = sweep(get_layout("tp"), "prefill", values, out)
    # 5 * 2 * 2 = 20 combinations; invalid: tp=3 with 32 heads, tp=8 with... 24 % 8 == 0, so
    # only (tp=3, h=32): 2 rows (two seq_len), and none for 24 heads (24 % 3 == 0).
    assert (result.total, result.rows) == (20, 18)
    assert result.dropped == {"num_heads not divisible by tensor_parallel": 2}
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 18
    for row in rows:
        params = {k: int(row[k]) for k in ("num_heads", "head_dim", "seq_len", "tensor_parallel")}
        want = shardcost.metrics("tp", **params)["metrics"]
        assert {k: int(row[k]) for k in want} == want


def test_exact_beyond_2_to_the_53() -> None:
    out = io.StringIO()
    sweep(get_layout("single"), "prefill", {"seq_len": [2**24, 2**24 + 1]}, out, fmt="jsonl")
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    for row in rows:
        want = shardcost.metrics("single", seq_len=row["seq_len"])["metrics"]
        assert {k: row[k] for k in want} == want  # exact ints, not rounded floats
    assert rows[1]["flops_total"] > 2**53


@pytest.mark.filterwarnings("ignore::shardcost.UnevenSplitWarning")  # 2049 keys over 4 ranks
def test_conventions_and_hardware_are_swept_too() -> None:
    out = io.StringIO()
    result = sweep(
        get_layout("tp-cp"),
        "decode",
        {"decode_projections": ["qkvo", "qo"], "supports_overlap": [False, True]},
        out,
        hardware_name="seed-test",
        fmt="jsonl",
    )
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert result.rows == 4 and len(rows) == 4
    for row in rows:
        want = shardcost.metrics(
            "tp-cp",
            "decode",
            hardware="seed-test",
            decode_projections=row["decode_projections"],
            supports_overlap=row["supports_overlap"],
        )
        assert row["flops_per_chip"] == want["metrics"]["flops_per_chip"]
        assert row["wall_clock_time_ms"] == pytest.approx(
            want["timing"]["wall_clock_time_ms"], rel=1e-12
        )


def test_progress_bar_when_asked() -> None:
    stream = io.StringIO()
    sweep(
        get_layout("tp"),
        "prefill",
        {"seq_len": list(range(1, 3001))},
        io.StringIO(),
        progress=True,
        chunk_bytes=1,  # 256 rows a chunk: 12 chunks, the bar redrawn at most every 0.1 s
        stream=stream,
    )
    bars = stream.getvalue().split("\r")[1:]
    assert 2 <= len(bars) <= 13  # the first chunk, the last state, throttled between
    assert re.match(r"sweep 100% \[#+\] 3,000/3,000 combinations, ", bars[-1])
    assert bars[-1].endswith("\n")
    quiet = io.StringIO()  # not a terminal, not asked: no bar
    sweep(get_layout("tp"), "prefill", {"seq_len": [1, 2]}, io.StringIO(), stream=quiet)
    assert quiet.getvalue() == ""


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "sweep.csv"
    assert (
        main(
            [
                "sweep",
                "tp",
                "tensor_parallel=1:8:*2",
                "num_heads=24",
                "head_dim=128",
                "seq_len=1024,4096",
                "-o",
                str(target),
            ]
        )
        == 0
    )
    assert "wrote 8 rows" in capsys.readouterr().err
    assert len(target.read_text().splitlines()) == 9  # header + 4 * 2
    assert main(["sweep", "tp", "context_parallel=2"]) == 2
    assert "context_parallel is not a parameter" in capsys.readouterr().err
