"""Calibration: class figures in the timing model, fits worked by hand, the fitted file
read back everywhere, and seed 002's held-out half predicted within 10 %."""

from __future__ import annotations

from pathlib import Path

import pytest

import shardcost
from shardcost.cli import main
from shardcost.errors import InputError
from shardcost.formulas.calibration import calibrate, hardware_toml
from shardcost.formulas.hardware import hardware, load_hardware

SEED_002 = Path(__file__).resolve().parents[2] / "examples" / "seed-002-a100.csv"
CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"
HEADER = "layer,host_memory,bytes,measured_us\n"
PINNED = (  # seed 002's pinned copies: bytes, µs
    (2_097_152, 131.89),
    (4_194_304, 219.52),
    (8_388_608, 365.27),
    (16_777_216, 675.27),
)


def _copies(tmp_path: Path, rows: tuple[tuple[int, float], ...]) -> Path:
    path = tmp_path / "copies.csv"
    path.write_text(HEADER + "".join(f"host_copy,pinned,{b},{t}\n" for b, t in rows))
    return path


def test_a_class_latency_adds_after_the_roofline_max() -> None:
    kw = {"hardware": "a100-sxm-80gb", "batch_size": 1, "past_seq_len": 2048}
    base = shardcost.metrics("single", "decode", **kw)["timing"]
    slow = shardcost.metrics("single", "decode", **kw, attention_latency_us=20)["timing"]
    # 20 µs = 0.02 ms on top of max(compute, load); compute and load themselves unchanged
    assert slow["wall_clock_time_ms"] == pytest.approx(base["wall_clock_time_ms"] + 0.02)
    assert slow["load_time_ms"] == base["load_time_ms"]
    # an FFN is a gemm layer: the attention class's latency does not touch it
    ffn = {"layer": "ffn", "hardware": "a100-sxm-80gb", "batch_size": 1}
    assert (
        shardcost.metrics("single", "decode", **ffn, attention_latency_us=20)["timing"]
        == (shardcost.metrics("single", "decode", **ffn)["timing"])
    )
    # a class's bandwidth fraction multiplies the chip's: half of it doubles the load time
    half = shardcost.metrics("single", "decode", **kw, attention_memory_efficiency=0.5)["timing"]
    assert half["load_time_ms"] == pytest.approx(2 * base["load_time_ms"])


def test_two_copies_fix_the_latency_and_the_rate(tmp_path: Path) -> None:
    fitted = calibrate(_copies(tmp_path, (PINNED[0], PINNED[2])), "a100-sxm-80gb")
    (report,) = fitted.classes
    c = report.coefficients
    # slope (365.27 − 131.89) µs / (8,388,608 − 2,097,152) bytes: 26,957.99 bytes/µs, of
    # the 32 GB/s link 0.842437; latency 131.89 − 2,097,152 / 26,957.99 = 54.0967 µs
    assert c.memory_efficiency == pytest.approx(0.842437, abs=1e-6)
    assert c.latency_us == pytest.approx(54.0967, abs=1e-4)
    assert fitted.fitted.pinned_latency_us == pytest.approx(54.0967, abs=1e-4)
    # before: 2 MiB at 32 GB/s = 65.536 µs against 131.89: −50.3 %; the fit is exact
    assert report.before.max == pytest.approx(0.50310, abs=1e-5)
    assert report.fit.max == pytest.approx(0, abs=1e-9)


def test_the_held_out_half_is_predicted_from_the_other(tmp_path: Path) -> None:
    fitted = calibrate(_copies(tmp_path, PINNED), "a100-sxm-80gb", hold_out_half=True)
    (report,) = fitted.classes
    # fitted on 2 and 8 MiB (above); 4 MiB: 54.0967 + 4,194,304 / 26,957.99 = 209.68 µs
    # against 219.52 (−4.48 %); 16 MiB: 54.0967 + 622.35 = 676.45 against 675.27 (+0.17 %)
    assert report.held_out is not None and report.held_out.rows == 2
    assert report.held_out.max == pytest.approx(0.0448, abs=2e-4)
    assert report.held_out.mean == pytest.approx((0.0448 + 0.0017) / 2, abs=2e-4)


def test_the_fitted_file_reads_back_as_the_fitted_chip(tmp_path: Path) -> None:
    fitted = calibrate(_copies(tmp_path, PINNED), "a100-sxm-80gb").fitted
    path = tmp_path / "fitted.toml"
    path.write_text(hardware_toml(fitted))
    (back,) = load_hardware(path)
    assert back.name == "a100-sxm-80gb-fitted"
    assert back.pinned_latency_us == pytest.approx(float(fitted.pinned_latency_us))
    assert back.peak_tflops == hardware("a100-sxm-80gb").peak_tflops


