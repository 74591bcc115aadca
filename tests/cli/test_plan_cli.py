"""``shardcost plan`` and ``shardcost model --plan`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shardcost.cli import main
from tests.helpers import run

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"
LLAMA_70B = str(CONFIGS / "llama-3.1-70b.json")
WORKLOAD = ("--prompt", "8192", "--output-tokens", "64", "--concurrency", "8")


def test_plan_names_what_does_not_fit_and_the_best(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "plan", LLAMA_70B, "--chips", "8", "--hardware", "h100-sxm", *WORKLOAD
    )
    assert code == 0 and "plans evaluated in" in err
    assert (
        "do not fit" in out and "weights alone exceed the 77.3 GB (72.0 GiB) usable per chip" in out
    )
    assert "Pareto front" in out and "lowest TPOT: tp=8 " in out
    assert "TPOT: time per output token after the first" in out  # the definitions


def test_plan_json_has_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "plan",
        LLAMA_70B,
        "--chips",
        "8",
        "--hardware",
        "h100-sxm",
        *WORKLOAD,
        "--max-tpot-ms",
        "1000",
        "--format",
        "json",
    )
    assert code == 0
    found = json.loads(out)
    assert found["chips"] == 8 and found["evaluated"] >= len(found["front"]) >= 1
    best = found["best"]["throughput"]
    assert best["plan"]["chips"] == 8
    assert {"ttft_ms", "tpot_ms", "tokens_per_s_per_chip", "requests_fit"} <= set(best["serving"])
    assert {"total_gb", "total_gib", "usable", "fits"} <= set(best["memory"])
    assert sum(found["do_not_fit"].values()) == sum(
        len(v) for v in found["do_not_fit_plans"].values()
    )


def test_a_tight_limit_drops_every_plan_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "plan",
        LLAMA_70B,
        "--chips",
        "8",
        "--hardware",
        "h100-sxm",
        *WORKLOAD,
        "--max-tpot-ms",
        "0.001",
    )
    assert code == 0
    assert "miss a limit: " in out and "TPOT above 0.001 ms" in out
    assert "No plan fits and meets the limits" in out


def test_markdown_report_with_a_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report = tmp_path / "plans.md"
    code, _, err = run(
        capsys,
        "plan",
        LLAMA_70B,
        "--chips",
        "8",
        "--hardware",
        "h100-sxm",
        *WORKLOAD,
        "--format",
        "markdown",
        "-o",
        str(report),
        "--plot",
    )
    assert code == 0 and "plans.plans.svg" in err
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# llama-3.1-70b on 8 × h100-sxm: plans")
    assert "](plans.plans.svg)" in text and "| plan |" in text
    assert (tmp_path / "plans.plans.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_model_with_a_plan(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "model",
        LLAMA_70B,
        "--plan",
        "tp=4,pp=2",
        "--hardware",
        "h100-sxm",
        *WORKLOAD,
        "--format",
        "json",
    )
    assert code == 0
    got = json.loads(out)
    assert got["plan"]["label"] == "tp=4,pp=2" and got["layouts"]["attention"] == "tp"
    assert got["pipeline"]["layers_per_stage"] == [40, 40]
    code, out, _ = run(capsys, "model", LLAMA_70B, "--plan", "tp=8", "--hardware", "h100-sxm")
    assert code == 0
    assert "Memory per chip (the busiest stage)" in out and "fits:" in out and "GiB" in out
    # and the collectives, as the JSON lists them: llama-3.1-70b (d = 8192, 80 layers) on
    # tp=8 all-reduces a 2048-token prompt's hidden state, 2048 · 8192 · 2 = 33,554,432
    # bytes, after attention and after the FFN of each of the 80 layers
    assert "Collectives per chip" in out
    rows = [line.split() for line in out.splitlines() if "output_allreduce" in line]
    want = ["prefill", "0", "attention", "output_allreduce", "all-reduce", "tp", "80"]
    assert rows[1] == [*want, "33,554,432"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("model", LLAMA_70B, "--plan", "tp=8"), "--plan needs --hardware NAME"),
        (("model", LLAMA_70B, "--plan", "tp=3", "--hardware", "h100-sxm"), "num_heads=64"),
        (
            ("model", LLAMA_70B, "--plan", "tp=8", "--hardware", "h100-sxm", "--layout", "tp"),
            "--plan sets every layer's layout",
        ),
        (("plan", LLAMA_70B, "--chips", "0", "--hardware", "h100-sxm"), "'0' is not a whole"),
        (("plan", LLAMA_70B, "--chips", "8"), "--hardware"),
        (("plan", LLAMA_70B, "--chips", "8", "--hardware", "h100-sxm", "--plot"), "--plot"),
        (
            ("plan", LLAMA_70B, "--chips", "8", "--hardware", "h100-sxm", "--reserve", "1"),
            "reserve='1'",
        ),
        (
            ("plan", LLAMA_70B, "--chips", "8", "--hardware", "h100-sxm", "tensor_parallel=2"),
            "tensor_parallel is set by the plan",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:  # argparse's own errors exit from inside
        raise SystemExit(main(list(argv)))
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and not out
    assert message in err and len(err.strip().splitlines()) == 1
