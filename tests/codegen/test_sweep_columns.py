"""The sweep's columns beside the nine metrics: ``chips`` and each collective's payload
bytes per chip (``<name>_bytes``), after ``communication_bytes`` and before the timings,
each row equal to what ``shardcost.metrics`` gives for the same inputs: exact past
2^53 and past int64, in CSV and Parquet, 0 on a group of one chip and in a combination
of switches that does without a collective."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shardcost
from shardcost.codegen import blocked, runtime
from shardcost.codegen import sweep as sweep_module
from shardcost.codegen.blocked import forms
from shardcost.codegen.compiled import array_paths
from shardcost.codegen.sweep import WideCountWarning, grid, sweep
from shardcost.errors import InputError
from shardcost.formulas import TIMINGS, get_layout
from shardcost.formulas.user import read_layout
from shardcost.symbolic import METRICS
from shardcost.symbolic.dimensions import DIMENSIONS

needs_arrow = pytest.mark.skipif(sweep_module.arrow() is None, reason="pyarrow is missing")

SHORT = {d.symbol.name: d.name for d in DIMENSIONS}  # "tp" -> "tensor_parallel"
DEGREES = [1, 2, 4]
# (layer, layout): the degrees swept, with two other dimensions, in each phase
CASES = [
    ("attention", "tp", ["tensor_parallel"]),
    ("attention", "cp-kv-sharded", ["context_parallel"]),
    ("attention", "tp-cp", ["tensor_parallel", "context_parallel"]),
    ("ffn", "tp-sp", ["tensor_parallel", "context_parallel"]),
    ("moe", "ep", ["expert_parallel"]),
    ("lm_head", "tp", ["tensor_parallel"]),
]


def swept(phase: str, degrees: list[str], layer: str = "attention") -> dict[str, list[Any]]:
    values: dict[str, list[Any]] = {d: DEGREES for d in degrees}
    values["batch_size"] = [1, 3]
    if phase == "prefill" and layer != "lm_head":  # its seq_len only with all logits
        values["seq_len"] = [1024, 4096]
    elif phase == "prefill":
        values["vocab_size"] = [32000, 128256]
    else:
        values["new_tokens"] = [1, 4]
        if layer == "attention":
            values["past_seq_len"] = [1024, 4096]
    return values


def run(layout: Any, phase: str, values: dict[str, list[Any]], **kwargs: Any) -> list[dict]:
    """The sweep's rows, as the csv module reads them (every cell text)."""
    out = io.StringIO()
    sweep(layout, phase, values, out, **kwargs)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def engine(layer: str, name: str, phase: str, row: dict[str, str], keys: list[str]) -> dict:
    """What shardcost.metrics gives at the row's inputs ``keys`` (the rest defaults)."""
    params = {k: _value(row[k]) for k in keys}
    return shardcost.metrics(name, phase, layer=layer, **params)


def _value(cell: str) -> Any:
    return {"true": True, "false": False}.get(cell, cell if not cell.isdigit() else int(cell))


def extras_of(want: dict) -> dict[str, int]:
    """chips and each collective's payload, as the sweep's columns name them."""
    out = {"chips": want["chips"]}
    out |= {f"{c['name']}_bytes": c["bytes_per_chip"] for c in want["collectives"]}
    return out


