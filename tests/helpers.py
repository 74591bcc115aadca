"""What several test modules share: seed 001's MHA-3 configuration, running the command
line in-process (the engine alone, or through the cache's fast paths), in a fresh process
that reports what it imported, running an export's run.sh, and the issue's layouts that
cannot be."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
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


def captured(main: Callable[[list[str]], int], argv: Sequence[str]) -> tuple[int, str, str]:
    """``main(argv)`` in-process (the engine, or the entry with its fast paths): the exit
    status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def engine_alone(argv: Sequence[str]) -> tuple[int, str, str]:
    """The engine alone (``shardcost.cli``): no cache entry read, none written."""
    os.environ["SHARDCOST_NO_CACHE"] = "1"
    try:
        return captured(main, argv)
    finally:
        del os.environ["SHARDCOST_NO_CACHE"]


# A fresh process that runs the command's entry point and then says, as the last line of
# its stderr, its exit status and which of the heavy packages it imported.
_REPORTS_IMPORTS = (
    "import sys\n"
    "from shardcost.entry import main\n"
    "rc = main(sys.argv[1:])\n"
    "sys.stdout.flush()\n"
    "loaded = [m for m in ('sympy', 'shardcost.formulas', 'shardcost.symbolic') "
    "if m in sys.modules]\n"
    "print(rc, loaded, file=sys.stderr)\n"
)


def fresh_process(
    cache_dir: Path, argv: Sequence[str], **env: str
) -> subprocess.CompletedProcess[bytes]:
    """``shardcost ARGV`` in a new process with its cache in ``cache_dir`` (and ``env``
    besides), run from the cache directory's parent; its stderr ends with
    ``"RC [heavy modules imported]"``: ``"0 []"`` for an answer without SymPy or the
    formulas."""
    root = Path(__file__).resolve().parents[1]
    full = {**os.environ, "SHARDCOST_CACHE_DIR": str(cache_dir)}
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), full.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", _REPORTS_IMPORTS, *argv],
        env={**full, **env},
        capture_output=True,
        check=True,
        cwd=cache_dir.parent,
    )


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
