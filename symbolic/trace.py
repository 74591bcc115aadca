"""The derivation trace: named steps, each a symbolic expression.

A formula is written as a sequence of steps. Every step defines a symbol (``M_local``,
``F_q`` ...) that later steps may use, so a report can show ``F = F_q + F_k + ...``
and then the same line with numbers. ``Derivation.resolve`` expands a step's symbol
back into the dimensions (``d``, ``h``, ``S`` ...), which is what gets evaluated,
simplified, proved and compiled.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

import sympy

from .dimensions import BY_SHORT
from .divides import Divides


class Section(StrEnum):
    """Where a step stands in a derivation (and in a report)."""

    DERIVED = "derived"
    FLOPS = "flops"
    WEIGHTS = "weights"
    ACTIVATIONS = "activations"
    KV_CACHE = "kv_cache"
    COMMUNICATION = "communication"
    TIMING = "timing"


SECTIONS = tuple(Section)


@dataclass(frozen=True)
class Step:
    """One named line of a derivation: ``symbol = expr``."""

    symbol: sympy.Symbol
    key: str  # stable identifier, e.g. "q_proj"
    section: Section
    label: str  # words, e.g. "Q projection"
    expr: sympy.Expr  # in dimensions and earlier steps' symbols
    latex: str  # how the symbol is written
    unit: str  # "FLOPs", "bytes", "tokens", "ms" ...
    note: str = ""  # why, in a few words


@dataclass(frozen=True)
class StepSpec:
    """A step declared once: its key, words, section, symbol, unit and shape note. Applied
    to an expression in a trace (``Q_PROJ(t, expr)``) it defines the step and returns its
    symbol. LaTeX is the symbol's own unless ``latex`` says otherwise."""

    key: str
    label: str
    section: Section
    unit: str
    symbol: str = ""  # default: the key
    latex: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        DECLARED.add(self.key)

    def __call__(self, t: Trace, expr: sympy.Expr | int, **changes: str) -> sympy.Symbol:
        """Define this step as ``expr`` in ``t`` (``changes``: its label, latex or note for
        this use, where they depend on it)."""
        return t.define(
            self.key,
            changes.get("label", self.label),
            expr,
            section=self.section,
            unit=self.unit,
            name=self.symbol or self.key,
            latex=changes.get("latex", self.latex),
            note=changes.get("note", self.note),
        )

    def split(
        self,
        t: Trace,
        total: sympy.Expr,
        parts: sympy.Expr,
        *,
        what: str,
        replicates: bool = False,
    ) -> sympy.Symbol:
        """Define this step as ``⌈total / parts⌉`` in ``t``: the busiest chip's share of
        ``what`` when the split is uneven (``replicates``: fewer than parts are copied)."""
        note = self.note or "rounded up: the busiest chip's share when the split is uneven"
        return t.split(
            self.key,
            self.label,
            total,
            parts,
            what=what,
            name=self.symbol or self.key,
            latex=self.latex or self.symbol or self.key,
            unit=self.unit,
            note=note,
            replicates=replicates,
        )


DECLARED: set[str] = set()  # every StepSpec's key: what a reference to a step may name


@dataclass(frozen=True)
class Split:
    """``total`` shared over ``parts`` chips, rounded up: an uneven split costs the busiest chip."""

    symbol: sympy.Symbol
    total: sympy.Expr
    parts: sympy.Expr
    what: str  # what is being split, e.g. "sequence positions"
    replicates: bool = False  # fewer than parts: each one is copied, not left idle


@dataclass(frozen=True)
class Lone:
    """A step one rank of ``parts`` holds in full and the others not at all (every
    sequence's last position, on the last CP rank): totals count it once."""

    symbol: sympy.Symbol
    parts: sympy.Expr
    what: str  # e.g. "every sequence's last-position logits"


Requirement = Divides  # a derivation's requirement is the one "parts divides total" record


