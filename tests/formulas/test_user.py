"""User layouts from TOML files and from Python: checked, registered, verified, evaluated."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import shardcost
from shardcost.errors import InputError
from shardcost.formulas.user import load_layout

LAYOUTS = Path(__file__).parent / "layouts"
_names = (f"user-{i}" for i in itertools.count())


def layout_file(tmp_path: Path, text: str) -> Path:
    """A layout file with a fresh name (the registry refuses a name twice)."""
    path = tmp_path / "layout.toml"
    path.write_text(text.replace("NAME", next(_names)))
    return path


GOOD = """
[layout]
name = "NAME"
phase = "prefill"
chips = "cp"
[per_chip]
flops = "(8*B*S*d**2 + 4*B*h*S**2*dh) / cp"
weight_bytes = "4*d**2*b"
activation_bytes = "5*B*S*d*b/cp"
kv_cache_bytes = "2*B*S*d*b/cp"
[comm]
softmax_stats_allreduce = "B*S/cp*h*2*b_s"
[checks]
weight_replication = "cp"
"""


def test_the_issue_example_verifies_and_evaluates() -> None:
    layout = load_layout(LAYOUTS / "my-ring-cp.toml")
    (result,) = shardcost.verify(layout.name)
    assert result.ok
    assert [s.name for s in result.statements] == ["weight copies"]  # undeclared: stated
    # As a layout it evaluates like the built-ins: CP-1's numbers (seed 001).
    m = shardcost.metrics(
        layout.name,
        hidden_size=1024,
        num_heads=16,
        head_dim=64,
        batch_size=2,
        seq_len=128,
        context_parallel=4,
    )["metrics"]
    assert m["flops_per_chip"] == 570_425_344
    assert m["communication_bytes"] == 139_264  # 8,192 + 131,072


def test_declared_checks_are_held(tmp_path: Path) -> None:
    layout = load_layout(layout_file(tmp_path, GOOD))
    (result,) = shardcost.verify(layout.name)
    assert result.ok and not result.statements
    names = {v.claim.name for v in result.verdicts}
    assert "weights as declared" in names


def test_a_wrong_declaration_fails(tmp_path: Path) -> None:
    layout = load_layout(
        layout_file(tmp_path, GOOD.replace('weight_replication = "cp"', 'weight_replication = "1"'))
    )
    (result,) = shardcost.verify(layout.name)
    failed = {v.claim.name: v for v in result.verdicts if not v.ok}
    # 4*d^2*b on each of cp chips against single's 4*d^2*b: residual 4*b*dh^2*h^2*(cp - 1)
    assert str(failed["weights as declared"].residual) == "4*b*dh**2*h**2*(cp - 1)"


def test_python_route() -> None:
    layout = shardcost.define_layout(
        next(_names),
        phase="decode",
        chips="tensor_parallel",
        per_chip={
            "flops": "(8*B*T*d**2 + 4*B*h*T*(S_past + T)*dh) / tp",
            "weight_bytes": "4*d**2*b/tp",
            "activation_bytes": "(2*B*T*d + 3*B*T*d/tp)*b",
            "kv_cache_bytes": "2*B*S_past*d*b/tp",
        },
        comm={"output_allreduce": "B*T*d*b"},
    )
    (result,) = shardcost.verify(layout.name)
    assert result.ok, [(v.claim.name, v.residual) for v in result.verdicts if not v.ok]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[layout\nname=", "malformed TOML"),
        (GOOD.replace("[checks]", "[extras]"), "unknown table [extras]"),
        (GOOD.replace('chips = "cp"', 'chips = "cp"\ncolor = "red"'), "unknown key [layout] color"),
        (
            GOOD.replace('flops = "(8*B*S*d**2 + 4*B*h*S**2*dh) / cp"', ""),
            "[per_chip] needs exactly flops",
        ),
        (GOOD.replace('chips = "cp"', ""), "[layout] needs chips"),
        (
            GOOD.replace('"4*d**2*b"', '"4*d**2*bytes"'),
            "[per_chip] weight_bytes, column 8: unknown name 'bytes'",
        ),
        (GOOD.replace('"4*d**2*b"', "4.5"), "expected formula text, got float"),
        (GOOD.replace('phase = "prefill"', 'phase = "training"'), "phase='training' is unknown"),
        (
            GOOD.replace('chips = "cp"', 'chips = "cp"\nreference = "nope"'),
            "layout 'nope' is unknown",
        ),
        ("a = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
        ("x = '" + "y" * 70_000 + "'", "a layout file is at most 65,536"),
        (GOOD.replace('"4*d**2*b"', '"os.system(1)"'), "column 3: unexpected character '.'"),
    ],
)
def test_bad_files_name_file_key_and_column(tmp_path: Path, text: str, message: str) -> None:
    path = layout_file(tmp_path, text)
    with pytest.raises(InputError) as exc:
        load_layout(path)
    assert str(path) in str(exc.value)
    assert message in str(exc.value)


def test_names_are_not_taken_twice(tmp_path: Path) -> None:
    path = layout_file(tmp_path, GOOD)
    load_layout(path)
    with pytest.raises(InputError, match="is already registered"):
        load_layout(path)
    with pytest.raises(InputError, match="'tp' is already registered"):
        load_layout(layout_file(tmp_path, GOOD.replace('name = "NAME"', 'name = "tp"')))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_layout(tmp_path / "absent.toml")
