"""The Python API: the same contract as the CLI's JSON, exact ints, one public surface."""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import shardcost
from shardcost.formulas.cases import spec_case
from tests.helpers import MHA3

# Names public though they start with "_".
PUBLIC_DUNDERS = ("__version__",)
# `import shardcost` loads these and nothing else of ours: the error tree, no SymPy.
LOADED_BY_IMPORT = {"shardcost", "shardcost.errors"}
# The engine's sub-packages: every module that can define an error class.
ENGINE = ("symbolic", "formulas", "codegen", "reports")


def _modules_after(statement: str) -> list[str]:
    """The modules a fresh interpreter holds after ``statement``."""
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_public_surface_is_what_the_module_shows() -> None:
    # httpx's test_exported_members: the names one sees are exactly the names exported.
    shown = [n for n in dir(shardcost) if not n.startswith("_") or n in PUBLIC_DUNDERS]
    assert shown == sorted(shardcost.__all__)
    for name in shardcost.__all__:
        assert getattr(shardcost, name) is not None  # each resolves
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        shardcost.nonesuch  # noqa: B018


def test_version_is_the_package_metadata() -> None:
    assert shardcost.__version__ == importlib.metadata.version("shardcost")


def test_import_shardcost_loads_no_engine() -> None:
    loaded = _modules_after("import shardcost")
    assert {m for m in loaded if m.split(".")[0] == "shardcost"} == LOADED_BY_IMPORT
    assert not {"sympy", "numpy", "jinja2"} & set(loaded)


def test_import_symbolic_loads_no_formulas() -> None:
    loaded = _modules_after("import shardcost.symbolic")
    assert "shardcost.symbolic" in loaded
    assert [m for m in loaded if m.startswith(("shardcost.formulas", "shardcost.codegen"))] == []


def test_every_error_class_is_in_the_tree() -> None:
    modules = []
    for sub in ENGINE:
        package = importlib.import_module(f"shardcost.{sub}")
        found = pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
        modules += [package, *(importlib.import_module(m.name) for m in found)]
    modules += [importlib.import_module("shardcost.cli"), shardcost.errors]
    raised = {
        cls
        for module in modules
        for cls in vars(module).values()
        if isinstance(cls, type)
        and issubclass(cls, Exception)  # warnings too
        and cls.__module__ == module.__name__
    }
    assert len(raised) >= 10
    docstring = shardcost.errors.__doc__ or ""
    for cls in raised:
        assert getattr(shardcost.errors, cls.__name__) is cls
        assert getattr(shardcost, cls.__name__) is cls
        assert cls.__name__ in shardcost.errors.__all__
        assert cls.__name__ in shardcost.__all__
        assert f" {cls.__name__} " in docstring  # drawn in the tree


def test_design_example() -> None:
    # DESIGN.md's example is seed 001 Test 3 (MHA-3).
    out = shardcost.metrics("tp", phase="decode", **MHA3, kv_includes_new_token=True)
    assert list(out) == [  # DESIGN.md's object, in its order, and the units it counts in
        "layout",
        "layer",
        "phase",
        "params",
        "chips",
        "metrics",
        "collectives",
        "notes",
        "units",
    ]
    assert out["chips"] == 4 and out["layer"] == "attention" and out["notes"] == []
    # MHA-3's all-reduce of the decode token's output: B·d·b = 2·1024·2 = 4,096 bytes
    assert out["collectives"] == [
        {"name": "output_allreduce", "kind": "all-reduce", "group": "tp", "bytes_per_chip": 4096}
    ]
    assert out["metrics"] == spec_case("MHA-3").metrics
    assert list(out["metrics"]) == list(shardcost.symbolic.METRICS)


def test_timing_appears_with_hardware() -> None:
    out = shardcost.metrics(
        "single", "decode", hardware="seed-test", batch_size=1, past_seq_len=2048
    )
    assert list(out["timing"]) == [
        "compute_time_ms",
        "load_time_ms",
        "communication_time_ms",
        "wall_clock_time_ms",
    ]
    assert all(type(v) is float for v in out["timing"].values())


def test_counts_stay_exact_past_two_to_the_53() -> None:
    # 2 * (B*S) * d * d with B*S = 2^20 tokens, d = 2^15: Q alone is 2^51 FLOPs; the total
    # 2^53+ must not be rounded through a float.
    out = shardcost.metrics(
        "single", hidden_size=2**15, num_heads=2**8, batch_size=2**10, seq_len=2**10
    )
    flops = out["metrics"]["flops_per_chip"]
    # 4 projections: 4 * 2 * 2^20 * 2^30 = 2^53; scores + apply-V: 2 * 2 * 2^10 * 2^8
    # * 2^10 * 2^10 * 2^7 = 2^47
    assert flops == 2**53 + 2**47
    assert type(flops) is int


@pytest.mark.filterwarnings("ignore::shardcost.UnevenSplitWarning")  # 2049 keys over 8 ranks
def test_params_round_trip() -> None:
    first = shardcost.metrics(
        "tp-cp",
        "decode",
        hardware="seed-test",
        tensor_parallel=2,
        context_parallel=8,
        decode_projections="qo",
    )
    again = shardcost.metrics("tp-cp", "decode", **first["params"])
    assert again == first


def test_symbolic_cost_is_available() -> None:
    cost = shardcost.cost("tp", "prefill")
    from shardcost.symbolic.dimensions import B, S, b, d, tp

    assert cost.metrics["communication_bytes"].subs({tp: 4, B: 2, S: 128, d: 1024, b: 2}) == 524_288
    with pytest.raises(shardcost.UnknownNameError):
        shardcost.cost("tp", "prefill", hidden_size=3)
    with pytest.raises(shardcost.InputError, match="does not apply"):
        shardcost.cost("tp", "prefill", decode_projections="qo")


def test_layouts_are_listed() -> None:
    attention = shardcost.layouts("attention")
    # the seeds' five first, in registration order; issues add theirs after them
    assert [lay.name for lay in attention[:5]] == [
        "single",
        "tp",
        "cp-allgather",
        "cp-kv-sharded",
        "tp-cp",
    ]
    assert attention == tuple(lay for lay in shardcost.layouts() if lay.layer == "attention")


def test_a_compiled_model_is_model_metrics() -> None:
    config = Path(__file__).resolve().parents[1] / "examples" / "configs" / "llama-3.2-1b.json"
    f = shardcost.compile_model(config, "decode", layout="tp", tensor_parallel=2)
    assert {"batch_size", "past_seq_len", "tensor_parallel"} <= f.dimensions
    got = f(batch_size=4, past_seq_len=300)
    want = shardcost.model_metrics(
        config, "decode", layout="tp", tensor_parallel=2, batch_size=4, past_seq_len=300
    )
    assert got["metrics"] == want["metrics"]
    assert all(type(v) is int for v in got["metrics"].values())
