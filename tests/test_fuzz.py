"""Property tests over what users type: command lines, config.json files and hardware
TOML. Whatever the input, the command ends with status 0, 1 or 2, an error is one line
(no traceback, no "internal error"), and it ends quickly.

Bounded for CI: a few hundred examples in all, each command in-process.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardcost.cli import main

SECONDS = 20.0  # no input may take longer than this (issue 15: 41 ran past 30 s)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)

COMMANDS = ["metrics", "compare", "report", "sweep", "model", "plan", "kv-tier", "verify"]
LAYOUTS = ["tp", "single", "cp-kv-sharded", "tp-cp", "ring", "ep", "sp", "nope", ""]
KEYS = [
    "hidden_size",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "batch_size",
    "seq_len",
    "past_seq_len",
    "tensor_parallel",
    "context_parallel",
    "expert_parallel",
    "bytes_per_elem",
    "kv_cache_dtype",
    "attention_window",
    "collective_algorithm",
    "peak_tflops",
    "memory_bandwidth_gb_s",
    "supports_overlap",
    "bogus",
]
VALUES = st.one_of(
    st.sampled_from(
        ["0", "1", "2", "3", "4", "8", "-1", "1e-400", "1e999999999", "nan", "fp8", "true"]
    ),
    st.sampled_from(["9" * 5000, "1" * 45, "١", "1_000", "4096,64,1", "a\nb", "\x1b[31m"]),
    st.integers(min_value=-5, max_value=2**70).map(str),
    st.text(max_size=12),
)
OPTIONS = st.sampled_from(
    [
        [],
        ["--phase", "decode"],
        ["--phase", "both"],
        ["--hardware", "h100-sxm"],
        ["--hardware", "nope"],
        ["--format", "json"],
        ["--format", "markdown"],
        ["--layer", "moe"],
        ["--layer", "ffn"],
        ["--chips", "8"],
    ]
)


def _run(argv: list[str]) -> tuple[int, str, float]:
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, err.getvalue(), time.perf_counter() - start


def _check(argv: list[str]) -> None:
    code, err, seconds = _run(argv)
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    errors = [line for line in err.splitlines() if line.startswith("shardcost: error")]
    if code == 2:
        assert len(errors) == 1, (argv, err)
        assert "\x1b" not in err, (argv, err)
    assert seconds < SECONDS, (argv, seconds)


@FUZZ
@given(
    command=st.sampled_from(COMMANDS[:4]),
    layout=st.sampled_from(LAYOUTS),
    options=OPTIONS,
    pairs=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=4),
)
def test_layout_commands_never_crash(
    command: str, layout: str, options: list[str], pairs: list[tuple[str, str]], tmp_path: Path
) -> None:
    argv = [command, *([layout] if layout else []), *options, *(f"{k}={v}" for k, v in pairs)]
    if command == "report":
        argv += ["-o", str(tmp_path / "r.md")]
    if command == "sweep":
        argv += ["-o", str(tmp_path / "s.csv")]
    _check(argv)


CONFIG_VALUES = st.one_of(
    st.integers(min_value=-3, max_value=2**40),
    st.sampled_from([0, 1, 2, 3, 7, 64, 4096, 10**30, True, None, "x", 1.5, [], {}, [1, 2]]),
)
BASE = {
    "model_type": "llama",
    "hidden_size": 256,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "num_hidden_layers": 2,
    "intermediate_size": 512,
    "vocab_size": 1000,
}


@FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from(
            [
                *BASE,
                "architectures",
                "torch_dtype",
                "head_dim",
                "tie_word_embeddings",
                "sliding_window",
                "num_local_experts",
                "num_experts_per_tok",
                "layer_types",
                "quantization_config",
                "max_position_embeddings",
            ]
        ),
        CONFIG_VALUES,
        max_size=4,
    ),
    command=st.sampled_from(["model", "kv-tier", "plan"]),
)
def test_config_files_never_crash(changes: dict[str, object], command: str, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**BASE, **changes}))
    argv = [command, str(config), "--hardware", "h100-sxm"]
    if command == "plan":
        argv += ["--chips", "4"]
    if command == "kv-tier":
        argv += ["past_seq_len=4096,64"]
    _check(argv)


HW_VALUES = st.one_of(
    st.sampled_from(['"1e-400"', "1e-400", '"1e999999999"', "0", "-1", '"nan"', "inf", '"x"']),
    st.sampled_from(["true", "[1]", "{a = 1}", '"١"', "1_000", "989.4", "1e308"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@FUZZ
@given(
    field=st.sampled_from(
        [
            "peak_tflops",
            "memory_bandwidth_gb_s",
            "interconnect_bandwidth_gb_s",
            "interconnect_latency_us",
            "compute_efficiency",
            "memory_capacity_gb",
            "supports_overlap",
            "bogus",
        ]
    ),
    raw=HW_VALUES,
)
def test_hardware_files_never_crash(field: str, raw: str, tmp_path: Path) -> None:
    values = {
        "peak_tflops": "989",
        "memory_bandwidth_gb_s": "3350",
        "interconnect_bandwidth_gb_s": "450",
        "interconnect_latency_us": "1",
    }
    values[field] = raw
    lines = ["[[accelerator]]", 'name = "x"', *(f"{k} = {v}" for k, v in values.items())]
    path = tmp_path / "hw.toml"
    path.write_text("\n".join(lines) + "\n")
    _check(["metrics", "tp", "--hardware", str(path)])


@pytest.mark.parametrize(
    "argv",
    [
        ["metrics", "tp", "seq_len=" + "9" * 5000],
        ["metrics", "tp", "peak_tflops=1e-400", "memory_bandwidth_gb_s=1"],
        ["metrics", "tp", "--hardware", "h100-sxm", "peak_tflops=1e999999999"],
        ["metrics", "tp", "seq_len=a\nb"],
        ["metrics", "tp\x1b[31m"],
        ["sweep", "tp", "batch_size=1:10000000000"],
        ["sweep", "tp", f"seq_len=1:{2**64}"],
        ["metrics", "--layer", "lm_head", "sp", "batch_size=2", "context_parallel=4"],
    ],
)
def test_the_reported_inputs(argv: list[str]) -> None:
    _check(argv)
