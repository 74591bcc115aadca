"""The notation table: one symbol per quantity, each a positive integer."""

from __future__ import annotations

from shardcost.symbolic.dimensions import (
    BY_NAME,
    DIMENSIONS,
    HEAD_DIM,
    HIDDEN_SIZE,
    NUM_HEADS,
)

SEED_NAMES = {
    "hidden_size",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "batch_size",
    "seq_len",
    "past_seq_len",
    "new_tokens",
    "bytes_per_elem",
    "softmax_stat_bytes",
    "tensor_parallel",
    "context_parallel",
}


# What the seeds do not name: the FFN and vocabulary widths, and (as Hugging Face
# configs name them) the shapes of mixtures of experts, latent attention and windows.
BEYOND_SEEDS = {
    "intermediate_size",
    "vocab_size",
    "num_experts",
    "experts_per_token",
    "moe_intermediate_size",
    "shared_intermediate_size",
    "expert_parallel",
    "q_lora_rank",
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "sliding_window",
}


def test_names_are_the_seeds_names_plus_the_config_names() -> None:
    assert set(BY_NAME) == SEED_NAMES | BEYOND_SEEDS


def test_symbols_and_short_names_are_unique() -> None:
    assert len({d.symbol for d in DIMENSIONS}) == len(DIMENSIONS)
    assert len({d.short for d in DIMENSIONS}) == len(DIMENSIONS)


def test_every_dimension_is_a_positive_integer_with_words() -> None:
    for dim in DIMENSIONS:
        assert dim.symbol.is_integer and dim.symbol.is_positive, dim.name
        assert dim.meaning and dim.unit and dim.latex, dim.name


def test_default_shape_is_consistent() -> None:
    assert HIDDEN_SIZE.default == NUM_HEADS.default * HEAD_DIM.default
