"""``shardcost plan`` and ``model --plan`` from a cached entry (``shardcost.numeric_plan``):
the engine's answer, byte for byte, at workloads, limits and reserves other than those it
was stored at; or no answer at all (then the engine answers); and no SymPy on the way."""

from __future__ import annotations

import hashlib
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardcost import cache
from shardcost.cached_sweep import Unsure
from shardcost.cli import main as engine
from shardcost.entry import main as shardcost_main
from shardcost.formulas.communication import collective_time_ms
from shardcost.formulas.hardware import CATALOG
from shardcost.formulas.plan import chip
from shardcost.numeric_plan import (
    KIND,
    StoredFunction,
    _helpers,
    _parse,
    plan_key,
    run_plan,
)
from tests.helpers import captured, engine_alone, fresh_process

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "examples" / "configs"

pytestmark = pytest.mark.usefixtures("fast_path_cache")  # tests/cli/conftest.py


def _timeless(text: str, argv: list[str]) -> str:
    """A search's JSON without its own time (the only figure two runs may differ in)."""
    if argv[0] == "plan" and "json" in argv:
        found = json.loads(text)
        found["seconds"] = 0
        return json.dumps(found)
    return text


def _agrees(argv: list[str]) -> None:
    """The fast path answers ``argv`` as the engine does."""
    rc, out, err = engine_alone(argv)
    assert rc == 0, err
    fast = run_plan(argv)
    assert fast is not None, argv
    assert _timeless(fast[0], argv) == _timeless(out, argv), argv
    if argv[0] == "plan":  # "N plans evaluated in S s"
        assert [line.split(" in ")[0] for line in fast[1]] == [err.split(" in ")[0]]


# Each case: the call that stores the entry, and calls with other workloads, limits and
# reserves that the entry answers (each through every format).
CASES = [
    (
        ["plan", str(CONFIGS / "llama-3.1-8b.json"), "--chips", "8", "--hardware", "h100-sxm"],
        [
            ["--prompt", "3000", "--output-tokens", "64", "--concurrency", "7"],
            ["--concurrency", "128", "--all"],
            ["--output-tokens", "1"],  # no decode step
            ["--prompt", "1", "--output-tokens", "2"],  # one decode step: arrays of one
            ["--reserve", "0.5", "--concurrency", "33", "--max-tpot-ms", "3.5"],
        ],
    ),
    (
        # 64 chips: plans the layers' own checks refuse (heads over tp=64), grouped by
        # the message the stored functions raise
        ["plan", str(CONFIGS / "llama-3.2-1b.json"), "--chips", "64", "--hardware", "h100-sxm"],
        [["--concurrency", "64", "--min-context", "100000"]],
    ),
    (
        [
            "plan",
            str(CONFIGS / "deepseek-v3.json"),
            "--chips",
            "16",
            "--hardware",
            "h200",
            "kv_cache_dtype=fp8",
        ],
        [["--concurrency", "64", "--prompt", "4096"], ["--max-ttft-ms", "100000"]],
    ),
    (
        [
            "plan",
            str(CONFIGS / "gpt-oss-20b.json"),
            "--chips",
            "4",
            "--hardware",
            "b200",
            "--interleaved",
        ],
        [["--concurrency", "9", "--output-tokens", "17"]],
    ),
    (
        [
            "model",
            str(CONFIGS / "llama-3.1-70b.json"),
            "--plan",
            "tp=4,pp=2",
            "--hardware",
            "h100-sxm",
        ],
        [["--concurrency", "9"], ["--prompt", "1", "--output-tokens", "2", "--reserve", "0.3"]],
    ),
    (
        [
            "model",
            str(CONFIGS / "deepseek-v3.json"),
            "--plan",
            "tp=8,ep=8,pp=2,dp=2",
            "--hardware",
            "h200",
            "collective_algorithm=tree",
        ],
        [["--concurrency", "33", "--output-tokens", "40"]],
    ),
]


@pytest.mark.parametrize(("stored", "others"), CASES, ids=[" ".join(c[0][::2]) for c in CASES])
def test_other_workloads_are_answered_as_the_engine_does(
    stored: list[str], others: list[list[str]]
) -> None:
    assert run_plan(stored) is None  # nothing stored yet
    rc, _, err = captured(engine, stored)
    assert rc == 0, err
    for extra in others:
        for fmt in ("table", "json", "markdown"):
            _agrees([*stored, *extra, "--format", fmt])


