"""Layouts side by side in one phase: each at the degrees given, or fitted to N chips.

Fitted to a chip budget, a layout's parallel degrees are set so that it runs on exactly
N chips: a layout of one degree takes all N; a layout of none (``single``) runs on one
chip only; a layout of several is tried at every split of N that gives each degree 2 or
more, one entry per split (``tp-cp`` at tp = 2, cp = 2). A split that leaves a degree at
1 is not tried: it is the layout of the other degrees (``tp-cp`` at cp = 1 is ``tp``,
exactly), compared under its own name. A degree the user gives is kept and the others
fill the rest; a degree that cannot (it does not divide N, or a one-degree layout would
need N) contradicts the budget and is refused. A split the layer's shapes refuse (heads
not divisible by tp, KV heads and tp not dividing one another ...) is excluded with the
one-line reason validation gives, never dropped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shardcost.errors import ImpossibleSplitError, InputError
from shardcost.reports.text import chips_text  # one wording, also the light renderer's

from .conventions import Phase
from .evaluate import Result, evaluate
from .inputs import applicable_params, parse_count, resolve_inputs
from .registry import Layout

Degrees = tuple[tuple[str, int], ...]  # (degree name, value), in the layout's order


@dataclass(frozen=True)
class Excluded:
    """A layout (at one split of the budget, when it has several degrees) that cannot run."""

    layout: Layout
    degrees: Degrees  # empty when no split was tried
    reason: str  # one line


@dataclass(frozen=True)
class Comparison:
    """The layouts of one phase evaluated side by side; ``chips`` is the budget, if any."""

    phase: Phase
    chips: int | None
    results: tuple[Result, ...]
    excluded: tuple[Excluded, ...] = ()

    def to_json(self) -> list[dict[str, Any]]:
        """One object per layout (and split): ``Result.to_dict()`` with its ``chips``; an
        excluded one names its degrees and ``excluded``, the reason."""
        out = []
        for r in self.results:
            d = r.to_dict()
            out.append({"layout": d.pop("layout"), "phase": d.pop("phase"), "chips": r.chips, **d})
        out += [
            {
                "layout": e.layout.name,
                "phase": str(self.phase),
                "chips": self.chips,
                "degrees": dict(e.degrees),
                "excluded": e.reason,
            }
            for e in self.excluded
        ]
        return out


def compare(
    layouts: Sequence[Layout],
    phase: Phase,
    params: Mapping[str, object],
    *,
    chips: int | None = None,
    layer: str = "attention",
    hardware: str | None = None,
) -> Comparison:
    """Each layout of ``phase`` evaluated at the ``params`` it reads; with ``chips``, at
    every split of that many chips (see the module docstring), the rest excluded."""
    chosen = [lay for lay in layouts if phase in lay.phases]
    if chips is None:
        results = tuple(
            evaluate(
                resolve_inputs(
                    lay.name,
                    phase,
                    layer=layer,
                    hardware=hardware,
                    params=applicable_params(lay, phase, params),
                )
            )
            for lay in chosen
        )
        return Comparison(phase, None, results)
    results_: list[Result] = []
    excluded: list[Excluded] = []
    for lay in chosen:
        mine = applicable_params(lay, phase, params)
        fits = splits(lay, chips, mine)
        if isinstance(fits, str):
            excluded.append(Excluded(lay, (), fits))
            continue
        for degrees in fits:
            try:
                inputs = resolve_inputs(
                    lay.name, phase, layer=layer, hardware=hardware, params=mine | dict(degrees)
                )
            except ImpossibleSplitError as exc:
                # refused at every degree 1 too: the input is wrong whatever the budget
                ones = {name: 1 for name, _ in degrees}
                resolve_inputs(lay.name, phase, layer=layer, hardware=hardware, params=mine | ones)
                excluded.append(Excluded(lay, degrees, str(exc)))
                continue
            result = evaluate(inputs)
            if result.chips != chips:  # a user layout whose chips are not its degrees' product
                excluded.append(Excluded(lay, degrees, f"runs on {result.chips} chips there"))
                continue
            results_.append(result)
    return Comparison(phase, chips, tuple(results_), tuple(excluded))


def splits(layout: Layout, chips: int, params: Mapping[str, object]) -> tuple[Degrees, ...] | str:
    """Every assignment of ``layout``'s degrees that runs it on ``chips`` chips, the
    degrees given in ``params`` kept; the reason, when there is none.

    InputError when a degree given contradicts the budget.
    """
    names = [d.name for d in layout.degrees]
    if not names:
        return ((),) if chips == 1 else "runs on 1 chip only"
    given = {name: parse_count(name, params[name]) for name in names if name in params}
    free = [name for name in names if name not in given]
    pinned = math.prod(given.values())
    if given and (chips % pinned or (not free and pinned != chips)):
        shown = " × ".join(f"{k}={v}" for k, v in given.items())
        if len(given) > 1:
            shown += f" = {pinned}"
        if chips % pinned:
            why = f"and {pinned} does not divide {chips}"
        elif len(names) == 1:
            why = f"so it needs {names[0]}={chips}"
        else:
            why = f"which must multiply to {chips}"
        raise InputError(
            f"{shown} contradicts --chips {chips}: {layout.name} runs on {' × '.join(names)} "
            f"chips, {why} (leave {' and '.join(given)} out, or name the layouts to compare)"
        )
    rest = chips // pinned
    if len(free) < 2:  # every degree given (rest is 1), or one left to take the rest
        choices: list[tuple[int, ...]] = [(rest,) if free else ()]
    else:
        choices = list(_factors(rest, len(free)))
        if not choices:
            give = "gives" if chips == 1 else "give"
            return (
                f"{chips_text(chips)} {give} no split {' × '.join(free)} with each degree 2 "
                "or more (a degree at 1 leaves the layout of the others)"
            )
    out = []
    for values in choices:
        chosen = given | dict(zip(free, values, strict=True))
        out.append(tuple((name, chosen[name]) for name in names))
    return tuple(out)


def _factors(n: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Ordered factorisations of ``n`` into ``parts`` factors, each 2 or more."""
    if parts == 1:
        if n >= 2:
            yield (n,)
        return
    for first in range(2, n + 1):
        if n % first == 0:
            for rest in _factors(n // first, parts - 1):
                yield (first, *rest)


def by_chips(results: Sequence[Result]) -> list[tuple[int, list[Result]]]:
    """``results`` grouped by chip count, smallest first, each group in the given order."""
    ordered = sorted(results, key=lambda r: r.chips)
    return [(n, list(group)) for n, group in itertools.groupby(ordered, key=lambda r: r.chips)]
