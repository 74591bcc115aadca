"""A layer's relations drive every back end, whatever dimensions they relate.

A toy layer, registered here (tests/conftest.py restores the registry after each test),
declares two relations among dimensions attention's ``hidden_size = num_heads ×
head_dim`` does not touch, and reads num_kv_heads, which defaults to num_heads. With no
change to codegen, the compiled function derives each relation's missing dimension and
checks it, the array paths and the sweep mask and count rows that break one, the numba
kernel flags them, and every export derives and refuses as the library does.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import shardcost
from shardcost.codegen.export import LANGUAGES, export
from shardcost.codegen.program import Given, program
from shardcost.codegen.sweep import sweep
from shardcost.errors import ImpossibleSplitError
from shardcost.formulas import Conventions, Layout, Phase, get_layout
from shardcost.formulas.registry import Role, layer, layout
from shardcost.symbolic import Cost, Trace, finish
from shardcost.symbolic.dimensions import (
    BATCH_SIZE,
    CONTEXT_PARALLEL,
    INTERMEDIATE_SIZE,
    NEW_TOKENS,
    NUM_HEADS,
    NUM_KV_HEADS,
    SEQ_LEN,
    VOCAB_SIZE,
    B,
    S,
    T,
    V,
    b,
    cp,
    d_ff,
    h,
    h_kv,
)
from shardcost.symbolic.relation import Product

WIDTH = Product(INTERMEDIATE_SIZE, VOCAB_SIZE, NEW_TOKENS)  # d_ff = V × T
LENGTH = Product(SEQ_LEN, BATCH_SIZE, CONTEXT_PARALLEL)  # S = B × cp
# every input given, both relations holding: d_ff = 96 × 4, S = 3 × 8
FULL = {
    "intermediate_size": 384,
    "vocab_size": 96,
    "new_tokens": 4,
    "seq_len": 24,
    "batch_size": 3,
    "context_parallel": 8,
    "num_heads": 12,
    "num_kv_heads": 4,
    "bytes_per_elem": 2,
}
TOOLS = {"python": "python3", "c": "cc", "rust": "rustc", "js": "node", "go": "go"}


def _build(phase: Phase, conventions: Conventions) -> Cost:
    t = Trace()
    t.require_divisible(h, h_kv, "each KV head serves a whole group of query heads")
    groups = t.define(
        "groups", "query heads per KV head", h / h_kv, section="derived", unit="heads"
    )
    local = t.define("seq_local", "positions per rank", S / cp, section="derived", unit="tokens")
    flops = t.define(
        "flops", "FLOPs per chip", 2 * B * local * d_ff * groups, section="flops", unit="FLOPs"
    )
    weights = t.define(
        "weight_bytes", "weight bytes per chip", d_ff * T * b, section="weights", unit="bytes"
    )
    acts = t.define(
        "activation_bytes", "activations", B * local * V * b, section="activations", unit="bytes"
    )
    kv = t.define("kv_cache_bytes", "KV bytes", h_kv * T * b, section="kv_cache", unit="bytes")
    return finish(
        t, chips=cp, flops=flops, weights=weights, activations=acts, kv_cache=kv, collectives=[]
    )


@pytest.fixture
def toy() -> Layout:
    """Layer ``toy`` with the two relations, and its layout ``split``."""
    declared = layer("toy", role=Role.CHANNEL_MIXER, relations=(WIDTH, LENGTH))
    layout(
        "split", layer=declared, summary="a toy with two relations", degrees=(CONTEXT_PARALLEL,)
    )(_build)
    return get_layout("split", "toy")


def metrics(params: dict) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        return shardcost.metrics("split", "prefill", layer="toy", **params)["metrics"]


def without(*names: str) -> dict:
    return {k: v for k, v in FULL.items() if k not in names}


def test_the_program_carries_the_relations_and_the_borrowed_default(toy: Layout) -> None:
    prog = program(toy, Phase.PREFILL)
    assert prog.relations == (WIDTH, LENGTH)
    borrowed = [g for g in prog.preamble if isinstance(g, Given) and g.default == NUM_HEADS]
    assert [g.dimension for g in borrowed] == [NUM_KV_HEADS]
    # numbers first, then the relations, then what defaults to another input
    kinds = [type(node).__name__ for node in prog.preamble]
    assert kinds == ["Given", "Given", "Product", "Product", "Given"]


def test_compiled_derives_checks_and_refuses_in_the_relations_words(toy: Layout) -> None:
    f = shardcost.compile("split", "prefill", layer="toy")
    want = metrics(FULL)
    assert f(**FULL) == want
    # any one of each relation left out is derived from the other two
    for left_out in (("intermediate_size", "seq_len"), ("vocab_size", "batch_size")):
        assert f(**without(*left_out)) == want, left_out
    assert f(**without("new_tokens", "context_parallel")) == want
    # only the total: the right factor takes its default (new_tokens 1, context_parallel 4)
    assert f(**without("vocab_size", "new_tokens")) == metrics(
        FULL | {"vocab_size": 384, "new_tokens": 1}
    )
    # num_kv_heads left out takes num_heads' value
    assert f(**without("num_kv_heads")) == metrics(FULL | {"num_kv_heads": 12})
    with pytest.raises(
        ImpossibleSplitError, match="intermediate_size=385 is not divisible by new_tokens=4"
    ):
        f(**without("vocab_size") | {"intermediate_size": 385})
    with pytest.raises(ImpossibleSplitError, match="seq_len=25 but batch_size × context_parallel"):
        f(**FULL | {"seq_len": 25})
    with pytest.raises(
        ImpossibleSplitError, match="seq_len is not batch_size × context_parallel in 1 of 3"
    ):
        f(**FULL | {"seq_len": np.array([24, 25, 24])})


def test_arrays_sweep_and_numba_mask_broken_rows(toy: Layout) -> None:
    f = shardcost.compile("split", "prefill", layer="toy")
    lengths = np.array([24, 25, 24])
    out = f(
        **without("seq_len")
        | {"seq_len": np.array([24, 48, 72]), "batch_size": np.array([3, 6, 9])}
    )
    assert [int(x) for x in out["flops_total"]] == [
        metrics(FULL | {"seq_len": 24 * k, "batch_size": 3 * k})["flops_total"] for k in (1, 2, 3)
    ]
    text = io.StringIO()
    values = {k: [v] for k, v in without("seq_len").items()} | {"seq_len": list(lengths)}
    result = sweep(toy, "prefill", values, text, progress=False)
    assert (result.total, result.rows) == (3, 2)
    assert result.dropped == {"seq_len = batch_size × context_parallel does not hold": 1}
    rows = list(csv.DictReader(io.StringIO(text.getvalue())))
    assert int(rows[0]["flops_total"]) == metrics(FULL)["flops_total"]
    fast = shardcost.compile("split", "prefill", layer="toy", backend="numba")
    got, ok = fast(**without("seq_len") | {"seq_len": lengths})
    assert ok.tolist() == [True, False, True]
    assert got[:, 0].tolist() == list(metrics(FULL).values())
    # derived there too: intermediate_size left out is vocab_size × new_tokens
    got, ok = fast(**without("intermediate_size") | {"batch_size": np.array([3, 3])})
    assert ok.all() and got[:, 1].tolist() == list(metrics(FULL).values())


def run(root: Path, language: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which(TOOLS[language]), (
        f"{TOOLS[language]} is missing: run sh tests/toolchains.sh"
    )
    return subprocess.run(
        [str(root / language / "run.sh"), "toy/split", "prefill", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_exports_derive_and_refuse_as_the_library(
    toy: Layout, tmp_path: Path, language: str
) -> None:
    export(language, tmp_path, layouts=[toy])
    want = metrics(FULL)
    for given in (
        FULL,
        without("intermediate_size", "batch_size"),
        without("new_tokens", "seq_len"),
    ):
        proc = run(tmp_path, language, *(f"{k}={v}" for k, v in given.items()))
        assert proc.returncode == 0, (given, proc.stderr)
        assert json.loads(proc.stdout) == want, given
    proc = run(tmp_path, language, *(f"{k}={v}" for k, v in without("num_kv_heads").items()))
    assert json.loads(proc.stdout) == metrics(FULL | {"num_kv_heads": 12})
    for given, message in (
        (FULL | {"seq_len": 25}, "seq_len=25 but batch_size x context_parallel = 3 x 8 = 24; "),
        (
            without("vocab_size") | {"intermediate_size": 385},
            "intermediate_size=385 is not divisible by new_tokens=4; ",
        ),
    ):
        proc = run(tmp_path, language, *(f"{k}={v}" for k, v in given.items()))
        assert proc.returncode == 2, (given, proc.stdout)
        assert proc.stderr.startswith(f"error: {message}"), proc.stderr
        assert proc.stderr.count("\n") == 1