@dataclass(frozen=True)
class Derivation:
    """The frozen trace of one cost: its steps, uneven splits and divisibility requirements."""

    steps: tuple[Step, ...]
    splits: tuple[Split, ...] = ()
    requirements: tuple[Requirement, ...] = ()
    lone: tuple[Lone, ...] = ()

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def step(self, key: str) -> Step:
        """The step with this key; KeyError naming the known keys otherwise."""
        for step in self.steps:
            if step.key == key:
                return step
        raise KeyError(f"no step {key!r}; steps: {', '.join(s.key for s in self.steps)}")

    def step_of(self, symbol: sympy.Symbol) -> Step:
        """The step that defines ``symbol``."""
        return next(step for step in self.steps if step.symbol == symbol)

    def has(self, key: str) -> bool:
        """Whether a step with this key exists."""
        return any(step.key == key for step in self.steps)

    def section(self, name: str) -> tuple[Step, ...]:
        """The steps of one section, in order."""
        return tuple(step for step in self.steps if step.section == name)

    @cached_property
    def expansions(self) -> dict[sympy.Symbol, sympy.Expr]:
        """Each step's symbol mapped to its expression in dimensions only."""
        resolved: dict[sympy.Symbol, sympy.Expr] = {}
        for step in self.steps:
            resolved[step.symbol] = step.expr.xreplace(resolved)
        return resolved

    def resolve(self, expr: sympy.Expr) -> sympy.Expr:
        """``expr`` with every step symbol replaced by its expression in dimensions."""
        return sympy.sympify(expr).xreplace(self.expansions)

    def resolve_with(
        self, expr: sympy.Expr, pinned: Mapping[sympy.Symbol, sympy.Expr]
    ) -> sympy.Expr:
        """``expr`` in dimensions, with the steps in ``pinned`` taking the given expressions
        instead of their own (a chip holding ⌊total/parts⌋ of a split, not ⌈total/parts⌉)."""
        resolved: dict[sympy.Symbol, sympy.Expr] = {}
        for step in self.steps:
            own = pinned.get(step.symbol)
            resolved[step.symbol] = step.expr.xreplace(resolved) if own is None else own
        return sympy.sympify(expr).xreplace(resolved)

    def reads(self, expr: sympy.Expr) -> frozenset[sympy.Symbol]:
        """The step symbols ``expr`` depends on, directly or through other steps."""
        found: set[sympy.Symbol] = set()
        pending = list(sympy.sympify(expr).free_symbols)
        defined = {step.symbol: step for step in self.steps}
        while pending:
            symbol = pending.pop()
            if symbol in defined and symbol not in found:
                found.add(symbol)
                pending.extend(defined[symbol].expr.free_symbols)
        return frozenset(found)

    def values(
        self, subs: Mapping[sympy.Symbol, sympy.Expr], *, until: str | None = None
    ) -> dict[sympy.Symbol, sympy.Expr]:
        """Every step evaluated in order at ``subs`` (up to step ``until``, when given).

        Each step's small expression meets numbers, never the fully expanded tree,
        which is what makes evaluation fast.
        """
        known = dict(subs)
        for step in self.steps:
            known[step.symbol] = step.expr.xreplace(known)
            if step.key == until:
                break
        return known

    @cached_property
    def latex_names(self) -> dict[sympy.Symbol, str]:
        """How each step symbol is written in LaTeX."""
        return {step.symbol: step.latex for step in self.steps}


@dataclass
class Trace:
    """Builds a Derivation one step at a time."""

    steps: list[Step] = field(default_factory=list)
    splits: list[Split] = field(default_factory=list)
    requirements: list[Requirement] = field(default_factory=list)
    lone: list[Lone] = field(default_factory=list)

    def define(
        self,
        key: str,
        label: str,
        expr: sympy.Expr | int,
        *,
        section: str,
        unit: str,
        name: str | None = None,
        latex: str | None = None,
        note: str = "",
    ) -> sympy.Symbol:
        """Add ``name = expr`` as a step and return its symbol for later steps to use."""
        name = name or key
        if name in BY_SHORT:
            raise ValueError(f"step symbol {name!r} would shadow a dimension")
        if section not in SECTIONS:
            raise ValueError(f"unknown section {section!r}; sections: {', '.join(SECTIONS)}")
        section = Section(section)
        if any(step.key == key for step in self.steps):
            raise ValueError(f"duplicate step key {key!r}")
        symbol = sympy.Symbol(name, nonnegative=True)
        step = Step(symbol, key, section, label, sympy.sympify(expr), latex or name, unit, note)
        self.steps.append(step)
        return symbol

    def split(
        self,
        key: str,
        label: str,
        total: sympy.Expr,
        parts: sympy.Expr,
        *,
        what: str,
        name: str,
        latex: str,
        unit: str,
        note: str = "rounded up: the busiest chip's share when the split is uneven",
        replicates: bool = False,
    ) -> sympy.Symbol:
        """Define ``⌈total / parts⌉``: the busiest chip's share when the split is uneven."""
        symbol = self.define(
            key,
            label,
            sympy.ceiling(total / parts),
            section="derived",
            unit=unit,
            name=name,
            latex=latex,
            note=note,
        )
        self.splits.append(Split(symbol, total, parts, what, replicates))
        return symbol

    def symbol(self, key: str) -> sympy.Symbol:
        """The symbol of the earlier step ``key``."""
        for step in self.steps:
            if step.key == key:
                return step.symbol
        raise KeyError(f"no step {key!r} yet")

    def require_divisible(
        self, total: sympy.Expr, parts: sympy.Expr, why: str, *, either: bool = False
    ) -> None:
        """Record that ``parts`` must divide ``total`` (``either``: one the other) for this
        layout to exist."""
        self.requirements.append(
            Requirement(sympy.sympify(total), sympy.sympify(parts), why, either)
        )

    def freeze(self) -> Derivation:
        """The finished, immutable derivation."""
        return Derivation(
            tuple(self.steps), tuple(self.splits), tuple(self.requirements), tuple(self.lone)
        )

    def held_by_one(self, symbol: sympy.Symbol, parts: sympy.Expr, *, what: str) -> None:
        """Step ``symbol`` is held by one rank of ``parts`` only (``Lone``)."""
        self.lone.append(Lone(symbol, parts, what))
