"""Hardware descriptions: the five fields the timing model reads, and a named catalog."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import sympy

from shardcost.errors import lookup


@dataclass(frozen=True)
class HardwareField:
    """One hardware quantity: its name, symbol and unit."""

    name: str
    symbol: sympy.Symbol | None  # None for the supports_overlap flag
    latex: str
    meaning: str
    unit: str


def _field(name: str, short: str, latex: str, meaning: str, unit: str) -> HardwareField:
    return HardwareField(name, sympy.Symbol(short, positive=True), latex, meaning, unit)


PEAK_TFLOPS = _field(
    "peak_tflops", "P", r"P_{\mathrm{peak}}", "peak dense throughput per chip", "TFLOP/s"
)
MEMORY_BANDWIDTH = _field(
    "memory_bandwidth_gb_s", "BW_mem", r"BW_{\mathrm{mem}}", "memory bandwidth per chip", "GB/s"
)
INTERCONNECT_BANDWIDTH = _field(
    "interconnect_bandwidth_gb_s",
    "BW_ic",
    r"BW_{\mathrm{ic}}",
    "interconnect bandwidth per chip",
    "GB/s",
)
INTERCONNECT_LATENCY = HardwareField(
    "interconnect_latency_us",
    sympy.Symbol("L_ic", nonnegative=True),
    r"L_{\mathrm{ic}}",
    "latency of one collective",
    "µs",
)
SUPPORTS_OVERLAP = HardwareField(
    "supports_overlap", None, "", "communication overlaps compute and loads", "boolean"
)

NUMERIC_FIELDS: tuple[HardwareField, ...] = (
    PEAK_TFLOPS,
    MEMORY_BANDWIDTH,
    INTERCONNECT_BANDWIDTH,
    INTERCONNECT_LATENCY,
)
FIELDS: tuple[HardwareField, ...] = (*NUMERIC_FIELDS, SUPPORTS_OVERLAP)
FIELDS_BY_NAME: dict[str, HardwareField] = {f.name: f for f in FIELDS}


@dataclass(frozen=True)
class Hardware:
    """One accelerator as the timing model sees it. Decimal units: 1 GB/s = 10^9 B/s."""

    name: str
    peak_tflops: Fraction
    memory_bandwidth_gb_s: Fraction
    interconnect_bandwidth_gb_s: Fraction
    interconnect_latency_us: Fraction
    supports_overlap: bool
    description: str = ""
    source: str = ""

    def values(self) -> dict[sympy.Symbol, Fraction]:
        """The numeric fields keyed by their symbols."""
        return {f.symbol: getattr(self, f.name) for f in NUMERIC_FIELDS}

    def fields(self) -> dict[str, Fraction | bool]:
        """Every field by name, in catalog order."""
        return {f.name: getattr(self, f.name) for f in FIELDS}


CATALOG: dict[str, Hardware] = {
    hw.name: hw
    for hw in (
        Hardware(
            "seed-test",
            Fraction(1000),
            Fraction(1000),
            Fraction(100),
            Fraction(1),
            False,
            description="the simplified test hardware of seed 000: 1 PFLOP/s, 1 TB/s, "
            "100 GB/s links, 1 µs latency",
            source="seed 000 (000_e2edf87efce70075.txt), 'Test Hardware'",
        ),
    )
}


def hardware(name: str) -> Hardware:
    """The catalog entry called ``name``; UnknownNameError naming the choices."""
    return lookup(CATALOG, name, "hardware")
