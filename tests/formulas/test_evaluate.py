"""Two evaluation paths agree: the derivation evaluated step by step (what metrics()
does) and the fully resolved symbolic expressions evaluated at the same point."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardcost.formulas import all_layouts, evaluate, resolve_inputs, timing_model
from shardcost.symbolic.numbers import count, ratio
from tests.formulas.strategies import configs, conventions, for_layout

LAYOUTS = [lay.name for lay in all_layouts("attention")]
HARDWARE = st.fixed_dictionaries(
    {
        "peak_tflops": st.sampled_from(["1000", "989.4", "197"]),
        "memory_bandwidth_gb_s": st.sampled_from(["1000", "3350", "819.2"]),
        "interconnect_bandwidth_gb_s": st.sampled_from(["100", "450", "50"]),
        "interconnect_latency_us": st.sampled_from(["0", "1.0", "2.5"]),
        "supports_overlap": st.booleans(),
    }
)


@pytest.mark.filterwarnings("ignore::shardcost.UnevenSplitWarning")
@pytest.mark.parametrize(
    ("layout", "phase"), list(itertools.product(LAYOUTS, ["prefill", "decode"]))
)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_step_by_step_equals_resolved_expressions(
    layout: str, phase: str, data: st.DataObject
) -> None:
    params = for_layout(layout, data.draw(configs(phase)), data.draw(conventions(phase)))
    params |= data.draw(HARDWARE)
    result = evaluate(resolve_inputs(layout, phase, params=params))
    inputs = result.inputs
    subs = inputs.substitution()
    cost = inputs.cost
    resolved = {name: count(expr, subs) for name, expr in cost.metrics.items()}
    assert resolved == result.to_dict()["metrics"]
    assert {n: count(e, subs) for n, e in cost.collective_bytes.items()} == result.collectives
    assert inputs.hardware is not None and result.timing is not None
    model = timing_model(cost, inputs.phase, inputs.hardware.supports_overlap)
    times = {name: float(ratio(expr, subs)) for name, expr in model.expressions().items()}
    assert times == result.to_dict()["timing"]
