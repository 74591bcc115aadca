"""``shardcost sweep`` from a cached entry (``shardcost.numeric_sweep``): the engine's
output, byte for byte, at values other than those it was stored at (rows, dropped counts
and their reasons); or no answer at all (then the engine answers); and no SymPy on the
way. The engine's own output (cache off) is the reference throughout."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from shardcost import cache, numeric_sweep
from shardcost.cli import main as engine
from shardcost.entry import main as entry
from shardcost.numeric_sweep import swept, try_sweep, values_of
from tests.helpers import fresh_process

ROOT = Path(__file__).resolve().parents[2]
SECONDS = re.compile(r" in [0-9.]+ s;")

CONVENTIONS = ["decode_projections=qkvo,o", "kv_cache_dtype=fp8"]
# (stored call, later calls): the later ones give the same keys (each swept or not as
# stored), other values; many drop rows for divisibility (the summary's counts must agree)
CASES = [
    (
        ["tp", "batch_size=1,2", "seq_len=1024,2048"],
        [
            ["tp", "batch_size=1:64:*2", "seq_len=512:4096:512"],
            ["tp", "batch_size=3,5", "seq_len=1000,1001"],
        ],
    ),
    (
        ["tp", "tensor_parallel=2,4", "num_heads=32"],
        [["tp", "tensor_parallel=1:9", "num_heads=24"]],  # 24 heads over 5, 7, 9: dropped
    ),
    (
        ["single", "--phase", "decode", "past_seq_len=128,256", "batch_size=4"],
        [["single", "--phase", "decode", "past_seq_len=1:5000:333", "batch_size=7"]],
    ),
    (
        ["cp-kv-sharded", "context_parallel=2,4", "seq_len=4096"],
        [["cp-kv-sharded", "context_parallel=1:8", "seq_len=1000"]],  # uneven: dropped
    ),
    (
        ["ulysses", "context_parallel=2,4", "num_heads=32"],
        [["ulysses", "context_parallel=1:12", "num_heads=48"]],
    ),
    (
        ["tp", "--layer", "moe", "tensor_parallel=2,4"],
        [["tp", "--layer", "moe", "tensor_parallel=1:16"]],
    ),
    (
        ["ep", "--layer", "moe", "--phase", "decode", "expert_parallel=2,4"],
        [["ep", "--layer", "moe", "--phase", "decode", "expert_parallel=1:10"]],
    ),
    (
        ["tp", "--layer", "mla", "tensor_parallel=2,4", "seq_len=4096"],
        [["tp", "--layer", "mla", "tensor_parallel=1:8", "seq_len=100"]],
    ),
    (
        ["tp", "--hardware", "h100-sxm", "tensor_parallel=2,4", "batch_size=8"],
        [["tp", "--hardware", "h100-sxm", "tensor_parallel=1:16", "batch_size=3"]],
    ),
    (
        ["tp-cp", "--phase", "decode", "--hardware", "h100-sxm", "past_seq_len=64,128"],
        [["tp-cp", "--phase", "decode", "--hardware", "h100-sxm", "past_seq_len=1:3000:7"]],
    ),
    (  # conventions: a switch swept (two passes), a static one
        ["tp", "--phase", "decode", "--format", "jsonl", "tensor_parallel=2,4", *CONVENTIONS],
        [["tp", "--phase", "decode", "--format", "jsonl", "tensor_parallel=1:32", *CONVENTIONS]],
    ),
]


pytestmark = pytest.mark.usefixtures("fast_path_cache")  # tests/cli/conftest.py


def _run(main: object, argv: list[str]) -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(err):
        rc = main(argv)  # type: ignore[operator]
    text.flush()
    return rc, out.getvalue(), SECONDS.sub(" in _ s;", err.getvalue())


def _fresh(argv: list[str]) -> tuple[int, bytes, str]:
    """The engine alone: no entry read, none written."""
    os.environ["SHARDCOST_NO_CACHE"] = "1"
    try:
        return _run(engine, argv)
    finally:
        del os.environ["SHARDCOST_NO_CACHE"]


def _entries() -> list[Path]:
    return sorted(cache.directory().glob("numeric/*.json"))


def _fast(argv: list[str]) -> tuple[int, bytes, str]:
    """The fast path's answer; it must give one."""
    out = _run(lambda a: try_sweep(["sweep", *a]), argv)
    assert out[0] is not None, argv
    return out


