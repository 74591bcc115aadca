"""Generated programs kept on disk (``codegen.stored``): what a run loads is what it would
have derived, a damaged entry is derived again, a user's layout is never stored, and a
whole-model plan answers the same from a warm cache as from none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shardcost import cache
from shardcost.codegen import stored as stored_module
from shardcost.codegen.blocked import blocked_source
from shardcost.codegen.python import module_source, variants
from shardcost.codegen.stored import ident, stored
from shardcost.formulas import Phase, get_layout
from shardcost.formulas.user import load_layout

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS = ROOT / "tests" / "formulas" / "layouts"


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SHARDCOST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SHARDCOST_NO_CACHE", raising=False)
    return tmp_path / "cache"


CASES = [
    ("tp", "attention", Phase.DECODE, True),
    ("cp-kv-sharded", "attention", Phase.PREFILL, False),
    ("ep-tp", "moe", Phase.DECODE, True),
    ("tp", "mla", Phase.PREFILL, True),
    ("sp", "lm_head", Phase.PREFILL, False),
]


@pytest.mark.parametrize(("name", "layer", "ph", "timing"), CASES)
def test_what_is_loaded_is_what_is_derived(
    fresh_cache: Path, name: str, layer: str, ph: Phase, timing: bool
) -> None:
    layout = get_layout(name, layer)
    what = ident(layout, str(ph), timing, (), True, (), False)
    derived = variants(layout, ph, timing, (), True)
    first = stored("variants", what, lambda: variants(layout, ph, timing, (), True))
    assert first == derived
    loaded = stored("variants", what, pytest.fail)  # from disk: build is never called
    assert loaded == derived
    assert [v.program for v in loaded] == [v.program for v in derived]
    # what is generated from a loaded Program is the same text
    assert module_source(layout, ph, timing, (), True, (), loaded) == module_source(
        layout, ph, timing, (), True, (), derived
    )
    prog, again = derived[0].program, loaded[0].program
    varying = frozenset(d.symbol for d in prog.inputs[:2])
    assert blocked_source(again, "f", varying) == blocked_source(prog, "f", varying)


def test_a_damaged_entry_is_derived_again(fresh_cache: Path) -> None:
    layout = get_layout("tp", "ffn")
    what = ident(layout, "prefill", False)
    assert stored("test", what, lambda: 42) == 42
    entry = cache.key("test", repr(what))
    path = fresh_cache / stored_module.KIND / f"{entry}.pickle"
    for damage in ("not base64 at all!", "aGVsbG8=", ""):
        path.write_text(damage)
        assert stored("test", what, lambda: 43) == 43  # derived, not an error
    assert stored("test", what, pytest.fail) == 43  # and stored anew


def test_off_or_unnamed_means_derived_every_time(
    fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    for _ in range(2):
        stored("test", None, lambda: calls.append(1))
    assert len(calls) == 2
    monkeypatch.setenv("SHARDCOST_NO_CACHE", "1")
    what = ident(get_layout("tp", "ffn"), "decode")
    for _ in range(2):
        stored("test", what, lambda: calls.append(1))
    assert len(calls) == 4
    assert not fresh_cache.exists()


def test_a_users_layout_is_never_stored() -> None:
    layout = load_layout(LAYOUTS / "my-ring-cp.toml")
    assert ident(layout, "prefill") is None
    assert ident(get_layout("ring", "attention"), "prefill") is not None


PLAN = ("--chips", "4", "--hardware", "h100-sxm", "--format", "json")


def _plan(env: dict[str, str]) -> dict:
    config = str(ROOT / "examples" / "configs" / "llama-3.2-1b.json")
    done = subprocess.run(
        [sys.executable, "-m", "shardcost", "plan", config, *PLAN],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=True,
    )
    found = json.loads(done.stdout)
    found.pop("seconds")
    return found


def test_a_plan_from_a_warm_cache_is_the_same(tmp_path: Path) -> None:
    env = {**os.environ, "SHARDCOST_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("SHARDCOST_NO_CACHE", None)
    cold = _plan(env)
    assert list((tmp_path / "cache" / stored_module.KIND).glob("*.pickle"))
    warm = _plan(env)
    none = _plan({**env, "SHARDCOST_NO_CACHE": "1"})
    assert warm == cold == none


@pytest.mark.parametrize("name", ["tp", "cp-kv-sharded", "ulysses"])
def test_ragged_step_kinds_from_disk_are_the_derived_ones(
    fresh_cache: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The kinds are stored under a digest of the steps' expressions: a warm run reads
    what a run with the cache off derives."""
    from shardcost.formulas import ragged
    from shardcost.formulas.evaluate import _with_totals
    from shardcost.formulas.inputs import resolve_inputs
    from shardcost.formulas.timing import timing_model

    inputs = resolve_inputs(name, "decode", hardware="h100-sxm", params={"past_seq_len": [9, 99]})
    model = timing_model(inputs.cost, inputs.phase, True, inputs.conventions)
    derivation = _with_totals(model.derivation, inputs.cost)
    kinds = []
    for off in ("1", "", ""):  # derived (cache off), derived and stored, loaded
        monkeypatch.setenv("SHARDCOST_NO_CACHE", off)
        ragged.step_kinds.cache_clear()
        kinds.append(ragged.step_kinds(derivation))
    assert kinds[0] == kinds[1] == kinds[2]
    assert set(kinds[0].values()) >= {ragged.StepKind.CONSTANT, ragged.StepKind.AFFINE}
    assert list((fresh_cache / stored_module.KIND).glob("*.pickle"))
