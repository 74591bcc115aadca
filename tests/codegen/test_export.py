"""Every export builds, runs through its run.sh, and agrees with shardcost.metrics exactly.

The toolchains (cc, rustc, node, go) are installed by tests/toolchains.sh, which the
README's test command runs first: a missing one fails here, it is never skipped.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

import shardcost
from shardcost.codegen.export import LANGUAGES
from shardcost.formulas import all_layouts

TOOLS = {"python": "python3", "c": "cc", "rust": "rustc", "js": "node", "go": "go"}


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    for language in LANGUAGES:
        shardcost.export(language, root)
    return root


def run(exported: Path, language: str, *args: str) -> subprocess.CompletedProcess[str]:
    tool = TOOLS[language]
    assert shutil.which(tool), f"{tool} is missing: run sh tests/toolchains.sh"
    return subprocess.run(
        [str(exported / language / "run.sh"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def configurations(layout: str, phase: str, seed: int) -> list[dict[str, int]]:
    """Random valid configurations, some far past 2^64 FLOPs."""
    rng = random.Random(seed)
    out = []
    for big in (False, False, True):
        tp = rng.choice([1, 2, 4, 8])
        kv = tp * rng.choice([1, 2])
        heads = kv * rng.choice([1, 4])
        p = {
            "num_heads": heads,
            "num_kv_heads": kv,
            "head_dim": rng.choice([64, 128]),
            "batch_size": rng.randint(1, 2**10 if big else 8),
            "bytes_per_elem": rng.choice([1, 2]),
        }
        length = rng.randint(1, 2**30 if big else 10_000)
        p |= (
            {"seq_len": length}
            if phase == "prefill"
            else {"past_seq_len": length, "new_tokens": rng.randint(1, 4)}
        )
        if "tp" in layout:
            p["tensor_parallel"] = tp
        if "cp" in layout:
            p["context_parallel"] = rng.choice([1, 2, 3, 4])
        if layout in ("cp-kv-sharded", "tp-cp"):
            p["softmax_stat_bytes"] = 4
        out.append(p)
    return out


def expected(layout: str, phase: str, params: dict[str, int]) -> dict[str, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        return shardcost.metrics(layout, phase, **params)["metrics"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_export_agrees_with_metrics(exported: Path, language: str) -> None:
    checked = 0
    for i, layout in enumerate(lay.name for lay in all_layouts("attention")):
        for phase in ("prefill", "decode"):
            for params in configurations(layout, phase, seed=i * 2 + (phase == "decode")):
                args = [f"{k}={v}" for k, v in params.items()]
                proc = run(exported, language, layout, phase, *args)
                assert proc.returncode == 0, proc.stderr
                assert json.loads(proc.stdout) == expected(layout, phase, params), (layout, phase)
                assert list(json.loads(proc.stdout)) == list(shardcost.symbolic.METRICS)
                checked += 1
    assert checked == 30


@pytest.mark.parametrize("language", LANGUAGES)
def test_bad_input_is_one_line_and_exit_2(exported: Path, language: str) -> None:
    for args, message in (
        (["tp", "prefill", "num_heads=30", "head_dim=128"], "num_heads=30 is not divisible by"),
        (["tp", "prefill", "banana=3"], "unknown key"),
        (["tp", "prefill", "seq_len=-3"], "expected KEY=POSITIVE_INTEGER"),
        (["warp", "prefill"], "unknown layout/phase"),
    ):
        proc = run(exported, language, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1


def test_python_export_needs_neither_sympy_nor_numpy(exported: Path) -> None:
    source = exported / "python" / "shardcost_metrics.py"
    assert "import sympy" not in source.read_text() and "numpy" not in source.read_text()
    proc = subprocess.run(  # -I -S: no site-packages at all, so no sympy and no numpy
        [
            "python3",
            "-I",
            "-S",
            str(source),
            "tp",
            "decode",
            "hidden_size=1024",
            "num_heads=16",
            "head_dim=64",
            "batch_size=2",
            "past_seq_len=128",
            "tensor_parallel=4",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["flops_per_chip"] == 4_458_496  # seed 001 Test 3


@pytest.mark.parametrize("language", LANGUAGES)
def test_generated_code_is_readable(exported: Path, language: str) -> None:
    text = "\n".join(
        p.read_text()
        for p in (exported / language).rglob("*")
        if p.is_file() and p.name != "run.sh" and "build" not in p.parts
    )
    assert (
        "Generated by shardcost" in text and "Conventions: attention_keys_include_new_token" in text
    )
    # one line per derivation step, each with its label
    for label in (
        "Q projection",
        "attention scores Q·Kᵀ",
        "KV-cache bytes per chip",
        "softmax statistics all-reduce",
    ):
        assert label in text, label


@pytest.mark.parametrize("language", LANGUAGES)
def test_ffn_layouts_are_exported_under_layer_slash_name(exported: Path, language: str) -> None:
    rng = random.Random(11)
    for layout in (lay.name for lay in all_layouts("ffn")):
        for phase in ("prefill", "decode"):
            p = {
                "hidden_size": rng.choice([2048, 4096]),
                "intermediate_size": rng.choice([8192, 14336]),
                "batch_size": rng.randint(1, 64),
                "bytes_per_elem": rng.choice([1, 2]),
            }
            p |= {"seq_len": rng.randint(1, 2**20)} if phase == "prefill" else {}
            if "tp" in layout:
                p["tensor_parallel"] = rng.choice([1, 2, 4])
            if "sp" in layout:
                p["context_parallel"] = rng.choice([1, 2, 3])
            proc = run(
                exported, language, f"ffn/{layout}", phase, *(f"{k}={v}" for k, v in p.items())
            )
            assert proc.returncode == 0, proc.stderr
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
                want = shardcost.metrics(layout, phase, layer="ffn", **p)["metrics"]
            assert json.loads(proc.stdout) == want, (layout, phase)


def headless_params(layer: str, layout: str, phase: str, hidden_size: int | None) -> dict[str, int]:
    """Parameters of a layer without heads (hidden_size None: left to its default)."""
    p = {"batch_size": 3, "bytes_per_elem": 2}
    if hidden_size is not None:
        p["hidden_size"] = hidden_size
    p |= {"intermediate_size": 300} if layer == "ffn" else {"vocab_size": 10}
    if phase == "decode":
        p["new_tokens"] = 2
    elif layer != "lm_head":  # the LM head's prefill reads the last token only
        p["seq_len"] = 7
    if "tp" in layout:
        p["tensor_parallel"] = 2
    return p


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    ("layer", "layout"), [("ffn", "tp"), ("embedding", "tp"), ("lm_head", "single")]
)
def test_layers_without_heads_take_any_hidden_size(
    exported: Path, language: str, layer: str, layout: str
) -> None:
    # hidden_size = num_heads × head_dim is attention's shape; FFN, embedding and LM head
    # have no heads, so a hidden_size the default head_dim (128) does not divide is fine,
    # and one left out is its default (4096) as in the library.
    for phase in ("prefill", "decode"):
        for hidden_size in (100, 2, None):
            p = headless_params(layer, layout, phase, hidden_size)
            args = [f"{k}={v}" for k, v in p.items()]
            proc = run(exported, language, f"{layer}/{layout}", phase, *args)
            assert proc.returncode == 0, (layer, layout, phase, p, proc.stderr)
            want = shardcost.metrics(layout, phase, layer=layer, **p)["metrics"]
            assert json.loads(proc.stdout) == want, (layer, layout, phase, p)


@pytest.mark.parametrize("language", LANGUAGES)
def test_attention_still_needs_hidden_size_to_split_into_heads(
    exported: Path, language: str
) -> None:
    for args, message in (
        (["hidden_size=100", "num_heads=3"], "hidden_size=100 is not divisible by num_heads=3"),
        (["hidden_size=100"], "hidden_size=100 is not divisible by head_dim=128"),
    ):
        with pytest.raises(shardcost.ImpossibleSplitError):
            shardcost.metrics("tp", "prefill", **dict(a.split("=") for a in args))
        for phase in ("prefill", "decode"):
            proc = run(exported, language, "tp", phase, *args)
            assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
            assert proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
            assert proc.stderr.count("\n") == 1
