"""Dimensions: one SymPy symbol per quantity, defined once, with its notation entry.

The same table feeds the formulas, the CLI's help, the Python API's keyword names
and every report's notation section.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy


@dataclass(frozen=True)
class Dimension:
    """One named, positive-integer quantity of a layer, a workload or a layout."""

    name: str  # CLI and API name, as the seeds write it
    symbol: sympy.Symbol
    latex: str
    meaning: str
    unit: str
    default: int | None  # None: derived from other dimensions when not given
    default_from: str | None = None  # the dimension whose value it takes when not given

    @property
    def short(self) -> str:
        """The symbol's plain name (``d``, ``dh``, ``tp`` ...)."""
        return self.symbol.name


def _dimension(
    name: str,
    short: str,
    latex: str,
    meaning: str,
    unit: str,
    default: int | None,
    default_from: str | None = None,
) -> Dimension:
    symbol = sympy.Symbol(short, integer=True, positive=True)
    if default_from is not None:
        meaning += f" (default: {default_from})"
    return Dimension(name, symbol, latex, meaning, unit, default, default_from)


HIDDEN_SIZE = _dimension("hidden_size", "d", "d", "model width (residual stream)", "elements", 4096)
NUM_HEADS = _dimension("num_heads", "h", "h", "query heads", "heads", 32)
NUM_KV_HEADS = _dimension(
    "num_kv_heads", "h_kv", "h_{kv}", "key/value heads", "heads", None, default_from="num_heads"
)
HEAD_DIM = _dimension("head_dim", "dh", "d_h", "width of one head", "elements", 128)
INTERMEDIATE_SIZE = _dimension(
    "intermediate_size", "d_ff", "d_{ff}", "FFN hidden width", "elements", 11008
)
VOCAB_SIZE = _dimension(
    "vocab_size", "V", "V", "vocabulary size (embedding and LM-head rows)", "tokens", 32000
)
BATCH_SIZE = _dimension("batch_size", "B", "B", "sequences in the batch", "sequences", 1)
SEQ_LEN = _dimension("seq_len", "S", "S", "prompt length per sequence (prefill)", "tokens", 2048)
PAST_SEQ_LEN = _dimension(
    "past_seq_len",
    "S_past",
    r"S_{\mathrm{past}}",
    "tokens already in the KV cache per sequence (decode)",
    "tokens",
    2048,
)
NEW_TOKENS = _dimension(
    "new_tokens", "T", "T", "tokens generated per sequence in one decode step", "tokens", 1
)
BYTES_PER_ELEM = _dimension(
    "bytes_per_elem", "b", "b", "bytes per weight, activation and KV element", "bytes", 2
)
SOFTMAX_STAT_BYTES = _dimension(
    "softmax_stat_bytes",
    "b_s",
    "b_{s}",
    "bytes per softmax statistic (running max, running sum)",
    "bytes",
    4,
)
TENSOR_PARALLEL = _dimension(
    "tensor_parallel", "tp", r"\mathit{tp}", "ranks sharding the heads", "chips", 4
)
CONTEXT_PARALLEL = _dimension(
    "context_parallel",
    "cp",
    r"\mathit{cp}",
    "ranks sharding the sequence / KV positions",
    "chips",
    4,
)
# Mixture of experts: routed experts, top-k, each expert's width, shared experts' width,
# and the expert-parallel degree.
NUM_EXPERTS = _dimension("num_experts", "E", "E", "routed experts per MoE layer", "experts", 8)
EXPERTS_PER_TOKEN = _dimension(
    "experts_per_token", "k", "k", "routed experts each token goes to (top-k)", "experts", 2
)
MOE_INTERMEDIATE_SIZE = _dimension(
    "moe_intermediate_size", "d_e", "d_{e}", "hidden width of one routed expert", "elements", 14336
)
SHARED_INTERMEDIATE_SIZE = _dimension(
    "shared_intermediate_size",
    "d_sh",
    r"d_{\mathrm{sh}}",
    "hidden width of the shared experts, all of them together",
    "elements",
    None,
    default_from="moe_intermediate_size",
)
EXPERT_PARALLEL = _dimension(
    "expert_parallel", "ep", r"\mathit{ep}", "ranks sharding the routed experts", "chips", 4
)
# Multi-head latent attention (DeepSeek-V2/V3).
Q_LORA_RANK = _dimension(
    "q_lora_rank", "r_q", "r_{q}", "MLA: rank of the compressed query", "elements", 1536
)
KV_LORA_RANK = _dimension(
    "kv_lora_rank",
    "r_kv",
    "r_{kv}",
    "MLA: rank of the compressed key-value latent",
    "elements",
    512,
)
QK_NOPE_HEAD_DIM = _dimension(
    "qk_nope_head_dim",
    "dh_n",
    r"d_{h}^{\mathrm{nope}}",
    "MLA: per-head query/key width without rotary embedding",
    "elements",
    128,
)
QK_ROPE_HEAD_DIM = _dimension(
    "qk_rope_head_dim",
    "dh_r",
    r"d_{h}^{\mathrm{rope}}",
    "MLA: per-head query/key width with rotary embedding (the key's is shared by all heads)",
    "elements",
    64,
)
V_HEAD_DIM = _dimension(
    "v_head_dim", "dh_v", r"d_{h}^{v}", "MLA: per-head value width", "elements", 128
)
# Sliding-window (and chunked) attention.
SLIDING_WINDOW = _dimension(
    "sliding_window",
    "S_w",
    "S_{w}",
    "positions a query may attend, itself included (the window, or the chunk length)",
    "positions",
    4096,
)

