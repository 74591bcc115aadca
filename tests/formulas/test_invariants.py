"""Every built-in layout satisfies its invariants under every convention, CP-5's
redundancy is stated, and deliberately broken variants are caught with the residual
worked out by hand."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import sympy

from shardcost.formulas import Conventions, Phase, all_layouts, get_layout
from shardcost.formulas.invariants import verify_layout
from shardcost.formulas.registry import Layout
from shardcost.formulas.user import read_layout
from shardcost.formulas.verification import covering_choices, verify
from shardcost.symbolic import Cost, Derivation
from shardcost.symbolic.dimensions import B, S, T, b, cp, d, d_ff, dh, h, h_kv, tp
from shardcost.symbolic.verify import VerdictStatus
from tests.formulas.test_inputs import TOY_RELATION, register_toy_layer
from tests.helpers import ISSUE, OUTPUT, with_chips, with_group, with_output

LAYOUTS = Path(__file__).parent / "layouts"
CASES = [(lay, ph) for lay in all_layouts("attention") for ph in Phase]


@pytest.mark.parametrize(("layout", "phase"), CASES, ids=lambda x: str(getattr(x, "name", x)))
def test_every_builtin_holds_under_every_choice_of_each_convention(
    layout: Layout, phase: Phase
) -> None:
    for conventions in covering_choices(layout, phase):
        result = verify_layout(layout, phase, conventions)
        failed = [(v.claim.name, v.term, v.residual) for v in result.verdicts if not v.ok]
        assert not failed, (conventions, failed)
        assert {v.status for v in result.verdicts} <= {"proved", "checked"}


def test_only_what_sympy_cannot_decide_is_checked_at_points() -> None:
    statuses = {
        (lay.name, ph, v.claim.name): v.status
        for lay, ph in CASES
        for v in verify_layout(lay, ph).verdicts
    }
    checked = {k for k, s in statuses.items() if s is VerdictStatus.CHECKED}
    # totals on uneven splits hold floor(S/cp) and S mod cp: not decidable by SymPy. tp
    # splits only KV heads, replicated whole, so its totals are per chip × chips: proved.
    uneven = {k for k in statuses if k[2] == "uneven splits add up"}
    assert checked == {k for k in uneven if k[0] != "tp"}
    assert statuses[("tp", Phase.DECODE, "uneven splits add up")] is VerdictStatus.PROVED
    # everything else, for every attention layout the registry holds, is proved
    assert all(s is VerdictStatus.PROVED for k, s in statuses.items() if k not in checked)


def test_cp5_states_its_redundancy() -> None:
    # CP-5: decode_projections=qo; every one of cp ranks repeats Q and O for the new
    # tokens: (cp - 1) * (2*B*T*d*h*dh + 2*B*T*h*dh*d) with d = h*dh
    conventions = Conventions(attention_keys_include_new_token=False, decode_projections="qo")
    result = verify_layout(get_layout("tp-cp"), Phase.DECODE, conventions)
    flops = next(v for v in result.verdicts if v.claim.name == "flops conserved")
    assert flops.status == "proved"
    assert sympy.expand(flops.claim.shown - 4 * B * T * h**2 * dh**2 * (cp - 1)) == 0


def test_prefill_repeats_only_the_kv_projections_of_replicated_kv_heads() -> None:
    # K and V projections of one head: 2 * (2*B*S*d*dh) = 4*B*S*h*dh^2 (d = h*dh); the TP
    # ranks hold tp*ceil(h_kv/tp) KV heads where the model has h_kv: zero extra when tp
    # divides h_kv, tp - h_kv extra heads when each KV head is replicated.
    result = verify_layout(get_layout("tp-cp"), Phase.PREFILL)
    flops = next(v for v in result.verdicts if v.claim.name == "flops conserved")
    assert flops.status == "proved"
    extra = 4 * B * S * h * dh**2 * (tp * sympy.ceiling(h_kv / tp) - h_kv)
    assert sympy.expand(flops.claim.shown - extra) == 0


def _broken(
    layout: Layout, *, times: tuple[str, sympy.Expr] | None = None, drop: str | None = None
) -> Layout:
    """``layout`` with one step multiplied (a division undone) or one collective dropped."""

    def build(phase: Phase, conventions: Conventions) -> Cost:
        cost = layout.cost(phase, conventions)
        steps = list(cost.derivation.steps)
        for i, step in enumerate(steps):
            if times is not None and step.key == times[0]:
                steps[i] = replace(step, expr=step.expr * times[1])
            if drop is not None and step.key == "communication_bytes":
                kept = [c.symbol for c in cost.collectives if c.name != drop]
                steps[i] = replace(step, expr=sympy.Add(*kept))
        derivation = Derivation(tuple(steps), cost.derivation.splits, cost.derivation.requirements)
        collectives = tuple(c for c in cost.collectives if c.name != drop)
        return replace(cost, derivation=derivation, collectives=collectives)

    return replace(layout, name=f"{layout.name}-broken", build=build)


def _failures(layout: Layout, phase: Phase) -> dict[str, tuple[str, sympy.Expr]]:
    result = verify_layout(layout, phase)
    return {v.claim.name: (v.term, v.residual) for v in result.verdicts if not v.ok}


@pytest.mark.parametrize(
    ("name", "step", "degree", "residual"),
    [
        # o_proj left whole on each of tp ranks: (tp - 1) * 2*B*S*(h*dh)*d, d = h*dh
        ("tp", "o_proj", tp, 2 * B * S * h**2 * dh**2 * (tp - 1)),
        # scores over all S queries on each rank: (cp - 1) * 2*B*h*S*S*dh
        ("cp-allgather", "scores", cp, 2 * B * S**2 * dh * h * (cp - 1)),
        ("cp-kv-sharded", "apply_v", cp, 2 * B * S**2 * dh * h * (cp - 1)),
        # heads not divided: scores on h instead of h/tp heads: (tp - 1) * 2*B*h*S*S*dh
        ("tp-cp", "scores", tp, 2 * B * S**2 * dh * h * (tp - 1)),
    ],
)
def test_a_term_left_undivided_is_caught(
    name: str, step: str, degree: sympy.Symbol, residual: sympy.Expr
) -> None:
    failures = _failures(_broken(get_layout(name), times=(step, degree)), Phase.PREFILL)
    term, found = failures["flops conserved"]
    assert term == "flops_total"
    assert sympy.expand(found - residual) == 0


@pytest.mark.parametrize(
    ("name", "phase", "collective", "residual"),
    [
        # the missing payload, negated: actual 0 - declared
        ("tp", Phase.PREFILL, "output_allreduce", -B * S * b * h * dh),  # Y[B*S, d]
        ("cp-allgather", Phase.DECODE, "kv_allgather", -2 * B * S * b * h_kv * dh),  # K,V[S_past]
        (
            "cp-kv-sharded",
            Phase.PREFILL,
            "softmax_stats_allreduce",
            -2 * B * S * sympy.Symbol("b_s", integer=True, positive=True) * h / cp,
        ),
        ("tp-cp", Phase.DECODE, "tp_allgather", -B * T * b * h * dh),  # Y[B*T, d]
    ],
)
def test_a_dropped_collective_is_caught(
    name: str, phase: Phase, collective: str, residual: sympy.Expr
) -> None:
    broken = _broken(get_layout(name), drop=collective)
    failures = _failures(broken, phase)
    term, found = failures["communication as declared"]
    assert term == collective
    found = found.subs(sympy.Symbol("S_past", integer=True, positive=True), S)
    assert sympy.simplify(found - residual) == 0


# The issue's layouts that cannot be, read without being refused (read_layout), as verify
# sees them: each fails "whole chips" or "non-negative" with the smallest counterexample.
@pytest.mark.parametrize(
    ("text", "claim", "term", "point", "value", "least"),
    [
        # the group itself is the value: 0, -1, 1/2 at every point (none shown); a whole
        # number of chips is at least 1
        (with_group("0"), "whole chips", "output_allreduce group", {}, 0, 1),
        (with_group("-1"), "whole chips", "output_allreduce group", {}, -1, 1),
        (with_group("1/2"), "whole chips", "output_allreduce group", {}, sympy.Rational(1, 2), 1),
        (with_chips('"0"'), "whole chips", "chips", {}, 0, 1),
        (with_chips('"-1"'), "whole chips", "chips", {}, -1, 1),
        (with_chips("-3"), "whole chips", "chips", {}, -3, 1),
        # -S is sent on a group of cp > 1: smallest S = 1, cp = 2 gives -1 against 0
        (
            with_output("-S"),
            "non-negative",
            "output_allreduce payload",
            {S: 1, cp: 2},
            -1,
            0,
        ),
        (
            with_output("-S").replace('chips = "context_parallel"', 'chips = "tensor_parallel"'),
            "non-negative",
            "output_allreduce payload",
            {S: 1, tp: 2},
            -1,
            0,
        ),
        # S - 2*B: 1 - 2 = -1 at B = S = 1, cp = 2
        (
            with_output("S - 2*B"),
            "non-negative",
            "output_allreduce payload",
            {B: 1, S: 1, cp: 2},
            -1,
            0,
        ),
    ],
)
def test_verify_refutes_a_layout_that_cannot_be(
    tmp_path: Path,
    text: str,
    claim: str,
    term: str,
    point: dict[sympy.Symbol, int],
    value: sympy.Expr,
    least: int,
) -> None:
    path = tmp_path / "impossible.toml"
    path.write_text(text)
    (result,) = verify([read_layout(path)])
    assert not result.ok
    verdict = next(v for v in result.verdicts if v.claim.name == claim)
    assert verdict.status == "failed"
    assert (verdict.term, verdict.counterexample, verdict.sides) == (term, point, (value, least))


def test_two_collectives_cannot_cancel(tmp_path: Path) -> None:
    # S + (-S) = 0 bytes in all, which the sum alone would accept; the payload -S is -1 at
    # S = 1 on a group of cp = 2
    path = tmp_path / "cancel.toml"
    path.write_text(ISSUE.replace(OUTPUT, 'there = "S"\nback = "-S"'))
    (result,) = verify([read_layout(path)])
    failed = [v for v in result.verdicts if not v.ok]
    assert [(v.claim.name, v.term, v.counterexample, v.sides) for v in failed] == [
        ("non-negative", "back payload", {S: 1, cp: 2}, (-1, 0))
    ]


def test_every_builtin_has_whole_chips_and_non_negative_payloads_proved() -> None:
    for lay, ph in CASES:
        verdicts = {v.claim.name: v for v in verify_layout(lay, ph).verdicts}
        assert verdicts["whole chips"].status == "proved"
        assert verdicts["non-negative"].status == "proved"
        payloads = {t.label for t in verdicts["non-negative"].claim.terms if "payload" in t.label}
        collectives = lay.cost(ph).collectives
        assert payloads == {f"{c.name} payload" for c in collectives}
        groups = [t.label for t in verdicts["whole chips"].claim.terms]
        assert groups == ["chips", *(f"{c.name} group" for c in collectives)]


def test_a_new_layers_relation_is_substituted_and_stated() -> None:
    # tp's FLOPs over its chips, 2·S·B·d, equal single's 2·d_ff·d only where d_ff = S·B:
    # verify substitutes the toy layer's relation, and every claim resting on it says so
    register_toy_layer()
    result = verify_layout(get_layout("tp", "toy"), Phase.PREFILL)
    assert result.ok, [(v.claim.name, v.residual) for v in result.verdicts if not v.ok]
    assert result.relations == ("intermediate_size = seq_len × batch_size",)
    verdicts = {v.claim.name: v for v in result.verdicts}
    for name in ("flops conserved", "degree 1 is single"):
        assert verdicts[name].status is VerdictStatus.PROVED
        assert TOY_RELATION.words in verdicts[name].assumed


def test_without_its_relation_the_toy_layer_fails_with_the_residual() -> None:
    # the same layouts in a layer that declares no relation: tp·(2·S·B·d/tp) - 2·d_ff·d
    register_toy_layer("plain-toy", relations=())
    result = verify_layout(get_layout("tp", "plain-toy"), Phase.PREFILL)
    assert result.relations == ()
    flops = next(v for v in result.verdicts if v.claim.name == "flops conserved")
    assert flops.status is VerdictStatus.FAILED
    assert sympy.expand(flops.residual - 2 * d * (S * B - d_ff)) == 0
