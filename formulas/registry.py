"""The registry: layers, and the layouts that place each on chips.

A layer's file declares its ``Layer`` (``layer(...)``: role in a model, assumptions in
words, the conventions it owns, the relations among its dimensions) and registers each
layout with the ``layout`` decorator, which rejects a second layout of the same name for
the same layer. Everything else in the program reads these records: no other module names
a layer or a layout, spells a layer's shape rule, or keeps a list of layouts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

import sympy

from shardcost.errors import InputError, UnknownNameError
from shardcost.symbolic import Cost, Dimension
from shardcost.symbolic.relation import Product
from shardcost.symbolic.trace import DECLARED

from .conventions import BY_NAME as CONVENTIONS_BY_NAME
from .conventions import TIMING_CONVENTIONS, Conventions, Phase

Builder = Callable[[Phase, Conventions], Cost]


def ref(key: str) -> sympy.Symbol:
    """A stand-in for the reference layout's step ``key``, for use in a Send's payload."""
    return sympy.Symbol(f"ref:{key}", nonnegative=True)


REF_FLOPS, REF_WEIGHTS, REF_KV = ref("flops"), ref("weight_bytes"), ref("kv_cache_bytes")


@dataclass(frozen=True)
class Send:
    """A collective a layout must perform, declared from what has to move.

    ``payload`` (bytes per chip) is written in dimensions and ``ref("...")`` stand-ins
    for the reference layout's steps; verify holds the derivation's collective to it.
    """

    collective: str
    group: sympy.Expr
    payload: sympy.Expr
    why: str
    phase: Phase | None = None  # None: both phases
    when: str | None = None  # a boolean convention that must be true for it to apply
    unless: str | None = None  # a boolean convention that must be false for it to apply

    def applies(self, phase: Phase, conventions: Conventions) -> bool:
        """Whether this collective is expected in ``phase`` under ``conventions``."""
        return (
            self.phase in (None, Phase(phase))
            and (self.when is None or bool(getattr(conventions, self.when)))
            and (self.unless is None or not getattr(conventions, self.unless))
        )


@dataclass(frozen=True)
class Checks:
    """What verify holds a layout to, beyond what every layout must satisfy.

    Expected totals over all chips are written with ``ref("step")`` stand-ins for the
    reference layout's steps (a step the reference lacks counts as zero). Work or memory
    a layout repeats is stated in them, never hidden: CP decode expects
    ``ref("flops") + (cp - 1) * (ref("q_proj") + ... )``.
    """

    reference: str | None = "single"  # whose totals it conserves; None: it is the reference
    flops: sympy.Expr = REF_FLOPS  # expected flops_total in prefill
    decode_flops: sympy.Expr | None = None  # ... in decode, when it differs
    repeated: str = ""  # why the FLOPs exceed the reference's, in words
    decode_repeated: str | None = None  # ... in decode, when it differs
    # (phase, boolean convention, its value) -> (expected flops_total, why): where a
    # convention changes what a layout repeats
    flops_under: tuple[tuple[Phase, str, bool, sympy.Expr, str], ...] = ()
    weights: sympy.Expr | None = REF_WEIGHTS  # expected; None: undeclared, stated
    kv_cache: sympy.Expr = REF_KV
    sends: tuple[Send, ...] | None = None  # None: undeclared, verify does not check them

    def _under(
        self, phase: Phase, conventions: Conventions | None
    ) -> tuple[sympy.Expr, str] | None:
        for ph, name, value, flops, why in self.flops_under:
            if ph is Phase(phase) and conventions and getattr(conventions, name) is value:
                return flops, why
        return None

    def expected_flops(self, phase: Phase, conventions: Conventions | None = None) -> sympy.Expr:
        """The expected total FLOPs in ``phase`` (under ``conventions``)."""
        if under := self._under(phase, conventions):
            return under[0]
        if Phase(phase) is Phase.DECODE and self.decode_flops is not None:
            return self.decode_flops
        return self.flops

    def repeated_in(self, phase: Phase, conventions: Conventions | None = None) -> str:
        """Why the FLOPs in ``phase`` exceed the reference's, in words."""
        if under := self._under(phase, conventions):
            return under[1]
        if Phase(phase) is Phase.DECODE and self.decode_repeated is not None:
            return self.decode_repeated
        return self.repeated

    def sent(self, phase: Phase, conventions: Conventions) -> tuple[Send, ...] | None:
        """The collectives declared for ``phase`` under ``conventions``."""
        if self.sends is None:
            return None
        return tuple(s for s in self.sends if s.applies(phase, conventions))


