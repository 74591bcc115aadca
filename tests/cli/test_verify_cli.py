"""shardcost verify: exit 0 when everything holds, 1 with a residual, 2 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shardcost.cli import main

LAYOUTS = Path(__file__).resolve().parents[1] / "formulas" / "layouts"


def test_every_builtin_is_proved(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out and "FAILED" not in out
    # CP-5's redundancy is stated, not hidden: 4·B·T·dh²·h·(cp − 1)·(h + h_kv) for qkvo
    assert "repeated: 4·B·T·dh²·h·(cp − 1)·(h + h_kv)" in out


def test_conventions_and_every_combination(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "tp-cp", "--phase", "decode", "decode_projections=qo"]) == 0
    assert "decode_projections=qo" in capsys.readouterr().out
    assert main(["verify", "tp-cp", "--all-conventions", "--format", "json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 2 + 24  # prefill: materialize x2; decode: 2 x 2 x 3 x 2
    assert all(r["ok"] for r in results)


def test_user_layout_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--file", str(LAYOUTS / "my-ring-cp.toml")]) == 0
    assert "6 proved" in capsys.readouterr().out


def test_undivided_term_exit_1_with_factored_residual(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--file", str(LAYOUTS / "undivided.toml")]) == 1
    out = capsys.readouterr().out
    # 4·B·h·S²·dh per chip on each of cp chips, against 4·B·h·S²·dh once
    assert "residual 4·B·S²·dh·h·(cp − 1)" in out
    # smallest counterexample, by hand: cp*(8/2 + 4) = 16 against 8 + 4 = 12
    assert (
        "num_heads=1 head_dim=1 batch_size=1 seq_len=1 context_parallel=2: "
        "flops_total = 16, expected 12" in out
    )


def test_json_carries_the_residual(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--file", str(LAYOUTS / "undivided.toml"), "--format", "json"]) == 1
    (result,) = json.loads(capsys.readouterr().out)
    failed = [v for v in result["verdicts"] if v["status"] == "failed"]
    assert failed[0]["residual"] == "4·B·S²·dh·h·(cp − 1)"
    assert failed[0]["counterexample"]["context_parallel"] == 2


@pytest.mark.parametrize("name", ["hostile-import.toml", "hostile-power.toml"])
def test_hostile_files_exit_2_quickly_and_execute_nothing(tmp_path: Path, name: str) -> None:
    marker = Path("/tmp/shardcost-pwned")
    marker.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "shardcost", "verify", "--file", str(LAYOUTS / name)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "column" in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "nope"], "layout 'nope' is unknown"),
        (["verify", "tp", "hidden_size=4"], "verify takes conventions only"),
        (
            ["verify", "single", "--phase", "prefill", "decode_projections=qo"],
            "applies to none of the layouts and phases verified",
        ),
        (["verify", "--file", "/nonexistent.toml"], "no such file"),
    ],
)
def test_bad_input_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
