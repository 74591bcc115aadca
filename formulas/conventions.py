"""Conventions: every accounting choice the seeds make differently, named, with a default.

Each one is shown, in words, under "Assumptions" in every report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import TypeVar

from shardcost.errors import InvalidValueError, UnknownNameError, lookup

from .dtypes import DTYPES

_V = TypeVar("_V", bool, str)


class Phase(StrEnum):
    """Inference phase: the whole prompt at once, or one step of generation."""

    PREFILL = "prefill"
    DECODE = "decode"


def phase(name: object) -> Phase:
    """The Phase called ``name``; UnknownNameError otherwise."""
    try:
        return Phase(str(name).strip().lower())
    except ValueError:
        allowed = ", ".join(p.value for p in Phase)
        raise UnknownNameError(f"phase={name!r} is unknown; phases: {allowed}") from None


@dataclass(frozen=True)
class Convention:
    """One named accounting choice: its values, default, phases and wording."""

    name: str
    default: bool | str
    choices: tuple[bool | str, ...]
    phases: tuple[Phase, ...]
    meaning: str
    wording: Mapping[bool | str, str]  # value -> the assumption in words
    # fixed when a function is compiled (compile(..., conventions=...)), not a switch of
    # the compiled function: a layer's shape or an element type, not an accounting toggle
    static: bool = False
    # read by the timing model, not by any layer: it applies to every layout when timed
    timing: bool = False

    def describe(self, value: bool | str) -> str:
        """The assumption this value makes, in words."""
        return self.wording[value]

    def parse(self, raw: object) -> bool | str:
        """``raw`` (a bool, or text from the command line) as one of ``choices``."""
        if isinstance(self.default, bool):
            return parse_bool(self.name, raw)
        text = str(raw).strip().lower()
        if text in self.choices:
            return text
        allowed = " | ".join(str(c) for c in self.choices)
        raise InvalidValueError(f"{self.name}={raw!r} is not allowed; {self.name} takes {allowed}")


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def parse_bool(key: str, raw: object) -> bool:
    """A bool, or text: true/false, yes/no, on/off, 1/0."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidValueError(f"{key}={raw!r} is not a boolean; {key} takes true or false")


def _option(
    default: _V,
    phases: tuple[Phase, ...],
    meaning: str,
    wording: Mapping[_V, str],
    *,
    static: bool = False,
    timing: bool = False,
) -> _V:
    """A field of Conventions: its default, and the rest of its Convention as metadata.
    Its choices are the values ``wording`` describes, in that order."""
    metadata = {
        "phases": phases,
        "meaning": meaning,
        "wording": wording,
        "static": static,
        "timing": timing,
    }
    return field(default=default, metadata=metadata)


def _timing_option(default: str, meaning: str, wording: Mapping[str, str]) -> str:
    """A timing convention: both phases, fixed when a timed function is compiled."""
    return _option(default, _BOTH, meaning, wording, static=True, timing=True)


def _overlap_wording(group: str, exposed: str, hidden: str) -> dict[str, str]:
    """The words of an overlap class: collectives over ``group`` exposed, or hidden."""
    return {
        "exposed": f"collectives over the {group} group are exposed: {exposed}",
        "hidden": f"collectives over the {group} group overlap the busy time where the "
        f"hardware supports overlap: {hidden}",
    }


_BOTH = (Phase.PREFILL, Phase.DECODE)


def _dtype_wording(what: str) -> dict[str, str]:
    """The words of a dtype convention's values: the default, then each type's bytes."""
    return {"bytes_per_elem": f"each {what} element takes bytes_per_elem bytes"} | {
        name: f"each {what} element is {name}: {dtype.words}" for name, dtype in DTYPES.items()
    }


