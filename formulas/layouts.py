"""The layout registry: named ways of placing a layer on chips.

One registry, filled by the ``layout`` decorator, which rejects a second layout of
the same name for the same layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from shardcost.errors import UnknownNameError
from shardcost.symbolic import Cost, Dimension

from .conventions import BY_NAME as CONVENTIONS_BY_NAME
from .conventions import Conventions, Phase

Builder = Callable[[Phase, Conventions], Cost]


@dataclass(frozen=True)
class Layout:
    """A registered layout: its name, layer, description and cost builder."""

    name: str
    layer: str
    summary: str
    degrees: tuple[Dimension, ...]  # the parallel degrees it is sized by
    conventions: tuple[str, ...]  # conventions its builder reads, in any phase
    build: Builder

    def cost(self, phase: Phase, conventions: Conventions | None = None) -> Cost:
        """The symbolic cost of this layout in ``phase`` (built once, then cached)."""
        return _cost(self, Phase(phase), conventions or Conventions())

    def conventions_for(self, phase: Phase) -> tuple[str, ...]:
        """The conventions that change this layout's cost in ``phase``."""
        return tuple(
            name for name in self.conventions if Phase(phase) in CONVENTIONS_BY_NAME[name].phases
        )


@cache
def _cost(layout: Layout, phase: Phase, conventions: Conventions) -> Cost:
    return layout.build(phase, conventions)


_REGISTRY: dict[tuple[str, str], Layout] = {}
_ASSUMPTIONS: dict[str, tuple[str, ...]] = {}


def state_assumptions(layer: str, assumptions: tuple[str, ...]) -> None:
    """Record the accounting choices every layout of ``layer`` makes, in words."""
    if layer in _ASSUMPTIONS:
        raise ValueError(f"assumptions of layer {layer!r} are already stated")
    _ASSUMPTIONS[layer] = assumptions


def assumptions(layer: str) -> tuple[str, ...]:
    """The accounting choices every layout of ``layer`` makes, in words."""
    return _ASSUMPTIONS.get(check_layer(layer), ())


def layout(
    name: str,
    *,
    layer: str,
    summary: str,
    degrees: tuple[Dimension, ...] = (),
    conventions: tuple[str, ...] = (),
) -> Callable[[Builder], Builder]:
    """Register the decorated builder as layout ``name`` of ``layer``."""
    unknown = [c for c in conventions if c not in CONVENTIONS_BY_NAME]
    if unknown:
        raise ValueError(f"layout {name!r} names unknown conventions: {', '.join(unknown)}")

    def register(build: Builder) -> Builder:
        key = (layer, name)
        if key in _REGISTRY:
            raise ValueError(f"layout {name!r} is already registered for layer {layer!r}")
        _REGISTRY[key] = Layout(name, layer, summary, degrees, conventions, build)
        return build

    return register


def layers() -> tuple[str, ...]:
    """Every layer that has at least one layout, in registration order."""
    return tuple(dict.fromkeys(layer for layer, _ in _REGISTRY))


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
