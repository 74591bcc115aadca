"""Sweep output: CSV the same bytes through pyarrow and through numpy (and the bytes
Python's csv module writes), JSON lines as json.dumps writes them, Parquet exact, chunks
sized in bytes, ranges never built, the progress bar, and the command line's care for
the file it replaces and the pipe it writes to."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shardcost
from shardcost.cli import main
from shardcost.codegen import sweep as sweep_module
from shardcost.codegen.sweep import (
    Block,
    Column,
    Progress,
    Range,
    WideCountWarning,
    grid,
    parse_values,
    sweep,
    text,
)
from shardcost.errors import ImpossibleSplitError, InputError
from shardcost.formulas import TIMINGS, get_layout
from shardcost.symbolic import METRICS

needs_arrow = pytest.mark.skipif(sweep_module.arrow() is None, reason="pyarrow is missing")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["pyarrow", "numpy"])
def writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test twice: CSV through pyarrow's writer, and through numpy's assembly."""
    if request.param == "pyarrow":
        pytest.importorskip("pyarrow")
    monkeypatch.setattr(sweep_module, "PYARROW", None if request.param == "pyarrow" else False)
    return request.param


def run(layout: str, values: dict[str, list], fmt: str = "csv", **kwargs: Any) -> bytes:
    out = io.BytesIO()
    sweep(get_layout(layout), kwargs.pop("phase", "prefill"), values, out, fmt=fmt, **kwargs)
    return out.getvalue()


def reference(layout: str, values: dict[str, list], fmt: str = "csv") -> bytes:
    """The rows from shardcost.metrics (SymPy), one call per combination, written by the
    csv module (bools as true/false) or json.dumps: the bytes sweeps have always written.
    Rows in column order, the last swept column varying fastest; after the metrics, chips
    and each collective's payload bytes."""
    names = [c for c in COLUMNS[layout] if c in values]
    rows = []
    extras: dict[str, None] = {}
    for combo in np.ndindex(*(len(values[n]) for n in names)):
        params = {n: values[n][i] for n, i in zip(names, combo, strict=True)}
        try:
            got = shardcost.metrics(layout, **params)
        except ImpossibleSplitError:
            continue
        row = {k: got["params"][k] for k in COLUMNS[layout]}
        more = {"chips": got["chips"]}
        more |= {f"{c['name']}_bytes": c["bytes_per_chip"] for c in got["collectives"]}
        extras |= dict.fromkeys(more)
        rows.append(row | got["metrics"] | more)
    columns = [*COLUMNS[layout], *METRICS, *extras]
    if fmt == "jsonl":
        return b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(columns)
    out.writerows([r[c] for c in columns] for r in rows)
    return buffer.getvalue().encode()


COLUMNS = {
    "tp": [
        "hidden_size",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "batch_size",
        "seq_len",
        "bytes_per_elem",
        "tensor_parallel",
    ],
}
# tp=3 with 32 heads is invalid (dropped); seq_len 10^7 with batch 1000 puts flops_total
# past int64 (8·B·S·d² + 4·B·S²·d/... ≈ 1.6·10^21), so exact rows sit beside int64 ones
MIXED = {
    "tensor_parallel": [1, 3, 4],
    "num_heads": [24, 32],
    "seq_len": [1, 2048, 10**7],
    "batch_size": [1, 1000],
}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_bytes_equal_the_csv_and_json_modules_on_metrics_rows(writer: str, fmt: str) -> None:
    assert run("tp", MIXED, fmt) == reference("tp", MIXED, fmt)


@needs_arrow
def test_pyarrow_and_numpy_write_the_same_bytes_for_timings_and_switches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {
        "decode_projections": ["qkvo", "o"],
        "supports_overlap": [False, True],
        "past_seq_len": [1024, 4096, 10**6],
        "fixed_latency_us": [0.0, 1e-05],  # 1e-05: repr's exponent form in the timings
        "peak_tflops": [989.5, 1000.0],
    }
    kwargs = {"phase": "decode", "hardware_name": "seed-test"}
    got = run("tp", values, **kwargs)
    monkeypatch.setattr(sweep_module, "PYARROW", False)
    assert run("tp", values, **kwargs) == got
    rows = list(csv.DictReader(io.StringIO(got.decode())))
    assert len(rows) == 2 * 2 * 3 * 2 * 2
    for row in rows[::5]:
        want = shardcost.metrics(
            "tp",
            "decode",
            hardware="seed-test",
            decode_projections=row["decode_projections"],
            supports_overlap=row["supports_overlap"],
            past_seq_len=int(row["past_seq_len"]),
            fixed_latency_us=float(row["fixed_latency_us"]),
            peak_tflops=float(row["peak_tflops"]),
        )
        assert {m: int(row[m]) for m in METRICS} == want["metrics"]
        for t in TIMINGS:
            assert float(row[t]) == pytest.approx(want["timing"][t], rel=1e-12)
            assert row[t] == repr(float(row[t]))  # Python's shortest round trip
        assert row["supports_overlap"] in ("true", "false")


