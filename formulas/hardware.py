"""Hardware: the fields the timing model reads, and a catalog of sourced accelerators.

The catalog (``hardware.toml`` beside this module) holds vendor datasheet figures, each
entry with a ``source`` naming its document and table. Decimal units throughout:
1 TFLOP/s = 10^12 FLOP/s, 1 GB/s = 10^9 B/s, 1 GB = 10^9 B. Users add their own
accelerators in a TOML file of the same keys, named where a catalog name is taken.

Efficiency knobs scale the peaks (achieved fraction of peak compute, memory and link
bandwidth) and add a fixed overhead per kernel; their defaults (1, 1, 1, 0) leave the
peaks as they are, which is what seed 000's figures assume.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, dataclass, replace
from dataclasses import fields as dataclass_fields
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType

import sympy

from shardcost.errors import InputError, InvalidValueError, UnknownNameError
from shardcost.files import printable

CATALOG_FILE = Path(__file__).resolve().parent / "hardware.toml"


@dataclass(frozen=True)
class HardwareField:
    """One hardware quantity: its name, symbol and unit."""

    name: str
    symbol: sympy.Symbol | None  # None for fields the formulas do not read directly
    latex: str
    meaning: str
    unit: str


def _field(
    name: str, short: str, latex: str, meaning: str, unit: str, *, may_be_zero: bool = False
) -> HardwareField:
    """A field the formulas read, as a positive symbol (nonnegative when ``may_be_zero``)."""
    sign = {"nonnegative": True} if may_be_zero else {"positive": True}
    return HardwareField(name, sympy.Symbol(short, **sign), latex, meaning, unit)


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
    "interconnect bandwidth per chip, per direction",
    "GB/s",
)
INTERCONNECT_LATENCY = _field(
    "interconnect_latency_us",
    "L_ic",
    r"L_{\mathrm{ic}}",
    "latency of one collective",
    "µs",
    may_be_zero=True,
)
COMPUTE_EFFICIENCY = _field(
    "compute_efficiency", "eta_c", r"\eta_{c}", "achieved fraction of peak compute", "fraction"
)
MEMORY_EFFICIENCY = _field(
    "memory_efficiency", "eta_m", r"\eta_{m}", "achieved fraction of memory bandwidth", "fraction"
)
LINK_EFFICIENCY = _field(
    "link_efficiency", "eta_l", r"\eta_{l}", "achieved fraction of link bandwidth", "fraction"
)
KERNEL_OVERHEAD = _field(
    "kernel_overhead_us",
    "t_k",
    r"t_{k}",
    "fixed overhead per kernel (one per matrix-product step)",
    "µs",
    may_be_zero=True,
)
FIXED_LATENCY = _field(
    "fixed_latency_us",
    "t_f",
    r"t_{f}",
    "fixed time per layer pass, added to its roofline time (launch, synchronisation, a "
    "small kernel's ramp); a class's own latency adds to it",
    "µs",
    may_be_zero=True,
)
SUPPORTS_OVERLAP = HardwareField(
    "supports_overlap", None, "", "communication overlaps compute and loads", "boolean"
)
PEAK_TFLOPS_FP8 = HardwareField(
    "peak_tflops_fp8",
    None,
    "",
    "peak dense FP8 throughput (used when bytes_per_elem = 1)",
    "TFLOP/s",
)
MEMORY_CAPACITY = HardwareField(
    "memory_capacity_gb", None, "", "memory capacity per chip, decimal (10^9 bytes)", "GB"
)
# HBM is sold in binary units: a stack is 16 or 24 GiB, so a datasheet's "80GB" is
# 5 × 16 GiB = 85,899,345,920 bytes. The catalog gives capacities this way.
MEMORY_CAPACITY_GIB = HardwareField(
    "memory_capacity_gib",
    None,
    "",
    "memory (HBM) capacity per chip, binary (2^30 bytes), as HBM datasheets mean 'GB'",
    "GiB",
)
HOST_LINK_BANDWIDTH = HardwareField(
    "host_link_bandwidth_gb_s",
    None,
    "",
    "host link (PCIe) bandwidth per chip, per direction (KV-cache tiers)",
    "GB/s",
)
PINNED_EFFICIENCY = HardwareField(
    "pinned_efficiency",
    None,
    "",
    "achieved fraction of the host link copying from pinned host memory",
    "fraction",
)
PAGEABLE_EFFICIENCY = HardwareField(
    "pageable_efficiency",
    None,
    "",
    "achieved fraction of the host link copying from pageable host memory",
    "fraction",
)

# What the timing formulas read, in order.
NUMERIC_FIELDS: tuple[HardwareField, ...] = (
    PEAK_TFLOPS,
    MEMORY_BANDWIDTH,
    INTERCONNECT_BANDWIDTH,
    INTERCONNECT_LATENCY,
    COMPUTE_EFFICIENCY,
    MEMORY_EFFICIENCY,
    LINK_EFFICIENCY,
    KERNEL_OVERHEAD,
    FIXED_LATENCY,
)

# Kernel classes: each layer's kernels take its class's achieved fractions (multiplying
# the chip-wide ones) and fixed latency (adding to fixed_latency_us). A layer not named
# here runs matrix products: gemm.
KERNEL_CLASSES = ("gemm", "attention", "memory")
# the embedding gathers rows: an elementwise, memory-bound kernel
LAYER_CLASSES = {
    "attention": "attention",
    "mla": "attention",
    "attention_core": "attention",
    "embedding": "memory",
}


def kernel_class(layer: str) -> str:
    """The kernel class whose figures time ``layer``."""
    return LAYER_CLASSES.get(layer, "gemm")


def _class_fields() -> tuple[HardwareField, ...]:
    out = []
    for name in KERNEL_CLASSES:
        out += [
            HardwareField(
                f"{name}_compute_efficiency",
                None,
                "",
                f"achieved fraction of peak compute in {name} kernels (times compute_efficiency)",
                "fraction",
            ),
            HardwareField(
                f"{name}_memory_efficiency",
                None,
                "",
                f"achieved fraction of memory bandwidth in {name} kernels (times "
                "memory_efficiency)",
                "fraction",
            ),
            HardwareField(
                f"{name}_latency_us",
                None,
                "",
                f"fixed time per pass of a {name} layer (adds to fixed_latency_us)",
                "µs",
            ),
        ]
    for memory in ("pinned", "pageable"):
        out.append(
            HardwareField(
                f"{memory}_latency_us",
                None,
                "",
                f"fixed time of one host-to-device copy from {memory} host memory",
                "µs",
            )
        )
    return tuple(out)


CLASS_FIELDS = _class_fields()
FIELDS: tuple[HardwareField, ...] = (
    *NUMERIC_FIELDS,
    SUPPORTS_OVERLAP,
    PEAK_TFLOPS_FP8,
    MEMORY_CAPACITY_GIB,
    MEMORY_CAPACITY,
    HOST_LINK_BANDWIDTH,
    PINNED_EFFICIENCY,
    PAGEABLE_EFFICIENCY,
    *CLASS_FIELDS,
)
FIELDS_BY_NAME: dict[str, HardwareField] = {f.name: f for f in FIELDS}
FRACTIONS = (
    "compute_efficiency",
    "memory_efficiency",
    "link_efficiency",
    "pinned_efficiency",
    "pageable_efficiency",
    *(f"{c}_{kind}_efficiency" for c in KERNEL_CLASSES for kind in ("compute", "memory")),
)


@dataclass(frozen=True)
class Hardware:
    """One accelerator as the timing model sees it."""

    name: str
    peak_tflops: Fraction
    memory_bandwidth_gb_s: Fraction
    interconnect_bandwidth_gb_s: Fraction
    interconnect_latency_us: Fraction = Fraction(1)
    compute_efficiency: Fraction = Fraction(1)
    memory_efficiency: Fraction = Fraction(1)
    link_efficiency: Fraction = Fraction(1)
    kernel_overhead_us: Fraction = Fraction(0)
    fixed_latency_us: Fraction = Fraction(0)
    supports_overlap: bool = False
    peak_tflops_fp8: Fraction | None = None
    memory_capacity_gib: Fraction | None = None
    memory_capacity_gb: Fraction | None = None
    host_link_bandwidth_gb_s: Fraction | None = None
    # Not vendor figures: pinned copies run at the link's rate; pageable ones are staged
    # by the driver through a pinned bounce buffer, assumed to halve the rate.
    pinned_efficiency: Fraction = Fraction(1)
    pageable_efficiency: Fraction = Fraction(1, 2)
    # Fitted per kernel class (shardcost calibrate); the defaults change nothing.
    gemm_compute_efficiency: Fraction = Fraction(1)
    gemm_memory_efficiency: Fraction = Fraction(1)
    gemm_latency_us: Fraction = Fraction(0)
    attention_compute_efficiency: Fraction = Fraction(1)
    attention_memory_efficiency: Fraction = Fraction(1)
    attention_latency_us: Fraction = Fraction(0)
    memory_compute_efficiency: Fraction = Fraction(1)
    memory_memory_efficiency: Fraction = Fraction(1)
    memory_latency_us: Fraction = Fraction(0)
    pinned_latency_us: Fraction = Fraction(0)
    pageable_latency_us: Fraction = Fraction(0)
    description: str = ""
    source: str = ""

    @property
    def capacity_bytes(self) -> int | None:
        """The memory capacity per chip in bytes: ``memory_capacity_gib`` × 2^30, or
        ``memory_capacity_gb`` × 10^9; None when neither is given (nothing is checked)."""
        if self.memory_capacity_gib is not None:
            return int(self.memory_capacity_gib * 2**30)
        if self.memory_capacity_gb is not None:
            return int(self.memory_capacity_gb * 10**9)
        return None

    def peak_for(self, bytes_per_elem: int | Fraction) -> Fraction:
        """The compute peak the timing model uses: FP8's when the operands take one byte
        or less, when the chip has one; else the (BF16) peak."""
        if bytes_per_elem <= 1 and self.peak_tflops_fp8 is not None:
            return self.peak_tflops_fp8
        return self.peak_tflops

    def values(self, bytes_per_elem: int | Fraction = 2) -> dict[sympy.Symbol, Fraction]:
        """The fields the formulas read, keyed by their symbols."""
        out = {f.symbol: getattr(self, f.name) for f in NUMERIC_FIELDS}
        out[PEAK_TFLOPS.symbol] = self.peak_for(bytes_per_elem)
        return out

    def for_class(self, kernel: str) -> Hardware:
        """The chip as a ``kernel``-class layer sees it: the class's achieved fractions
        times the chip-wide ones, its latency added to fixed_latency_us."""
        if kernel not in KERNEL_CLASSES:
            return self
        # every class's own figures folded in and set back to neutral: applying it twice
        # changes nothing
        neutral = {
            f"{c}_{x}_efficiency": Fraction(1)
            for c in KERNEL_CLASSES
            for x in ("compute", "memory")
        }
        neutral |= {f"{c}_latency_us": Fraction(0) for c in KERNEL_CLASSES}
        return replace(
            self,
            compute_efficiency=self.compute_efficiency
            * getattr(self, f"{kernel}_compute_efficiency"),
            memory_efficiency=self.memory_efficiency * getattr(self, f"{kernel}_memory_efficiency"),
            fixed_latency_us=self.fixed_latency_us + getattr(self, f"{kernel}_latency_us"),
            **neutral,
        )

    def copy_latency_us(self, memory: str) -> Fraction:
        """The fixed time of one host copy from ``memory`` (pinned or pageable)."""
        return self.pinned_latency_us if memory == "pinned" else self.pageable_latency_us

    def fields(self) -> dict[str, Fraction | bool | None]:
        """Every field by name, in FIELDS order."""
        return {f.name: getattr(self, f.name) for f in FIELDS}


# The fields one must give, and the defaults of the rest: read off Hardware's own fields.
REQUIRED: tuple[str, ...] = tuple(
    f.name for f in dataclass_fields(Hardware) if f.name in FIELDS_BY_NAME and f.default is MISSING
)
DEFAULTS: dict[str, Fraction | bool | None] = {
    f.name: f.default
    for f in dataclass_fields(Hardware)
    if f.name in FIELDS_BY_NAME and f.name not in REQUIRED
}
ZERO_ALLOWED = (  # the rest must be > 0
    "interconnect_latency_us",
    "kernel_overhead_us",
    "fixed_latency_us",
    *(f"{c}_latency_us" for c in KERNEL_CLASSES),
    "pinned_latency_us",
    "pageable_latency_us",
)


# A hardware figure: a plain decimal (no digit separators, no other scripts' digits), and
# within a range where every time computed from it stays a finite, normal float.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE](?P<exp>[+-]?[0-9]{1,12}))?")
MAX_EXPONENT = 30
NUMBER_RANGE = (Fraction(1, 10**15), Fraction(10**15))
_RANGE_TEXT = "1e-15 and 1e15 (or 0 where zero is allowed)"


def number(key: str, raw: object, *, allow_zero: bool | None = None) -> Fraction:
    """A finite number, exact: > 0 (>= 0 for the fields in ZERO_ALLOWED, or when
    ``allow_zero``), and at most 1 for an efficiency."""
    if allow_zero is None:
        allow_zero = key in ZERO_ALLOWED
    if isinstance(raw, Fraction):  # a figure already checked (the catalog's, a default)
        value = raw
    else:
        text = raw.strip() if isinstance(raw, str) else None
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            text = repr(raw)  # a float's shortest exact-round-trip decimal
        match = _DECIMAL.fullmatch(text) if text is not None and len(text) <= 60 else None
        if match is None:
            shown = printable(repr(raw) if len(repr(raw)) <= 60 else repr(raw)[:57] + "...")
            raise InvalidValueError(
                f"{key}={shown} is not a number; {key} takes a decimal number such as 989.4 "
                "or 1.5e3 (ASCII digits, no separators)"
            )
        if match.group("exp") and abs(int(match.group("exp"))) > MAX_EXPONENT:
            raise InvalidValueError(
                f"{key}={printable(text)} is out of range; {key} takes a number between "
                f"{_RANGE_TEXT}"
            )
        value = Fraction(text)
    if value != 0 and not NUMBER_RANGE[0] <= abs(value) <= NUMBER_RANGE[1]:
        raise InvalidValueError(
            f"{key}={printable(raw)} is out of range; {key} takes a number between {_RANGE_TEXT}"
        )
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "greater than zero"
        raise InvalidValueError(f"{key}={raw!r} is not allowed; {key} takes a number {bound}")
    if key in FRACTIONS and value > 1:
        raise InvalidValueError(f"{key}={raw!r} is not allowed; {key} is a fraction, at most 1")
    return value


def build(name: str, values: dict[str, object], *, where: str = "") -> Hardware:
    """A Hardware from field values (text or numbers), checked; ``where`` prefixes errors."""
    at = f"{where}: " if where else ""
    unknown = [k for k in values if k not in FIELDS_BY_NAME]
    if unknown:
        raise InputError(
            f"{at}unknown hardware field {unknown[0]!r}; fields: {', '.join(FIELDS_BY_NAME)}"
        )
    missing = [k for k in REQUIRED if k not in values]
    if missing:
        raise InputError(f"{at}hardware needs {', '.join(missing)}")
    if "memory_capacity_gb" in values and "memory_capacity_gib" in values:
        raise InputError(
            f"{at}give memory_capacity_gib (binary, as HBM datasheets mean GB) or "
            "memory_capacity_gb (decimal), not both"
        )
    out: dict[str, object] = dict(DEFAULTS)
    try:
        for key, raw in values.items():
            if key == SUPPORTS_OVERLAP.name:
                from .conventions import parse_bool  # a hardware file may say "true"

                out[key] = parse_bool(key, raw)
            else:
                out[key] = number(key, raw)
    except InputError as exc:
        raise type(exc)(f"{at}{exc}") from None  # the same kind of error, located
    return Hardware(name, **out)  # type: ignore[arg-type]


MAX_HARDWARE_BYTES = 1 << 20  # a hardware file is a few KB; a larger one is refused, unread


def _read(path: Path) -> dict:
    import tomllib

    from shardcost.files import printable, read_text

    text = read_text(path, "a hardware TOML file", MAX_HARDWARE_BYTES)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{printable(path)}: malformed TOML: {exc}") from None
    except RecursionError:
        raise InputError(f"{printable(path)}: nested too deeply to be a hardware file") from None


def load_hardware(path: str | Path) -> tuple[Hardware, ...]:
    """The accelerators in a TOML file: [[accelerator]] tables, or one table's keys at
    the top level."""
    path = Path(path)
    data = _read(path)
    entries = data.get("accelerator", [data] if "name" in data else [])
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: no accelerator: give [[accelerator]] tables with a name")
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InputError(f"{path}: every accelerator needs a name")
        values = {k: v for k, v in entry.items() if k not in ("name", "description", "source")}
        hw = build(entry["name"], values, where=f"{path} [{entry['name']}]")
        out.append(
            replace(
                hw,
                description=str(entry.get("description", "")),
                source=str(entry.get("source", "")),
            )
        )
    return tuple(out)


@functools.cache
def catalog() -> Mapping[str, Hardware]:
    """The catalog: seed 000's test hardware, then every sourced accelerator. Read from
    CATALOG_FILE on the first call, not at import."""
    seed = Hardware(
        "seed-test",
        Fraction(1000),
        Fraction(1000),
        Fraction(100),
        description="the simplified test hardware of seed 000: 1 PFLOP/s, 1 TB/s, "
        "100 GB/s links, 1 µs latency",
        source="seed 000 (000_e2edf87efce70075.txt), 'Test Hardware'",
    )
    return MappingProxyType({hw.name: hw for hw in (seed, *load_hardware(CATALOG_FILE))})


def hardware(name: str) -> Hardware:
    """The catalog entry called ``name``, or the one accelerator in a TOML file (a name
    ending in .toml); UnknownNameError naming the catalog otherwise."""
    if name.endswith(".toml"):
        found = load_hardware(name)
        if len(found) != 1:
            names = ", ".join(hw.name for hw in found)
            raise InputError(f"{name}: holds {len(found)} accelerators ({names}); give one")
        return found[0]
    table = catalog()
    if name not in table:
        allowed = ", ".join(table)
        raise UnknownNameError(
            f"hardware {name!r} is unknown; choices: {allowed} (or a FILE.toml of your own)"
        )
    return table[name]


class _Catalog(Mapping[str, Hardware]):
    """The catalog as a mapping that reads the file on first use: ``CATALOG["h100-sxm"]``."""

    def __getitem__(self, name: str) -> Hardware:
        return catalog()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(catalog())

    def __len__(self) -> int:
        return len(catalog())

    def __repr__(self) -> str:
        return repr(dict(self))


CATALOG: Mapping[str, Hardware] = _Catalog()
