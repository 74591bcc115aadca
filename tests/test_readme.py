"""The README stays true: CI runs its test command, and its example is the real output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shardcost.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def shell_blocks() -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", README, re.DOTALL)]


def test_exactly_two_setup_commands_and_ci_runs_the_second() -> None:
    install_and_run, install_and_test = shell_blocks()
    assert install_and_run.endswith("shardcost")
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == install_and_test


def test_every_console_example_is_what_the_command_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the examples name files relative to the checkout
    blocks = re.findall(r"```console\n\$ shardcost (.*?)\n(.*?)```", README, re.DOTALL)
    assert len(blocks) >= 2
    for command, shown in blocks:
        assert main(command.split()) == 0
        assert capsys.readouterr().out == shown, command