DIMENSIONS: tuple[Dimension, ...] = (
    HIDDEN_SIZE,
    NUM_HEADS,
    NUM_KV_HEADS,
    HEAD_DIM,
    INTERMEDIATE_SIZE,
    VOCAB_SIZE,
    BATCH_SIZE,
    SEQ_LEN,
    PAST_SEQ_LEN,
    NEW_TOKENS,
    BYTES_PER_ELEM,
    SOFTMAX_STAT_BYTES,
    TENSOR_PARALLEL,
    CONTEXT_PARALLEL,
    NUM_EXPERTS,
    EXPERTS_PER_TOKEN,
    MOE_INTERMEDIATE_SIZE,
    SHARED_INTERMEDIATE_SIZE,
    EXPERT_PARALLEL,
    Q_LORA_RANK,
    KV_LORA_RANK,
    QK_NOPE_HEAD_DIM,
    QK_ROPE_HEAD_DIM,
    V_HEAD_DIM,
    SLIDING_WINDOW,
)

BY_NAME: dict[str, Dimension] = {dim.name: dim for dim in DIMENSIONS}
BY_SYMBOL: dict[sympy.Symbol, Dimension] = {dim.symbol: dim for dim in DIMENSIONS}
BY_SHORT: dict[str, Dimension] = {dim.short: dim for dim in DIMENSIONS}

# The symbols, under the short names the formulas use.
d = HIDDEN_SIZE.symbol
h = NUM_HEADS.symbol
h_kv = NUM_KV_HEADS.symbol
dh = HEAD_DIM.symbol
d_ff = INTERMEDIATE_SIZE.symbol
V = VOCAB_SIZE.symbol
B = BATCH_SIZE.symbol
S = SEQ_LEN.symbol
S_past = PAST_SEQ_LEN.symbol
T = NEW_TOKENS.symbol
b = BYTES_PER_ELEM.symbol
b_s = SOFTMAX_STAT_BYTES.symbol
tp = TENSOR_PARALLEL.symbol
cp = CONTEXT_PARALLEL.symbol
E = NUM_EXPERTS.symbol
k = EXPERTS_PER_TOKEN.symbol
d_e = MOE_INTERMEDIATE_SIZE.symbol
d_sh = SHARED_INTERMEDIATE_SIZE.symbol
ep = EXPERT_PARALLEL.symbol
r_q = Q_LORA_RANK.symbol
r_kv = KV_LORA_RANK.symbol
dh_n = QK_NOPE_HEAD_DIM.symbol
dh_r = QK_ROPE_HEAD_DIM.symbol
dh_v = V_HEAD_DIM.symbol
S_w = SLIDING_WINDOW.symbol


def dimension(name: str) -> Dimension:
    """The dimension with this CLI name; KeyError when there is none."""
    return BY_NAME[name]
