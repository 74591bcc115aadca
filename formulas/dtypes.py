"""Element types: bytes per element of weights, activations and the KV cache.

Each tensor class takes its type from a convention (``weight_dtype``,
``activation_dtype``, ``kv_cache_dtype``). The default, ``bytes_per_elem``, keeps the
``b`` dimension in the formulas (what the seeds write); a named type puts its exact size
in them instead, block scales included: MXFP4 is half a byte per element plus a one-byte
scale per 32 elements, 17/32 bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import sympy

from shardcost.errors import InputError
from shardcost.symbolic.dimensions import b


@dataclass(frozen=True)
class DType:
    """One element type: its exact bytes per element (scales included), in words."""

    name: str
    bytes: Fraction
    words: str
    fp8_compute: bool = False  # runs at the chip's FP8 (8-bit) peak when both operands are


def _dtype(name: str, size: Fraction | int, words: str, *, fp8: bool = False) -> DType:
    return DType(name, Fraction(size), words, fp8)


DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        _dtype("fp32", 4, "4 bytes"),
        _dtype("bf16", 2, "2 bytes"),
        _dtype("fp16", 2, "2 bytes"),
        _dtype("fp8", 1, "1 byte; per-tensor or per-block scales are not counted", fp8=True),
        _dtype("int8", 1, "1 byte (a per-tensor or per-channel scale is not counted)", fp8=True),
        _dtype(
            "int4",
            Fraction(1, 2) + Fraction(2, 128),
            "4 bits plus a 16-bit scale per group of 128 (GPTQ/AWQ-style, symmetric): 33/64 byte",
        ),
        _dtype(
            "mxfp4",
            Fraction(1, 2) + Fraction(1, 32),
            "4 bits plus an 8-bit (E8M0) scale per block of 32 (OCP MX): 17/32 byte",
        ),
        _dtype(
            "nvfp4",
            Fraction(1, 2) + Fraction(1, 16),
            "4 bits plus an FP8 (E4M3) scale per block of 16; the per-tensor FP32 scale is "
            "not counted: 9/16 byte",
        ),
    )
}

DTYPE_CONVENTIONS = ("weight_dtype", "activation_dtype", "kv_cache_dtype")
Tensor = Literal["weight", "activation", "kv_cache"]
DEFAULT = "bytes_per_elem"  # the b dimension, as the seeds write it


def element_bytes(conventions: Any, tensor: Tensor) -> sympy.Expr:
    """Bytes per element of ``tensor`` under ``conventions``: the ``b`` dimension by
    default, else the named type's exact size."""
    name = getattr(conventions, f"{tensor}_dtype")
    if name == DEFAULT:
        return b
    return sympy.Rational(DTYPES[name].bytes.numerator, DTYPES[name].bytes.denominator)


def compute_bytes(conventions: Any, bytes_per_elem: int) -> Fraction:
    """The element size the chip computes in: the wider of the weights' and the
    activations' (an FP8 product needs both operands in 8 bits)."""
    sizes = []
    for tensor in ("weight", "activation"):
        name = getattr(conventions, f"{tensor}_dtype", DEFAULT)
        sizes.append(Fraction(bytes_per_elem) if name == DEFAULT else DTYPES[name].bytes)
    return max(sizes)


# torch dtype names in config.json (``torch_dtype`` or ``dtype``).
TORCH_DTYPES = {
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
}


def torch_dtype(raw: object, where: str) -> str:
    """The type a config's ``torch_dtype`` names; InputError naming it when unknown."""
    if isinstance(raw, str) and raw.removeprefix("torch.") in TORCH_DTYPES:
        return TORCH_DTYPES[raw.removeprefix("torch.")]
    known = ", ".join(TORCH_DTYPES)
    raise InputError(f"{where}: torch_dtype={raw!r} is not a type shardcost knows ({known})")


def quantized_dtype(config: Mapping[str, Any], where: str) -> str:
    """The weight type a ``quantization_config`` stores; InputError naming anything else."""
    method = config.get("quant_method")
    bits = config.get("bits", config.get("weight_bits"))
    if method == "fp8":
        return "fp8"
    if method == "mxfp4":
        return "mxfp4"
    if method in ("gptq", "awq") and bits in (4, 8):
        return "int4" if bits == 4 else "int8"
    if method == "modelopt" and str(config.get("quant_algo", "")).upper() == "NVFP4":
        return "nvfp4"
    if method == "modelopt" and str(config.get("quant_algo", "")).upper() == "FP8":
        return "fp8"
    raise InputError(
        f"{where}: quantization_config quant_method={method!r}"
        + (f" bits={bits!r}" if bits is not None else "")
        + " is not a type shardcost knows (fp8, mxfp4, gptq/awq with 4 or 8 bits, "
        "modelopt FP8/NVFP4); give weight_dtype= instead"
    )
