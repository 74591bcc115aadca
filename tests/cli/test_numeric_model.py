"""``shardcost model`` from a cached entry (``shardcost.numeric_model``): the engine's
answer, byte for byte, at counts other than those it was stored at; or no answer at all
(then the engine answers); and no SymPy on the way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shardcost import cache
from shardcost.cli import main as engine
from shardcost.entry import main as entry
from shardcost.formulas.evaluate import Metrics, Timing
from shardcost.numeric_model import (
    METRIC_NAMES,
    TIMING_NAMES,
    _parse,
    model_key,
    run_model,
)
from tests.helpers import captured, engine_alone

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "examples" / "configs").glob("*.json"))
HARDWARE = ([], ["--hardware", "h100-sxm"])
FORMATS = ("table", "json", "markdown")

# Counts other than the stored call's (which gives only the layout's degree): each point
# for both phases (the key a phase does not read is left out), the first of a
# context-parallel layout an uneven split (2048 tokens over 3 ranks: notes).
POINTS = {
    "single": [["batch_size=8"], ["batch_size=3", "seq_len=1000", "past_seq_len=999"]],
    "tp": [
        ["tensor_parallel=2", "batch_size=8"],
        ["tensor_parallel=4", "batch_size=3", "seq_len=1000", "past_seq_len=999"],
        ["tensor_parallel=3"],  # most models refuse it: then so does the fast path
    ],
    "cp-kv-sharded": [
        ["context_parallel=3", "batch_size=8"],
        ["context_parallel=4", "seq_len=1000", "past_seq_len=999", "bytes_per_elem=1"],
    ],
}
# (gpt-oss-20b's MoE under tp=8 has a whole weight count its program computes as a
# Fraction: the program is not sure of it, so nothing is stored there and the engine answers)
STORED = {"single": [], "tp": ["tensor_parallel=2"], "cp-kv-sharded": ["context_parallel=2"]}


pytestmark = pytest.mark.usefixtures("fast_path_cache")  # tests/cli/conftest.py


def _agrees(argv: list[str]) -> bool:
    """True when the fast path answered ``argv`` exactly as the engine does (which prints
    nothing on standard error); False when both refuse (the engine with exit 2)."""
    rc, out, err = engine_alone(argv)
    fast = run_model(argv)
    if rc != 0:
        assert rc == 2 and err.startswith("shardcost: error: "), (argv, err)
        assert fast is None, argv
        return False
    assert err == "", argv
    assert fast is not None, argv
    assert fast == out, argv
    return True


def _for_phase(point: list[str], phase: str) -> list[str]:
    unread = "past_seq_len=" if phase == "prefill" else "seq_len="
    return [p for p in point if not p.startswith(unread)]


def test_the_shared_names_are_the_engines() -> None:
    assert tuple(Metrics.__dataclass_fields__) == METRIC_NAMES
    assert tuple(Timing.__dataclass_fields__) == TIMING_NAMES


@pytest.mark.parametrize("layout", list(POINTS))
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_example_is_answered_as_the_engine_does(config: Path, layout: str) -> None:
    answered = 0
    for phase in ("prefill", "decode"):
        for hardware in HARDWARE:
            base = ["model", str(config), "--layout", layout, "--phase", phase, *hardware]
            rc, _, err = captured(engine, [*base, *STORED[layout]])  # stores the entry
            if rc != 0:  # a layout the model's layers have no match for (MLA, MoE)
                assert "layout" in err
                assert run_model(base) is None
                continue
            assert run_model([*base, *STORED[layout]]) is not None
            for point in POINTS[layout]:
                for fmt in FORMATS:
                    answered += _agrees([*base, "--format", fmt, *_for_phase(point, phase)])
    if layout == "single" or config.stem not in ("deepseek-v3", "gpt-oss-20b"):
        assert answered >= 12


@pytest.mark.parametrize(
    ("argv", "points"),
    [
        (
            ["--layout", "tp", "kv_cache_dtype=fp8"],
            [["tensor_parallel=4", "batch_size=16"], ["tensor_parallel=8", "seq_len=512"]],
        ),
        (
            ["--layout", "tp", "--hardware", "h100-sxm", "weight_dtype=fp8"],
            [["tensor_parallel=2"], ["batch_size=2", "bytes_per_elem=1"]],
        ),
        (
            ["--layout", "ulysses", "--phase", "decode", "--hardware", "b200"],
            [["context_parallel=4", "past_seq_len=4096"], ["context_parallel=2", "new_tokens=3"]],
        ),
        (["--layout", "tp-cp", "tensor_parallel=2"], [["context_parallel=3"]]),
    ],
)
def test_conventions_and_other_layouts_fix_the_entry(
    argv: list[str], points: list[list[str]]
) -> None:
    config = str(ROOT / "examples" / "configs" / "llama-3.2-1b.json")
    base = ["model", config, *argv]
    assert captured(engine, base)[0] == 0
    for point in points:
        for fmt in FORMATS:
            assert _agrees([*base, "--format", fmt, *point])
    # without the convention it is another entry, not yet stored
    plain = [a for a in base if not a.endswith("=fp8")]
    if plain != base:
        assert run_model(plain) is None


def test_a_changed_config_misses(tmp_path: Path) -> None:
    config = tmp_path / "llama-3.1-8b.json"
    shutil.copy(ROOT / "examples" / "configs" / "llama-3.1-8b.json", config)
    argv = ["model", str(config), "--layout", "tp", "tensor_parallel=8", "batch_size=4"]
    assert captured(engine, argv)[0] == 0
    assert run_model([*argv[:-1], "batch_size=8"]) is not None
    raw = json.loads(config.read_text())
    config.write_text(json.dumps(raw | {"num_hidden_layers": 16}))  # other bytes
    assert run_model(argv) is None
    assert run_model([*argv[:-1], "batch_size=8"]) is None
    rc, out, _ = captured(entry, argv)  # the engine answers, and stores the new config's
    assert rc == 0 and "16 layers" in out
    assert run_model(argv) == out
    renamed = tmp_path / "other.json"  # its name is the model's: another entry
    shutil.copy(config, renamed)
    assert run_model(["model", str(renamed), *argv[2:]]) is None
    config.unlink()
    assert run_model(argv) is None  # a file that is gone: the engine says so
    rc, _, err = captured(entry, argv)
    assert rc == 2 and "shardcost: error:" in err


def test_invalid_input_gets_the_engines_error() -> None:
    config = str(ROOT / "examples" / "configs" / "mistral-7b.json")
    base = ["model", config, "--layout", "tp", "--hardware", "h100-sxm"]
    assert captured(engine, [*base, "tensor_parallel=8"])[0] == 0
    assert run_model([*base, "tensor_parallel=4"]) is not None
    for bad in (
        "bogus=1",
        "batch_size=0",
        "batch_size=" + "0" * 40 + "8",
        "seq_len=" + "9" * 30,
        "hidden_size=4096",  # the config's own
        "past_seq_len=100",  # not read in prefill
        "context_parallel=2",  # a degree tp does not shard over
        "tensor_parallel=5",  # does not divide the heads
        "weight_dtype=fp9",
    ):
        argv = [*base, bad]
        assert run_model(argv) is None, bad
        rc, out, err = captured(entry, argv)
        assert (rc, out) == (2, ""), bad
        assert err == engine_alone(argv)[2], bad
        assert err.startswith("shardcost: error: ") and err.count("\n") == 1, bad


def test_calls_the_fast_path_does_not_take() -> None:
    config = "examples/configs/llama-3.1-8b.json"
    assert _parse(["model", config, "--layout", "tp", "batch_size=2"]) is not None
    assert _parse(["model", "--layout=tp", config, "--phase", "decode"]) is not None
    for argv in (
        ["model", config, "--plan", "tp=8"],
        ["model", config, "-o", "out.md"],
        ["model", config, "--output", "out.md"],
        ["model", config, "--hardware", "chip.toml"],
        ["model", config, "--layout", "mine.toml"],
        ["model", config, "--prompt", "100"],
        ["model", config, "--lay", "tp"],  # an abbreviation: argparse's to judge
        ["model", config, "--format", "csv"],
        ["model", "batch_size=2", config],  # argparse takes the first word as the config
        ["model", config, "batch_size=2", "batch_size=4"],
        ["model", config, "other.json"],
        ["model"],
        ["metrics", "tp"],
    ):
        assert _parse(argv) is None, argv


def test_a_damaged_entry_is_a_miss() -> None:
    config = str(ROOT / "examples" / "configs" / "qwen2.5-7b.json")
    argv = ["model", config, "--layout", "tp", "tensor_parallel=4"]
    assert captured(engine, argv)[0] == 0
    path = str(Path(config))
    digest = __import__("hashlib").sha256(Path(config).read_bytes()).hexdigest()
    parsed = _parse(argv)
    assert parsed is not None
    entry_file = cache.directory() / "numeric" / f"{model_key(path, digest, parsed)}.json"
    assert entry_file.exists()
    text = entry_file.read_text()
    for damaged in ("{}", "[]", "garbage", text.replace('"programs": ["', '"programs": ["1/0 ')):
        entry_file.write_text(damaged)
        assert run_model(argv) is None
    entry_file.write_bytes(b"\xff\xfe")
    assert run_model(argv) is None


def test_a_changed_source_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["model", str(CONFIGS[0]), "--layout", "single"]
    assert captured(engine, argv)[0] == 0
    assert run_model(argv) is not None
    monkeypatch.setattr(cache, "source_digest", lambda: "another version of the formulas")
    assert run_model(argv) is None


def test_no_cache_means_no_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["model", str(CONFIGS[0])]
    monkeypatch.setenv("SHARDCOST_NO_CACHE", "1")
    assert captured(engine, argv)[0] == 0
    monkeypatch.delenv("SHARDCOST_NO_CACHE")
    assert run_model(argv) is None


def test_the_second_process_imports_neither_sympy_nor_numpy(tmp_path: Path) -> None:
    env = {**os.environ, "SHARDCOST_CACHE_DIR": str(tmp_path / "c"), "PYTHONPATH": str(ROOT)}
    config = str(ROOT / "examples" / "configs" / "llama-3.1-8b.json")

    def code(batch: int, fmt: str) -> str:
        argv = ["model", config, "--layout", "tp", "--hardware", "h100-sxm"]
        argv += ["--format", fmt, "tensor_parallel=8", f"batch_size={batch}"]
        return (
            "import sys\n"
            "from shardcost.entry import main\n"
            f"rc = main({argv!r})\n"
            "heavy = [m for m in ('sympy', 'numpy') if m in sys.modules]\n"
            "print('HEAVY ' + ' '.join(heavy) if heavy else 'LIGHT', file=sys.stderr)\n"
            "raise SystemExit(rc)\n"
        )

    runs = [
        subprocess.run(
            [sys.executable, "-c", code(batch, fmt)], env=env, capture_output=True, text=True
        )
        for batch, fmt in ((4, "table"), (8, "table"), (2, "json"))
    ]
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    assert runs[0].stderr.startswith("HEAVY sympy")  # the first run: the engine
    assert [r.stderr for r in runs[1:]] == ["LIGHT\n", "LIGHT\n"]
    base = ["model", config, "--layout", "tp", "--hardware", "h100-sxm", "tensor_parallel=8"]
    assert runs[1].stdout == engine_alone([*base, "batch_size=8"])[1]
    assert runs[2].stdout == engine_alone([*base, "--format", "json", "batch_size=2"])[1]


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    """The fast path hashes the config before the engine reads it: it must not open a
    FIFO (``open`` blocks until a writer comes), only a regular file."""
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-m", "shardcost", "model", str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"shardcost: error: {fifo}: not a regular file (a device, pipe or socket); "
        "give a local config.json\n"
    )