@pytest.mark.parametrize(("stored", "later"), CASES, ids=[" ".join(s) for s, _ in CASES])
def test_same_bytes_as_the_engine(stored: list[str], later: list[list[str]]) -> None:
    assert _run(engine, ["sweep", *stored])[0] == 0
    assert len(_entries()) == 1, "the engine's sweep stored no entry"
    for argv in [stored, *later]:
        want = _fresh(["sweep", *argv])
        assert want[0] == 0
        assert _fast(argv) == want, argv
        assert _run(entry, ["sweep", *argv]) == want


def test_to_a_file(tmp_path: Path) -> None:
    """-o FILE (the format by its suffix), the summary naming it as the engine does."""
    assert engine(["sweep", "tp", "batch_size=1,2", "-o", str(tmp_path / "a.jsonl")]) == 0
    mine, theirs = tmp_path / "mine.jsonl", tmp_path / "theirs.jsonl"
    argv = ["tp", "batch_size=1:100", "-o"]
    rc, out, err = _fast([*argv, str(mine)])
    want = _fresh(["sweep", *argv, str(theirs)])
    assert (rc, out, err.replace("mine", "theirs")) == want
    assert mine.read_bytes() == theirs.read_bytes()
    assert mine.read_bytes().startswith(b'{"hidden_size": 4096,')
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["a.jsonl", "cache", "mine.jsonl", "theirs.jsonl"]  # no temporary left


def test_past_2_53_goes_to_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counts at or past 2^53 are recomputed exactly by the engine: where such a row is
    in the first chunk, the fast path declines; where it comes after rows were written,
    the engine takes over the rest in the same process. Either way: the engine's bytes."""
    assert engine(["sweep", "tp", "batch_size=1,2", "seq_len=1024,2048"]) == 0
    first = ["tp", "batch_size=100000,1", "seq_len=10000000,1024"]  # 2^53 in row 1
    assert try_sweep(["sweep", *first]) is None
    assert _run(entry, ["sweep", *first]) == _fresh(["sweep", *first])
    handed: list[object] = []
    original = numeric_sweep._handover

    def recorded(args: object) -> object:
        engine_grid = original(args)  # type: ignore[arg-type]
        return lambda rows: handed.append(rows) or engine_grid(rows)

    monkeypatch.setattr(numeric_sweep, "_handover", recorded)
    # 36,792 rows a chunk: the first (batch_size up to 18,396) below 2^53, later ones not
    later = ["tp", "batch_size=1:60000", "seq_len=1024,2048"]
    got = _fast(later)
    assert len(handed) == 1
    assert got == _fresh(["sweep", *later])
    assert got[1].count(b"\n") == 1 + 120000


def test_a_last_chunk_of_one_row() -> None:
    """A chunk of one row (inputs that do not vary) has a program of its own: stored too."""
    assert engine(["sweep", "tp", "batch_size=1,2", "seq_len=16"]) == 0
    argv = ["tp", f"batch_size=1:{36792 + 1}", "seq_len=16"]  # 36,792 rows a chunk
    assert _fast(argv) == _fresh(["sweep", *argv])


