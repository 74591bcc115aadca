"""Steps many layers share, declared once: the tokens of the batch, the input and output
activations, the per-chip totals, and the KV cache of a layer that keeps none; and the
accounting they all assume, in words.

A layer applies them like its own steps (``ACT_OUTPUT(t, hidden_bytes(tokens))``); where
its words differ, it says so per use (``note=...``) or declares a variant with
``dataclasses.replace`` (same key and symbol, other words).
"""

from __future__ import annotations

import sympy

from shardcost.symbolic import Section, StepSpec, Trace
from shardcost.symbolic.dimensions import b, d

from .primitives import Size, tensor_bytes

# The accounting every layer states among its assumptions, in the same words.
MATMUL_ASSUMED = "A matrix product X[m, k] @ W[k, n] costs 2·m·k·n FLOPs (a multiply and an add)."
TOTALS_ASSUMED = (
    "Communication bytes are payload (logical tensor) bytes per chip, not ring-injected "
    "bytes; a collective over a one-chip group sends nothing.",
    "Aggregate metrics are per-chip values times the number of chips.",
)

_D, _A = Section.DERIVED, Section.ACTIVATIONS

# The tokens of the batch: prefill's whole sequences, or decode's new tokens.
TOKENS = StepSpec("tokens", "tokens in the batch", _D, "tokens", "M", note="B × S")
NEW_TOKENS = StepSpec("tokens", "new tokens in the batch", _D, "tokens", "M_q", "M_{q}", "B × T")

# The activations every layer holds: what comes in and what goes out.
ACT_INPUT = StepSpec("act_input", "input X", _A, "bytes", "A_x", "A_{X}")
ACT_OUTPUT = StepSpec("act_output", "output Y", _A, "bytes", "A_y", "A_{Y}")

# The per-chip totals a Cost is made of (the communication total is ``finish``'s).
FLOPS = StepSpec("flops", "FLOPs per chip", Section.FLOPS, "FLOPs", "F")
WEIGHT_BYTES = StepSpec("weight_bytes", "weight bytes per chip", Section.WEIGHTS, "bytes", "W")
ACTIVATION_BYTES = StepSpec("activation_bytes", "activation bytes per chip", _A, "bytes", "A")
KV_CACHE_BYTES = StepSpec(
    "kv_cache_bytes", "KV-cache bytes per chip", Section.KV_CACHE, "bytes", "KV"
)


def hidden_bytes(tokens: Size, width: Size = d, *, bytes_per_elem: Size = b) -> sympy.Expr:
    """Bytes of an activation ``[tokens, width]`` (the hidden X[M, d] unless told), at
    ``bytes_per_elem`` (the ``b`` dimension unless told)."""
    return tensor_bytes(tokens, width, bytes_per_elem=bytes_per_elem)


def no_kv_cache(t: Trace, why: str) -> sympy.Symbol:
    """The KV-cache step of a layer that keeps none (``why``, in a few words)."""
    return KV_CACHE_BYTES(t, sympy.S.Zero, note=why)
