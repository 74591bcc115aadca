"""The dask engine: the grid in partitions on a LocalCluster, written as partitioned
Parquet that reads back as the single-process sweep's rows; a column past int64 in one
part makes it strings in every part; Dask missing is one line and exit 2."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import shardcost
from shardcost.cli import main
from shardcost.codegen.sweep import WideCountWarning, sweep
from shardcost.errors import InputError
from shardcost.formulas import get_layout

distributed = pytest.importorskip("distributed")
pq = pytest.importorskip("pyarrow.parquet")

from shardcost.codegen.distributed import sweep_dask  # noqa: E402  (after the skips)


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """One small in-process cluster for the module (CI has two cores)."""
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0"
    ) as cluster:
        yield cluster.scheduler_address


def parts(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_partitions_read_back_as_the_single_process_rows(scheduler: str, tmp_path: Path) -> None:
    values = {
        "tensor_parallel": [1, 2, 3, 4],
        "num_heads": [24, 32],
        "seq_len": list(range(128, 128 * 120 + 1, 128)),
    }
    lay = get_layout("tp")
    single = tmp_path / "single.parquet"
    sweep(lay, "prefill", values, single, fmt="parquet")
    target = tmp_path / "parts"
    result = sweep_dask(lay, "prefill", values, target, scheduler=scheduler, partition_rows=256)
    # 4 · 2 · 120 = 960 combinations in 256-row partitions: 4 parts; tp = 3 with 32 heads
    # (120 rows) is dropped
    assert parts(target) == [f"part-0000{i}.parquet" for i in range(4)]
    assert (result.total, result.rows) == (960, 840)
    assert result.dropped == {"num_heads not divisible by tensor_parallel": 120}
    got = pq.read_table(target)
    assert got.equals(pq.read_table(single))
    row = got.slice(500, 1).to_pylist()[0]
    want = shardcost.metrics("tp", **{k: row[k] for k in values})["metrics"]
    assert {k: row[k] for k in want} == want


def test_parts_carry_chips_and_each_collective_as_the_single_process_sweep(
    scheduler: str, tmp_path: Path
) -> None:
    values = {
        "tensor_parallel": [1, 2, 4],
        "context_parallel": [1, 2, 4],
        "seq_len": list(range(1024, 1024 * 40 + 1, 1024)),
    }
    lay = get_layout("tp-cp")
    single = tmp_path / "single.parquet"
    sweep(lay, "prefill", values, single, fmt="parquet")
    target = tmp_path / "parts"
    sweep_dask(lay, "prefill", values, target, scheduler=scheduler, partition_rows=128)
    assert len(parts(target)) == 3
    got = pq.read_table(target)
    assert got.equals(pq.read_table(single))
    names = got.column_names
    extras = ["chips", "softmax_stats_allreduce_bytes", "output_allreduce_bytes"]
    extras.append("tp_allgather_bytes")
    assert names[names.index("communication_bytes") + 1 :] == extras
    for row in got.slice(0, 360).to_pylist()[::37]:
        want = shardcost.metrics("tp-cp", **{k: row[k] for k in values})
        assert row["chips"] == want["chips"] == row["tensor_parallel"] * row["context_parallel"]
        for c in want["collectives"]:
            assert row[f"{c['name']}_bytes"] == c["bytes_per_chip"]


def test_a_part_past_int64_makes_the_column_strings_everywhere(
    scheduler: str, tmp_path: Path
) -> None:
    # S = 10^7, B = 1000: flops_total 1,639,742,177,280,000,000,000, past int64, in the
    # second part only; the first part's int64 column is rewritten as strings
    values = {"seq_len": [*range(1, 300), 10**7], "batch_size": [1000]}
    target = tmp_path / "parts"
    with pytest.warns(WideCountWarning) as caught:
        sweep_dask(
            get_layout("tp"), "prefill", values, target, scheduler=scheduler, partition_rows=256
        )
    assert sorted(str(w.message).split()[0] for w in caught) == ["flops_per_chip", "flops_total"]
    assert parts(target) == ["part-00000.parquet", "part-00001.parquet"]
    table = pq.read_table(target)
    flops = table.column("flops_total").to_pylist()
    assert flops[-1] == "1639742177280000000000"
    assert flops[0] == str(
        shardcost.metrics("tp", seq_len=1, batch_size=1000)["metrics"]["flops_total"]
    )


def test_the_command_line_starts_a_local_cluster_and_replaces_old_parts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "parts"
    target.mkdir()
    (target / "part-00007.parquet").write_bytes(b"an older sweep's part")
    argv = ["sweep", "tp", "seq_len=1:300", "--engine", "dask", "-o", str(target)]
    assert main(argv) == 0
    assert "wrote 300 rows" in capsys.readouterr().err
    assert parts(target) == ["part-00000.parquet"]
    assert pq.read_table(target).column("seq_len").to_pylist() == list(range(1, 301))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts"]  # nothing left behind


def test_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="holds files other than Parquet parts"):
        sweep_dask(get_layout("tp"), "prefill", {"seq_len": [1, 2]}, other)
    assert (other / "notes.txt").read_text() == "keep"
    for argv in (
        ["sweep", "tp", "seq_len=1,2", "--engine", "dask"],
        ["sweep", "tp", "seq_len=1,2", "--engine", "dask", "--format", "csv", "-o", "x"],
        ["sweep", "tp", "seq_len=1,2", "--scheduler", "tcp://nowhere:8786"],
    ):
        assert main(argv) == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_without_dask_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    argv = ["sweep", "tp", "seq_len=1,2", "--engine", "dask", "-o", str(tmp_path / "parts")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == "shardcost: error: the dask engine needs Dask: pip install 'shardcost[dask]'\n"
    assert not list(tmp_path.iterdir())