@dataclass(frozen=True)
class Layout:
    """A registered layout: its name, layer, description, cost builder and checks."""

    name: str
    layer: str
    summary: str
    degrees: tuple[Dimension, ...]  # the parallel degrees it is sized by
    conventions: tuple[str, ...]  # conventions its builder reads, in any phase
    build: Builder
    checks: Checks = Checks()
    phases: tuple[Phase, ...] = (Phase.PREFILL, Phase.DECODE)
    # (layer, layout) pairs a model composes it with, where sharding over the same
    # parallel degrees does not pick one
    companions: tuple[tuple[str, str], ...] = ()

    @property
    def built_in(self) -> bool:
        """Whether this is one of the package's own layouts (defined in formulas/layers/):
        its formulas are the package's source, so what is derived from them may be cached
        under the source's digest; a user's would outlive the file it came from."""
        return str(getattr(self.build, "__module__", "")).startswith("shardcost.formulas.layers.")

    def cost(self, phase: Phase, conventions: Conventions | None = None) -> Cost:
        """The symbolic cost of this layout in ``phase`` (built once, then cached)."""
        if Phase(phase) not in self.phases:
            only = ", ".join(str(p) for p in self.phases)
            raise InputError(f"layout {self.name!r} is defined for {only} only, not {phase}")
        # a cost reads no timing convention: one cost for all of their values
        return _cost(self, Phase(phase), (conventions or Conventions()).untimed())

    def conventions_for(self, phase: Phase, *, timed: bool = False) -> tuple[str, ...]:
        """The conventions that change this layout's cost in ``phase``; ``timed``: its
        timing too, which the timing conventions (every layout's) change."""
        own = tuple(
            name for name in self.conventions if Phase(phase) in CONVENTIONS_BY_NAME[name].phases
        )
        return (*own, *TIMING_CONVENTIONS) if timed else own


@cache
def _cost(layout: Layout, phase: Phase, conventions: Conventions) -> Cost:
    return layout.build(phase, conventions)


_REGISTRY: dict[tuple[str, str], Layout] = {}
_LAYERS: dict[str, Layer] = {}


class Role(StrEnum):
    """What a layer does in a model, which is how the model composer places it."""

    MIXER = "mixer"  # mixes positions: attention
    CHANNEL_MIXER = "channel mixer"  # mixes features per position: the FFN
    EMBEDDING = "embedding"  # token ids in
    HEAD = "head"  # logits out
    KERNEL = "kernel"  # a kernel alone, as benchmarks time it: in no model


# A layer's own invariants: given a layout, a phase, conventions and the layout's cost
# there, the claims (symbolic.verify.Claim) verify decides beyond those every layout is
# held to.
LayerClaims = Callable[["Layout", Phase, Conventions, Cost], list]


@dataclass(frozen=True)
class Layer:
    """A layer: its role in a model, the accounting choices every layout of it makes (in
    words), the conventions it owns, the relations among its dimensions, and the
    invariants of its own that verify holds every layout of it to."""

    name: str
    role: Role
    assumptions: tuple[str, ...] = ()
    conventions: tuple[str, ...] = ()
    relations: tuple[Product, ...] = ()
    claims: LayerClaims | None = None


def layer(
    name: str,
    *,
    role: Role,
    assumptions: tuple[str, ...] = (),
    conventions: tuple[str, ...] = (),
    relations: tuple[Product, ...] = (),
    claims: LayerClaims | None = None,
) -> Layer:
    """Declare layer ``name`` (once), for its layouts to register under. ``claims``: the
    layer's own invariants (see ``LayerClaims``)."""
    if name in _LAYERS:
        raise ValueError(f"layer {name!r} is already declared")
    unknown = [c for c in conventions if c not in CONVENTIONS_BY_NAME]
    if unknown:
        raise ValueError(f"layer {name!r} names unknown conventions: {', '.join(unknown)}")
    _LAYERS[name] = Layer(name, role, assumptions, conventions, relations, claims)
    return _LAYERS[name]


def get_layer(name: str) -> Layer:
    """The layer called ``name``; UnknownNameError naming the layers otherwise."""
    return _LAYERS[check_layer(name)]


