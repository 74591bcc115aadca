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
assumes. The layer's relations (``total = left × right``, declared in its file) hold
throughout: each is substituted before anything is decided, and every claim that rests on
it says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import sympy

from shardcost.symbolic import PER_CHIP, Cost, Product, closed_form, over_group
from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS_BY_NAME
from shardcost.symbolic.dimensions import BY_SYMBOL
from shardcost.symbolic.divides import Divides
from shardcost.symbolic.verify import Claim, ClaimKind, Domain, Term, Verdict, decide

from .conventions import Conventions, Phase
from .inputs import DEFAULT_FROM, describe
from .registry import Layout, get_layer, get_layout, ref, relations_for

WHOLE = "whole chips"
NONNEGATIVE = "non-negative"

Substitution = dict[sympy.Symbol, sympy.Expr]


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
    relations: tuple[str, ...] = ()  # the layer's relations every claim assumes, in words

    @property
    def ok(self) -> bool:
        """Whether every claim holds."""
        return all(v.ok for v in self.verdicts)


def _dims(cost: Cost | None) -> set[sympy.Symbol]:
    return {s for s in cost.dimensions if s in BY_SYMBOL} if cost is not None else set()


def _rules(cost: Cost, subs: Substitution) -> tuple[tuple[Divides, ...], tuple[Divides, ...]]:
    """(requirements, even splits) of a cost, in dimensions, with words."""
    derivation = cost.derivation

    def divides(total: sympy.Expr, parts: sympy.Expr, either: bool = False) -> Divides:
        words = f"{describe(parts, derivation)} divides {describe(total, derivation)}"
        resolved = (derivation.resolve(total), derivation.resolve(parts))
        return Divides(*(e.xreplace(subs) for e in resolved), words, either)

    requirements = tuple(divides(r.total, r.parts, r.either) for r in derivation.requirements)
    return requirements, tuple(divides(s.total, s.parts) for s in derivation.splits)


@dataclass(frozen=True)
class _Scope:
    """What every claim about one layout in one phase is built from."""

    layout: Layout
    phase: Phase
    conventions: Conventions
    cost: Cost
    reference: Cost | None
    subs: Substitution  # the relations (and defaults), applied before anything is decided
    relations: tuple[str, ...]  # the relations in words
    shape: tuple[str, ...]  # the relations and defaults in words
    even: tuple[Divides, ...]  # the splits conservation assumes even
    requirements: tuple[Divides, ...]  # what must divide what, the reference's too
    degrees: frozenset[sympy.Symbol]

    @property
    def assumed(self) -> tuple[str, ...]:
        """The relations, then each split assumed even, in words."""
        return (*self.shape, *(e.why for e in self.even))

    def expected(self, declared: sympy.Expr) -> sympy.Expr:
        """A declaration with the reference's steps in."""
        return _expected(declared, self.reference)

    @property
    def flops(self) -> sympy.Expr:
        """The FLOPs over all chips the layout declares in this phase, in dimensions."""
        return self.expected(self.layout.checks.expected_flops(self.phase, self.conventions))


def _scope(layout: Layout, phase: Phase, conventions: Conventions) -> _Scope:
    cost = layout.cost(phase, conventions)
    name = layout.checks.reference
    reference = get_layout(name, layout.layer).cost(phase, conventions) if name else None
    relations = relations_for(layout, _dims(cost) | _dims(reference))
    subs, defaults = _assumed(relations, cost, reference)
    requirements, even = _rules(cost, subs)
    if reference is not None:
        requirements += _rules(reference, subs)[0]
    words = tuple(r.words for r in relations)
    return _Scope(
        layout,
        phase,
        conventions,
        cost,
        reference,
        subs=subs,
        relations=words,
        shape=(*words, *defaults),
        even=even,
        requirements=requirements,
        degrees=frozenset(dim.symbol for dim in layout.degrees),
    )


def verify_layout(
    layout: Layout, phase: Phase, conventions: Conventions | None = None
) -> LayoutVerification:
    """Decide every invariant of ``layout`` in ``phase``."""
    scope = _scope(layout, Phase(phase), conventions or Conventions())
    claims = [
        _whole_claim(scope.cost),
        *_reference_claims(scope),
        *_communication_claims(scope),
        _nonnegative_claim(scope.cost),
        *_monotone_claims(scope),
        *_layer_claims(scope),
    ]
    domain = Domain(
        _symbols(claims, scope.requirements, scope.subs),
        scope.degrees,
        scope.requirements,
        scope.subs,
    )
    verdicts = tuple(decide(claim, domain) for claim in claims)
    return LayoutVerification(
        layout, scope.phase, scope.conventions, verdicts, _statements(scope), scope.relations
    )


