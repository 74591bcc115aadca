"""The attention kernel alone, as FlashAttention and decode-attention benchmarks time it.

    O = softmax(Q Kᵀ / √dh) V        Q[B, h, S_q, dh]    K, V[B, h_kv, S_k, dh]

No projections and no weights: Q comes in, O goes out, and K and V are the cache (in
decode, what the kernel reads). Its sequence, its products, its cache and its
conventions are attention's (``attention.py``): the keys a new token attends, what the
cache keeps under a window, dense or exact pairs. There is no model width here, so no
relation ties h·dh to one. The kernel runs per rank: it sends nothing.

This layer plays no part in a model (``Role.KERNEL``): a model's attention is the
``attention`` layer, projections included.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from shardcost.symbolic import Cost, Section, StepSpec, Trace, finish
from shardcost.symbolic.dimensions import TENSOR_PARALLEL, B, S, dh, tp
from shardcost.symbolic.verify import Claim, ClaimKind, Term

from ..conventions import Conventions, Phase
from ..dtypes import element_bytes
from ..primitives import tensor_bytes
from ..registry import Checks, Layout, Role, get_layout, layer, layout, ref
from ..sharding import heads_over
from ..steps import (
    ACT_INPUT,
    ACT_OUTPUT,
    ACTIVATION_BYTES,
    FLOPS,
    MATMUL_ASSUMED,
    TOTALS_ASSUMED,
    WEIGHT_BYTES,
)
from .attention import (
    _COPIES,
    Shard,
    _claims,
    _sequence,
    _trace,
    attention_products,
    kv_cache,
)

# attention's, less the projections and the weights' type
_CONVENTIONS = (
    "attention_keys_include_new_token",
    "kv_includes_new_token",
    "activation_dtype",
    "kv_cache_dtype",
    "attention_window",
    "sliding_window_kv",
    "attention_flops",
)


def _kernel_claims(lay: Layout, phase: Phase, conv: Conventions, cost: Cost) -> list[Claim]:
    """Attention's own (a window adds nothing, exact pairs within the dense product), and
    that the kernel is the attention layer's same layout less its projections."""
    full = get_layout(lay.name, "attention").cost(phase, conv)
    steps = full.derivation
    products = steps.resolve(steps.step("scores").symbol + steps.step("apply_v").symbol)
    mine = cost.metrics
    return [
        *_claims(lay, phase, conv, cost),
        Claim(
            "attention less its projections",
            f"FLOPs per chip are attention {lay.name}'s scores and P·V, KV bytes per chip "
            "its cache",
            ClaimKind.EQUAL,
            (
                Term("flops_per_chip", mine["flops_per_chip"], products),
                Term(
                    "kv_cache_per_chip",
                    mine["kv_cache_per_chip"],
                    full.metrics["kv_cache_per_chip"],
                ),
            ),
        ),
    ]


LAYER = layer(
    "attention_core",
    role=Role.KERNEL,
    conventions=_CONVENTIONS,
    claims=_kernel_claims,
    assumptions=(
        "The attention kernel alone: Q·Kᵀ, softmax and P·V over the KV cache; no Q, K, V "
        "or O projections, so no weights.",
        MATMUL_ASSUMED,
        "Softmax and the 1/√dh scaling count no FLOPs. The two products are timed as two "
        "kernels (kernel_overhead_us each), though FlashAttention fuses them into one.",
        "Under attention_flops=dense causal masking is not halved: every query is charged for "
        "every key of the product, as a masked kernel computes them; attention_flops=exact "
        "charges only the query-key pairs attended.",
        "Resident activations are the query Q in and the output O out, B·S_q·h·dh elements "
        "each (S_q: the prompt in prefill, the new tokens in decode); the score matrix is "
        "streamed (tiled), not resident.",
        "The KV cache is K and V of every cached position and KV head: in decode what the "
        "kernel reads, and all the timing model loads; in prefill what the cache keeps of "
        "the prompt, and the timing model loads K and V of every prompt position, each "
        "once (Q and O are not loaded in either phase).",
        "Activations and the KV cache take the bytes per element of their types "
        "(activation_dtype, kv_cache_dtype; bytes_per_elem unless named).",
        *TOTALS_ASSUMED,
    ),
)

# The kernel's input and output, and what its prefill reads, in its words.
QUERY = replace(ACT_INPUT, label="query Q", latex="A_{Q}", note="B·S_q × h·dh")
OUTPUT = replace(ACT_OUTPUT, label="output O", latex="A_{O}", note="B·S_q × h·dh")
NO_WEIGHTS = "the kernel alone: no projections"
PROMPT_KV_READS = StepSpec(
    "kv_reads",
    "K/V bytes read",
    Section.KV_CACHE,
    "bytes",
    "KV_read",
    r"KV_{\mathrm{read}}",
    "K and V of every prompt position, each read once, whatever a window keeps; the "
    "timing model loads them as it loads a layer's weights",
)


def _core_cost(
    t: Trace, phase: Phase, conv: Conventions, shard: Shard, *, chips: sympy.Expr
) -> Cost:
    """One chip's share of the kernel: its heads' products, Q and O, its cache (and in
    prefill, the K and V it reads)."""
    heads, kv_heads = shard.attended
    flops = FLOPS(t, sympy.Add(*attention_products(t, shard)))
    weights = WEIGHT_BYTES(t, sympy.S.Zero, note=NO_WEIGHTS)
    ab = element_bytes(conv, "activation")
    q = QUERY(t, tensor_bytes(shard.tokens, heads, dh, bytes_per_elem=ab))
    o = OUTPUT(t, tensor_bytes(shard.tokens, heads, dh, bytes_per_elem=ab))
    activations = ACTIVATION_BYTES(t, q + o)
    kv = kv_cache(t, conv, shard)
    reads = None  # decode: the timing model loads the cache
    if phase is Phase.PREFILL:
        kv_bytes = element_bytes(conv, "kv_cache")
        reads = PROMPT_KV_READS(t, 2 * tensor_bytes(B, S, kv_heads, dh, bytes_per_elem=kv_bytes))
    return finish(
        t,
        chips=chips,
        flops=flops,
        weights=weights,
        activations=activations,
        kv_cache=kv,
        collectives=[],
        weight_reads=reads,
    )


@layout(
    "single",
    layer=LAYER,
    summary="one chip runs every head",
    conventions=_CONVENTIONS,
    checks=Checks(reference=None, sends=()),
)
def single(phase: Phase, conv: Conventions) -> Cost:
    """The kernel on one chip."""
    t = _trace()
    return _core_cost(t, phase, conv, _sequence(t, phase, conv), chips=sympy.S.One)


@layout(
    "tp",
    layer=LAYER,
    summary="heads sharded over tensor_parallel ranks, KV heads replicated past num_kv_heads; "
    "nothing sent",
    degrees=(TENSOR_PARALLEL,),
    conventions=_CONVENTIONS,
    checks=Checks(kv_cache=ref("kv_cache_bytes") * _COPIES, sends=()),
)
def tensor_parallel(phase: Phase, conv: Conventions) -> Cost:
    """Each rank runs the kernel on its heads, with the KV heads they read."""
    t = _trace()
    heads, kv_heads = heads_over(t, tp, "tensor-parallel")
    shard = replace(_sequence(t, phase, conv), heads=heads, kv_heads=kv_heads)
    return _core_cost(t, phase, conv, shard, chips=tp)
