"""What several test modules share: seed 001's MHA-3 configuration, running the command
line in-process, running an export's run.sh, and the issue's layouts that cannot be."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shardcost.cli import main

# Seed 001's MHA-3 (tp, decode), less its convention: the API's keywords and the command
# line's KEY=VALUE arguments.
MHA3 = {
    "hidden_size": 1024,
    "num_heads": 16,
    "head_dim": 64,
    "batch_size": 2,
    "past_seq_len": 128,
    "tensor_parallel": 4,
}
MHA3_ARGS = [f"{key}={value}" for key, value in MHA3.items()]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``shardcost ARGV`` in-process: the exit status, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


TOOLS = {"python": "python3", "c": "cc", "rust": "rustc", "js": "node", "go": "go"}


def run_sh(
    root: Path, language: str, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``ROOT/LANGUAGE/run.sh ARGS`` from an export (its toolchain must be installed)."""
    tool = TOOLS[language]
    assert shutil.which(tool), f"{tool} is missing: run sh tests/toolchains.sh"
    return subprocess.run(
        [str(root / language / "run.sh"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=300,
        check=False,
    )


# The issue's example layout (my-ring-cp), and one value of it changed at a time: layouts
# that cannot be, with the words of the claims they break.
LAYOUTS = Path(__file__).parent / "formulas" / "layouts"
ISSUE = (LAYOUTS / "my-ring-cp.toml").read_text()
OUTPUT = 'output_allreduce = "batch_size*seq_len/context_parallel*hidden_size*bytes_per_elem"'
GROUP = "a group is a whole number of chips, at least 1"
CHIPS = "the chip count is a whole number, at least 1"
PAYLOAD = "a payload is bytes sent, zero or more"


def with_group(value: str) -> str:
    """The issue's layout with output_allreduce on a group of ``value`` chips."""
    return ISSUE.replace("[comm]", f'[groups]\noutput_allreduce = "{value}"\n\n[comm]')


def with_chips(value: str) -> str:
    """The issue's layout with ``chips = VALUE`` (``value`` as written in TOML)."""
    return ISSUE.replace('chips = "context_parallel"', f"chips = {value}")


def with_output(value: str) -> str:
    """The issue's layout with output_allreduce sending ``value`` bytes."""
    return ISSUE.replace(OUTPUT, f'output_allreduce = "{value}"')
