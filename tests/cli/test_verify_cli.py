"""shardcost verify: exit 0 when everything holds, 1 with a residual, 2 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import shardcost
from shardcost.cli import main
from shardcost.errors import InputError
from tests.helpers import CHIPS, GROUP, PAYLOAD, with_chips, with_group, with_output

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
    args = ["verify", "tp-cp", "--phase", "prefill", "--all-conventions", "--format", "json"]
    assert main(args) == 0
    results = json.loads(capsys.readouterr().out)
    # prefill: materialize_full_hidden_after_tp 2 x attention_window 3 x sliding_window_kv 3
    # (element types scale b and stay at their default)
    assert len(results) == 2 * 3 * 3
    assert all(r["ok"] for r in results)


def test_user_layout_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--file", str(LAYOUTS / "my-ring-cp.toml")]) == 0
    # whole chips, flops conserved, KV bytes as declared, degree 1 is single, no
    # communication on one chip, non-negative, non-increasing in context_parallel: 7
    assert "7 proved" in capsys.readouterr().out


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


# The example with one value changed: verify --file builds the layout without
# registering it and exits 1, naming the claim that fails and a counterexample; the API
# refuses the same file at load (InputError, one line), so it is never registered.
WHOLE = "FAILED                 whole chips"
NEGATIVE = "FAILED                 non-negative"


@pytest.mark.parametrize(
    ("text", "claim", "counterexample", "message"),
    [
        (
            with_group("0"),
            WHOLE,
            "output_allreduce group = 0, expected 1",
            f"[groups] output_allreduce = 0: {GROUP}; 0 is not",
        ),
        (
            with_group("-1"),
            WHOLE,
            "output_allreduce group = -1, expected 1",
            f"[groups] output_allreduce = -1: {GROUP}; -1 is not",
        ),
        (
            with_group("1/2"),
            WHOLE,
            "output_allreduce group = 1/2, expected 1",
            f"[groups] output_allreduce = 1/2: {GROUP}; 1/2 is not",
        ),
        (
            with_chips('"0"'),
            WHOLE,
            "chips = 0, expected 1",
            f"[layout] chips = 0: {CHIPS}; 0 is not",
        ),
        (
            with_chips('"-1"'),
            WHOLE,
            "chips = -1, expected 1",
            f"[layout] chips = -1: {CHIPS}; -1 is not",
        ),
        (
            with_chips("-3"),
            WHOLE,
            "chips = -3, expected 1",
            f"[layout] chips = -3: {CHIPS}; -3 is not",
        ),
        # -S on a group of cp > 1: smallest S = 1, cp = 2: -1
        (
            with_output("-S"),
            NEGATIVE,
            "seq_len=1 context_parallel=2: output_allreduce payload = -1, expected 0",
            f"[comm] output_allreduce = -S: {PAYLOAD}; at seq_len=1 context_parallel=2 it is -1",
        ),
        # S - 2*B at B = S = 1 (cp = 2): 1 - 2 = -1
        (
            with_output("S - 2*B"),
            NEGATIVE,
            "batch_size=1 seq_len=1 context_parallel=2: output_allreduce payload = -1, expected 0",
            f"[comm] output_allreduce = S - 2*B: {PAYLOAD}; "
            "at batch_size=1 seq_len=1 context_parallel=2 it is -1",
        ),
    ],
)
def test_a_layout_that_cannot_be_fails_verify_and_is_refused_by_the_api(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    claim: str,
    counterexample: str,
    message: str,
) -> None:
    path = tmp_path / "impossible.toml"
    path.write_text(text)
    assert main(["verify", "--file", str(path)]) == 1
    out = capsys.readouterr().out
    assert claim in out
    assert f"counterexample: {counterexample}" in out
    with pytest.raises(InputError) as refused:
        shardcost.load_layout(path)
    assert str(refused.value) == f"{path}: {message}"
    with pytest.raises(InputError, match="is unknown"):  # never registered
        shardcost.metrics("my-ring-cp")
