"""A sweep's rows from a cache entry (``shardcost.numeric_sweep``): the blocked programs
the engine generated, run again without SymPy.

The entry is plain data (JSON): the grid's inputs, columns and switches, the catalog
figures of a chip, the preamble that completes the inputs (``codegen.plain``) and, per
combination of the switches, how its program reads the inputs, the source of each
blocked float64 program by the way a chunk's inputs vary (``ArrayPaths.blocked``'s
pattern), and the sides of the rules rows are dropped by. ``CachedRows`` is the engine's
``Grid`` with those in place of the compiled paths: the same ``Rows`` loop, so the same
chunks, columns and reasons. What it cannot settle as the engine would (a count at or
past 2^53, an input past float64, a way of varying it has no program for) raises
``Unsure``; its ``evaluate`` turns that into ``Decline`` while nothing is written, and
hands the rest to the engine's grid after.

numpy and the standard library only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from shardcost.codegen import plain
from shardcost.codegen.arrays import Inputs, float_outputs
from shardcost.codegen.sweep_rows import MAX_ROWS, Rows, Rule, fixed_inputs

FORMAT = 1  # bump when the entry's layout changes
_HELPERS = re.compile(r"\b_rt\.(\w+)")


class Unsure(Exception):
    """The cached programs cannot give these rows as the engine would: the engine does."""


class Decline(Exception):
    """Nothing is written yet: the engine answers the whole command."""


class _Program:
    """A stored blocked program, as ``codegen.arrays.run`` takes it."""

    def __init__(self, stored: Mapping[str, Any]) -> None:
        self.varies = tuple(bool(v) for v in stored["varies"])
        self.scratch = tuple((str(d), int(c)) for d, c in stored["scratch"])
        self.block = int(stored["block"])
        self.function = load(stored["source"], stored["name"])


def load(source: str, name: str) -> Callable[..., Any]:
    """Our own generated source, read back from the cache (never user text)."""
    for helper in _HELPERS.findall(source):
        if not hasattr(plain, helper):
            raise Unsure(f"a helper the cached program calls is not here: {helper}")
    scope: dict[str, Any] = {"np": np, "_rt": plain, "_ceil": math.ceil, "_floor": math.floor}
    exec(compile(source, f"<shardcost cached sweep {name}>", "exec"), scope)
    return scope[name]  # type: ignore[no-any-return]


def pattern_key(pattern: Any) -> str:
    """How an entry names the program of one way of varying (``Inputs.pattern``)."""
    return json.dumps(pattern)


def float_pass(
    variant: Mapping[str, Any], prog: _Program, given: Inputs, chosen: Inputs
) -> tuple[dict[str, Any], Any, Any]:
    """``ArrayPaths._float`` and the unread inputs' validity, from a stored variant
    (``picks``, ``unread``, ``outputs``) and its program for the way ``chosen`` varies:
    the outputs (shaped), where rows are valid and where a count may be inexact;
    Unsure where the engine would settle rows exactly."""
    try:
        result, ok, rough = float_outputs(variant["outputs"], prog, prog.function, chosen)  # type: ignore[arg-type]
    except OverflowError:
        raise Unsure("an input past float64") from None
    shape = chosen.shape
    if variant["unread"]:
        unread = tuple(np.asarray(given.values[k]) for k in variant["unread"])
        ok &= np.broadcast_to(plain.valid(unread), ok.shape)
    if rough.any():
        raise Unsure("rows the engine settles exactly")
    if ok.shape != shape:
        ok, rough = ok.reshape(shape), rough.reshape(shape)
    return result, ok, rough


class CachedRows(Rows):
    """A sweep's rows from a cache entry and the counts' values (each a list or a
    ``Range``): the engine's programs, without SymPy. ``handover(rows)``: the engine's
    grid of the same sweep, to evaluate the rest once rows were written."""

    def __init__(
        self,
        entry: Mapping[str, Any],
        values: Mapping[str, Sequence[int]],
        handover: Callable[[CachedRows], Rows] | None = None,
    ) -> None:
        if entry.get("format") != FORMAT:
            raise Unsure("an entry of another format")
        self.timed = bool(entry["timed"])
        self.inputs = tuple(entry["inputs"])
        self._counts = tuple(entry["counts"])
        switches, metrics, timings = entry["names"]
        self._names = (tuple(switches), tuple(metrics), tuple(timings))
        self.combos = tuple(tuple(c) for c in entry["combos"])
        self.extras = tuple(entry["extras"])
        self._index = {c: i for i, c in enumerate(self.combos)}
        self._variants = entry["variants"]
        self._loaded: dict[tuple[int, str], _Program] = {}
        self._rules: dict[int, tuple[Any, ...]] = {}
        if any(k not in self._counts for k in values):
            raise Unsure("a count the layout does not read")

        def missing(name: str) -> None:
            if name not in self._counts:
                raise Unsure(f"no value for {name}")

        self.fixed = fixed_inputs(self.inputs, values, entry["catalog"], missing)
        self.swept = {n: values[n] for n in self.inputs if len(values.get(n, ())) > 1}
        if self.total > MAX_ROWS:
            raise Unsure("more rows than a sweep takes")
        self.preamble = tuple(tuple(node) for node in entry["preamble"])
        self.started = False  # whether rows went to standard output already
        self.engine: Any = None  # the engine's grid, once handed over to it
        self.handover = handover

    @property
    def names(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        return self._names

    @property
    def counts(self) -> tuple[str, ...]:
        return self._counts

    def complete(self, given: dict[str, Any]) -> dict[str, Any]:
        return plain.complete(self.preamble, given)

    def pattern(self, key: tuple[Any, ...], inputs: tuple[Any, ...]) -> tuple[Any, Any]:
        """The inputs as the variant's blocked program takes them, and its pattern."""
        variant = self._variants[self._index[key]]
        given = Inputs.of(inputs, self.inputs, len(self._counts), exact=False)
        chosen = given.select(variant["picks"], variant["inputs"])
        return (given, chosen), chosen.pattern(False)

    def program(self, combo: int, pattern: Any) -> _Program:
        at = (combo, pattern_key(pattern))
        found = self._loaded.get(at)
        if found is None:
            stored = self._variants[combo]["programs"].get(at[1])
            if stored is None:
                raise Unsure("no program for the way these inputs vary")
            found = self._loaded[at] = _Program(stored)
        return found

    def floats(
        self, key: tuple[Any, ...], inputs: tuple[Any, ...], n: int
    ) -> tuple[Mapping[str, Any], Any, Any]:
        """``ArrayPaths.evaluate(exact=False, strict=False)``, from the stored program;
        Unsure where it would settle rows exactly."""
        combo = self._index[key]
        (given, chosen), pattern = self.pattern(key, inputs)
        return float_pass(self._variants[combo], self.program(combo, pattern), given, chosen)

    def exactly(self, key: tuple[Any, ...], inputs: tuple[Any, ...]) -> Mapping[str, Any]:
        raise Unsure("counts the engine recomputes exactly")

    def rules(self, key: tuple[Any, ...]) -> Sequence[Any]:
        combo = self._index[key]
        found = self._rules.get(combo)
        if found is None:
            found = self._rules[combo] = tuple(
                Rule(str(why), bool(rel), bool(either), *(load(s, "side") for s in sides))
                for why, rel, either, sides in self._variants[combo]["rules"]
            )
        return found

    def own(self, key: tuple[Any, ...]) -> Sequence[str]:
        return tuple(self._variants[self._index[key]]["own"])

    def evaluate(self, combo: int, lo: int, hi: int) -> Any:
        """The block from the cached programs; else, before anything is written,
        Decline; after, the engine's."""
        if self.engine is None:
            try:
                return super().evaluate(combo, lo, hi)
            except Exception:
                if not self.started or self.handover is None:
                    raise Decline from None
                self.engine = self.handover(self)
        return self.engine.evaluate(combo, lo, hi)
