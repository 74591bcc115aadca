"""``shardcost verify`` from the cache (``shardcost.fastverify``): the same bytes and exit
status as the run that derived them, no SymPy, and never a stale or damaged entry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import shardcost
from shardcost import fastverify
from shardcost.cli import main
from shardcost.formulas import verification
from tests.helpers import ISSUE, LAYOUTS, with_output

ROOT = Path(__file__).resolve().parents[2]
RING = LAYOUTS / "my-ring-cp.toml"  # 7 claims, all proved in a few hundredths of a second

# `python -m shardcost ARGV`, then whether SymPy was imported (on stderr, after the rest)
MAIN_THEN_SYMPY = """
import runpy, sys
try:
    runpy.run_module("shardcost", run_name="__main__", alter_sys=True)
except SystemExit as done:
    status = done.code
sys.stdout.flush()
print("sympy imported:", "sympy" in sys.modules, "status:", status, file=sys.stderr)
"""


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SHARDCOST_CACHE_DIR", str(folder))
    monkeypatch.delenv("SHARDCOST_NO_CACHE", raising=False)
    return folder


def _process(*argv: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    head = ["-c", code] if code is not None else ["-m", "shardcost"]
    return subprocess.run(
        [sys.executable, *head, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=120,
        check=False,
    )


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _entries(folder: Path) -> list[Path]:
    return sorted((folder / fastverify.KIND).glob("*.json"))


def test_a_second_process_prints_the_same_without_sympy(_own_cache: Path) -> None:
    argv = ("verify", "--file", str(RING))
    cold = _process(*argv)
    assert cold.returncode == 0, cold.stderr
    assert "7 proved" in cold.stdout
    assert len(_entries(_own_cache)) == 1
    warm = _process(*argv)
    assert (warm.returncode, warm.stdout, warm.stderr) == (0, cold.stdout, cold.stderr)
    # the same command, and where SymPy stands once it is done
    probe = _process(*argv, code=MAIN_THEN_SYMPY)
    assert probe.stdout == cold.stdout
    assert probe.stderr == "sympy imported: False status: 0\n"


def test_the_command_line_answers_from_the_cache_without_deriving(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ("verify", "tp", "--phase", "decode", "--format", "json")
    cold = _run(capsys, *argv)
    assert cold[0] == 0

    def derive(*args: object, **kwargs: object) -> None:
        raise AssertionError("verify derived verdicts the cache holds")

    monkeypatch.setattr(verification, "verify", derive)
    assert _run(capsys, *argv) == cold
    # the same request spelt otherwise is its own entry: derived, by the stand-in here
    status, _, err = _run(capsys, "verify", "tp", "--phase=decode", "--format=json")
    assert status == 3 and "verify derived verdicts the cache holds" in err


def test_an_edited_layout_file_misses_and_its_failure_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], _own_cache: Path
) -> None:
    layout = tmp_path / "layout.toml"
    layout.write_text(ISSUE)
    passed = _run(capsys, "verify", "--file", str(layout))
    assert passed[0] == 0 and "0 failed" in passed[1]
    # -S bytes on a group of cp > 1: at S = 1, cp = 2 the payload is -1
    layout.write_text(with_output("-S"))
    status, out, _ = _run(capsys, "verify", "--file", str(layout))
    assert status == 1
    assert "FAILED                 non-negative" in out
    assert "seq_len=1 context_parallel=2: output_allreduce payload = -1, expected 0" in out
    assert len(_entries(_own_cache)) == 2  # the pass stays, under the first text's key
    layout.write_text(ISSUE)
    assert fastverify.try_cached(["verify", "--file", str(layout)]) == 0
    assert capsys.readouterr().out == passed[1]


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"",  # empty
        lambda data: b"\xff\xfe" + data,  # not UTF-8
        lambda data: data.replace(b"proved", b"FAILED", 1),  # output edited, digest not
        lambda data: data.replace(b'"status": 0', b'"status": 1'),  # status edited
        lambda data: b"[]",  # JSON, not an entry
        lambda data: b"[" * 100_000,  # deeper than the JSON parser goes
    ],
    ids=[
        "truncated",
        "empty",
        "not-utf8",
        "edited-output",
        "edited-status",
        "not-an-entry",
        "too-deep",
    ],
)
def test_a_damaged_entry_is_a_miss(
    damage, capsys: pytest.CaptureFixture[str], _own_cache: Path
) -> None:
    argv = ("verify", "--file", str(RING), "--format", "json")  # JSON: no elapsed time
    cold = _run(capsys, *argv)
    (entry,) = _entries(_own_cache)
    entry.write_bytes(damage(entry.read_bytes()))
    assert fastverify.try_cached(list(argv)) is None
    assert capsys.readouterr().out == ""
    assert _run(capsys, *argv) == cold  # derived again, and stored again
    assert fastverify.try_cached(list(argv)) == 0
    assert capsys.readouterr().out == cold[1]


def test_bad_input_is_not_stored(capsys: pytest.CaptureFixture[str], _own_cache: Path) -> None:
    assert _run(capsys, "verify", "nope")[0] == 2
    assert _run(capsys, "verify", "--file", str(LAYOUTS / "hostile-power.toml"))[0] == 2
    assert _entries(_own_cache) == []


def test_no_cache_stores_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, _own_cache: Path
) -> None:
    monkeypatch.setenv("SHARDCOST_NO_CACHE", "1")
    assert _run(capsys, "verify", "--file", str(RING))[0] == 0
    assert not _own_cache.exists()


def test_a_registry_with_user_layouts_is_never_answered_from_the_cache(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["verify", "tp", "--phase", "decode"]
    assert _run(capsys, *argv)[0] == 0
    assert fastverify.try_cached(argv) == 0
    capsys.readouterr()
    shardcost.load_layout(RING)  # registered: `verify` alone would now verify it too
    assert fastverify.try_cached(argv) is None
    assert fastverify.try_cached(["verify"]) is None


@pytest.mark.parametrize(
    ("argv", "request_"),
    [
        (["verify"], fastverify.Request()),
        (
            ["verify", "tp", "decode_projections=qo", "--phase", "decode", "--layer=attention"],
            fastverify.Request(("tp",), ("decode_projections=qo",), (), "decode", "attention"),
        ),
        (
            ["verify", "--file", "./a.toml", "--file=b.toml", "--all-conventions", "--format=json"],
            fastverify.Request((), (), ("a.toml", "b.toml"), "both", None, True, "json"),
        ),
    ],
)
def test_the_requests_it_reads(argv: list[str], request_: fastverify.Request) -> None:
    assert fastverify.parse(argv) == request_


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--help"],
        ["verify", "-h"],
        ["verify", "--fi", "a.toml"],  # an abbreviation argparse would take
        ["verify", "--", "tp"],
        ["verify", "--phase"],
        ["verify", "--phase", "sideways"],
        ["verify", "--layer", "-x"],
        ["verify", "--all-conventions=yes"],
        ["verify", "-1"],
        ["metrics", "tp"],
        [],
    ],
)
def test_what_it_is_not_sure_of_goes_to_the_command(argv: list[str]) -> None:
    assert fastverify.parse(argv) is None
    assert fastverify.try_cached(argv) is None