def test_no_sympy_in_a_warm_run(tmp_path: Path) -> None:
    """A fresh process answers from the entry an earlier one stored, importing neither
    SymPy nor the formulas, and prints the engine's bytes."""

    def run(argv: list[str], **extra: str) -> subprocess.CompletedProcess[bytes]:
        return fresh_process(tmp_path / "cache", argv, **extra)

    config = str(CONFIGS / "llama-3.2-1b.json")
    base = ["plan", config, "--chips", "4", "--hardware", "h100-sxm", "--format", "json"]
    run(base)  # the engine: stores the entry
    argv = [*base, "--concurrency", "12", "--prompt", "700"]
    warm = run(argv)
    assert warm.stderr.decode().splitlines()[-1] == "0 []"
    cold = run(argv, SHARDCOST_NO_CACHE="1")
    assert "sympy" in cold.stderr.decode().splitlines()[-1]
    assert _timeless(warm.stdout.decode(), argv) == _timeless(cold.stdout.decode(), argv)
    # 4 chips, no experts: tp=1 (cp=1: pp 1, 2, 4; cp=2: pp 1, 2, each of 4 context-
    # parallel layouts; cp=4: 4 layouts) 15, tp=2 (pp 1, 2; cp=2) 3, tp=4 1: 19 plans
    assert json.loads(warm.stdout)["tried"] == 19

    one = ["model", config, "--plan", "tp=2,pp=2", "--hardware", "h100-sxm"]
    run(one)
    warm = run([*one, "--concurrency", "3"])
    assert warm.stderr.decode().splitlines()[-1] == "0 []"
    assert warm.stdout == run([*one, "--concurrency", "3"], SHARDCOST_NO_CACHE="1").stdout


BASE = ["plan", str(CONFIGS / "llama-3.2-1b.json"), "--chips", "2", "--hardware", "h100-sxm"]


@pytest.mark.parametrize(
    "argv",
    [
        [*BASE, "--chip", "2"],  # argparse's abbreviation: the engine reads it
        [*BASE, "--prompt", "８"],  # a digit str.isdigit() takes, our pattern does not
        [*BASE, "--prompt", "0"],  # refused by the engine
        [*BASE, "--max-tpot-ms", "1e3"],
        [*BASE, "--format", "csv"],
        [*BASE, "--plot"],
        [*BASE, "-o", "x.md", "--output", "y.md"],  # argparse keeps the last
        [*BASE, "--help"],
        [*BASE, "kv_cache_dtype=fp8"],  # other parameters: another entry
        [*BASE[:-1], "hw.toml"],
        ["plan", str(CONFIGS / "llama-3.2-1b.json"), "--chips", "4", "--hardware", "h100-sxm"],
        ["model", str(CONFIGS / "llama-3.2-1b.json"), "--hardware", "h100-sxm"],
        ["model", str(CONFIGS / "llama-3.2-1b.json"), "--plan", "tp=2", "--hardware", "h100-sxm"],
    ],
)
def test_what_the_entry_does_not_answer_goes_to_the_engine(argv: list[str]) -> None:
    rc, _, err = captured(engine, BASE)
    assert rc == 0, err
    assert run_plan(BASE) is not None
    assert run_plan(argv) is None


def test_an_output_file_is_written_as_the_engine_writes_it(tmp_path: Path) -> None:
    """``-o FILE`` from the entry: the engine's bytes in the file, nothing on stdout, and
    "wrote FILE" after the search's line; a target the engine refuses is left to it."""
    argv = [*BASE, "--format", "markdown"]
    assert captured(engine, [*argv, "-o", str(tmp_path / "stored.md")])[0] == 0  # stores
    mine, theirs = tmp_path / "fast.md", tmp_path / "engine.md"
    fast = run_plan([*argv, "--concurrency", "5", "-o", str(mine)])
    assert fast is not None and fast[0] == ""
    assert fast[1][-1] == f"wrote {mine}"
    rc, out, err = engine_alone([*argv, "--concurrency", "5", "--output", str(theirs)])
    assert (rc, out) == (0, "") and err.endswith(f"wrote {theirs}\n")
    assert mine.read_bytes() == theirs.read_bytes()
    assert mine.read_text().startswith("# llama-3.2-1b on 2 × h100-sxm: plans")
    for refused in (tmp_path / "no-such-folder" / "x.md", Path(BASE[1])):
        assert run_plan([*argv, "-o", str(refused)]) is None
        rc, _, err = captured(shardcost_main, [*argv, "-o", str(refused)])
        assert rc == 2 and err.splitlines()[-1].startswith("shardcost: error:"), err
    written = sorted(p.name for p in tmp_path.iterdir() if p.name != "cache")
    assert written == ["engine.md", "fast.md", "stored.md"]  # no temporary file left


def test_an_edited_config_or_a_damaged_entry_is_not_answered(tmp_path: Path) -> None:
    config = tmp_path / "model.json"
    config.write_bytes((CONFIGS / "llama-3.2-1b.json").read_bytes())
    argv = ["plan", str(config), "--chips", "2", "--hardware", "h100-sxm", "--format", "json"]
    assert captured(engine, argv)[0] == 0
    assert run_plan(argv) is not None
    key = _key(argv)
    entry = json.loads(cache.read(KIND, key, ".json") or "")
    for damage in (
        lambda e: e.pop("functions"),
        lambda e: e.update(format=0),
        lambda e: e["placements"].clear(),  # a plan the engine did not place: not guessed
        lambda e: e.update(said={}),  # collectives it did not evaluate
    ):
        damaged = json.loads(json.dumps(entry))
        damage(damaged)
        cache.write(KIND, key, json.dumps(damaged), ".json")
        assert run_plan(argv) is None
        rc, out, _ = captured(shardcost_main, argv)  # the engine answers, stores again
        # 2 chips: single, pp=2, cp=2 under each of 4 layouts, tp=2: 7 plans
        assert rc == 0 and json.loads(out)["tried"] == 7
        assert run_plan(argv) is not None
    config.write_text(
        config.read_text().replace('"num_hidden_layers": 16', '"num_hidden_layers": 15')
    )
    assert run_plan(argv) is None  # other bytes: another key


