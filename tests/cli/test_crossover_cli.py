"""`shardcost crossover`: the API's answer as JSON, as text and Markdown, and one-line errors."""

from __future__ import annotations

import json

import pytest

import shardcost
from shardcost.cli import main
from tests.helpers import run

SCORES = ("crossover", "single:scores", "single:q_proj", "--solve-for", "seq_len")
RIDGE = ("crossover", "--ridge", "single", "--layer", "ffn", "--phase", "decode")


def test_json_is_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *SCORES, "hidden_size=1024", "--format", "json")
    assert code == 0 and err == ""
    api = shardcost.crossover(
        "single:scores", "single:q_proj", solve_for="seq_len", hidden_size=1024
    )
    assert json.loads(out) == api
    assert api["roots"][0]["exact"] == "1024"  # S = d


def test_the_table_shows_the_closed_form_the_root_and_the_checks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, *SCORES)
    assert code == 0
    assert "difference: 2·B·S·dh·h·(S − d)" in out
    assert "at the values given: 8192·S·(S − 4096)" in out
    assert "S = d" in out and "4,096" in out
    # 2·32·128·4096² = 137,438,953,472 FLOPs each at S = 4096
    assert "4,096  137,438,953,472  =  137,438,953,472" in out
    assert out.rstrip().endswith("single:scores and single:q_proj tie at seq_len = 4,096")


def test_sides_and_values_in_any_order(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["crossover", "--solve-for", "seq_len", "single:scores", "hidden_size=2048"]
    code, out, _ = run(capsys, *argv, "single:q_proj", "--format", "json")
    assert code == 0 and json.loads(out)["roots"][0]["exact"] == "2048"


def test_ridge_point(capsys: pytest.CaptureFixture[str]) -> None:
    # gated FFN decode on an H100: B = 989.4 / 3.35 = 19788/67 ≈ 295.343, whole 296
    code, out, _ = run(capsys, *RIDGE, "--solve-for", "batch_size", "--hardware", "h100-sxm")
    assert code == 0
    assert "single compute time against load time — ffn, decode on h100-sxm" in out
    assert "19788/67 ≈ 295.343" in out and "296" in out
    assert "single compute time < load time below batch_size = 296" in out


def test_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *SCORES, "--format", "markdown")
    assert code == 0
    assert out.startswith("# single:scores against single:q_proj")
    assert "$`2 \\cdot B \\cdot S \\cdot d_h \\cdot h \\cdot \\left(S - d\\right)`$" in out
    assert "| seq_len |" in out


def test_never_and_independent_are_said(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["crossover", "single", "tp", "--metric", "weight_memory_per_chip"]
    code, out, _ = run(capsys, *argv, "--solve-for", "seq_len")
    assert code == 0
    assert out.rstrip().endswith("single − tp does not depend on seq_len: single is always 4× tp")


M = ("--metric", "flops_per_chip")
S = ("--solve-for", "seq_len")
BAD = [
    (("single", "tp", *M), "required: --solve-for"),
    (("nope", "tp", *M, *S), "layout 'nope' is unknown"),
    (("single:nope", "tp", *M, *S), "step 'nope' is not a step"),
    (("single", "tp", "--metric", "flops", *S), "metric 'flops' is unknown"),
    (("single", "tp", *M, "--solve-for", "sek_len"), "did you mean seq_len"),
    (("single", "tp", *M, *S, "seq_len=8"), "seq_len is both solved for and given"),
    (("single", "tp", "--metric", "wall_clock_time_ms", *S), "needs hardware"),
    (("single", "tp", *S), "needs a metric"),
    (("single", *M, *S), "compares two sides"),
    (("single", "tp", "ring", *M, *S), "got 3"),
    (("--ridge", "single", "tp", "--solve-for", "batch_size"), "--ridge single is one layout"),
    (("single", "tp", *M, *S, "--layer", "nope"), "layer='nope' is unknown"),
    (("single", "tp", *M, *S, "--phase", "nope"), "invalid choice"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:  # argparse's own errors exit from inside
        raise SystemExit(main(["crossover", *argv]))
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == ""
    assert err.startswith("shardcost: error: ") and err.count("\n") == 1, err
    assert message in err, err