@dataclass(frozen=True)
class Conventions:
    """The value of every convention, defaults as in DESIGN.md; each field declares its
    Convention (CONVENTIONS is read off these fields)."""

    attention_keys_include_new_token: bool = _option(
        True,
        (Phase.DECODE,),
        "decode: each new token attends to itself as well as the past",
        {
            True: "each new token attends to the past tokens and to itself "
            "(S_past + T keys; seed 000, seed 001 Test 3)",
            False: "each new token attends to the past tokens only "
            "(S_past keys; seed 001 CP-3a, CP-5)",
        },
    )
    kv_includes_new_token: bool = _option(
        False,
        (Phase.DECODE,),
        "decode: the KV cache counted includes the new token's K/V",
        {
            True: "the KV cache holds the new token's K/V too (S_past + T positions; "
            "seed 001 Test 3)",
            False: "the KV cache holds the past tokens only (S_past positions; "
            "seed 000, seed 001 CP-3a, CP-5)",
        },
    )
    decode_projections: str = _option(
        "qkvo",
        (Phase.DECODE,),
        "decode: which projections a step counts (qkvo | qo | o)",
        {
            "qkvo": "a decode step computes the Q, K, V and O projections of the new tokens "
            "(seed 000, seed 001 Test 3)",
            "qo": "a decode step counts the Q and O projections; K/V of the new tokens are "
            "owned elsewhere (seed 001 CP-5)",
            "o": "a decode step counts only the output projection; Q/K/V are owned outside "
            "the attention core (seed 001 CP-3a)",
        },
    )
    ffn_gated: bool = _option(
        True,
        (Phase.PREFILL, Phase.DECODE),
        "FFN: gated (gate, up and down matrices, as SwiGLU) or plain (up and down)",
        {
            True: "the FFN is gated (SwiGLU): gate and up projections d -> d_ff, a down "
            "projection d_ff -> d; three matrices",
            False: "the FFN is a plain MLP: an up projection d -> d_ff and a down projection "
            "d_ff -> d; two matrices",
        },
    )
    logits_for_all_tokens: bool = _option(
        False,
        (Phase.PREFILL,),
        "LM head, prefill: logits for every position, or for each sequence's last only",
        {
            True: "prefill computes logits for every position, as a plain forward pass "
            "does (B × S rows)",
            False: "prefill computes logits for each sequence's last position only, as "
            "serving does (B rows)",
        },
    )
    materialize_full_hidden_after_tp: bool = _option(
        True,
        (Phase.PREFILL, Phase.DECODE),
        "TP x CP: gather the full hidden output on every chip after attention",
        {
            True: "after attention, a TP all-gather materialises the full d-wide output on "
            "every chip (seed 001 CP-4, CP-5)",
            False: "each chip keeps only its head slice of the output (d/tp wide); no TP "
            "all-gather",
        },
    )

    weight_dtype: str = _option(
        "bytes_per_elem",
        _BOTH,
        "bytes per weight element, by type",
        _dtype_wording("weight"),
        static=True,
    )
    activation_dtype: str = _option(
        "bytes_per_elem",
        _BOTH,
        "bytes per activation element (and collective payload), by type",
        _dtype_wording("activation"),
        static=True,
    )
    kv_cache_dtype: str = _option(
        "bytes_per_elem",
        _BOTH,
        "bytes per KV-cache element, by type",
        _dtype_wording("KV-cache"),
        static=True,
    )
    attention_window: str = _option(
        "none",
        _BOTH,
        "attention: every past position, a sliding window, or fixed chunks (none | sliding "
        "| chunked)",
        {
            "none": "each query attends every position up to its own (causal)",
            "sliding": "each query attends the last sliding_window positions, itself included "
            "(Mistral, Gemma 2/3, gpt-oss sliding layers)",
            "chunked": "each query attends the positions of its own sliding_window-long chunk "
            "up to itself (Llama 4's chunked layers)",
        },
        static=True,
    )
    sliding_window_kv: str = _option(
        "window",
        _BOTH,
        "windowed attention: positions its KV cache keeps (window | rolling | full)",
        {
            "window": "a windowed layer caches the last sliding_window − 1 positions: every "
            "key a new token attends besides its own (Hugging Face's sliding-window cache)",
            "rolling": "a windowed layer caches the last sliding_window positions (a rolling "
            "buffer of the whole window, as Mistral's reference implementation keeps)",
            "full": "a windowed layer caches every position, as engines that reserve the full "
            "length per layer do",
        },
        static=True,
    )
    attention_flops: str = _option(
        "dense",
        _BOTH,
        "attention scores and P·V: the full product or only the pairs attended (dense | exact)",
        {
            "dense": "scores and P·V are charged for every query-key pair of the product, "
            "masked or not, as a masked kernel runs it and PyTorch's FLOP counter counts it",
            "exact": "scores and P·V are charged only for the query-key pairs attended "
            "(causal, in-window): about half of the dense product for a long prompt",
        },
        static=True,
    )
    expert_routing: str = _option(
        "uniform",
        (Phase.DECODE,),
        "MoE, decode: how many distinct experts a step reads (uniform | all | balanced)",
        {
            "uniform": "each token picks its experts uniformly at random: a step reads "
            "E·(1 − (1 − k/E)^M) experts in expectation (M tokens)",
            "all": "a step reads every expert's weights, as a dense kernel over all experts does",
            "balanced": "tokens spread over as many experts as they can: a step reads "
            "min(E, M·k) experts",
        },
        static=True,
    )
    shared_experts: str = _option(
        "none",
        _BOTH,
        "MoE: shared experts every token passes through (none | plain | gated)",
        {
            "none": "no shared expert (Mixtral, Qwen3-MoE, gpt-oss)",
            "plain": "shared experts of total width shared_intermediate_size run on every "
            "token (DeepSeek-V2/V3)",
            "gated": "shared experts run on every token, scaled by a sigmoid gate from a d × 1 "
            "projection (Qwen2-MoE)",
        },
        static=True,
    )
    expert_bias: bool = _option(
        False,
        _BOTH,
        "MoE: experts and router carry bias vectors",
        {
            True: "each expert's projections and the router carry biases (gpt-oss)",
            False: "experts and router carry no biases",
        },
        static=True,
    )
    moe_dispatch_dtype: str = _option(
        "activation",
        _BOTH,
        "MoE, expert parallel: bytes per element of the dispatched tokens",
        {"activation": "tokens are dispatched in the activation type"}
        | {name: f"tokens are dispatched in {name} (as DeepEP does in fp8)" for name in DTYPES},
        static=True,
    )
    mla_kv_cache: str = _option(
        "latent",
        _BOTH,
        "MLA: what the KV cache holds (latent | decompressed)",
        {
            "latent": "the cache holds the compressed latent and the shared rotary key, "
            "kv_lora_rank + qk_rope_head_dim elements per position (Hugging Face, vLLM, "
            "SGLang)",
            "decompressed": "the cache holds every head's key and value, "
            "h·(qk_nope_head_dim + qk_rope_head_dim + v_head_dim) elements per position",
        },
        static=True,
    )
    mla_decode: str = _option(
        "absorbed",
        (Phase.DECODE,),
        "MLA, decode: attend over the latent or re-expand it (absorbed | decompressed)",
        {
            "absorbed": "decode attends over the cached latent with the key and value "
            "up-projections folded into the query and output, as serving engines run it",
            "decompressed": "each decode step re-expands the whole cached latent through the "
            "key/value up-projection, as the Hugging Face implementation does",
        },
        static=True,
    )
    mla_q_compressed: bool = _option(
        True,
        _BOTH,
        "MLA: the query goes through a low-rank q_lora_rank projection",
        {
            True: "the query is compressed to q_lora_rank, normalised, then expanded "
            "(DeepSeek-V2, V3)",
            False: "the query is one d × h·(qk_nope_head_dim + qk_rope_head_dim) projection "
            "(q_lora_rank null: DeepSeek-V2-Lite)",
        },
        static=True,
    )

    # -- timing: how collectives are run and whether they hide (every layout, when timed)
    collective_bytes: str = _timing_option(
        "wire",
        "timing: what a collective is charged (wire | payload)",
        {
            "wire": "each collective costs its algorithm's latency steps (interconnect_latency_us "
            "each) and the bytes each chip puts on the wire at link bandwidth, as NCCL's bus "
            "bandwidth counts them (a ring all-reduce sends 2(p − 1)/p of its payload)",
            "payload": "a layer's communication is one interconnect latency when anything is "
            "sent plus its payload bytes at link bandwidth, hidden only when every collective's "
            "class is (seed 000; collective_algorithm does not apply)",
        },
    )
    collective_algorithm: str = _timing_option(
        "ring",
        "timing, collective_bytes=wire: how collectives run (ring | tree | direct)",
        {
            "ring": "collectives run as rings: an all-reduce in 2(p − 1) steps sending "
            "2(p − 1)/p of its payload, an all-gather or all-to-all in p − 1 steps sending "
            "(p − 1)/p (NCCL's ring, its bandwidth-optimal choice for large messages)",
            "tree": "collectives run in ⌈log2 p⌉ rounds: an all-reduce reduces up and "
            "broadcasts down a tree in 2⌈log2 p⌉ steps sending twice its payload (NCCL's "
            "double binary tree), an all-gather doubles in ⌈log2 p⌉ steps (MPI's recursive "
            "doubling), an all-to-all forwards half its buffer per round (Bruck's algorithm)",
            "direct": "collectives take one step, each chip sending straight to every other: "
            "an all-reduce sends its whole tensor to each of the p − 1 others and sums "
            "locally (the one-shot all-reduce of vLLM's and TensorRT-LLM's custom kernels "
            "for small messages), an all-gather or all-to-all sends (p − 1)/p (NCCL's "
            "all-to-all, DeepEP)",
        },
    )
    tensor_parallel_comm: str = _timing_option(
        "exposed",
        "timing: whether collectives over tensor_parallel (and any other the next product "
        "waits for: context parallelism's all-to-alls and partial-output all-reduces, a "
        "user layout's) overlap the busy time (exposed | hidden)",
        _overlap_wording(
            "tensor-parallel",
            "the next matrix product needs the reduced activations (as Megatron-LM and vLLM "
            "run tensor parallelism)",
            "the collective runs in chunks under the matrix products around it (Megatron-LM's "
            "TP communication overlap, PyTorch's async tensor parallelism; seed 000's "
            "ATT-TIME-4)",
        ),
    )
    context_parallel_comm: str = _timing_option(
        "hidden",
        "timing: whether context parallelism's K/V exchange (ring passes, K/V all-gathers) "
        "overlaps the busy time (hidden | exposed)",
        _overlap_wording(
            "context-parallel",
            "attention waits for each K/V block to arrive (its all-to-alls and partial-output "
            "all-reduces follow tensor_parallel_comm)",
            "ring attention passes the next K/V block while it attends the one it holds, and "
            "a K/V all-gather runs under the projections (Ring Attention, Megatron-LM's "
            "context parallelism); its all-to-alls and partial-output all-reduces follow "
            "tensor_parallel_comm",
        ),
    )
    expert_parallel_comm: str = _timing_option(
        "exposed",
        "timing: whether collectives over expert_parallel overlap the busy time (exposed | hidden)",
        _overlap_wording(
            "expert-parallel",
            "the experts wait for their tokens' dispatch and the next layer for the combine "
            "(Megatron-LM, vLLM without micro-batch overlap)",
            "dispatch and combine of one micro-batch run under the other's compute (DeepEP's "
            "two-micro-batch overlap, as DeepSeek-V3 is served)",
        ),
    )

    def as_dict(self) -> dict[str, bool | str]:
        """Name -> value, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def untimed(self) -> Conventions:
        """These conventions with the timing ones at their defaults: what a cost reads."""
        return replace(self, **{name: BY_NAME[name].default for name in TIMING_CONVENTIONS})


CONVENTIONS: tuple[Convention, ...] = tuple(
    Convention(
        name=f.name,
        default=f.default,
        choices=tuple(f.metadata["wording"]),
        phases=f.metadata["phases"],
        meaning=f.metadata["meaning"],
        wording=f.metadata["wording"],
        static=f.metadata["static"],
        timing=f.metadata["timing"],
    )
    for f in fields(Conventions)
)
BY_NAME: dict[str, Convention] = {c.name: c for c in CONVENTIONS}
TIMING_CONVENTIONS: tuple[str, ...] = tuple(c.name for c in CONVENTIONS if c.timing)


def convention(name: str) -> Convention:
    """The convention called ``name``; UnknownNameError otherwise."""
    return lookup(BY_NAME, name, "convention")


def static_default(key: str, value: object) -> bool:
    """Whether ``key`` is a static convention (an element type, a window) left at its
    default: not worth repeating in a line of parameters; reports still state it."""
    convention = BY_NAME.get(key)
    return convention is not None and convention.static and value == convention.default
