"""The Cost record: per-chip expressions of one layer under one layout and phase."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

import sympy

from .trace import Derivation, Lone, Split, Trace

PER_CHIP = ("flops", "weight_memory", "activation_memory", "kv_cache")

# The nine metrics, in the order of DESIGN.md's JSON.
METRICS: tuple[str, ...] = (
    *(f"{name}_per_chip" for name in PER_CHIP),
    *(f"{name}_total" for name in PER_CHIP),
    "communication_bytes",
)


def over_group(payload: sympy.Expr, group: sympy.Expr) -> sympy.Expr:
    """A collective's payload, which is nothing when its group is a single chip."""
    return sympy.Piecewise((payload, sympy.Gt(group, 1)), (0, True))


class CollectiveKind(StrEnum):
    """How a collective moves its payload."""

    ALL_REDUCE = "all-reduce"
    ALL_GATHER = "all-gather"
    ALL_TO_ALL = "all-to-all"
    SEND_RECV = "send-recv"  # point to point, e.g. around a ring
    USER = "collective"  # a user layout's, of no declared kind


@dataclass(frozen=True)
class CollectiveSpec:
    """A collective declared once per layer: its name, kind and words, used both by the
    builders that perform it and by the checks that hold them to it."""

    name: str  # e.g. "output_allreduce"
    kind: CollectiveKind
    label: str  # e.g. "output all-reduce"
    description: str

    def __call__(self, t: Trace, group: sympy.Expr, payload: sympy.Expr) -> Collective:
        """This collective's payload over ``group`` as a step of ``t``."""
        return collective(
            t, self.name, self.kind, group, payload, label=self.label, description=self.description
        )


@dataclass(frozen=True)
class Collective:
    """One named collective a chip takes part in, with its payload bytes."""

    name: str  # e.g. "output_allreduce"
    kind: CollectiveKind
    group: sympy.Symbol  # the degree that sizes its group (tp, cp)
    symbol: sympy.Symbol  # the derivation step holding its payload
    description: str


@dataclass(frozen=True)
class Cost:
    """Per-chip expressions of one layer under one layout and phase, with their derivation.

    ``flops`` ... ``communication_bytes`` are the symbols of derivation steps;
    ``metrics`` gives the nine metrics in dimensions only. Per-chip figures are the busiest
    chip's; totals add up every chip's share (``totals``), which is per-chip × chips, as in
    every seed case, wherever the splits are even.
    """

    chips: sympy.Expr
    flops: sympy.Symbol
    weight_bytes: sympy.Symbol
    activation_bytes: sympy.Symbol
    kv_cache_bytes: sympy.Symbol
    communication_bytes: sympy.Symbol
    collectives: tuple[Collective, ...]
    derivation: Derivation
    # the weight bytes a pass reads from memory, when not all of them (an embedding
    # gathers one row per token); None: every weight byte is read
    weight_reads: sympy.Symbol | None = None

    @cached_property
    def per_chip(self) -> dict[str, sympy.Expr]:
        """The four per-chip quantities, in dimensions."""
        steps = (self.flops, self.weight_bytes, self.activation_bytes, self.kv_cache_bytes)
        return {
            name: self.derivation.resolve(step) for name, step in zip(PER_CHIP, steps, strict=True)
        }

    @cached_property
    def metrics(self) -> dict[str, sympy.Expr]:
        """The nine metrics of DESIGN.md as expressions in dimensions."""
        exprs = {f"{name}_per_chip": expr for name, expr in self.per_chip.items()}
        exprs |= {f"{name}_total": self.derivation.resolve(e) for name, e in self.totals.items()}
        exprs["communication_bytes"] = self.derivation.resolve(self.communication_bytes)
        return exprs

    @cached_property
    def totals(self) -> dict[str, sympy.Expr]:
        """The four quantities summed over every chip, in step symbols and dimensions:
        per-chip × chips, except that on an uneven split the ranks hold unequal shares
        (``SHARES``), so each class of ranks is counted at its own share."""
        steps = (self.flops, self.weight_bytes, self.activation_bytes, self.kv_cache_bytes)
        return {name: self._summed(step) for name, step in zip(PER_CHIP, steps, strict=True)}

    def _summed(self, step: sympy.Symbol) -> sympy.Expr:
        found = self.rank_classes(step)
        if found is None:
            return step * self.chips
        alike, classes = found
        derivation = self.derivation
        shares = (n * (derivation.resolve_with(step, p) if p else step) for n, p in classes)
        return alike * sympy.Add(*shares)

    def rank_classes(
        self, step: sympy.Symbol
    ) -> tuple[sympy.Expr, list[tuple[sympy.Expr, dict[sympy.Symbol, sympy.Expr]]]] | None:
        """The chips in classes of equal shares of what ``step`` reads (None: every chip
        holds the same): how many chips each rank class stands for (the degrees no split
        reads), and each class as (its ranks, the split steps it holds less of, with
        their values there)."""
        derivation = self.derivation
        reads = derivation.reads(step)
        groups: dict[sympy.Expr, list[Split | Lone]] = {}
        shared = [s for s in derivation.splits if not s.replicates]  # replicated: all alike
        for split in (*shared, *derivation.lone):
            if split.symbol in reads:
                groups.setdefault(derivation.resolve(split.parts), []).append(split)
        if not groups:
            return None
        classes: list[tuple[sympy.Expr, dict[sympy.Symbol, sympy.Expr]]] = [(sympy.S.One, {})]
        spanned = sympy.S.One
        for parts, splits in groups.items():
            spanned *= parts
            classes = [
                (n * m, {**pinned, **more})
                for n, pinned in classes
                for m, more in _rank_classes(parts, splits, derivation)
            ]
        return self.chips / spanned, classes

    @cached_property
    def collective_bytes(self) -> dict[str, sympy.Expr]:
        """Each collective's payload bytes (zero on a one-chip group), in dimensions."""
        return {c.name: self.derivation.resolve(c.symbol) for c in self.collectives}

    @cached_property
    def dimensions(self) -> frozenset[sympy.Symbol]:
        """Every dimension symbol the cost depends on, or that one of its requirements or
        splits reads (a requirement on a dimension no metric reads still needs its value)."""
        symbols: set[sympy.Symbol] = set(self.chips.free_symbols)
        for expr in self.metrics.values():
            symbols |= expr.free_symbols
        derivation = self.derivation
        for rule in (*derivation.requirements, *derivation.splits):
            symbols |= derivation.resolve(rule.total).free_symbols
            symbols |= derivation.resolve(rule.parts).free_symbols
        return frozenset(symbols)


