"""Sliding-window and chunked attention, and exact (causal, in-window) attention FLOPs:
hand arithmetic, the figures Hugging Face measured (tests/fidelity/expected.json), the
independent reference at random points, verify, and every compiled path and export."""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shardcost
from shardcost.cli import main
from shardcost.codegen.export import LANGUAGES, export
from shardcost.formulas import Conventions, Phase, all_layouts, get_layout
from shardcost.formulas.evaluate import Result, evaluate
from shardcost.formulas.inputs import resolve_inputs
from shardcost.formulas.invariants import verify_layout
from shardcost.symbolic import METRICS
from tests.codegen.configurations import draw
from tests.formulas.reference import pairs, reference, sees
from tests.formulas.strategies import configs, for_layout
from tests.formulas.strategies import conventions as decode_conventions
from tests.helpers import run_sh

EXPECTED = json.loads(
    (Path(__file__).parent.parent / "fidelity" / "expected.json").read_text(encoding="utf-8")
)["families"]
ATTENTION = all_layouts("attention")
LAYOUTS = [lay.name for lay in ATTENTION]
EXACT = [name for name in LAYOUTS if "attention_flops" in get_layout(name).conventions]
BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def layer(layout: str, phase: str, **params: object) -> Result:
    """One attention layer evaluated, head_dim free of hidden_size / num_heads (as a
    model's config may set it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.UnevenSplitWarning)
        inputs = resolve_inputs(layout, phase, params=params, decoupled_heads=True)
        return evaluate(inputs)


# --- hand arithmetic ---------------------------------------------------------------------

MISTRAL_7B = {  # mistralai/Mistral-7B-v0.1: d = 32·128, 8 KV heads, window 4096
    "hidden_size": 4096,
    "num_heads": 32,
    "num_kv_heads": 8,
    "head_dim": 128,
    "batch_size": 1,
    "past_seq_len": 8192,
    "attention_window": "sliding",
    "sliding_window": 4096,
}


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_mistral_7b_decode_by_hand(dtype: str) -> None:
    got = shardcost.metrics("single", "decode", kv_cache_dtype=dtype, **MISTRAL_7B)["metrics"]
    # the cache keeps the last W − 1 = 4095 of 8192 positions: K and V, 8 heads of 128,
    # 2 bytes: 2·4095·8·128·2 = 16,773,120 bytes
    assert got["kv_cache_per_chip"] == 16_773_120
    # keys: the 4095 cached and the new token, 4096. Q and O: 2·2·4096·4096 = 67,108,864;
    # K and V: 2·2·4096·1024 = 16,777,216; scores and P·V: 2·2·32·4096·128 = 67,108,864
    assert got["flops_per_chip"] == 67_108_864 + 16_777_216 + 67_108_864 == 150_994_944
    # the new token is cached too: still the last 4095 (min(8193, 4095))
    also = shardcost.metrics("single", "decode", kv_includes_new_token=True, **MISTRAL_7B)
    assert also["metrics"]["kv_cache_per_chip"] == 16_773_120


def test_mistral_7b_cache_conventions_by_hand() -> None:
    def run(**conv: object) -> dict:
        p = for_layout("single", MISTRAL_7B, conv)  # the window is read where it counts
        return shardcost.metrics("single", "decode", **p)["metrics"]

    # rolling: the last W = 4096 positions, 2·4096·8·128·2 = 16,777,216 bytes; the keys
    # are those 4096 and the new token: scores and P·V 2·2·32·4097·128 = 67,125,248
    rolling = run(sliding_window_kv="rolling")
    assert rolling["kv_cache_per_chip"] == 16_777_216
    assert rolling["flops_per_chip"] == 67_108_864 + 16_777_216 + 67_125_248
    # full: all 8192, 2·8192·8·128·2 = 33,554,432 bytes; keys 8193: 2·2·32·8193·128
    full = run(sliding_window_kv="full")
    assert full["kv_cache_per_chip"] == 33_554_432
    assert full["flops_per_chip"] == 67_108_864 + 16_777_216 + 134_234_112
    # without a window: the same as full
    assert run(attention_window="none") == full


def test_mistral_7b_exact_pairs_by_hand() -> None:
    def core(**conv: object) -> int:
        p = for_layout("single", MISTRAL_7B, conv)
        flops = shardcost.metrics("single", "decode", **p)["metrics"]
        return flops["flops_per_chip"] - 67_108_864 - 16_777_216  # less the projections

    # sliding: the new token (position 8193) attends min(8193, 4096) = 4096 keys, itself
    # included: 2·2·32·4096·128 = 67,108,864, the dense product's here
    assert core(attention_flops="exact") == 67_108_864
    # chunked: position 8193 opens the third chunk of 4096: (8192 mod 4096) + 1 = 1 key,
    # 2·2·32·1·128 = 16,384; dense still multiplies the 4095 cached and itself
    assert core(attention_flops="exact", attention_window="chunked") == 16_384
    assert core(attention_window="chunked") == 67_108_864
    # no window: 8193 keys, 2·2·32·8193·128 = 134,234,112, as dense
    assert core(attention_flops="exact", attention_window="none") == 134_234_112
    # past keys only: 4095, 0 and 8192
    past = {"attention_flops": "exact", "attention_keys_include_new_token": False}
    assert core(**past) == 4 * 32 * 4095 * 128
    assert core(**past, attention_window="chunked") == 0
    assert core(**past, attention_window="none") == 4 * 32 * 8192 * 128


TINY = {"hidden_size": 16, "num_heads": 2, "head_dim": 8, "batch_size": 3}


@pytest.mark.parametrize(
    ("window", "want"),
    [
        # positions 1..10 attend 1, 2, ..., 10: 55
        ("none", 55),
        # min(i, 4): 1 + 2 + 3 + 4·7 = 34
        ("sliding", 34),
        # (i − 1) mod 4 + 1: 1 2 3 4 | 1 2 3 4 | 1 2 = 2·10 + 3 = 23
        ("chunked", 23),
    ],
)
def test_prefill_exact_pairs_by_hand(window: str, want: int) -> None:
    p = TINY | {"seq_len": 10, "attention_window": window, "attention_flops": "exact"}
    if window != "none":
        p["sliding_window"] = 4
    exact = layer("single", "prefill", **p)
    assert exact.step_value("pairs") == want
    dense = layer("single", "prefill", **(p | {"attention_flops": "dense"}))
    # the dense product is 10·10 = 100 pairs: scores and P·V, 2·2·B·h·dh = 4·3·2·8 = 192
    # FLOPs a pair, so dense − exact = 192·(100 − want)
    assert dense.metrics.flops_per_chip - exact.metrics.flops_per_chip == 192 * (100 - want)


@pytest.mark.parametrize(
    ("window", "past", "with_new", "want"),
    [
        # positions 11, 12, 13 in chunks of 4 (9..12 | 13..16): 3 + 4 + 1 = 8
        ("chunked", 10, True, 8),
        # past keys only: 11 and 12 see 9, 10; 13 none: 2 + 2 + 0 = 4
        ("chunked", 10, False, 4),
        # positions 3, 4, 5, window 4: min(3, 4) + 4 + 4 = 11
        ("sliding", 2, True, 11),
        # past keys only: 3 and 4 see 1, 2; 5 sees 2 (2..5): 2 + 2 + 1 = 5
        ("sliding", 2, False, 5),
        # no window: 3·2 + (1 + 2 + 3) = 12, or the past only: 3·2 = 6
        ("none", 2, True, 12),
        ("none", 2, False, 6),
    ],
)
def test_decode_exact_pairs_by_hand(window: str, past: int, with_new: bool, want: int) -> None:
    p = TINY | {"past_seq_len": past, "new_tokens": 3, "attention_window": window}
    if window != "none":
        p["sliding_window"] = 4
    conv = {"attention_flops": "exact", "attention_keys_include_new_token": with_new}
    assert layer("single", "decode", **p, **conv).step_value("pairs") == want
    # the reference, one key at a time
    queries = range(past + 1, past + 4)
    keys = past + 3 if with_new else past
    c = {"attention_window": window}
    assert sum(sees(c, q, k, 4) for q in queries for k in range(1, keys + 1)) == want
    assert pairs(c, queries, keys, 4) == want


@pytest.mark.parametrize("past", [1, 3, 4, 5, 7, 8, 9, 4095, 4096, 4097])
def test_one_new_token_attends_its_window(past: int) -> None:
    w = 4
    p = TINY | {"past_seq_len": past, "sliding_window": w, "attention_flops": "exact"}
    by_window = {
        "sliding": min(past + 1, w),  # the last W positions, itself included
        "chunked": past % w + 1,  # its chunk up to itself
    }
    for window, want in by_window.items():
        got = layer("single", "decode", **p, attention_window=window)
        assert got.step_value("pairs") == want
    got = layer("single", "decode", **TINY, past_seq_len=past, attention_flops="exact")
    assert got.step_value("pairs") == past + 1  # no window: every position


# --- what Hugging Face measured -------------------------------------------------------

GPT_OSS = EXPECTED["gpt_oss"]
GPT_OSS_ATTENTION = {  # configs/gpt_oss.json: 64 heads of 64 over d = 2880, 8 KV heads
    "hidden_size": 2880,
    "num_heads": 64,
    "num_kv_heads": 8,
    "head_dim": 64,
    "batch_size": 1,
    "kv_cache_dtype": "bf16",
}
# layer 0 slides over 128 positions; layer 1 attends every position
GPT_OSS_LAYERS = {0: {"attention_window": "sliding", "sliding_window": 128}, 1: {}}


def _kv_bytes(entry: dict) -> int:
    """K and V of one cache layer as measured: its key shape, twice, at its dtype."""
    assert entry["key_shape"] == entry["value_shape"]
    return 2 * int(np.prod(entry["key_shape"])) * BYTES[entry["dtype"]]


@pytest.mark.parametrize("index", [0, 1])
def test_gpt_oss_prefill_matches_hugging_face(index: int) -> None:
    measured = GPT_OSS["flops"]["modules"]["prefill_logits_to_keep_1"]
    p = GPT_OSS_ATTENTION | GPT_OSS_LAYERS[index] | {"seq_len": 128}
    got = layer("single", "prefill", **p).metrics
    # the full 128 × 128 product in both layers (a masked kernel), bias adds uncounted
    assert got.flops_per_chip == measured[f"model.layers.{index}.self_attn"]["total"]
    # the sliding layer keeps 127 positions, the full one 128
    cache = GPT_OSS["kv_bytes"]["prefill"]["first_layer_of_each_kind"][str(index)]
    assert got.kv_cache_per_chip == _kv_bytes(cache)
    assert cache["seq_len"] == (127 if index == 0 else 128)


@pytest.mark.parametrize("index", [0, 1])
def test_gpt_oss_decode_matches_hugging_face(index: int) -> None:
    measured = GPT_OSS["flops"]["modules"]["decode_step"]
    p = GPT_OSS_ATTENTION | GPT_OSS_LAYERS[index] | {"past_seq_len": 128}
    # after the step the cache holds the new token too (127 kept, or 129)
    got = layer("single", "decode", **p, kv_includes_new_token=True)
    # keys: 127 cached and the new token, 128 (2·2·64·128·64 = 4,194,304... as measured:
    # bmm 2,097,152 each for scores and P·V); the full layer 129
    assert got.step_value("key_len") == (128 if index == 0 else 129)
    assert got.metrics.flops_per_chip == measured[f"model.layers.{index}.self_attn"]["total"]
    cache = GPT_OSS["kv_bytes"]["decode"]["first_layer_of_each_kind"][str(index)]
    assert got.metrics.kv_cache_per_chip == _kv_bytes(cache)


PROBED = [name for name, family in EXPECTED.items() if "window_probe" in family]


@pytest.mark.parametrize("family", PROBED)
def test_window_probes_keep_the_last_window_minus_one(family: str) -> None:
    probe = EXPECTED[family]["window_probe"]
    assert set(probe["windows"]) == {
        e.get("sliding_window")
        for e in probe["after_prefill"]["first_layer_of_each_kind"].values()
        if "sliding_window" in e
    }
    tokens = probe["prefill_tokens"]  # the window + 4
    for step, phase, extra in (
        ("after_prefill", "prefill", {"seq_len": tokens}),
        ("after_decode", "decode", {"past_seq_len": tokens, "kv_includes_new_token": True}),
    ):
        for entry in probe[step]["first_layer_of_each_kind"].values():
            _, kv_heads, _, dh = entry["key_shape"]
            p = {
                "num_heads": kv_heads,
                "num_kv_heads": kv_heads,
                "head_dim": dh,
                "hidden_size": kv_heads * dh,
                "batch_size": 1,
                "kv_cache_dtype": DTYPES[entry["dtype"]],
            }
            if "sliding_window" in entry:  # Llama 4's chunked layers are cached the same
                window = "chunked" if family == "llama4_text" else "sliding"
                p |= {"attention_window": window, "sliding_window": entry["sliding_window"]}
            got = layer("single", phase, **p, **extra)
            assert got.metrics.kv_cache_per_chip == _kv_bytes(entry), (family, step, entry)


def test_the_probed_windows_are_the_briefed_ones() -> None:
    kept = {
        name: EXPECTED[name]["window_probe"]["after_decode"]["first_layer_of_each_kind"]["0"][
            "seq_len"
        ]
        for name in PROBED
    }
    assert kept == {
        "gemma2": 4095,
        "gemma3_text": 1023,
        "gpt_oss": 127,
        "llama4_text": 8191,
        "mistral": 4095,
        "phi3": 2046,
    }


# --- every layout against the independent reference ---------------------------------

WINDOW_CONVENTIONS = st.fixed_dictionaries(
    {
        "attention_window": st.sampled_from(["none", "sliding", "chunked"]),
        "sliding_window_kv": st.sampled_from(["window", "rolling", "full"]),
        "attention_flops": st.sampled_from(["dense", "exact"]),
    }
)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("phase", ["prefill", "decode"])
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_matches_the_reference_under_windows(layout: str, phase: str, data: st.DataObject) -> None:
    p = data.draw(configs(phase))
    p["sliding_window"] = data.draw(st.sampled_from([1, 2, 3, 7, 64, 4096]) | st.integers(1, 9000))
    conv = data.draw(WINDOW_CONVENTIONS)
    if layout not in EXACT:
        conv["attention_flops"] = "dense"
    if phase == "decode":
        conv |= data.draw(decode_conventions(phase))
    got = layer(layout, phase, **for_layout(layout, p, conv))
    want = reference(layout, phase, p, conv)
    assert {m: getattr(got.metrics, m) for m in METRICS} == want["metrics"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_window_applies_before_context_parallel(layout: str) -> None:
    # prefill S = 1000 over cp = 4 with W = 129: the cache keeps 128 positions, 32 a rank
    p = {"hidden_size": 64, "num_heads": 4, "head_dim": 16, "batch_size": 1, "seq_len": 1000}
    p |= {"context_parallel": 4, "tensor_parallel": 1}
    p |= {"attention_window": "sliding", "sliding_window": 129}
    got = layer(layout, "prefill", **for_layout(layout, p, {}))
    per_rank = 128 if layout in ("single", "tp", "ulysses") else 32  # ulysses splits heads
    heads = 1 if layout == "ulysses" else 4
    assert got.metrics.kv_cache_per_chip == 2 * per_rank * heads * 16 * 2


def test_a_ragged_batch_sums_each_requests_window() -> None:
    # W = 4096: past lengths 8192 and 100 keep 4095 and 100 positions, 4195 in all
    p = MISTRAL_7B | {"past_seq_len": [8192, 100], "batch_size": 2}
    got = shardcost.metrics("single", "decode", **p)["metrics"]
    assert got["kv_cache_per_chip"] == 2 * 4195 * 8 * 128 * 2


# --- verify ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "conventions",
    [
        ["attention_window=sliding"],
        ["attention_window=chunked", "sliding_window_kv=rolling", "attention_flops=exact"],
    ],
)
def test_verify_passes_for_every_layout(
    conventions: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--layer", "attention", *conventions]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out
    assert out.count("a window adds nothing") == 2 * len(LAYOUTS)
    if "attention_flops=exact" in conventions:
        assert out.count("exact pairs within the dense product") == 2 * len(EXACT)


def test_verify_one_layout_and_phase(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["verify", "tp", "--phase", "decode", "attention_window=sliding"]
    argv += ["attention_flops=exact", "kv_includes_new_token=true"]
    assert main(argv) == 0
    assert "0 failed" in capsys.readouterr().out


def test_a_window_that_adds_kv_bytes_is_caught() -> None:
    # a tp whose windowed cost is single's: with tensor_parallel > num_kv_heads ... one
    # chip then holds every KV head, more than tp's share without a window
    tp, single = get_layout("tp"), get_layout("single")

    def build(phase: Phase, conv: Conventions):
        return (single if conv.attention_window != "none" else tp).build(phase, conv)

    broken = replace(tp, name="tp-broken", build=build)
    result = verify_layout(broken, Phase.DECODE, Conventions(attention_window="sliding"))
    verdict = next(v for v in result.verdicts if v.claim.name == "a window adds nothing")
    assert not verdict.ok
    assert verdict.term == "kv_cache_per_chip"


def test_exact_layouts_are_the_heads_sharded_ones() -> None:
    # a CP rank's share of the causal pairs depends on the positions it holds: not modelled
    assert EXACT == ["single", "tp", "ulysses"]
    with pytest.raises(shardcost.InputError, match="attention_flops does not apply"):
        shardcost.metrics("ring", "prefill", attention_flops="exact")


# --- compiled paths and exports -----------------------------------------------------------

STATIC = [
    {"attention_window": "sliding"},
    {"attention_window": "chunked", "sliding_window_kv": "rolling"},
    {"attention_window": "sliding", "attention_flops": "exact"},
    {"attention_window": "chunked", "attention_flops": "exact"},
    {"attention_flops": "exact"},
]


def _fixed(layout: str, conv: dict) -> dict:
    return {k: v for k, v in conv.items() if k in get_layout(layout).conventions}


def _configs(
    layout: str, phase: str, fixed: dict, n: int, seed: int, *, large: bool = True
) -> list[tuple[dict, dict]]:
    """``n`` valid inputs of ``layout`` under ``fixed`` (drawn as the codegen tests draw
    them, sizes past 2^53 and 2^63 in their counts unless not ``large``), each with the
    metrics shardcost.metrics gives them."""
    lay = get_layout(layout)
    f = shardcost.compile(layout, phase, conventions=fixed)
    prog = f.arrays.variants[tuple(v[0] for v in _switches(f).values())].program
    rng = random.Random(seed)
    out = []
    for _ in range(n * 40):
        p = draw(lay, prog, rng, large=large)
        if any(v >= 2**53 for v in p.values()):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = shardcost.metrics(layout, phase, **p, **fixed)["metrics"]
        except shardcost.InputError:
            continue
        out.append((p, want))
        if len(out) == n:
            break
    assert len(out) == n
    return out


def _switches(f) -> dict:
    from shardcost.codegen.python import choices

    return choices(f.arrays.layout, f.arrays.phase, False)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_compiled_paths_are_exact_under_windows(layout: str, phase: str) -> None:
    for i, conv in enumerate(STATIC):
        fixed = _fixed(layout, conv)
        found = _configs(layout, phase, fixed, 25, seed=i)
        f = shardcost.compile(layout, phase, conventions=fixed)
        for p, want in found:
            assert {m: f(**p)[m] for m in METRICS} == want, (layout, phase, fixed, p)
        arrays = {k: np.array([p[k] for p, _ in found]) for k in found[0][0]}
        exact = f(**arrays, exact=True)
        floats, _, inexact = f.arrays.evaluate(
            tuple(v[0] for v in _switches(f).values()),
            tuple(arrays[n] for n in f.arrays.names),
            exact=False,
            strict=False,
        )
        for m in METRICS:
            want = [w[m] for _, w in found]
            assert list(exact[m]) == want, (layout, phase, fixed, m)
            column = np.broadcast_to(floats[m], inexact.shape).astype(object)
            assert not ((column != np.array(want, dtype=object)) & ~inexact).any(), (m, fixed)


@pytest.mark.parametrize(
    ("phase", "conv"),
    [("decode", STATIC[2]), ("decode", STATIC[3]), ("prefill", STATIC[3])],
    ids=["decode-sliding", "decode-chunked", "prefill-chunked"],
)
def test_numba_is_exact_under_windows(phase: str, conv: dict) -> None:
    found = _configs("single", phase, conv, 200, seed=7)
    f = shardcost.compile("single", phase, conventions=conv, backend="numba")
    arrays = {k: np.array([p[k] for p, _ in found], dtype=np.int64) for k in found[0][0]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", shardcost.PrecisionWarning)
        out, ok = f(**arrays)
    for i, (_, want) in enumerate(found):
        if ok[i]:
            assert [int(v) for v in out[:, i]] == [want[m] for m in METRICS]
        else:  # refused only near int64's end
            assert max(want.values()) >= 2**61


EXPORTED = STATIC[1:4]  # a window with each cache, and exact pairs with each window


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, list[tuple]]]:
    """Each of EXPORTED: the attention layouts exported in every language under it, and
    cases to run them on (per layout and phase: one small, one past 2^64 where drawn)."""
    out = []
    for i, conv in enumerate(EXPORTED):
        root = tmp_path_factory.mktemp(f"windows{i}")
        for language in LANGUAGES:
            export(language, root, conventions=Conventions(**conv), layouts=ATTENTION)
        cases = []
        for layout in LAYOUTS:
            fixed = _fixed(layout, conv)
            for phase in ("prefill", "decode"):
                found = _configs(layout, phase, fixed, 1, seed=100 + i, large=False)
                big = _configs(layout, phase, fixed, 12, seed=200 + i)
                found += [c for c in big if 2**64 <= max(c[1].values()) < 2**110][:1]
                cases += [(layout, phase, p, want) for p, want in found]
        out.append((root, cases))
    return out


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_export_is_exact_under_windows(exported: list, language: str) -> None:
    wide = 0
    for root, cases in exported:
        for layout, phase, p, want in cases:
            proc = run_sh(root, language, layout, phase, *(f"{k}={v}" for k, v in p.items()))
            assert proc.returncode == 0, (layout, phase, p, proc.stderr)
            assert json.loads(proc.stdout) == want, (language, layout, phase, p)
            wide += max(want.values()) >= 2**64
    assert wide >= len(LAYOUTS) * 2  # 128-bit (or big) integers: counts past 2^64 come out