@pytest.mark.filterwarnings("ignore::shardcost.UnevenSplitWarning")
@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize(("layer", "name", "degrees"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_chips_and_collectives_equal_the_engine_row_by_row(
    layer: str, name: str, degrees: list[str], phase: str
) -> None:
    values = swept(phase, degrees, layer)
    layout = get_layout(name, layer)
    rows = run(layout, phase, values)
    assert rows, "every combination dropped"
    collectives = layout.cost(phase).collectives
    extras = ["chips", *(f"{c.name}_bytes" for c in collectives)]
    header = list(rows[0])
    at = header.index("communication_bytes")
    assert header[at + 1 :] == extras  # after the metrics, in the Cost's order; no timings
    assert header[at - len(METRICS) + 1 : at + 1] == list(METRICS)
    groups = {f"{c.name}_bytes": SHORT[str(c.group)] for c in collectives}
    idle = moving = 0
    for row in rows:
        want = engine(layer, name, phase, row, list(values))
        assert {k: int(row[k]) for k in extras} == extras_of(want), row
        assert int(row["communication_bytes"]) == sum(int(row[k]) for k in groups)
        for column, degree in groups.items():
            if int(row[degree]) == 1:  # a group of one chip sends nothing
                assert int(row[column]) == 0
                idle += 1
            else:
                moving += int(row[column]) > 0
    assert idle and moving


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_switch_without_a_collective_writes_0_for_it(fmt: str) -> None:
    # tp-cp gathers the hidden states after TP only when materialize_full_hidden_after_tp
    values = {
        "tensor_parallel": [1, 2],
        "context_parallel": [2],
        "materialize_full_hidden_after_tp": [False, True],
    }
    out = io.StringIO()
    sweep(get_layout("tp-cp"), "prefill", values, out, fmt=fmt)
    text = out.getvalue()
    rows = (
        [json.loads(line) for line in text.splitlines()]
        if fmt == "jsonl"
        else [{k: _value(v) for k, v in r.items()} for r in csv.DictReader(io.StringIO(text))]
    )
    assert len(rows) == 4
    for row in rows:
        want = shardcost.metrics(
            "tp-cp",
            tensor_parallel=row["tensor_parallel"],
            context_parallel=2,
            materialize_full_hidden_after_tp=row["materialize_full_hidden_after_tp"],
        )
        columns = list(row)
        got = {k: row[k] for k in columns[columns.index("communication_bytes") + 1 :]}
        expected = {"tp_allgather_bytes": 0} | extras_of(want)  # absent: it moves nothing
        assert got == expected
    assert [r["tp_allgather_bytes"] > 0 for r in rows] == [False, False, False, True]
    # a sweep of the switch's one value has no column for a collective it lacks
    only = run(get_layout("tp-cp"), "prefill", {"materialize_full_hidden_after_tp": [False]})
    assert "tp_allgather_bytes" not in only[0]


def test_timings_follow_the_collectives() -> None:
    g = grid(get_layout("tp"), "decode", {"tensor_parallel": [1, 2]}, "seed-test")
    metrics_end = g.columns.index("communication_bytes") + 1
    assert g.columns[metrics_end:] == ["chips", "output_allreduce_bytes", *TIMINGS]


def test_past_2_to_the_53_and_past_int64_exact() -> None:
    # tp prefill: output_allreduce = B·S·d·b on tp > 1. S = 2^70 (alone, past int64):
    # Python ints row by row; S = 2^41: B·2^54 bytes, past 2^53 within int64
    for seq_len in (2**70, 2**41):
        values = {"tensor_parallel": DEGREES, "batch_size": [1, 3], "seq_len": [seq_len]}
        rows = run(get_layout("tp"), "prefill", values)
        assert len(rows) == 6
        for row in rows:
            want = engine("attention", "tp", "prefill", row, list(values))
            assert {k: int(row[k]) for k in extras_of(want)} == extras_of(want)
        for row in rows:  # tensor_parallel, the last input, varies fastest
            tp, batch = int(row["tensor_parallel"]), int(row["batch_size"])
            sent = 0 if tp == 1 else batch * seq_len * 4096 * 2
            assert int(row["output_allreduce_bytes"]) == sent


def test_an_extra_count_that_no_metric_bounds_is_settled_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ffn tp-sp: chips = cp·tp, a bound no metric's provably covers, so the blocked
    # program tests it with the metrics' (blocked.forms); with the float64 limit brought
    # down to 8 every row is marked and recomputed (in int64): still the engine's values
    layout = get_layout("tp-sp", "ffn")
    paths = array_paths(layout, "prefill")
    key = next(iter(paths.variants))
    assert "cp*tp" in [str(b) for b in forms(paths.program(key))[1]]
    tp, cp = (a.ravel() for a in np.meshgrid(DEGREES, DEGREES))
    given = runtime.complete(paths.head, {"tensor_parallel": tp, "context_parallel": cp})
    args = tuple(given[n] for n in paths.names)
    _, ok, rough = paths.evaluate(key, args, exact=False, strict=False)
    assert ok.all() and not rough.any()
    monkeypatch.setattr(blocked, "EXACT_FLOAT", 8)
    array_paths.cache_clear()  # programs generated again, with the lower limit
    try:
        paths = array_paths(layout, "prefill")
        _, ok, rough = paths.evaluate(key, args, exact=False, strict=False)
        assert ok.all() and rough.all()
        values = {"tensor_parallel": DEGREES, "context_parallel": DEGREES}
        rows = run(layout, "prefill", values)
        assert len(rows) == 9
        for row in rows:
            want = engine("ffn", "tp-sp", "prefill", row, list(values))
            assert {k: int(row[k]) for k in extras_of(want)} == extras_of(want)
    finally:
        array_paths.cache_clear()


@needs_arrow
def test_parquet_columns_are_int64_and_equal_the_csv(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = get_layout("tp-cp")
    values = swept("prefill", ["tensor_parallel", "context_parallel"])
    target = tmp_path / "out.parquet"
    sweep(layout, "prefill", values, target, fmt="parquet")
    table = pq.read_table(target)
    rows = run(layout, "prefill", values)
    extras = ["chips", "softmax_stats_allreduce_bytes", "output_allreduce_bytes"]
    extras.append("tp_allgather_bytes")
    for name in extras:
        assert table.schema.field(name).type == pa.int64()
        assert table.column(name).to_pylist() == [int(r[name]) for r in rows]
    assert table.column_names == list(rows[0])


@needs_arrow
def test_parquet_collective_past_int64_turns_to_strings(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = tmp_path / "out.parquet"
    with pytest.warns(WideCountWarning) as caught:
        sweep(
            get_layout("tp"),
            "prefill",
            {"tensor_parallel": DEGREES, "batch_size": [1, 3], "seq_len": [2**70]},
            target,
            fmt="parquet",
        )
    assert "output_allreduce_bytes" in [str(w.message).split()[0] for w in caught]
    table = pq.read_table(target)
    assert table.schema.field("output_allreduce_bytes").type == pa.string()
    assert table.schema.field("chips").type == pa.int64()
    want = [
        shardcost.metrics("tp", tensor_parallel=tp, batch_size=b, seq_len=2**70)["collectives"][0]
        for b in (1, 3)
        for tp in DEGREES  # the last input varies fastest
    ]
    got = table.column("output_allreduce_bytes").to_pylist()
    assert got == [str(w["bytes_per_chip"]) for w in want]


def clash(tmp_path: Path, collective: str) -> Any:
    """A user layout (read, not registered) with one collective named ``collective``."""
    path = tmp_path / f"{collective}.toml"
    per_chip = {
        "flops": "8*batch_size*seq_len*hidden_size**2 / context_parallel",
        "weight_bytes": "4*hidden_size**2*bytes_per_elem",
        "activation_bytes": "5*batch_size*seq_len*hidden_size*bytes_per_elem / context_parallel",
        "kv_cache_bytes": "2*batch_size*seq_len*hidden_size*bytes_per_elem / context_parallel",
    }
    lines = ["[layout]", 'name = "clash"', 'layer = "attention"', 'phase = "prefill"']
    lines += ['chips = "context_parallel"', "[per_chip]"]
    lines += [f'{k} = "{v}"' for k, v in per_chip.items()]
    lines += ["[comm]", f'{collective} = "batch_size*seq_len*softmax_stat_bytes"']
    path.write_text("\n".join(lines) + "\n")
    return read_layout(path)


@pytest.mark.parametrize(
    ("collective", "column"),
    [("communication", "communication_bytes"), ("softmax_stat", "softmax_stat_bytes")],
)
def test_a_collective_column_may_not_repeat_another(
    tmp_path: Path, collective: str, column: str
) -> None:
    # the first would repeat a metric's name, the second an input's (a dimension)
    layout = clash(tmp_path, collective)
    with pytest.raises(InputError, match=f"named {column}"):
        sweep(layout, "prefill", {"context_parallel": [1, 2]}, io.StringIO())
    ok = clash(tmp_path, "gather")
    rows = run(ok, "prefill", {"context_parallel": [1, 2]})
    assert [r["gather_bytes"] for r in rows] == ["0", str(1 * 2048 * 4)]
