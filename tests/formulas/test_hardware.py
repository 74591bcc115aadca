"""The hardware catalog: sourced, decimal, usable by name; knobs and FP8; user files."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import MISSING, fields
from fractions import Fraction
from pathlib import Path

import pytest

import shardcost
from shardcost.errors import InputError, InvalidValueError, UnknownNameError
from shardcost.formulas.hardware import (
    CATALOG,
    CATALOG_FILE,
    DEFAULTS,
    FIELDS,
    REQUIRED,
    Hardware,
    build,
    catalog,
    hardware,
    load_hardware,
)

NAMED = ("h100-sxm", "h200", "a100-sxm-80gb", "b200", "mi300x", "tpu-v5e")
ATT_TIME_1 = {
    "hidden_size": 4096,
    "num_heads": 32,
    "head_dim": 128,
    "batch_size": 4,
    "seq_len": 2048,
}


def test_at_least_six_sourced_accelerators() -> None:
    assert set(NAMED) <= set(CATALOG)
    for name in NAMED:
        hw = CATALOG[name]
        assert hw.source and ("datasheet" in hw.source.lower() or "documentation" in hw.source)
        assert hw.peak_tflops > 0 and hw.memory_bandwidth_gb_s > 0
        assert hw.capacity_bytes and hw.interconnect_bandwidth_gb_s > 0
    # spot checks against the datasheets' figures, converted to dense and per direction
    assert CATALOG["h100-sxm"].peak_tflops == Fraction("989.4")
    assert CATALOG["h100-sxm"].interconnect_bandwidth_gb_s == 450  # NVLink 900 GB/s both ways
    assert CATALOG["a100-sxm-80gb"].peak_tflops_fp8 is None  # Ampere has no FP8


@pytest.mark.parametrize("name", NAMED)
def test_every_accelerator_is_usable_by_name(name: str) -> None:
    out = shardcost.metrics("tp", "decode", hardware=name)
    assert out["timing"]["wall_clock_time_ms"] > 0


def test_units_are_decimal() -> None:
    # ATT-TIME-1 on an H100: 1,374,389,534,720 FLOPs / (989.4 * 10^12 FLOP/s) * 10^3 ms
    t = shardcost.metrics("single", hardware="h100-sxm", **ATT_TIME_1)["timing"]
    assert t["compute_time_ms"] == pytest.approx(1_374_389_534_720 / 989.4e12 * 1e3, rel=1e-12)
    # weights 134,217,728 B / (3,350 * 10^9 B/s) * 10^3 ms
    assert t["load_time_ms"] == pytest.approx(134_217_728 / 3350e9 * 1e3, rel=1e-12)


def test_fp8_peak_for_one_byte_elements() -> None:
    one_byte = ATT_TIME_1 | {"bytes_per_elem": 1}
    t = shardcost.metrics("single", hardware="h100-sxm", **one_byte)["timing"]
    assert t["compute_time_ms"] == pytest.approx(1_374_389_534_720 / 1978.9e12 * 1e3, rel=1e-12)
    # a peak given by hand replaces the catalog's FP8 figure too
    t = shardcost.metrics("single", hardware="h100-sxm", peak_tflops=500, **one_byte)["timing"]
    assert t["compute_time_ms"] == pytest.approx(1_374_389_534_720 / 500e12 * 1e3, rel=1e-12)


def test_efficiency_knobs() -> None:
    base = shardcost.metrics("single", hardware="seed-test", **ATT_TIME_1)["timing"]
    assert base["compute_time_ms"] == pytest.approx(1.37438953472, rel=1e-12)  # seed 000
    half = shardcost.metrics(
        "single", hardware="seed-test", compute_efficiency=0.5, memory_efficiency=0.25, **ATT_TIME_1
    )["timing"]
    assert half["compute_time_ms"] == pytest.approx(2 * 1.37438953472, rel=1e-12)
    assert half["load_time_ms"] == pytest.approx(4 * 0.134217728, rel=1e-12)
    # 6 matrix-product kernels (Q, K, V, scores, apply-V, O) x 10 µs = 0.06 ms
    slow = shardcost.metrics("single", hardware="seed-test", kernel_overhead_us=10, **ATT_TIME_1)[
        "timing"
    ]
    assert slow["compute_time_ms"] == pytest.approx(1.37438953472 + 0.06, rel=1e-12)
    with pytest.raises(InvalidValueError, match="a fraction, at most 1"):
        shardcost.metrics("single", hardware="seed-test", link_efficiency=1.5)


def test_user_hardware_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "my-chip"\npeak_tflops = 500\nmemory_bandwidth_gb_s = 2000\n'
        'interconnect_bandwidth_gb_s = 200\nsupports_overlap = true\nsource = "my lab"\n'
    )
    (mine,) = load_hardware(path)
    assert (mine.name, mine.peak_tflops, mine.supports_overlap) == ("my-chip", 500, True)
    t = shardcost.metrics("single", hardware=str(path), **ATT_TIME_1)["timing"]
    assert t["compute_time_ms"] == pytest.approx(1_374_389_534_720 / 500e12 * 1e3, rel=1e-12)
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\npeak_tflops = 500\n')
    with pytest.raises(InputError, match="needs memory_bandwidth_gb_s, interconnect_bandwidth"):
        hardware(str(bad))


def test_unknown_name_lists_the_catalog() -> None:
    with pytest.raises(UnknownNameError, match="h100-sxm, h200"):
        hardware("h900")


def test_the_catalog_is_read_on_first_use_not_at_import() -> None:
    # An audit hook sees every file a fresh interpreter opens.
    code = f"""