def test_formatting_edge_values(writer: str) -> None:
    floats = np.array(
        [0.1, 1.0, 1e16, 1e15, 1e-05, 1e-4, -0.0, 5e-324, 1.7976931348623157e308, math.inf,
         -math.inf, math.nan, 123456.789, 2.0**60, 3.0e-310],
    )  # fmt: skip
    ints = np.array([0, 1, 9, 10, 99, 100, -1, -10, 2**63 - 1, -(2**63), 10**18, 7, 7, 7, 5])
    wide = [3 * 10**30, -(10**19)]  # past int64: rows 12 and 13
    column = Column(ints.copy(), None, np.array([12, 13]), wide)
    block = Block(len(floats), [Column(floats), column, Column(None, "a,b")], {})
    values = [*ints[:12].tolist(), *wide, int(ints[14])]
    rows = [[f, i, "a,b"] for f, i in zip(floats.tolist(), values, strict=True)]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    chunks: list[bytes] = []
    sweep_module.TextWriter(lambda b: chunks.append(bytes(b)), "csv", ["f", "i", "s"]).write(block)
    assert b"".join(chunks) == b"f,i,s\n" + buffer.getvalue().encode()
    keys = [json.dumps(k).encode() + b": " for k in ("f", "i", "s")]
    lines = [json.dumps(dict(zip("fis", r, strict=True))) + "\n" for r in rows]
    assert text(block, "jsonl", keys) == "".join(lines).encode()


def test_chunks_are_sized_in_bytes_and_never_change_the_bytes(writer: str) -> None:
    values = {
        "tensor_parallel": [1, 2, 3, 4],
        "num_heads": [24, 32],
        "seq_len": list(range(1, 200)),
    }
    g = grid(get_layout("tp"), "prefill", values)
    small, large = g.chunk_rows(1 << 20), g.chunk_rows(256 << 20)
    assert 256 <= small < large and large / small == pytest.approx(256, rel=0.01)
    one = run("tp", values)  # 1,592 rows: one chunk
    many = run("tp", values, chunk_bytes=1)  # 256 rows a chunk: 7 chunks
    assert many == one
    rows = list(csv.DictReader(io.StringIO(one.decode())))
    assert len(rows) == 4 * 2 * 199 - 199  # tp=3 with 32 heads dropped


def test_exact_rows_sit_beside_int64_without_a_cliff() -> None:
    # tp prefill, d = 4096, B = 1000: flops_total = 8·B·S·d² + 4·B·S²·d. S = 10^5:
    # 8·10^8·4096² + 4·10^13·4096 = 13,421,772,800,000,000 + 163,840,000,000,000,000
    # = 177,261,772,800,000,000, past 2^53 (float64 may round it) but within int64;
    # S = 10^7: 1,342,177,280,000,000,000 + 1,638,400,000,000,000,000,000, past int64.
    values = {"seq_len": [10**5, 10**7, 2048], "batch_size": [1000]}
    g = grid(get_layout("tp"), "prefill", values)
    block = g.evaluate(0, 0, 3)
    flops = block.columns[g.columns.index("flops_total")]
    assert flops.data is not None and flops.data.dtype == np.int64
    assert flops.wide.tolist() == [1]  # only the row past int64 is a Python int
    assert flops.wide_values == [1_639_742_177_280_000_000_000]
    assert int(flops.data[0]) == 177_261_772_800_000_000  # recomputed exactly, in int64
    want = [
        shardcost.metrics("tp", seq_len=s, batch_size=1000)["metrics"] for s in values["seq_len"]
    ]
    for m in METRICS:
        column = block.columns[g.columns.index(m)]
        got = [int(x) for x in column.data] if column.data is not None else [column.value] * 3
        for row, value in zip(column.wide.tolist(), column.wide_values, strict=True):
            got[row] = value
        assert got == [w[m] for w in want], m


