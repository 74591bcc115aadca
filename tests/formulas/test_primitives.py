"""The small formulas everything else is composed of."""

from __future__ import annotations

from shardcost.formulas.primitives import bmm_flops, matmul_flops, tensor_bytes


def test_matmul_flops() -> None:
    # X[256, 1024] @ W[1024, 1024]: 2 * 256 * 1024 * 1024 = 536,870,912 (seed 001, Test 1)
    assert matmul_flops(256, 1024, 1024) == 536_870_912


def test_bmm_flops_is_batch_times_matmul() -> None:
    # scores: 2*16 heads of (128x64)@(64x128): 32 * 2*128*64*128 = 67,108,864 (seed 001)
    assert bmm_flops(2 * 16, 128, 64, 128) == 67_108_864
    assert bmm_flops(7, 3, 5, 2) == 7 * matmul_flops(3, 5, 2)


def test_tensor_bytes() -> None:
    # 2 * 128 * 1024 elements of 2 bytes = 524,288
    assert tensor_bytes(2, 128, 1024, bytes_per_elem=2) == 524_288