def test_a_row_the_engine_refuses_is_left_to_it() -> None:
    """Arrays go through the stored blocked programs only where every row is a valid
    configuration: a past length of 0 makes the stored function unsure (the engine says
    why), and so does a chip figure the engine refuses."""
    argv = [*BASE, "--format", "json"]
    assert captured(engine, argv)[0] == 0
    entry = json.loads(cache.read(KIND, _key(argv), ".json") or "")
    name = next(n for n in entry["functions"] if n.startswith("attention_tp_decode"))
    function = StoredFunction(entry["functions"][name], _helpers(entry))
    kwargs = dict(entry["kwargs"][_kwargs_of(entry, name)])
    kwargs |= {"batch_size": 1}
    good = function.function(**kwargs, past_seq_len=np.array([5, 6]))
    assert list(good["kv_cache_per_chip"]) == [
        # 2 (K and V) · 5 or 6 positions · 8 KV heads / 2 ranks · 64 head_dim · 2 bytes
        2 * 5 * 4 * 64 * 2,
        2 * 6 * 4 * 64 * 2,
    ]
    with pytest.raises(Unsure):
        function.function(**kwargs, past_seq_len=np.array([0, 6]))
    with pytest.raises(Unsure):
        function.function(**(kwargs | {"memory_efficiency": 1.5}), past_seq_len=np.array([5, 6]))


def _key(argv: list[str]) -> str:
    """The key of the entry that answers ``argv``."""
    args = _parse(argv)
    assert args is not None
    config = Path(args["config"])
    return plan_key(str(config), hashlib.sha256(config.read_bytes()).hexdigest(), args)


def _kwargs_of(entry: dict, function: str) -> int:
    for piece in entry["pieces"]:
        if piece[0] == "call" and piece[1] == function:
            return int(piece[2])
    raise AssertionError(function)


@pytest.mark.parametrize("algorithm", ["ring", "tree"])
@pytest.mark.parametrize("bytes_mode", ["wire", "payload"])
def test_a_stage_send_is_timed_as_the_collective_rules_time_it(
    algorithm: str, bytes_mode: str
) -> None:
    hw = CATALOG["h100-sxm"]
    sends = chip(hw, {"collective_algorithm": algorithm, "collective_bytes": bytes_mode})
    for payload in (1, 4096, 16_777_216, 3 * 10**12 + 7):
        want = collective_time_ms(
            "send-recv", 2, payload, hw, algorithm=algorithm, bytes_mode=bytes_mode
        )
        assert sends.send_ms(payload) == want
    assert sends.send_ms(0) == 0.0
    # one latency step of 1 µs at least, and 1 byte over 450 GB/s · η: exact fractions
    assert isinstance(sends.send_fixed_ms, Fraction)


SMALL = ["plan", str(CONFIGS / "llama-3.2-1b.json"), "--chips", "4", "--hardware", "h100-sxm"]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(
    prompt=st.integers(1, 5000),
    output=st.integers(1, 300),
    concurrency=st.integers(1, 200),
    reserve=st.sampled_from(["0", "0.1", "0.95", "1/3"]),
    tpot=st.one_of(st.none(), st.sampled_from(["0.5", "2", "40"])),
    fmt=st.sampled_from(["table", "json", "markdown"]),
)
def test_any_workload_is_answered_as_the_engine_does(
    prompt: int, output: int, concurrency: int, reserve: str, tpot: str | None, fmt: str
) -> None:
    """Random workloads, reserves and limits (plans that fit or not, replicas served
    unevenly, one decode step or none) against one stored search: the entry's answer is
    the engine's, or, where the engine refuses the call, there is none."""
    if run_plan([*SMALL, "--format", "json"]) is None:
        assert captured(engine, [*SMALL, "--format", "json"])[0] == 0  # stores the entry
    argv = [*SMALL, "--prompt", str(prompt), "--output-tokens", str(output)]
    argv += ["--concurrency", str(concurrency), "--reserve", reserve, "--format", fmt]
    argv += [] if tpot is None else ["--max-tpot-ms", tpot]
    rc, out, err = engine_alone(argv)
    fast = run_plan(argv)
    if rc != 0:
        assert fast is None, (argv, err)
        return
    assert fast is not None, argv
    assert _timeless(fast[0], argv) == _timeless(out, argv), argv