def _reference_claims(scope: _Scope) -> list[Claim]:
    """Against the reference: FLOPs and KV bytes conserved (as declared), the busiest chip
    covering them, weights as declared, and every degree at 1 being the reference."""
    if scope.reference is None:
        return []
    claims = [_flops_claim(scope)]
    if scope.even:
        claims.append(_uneven_claim(scope))
    checks, name = scope.layout.checks, scope.layout.checks.reference
    metrics = scope.cost.metrics
    kv = Term("kv_cache_total", metrics["kv_cache_total"], scope.expected(checks.kv_cache))
    words = f"KV-cache bytes over all chips = {_words(checks.kv_cache, name)}"
    claims.append(_conserved("KV bytes as declared", words, kv, scope))
    if checks.weights is not None:
        expected = scope.expected(checks.weights)
        weights = Term("weight_memory_total", metrics["weight_memory_total"], expected)
        words = f"weight bytes over all chips = {_words(checks.weights, name)}"
        claims.append(_conserved("weights as declared", words, weights, scope))
    return claims + _degree_one_claims(scope)


def _conserved(name: str, words: str, term: Term, scope: _Scope, **extra: object) -> Claim:
    """``term`` holds with equality, assuming the relations and the even splits."""
    return Claim(
        name, words, ClaimKind.EQUAL, (term,), even=scope.even, assumptions=scope.assumed, **extra
    )


def _flops_claim(scope: _Scope) -> Claim:
    """FLOPs over all chips are the reference's, plus the work the layout declares it
    repeats (shown simplified)."""
    checks, phase, conventions = scope.layout.checks, scope.phase, scope.conventions
    assert scope.reference is not None
    flops = scope.flops
    extra = sympy.simplify((flops - scope.reference.metrics["flops_total"]).xreplace(scope.subs))
    words = f"FLOPs over all chips = {checks.reference}'s"
    if extra != 0:
        words += f" + repeated work ({checks.repeated_in(phase, conventions)})"
    term = Term("flops_total", scope.cost.metrics["flops_total"], flops)
    shown = closed_form(extra) if extra != 0 else None
    return _conserved("flops conserved", words, term, scope, shown=shown)


def _uneven_claim(scope: _Scope) -> Claim:
    """With any split, even or not, the totals (every rank's share added up) are the
    reference's FLOPs, repeated work included, and its KV bytes as declared."""
    checks, metrics = scope.layout.checks, scope.cost.metrics
    return Claim(
        "uneven splits add up",
        "with any split, even or not, FLOPs and KV bytes over all chips (every rank's own "
        f"share, as torch.tensor_split cuts) are {checks.reference}'s, as declared",
        ClaimKind.EQUAL,
        (
            Term("flops_total", metrics["flops_total"], scope.flops),
            Term("kv_cache_total", metrics["kv_cache_total"], scope.expected(checks.kv_cache)),
        ),
        assumptions=scope.shape,
    )


def _degree_one_claims(scope: _Scope) -> list[Claim]:
    """Every parallel degree at 1: the reference's nine metrics, and nothing sent."""
    if not scope.degrees or scope.reference is None:
        return []
    name = scope.layout.checks.reference
    metrics, theirs = scope.cost.metrics, scope.reference.metrics
    one = {deg: sympy.S.One for deg in scope.degrees}
    names = ", ".join(sorted(BY_SYMBOL[g].name for g in scope.degrees))
    sent = metrics["communication_bytes"].xreplace(one)
    return [
        Claim(
            f"degree 1 is {name}",
            f"with {names} = 1, all nine metrics equal {name}'s",
            ClaimKind.EQUAL,
            tuple(Term(m, metrics[m].xreplace(one), theirs[m]) for m in metrics),
            assumptions=scope.shape,
        ),
        Claim(
            "no communication on one chip",
            f"with {names} = 1, nothing is sent",
            ClaimKind.EQUAL,
            (Term("communication_bytes", sent),),
        ),
    ]


def _layer_claims(scope: _Scope) -> list[Claim]:
    """The invariants the layout's layer declares of its own (MoE, MLA, windows ...)."""
    own = get_layer(scope.layout.layer).claims
    if own is None:
        return []
    return list(own(scope.layout, scope.phase, scope.conventions, scope.cost))


def _statements(scope: _Scope) -> tuple[Statement, ...]:
    """What is stated, not held to a value: weight copies when the layout declares none."""
    if scope.reference is None or scope.layout.checks.weights is not None:
        return ()
    ours, theirs = (c.metrics["weight_memory_total"] for c in (scope.cost, scope.reference))
    found = sympy.simplify((ours / theirs).xreplace(scope.subs))
    words = "weights over all chips / the reference's (undeclared)"
    return (Statement("weight copies", words, found),)


def _monotone_claims(scope: _Scope) -> list[Claim]:
    """The four per-chip quantities never grow with any parallel degree."""
    metrics = scope.cost.metrics
    terms = tuple(Term(f"{q}_per_chip", metrics[f"{q}_per_chip"]) for q in PER_CHIP)
    return [
        Claim(
            f"non-increasing in {BY_SYMBOL[degree].name}",
            f"more {BY_SYMBOL[degree].name} never adds per-chip FLOPs, weights, activations or KV",
            ClaimKind.NONINCREASING,
            terms,
            variable=degree,
            even=scope.even,
            assumptions=tuple(e.why for e in scope.even),
        )
        for degree in sorted(scope.degrees, key=str)
    ]