def test_a_fitted_file_works_with_metrics_model_and_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fitted.toml"
    fitted = calibrate(SEED_002, "a100-sxm-80gb").fitted
    path.write_text(hardware_toml(fitted))
    hw = str(path)
    assert main(["metrics", "single", "--phase", "decode", "--hardware", hw]) == 0
    config = str(CONFIGS / "llama-3.2-1b.json")
    assert main(["model", config, "--phase", "decode", "--hardware", hw]) == 0
    assert main(["plan", config, "--chips", "2", "--hardware", hw]) == 0
    assert main(["kv-tier", config, "--hardware", hw, "past_seq_len=4096,512"]) == 0
    capsys.readouterr()
    # the attention class's latency reaches a model's attention rows
    got = shardcost.model_metrics(config, "decode", hardware=hw)
    base = shardcost.model_metrics(config, "decode", hardware="a100-sxm-80gb")
    parts = {c["name"]: c["timing"]["wall_clock_time_ms"] for c in got["components"]}
    before = {c["name"]: c["timing"]["wall_clock_time_ms"] for c in base["components"]}
    assert parts["attention"] > before["attention"] + float(fitted.attention_latency_us) / 1e3 / 2


def test_seed_002_held_out_half_within_ten_percent() -> None:
    """Done-when of the calibration issue: fit on half of seed 002's attention and
    transfer rows, predict the other half within 10 % mean relative error."""
    fitted = calibrate(SEED_002, "a100-sxm-80gb", hold_out_half=True)
    before = fitted.overall("before")
    held = fitted.overall("held_out")
    # the roofline misses these small kernels by far: 4.11 µs against 25.21 at 512 positions
    assert before.max > 0.9 and before.mean > 0.4
    assert held.rows == 8 and held.mean < 0.10
    # every decode-attention row is memory-bound: the compute fraction is not measured, and
    # stays at the chip's rather than slowing compute-bound attention elsewhere
    attention = next(c for c in fitted.classes if c.coefficients.group == "attention")
    assert attention.coefficients.compute_efficiency == 1.0
    assert "not identified" in attention.coefficients.note
    assert fitted.fitted.attention_compute_efficiency == 1


def test_too_few_rows_to_fit_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"host copy \(pinned\): 1 row; a fit needs at least 2"):
        calibrate(_copies(tmp_path, PINNED[:1]), "a100-sxm-80gb")
    with pytest.raises(InputError, match="folds=1"):
        calibrate(_copies(tmp_path, PINNED), "a100-sxm-80gb", folds=1)


def test_the_command_writes_the_file_and_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, svg = tmp_path / "fit.toml", tmp_path / "fit.svg"
    args = ["calibrate", str(SEED_002), "--hardware", "a100-sxm-80gb", "-o", str(out)]
    assert main([*args, "--hold-out-half", "--plot", str(svg)]) == 0
    text = capsys.readouterr().out
    assert "attention kernels" in text and "held-out half" in text and "all rows" in text
    assert out.read_text().startswith("# Written by shardcost calibrate")
    assert svg.read_text().lstrip().startswith("<?xml")
    assert main([*args[:-1], str(tmp_path / "fit.json")]) == 2
    assert "the fitted hardware is a .toml file" in capsys.readouterr().err


def test_collectives_fit_the_latency_per_step_and_the_link(tmp_path: Path) -> None:
    # Measured as if each of a ring all-reduce's 2·(8 − 1) = 14 steps took 5 µs and the
    # wire ran at 0.8 of a100-sxm-80gb's 300 GB/s: t = 14·5 + (2·7/8)·n / 240,000 µs
    sizes = (1_048_576, 16_777_216, 268_435_456)
    rows = "".join(f"collective,all-reduce,8,{n},{70 + 1.75 * n / 240_000}\n" for n in sizes)
    path = tmp_path / "ar.csv"
    path.write_text("layer,kind,group,bytes,measured_us\n" + rows)
    fitted = calibrate(path, "a100-sxm-80gb")
    (report,) = fitted.classes
    assert report.coefficients.latency_us == pytest.approx(5, rel=1e-6)
    assert report.coefficients.memory_efficiency == pytest.approx(0.8, rel=1e-6)
    assert float(fitted.fitted.interconnect_latency_us) == pytest.approx(5, rel=1e-6)
    assert float(fitted.fitted.link_efficiency) == pytest.approx(0.8, rel=1e-6)
    # before: 14 µs of latency and the wire at the full 300 GB/s
    (first, *_) = report.points
    assert first[1] == pytest.approx(14 + 1.75 * 1_048_576 / 300_000)
