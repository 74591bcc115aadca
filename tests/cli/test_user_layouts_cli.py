"""A layout of one's own works in every command that takes a layout: by --file, or by
giving the .toml file as the layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shardcost.cli import main
from shardcost.numeric import run_metrics

# seed 001's CP-1 written by hand: the attention FLOPs of a CP rank and its all-reduce
LAYOUT = """\
[layout]
name = "my-cp"
layer = "attention"
phase = "prefill"
chips = "context_parallel"

[per_chip]
flops = "(8*B*S*hidden_size**2 + 4*B*num_heads*S**2*head_dim) / context_parallel"
weight_bytes = "4*hidden_size**2*bytes_per_elem"
activation_bytes = "5*batch_size*seq_len*hidden_size*bytes_per_elem / context_parallel"
kv_cache_bytes = "2*batch_size*seq_len*hidden_size*bytes_per_elem / context_parallel"

[comm]
output_allreduce = "batch_size*seq_len/context_parallel*hidden_size*bytes_per_elem"
"""
# at the defaults (d 4096, 32 heads of 128, B 1, S 2048, cp 4, 2 bytes):
# (8·2048·4096² + 4·32·2048²·128) / 4 = (274,877,906,944 + 68,719,476,736) / 4
FLOPS = 85_899_345_920
# 2048/4·4096·2 = 4,194,304 bytes all-reduced
COMM = 4_194_304


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    path = tmp_path / "my-cp.toml"
    path.write_text(LAYOUT)
    return path


def _json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> object:
    assert main([*argv, "--format", "json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_metrics_by_file_and_by_name(toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["metrics", str(toml)], ["metrics", "my-cp", "--file", str(toml)]):
        out = _json(argv, capsys)
        assert out["layout"] == "my-cp" and out["chips"] == 4
        assert out["metrics"]["flops_per_chip"] == FLOPS
        assert out["metrics"]["communication_bytes"] == COMM
    # no program is cached for it: the file may change, the layout's name would not
    assert run_metrics(["metrics", "my-cp"]) is None


def test_report_compare_sweep_and_crossover_take_it(
    toml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "r.md"
    assert main(["report", str(toml), "-o", str(report)]) == 0
    assert report.read_text().startswith("# my-cp attention, prefill")
    entries = _json(["compare", "tp", str(toml), "--phase", "prefill"], capsys)
    assert [e["layout"] for e in entries] == ["tp", "my-cp"]  # type: ignore[index]
    assert main(["sweep", str(toml), "seq_len=1024,2048"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 3 and rows[2].split(",")[7] == str(FLOPS)
    argv = ["crossover", "tp", str(toml), "--metric", "flops_per_chip", "--solve-for", "seq_len"]
    assert main(argv) == 0
    assert "my-cp" in capsys.readouterr().out


def test_a_bad_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[layout]\nname = 'x'\n")
    assert main(["metrics", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["metrics", str(tmp_path / "missing.toml")]) == 2
    assert "no such file" in capsys.readouterr().err
