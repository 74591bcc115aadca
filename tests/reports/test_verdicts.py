"""Verification text and JSON: the relations assumed come from the layers verified."""

from __future__ import annotations

import json

from shardcost.formulas.registry import get_layer
from shardcost.formulas.verification import verify
from shardcost.reports.verdicts import verification_json, verification_text
from tests.formulas.test_inputs import TOY_RELATION, register_toy_layer


def test_the_preamble_states_the_relations_of_the_layers_verified() -> None:
    (relation,) = get_layer("attention").relations
    text = verification_text(verify(layer="attention", phases=["prefill"]), 0.0)
    assert text.startswith(f"Every claim assumes {relation.words}; conservation assumes even")
    # stated once at the top, not again under each verdict
    assert f"assuming {relation.words}" not in text
    assert "proved" in text and "FAILED" not in text


def test_a_layer_registered_in_a_test_states_its_own_relation() -> None:
    register_toy_layer()
    text = verification_text(verify(layer="toy", phases=["prefill"]), 0.0)
    assert text.startswith(f"Every claim assumes {TOY_RELATION.words}; ")
    assert "0 failed" in text


def test_a_layer_without_relations_assumes_only_even_splits() -> None:
    assert get_layer("ffn").relations == ()
    text = verification_text(verify(layer="ffn", phases=["prefill"]), 0.0)
    assert text.startswith("Conservation assumes even splits where stated.\n")
    assert " = " not in text.splitlines()[0]


def test_json_statuses_are_plain_words() -> None:
    data = verification_json(verify(layer="ffn", phases=["decode"]))
    statuses = {v["status"] for layout in data for v in layout["verdicts"]}
    assert statuses <= {"proved", "checked"}
    assert all(type(s) is str for s in statuses)
    assert json.loads(json.dumps(data)) == data
