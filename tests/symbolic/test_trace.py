"""Derivation traces: steps define symbols that resolve back to dimensions."""

from __future__ import annotations

import pytest
import sympy

from shardcost.symbolic import Trace, closed_form, over_group
from shardcost.symbolic.dimensions import B, S, cp, d, tp


def test_steps_resolve_to_dimensions() -> None:
    t = Trace()
    m = t.define("tokens", "tokens", B * S, section="derived", unit="tokens", name="M")
    f = t.define("proj", "projection", 2 * m * d * d, section="flops", unit="FLOPs", name="F_p")
    total = t.define("flops", "total", 3 * f, section="flops", unit="FLOPs", name="F")
    derivation = t.freeze()
    assert derivation.resolve(total) == 6 * B * S * d**2
    # 3 * (2 * 2 * 128 * 1024 * 1024) = 1,610,612,736 (seed 001, Test 1, "QKV FLOPs")
    assert derivation.resolve(total).subs({B: 2, S: 128, d: 1024}) == 1_610_612_736


def test_split_rounds_up_and_is_recorded() -> None:
    t = Trace()
    local = t.split(
        "seq_local",
        "positions",
        S,
        cp,
        what="positions",
        name="S_local",
        latex="S_l",
        unit="positions",
    )
    derivation = t.freeze()
    assert derivation.resolve(local).subs({S: 130, cp: 4}) == 33  # ceil(130/4)
    assert derivation.splits[0].total == S


def test_duplicate_keys_and_shadowed_dimensions_are_refused() -> None:
    t = Trace()
    t.define("x", "x", B, section="derived", unit="tokens", name="X1")
    with pytest.raises(ValueError, match="duplicate step key 'x'"):
        t.define("x", "x", B, section="derived", unit="tokens", name="X2")
    with pytest.raises(ValueError, match="shadow a dimension"):
        t.define("y", "y", B, section="derived", unit="tokens", name="d")


def test_collectives_vanish_on_one_chip() -> None:
    payload = B * S * d * 2
    assert over_group(payload, tp).subs({tp: 1, B: 1, S: 8, d: 4}) == 0
    assert over_group(payload, tp).subs({tp: 2, B: 1, S: 8, d: 4}) == 64  # 1*8*4*2


def test_closed_form_factors() -> None:
    expr = 2 * B * S * d + 2 * B * S * d * cp
    assert closed_form(expr) == 2 * B * S * d * (cp + 1)
    piece = over_group(B * d + B * d, tp)
    assert closed_form(piece) == sympy.Piecewise((2 * B * d, tp > 1), (0, True))
