"""What a collective costs: its algorithm's latency steps and the bytes each chip sends.

Notation: p is the group's size, n the collective's payload as the layers declare it
(``symbolic.cost``), α = interconnect_latency_us, BW_ic · η_l the achieved link
bandwidth per direction. Under ``collective_bytes=wire`` one collective takes

    time = steps · α + wire bytes / (BW_ic · η_l)        (nothing on a one-chip group)

Steps, then bytes each chip sends, by kind (its payload n) and ``collective_algorithm``:

| kind (payload n)                    | ring              | tree                   | direct       |
|-------------------------------------|-------------------|------------------------|--------------|
| all-reduce (the tensor summed)      | 2(p−1), 2(p−1)/p·n | 2⌈log2 p⌉, 2n         | 1, (p−1)·n   |
| all-gather (the gathered tensor)    | p−1, (p−1)/p·n    | ⌈log2 p⌉, (p−1)/p·n    | 1, (p−1)/p·n |
| all-to-all (the chip's send buffer) | p−1, (p−1)/p·n    | ⌈log2 p⌉, ⌈log2 p⌉/2·n | 1, (p−1)/p·n |
| send-recv (all it passes on)        | p−1, n            | p−1, n                 | p−1, n       |
| collective (a user layout's)        | 1, n              | 1, n                   | 1, n         |

``collective_bytes=payload`` is seed 000's model instead: one latency and the payload
itself. ``collective_time_ms`` and ``wire_bytes`` apply the same table to plain numbers,
for plan-level code (pipeline sends, data-parallel gradients) that times a collective
no layout declares.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any

import sympy

from shardcost.errors import InvalidValueError
from shardcost.symbolic import CollectiveKind
from shardcost.symbolic.dimensions import cp, ep, tp
from shardcost.symbolic.functions import CeilLog2, ceil_log2

from .conventions import BY_NAME as CONVENTIONS_BY_NAME
from .conventions import Conventions
from .hardware import Hardware


class Algorithm(StrEnum):
    """How a collective is run (``collective_algorithm``)."""

    RING = "ring"
    TREE = "tree"
    DIRECT = "direct"


class BytesMode(StrEnum):
    """What a collective is charged (``collective_bytes``)."""

    WIRE = "wire"
    PAYLOAD = "payload"


# (p, ⌈log2 p⌉) -> a count: the same arithmetic on ints, Fractions and SymPy expressions
Count = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Rule:
    """One kind of collective under one algorithm: its latency steps, the fraction of the
    payload each chip sends, and both in words (a report's note)."""

    steps: Count
    wire: Count  # bytes each chip sends, per payload byte
    words: str


_AR, _AG = CollectiveKind.ALL_REDUCE, CollectiveKind.ALL_GATHER
_A2A, _P2P = CollectiveKind.ALL_TO_ALL, CollectiveKind.SEND_RECV
_RING, _TREE, _DIRECT = Algorithm.RING, Algorithm.TREE, Algorithm.DIRECT
# All-gather's payload is the gathered tensor: a chip holds n/p of it and receives the
# other (p − 1)/p; sending as much as it receives, it puts (p − 1)/p · n on the wire, in
# any order (ring, doubling, or straight to each peer). An all-reduce is a reduce-scatter
# of n, which sends the same (p − 1)/p · n, then an all-gather of the reduced tensor:
# 2(p − 1)/p · n by ring. All-to-all's payload is the buffer a chip sends from, of which
# the 1/p addressed to itself stays: (p − 1)/p · n, unless forwarded in rounds (Bruck).


def _peers(p: Any, lg: Any) -> Any:
    return (p - 1) / p  # all but one's share: (p − 1)/p


def _one(p: Any, lg: Any) -> Any:
    return 1


def _hops(p: Any, lg: Any) -> Any:
    return p - 1  # once to each other member, in turn


def _log(p: Any, lg: Any) -> Any:
    return lg  # rounds that double what each member holds


RULES: dict[tuple[CollectiveKind, Algorithm], Rule] = {
    (_AR, _RING): Rule(
        lambda p, lg: 2 * (p - 1),
        lambda p, lg: 2 * (p - 1) / p,
        "ring: 2(p − 1) steps (reduce-scatter, then all-gather); 2(p − 1)/p of the payload "
        "on the wire",
    ),
    (_AR, _TREE): Rule(
        lambda p, lg: 2 * lg,
        lambda p, lg: 2,
        "tree: 2⌈log2 p⌉ steps (reduce up, broadcast down); each chip sends the payload up "
        "and down, 2× on the wire",
    ),
    (_AR, _DIRECT): Rule(
        _one,
        _hops,
        "one shot: 1 step; the whole payload to each of the p − 1 others, summed locally",
    ),
    (_AG, _RING): Rule(_hops, _peers, "ring: p − 1 steps; (p − 1)/p of the payload on the wire"),
    (_AG, _TREE): Rule(
        _log, _peers, "recursive doubling: ⌈log2 p⌉ steps; (p − 1)/p of the payload on the wire"
    ),
    (_AG, _DIRECT): Rule(
        _one, _peers, "direct: 1 step; its n/p to each of the p − 1 others, (p − 1)/p of it"
    ),
    (_A2A, _RING): Rule(
        _hops, _peers, "pairwise exchange: p − 1 steps; (p − 1)/p of the payload on the wire"
    ),
    (_A2A, _TREE): Rule(
        _log,
        lambda p, lg: lg / 2,
        "Bruck: ⌈log2 p⌉ steps of half the buffer each; ⌈log2 p⌉/2 of the payload on the wire",
    ),
    (_A2A, _DIRECT): Rule(
        _one, _peers, "direct: 1 step; n/p to each of the p − 1 others, (p − 1)/p of it"
    ),
}
_PASSES = Rule(
    _hops, _one, "point to point: p − 1 hops, each waiting for the one before; the payload"
)
_UNDECLARED = Rule(_one, _one, "a collective of no declared kind: 1 step; the payload")
for _algorithm in Algorithm:
    RULES[_P2P, _algorithm] = _PASSES
    RULES[CollectiveKind.USER, _algorithm] = _UNDECLARED

# The convention that says whether a collective hides, by the degree its group runs over;
# any other group (a user layout's) is on the critical path as tensor parallelism's is.
OVERLAP_CLASS: dict[sympy.Expr, str] = {
    tp: "tensor_parallel_comm",
    cp: "context_parallel_comm",
    ep: "expert_parallel_comm",
}
DEFAULT_CLASS = "tensor_parallel_comm"


def rule(kind: CollectiveKind | str, algorithm: Algorithm | str) -> Rule:
    """The steps and wire bytes of ``kind`` under ``algorithm``."""
    return RULES[_kind(kind), _algorithm_of(algorithm)]


# Over context_parallel only the K/V exchange can run under attention (a ring's next block,
# an all-gather under the projections); an all-to-all that re-shards Q, K and V (Ulysses)
# or an all-reduce of partial outputs is waited for, as tensor parallelism's are.
_KV_EXCHANGE = frozenset({CollectiveKind.ALL_GATHER, CollectiveKind.SEND_RECV})


def overlap_class(group: sympy.Expr, kind: CollectiveKind | str | None = None) -> str:
    """The convention deciding whether a collective of ``kind`` over ``group`` hides
    behind compute."""
    found = OVERLAP_CLASS.get(group, DEFAULT_CLASS)
    if found == "context_parallel_comm" and kind is not None and _kind(kind) not in _KV_EXCHANGE:
        return DEFAULT_CLASS
    return found


def hidden(
    group: sympy.Expr, conventions: Conventions, kind: CollectiveKind | str | None = None
) -> bool:
    """Whether ``conventions`` let a collective of ``kind`` over ``group`` overlap the
    busy time."""
    return getattr(conventions, overlap_class(group, kind)) == "hidden"


def symbolic_terms(
    kind: CollectiveKind, group: sympy.Expr, algorithm: Algorithm | str
) -> tuple[sympy.Expr, sympy.Expr]:
    """(latency steps, wire bytes per payload byte) over ``group``, as expressions."""
    found = rule(kind, algorithm)
    lg = CeilLog2(group)
    return sympy.sympify(found.steps(group, lg)), sympy.sympify(found.wire(group, lg))


# -- the same rules on plain numbers ---------------------------------------------------


def _kind(kind: CollectiveKind | str) -> CollectiveKind:
    try:
        return CollectiveKind(kind)
    except ValueError:
        allowed = ", ".join(k.value for k in CollectiveKind)
        raise InvalidValueError(f"collective kind {kind!r} is unknown; kinds: {allowed}") from None


def _algorithm_of(algorithm: Algorithm | str) -> Algorithm:
    return Algorithm(CONVENTIONS_BY_NAME["collective_algorithm"].parse(algorithm))


def _group(group: int) -> int:
    """``group`` as a Python int (numpy integers too); InvalidValueError below 1."""
    try:
        chips = operator.index(group) if not isinstance(group, bool) else 0
    except TypeError:
        chips = 0
    if chips < 1:
        raise InvalidValueError(f"group={group!r} is not allowed; a group is 1 or more chips")
    return chips


def latency_steps(
    kind: CollectiveKind | str,
    group: int,
    *,
    algorithm: Algorithm | str = Algorithm.RING,
    bytes_mode: BytesMode | str = BytesMode.WIRE,
) -> int:
    """Latency steps of one collective over ``group`` chips (0 on one chip; 1 in
    ``payload`` mode, seed 000's one latency)."""
    chips = _group(group)
    if chips == 1:
        return 0
    if _mode(bytes_mode) is BytesMode.PAYLOAD:
        return 1
    return int(rule(kind, algorithm).steps(chips, ceil_log2(chips)))


def wire_bytes(
    kind: CollectiveKind | str,
    group: int,
    payload_bytes: int | float | Fraction,
    *,
    algorithm: Algorithm | str = Algorithm.RING,
    bytes_mode: BytesMode | str = BytesMode.WIRE,
) -> Fraction:
    """Bytes each chip sends for one collective of ``payload_bytes`` over ``group`` chips,
    exactly (0 on one chip; the payload itself in ``payload`` mode)."""
    chips = _group(group)
    if chips == 1:
        return Fraction(0)
    n = Fraction(payload_bytes)
    if _mode(bytes_mode) is BytesMode.PAYLOAD:
        return n
    return Fraction(rule(kind, algorithm).wire(Fraction(chips), Fraction(ceil_log2(chips)))) * n


def collective_time_ms(
    kind: CollectiveKind | str,
    group: int,
    payload_bytes: int | float | Fraction,
    hardware: Hardware,
    *,
    algorithm: Algorithm | str = Algorithm.RING,
    bytes_mode: BytesMode | str = BytesMode.WIRE,
) -> float:
    """One collective's time in ms on ``hardware``: steps · α + wire bytes / (BW_ic · η_l),
    computed in exact fractions as the symbolic timing is, then rounded once to a float.

    ``collective_time_ms("all-reduce", 8, 2**20, CATALOG["h100-sxm"])`` is a ring
    all-reduce of 1 MiB over 8 chips: 14 µs of latency and 2·7/8 MiB at 450 GB/s.
    """
    steps = latency_steps(kind, group, algorithm=algorithm, bytes_mode=bytes_mode)
    wire = wire_bytes(kind, group, payload_bytes, algorithm=algorithm, bytes_mode=bytes_mode)
    link = hardware.interconnect_bandwidth_gb_s * hardware.link_efficiency * 10**6  # B/ms
    return float(steps * hardware.interconnect_latency_us / 1000 + wire / link)


def _mode(bytes_mode: BytesMode | str) -> BytesMode:
    return BytesMode(CONVENTIONS_BY_NAME["collective_bytes"].parse(bytes_mode))
