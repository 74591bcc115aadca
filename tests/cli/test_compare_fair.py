"""`shardcost compare` made fair: a chip budget, chosen layouts, chips in every view, and
rankings only among layouts on the same number of chips."""

from __future__ import annotations

import json

import pytest

from shardcost.cli import main
from tests.helpers import run
from tests.reports.markdown import assert_valid_tables

# The defaults: d = 4096, h = h_kv = 32, dh = 128, B = 1, S = 2048, b = 2 bytes.
D, B_ELEM = 4096, 2


def compare_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    code, out, err = run(capsys, "compare", "--format", "json", *argv)
    assert code == 0, err
    return json.loads(out)


def entry(objs: list[dict], layout: str, **degrees: int) -> dict:
    """The one entry of ``layout`` (at ``degrees``, for a layout of several)."""
    found = [
        o
        for o in objs
        if o["layout"] == layout
        and all(o.get("params", o.get("degrees", {})).get(k) == v for k, v in degrees.items())
    ]
    assert len(found) == 1, (layout, degrees, found)
    return found[0]


def test_at_four_chips_every_layout_runs_on_four(capsys: pytest.CaptureFixture[str]) -> None:
    objs = compare_json(capsys, "--chips", "4", "--phase", "prefill")
    ran = [o for o in objs if "excluded" not in o]
    assert {o["chips"] for o in ran} == {4}
    tp = entry(objs, "tp")
    assert tp["params"]["tensor_parallel"] == 4
    # Wq, Wk, Wv, Wo sharded over tp: 4·d²·b / tp = 4·4096²·2 / 4 = 33,554,432
    assert tp["metrics"]["weight_memory_per_chip"] == 4 * D**2 * B_ELEM // 4 == 33_554_432
    # KV cache over tp: 2·B·S·h_kv·dh·b / tp = 2·1·2048·32·128·2 / 4 = 8,388,608
    assert tp["metrics"]["kv_cache_per_chip"] == 8_388_608
    # tp-cp at its one split of 4 with both degrees above 1: 4·d²·b / 2 = 67,108,864
    hybrid = entry(objs, "tp-cp", tensor_parallel=2, context_parallel=2)
    assert hybrid["metrics"]["weight_memory_per_chip"] == 67_108_864
    for name in ("cp-allgather", "cp-kv-sharded", "ulysses", "ring"):
        got = entry(objs, name)
        assert got["params"]["context_parallel"] == 4
        # weights replicated on every CP rank: 4·d²·b = 134,217,728
        assert got["metrics"]["weight_memory_per_chip"] == 134_217_728
    assert entry(objs, "single")["excluded"] == "runs on 1 chip only"


def test_each_split_of_the_budget_is_its_own_entry(capsys: pytest.CaptureFixture[str]) -> None:
    objs = compare_json(capsys, "tp-cp", "--chips", "16", "--phase", "decode")
    splits = [(o["params"]["tensor_parallel"], o["params"]["context_parallel"]) for o in objs]
    assert splits == [(2, 8), (4, 4), (8, 2)]  # 16 = 2·8 = 4·4 = 8·2; 1·16 is tp's, 16·1 cp's
    # the weights shrink with tp alone: 4·d²·b / tp = 67,108,864, 33,554,432, 16,777,216
    assert [o["metrics"]["weight_memory_per_chip"] for o in objs] == [
        4 * D**2 * B_ELEM // tp for tp, _ in splits
    ]
    code, out, _ = run(capsys, "compare", "--chips", "16", "--phase", "decode")
    assert code == 0
    assert "tp-cp (tp=2, cp=8)" in out and "tp-cp (tp=8, cp=2)" in out
    assert "attention, decode on 16 chips" in out


def test_a_given_degree_is_kept_and_the_other_fills_the_budget(
    capsys: pytest.CaptureFixture[str],
) -> None:
    objs = compare_json(capsys, "tp-cp", "--chips", "16", "tensor_parallel=4", "--phase", "prefill")
    assert [(o["params"]["tensor_parallel"], o["params"]["context_parallel"]) for o in objs] == [
        (4, 4)
    ]


def test_on_one_chip_every_layout_is_the_single_chip(capsys: pytest.CaptureFixture[str]) -> None:
    objs = compare_json(capsys, "--chips", "1", "--phase", "decode")
    ran = [o for o in objs if "excluded" not in o]
    assert {o["layout"] for o in ran} == {
        "single",
        "tp",
        "cp-allgather",
        "cp-kv-sharded",
        "ulysses",
        "ring",
    }
    # every degree at 1 gives the reference back (what verify proves)
    assert all(o["metrics"] == entry(objs, "single")["metrics"] for o in ran)
    assert "1 chip gives no split" in entry(objs, "tp-cp")["excluded"]


def test_layouts_that_cannot_run_are_listed_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ("compare", "--chips", "4", "num_heads=6", "--phase", "prefill")
    objs = compare_json(capsys, *argv[1:])
    # 6 heads do not shard over 4 ranks; over tp = 2 (and cp = 2) they do
    assert entry(objs, "tp")["excluded"].startswith("num_heads=6 is not divisible by ")
    assert "tensor_parallel=4" in entry(objs, "tp")["excluded"]
    assert "context_parallel=4" in entry(objs, "ulysses")["excluded"]
    assert entry(objs, "tp-cp", tensor_parallel=2)["chips"] == 4
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "excluded: single — runs on 1 chip only" in out
    assert "excluded: tp — num_heads=6 is not divisible by tensor_parallel=4" in out
    code, out, _ = run(capsys, *argv, "--format", "markdown")
    assert code == 0
    assert "Excluded (cannot run on 4 chips):" in out
    assert "- `ulysses`: num_heads=6 is not divisible by context_parallel=4" in out
    assert "- chips: 4 chips for every layout" in out
    assert_valid_tables(out)


