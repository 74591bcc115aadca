"""Layouts fitted to a chip budget: the splits tried for every registered layout."""

from __future__ import annotations

import math

import pytest

from shardcost.errors import InputError
from shardcost.formulas import all_layouts, evaluate, get_layout, resolve_inputs
from shardcost.formulas.comparison import splits

LAYOUTS = all_layouts()
HYBRIDS = [lay for lay in LAYOUTS if len(lay.degrees) > 1]


@pytest.mark.parametrize("lay", LAYOUTS, ids=lambda lay: f"{lay.layer}/{lay.name}")
@pytest.mark.parametrize("chips", [1, 2, 4, 6, 12, 16, 64])
def test_every_split_fills_the_budget(lay, chips: int) -> None:
    got = splits(lay, chips, {})
    names = [d.name for d in lay.degrees]
    if not names:  # single: one chip, or a reason
        assert got == (((),) if chips == 1 else "runs on 1 chip only")
        return
    if len(names) == 1:  # one degree takes every chip
        assert got == (((names[0], chips),),)
        return
    # two degrees: every ordered pair of divisors each 2 or more, e.g. 12 = 2·6 = 3·4 = 4·3 = 6·2
    pairs = [(a, chips // a) for a in range(2, chips // 2 + 1) if chips % a == 0]
    if not pairs:
        assert isinstance(got, str) and " no split " in got
        return
    assert [tuple(v for _, v in split) for split in got] == pairs
    for split in got:
        assert [k for k, _ in split] == names
        assert math.prod(v for _, v in split) == chips


def test_a_given_degree_is_kept() -> None:
    hybrid = get_layout("tp-cp")
    assert splits(hybrid, 16, {"tensor_parallel": "2"}) == (
        (("tensor_parallel", 2), ("context_parallel", 8)),
    )
    # the user may put a degree at 1: the other takes every chip
    assert splits(hybrid, 4, {"context_parallel": 1}) == (
        (("tensor_parallel", 4), ("context_parallel", 1)),
    )
    # every degree given, their product the budget: that one split
    assert splits(hybrid, 8, {"tensor_parallel": 2, "context_parallel": 4}) == (
        (("tensor_parallel", 2), ("context_parallel", 4)),
    )
    assert splits(get_layout("tp"), 4, {"tensor_parallel": "4"}) == ((("tensor_parallel", 4),),)
    with pytest.raises(InputError, match="3 does not divide 16"):
        splits(hybrid, 16, {"tensor_parallel": "3"})
    with pytest.raises(InputError, match="so it needs tensor_parallel=16"):
        splits(get_layout("tp"), 16, {"tensor_parallel": "4"})


def _metrics(lay, phase: str, **degrees: int):
    return evaluate(resolve_inputs(lay.name, phase, layer=lay.layer, params=degrees)).metrics


@pytest.mark.parametrize("lay", HYBRIDS, ids=lambda lay: f"{lay.layer}/{lay.name}")
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_a_split_with_a_degree_at_one_is_a_one_degree_layout(lay, phase: str) -> None:
    """Why the budget skips such splits: tp-cp at cp = 1 is tp, at tp = 1 cp-kv-sharded."""
    for one in lay.degrees:
        (other,) = (d for d in lay.degrees if d is not one)
        got = _metrics(lay, phase, **{one.name: 1, other.name: 4})
        twins = [
            single
            for single in all_layouts(lay.layer)
            if [d.name for d in single.degrees] == [other.name]
            and _metrics(single, phase, **{other.name: 4}) == got
        ]
        assert twins, (lay.name, one.name)