@pytest.mark.parametrize(
    "argv",
    [
        ["tp", "batch_size=1,2", "seq_len=1024,2048", "--format", "parquet", "-o", "x.parquet"],
        ["tp", "batch_size=1,2", "seq_len=1024,2048", "--engine", "dask", "-o", "x"],
        ["tp", "batch_size=1,2", "seq_len=1024,2048", "--file", "x.toml"],
        ["tp", "batch_size=1,2", "seq_len=1024,2048", "--hardware", "h100-sxm"],  # not stored
        ["tp", "batch_size=1,2", "seq_len=1024"],  # seq_len not swept: another entry
        ["tp", "batch_size=1,2", "seq_len=1024,2048", "num_heads=32"],  # another key
        ["tp", "batch_size=0,2", "seq_len=1024,2048"],  # refused: the engine says why
        ["tp", "batch_size=1_0,2", "seq_len=1024,2048"],
        ["tp", "batch_size=2:1", "seq_len=1024,2048"],
        ["tp", "batch_size=1,2", "seq_len=1024,2048", "--phase", "decode"],
        ["tp", "batch_size=1,2", "seq_len=1024,2048", "--layer", "ffn"],
        ["tp", "batch_size=1,2", "seq_len=1024,2048", "--help"],
        ["tp", "batch_size=1,2", "seq_len=1024,2048", "--no-progress", "--progress"],
        ["batch_size=1,2", "tp", "seq_len=1024,2048"],  # argparse's LAYOUT: "batch_size=1,2"
    ],
)
def test_declines(argv: list[str]) -> None:
    assert engine(["sweep", "tp", "batch_size=1,2", "seq_len=1024,2048"]) == 0
    assert len(_entries()) == 1
    assert try_sweep(["sweep", *argv]) is None


def test_no_rows_goes_to_the_engine() -> None:
    """Every combination dropped: the engine's error, not an empty output."""
    assert engine(["sweep", "tp", "tensor_parallel=2,4", "num_heads=32"]) == 0
    argv = ["tp", "tensor_parallel=5,7", "num_heads=32"]
    assert try_sweep(["sweep", *argv]) is None
    rc, out, err = _run(entry, ["sweep", *argv])
    assert (rc, out) == (2, b"") and "no valid combinations" in err


@pytest.mark.parametrize(
    "text",
    ["7", "7,7", "7,8", "1:1", "1:2", "5:9:5", "5:10:5", "3:8:*3", "3:9:*3", "1:1:*2", "9:1"],
)
def test_the_key_counts_values_as_the_sweep_does(text: str) -> None:
    """The key says whether a count is swept without building its values: as they are."""
    try:
        values = values_of({"seq_len": text})["seq_len"]
    except Exception:
        return  # the engine refuses these: no entry is ever stored for them
    assert swept(text) == (len(values) > 1)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "format", "program", "stale"])
def test_damaged_or_stale_entry_declines(damage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = ["tp", "batch_size=1,2", "seq_len=1024,2048"]
    assert engine(["sweep", *stored]) == 0
    (path,) = _entries()
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\xff\x00" * 100)
    elif damage == "format":
        path.write_text(json.dumps({**json.loads(text), "format": -1}))
    elif damage == "program":
        data = json.loads(text)
        for variant in data["variants"]:
            for program in variant["programs"].values():
                program["source"] = "def nothing(:\n"
        path.write_text(json.dumps(data))
    else:  # another source digest: a new key, so the entry is never found
        monkeypatch.setattr(cache, "source_digest", lambda: "0" * 64)
    argv = ["tp", "batch_size=1:4", "seq_len=1024,2048"]
    assert try_sweep(["sweep", *argv]) is None
    assert _run(entry, ["sweep", *argv])[:2] == _fresh(["sweep", *argv])[:2]


def test_no_sympy_in_a_warm_run(tmp_path: Path) -> None:
    """A fresh process answers from the entry an earlier one stored, importing neither
    SymPy nor the formulas, and writes the engine's bytes."""

    def run(argv: list[str], **extra: str) -> subprocess.CompletedProcess[bytes]:
        return fresh_process(tmp_path / "cache", ["sweep", *argv], **extra)

    run(["tp", "batch_size=1,2", "seq_len=1024,2048"])  # the engine: stores the entry
    argv = ["tp", "batch_size=1:64", "seq_len=512,1024,2048"]
    warm = run(argv)
    assert warm.stderr.decode().splitlines()[-1] == "0 []"
    cold = run(argv, SHARDCOST_NO_CACHE="1")
    assert "sympy" in cold.stderr.decode().splitlines()[-1]
    assert warm.stdout == cold.stdout and warm.stdout.count(b"\n") == 1 + 64 * 3
