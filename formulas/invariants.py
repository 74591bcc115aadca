"""The invariants every layout is held to, built from what it declares (its Checks).

Against its reference layout (``single`` for every built-in):
- total FLOPs equal the reference's, plus any work it declares it repeats;
- unique KV-cache bytes are conserved (times a declared replication factor);
- weight copies equal the declared replication factor (stated when undeclared);
- every parallel degree at 1 reduces it to the reference, metric for metric;
- nothing is sent on one chip.
And always: the chip count and each collective's group are whole numbers, at least 1;
every per-chip quantity and each collective's payload (each on its own, so that two
cannot cancel) is non-negative; and the four per-chip quantities are non-increasing in
each parallel degree.

Conservation holds when splits are even; each such claim says which division it
assumes. hidden_size = num_heads × head_dim throughout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import sympy

from shardcost.symbolic import PER_CHIP, Cost, closed_form, over_group
from shardcost.symbolic.dimensions import BY_SYMBOL, d, dh, h, h_kv
from shardcost.symbolic.verify import Claim, Divides, Domain, Term, Verdict, decide

from .conventions import Conventions, Phase
from .inputs import describe
from .registry import Layout, Send, get_layout, ref

WHOLE = "whole chips"
NONNEGATIVE = "non-negative"


@dataclass(frozen=True)
class Statement:
    """Something verify prints about a layout without holding it to a value."""

    name: str
    text: str
    expr: sympy.Expr


@dataclass(frozen=True)
class LayoutVerification:
    """Every verdict for one layout in one phase under one set of conventions."""

    layout: Layout
    phase: Phase
    conventions: Conventions
    verdicts: tuple[Verdict, ...]
    statements: tuple[Statement, ...]

    @property
    def ok(self) -> bool:
        """Whether every claim holds."""
        return all(v.ok for v in self.verdicts)


def _dims(cost: Cost) -> set[sympy.Symbol]:
    return {s for s in cost.dimensions if s in BY_SYMBOL}


def _rules(
    cost: Cost, subs: dict[sympy.Symbol, sympy.Expr]
) -> tuple[tuple[Divides, ...], tuple[Divides, ...]]:
    """(requirements, even splits) of a cost, in dimensions, with words."""
    derivation = cost.derivation
    requirements = tuple(
        Divides(
            derivation.resolve(r.total).xreplace(subs),
            derivation.resolve(r.parts).xreplace(subs),
            f"{describe(r.parts, derivation)} divides {describe(r.total, derivation)}",
            r.either,
        )
        for r in derivation.requirements
    )
    even = tuple(
        Divides(
            derivation.resolve(s.total).xreplace(subs),
            derivation.resolve(s.parts).xreplace(subs),
            f"{describe(s.parts, derivation)} divides {describe(s.total, derivation)}",
        )
        for s in derivation.splits
    )
    return requirements, even


def verify_layout(
    layout: Layout, phase: Phase, conventions: Conventions | None = None
) -> LayoutVerification:
    """Decide every invariant of ``layout`` in ``phase``."""
    conventions = conventions or Conventions()
    phase = Phase(phase)
    cost = layout.cost(phase, conventions)
    checks = layout.checks
    reference = (
        get_layout(checks.reference, layout.layer).cost(phase, conventions)
        if checks.reference
        else None
    )
    subs, shape = _shape(cost, reference)
    requirements, even = _rules(cost, subs)
    degrees = frozenset(dim.symbol for dim in layout.degrees)
    if reference is not None:
        requirements += _rules(reference, subs)[0]
    even_words = tuple(e.words for e in even)

    claims: list[Claim] = [_whole_claim(cost)]
    statements: list[Statement] = []
    metrics = cost.metrics
    if reference is not None:
        ref = reference.metrics
        name = checks.reference

        def expected(declared: sympy.Expr) -> sympy.Expr:
            return _expected(declared, reference)

        flops = expected(checks.expected_flops(phase, conventions))
        extra = sympy.simplify((flops - ref["flops_total"]).xreplace(subs))
        words = f"FLOPs over all chips = {name}'s"
        if extra != 0:
            words += f" + repeated work ({checks.repeated_in(phase, conventions)})"
        claims.append(
            Claim(
                "flops conserved",
                words,
                "equal",
                (Term("flops_total", metrics["flops_total"], flops),),
                even=even,
                assumptions=(*shape, *even_words),
                shown=closed_form(extra) if extra != 0 else None,
            )
        )
        kv = expected(checks.kv_cache)
        if even:
            claims.append(
                Claim(
                    "uneven splits over-count",
                    "with any split, even or not, the busiest chip times the chips covers "
                    f"{name}'s FLOPs and KV bytes (never less)",
                    "atleast",
                    (
                        Term("flops_total", metrics["flops_total"], flops),
                        Term("kv_cache_total", metrics["kv_cache_total"], kv),
                    ),
                    assumptions=shape,
                )
            )
        claims.append(
            Claim(
                "KV bytes as declared",
                f"KV-cache bytes over all chips = {_words(checks.kv_cache, name)}",
                "equal",
                (Term("kv_cache_total", metrics["kv_cache_total"], kv),),
                even=even,
                assumptions=(*shape, *even_words),
            )
        )
        if checks.weights is None:
            found = sympy.simplify(
                (metrics["weight_memory_total"] / ref["weight_memory_total"]).xreplace(subs)
            )
            statements.append(
                Statement(
                    "weight copies", "weights over all chips / the reference's (undeclared)", found
                )
            )
        else:
            claims.append(
                Claim(
                    "weights as declared",
                    f"weight bytes over all chips = {_words(checks.weights, name)}",
                    "equal",
                    (
                        Term(
                            "weight_memory_total",
                            metrics["weight_memory_total"],
                            expected(checks.weights),
                        ),
                    ),
                    even=even,
                    assumptions=(*shape, *even_words),
                )
            )
        if degrees:
            one = {deg: sympy.S.One for deg in degrees}
            names = ", ".join(sorted(BY_SYMBOL[g].name for g in degrees))
            claims.append(
                Claim(
                    f"degree 1 is {name}",
                    f"with {names} = 1, all nine metrics equal {name}'s",
                    "equal",
                    tuple(Term(m, metrics[m].xreplace(one), ref[m]) for m in metrics),
                    assumptions=shape,
                )
            )
            claims.append(
                Claim(
                    "no communication on one chip",
                    f"with {names} = 1, nothing is sent",
                    "equal",
                    (Term("communication_bytes", metrics["communication_bytes"].xreplace(one)),),
                )
            )
    sends = checks.sent(phase, conventions)
    if sends is not None:
        claims.append(_communication_claim(cost, reference, sends, even, shape, even_words))
    claims.append(_nonnegative_claim(cost))
    for degree in sorted(degrees, key=str):
        claims.append(
            Claim(
                f"non-increasing in {BY_SYMBOL[degree].name}",
                f"more {BY_SYMBOL[degree].name} never adds per-chip FLOPs, weights, "
                "activations or KV",
                "nonincreasing",
                tuple(Term(f"{q}_per_chip", metrics[f"{q}_per_chip"]) for q in PER_CHIP),
                variable=degree,
                even=even,
                assumptions=even_words,
            )
        )
    domain = Domain(_symbols(claims, requirements, subs), degrees, requirements, subs)
    verdicts = tuple(decide(claim, domain) for claim in claims)
    return LayoutVerification(layout, phase, conventions, verdicts, tuple(statements))


def refutation(
    cost: Cost, reference: Cost | None, degrees: frozenset[sympy.Symbol]
) -> Verdict | None:
    """The first failed verdict of "whole chips" and "non-negative" for ``cost`` (in the
    domain verify uses, with ``reference``'s shape relations and requirements), or None
    when neither is refuted: a layout that fails one cannot exist."""
    subs, _ = _shape(cost, reference)
    requirements = _rules(cost, subs)[0]
    if reference is not None:
        requirements += _rules(reference, subs)[0]
    claims = [_whole_claim(cost), _nonnegative_claim(cost)]
    domain = Domain(_symbols(claims, requirements, subs), degrees, requirements, subs)
    for claim in claims:
        verdict = decide(claim, domain)
        if verdict.ok:
            continue
        point = dict(verdict.counterexample or {})
        term = next(t for t in claim.terms if t.label == verdict.term)
        for symbol, value in subs.items():  # hidden_size too, when the formula names it
            named = symbol in sympy.sympify(term.lhs).free_symbols
            if point and named and value.free_symbols <= point.keys():
                point[symbol] = int(value.xreplace({s: sympy.Integer(point[s]) for s in point}))
        return replace(verdict, counterexample=point) if point else verdict
    return None


def _shape(
    cost: Cost, reference: Cost | None
) -> tuple[dict[sympy.Symbol, sympy.Expr], tuple[str, ...]]:
    """The shape relations assumed (substitutions, and in words), if the layer has heads."""
    subs: dict[sympy.Symbol, sympy.Expr] = {}
    heads = {h, dh}
    if not (heads & _dims(cost) or (reference is not None and heads & _dims(reference))):
        return subs, ()
    subs[d] = h * dh
    words = "hidden_size = num_heads × head_dim"
    if reference is not None and h_kv not in _dims(cost) and h_kv in _dims(reference):
        subs[h_kv] = h
        words += "; num_kv_heads = num_heads (the layout does not use it)"
    return subs, (words,)


def _whole_claim(cost: Cost) -> Claim:
    """The chip count and each collective's group are whole numbers, at least 1: a group
    of 0, -1 or 1/2 would silently send nothing."""
    groups = tuple(Term(f"{c.name} group", c.group, sympy.S.One) for c in cost.collectives)
    return Claim(
        WHOLE,
        "the chip count and each collective's group are whole numbers, at least 1"
        if groups
        else "the chip count is a whole number, at least 1",
        "whole",
        (Term("chips", cost.chips, sympy.S.One), *groups),
    )


def _nonnegative_claim(cost: Cost) -> Claim:
    """Every per-chip quantity and each collective's payload, on its own, is zero or more."""
    metrics = cost.metrics
    payloads = cost.collective_bytes
    return Claim(
        NONNEGATIVE,
        "every per-chip quantity and each collective's payload is zero or more",
        "nonnegative",
        (
            *(Term(f"{q}_per_chip", metrics[f"{q}_per_chip"]) for q in PER_CHIP),
            *(Term(f"{name} payload", payload) for name, payload in payloads.items()),
            Term("communication_bytes", metrics["communication_bytes"]),
        ),
    )


def _communication_claim(
    cost: Cost,
    reference: Cost | None,
    sends: tuple[Send, ...],
    even: tuple[Divides, ...],
    shape: tuple[str, ...],
    even_words: tuple[str, ...],
) -> Claim:
    """Each collective's payload equals what the layout declares must move, and no other."""
    declared: dict[str, sympy.Expr] = {}
    for send in sends:
        payload = over_group(_expected(send.payload, reference), send.group)
        declared[send.collective] = declared.get(send.collective, sympy.S.Zero) + payload
    actual = cost.collective_bytes
    names = list(dict.fromkeys([*declared, *actual]))
    terms = tuple(
        Term(name, actual.get(name, sympy.S.Zero), declared.get(name, sympy.S.Zero))
        for name in names
    )
    words = "; ".join(f"{s.collective}: {s.why}" for s in sends) or "nothing is sent"
    return Claim(
        "communication as declared",
        f"each collective moves what the layout must move ({words})",
        "equal",
        terms,
        even=even,
        assumptions=(*shape, *even_words),
    )


def _symbols(
    claims: list[Claim], requirements: tuple[Divides, ...], subs: dict[sympy.Symbol, sympy.Expr]
) -> tuple[sympy.Symbol, ...]:
    """Every dimension any claim or requirement mentions, less those substituted away."""
    found: set[sympy.Symbol] = set()
    exprs = [e for c in claims for t in c.terms for e in (t.lhs, t.rhs)]
    exprs += [e for r in requirements for e in (r.total, r.parts)]
    for expr in exprs:
        found |= sympy.sympify(expr).xreplace(subs).free_symbols
    return tuple(sorted((s for s in found if s in BY_SYMBOL), key=str))


def _expected(declared: sympy.Expr, reference: Cost | None) -> sympy.Expr:
    """A declaration with each ``ref("step")`` replaced by the reference's step (in
    dimensions), and a step the reference does not have by zero."""
    stand_ins: dict[sympy.Symbol, sympy.Expr] = {}
    if reference is not None:
        derivation = reference.derivation
        stand_ins = {ref(s.key): derivation.resolve(s.symbol) for s in derivation.steps}
    value = sympy.sympify(declared).xreplace(stand_ins)
    leftover = {s: sympy.S.Zero for s in value.free_symbols if s.name.startswith("ref:")}
    return value.xreplace(leftover)


def _words(declared: sympy.Expr, name: str) -> str:
    """A declaration in words: ref("x") reads as the reference's x."""
    text = str(declared)
    return re.sub(r"ref:(\w+)", rf"{name}'s \1", text)