def test_chips_in_every_view(capsys: pytest.CaptureFixture[str]) -> None:
    objs = compare_json(capsys, "--phase", "decode")
    # without a budget each layout keeps its own degrees: tp-cp on tp·cp = 4·4 = 16 chips
    assert {o["layout"]: o["chips"] for o in objs} == {
        "single": 1,
        "tp": 4,
        "cp-allgather": 4,
        "cp-kv-sharded": 4,
        "tp-cp": 16,
        "ulysses": 4,
        "ring": 4,
    }
    for fmt in ("table", "markdown"):
        code, out, _ = run(capsys, "compare", "--phase", "decode", "--format", fmt)
        assert code == 0
        chips_row = next(line for line in out.splitlines() if line.lstrip("| ").startswith("chips"))
        # columns grouped by chip count, smallest first
        counts = [int(c) for c in chips_row.replace("|", " ").split()[1:]]
        assert counts == sorted(counts) == [1, 4, 4, 4, 4, 4, 16]
        assert "grouped by chip count" in out


def ranking_lines(markdown: str) -> dict[int, str]:
    """The takeaway's line for each chip count: ``- on N chips, ...``."""
    out = {}
    for line in markdown.splitlines():
        if line.startswith("- on ") and " chip" in line:
            out[int(line.split()[2])] = line
    return out


def memory(o: dict) -> int:
    m = o["metrics"]
    return m["weight_memory_per_chip"] + m["activation_memory_per_chip"] + m["kv_cache_per_chip"]


def test_mixed_chip_counts_are_never_ranked_together(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("compare", "--phase", "decode", "--hardware", "seed-test")
    objs = compare_json(capsys, *argv[1:])
    # tp-cp on its 16 chips needs the least memory of all: weights over tp, 4·d²·b / 4 =
    # 33,554,432, and the cache over tp·cp, 2·B·S·h_kv·dh·b / 16 = 2·2048·32·128·2 / 16 =
    # 2,097,152, against tp's 33,554,432 + 8,388,608: a ranking across chip counts names it
    overall = min(objs, key=memory)
    assert overall["layout"] == "tp-cp" and overall["chips"] == 16
    activations = overall["metrics"]["activation_memory_per_chip"]
    assert memory(overall) == 33_554_432 + 2_097_152 + activations
    code, out, _ = run(capsys, *argv, "--format", "markdown")
    assert code == 0
    assert "Ranked within each chip count, never across" in out
    lines = ranking_lines(out)
    assert set(lines) == {1, 4, 16}
    assert lines[1] == "- on 1 chip, `single` alone"
    assert lines[16] == "- on 16 chips, `tp-cp (tp=4, cp=4)` alone"
    four = [o for o in objs if o["chips"] == 4]
    least = min(four, key=memory)["layout"]
    fastest = min(four, key=lambda o: o["timing"]["wall_clock_time_ms"])["layout"]
    assert lines[4].startswith(f"- on 4 chips, least memory per chip: `{least}` (")
    assert f"fastest: `{fastest}` (" in lines[4] and "tp-cp" not in lines[4]
    assert "Fastest" not in out and "Least memory" not in out


def test_one_chip_count_is_ranked_as_one(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("compare", "--chips", "4", "--phase", "prefill", "--hardware", "seed-test")
    code, out, _ = run(capsys, *argv, "--format", "markdown")
    assert code == 0
    assert "Ranked within each chip count" not in out
    assert "On 4 chips, least memory per chip: " in out and "; fastest: `" in out


def test_layouts_chosen_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    objs = compare_json(capsys, "ring", "seq_len=512", "tp", "cp-kv-sharded")
    assert [o["layout"] for o in objs] == ["ring", "tp", "cp-kv-sharded"] * 2
    assert {o["phase"] for o in objs} == {"prefill", "decode"}
    assert all(o["params"]["seq_len"] == 512 for o in objs if o["phase"] == "prefill")
    code, out, _ = run(capsys, "compare", "tp", "ring", "--phase", "prefill")
    assert code == 0
    assert out.startswith("shardcost: attention layouts tp, ring side by side\n")
    assert "cp-allgather" not in out and "single" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "nope"], "layout 'nope' is unknown for layer 'attention'; layouts: single"),
        (["compare", "tp", "tp"], "layout 'tp' is named twice"),
        (["compare", "--chips", "0"], "argument --chips: '0' is not a positive whole number"),
        (["compare", "--chips", "four"], "argument --chips: 'four' is not a positive whole"),
        (
            ["compare", "--chips", "4", "tensor_parallel=2"],
            "tensor_parallel=2 contradicts --chips 4: tp runs on tensor_parallel chips, so it "
            "needs tensor_parallel=4",
        ),
        (
            ["compare", "tp-cp", "--chips", "8", "tensor_parallel=3"],
            "tensor_parallel=3 contradicts --chips 8: tp-cp runs on tensor_parallel × "
            "context_parallel chips, and 3 does not divide 8",
        ),
        (
            ["compare", "tp-cp", "--chips", "8", "tensor_parallel=2", "context_parallel=2"],
            "tensor_parallel=2 × context_parallel=2 = 4 contradicts --chips 8",
        ),
        (
            ["compare", "single", "--chips", "4"],
            "none of the attention layouts single runs on 4 chips in prefill "
            "(single: runs on 1 chip only)",
        ),
        (
            ["compare", "ring", "--chips", "4", "tensor_parallel=4"],
            "tensor_parallel applies to none of the attention layouts ring",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:  # argparse's own errors exit from inside
        raise SystemExit(main(argv))
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err
