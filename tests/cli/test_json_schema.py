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