import sys
opened = []
sys.addaudithook(lambda event, args: event == "open" and opened.append(str(args[0])))
import shardcost.formulas, shardcost.formulas.hardware
print(opened.count({str(CATALOG_FILE)!r}))
from shardcost.formulas.hardware import CATALOG
print(len(CATALOG) > 0, opened.count({str(CATALOG_FILE)!r}))
CATALOG["h200"], shardcost.formulas.hardware.hardware("b200")
print(opened.count({str(CATALOG_FILE)!r}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "True", "1", "1"]  # read once, when first asked


def test_catalog_is_one_cached_read_only_table() -> None:
    assert catalog() is catalog()
    assert dict(CATALOG) == dict(catalog())
    assert list(CATALOG) == ["seed-test", *(hw.name for hw in load_hardware(CATALOG_FILE))]
    with pytest.raises(TypeError):
        catalog()["mine"] = CATALOG["h200"]  # type: ignore[index]


def test_defaults_are_the_dataclass_defaults() -> None:
    # FIELDS (the named quantities) and Hardware's fields agree, in order; REQUIRED and
    # DEFAULTS are read off the dataclass.
    quantities = [f for f in fields(Hardware) if f.name not in ("name", "description", "source")]
    assert [f.name for f in quantities] == [f.name for f in FIELDS]
    assert REQUIRED == ("peak_tflops", "memory_bandwidth_gb_s", "interconnect_bandwidth_gb_s")
    assert {f.name: f.default for f in quantities if f.default is not MISSING} == DEFAULTS
    assert DEFAULTS["pageable_efficiency"] == Fraction(1, 2)
    # a hardware built from the required keys alone takes the dataclass defaults
    assert build("x", dict.fromkeys(REQUIRED, 1)) == Hardware("x", *[Fraction(1)] * 3)


def test_hbm_capacity_is_binary_as_vendors_mean_it() -> None:
    """A datasheet's "80GB" of HBM is 5 stacks of 16 GiB: 80 × 2^30 bytes, not 80 × 10^9."""
    from shardcost.formulas.hardware import build, hardware

    assert hardware("h100-sxm").capacity_bytes == 80 * 2**30 == 85_899_345_920
    assert hardware("mi300x").capacity_bytes == 192 * 2**30
    base = {"peak_tflops": 1, "memory_bandwidth_gb_s": 1, "interconnect_bandwidth_gb_s": 1}
    assert build("x", {**base, "memory_capacity_gb": 80}).capacity_bytes == 80 * 10**9
    assert build("x", base).capacity_bytes is None
    with pytest.raises(InputError, match="not both"):
        build("x", {**base, "memory_capacity_gb": 80, "memory_capacity_gib": 80})