def assumptions(layer: str) -> tuple[str, ...]:
    """The accounting choices every layout of ``layer`` makes, in words."""
    return get_layer(layer).assumptions


def relations_for(layout: Layout, symbols: set[sympy.Symbol] | frozenset) -> tuple[Product, ...]:
    """The relations of ``layout``'s layer that hold for a cost reading ``symbols``: those
    whose dimensions it reads, all of them."""
    found = _LAYERS.get(layout.layer)
    return tuple(r for r in found.relations if r.applies(symbols)) if found else ()


def _references(checks: Checks) -> set[str]:
    """The steps ``checks`` names with ``ref("...")``."""
    exprs = [checks.flops, checks.decode_flops, checks.weights, checks.kv_cache]
    exprs += [flops for *_, flops, _ in checks.flops_under]
    exprs += [send.payload for send in checks.sends or ()]
    found: set[str] = set()
    for expr in exprs:
        if expr is not None:
            found |= {s.name[4:] for s in sympy.sympify(expr).free_symbols if s.name[:4] == "ref:"}
    return found


def register(entry: Layout) -> Layout:
    """Add ``entry`` to the registry; InputError if its name is taken for its layer, if its
    checks name a step no layer declares (a ``ref`` never silently counts 0), or if it
    reads a convention its layer does not own."""
    unknown = sorted(_references(entry.checks) - DECLARED)
    if unknown:
        raise InputError(
            f"layout {entry.name!r} checks steps no layer declares: {', '.join(unknown)}"
        )
    owner = _LAYERS.get(entry.layer)
    foreign = [c for c in entry.conventions if owner is not None and c not in owner.conventions]
    if foreign:
        raise InputError(
            f"layout {entry.name!r} reads conventions its layer {entry.layer!r} does not own: "
            f"{', '.join(foreign)}"
        )
    key = (entry.layer, entry.name)
    if key in _REGISTRY:
        raise InputError(f"layout {entry.name!r} is already registered for layer {entry.layer!r}")
    _REGISTRY[key] = entry
    return entry


def forget(layer: str, name: str) -> None:
    """Remove a registered layout (a user layout loaded again from its file)."""
    _REGISTRY.pop((layer, name), None)


def layout(
    name: str,
    *,
    layer: Layer | str,
    summary: str,
    degrees: tuple[Dimension, ...] = (),
    conventions: tuple[str, ...] = (),
    checks: Checks = Checks(),
    companions: tuple[tuple[str, str], ...] = (),
) -> Callable[[Builder], Builder]:
    """Register the decorated builder as layout ``name`` of ``layer``."""
    unknown = [c for c in conventions if c not in CONVENTIONS_BY_NAME]
    if unknown:
        raise ValueError(f"layout {name!r} names unknown conventions: {', '.join(unknown)}")

    owner = layer.name if isinstance(layer, Layer) else layer

    def decorate(build: Builder) -> Builder:
        register(
            Layout(name, owner, summary, degrees, conventions, build, checks, companions=companions)
        )
        return build

    return decorate


def layers() -> tuple[str, ...]:
    """Every layer that has at least one layout, in registration order."""
    return tuple(dict.fromkeys(name for name, _ in _REGISTRY))


def all_layers() -> tuple[Layer, ...]:
    """Every declared layer, in declaration order."""
    return tuple(_LAYERS.values())


def all_layouts(layer: str | None = None) -> tuple[Layout, ...]:
    """Every registered layout (of one layer, when given), in registration order."""
    if layer is not None:
        check_layer(layer)
    return tuple(lay for (ly, _), lay in _REGISTRY.items() if layer in (None, ly))


def check_layer(layer: str) -> str:
    """``layer`` if it has layouts; UnknownNameError otherwise."""
    if layer not in layers():
        raise UnknownNameError(f"layer={layer!r} is unknown; layers: {', '.join(layers())}")
    return layer


def get_layout(name: str, layer: str = "attention") -> Layout:
    """The layout called ``name`` for ``layer``; UnknownNameError naming the choices."""
    check_layer(layer)
    try:
        return _REGISTRY[(layer, name)]
    except KeyError:
        allowed = ", ".join(lay.name for lay in all_layouts(layer))
        raise UnknownNameError(
            f"layout {name!r} is unknown for layer {layer!r}; layouts: {allowed}"
        ) from None
