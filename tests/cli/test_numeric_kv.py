"""``shardcost kv-tier`` from a cached entry (``shardcost.numeric_kv``) and the ragged
programs under it (``codegen.numeric.ragged_source``): the engine's answer, byte for byte,
at other lengths and counts than those it was stored at; or no answer at all (then the
engine answers); and no SymPy on the way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shardcost import cache
from shardcost.cli import main as engine
from shardcost.codegen.numeric import Unsupported, ragged_source
from shardcost.entry import main as shardcost_main
from shardcost.formulas import evaluate, resolve_inputs
from shardcost.formulas.model import model_metrics
from shardcost.numeric_kv import KIND, _parse, kv_key, run_kv
from shardcost.numeric_model import _entry, _load_decoupled, answer, model_json
from tests.helpers import captured, engine_alone, fresh_process

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "examples" / "configs"

pytestmark = pytest.mark.usefixtures("fast_path_cache")  # tests/cli/conftest.py


def _agrees(argv: list[str]) -> None:
    rc, out, err = engine_alone(argv)
    assert rc == 0, err
    fast = run_kv(argv)
    assert fast is not None, argv
    assert fast == (out, []), argv


# Each case: the command, the counts of the call that stores the entry, and other counts
# (lengths, degrees, the prefill's length) the entry answers
CASES = [
    (
        [str(CONFIGS / "llama-3.1-8b.json"), "--hardware", "h100-sxm"],
        ["past_seq_len=4096,64"],
        [["past_seq_len=5,9000,5,33"], ["past_seq_len=100,200", "seq_len=1000"]],
    ),
    (
        # sliding and full attention layers, MoE; the sliding cache caps at its window
        [str(CONFIGS / "gpt-oss-20b.json"), "--hardware", "h200"],
        ["past_seq_len=100,9000"],
        [["past_seq_len=5000,64,64,129"]],
    ),
    (
        [str(CONFIGS / "deepseek-v3.json"), "--hardware", "h200", "--layout", "tp"],
        ["tensor_parallel=8", "past_seq_len=100,9000"],
        [["tensor_parallel=4", "past_seq_len=7,8,9000", "seq_len=512"]],
    ),
    (
        # uneven splits of each request's cache over 3 ranks: the notes say how many
        [
            str(CONFIGS / "llama-3.2-1b.json"),
            "--hardware",
            "a100-sxm-80gb",
            "--host-memory",
            "pageable",
            "--layout",
            "cp-kv-sharded",
            "kv_cache_dtype=fp8",
        ],
        ["context_parallel=4", "past_seq_len=100,9000"],
        [["context_parallel=3", "past_seq_len=1001,2002,5,1001", "batch_size=4"]],
    ),
]


@pytest.mark.parametrize(
    ("command", "stored", "others"), CASES, ids=[Path(c[0][0]).stem for c in CASES]
)
def test_other_lengths_are_answered_as_the_engine_does(
    command: list[str], stored: list[str], others: list[list[str]]
) -> None:
    assert run_kv(["kv-tier", *command, *stored]) is None  # nothing stored yet
    rc, _, err = captured(engine, ["kv-tier", *command, *stored])
    assert rc == 0, err
    for counts in others:
        for fmt in ("table", "json", "markdown"):
            _agrees(["kv-tier", *command, *counts, "--format", fmt])


def test_no_sympy_in_a_warm_run(tmp_path: Path) -> None:
    base = ["kv-tier", str(CONFIGS / "llama-3.2-1b.json"), "--hardware", "h100-sxm"]
    fresh_process(tmp_path / "cache", [*base, "past_seq_len=8,9"])  # the engine: stores
    argv = [*base, "past_seq_len=4096,64,1000", "--format", "json"]
    warm = fresh_process(tmp_path / "cache", argv)
    assert warm.stderr.decode().splitlines()[-1] == "0 []"
    cold = fresh_process(tmp_path / "cache", argv, SHARDCOST_NO_CACHE="1")
    assert "sympy" in cold.stderr.decode().splitlines()[-1]
    assert warm.stdout == cold.stdout
    found = json.loads(warm.stdout)
    # llama-3.2-1b: 16 layers, 8 KV heads of 64, 2 bytes; K and V: 2·16·8·64·2 = 32,768
    # bytes per past position, on one chip
    assert [r["kv_bytes_per_chip"] for r in found["requests"]] == [
        4096 * 32_768,
        64 * 32_768,
        1000 * 32_768,
    ]


BASE = ["kv-tier", str(CONFIGS / "llama-3.2-1b.json"), "--hardware", "h100-sxm"]


@pytest.mark.parametrize(
    "argv",
    [
        [*BASE, "past_seq_len=4096"],  # one length: no ragged batch
        [*BASE],
        [*BASE, "past_seq_len=064,9"],  # the engine reads it; the pattern does not
        [*BASE, "past_seq_len=8,9", "bytes_per_elem=1"],  # the peak's compute type moves
        [*BASE, "past_seq_len=8,9", "kv_cache_dtype=fp8"],  # another entry
        [*BASE, "past_seq_len=8,9", "--layout", "tp"],
        [*BASE, "past_seq_len=8,9", "--host-memory", "pageable"],
        [*BASE[:-1], "hw.toml", "past_seq_len=8,9"],
        [*BASE, "past_seq_len=8,9", "-o", "a.md", "--output", "b.md"],
        [*BASE, "past_seq_len=8,9", "batch_size=3"],  # the engine refuses it
    ],
)
def test_what_the_entry_does_not_answer_goes_to_the_engine(argv: list[str]) -> None:
    assert captured(engine, [*BASE, "past_seq_len=8,9"])[0] == 0
    assert run_kv([*BASE, "past_seq_len=10,11,12"]) is not None
    assert run_kv(argv) is None


def test_a_layout_whose_totals_are_not_sums_over_requests_is_left_to_the_engine() -> None:
    """Ulysses' totals over every chip are added up rank class by rank class: no ragged
    program is written, so nothing is stored and the engine keeps answering."""
    argv = [*BASE, "--layout", "ulysses", "context_parallel=2", "past_seq_len=8,9"]
    assert captured(shardcost_main, argv)[0] == 0
    assert run_kv(argv) is None
    inputs = resolve_inputs(
        "ulysses", "decode", params={"context_parallel": 2, "past_seq_len": (8, 9)}
    )
    with pytest.raises(Unsupported):
        ragged_source(evaluate(inputs))


def test_an_output_file_and_a_damaged_entry(tmp_path: Path) -> None:
    argv = [*BASE, "past_seq_len=8,9"]
    assert captured(engine, argv)[0] == 0
    mine, theirs = tmp_path / "fast.md", tmp_path / "engine.md"
    fast = run_kv([*argv, "--format", "markdown", "-o", str(mine)])
    assert fast == ("", [f"wrote {mine}"])
    assert engine_alone([*argv, "--format", "markdown", "-o", str(theirs)])[0] == 0
    assert mine.read_bytes() == theirs.read_bytes()
    args = _parse(argv)
    assert args is not None
    import hashlib

    config = Path(args["config"])
    key = kv_key(str(config), hashlib.sha256(config.read_bytes()).hexdigest(), args)
    entry = json.loads(cache.read(KIND, key, ".json") or "")
    for damage in (lambda e: e.pop("mixers"), lambda e: e.update(format=0)):
        damaged = json.loads(json.dumps(entry))
        damage(damaged)
        cache.write(KIND, key, json.dumps(damaged), ".json")
        assert run_kv(argv) is None
        assert captured(shardcost_main, argv)[0] == 0  # the engine answers, stores again
        assert run_kv(argv) is not None


def test_a_ragged_program_adds_requests_up_as_the_engine_does() -> None:
    """One layer: tp decode over (4096, 63, 1001, 63) at tp=4, its program run at other
    lengths against the engine, and its KV bytes by hand."""
    params = {"tensor_parallel": 4, "past_seq_len": (4096, 63, 1001, 63)}
    result = evaluate(resolve_inputs("tp", "decode", params=params, hardware="h100-sxm"))
    run = _load_decoupled(ragged_source(result))
    for lengths in ((4096, 63, 1001, 63), (5, 5, 5), (1, 2, 3, 4, 5, 6, 7)):
        want = evaluate(
            resolve_inputs(
                "tp",
                "decode",
                params={"tensor_parallel": 4, "past_seq_len": lengths},
                hardware="h100-sxm",
            )
        ).to_dict()
        _, out = run({"tensor_parallel": 4}, lengths)
        for key in ("metrics", "collectives", "notes", "chips", "timing"):
            assert json.loads(json.dumps(out[key])) == want[key], (lengths, key)
    _, out = run({"tensor_parallel": 4}, (10, 20))
    # 32 KV heads of 128 over 4 ranks: 8 each; K and V at 2 bytes: 2·8·128·2 = 4,096 bytes
    # a position; 10 + 20 positions
    assert out["metrics"]["kv_cache_per_chip"] == 30 * 4_096
    assert run.__globals__["alone"]({"tensor_parallel": 4}, 10)[0] == 10 * 4_096


@pytest.mark.parametrize(
    ("config", "layout", "params"),
    [
        ("gpt-oss-20b", "single", {}),
        ("deepseek-v3", "tp", {"tensor_parallel": 8}),
        ("mistral-7b", "tp-cp", {"tensor_parallel": 2, "context_parallel": 2}),
    ],
)
def test_a_ragged_model_entry_answers_other_lengths(
    config: str, layout: str, params: dict[str, int]
) -> None:
    path = CONFIGS / f"{config}.json"
    text = {k: str(v) for k, v in params.items()}
    result = model_metrics(
        path, "decode", layout=layout, hardware="h200", params={**text, "past_seq_len": "9,99"}
    )
    entry = json.loads(
        json.dumps(
            _entry(
                result,
                "h200",
                {**text, "past_seq_len": "9,99"},
                {**params, "past_seq_len": (9, 99)},
            )
        )
    )
    for lengths in ((4096, 64, 1000), (17, 2048, 17)):
        want = model_metrics(
            path,
            "decode",
            layout=layout,
            hardware="h200",
            params={**text, "past_seq_len": ",".join(map(str, lengths))},
        )
        view = answer(entry, {**params, "past_seq_len": lengths})
        assert view is not None
        assert json.dumps(model_json(view)) == json.dumps(want.to_dict())
    assert answer(entry, {**params, "past_seq_len": 4096}) is None  # one length: no


def test_a_model_of_a_ragged_batch_is_answered_from_its_entry() -> None:
    """``shardcost model ... past_seq_len=L1,L2,...``: an entry for ragged batches
    (``numeric_model.split_counts``) answers other lengths in every format; a uniform
    batch has an entry of its own."""
    from shardcost.numeric_model import run_model

    base = ["model", str(CONFIGS / "llama-3.1-8b.json"), "--phase", "decode"]
    base += ["--layout", "tp", "--hardware", "h100-sxm"]
    assert captured(engine, [*base, "tensor_parallel=4", "past_seq_len=4096,64"])[0] == 0
    for counts in (["tensor_parallel=2", "past_seq_len=5,9000,5"], ["past_seq_len=1,2,3,4"]):
        for fmt in ("table", "json", "markdown"):
            argv = [*base, *counts, "--format", fmt]
            rc, out, _ = engine_alone(argv)
            assert rc == 0 and run_model(argv) == out, argv
    assert run_model([*base, "tensor_parallel=4", "past_seq_len=4096"]) is None
