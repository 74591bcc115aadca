"""``metrics --format json`` (engine and cached program alike) validates against the
schema the README documents: chips, every collective, notes and units included."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import jsonschema
import pytest

from shardcost.cli import main
from shardcost.numeric import run_metrics

SCHEMA = json.loads((Path(__file__).with_name("metrics.schema.json")).read_text())


def _json(argv: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main([*argv, "--format", "json"]) == 0
    return json.loads(out.getvalue())


@pytest.mark.parametrize(
    "argv",
    [
        ["metrics", "tp"],
        ["metrics", "tp-cp", "--phase", "decode", "--hardware", "h100-sxm"],
        ["metrics", "cp-kv-sharded", "--phase", "decode", "past_seq_len=4096,64,7"],
        ["metrics", "ep-tp", "--layer", "moe", "--phase", "decode", "--hardware", "b200"],
        ["metrics", "sp", "--layer", "lm_head", "batch_size=2", "context_parallel=4"],
    ],
)
def test_metrics_json_validates(argv: list[str]) -> None:
    found = _json(argv)
    jsonschema.validate(found, SCHEMA)
    assert found["chips"] >= 1
    # the per-collective bytes add up to the communication metric
    total = sum(c["bytes_per_chip"] for c in found["collectives"])
    assert total == found["metrics"]["communication_bytes"]
    fast = run_metrics([*argv, "--format", "json"])  # the cached program's, where it answers
    if fast is not None:
        assert json.loads(fast[0]) == found


def test_the_schema_refuses_what_it_should() -> None:
    good = _json(["metrics", "tp"])
    for broken in (
        {k: v for k, v in good.items() if k != "chips"},
        {**good, "metrics": {**good["metrics"], "flops_total": 1.5}},
        {**good, "collectives": [{"name": "x"}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)


def _schema(name: str) -> dict:
    return json.loads((Path(__file__).with_name(f"{name}.schema.json")).read_text())


LLAMA_8B = str(Path(__file__).parents[2] / "examples" / "configs" / "llama-3.1-8b.json")
DEEPSEEK = str(Path(__file__).parents[2] / "examples" / "configs" / "deepseek-v3.json")


@pytest.mark.parametrize(
    ("schema", "argv"),
    [
        ("model", ["model", LLAMA_8B]),
        ("model", ["model", LLAMA_8B, "--layout", "tp", "tensor_parallel=8", "--hardware", "b200"]),
        ("kv-tier", ["kv-tier", LLAMA_8B, "--hardware", "h100-sxm", "past_seq_len=4096,64"]),
        ("plan", ["plan", LLAMA_8B, "--chips", "8", "--hardware", "h100-sxm"]),
        ("plan", ["model", LLAMA_8B, "--plan", "tp=4,pp=2", "--hardware", "h100-sxm"]),
    ],
)
def test_every_command_json_validates(schema: str, argv: list[str]) -> None:
    found = _json(argv)
    jsonschema.validate(found, _schema(schema))


def test_compare_json_is_metrics_objects() -> None:
    for entry in _json(["compare", "tp", "cp-kv-sharded", "--phase", "decode"]):
        jsonschema.validate(entry, SCHEMA)


def test_plan_collectives_by_hand() -> None:
    """llama-3.1-8b (d = 4096, 32 layers, vocabulary 128,256, bf16) on tp=4, pp=2, one
    request of a 2048-token prompt and 256 output tokens."""
    found = _json(
        ["model", LLAMA_8B, "--plan", "tp=4,pp=2", "--hardware", "h100-sxm", "--prompt", "2048"]
    )
    said = {(c["phase"], c["stage"], c["component"], c["name"]): c for c in found["collectives"]}
    # prefill: each block's two all-reduces carry the microbatch's hidden state,
    # 1 · 2048 · 4096 · 2 bytes = 16,777,216; 16 layers on each of the two stages
    for stage in (0, 1):
        for part in ("attention", "ffn"):
            c = said[("prefill", stage, part, "output_allreduce")]
            assert (c["bytes_per_chip"], c["count"], c["group"]) == (16_777_216, 16, "tp")
    # decode: one token's, 4096 · 2 = 8,192
    assert said[("decode", 1, "ffn", "output_allreduce")]["bytes_per_chip"] == 8_192
    # the embedding on the first stage only, the LM head (one position's logits, gathered:
    # 128,256 · 2 = 256,512) on the last
    assert ("prefill", 1, "embedding", "output_allreduce") not in said
    assert said[("prefill", 1, "lm_head", "logits_allgather")]["bytes_per_chip"] == 256_512
    # the stage-to-stage send: the hidden state once across the one boundary
    send = said[("prefill", None, "stage_send", "stage_send")]
    assert (send["bytes_per_chip"], send["count"], send["kind"]) == (16_777_216, 1, "send-recv")
    assert said[("decode", None, "stage_send", "stage_send")]["bytes_per_chip"] == 8_192
    assert found["units"]["communication"] == "payload bytes per chip"


def test_plan_collectives_of_experts_by_hand() -> None:
    """DeepSeek-V3 (d = 7168, 8 of 256 experts per token) on tp=8, ep=8: a 1024-token prompt
    of one request dispatches each token to its 8 experts over 8 ranks."""
    found = _json(
        [
            "model",
            DEEPSEEK,
            "--plan",
            "tp=8,ep=8",
            "--hardware",
            "h200",
            "--prompt",
            "1024",
            "--output-tokens",
            "2",
        ]
    )
    said = {(c["phase"], c["component"], c["name"]): c for c in found["collectives"]}
    dispatch = said[("prefill", "moe [mla + MoE]", "dispatch_alltoall")]
    # 1024 tokens × 8 experts × 7168 × 2 bytes, spread over 8 ranks: 14,680,064
    assert (dispatch["kind"], dispatch["bytes_per_chip"]) == ("all-to-all", 14_680_064)
    assert dispatch["count"] == 58  # 61 layers, the first 3 dense
    assert ("decode", "moe [mla + MoE]", "combine_alltoall") in said
    assert {c["phase"] for c in found["collectives"]} == {"prefill", "decode"}


def test_kv_tier_collectives_by_hand() -> None:
    """llama-3.1-8b on tp=2, a decode batch of two requests: each all-reduce carries two
    tokens' hidden states, 2 · 4096 · 2 = 16,384 bytes; the LM head gathers two rows of
    logits, 2 · 128,256 · 2 = 513,024."""
    found = _json(
        [
            "kv-tier",
            LLAMA_8B,
            "--hardware",
            "h100-sxm",
            "--layout",
            "tp",
            "tensor_parallel=2",
            "past_seq_len=4096,64",
        ]
    )
    said = {(c["component"], c["name"]): c for c in found["collectives"]}
    assert said[("attention", "output_allreduce")]["bytes_per_chip"] == 16_384
    assert said[("attention", "output_allreduce")]["count"] == 32
    assert said[("lm_head", "logits_allgather")]["bytes_per_chip"] == 513_024
    assert found["units"]["timing"] == "milliseconds"


@pytest.mark.parametrize("config", [LLAMA_8B, DEEPSEEK])
def test_plan_collectives_match_the_model_command(config: str) -> None:
    """One stage, one request: a plan's collectives are the `model` command's, component by
    component, at the prompt's length (prefill) and the last step's past length (decode)."""
    workload = ("--prompt", "512", "--output-tokens", "9")
    plan = _json(["model", config, "--plan", "tp=8", "--hardware", "h200", *workload])
    for phase, length in (("prefill", "seq_len=512"), ("decode", "past_seq_len=519")):
        model = _json(
            ["model", config, "--layout", "tp", "tensor_parallel=8", "--phase", phase, length]
        )
        expected = sorted(
            (row["name"], c["name"], row["count"], c["bytes_per_chip"])
            for row in model["components"]
            for c in row["collectives"]
        )
        found = sorted(
            (c["component"], c["name"], c["count"], c["bytes_per_chip"])
            for c in plan["collectives"]
            if c["phase"] == phase
        )
        assert found == expected


def test_an_interleaved_pipeline_sends_across_every_chunk_boundary() -> None:
    """Two stages of two chunks each: a microbatch crosses v·pp − 1 = 2·2 − 1 = 3
    boundaries, each carrying its hidden state (prefill 1 · 2048 · 4096 · 2 bytes)."""
    plan = "tp=4,pp=2,schedule=interleaved,chunks=2"
    found = _json(["model", LLAMA_8B, "--plan", plan, "--hardware", "h100-sxm"])
    sends = [c for c in found["collectives"] if c["name"] == "stage_send"]
    assert [(c["phase"], c["count"], c["bytes_per_chip"]) for c in sends] == [
        ("prefill", 3, 16_777_216),
        ("decode", 3, 8_192),
    ]


def test_measurement_commands_say_their_units(tmp_path: Path) -> None:
    csv = str(Path(__file__).parents[2] / "examples" / "seed-002-a100.csv")
    found = _json(["validate", csv, "--hardware", "a100-sxm-80gb"])
    assert found["units"]["time"].startswith("microseconds")
    # seed 002's first row: measured 25.21 µs; the relative error is predicted / 25.21 − 1
    first = found["rows"][0]
    assert first["measured_us"] == 25.21
    assert first["error"] == pytest.approx(first["predicted_us"] / 25.21 - 1)
    out = str(tmp_path / "fitted.toml")
    fitted = _json(["calibrate", csv, "--hardware", "a100-sxm-80gb", "-o", out])
    assert fitted["units"]["latency_us"] == "microseconds"
