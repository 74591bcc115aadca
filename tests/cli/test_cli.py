"""The command line: round trips with the API, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import shardcost
from shardcost.cli import main
from shardcost.formulas import all_layouts
from tests.helpers import MHA3 as MHA3_KW
from tests.helpers import MHA3_ARGS, run

# seed 001's MHA-3, as `shardcost metrics tp --phase decode` takes it
MHA3 = [*MHA3_ARGS, "kv_includes_new_token=true"]
TP_DECODE = ("metrics", "tp", "--phase", "decode")


def test_metrics_json_equals_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *TP_DECODE, *MHA3, "--format", "json")
    assert code == 0
    api = shardcost.metrics("tp", "decode", **MHA3_KW, kv_includes_new_token=True)
    assert json.loads(out) == api


def test_options_and_assignments_may_interleave(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "metrics", "tp", *MHA3[:3], "--phase", "decode", *MHA3[3:], "--format", "json"
    )
    assert code == 0
    assert json.loads(out)["metrics"]["flops_per_chip"] == 4_458_496


def test_metrics_table_and_markdown_show_the_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("table", "markdown"):
        code, out, _ = run(
            capsys,
            *TP_DECODE,
            *MHA3,
            "--format",
            fmt,
            "--hardware",
            "seed-test",
        )
        assert code == 0
        assert "4,458,496" in out and "17,833,984" in out and "output_allreduce" in out
        assert "wall_clock_time_ms" in out


def test_ragged_lengths_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["metrics", "single", "--phase", "decode", "past_seq_len=4096,64,64"]
    code, out, _ = run(capsys, *argv, "--format", "json")
    assert code == 0
    got = json.loads(out)
    assert got == shardcost.metrics("single", "decode", past_seq_len=[4096, 64, 64])
    assert got["params"]["batch_size"] == 3
    # KV: 2·b·h·dh = 16,384 bytes per cached position x (4096 + 64 + 64) = 69,206,016
    assert got["metrics"]["kv_cache_per_chip"] == 69_206_016
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "ragged batch: 3 requests, mean past length 1,408, longest 4,096 (max/mean 2.909)" in out
    assert "69,206,016" in out and "201,326,592" in out  # and 16,384 x 3 x 4096 at the longest


def test_timing_json_matches_seed_000(capsys: pytest.CaptureFixture[str]) -> None:
    # ATT-TIME-3: wall = max(41,947,136/10^12, (33,554,432 + 8,388,608)/10^9) + 0.00108192,
    # under seed 000's communication (collective_bytes=payload): 1 µs + 8,192 B / 100 GB/s
    code, out, _ = run(
        capsys,
        *TP_DECODE,
        "batch_size=1",
        "past_seq_len=2048",
        "tensor_parallel=4",
        "collective_bytes=payload",
        "--hardware",
        "seed-test",
        "--format",
        "json",
    )
    assert code == 0
    assert json.loads(out)["timing"]["wall_clock_time_ms"] == pytest.approx(0.04302496, rel=1e-12)


def test_no_arguments_compares_every_layout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 0
    for name in ("single", "tp", "cp-allgather", "cp-kv-sharded", "tp-cp"):
        assert name in out
    assert "prefill" in out and "decode" in out


def test_compare_json_is_a_list_of_metric_objects(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compare", "--phase", "prefill", "--format", "json", "seq_len=512")
    assert code == 0
    objs = json.loads(out)
    assert [o["layout"] for o in objs] == [lay.name for lay in all_layouts("attention")]
    assert all(o["params"]["seq_len"] == 512 for o in objs)


def test_compare_rejects_a_key_no_layout_reads(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "compare", "--phase", "prefill", "past_seq_len=5")
    assert code == 2
    assert "past_seq_len applies to no attention layout in prefill" in err


def test_layouts_and_hardware_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "layouts", "--format", "json")
    assert code == 0
    assert [x["name"] for x in json.loads(out)][:2] == ["single", "tp"]
    code, out, _ = run(capsys, "hardware", "--format", "json")
    assert code == 0
    catalog = {x["name"]: x for x in json.loads(out)}
    assert catalog["seed-test"]["peak_tflops"] == 1000.0


def test_spec_list_and_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "spec", "list")
    assert code == 0 and "CP-3a" in out and "ATT-TIME-5" in out
    code, out, _ = run(capsys, "spec", "check")
    assert code == 0
    assert "14 cases" in out and "every one matches its seed" in out


def test_spec_check_exits_1_on_a_mismatch(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shardcost.formulas import cases

    bad = cases.SpecCase(
        **{**cases.SPEC_CASES[0].__dict__, "metrics": {"flops_per_chip": 2_281_701_377}}
    )
    monkeypatch.setattr(cases, "BY_NAME", {**cases.BY_NAME, "MHA-1": bad})
    code, out, _ = run(capsys, "spec", "check", "MHA-1")
    assert code == 1
    assert "mismatches" in out and "2281701377" in out and "2281701376" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["metrics", "nope"], "layout 'nope' is unknown"),
        (["metrics", "tp", "mystery=1"], "unknown key 'mystery'"),
        (["metrics", "tp", "decode_projections=qk", "--phase", "decode"], "takes qkvo | qo | o"),
        (["metrics", "tp", "hidden_size=4096.5"], "hidden_size='4096.5' is not a whole number"),
        (["metrics", "tp", "batch_size=0"], "batch_size=0 is not allowed"),
        (["metrics", "tp", "batch_size=-2"], "batch_size=-2 is not allowed"),
        (["metrics", "tp", "num_heads=30", "head_dim=128"], "num_heads=30 is not divisible"),
        (
            ["metrics", "tp", "hidden_size=1000", "num_heads=16", "head_dim=64"],
            "hidden_size must equal num_heads × head_dim",
        ),
        (["metrics", "tp", "--phase", "bogus"], "invalid choice: 'bogus'"),
        (["metrics", "tp", "banana"], "expected KEY=VALUE, got 'banana'"),
        (["metrics", "tp", "batch_size=1", "batch_size=2"], "batch_size is given twice"),
        (["spec", "check", "NOPE"], "spec case 'NOPE' is unknown"),
        (
            ["metrics", "single", "--phase", "decode", "past_seq_len=64,64", "batch_size=3"],
            "batch_size=3 but past_seq_len gives 2 lengths",
        ),
        (["metrics", "single", "--phase", "decode", "past_seq_len=64,,64"], "past_seq_len=''"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:  # argparse's own errors exit from inside
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("shardcost: error: ")


def test_no_traceback_from_the_installed_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "shardcost", "metrics", "tp", "tensor_parallel=0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "shardcost: error: tensor_parallel=0 is not allowed; "
        "tensor_parallel takes a positive integer\n"
    )
    assert "Traceback" not in proc.stderr


def test_help_lists_every_key_from_the_notation_table(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["metrics", "--help"])
    out = capsys.readouterr().out
    for key in shardcost.formulas.KEYS:
        assert key in out


CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"


def test_model_json_equals_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(CONFIGS / "qwen2.5-7b.json")
    argv = ["model", config, "--phase", "decode", "--layout", "tp", "tensor_parallel=4"]
    code, out, _ = run(capsys, *argv, "batch_size=8", "--hardware", "h100-sxm", "--format", "json")
    assert code == 0
    api = shardcost.model_metrics(
        config, "decode", layout="tp", hardware="h100-sxm", tensor_parallel=4, batch_size=8
    )
    assert json.loads(out) == api
    assert api["parameters"]["total"] == 7_615_616_512  # by hand in tests/formulas/test_model.py


def test_model_table_names_parameters_components_and_memory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = str(CONFIGS / "llama-3.2-1b.json")
    code, out, _ = run(capsys, "model", config, "--hardware", "h100-sxm")
    assert code == 0
    assert "parameters: 1,235,814,400" in out
    assert "tied embeddings" in out
    for component in ("embedding", "attention", "ffn", "norms", "final_norm", "lm_head"):
        assert f"\n{component} " in out
    # h100-sxm: "80GB" of HBM3 is 5 stacks x 16 GiB = 80 x 2^30 = 85,899,345,920 bytes
    assert "fits in 85,899,345,920 bytes (85.90 GB, 80.00 GiB)" in out
    assert "wall_clock_time_ms" in out
    code, out, _ = run(capsys, "model", config, "--format", "markdown")
    assert code == 0 and "| component | count |" in out


def test_model_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "model", str(tmp_path / "nope.json"))
    assert code == 2
    assert (
        err
        == f"shardcost: error: {tmp_path / 'nope.json'}: no such file (give a local config.json)\n"
    )
    code, _, err = run(capsys, "model", str(CONFIGS / "llama-3.1-8b.json"), "--layout", "rung")
    assert code == 2 and err.count("\n") == 1 and "layout 'rung' is unknown" in err


def test_kv_tier_json_equals_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(CONFIGS / "llama-3.1-8b.json")
    argv = ["kv-tier", config, "--hardware", "h100-sxm", "past_seq_len=4096,64"]
    code, out, _ = run(capsys, *argv, "--format", "json")
    assert code == 0
    assert json.loads(out) == shardcost.kv_tier(config, hardware="h100-sxm", past_seq_len="4096,64")
    code, out, _ = run(capsys, *argv, "--host-memory", "pageable")
    assert code == 0
    assert "64 GB/s per direction × 0.5 (pageable) = 32 GB/s per chip" in out
    code, _, err = run(capsys, "kv-tier", config, "--hardware", "tpu-v5e")
    assert code == 2 and "host_link_bandwidth_gb_s" in err and err.count("\n") == 1