def test_a_fixed_value_past_int64_with_one_swept_dimension_is_exact() -> None:
    # seq_len = 2^70 fixed, tensor_parallel swept alone: the float64 pass cannot take the
    # fixed part (a Python int past int64), so the block is computed in Python ints
    values = {"seq_len": [2**70], "tensor_parallel": [1, 2]}
    text = io.StringIO()
    sweep(get_layout("tp"), "prefill", values, text, progress=False)
    rows = list(csv.DictReader(io.StringIO(text.getvalue())))
    for row, tp in zip(rows, values["tensor_parallel"], strict=True):
        want = shardcost.metrics("tp", seq_len=2**70, tensor_parallel=tp)["metrics"]
        assert {m: int(row[m]) for m in METRICS} == want
    # times come from the float64 pass: a timed sweep says so in one line
    argv = ["sweep", "tp", f"seq_len={2**70}", "tensor_parallel=1,2", "--hardware", "h100-sxm"]
    assert main(argv) == 2


def test_ranges_are_counted_never_built() -> None:
    seq = parse_values("seq_len", "1:40000000")
    assert isinstance(seq, Range) and len(seq) == 40_000_000
    assert sys.getsizeof(seq) < 1000
    assert (seq[0], seq[-1], seq[12_345]) == (1, 40_000_000, 12_346)
    assert seq.take(np.array([0, 39_999_999])).tolist() == [1, 40_000_000]
    assert parse_values("seq_len", "1024:4096:1024") == [1024, 2048, 3072, 4096]
    # decimal steps: each value the float nearest the decimal, the end reached
    assert parse_values("peak_tflops", "0.1:1:0.1") == [
        0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0
    ]  # fmt: skip
    tflops = parse_values("peak_tflops", "0.1:1:0.1")
    assert tflops.take(np.arange(10)).tolist() == list(tflops)
    started = time.perf_counter()
    both = {"seq_len": seq, "batch_size": parse_values("batch_size", "1:40000000")}
    with pytest.raises(InputError, match="1,600,000,000,000,000 combinations"):
        sweep(get_layout("tp"), "prefill", both, io.StringIO())
    assert time.perf_counter() - started < 5


def test_values_past_int64_are_refused_in_ranges_and_lists() -> None:
    with pytest.raises(InputError, match="past int64"):
        parse_values("seq_len", f"1:{2**64}:{2**62}")
    with pytest.raises(InputError, match="past int64"):
        parse_values("seq_len", f"1,{2**64}")
    assert parse_values("seq_len", str(2**70)) == [2**70]  # alone, it stays exact


