"""Small pure formulas that bigger ones are composed of."""

from __future__ import annotations

import sympy

Size = sympy.Expr | int


def matmul_flops(m: Size, k: Size, n: Size) -> sympy.Expr:
    """FLOPs of ``x[m, k] @ w[k, n]``: one multiply and one add per m·k·n."""
    return 2 * sympy.sympify(m) * k * n


def bmm_flops(batch: Size, m: Size, k: Size, n: Size) -> sympy.Expr:
    """FLOPs of ``batch`` independent ``[m, k] @ [k, n]`` products."""
    return batch * matmul_flops(m, k, n)


def tensor_bytes(*shape: Size, bytes_per_elem: Size) -> sympy.Expr:
    """Bytes of a dense tensor of this shape."""
    return sympy.Mul(*shape) * bytes_per_elem
