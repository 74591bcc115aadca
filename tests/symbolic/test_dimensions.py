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


def test_names_are_the_seeds_names_plus_the_ffn_and_vocabulary_widths() -> None:
    assert set(BY_NAME) == SEED_NAMES | {"intermediate_size", "vocab_size"}


def test_symbols_and_short_names_are_unique() -> None:
    assert len({d.symbol for d in DIMENSIONS}) == len(DIMENSIONS)
    assert len({d.short for d in DIMENSIONS}) == len(DIMENSIONS)


def test_every_dimension_is_a_positive_integer_with_words() -> None:
    for dim in DIMENSIONS:
        assert dim.symbol.is_integer and dim.symbol.is_positive, dim.name
        assert dim.meaning and dim.unit and dim.latex, dim.name


def test_default_shape_is_consistent() -> None:
    assert HIDDEN_SIZE.default == NUM_HEADS.default * HEAD_DIM.default