@needs_arrow
def test_parquet_counts_are_int64_and_exact(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = {k: v for k, v in MIXED.items() if k != "batch_size"}  # all within int64
    target = tmp_path / "out.parquet"
    sweep(get_layout("tp"), "prefill", values, target, fmt="parquet")
    table = pq.read_table(target)
    assert table.schema.field("flops_total").type == pa.int64()
    want = list(csv.DictReader(io.StringIO(reference("tp", values).decode())))
    assert table.to_pylist() == [{k: int(v) for k, v in r.items()} for r in want]


@needs_arrow
def test_parquet_column_past_int64_turns_to_strings_mid_file(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # 300 rows, 256 a chunk: the first chunk fits int64, the second meets S = 10^7
    values = {"seq_len": [*range(1, 300), 10**7], "batch_size": [1000]}
    target = tmp_path / "out.parquet"
    with pytest.warns(WideCountWarning) as caught:
        sweep(get_layout("tp"), "prefill", values, target, fmt="parquet", chunk_bytes=1)
    # S = 10^7: flops_total 1.6·10^21 (see above), flops_per_chip a quarter of it (tp = 4)
    assert [str(w.message).split()[0] for w in caught] == ["flops_per_chip", "flops_total"]
    table = pq.read_table(target)
    assert table.schema.field("flops_total").type == pa.string()
    assert table.schema.field("kv_cache_total").type == pa.int64()  # it stayed within
    rows = list(csv.DictReader(io.StringIO(run("tp", values).decode())))
    assert table.column("flops_total").to_pylist() == [r["flops_total"] for r in rows]
    last = shardcost.metrics("tp", seq_len=10**7, batch_size=1000)["metrics"]["flops_total"]
    assert int(table.column("flops_total")[-1].as_py()) == last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


def test_parquet_without_pyarrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sweep_module, "PYARROW", False)
    target = tmp_path / "out.parquet"
    assert main(["sweep", "tp", "seq_len=1,2", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'shardcost[parquet]'" in err
    assert not target.exists() and not list(tmp_path.iterdir())
    assert main(["sweep", "tp", "seq_len=1,2", "-o", str(tmp_path / "out.csv")]) == 0  # CSV: fine


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_throttled_with_rate_and_time_left() -> None:
    now = [0.0]
    stream = Terminal()
    bar = Progress(1000, stream, None, clock=lambda: now[0], every=0.1, after=1.0)
    for t, done in ((0.5, 100), (1.2, 400), (1.25, 450), (1.4, 500), (1.45, 1000)):
        now[0] = t
        bar.update(done)
    bar.close(1000)
    frames = stream.getvalue().split("\r")[1:]
    # 0.5 s: too soon to show; 1.25 s: within 0.1 s of the last; 1000: the end, drawn
    assert [re.search(r"\] ([\d,]+)/1,000 combinations", f)[1] for f in frames] == [
        "400",
        "500",
        "1,000",
        "1,000",
    ]
    assert frames[0].startswith("sweep  40% [") and "333/s" in frames[0]
    assert frames[0].endswith(", 0:01, 0:01 left")  # 600 more at 333/s: 1.8 s
    assert frames[-1].startswith("sweep 100% [") and frames[-1].endswith("\n")
    assert "#" * 10 in frames[-1] and "." not in frames[-1].split("]")[0]


def test_progress_only_on_a_terminal_unless_asked() -> None:
    for stream, show in ((io.StringIO(), None), (Terminal(), False)):
        bar = Progress(10, stream, show, clock=lambda: 5.0)
        bar.update(10)
        bar.close(10)
        assert stream.getvalue() == ""
    asked = io.StringIO()
    bar = Progress(10, asked, True, clock=lambda: 0.0)
    bar.update(3)
    bar.close(10)
    assert asked.getvalue().count("\r") == 2 and asked.getvalue().endswith("\n")


def test_a_failed_sweep_leaves_the_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out.csv"
    target.write_text("keep me\n")
    target.chmod(0o640)
    assert main(["sweep", "tp", "context_parallel=2", "-o", str(target)]) == 2
    assert main(["sweep", "tp", "tensor_parallel=3", "num_heads=32,64", "-o", str(target)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        "shardcost: error: no valid combinations: all 2 dropped "
        "(num_heads not divisible by tensor_parallel: 2)"
    )
    assert target.read_text() == "keep me\n"
    assert main(["sweep", "tp", "seq_len=1,2", "-o", str(target)]) == 0
    assert target.read_text().count("\n") == 3 and target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary left


@needs_arrow
def test_formats_follow_the_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    assert main(["sweep", "tp", "seq_len=1,2", "-o", str(tmp_path / "a.jsonl")]) == 0
    assert json.loads((tmp_path / "a.jsonl").read_text().splitlines()[1])["seq_len"] == 2
    assert main(["sweep", "tp", "seq_len=1,2", "-o", str(tmp_path / "a.parquet")]) == 0
    assert pq.read_table(tmp_path / "a.parquet").column("seq_len").to_pylist() == [1, 2]
    assert main(["sweep", "tp", "seq_len=1,2", "--format", "parquet"]) == 2
    assert "give -o FILE.parquet" in capsys.readouterr().err


def test_huge_ranges_are_refused_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    assert main(["sweep", "tp", "batch_size=1:10000000000"]) == 2
    assert time.perf_counter() - started < 2
    assert "more than 50,000,000 values" in capsys.readouterr().err
    assert main(["sweep", "tp", f"seq_len=2:{2**64}:{2**63}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "past int64" in err


def test_a_closed_pipe_ends_quietly() -> None:
    # `sweep ... | head -1`: the reader leaves after one line; no message, exit 0
    with subprocess.Popen(
        [sys.executable, "-m", "shardcost", "sweep", "tp", "seq_len=1:400000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith(b"hidden_size,")
        process.stdout.close()
        assert process.wait(timeout=60) == 0
        assert process.stderr.read() == b""
