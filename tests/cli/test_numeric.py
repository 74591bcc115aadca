"""``shardcost metrics`` from cached programs (``shardcost.numeric``): the same answer as the
engine, digit for digit, or no answer at all; and no SymPy on the way."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from shardcost import cache
from shardcost.cli import main as engine
from shardcost.formulas import all_layouts, resolve_inputs
from shardcost.numeric import _parse_metrics, metrics_key, run_compare, run_metrics

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("fast_path_cache")  # tests/cli/conftest.py


def _engine(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = engine(argv)
    return rc, out.getvalue(), err.getvalue()


def _same(argv: list[str]) -> bool:
    """Run the engine (which stores the program), then the program: True when the program
    answered, and then with the engine's exact output; a failure of the engine must get no
    answer from the program."""
    rc, out, err = _engine(argv)
    fast = run_metrics(argv)
    if rc != 0:
        assert fast is None, (argv, err)
        return False
    assert fast is not None, argv
    text, notes = fast
    assert text == out, argv
    if "json" in argv:
        assert notes == [line for line in err.splitlines() if line.startswith("note: ")]
    return True


LAYOUTS = [(lay.layer, lay.name) for lay in all_layouts()]


@pytest.mark.parametrize(("layer", "name"), LAYOUTS)
def test_every_builtin_layout_is_answered_as_the_engine_does(layer: str, name: str) -> None:
    for phase in ("prefill", "decode"):
        for hardware in (
            [],
            ["--hardware", "h100-sxm"],
            ["--hardware", "a100-sxm-80gb"],
            ["--hardware", "seed-test"],
        ):
            for fmt in ("table", "json", "markdown"):
                argv = ["metrics", name, "--layer", layer, "--phase", phase, *hardware]
                assert _same([*argv, "--format", fmt])


POOL = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 64, 100, 128, 4096)


@pytest.mark.parametrize(("layer", "name"), LAYOUTS)
def test_random_inputs_agree_or_go_to_the_engine(layer: str, name: str) -> None:
    """Random counts, uneven splits and impossible ones included: wherever the engine
    answers, the program gives the same digits; wherever it refuses, the program does not
    answer (the engine's one-line error is what the user sees)."""
    rng = random.Random(f"{layer}/{name}")
    answered = 0
    for phase in ("prefill", "decode"):
        dims = list(resolve_inputs(name, phase, layer=layer).dims)
        _same(["metrics", name, "--layer", layer, "--phase", phase])  # stores the program
        for _ in range(6):
            chosen = rng.sample(dims, k=min(len(dims), rng.randint(1, 4)))
            given = [f"{k}={rng.choice(POOL)}" for k in chosen]
            hardware = ["--hardware", "h100-sxm"] if rng.random() < 0.3 else []
            answered += _same(
                ["metrics", name, "--layer", layer, "--phase", phase, *hardware, *given]
            )
    assert answered >= 1  # some random points are valid for every layout


@pytest.mark.parametrize(
    "argv",
    [
        ["metrics", "tp", "kv_cache_dtype=fp8", "num_kv_heads=8"],
        ["metrics", "tp", "--hardware", "h100-sxm", "weight_dtype=fp8", "activation_dtype=fp8"],
        ["metrics", "tp", "--hardware", "h100-sxm", "collective_algorithm=tree"],
        ["metrics", "tp", "--hardware", "h100-sxm", "collective_bytes=payload"],
        ["metrics", "ring", "--phase", "decode", "--hardware", "h100-sxm", "batch_size=4"],
        ["metrics", "tp", "attention_window=sliding", "sliding_window=512", "seq_len=4096"],
        ["metrics", "ep", "--layer", "moe", "--phase", "decode", "expert_routing=all"],
        ["metrics", "tp", "--layer", "mla", "--phase", "decode", "mla_decode=decompressed"],
        [
            "metrics",
            "cp-kv-sharded",
            "--phase",
            "decode",
            "context_parallel=8",
            "past_seq_len=1000",
        ],
    ],
)
def test_conventions_fix_the_program(argv: list[str]) -> None:
    assert _same(argv)
    assert _same([*argv, "--format", "json"])


def test_values_the_program_does_not_take_go_to_the_engine() -> None:
    assert _same(["metrics", "tp", "seq_len=1024"])  # the program is stored
    # hardware fields, a zero, text for a count, a key the layout does not read
    extras = ("peak_tflops=500", "supports_overlap=false", "seq_len=0", "seq_len=1_024")
    for extra in (*extras, "past_seq_len=5", "bogus=1", "seq_len=" + "9" * 70):
        argv = ["metrics", "tp", "--hardware", "h100-sxm", extra]
        assert run_metrics(argv) is None, extra
        _engine(argv)  # and after the engine, which stores no program for it
        assert run_metrics(argv) is None, extra


def test_a_damaged_entry_is_a_miss(tmp_path: Path) -> None:
    argv = ["metrics", "tp", "--format", "json"]
    assert _same(argv)
    entry = cache.directory() / "numeric" / f"{metrics_key(_parse_metrics(argv))}.py"
    entry.write_text("def run(given):\n    return 1 / 0\n")
    assert run_metrics(argv) is None
    entry.write_bytes(b"\xff\xfe garbage")
    assert run_metrics(argv) is None


def test_a_changed_source_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["metrics", "tp"]
    assert _same(argv)
    monkeypatch.setattr(cache, "source_digest", lambda: "another version of the formulas")
    assert run_metrics(argv) is None


def test_no_cache_means_no_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDCOST_NO_CACHE", "1")
    rc, _, _ = _engine(["metrics", "tp"])
    assert rc == 0
    assert run_metrics(["metrics", "tp"]) is None


def test_the_second_process_imports_no_sympy(tmp_path: Path) -> None:
    env = {**os.environ, "SHARDCOST_CACHE_DIR": str(tmp_path / "c"), "PYTHONPATH": str(ROOT)}
    code = (
        "import sys\n"
        "from shardcost.entry import main\n"
        "rc = main(['metrics', 'tp-cp', '--phase', 'decode', '--hardware', 'h100-sxm',"
        " 'batch_size=8', '--format', 'json'])\n"
        "print('SYMPY' if 'sympy' in sys.modules else 'NO-SYMPY', file=sys.stderr)\n"
        "raise SystemExit(rc)\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0]
    assert runs[0].stdout == runs[1].stdout
    assert json.loads(runs[1].stdout)["params"]["batch_size"] == 8
    assert runs[0].stderr.strip().endswith("NO-SYMPY") is False  # the first run: the engine
    assert runs[1].stderr.strip().endswith("NO-SYMPY")


def _same_compare(argv: list[str]) -> bool:
    """As ``_same``, for ``compare`` (and the main job, ``shardcost`` with no command)."""
    rc, out, err = _engine(argv)
    fast = run_compare(argv)
    if rc != 0:
        assert fast is None, (argv, err)
        return False
    assert fast is not None, argv
    assert fast[0] == out, argv
    return True


@pytest.mark.parametrize(
    "argv",
    [
        [],  # the main job: every attention layout, both phases
        ["--hardware", "h100-sxm"],
        ["compare", "tp", "ulysses", "--phase", "decode", "batch_size=8", "num_kv_heads=8"],
        ["--format", "json", "--hardware", "h100-sxm", "kv_cache_dtype=fp8"],
        ["compare", "--layer", "ffn", "--hardware", "b200"],
        ["compare", "--layer", "moe", "--phase", "decode", "batch_size=64"],
        ["compare", "--layer", "mla", "tensor_parallel=8"],
        ["compare", "--layer", "lm_head", "--format", "json"],
        ["seq_len=4096", "tensor_parallel=2", "context_parallel=8"],
    ],
)
def test_compare_is_answered_as_the_engine_does(argv: list[str]) -> None:
    assert _same_compare(argv)
    # and again at other counts, from the same programs
    if not any(a.startswith("batch_size=") for a in argv):
        assert _same_compare([*argv, "batch_size=3"])


def test_compare_inputs_the_programs_do_not_take_go_to_the_engine() -> None:
    assert _same_compare(["compare", "tp", "single"])
    for extra in ("bogus=1", "num_experts=8", "tensor_parallel=0", "head_dim=7", "peak_tflops=9"):
        _same_compare(["compare", "tp", "single", extra])  # the engine refuses: no answer


def test_the_main_job_imports_no_sympy_from_the_second_run(tmp_path: Path) -> None:
    env = {**os.environ, "SHARDCOST_CACHE_DIR": str(tmp_path / "c"), "PYTHONPATH": str(ROOT)}
    runs = [
        subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "shardcost"],
            env=env,
            capture_output=True,
            text=True,
        )
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0]
    assert runs[0].stdout == runs[1].stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in runs[1].stderr.splitlines()]
    assert "sympy" in [line.rsplit("|", 1)[-1].strip() for line in runs[0].stderr.splitlines()]
    assert "sympy" not in imported
    assert "numpy" not in imported