# How the shares of an uneven split fall on its ranks, as torch.tensor_split and
# numpy.array_split cut a tensor: the first ``total mod parts`` ranks hold
# ⌈total / parts⌉, the others ⌊total / parts⌋. Per-chip figures are the busiest rank's.
SHARES = (
    "the first (total mod parts) ranks hold ceil(total/parts), the others floor(total/parts), "
    "as torch.tensor_split and numpy.array_split cut a tensor"
)


def _rank_classes(
    parts: sympy.Expr, splits: list[Split | Lone], derivation: Derivation
) -> list[tuple[sympy.Expr, dict[sympy.Symbol, sympy.Expr]]]:
    """The ranks along one degree in classes of equal shares: (how many ranks, the splits
    they hold less of, pinned to ⌊total/parts⌋). Two splits of one degree (keys and cached
    positions, tokens and token-expert pairs) fall on the same first ranks; a step one
    rank holds (``Lone``) is nothing on the others."""
    if len(splits) == 1 and isinstance(splits[0], Lone):
        return [(sympy.S.One, {}), (parts - 1, {splits[0].symbol: sympy.S.Zero})]
    if any(isinstance(s, Lone) for s in splits):
        raise ValueError(f"{parts}: a step one rank holds, beside another split of its degree")
    lows, extra = [], []
    for split in splits:
        total = derivation.resolve(split.total)
        lows.append((split.symbol, sympy.floor(total / parts)))
        extra.append(sympy.Mod(total, parts))  # the ranks that hold one more
    if len(splits) == 1:
        ((symbol, low),), (more,) = lows, extra
        return [(more, {}), (parts - more, {symbol: low})]
    if len(splits) == 2:
        ((s1, low1), (s2, low2)), (more1, more2) = lows, extra
        both = sympy.Min(more1, more2)
        return [
            (both, {}),
            (more1 - both, {s2: low2}),
            (more2 - both, {s1: low1}),
            (parts - sympy.Max(more1, more2), {s1: low1, s2: low2}),
        ]
    names = ", ".join(str(s.symbol) for s in splits)
    raise ValueError(f"{names}: at most two uneven splits may share one degree")


def collective(
    t: Trace,
    name: str,
    kind: CollectiveKind | str,
    group: sympy.Symbol,
    payload: sympy.Expr,
    *,
    label: str,
    description: str,
    note: str | None = None,
) -> Collective:
    """A collective's payload as a step of ``t`` (nothing on a one-chip group)."""
    escaped = name.replace("_", r"\_")
    symbol = t.define(
        name,
        label,
        over_group(payload, group),
        section="communication",
        unit="bytes",
        name=f"C_{name}",
        latex=rf"C_{{\mathrm{{{escaped}}}}}",
        note=note or f"{kind} over the {group} group; payload bytes; none on one chip",
    )
    return Collective(name, CollectiveKind(kind), group, symbol, description)


PAYLOAD_NOTE = "payload (logical tensor) bytes, not ring-injected bytes"


def finish(
    t: Trace,
    *,
    chips: sympy.Expr | int,
    flops: sympy.Symbol,
    weights: sympy.Symbol,
    activations: sympy.Symbol,
    kv_cache: sympy.Symbol,
    collectives: list[Collective],
    weight_reads: sympy.Symbol | None = None,
    note: str = PAYLOAD_NOTE,
) -> Cost:
    """Close a trace: the communication total as its last step, then the Cost it adds up to."""
    comm = t.define(
        "communication_bytes",
        "communication bytes per chip",
        sympy.Add(*(c.symbol for c in collectives)),
        section="communication",
        unit="bytes",
        name="C",
        note=note,
    )
    return Cost(
        sympy.sympify(chips),
        flops,
        weights,
        activations,
        kv_cache,
        comm,
        tuple(collectives),
        t.freeze(),
        weight_reads,
    )
