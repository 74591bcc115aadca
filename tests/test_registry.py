"""Every registered layer × layout × phase through every command, read from the registry.

A layout added with one decorated function is picked up here with no edit: metrics,
report, verify, the compiled function, a sweep, the Python export, compare and (for the
model's mixer) the model composer must all take it, and agree with metrics.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import warnings
from pathlib import Path

import pytest

import shardcost
from shardcost.cli import main
from shardcost.codegen.export import export
from shardcost.formulas import all_layouts
from shardcost.formulas.model import companion, layer_of
from shardcost.formulas.registry import Role, all_layers
from shardcost.symbolic import METRICS

CASES = [(lay, str(ph)) for lay in all_layouts() for ph in lay.phases]
IDS = [f"{lay.layer}/{lay.name}/{ph}" for lay, ph in CASES]
CONFIG = Path(__file__).parent.parent / "examples" / "configs" / "llama-3.2-1b.json"


def degrees(lay) -> dict[str, int]:
    """Every parallel degree of the layout at 2: each one splits something."""
    return {dim.name: 2 for dim in lay.degrees}


def reference(lay, phase: str, key: str = "metrics") -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        return shardcost.metrics(lay.name, phase, layer=lay.layer, **degrees(lay))[key]


def extras(lay, phase: str) -> dict[str, int]:
    """What a sweep writes after the metrics: chips and each collective's payload."""
    out = {"chips": reference(lay, phase, "chips")}
    return out | {
        f"{c['name']}_bytes": c["bytes_per_chip"] for c in reference(lay, phase, "collectives")
    }


def test_every_layer_is_declared_with_a_role_and_has_layouts() -> None:
    assert {layer.name for layer in all_layers()} == {lay.layer for lay in all_layouts()}
    for role in (Role.MIXER, Role.CHANNEL_MIXER, Role.EMBEDDING, Role.HEAD):
        assert layer_of(role).role is role  # at least one of each: a model needs them


@pytest.mark.parametrize(("lay", "phase"), CASES, ids=IDS)
def test_metrics_compile_and_sweep_agree(lay, phase: str) -> None:
    want = reference(lay, phase)
    f = shardcost.compile(lay.name, phase, layer=lay.layer)
    got = f(**degrees(lay))
    assert {m: got[m] for m in METRICS} == want
    text = io.StringIO()
    values = {k: [v] for k, v in degrees(lay).items()}
    from shardcost.codegen.sweep import sweep

    sweep(lay, phase, values, text, progress=False)
    (row,) = csv.DictReader(io.StringIO(text.getvalue()))
    assert {m: int(row[m]) for m in METRICS} == want
    more = extras(lay, phase)
    assert list(row)[list(row).index("communication_bytes") + 1 :] == list(more)
    assert {k: int(row[k]) for k in more} == more


@pytest.mark.parametrize(("lay", "phase"), CASES, ids=IDS)
def test_report_and_verify(lay, phase: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [f"{k}={v}" for k, v in degrees(lay).items()]
    assert main(["report", lay.name, "--layer", lay.layer, "--phase", phase, *argv]) == 0
    assert "## " in capsys.readouterr().out
    assert main(["verify", lay.name, "--layer", lay.layer, "--phase", phase]) == 0
    assert "0 failed" in capsys.readouterr().out


def test_the_python_export_runs_every_layout(tmp_path: Path) -> None:
    export("python", tmp_path)
    for lay, phase in CASES:
        key = lay.name if lay.layer == layer_of(Role.MIXER).name else f"{lay.layer}/{lay.name}"
        args = [f"{k}={v}" for k, v in degrees(lay).items()]
        proc = subprocess.run(
            [str(tmp_path / "python" / "run.sh"), key, phase, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, (key, phase, proc.stderr)
        assert json.loads(proc.stdout) == reference(lay, phase), (key, phase)


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_compare_lists_every_mixer_layout(phase: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--phase", phase, "--format", "json"]) == 0
    shown = [o["layout"] for o in json.loads(capsys.readouterr().out)]
    assert shown == [lay.name for lay in all_layouts(layer_of(Role.MIXER).name)]


@pytest.mark.parametrize("lay", all_layouts(layer_of(Role.MIXER).name), ids=lambda lay: lay.name)
def test_the_model_composes_every_mixer_layout(lay) -> None:
    for role in (Role.EMBEDDING, Role.CHANNEL_MIXER, Role.HEAD):
        partner = companion(lay, role)
        assert set(partner.degrees) == set(lay.degrees)  # the same parallel degrees
    got = shardcost.model_metrics(CONFIG, "decode", layout=lay.name, **degrees(lay))
    assert got["layouts"]["attention"] == lay.name
    assert got["chips"] == 2 ** len(lay.degrees)


def test_a_reference_to_a_step_no_layer_declares_fails_at_registration() -> None:
    from shardcost.errors import InputError
    from shardcost.formulas.registry import Checks, layout, ref

    with pytest.raises(InputError, match="checks steps no layer declares: q_prj"):

        @layout("typo", layer="attention", summary="a typo", checks=Checks(flops=ref("q_prj")))
        def typo(phase, conventions):  # never built: refused as it is registered
            raise AssertionError

    assert "typo" not in [lay.name for lay in all_layouts("attention")]


def test_a_layer_is_declared_once() -> None:
    from shardcost.formulas.registry import layer

    with pytest.raises(ValueError, match="layer 'attention' is already declared"):
        layer("attention", role=Role.MIXER)


def test_a_layout_reads_only_the_conventions_its_layer_owns() -> None:
    from shardcost.errors import InputError
    from shardcost.formulas.registry import layout

    with pytest.raises(InputError, match="does not own: logits_for_all_tokens"):

        @layout("stray", layer="ffn", summary="a stray", conventions=("logits_for_all_tokens",))
        def stray(phase, conventions):  # never built: refused as it is registered
            raise AssertionError
