"""Random valid configurations of any registered layout, read from the registry: its
parallel degrees, the inputs its compiled function takes, its layer's relations and its
requirements. Shared by the codegen tests, which run over every layout.

Values are adversarial: parallel degrees whose reciprocals round badly in float64 (49,
91, 97 ...), and sizes that carry counts across 2^53 and 2^63.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable

import shardcost
from shardcost.codegen.program import Program
from shardcost.codegen.python import choices
from shardcost.errors import InputError
from shardcost.formulas import Layout, Phase, all_layouts
from shardcost.formulas.conventions import BY_NAME as CONVENTIONS

# 49, 91, 97, 3·7·13: 1/x is inexact in float64 and (1/x)·(k·x) can land below k
DEGREES = (1, 2, 3, 4, 7, 8, 16, 49, 91, 97, 273)
SMALL_DEGREES = (1, 2, 3, 4, 8)
SMALL = (1, 2, 3, 5, 8, 16, 64, 128)
LARGE = (1000, 4096, 10**5, 10**6, 10**7, 2**26 + 1, 3 * 10**8)  # counts past 2^53, 2^63


def layout_phases() -> list[tuple[Layout, Phase]]:
    """Every registered layout in each of its phases."""
    return [(lay, ph) for lay in all_layouts() for ph in lay.phases]


def one_per_layer() -> list[Layout]:
    """Of each layer, the layout reading the most inputs (for back ends whose builds take
    seconds, like numba's)."""
    widest: dict[str, tuple[int, Layout]] = {}
    for lay in all_layouts():
        width = len(compiled(lay, lay.phases[-1]).arrays.names)
        if lay.layer not in widest or width > widest[lay.layer][0]:
            widest[lay.layer] = (width, lay)
    return [lay for _, lay in widest.values()]


def run_key(layout: Layout) -> str:
    """An export's run.sh LAYOUT for ``layout``: attention's by name, others as layer/name."""
    return layout.name if layout.layer == "attention" else f"{layout.layer}/{layout.name}"


def compiled(layout: Layout, phase: Phase | str) -> Callable[..., dict]:
    """The compiled function of ``layout`` in ``phase``."""
    return shardcost.compile(layout.name, str(phase), layer=layout.layer)


def _size(rng: random.Random, multiple: int, large: bool) -> int:
    """A size: a multiple of the degrees, small, large (when allowed) or anything."""
    pick = rng.random()
    if pick < 0.4:
        return rng.choice(SMALL) * multiple
    if pick < 0.7 or (pick < 0.9 and not large):
        return rng.choice(SMALL)
    if pick < 0.9:
        return rng.choice(LARGE)
    return rng.randint(1, 5000)


def draw(
    layout: Layout, head: Program, rng: random.Random, *, large: bool = True
) -> dict[str, int]:
    """One candidate: degrees from DEGREES (SMALL_DEGREES unless ``large``), bytes 1, 2
    or 4, other sizes by ``_size``, for each input of ``head`` (a Program of ``layout``);
    then each requirement whose total is an input made to hold (its total multiplied up)
    and each relation's total set to its product."""
    degrees = {d.name for d in layout.degrees}
    choices = DEGREES if large else SMALL_DEGREES
    p = {d.name: rng.choice(choices) for d in head.inputs if d.name in degrees}
    multiple = math.lcm(*p.values()) if p else 1
    for dim in head.inputs:
        if dim.name not in p:
            bytes_ = dim.unit == "bytes"
            p[dim.name] = rng.choice((1, 2, 4)) if bytes_ else _size(rng, multiple, large)
    for _ in range(3):
        _repair(head, p)
    return p


def _repair(head: Program, p: dict[str, int]) -> None:
    """Each requirement whose total is an input made to hold, by multiplying the total
    up; then each relation's total set to the product of its factors."""
    by_symbol = {d.symbol: d.name for d in head.inputs}
    for check in head.checks:
        if check.either or check.total not in by_symbol:
            continue
        values = {s: p[n] for s, n in by_symbol.items()}
        parts = int(check.parts.xreplace(values))
        total = p[by_symbol[check.total]]
        if parts > 0 and total % parts:
            p[by_symbol[check.total]] = total * (parts // math.gcd(total, parts))
    for relation in head.relations:
        p[relation.total.name] = p[relation.left.name] * p[relation.right.name]


def _in_range(head: Program, p: dict[str, int]) -> bool:
    """Whether the inputs stay where the array paths take them: each below 2^53 (float64
    decides requirements on inputs), a relation's total (a product) below 2^62 (int64)."""
    totals = {r.total.name for r in head.relations}
    return all(v < (2**62 if k in totals else 2**53) for k, v in p.items())


def reference(layout: Layout, phase: Phase | str, p: dict) -> dict[str, int] | None:
    """The metrics of ``p`` by shardcost.metrics, or None where it refuses them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an uneven split warns; still exact
            found = shardcost.metrics(layout.name, str(phase), layer=layout.layer, **p)
    except InputError:
        return None
    return found["metrics"]


def valid_configs(
    layout: Layout,
    phase: Phase | str,
    n: int,
    seed: int,
    *,
    conventions: bool = True,
    large: bool = True,
) -> list[tuple[dict, dict, dict]]:
    """``n`` valid configurations: (inputs, conventions, the reference metrics).
    Conventions are drawn from their choices (``conventions``) or left at their defaults.
    Candidates metrics() refuses (splits that cannot be made) are drawn again."""
    f = compiled(layout, phase)
    switches = choices(layout, Phase(phase), False)
    rng = random.Random(seed)
    out = []
    for _ in range(n * 40):
        conv = {}
        if conventions:
            conv = {c: rng.choice(CONVENTIONS[c].choices) for c in switches}
        key = tuple(conv.get(name, values[0]) for name, values in switches.items())
        prog = f.arrays.variants[key].program  # the inputs these conventions read
        p = draw(layout, prog, rng, large=large)
        if not _in_range(prog, p):
            continue
        try:  # the compiled function refuses impossible splits cheaply; metrics decides
            f(**p, **conv)
        except InputError:
            continue
        ref = reference(layout, phase, {**p, **conv})
        if ref is not None:
            out.append((p, conv, ref))
        if len(out) == n:
            break
    assert len(out) == n, f"only {len(out)} valid configurations of {layout.name} {phase}"
    return out
