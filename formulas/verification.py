"""Verifying layouts: which to verify, under which conventions, and the verdicts."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

from shardcost.errors import InputError

from .conventions import BY_NAME as CONVENTIONS_BY_NAME
from .conventions import Conventions, Phase, phase
from .inputs import choose_conventions
from .invariants import LayoutVerification, verify_layout
from .registry import Layout, all_layouts

# Element types scale the ``b`` of the default by a constant: every claim holds for any
# positive bytes per element, so the default stands for them all.
_SCALES_B = frozenset({"weight_dtype", "activation_dtype", "kv_cache_dtype", "moe_dispatch_dtype"})


def convention_choices(layout: Layout, ph: Phase) -> list[Conventions]:
    """Every combination of the conventions that apply to ``layout`` in ``ph`` (element
    types at their default, which keeps ``b`` symbolic)."""
    names = [n for n in layout.conventions_for(ph) if n not in _SCALES_B]
    choices = [CONVENTIONS_BY_NAME[n].choices for n in names]
    return [
        Conventions(**dict(zip(names, combo, strict=True))) for combo in itertools.product(*choices)
    ]


def covering_choices(layout: Layout, ph: Phase) -> list[Conventions]:
    """Every combination of the switches with the static conventions at their default,
    then every combination of the static conventions with the switches at theirs.

    Switches (``decode_projections``, ...) and static conventions (``attention_window``,
    ...) change different terms of a cost, so this covers every term of every choice at a
    fraction of the full product (29 of 216 for attention ``single`` in decode).
    """
    names = [n for n in layout.conventions_for(ph) if n not in _SCALES_B]
    static = [n for n in names if CONVENTIONS_BY_NAME[n].static]
    switches = [n for n in names if n not in static]
    out: list[Conventions] = []
    for group in (switches, static):
        for combo in itertools.product(*(CONVENTIONS_BY_NAME[n].choices for n in group)):
            conv = Conventions(**dict(zip(group, combo, strict=True)))
            if conv not in out:
                out.append(conv)
    return out


def verify(
    layouts: Iterable[Layout] | None = None,
    *,
    phases: Iterable[str] | None = None,
    conventions: Mapping[str, object] | None = None,
    every_convention: bool = False,
    layer: str | None = None,
) -> tuple[LayoutVerification, ...]:
    """Verify layouts (every one, or every one of ``layer``) in each phase they define."""
    conventions = dict(conventions or {})
    unknown = [k for k in conventions if k not in CONVENTIONS_BY_NAME]
    if unknown:
        raise InputError(
            f"verify takes conventions only; {unknown[0]!r} is not one "
            f"(conventions: {', '.join(CONVENTIONS_BY_NAME)})"
        )
    wanted = [phase(p) for p in phases] if phases is not None else list(Phase)
    chosen = list(layouts) if layouts is not None else list(all_layouts(layer))
    out: list[LayoutVerification] = []
    used: set[str] = set()
    for lay in chosen:
        for ph in (p for p in wanted if p in lay.phases):
            applicable = set(lay.conventions_for(ph))
            mine = {k: v for k, v in conventions.items() if k in applicable}
            used |= set(mine)
            if every_convention and not mine:
                variants = convention_choices(lay, ph)
            else:
                variants = [choose_conventions(lay, ph, mine)]
            out.extend(verify_layout(lay, ph, conv) for conv in variants)
    stray = [k for k in conventions if k not in used]
    if stray:
        raise InputError(f"{stray[0]} applies to none of the layouts and phases verified")
    if not out:
        raise InputError("nothing to verify: no layout defines the phases asked for")
    return tuple(out)