def refutation(
    cost: Cost,
    reference: Cost | None,
    degrees: frozenset[sympy.Symbol],
    layer: str,
) -> Verdict | None:
    """The first failed verdict of "whole chips" and "non-negative" for ``cost`` (in the
    domain verify uses, with ``layer``'s relations and ``reference``'s requirements), or
    None when neither is refuted: a layout that fails one cannot exist."""
    symbols = _dims(cost) | _dims(reference)
    relations = tuple(r for r in get_layer(layer).relations if r.applies(symbols))
    subs, _ = _assumed(relations, cost, reference)
    requirements = _rules(cost, subs)[0]
    if reference is not None:
        requirements += _rules(reference, subs)[0]
    claims = [_whole_claim(cost), _nonnegative_claim(cost)]
    domain = Domain(_symbols(claims, requirements, subs), degrees, requirements, subs)
    for claim in claims:
        verdict = decide(claim, domain)
        if not verdict.ok:
            return _with_derived(verdict, claim, subs)
    return None


def _with_derived(verdict: Verdict, claim: Claim, subs: Substitution) -> Verdict:
    """``verdict`` whose counterexample also gives each substituted dimension the failing
    term names (a relation's total, from its factors)."""
    point = dict(verdict.counterexample or {})
    term = next(t for t in claim.terms if t.label == verdict.term)
    for symbol, value in subs.items():
        named = symbol in sympy.sympify(term.lhs).free_symbols
        if point and named and value.free_symbols <= point.keys():
            point[symbol] = int(value.xreplace({s: sympy.Integer(point[s]) for s in point}))
    return replace(verdict, counterexample=point) if point else verdict


def _assumed(
    relations: tuple[Product, ...], cost: Cost, reference: Cost | None
) -> tuple[Substitution, tuple[str, ...]]:
    """The substitutions assumed: each relation's total in its factors, and a dimension
    the reference reads but the layout does not at its default (another dimension's value:
    the layout's formulas are the reference's with that default); the defaults in words."""
    subs: Substitution = {}
    for relation in relations:
        for symbol, value in relation.substitution().items():
            value = value.xreplace(subs)  # relations may share dimensions: compose them
            subs = {k: v.xreplace({symbol: value}) for k, v in subs.items()} | {symbol: value}
    words: tuple[str, ...] = ()
    unread = _dims(reference) - _dims(cost)
    for name, source in DEFAULT_FROM.items():
        symbol, default = DIMENSIONS_BY_NAME[name].symbol, DIMENSIONS_BY_NAME[source].symbol
        if symbol in unread:
            subs[symbol] = default.xreplace(subs)
            words += (f"{name} = {source} (the layout does not use it)",)
    return subs, words


def _whole_claim(cost: Cost) -> Claim:
    """The chip count and each collective's group are whole numbers, at least 1: a group
    of 0, -1 or 1/2 would silently send nothing."""
    groups = tuple(Term(f"{c.name} group", c.group, sympy.S.One) for c in cost.collectives)
    return Claim(
        WHOLE,
        "the chip count and each collective's group are whole numbers, at least 1"
        if groups
        else "the chip count is a whole number, at least 1",
        ClaimKind.WHOLE,
        (Term("chips", cost.chips, sympy.S.One), *groups),
    )


def _nonnegative_claim(cost: Cost) -> Claim:
    """Every per-chip quantity and each collective's payload, on its own, is zero or more."""
    metrics = cost.metrics
    payloads = cost.collective_bytes
    return Claim(
        NONNEGATIVE,
        "every per-chip quantity and each collective's payload is zero or more",
        ClaimKind.NONNEGATIVE,
        (
            *(Term(f"{q}_per_chip", metrics[f"{q}_per_chip"]) for q in PER_CHIP),
            *(Term(f"{name} payload", payload) for name, payload in payloads.items()),
            Term("communication_bytes", metrics["communication_bytes"]),
        ),
    )


def _communication_claims(scope: _Scope) -> list[Claim]:
    """Each collective's payload equals what the layout declares must move, and no other
    (nothing to claim when the layout declares none)."""
    sends = scope.layout.checks.sent(scope.phase, scope.conventions)
    if sends is None:
        return []
    declared: dict[str, sympy.Expr] = {}
    for send in sends:
        payload = over_group(scope.expected(send.payload), send.group)
        declared[send.collective] = declared.get(send.collective, sympy.S.Zero) + payload
    actual = scope.cost.collective_bytes
    terms = tuple(
        Term(name, actual.get(name, sympy.S.Zero), declared.get(name, sympy.S.Zero))
        for name in dict.fromkeys([*declared, *actual])
    )
    words = "; ".join(f"{s.collective}: {s.why}" for s in sends) or "nothing is sent"
    return [
        Claim(
            "communication as declared",
            f"each collective moves what the layout must move ({words})",
            ClaimKind.EQUAL,
            terms,
            even=scope.even,
            assumptions=scope.assumed,
        )
    ]


def _symbols(
    claims: list[Claim], requirements: tuple[Divides, ...], subs: Substitution
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
