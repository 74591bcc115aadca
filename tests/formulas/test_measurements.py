"""Measurements CSVs: read with one-line errors, each row predicted as ``metrics`` (or
the host-copy formula) gives it, errors per class; seed 002's numbers worked by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

import shardcost
from shardcost.cli import main
from shardcost.errors import InputError
from shardcost.formulas.measurements import read_measurements, validate

SEED_002 = Path(__file__).resolve().parents[2] / "examples" / "seed-002-a100.csv"
HEADER = "layer,layout,phase,host_memory,bytes,measured_us\n"


def test_the_shipped_seed_002_rows_are_read_as_written() -> None:
    rows = read_measurements(SEED_002)
    assert len(rows) == 17  # 9 attention kernels, 4 pinned and 4 pageable copies
    copies = [r for r in rows if r.layer == "host_copy"]
    assert [r.bytes for r in copies[:4]] == [2_097_152, 4_194_304, 8_388_608, 16_777_216]
    assert {r.kernel_class for r in copies} == {"host copy (pinned)", "host copy (pageable)"}
    kernel = rows[0]
    assert (kernel.layer, kernel.layout, kernel.phase, kernel.measured_us) == (
        "attention_core",
        "single",
        "decode",
        25.21,
    )
    assert dict(kernel.params)["past_seq_len"] == "512"


def test_host_copies_are_bytes_over_the_link(tmp_path: Path) -> None:
    path = tmp_path / "copies.csv"
    path.write_text(
        HEADER + "host_copy,,,pinned,2097152,131.89\nhost_copy,,,pageable,2097152,226.9\n"
    )
    v = validate(path, "a100-sxm-80gb")
    pinned, pageable = v.predictions
    # a100-sxm-80gb: a 32 GB/s host link (PCIe 4.0 x16), pinned at 1, pageable at 0.5 of it:
    # 2,097,152 bytes / 32,000 bytes per µs = 65.536 µs; pageable 131.072 µs
    assert pinned.predicted_us == pytest.approx(65.536)
    assert pageable.predicted_us == pytest.approx(131.072)
    # (65.536 − 131.89) / 131.89 = −0.50310; (131.072 − 226.9) / 226.9 = −0.42234
    assert pinned.error == pytest.approx(-0.50310, abs=1e-5)
    assert v.overall().mean_abs == pytest.approx((0.50310 + 0.42234) / 2, abs=1e-5)
    assert [c.name for c in v.classes()] == ["host copy (pinned)", "host copy (pageable)"]


def test_a_layer_row_is_predicted_as_metrics_gives_it(tmp_path: Path) -> None:
    path = tmp_path / "ffn.csv"
    path.write_text(
        "layer,layout,phase,hidden_size,intermediate_size,batch_size,measured_us\n"
        "ffn,tp,decode,4096,14336,8,100\n"
    )
    (row,) = validate(path, "h100-sxm").predictions
    got = shardcost.metrics(
        "tp",
        "decode",
        layer="ffn",
        hardware="h100-sxm",
        hidden_size=4096,
        intermediate_size=14336,
        batch_size=8,
    )
    assert row.predicted_us == pytest.approx(got["timing"]["wall_clock_time_ms"] * 1e3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("layer,measured_us\n", "no rows under the header"),
        ("layout,measured_us\nsingle,3\n", "needs the columns layer and measured_us"),
        ("layer,measured_us,hiden_size\nffn,3,4096\n", "column 'hiden_size' is not a dimension"),
        ("layer,measured_us\nffn,fast\n", ":2: measured_us='fast' is not a number"),
        ("layer,measured_us\nffn,-1\n", ":2: measured_us='-1': give a positive time"),
        ("layer,measured_us\nffn,nan\n", "give a positive time"),
        ("layer,measured_us\nconv2d,3\n", "layer='conv2d' is unknown"),
        (HEADER + "host_copy,,,cached,10,3\n", "host_memory='cached': give pinned or pageable"),
        (HEADER + "host_copy,,,pinned,1.5,3\n", "bytes='1.5': give a whole number"),
        ("layer,measured_us\nffn,3,4\n", ":2: more cells than the header"),
        ("layer,kind,group,bytes,measured_us\ncollective,broadcast,8,10,3\n", "kind='broadcast'"),
        ("layer,kind,group,bytes,measured_us\ncollective,all-reduce,1,10,3\n", "group='1'"),
    ],
)
def test_a_bad_file_is_one_line_naming_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        read_measurements(path)
    assert "\n" not in str(err.value)


def test_not_a_file_is_refused_unread(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a regular file"):
        read_measurements(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        read_measurements(tmp_path / "missing.csv")


def test_the_command_prints_rows_classes_and_worst(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "copies.csv"
    path.write_text(HEADER + "host_copy,,,pinned,2097152,131.89\n")
    assert main(["validate", str(path), "--hardware", "a100-sxm-80gb"]) == 0
    out = capsys.readouterr().out
    assert "pinned copy of 2,097,152 bytes" in out and "-50.3%" in out
    assert "By kernel class" in out and "Worst rows" in out
    assert main(["validate", str(path), "--hardware", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
